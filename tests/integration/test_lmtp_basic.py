"""LMTP over TCP, the commands of the foundation: greeting, LHLO, NOOP, RSET,
QUIT (delivery has its own tests)."""
import smtplib

import harness
from harness import ServerTestCase
from lmtp_util import reply


class LmtpBasic(ServerTestCase):

    def conn(self):
        c = self.server.raw('lmtp')
        code, texts = reply(c)
        self.assertEqual(code, 220)
        self.assertIn('LMTP', texts[0])
        return c

    def assertCodes(self, c, *steps):
        """Sends each (command, code): its reply must have that code."""
        for cmd, code in steps:
            c.send(cmd + '\r\n')
            self.assertEqual(reply(c)[0], code, cmd)

    def test_greeting_lhlo_noop_rset_quit(self):
        with self.conn() as c:
            c.send('LHLO client.example.org\r\n')
            lines = []
            while True:
                l = c.line()
                lines.append(l)
                if not l.startswith('250-'):
                    break
            self.assertGreaterEqual(len(lines), 2, 'LHLO reply should be multi-line: %r' % lines)
            self.assertTrue(lines[-1].startswith('250 '), lines)
            self.assertTrue(all(l.startswith('250-') for l in lines[:-1]), lines)
            self.assertCodes(c, ('NOOP', 250), ('RSET', 250), ('QUIT', 221))
            self.assertEqual(c.read_until_eof(), b'')

    def test_lowercase_commands(self):
        with self.conn() as c:
            self.assertCodes(c, ('lhlo client.example.org', 250), ('noop', 250), ('quit', 221))

    def test_unknown_command(self):
        with self.conn() as c:
            c.send('FROBNICATE\r\n')
            code, _ = reply(c)
            self.assertGreaterEqual(code, 500)
            self.assertLess(code, 600)
            self.assertCodes(c, ('NOOP', 250))

    def test_pipelined_commands(self):
        # LMTP clients pipeline (RFC 2033 requires PIPELINING): answers come
        # in order, one per command.
        with self.conn() as c:
            c.send('LHLO a.example\r\nNOOP\r\nRSET\r\nNOOP\r\nQUIT\r\n')
            codes = [reply(c)[0] for _ in range(5)]
            self.assertEqual(codes, [250, 250, 250, 250, 221])
            self.assertEqual(c.read_until_eof(), b'')

    def test_lhlo_advertises_pipelining(self):
        with self.conn() as c:
            c.send('LHLO client.example.org\r\n')
            code, texts = reply(c)
            self.assertEqual(code, 250)
            self.assertIn('PIPELINING', [t.upper() for t in texts[1:]])

    def test_smtplib_lmtp(self):
        client = smtplib.LMTP(harness.HOST, self.server.ports['lmtp'], timeout=harness.IO_TIMEOUT)
        try:
            code, _ = client.ehlo('client.example.org')   # LMTP sends LHLO
            self.assertEqual(code, 250)
            self.assertEqual(client.noop()[0], 250)
            self.assertEqual(client.rset()[0], 250)
            self.assertEqual(client.quit()[0], 221)
        finally:
            client.close()


if __name__ == '__main__':
    harness.main()
