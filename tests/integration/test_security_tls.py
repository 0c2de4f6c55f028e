"""TLS policy as an attacker probes it: no SHA-1 handshake signatures, no
finite-field DH groups (a client choosing ffdhe8192 makes every handshake
many times dearer for the server), no RSA key exchange, and client-initiated
renegotiation that leaves the server serving. Each refusal is checked
against a gnutls-serv control server that accepts the same client, so the
client really offers what is refused."""
import atexit
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import ServerTestCase, HOST
from test_tls import ControlServer, gnutls_cli, GNUTLS_CLI, GNUTLS_SERV

NEED_GNUTLS = unittest.skipUnless(GNUTLS_CLI and GNUTLS_SERV, 'gnutls-bin not installed')


def rsa_cert():
    """An RSA certificate beside the ECDSA one, as an administrator may load
    for old clients: with it, RSA key exchange would be possible at all."""
    d = tempfile.mkdtemp(prefix='coffre-rsa-')
    atexit.register(shutil.rmtree, d, True)
    os.chmod(d, 0o755)
    cert, key = os.path.join(d, 'rsa-cert.pem'), os.path.join(d, 'rsa-key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key,
                    '-out', cert, '-days', '2', '-subj', '/CN=localhost'],
                   check=True, capture_output=True, timeout=120)
    os.chmod(key, 0o644)
    return cert, key


RSA_CERT, RSA_KEY = rsa_cert()


class TlsAttacks(ServerTestCase):
    CONF = {'tls_cert_rsa': RSA_CERT, 'tls_key_rsa': RSA_KEY}

    @classmethod
    def setUpServer(cls):
        cls.control = cls.control_rsa = None
        if GNUTLS_SERV:
            cls.control = ControlServer(cls.server.cert, cls.server.key)
            cls.control_rsa = ControlServer(RSA_CERT, RSA_KEY)

    @classmethod
    def tearDownClass(cls):
        for c in (getattr(cls, 'control', None), getattr(cls, 'control_rsa', None)):
            if c:
                c.stop()
        super().tearDownClass()

    def refused_everywhere(self, version, extra, what, control=None):
        ok, out = gnutls_cli((control or self.control).port, version, extra)
        self.assertTrue(ok, 'control: gnutls-cli cannot do %s:\n%s' % (what, out))
        for svc in ('imaps', 'pop3s'):
            ok, out = gnutls_cli(self.server.ports[svc], version, extra)
            self.assertFalse(ok, '%s accepted on %s:\n%s' % (what, svc, out))

    @NEED_GNUTLS
    def test_sha1_signatures_refused(self):
        for control in (self.control, self.control_rsa):
            self.refused_everywhere('TLS1.2', ':-SIGN-ALL:+SIGN-ECDSA-SHA1:+SIGN-RSA-SHA1',
                                    'a TLS 1.2 client offering only SHA-1 signatures', control)

    @NEED_GNUTLS
    def test_ffdhe_groups_refused(self):
        self.refused_everywhere('TLS1.3', ':-GROUP-ALL:+GROUP-FFDHE8192:+GROUP-FFDHE2048',
                                'a TLS 1.3 client offering only finite-field groups')

    @NEED_GNUTLS
    def test_rsa_key_exchange_refused(self):
        self.refused_everywhere('TLS1.2', ':-KX-ALL:+RSA',
                                'a TLS 1.2 client offering only RSA key exchange',
                                self.control_rsa)

    @NEED_GNUTLS
    def test_modern_client_still_accepted(self):
        for version, extra in (('TLS1.3', ':-GROUP-ALL:+GROUP-X25519'),
                               ('TLS1.3', ':-GROUP-ALL:+GROUP-SECP256R1'),
                               ('TLS1.2', ':-GROUP-ALL:+GROUP-X25519')):
            for svc in ('imaps', 'pop3s'):
                ok, out = gnutls_cli(self.server.ports[svc], version, extra)
                self.assertTrue(ok, '%s%s refused on %s:\n%s' % (version, extra, svc, out))

    @NEED_GNUTLS
    def test_client_renegotiation_leaves_server_serving(self):
        # gnutls-cli --rehandshake renegotiates right after the handshake;
        # whatever coffred answers (it refuses), it must go on serving.
        r = subprocess.run([GNUTLS_CLI, '--priority', 'NORMAL:-VERS-ALL:+VERS-TLS1.2',
                            '--insecure', '--rehandshake', '-p',
                            str(self.server.ports['imaps']), HOST],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        self.assertIn('- Handshake was completed', r.stdout + r.stderr)
        self.assertTrue(self.server.alive(), self.server.log_tail())
        c = self.server.imap_ssl()
        try:
            typ, _ = c.noop()
            self.assertEqual(typ, 'OK')
        finally:
            c.logout()


if __name__ == '__main__':
    unittest.main()
