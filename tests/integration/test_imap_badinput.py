"""IMAP bad input: a 1 MB line, a literal announced at 10 GB, parentheses
nested 10,000 deep, bad sequence sets, invalid modified UTF-7 mailbox
names, unknown commands in every state, commands in the wrong state. Each
gets BAD or NO (or a BYE for the limits that cannot be resynchronized), and
after each one another session still logs in, selects and fetches.
A client that never reads its responses while a large FETCH is pending is
disconnected, and coffred's memory does not grow with it."""
import os
import re
import socket
import ssl
import subprocess
import time

import harness
import imap_util
from imap_util import ImapCase, Imap, USER, PASS, make_message, proc_rss_kb

MB = 1 << 20


def send_quietly(c, data):
    """Sends what the server lets us send; it may close the connection
    before a huge line is complete."""
    try:
        c.c.sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
        return False


class BadInput(ImapCase):
    CONF = {'max_bad_commands': '1000'}

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        for i in range(3):
            c.append('INBOX', make_message(i))
        c.logout()
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login(imap_util.USER2, imap_util.PASS2)
        c.append('INBOX', make_message(1))
        c.logout()

    def expect_refusal(self, c, tag, allow_bye=True):
        """Reads until the tagged reply of tag or a BYE and close; returns
        the final line. Fails on OK."""
        while True:
            try:
                r = c.line(timeout=20)
            except EOFError:
                self.fail('connection closed without BYE or a tagged reply')
            if r.startswith(tag.encode() + b' '):
                self.assertRegex(r, rb'^\S+ (BAD|NO)\b', r)
                return r
            if r.startswith(b'* BYE') and allow_bye:
                self.assertEqual(c.c.read_until_eof(timeout=20), b'')
                return r

    def long_line_refused(self, c, tag, line):
        """Sends a line over the limit: refused, and the session goes on
        (or a BYE and a close); another session still works."""
        send_quietly(c, line)
        r = self.expect_refusal(c, tag)
        if r.startswith(tag.encode()):
            c.ok('NOOP')
        self.assertAlive()

    # -- size limits ----------------------------------------------------

    def test_1mb_line_not_authenticated(self):
        self.long_line_refused(self.connect(), 'L1', b'L1 NOOP ' + b'x' * MB + b'\r\n')

    def test_1mb_line_selected(self):
        c = self.login()
        c.select('INBOX')
        self.long_line_refused(c, 'L2', b'L2 FETCH 1 (BODY.PEEK[HEADER.FIELDS (' +
                               b'X-A ' * (MB // 4) + b')])\r\n')

    def test_100kb_line_answered_before_its_end(self):
        # after login: '* BAD' as soon as the line passes max_line_length
        # (it came only at the CRLF), the command's BAD at its end
        c = self.login()
        c.send(b'W1 NOOP ' + b'x' * (100 << 10))
        r = c.line()   # no CRLF sent yet
        self.assertTrue(r.startswith(b'* BAD [TOOBIG]'), r)
        c.send(b'x' * 1000 + b'\r\n')
        r = c.line()
        self.assertTrue(r.startswith(b'W1 BAD [TOOBIG]'), r)
        c.ok('NOOP')
        self.assertAlive()

    def test_endless_line_gets_bye(self):
        # not skipped forever: past 4 x max_line_length, BYE and a close
        c = self.login()
        send_quietly(c, b'W2 NOOP ' + b'x' * (300 << 10))
        r = c.line()
        self.assertTrue(r.startswith(b'* BAD [TOOBIG]'), r)
        r = c.line()
        self.assertTrue(r.startswith(b'* BYE [TOOBIG]'), r)
        self.assertEqual(c.c.read_until_eof(timeout=20), b'')
        self.assertAlive()

    def test_100kb_line_before_login_gets_bye_at_once(self):
        c = self.connect()
        send_quietly(c, b'W3 LOGIN ' + b'x' * (100 << 10))
        r = c.line()   # no CRLF sent
        self.assertTrue(r.startswith(b'* BYE [TOOBIG]'), r)
        self.assertEqual(c.c.read_until_eof(timeout=20), b'')
        self.assertAlive()

    def test_literal_before_login_within_prelogin_limit(self):
        c = self.connect()
        c.send('W4 LOGIN {%d}\r\n' % (16 << 10))
        r = c.line()
        self.assertTrue(r.startswith(b'W4 NO [TOOBIG]'), r)
        c.login()
        self.assertAlive()

    def test_10gb_synchronizing_literal_append(self):
        c = self.login()
        c.send('G1 APPEND INBOX {10737418240}\r\n')
        r = c.line()
        self.assertFalse(r.startswith(b'+'), 'server asked for 10 GB: %r' % r)
        self.assertRegex(r, rb'^G1 (NO|BAD)')
        # the session goes on, nothing was appended
        info = c.select('INBOX')
        self.assertEqual(info['exists'], 3)
        self.assertAlive()

    def test_10gb_synchronizing_literal_login(self):
        c = self.connect()
        c.send('G2 LOGIN {10737418240}\r\n')
        r = c.line()
        self.assertFalse(r.startswith(b'+'), r)
        self.assertRegex(r, rb'^(G2 (NO|BAD)|\* BYE)')
        if r.startswith(b'G2'):
            c.login()
        self.assertAlive()

    def test_10gb_nonsynchronizing_literal(self):
        c = self.login()
        send_quietly(c, b'G3 APPEND INBOX {10737418240+}\r\n' + b'x' * 65536)
        # the data follows unasked: the server cannot resynchronize; BYE is right
        r = self.expect_refusal(c, 'G3')
        self.assertTrue(r.startswith(b'* BYE') or r.startswith(b'G3 '), r)
        self.assertAlive()
        c2 = self.login()
        self.assertEqual(c2.select('INBOX')['exists'], 3)

    def test_nesting_depth_10000(self):
        c = self.login()
        c.select('INBOX')
        for cmd in (b'N1 FETCH 1 ' + b'(' * 10000 + b'FLAGS' + b')' * 10000,
                    b'N2 SEARCH ' + b'(' * 10000 + b'ALL' + b')' * 10000,
                    b'N3 SEARCH ' + b'NOT ' * 10000 + b'ALL',
                    b'N4 SEARCH ' + b'OR 1 ' * 10000 + b'ALL',
                    b'N5 APPEND INBOX ' + b'(' * 10000 + b')' * 10000 + b' {1+}\r\nx'):
            with self.subTest(cmd=cmd[:12]):
                c.send(cmd + b'\r\n')
                tag = cmd.split(b' ')[0].decode()
                r = self.expect_refusal(c, tag, allow_bye=False)
                self.assertTrue(r.startswith(tag.encode()), r)
                c.ok('NOOP')
                self.assertAlive()
        self.assertEqual(c.select('INBOX')['exists'], 3)

    def rotating(self, every=5):
        """A selected session, replaced after `every` uses (servers may close
        a session after a number of invalid commands)."""
        state = {'c': None, 'n': 0}

        def get():
            if state['c'] is None or state['n'] >= every:
                if state['c'] is not None:
                    state['c'].ok('NOOP')
                    state['c'].close()
                state['c'] = self.login()
                state['c'].select('INBOX')
                state['n'] = 0
            state['n'] += 1
            return state['c']
        return get

    def test_bad_sequence_sets(self):
        conn = self.rotating()
        for s in ('0', '4294967296', '1:', ':1', '1,,2', '1:2:3', '-1', 'a', '1:0', '*:0',
                  '99999999999999999999', '1,'):
            for uid in ('', 'UID '):
                with self.subTest(set=s, uid=uid):
                    u, t = conn().cmd('%sFETCH %s (FLAGS)' % (uid, s))
                    self.assertRegex(t, rb'^T\d+ BAD', t)
                    self.assertEqual([x for x in u if b'FETCH' in x], [])
        self.refuse_each(conn, ('STORE 0 +FLAGS (\\Seen)', 'COPY 4294967296 INBOX', 'SEARCH 1:',
                                'UID SEARCH UID 0', 'MOVE 0 Trash', 'UID EXPUNGE 4294967296'),
                         rb'^T\d+ BAD')

    def refuse_each(self, conn, cmds, reply):
        """Each command in cmds, on a session from conn(), gets a tagged reply
        matching reply; then the session still answers NOOP and another one
        logs in, selects and fetches."""
        for cmd in cmds:
            with self.subTest(cmd=cmd):
                u, t = conn().cmd(cmd)
                self.assertRegex(t, reply, t)
        conn().ok('NOOP')
        self.assertAlive()

    def refuse_all(self, make, cmds, every=5, literals=()):
        """Each command in cmds gets BAD or NO on a session from make()
        (replaced every `every` commands), and after each one another
        session logs in, selects and fetches."""
        c = None
        # another user's session, kept open: it must be served after each
        other = self.login(imap_util.USER2, imap_util.PASS2)
        other.select('INBOX')
        for k, cmd in enumerate(cmds):
            if k % every == 0:
                if c is not None:
                    c.ok('NOOP')
                    c.close()
                c = make()
            with self.subTest(cmd=cmd):
                if isinstance(cmd, tuple):
                    u, t = c.cmd(*cmd)
                else:
                    u, t = c.cmd(cmd)
                self.assertRegex(t, rb'^T\d+ (BAD|NO)', t)
                other.ok('NOOP')
                self.assertEqual(len(other.fetch('1:*', '(UID FLAGS)')), 1)
        c.ok('NOOP')
        self.assertAlive()      # and a new session logs in, selects, fetches
        return c

    def test_invalid_modified_utf7(self):
        names = ['&Jjo', '&AGE-', '&-&', 'a&ZeVnLIqe', '&Jjo!-', '&2D0-', '&U,BTF2XlZyyKng',
                 '&AAA-', '&ZeVnLIqe-&AGE-']
        cmds = []
        for n in names:
            q = imap_util.quote(n)
            cmds += ['CREATE %s' % q, 'SELECT %s' % q, 'RENAME Sent %s' % q,
                     'STATUS %s (MESSAGES)' % q, ('APPEND %s {}' % q, make_message(1)),
                     'SUBSCRIBE %s' % q]
        c = self.refuse_all(self.login, cmds)
        u = c.ok('LIST "" "*"')
        listed = b'\n'.join(u)
        for n in names:
            self.assertNotIn(n.encode(), listed)
        self.assertIn(b'Sent', listed)

    def test_valid_modified_utf7_accepted(self):
        # the control: a well-formed name is taken
        c = self.login()
        c.ok('CREATE "&ZeVnLIqe-"')
        u = c.ok('LIST "" "&ZeVnLIqe-"')
        self.assertEqual(len(u), 1, u)
        c.ok('DELETE "&ZeVnLIqe-"')

    # -- commands and states ---------------------------------------------

    def test_unknown_commands_not_authenticated(self):
        c = self.refuse_all(self.connect, ('FROB', 'XYZZY 1 2 3', 'SELECT2 INBOX', 'X-LIST "" *',
                                           'UID FETCH 1 FLAGS'), every=2)
        c.login()

    def test_unknown_commands_authenticated(self):
        self.refuse_all(self.login, ('FROB', 'XYZZY 1 2 3', 'UID FROB 1', 'UID FETCHX 1 FLAGS'))

    def test_unknown_commands_selected(self):
        def sel():
            c = self.login()
            c.select('INBOX')
            return c
        c = self.refuse_all(sel, ('FROB', 'UID FROB 1', 'FETCHX 1 FLAGS', 'UID'))
        self.assertEqual(len(c.fetch('1:*', '(UID)')), 3)

    def test_wrong_state_not_authenticated(self):
        c = self.refuse_all(self.connect, (
            'SELECT INBOX', 'EXAMINE INBOX', 'CREATE x', 'DELETE x', 'RENAME a b',
            'SUBSCRIBE INBOX', 'UNSUBSCRIBE INBOX', 'LIST "" *', 'LSUB "" *',
            'STATUS INBOX (MESSAGES)', 'APPEND INBOX {1+}\r\nx', 'NAMESPACE',
            'ENABLE IMAP4rev1', 'CHECK', 'CLOSE', 'UNSELECT', 'EXPUNGE', 'SEARCH ALL',
            'FETCH 1 FLAGS', 'STORE 1 FLAGS ()', 'COPY 1 INBOX', 'MOVE 1 INBOX',
            'UID FETCH 1 FLAGS', 'IDLE'), every=2)
        c.login()

    def test_wrong_state_authenticated(self):
        c = self.refuse_all(self.login, (
            'LOGIN a b', 'AUTHENTICATE PLAIN', 'STARTTLS', 'CHECK', 'CLOSE', 'UNSELECT',
            'EXPUNGE', 'SEARCH ALL', 'FETCH 1 FLAGS', 'STORE 1 FLAGS ()',
            'COPY 1 INBOX', 'MOVE 1 INBOX', 'UID FETCH 1 FLAGS', 'UID EXPUNGE 1'))
        c.select('INBOX')

    def test_wrong_state_selected(self):
        def sel():
            c = self.login()
            c.select('INBOX')
            return c
        c = self.refuse_all(sel, ('LOGIN a b', 'AUTHENTICATE PLAIN', 'STARTTLS'))
        self.assertEqual(len(c.fetch('1:*', '(UID)')), 3)

    def test_garbage_arguments(self):
        self.refuse_each(self.rotating(),
                         ('FETCH', 'FETCH 1', 'FETCH 1 (FLAGS', 'FETCH 1 FLAGS)', 'STORE 1 FLAGS',
                          'STORE 1 XFLAGS (\\Seen)', 'STORE 1 +FLAGS (\\Bogus)', 'SEARCH',
                          'SEARCH FROB', 'SEARCH BEFORE 32-Jan-2020', 'SEARCH LARGER x',
                          'SEARCH CHARSET', 'SELECT', 'LIST', 'LIST ""', 'STATUS INBOX',
                          'STATUS INBOX (FROB)', 'APPEND', 'COPY 1', 'CREATE', 'RENAME INBOX',
                          'UID', 'UID STORE', 'ID (', 'ID ("a")', 'ENABLE',
                          'SELECT "unterminated', 'SELECT {5}x', 'NOOP extra', 'LOGOUT now'),
                         rb'^T\d+ (BAD|NO)')

    def test_nul_byte(self):
        c = self.login()
        c.send(b'Z1 SELECT "a\x00b"\r\n')
        self.expect_refusal(c, 'Z1')
        self.assertAlive()


class EdgeValues(ImapCase):
    """Values at the edge of what a command can carry: the largest number
    in a set, an empty set with a bad destination, tagged answers whose
    response code runs to kilobytes."""

    def fresh(self, c, name, n=0):
        c.cmd('DELETE %s' % name)
        c.ok('CREATE %s' % name)
        if n:
            c.ok('APPEND %s' % name + ' {}' * n,
                 *[make_message(i) for i in range(n)], plus=True)

    def test_largest_number_is_not_star(self):
        # 4294967295 is a number (RFC 3501 nz-number), not '*': it names no
        # message here, where '*' would name the newest one
        c = self.login()
        self.fresh(c, 'Edge', 3)
        c.select('Edge')
        self.assertOK(c.cmd('UID STORE 4294967295 +FLAGS (\\Deleted)')[1])
        untagged = c.ok('FETCH 1:* (FLAGS)')
        self.assertEqual(len(untagged), 3, untagged)
        self.assertFalse(any(b'\\Deleted' in u for u in untagged), untagged)
        self.assertBAD(c.cmd('STORE 4294967295 +FLAGS (\\Deleted)')[1])
        self.assertBAD(c.cmd('FETCH 4294967295 (FLAGS)')[1])
        self.assertEqual(c.ok('UID FETCH 4294967295 (FLAGS)'), [])
        # n:* always holds the last message (RFC 3501 6.4.8)
        last = c.ok('UID FETCH 4294967295:* (UID)')
        self.assertEqual(len(last), 1, last)
        self.assertRegex(last[0], rb'^\* 3 FETCH \(UID \d+\)')
        self.assertEqual(len(c.ok('UID FETCH 1:* (UID)')), 3)

    def test_empty_set_copy_checks_destination(self):
        # an empty set still needs a valid destination: RFC 3501 6.4.7 says
        # a server SHOULD refuse a missing one; Dovecot answers OK "No
        # messages found" without looking (checked only against coffred)
        c = self.login()
        self.fresh(c, 'Empty')
        c.select('Empty')
        for cmd in ('UID COPY', 'UID MOVE'):
            if not imap_util.AGAINST_DOVECOT:
                self.assertNO(c.cmd('%s 1:* No-Such' % cmd)[1], 'TRYCREATE', cmd)
                status, tagged, _ = c.status_of('%s 1:* "../x"' % cmd)
                self.assertEqual(status, 'NO', tagged)
            self.assertOK(c.cmd('%s 1:* INBOX' % cmd)[1], cmd)
        # "1:*" in an empty mailbox: nothing (coffre) or an invalid set
        # (Dovecot's BAD); RFC 3501 leaves '*' of an empty mailbox open.
        # Never OK towards a destination that cannot be.
        for cmd in ('COPY', 'MOVE'):
            for dst in ('No-Such', '"../x"'):
                status, tagged, _ = c.status_of('%s 1:* %s' % (cmd, dst))
                self.assertIn(status, ('NO', 'BAD'), tagged)

    def uid_code(self, tagged, code, what):
        """The UID sets of an APPENDUID or COPYUID code in a whole tagged
        line (the code closed, then the command's text)."""
        m = re.search(rb'\[' + code + rb' (\d+) ([\d:,]+)(?: ([\d:,]+))?\] [^\]]*$', tagged)
        self.assertIsNotNone(m, '%s: %r' % (what, tagged[-200:]))
        return [imap_util.parse_seqset(g.decode()) for g in m.groups()[1:] if g]

    def test_long_uid_codes_are_whole(self):
        c = self.login()
        self.fresh(c, 'Many')
        # 1,000 messages in one MULTIAPPEND: APPENDUID names all of them
        u, t = c.cmd('APPEND Many' + ' {}' * 1000,
                     *[make_message(i) for i in range(1000)], plus=True)
        self.assertOK(t)
        (uids,) = self.uid_code(t.rstrip(b'\r\n'), b'APPENDUID', 'APPEND')
        self.assertEqual(len(uids), 1000)
        # every other one copied: a COPYUID of 500 separate UIDs (kilobytes)
        c.select('Many')
        self.fresh(c, 'Half')
        seqs = ','.join(str(i) for i in range(1, 1001, 2))
        u, t = c.cmd('COPY %s Half' % seqs)
        self.assertOK(t)
        src, dst = self.uid_code(t.rstrip(b'\r\n'), b'COPYUID', 'COPY')
        self.assertEqual(src, [uids[i] for i in range(0, 1000, 2)])
        self.assertEqual(len(dst), 500)


class SlowReader(ImapCase):
    """A client that asks for a lot and never reads."""

    CONF = {'imap_output_timeout': '3s'}
    BIG = 4 * MB
    COPIES = 8

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        body = ('y' * 76 + '\r\n') * (cls.BIG // 78)
        for i in range(cls.COPIES):
            c.append('INBOX', make_message(i, body=body))
        c.logout()

    def test_never_reading_client_is_disconnected_memory_bounded(self):
        pid = self.server.proc.pid
        # warm up: one full FETCH that is read, so caches are in place
        c = self.login()
        c.select('INBOX')
        c.fetch('1:*', '(BODY.PEEK[])')
        c.logout()
        before = proc_rss_kb(pid)
        victims = []
        for k in range(3):
            # default socket buffers: a tiny SO_RCVBUF would let loopback's
            # 64 KB MSS stall the final drain on TCP's silly-window rules
            s = socket.create_connection((harness.HOST, self.server.ports['imaps']))
            s = self.server.ctx().wrap_socket(s, server_hostname='localhost')
            v = Imap(harness.Conn(s))
            v.login()
            v.select('INBOX')
            # ask for 8 x 4 MB, fifty times, and never read
            req = b''.join(b'S%d FETCH 1:* (BODY[])\r\n' % i for i in range(50))
            v.c.sock.sendall(req)
            victims.append(v)
        ports = ['127.0.0.1:%d' % v.c.sock.getsockname()[1] for v in victims]
        # let coffred fill what it will; its memory must not follow the
        # 1.6 GB asked for
        time.sleep(2)
        during = proc_rss_kb(pid)
        # while they are stuck, others are served
        self.assertAlive()
        # past imap_output_timeout (3 s), each stalled session is dropped:
        # what is left to read is bounded (socket buffers), then EOF
        time.sleep(4)
        for v in victims:
            try:
                rest = v.c.read_until_eof(timeout=30, limit=64 * MB)
            except socket.timeout:
                self.fail('a client that does not read was never disconnected')
            self.assertLess(len(rest), 64 * MB, 'still sending: not disconnected')
        # what coffred itself counts: the output it ever queued for each of
        # them stays near the back-pressure mark, far from the 1.6 GB asked
        peaks = {}
        deadline = time.time() + 10
        while len(peaks) < len(ports) and time.time() < deadline:
            for line in self.server.log().splitlines():
                m = re.search(r'remote=(\S+) user=\S+ closed .*queued_peak=(\d+)', line)
                if m and m.group(1) in ports:
                    peaks[m.group(1)] = int(m.group(2))
            time.sleep(0.1)
        self.assertEqual(sorted(peaks), sorted(ports), 'a stalled session was not closed')
        # the design's bound (protocol/imap/imap_steps.c): a step starts
        # while less than CONN_WRITE_HIGH (256 kB) is queued, and the step
        # before it is queued as the new one is made, so at most
        # CONN_WRITE_HIGH and two FETCH steps of IMAP_FETCH_STEP_BYTES
        # (1 MB) each, a step overshooting by one 128 kB read of a body
        bound = 256 * 1024 + 2 * (MB + 128 * 1024)
        for port, peak in peaks.items():
            self.assertLess(peak, bound, '%s: %d bytes queued at once' % (port, peak))
        if not harness.sanitized(self.server):
            # the process as a whole, where RSS means something (a sanitizer
            # build keeps freed memory in quarantine)
            self.assertLess(during - before, 50 * 1024,
                            'coffred RSS grew from %d kB to %d kB while clients did not read'
                            % (before, during))
            after = proc_rss_kb(pid)
            self.assertLess(after - before, 50 * 1024,
                            'coffred RSS grew from %d kB to %d kB' % (before, after))
        self.assertAlive()


class Limits(ImapCase):
    """Connections per user and address, quota, autologout minimum."""

    CONF = {'imap_max_connections_per_user_ip': '3'}

    def test_connections_per_user_and_ip(self):
        held = [self.login() for _ in range(3)]
        c = self.connect()
        st, t, u = None, None, None
        try:
            st, t, u = c.status_of('LOGIN %s %s' % (imap_util.quote(USER), imap_util.quote(PASS)))
        except EOFError:
            st = 'BYE'
        self.assertIn(st, ('NO', 'BYE'), t)
        # another account from the same address is not locked out
        o = self.login(imap_util.USER2, imap_util.PASS2)
        o.select('INBOX')
        # a slot freed is usable again
        held.pop().logout()
        deadline = time.monotonic() + 10
        while True:   # the server notices the close asynchronously
            c = self.connect()
            st, t, u = c.status_of('LOGIN %s %s' % (imap_util.quote(USER), imap_util.quote(PASS)))
            if st == 'OK' or time.monotonic() > deadline:
                break
            c.close()
        self.assertEqual(st, 'OK', t)

    def test_overquota(self):
        rc, out, err = self.server.ctl('user', 'quota', imap_util.USER2, '20k')
        self.assertEqual(rc, 0, err)
        c = self.login(imap_util.USER2, imap_util.PASS2)
        c.append('INBOX', make_message(1))
        st, t, u = c.status_of('APPEND INBOX {}', make_message(2, body='z' * 30000 + '\r\n'))
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[OVERQUOTA]', t)
        c.ok('NOOP')
        self.assertEqual(c.select('INBOX')['exists'], 1)
        rc, out, err = self.server.ctl('user', 'quota', imap_util.USER2, '0')
        self.assertEqual(rc, 0, err)

    def test_autologout_at_least_30_minutes(self):
        # RFC 3501 5.4: at least 30 minutes; a shorter setting is refused
        path = os.path.join(self.server.tmp, 'short.conf')
        self.server.write_conf(path, lines=['imap_idle_timeout = 29m'])
        r = subprocess.run([harness.COFFRED, '-c', path, '--check-config'],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        path = os.path.join(self.server.tmp, 'ok.conf')
        self.server.write_conf(path, lines=['imap_idle_timeout = 31m'])
        r = subprocess.run([harness.COFFRED, '-c', path, '--check-config'],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == '__main__':
    harness.main()
