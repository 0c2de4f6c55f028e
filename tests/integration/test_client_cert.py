"""Client certificates: tls_client_ca / tls_client_crl, the per-listener
*_client_cert settings, SASL EXTERNAL over IMAPS and POP3S, fingerprints
pinned with `coffrectl user cert`, and require_client_cert (a password
login that needs the account's certificate too). A throw-away CA is made
here with certtool: valid, expired, not yet valid, revoked, another CA's,
serverAuth only, another account's, and one without any e-mail name."""
import base64
import os
import pwd
import shutil
import signal
import ssl
import subprocess
import tempfile
import unittest

import harness
from harness import ServerTestCase
from test_scram import Scram, imap_scram

CERTTOOL = shutil.which('certtool')
PKI = None  # the module's temporary directory, made in setUpModule

# what the client may see: the RFC's code, nothing about the reason
REASON_WORDS = ('expired', 'revoked', 'issuer', 'purpose', 'certificate', 'valid', 'pinned')


def certtool(*args):
    r = subprocess.run([CERTTOOL] + list(args), capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError('certtool %s: %s' % (' '.join(args), r.stderr))


def template(name, lines):
    path = os.path.join(PKI, name + '.tmpl')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def make_ca(name):
    key = os.path.join(PKI, name + '.key')
    crt = os.path.join(PKI, name + '.pem')
    certtool('--generate-privkey', '--key-type', 'ecdsa', '--outfile', key)
    t = template(name, ['cn = "Test CA %s"' % name, 'ca', 'cert_signing_key', 'crl_signing_key',
                        'expiration_days = 3650', 'serial = 1'])
    certtool('--generate-self-signed', '--load-privkey', key, '--template', t, '--outfile', crt)
    return crt, key


SERIAL = [100]


def make_cert(name, ca, email=None, purpose='tls_www_client', dates=None):
    """A leaf signed by ca; dates = (activation, expiration) as certtool
    templates spell them. Returns (cert, key)."""
    key = os.path.join(PKI, name + '.key')
    crt = os.path.join(PKI, name + '.pem')
    SERIAL[0] += 1
    lines = ['cn = "%s"' % name, 'serial = %d' % SERIAL[0], 'signing_key', purpose]
    if email:
        lines.append('email = "%s"' % email)
    if dates:
        lines += ['activation_date = "%s"' % dates[0], 'expiration_date = "%s"' % dates[1]]
    else:
        lines.append('expiration_days = 365')
    certtool('--generate-privkey', '--key-type', 'ecdsa', '--outfile', key)
    certtool('--generate-certificate', '--load-privkey', key, '--load-ca-certificate', ca[0],
             '--load-ca-privkey', ca[1], '--template', template(name, lines), '--outfile', crt)
    return crt, key


def make_crl(ca, revoked, out):
    """A CRL of ca listing the certificates in revoked (paths)."""
    t = template('crl', ['crl_next_update = 30', 'crl_number = %d' % (SERIAL[0] + 1000)])
    SERIAL[0] += 1
    args = ['--generate-crl', '--load-ca-privkey', ca[1], '--load-ca-certificate', ca[0],
            '--template', t, '--outfile', out + '.new']
    if revoked:
        bundle = os.path.join(PKI, 'revoked-bundle.pem')
        with open(bundle, 'w') as f:
            for r in revoked:
                with open(r) as g:
                    f.write(g.read())
        args += ['--load-certificate', bundle]
    certtool(*args)
    os.chmod(out + '.new', 0o644)
    os.replace(out + '.new', out)


CERTS = {}
CA = None
CRL = None


def setUpModule():
    global PKI, CA, CRL
    if not CERTTOOL:
        raise unittest.SkipTest('certtool (gnutls-bin) is not installed')
    PKI = tempfile.mkdtemp(prefix='coffre-it-pki-')
    os.chmod(PKI, 0o755)
    CA = make_ca('ca')
    other = make_ca('other')
    CERTS['alice'] = make_cert('alice', CA, 'alice@example.org')
    CERTS['alice2'] = make_cert('alice2', CA, 'Alice@Example.org')
    CERTS['late'] = make_cert('late', CA, 'alice@example.org')  # revoked while running
    CERTS['bob'] = make_cert('bob', CA, 'bob@example.org')
    CERTS['dave'] = make_cert('dave', CA, 'dave@example.org')
    CERTS['device'] = make_cert('device', CA)  # no e-mail name: pinned only
    CERTS['expired'] = make_cert('expired', CA, 'alice@example.org',
                                 dates=('2019-01-01 00:00:00', '2020-01-01 00:00:00'))
    CERTS['future'] = make_cert('future', CA, 'alice@example.org',
                                dates=('2040-01-01 00:00:00', '2041-01-01 00:00:00'))
    CERTS['revoked'] = make_cert('revoked', CA, 'alice@example.org')
    CERTS['otherca'] = make_cert('otherca', other, 'alice@example.org')
    CERTS['server'] = make_cert('server', CA, 'alice@example.org', purpose='tls_www_server')
    CRL = os.path.join(PKI, 'crl.pem')
    make_crl(CA, [CERTS['revoked'][0]], CRL)
    for f in os.listdir(PKI):
        os.chmod(os.path.join(PKI, f), 0o644)  # coffred reads them as run_user
    conf = {'tls_client_ca': CA[0], 'tls_client_crl': CRL}
    ExternalTest.CONF.update(conf)
    RequiredTest.CONF.update(conf)


def tearDownModule():
    if PKI:
        shutil.rmtree(PKI, ignore_errors=True)


def b64(s):
    return base64.b64encode(s.encode()).decode()


class CertCase(ServerTestCase):
    def ctx(self, who=None):
        ctx = self.server.ctx()
        if who:
            ctx.load_cert_chain(*CERTS[who])
        return ctx

    def imaps(self, who=None):
        c = self.server.raw('imaps', tls=True, ctx=self.ctx(who))
        g, caps = harness.imap_greeting_caps(c)
        self.assertTrue(g.startswith('* OK'), g)
        return c, caps

    def external(self, who, authzid='', ir=True):
        """AUTHENTICATE EXTERNAL over IMAPS with who's certificate; returns
        (capabilities before, tagged answer)."""
        c, caps = self.imaps(who)
        with c:
            if ir:
                _, t = c.cmd('a', 'AUTHENTICATE EXTERNAL %s' % (b64(authzid) if authzid else '='))
            else:
                c.send('a AUTHENTICATE EXTERNAL\r\n')
                cont = c.line()
                self.assertEqual(cont.rstrip(), '+', cont)
                c.send((b64(authzid) if authzid else '') + '\r\n')
                t = c.until_tag('a')[1]
        return caps, t

    def assert_refused(self, t, log_reason, mark):
        self.assertEqual(t, 'a NO [AUTHENTICATIONFAILED] Authentication failed.')
        for w in REASON_WORDS:
            self.assertNotIn(w, t.lower())
        log = self.server.log()[mark:]
        self.assertRegex(log, r'auth failed user=\S+ ip=\S+ reason="[^"]*%s' % log_reason)

    def mark(self):
        return len(self.server.log())


class ExternalTest(CertCase):
    CONF = {'imaps_client_cert': 'optional', 'pop3s_client_cert': 'optional',
            'imap_client_cert': 'optional',
            'login_failure_delay': '100ms', 'login_failure_delay_max': '200ms'}

    @classmethod
    def setUpServer(cls):
        for u in ('alice', 'bob', 'carol', 'dave'):
            cls.server.add_user(u + '@example.org', 'password of ' + u)

    # ---- EXTERNAL with a valid certificate

    def test_valid_certificate_external_with_and_without_authzid(self):
        caps, t = self.external('alice')
        self.assertIn('AUTH=EXTERNAL', caps)
        self.assertTrue(t.startswith('a OK'), t)
        _, t = self.external('alice', 'alice@example.org')
        self.assertTrue(t.startswith('a OK'), t)
        # without SASL-IR: an empty challenge, then the (empty) authzid
        _, t = self.external('alice', ir=False)
        self.assertTrue(t.startswith('a OK'), t)
        # the SAN is compared without regard to case
        _, t = self.external('alice2', 'alice')
        self.assertTrue(t.startswith('a OK'), t)

    def test_external_selects_the_mapped_account(self):
        c, _ = self.imaps('bob')
        with c:
            _, t = c.cmd('a', 'AUTHENTICATE EXTERNAL =')
            self.assertTrue(t.startswith('a OK'), t)
        self.assertIn('imap login user=bob@example.org', self.server.log())

    def test_wrong_authzid_refused(self):
        m = self.mark()
        _, t = self.external('alice', 'bob@example.org')
        self.assert_refused(t, 'does not map to the authorization', m)
        # a certificate of another account does not open alice's
        m = self.mark()
        _, t = self.external('bob', 'alice@example.org')
        self.assert_refused(t, 'does not map to the authorization', m)

    # ---- bad certificates: no AUTH=EXTERNAL, refused, reason in the log only

    def check_bad(self, who, reason):
        m = self.mark()
        caps, t = self.external(who)
        self.assertNotIn('AUTH=EXTERNAL', caps)
        self.assert_refused(t, reason, m)

    def test_expired(self):
        self.check_bad('expired', 'client certificate expired')

    def test_not_yet_valid(self):
        self.check_bad('future', 'client certificate not yet valid')

    def test_revoked(self):
        self.check_bad('revoked', 'client certificate revoked')

    def test_other_ca(self):
        self.check_bad('otherca', 'client certificate unknown issuer')

    def test_wrong_purpose(self):
        self.check_bad('server', 'client certificate not for client authentication')

    def test_no_certificate(self):
        self.check_bad(None, 'client certificate no client certificate')

    # ---- fingerprint pins

    def test_pinned_fingerprint_without_san(self):
        m = self.mark()
        _, t = self.external('device')
        self.assert_refused(t, 'maps to no account', m)
        rc, out, err = self.server.ctl('user', 'cert', 'add', 'carol', CERTS['device'][0])
        self.assertEqual(rc, 0, err)
        rc, out, err = self.server.ctl('user', 'cert', 'list', 'carol')
        self.assertEqual(rc, 0, err)
        fp = out.split()[1]
        self.assertEqual(len(fp), 64)
        # pinned twice: refused
        rc, _, err = self.server.ctl('user', 'cert', 'add', 'carol', '--fingerprint', fp.upper())
        self.assertNotEqual(rc, 0)
        _, t = self.external('device')
        self.assertTrue(t.startswith('a OK'), t)
        _, t = self.external('device', 'carol@example.org')
        self.assertTrue(t.startswith('a OK'), t)
        m = self.mark()
        _, t = self.external('device', 'alice@example.org')
        self.assert_refused(t, 'does not map to the authorization', m)
        rc, out, err = self.server.ctl('user', 'cert', 'del', 'carol', '--fingerprint', fp)
        self.assertEqual(rc, 0, err)
        rc, out, _ = self.server.ctl('user', 'cert', 'list')
        self.assertNotIn(fp, out)
        m = self.mark()
        _, t = self.external('device')
        self.assert_refused(t, 'maps to no account', m)

    # ---- require_client_cert

    def test_require_client_cert(self):
        rc, _, err = self.server.ctl('user', 'cert', 'require', 'dave', 'yes')
        self.assertEqual(rc, 0, err)
        try:
            rc, out, _ = self.server.ctl('user', 'show', 'dave')
            self.assertIn('require client certificate: yes', out)
            login = harness.imap_login_cmd('dave@example.org', 'password of dave')
            plain = 'AUTHENTICATE PLAIN ' + b64('\0dave@example.org\0password of dave')
            for who, ok, reason in ((None, False, 'no client certificate'),
                                    ('alice', False, "the certificate is not this account's"),
                                    ('expired', False, 'expired'),
                                    ('dave', True, None)):
                for cmd in (login, plain):
                    m = self.mark()
                    c, _ = self.imaps(who)
                    with c:
                        _, t = c.cmd('a', cmd)
                    if ok:
                        self.assertTrue(t.startswith('a OK'), (who, t))
                    else:
                        self.assert_refused(t, 'account requires a client certificate: '
                                            + reason, m)
            # POP3 USER/PASS, with and without the certificate
            for who, ok in ((None, False), ('dave', True)):
                c = self.server.raw('pop3s', tls=True, ctx=self.ctx(who))
                with c:
                    self.assertTrue(c.line().startswith('+OK'))
                    c.send('USER dave@example.org\r\n')
                    self.assertTrue(c.line().startswith('+OK'))
                    c.send('PASS password of dave\r\n')
                    r = c.line()
                    if ok:
                        self.assertTrue(r.startswith('+OK'), r)
                    else:
                        self.assertEqual(r, '-ERR [AUTH] Authentication failed.')
            # the same password logs in without a certificate once not required
            rc, _, err = self.server.ctl('user', 'cert', 'require', 'dave', 'no')
            self.assertEqual(rc, 0, err)
            c, _ = self.imaps(None)
            with c:
                _, t = c.cmd('a', login)
            self.assertTrue(t.startswith('a OK'), t)
        finally:
            self.server.ctl('user', 'cert', 'require', 'dave', 'no')

    def test_require_client_cert_scram_and_app_password(self):
        """require_client_cert holds for SCRAM and for app passwords too:
        refused as a wrong password without the account's certificate."""
        rc, out, err = self.server.ctl('user', 'app-password', 'add', 'dave', '--label', 'phone')
        self.assertEqual(rc, 0, out + err)
        app = out.strip().splitlines()[-1]
        self.server.secrets.add(app)
        rc, _, err = self.server.ctl('user', 'cert', 'require', 'dave', 'yes')
        self.assertEqual(rc, 0, err)
        try:
            for who, ok in ((None, False), ('alice', False), ('dave', True)):
                # SCRAM-SHA-256: the same answer as a wrong proof
                m = self.mark()
                c, _ = self.imaps(who)
                with c:
                    t, verified, _ = imap_scram(c, Scram('dave@example.org', 'password of dave'))
                if ok:
                    self.assertTrue(t.startswith('a OK') and verified, (who, t))
                else:
                    self.assertEqual(t, 'a NO [AUTHENTICATIONFAILED] Authentication failed.')
                    self.assertRegex(self.server.log()[m:],
                                     r'auth failed user=\S+ ip=\S+ mech=SCRAM-SHA-256 '
                                     r'reason="account requires a client certificate')
                # an app password, IMAP LOGIN and POP3 USER/PASS
                m = self.mark()
                c, _ = self.imaps(who)
                with c:
                    _, t = c.cmd('a', harness.imap_login_cmd('dave@example.org', app))
                if ok:
                    self.assertTrue(t.startswith('a OK'), (who, t))
                else:
                    self.assert_refused(t, 'account requires a client certificate', m)
                c = self.server.raw('pop3s', tls=True, ctx=self.ctx(who))
                with c:
                    self.assertTrue(c.line().startswith('+OK'))
                    c.send('USER dave@example.org\r\n')
                    self.assertTrue(c.line().startswith('+OK'))
                    c.send('PASS %s\r\n' % app)
                    r = c.line()
                    if ok:
                        self.assertTrue(r.startswith('+OK'), r)
                    else:
                        self.assertEqual(r, '-ERR [AUTH] Authentication failed.')
        finally:
            self.server.ctl('user', 'cert', 'require', 'dave', 'no')
            self.server.ctl('user', 'app-password', 'del', 'dave', 'phone')

    # ---- POP3S

    def test_pop3s_external(self):
        for who, ok in (('alice', True), ('expired', False), (None, False)):
            c = self.server.raw('pop3s', tls=True, ctx=self.ctx(who))
            with c:
                self.assertTrue(c.line().startswith('+OK'))
                c.send('CAPA\r\n')
                capa = []
                while True:
                    l = c.line()
                    if l == '.':
                        break
                    capa.append(l)
                sasl = [l for l in capa if l.startswith('SASL ')]
                self.assertEqual(len(sasl), 1, capa)
                self.assertEqual('EXTERNAL' in sasl[0].split(), ok, sasl)
                c.send('AUTH EXTERNAL =\r\n')
                r = c.line()
                if ok:
                    self.assertTrue(r.startswith('+OK'), r)
                else:
                    self.assertEqual(r, '-ERR [AUTH] Authentication failed.')
        # without an initial response, then a wrong authzid
        c = self.server.raw('pop3s', tls=True, ctx=self.ctx('alice'))
        with c:
            c.line()
            c.send('AUTH EXTERNAL\r\n')
            self.assertEqual(c.line().rstrip(), '+')
            c.send(b64('bob@example.org') + '\r\n')
            self.assertEqual(c.line(), '-ERR [AUTH] Authentication failed.')

    # ---- STARTTLS listener with a certificate

    def test_starttls_external(self):
        c = self.server.raw('imap')
        with c:
            c.line()
            _, t = c.cmd('s', 'STARTTLS')
            self.assertTrue(t.startswith('s OK'), t)
            c.starttls(self.ctx('alice'))
            self.assertIn('AUTH=EXTERNAL', harness.imap_capability(c))
            _, t = c.cmd('a', 'AUTHENTICATE EXTERNAL =')
            self.assertTrue(t.startswith('a OK'), t)

    # ---- the CRL is read again on SIGHUP

    def test_crl_reloaded_on_sighup(self):
        _, t = self.external('late')
        self.assertTrue(t.startswith('a OK'), t)
        make_crl(CA, [CERTS['revoked'][0], CERTS['late'][0]], CRL)
        if os.geteuid() == 0:
            # coffred reads the files again as run_user: the key must be its
            pw = pwd.getpwnam(harness.RUN_USER)
            os.chown(self.server.key, pw.pw_uid, pw.pw_gid)
        m = self.mark()
        self.server.signal(signal.SIGHUP)
        harness.wait_for(lambda: 'reload: certificate and key reloaded' in
                         self.server.log()[m:], 10)
        m = self.mark()
        caps, t = self.external('late')
        self.assertNotIn('AUTH=EXTERNAL', caps)
        self.assert_refused(t, 'client certificate revoked', m)
        # the others are untouched
        _, t = self.external('alice')
        self.assertTrue(t.startswith('a OK'), t)


class RequiredTest(CertCase):
    CONF = {'imaps_client_cert': 'required', 'pop3s_client_cert': 'required'}

    @classmethod
    def setUpServer(cls):
        cls.server.add_user('alice@example.org', 'password of alice')

    def refused_at_handshake(self, service, who):
        """True when the server ended the connection at the handshake
        (TLS 1.3 reports it at the first read)."""
        try:
            c = self.server.raw(service, tls=True, ctx=self.ctx(who))
        except (ssl.SSLError, ConnectionError):
            return True
        with c:
            try:
                return c.readline() in (b'', None)
            except (ssl.SSLError, ConnectionError):
                return True

    def test_no_certificate_refused_at_handshake(self):
        for service in ('imaps', 'pop3s'):
            m = self.mark()
            self.assertTrue(self.refused_at_handshake(service, None))
            harness.wait_for(lambda: 'TLS handshake failed' in self.server.log()[m:], 10)
            self.assertRegex(self.server.log()[m:],
                             r'service=%s .*TLS handshake failed: .*' % service)
            self.assertNotIn('imap login', self.server.log()[m:])

    def test_bad_certificates_refused_at_handshake(self):
        for who, reason in (('expired', 'expired'), ('revoked', 'revoked'),
                            ('otherca', 'unknown issuer'),
                            ('server', 'not for client authentication')):
            m = self.mark()
            self.assertTrue(self.refused_at_handshake('imaps', who), who)
            harness.wait_for(lambda: 'TLS handshake failed' in self.server.log()[m:], 10)
            self.assertIn('client certificate: ' + reason, self.server.log()[m:])

    def test_valid_certificate_accepted(self):
        c, caps = self.imaps('alice')
        with c:
            self.assertIn('AUTH=EXTERNAL', caps)
            _, t = c.cmd('a', 'AUTHENTICATE EXTERNAL =')
            self.assertTrue(t.startswith('a OK'), t)
        # the plaintext listener asks for nothing (imap_client_cert = none)
        c = self.server.raw('imap')
        with c:
            self.assertTrue(c.line().startswith('* OK'))


if __name__ == '__main__':
    harness.main()
