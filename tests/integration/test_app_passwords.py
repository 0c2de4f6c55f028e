"""App passwords (coffrectl user app-password add|list|del): extra passwords
of one account, each logging in over IMAP and POP3 with its label in the
login line, each revocable alone and at once (through the authentication
cache too), bounded in number, removed with the account, and refused for
any service their row does not list."""
import base64
import os
import re
import sqlite3
import time

import harness
from harness import ServerTestCase, imap_quote

USER = 'apps@example.org'
MAIN = 'main password 1'
CHOSEN = 'lapt-correct horse battery'
FAILED_IMAP = 'a NO [AUTHENTICATIONFAILED] Authentication failed.'
FAILED_POP3 = '-ERR [AUTH] Authentication failed.'
APP_FORM = re.compile(r'^[a-z0-9]{4}(-[a-z0-9]{4}){4}$')


class AppPasswordCase(ServerTestCase):

    def ctl(self, *args, input=None):
        return self.server.ctl(*args, input=input)

    def ctl_ok(self, *args, input=None):
        rc, out, err = self.ctl(*args, input=input)
        self.assertEqual(rc, 0, 'coffrectl %s: rc %d\n%s%s' % (' '.join(args), rc, out, err))
        return out

    def add_app(self, user, label, chosen=None):
        """Adds an app password; returns it (the generated one as printed)."""
        if chosen is not None:
            out = self.ctl_ok('user', 'app-password', 'add', user, '--label', label,
                              '--password-stdin', input=chosen + '\n')
            self.assertNotIn(chosen, out)
            pw = chosen
        else:
            out = self.ctl_ok('user', 'app-password', 'add', user, '--label', label)
            lines = out.strip().splitlines()
            self.assertEqual(len(lines), 2, out)
            pw = lines[1]
            self.assertRegex(pw, APP_FORM)
        self.server.secrets.add(pw)
        return pw

    def imap_login(self, user, pw):
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            _, t = c.cmd('a', 'LOGIN %s %s' % (imap_quote(user), imap_quote(pw)))
        return t

    def imap_plain(self, user, pw):
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            msg = base64.b64encode(('\0%s\0%s' % (user, pw)).encode()).decode()
            _, t = c.cmd('a', 'AUTHENTICATE PLAIN %s' % msg)
        return t

    def pop3_pass(self, user, pw):
        with self.server.raw('pop3s', tls=True) as c:
            c.line()
            c.send('USER %s\r\n' % user)
            c.line()
            c.send('PASS %s\r\n' % pw)
            return c.line()

    def pop3_plain(self, user, pw):
        with self.server.raw('pop3s', tls=True) as c:
            c.line()
            msg = base64.b64encode(('\0%s\0%s' % (user, pw)).encode()).decode()
            c.send('AUTH PLAIN %s\r\n' % msg)
            return c.line()

    def assert_logs_in(self, user, pw):
        self.assertTrue(self.imap_login(user, pw).startswith('a OK'), pw)
        self.assertTrue(self.imap_plain(user, pw).startswith('a OK'), pw)
        self.assertTrue(self.pop3_pass(user, pw).startswith('+OK'), pw)
        self.assertTrue(self.pop3_plain(user, pw).startswith('+OK'), pw)

    def assert_refused(self, user, pw):
        self.assertEqual(self.imap_login(user, pw), FAILED_IMAP)
        self.assertEqual(self.imap_plain(user, pw), FAILED_IMAP)
        self.assertEqual(self.pop3_pass(user, pw), FAILED_POP3)
        self.assertEqual(self.pop3_plain(user, pw), FAILED_POP3)

    def login_lines(self, user):
        return [l for l in self.server.log().splitlines()
                if ' audit: event=login ' in l and 'user=%s' % user in l]

    def wait_lines(self, user, start, pred, n):
        """The login lines of user after the first start that match pred,
        once there are n of them (the log is written asynchronously)."""
        end = time.monotonic() + 10
        while True:
            found = [l for l in self.login_lines(user)[start:] if pred(l)]
            if len(found) >= n or time.monotonic() > end:
                return found
            time.sleep(0.05)

    def db(self):
        return sqlite3.connect(os.path.join(self.server.data_dir, 'accounts.sqlite'))


class AppPasswords(AppPasswordCase):
    CONF = {'auth_cache_ttl': '1h'}

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(USER, MAIN)

    def test_1_add_login_list_delete(self):
        phone = self.add_app(USER, 'phone')
        laptop = self.add_app(USER, 'laptop', CHOSEN)
        self.assertNotEqual(phone[:4], laptop[:4])

        for pw, label in ((phone, 'phone'), (laptop, 'laptop')):
            n = len(self.login_lines(USER))
            self.assert_logs_in(USER, pw)
            # IMAP LOGIN, AUTHENTICATE PLAIN, POP3 USER/PASS, AUTH PLAIN: each
            # login line names the app password, and over both protocols
            found = self.wait_lines(
                USER, n, lambda l: 'app_password=%s' % label in l and 'result=ok' in l, 4)
            self.assertEqual(len(found), 4, '\n'.join(self.login_lines(USER)[n:]))
            self.assertEqual({('proto=imap' in l, 'proto=pop3' in l) for l in found},
                             {(True, False), (False, True)})
        self.assert_logs_in(USER, MAIN)
        n = len(self.login_lines(USER))
        self.assertTrue(self.imap_login(USER, MAIN).startswith('a OK'))
        main_line = self.wait_lines(USER, n, lambda l: True, 1)
        self.assertNotIn('app_password', main_line[0])

        out = self.ctl_ok('user', 'app-password', 'list', USER)
        rows = [l.split('\t') for l in out.strip().splitlines()[1:]]
        self.assertEqual([r[1] for r in rows], ['phone', 'laptop'], out)
        self.assertEqual([r[3] for r in rows], ['imap,pop3'] * 2, out)
        self.assertNotEqual(rows[0][5], 'never', out)  # last used, after a login
        for secret in (phone, laptop):
            self.assertNotIn(secret, out)
            self.assertNotIn(secret[5:], out)

        # phone in the cache (just used), and a session open with it
        self.assertTrue(self.imap_login(USER, phone).startswith('a OK'))
        live = self.server.raw('imaps', tls=True)
        live.line()
        _, t = live.cmd('s', 'LOGIN %s %s' % (imap_quote(USER), imap_quote(phone)))
        self.assertTrue(t.startswith('s OK'), t)

        out = self.ctl_ok('user', 'app-password', 'del', USER, 'phone')
        self.assertIn('deleted app password', out)
        # refused at once, although the cache (1h) had it
        self.assert_refused(USER, phone)
        # the live session was ended
        rest = live.read_until_eof(timeout=10)
        self.assertIn(b'BYE', rest)
        live.close()
        # the other app password and the main one still work
        self.assert_logs_in(USER, laptop)
        self.assert_logs_in(USER, MAIN)

        # delete by id
        rid = rows[1][0]
        self.ctl_ok('user', 'app-password', 'del', USER, rid)
        self.assert_refused(USER, laptop)
        rc, _, err = self.ctl('user', 'app-password', 'del', USER, 'laptop')
        self.assertEqual(rc, 3, err)
        self.assertIn('no app password laptop', err)
        self.assert_logs_in(USER, MAIN)

    def test_2_wrong_password_answered_as_any(self):
        pw = self.add_app(USER, 'tablet')
        wrong_secret = pw[:5] + 'zzzz-zzzz-zzzz-zzzz'
        wrong_selector = ('zzzz' if pw[:4] != 'zzzz' else 'yyyy') + pw[4:]
        for wrong in (wrong_secret, wrong_selector, 'not an app password'):
            self.assertEqual(self.imap_login(USER, wrong), FAILED_IMAP)
            self.assertEqual(self.pop3_pass(USER, wrong), FAILED_POP3)
        # an app password of another account does not open this one
        other = 'other@example.org'
        self.server.add_user(other, 'other password 1')
        opw = self.add_app(other, 'tablet')
        self.assertEqual(self.imap_login(USER, opw), FAILED_IMAP)
        self.assertTrue(self.imap_login(other, opw).startswith('a OK'))
        self.ctl_ok('user', 'app-password', 'del', USER, 'tablet')

    def test_3_services_column_is_checked(self):
        pw = self.add_app(USER, 'future')
        self.assert_logs_in(USER, pw)
        with self.db() as db:
            db.execute("UPDATE app_passwords SET services = 'http' WHERE label = 'future'")
        db.close()
        self.assert_refused(USER, pw)
        with self.db() as db:
            db.execute("UPDATE app_passwords SET services = 'pop3' WHERE label = 'future'")
        db.close()
        self.assertEqual(self.imap_login(USER, pw), FAILED_IMAP)
        self.assertTrue(self.pop3_pass(USER, pw).startswith('+OK'))
        self.ctl_ok('user', 'app-password', 'del', USER, 'future')

    def test_4_bad_input(self):
        rc, _, err = self.ctl('user', 'app-password', 'add', USER, '--label', '1234')
        self.assertEqual(rc, 1, err)
        rc, _, err = self.ctl('user', 'app-password', 'add', USER, '--label', 'a b')
        self.assertEqual(rc, 1, err)
        rc, _, err = self.ctl('user', 'app-password', 'add', USER)
        self.assertEqual(rc, 1, err)
        for bad in ('no selector here', 'ABCD-uppercase selector', 'abcd-short'):
            rc, _, err = self.ctl('user', 'app-password', 'add', USER, '--label', 'x',
                                  '--password-stdin', input=bad + '\n')
            self.assertEqual(rc, 6, err)
            self.assertIn('SSSS-SECRET', err)
        self.add_app(USER, 'dup', 'dupl-first secret')
        rc, _, err = self.ctl('user', 'app-password', 'add', USER, '--label', 'dup')
        self.assertEqual(rc, 4, err)
        rc, _, err = self.ctl('user', 'app-password', 'add', USER, '--label', 'dup2',
                              '--password-stdin', input='dupl-second secret\n')
        self.assertEqual(rc, 4, err)
        self.assertIn('"dupl-"', err)
        rc, _, err = self.ctl('user', 'app-password', 'list', 'nobody@example.org')
        self.assertEqual(rc, 3, err)
        self.ctl_ok('user', 'app-password', 'del', USER, 'dup')

    def test_5_user_del_removes_them(self):
        u = 'gone@example.org'
        self.server.add_user(u, 'gone password 1')
        pw = self.add_app(u, 'phone')
        self.assertTrue(self.imap_login(u, pw).startswith('a OK'))
        with self.db() as db:
            acct = db.execute('SELECT id FROM accounts WHERE address = ?', (u,)).fetchone()[0]
        db.close()
        self.ctl_ok('user', 'del', u)
        with self.db() as db:
            n = db.execute('SELECT count(*) FROM app_passwords WHERE account = ?',
                           (acct,)).fetchone()[0]
        db.close()
        self.assertEqual(n, 0)
        self.server.add_user(u, 'gone password 2')
        self.assertEqual(self.imap_login(u, pw), FAILED_IMAP)
        out = self.ctl_ok('user', 'app-password', 'list', u)
        self.assertEqual(out.strip().splitlines()[1:], [])

    def test_6_scram_secret_from_the_main_password_only(self):
        """An account without SCRAM secrets (made before SCRAM) gets them at
        its next password login: from the main password, never from an app
        password, whose secret SCRAM would then accept as the account's."""
        u = 'old@example.org'
        self.server.add_user(u, 'old password 1')
        pw = self.add_app(u, 'phone')
        with self.db() as db:
            db.execute('UPDATE accounts SET scram = NULL WHERE address = ?', (u,))
        db.close()

        def scram():
            with self.db() as db:
                v = db.execute('SELECT scram FROM accounts WHERE address = ?', (u,)).fetchone()[0]
            db.close()
            return v

        self.assertTrue(self.imap_login(u, pw).startswith('a OK'))
        self.assertIsNone(scram())
        self.assertTrue(self.imap_login(u, 'old password 1').startswith('a OK'))
        deadline = time.monotonic() + 10
        while scram() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIsNotNone(scram())


class AppPasswordLimit(AppPasswordCase):
    CONF = {'max_app_passwords': '2'}

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(USER, MAIN)

    def test_limit(self):
        a = self.add_app(USER, 'one')
        self.add_app(USER, 'two')
        rc, out, err = self.ctl('user', 'app-password', 'add', USER, '--label', 'three')
        self.assertEqual(rc, 10, out + err)
        self.assertIn('already has 2 app passwords (max_app_passwords)', err)
        self.assertEqual(out, '')
        self.ctl_ok('user', 'app-password', 'del', USER, 'two')
        self.add_app(USER, 'three')
        self.assertTrue(self.imap_login(USER, a).startswith('a OK'))


if __name__ == '__main__':
    harness.main()
