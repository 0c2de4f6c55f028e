"""The audit trail: audit lines for deliveries (through the suite's real
Postfix, and straight over LMTP), IMAP and POP3 logins and logouts and
coffrectl actions, with fields that match what the test did; the JSON
format parsed with json.loads; the hash-chained audit log verified by
`coffrectl log verify`, which names the right line of a tampered copy;
the chain across a restart, a rotation (SIGHUP) and coffrectl writing
while coffred runs; a file log_target reopened on SIGHUP; the syslog
target (through a private /dev/log in a mount namespace)."""
import fcntl
import json
import os
import pwd
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import harness
import lmtp_util as L
from harness import ServerTestCase

WAIT = 30.0
USER, PASS = 'alice@example.org', 'pw-alice-x1'
FIELD = re.compile(r'([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|\S+)')


def unquote(v):
    """A text line's value as log_quote wrote it, back to bytes as str."""
    if not v.startswith('"'):
        return v
    out, i, s = [], 1, v[1:-1]
    i = 0
    while i < len(s):
        if s[i] == '\\' and s[i + 1] == 'x':
            out.append(chr(int(s[i + 2:i + 4], 16)))
            i += 4
        elif s[i] == '\\':
            out.append(s[i + 1])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return ''.join(out)


def parse(line):
    """An audit line (text or JSON) as a dict; None for other lines."""
    if line.startswith('{'):
        d = json.loads(line)
        return d if d.get('level') == 'audit' else None
    if ' audit: ' not in line:
        return None
    d = {'time': line.split(' ', 1)[0]}
    for k, v in FIELD.findall(line.split(' audit: ', 1)[1]):
        d[k] = unquote(v)
    return d


def records(path):
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return [r for r in (parse(l.rstrip('\n')) for l in f if l.endswith('\n')) if r]
    except FileNotFoundError:
        return []


def wait_record(path, pred, what, n=1):
    deadline = time.monotonic() + WAIT
    while True:
        found = [r for r in records(path) if pred(r)]
        if len(found) >= n:
            return found if n > 1 else found[0]
        if time.monotonic() > deadline:
            raise AssertionError('no audit line for %s in %s:\n%s' % (
                what, path, '\n'.join(map(str, records(path)[-10:]))))
        time.sleep(0.05)   # the writer thread appends asynchronously


def complete_lines(path):
    with open(path, 'rb') as f:
        data = f.read()
    return data[:data.rfind(b'\n') + 1].splitlines(keepends=True)


class DirCase(ServerTestCase):
    """A coffred with a directory of the test's that run_user may write
    (cls.adir: log files reopened after a rotation are created in it as
    run_user), removed after the class. Subclasses set cls.CONF in
    configure()."""

    @classmethod
    def configure(cls):
        pass

    @classmethod
    def setUpClass(cls):
        cls.adir = tempfile.mkdtemp(prefix='coffre-audit-')
        pw = pwd.getpwnam(harness.RUN_USER)
        os.chown(cls.adir, pw.pw_uid, pw.pw_gid)
        os.chmod(cls.adir, 0o755)
        try:
            cls.configure()
            super().setUpClass()
        except Exception:
            shutil.rmtree(cls.adir, ignore_errors=True)
            raise

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(USER, PASS)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.adir, ignore_errors=True)


def pop3_session(server):
    """USER, PASS, STAT, QUIT over POP3S; returns the client's address."""
    p = server.pop3_ssl()
    port = p.sock.getsockname()[1]
    version = p.sock.version().replace('v', '')
    p.user(USER)
    p.pass_(PASS)
    p.stat()
    p.quit()
    return '127.0.0.1:%d' % port, version


class AuditCase(DirCase):
    """A coffred with an audit_log."""
    FORMAT = 'text'
    EXTRA = {}

    @classmethod
    def configure(cls):
        cls.audit = os.path.join(cls.adir, 'audit.log')
        cls.CONF = dict({'audit_log': cls.audit, 'log_format': cls.FORMAT}, **cls.EXTRA)

    def verify(self, *files, anchor=None):
        args = ['log', 'verify'] + list(files) + (['--anchor', anchor] if anchor else [])
        rc, out, err = self.server.ctl(*args)
        return rc, out + err

    def imap_uid_size(self, message_id, folder='INBOX'):
        c = self.server.imap_ssl()
        try:
            c.login(USER, PASS)
            typ, _ = c.select(harness.imap_quote(folder), readonly=True)
            self.assertEqual(typ, 'OK')
            typ, data = c.uid('SEARCH', 'HEADER', 'Message-ID', message_id)
            uids = data[0].split()
            self.assertEqual(len(uids), 1, data)
            typ, data = c.uid('FETCH', uids[0], '(RFC822.SIZE)')
            size = int(re.search(rb'RFC822\.SIZE (\d+)', data[0]).group(1))
            return int(uids[0]), size
        finally:
            c.logout()


class AuditPostfix(AuditCase):
    """Deliveries through a private Postfix (tests/integration/
    test_lmtp_postfix.py's), in JSON."""
    FORMAT = 'json'
    EXTRA = {'lmtp_save_to_detail_mailbox': 'yes'}

    @classmethod
    def setUpClass(cls):
        import test_lmtp_postfix as P
        if not os.access(P.POSTFIX, os.X_OK):
            raise unittest.SkipTest('postfix is not installed (scripts/install-deps)')
        if os.getuid() != 0:
            raise unittest.SkipTest('a private Postfix instance needs root')
        cls.P = P
        super().setUpClass()

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = cls.server.imap_ssl()
        c.login(USER, PASS)
        c.create('Lists')
        c.logout()
        cls.postfix = cls.P.PrivatePostfix(cls.server.tmp, cls.server.ports['lmtp'])
        cls.postfix.start()

    @classmethod
    def tearDownClass(cls):
        pf = getattr(cls, 'postfix', None)
        try:
            if pf:
                pf.stop()
        finally:
            super().tearDownClass()

    def send_via_postfix(self, rcpt, msgid, body=b'Hello.\r\n'):
        msg = (b'From: Bob <bob@remote.example>\r\nTo: ' + rcpt.encode() +
               b'\r\nSubject: audit\r\nMessage-ID: ' + msgid.encode() + b'\r\n\r\n' + body)
        s = smtplib.SMTP(harness.HOST, self.postfix.port, timeout=harness.IO_TIMEOUT)
        try:
            s.ehlo('client.example.net')
            self.assertEqual(s.mail('bob@remote.example')[0], 250)
            self.assertEqual(s.rcpt(rcpt)[0], 250)
            code, text = s.data(msg)
            self.assertEqual(code, 250, text)
        finally:
            s.quit()
        m = re.search(rb'queued as (\w+)', text)
        self.assertIsNotNone(m, text)
        return m.group(1).decode()

    def check_delivery(self, rcpt, msgid, folder):
        qid = self.send_via_postfix(rcpt, msgid)
        r = wait_record(self.audit, lambda r: r.get('event') == 'delivery'
                        and r.get('message_id') == msgid, 'delivery of ' + msgid)
        self.assertEqual(r['queue_id'], qid)
        self.assertEqual(r['from'], 'bob@remote.example')
        self.assertEqual(r['rcpt'], rcpt.lower())
        self.assertEqual(r['result'], 'delivered')
        self.assertEqual(r['code'], '250 2.0.0')
        self.assertEqual(r['folder'], folder)
        self.assertIsInstance(r['size'], int)
        self.assertIsInstance(r['duration_ms'], float)
        uid, size = self.imap_uid_size(msgid, folder)
        self.assertEqual(r['uid'], uid)
        # what IMAP counts is what came over LMTP plus the two lines coffred adds
        added = len('Return-Path: <bob@remote.example>\r\nDelivered-To: %s\r\n' % rcpt.lower())
        self.assertEqual(r['size'] + added, size)
        # Postfix says it handed that queue id to us
        deadline = time.monotonic() + WAIT
        while not re.search(r'%s: to=<%s>.*status=sent' % (qid, re.escape(rcpt)),
                            self.postfix.log()):
            if time.monotonic() > deadline:
                self.fail('postfix did not log %s as sent\n%s' % (qid, self.postfix.log()))
            time.sleep(0.1)   # Postfix logs after the LMTP reply
        return r

    def test_delivery_fields_match_what_was_sent(self):
        self.check_delivery(USER, '<audit-1@remote.example>', 'INBOX')

    def test_folder_from_the_detail(self):
        self.check_delivery('alice+Lists@example.org', '<audit-2@remote.example>', 'Lists')
        # a detail naming no folder: INBOX, and the line says so
        self.check_delivery('alice+nothere@example.org', '<audit-3@remote.example>', 'INBOX')

    def test_unknown_recipient_refused(self):
        s = smtplib.SMTP(harness.HOST, self.postfix.port, timeout=60)
        try:
            s.ehlo('client.example.net')
            s.mail('bob@remote.example')
            code, _ = s.rcpt('ghost@example.org')
            self.assertEqual(code, 550)
            s.rset()
        finally:
            s.quit()
        r = wait_record(self.audit, lambda r: r.get('rcpt') == 'ghost@example.org',
                        'refused recipient')
        self.assertEqual((r['event'], r['result'], r['code'], r['stage']),
                         ('delivery', 'rejected', '550 5.1.1', 'rcpt'))

    def test_over_quota_and_lmtp_received_header(self):
        self.server.add_user('carol@example.org', 'pw-carol-x1')
        rc, out, err = self.server.ctl('user', 'quota', 'carol@example.org', '1k')
        self.assertEqual(rc, 0, err)
        c = L.lmtp(self.server)
        body = (b'Received: from mx.test.invalid (mx.test.invalid [127.0.0.1])\r\n'
                b'\tby mx2.test.invalid (Postfix) with LMTP id 4XyZ12ab3Cd\r\n'
                b'\tfor <carol@example.org>; Sat, 5 Dec 2026 10:00:00 +0000\r\n'
                b'Received: from elsewhere by x (Postfix) with ESMTP id WRONG1\r\n'
                b'message-id:   <quota-1@remote.example>  \r\n\r\n' + b'x' * 4000 + b'\r\n')
        rcpt, data = L.send(c, 'bob@remote.example', ['carol@example.org'], body)
        c.quit()
        self.assertEqual(data[0][0], 552, data)
        r = wait_record(self.audit, lambda r: r.get('message_id') == '<quota-1@remote.example>',
                        'over-quota delivery')
        self.assertEqual((r['result'], r['code'], r['queue_id']),
                         ('rejected', '552 5.2.2', '4XyZ12ab3Cd'))
        self.assertNotIn('uid', r)
        self.assertEqual(r['size'], len(body))

    def test_every_line_is_json_and_values_are_escaped(self):
        # a user name with a quote, a backslash, a control character, valid
        # UTF-8 and one invalid byte, as an IMAP literal
        name = b'ev"il\\ \x01 \xc3\xa9 \xff@example.org'
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            c.send(b'a1 LOGIN {%d}\r\n' % len(name))
            self.assertTrue(c.line().startswith('+'))
            c.send(name + b' "wrong"\r\n')
            _, t = c.until_tag('a1')
            self.assertTrue(t.startswith('a1 NO'), t)
        want = 'ev"il\\ \x01 \u00e9 \ufffd@example.org'
        r = wait_record(self.audit, lambda r: r.get('event') == 'login'
                        and r.get('user') == want, 'login of an odd name')
        self.assertEqual(r['result'], 'failed')
        with open(self.audit, encoding='utf-8') as f:
            for line in f:
                d = json.loads(line)
                self.assertEqual(d['level'], 'audit')
                self.assertIsInstance(d['seq'], int)
        for line in self.server.log().splitlines():
            if line.startswith('{'):
                json.loads(line)
            else:
                # only a sanitizer's report may come outside our lines
                self.assertFalse(line.strip() and not line.startswith(('=', ' ', '#', 'SUMMARY')),
                                 'not JSON: %r' % line)
        rc, out = self.verify(self.audit)
        self.assertEqual(rc, 0, out)


class AuditSessions(AuditCase):
    """Logins, logouts, coffrectl actions and tampering, in text."""

    def test_imaps_login_logout_with_id(self):
        with self.server.raw('imaps', tls=True) as c:
            port = c.sock.getsockname()[1]
            version = c.sock.version().replace('v', '')
            c.line()
            for tag, cmd in (('a1', 'ID ("name" "audit test" "version" "1.2")'),
                             ('a2', harness.imap_login_cmd(USER, PASS)), ('a3', 'NOOP'),
                             ('a4', 'LOGOUT')):
                _, t = c.cmd(tag, cmd)
                self.assertIn(' OK', t)
        remote = '127.0.0.1:%d' % port
        r = wait_record(self.audit, lambda r: r.get('event') == 'login'
                        and r.get('remote') == remote, 'IMAPS login')
        self.assertEqual((r['proto'], r['service'], r['user'], r['mech'], r['result'], r['tls'],
                          r['client_id']),
                         ('imap', 'imaps', USER, 'LOGIN', 'ok', version, 'audit test/1.2'))
        r = wait_record(self.audit, lambda r: r.get('event') == 'logout'
                        and r.get('remote') == remote, 'IMAPS logout')
        self.assertEqual((r['user'], r['commands'], r['client_id']),
                         (USER, '4', 'audit test/1.2'))
        # bytes on the wire: the TLS records hold at least the commands
        self.assertGreater(int(r['bytes_in']), 60)
        self.assertGreater(int(r['bytes_out']), 200)

    def test_imap_failed_login_and_authenticate(self):
        with self.server.raw('imaps', tls=True) as c:
            port = c.sock.getsockname()[1]
            c.line()
            _, t = c.cmd('a1', harness.imap_login_cmd('nobody-here@example.org', 'wrong-pw'))
            self.assertIn('NO', t)
            import base64
            ir = base64.b64encode(b'\0' + USER.encode() + b'\0' + PASS.encode()).decode()
            _, t = c.cmd('a2', 'AUTHENTICATE PLAIN ' + ir)
            self.assertIn('OK', t)
        remote = '127.0.0.1:%d' % port
        logins = wait_record(self.audit, lambda r: r.get('event') == 'login'
                             and r.get('remote') == remote, 'two logins', n=2)
        self.assertEqual([(r['user'], r['mech'], r['result']) for r in logins],
                         [('nobody-here@example.org', 'LOGIN', 'failed'), (USER, 'PLAIN', 'ok')])

    def test_pop3s_login_logout(self):
        remote, version = pop3_session(self.server)
        r = wait_record(self.audit, lambda r: r.get('event') == 'login'
                        and r.get('remote') == remote, 'POP3S login')
        self.assertEqual((r['proto'], r['service'], r['user'], r['mech'], r['result'], r['tls']),
                         ('pop3', 'pop3s', USER, 'USER', 'ok', version))
        r = wait_record(self.audit, lambda r: r.get('event') == 'logout'
                        and r.get('remote') == remote, 'POP3S logout')
        self.assertEqual((r['user'], r['commands']), (USER, '4'))

    def test_coffrectl_actions(self):
        rc, _, err = self.server.ctl('user', 'quota', USER, '10M')
        self.assertEqual(rc, 0, err)
        r = wait_record(self.audit, lambda r: r.get('event') == 'admin'
                        and r.get('action') == 'quota', 'user quota')
        self.assertEqual((r['uid'], r['by'], r['family'], r['args'], r['result'], r['exit']),
                         (str(os.getuid()), pwd.getpwuid(os.getuid()).pw_name, 'user',
                          USER + ' 10M', 'ok', '0'))
        rc, _, _ = self.server.ctl('user', 'show', 'ghost@example.org')
        self.assertEqual(rc, 3)
        r = wait_record(self.audit, lambda r: r.get('event') == 'admin'
                        and r.get('args') == 'ghost@example.org', 'user show ghost')
        self.assertEqual((r['action'], r['result'], r['exit']), ('show', 'failed', '3'))
        rc, out = self.verify(self.audit)
        self.assertEqual(rc, 0, out)

    def test_coffrectl_and_coffred_write_one_chain(self):
        msgs = 20

        def deliver():
            c = L.lmtp(self.server)
            for i in range(msgs):
                L.send(c, 'bob@remote.example', [USER],
                       b'Message-ID: <conc-%d@x>\r\n\r\nhi\r\n' % i)
            c.quit()
        t = threading.Thread(target=deliver)
        t.start()
        for _ in range(8):
            rc, _, err = self.server.ctl('user', 'show', USER)
            self.assertEqual(rc, 0, err)
        t.join()
        wait_record(self.audit, lambda r: str(r.get('message_id', '')).startswith('<conc-'),
                    'concurrent deliveries', n=msgs)
        rc, out = self.verify(self.audit)
        self.assertEqual(rc, 0, out)

    def test_tampered_copies_fail_at_the_right_line(self):
        # enough lines of every kind first
        c = L.lmtp(self.server)
        for i in range(5):
            L.send(c, 'bob@remote.example', [USER], b'Message-ID: <t-%d@x>\r\n\r\nhi\r\n' % i)
        c.quit()
        self.server.ctl('user', 'show', USER)
        wait_record(self.audit, lambda r: r.get('message_id') == '<t-4@x>', 'deliveries')
        lines = complete_lines(self.audit)
        self.assertGreaterEqual(len(lines), 6)
        d = os.path.join(self.adir, 'copies')
        os.makedirs(d, exist_ok=True)

        def check(name, content, line, why):
            p = os.path.join(d, name)
            with open(p, 'wb') as f:
                f.write(b''.join(content) if isinstance(content, list) else content)
            rc, out = self.verify(p)
            if line is None:
                self.assertEqual(rc, 0, out)
                self.assertIn('OK: %d line(s)' % len(lines), out)
                return
            self.assertEqual(rc, 8, out)
            self.assertIn('%s:%d: %s' % (p, line, why), out)

        check('intact', lines, None, None)
        check('removed', lines[:2] + lines[3:], 3, '1 line(s) removed')
        check('swapped', lines[:3] + [lines[4], lines[3]] + lines[5:], 4, 'line out of order')
        altered = list(lines)
        i = altered[1].index(b'=') + 1
        altered[1] = altered[1][:i] + bytes([altered[1][i] ^ 1]) + altered[1][i + 1:]
        check('altered', altered, 2, 'altered line')
        whole = b''.join(lines)
        check('truncated', whole[:-20], len(lines), 'line cut short')
        # cut at a line's end: only an anchor finds it; coffred logs the
        # head it reads at start
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        head = re.findall(r'audit log \S+ head \(start\): seq=(\d+) chain=([0-9a-f]{64})',
                          self.server.log())
        self.assertTrue(head, 'coffred logged no head of the audit log')
        seq, h = head[-1]
        self.assertEqual(int(seq), len(lines))
        self.assertTrue(lines[int(seq) - 1].endswith(b'seq=%s chain=%s\n' % (seq.encode(),
                                                                            h.encode())))
        p = os.path.join(d, 'cut')
        with open(p, 'wb') as f:
            f.write(b''.join(lines[:int(seq) - 1]))
        rc, out = self.verify(p, anchor='%s:%s' % (seq, h))
        self.assertEqual(rc, 8, out)
        self.assertIn('not in the log', out)
        rc, out = self.verify(self.audit, anchor='%s:%s' % (seq, h))
        self.assertEqual(rc, 0, out)


class AuditRestartRotate(AuditCase):
    """The chain across a restart and a rotation; a file log_target
    reopened on SIGHUP."""

    def deliver(self, tag):
        c = L.lmtp(self.server)
        L.send(c, 'bob@remote.example', [USER], b'Message-ID: <%s@x>\r\n\r\nhi\r\n' % tag)
        c.quit()
        return wait_record(self.audit, lambda r: r.get('message_id') == '<%s@x>' % tag.decode(),
                           tag.decode())

    def test_chain_survives_restart(self):
        before = self.deliver(b'before-restart')
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        after = self.deliver(b'after-restart')
        self.assertGreater(int(after['seq']), int(before['seq']))
        # coffred read the head from the file's tail at start and logged it
        starts = re.findall(r'head \(start\): seq=(\d+) chain=([0-9a-f]{64})', self.server.log())
        self.assertIn((before['seq'], before['chain']), starts)
        rc, out = self.verify(self.audit)
        self.assertEqual(rc, 0, out)

    def test_rotation_goes_on_in_the_new_file(self):
        first = self.deliver(b'before-rotation')
        old = self.audit + '.1'
        os.rename(self.audit, old)
        self.server.signal(1)   # SIGHUP
        # coffred starts the new file with its continue line at once
        deadline = time.monotonic() + WAIT
        while not (os.path.exists(self.audit) and os.path.getsize(self.audit)):
            self.assertLess(time.monotonic(), deadline, 'no new audit log after SIGHUP')
            time.sleep(0.05)   # the writer thread reopens asynchronously
        # coffrectl writes into the rotated chain too
        self.server.ctl('user', 'show', USER)
        self.deliver(b'after-rotation')
        with open(self.audit) as f:
            head = parse(f.readline())
        self.assertEqual(head['event'], 'audit.continue')
        rc, out = self.verify(old, self.audit)
        self.assertEqual(rc, 0, out)
        self.assertGreater(int(first['seq']), 0)
        os.rename(old, self.audit + '.keep')


class FileTarget(DirCase):
    """log_target = FILE: lines go there, and to a new file after the old
    one was moved and SIGHUP sent."""

    @classmethod
    def configure(cls):
        cls.target = os.path.join(cls.adir, 'coffred.log')
        cls.CONF = {'log_target': cls.target}

    def login_line(self, path, remote):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            r = [p for p in records(path) if p.get('remote') == remote
                 and p.get('event') == 'login']
            if r:
                return r[0]
            time.sleep(0.05)   # written by the log's writer thread
        return None

    def test_lines_go_to_the_file_and_follow_a_rotation(self):
        remote, _ = pop3_session(self.server)
        self.assertIsNotNone(self.login_line(self.target, remote), harness.read_log(self.target))
        self.assertNotIn('audit: event=login', self.server.log())
        os.rename(self.target, self.target + '.1')
        self.server.signal(1)   # SIGHUP
        deadline = time.monotonic() + WAIT
        while not os.path.exists(self.target):
            self.assertLess(time.monotonic(), deadline, 'no new log file after SIGHUP')
            time.sleep(0.05)   # the writer reopens asynchronously
        remote2, _ = pop3_session(self.server)
        self.assertIsNotNone(self.login_line(self.target, remote2))
        self.assertIsNone(self.login_line(self.target + '.1', remote2))


class StalledTarget(DirCase):
    """log_target = a FIFO that nobody reads: once the pipe and the log's
    queue are full, lines are dropped and counted, and the event loop goes
    on serving (a synchronous write would block it for good)."""

    @classmethod
    def configure(cls):
        cls.fifo = os.path.join(cls.adir, 'stalled.log')
        os.mkfifo(cls.fifo, 0o666)
        # a reader that does not read: coffred's open succeeds, its writes stall
        cls.rfd = os.open(cls.fifo, os.O_RDONLY | os.O_NONBLOCK)
        fcntl.fcntl(cls.rfd, 1031, 4096)   # F_SETPIPE_SZ: one page
        cls.CONF = {'log_target': cls.fifo, 'log_queue_size': '64k'}

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            os.close(cls.rfd)

    def test_loop_serves_while_the_log_is_stalled(self):
        # each connection logs two lines (about 200 bytes); 600 of them are
        # about twice what the pipe (4 kB) and the queue (64 kB) hold
        for i in range(600):
            with self.server.raw('imap') as c:
                self.assertTrue(c.line().startswith('* OK'), i)
        remote, _ = pop3_session(self.server)
        # the reader catches up: the writer says how many lines it dropped
        buf = b''
        deadline = time.monotonic() + WAIT
        while b'dropped' not in buf and time.monotonic() < deadline:
            try:
                chunk = os.read(self.rfd, 1 << 16)
            except BlockingIOError:
                chunk = b''
            if not chunk:
                time.sleep(0.05)   # the writer thread resumes once there is room
            buf += chunk
        self.assertRegex(buf.decode('utf-8', 'replace'),
                         r'warning: \d+ log line\(s\) dropped: the log target did not keep up')


SYSLOG_WRAP = r'''
set -e
old=$(mktemp -d)
mount --bind /dev "$old"
mount -t tmpfs -o mode=755 tmpfs /dev
for n in null zero full random urandom tty; do
  if [ -e "$old/$n" ]; then touch /dev/$n; mount --bind "$old/$n" /dev/$n; fi
done
touch /dev/log
mount --bind "$SYSLOG_SOCK" /dev/log
umount -l "$old"
exec "$@"
'''


class SyslogTarget(DirCase):
    """log_target = syslog: coffred's lines reach /dev/log with the mail
    facility and their priorities. /dev/log is a socket of the test's,
    mounted in a private mount namespace for coffred alone (unshare -m);
    skipped where that cannot be done."""

    @classmethod
    def configure(cls):
        if os.getuid() != 0 or not shutil.which('unshare'):
            raise unittest.SkipTest('a private /dev/log needs root and unshare')
        cls.sock_path = os.path.join(cls.adir, 'log.sock')
        cls.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        cls.sock.bind(cls.sock_path)
        os.chmod(cls.sock_path, 0o666)
        os.environ['SYSLOG_SOCK'] = cls.sock_path
        probe = subprocess.run(['unshare', '-m', '--propagation', 'private', 'sh', '-c',
                                SYSLOG_WRAP, 'sh', 'true'], capture_output=True)
        if probe.returncode != 0:
            cls.sock.close()
            raise unittest.SkipTest('cannot make a private /dev/log: %s' % probe.stderr[-300:])
        cls.CONF = {'log_target': 'syslog'}
        cls.WRAP = ['unshare', '-m', '--propagation', 'private', 'sh', '-c', SYSLOG_WRAP, 'sh']

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.sock.close()

    def test_lines_reach_syslog_with_priorities(self):
        remote, _ = pop3_session(self.server)
        self.sock.settimeout(WAIT)
        got = {}
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not (21 in got and 22 in got):
            data = self.sock.recv(65536).decode('utf-8', 'replace')
            m = re.match(r'<(\d+)>', data)
            self.assertIsNotNone(m, data)
            pri = int(m.group(1))
            if pri == 21 and ('event=login' not in data or remote not in data):
                continue
            got.setdefault(pri, data)
        # facility mail (2 << 3): notice (5) for audit lines, info (6) for others
        self.assertIn(21, got)
        self.assertIn(22, got)
        self.assertRegex(got[21], r'coffred\[\d+\]: audit: event=login .*user=%s' % USER)


if __name__ == '__main__':
    harness.main()
