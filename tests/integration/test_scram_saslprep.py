"""SCRAM-SHA-256 with non-ASCII passwords: RFC 5802 section 2.2 has both
sides prepare the password (Normalize) before PBKDF2. coffre prepares it
with the PRECIS OpaqueString profile (RFC 8265, the successor of SASLprep
that GnuTLS implements): non-ASCII spaces become U+0020, then Unicode NFC.

The SCRAM client here prepares the password the same way with Python's own
unicodedata (independently of the server's GnuTLS): a password typed with a
decomposed accent and a no-break space logs in with PLAIN (checked against
the yescrypt hash of the bytes as set) and with SCRAM-SHA-256 and -PLUS,
whether the client's keyboard produced the composed or the decomposed
form; an account without a SCRAM secret gets one, made of the prepared
password, at its PLAIN login; a client that does not prepare the password
is refused."""
import os
import sqlite3
import unicodedata
import unittest

import harness
from harness import ServerTestCase
from test_scram import AUTH_FAILED, Scram, b64, imap_scram, pop3_scram, tls_server_end_point

USER = 'erin@example.org'
OLD_USER = 'frank@example.org'
# "crème brûlée" written with decomposed accents (e + U+0300, u + U+0302,
# e + U+0301) and a no-break space (U+00A0), then "Genève" and U+3000
PASS = 'cre\u0300me\u00a0bru\u0302le\u0301e Gene\u0300ve\u3000\u00e0 9h'
OLD_PASS = 'na\u00efve\u2003caf\u00e9'


def opaque_string(s):
    """RFC 8265 section 4.2 for the strings used here: every non-ASCII
    space (Unicode category Zs) becomes U+0020, then NFC."""
    s = ''.join(' ' if unicodedata.category(ch) == 'Zs' else ch for ch in s)
    return unicodedata.normalize('NFC', s)


class PreparedScram(Scram):
    """The test's SCRAM client, preparing the password as RFC 5802 asks."""

    def __init__(self, user, password, **kw):
        super().__init__(opaque_string(user), opaque_string(password), **kw)


class SaslprepCase(ServerTestCase):
    CONF = {'scram_iterations': '4096'}

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(USER, PASS)
        cls.server.add_user(OLD_USER, OLD_PASS)
        # an account whose password was set before SCRAM existed
        db = sqlite3.connect(os.path.join(cls.server.data_dir, 'accounts.sqlite'))
        db.execute('UPDATE accounts SET scram = NULL WHERE address = ?', (OLD_USER,))
        db.commit()
        db.close()

    def imaps(self):
        c = self.server.raw('imaps', tls=True)
        self.assertTrue(c.line().startswith('* OK'))
        return c

    def assertScramLogin(self, sc, mech='SCRAM-SHA-256'):
        with self.imaps() as c:
            r, ok, _ = imap_scram(c, sc, mech=mech)
            self.assertTrue(r.startswith('a OK'), r)
            self.assertTrue(ok, 'server signature not verified')
            _, t = c.cmd('s', 'SELECT INBOX')
            self.assertTrue(t.startswith('s OK'), t)

    def test_the_password_changes_when_prepared(self):
        # what the rest relies on: preparing changes this password's bytes
        self.assertNotEqual(opaque_string(PASS).encode(), PASS.encode())
        self.assertEqual(opaque_string(PASS), 'cr\u00e8me br\u00fbl\u00e9e Gen\u00e8ve \u00e0 9h')

    def test_plain_with_the_password_as_set(self):
        with self.imaps() as c:
            _, t = c.cmd('p', 'AUTHENTICATE PLAIN ' + b64('\0%s\0%s' % (USER, PASS)))
            self.assertTrue(t.startswith('p OK'), t)

    def test_scram_with_a_preparing_client(self):
        self.assertScramLogin(PreparedScram(USER, PASS))

    def test_scram_from_a_keyboard_that_composes(self):
        composed = unicodedata.normalize('NFC', PASS)
        self.assertNotEqual(composed, PASS)
        self.assertScramLogin(PreparedScram(USER, composed))

    def test_scram_plus_with_a_preparing_client(self):
        with self.imaps() as c:
            sc = PreparedScram(USER, PASS, cbflag='p=tls-server-end-point',
                               cbdata=tls_server_end_point(c.sock))
            r, ok, _ = imap_scram(c, sc, mech='SCRAM-SHA-256-PLUS')
            self.assertTrue(r.startswith('a OK'), r)
            self.assertTrue(ok, 'server signature not verified')

    def test_pop3_scram_with_a_preparing_client(self):
        with self.server.raw('pop3s', tls=True) as c:
            self.assertTrue(c.line().startswith('+OK'))
            r, ok = pop3_scram(c, PreparedScram(USER, PASS))
            self.assertTrue(r.startswith('+OK'), r)
            self.assertTrue(ok, 'server signature not verified')

    def test_client_that_does_not_prepare_is_refused(self):
        with self.imaps() as c:
            r, ok, _ = imap_scram(c, Scram(USER, PASS))
            self.assertTrue(r.startswith('a ' + AUTH_FAILED), r)
            self.assertFalse(ok)

    def test_wrong_password_still_refused(self):
        with self.imaps() as c:
            r, ok, _ = imap_scram(c, PreparedScram(USER, PASS.replace('9h', '8h')))
            self.assertTrue(r.startswith('a ' + AUTH_FAILED), r)

    def test_secret_made_at_plain_login_is_of_the_prepared_password(self):
        with self.imaps() as c:
            _, t = c.cmd('p', 'AUTHENTICATE PLAIN ' + b64('\0%s\0%s' % (OLD_USER, OLD_PASS)))
            self.assertTrue(t.startswith('p OK'), t)
        self.assertTrue(harness.wait_for(
            lambda: 'auth stored the SCRAM secret of user' in self.server.log(), 10))
        self.assertScramLogin(PreparedScram(OLD_USER, OLD_PASS))


if __name__ == '__main__':
    unittest.main(verbosity=2)
