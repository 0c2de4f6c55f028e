"""A real Postfix in front of coffred: a private instance (postfix -c DIR,
loopback only, its own queue) configured with the main.cf lines of
README.md's "Postfix integration" section (only the LMTP port changed),
mail sent through its SMTP listener with smtplib arrives in the Maildir,
and an unknown recipient is refused during the SMTP dialogue through
Postfix's address verification over LMTP. Skipped when Postfix is not
installed (scripts/install-deps installs it)."""
import os
import pwd
import re
import shutil
import smtplib
import subprocess
import time
import unittest

import harness
import lmtp_util as L
from harness import ServerTestCase

POSTFIX = shutil.which('postfix') or '/usr/sbin/postfix'
README = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'README.md')
DELIVERY_TIMEOUT = 60.0


def readme_main_cf():
    """The main.cf block that follows <!-- postfix-main.cf --> in README.md."""
    with open(README) as f:
        text = f.read()
    m = re.search(r'<!-- postfix-main.cf -->\s*```\n(.*?)```', text, re.S)
    if not m:
        raise AssertionError('README.md has no postfix-main.cf block')
    return m.group(1)


class PrivatePostfix:
    def __init__(self, tmp, lmtp_port):
        self.dir = os.path.join(tmp, 'postfix')
        self.conf = os.path.join(self.dir, 'etc')
        self.port = harness.free_port()
        os.makedirs(self.conf)
        os.chmod(self.dir, 0o755)
        os.makedirs(os.path.join(self.dir, 'queue'), 0o755)
        os.makedirs(os.path.join(self.dir, 'data'), 0o700)
        pw = pwd.getpwnam('postfix')
        os.chown(os.path.join(self.dir, 'data'), pw.pw_uid, pw.pw_gid)
        lines = readme_main_cf().replace('127.0.0.1:24', '127.0.0.1:%d' % lmtp_port)
        with open(os.path.join(self.conf, 'main.cf'), 'w') as f:
            f.write('# private instance for tests: loopback only, own queue\n'
                    'compatibility_level = 3.6\n'
                    'queue_directory = %s/queue\n'
                    'data_directory = %s/data\n'
                    'mail_owner = postfix\n'
                    'inet_interfaces = loopback-only\n'
                    'inet_protocols = ipv4\n'
                    'myhostname = mx.test.invalid\n'
                    'mydestination =\n'
                    'mynetworks = 127.0.0.2/32\n'
                    'alias_maps =\n'
                    'alias_database =\n'
                    'local_transport = error:no local delivery here\n'
                    'relayhost =\n'
                    'smtputf8_enable = yes\n'
                    'maillog_file_prefixes = %s\n'
                    'maillog_file = %s/maillog\n'
                    'address_verify_poll_delay = 1s\n'
                    'address_verify_poll_count = 30\n'
                    % (self.dir, self.dir, self.dir, self.dir) + lines)
        # Debian's master.cf with the SMTP listener moved to our port and no
        # chroot (the private queue has no copy of /etc files)
        out = []
        with open('/etc/postfix/master.cf') as f:
            for line in f:
                if line.startswith('smtp ') and ' inet ' in line:
                    line = '127.0.0.1:%d inet n - n - - smtpd\n' % self.port
                elif line[:1] not in ('#', ' ', '\t', '\n'):
                    cols = line.split()
                    if len(cols) >= 8 and cols[4] == 'y':
                        cols[4] = 'n'
                        line = ' '.join(cols) + '\n'
                out.append(line)
        with open(os.path.join(self.conf, 'master.cf'), 'w') as f:
            f.writelines(out)

    def run(self, *args):
        r = subprocess.run([POSTFIX, '-c', self.conf] + list(args), capture_output=True,
                           text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr

    def start(self):
        rc, out = self.run('start')
        if rc != 0:
            raise RuntimeError('postfix start failed (%d): %s\n%s' % (rc, out, self.log()))
        deadline = time.monotonic() + 20
        while True:
            try:
                smtplib.SMTP(harness.HOST, self.port, timeout=5).quit()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError('postfix does not listen on %d\n%s' % (self.port,
                                                                              self.log()))
                time.sleep(0.1)   # waiting for the daemon to bind

    def stop(self):
        rc, out = self.run('stop')
        if rc != 0:
            self.run('abort')
        return rc

    def log(self):
        return harness.read_log(os.path.join(self.dir, 'maillog'))[-4000:]


class PostfixToCoffre(ServerTestCase):

    @classmethod
    def setUpClass(cls):
        if not os.access(POSTFIX, os.X_OK):
            raise unittest.SkipTest('postfix is not installed (scripts/install-deps)')
        if os.getuid() != 0:
            raise unittest.SkipTest('a private Postfix instance needs root')
        super().setUpClass()

    @classmethod
    def setUpServer(cls):
        cls.server.add_user('alice@example.org', 'pw-alice-x1')
        cls.postfix = PrivatePostfix(cls.server.tmp, cls.server.ports['lmtp'])
        cls.postfix.start()

    @classmethod
    def tearDownClass(cls):
        pf = getattr(cls, 'postfix', None)
        try:
            if pf:
                if os.environ.get('COFFRE_TEST_VERBOSE') == '1':
                    print(pf.log())
                pf.stop()
        finally:
            super().tearDownClass()

    def wait_for(self, marker):
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while time.monotonic() < deadline:
            for m in L.messages(self.server, 'alice@example.org'):
                if marker in m:
                    return m
            time.sleep(0.1)   # Postfix's queue manager delivers asynchronously
        self.fail('message %r not delivered within %ds\n%s' % (marker, DELIVERY_TIMEOUT,
                                                               self.postfix.log()))

    def test_delivery_through_postfix(self):
        body = (b'From: Bob <bob@remote.example>\r\nTo: alice@example.org\r\n'
                b'Subject: via postfix\r\nMessage-ID: <via-postfix@remote.example>\r\n\r\n'
                b'.a dot-stuffed line\r\nHello through Postfix. \xc3\xa9\r\n')
        s = smtplib.SMTP(harness.HOST, self.postfix.port, timeout=harness.IO_TIMEOUT)
        try:
            s.ehlo('client.example.net')
            refused = s.sendmail('bob@remote.example', ['Alice@Example.org'], body,
                                 mail_options=['BODY=8BITMIME'])
            self.assertEqual(refused, {})
        finally:
            s.quit()
        m = self.wait_for(b'<via-postfix@remote.example>')
        self.assertTrue(m.startswith(b'Return-Path: <bob@remote.example>\r\n'
                                     b'Delivered-To: alice@example.org\r\n'), m[:200])
        self.assertTrue(m.endswith(b'\r\n\r\n.a dot-stuffed line\r\n'
                                   b'Hello through Postfix. \xc3\xa9\r\n'), m[-200:])
        self.assertIn(b'Received: from client.example.net', m)

    def test_unknown_recipient_refused_at_smtp_time(self):
        s = smtplib.SMTP(harness.HOST, self.postfix.port, timeout=60)
        try:
            s.ehlo('client.example.net')
            s.mail('bob@remote.example')
            code, text = s.rcpt('ghost@example.org')
            self.assertEqual(code, 550, text)
            self.assertEqual(s.rcpt('alice@example.org')[0], 250)
            s.rset()
        finally:
            s.quit()


if __name__ == '__main__':
    harness.main()
