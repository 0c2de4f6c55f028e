"""The Debian package of scripts/build-deb, built once, checked by
lintian (no errors), installed on this machine with dpkg -i, listed with
dpkg -L and checked, then purged: the mail in /var/lib/coffre survives
the purge. Installs into the system, so it runs only as root, and only
where no coffre package, /etc/coffre or /var/lib/coffre is there already;
it removes all it added (package, data directory, user and group)."""
import grp
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import unittest

SRC = os.environ.get('SOURCE_ROOT', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 '..', '..'))
BUILD = os.environ.get('BUILD_ROOT', '')
DATA = '/var/lib/coffre'

EXPECTED = {
    '/usr/sbin/coffred', '/usr/bin/coffrectl', '/etc/coffre/coffre.conf',
    '/lib/systemd/system/coffred.service', '/lib/systemd/system/coffred.socket',
    '/usr/share/man/man5/coffre.conf.5.gz', '/usr/share/man/man8/coffred.8.gz',
    '/usr/share/man/man8/coffrectl.8.gz', '/usr/share/doc/coffre/copyright',
    '/usr/share/doc/coffre/changelog.gz', '/usr/share/doc/coffre/coffre.conf.example',
}


def run(*cmd, check=True, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=600, **kw)
    if check and r.returncode != 0:
        raise AssertionError('%s failed (%d):\n%s%s' % (' '.join(cmd), r.returncode,
                                                         r.stdout, r.stderr))
    return r


def installed():
    r = run('dpkg-query', '-W', '-f', '${Status}', 'coffre', check=False)
    return 'installed' in r.stdout and 'not-installed' not in r.stdout


def exists_user(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def exists_group(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


class Deb(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest('installs a package: needs root')
        for tool in ('dpkg', 'dpkg-deb', 'dpkg-shlibdeps', 'meson'):
            if not shutil.which(tool):
                raise unittest.SkipTest('%s is not installed' % tool)
        r = run('dpkg-query', '-W', '-f', '${Status}', 'coffre', check=False)
        if r.returncode == 0 and 'not-installed' not in r.stdout:
            raise unittest.SkipTest('a coffre package is already on this machine')
        for p in (DATA, '/etc/coffre'):
            if os.path.exists(p):
                raise unittest.SkipTest('%s already exists: not touching it' % p)
        cls.had_user, cls.had_group = exists_user('coffre'), exists_group('coffre')
        cls.tmp = tempfile.mkdtemp(prefix='coffre-deb-')
        # a release build with prefix /usr of its own, kept between runs
        build = os.path.join(BUILD or cls.tmp, 'deb-tree')
        out = run(os.path.join(SRC, 'scripts', 'build-deb'), '--build', build,
                  '--out', cls.tmp).stdout.strip().splitlines()
        cls.deb = out[-1]
        assert cls.deb.endswith('.deb') and os.path.isfile(cls.deb), out

    @classmethod
    def tearDownClass(cls):
        if installed():
            run('dpkg', '--purge', 'coffre', check=False)
        shutil.rmtree(DATA, ignore_errors=True)
        shutil.rmtree('/etc/coffre', ignore_errors=True)
        if not cls.had_user and exists_user('coffre'):
            run('userdel', 'coffre', check=False)
        if not cls.had_group and exists_group('coffre'):
            run('groupdel', 'coffre', check=False)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_lintian(self):
        if not shutil.which('lintian'):
            self.skipTest('lintian is not installed (scripts/install-deps installs it)')
        r = run('lintian', '--tag-display-limit', '0', self.deb, check=False)
        print('lintian:\n' + (r.stdout.strip() or '(nothing)'))
        errors = [l for l in r.stdout.splitlines() if l.startswith('E:')]
        self.assertEqual(errors, [])
        # exit status 2 is lintian's own failure, not a finding
        self.assertIn(r.returncode, (0, 1), r.stderr)

    def test_control(self):
        control = run('dpkg-deb', '-f', self.deb).stdout
        depends = re.search(r'(?m)^Depends: (.*)$', control).group(1)
        for lib in ('libgnutls30', 'libuv1', 'libsqlite3-0', 'libcrypt1', 'libjemalloc2', 'libc6'):
            self.assertRegex(depends, r'(^|, )%s \(>= ' % lib)
        self.assertEqual(run('dpkg-deb', '-f', self.deb, 'Package').stdout.strip(), 'coffre')

    def test_install_list_purge(self):
        r = run('dpkg', '-i', self.deb, env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'))
        self.assertTrue(installed())
        listed = run('dpkg', '-L', 'coffre').stdout.splitlines()
        print('dpkg -L coffre:\n' + '\n'.join(listed))
        files = {p for p in listed if os.path.isfile(p)}
        self.assertTrue(EXPECTED <= files, sorted(EXPECTED - files))
        conffiles = run('dpkg-query', '-W', '-f', '${Conffiles}', 'coffre').stdout
        self.assertIn('/etc/coffre/coffre.conf ', conffiles)
        self.assertTrue(os.access('/usr/sbin/coffred', os.X_OK))

        # the maintainer scripts: the system user and the data directory
        user = pwd.getpwnam('coffre')
        self.assertLess(user.pw_uid, 1000)
        self.assertEqual(user.pw_shell, '/usr/sbin/nologin')
        st = os.stat(DATA)
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (user.pw_uid, 0o700))
        # no systemd runs here: the unit is enabled all the same, and the
        # installed one verifies with its real paths
        self.assertTrue(os.path.islink('/etc/systemd/system/multi-user.target.wants/'
                                       'coffred.service'))
        if shutil.which('systemd-analyze'):
            v = run('systemd-analyze', 'verify', '/lib/systemd/system/coffred.service',
                    '/lib/systemd/system/coffred.socket', check=False)
            self.assertEqual((v.returncode, v.stdout + v.stderr), (0, ''))
        # the installed program reads the installed configuration (it names
        # certificates not made yet)
        c = run('/usr/sbin/coffred', '--check-config', check=False)
        self.assertEqual(c.returncode, 2)
        self.assertIn('/etc/coffre/cert.pem', c.stderr)

        # mail in the data directory, then purge
        mail = os.path.join(DATA, 'users', '1', 'Maildir', 'cur', '1.test:2,S')
        os.makedirs(os.path.dirname(mail))
        with open(mail, 'w') as f:
            f.write('Subject: kept\r\n\r\nnever removed without asking\r\n')
        p = run('dpkg', '--purge', 'coffre')
        self.assertFalse(installed())
        self.assertIn('/var/lib/coffre are kept', p.stdout + p.stderr)
        self.assertFalse(os.path.exists('/usr/sbin/coffred'))
        self.assertFalse(os.path.exists('/etc/coffre/coffre.conf'))
        self.assertFalse(os.path.lexists('/etc/systemd/system/multi-user.target.wants/'
                                         'coffred.service'))
        with open(mail) as f:
            self.assertIn('never removed without asking', f.read())


if __name__ == '__main__':
    unittest.main()
