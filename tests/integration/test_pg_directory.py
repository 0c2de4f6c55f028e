"""The account directory in PostgreSQL (accounts_backend = postgresql), on a
private PostgreSQL cluster (pg_util.py): coffrectl's account commands work
the same on it; an SQLite directory exported and imported into it keeps
its passwords, app passwords, pins, groups, ACL entries and ids, so that
coffred on PostgreSQL logs the same accounts in over IMAPS and POP3S and
finds their mail; and PostgreSQL stopped under coffred gives temporary
failures only (IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP], LMTP 451
4.3.0), coffred keeps running, and logins work again once PostgreSQL is
back, without restarting coffred.

Skipped only when the PostgreSQL binaries are missing (scripts/install-deps
installs them)."""
import os
import shutil
import tempfile
import unittest

import harness
import lmtp_util
import pg_util
from harness import imap_quote

PASSWORD = 'directory password 1'
FP = 'ab' * 32


def setUpModule():
    global PG, TMP
    harness.require_binaries()
    reason = pg_util.missing()
    if reason:
        raise unittest.SkipTest(reason)
    TMP = tempfile.mkdtemp(prefix='coffre-it-pgdir-')
    os.chmod(TMP, 0o755)
    PG = pg_util.start(TMP)


def tearDownModule():
    PG.cleanup()
    shutil.rmtree(TMP, ignore_errors=True)


class PgCase(unittest.TestCase):
    DB = None
    server = None

    @classmethod
    def pg_conf(cls):
        return {'accounts_backend': 'postgresql', 'accounts_dsn': PG.create_db(cls.DB)}

    @classmethod
    def tearDownClass(cls):
        srv = cls.server
        if srv is None:
            return
        try:
            alive = srv.alive()
            rc = srv.stop()
            reports = srv.sanitizer_reports()
            if not alive or rc not in (0, None) or reports:
                print(srv.log_tail(200))
            assert alive, 'coffred died'
            assert rc == 0, 'coffred exited %r' % rc
            assert not reports, reports
        finally:
            srv.cleanup()

    def ctl_ok(self, *args, input=None, server=None):
        rc, out, err = (server or self.server).ctl(*args, input=input)
        self.assertEqual(rc, 0, 'coffrectl %s: rc %d\n%s%s' % (' '.join(args), rc, out, err))
        return out

    def imaps_login(self, user, pw, server=None):
        with (server or self.server).raw('imaps', tls=True) as c:
            c.line()
            _, t = c.cmd('a', 'LOGIN %s %s' % (imap_quote(user), imap_quote(pw)))
            if t.startswith('a OK'):
                u, s = c.cmd('b', 'STATUS INBOX (MESSAGES)')
                t = (t, u)
        return t

    def pop3s_login(self, user, pw, server=None):
        with (server or self.server).raw('pop3s', tls=True) as c:
            c.line()
            c.send('USER %s\r\n' % user)
            c.line()
            c.send('PASS %s\r\n' % pw)
            return c.line()


class CtlOnPostgres(PgCase):
    """coffrectl user/app-password/cert/group/mailbox acl on PostgreSQL: the
    rows land in PostgreSQL and coffred reads them there."""
    DB = 'ctl'

    @classmethod
    def setUpClass(cls):
        cls.server = harness.Server(cls.pg_conf(), name='CtlOnPostgres')
        cls.server.start()

    def rows(self, sql):
        return PG.psql(sql, db=self.DB)

    def test_accounts(self):
        self.ctl_ok('user', 'add', 'ann@example.org', '--password-stdin', '--quota', '1G',
                    input=PASSWORD + '\n')
        self.server.secrets.add(PASSWORD)
        rc, out, err = self.server.ctl('user', 'add', 'ann@example.org', '--password-stdin',
                                       input=PASSWORD + '\n')
        self.assertEqual(rc, 4, out + err)
        self.assertEqual(self.rows("SELECT address, quota FROM accounts"),
                         [('ann@example.org', str(1 << 30))])
        self.assertIn('ann@example.org', self.ctl_ok('user', 'list'))
        self.assertEqual(self.imaps_login('ann@example.org', PASSWORD)[0][:4], 'a OK')
        self.ctl_ok('user', 'passwd', 'ann@example.org', '--password-stdin',
                    input='second password\n')
        self.server.secrets.add('second password')
        self.assertTrue(self.imaps_login('ann@example.org', PASSWORD).startswith('a NO'))
        self.assertTrue(self.pop3s_login('ann@example.org', 'second password')
                        .startswith('+OK'))
        self.ctl_ok('user', 'disable', 'ann@example.org')
        self.assertIn('[CONTACTADMIN]', self.imaps_login('ann@example.org', 'second password'))
        self.ctl_ok('user', 'del', 'ann@example.org')
        self.assertEqual(self.rows("SELECT address FROM accounts WHERE address LIKE 'ann%'"), [])
        self.assertNotIn('ann@example.org', self.ctl_ok('user', 'list'))

    def test_app_cert_acl(self):
        for u in ('bea', 'cid'):
            self.ctl_ok('user', 'add', u + '@example.org', '--password-stdin',
                        input=PASSWORD + '\n')
        out = self.ctl_ok('user', 'app-password', 'add', 'bea@example.org', '--label', 'phone')
        app = out.strip().splitlines()[-1]
        self.server.secrets.add(app)
        self.assertEqual(self.rows("SELECT label FROM app_passwords"), [('phone',)])
        self.assertEqual(self.imaps_login('bea@example.org', app)[0][:4], 'a OK')
        self.assertTrue(self.pop3s_login('bea@example.org', app).startswith('+OK'))
        self.ctl_ok('user', 'app-password', 'del', 'bea@example.org', 'phone')
        self.assertTrue(self.imaps_login('bea@example.org', app).startswith('a NO'))

        self.ctl_ok('user', 'cert', 'add', 'bea@example.org', '--fingerprint', FP)
        self.assertIn(FP, self.ctl_ok('user', 'cert', 'list', 'bea@example.org'))
        self.assertEqual(self.rows("SELECT fingerprint FROM client_certs"), [(FP,)])
        self.ctl_ok('user', 'cert', 'del', 'bea@example.org', '--fingerprint', FP)
        self.assertEqual(self.rows("SELECT fingerprint FROM client_certs"), [])

        self.ctl_ok('group', 'add', 'team')
        self.ctl_ok('group', 'members', 'team', 'add', 'cid@example.org')
        self.assertIn('cid@example.org', self.ctl_ok('group', 'members', 'team'))
        # bea's store exists since her login; cid may read her INBOX
        self.ctl_ok('mailbox', 'acl', 'set', 'bea@example.org', 'INBOX', 'cid@example.org', 'lr')
        self.ctl_ok('mailbox', 'acl', 'set', 'bea@example.org', 'INBOX', '$team', 'lrs')
        out = self.ctl_ok('mailbox', 'acl', 'get', 'bea@example.org', 'INBOX')
        self.assertIn('cid@example.org', out)
        self.assertIn('$team', out)
        self.assertEqual(sorted(r[0] for r in self.rows("SELECT ident FROM acl")),
                         ['$team', 'cid@example.org'])
        # coffred sees the grant: cid lists bea's INBOX in the shared namespace
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            _, t = c.cmd('a', 'LOGIN cid@example.org %s' % imap_quote(PASSWORD))
            self.assertTrue(t.startswith('a OK'), t)
            u, t = c.cmd('b', 'LIST "" "*"')
            self.assertTrue(any('bea@example.org' in l for l in u), u)
        self.ctl_ok('user', 'del', 'cid@example.org')
        self.assertEqual(self.rows("SELECT ident FROM acl WHERE ident LIKE 'cid%'"), [])
        self.assertEqual(self.rows("SELECT account FROM acl_member"), [])

    def test_slots(self):
        self.ctl_ok('slot', 'add', 's1', '--host', '127.0.0.11', '--imap-port', '10143',
                    '--pop3-port', '10110', '--lmtp-port', '10024')
        self.ctl_ok('user', 'add', 'dan@example.org', '--password-stdin', '--slot', 's1',
                    input=PASSWORD + '\n')
        self.assertEqual(self.rows("SELECT slot FROM accounts WHERE address = 'dan@example.org'"),
                         [('s1',)])
        self.assertIn('s1', self.ctl_ok('slot', 'list'))
        rc, out, err = self.server.ctl('slot', 'del', 's1')
        self.assertEqual(rc, 4, out + err)


class MigrateSqliteToPostgres(PgCase):
    """export from the SQLite file, import into PostgreSQL, the same data
    directory served by coffred on PostgreSQL."""
    DB = 'migrated'

    def test_migration(self):
        srv = self.__class__.server = harness.Server({}, name='Migrate')
        srv.start()
        srv.add_user('eve@example.org', PASSWORD)
        srv.add_user('fay@example.org', PASSWORD)
        out = self.ctl_ok('user', 'app-password', 'add', 'eve@example.org', '--label', 'mail')
        app = out.strip().splitlines()[-1]
        srv.secrets.add(app)
        self.ctl_ok('user', 'cert', 'add', 'eve@example.org', '--fingerprint', FP)
        self.ctl_ok('group', 'add', 'staff')
        self.ctl_ok('group', 'members', 'staff', 'add', 'fay@example.org')
        c = lmtp_util.lmtp(srv)
        rcpt, data = lmtp_util.send(c, 'x@example.net', ['eve@example.org'],
                                    b'Subject: kept\r\n\r\nbody\r\n')
        c.quit()
        self.assertEqual([r[0] for r in data], [250])
        self.ctl_ok('mailbox', 'acl', 'set', 'eve@example.org', 'INBOX', '$staff', 'lr')
        eve_id = lmtp_util.user_id(srv, 'eve@example.org')
        export = os.path.join(srv.tmp, 'accounts.txt')
        self.ctl_ok('accounts', 'export', export)
        self.assertEqual(os.stat(export).st_mode & 0o777, 0o600)
        srv.stop()

        # the same data directory, the directory now in PostgreSQL
        srv.conf.update(self.pg_conf())
        srv.write_conf()
        out = self.ctl_ok('accounts', 'import', export)
        self.assertIn('imported 2 accounts (0 refused)', out)
        # again: every account refused, nothing changed
        rc, out, err = srv.ctl('accounts', 'import', export)
        self.assertEqual(rc, 4, out + err)
        self.assertIn('imported 0 accounts (2 refused)', out)
        self.assertEqual(PG.psql("SELECT count(*) FROM accounts", db=self.DB), [('2',)])
        self.assertEqual(lmtp_util.user_id(srv, 'eve@example.org'), eve_id)
        self.assertIn(FP, self.ctl_ok('user', 'cert', 'list', 'eve@example.org'))
        self.assertIn('fay@example.org', self.ctl_ok('group', 'members', 'staff'))
        self.assertIn('$staff', self.ctl_ok('mailbox', 'acl', 'get', 'eve@example.org',
                                            'INBOX'))
        srv.start()
        ok, status = self.imaps_login('eve@example.org', PASSWORD)
        self.assertTrue(ok.startswith('a OK'), ok)
        self.assertIn('MESSAGES 1', ' '.join(status))
        self.assertTrue(self.pop3s_login('eve@example.org', PASSWORD).startswith('+OK'))
        self.assertTrue(self.pop3s_login('eve@example.org', app).startswith('+OK'))
        self.assertTrue(self.imaps_login('fay@example.org', PASSWORD)[0].startswith('a OK'))
        self.assertTrue(self.imaps_login('fay@example.org', 'wrong password').startswith('a NO'))
        # a new account after the import gets an id past the imported ones
        srv.add_user('gus@example.org', PASSWORD)
        self.assertGreater(lmtp_util.user_id(srv, 'gus@example.org'), eve_id)


class PostgresOutage(PgCase):
    """PostgreSQL stopped under a running coffred, then started again."""
    DB = 'outage'

    @classmethod
    def setUpClass(cls):
        conf = cls.pg_conf()
        conf['auth_cache_ttl'] = '1h'  # a cached password still needs the directory
        cls.server = harness.Server(conf, name='PostgresOutage')
        cls.server.start()
        cls.server.add_user('hal@example.org', PASSWORD)

    def lmtp_rcpt(self):
        c = lmtp_util.lmtp(self.server)
        try:
            c.mail('x@example.net')
            return c.rcpt('hal@example.org')
        finally:
            c.close()

    def connections(self):
        return int(PG.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'"
                           % self.DB)[0][0])

    def test_outage_and_recovery(self):
        self.assertTrue(self.imaps_login('hal@example.org', PASSWORD)[0].startswith('a OK'))
        self.assertEqual(self.lmtp_rcpt()[0], 250)
        PG.stop()
        try:
            for _ in range(3):
                t = self.imaps_login('hal@example.org', PASSWORD)
                self.assertTrue(t.startswith('a NO [UNAVAILABLE]'), t)
                p = self.pop3s_login('hal@example.org', PASSWORD)
                self.assertTrue(p.startswith('-ERR [SYS/TEMP]'), p)
                code, text = self.lmtp_rcpt()
                self.assertEqual((code, text[:5]), (451, b'4.3.0'))
            # a wrong password gets the same temporary answer: nothing was checked
            t = self.imaps_login('hal@example.org', 'not the password')
            self.assertTrue(t.startswith('a NO [UNAVAILABLE]'), t)
            self.assertTrue(self.server.alive())
        finally:
            PG.restart()
        ok = self.imaps_login('hal@example.org', PASSWORD)
        self.assertTrue(ok[0].startswith('a OK'), ok)
        self.assertTrue(self.pop3s_login('hal@example.org', PASSWORD).startswith('+OK'))
        self.assertEqual(self.lmtp_rcpt()[0], 250)
        self.assertTrue(self.server.alive())
        self.assertIn('auth temporary failure', self.server.log())

    def test_restart_between_logins(self):
        """PostgreSQL restarted while coffred is idle: its pooled
        connections are dead, and the next login must not fail on one."""
        self.assertTrue(self.imaps_login('hal@example.org', PASSWORD)[0].startswith('a OK'))
        self.assertEqual(self.lmtp_rcpt()[0], 250)
        self.assertGreater(self.connections(), 0)
        PG.restart()
        ok = self.imaps_login('hal@example.org', PASSWORD)
        self.assertTrue(ok[0].startswith('a OK'), ok)
        self.assertTrue(self.pop3s_login('hal@example.org', PASSWORD).startswith('+OK'))
        self.assertEqual(self.lmtp_rcpt()[0], 250)


if __name__ == '__main__':
    harness.main()
