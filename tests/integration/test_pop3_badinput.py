"""POP3 bad input after login: unknown commands, arguments out of range or
malformed, 10,000 commands in one write, lines over the command limit and
over max_line_length. Each gets -ERR, the server keeps serving, and no
message is deleted. An over-long line is answered as soon as it passes the
limit, not at an end that may never come."""
import contextlib
import ssl

import harness
from harness import ServerTestCase, read_to_close, send_ignoring_close
import pop3_util as pu

MSGS = [pu.make_message(i, body_lines=10 + i) for i in range(3)]


class Pop3BadInput(ServerTestCase):
    CONF = {'max_bad_commands': '20'}
    users = 0

    def user(self):
        Pop3BadInput.users += 1
        addr = 'bad%d@example.org' % Pop3BadInput.users
        pu.setup_user(self.server, addr, MSGS)
        return addr

    def intact(self, addr):
        """All three messages still there, byte for byte."""
        with pu.session(self.server, addr, retry=True) as p:
            self.assertEqual(p.stat(), (3, sum(map(len, MSGS))))
            for n in range(1, 4):
                self.assertEqual(pu.retr_bytes(p, n), MSGS[n - 1])
        self.assertServerAlive()

    @contextlib.contextmanager
    def raw(self, addr=None, intact=True):
        """A raw session logged in to addr (a fresh account by default) for
        the block, closed after it; then, when intact, the account must still
        hold its three messages."""
        addr = addr or self.user()
        c = pu.raw_login(self.server, addr)
        try:
            yield c
        finally:
            c.close()
        if intact:
            self.intact(addr)

    def assertErr(self, c, cmd):
        """Sends the line cmd; it must be refused."""
        c.send(cmd + '\r\n')
        r = c.line()
        self.assertTrue(r.startswith('-ERR'), '%s -> %r' % (cmd[:40], r))

    def test_unknown_and_out_of_range(self):
        addr = self.user()
        with self.raw(addr, intact=False) as c:
            bad = ['FROB', 'APOP %s 0123456789abcdef0123456789abcdef' % addr, 'USER x',
                   'STLS', 'RETR', 'RETR 0', 'RETR 4', 'RETR -1', 'RETR 1 2', 'RETR x',
                   'RETR 99999999999999999999999', 'RETR 18446744073709551617',
                   'TOP 1', 'TOP 1 -1', 'TOP 0 1', 'TOP 1 x', 'LIST 0', 'LIST 4',
                   'LIST 1 1', 'UIDL 9', 'UIDL  1', 'DELE 4', 'DELE', 'STAT 1', 'RSET 1']
            # fewer than max_bad_commands of them count as bad commands
            for cmd in bad:
                self.assertErr(c, cmd)
            c.send('STAT\r\n')
            self.assertEqual(c.line(), '+OK 3 %d' % sum(map(len, MSGS)))
            c.send('DELE 2\r\nDELE 2\r\nRETR 2\r\nQUIT\r\n')
            self.assertTrue(c.line().startswith('+OK'))
            self.assertTrue(c.line().startswith('-ERR'))
            self.assertTrue(c.line().startswith('-ERR'))
            self.assertTrue(c.line().startswith('+OK'))
        with pu.session(self.server, addr, retry=True) as p:
            self.assertEqual(p.stat()[0], 2)
            self.assertEqual(pu.retr_bytes(p, 2), MSGS[2])

    def test_too_many_bad_commands_disconnects(self):
        with self.raw() as c:
            c.send('DELE 1\r\n')
            self.assertTrue(c.line().startswith('+OK'))
            # the server may close before all was sent
            send_ignoring_close(c, ''.join('FROB %d\r\n' % i for i in range(10000)))
            try:
                data = c.read_until_eof(timeout=30)
            except (ConnectionResetError, ssl.SSLError):
                data = c.buf
            lines = data.split(b'\r\n')
            # closed after max_bad_commands (the tail of the replies may be
            # lost to the TCP reset caused by the unread input)
            self.assertTrue(lines[0].startswith(b'-ERR'), data[:200])
            self.assertLessEqual(len([l for l in lines if l.startswith(b'-ERR')]), 21)
            self.assertFalse([l for l in lines if l and not l.startswith(b'-ERR')],
                             data[:500])
        # closed without QUIT: the DELE did not happen (raw() checks)

    def test_ten_thousand_commands_in_one_write(self):
        with self.raw() as c:
            payload = ''.join('LIST %d\r\nUIDL %d\r\n' % (i % 3 + 1, i % 3 + 1)
                              for i in range(5000))
            # one write (about 100 KB: the kernel buffers hold it while the
            # server answers; an SSL socket must not be used from two threads)
            c.send(payload + 'STAT\r\n')
            for i in range(5000):
                n = i % 3 + 1
                self.assertEqual(c.line(), '+OK %d %d' % (n, len(MSGS[n - 1])))
                self.assertTrue(c.line().startswith('+OK %d ' % n))
            self.assertTrue(c.line().startswith('+OK 3 '))
            c.send('DELE 1\r\n')
            self.assertTrue(c.line().startswith('+OK'))

    def test_ten_thousand_retr_pipelined(self):
        # output back-pressure: far more output than the write queue holds
        with self.raw() as c:
            c.send('RETR 2\r\n' * 10000)
            for _ in range(10000):
                self.assertEqual(c.line(), '+OK %d octets' % len(MSGS[1]))
                self.assertEqual(b''.join(l + b'\r\n' for l in pu.read_multi(c)), MSGS[1])

    def test_command_over_limit(self):
        with self.raw() as c:
            self.assertErr(c, 'LIST ' + '1' * 300)
            self.assertErr(c, 'DELE ' + ' ' * 260 + '1')
            c.send('STAT\r\n')
            self.assertTrue(c.line().startswith('+OK 3 '))

    def test_long_line_answered_before_its_end(self):
        # 10 kB without CRLF: -ERR at once (it came only with the CRLF);
        # the rest of the line is skipped and the session goes on
        with self.raw() as c:
            c.send('LIST ' + '1' * 10000)
            r = c.line()   # no CRLF sent yet
            self.assertTrue(r.startswith('-ERR'), r)
            c.send('1' * 1000 + '\r\nSTAT\r\n')
            self.assertTrue(c.line().startswith('+OK 3 '))

    def test_100kb_line_answered_before_its_end_then_closed(self):
        # past max_line_length: the -ERR, then the close
        with self.raw() as c:
            c.send('DELE 1\r\n')
            self.assertTrue(c.line().startswith('+OK'))
            send_ignoring_close(c, b'x' * (100 << 10))
            self.assertTrue(c.line().startswith('-ERR'))
            data = read_to_close(c, 30)
            self.assertNotIn(b'+OK', data)

    def test_line_over_max_line_length(self):
        with self.raw() as c:
            c.send('DELE 1\r\n')
            self.assertTrue(c.line().startswith('+OK'))
            send_ignoring_close(c, b'x' * (1 << 20) + b'\r\nQUIT\r\n')
            data = read_to_close(c, 30)
            self.assertTrue(data.startswith(b'-ERR'), data[:200])
            self.assertNotIn(b'+OK', data)


if __name__ == '__main__':
    harness.main()
