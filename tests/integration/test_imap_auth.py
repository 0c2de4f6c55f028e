"""IMAP: greeting and capabilities before and after TLS, STARTTLS (and the
command-injection class of bugs), LOGIN and AUTHENTICATE PLAIN/LOGIN refused
in clear and working over TLS, failures identical and delayed."""
import base64
import imaplib
import statistics
import ssl
import re
import time

import harness
from harness import (ServerTestCase, close_quietly, closed_after, imap_capability, caps_from_code,
                     imap_quote, imap_login_cmd, imap_sasl_answer, timed)

USER = 'alice@example.org'
PASS = 'correct horse battery staple'
FAIL_LINE = '%s NO [AUTHENTICATIONFAILED] Authentication failed.'


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def plain_ir(authc, password, authz=''):
    return b64('%s\0%s\0%s' % (authz, authc, password))


FAILURE_DELAY_MAX = 2.0   # login_failure_delay_max in harness.DEFAULT_CONF
LOGIN = imap_login_cmd(USER, PASS)


class AuthCase(ServerTestCase):
    """A coffred with USER, and the checks the classes below share."""

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(USER, PASS)

    def assertCapsBeforeTLS(self, caps):
        """In clear: STARTTLS offered, no way to log in."""
        self.assertIn('IMAP4REV1', caps)
        self.assertIn('STARTTLS', caps)
        self.assertIn('LOGINDISABLED', caps)
        self.assertFalse([x for x in caps if x.startswith('AUTH=')], caps)

    def assertCapsTLS(self, caps):
        """Inside TLS: the logins offered, STARTTLS no longer."""
        for cap in ('IMAP4REV1', 'AUTH=PLAIN', 'AUTH=LOGIN', 'SASL-IR'):
            self.assertIn(cap, caps)
        self.assertNotIn('STARTTLS', caps)
        self.assertNotIn('LOGINDISABLED', caps)

    def assertReply(self, c, tag, text, want):
        """Sends 'tag text'; the tagged reply must start with 'tag want'."""
        _, t = c.cmd(tag, text)
        self.assertTrue(t.startswith('%s %s' % (tag, want)), t)
        return t

    def assertFailedLogin(self, t, dt, tag='a1'):
        """The one failure reply, answered no sooner than the failure delay."""
        self.assertEqual(t, FAIL_LINE % tag)
        self.assertGreaterEqual(dt, harness.FAILURE_DELAY)


class ImapPlaintext(AuthCase):
    """Port 143 before and across STARTTLS."""

    def test_no_plaintext_warning_by_default(self):
        self.assertNotIn('plaintext_auth_networks', self.server.log())

    def test_greeting_before_tls(self):
        with self.server.raw('imap') as c:
            g = c.line()
            self.assertRegex(g, r'^\* OK \[CAPABILITY [^\]]*\] coffre ready\.$')
            self.assertCapsBeforeTLS(caps_from_code(g))

    def test_capability_before_tls(self):
        with self.server.raw('imap') as c:
            c.line()
            self.assertCapsBeforeTLS(imap_capability(c))

    def test_noop_and_logout(self):
        with self.server.raw('imap') as c:
            c.line()
            self.assertReply(c, 'a1', 'NOOP', 'OK')
            untagged, t = c.cmd('a2', 'LOGOUT')
            self.assertTrue(t.startswith('a2 OK'), t)
            self.assertTrue(any(u.startswith('* BYE') for u in untagged), untagged)
            self.assertEqual(c.read_until_eof(), b'')

    def test_unknown_command_is_bad(self):
        with self.server.raw('imap') as c:
            c.line()
            self.assertReply(c, 'a1', 'FROBNICATE now', 'BAD')
            self.assertReply(c, 'a2', 'NOOP', 'OK')

    def test_login_refused_before_tls(self):
        # The right password: refused without being checked.
        with self.server.raw('imap') as c:
            c.line()
            self.assertReply(c, 'a1', LOGIN, 'NO [PRIVACYREQUIRED]')
            self.assertReply(c, 'a2', 'NOOP', 'OK')

    def test_authenticate_plain_refused_before_tls(self):
        with self.server.raw('imap') as c:
            c.line()
            self.assertReply(c, 'a1', 'AUTHENTICATE PLAIN ' + plain_ir(USER, PASS),
                             'NO [PRIVACYREQUIRED]')
            # Without SASL-IR: refused before any continuation is offered.
            c.send('a2 AUTHENTICATE PLAIN\r\n')
            t = c.line()
            self.assertTrue(t.startswith('a2 NO [PRIVACYREQUIRED]'), t)

    def test_authenticate_login_refused_before_tls(self):
        with self.server.raw('imap') as c:
            c.line()
            c.send('a1 AUTHENTICATE LOGIN\r\n')
            t = c.line()
            self.assertTrue(t.startswith('a1 NO [PRIVACYREQUIRED]'), t)

    def test_imaplib_login_refused_before_tls(self):
        m = self.server.imap_plain()
        try:
            self.assertIn('LOGINDISABLED', m.capabilities)
            with self.assertRaises(imaplib.IMAP4.error) as cm:
                m.login(USER, PASS)
            self.assertIn('PRIVACYREQUIRED', str(cm.exception))
        finally:
            close_quietly(m)

    def _starttls(self, c, injected=''):
        """Reads the greeting, sends STARTTLS (and injected in the same
        write) and upgrades: nothing may follow the OK in clear."""
        c.line()
        c.send('a1 STARTTLS\r\n' + injected)
        t = c.line()
        self.assertEqual(t, 'a1 OK Begin TLS negotiation now.')
        self.assertEqual(c.pending(), b'', 'plaintext after the STARTTLS reply')
        c.starttls(self.server.ctx())
        return c

    def test_starttls_upgrade(self):
        with self.server.raw('imap') as c:
            self._starttls(c)
            self.assertEqual(c.sock.version() in ('TLSv1.2', 'TLSv1.3'), True, c.sock.version())
            self.assertCapsTLS(imap_capability(c, 'a2'))
            self.assertReply(c, 'a3', 'STARTTLS', 'BAD')
            t = self.assertReply(c, 'a4', LOGIN, 'OK [CAPABILITY ')
            self.assertIn('Logged in', t)

    def test_starttls_injection_noop_discarded(self):
        with self.server.raw('imap') as c:
            # Nothing in clear after the OK: an answer to b would be there
            # (or would corrupt the handshake).
            self._starttls(c, 'b NOOP\r\n')
            untagged, t = c.cmd('c', 'NOOP')
            self.assertTrue(t.startswith('c OK'), t)
            self.assertFalse([u for u in untagged if u.startswith('b ')],
                             'injected command answered inside TLS: %r' % untagged)
            untagged, t = c.cmd('d', 'LOGOUT')
            rest = c.read_until_eof().decode('utf-8', 'replace')
            self.assertNotIn('\nb ', '\n' + '\n'.join(untagged) + '\n' + rest)

    def test_starttls_injection_login_not_executed(self):
        # An injected LOGIN must not authenticate the session: the LOGIN sent
        # inside TLS afterwards must find the session not yet logged in.
        with self.server.raw('imap') as c:
            self._starttls(c, 'b %s\r\n' % LOGIN)
            untagged, t = c.cmd('c', LOGIN)
            self.assertFalse([u for u in untagged if u.startswith('b ')], untagged)
            self.assertTrue(t.startswith('c OK'), t)

    def test_imaplib_starttls_login(self):
        m = self.server.imap_plain()
        try:
            self.assertIn('STARTTLS', m.capabilities)
            m.starttls(ssl_context=self.server.ctx())
            self.assertNotIn('LOGINDISABLED', m.capabilities)
            self.assertIn('AUTH=PLAIN', m.capabilities)
            typ, data = m.login(USER, PASS)
            self.assertEqual(typ, 'OK')
            typ, _ = m.noop()
            self.assertEqual(typ, 'OK')
            typ, _ = m.logout()
            self.assertEqual(typ, 'BYE')
        finally:
            close_quietly(m)


class ImapTLS(AuthCase):
    """Port 993: logins of every form, and their failures."""

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        cls.server.add_user('erin@example.org', 'erin pass "quoted" \\ back')

    def conn(self):
        c = self.server.raw('imaps', tls=True)
        g = c.line()
        self.assertTrue(g.startswith('* OK'), g)
        return c

    def assertLoggedIn(self, tagged, tag):
        self.assertTrue(tagged.startswith(tag + ' OK [CAPABILITY '), tagged)
        self.assertIn('Logged in', tagged)

    def test_greeting_on_imaps(self):
        with self.server.raw('imaps', tls=True) as c:
            g = c.line()
            self.assertRegex(g, r'^\* OK \[CAPABILITY [^\]]*\] coffre ready\.$')
            self.assertCapsTLS(caps_from_code(g))
            self.assertCapsTLS(imap_capability(c))

    def test_starttls_on_imaps_is_bad(self):
        with self.conn() as c:
            self.assertReply(c, 'a1', 'STARTTLS', 'BAD')
            self.assertReply(c, 'a2', 'NOOP', 'OK')

    def test_login_quoted(self):
        with self.conn() as c:
            _, t = c.cmd('a1', LOGIN)
            self.assertLoggedIn(t, 'a1')
            self.assertReply(c, 'a2', 'NOOP', 'OK')

    def test_login_atoms_and_escapes(self):
        # Password with quotes and a backslash, sent as a quoted string with
        # escapes; the user as an atom without domain (default_domain).
        with self.conn() as c:
            _, t = c.cmd('a1', 'LOGIN erin %s' % imap_quote('erin pass "quoted" \\ back'))
            self.assertLoggedIn(t, 'a1')

    def test_login_literals(self):
        with self.conn() as c:
            u, p = USER.encode(), PASS.encode()
            c.send(b'a1 LOGIN {%d}\r\n' % len(u))
            cont = c.line()
            self.assertTrue(cont.startswith('+'), cont)
            c.send(u + b' {%d}\r\n' % len(p))
            cont = c.line()
            self.assertTrue(cont.startswith('+'), cont)
            c.send(p + b'\r\n')
            _, t = c.until_tag('a1')
            self.assertLoggedIn(t, 'a1')

    def test_login_without_domain_uses_default_domain(self):
        with self.conn() as c:
            _, t = c.cmd('a1', 'LOGIN alice %s' % imap_quote(PASS))
            self.assertLoggedIn(t, 'a1')

    def test_login_address_case_insensitive(self):
        with self.conn() as c:
            _, t = c.cmd('a1', 'LOGIN ALICE@Example.ORG %s' % imap_quote(PASS))
            self.assertLoggedIn(t, 'a1')

    def test_authenticate_plain_sasl_ir(self):
        with self.conn() as c:
            _, t = c.cmd('a1', 'AUTHENTICATE PLAIN ' + plain_ir(USER, PASS))
            self.assertLoggedIn(t, 'a1')

    def test_authenticate_plain_authzid_same_user(self):
        with self.conn() as c:
            _, t = c.cmd('a1', 'AUTHENTICATE PLAIN ' + plain_ir(USER, PASS, authz=USER))
            self.assertLoggedIn(t, 'a1')

    def test_authenticate_plain_other_authzid_refused(self):
        # alice's password must never open a session as somebody else.
        self.server.add_user('mallory-target@example.org', 'target secret')
        with self.conn() as c:
            _, t = c.cmd('a1', 'AUTHENTICATE PLAIN ' +
                         plain_ir(USER, PASS, authz='mallory-target@example.org'))
            self.assertFalse(t.startswith('a1 OK'), t)
            self.assertTrue(t.startswith('a1 NO') or t.startswith('a1 BAD'), t)

    def test_authenticate_plain_continuation(self):
        with self.conn() as c:
            c.send('a1 AUTHENTICATE PLAIN\r\n')
            cont = c.line()
            self.assertTrue(cont == '+' or cont.startswith('+ '), cont)
            c.send(plain_ir(USER, PASS) + '\r\n')
            _, t = c.until_tag('a1')
            self.assertLoggedIn(t, 'a1')

    def test_authenticate_login(self):
        with self.conn() as c:
            c.send('a1 AUTHENTICATE LOGIN\r\n')
            self.assertEqual(c.line(), '+ ' + b64('Username:'))
            c.send(b64(USER) + '\r\n')
            self.assertEqual(c.line(), '+ ' + b64('Password:'))
            c.send(b64(PASS) + '\r\n')
            _, t = c.until_tag('a1')
            self.assertLoggedIn(t, 'a1')

    def test_authenticate_cancel(self):
        with self.conn() as c:
            t = imap_sasl_answer(c, 'a1', 'PLAIN', '*')
            self.assertTrue(t.startswith('a1 BAD'), t)
            t = imap_sasl_answer(c, 'a2', 'LOGIN', '*')
            self.assertTrue(t.startswith('a2 BAD'), t)
            # Still usable, still not logged in.
            _, t = c.cmd('a3', LOGIN)
            self.assertLoggedIn(t, 'a3')

    def test_authenticate_unknown_mechanism(self):
        with self.conn() as c:
            _, t = c.cmd('a1', 'AUTHENTICATE CRAM-MD5')
            self.assertTrue(t.startswith('a1 NO') or t.startswith('a1 BAD'), t)

    def test_wrong_password_refused_and_delayed(self):
        with self.conn() as c:
            (_, t), dt = timed(c.cmd, 'a1', 'LOGIN %s %s' % (imap_quote(USER), '"wrong"'))
            self.assertFailedLogin(t, dt)
            # The session survives a failure and can still log in.
            _, t = c.cmd('a2', LOGIN)
            self.assertLoggedIn(t, 'a2')

    def test_unknown_user_refused_like_wrong_password(self):
        with self.conn() as c:
            (_, t), dt = timed(c.cmd, 'a1', 'LOGIN nobody-here@example.org "wrong"')
            self.assertFailedLogin(t, dt)
            (_, t), dt = timed(c.cmd, 'a2', 'AUTHENTICATE PLAIN ' +
                               plain_ir('nobody-here@example.org', PASS))
            self.assertFailedLogin(t, dt, 'a2')

    def test_authenticate_wrong_password(self):
        with self.conn() as c:
            (_, t), dt = timed(c.cmd, 'a1', 'AUTHENTICATE PLAIN ' + plain_ir(USER, 'nope'))
            self.assertFailedLogin(t, dt)

    def test_user_name_cannot_forge_log_fields(self):
        # a name with a space and "ip=" would read, unquoted, as another
        # client address to a fail2ban-style parser
        forged = 'x ip=10.9.9.9 "q"\t'
        with self.conn() as c:
            _, t = c.cmd('a1', 'LOGIN %s y' % imap_quote(forged))
            self.assertTrue(t.startswith('a1 NO'), t)
        deadline = time.monotonic() + 5
        while True:
            lines = [l for l in self.server.log().splitlines()
                     if 'auth failed' in l and '10.9.9.9' in l]
            if lines or time.monotonic() > deadline:
                break
            time.sleep(0.05)   # the log file is written asynchronously
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('user="x ip=10.9.9.9 \\"q\\"\\x09"', lines[0])
        # outside the quoted value, the line names one address: the real one
        outside = re.sub(r'"(?:[^"\\]|\\.)*"', '""', lines[0])
        self.assertEqual(re.findall(r'\bip=(\S+)', outside), ['127.0.0.1'])

    def test_connection_logged_with_tls_and_user(self):
        # One line per connection event naming the remote address, the user,
        # the TLS version and cipher (the exact format is the daemon's).
        with self.conn() as c:
            port = c.sock.getsockname()[1]
            version = c.sock.version().replace('v', '')       # TLSv1.3 -> TLS1.3
            _, t = c.cmd('a1', LOGIN)
            self.assertLoggedIn(t, 'a1')
        addr = '127.0.0.1:%d' % port
        deadline = time.monotonic() + 5
        while True:
            lines = [l for l in self.server.log().splitlines() if addr in l]
            text = '\n'.join(lines)
            if (version in text and USER in text) or time.monotonic() > deadline:
                break
            time.sleep(0.05)   # the log file is written asynchronously
        self.assertIn(version, text)
        self.assertIn(USER, text)
        self.assertNotIn(PASS, self.server.log())

    def test_imaplib_ssl_login_and_authenticate(self):
        with closed_after(self.server.imap_ssl()) as m:
            typ, _ = m.login(USER, PASS)
            self.assertEqual(typ, 'OK')
            m.logout()
        with closed_after(self.server.imap_ssl()) as m:
            # imaplib's AUTHENTICATE goes through the '+' continuation.
            typ, _ = m.authenticate('PLAIN', lambda _: ('\0%s\0%s' % (USER, PASS)).encode())
            self.assertEqual(typ, 'OK')
            m.logout()
        with closed_after(self.server.imap_ssl()) as m:
            with self.assertRaises(imaplib.IMAP4.error) as cm:
                m.login(USER, 'not the password')
            self.assertIn('AUTHENTICATIONFAILED', str(cm.exception))


class ImapFailureDelay(AuthCase):
    """Failed-login throttling, on a server of its own so that no other test's
    failures count. Lower bounds only: a loaded machine may be slower."""

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        cls.server.add_user('carol@example.org', 'carol pass')

    def fail_once(self, user, password, source=None):
        with self.server.raw('imaps', tls=True, source=source) as c:
            c.line()
            (_, t), dt = timed(c.cmd, 'a1', imap_login_cmd(user, password))
            return t, dt

    def test_enumeration_reply_and_timing(self):
        wrong, unknown = [], []
        for i in range(5):
            t, dt = self.fail_once(USER, 'wrong password %d' % i)
            self.assertFailedLogin(t, dt)
            wrong.append(dt)
            t, dt = self.fail_once('nosuchuser@example.org', 'wrong password %d' % i)
            self.assertFailedLogin(t, dt)
            unknown.append(dt)
        mw, mu = statistics.median(wrong), statistics.median(unknown)
        self.assertLessEqual(max(mw, mu) / min(mw, mu), 3.0,
                             'wrong password %r vs unknown user %r' % (wrong, unknown))

    def test_per_account_delay_grows_across_addresses(self):
        # Each attempt from a different address: only the account links them.
        ds = []
        for i in range(4):
            t, dt = self.fail_once('carol@example.org', 'bad %d' % i,
                                   source='127.0.0.%d' % (10 + i))
            self.assertFailedLogin(t, dt)
            ds.append(dt)
        self.assert_delays_grow(ds)

    def assert_delays_grow(self, ds):
        # The n-th consecutive failure is answered no sooner than
        # login_failure_delay * 2^(n-1), capped: lower bounds only, which a
        # loaded machine can only make easier to meet, never fake.
        for n, dt in enumerate(ds):
            floor = min(harness.FAILURE_DELAY * 2 ** n, FAILURE_DELAY_MAX)
            self.assertGreaterEqual(dt, floor * 0.95, 'failure %d: %r' % (n + 1, ds))

    def test_per_ip_delay_grows_across_accounts(self):
        ds = []
        for i in range(4):
            t, dt = self.fail_once('ghost%d@example.org' % i, 'bad', source='127.0.0.50')
            self.assertFailedLogin(t, dt)
            ds.append(dt)
        self.assert_delays_grow(ds)

    def test_success_after_failures(self):
        # Throttling delays, it does not lock out.
        self.fail_once(USER, 'wrong', source='127.0.0.60')
        with self.server.raw('imaps', tls=True, source='127.0.0.60') as c:
            c.line()
            self.assertReply(c, 'a1', LOGIN, 'OK')


class PlaintextAuthNetworks(AuthCase):
    """plaintext_auth_networks opts a network in (a webmail on the same host):
    clients from it may log in without TLS; everyone else still may not."""

    CONF = {'plaintext_auth_networks': '127.0.0.2/32, 10.0.0.0/8'}

    def test_warning_logged_at_start(self):
        self.assertIn('plaintext_auth_networks', self.server.log())

    def test_listed_network_may_login_in_clear(self):
        with self.server.raw('imap', source='127.0.0.2') as c:
            g = c.line()
            self.assertNotIn('LOGINDISABLED', caps_from_code(g))
            self.assertReply(c, 'a1', LOGIN, 'OK')
        with self.server.raw('pop3', source='127.0.0.2') as c:
            c.line()
            c.send('USER %s\r\n' % USER)
            self.assertTrue(c.line().startswith('+OK'))
            c.send('PASS %s\r\n' % PASS)
            self.assertEqual(c.line(), '+OK Logged in.')

    def test_other_addresses_still_refused(self):
        with self.server.raw('imap', source='127.0.0.3') as c:
            g = c.line()
            self.assertIn('LOGINDISABLED', caps_from_code(g))
            self.assertReply(c, 'a1', LOGIN, 'NO [PRIVACYREQUIRED]')
        with self.server.raw('pop3') as c:
            c.line()
            c.send('USER %s\r\n' % USER)
            self.assertTrue(c.line().startswith('-ERR'))


class LoopNotBlocked(AuthCase):
    """A login failure waiting out its delay, or a password being hashed,
    does not hold up other sessions (the delay is a timer, the hash runs on
    the thread pool). Long delays here so that the ordering is unambiguous."""

    CONF = {'login_failure_delay': '3s', 'login_failure_delay_max': '5s'}
    OTHER = 'bob@example.org'

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        # another account: USER's own next login waits out USER's failures
        cls.server.add_user(cls.OTHER, PASS)

    def test_other_sessions_served_during_failure_delay(self):
        import select
        with self.server.raw('imaps', tls=True) as slow:
            slow.line()
            t0 = time.monotonic()
            slow.send('a1 LOGIN %s "definitely wrong"\r\n' % imap_quote(USER))
            # Meanwhile, from another address and for another account: a full
            # connect, TLS handshake, successful login (yescrypt or cache), NOOP.
            with self.server.raw('imaps', tls=True, source='127.0.0.99') as fast:
                fast.line()
                self.assertReply(fast, 'b1', imap_login_cmd(self.OTHER, PASS), 'OK')
                self.assertReply(fast, 'b2', 'NOOP', 'OK')
            # The failure has not been answered yet (3 s delay)...
            if time.monotonic() - t0 < 2.5:
                r, _, _ = select.select([slow.sock], [], [], 0)
                self.assertFalse(r or slow.pending() or slow.sock.pending(),
                                 'failure answered before the other session was served')
            # ...and is answered after the delay.
            _, t = slow.until_tag('a1')
            self.assertEqual(t, FAIL_LINE % 'a1')
            self.assertGreaterEqual(time.monotonic() - t0, 3.0)


if __name__ == '__main__':
    harness.main()
