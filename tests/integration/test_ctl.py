"""coffrectl against a running coffred: each account change is followed at
once by the login result (the daemon's authentication cache included), and
errors have their documented exit codes."""
import os
import pwd
import shutil
import sqlite3
import subprocess

import harness
from harness import ServerTestCase, imap_quote

OK, FAIL, DISABLED = 'ok', 'fail', 'disabled'


class CtlRoundTrip(ServerTestCase):

    def imap_login(self, user, password):
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            _, t = c.cmd('a', 'LOGIN %s %s' % (imap_quote(user), imap_quote(password)))
        if t.startswith('a OK'):
            return OK
        if t == 'a NO [AUTHENTICATIONFAILED] Authentication failed.':
            return FAIL
        if t.startswith('a NO [CONTACTADMIN]'):
            return DISABLED
        self.fail('unexpected LOGIN reply %r' % t)

    def pop3_login(self, user, password):
        with self.server.raw('pop3s', tls=True) as c:
            c.line()
            c.send('USER %s\r\n' % user)
            c.line()
            c.send('PASS %s\r\n' % password)
            return c.line()

    def ctl_ok(self, *args, input=None):
        rc, out, err = self.server.ctl(*args, input=input)
        self.assertEqual(rc, 0, 'coffrectl %s: rc %d\n%s%s' % (' '.join(args), rc, out, err))
        return out

    def test_round_trip(self):
        u = 'round@example.org'
        self.assertEqual(self.imap_login(u, 'first password'), FAIL)
        self.ctl_ok('user', 'add', u, '--password-stdin', input='first password\n')
        self.assertEqual(self.imap_login(u, 'first password'), OK)
        self.assertEqual(self.pop3_login(u, 'first password'), '+OK Logged in.')
        # Twice: the second one may come from the authentication cache.
        self.assertEqual(self.imap_login(u, 'first password'), OK)

        self.ctl_ok('user', 'passwd', u, '--password-stdin', input='second password\n')
        self.assertEqual(self.imap_login(u, 'first password'), FAIL)
        self.assertEqual(self.pop3_login(u, 'first password'),
                         '-ERR [AUTH] Authentication failed.')
        self.assertEqual(self.imap_login(u, 'second password'), OK)
        self.assertEqual(self.imap_login(u, 'second password'), OK)

        self.ctl_ok('user', 'disable', u)
        self.assertEqual(self.imap_login(u, 'second password'), DISABLED)
        r = self.pop3_login(u, 'second password')
        self.assertTrue(r.startswith('-ERR'), r)
        # A wrong password on a disabled account says nothing about it.
        self.assertEqual(self.imap_login(u, 'wrong'), FAIL)

        self.ctl_ok('user', 'enable', u)
        self.assertEqual(self.imap_login(u, 'second password'), OK)

        self.ctl_ok('user', 'del', u)
        self.assertEqual(self.imap_login(u, 'second password'), FAIL)
        self.assertEqual(self.pop3_login(u, 'second password'),
                         '-ERR [AUTH] Authentication failed.')
        out = self.ctl_ok('user', 'list')
        self.assertNotIn(u, out)

    def test_disable_ends_cached_login_at_once(self):
        u = 'cached@example.org'
        self.ctl_ok('user', 'add', u, '--password-stdin', input='cache me please\n')
        for _ in range(3):
            self.assertEqual(self.imap_login(u, 'cache me please'), OK)
        self.ctl_ok('user', 'disable', u)
        self.assertEqual(self.imap_login(u, 'cache me please'), DISABLED)

    def test_list_and_show(self):
        self.ctl_ok('user', 'add', 'listed@example.org', '--password-stdin', input='password one\n')
        self.ctl_ok('user', 'add', 'other@example.org', '--password-stdin', input='password two\n')
        out = self.ctl_ok('user', 'list')
        self.assertIn('listed@example.org', out)
        self.assertIn('other@example.org', out)
        out = self.ctl_ok('user', 'show', 'listed@example.org')
        self.assertIn('listed@example.org', out)
        self.assertNotIn('other@example.org', out)
        # Neither the password nor its hash is shown.
        self.assertNotIn('password one', out)
        self.assertNotIn('$y$', out)

    def test_address_case_and_default_domain(self):
        self.ctl_ok('user', 'add', 'Mixed.Case@Example.ORG', '--password-stdin',
                    input='mixed password\n')
        self.assertEqual(self.imap_login('mixed.case@example.org', 'mixed password'), OK)
        self.assertEqual(self.imap_login('MIXED.CASE@EXAMPLE.ORG', 'mixed password'), OK)
        self.assertEqual(self.imap_login('mixed.case', 'mixed password'), OK)
        rc, out, err = self.server.ctl('user', 'add', 'mixed.case@example.org',
                                       '--password-stdin', input='again and again\n')
        self.assertEqual(rc, 4, out + err)

    def test_exit_codes(self):
        self.ctl_ok('user', 'add', 'dup@example.org', '--password-stdin', input='dup password\n')
        rc, out, err = self.server.ctl('user', 'add', 'dup@example.org', '--password-stdin',
                                       input='other password\n')
        self.assertEqual(rc, 4, 'duplicate add: ' + out + err)
        self.assertTrue(err.strip(), 'no message on stderr')
        # The duplicate did not change the password.
        self.assertEqual(self.imap_login('dup@example.org', 'dup password'), OK)

        rc, out, err = self.server.ctl('user', 'passwd', 'ghost@example.org',
                                       '--password-stdin', input='whatever password\n')
        self.assertEqual(rc, 3, 'passwd of unknown user: ' + out + err)
        self.assertTrue(err.strip())

        for bad in ('no spaces@example.org', '@example.org', 'a@', 'a@@b', 'x' * 400 + '@e.org'):
            rc, out, err = self.server.ctl('user', 'add', bad, '--password-stdin',
                                           input='fine password\n')
            self.assertEqual(rc, 5, 'bad address %r: rc %d %s%s' % (bad[:40], rc, out, err))

        rc, out, err = self.server.ctl('user', 'add', 'empty@example.org', '--password-stdin',
                                       input='\n')
        self.assertEqual(rc, 6, 'empty password: ' + out + err)
        rc, out, err = self.server.ctl('user', 'add', 'empty@example.org', '--password-stdin',
                                       input='')
        self.assertEqual(rc, 6, 'no password at all: ' + out + err)
        self.assertEqual(self.imap_login('empty@example.org', ''), FAIL)
        out = self.ctl_ok('user', 'list')
        self.assertNotIn('empty@example.org', out)

    def test_files_belong_to_run_user(self):
        if os.geteuid() != 0:
            self.skipTest('only meaningful as root')
        self.ctl_ok('user', 'add', 'owner@example.org', '--password-stdin', input='own password\n')
        uid = pwd.getpwnam(harness.RUN_USER).pw_uid
        bad = []
        for root, dirs, files in os.walk(self.server.data_dir):
            for n in dirs + files:
                p = os.path.join(root, n)
                if os.lstat(p).st_uid != uid:
                    bad.append(p)
        self.assertEqual(bad, [], 'files not owned by %s' % harness.RUN_USER)
        self.assertEqual(os.stat(self.server.data_dir).st_mode & 0o777, 0o700)

    def test_max_messages(self):
        u = 'counted@example.org'
        self.ctl_ok('user', 'add', u, '--password-stdin', '--quota', '5M', '--max-messages', '40',
                    input='counted password\n')
        out = self.ctl_ok('user', 'show', u)
        self.assertIn('quota:   5M', out)
        self.assertIn('max messages: 40', out)
        self.assertIn('max messages of %s: 12' % u,
                      self.ctl_ok('user', 'quota', u, '--max-messages', '12'))
        self.assertIn('max messages: 12', self.ctl_ok('user', 'show', u))
        self.assertEqual(self.imap_login(u, 'counted password'), OK)

    def test_old_accounts_database_upgraded(self):
        """An accounts database without the message quota's column: the
        first open adds it, the accounts stay as they were."""
        d = os.path.join(self.server.tmp, 'olddata')
        os.makedirs(d)
        db = sqlite3.connect(os.path.join(d, 'accounts.sqlite'))
        db.executescript(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " address TEXT UNIQUE NOT NULL COLLATE NOCASE, hash TEXT NOT NULL,"
            " disabled INTEGER NOT NULL DEFAULT 0, quota INTEGER NOT NULL DEFAULT 0,"
            " created INTEGER NOT NULL);"
            "INSERT INTO accounts (address, hash, quota, created)"
            " VALUES ('old@example.org', 'x', 1048576, 1);")
        db.close()
        uid = pwd.getpwnam(harness.RUN_USER)
        for p in (d, os.path.join(d, 'accounts.sqlite')):
            os.chown(p, uid.pw_uid, uid.pw_gid)
        conf = os.path.join(self.server.tmp, 'old.conf')
        with open(self.server.conf_path) as f, open(conf, 'w') as g:
            for line in f:
                g.write('data_dir = %s\n' % d if line.startswith('data_dir') else line)
        try:
            def ctl(*args):
                r = subprocess.run([harness.COFFRECTL, '-c', conf] + list(args),
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                return r.stdout
            out = ctl('user', 'show', 'old@example.org')
            self.assertIn('quota:   1M', out)
            self.assertIn('max messages: unlimited', out)
            ctl('user', 'quota', 'old@example.org', '--max-messages', '25')
            self.assertIn('max messages: 25', ctl('user', 'show', 'old@example.org'))
            self.assertIn('quota:   1M', ctl('user', 'show', 'old@example.org'))
            db = sqlite3.connect(os.path.join(d, 'accounts.sqlite'))
            cols = [r[1] for r in db.execute('PRAGMA table_info(accounts)')]
            db.close()
            self.assertEqual(cols.count('max_messages'), 1, cols)
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    harness.main()
