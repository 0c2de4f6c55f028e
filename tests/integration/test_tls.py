"""TLS policy: 1.2 and 1.3 only, forward-secret AEAD suites, the configured
ECDSA certificate, session resumption; on the implicit-TLS ports and after
STARTTLS/STLS."""
import os
import shutil
import socket
import ssl
import subprocess
import time
import unittest
import warnings

import harness
from harness import ServerTestCase, HOST

TLS13_SUITES = {'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384',
                'TLS_CHACHA20_POLY1305_SHA256'}
GNUTLS_CLI = shutil.which('gnutls-cli')
GNUTLS_SERV = shutil.which('gnutls-serv')


def gnutls_cli(port, version, extra_priority=''):
    """A gnutls-cli handshake restricted to one version; returns (ok, output)."""
    prio = 'NORMAL:-VERS-ALL:+VERS-%s%s' % (version, extra_priority)
    r = subprocess.run([GNUTLS_CLI, '--priority', prio, '--insecure', '-p', str(port), HOST],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    return r.returncode == 0 and '- Handshake was completed' in out, out


def old_version_ctx(version):
    """A Python client that offers only TLS 1.0 or 1.1 (OpenSSL needs
    security level 0 for that)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers('DEFAULT:@SECLEVEL=0')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


class ControlServer:
    """gnutls-serv accepting TLS 1.0 to 1.3: proves the clients used below
    can really speak the old versions, so coffred refusing them means
    something."""

    def __init__(self, cert, key):
        # A port taken meanwhile makes gnutls-serv exit: try another one.
        for _ in range(5):
            self.port = harness.free_port()
            self.proc = subprocess.Popen(
                [GNUTLS_SERV, '--x509certfile', cert, '--x509keyfile', key, '-p', str(self.port),
                 '--priority', 'NORMAL:+VERS-TLS1.0:+VERS-TLS1.1'],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_listening():
                return
        raise RuntimeError('gnutls-serv did not start')

    def _wait_listening(self):
        deadline = time.monotonic() + harness.START_TIMEOUT
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return True
            except OSError:
                if self.proc.poll() is not None:
                    return False
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError('gnutls-serv did not listen within %ds' %
                                       harness.START_TIMEOUT)
                time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


class TlsPolicy(ServerTestCase):

    @classmethod
    def setUpServer(cls):
        cls.server.add_user('tls@example.org', 'tls password')
        cls.control = None
        if GNUTLS_SERV:
            cls.control = ControlServer(cls.server.cert, cls.server.key)

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, 'control', None):
            cls.control.stop()
        super().tearDownClass()

    # -- old versions refused ----------------------------------------------

    @unittest.skipUnless(GNUTLS_CLI and GNUTLS_SERV, 'gnutls-bin not installed')
    def test_gnutls_cli_old_versions_refused(self):
        for version in ('TLS1.0', 'TLS1.1'):
            ok, out = gnutls_cli(self.control.port, version)
            self.assertTrue(ok, 'control: gnutls-cli cannot do %s at all:\n%s' % (version, out))
            for svc in ('imaps', 'pop3s'):
                ok, out = gnutls_cli(self.server.ports[svc], version)
                self.assertFalse(ok, '%s handshake accepted on %s:\n%s' % (version, svc, out))
        for version in ('TLS1.2', 'TLS1.3'):
            for svc in ('imaps', 'pop3s'):
                ok, out = gnutls_cli(self.server.ports[svc], version)
                self.assertTrue(ok, '%s handshake failed on %s:\n%s' % (version, svc, out))

    @unittest.skipUnless(GNUTLS_CLI and GNUTLS_SERV, 'gnutls-bin not installed')
    def test_gnutls_cli_cbc_only_refused(self):
        # A TLS 1.2 client offering only CBC (non-AEAD) suites finds nothing
        # acceptable; the control server shows the client really offers them.
        extra = ':-CIPHER-ALL:+AES-128-CBC:+AES-256-CBC:-MAC-ALL:+SHA1:+SHA256'
        ok, out = gnutls_cli(self.control.port, 'TLS1.2', extra)
        self.assertTrue(ok, 'control: gnutls-cli cannot do CBC:\n' + out)
        for svc in ('imaps', 'pop3s'):
            ok, out = gnutls_cli(self.server.ports[svc], 'TLS1.2', extra)
            self.assertFalse(ok, 'CBC-only client accepted on %s:\n%s' % (svc, out))

    def test_python_old_versions_refused(self):
        versions = []
        if ssl.HAS_TLSv1:
            versions.append(ssl.TLSVersion.TLSv1)
        if ssl.HAS_TLSv1_1:
            versions.append(ssl.TLSVersion.TLSv1_1)
        if not versions:
            self.skipTest('this OpenSSL has no TLS 1.0/1.1')
        for v in versions:
            if self.control:
                s = old_version_ctx(v).wrap_socket(
                    socket.create_connection((HOST, self.control.port), timeout=10),
                    server_hostname='localhost')
                s.close()
            for svc in ('imaps', 'pop3s'):
                with self.assertRaises((ssl.SSLError, ConnectionError, OSError),
                                       msg='%s accepted on %s' % (v, svc)):
                    s = old_version_ctx(v).wrap_socket(
                        socket.create_connection((HOST, self.server.ports[svc]), timeout=10),
                        server_hostname='localhost')
                    s.close()

    def test_python_cbc_only_refused(self):
        ctx = self.server.ctx(maximum=ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers('ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:'
                        'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384')
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            self.server.raw('imaps', tls=True, ctx=ctx).close()

    # -- what is negotiated ------------------------------------------------

    def assertTls13(self, sock):
        self.assertEqual(sock.version(), 'TLSv1.3')
        self.assertIn(sock.cipher()[0], TLS13_SUITES)

    def assertTls12ForwardSecretAead(self, sock):
        self.assertEqual(sock.version(), 'TLSv1.2')
        name = sock.cipher()[0]
        self.assertTrue(name.startswith('ECDHE-'), name)
        self.assertTrue('GCM' in name or 'CHACHA20' in name, name)

    def test_tls13_default(self):
        for svc in ('imaps', 'pop3s'):
            with self.server.raw(svc, tls=True) as c:
                self.assertTls13(c.sock)
                self.assertTrue(c.line().startswith(('* OK', '+OK')))

    def test_tls12_forward_secret_aead(self):
        ctx = self.server.ctx(maximum=ssl.TLSVersion.TLSv1_2)
        for svc in ('imaps', 'pop3s'):
            with self.server.raw(svc, tls=True, ctx=ctx) as c:
                self.assertTls12ForwardSecretAead(c.sock)
                self.assertTrue(c.line().startswith(('* OK', '+OK')))

    def test_tls12_each_aead_suite(self):
        for suite in ('ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384',
                      'ECDHE-ECDSA-CHACHA20-POLY1305'):
            ctx = self.server.ctx(maximum=ssl.TLSVersion.TLSv1_2)
            ctx.set_ciphers(suite)
            with self.server.raw('imaps', tls=True, ctx=ctx) as c:
                self.assertEqual(c.sock.cipher()[0], suite)
                self.assertTrue(c.line().startswith('* OK'))

    def test_starttls_and_stls_negotiate_the_same(self):
        for svc, cmd, ok in (('imap', b'a STARTTLS\r\n', '* OK'), ('pop3', b'STLS\r\n', '+OK')):
            for maximum in (None, ssl.TLSVersion.TLSv1_2):
                with self.server.raw(svc) as c:
                    c.line()
                    c.send(cmd)
                    r = c.line()
                    self.assertTrue(r.startswith('a OK') or r.startswith('+OK'), r)
                    c.starttls(self.server.ctx(maximum=maximum))
                    if maximum:
                        self.assertTls12ForwardSecretAead(c.sock)
                    else:
                        self.assertTls13(c.sock)

    def test_certificate_is_the_configured_one(self):
        with open(self.server.cert) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        for svc in ('imaps', 'pop3s'):
            with self.server.raw(svc, tls=True) as c:
                self.assertEqual(c.sock.getpeercert(binary_form=True), der)
                # Hostname 'localhost' was verified by the context.
                cert = c.sock.getpeercert()
                self.assertIn(('commonName', 'coffre-test-1'),
                              [x[0] for x in cert['subject']])

    # -- resumption --------------------------------------------------------

    def resume(self, maximum):
        ctx = self.server.ctx(maximum=maximum)
        with self.server.raw('imaps', tls=True, ctx=ctx) as c:
            self.assertFalse(c.sock.session_reused)
            # Reading the greeting also processes a TLS 1.3 ticket.
            c.line()
            _, t = c.cmd('a', 'LOGOUT')
            c.read_until_eof()
            session = c.sock.session
        self.assertIsNotNone(session)
        sock = socket.create_connection((HOST, self.server.ports['imaps']), timeout=10)
        s = ctx.wrap_socket(sock, server_hostname='localhost', session=session)
        with harness.Conn(s) as c:
            self.assertTrue(c.line().startswith('* OK'))
            self.assertTrue(s.session_reused, 'session not resumed (%s)' % s.version())
            _, t = c.cmd('a', 'LOGIN tls "tls password"')
            self.assertTrue(t.startswith('a OK'), t)

    def test_session_resumption_tls13(self):
        self.resume(None)

    def test_session_resumption_tls12(self):
        self.resume(ssl.TLSVersion.TLSv1_2)


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(('::1', 0))
            return s.getsockname()[1]
        finally:
            s.close()
    except OSError:
        return None


V6_PORT = have_ipv6_loopback()


@unittest.skipUnless(V6_PORT, 'no IPv6 loopback')
class TlsIPv6(ServerTestCase):
    """Listeners on IPv6: '[::1]:PORT' beside the IPv4 address."""

    v6_port = V6_PORT
    CONF = {'imaps_listen': lambda ports: '127.0.0.1:%d,[::1]:%d' % (ports['imaps'], V6_PORT)}

    def test_implicit_tls_over_ipv6(self):
        sock = socket.create_connection(('::1', self.v6_port), timeout=10)
        s = self.server.ctx().wrap_socket(sock, server_hostname='localhost')
        with harness.Conn(s) as c:
            self.assertIn(s.version(), ('TLSv1.2', 'TLSv1.3'))
            self.assertTrue(c.line().startswith('* OK'))
            _, t = c.cmd('a', 'LOGIN v6 "ipv6 password"')
            self.assertTrue(t.startswith('a OK'), t)

    @classmethod
    def setUpServer(cls):
        cls.server.add_user('v6@example.org', 'ipv6 password')


if __name__ == '__main__':
    harness.main()
