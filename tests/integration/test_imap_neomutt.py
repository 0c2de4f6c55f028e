"""Real clients reading a mailbox over IMAPS with COMPRESS=DEFLATE (RFC
4978, issue 14): mbsync (isync 1.4 uses COMPRESS=DEFLATE whenever the
server offers it) and neomutt with imap_deflate=yes.

Each client talks to the server through a relay here that counts the
bytes each way, so that the test sees what went over the wire: the
mailbox is a dozen messages of plain text that deflate shrinks to a
fraction, and the bytes from the server must be well under the bytes of
the messages the client got (they cannot be without compression: TLS adds
to them). Against coffred its log must also show the session's zlib
figures (a compressed session's close line has zlib_held and zlib_peak).
What the client got is compared byte for byte with what was put in the
mailbox.

neomutt is driven without a user: under a pseudo-terminal, with -e "push"
keys that tag every message, pipe each to a file and quit. Debian 12's
neomutt (20220429) and mutt are built without zlib (-zlib in `neomutt
-v`): there is no imap_deflate to set, and the neomutt COMPRESS test is
skipped with that reason. The same driving without imap_deflate (the
plain read) runs wherever neomutt is installed, so that the driving
itself is checked. Against Dovecot (IMAP_TESTS_AGAINST=dovecot) its
imap_zlib plugin is loaded, and the log checks are skipped.
"""
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from imap_util import AGAINST_DOVECOT, DovecotServer, ImapCase, drop_messages, make_message

MBSYNC = shutil.which('mbsync')
NEOMUTT = shutil.which('neomutt')

READER = 'reader@example.org'
READER_PASS = 'reader password 4321'
N_MSGS = 12


class ZlibDovecot(DovecotServer):
    """Dovecot with COMPRESS=DEFLATE (its imap_zlib plugin)."""

    def write_conf(self, path=None, lines=None):
        path = super().write_conf(path, lines)
        with open(path, 'a') as f:
            f.write('protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n')
        return path


if AGAINST_DOVECOT:
    harness.Server = ZlibDovecot


def neomutt_has_deflate():
    if not NEOMUTT:
        return False
    r = subprocess.run([NEOMUTT, '-n', '-F', '/dev/null', '-Q', 'imap_deflate'],
                       capture_output=True, text=True, timeout=30)
    return r.returncode == 0 and 'imap_deflate' in r.stdout


def text_body(i):
    """About 30 kB of ordinary text: deflate takes it to a few kB."""
    words = ('meeting report budget invoice project review schedule team release customer '
             'server monday regards thanks please attached').split()
    lines = []
    for n in range(400):
        lines.append(' '.join(words[(i * 7 + n * 3 + k) % len(words)] for k in range(10)))
    return '\r\n'.join(lines) + '\r\n'


class Relay:
    """A TCP relay 127.0.0.1:port -> the server's port, one connection at a
    time, counting bytes each way (TLS records: a little more than the
    protocol bytes they carry)."""

    def __init__(self, target_port):
        self.target = target_port
        self.lsock = socket.socket()
        self.lsock.bind(('127.0.0.1', 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        self.down = 0   # server -> client
        self.up = 0     # client -> server
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopped:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            s = socket.create_connection(('127.0.0.1', self.target))
            threading.Thread(target=self.pipe, args=(c, s, 'up'), daemon=True).start()
            threading.Thread(target=self.pipe, args=(s, c, 'down'), daemon=True).start()

    def pipe(self, a, b, way):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                with self.lock:
                    setattr(self, way, getattr(self, way) + len(d))
                b.sendall(d)
        except OSError:
            pass
        finally:
            for x in (a, b):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stopped = True
        self.lsock.close()


class CompressReaders(ImapCase):
    USERS = ((READER, READER_PASS),)

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        cls.msgs = [make_message(i, to=READER, subject='reading %d' % i, body=text_body(i))
                    for i in range(1, N_MSGS + 1)]
        cls.total = sum(len(m) for m in cls.msgs)
        drop_messages(cls.server, READER, cls.msgs)

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix='coffre-reader-')
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.relay = Relay(self.server.ports['imaps'])
        self.addCleanup(self.relay.close)
        self.log_mark = len(self.server.log()) if not AGAINST_DOVECOT else 0

    def by_msgid(self, raws):
        out = {}
        for r in raws:
            m = re.search(rb'^Message-ID: (<[^>]+>)', r, re.M | re.I)
            self.assertIsNotNone(m, 'a message without its Message-ID: %r' % r[:200])
            out[m.group(1)] = r
        return out

    def check_content(self, got):
        """Every message got back as it was put in (line ends aside, and the
        X-TUID header line mbsync adds to the messages it stores)."""
        def norm(b):
            b = b.replace(b'\r\n', b'\n')
            return re.sub(rb'^X-TUID: [^\n]*\n', b'', b, count=1, flags=re.M).rstrip(b'\n')
        want = self.by_msgid(self.msgs)
        have = self.by_msgid(got)
        self.assertEqual(sorted(have), sorted(want))
        for k, m in want.items():
            self.assertEqual(norm(have[k]), norm(m), 'message %s differs' % k.decode())

    def check_compressed(self):
        """The wire carried deflate: under half the bytes of the messages
        came down (the bodies alone are more), and coffred logged the
        session's zlib figures."""
        self.assertGreater(self.relay.down, 0)
        self.assertLess(self.relay.down, self.total // 2,
                        '%d bytes from the server for %d bytes of messages: not compressed'
                        % (self.relay.down, self.total))
        if AGAINST_DOVECOT:
            return
        deadline = time.time() + 10
        while True:
            lines = [l for l in self.server.log()[self.log_mark:].splitlines()
                     if 'user=%s closed' % READER in l]
            if lines or time.time() > deadline:
                break
            time.sleep(0.1)
        self.assertTrue(lines, 'no close line for the session in the log')
        m = re.search(r'zlib_held=(\d+) zlib_peak=(\d+)', lines[-1])
        self.assertIsNotNone(m, 'the session closed without COMPRESS: %s' % lines[-1])
        self.assertGreater(int(m.group(2)), 0)

    # ---- mbsync ----

    @unittest.skipUnless(MBSYNC, 'mbsync (isync) is not installed: scripts/install-deps')
    def test_mbsync_reads_over_compress(self):
        root = os.path.join(self.tmp, 'mail')
        os.makedirs(root)
        rc = os.path.join(self.tmp, 'mbsyncrc')
        with open(rc, 'w') as f:
            f.write('''IMAPAccount reader
Host localhost
Port %d
User %s
Pass "%s"
SSLType IMAPS
CertificateFile %s

IMAPStore reader-remote
Account reader

MaildirStore reader-local
Path %s/
Inbox %s/INBOX

Channel reader
Far :reader-remote:
Near :reader-local:
Patterns INBOX
Create Near
Sync Pull
SyncState *
''' % (self.relay.port, READER, READER_PASS, self.server.cert, root, root))
        r = subprocess.run([MBSYNC, '-V', '-c', rc, '-a'], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, 'mbsync failed:\n%s\n%s' % (r.stdout, r.stderr))
        got = []
        for d in ('cur', 'new'):
            p = os.path.join(root, 'INBOX', d)
            for fn in os.listdir(p):
                with open(os.path.join(p, fn), 'rb') as f:
                    got.append(f.read())
        self.check_content(got)
        self.check_compressed()

    # ---- neomutt ----

    SEP = b'=====coffre-test-separator====='

    def run_neomutt(self, deflate):
        out = os.path.join(self.tmp, 'piped')
        rc = os.path.join(self.tmp, 'neomuttrc')
        with open(rc, 'w') as f:
            f.write('\n'.join([
                'set imap_user="%s"' % READER,
                'set imap_pass="%s"' % READER_PASS,
                'set certificate_file="%s"' % self.server.cert,
                'set ssl_verify_host=yes',
                'set ssl_force_tls=yes',
                'set imap_deflate=yes' if deflate else '',
                'set header_cache=""',
                'set message_cachedir=""',
                'set pipe_split=yes',
                'set pipe_decode=no',
                'set pipe_sep="\\n%s\\n"' % self.SEP.decode(),
                'set wait_key=no',
                'set quit=yes',
                'set move=no',
                'set mark_old=no',
                'set sort=date-sent',
                'set timeout=1',
                'set imap_check_subscribed=no',
                'set folder="imaps://localhost:%d/"' % self.relay.port,
                '',
            ]))
        keys = ('<tag-pattern>~A<enter><tag-prefix><pipe-message>cat >> %s<enter>'
                '<sync-mailbox><quit>' % out)
        env = dict(os.environ, TERM='xterm', HOME=self.tmp, LC_ALL='C.UTF-8',
                   COLUMNS='120', LINES='40')
        env.pop('MAIL', None)
        argv = [NEOMUTT, '-n', '-F', rc, '-f', 'imaps://localhost:%d/INBOX' % self.relay.port,
                '-e', 'push "%s"' % keys]
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execve(NEOMUTT, argv, env)
            finally:
                os._exit(127)
        screen = b''
        deadline = time.time() + 90
        status = None
        try:
            while time.time() < deadline:
                r, _, _ = select.select([fd], [], [], 0.5)
                if r:
                    try:
                        d = os.read(fd, 65536)
                    except OSError:
                        d = b''
                    screen += d
                    # a certificate question would wait for a key: refuse it
                    if b'(r)eject' in screen[-400:]:
                        os.write(fd, b'r')
                w, st = os.waitpid(pid, os.WNOHANG)
                if w == pid:
                    status = st
                    break
        finally:
            if status is None:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            os.close(fd)
        tail = re.sub(rb'\x1b\[[0-9;?]*[A-Za-z]', b' ', screen[-2000:])
        self.assertIsNotNone(status, 'neomutt did not finish; screen ends:\n%r' % tail)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0,
                         'neomutt failed; screen ends:\n%r' % tail)
        self.assertTrue(os.path.exists(out), 'neomutt piped nothing; screen ends:\n%r' % tail)
        with open(out, 'rb') as f:
            data = f.read()
        parts = [p.strip(b'\n') + b'\n' for p in data.split(b'\n' + self.SEP + b'\n')
                 if p.strip(b'\n')]
        return parts

    @unittest.skipUnless(NEOMUTT, 'neomutt is not installed: scripts/install-deps')
    def test_neomutt_reads_mailbox(self):
        """The driving without COMPRESS: every message piped back whole."""
        self.check_content(self.run_neomutt(deflate=False))

    @unittest.skipUnless(neomutt_has_deflate(),
                         "this neomutt has no imap_deflate (Debian 12's is built without zlib)")
    def test_neomutt_reads_over_compress(self):
        self.check_content(self.run_neomutt(deflate=True))
        self.check_compressed()


if __name__ == '__main__':
    unittest.main()
