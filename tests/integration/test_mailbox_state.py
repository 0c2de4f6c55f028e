"""What SELECT, EXAMINE and STATUS answer comes from the state the
account's open store keeps of each mailbox, shared by its sessions: it
must stay exactly what the index says while other sessions APPEND,
EXPUNGE and change flags and keywords, while mail arrives over LMTP, and
after coffred restarts. Each answer is compared with a model of the
mailbox the test keeps itself: EXISTS, RECENT, FLAGS, PERMANENTFLAGS,
UNSEEN, UIDVALIDITY and UIDNEXT of SELECT, and STATUS (MESSAGES RECENT
UNSEEN UIDNEXT UIDVALIDITY)."""
import re

import harness
import imap_util
import lmtp_util
from imap_util import ImapCase, USER2, PASS2, make_message

STD = ['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft']


class MailboxState(ImapCase):
    def assert_flag_list(self, got, want):
        """coffre lists the keywords some message has now. RFC 3501 (7.2.6)
        asks for the flags applicable in the mailbox, and Dovecot also keeps
        listing keywords once used: against Dovecot the list must hold the
        model's flags and may hold more keywords (tests/data/imap-differences.md)."""
        if imap_util.AGAINST_DOVECOT and want:
            self.assertLessEqual(set(want), set(got))
            self.assertTrue(all(not f.startswith('\\') or f in want for f in got), got)
        else:
            self.assertEqual(sorted(got, key=str.lower), sorted(want, key=str.lower))

    def setUp(self):
        # USER2's INBOX is this test's alone: a model of it, uid -> flags
        self.model = {}
        self.uidvalidity = None
        self.uidnext = None
        c = self.login(USER2, PASS2)
        info = c.select('INBOX')
        if info['exists']:
            c.ok('STORE 1:* +FLAGS.SILENT (\\Deleted)')
            c.ok('EXPUNGE')
        c.logout()
        self.changer = self.login(USER2, PASS2)    # the session making changes
        self.changer.select('INBOX')
        self.watcher = self.login(USER2, PASS2)    # keeps INBOX selected meanwhile
        info = self.watcher.select('INBOX')
        self.uidvalidity = info['uidvalidity']
        self.uidnext = info['uidnext']

    def append(self, flags=(), seen=False):
        fl = list(flags) + (['\\Seen'] if seen else [])
        r = self.changer.append('INBOX', make_message(len(self.model) + 1), flags=fl)
        self.model[r[1]] = set(fl)
        self.uidnext = r[1] + 1

    def deliver(self):
        c = lmtp_util.lmtp(self.server)
        try:
            rcpt, replies = lmtp_util.send(c, 'sender@example.net', [USER2], make_message(99))
            self.assertEqual(replies[0][0], 250, replies)
        finally:
            c.quit()
        # the delivered UID: the only one above the model's, once announced
        self.changer.ok('NOOP')
        u = self.changer.ok('UID SEARCH UID %d:*' % self.uidnext)
        uid = max(imap_util.search_result(u))
        self.model[uid] = set()
        self.uidnext = uid + 1

    def store(self, uids, op, flags):
        self.changer.ok('UID STORE %s %sFLAGS.SILENT (%s)'
                        % (','.join(map(str, uids)), op, ' '.join(flags)))
        for u in uids:
            if op == '+':
                self.model[u] |= set(flags)
            elif op == '-':
                self.model[u] -= set(flags)
            else:
                self.model[u] = set(flags)

    def expunge(self, uids):
        self.store(uids, '+', ['\\Deleted'])
        self.changer.ok('EXPUNGE')
        for u in list(self.model):
            if '\\Deleted' in self.model[u]:
                del self.model[u]

    def check(self, what):
        """A new session's SELECT, EXAMINE and STATUS against the model."""
        uids = sorted(self.model)
        unseen = [i for i, u in enumerate(uids, 1) if '\\Seen' not in self.model[u]]
        keywords = []
        for u in uids:
            for f in sorted(self.model[u]):
                if not f.startswith('\\') and f.lower() not in [k.lower() for k in keywords]:
                    keywords.append(f)
        c = self.login(USER2, PASS2)
        st = c.ok('STATUS INBOX (MESSAGES UNSEEN UIDNEXT UIDVALIDITY)')
        line = b' '.join(x for x in st if isinstance(x, bytes))
        got = {k.decode(): int(v) for k, v in re.findall(rb'([A-Z]+) (\d+)', line)}
        self.assertEqual(got, {'MESSAGES': len(uids), 'UNSEEN': len(unseen),
                               'UIDNEXT': self.uidnext, 'UIDVALIDITY': self.uidvalidity},
                         '%s: STATUS %r' % (what, st))
        for examine in (True, False):
            info = c.select('INBOX', examine=examine)
            with self.subTest(what=what, examine=examine):
                self.assertEqual(info['exists'], len(uids))
                self.assertEqual(info['uidnext'], self.uidnext)
                self.assertEqual(info['uidvalidity'], self.uidvalidity)
                self.assertEqual(info.get('unseen'), unseen[0] if unseen else None)
                self.assert_flag_list(info['flags'], STD + keywords)
                self.assert_flag_list(info['permanentflags'],
                                      [] if examine else STD + keywords + ['\\*'])
        # and the sequence numbers of that session are the model's
        res = c.fetch('1:*', '(UID FLAGS)') if uids else {}
        self.assertEqual([int(res[i][0]['UID']) for i in sorted(res)], uids, what)
        for i in sorted(res):
            got = {f for f in res[i][0]['FLAGS'] if f != '\\Recent'}
            self.assertEqual(got, self.model[uids[i - 1]], '%s: flags of seq %d' % (what, i))
        c.logout()
        # the session that stayed selected sees the same
        self.watcher.ok('NOOP')
        res = self.watcher.fetch('1:*', '(UID)') if uids else {}
        self.assertEqual([int(res[i][0]['UID']) for i in sorted(res)], uids, what)

    def test_changes_from_other_sessions_and_lmtp(self):
        self.check('empty')
        for i in range(6):
            self.append(seen=i % 2 == 0)
        self.check('appended')
        uids = sorted(self.model)
        self.store(uids[:3], '+', ['\\Seen'])
        self.check('seen set')
        self.store(uids[1:2], '-', ['\\Seen'])
        self.check('seen taken off')
        self.store(uids[4:5], '+', ['$Label1', 'Junk'])
        self.check('keywords set')
        self.deliver()
        self.check('delivered over LMTP')
        self.store([uids[4]], '', ['\\Flagged'])
        self.check('keywords gone with a STORE FLAGS')
        self.expunge(uids[:2])
        self.check('expunged')
        self.append(flags=['$Label2'])
        self.store(sorted(self.model), '+', ['\\Seen'])
        self.check('all seen')
        self.store(sorted(self.model), '-', ['\\Seen'])
        self.check('all unseen')
        self.expunge(sorted(self.model))
        self.check('all expunged')

    def test_restart(self):
        for i in range(4):
            self.append(seen=i == 1, flags=['$Restart'] if i == 2 else [])
        self.deliver()
        self.check('before the restart')
        self.changer.close()
        self.watcher.close()
        self.server.stop()
        self.server.start()
        self.changer = self.login(USER2, PASS2)
        self.changer.select('INBOX')
        self.watcher = self.login(USER2, PASS2)
        self.watcher.select('INBOX')
        self.check('after the restart')
        self.store(sorted(self.model)[:2], '+', ['\\Seen'])
        self.deliver()
        self.check('changed after the restart')


if __name__ == '__main__':
    harness.main()
