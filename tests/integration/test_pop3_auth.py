"""POP3: greeting and CAPA before and after TLS, STLS (and injection),
USER/PASS and AUTH refused in clear and working over TLS, failures identical
and delayed."""
import base64
import poplib

import harness
from harness import ServerTestCase, close_quietly, timed

USER = 'bob@example.org'
PASS = 'pop3 secret pass'
FAIL = '-ERR [AUTH] Authentication failed.'


def b64(s):
    return base64.b64encode(s.encode()).decode()


def capa(c):
    """Sends CAPA on a Conn; returns the list of capability lines (upper)."""
    c.send('CAPA\r\n')
    first = c.line()
    if not first.startswith('+OK'):
        raise AssertionError('CAPA: %r' % first)
    out = []
    while True:
        l = c.line()
        if l == '.':
            return out
        out.append(l.upper())


def pcmd(c, text):
    c.send(text + '\r\n')
    return c.line()


class Pop3Case(ServerTestCase):
    """A coffred with USER; conn() connects to SERVICE (TLS: implicit TLS)."""
    SERVICE, TLS = 'pop3s', True

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(USER, PASS)

    def conn(self):
        c = self.server.raw(self.SERVICE, tls=self.TLS)
        self.assertEqual(c.line(), '+OK coffre ready.')
        return c

    def assertErr(self, c, text):
        """Sends the command text; it must be refused."""
        r = pcmd(c, text)
        self.assertTrue(r.startswith('-ERR'), r)

    def assertUserPass(self, c, user=USER):
        """USER and PASS log in."""
        self.assertTrue(pcmd(c, 'USER ' + user).startswith('+OK'))
        self.assertEqual(pcmd(c, 'PASS ' + PASS), '+OK Logged in.')

    def assertFailed(self, c, text):
        """Sends the command text: the one failure reply, after the delay."""
        r, dt = timed(pcmd, c, text)
        self.assertEqual(r, FAIL)
        self.assertGreaterEqual(dt, harness.FAILURE_DELAY)

    def assertCapaTLS(self, c):
        """CAPA inside TLS: logins offered, STLS no longer (and refused)."""
        caps = capa(c)
        self.assertNotIn('STLS', caps)
        self.assertIn('USER', caps)
        self.assertIn('SASL PLAIN LOGIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS', caps)
        for cap in ('RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING'):
            self.assertIn(cap, caps)
        self.assertErr(c, 'STLS')


class Pop3Plaintext(Pop3Case):
    SERVICE, TLS = 'pop3', False

    def stls(self, c):
        r = pcmd(c, 'STLS')
        self.assertTrue(r.startswith('+OK Begin TLS negotiation'), r)
        self.assertEqual(c.pending(), b'', 'plaintext after the STLS reply')
        c.starttls(self.server.ctx())
        return c

    def test_capa_before_tls(self):
        with self.conn() as c:
            caps = capa(c)
            self.assertIn('STLS', caps)
            for cap in ('RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING'):
                self.assertIn(cap, caps)
            self.assertNotIn('USER', caps)
            self.assertFalse([x for x in caps if x.startswith('SASL')], caps)

    def test_user_pass_refused_before_tls(self):
        with self.conn() as c:
            self.assertErr(c, 'USER ' + USER)
            self.assertErr(c, 'PASS ' + PASS)
            # Still not logged in: a transaction command is refused.
            self.assertErr(c, 'STAT')

    def test_auth_refused_before_tls(self):
        with self.conn() as c:
            self.assertErr(c, 'AUTH PLAIN ' + b64('\0%s\0%s' % (USER, PASS)))
            self.assertErr(c, 'AUTH LOGIN')
            r = pcmd(c, 'NOOP')
            self.assertTrue(r.startswith('-ERR') or r.startswith('+OK'), r)

    def test_stls_upgrade(self):
        with self.conn() as c:
            self.stls(c)
            self.assertIn(c.sock.version(), ('TLSv1.2', 'TLSv1.3'))
            self.assertCapaTLS(c)
            self.assertUserPass(c)
            r = pcmd(c, 'QUIT')
            self.assertTrue(r.startswith('+OK'), r)
            self.assertEqual(c.read_until_eof(), b'')

    def test_stls_injection_capa_discarded(self):
        with self.conn() as c:
            c.send('STLS\r\nCAPA\r\n')
            r = c.line()
            self.assertTrue(r.startswith('+OK'), r)
            self.assertEqual(c.pending(), b'')
            c.starttls(self.server.ctx())
            # If CAPA had run, its +OK and list would come before QUIT's reply.
            c.send('QUIT\r\n')
            rest = c.read_until_eof().decode('utf-8', 'replace')
            lines = rest.split('\r\n')
            self.assertTrue(lines[0].startswith('+OK'), rest)
            self.assertEqual(lines[1:], [''], 'injected CAPA answered: %r' % rest)

    def test_stls_injection_user_discarded(self):
        # An injected USER must not prime the PASS sent inside TLS.
        with self.conn() as c:
            c.send('STLS\r\nUSER %s\r\n' % USER)
            r = c.line()
            self.assertTrue(r.startswith('+OK'), r)
            self.assertEqual(c.pending(), b'')
            c.starttls(self.server.ctx())
            r = pcmd(c, 'PASS ' + PASS)
            self.assertTrue(r.startswith('-ERR'), 'PASS without USER accepted: %r' % r)

    def test_poplib_stls_login(self):
        p = self.server.pop3_plain()
        try:
            self.assertEqual(p.getwelcome(), b'+OK coffre ready.')
            self.assertIn('STLS', p.capa())
            with self.assertRaises(poplib.error_proto):
                p.user(USER)
            p.stls(context=self.server.ctx())
            self.assertIn('USER', p.capa())
            p.user(USER)
            self.assertEqual(p.pass_(PASS), b'+OK Logged in.')
            self.assertTrue(p.quit().startswith(b'+OK'))
        finally:
            close_quietly(p)


class Pop3TLS(Pop3Case):

    def test_capa_on_pop3s(self):
        with self.conn() as c:
            self.assertCapaTLS(c)

    def test_user_pass(self):
        with self.conn() as c:
            self.assertUserPass(c)

    def test_user_without_domain(self):
        with self.conn() as c:
            self.assertUserPass(c, 'bob')

    def test_auth_plain_initial_response(self):
        with self.conn() as c:
            r = pcmd(c, 'AUTH PLAIN ' + b64('\0%s\0%s' % (USER, PASS)))
            self.assertEqual(r, '+OK Logged in.')

    def test_auth_plain_continuation(self):
        with self.conn() as c:
            r = pcmd(c, 'AUTH PLAIN')
            self.assertTrue(r == '+' or r.startswith('+ '), r)
            self.assertEqual(pcmd(c, b64('\0%s\0%s' % (USER, PASS))), '+OK Logged in.')

    def test_auth_login(self):
        with self.conn() as c:
            self.assertEqual(pcmd(c, 'AUTH LOGIN'), '+ ' + b64('Username:'))
            self.assertEqual(pcmd(c, b64(USER)), '+ ' + b64('Password:'))
            self.assertEqual(pcmd(c, b64(PASS)), '+OK Logged in.')

    def test_auth_cancel(self):
        with self.conn() as c:
            r = pcmd(c, 'AUTH PLAIN')
            self.assertTrue(r.startswith('+'), r)
            self.assertErr(c, '*')
            self.assertUserPass(c)

    def test_wrong_password_and_unknown_user(self):
        with self.conn() as c:
            self.assertTrue(pcmd(c, 'USER ' + USER).startswith('+OK'))
            self.assertFailed(c, 'PASS wrong')
        with self.conn() as c:
            # USER must not reveal whether the account exists.
            r_user = pcmd(c, 'USER nosuch@example.org')
            self.assertTrue(r_user.startswith('+OK'), r_user)
            self.assertFailed(c, 'PASS wrong')
        with self.conn() as c:
            self.assertFailed(c, 'AUTH PLAIN ' + b64('\0%s\0%s' % (USER, 'wrong')))
            self.assertFailed(c, 'AUTH PLAIN ' + b64('\0nosuch@example.org\0wrong'))

    def test_user_reply_same_for_known_and_unknown(self):
        with self.conn() as c:
            known = pcmd(c, 'USER ' + USER)
        with self.conn() as c:
            unknown = pcmd(c, 'USER nosuch@example.org')
        self.assertEqual(known, unknown)

    def test_quit(self):
        with self.conn() as c:
            r = pcmd(c, 'QUIT')
            self.assertTrue(r.startswith('+OK'), r)
            self.assertEqual(c.read_until_eof(), b'')

    def test_poplib_ssl(self):
        p = self.server.pop3_ssl()
        try:
            self.assertEqual(p.getwelcome(), b'+OK coffre ready.')
            p.user(USER)
            self.assertEqual(p.pass_(PASS), b'+OK Logged in.')
            p.quit()
        finally:
            close_quietly(p)
        p = self.server.pop3_ssl()
        try:
            p.user(USER)
            with self.assertRaises(poplib.error_proto) as cm:
                p.pass_('not it')
            self.assertEqual(cm.exception.args[0], FAIL.encode())
        finally:
            close_quietly(p)


if __name__ == '__main__':
    harness.main()
