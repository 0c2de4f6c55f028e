"""Two sessions on one mailbox (RFC 3501 5.2, 7.4.1; RFC 2177 IDLE):
deliveries (LMTP and APPEND) and another session's STORE, EXPUNGE and MOVE
reach a session in IDLE within 1 second each (a read with a 1 s timeout per
expected untagged response), with the right sequence numbers; outside IDLE
they come at the next command, never an EXPUNGE during FETCH, STORE or
SEARCH; \\Recent is given to exactly one session."""
import re
import smtplib
import socket

import harness
import imap_util
from imap_util import ImapCase, Imap, USER, PASS, make_message

STEP = 1.0     # the requirement: each change within one second


class Sessions(ImapCase):

    def setUp(self):
        # a fresh mailbox per test
        self.box = 'S-' + self._testMethodName[-20:]
        c = self.login()
        c.cmd('DELETE %s' % imap_util.quote(self.box))
        c.ok('CREATE %s' % imap_util.quote(self.box))
        self.uids = []
        for i in range(1, 6):
            r = c.append(self.box, make_message(i))
            self.uids.append(r[1] if r else None)
        c.logout()

    def idle(self, c):
        c.idle()

    def done(self, c):
        return c.done()

    def expect(self, c, patterns):
        """Reads untagged responses, each within STEP seconds, until every
        pattern in order has matched one; returns the lines read. A line
        matching none of them must be allowed by `also` patterns."""
        seen = []
        for p in patterns:
            while True:
                try:
                    r = c.line(timeout=STEP)
                except socket.timeout:
                    self.fail('no %r within %.1f s; got %r' % (p, STEP, seen))
                seen.append(r)
                if re.match(p, r):
                    break
                # allowed noise: RECENT, FETCH FLAGS of \Recent, OK keepalive,
                # FLAGS and PERMANENTFLAGS when a new keyword appears
                self.assertRegex(r, rb'^\* (\d+ RECENT|OK|\d+ FETCH|FLAGS)', 'unexpected %r while '
                                 'waiting for %r' % (r, p))
        return seen

    def other(self):
        o = self.login()
        o.select(self.box)
        return o

    def two_sessions(self, idle=False):
        """A session with the mailbox selected (in IDLE when idle), and the
        other() that changes it."""
        c = self.login()
        c.select(self.box)
        if idle:
            self.idle(c)
        return c, self.other()

    def test_append_by_other_session_in_idle(self):
        c = self.login()
        self.assertEqual(c.select(self.box)['exists'], 5)
        self.idle(c)
        o = self.login()
        o.append(self.box, make_message(6))
        self.expect(c, [rb'^\* 6 EXISTS$'])
        o.append(self.box, make_message(7))
        o.append(self.box, make_message(8))
        self.expect(c, [rb'^\* [78] EXISTS$'])
        lines = self.done(c)
        # the final count is right
        res = c.fetch('1:*', '(UID)')
        self.assertEqual(sorted(res), list(range(1, 9)))

    def test_lmtp_delivery_in_idle(self):
        c = self.login()
        n = c.select('INBOX')['exists']
        self.idle(c)
        with smtplib.LMTP(harness.HOST, self.server.ports['lmtp'], timeout=20) as l:
            refused = l.sendmail('sender@example.net', [USER], make_message(99, to=USER))
            self.assertEqual(refused, {})
        self.expect(c, [rb'^\* %d EXISTS$' % (n + 1)])
        self.done(c)
        res = c.fetch('%d' % (n + 1), '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
        self.assertIn(b'message 99', list(res.values())[0][0]['BODY[HEADER.FIELDS (SUBJECT)]'])

    def test_store_by_other_session_in_idle(self):
        c, o = self.two_sessions(idle=True)
        o.ok('STORE 2 +FLAGS.SILENT (\\Flagged)')
        seen = self.expect(c, [rb'^\* 2 FETCH \(.*FLAGS \(.*\\Flagged'])
        o.ok('UID STORE %d +FLAGS.SILENT (\\Seen $Work)' % self.uids[3])
        seen = self.expect(c, [rb'^\* 4 FETCH \((?=.*\\Seen)(?=.*\$Work).*\)$'])
        self.done(c)

    def test_expunge_by_other_session_in_idle(self):
        c, o = self.two_sessions(idle=True)
        o.ok('STORE 2,4 +FLAGS.SILENT (\\Deleted)')
        o.ok('EXPUNGE')
        # 2 then (renumbered) 3, or 4 then 2: both describe removing 2 and 4
        seen = self.expect(c, [rb'^\* [234] EXPUNGE$', rb'^\* [234] EXPUNGE$'])
        ex = [int(x.split()[1]) for x in seen if x.endswith(b'EXPUNGE')]
        self.assertIn(ex, ([2, 3], [4, 2]), seen)
        self.done(c)
        res = c.fetch('1:*', '(UID)')
        self.assertEqual([int(res[k][0]['UID']) for k in sorted(res)],
                         [self.uids[0], self.uids[2], self.uids[4]])

    def test_move_by_other_session_in_idle(self):
        c, o = self.two_sessions(idle=True)
        o.ok('MOVE 1 Trash')
        self.expect(c, [rb'^\* 1 EXPUNGE$'])
        o.ok('UID MOVE %d Trash' % self.uids[4])
        self.expect(c, [rb'^\* 4 EXPUNGE$'])
        self.done(c)
        res = c.fetch('1:*', '(UID)')
        self.assertEqual([int(res[k][0]['UID']) for k in sorted(res)], self.uids[1:4])

    def test_changes_in_sequence_in_idle(self):
        # append, flag, expunge and move one after another, each seen within 1 s
        c, o = self.two_sessions(idle=True)
        o.append(self.box, make_message(6))
        self.expect(c, [rb'^\* 6 EXISTS$'])
        o.ok('NOOP')
        o.ok('STORE 6 +FLAGS.SILENT (\\Answered)')
        self.expect(c, [rb'^\* 6 FETCH \(.*\\Answered'])
        o.ok('STORE 3 +FLAGS.SILENT (\\Deleted)')
        self.expect(c, [rb'^\* 3 FETCH \(.*\\Deleted'])
        o.ok('EXPUNGE')
        self.expect(c, [rb'^\* 3 EXPUNGE$'])
        o.ok('MOVE 5 Trash')     # was 6 before the expunge
        self.expect(c, [rb'^\* 5 EXPUNGE$'])
        self.done(c)
        res = c.fetch('1:*', '(UID)')
        self.assertEqual(len(res), 4)

    def test_no_expunge_during_fetch_store_search(self):
        c, o = self.two_sessions()
        o.ok('STORE 1 +FLAGS.SILENT (\\Deleted)')
        o.ok('EXPUNGE')
        for cmd in ('FETCH 1:* (FLAGS)', 'STORE 1 +FLAGS.SILENT (\\Seen)', 'SEARCH ALL'):
            with self.subTest(cmd=cmd):
                u = c.ok(cmd)
                self.assertEqual(imap_util.untagged_of(u, 'EXPUNGE'), [], u)
        # FETCH still sees 5 messages: message 1 is gone but its number stays
        # until the EXPUNGE can be sent
        u = c.ok('NOOP')
        self.assertEqual(imap_util.untagged_of(u, 'EXPUNGE'), [b'* 1 EXPUNGE'], u)
        self.assertEqual(len(c.fetch('1:*', '(UID)')), 4)

    def test_uid_commands_may_carry_expunge(self):
        c, o = self.two_sessions()
        o.ok('STORE 5 +FLAGS.SILENT (\\Deleted)')
        o.ok('EXPUNGE')
        u = c.ok('UID FETCH 1:* (FLAGS)')
        # allowed either way; after the command or the next NOOP, it is there
        ex = imap_util.untagged_of(u, 'EXPUNGE') + imap_util.untagged_of(c.ok('NOOP'), 'EXPUNGE')
        self.assertEqual(ex, [b'* 5 EXPUNGE'])

    def test_exists_at_next_command(self):
        c = self.login()
        c.select(self.box)
        o = self.login()
        o.append(self.box, make_message(6))
        u = c.ok('NOOP')
        self.assertIn(b'* 6 EXISTS', u)
        o.append(self.box, make_message(7))
        u = c.ok('FETCH 1 (FLAGS)')
        # EXISTS may come with any command
        u += c.ok('NOOP')
        self.assertIn(b'* 7 EXISTS', u)

    def test_recent_in_exactly_one_session(self):
        a = self.login()
        a.select(self.box)
        b = self.login()
        b.select(self.box)
        o = self.login()
        o.append(self.box, make_message(6))
        ua = a.ok('NOOP')
        ub = b.ok('NOOP')
        self.assertIn(b'* 6 EXISTS', ua)
        self.assertIn(b'* 6 EXISTS', ub)
        fa = a.fetch('6', '(FLAGS)')[6][0]['FLAGS']
        fb = b.fetch('6', '(FLAGS)')[6][0]['FLAGS']
        self.assertEqual(('\\Recent' in fa) + ('\\Recent' in fb), 1, (fa, fb))
        # a third session selecting later sees it not recent
        d = self.login()
        info = d.select(self.box)
        self.assertEqual(info['recent'], 0)

    def test_uidnext_uidvalidity_after_operations(self):
        c = self.login()
        info = c.select(self.box)
        uv, nxt = info['uidvalidity'], info['uidnext']
        self.assertEqual(nxt, max(self.uids) + 1)
        r = c.append(self.box, make_message(6))
        self.assertEqual(r, (uv, nxt))
        c.ok('STORE 1:* +FLAGS.SILENT (\\Deleted)')
        c.ok('EXPUNGE')
        info = c.select(self.box)
        self.assertEqual(info['uidvalidity'], uv)
        self.assertEqual(info['uidnext'], nxt + 1)
        self.assertEqual(info['exists'], 0)
        u = c.ok('STATUS %s (UIDNEXT UIDVALIDITY MESSAGES)' % imap_util.quote(self.box))
        self.assertRegex(u[0], rb'(?=.*UIDNEXT %d)(?=.*UIDVALIDITY %d)(?=.*MESSAGES 0)'
                         % (nxt + 1, uv))
        # a deleted and re-created mailbox gets a new UIDVALIDITY
        c.ok('UNSELECT')
        c.ok('DELETE %s' % imap_util.quote(self.box))
        c.ok('CREATE %s' % imap_util.quote(self.box))
        info = c.select(self.box)
        self.assertNotEqual(info['uidvalidity'], uv)


if __name__ == '__main__':
    harness.main()
