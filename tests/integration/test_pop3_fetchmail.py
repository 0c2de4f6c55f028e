"""fetchmail against coffred over POP3S (certificate verified): all
messages retrieved into a local mbox and deleted, a second run finds none;
with --keep and UIDL tracking a second run fetches nothing new and a third
fetches only the message delivered since."""
import mailbox
import os
import shutil
import subprocess
import tempfile
import unittest

import harness
from harness import ServerTestCase
import pop3_util as pu

FETCHMAIL = shutil.which('fetchmail')


def messages(n, base):
    out = [pu.make_message(base + i, body_lines=8 + 11 * i) for i in range(n)]
    # one large message, many chunks of the server's reads
    out.append(pu.make_message(base + n, body_lines=8000, line_len=70))
    return out


@unittest.skipUnless(FETCHMAIL, 'fetchmail is not installed (scripts/install-deps)')
class Pop3Fetchmail(ServerTestCase):

    def setUp(self):
        self.home = tempfile.mkdtemp(prefix='coffre-fetchmail-')

    def tearDown(self):
        shutil.rmtree(self.home, ignore_errors=True)

    def fetch(self, addr, keep=False):
        """Runs fetchmail once; returns (exit code, output)."""
        mbox = os.path.join(self.home, 'mbox')
        rc_path = os.path.join(self.home, 'fetchmailrc')
        with open(rc_path, 'w') as f:
            f.write('set no syslog\n'
                    'poll localhost via 127.0.0.1 with proto POP3 port %d uidl\n'
                    '  user "%s" there with password "%s" is "root" here\n'
                    '  ssl sslcertck sslcertfile "%s" sslcommonname localhost\n'
                    '  %s\n'
                    "  mda \"/bin/sh -c '{ echo From fetchmail Mon Jan  1 00:00:00 2024; cat; "
                    "echo; } >> %s'\"\n"
                    % (self.server.ports['pop3s'], addr, pu.PASS, self.server.cert,
                       'keep' if keep else 'no keep', mbox))
        os.chmod(rc_path, 0o600)
        env = dict(os.environ, HOME=self.home)
        r = subprocess.run([FETCHMAIL, '-f', rc_path, '-i', os.path.join(self.home, 'fetchids'),
                            '--pidfile', os.path.join(self.home, 'pid'), '--nosyslog', '-v'],
                           env=env, capture_output=True, text=True, timeout=120)
        return r.returncode, r.stdout + r.stderr

    def local(self):
        """{Message-ID: body with LF line ends} of the local mbox."""
        path = os.path.join(self.home, 'mbox')
        if not os.path.exists(path):
            return {}
        out = {}
        box = mailbox.mbox(path, create=False)
        try:
            for m in box:
                body = m.get_payload(decode=False)
                out[m['Message-ID']] = body.replace('\r\n', '\n').rstrip('\n')
        finally:
            box.close()
        return out

    @staticmethod
    def expected(msgs):
        out = {}
        for m in msgs:
            hdr, body = m.split(b'\r\n\r\n', 1)
            mid = [l for l in hdr.split(b'\r\n') if l.startswith(b'Message-ID: ')][0]
            out[mid[12:].decode()] = body.decode().replace('\r\n', '\n').rstrip('\n')
        return out

    def test_fetch_and_delete(self):
        addr = 'fm1@example.org'
        msgs = messages(5, 100)
        pu.setup_user(self.server, addr, msgs)
        rc, out = self.fetch(addr)
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.local(), self.expected(msgs), out)
        p = pu.login_retry(self.server, addr)
        try:
            self.assertEqual(p.stat(), (0, 0))
            pu.quit(p)
        finally:
            harness.close_quietly(p)
        rc, out = self.fetch(addr)
        self.assertEqual(rc, 1, 'second run: ' + out)   # 1: no mail
        self.assertEqual(len(self.local()), len(msgs))

    def test_keep_with_uidl(self):
        addr = 'fm2@example.org'
        msgs = messages(3, 200)
        pu.setup_user(self.server, addr, msgs)
        rc, out = self.fetch(addr, keep=True)
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.local(), self.expected(msgs), out)
        rc, out = self.fetch(addr, keep=True)
        self.assertEqual(rc, 1, 'second run fetched again: ' + out)
        self.assertEqual(len(self.local()), len(msgs))
        # all still on the server; a new one is the only one fetched next
        new = [pu.make_message(299)]
        pu.drop_messages(self.server, addr, new)
        pu.wait_messages(self.server, addr, len(msgs) + 1)
        rc, out = self.fetch(addr, keep=True)
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.local(), self.expected(msgs + new), out)


if __name__ == '__main__':
    harness.main()
