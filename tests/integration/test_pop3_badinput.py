"""POP3 bad input after login: unknown commands, arguments out of range or
malformed, 10,000 commands in one write, lines over the command limit and
over max_line_length. Each gets -ERR, the server keeps serving, and no
message is deleted."""
import socket
import ssl

import harness
from harness import ServerTestCase, close_quietly
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
        p = pu.login_retry(self.server, addr)
        try:
            self.assertEqual(p.stat(), (3, sum(map(len, MSGS))))
            for n in range(1, 4):
                self.assertEqual(pu.retr_bytes(p, n), MSGS[n - 1])
            pu.quit(p)
        finally:
            close_quietly(p)
        self.assertServerAlive()

    def test_unknown_and_out_of_range(self):
        addr = self.user()
        c = pu.raw_login(self.server, addr)
        try:
            bad = ['FROB', 'APOP %s 0123456789abcdef0123456789abcdef' % addr, 'USER x',
                   'STLS', 'RETR', 'RETR 0', 'RETR 4', 'RETR -1', 'RETR 1 2', 'RETR x',
                   'RETR 99999999999999999999999', 'RETR 18446744073709551617',
                   'TOP 1', 'TOP 1 -1', 'TOP 0 1', 'TOP 1 x', 'LIST 0', 'LIST 4',
                   'LIST 1 1', 'UIDL 9', 'UIDL  1', 'DELE 4', 'DELE', 'STAT 1', 'RSET 1']
            # fewer than max_bad_commands of them count as bad commands
            for cmd in bad:
                c.send(cmd + '\r\n')
                r = c.line()
                self.assertTrue(r.startswith('-ERR'), '%s -> %r' % (cmd, r))
            c.send('STAT\r\n')
            self.assertEqual(c.line(), '+OK 3 %d' % sum(map(len, MSGS)))
            c.send('DELE 2\r\nDELE 2\r\nRETR 2\r\nQUIT\r\n')
            self.assertTrue(c.line().startswith('+OK'))
            self.assertTrue(c.line().startswith('-ERR'))
            self.assertTrue(c.line().startswith('-ERR'))
            self.assertTrue(c.line().startswith('+OK'))
        finally:
            c.close()
        p = pu.login_retry(self.server, addr)
        try:
            self.assertEqual(p.stat()[0], 2)
            self.assertEqual(pu.retr_bytes(p, 2), MSGS[2])
            pu.quit(p)
        finally:
            close_quietly(p)

    def test_too_many_bad_commands_disconnects(self):
        addr = self.user()
        c = pu.raw_login(self.server, addr)
        try:
            c.send('DELE 1\r\n')
            self.assertTrue(c.line().startswith('+OK'))
            try:
                c.send(''.join('FROB %d\r\n' % i for i in range(10000)))
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass   # closed by the server before all was sent
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
        finally:
            c.close()
        # closed without QUIT: the DELE did not happen
        self.intact(addr)

    def test_ten_thousand_commands_in_one_write(self):
        addr = self.user()
        c = pu.raw_login(self.server, addr)
        try:
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
        finally:
            c.close()
        self.intact(addr)

    def test_ten_thousand_retr_pipelined(self):
        # output back-pressure: far more output than the write queue holds
        addr = self.user()
        c = pu.raw_login(self.server, addr)
        try:
            c.send('RETR 2\r\n' * 10000)
            for _ in range(10000):
                self.assertEqual(c.line(), '+OK %d octets' % len(MSGS[1]))
                self.assertEqual(b''.join(l + b'\r\n' for l in pu.read_multi(c)), MSGS[1])
        finally:
            c.close()
        self.intact(addr)

    def test_command_over_limit(self):
        addr = self.user()
        c = pu.raw_login(self.server, addr)
        try:
            c.send('LIST ' + '1' * 300 + '\r\n')
            r = c.line()
            self.assertTrue(r.startswith('-ERR'), r)
            c.send('DELE ' + ' ' * 260 + '1\r\n')
            r = c.line()
            self.assertTrue(r.startswith('-ERR'), r)
            c.send('STAT\r\n')
            self.assertTrue(c.line().startswith('+OK 3 '))
        finally:
            c.close()
        self.intact(addr)

    def test_line_over_max_line_length(self):
        addr = self.user()
        c = pu.raw_login(self.server, addr)
        try:
            c.send('DELE 1\r\n')
            self.assertTrue(c.line().startswith('+OK'))
            try:
                c.send(b'x' * (1 << 20) + b'\r\nQUIT\r\n')
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass
            try:
                data = c.read_until_eof(timeout=30)
            except (ConnectionResetError, ssl.SSLError):
                data = b''
            self.assertTrue(data.startswith(b'-ERR'), data[:200])
            self.assertNotIn(b'+OK', data)
        finally:
            c.close()
        self.intact(addr)


if __name__ == '__main__':
    harness.main()
