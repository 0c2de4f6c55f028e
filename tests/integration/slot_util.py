"""Helpers for the slot tests: two coffred slots (s1, s2) on one machine
sharing one account directory (the SQLite file named by accounts_dsn), each
with its own data directory, control socket and ports."""
import os
import pwd
import shutil
import sys
import tempfile
import unittest

import harness


def slot_add(ctl, name, host, ports, data_dir=None):
    """`coffrectl slot add` through ctl (a harness.Server-like object with
    .ctl) for a slot listening on host with ports['imap'|'pop3'|'lmtp']."""
    args = ['slot', 'add', name, '--host', host, '--imap-port', str(ports['imap']),
            '--pop3-port', str(ports['pop3']), '--lmtp-port', str(ports['lmtp'])]
    if data_dir:
        args += ['--data-dir', data_dir]
    rc, out, err = ctl.ctl(*args)
    if rc != 0:
        raise RuntimeError('coffrectl slot add %s: %d %s%s' % (name, rc, out, err))


class SlotPair:
    """Servers s1 and s2 (harness.Server) on one shared accounts file; the
    slots table names both. extra: more configuration for both."""

    def __init__(self, extra=None, names=('s1', 's2')):
        self.shared = tempfile.mkdtemp(prefix='coffre-it-slots-')
        pw = pwd.getpwnam(harness.RUN_USER)
        os.chmod(self.shared, 0o755)
        os.chown(self.shared, pw.pw_uid, pw.pw_gid)
        self.dsn = os.path.join(self.shared, 'accounts.sqlite')
        self.servers = {}
        for n in names:
            conf = {'accounts_dsn': self.dsn, 'slot_name': n}
            conf.update(extra or {})
            self.servers[n] = harness.Server(conf, name=n)

    def __getitem__(self, name):
        return self.servers[name]

    def start(self):
        for s in self.servers.values():
            s.start()
        for n, s in self.servers.items():
            slot_add(s, n, harness.HOST, s.ports, s.data_dir)
        return self

    def add_user(self, addr, password, slot):
        s = self.servers[slot]
        rc, out, err = s.ctl('user', 'add', addr, '--password-stdin', '--slot', slot,
                             input=password + '\n')
        if rc != 0:
            raise RuntimeError('user add %s: %s%s' % (addr, out, err))
        s.secrets.add(password)

    def stop(self):
        """Stops both; returns a list of problems (exit codes, sanitizer
        reports) for the caller to assert on."""
        problems = []
        for n, s in self.servers.items():
            alive = s.alive()
            rc = s.stop()
            reports = s.sanitizer_reports()
            if not alive or rc != 0 or reports:
                problems.append('%s: alive=%s rc=%r %s\n%s' % (n, alive, rc, reports[:5],
                                                              s.log_tail(100)))
        return problems

    def cleanup(self):
        for s in self.servers.values():
            s.cleanup()
        if os.environ.get('KEEP_TMP') != '1':
            shutil.rmtree(self.shared, ignore_errors=True)


def imap_login(server, addr, password):
    """(ok, text): a login over IMAPS; the client logged out after."""
    c = server.imap_ssl()
    try:
        try:
            typ, data = c.login(addr, password)
            ok = typ == 'OK'
            text = data[0].decode() if data and data[0] else ''
        except c.error as e:
            ok, text = False, str(e)
        return ok, text
    finally:
        try:
            c.logout()
        except Exception:
            pass


class SlotTestCase(unittest.TestCase):
    """Slots s1 and s2 per class (cls.pair); subclasses add accounts in
    setUpSlots. The logs of both are printed for every failing test; the
    class fails when a coffred died, did not exit 0 or a sanitizer spoke."""

    @classmethod
    def setUpClass(cls):
        cls.pair = SlotPair()
        try:
            cls.pair.start()
            cls.setUpSlots()
        except Exception:
            for s in cls.pair.servers.values():
                sys.stderr.write(s.log_tail() + '\n')
            cls.pair.cleanup()
            raise

    @classmethod
    def setUpSlots(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        try:
            problems = cls.pair.stop()
            if problems:
                raise AssertionError('\n'.join(problems))
        finally:
            cls.pair.cleanup()

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        r = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            for n, s in self.pair.servers.items():
                sys.stderr.write('\n==== %s ====\n%s\n' % (n, s.log_tail(80)))
        return r
