"""IMAP NOTIFY (RFC 5465): NOTIFY SET [STATUS] and NOTIFY NONE; STATUS
pushed for other mailboxes as LMTP deliveries, APPENDs and other
sessions' changes happen, to a session that runs no command (no IDLE,
no NOOP: what it reads is pushed, never polled for); the selected
mailbox's new messages (with the FETCH attributes MessageNew names),
expunges and flag changes from another session, and SELECTED-DELAYED
holding expunges until a command allows them; MailboxName and
SubscriptionChange as LIST; the errors the RFC asks for (BAD for the
rules of section 5, NO [BADEVENT] for an event not offered). The RFC's
examples are here with their syntax as the grammar of section 8 has it."""
import re
import socket
import time

import harness
import imap_util
import lmtp_util
from imap_util import ImapCase, make_message, quote, USER

WAIT = 10  # seconds: a generous bound on a push; never a measured duration

STATUS_RE = re.compile(rb'^\* STATUS (?:"((?:[^"\\]|\\.)*)"|(\S+)) \((.*)\)$', re.I)


def status_of(r):
    """(name, {ITEM: int}) of a STATUS response, or None."""
    m = STATUS_RE.match(r)
    if not m:
        return None
    name = (m.group(1) if m.group(1) is not None else m.group(2)).decode()
    words = m.group(3).split()
    return name, {words[i].decode().upper(): int(words[i + 1]) for i in range(0, len(words), 2)}


def wait_for(c, pred, timeout=WAIT):
    """Reads responses until pred(response) holds: all of them, the last
    the one that matched. Fails after timeout seconds without it."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError('nothing matched within %ds; read %r' % (timeout, got))
        try:
            r = c.line(timeout=left)
        except socket.timeout:
            continue
        got.append(r)
        if pred(r):
            return got


def status_for(name, **want):
    def pred(r):
        st = status_of(r)
        return st is not None and st[0] == name and all(
            st[1].get(k.upper()) == v for k, v in want.items())
    return pred


def deliver(server, folder, subject):
    """One LMTP delivery to USER's folder (a detail: user+folder@domain)."""
    local, domain = USER.split('@')
    rcpt = '%s+%s@%s' % (local, folder, domain) if folder != 'INBOX' else USER
    l = lmtp_util.lmtp(server)
    try:
        rc, replies = lmtp_util.send(l, 'sender@example.net', [rcpt],
                                     make_message(1, subject=subject))
        assert replies and replies[0][0] == 250, replies
    finally:
        l.close()


if imap_util.AGAINST_DOVECOT:
    class NotifyDovecot(imap_util.DovecotServer):
        """Dovecot delivering user+detail into folder detail, as coffred
        here."""

        def write_conf(self, path=None, lines=None):
            path = super().write_conf(path, lines)
            with open(path, 'a') as f:
                f.write('recipient_delimiter = +\nlmtp_save_to_detail_mailbox = yes\n')
            return path

    harness.Server = NotifyDovecot


# Dovecot 2.3 announces the selected mailbox's changes under NOTIFY only
# when it syncs it (a command, IDLE), not to a session at rest as RFC 5465
# 3.1 and 6.1.1 ask: the tests of those pushes run against coffred only.
SELECTED_PUSH = not imap_util.AGAINST_DOVECOT


class Notify(ImapCase):
    CONF = {'lmtp_save_to_detail_mailbox': 'yes'}

    FOLDERS = ('N1', 'N2', 'N3', 'Outside', 'Lists', 'Lists/Lemonade', 'Lists/Im2000',
               'Sel', 'Delayed', 'Other', 'misc')

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = imap_util.Imap(cls.server.raw('imaps', tls=True))
        try:
            c.login()
            for f in cls.FOLDERS:
                c.ok('CREATE %s' % quote(f))
            for i in range(3):
                c.append('Sel', make_message(i, subject='sel %d' % i))
                c.append('Delayed', make_message(i, subject='delayed %d' % i))
            c.append('Lists/Lemonade', make_message(9, subject='lemonade'))
            c.logout()
        finally:
            c.close()

    def test_capability(self):
        c = self.login()
        u = c.ok('CAPABILITY')
        self.assertIn(b' NOTIFY', u[0])

    def test_three_folders_without_selection(self):
        """The issue's case: no mailbox selected, NOTIFY on three folders,
        a delivery into each announced by STATUS with no command sent."""
        c = self.login()
        u = c.ok('NOTIFY SET STATUS (mailboxes (N1 N2 N3) (MessageNew MessageExpunge))')
        counts = {name: st['MESSAGES'] for name, st in map(status_of, u)}
        self.assertEqual(set(counts), {'N1', 'N2', 'N3'})
        for folder in ('N1', 'N2', 'N3'):
            for k in range(2):
                counts[folder] += 1
                deliver(self.server, folder, '%s %d' % (folder, k))
                got = wait_for(c, status_for(folder, messages=counts[folder]))
                st = status_of(got[-1])[1]
                self.assertIn('UIDNEXT', st)
                for r in got:
                    self.assertRegex(r, rb'^\* STATUS ', 'only STATUS is pushed: %r' % r)
        c.ok('NOTIFY NONE')

    def test_burst_coalesced(self):
        """Deliveries one after the other into one folder: STATUS
        responses that only go up, the last with every message, and fewer
        of them than deliveries (imap_notify_interval: 200 ms here, while
        a delivery takes a few milliseconds)."""
        c = self.login()
        u = c.ok('NOTIFY SET STATUS (mailboxes N1 (MessageNew MessageExpunge))')
        n0 = status_of(u[0])[1]['MESSAGES']
        local, domain = USER.split('@')
        l = lmtp_util.lmtp(self.server)
        n = 20
        try:
            for i in range(n):
                rc, replies = lmtp_util.send(l, 'sender@example.net',
                                             ['%s+N1@%s' % (local, domain)],
                                             make_message(i, subject='burst %d' % i))
                self.assertEqual(replies[0][0], 250, replies)
        finally:
            l.close()
        got = wait_for(c, status_for('N1', messages=n0 + n))
        counts = [status_of(r)[1]['MESSAGES'] for r in got]
        self.assertEqual(counts, sorted(set(counts)), got)
        self.assertLess(len(got), n, got)
        c.ok('NOTIFY NONE')

    def test_outside_the_filters_nothing(self):
        c = self.login()
        c.ok('NOTIFY SET (mailboxes N1 (MessageNew MessageExpunge))')
        deliver(self.server, 'Outside', 'not watched')
        deliver(self.server, 'N1', 'watched')
        got = wait_for(c, status_for('N1'))
        for r in got:
            self.assertNotIn(b'Outside', r)
        c.ok('NOTIFY NONE')

    def test_notify_none_stops(self):
        c = self.login()
        c.ok('NOTIFY SET (mailboxes (N2 N3) (MessageNew MessageExpunge))')
        deliver(self.server, 'N2', 'before none')
        wait_for(c, status_for('N2'))
        c.ok('NOTIFY NONE')
        deliver(self.server, 'N2', 'after none')
        # a later NOTIFY for N3 alone: what comes before its STATUS is not
        # about N2
        c.ok('NOTIFY SET (mailboxes N3 (MessageNew MessageExpunge))')
        deliver(self.server, 'N3', 'n3')
        got = wait_for(c, status_for('N3'))
        for r in got:
            self.assertNotIn(b'N2', r)
        c.ok('NOTIFY NONE')

    def test_status_option(self):
        """NOTIFY SET STATUS: STATUS of each mailbox watched at once, with
        UIDVALIDITY, UIDNEXT and MESSAGES (RFC 5465 3.1)."""
        c = self.login()
        u = c.ok('NOTIFY SET STATUS (mailboxes (N1 Lists/Lemonade) (MessageNew MessageExpunge))')
        sts = dict(status_of(r) for r in u if status_of(r))
        self.assertEqual(set(sts), {'N1', 'Lists/Lemonade'})
        for name, st in sts.items():
            for k in ('UIDVALIDITY', 'UIDNEXT', 'MESSAGES'):
                self.assertIn(k, st, name)
        c.ok('NOTIFY NONE')

    def test_rfc_example(self):
        """RFC 5465 section 3.1's example."""
        c = self.login()
        u = c.ok('NOTIFY SET STATUS (selected (MessageNew (uid body.peek[header.fields '
                 '(from to subject)]) MessageExpunge)) (subtree Lists (MessageNew '
                 'MessageExpunge))')
        sts = dict(status_of(r) for r in u if status_of(r))
        self.assertEqual(set(sts), {'Lists', 'Lists/Lemonade', 'Lists/Im2000'})
        self.assertEqual(sts['Lists/Lemonade']['MESSAGES'], 1)
        self.assertEqual(sts['Lists/Im2000']['MESSAGES'], 0)
        for st in sts.values():
            self.assertIn('UIDVALIDITY', st)
            self.assertIn('UIDNEXT', st)
        info = c.select('INBOX')
        next_lemonade = sts['Lists/Lemonade']['UIDNEXT']
        deliver(self.server, 'Lists/Lemonade', 'to lemonade')
        got = wait_for(c, status_for('Lists/Lemonade', messages=2))
        self.assertGreater(status_of(got[-1])[1]['UIDNEXT'], next_lemonade)
        if not SELECTED_PUSH:
            return
        deliver(self.server, 'INBOX', 'Re: good morning')
        got = wait_for(c, lambda r: re.match(rb'^\* \d+ FETCH ', r) is not None)
        self.assertTrue(any(re.match(rb'^\* %d EXISTS' % (info['exists'] + 1), r)
                            for r in got), got)
        n, items, raw = imap_util.parse_fetch(got[-1])
        self.assertEqual(n, info['exists'] + 1)
        self.assertIn('UID', items)
        body = [v for k, v in items.items() if k.upper().startswith('BODY[HEADER.FIELDS')]
        self.assertEqual(len(body), 1, items)
        self.assertIn(b'Subject: Re: good morning', body[0])
        # the message is not \Seen: the attributes were a PEEK
        f = c.fetch('%d' % n, '(FLAGS)')
        self.assertNotIn('\\Seen', [str(x) for x in f[n][0]['FLAGS']])
        # and the example's end: STATUS then NOTIFY SET without STATUS
        c.ok('STATUS misc (UIDVALIDITY UIDNEXT MESSAGES)')
        u = c.ok('NOTIFY SET (selected (MessageNew (uid body.peek[header.fields (from to '
                 'subject)]) MessageExpunge)) (subtree Lists (MessageNew MessageExpunge)) '
                 '(mailboxes misc (MessageNew MessageExpunge))')
        self.assertFalse([r for r in u if status_of(r)], u)
        deliver(self.server, 'misc', 'misc')
        wait_for(c, status_for('misc', messages=1))
        c.ok('NOTIFY NONE')

    def test_selected_expunge_and_flags_from_another_session(self):
        if not SELECTED_PUSH:
            self.skipTest('Dovecot: no push for the selected mailbox at rest')
        a, info = self.selected('Sel')
        uids = sorted(a.fetch('1:*', '(UID)', uid=False).items())
        a.ok('NOTIFY SET (selected (MessageNew MessageExpunge FlagChange))')
        b, _ = self.selected('Sel')
        b.ok('STORE 1 +FLAGS.SILENT (\\Flagged)')
        got = wait_for(a, lambda r: re.match(rb'^\* 1 FETCH ', r) is not None)
        n, items, raw = imap_util.parse_fetch(got[-1])
        self.assertIn('\\Flagged', [str(x) for x in items['FLAGS']])
        self.assertEqual(int(items['UID']), int(uids[0][1][0]['UID']))
        b.ok('STORE 2 +FLAGS.SILENT (\\Deleted)')
        b.ok('EXPUNGE')
        wait_for(a, lambda r: r == b'* 2 EXPUNGE')
        b.append('Sel', make_message(7, subject='sel new'))
        wait_for(a, lambda r: r == b'* %d EXISTS' % info['exists'])
        a.ok('NOTIFY NONE')

    def test_selected_delayed_holds_expunges(self):
        """SELECTED-DELAYED: an EXPUNGE waits for a command that allows
        it; a STATUS of another mailbox pushed after the expunge shows it
        was held back (with SELECTED it would have come first)."""
        a, info = self.selected('Delayed')
        a.ok('NOTIFY SET (selected-delayed (MessageNew MessageExpunge)) '
             '(mailboxes Other (MessageNew MessageExpunge))')
        b, _ = self.selected('Delayed')
        b.ok('STORE 1 +FLAGS.SILENT (\\Deleted)')
        b.ok('EXPUNGE')
        deliver(self.server, 'Other', 'marker')
        got = wait_for(a, status_for('Other'))
        for r in got:
            self.assertNotRegex(r, rb'EXPUNGE')
        u = a.ok('NOOP')
        self.assertIn(b'* 1 EXPUNGE', u)
        a.ok('NOTIFY NONE')

    def test_mailbox_name(self):
        """MailboxName: LIST for a mailbox created, deleted (\\NonExistent)
        and renamed (OLDNAME) by another session."""
        a = self.login()
        a.ok('NOTIFY SET (personal (MailboxName))')
        b = self.login()
        b.ok('CREATE Made')
        got = wait_for(a, lambda r: r.startswith(b'* LIST') and b'Made' in r)
        self.assertNotIn(b'\\NonExistent', got[-1])
        b.ok('RENAME Made Renamed')
        got = wait_for(a, lambda r: r.startswith(b'* LIST') and b'Renamed' in r)
        self.assertRegex(got[-1], rb'"?OLDNAME"? \("?Made"?\)')
        b.ok('DELETE Renamed')
        got = wait_for(a, lambda r: r.startswith(b'* LIST') and b'Renamed' in r)
        self.assertIn(b'\\NonExistent', got[-1])
        a.ok('NOTIFY NONE')

    def test_subscription_change(self):
        """RFC 5465 section 6's first example, SubscriptionChange."""
        a = self.login()
        a.ok('NOTIFY SET (mailboxes INBOX (Messagenew messageExpunge)) '
             '(personal (SubscriptionChange))')
        b = self.login()
        b.ok('SUBSCRIBE N1')
        got = wait_for(a, lambda r: r.startswith(b'* LIST') and b'N1' in r)
        self.assertIn(b'\\Subscribed', got[-1])
        b.ok('UNSUBSCRIBE N1')
        got = wait_for(a, lambda r: r.startswith(b'* LIST') and b'N1' in r)
        self.assertNotIn(b'\\Subscribed', got[-1])
        a.ok('NOTIFY NONE')

    def test_rfc_section6_second_example(self):
        c, _ = self.selected('INBOX')
        c.ok('NOTIFY SET (selected (Messagenew (uid flags) messageExpunge)) '
             '(personal (MessageNew FlagChange MessageExpunge))')
        deliver(self.server, 'N3', 'personal')
        wait_for(c, status_for('N3'))
        c.ok('NOTIFY NONE')

    def test_in_idle(self):
        """RFC 5465 4: during IDLE the same events: STATUS of another
        mailbox, and the selected mailbox's new message with its FETCH."""
        c, info = self.selected('Sel')
        c.ok('NOTIFY SET (selected (MessageNew (UID) MessageExpunge)) '
             '(mailboxes N2 (MessageNew MessageExpunge))')
        c.idle()
        deliver(self.server, 'N2', 'during idle')
        wait_for(c, status_for('N2'))
        b = self.login()
        b.append('Sel', make_message(5, subject='idle new'))
        got = wait_for(c, lambda r: re.match(rb'^\* \d+ FETCH .*UID', r) is not None)
        self.assertTrue(any(re.match(rb'^\* \d+ EXISTS', r) for r in got), got)
        c.done()
        c.ok('NOTIFY NONE')

    def test_errors(self):
        c = self.login()
        # RFC 5465 5: MessageNew and MessageExpunge together; FlagChange
        # with both (MUSTs Dovecot 2.3 does not check)
        rules = () if imap_util.AGAINST_DOVECOT else (
            'NOTIFY SET (personal (MessageNew))',
            'NOTIFY SET (personal (MessageExpunge))',
            'NOTIFY SET (personal (FlagChange))',
            'NOTIFY SET (selected (MailboxName))',
            'NOTIFY SET (personal (MessageNew (UID) MessageExpunge))',
            'NOTIFY SET')
        for bad in rules + (
                    'NOTIFY SET (nosuchfilter (MessageNew MessageExpunge))',
                    'NOTIFY BOGUS'):
            st, t, u = c.status_of(bad)
            self.assertEqual(st, 'BAD', bad)
        # an event not offered: NO [BADEVENT (...)] naming those offered
        st, t, u = c.status_of('NOTIFY SET (selected (MessageNew MessageExpunge '
                               'AnnotationChange))')
        self.assertEqual(st, 'NO', t)
        # RFC 5465 8: "BADEVENT (event-name ...)", those supported (Dovecot
        # 2.3 names the unsupported one, without parentheses)
        self.assertRegex(t, rb'\[BADEVENT ' if imap_util.AGAINST_DOVECOT
                         else rb'\[BADEVENT \(MessageNew MessageExpunge FlagChange MailboxName '
                         rb'SubscriptionChange\)\]')
        c.ok('NOTIFY NONE')
        if not imap_util.AGAINST_DOVECOT:  # Dovecot 2.3 takes it
            st, t, u = c.status_of('NOTIFY NONE extra')
            self.assertEqual(st, 'BAD')


if __name__ == '__main__':
    harness.main()
