"""Running coffred as a service: what `meson install` puts where, the
systemd units (systemd-analyze verify and security), --check-config, the
sd_notify readiness protocol, and socket activation.

The example configuration and coffre.conf(5) are written from the table of
settings: checked here to hold every row of conf_settings[], and the
example, uncommented, to be a configuration coffred accepts."""
import fcntl
import imaplib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from test_config_keys import table_rows

BUILD = os.environ.get('BUILD_ROOT', '')
SECURITY_OK = 5.0   # systemd-analyze security: below 5.0 is "OK" or better


def build_options():
    out = subprocess.run(['meson', 'introspect', BUILD, '--buildoptions'],
                         capture_output=True, text=True, check=True).stdout
    return {o['name']: o['value'] for o in json.loads(out)}


def unit_dir(opts):
    if opts.get('systemdunitdir'):
        return opts['systemdunitdir']
    r = subprocess.run(['pkg-config', '--variable=systemdsystemunitdir', 'systemd'],
                       capture_output=True, text=True)
    return r.stdout.strip() or os.path.join(opts['prefix'], 'lib/systemd/system')


class Installed(unittest.TestCase):
    """meson install into a staging root, and what it holds."""

    @classmethod
    def setUpClass(cls):
        if not BUILD:
            raise unittest.SkipTest('BUILD_ROOT not set (meson test sets it)')
        cls.tmp = tempfile.mkdtemp(prefix='coffre-install-')
        cls.stage = os.path.join(cls.tmp, 'stage')
        r = subprocess.run(['meson', 'install', '-C', BUILD, '--no-rebuild', '--quiet',
                            '--destdir', cls.stage], capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError('meson install failed:\n%s%s' % (r.stdout, r.stderr))
        opts = build_options()
        pre = opts['prefix']

        def at(*parts):
            p = os.path.join(*parts)
            return p if os.path.isabs(p) else os.path.join(pre, p)
        cls.paths = {
            'coffred': at(opts['sbindir'], 'coffred'),
            'coffrectl': at(opts['bindir'], 'coffrectl'),
            'example': at(opts['datadir'], 'doc', 'coffre', 'coffre.conf.example'),
            'coffre.conf.5': at(opts['mandir'], 'man5', 'coffre.conf.5'),
            'coffred.8': at(opts['mandir'], 'man8', 'coffred.8'),
            'coffrectl.8': at(opts['mandir'], 'man8', 'coffrectl.8'),
            'coffred.service': at(unit_dir(opts), 'coffred.service'),
            'coffred.socket': at(unit_dir(opts), 'coffred.socket'),
        }

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def staged(self, name):
        return self.stage + self.paths[name]

    def read(self, name):
        with open(self.staged(name), encoding='utf-8') as f:
            return f.read()

    def test_tree(self):
        for name in self.paths:
            self.assertTrue(os.path.isfile(self.staged(name)), '%s not installed at %s'
                            % (name, self.paths[name]))
        self.assertIn('/sbin/', self.paths['coffred'])
        self.assertIn('/bin/', self.paths['coffrectl'])
        self.assertNotIn('/sbin/', self.paths['coffrectl'])
        for prog in ('coffred', 'coffrectl'):
            self.assertTrue(os.access(self.staged(prog), os.X_OK))
            r = subprocess.run([self.staged(prog), '--help'], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn('usage: %s' % prog, r.stdout + r.stderr)

    def test_man_pages_format_cleanly(self):
        if not shutil.which('man'):
            self.skipTest('man is not installed')
        for page in ('coffre.conf.5', 'coffred.8', 'coffrectl.8'):
            r = subprocess.run(['man', '--warnings', '-l', self.staged(page)],
                               capture_output=True, text=True, env=dict(os.environ, MANWIDTH='80'))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr, '', '%s: %s' % (page, r.stderr))
            self.assertIn('NAME', r.stdout)

    def test_every_setting_in_the_man_page(self):
        text = self.read('coffre.conf.5')
        rows = table_rows()
        self.assertGreater(len(rows), 40)
        for key in rows:
            troff_key = key.replace('-', '\\-')
            self.assertRegex(text, r'\n\\fB%s\\fR = ' % re.escape(troff_key),
                             'coffre.conf(5) misses %s' % key)
        # each group of the table is a section
        for group in {g for _, g in rows.values()}:
            self.assertIn('\n.SS %s\n' % group, text)

    def test_every_setting_in_the_example(self):
        text = self.read('example')
        rows = table_rows()
        seen = dict(re.findall(r'(?m)^#([a-z0-9_]+) = (.*)$', text))
        self.assertEqual(set(seen), set(rows), 'the example and conf_settings[] differ')
        for key, (default, _) in rows.items():
            self.assertEqual(seen[key], default, key)
        # every other line is a comment or blank: uncommented, it is the defaults
        for line in text.splitlines():
            self.assertTrue(line == '' or line.startswith('#'), line)

    def test_example_uncommented_is_accepted(self):
        cert, key = harness.gen_cert(self.tmp)
        conf = os.path.join(self.tmp, 'example.conf')
        with open(conf, 'w') as f:
            for line in self.read('example').splitlines():
                m = re.match(r'#([a-z0-9_]+) = (.*)$', line)
                if not m:
                    continue
                k, v = m.groups()
                v = {'tls_cert': cert, 'tls_key': key,
                     'data_dir': os.path.join(self.tmp, 'data')}.get(k, v)
                f.write('%s = %s\n' % (k, v))
        r = subprocess.run([harness.COFFRED, '-c', conf, '--check-config'],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_service_unit(self):
        unit = self.read('coffred.service')
        lines = [l for l in unit.splitlines() if l and not l.startswith('#')]

        def values(key):
            return [l.split('=', 1)[1] for l in lines if l.startswith(key + '=')]
        self.assertEqual(values('Type'), ['notify'])
        self.assertEqual(values('ExecStart'), ['%s --foreground' % self.paths['coffred']])
        self.assertEqual(values('ExecStartPre'), ['%s --check-config' % self.paths['coffred']])
        self.assertEqual(values('ExecReload'), ['/bin/kill -HUP $MAINPID'])
        self.assertEqual(values('ProtectSystem'), ['strict'])
        self.assertEqual(values('NoNewPrivileges'), ['yes'])
        self.assertEqual(set(values('CapabilityBoundingSet')[0].split()),
                         {'CAP_NET_BIND_SERVICE', 'CAP_SETUID', 'CAP_SETGID', 'CAP_CHOWN'})
        self.assertEqual(values('RestrictAddressFamilies'), ['AF_UNIX AF_INET AF_INET6'])
        self.assertIn('@system-service', values('SystemCallFilter'))
        self.assertIn('-/var/lib/coffre', values('ReadWritePaths'))

    def units_for_verify(self):
        """The staged units, their programs' paths pointing into the
        staging root (systemd-analyze verify checks that they exist)."""
        d = os.path.join(self.tmp, 'units')
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, 'coffred.service'), 'w') as f:
            f.write(self.read('coffred.service').replace(self.paths['coffred'],
                                                         self.staged('coffred')))
        shutil.copy(self.staged('coffred.socket'), d)
        return [os.path.join(d, u) for u in ('coffred.service', 'coffred.socket')]

    def test_systemd_analyze_verify(self):
        if not shutil.which('systemd-analyze'):
            self.skipTest('systemd-analyze is not installed')
        r = subprocess.run(['systemd-analyze', 'verify', '--man=no'] + self.units_for_verify(),
                           capture_output=True, text=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ''))

    def test_systemd_analyze_security(self):
        if not shutil.which('systemd-analyze'):
            self.skipTest('systemd-analyze is not installed')
        service = self.units_for_verify()[0]
        r = subprocess.run(['systemd-analyze', 'security', '--offline=true', service],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r'Overall exposure level for coffred\.service: ([0-9.]+) (\w+)', r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        score, band = float(m.group(1)), m.group(2)
        print('systemd-analyze security: %.1f %s' % (score, band))
        self.assertIn(band, ('OK', 'SAFE', 'PERFECT'))
        self.assertLess(score, SECURITY_OK)


def syscall_group(name, seen=None):
    """The system calls of a systemd-analyze syscall-filter group."""
    out = subprocess.run(['systemd-analyze', 'syscall-filter', name], capture_output=True,
                         text=True, check=True).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        calls |= syscall_group(line) if line.startswith('@') else {line}
    return calls


class Sandbox(unittest.TestCase):
    """What coffred does, traced by strace through a mix of sessions
    (IMAPS login, APPEND, SEARCH, FETCH, STORE, EXPUNGE; an LMTP
    delivery; POP3S; SIGHUP; SIGTERM), stays inside the unit's sandbox:
    each system call passes its SystemCallFilter, each socket is of a
    family of RestrictAddressFamilies, and no mapping is made writable
    and executable at once (MemoryDenyWriteExecute)."""

    def setUp(self):
        for tool in ('strace', 'systemd-analyze', 'pgrep'):
            if not shutil.which(tool):
                self.skipTest('%s is not installed' % tool)
        if harness.sanitized():
            # the sanitizers' runtime makes calls of its own, and
            # LeakSanitizer does not run under ptrace: the release build
            # is what the unit runs
            self.skipTest('a sanitizer build')
        self.trace = tempfile.NamedTemporaryFile(prefix='coffre-strace-', delete=False).name
        self.srv = harness.Server(wrap=['strace', '-f', '-qq', '-o', self.trace])

    def tearDown(self):
        self.srv.cleanup()
        os.unlink(self.trace)

    def unit_filter(self):
        path = os.path.join(os.path.dirname(harness.COFFRED), 'dist', 'coffred.service')
        allowed, families = None, set()
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith('SystemCallFilter='):
                    v = line.split('=', 1)[1]
                    deny = v.startswith('~')
                    names = set()
                    for n in v.lstrip('~').split():
                        names |= syscall_group(n) if n.startswith('@') else {n}
                    if allowed is None:
                        self.assertFalse(deny, 'the filter starts with an allow list')
                        allowed = names
                    elif deny:
                        allowed -= names
                    else:
                        allowed |= names
                elif line.startswith('RestrictAddressFamilies='):
                    families = set(line.split('=', 1)[1].split())
        self.assertIsNotNone(allowed)
        return allowed, families

    def test_traced_sessions_stay_inside(self):
        import poplib
        import smtplib
        srv = self.srv
        srv.add_user('alice@example.org', 'alice-password-1')
        os.chmod(srv.key, 0o644)
        srv.start()
        c = srv.imap_ssl()
        c.login('alice@example.org', 'alice-password-1')
        c.append('INBOX', None, None, b'Subject: a\r\n\r\nbody\r\n')
        lm = smtplib.LMTP(harness.HOST, srv.ports['lmtp'])
        lm.sendmail('b@example.net', ['alice@example.org'], b'Subject: x\r\n\r\nhello\r\n')
        lm.quit()
        c.select('INBOX')
        c.search(None, 'TEXT', 'hello')
        c.fetch('1:*', '(FLAGS BODY[])')
        c.store('1', '+FLAGS', '\\Deleted')
        c.expunge()
        c.logout()
        p = poplib.POP3_SSL(harness.HOST, srv.ports['pop3s'], context=srv.ctx(),
                            timeout=harness.IO_TIMEOUT)
        p.user('alice@example.org')
        p.pass_('alice-password-1')
        p.stat()
        p.quit()
        # the signals go to coffred, not to strace
        pid = int(subprocess.run(['pgrep', '-P', str(srv.proc.pid)], capture_output=True,
                                 text=True).stdout.split()[0])
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + harness.IO_TIMEOUT
        while 'certificate and key reloaded' not in srv.log():
            self.assertLess(time.monotonic(), deadline, srv.log_tail())
            time.sleep(0.05)
        os.kill(pid, signal.SIGTERM)
        self.assertEqual(srv.proc.wait(30), 0, srv.log_tail())

        allowed, families = self.unit_filter()
        calls, used_families, wx = set(), set(), []
        with open(self.trace) as f:
            for line in f:
                m = re.match(r'\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]', line)
                if m and m.group(1) not in ('exited', 'resumed', 'killed'):
                    calls.add(m.group(1))
                m = re.search(r'\bsocket\((AF_[A-Z0-9]+)', line)
                if m:
                    used_families.add(m.group(1))
                if re.search(r'(mmap|mprotect)\(.*PROT_EXEC', line) and (
                        'PROT_WRITE' in line or 'mprotect' in line):
                    wx.append(line.strip())
        self.assertGreater(len(calls), 30, 'strace saw too little')
        self.assertIn('setuid', calls)
        self.assertEqual(sorted(calls - allowed), [])
        self.assertTrue(used_families <= families, sorted(used_families - families))
        self.assertEqual(wx, [])


class CheckConfig(unittest.TestCase):
    """coffred --check-config: 0 for a usable configuration, 2 and the
    reason otherwise; nothing bound either way."""

    def setUp(self):
        self.srv = harness.Server()

    def tearDown(self):
        self.srv.cleanup()

    def run_check(self):
        return subprocess.run([harness.COFFRED, '-c', self.srv.conf_path, '--check-config'],
                              capture_output=True, text=True, timeout=30)

    def assert_nothing_bound(self):
        for port in self.srv.ports.values():
            s = socket.socket()
            try:
                s.bind((harness.HOST, port))   # free: coffred did not take it
            finally:
                s.close()

    def test_good(self):
        r = self.run_check()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('configuration ok', r.stdout)
        self.assert_nothing_bound()
        self.assertFalse(os.path.exists(self.srv.data_dir))

    def test_unknown_key(self):
        self.srv.write_conf(lines=['imap_listn = 127.0.0.1:1'])
        r = self.run_check()
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, r'coffred\.conf:\d+: unknown setting .imap_listn.')

    def test_bad_value(self):
        self.srv.conf['max_connections'] = '0'
        self.srv.write_conf()
        r = self.run_check()
        self.assertEqual(r.returncode, 2)
        self.assertIn('max_connections', r.stderr)

    def test_unreadable_certificate(self):
        self.srv.conf['tls_cert'] = os.path.join(self.srv.tmp, 'missing.pem')
        self.srv.write_conf()
        r = self.run_check()
        self.assertEqual(r.returncode, 2)
        self.assertIn('missing.pem', r.stderr)
        self.assert_nothing_bound()

    def test_key_of_another_certificate(self):
        _, other_key = harness.gen_cert(os.path.join(self.srv.tmp, 'other'), 'other')
        self.srv.conf['tls_key'] = other_key
        self.srv.write_conf()
        r = self.run_check()
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)


class Notify(unittest.TestCase):
    """sd_notify: a datagram socket of the test stands for systemd's."""

    def setUp(self):
        self.srv = harness.Server()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.saved = os.environ.get('NOTIFY_SOCKET')

    def tearDown(self):
        self.srv.cleanup()
        self.sock.close()
        if self.saved is None:
            os.environ.pop('NOTIFY_SOCKET', None)
        else:
            os.environ['NOTIFY_SOCKET'] = self.saved

    def start(self, address):
        os.environ['NOTIFY_SOCKET'] = address
        self.srv.logf = open(self.srv.log_path, 'ab')
        self.srv.proc = subprocess.Popen([harness.COFFRED, '-c', self.srv.conf_path,
                                          '--foreground'], stdin=subprocess.DEVNULL,
                                         stdout=self.srv.logf, stderr=subprocess.STDOUT)
        os.environ.pop('NOTIFY_SOCKET', None)

    def message(self, timeout=harness.START_TIMEOUT):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            self.fail('no notification within %ss (coffred %s)\n%s'
                      % (timeout, 'running' if self.srv.alive() else 'exited: %s'
                         % self.srv.proc.returncode, self.srv.log_tail()))
        return dict(l.split('=', 1) for l in data.split('\n') if l)

    def expect(self, key, timeout=harness.START_TIMEOUT):
        """The next message that has key (STATUS updates may come between)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.message(max(0.1, deadline - time.monotonic()))
            if key in m:
                return m

    def ready_then_reload_then_stop(self):
        os.chmod(self.srv.key, 0o644)   # read again after the drop to run_user
        m = self.expect('READY')
        self.assertEqual(m['READY'], '1')
        self.assertRegex(m['STATUS'], r'^0 connection\(s\), 5 listener\(s\)$')
        # READY means every listener accepts: connect to each at once
        for service, port in self.srv.ports.items():
            socket.create_connection((harness.HOST, port), timeout=5).close()
        c = self.srv.imap_ssl()
        c.noop()
        # the count of connections reaches STATUS (refreshed every 5 s)
        m = self.expect('STATUS', timeout=30)
        self.assertRegex(m['STATUS'], r'^[1-9]\d* connection\(s\)')
        self.srv.signal(signal.SIGHUP)
        m = self.expect('RELOADING')
        self.assertEqual(m['RELOADING'], '1')
        now_us = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
        self.assertLessEqual(int(m['MONOTONIC_USEC']), now_us)
        self.assertGreater(int(m['MONOTONIC_USEC']), now_us - 60e6)
        m = self.expect('READY')
        self.assertEqual(m['READY'], '1')
        self.assertIn('reload: certificate and key reloaded', self.srv.log())
        c.logout()
        self.srv.signal(signal.SIGTERM)
        m = self.expect('STOPPING')
        self.assertEqual(m['STOPPING'], '1')
        self.assertEqual(self.srv.proc.wait(20), 0)

    def test_path_socket(self):
        path = os.path.join(self.srv.tmp, 'notify')
        self.sock.bind(path)
        os.chmod(path, 0o666)   # coffred sends after its privilege drop
        self.start(path)
        self.ready_then_reload_then_stop()

    def test_abstract_socket(self):
        name = 'coffre-test-notify-%d' % os.getpid()
        self.sock.bind('\0' + name)
        self.start('@' + name)
        self.ready_then_reload_then_stop()

    def test_without_notify_socket(self):
        os.environ.pop('NOTIFY_SOCKET', None)
        self.srv.start()
        self.srv.imap_ssl().logout()
        self.assertEqual(self.srv.stop(), 0)


class SocketActivation(unittest.TestCase):
    """Sockets bound by the test and passed as systemd passes them
    (descriptors from 3, LISTEN_FDS, LISTEN_FDNAMES, and LISTEN_PID set by
    the shell that then becomes coffred)."""

    def setUp(self):
        self.srv = harness.Server()
        self.socks = []

    def tearDown(self):
        self.srv.cleanup()
        for s in self.socks:
            s.close()

    def listening(self, family, address):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind(address)
        s.listen(16)
        self.socks.append(s)
        return s

    def test_passed_sockets(self):
        srv = self.srv
        lmtp_path = os.path.join(srv.tmp, 'lmtp.sock')
        srv.conf['lmtp_listen'] = 'unix:' + lmtp_path
        srv.write_conf()
        imaps = self.listening(socket.AF_INET, (harness.HOST, srv.ports['imaps']))
        lmtp = self.listening(socket.AF_UNIX, lmtp_path)
        os.chmod(lmtp_path, 0o666)
        stray = self.listening(socket.AF_INET, (harness.HOST, 0))
        fds = [imaps.fileno(), lmtp.fileno(), stray.fileno()]

        def to_3_4_5():
            # out of the way first, so that no source is overwritten
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
            for i, fd in enumerate(high):
                os.dup2(fd, 3 + i)    # inherited: dup2 clears close-on-exec
                os.close(fd)
        env = dict(os.environ, LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES='imaps:lmtp:stray')
        srv.add_user('alice@example.org', 'alice-password-1')
        srv.logf = open(srv.log_path, 'ab')
        srv.proc = subprocess.Popen(
            ['sh', '-c', 'LISTEN_PID=$$ exec "$0" "$@"', harness.COFFRED, '-c', srv.conf_path,
             '--foreground'], stdin=subprocess.DEVNULL, stdout=srv.logf,
            stderr=subprocess.STDOUT, env=env, close_fds=False, preexec_fn=to_3_4_5)
        ports = dict(srv.ports)
        del ports['lmtp']
        srv.ports, all_ports = ports, srv.ports
        srv.wait_ports()
        srv.ports = all_ports
        log = srv.log()
        self.assertRegex(log, r'listening on 127\.0\.0\.1:%d \(imaps\), socket imaps passed'
                         % srv.ports['imaps'])
        self.assertIn('listening on unix:%s (lmtp), socket lmtp passed' % lmtp_path, log)
        self.assertIn('socket stray passed by the service manager (descriptor 5) matches no '
                      'configured address: closed', log)
        # the passed socket serves IMAPS: had coffred bound the address
        # itself, it would have failed (the test holds it)
        c = srv.imap_ssl()
        c.login('alice@example.org', 'alice-password-1')
        # and LMTP over the passed unix socket delivers
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.settimeout(harness.IO_TIMEOUT)
        u.connect(lmtp_path)
        f = u.makefile('rwb')

        def say(line, code):
            if line:
                f.write(line.encode() + b'\r\n')
                f.flush()
            while True:
                reply = f.readline().decode()
                self.assertTrue(reply.startswith(code), reply)
                if reply[3] == ' ':
                    return
        say(None, '220')
        say('LHLO test', '250')
        say('MAIL FROM:<bob@example.net>', '250')
        say('RCPT TO:<alice@example.org>', '250')
        say('DATA', '354')
        say('Subject: passed\r\n\r\nthrough a passed socket\r\n.', '250')
        say('QUIT', '221')
        u.close()
        c.select('INBOX')
        typ, data = c.search(None, 'SUBJECT', 'passed')
        self.assertEqual(data[0].split(), [b'1'])
        c.logout()
        self.assertEqual(srv.stop(), 0)
        # the unit owns the unix socket: still there, still listening
        self.assertTrue(os.path.exists(lmtp_path))
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(lmtp_path)
        probe.close()

    def test_sockets_of_another_process_are_ignored(self):
        """LISTEN_PID naming another process: coffred binds for itself."""
        env = dict(os.environ, LISTEN_FDS='1', LISTEN_PID='1')
        self.srv.logf = open(self.srv.log_path, 'ab')
        self.srv.proc = subprocess.Popen(
            [harness.COFFRED, '-c', self.srv.conf_path, '--foreground'],
            stdin=subprocess.DEVNULL, stdout=self.srv.logf, stderr=subprocess.STDOUT, env=env)
        self.srv.wait_ports()
        self.assertNotIn('passed by the service manager', self.srv.log())
        self.srv.imap_ssl().logout()
        self.assertEqual(self.srv.stop(), 0)


if __name__ == '__main__':
    unittest.main()
