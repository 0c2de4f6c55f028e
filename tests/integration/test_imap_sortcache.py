"""SORT and THREAD of a mailbox that changes between them: the orders
coffred keeps in memory per mailbox (mail_sort_cache) follow appends and
expunges made by the same session, by another session, by an LMTP
delivery and (coffre only) by coffrectl mailbox repair, another process;
each SORT must equal the order computed here from the messages there."""
import os
import re
import unittest

import lmtp_util
from imap_util import ImapCase, AGAINST_DOVECOT, USER, user_maildir

SUBJECTS = ['delta', 'alpha', 'Charlie', 'bravo', 'alpha', 'echo', 'zulu', 'Kilo', 'mike']


def message(i):
    subject = SUBJECTS[(i * 5) % len(SUBJECTS)]
    date = '%02d Mar 2021 %02d:%02d:00 +0000' % (1 + i % 27, (i * 7) % 24, i % 60)
    return subject, ('From: Sender <u%02d@example.net>\r\nTo: %s\r\nSubject: %s\r\n'
                     'Date: %s\r\nMessage-ID: <sc%d@example.net>\r\n\r\nbody %d\r\n'
                     % ((i * 3) % 17, USER, subject, date, i, i)).encode(), (
                         (1 + i % 27) * 1440 + ((i * 7) % 24) * 60 + i % 60)


class SortCacheTest(ImapCase):

    def setUp(self):
        self.c, _ = self.selected()
        self.other, _ = self.selected()
        self.model = {}  # uid -> (subject, from key, date minutes)
        self.n = 0
        # each test starts from an empty INBOX
        self.c.ok('UID STORE 1:* +FLAGS.SILENT (\\Deleted)')
        self.c.ok('UID EXPUNGE 1:*')

    def add(self, via):
        i = self.n = self.n + 1
        subject, m, date = message(i)
        if via == 'lmtp':
            c = lmtp_util.lmtp(self.server)
            rcpt, replies = lmtp_util.send(c, 'sender@example.net', [USER], m)
            c.quit()
            self.assertEqual(replies[0][0], 250)
        else:
            via.append('INBOX', m)
        return i, subject, m, date

    def refresh_model(self, added):
        """UIDs of the added messages from their Message-IDs."""
        self.c.ok('NOOP')
        u, t = self.c.cmd('UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])')
        self.assertOK(t)
        uids = {}
        for line in u:
            m = re.search(rb'UID (\d+).*<sc(\d+)@', line, re.S)
            if m:
                uids[int(m.group(2))] = int(m.group(1))
        for i, subject, m, date in added:
            frm = 'U%02d' % ((i * 3) % 17)
            self.model[uids[i]] = (subject.upper(), frm, date)
        for uid in list(self.model):
            if uid not in uids.values():
                del self.model[uid]

    def check(self, when):
        self.c.ok('NOOP')
        for crit, key, rev in (('SUBJECT', 0, False), ('REVERSE SUBJECT', 0, True),
                               ('FROM', 1, False), ('DATE', 2, False),
                               ('REVERSE DATE', 2, True)):
            # equal keys in UID order, REVERSE or not (RFC 5256)
            groups = {}
            for u in sorted(self.model):
                groups.setdefault(self.model[u][key], []).append(u)
            want = [u for k in sorted(groups, reverse=rev) for u in groups[k]]
            u, t = self.c.cmd('UID SORT (%s) UTF-8 ALL' % crit)
            self.assertOK(t)
            got = [int(x) for r in u if r.startswith(b'* SORT') for x in r[6:].split()]
            self.assertEqual(got, want, '%s: UID SORT (%s)' % (when, crit))

    def test_changes_between_sorts(self):
        added = [self.add(self.c) for _ in range(20)]
        self.refresh_model(added)
        self.check('first')
        self.check('again')

        added = [self.add(self.other) for _ in range(4)]
        self.refresh_model(added)
        self.check('after appends of another session')

        uids = sorted(self.model)
        gone = '%d,%d,%d' % (uids[2], uids[6], uids[20])
        self.other.ok('UID STORE %s +FLAGS.SILENT (\\Deleted)' % gone)
        self.other.ok('UID EXPUNGE %s' % gone)
        self.refresh_model([])
        self.check('after expunges of another session')

        added = [self.add(self.c) for _ in range(3)]
        uids = sorted(self.model)
        gone = '%d,%d' % (uids[0], uids[-1])
        self.c.ok('UID STORE %s +FLAGS.SILENT (\\Deleted)' % gone)
        self.c.ok('UID EXPUNGE %s' % gone)
        self.refresh_model(added)
        self.check('after appends and expunges of this session')

        added = [self.add('lmtp') for _ in range(3)]
        self.refresh_model(added)
        self.check('after LMTP deliveries')

    @unittest.skipIf(AGAINST_DOVECOT, 'coffrectl is coffre\'s')
    def test_expunges_of_another_process(self):
        added = [self.add(self.c) for _ in range(15)]
        self.refresh_model(added)
        self.check('first')
        # message files removed behind the server; coffrectl mailbox repair
        # takes them out of the index from a process of its own
        md = user_maildir(self.server, USER)
        gone = 0
        for sub in ('cur', 'new'):
            for f in sorted(os.listdir(os.path.join(md, sub))):
                p = os.path.join(md, sub, f)
                with open(p, 'rb') as fh:
                    m = re.search(rb'<sc(\d+)@', fh.read())
                if m and int(m.group(1)) % 4 == 0:
                    os.unlink(p)
                    gone += 1
        self.assertGreater(gone, 2)
        rc, out, err = self.server.ctl('mailbox', 'repair', USER)
        self.assertEqual(rc, 0, err)
        self.refresh_model([])
        self.assertEqual(len(self.model), 15 - gone)
        self.check('after coffrectl mailbox repair')
        added = [self.add(self.other) for _ in range(2)]
        self.refresh_model(added)
        self.check('then appends')


if __name__ == '__main__':
    unittest.main()
