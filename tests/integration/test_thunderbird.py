"""Thunderbird's own "TLS certificate" login (SASL EXTERNAL) against coffred.

A real Thunderbird (Debian's package) runs headless (MOZ_HEADLESS=1) on a
profile this test makes under its temporary directory: an IMAP account on
127.0.0.1 with SSL/TLS (socketType 3) and the authentication method "TLS
certificate" (authMethod 7, nsMsgAuthMethod.External), mail checked at
start-up, every first-run page, update and report turned off. A throw-away
CA made with certtool issues the server's certificate (127.0.0.1 and
localhost) and the account's client certificate (SAN rfc822Name = its
address); the CA is trusted and the certificate and its key are imported
into the profile's NSS database with certutil and pk12util, and
security.default_personal_cert = "Select Automatically" lets Thunderbird
present it without asking.

Cases:
- the account's certificate: coffred logs the EXTERNAL login and
  Thunderbird selects INBOX and reads the header of the message delivered
  beforehand over LMTP (seen in Thunderbird's own IMAP log, MOZ_LOG=IMAP:5);
  the same with the account's user name written as the local part alone;
- a certificate of a CA that took the name of coffred's CA (Thunderbird
  presents it; coffred refuses it: unknown issuer), one of a CA that
  Thunderbird trusts but coffred does not name (Thunderbird presents none),
  and one revoked by the CRL (refused: revoked): AUTH=EXTERNAL is not
  offered, Thunderbird finds no method and sends no AUTHENTICATE, no login;
- require_client_cert with Thunderbird's normal password method (the
  password stored in its password manager over Marionette) plus the
  certificate (two factors) logs in; the same password without the
  certificate is refused.

What Thunderbird sent (its IMAP log's lines "SendData: ...") is printed
when COFFRE_TEST_VERBOSE=1 or a case fails: it is the reference for
EXTERNAL. Thunderbird 153 sends `N authenticate EXTERNAL <base64 of the
account's user name>`: the authorization identity is the user name, never
empty, and it is always an initial response on the command line (SASL-IR).

Thunderbird is slow to start on a small machine: every wait is bounded by
a generous timeout and ends as soon as what it waits for is there. It runs
in a process group of its own, killed whole at the end of each case.
Skipped only when thunderbird is not installed."""
import atexit
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import harness
import lmtp_util as L
from harness import ServerTestCase

THUNDERBIRD = shutil.which('thunderbird')
CERTTOOL = shutil.which('certtool')
CERTUTIL = shutil.which('certutil')
PK12UTIL = shutil.which('pk12util')

USER = 'alice@example.org'
PASSWORD = 'password of alice 7351'
P12_PASSWORD = 'p12 transport'
SUBJECT = 'Thunderbird reference 8c41'
# Thunderbird's start (profile, NSS, the account) then its first check
START_WAIT = 180.0

# nsMsgSocketType.SSL and nsMsgAuthMethod (mailnews/base/public/MailNewsTypes2.idl)
SOCKET_SSL = 3
AUTH_PASSWORD_CLEARTEXT = 3
AUTH_EXTERNAL = 7

PKI = None


def run(args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)
    if r.returncode != 0:
        raise RuntimeError('%s failed (%d): %s%s' % (' '.join(args), r.returncode, r.stdout,
                                                     r.stderr))
    return r.stdout


def certtool(*args):
    return run([CERTTOOL] + list(args))


def make_ca(name, cn=None):
    key = os.path.join(PKI, name + '.key')
    crt = os.path.join(PKI, name + '.pem')
    tmpl = os.path.join(PKI, name + '.tmpl')
    with open(tmpl, 'w') as f:
        f.write('cn = "%s"\nca\ncert_signing_key\ncrl_signing_key\n'
                'expiration_days = 3650\nserial = 1\n' % (cn or 'Thunderbird test CA ' + name))
    certtool('--generate-privkey', '--key-type', 'ecdsa', '--outfile', key)
    certtool('--generate-self-signed', '--load-privkey', key, '--template', tmpl, '--outfile',
             crt)
    return crt, key


SERIAL = [100]


def make_cert(name, ca, lines):
    """A leaf signed by ca with the template lines; returns (cert, key)."""
    key = os.path.join(PKI, name + '.key')
    crt = os.path.join(PKI, name + '.pem')
    tmpl = os.path.join(PKI, name + '.tmpl')
    SERIAL[0] += 1
    with open(tmpl, 'w') as f:
        f.write('\n'.join(['cn = "%s"' % name, 'serial = %d' % SERIAL[0], 'signing_key',
                           'expiration_days = 365'] + lines) + '\n')
    certtool('--generate-privkey', '--key-type', 'ecdsa', '--outfile', key)
    certtool('--generate-certificate', '--load-privkey', key, '--load-ca-certificate', ca[0],
             '--load-ca-privkey', ca[1], '--template', tmpl, '--outfile', crt)
    return crt, key


def make_crl(ca, revoked, out):
    tmpl = os.path.join(PKI, 'crl.tmpl')
    with open(tmpl, 'w') as f:
        f.write('crl_next_update = 30\ncrl_number = 7\n')
    certtool('--generate-crl', '--load-ca-privkey', ca[1], '--load-ca-certificate', ca[0],
             '--load-certificate', revoked, '--template', tmpl, '--outfile', out)


CA = OTHER_CA = CRL = None
CERTS = {}


def setUpModule():
    global PKI, CA, OTHER_CA, CRL
    if not THUNDERBIRD:
        raise unittest.SkipTest('thunderbird is not installed')
    missing = [n for n, p in (('certtool (gnutls-bin)', CERTTOOL),
                              ('certutil (libnss3-tools)', CERTUTIL),
                              ('pk12util (libnss3-tools)', PK12UTIL)) if not p]
    if missing:
        # Thunderbird is there: the test must run, not be skipped
        raise RuntimeError('thunderbird is installed but not %s' % ', '.join(missing))
    PKI = tempfile.mkdtemp(prefix='coffre-it-tb-pki-')
    os.chmod(PKI, 0o755)
    CA = make_ca('ca')
    OTHER_CA = make_ca('other')
    FORGED_CA = make_ca('forgedca', 'Thunderbird test CA ca')
    CERTS['forged'] = make_cert('forged', FORGED_CA, ['email = "%s"' % USER, 'tls_www_client'])
    CERTS['server'] = make_cert('server', CA, ['dns_name = "localhost"',
                                               'ip_address = "127.0.0.1"', 'tls_www_server'])
    CERTS['alice'] = make_cert('alice', CA, ['email = "%s"' % USER, 'tls_www_client'])
    CERTS['revoked'] = make_cert('revoked', CA, ['email = "%s"' % USER, 'tls_www_client'])
    CERTS['otherca'] = make_cert('otherca', OTHER_CA, ['email = "%s"' % USER,
                                                       'tls_www_client'])
    CRL = os.path.join(PKI, 'crl.pem')
    make_crl(CA, CERTS['revoked'][0], CRL)
    for f in os.listdir(PKI):
        os.chmod(os.path.join(PKI, f), 0o644)  # coffred reads them as run_user
    conf = {'tls_cert': CERTS['server'][0], 'tls_key': CERTS['server'][1],
            'tls_client_ca': CA[0], 'tls_client_crl': CRL}
    for cls in (ExternalTest, TwoFactorTest):
        cls.CONF = dict(cls.CONF, **conf)


def tearDownModule():
    if PKI and os.environ.get('KEEP_TMP') != '1':
        shutil.rmtree(PKI, ignore_errors=True)


def user_js(port, auth_method, profile, user_name, account=True):
    """The account (none when account is False: Local Folders only) and
    the quiet start-up, as user.js lines."""
    prefs = {
        # one IMAP account and Local Folders
        'mail.accountmanager.accounts': 'account1,account2',
        'mail.accountmanager.defaultaccount': 'account1',
        'mail.accountmanager.localfoldersserver': 'server2',
        'mail.account.account1.server': 'server1',
        'mail.account.account1.identities': 'id1',
        'mail.account.account2.server': 'server2',
        'mail.identity.id1.fullName': 'Alice',
        'mail.identity.id1.useremail': USER,
        'mail.identity.id1.valid': True,
        'mail.server.server1.type': 'imap',
        'mail.server.server1.name': USER,
        'mail.server.server1.hostname': '127.0.0.1',
        'mail.server.server1.port': port,
        'mail.server.server1.userName': user_name,
        'mail.server.server1.socketType': SOCKET_SSL,
        'mail.server.server1.authMethod': auth_method,
        'mail.server.server1.login_at_startup': True,
        'mail.server.server1.check_new_mail': True,
        'mail.server.server1.check_time': 1,
        'mail.server.server1.directory': os.path.join(profile, 'ImapMail', '127.0.0.1'),
        'mail.server.server2.type': 'none',
        'mail.server.server2.hostname': 'Local Folders',
        'mail.server.server2.userName': 'nobody',
        'mail.server.server2.name': 'Local Folders',
        'mail.server.server2.directory': os.path.join(profile, 'Mail', 'Local Folders'),
        # the client certificate: no dialog, the one that fits
        'security.default_personal_cert': 'Select Automatically',
        # online from the start, whatever the machine's network looks like
        'offline.startup_state': 2,
        'offline.autoDetect': False,
        'network.manage-offline-status': False,
        # no first-run pages, wizards, updates, reports or outside requests
        'mail.provider.suppress_dialog_on_startup': True,
        'mail.shell.checkDefaultClient': False,
        'mail.rights.version': 1,
        'mail.spotlight.firstRunDone': True,
        'mail.winsearch.firstRunDone': True,
        'mailnews.start_page.enabled': False,
        'mailnews.start_page.url': '',
        'mailnews.start_page.override_url': '',
        'mail.inappnotifications.enabled': False,
        'app.update.enabled': False,
        'app.update.auto': False,
        'app.update.checkInstallTime': False,
        'app.update.disabledForTesting': True,
        'datareporting.policy.dataSubmissionEnabled': False,
        'datareporting.healthreport.uploadEnabled': False,
        'toolkit.telemetry.enabled': False,
        'toolkit.telemetry.unified': False,
        'toolkit.telemetry.server': '',
        'browser.crashReports.unsubmittedCheck.enabled': False,
        'extensions.update.enabled': False,
        'extensions.getAddons.cache.enabled': False,
        'extensions.autoDisableScopes': 0,
        'network.captive-portal-service.enabled': False,
        'network.connectivity-service.enabled': False,
        'browser.safebrowsing.provider.mozilla.updateURL': '',
        'mailnews.auto_config_url': '',
        'mail.cloud_files.enabled': False,
        'toolkit.startup.max_resumed_crashes': -1,
        'mail.biff.show_alert': False,
        'mail.biff.play_sound': False,
        'mail.biff.use_system_alert': False,
        'mail.chat.enabled': False,
        'calendar.integration.notify': False,
        'mail.server.default.check_all_folders_for_new': False,
        # Marionette, when asked for (--marionette), on a port of its own
        # choosing, written to the profile's MarionetteActivePort
        'marionette.port': 0,
    }
    if not account:
        prefs['mail.accountmanager.accounts'] = 'account2'
        prefs['mail.accountmanager.defaultaccount'] = 'account2'
        prefs = {k: v for k, v in prefs.items()
                 if not k.startswith(('mail.server.server1.', 'mail.account.account1.',
                                      'mail.identity.id1.'))}
    out = []
    for k, v in prefs.items():
        if isinstance(v, bool):
            val = 'true' if v else 'false'
        elif isinstance(v, int):
            val = str(v)
        else:
            val = '"%s"' % v.replace('\\', '\\\\').replace('"', '\\"')
        out.append('user_pref("%s", %s);' % (k, val))
    return '\n'.join(out) + '\n'


# chrome script run over Marionette: the login Thunderbird looks up for an
# IMAP account (origin imap://HOST, realm the same)
ADD_LOGIN = """
const [origin, user, password, done] = arguments;
const info = Cc["@mozilla.org/login-manager/loginInfo;1"].createInstance(Ci.nsILoginInfo);
info.init(origin, null, origin, user, password, "", "");
Services.logins.addLoginAsync(info).then(() => done(true), e => done(String(e)));
"""


class Marionette:
    """The smallest Marionette client: length-prefixed JSON over TCP,
    [0, id, command, params] answered by [1, id, error, result]."""

    def __init__(self, port):
        self.sock = socket.create_connection((harness.HOST, port), timeout=START_WAIT)
        self.buf = b''
        self.id = 0
        self.read()  # {"applicationType": "gecko", "marionetteProtocol": 3}

    def read(self):
        while b':' not in self.buf:
            self.fill()
        n, _, rest = self.buf.partition(b':')
        n = int(n)
        self.buf = rest
        while len(self.buf) < n:
            self.fill()
        msg, self.buf = self.buf[:n], self.buf[n:]
        return json.loads(msg)

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError('Marionette closed the connection')
        self.buf += chunk

    def call(self, command, params):
        self.id += 1
        data = json.dumps([0, self.id, command, params]).encode()
        self.sock.sendall(b'%d:%s' % (len(data), data))
        while True:
            msg = self.read()
            if msg[0] == 1 and msg[1] == self.id:
                break
        if msg[2]:
            raise RuntimeError('Marionette %s: %r' % (command, msg[2]))
        return msg[3]

    def close(self):
        self.sock.close()


RUNNING = set()  # Thunderbirds started and not yet stopped


def stop_all(signum=None, frame=None):
    """Stops every Thunderbird still running: at exit, and when the test
    itself is ended (meson's timeout sends SIGTERM), so that no process
    group outlives the test."""
    for tb in list(RUNNING):
        tb.stop()
    if signum is not None:
        sys.exit(128 + signum)


class Thunderbird:
    """One Thunderbird on a profile of its own under tmp; its IMAP log is
    Thunderbird's record of every line it sent and received."""

    def __init__(self, tmp, port, cert=None, auth_method=AUTH_EXTERNAL, password=None,
                 trust=None, user_name=USER):
        self.dir = tmp
        self.profile = os.path.join(tmp, 'profile')
        self.home = os.path.join(tmp, 'home')
        self.log_base = os.path.join(tmp, 'imap.log')
        os.makedirs(self.profile)
        os.makedirs(self.home)
        self.proc = None
        self.output = None
        self.port = port
        self.auth_method = auth_method
        self.password = password
        self.user_name = user_name
        self.make_nss(cert, trust)
        self.write_prefs(True)

    def write_prefs(self, account):
        with open(os.path.join(self.profile, 'user.js'), 'w') as f:
            f.write(user_js(self.port, self.auth_method, self.profile, self.user_name, account))

    def nss(self, tool, *args):
        return run([tool, '-d', 'sql:' + self.profile] + list(args))

    def make_nss(self, cert, trust=None):
        """The profile's NSS database: our CA trusted for servers, and the
        client certificate with its key (a PKCS#12 file, as a user imports
        one)."""
        self.nss(CERTUTIL, '-N', '--empty-password')
        self.nss(CERTUTIL, '-A', '-n', 'coffre test CA', '-t', 'CT,C,C', '-i', CA[0])
        if trust:
            self.nss(CERTUTIL, '-A', '-n', 'another CA', '-t', 'CT,C,C', '-i', trust[0])
        if cert:
            p12 = os.path.join(self.dir, 'client.p12')
            certtool('--to-p12', '--load-certificate', cert[0], '--load-privkey', cert[1],
                     '--p12-name', 'alice certificate', '--password', P12_PASSWORD, '--outder',
                     '--outfile', p12)
            self.nss(PK12UTIL, '-i', p12, '-W', P12_PASSWORD, '-K', '')
            listed = self.nss(CERTUTIL, '-L')
            if 'alice certificate' not in listed:
                raise RuntimeError('the client certificate is not in the profile:\n' + listed)

    def start(self, *args):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith(('MOZ_', 'XRE_')) or k in ('DISPLAY', 'WAYLAND_DISPLAY'):
                del env[k]
        env.update({
            'HOME': self.home,
            'TMPDIR': self.dir,
            'MOZ_HEADLESS': '1',
            'MOZ_CRASHREPORTER_DISABLE': '1',
            'MOZ_DISABLE_AUTO_SAFE_MODE': '1',
            'MOZ_LOG': 'IMAP:5,sync',
            'MOZ_LOG_FILE': self.log_base,
        })
        self.output = open(os.path.join(self.dir, 'thunderbird.out'), 'ab')
        self.proc = subprocess.Popen([THUNDERBIRD, '--headless', '--no-remote', '--profile',
                                      self.profile] + list(args), env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.output, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        RUNNING.add(self)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def store_password(self):
        """Stores the account's password in the profile's password
        manager (logins.json, encrypted with the profile's key4.db) as
        Thunderbird does when a user ticks "remember": a Thunderbird
        without the account, driven over Marionette, adds the login and
        quits. The account is written back for the next start."""
        self.write_prefs(False)
        self.start('--marionette', '--remote-allow-system-access')
        port_file = os.path.join(self.profile, 'MarionetteActivePort')
        end = time.monotonic() + START_WAIT
        port = None
        while port is None and self.alive() and time.monotonic() < end:
            try:
                with open(port_file) as f:
                    port = int(f.read().strip())
            except (OSError, ValueError):  # not there yet, or being written
                time.sleep(0.2)
        if port is None:
            raise RuntimeError('Thunderbird started no Marionette server:\n'
                               + self.console())
        m = Marionette(port)
        try:
            m.call('WebDriver:NewSession', {'capabilities': {}})
            m.call('Marionette:SetContext', {'value': 'chrome'})
            r = m.call('WebDriver:ExecuteAsyncScript', {'script': ADD_LOGIN, 'args': [
                'imap://127.0.0.1', USER, self.password], 'newSandbox': True})
            if r.get('value') is not True:
                raise RuntimeError('storing the password failed: %r' % r)
            m.call('Marionette:Quit', {'flags': ['eForceQuit']})
        finally:
            m.close()
        try:
            self.proc.wait(START_WAIT)
        finally:
            self.stop()
        self.write_prefs(True)

    def stop(self):
        """Ends Thunderbird with its whole process group (its content and
        helper processes are in it too): SIGTERM, then SIGKILL."""
        RUNNING.discard(self)
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 60)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            if self.group_gone(wait):
                break
        self.proc.wait(10)
        self.output.close()

    def group_gone(self, timeout):
        """Waits until no process of the group is left (the leader reaped:
        a zombie would keep the group)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.proc.poll()
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False

    def imap_log(self):
        """Thunderbird's IMAP log (MOZ_LOG writes it as FILE.moz_log, or
        FILE-main.PID.moz_log and one per child)."""
        text = ''
        for p in sorted(glob.glob(self.log_base + '*')):
            text += harness.read_log(p)
        return text

    def sent(self):
        """The lines Thunderbird sent, in order, each after the name of its
        connection (A, B, ...: Thunderbird opens more than one), a
        password hidden (Thunderbird itself does not log a PLAIN or LOGIN
        response)."""
        out, names = [], {}
        for m in re.finditer(r'I/IMAP (\w+):[^:\s]+:[^:\s]*:SendData: (.*)', self.imap_log()):
            conn = names.setdefault(m.group(1), chr(ord('A') + len(names) % 26))
            line = m.group(2).rstrip()
            if self.password:
                line = line.replace(self.password, '<password>')
            out.append('%s: %s' % (conn, line))
        return out

    def console(self, n=20):
        """The end of Thunderbird's output, without GTK's complaints about
        having no screen."""
        lines = [l for l in harness.read_log(os.path.join(self.dir, 'thunderbird.out'))
                 .splitlines() if l.strip() and 'gtk' not in l.lower()]
        return '\n'.join(lines[-n:])


class TbCase(ServerTestCase):
    """A coffred with the test CA's server certificate; each case runs a
    Thunderbird of its own and stops it."""
    CONF = {'imaps_client_cert': 'optional'}

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(USER, PASSWORD)
        c = L.lmtp(cls.server)
        msg = ('From: Bob <bob@example.org>\r\nTo: %s\r\nSubject: %s\r\n'
               'Message-ID: <tb-reference-8c41@example.org>\r\n'
               'Date: Sat, 05 Dec 2026 08:00:00 +0000\r\n\r\nThe header Thunderbird reads.\r\n'
               % (USER, SUBJECT))
        rcpt, data = L.send(c, 'bob@example.org', [USER], msg)
        c.quit()
        if not data or data[0][0] != 250:
            raise RuntimeError('LMTP delivery failed: %r %r' % (rcpt, data))

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='coffre-it-tb-')
        self.tb = None

    def tearDown(self):
        if self.tb:
            self.tb.stop()
            if os.environ.get('COFFRE_TEST_VERBOSE') == '1' or self.failed():
                sys.stderr.write('\n---- what Thunderbird sent (%s) ----\n%s\n'
                                 '---- Thunderbird output (tail) ----\n%s\n'
                                 % (self.id(), '\n'.join(self.tb.sent()),
                                    self.tb.console()))
        if os.environ.get('KEEP_TMP') == '1':
            sys.stderr.write('KEEP_TMP: %s kept\n' % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def failed(self):
        outcome = getattr(self, '_outcome', None)
        result = getattr(outcome, 'result', None)
        if result is None:
            return False
        return any(t is self for t, _ in result.failures + result.errors)

    def thunderbird(self, cert, **kw):
        self.tb = Thunderbird(self.tmp, self.server.ports['imaps'], cert, **kw)
        self.tb.start()
        return self.tb

    def wait(self, pred, timeout, what, give_up=False):
        """Waits for pred while Thunderbird runs; fails with what. With
        give_up, fails as soon as Thunderbird found no login method."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return
            if not self.tb.alive() or (give_up and self.no_method()):
                break
            time.sleep(0.5)
        if pred():
            return
        if not self.tb.alive():
            state = 'Thunderbird exited %r' % self.tb.proc.returncode
        elif give_up and self.no_method():
            state = 'Thunderbird found no login method it could use'
        else:
            state = 'not within %ds' % timeout
        self.fail('%s (%s)' % (what, state))

    def no_method(self):
        """Thunderbird read the capabilities and found none of its
        methods (its IMAP log says so)."""
        return re.search(r'No remaining auth method|avail caps 0x0\b', self.tb.imap_log())

    def login_lines(self, mark, result='ok'):
        return re.findall(r'.*event=login .*user=%s .*result=%s.*' % (re.escape(USER), result),
                          self.server.log()[mark:])

    def inbox_read(self):
        """Thunderbird selected INBOX and got the delivered message's
        header (its IMAP log has the server's lines it read)."""
        log = self.tb.imap_log()
        return (re.search(r'SendData: \S+ select "?INBOX"?', log, re.I) is not None
                and SUBJECT in log)


class ExternalTest(TbCase):
    """Thunderbird's "TLS certificate" method: AUTHENTICATE EXTERNAL."""

    def test_thunderbird_logs_in_with_its_certificate(self):
        mark = len(self.server.log())
        self.thunderbird(CERTS['alice'])
        self.wait(lambda: self.login_lines(mark) and self.inbox_read(), START_WAIT,
                  'no EXTERNAL login of %s with INBOX read' % USER, give_up=True)
        log = self.server.log()[mark:]
        login = self.login_lines(mark)[0]
        self.assertIn('mech=EXTERNAL', login)
        self.assertIn('service=imaps', login)
        self.assertIn('imap login user=%s' % USER, log)
        self.assertRegex(log, r'client certificate sha256=[0-9a-f]{64} valid')
        self.assertFalse(self.login_lines(mark, 'failed'), log)
        self.assertNotIn('auth failed', log)
        # what Thunderbird sent: the mechanism, with or without a message
        auth = [l for l in self.tb.sent() if re.match(r'\w: \S+ authenticate ', l, re.I)]
        self.assertTrue(auth, self.tb.sent())
        self.assertRegex(auth[0], r'(?i)^\w: \S+ authenticate external( \S+)?$')

    def test_short_user_name(self):
        """An account whose user name is the local part alone: the
        authorization identity Thunderbird sends is completed with
        default_domain, as a password login's name is."""
        mark = len(self.server.log())
        self.thunderbird(CERTS['alice'], user_name=USER.split('@')[0])
        self.wait(lambda: self.login_lines(mark) and self.inbox_read(), START_WAIT,
                  'no EXTERNAL login of %s with INBOX read' % USER, give_up=True)
        self.assertIn('mech=EXTERNAL', self.login_lines(mark)[0])

    def check_refused(self, cert, refusal, **kw):
        """Thunderbird with cert gets no login: coffred logs refusal (a
        regular expression) for the certificate at the handshake, or, with
        refusal None, sees no certificate at all; AUTH=EXTERNAL is not
        offered, and Thunderbird, left without a method, sends no
        AUTHENTICATE."""
        mark = len(self.server.log())
        self.thunderbird(cert, **kw)
        # the point where Thunderbird has read the capabilities and chosen
        # (or, wrongly, logged in)
        self.wait(lambda: self.no_method() or self.login_lines(mark), START_WAIT,
                  'Thunderbird did not give up its login')
        self.assertFalse(self.login_lines(mark), self.server.log()[mark:])
        if refusal:
            # logged at the handshake, before the greeting Thunderbird read
            self.wait(lambda: re.search(r'client certificate sha256=[0-9a-f]{64} refused: '
                                        + refusal, self.server.log()[mark:]), START_WAIT,
                      'no refusal of the certificate (%s) in the log' % refusal)
        log = self.server.log()[mark:]
        if not refusal:
            self.assertNotIn('client certificate', log)
        self.assertNotRegex(log, r'client certificate sha256=\S+ valid')
        self.assertFalse(self.login_lines(mark), log)
        self.assertNotIn('imap login user=', log)
        self.assertNotIn('AUTH=EXTERNAL', self.tb.imap_log())
        self.assertFalse([l for l in self.tb.sent() if re.match(r'\w: \S+ authenticate', l, re.I)],
                         self.tb.sent())
        self.assertFalse(self.inbox_read())

    def test_certificate_of_another_ca_refused(self):
        # a CA that takes the name of coffred's: Thunderbird presents its
        # certificate (the server's list of CA names matches), coffred
        # finds no issuer with that key
        self.check_refused(CERTS['forged'], 'unknown issuer')

    def test_certificate_of_unrelated_ca_not_presented(self):
        # a CA Thunderbird trusts but coffred does not name: no certificate
        # is presented at all
        self.check_refused(CERTS['otherca'], None, trust=OTHER_CA)

    def test_revoked_certificate_refused(self):
        self.check_refused(CERTS['revoked'], 'revoked')


class TwoFactorTest(TbCase):
    """require_client_cert: Thunderbird's normal password method (LOGIN or
    AUTHENTICATE PLAIN, the password stored in its password manager) with
    the account's certificate presented at the handshake."""

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        rc, _, err = cls.server.ctl('user', 'cert', 'require', USER, 'yes')
        if rc != 0:
            raise RuntimeError('coffrectl user cert require: ' + err)

    def thunderbird_with_password(self, cert):
        self.tb = Thunderbird(self.tmp, self.server.ports['imaps'], cert,
                              auth_method=AUTH_PASSWORD_CLEARTEXT, password=PASSWORD)
        self.tb.store_password()
        self.tb.start()
        return self.tb

    def test_password_and_certificate_log_in(self):
        mark = len(self.server.log())
        self.thunderbird_with_password(CERTS['alice'])
        self.wait(lambda: self.login_lines(mark) and self.inbox_read(), START_WAIT,
                  'no password login of %s with INBOX read' % USER, give_up=True)
        login = self.login_lines(mark)[0]
        self.assertRegex(login, r'mech=(LOGIN|PLAIN) ')
        self.assertFalse(self.login_lines(mark, 'failed'))

    def test_password_without_certificate_refused(self):
        mark = len(self.server.log())
        self.thunderbird_with_password(None)
        self.wait(lambda: re.search(r'auth failed user=%s ip=\S+ .*reason="account requires a '
                                    r'client certificate: no client certificate'
                                    % re.escape(USER), self.server.log()[mark:]),
                  START_WAIT, 'no refusal of the password without a certificate')
        self.assertFalse(self.login_lines(mark), self.server.log()[mark:])
        self.assertFalse(self.inbox_read())


if __name__ == '__main__':
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    harness.main()
