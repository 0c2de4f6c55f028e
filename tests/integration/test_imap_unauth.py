"""IMAP UNAUTHENTICATE (RFC 8437): back to the not authenticated state on
the same connection, TLS kept; the selected mailbox and what the session
held for the account are gone, and a new LOGIN (another user's) works."""
import harness
import imap_util
from imap_util import ImapCase, Imap, make_message, USER2, PASS2


class Unauthenticate(ImapCase):

    def setUp(self):
        # Dovecot 2.3 does not have it
        c = Imap(self.server.raw('imaps', tls=True))
        caps = c.ok('CAPABILITY')[0].split()
        c.close()
        if imap_util.AGAINST_DOVECOT and b'UNAUTHENTICATE' not in caps:
            self.skipTest('the server does not offer UNAUTHENTICATE')

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        c.ok('CREATE Mine')
        c.append('Mine', make_message(1, subject='alice only'))
        c.logout()

    def test_capability(self):
        c = self.connect()
        self.assertIn(b'UNAUTHENTICATE', c.ok('CAPABILITY')[0].split())
        c.login()
        self.assertIn(b'UNAUTHENTICATE', c.ok('CAPABILITY')[0].split())

    def test_not_before_login(self):
        c = self.connect()
        u, t = c.cmd('UNAUTHENTICATE')
        self.assertRegex(t, rb'^T\d+ (BAD|NO)')

    def test_back_to_notauth(self):
        c = self.login()
        c.select('Mine')
        self.assertOK(c.cmd('UNAUTHENTICATE')[1])
        # not authenticated: mailbox commands are refused, LOGIN is taken
        for cmd in ('SELECT INBOX', 'FETCH 1 FLAGS', 'LIST "" *', 'NOOP'):
            u, t = c.cmd(cmd)
            if cmd == 'NOOP':
                self.assertOK(t)
            else:
                self.assertRegex(t, rb'^T\d+ (BAD|NO)', cmd)
        u, t = c.cmd('ENABLE CONDSTORE')
        self.assertRegex(t, rb'^T\d+ (BAD|NO)')
        # another user on the same connection (TLS kept: LOGIN is allowed)
        c.login(USER2, PASS2)
        u = c.ok('LIST "" *')
        self.assertFalse(any(b'Mine' in r for r in u), u)
        info = c.select('INBOX')
        self.assertEqual(info['exists'], 0)
        # and back to the first
        self.assertOK(c.cmd('UNAUTHENTICATE')[1])
        c.login()
        info = c.select('Mine')
        self.assertEqual(info['exists'], 1)
        c.logout()

    def test_enabled_extensions_reset(self):
        """What ENABLE turned on ends with the account (RFC 8437 3): after
        UNAUTHENTICATE and a new LOGIN, names are modified UTF-7 again,
        SELECT sends no HIGHESTMODSEQ and STATUS RECENT is taken."""
        c = self.login()
        caps = c.ok('CAPABILITY')[0].split()
        if b'UTF8=ACCEPT' not in caps:
            self.skipTest('the server does not offer UTF8=ACCEPT')
        c.ok('ENABLE UTF8=ACCEPT CONDSTORE')
        c.ok('CREATE "Été"')
        self.assertTrue(c.ok('LIST "" "Été"')[0].endswith('"Été"'.encode()))
        self.assertOK(c.cmd('UNAUTHENTICATE')[1])
        c.login()
        u = c.ok('LIST "" "&AMk-t&AOk-"')
        self.assertEqual(len(u), 1, u)
        self.assertNotIn('É'.encode(), u[0])
        u = c.ok('SELECT INBOX')
        self.assertFalse(any(b'HIGHESTMODSEQ' in x for x in u), u)
        if b'IMAP4rev2' in caps:
            c.ok('ENABLE IMAP4rev2')
            self.assertOK(c.cmd('UNAUTHENTICATE')[1])
            c.login()
            u = c.ok('STATUS INBOX (RECENT)')
            self.assertIn(b'RECENT', u[0])
        c.logout()

    def test_starttls_session(self):
        c = self.connect(tls=False)
        c.login()
        self.assertOK(c.cmd('UNAUTHENTICATE')[1])
        # still over TLS: no STARTTLS again, LOGIN not disabled
        cap = c.ok('CAPABILITY')[0].split()
        self.assertNotIn(b'STARTTLS', cap)
        self.assertNotIn(b'LOGINDISABLED', cap)
        u, t = c.cmd('STARTTLS')
        self.assertRegex(t, rb'^T\d+ (BAD|NO)')
        c.login()
        c.select('Mine')
        c.logout()

    def test_idle_session_elsewhere_unaffected(self):
        # the session's listener is gone: a change made meanwhile by
        # another session is not announced to it after a new login
        a = self.login()
        a.select('Mine')
        self.assertOK(a.cmd('UNAUTHENTICATE')[1])
        b = self.login()
        b.append('Mine', make_message(2))
        u, t = a.cmd('NOOP')
        self.assertOK(t)
        self.assertEqual(u, [])
        a.login()
        self.assertEqual(a.select('Mine')['exists'], 2)
        b.ok('SELECT Mine')
        b.ok('STORE 2 +FLAGS (\\Deleted)')
        b.ok('EXPUNGE')
        b.logout()
        a.logout()

    def test_many(self):
        # nothing accumulates: a hundred rounds on one connection
        c = self.connect()
        for i in range(100):
            c.login()
            c.select('Mine')
            self.assertOK(c.cmd('UNAUTHENTICATE')[1])
        c.logout()
        self.assertAlive()

    def test_args(self):
        c = self.login()
        self.assertBAD(c.cmd('UNAUTHENTICATE now')[1])


if __name__ == '__main__':
    harness.main()
