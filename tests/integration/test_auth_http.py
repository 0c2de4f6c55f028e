"""nginx's mail proxy protocol (auth_http) on coffred's HTTP listener, with
login tickets: the requests nginx sends (ngx_mail_auth_http_module's
headers, Auth-User and Auth-Pass %XX-escaped) from 127.0.0.1, which is in
proxy_networks, answered with the account's slot (host, IMAP or POP3 port)
and a ticket; the ticket logs in over plaintext IMAP and POP3 from
proxy_networks; a ticket for another address, an altered one, an expired
one, one made with another key, and one sent from outside proxy_networks
are refused; wrong passwords are answered "Invalid login or password" with
Auth-Wait and throttled by Client-IP, two Client-IPs not holding each
other back; accounts without a slot, moving, or on an unknown slot get a
temporary failure; unsupported methods and protocols a clear status; and
requests from outside proxy_networks 403. A last class puts a real nginx
(libnginx-mod-mail) in front when it is installed: IMAPS and POP3S logins
through it reach coffred."""
import base64
import hashlib
import hmac
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import tempfile
import threading
import time
import unittest

import harness
import nginx_util
import slot_util
from harness import HOST, ServerTestCase

ALICE, ALICE_PW = 'alice@example.org', 'auth-http-pass-1'
BOB, BOB_PW = 'bob@example.org', 'auth-http-pass-2'          # no slot
CAROL, CAROL_PW = 'carol@example.org', 'auth-http-pass-3'
DAVE, DAVE_PW = 'dave@example.org', 'auth-http-pass-4'
ERIN, ERIN_PW = 'erin@example.org', 'auth-http-pass-5'
ODD, ODD_PW = 'odd@example.org', 'odd pass%25 word+1'          # escaped by nginx
MOVER, MOVER_PW = 'mover@example.org', 'auth-http-pass-6'
LOST, LOST_PW = 'lost@example.org', 'auth-http-pass-7'         # slot not in the table
DOWN, DOWN_PW = 'down@example.org', 'auth-http-pass-8'         # slot on a closed port
HTTP_PORT = harness.free_port()
KEY = os.urandom(48)
OTHER_KEY = os.urandom(48)
TEMP_STATUS = 'Temporary server problem, try again later'


def key_dir():
    """A directory run_user can reach, with the key file (mode 0600, owned
    by run_user so that a reload can read it again)."""
    d = tempfile.mkdtemp(prefix='coffre-authhttp-')
    os.chmod(d, 0o755)
    path = os.path.join(d, 'ticket.key')
    with open(path, 'wb') as f:
        f.write(KEY)
    os.chmod(path, 0o600)
    pw = pwd.getpwnam(harness.RUN_USER)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return d, path


KEY_DIR, KEY_FILE = key_dir()


def add_slot(srv, name):
    """This coffred's plaintext listeners as slot name."""
    slot_util.slot_add(srv, name, HOST, srv.ports)


def tearDownModule():
    shutil.rmtree(KEY_DIR, ignore_errors=True)


def make_ticket(key, address, client_ip, expiry):
    """A ticket as auth/ticket.c makes it, written here from its format."""
    msg = b'coffre-t1\0' + address.encode() + b'\0' + client_ip.encode() + b'\0' + \
        str(expiry).encode()
    mac = hmac.new(key, msg, hashlib.sha256).digest()
    return 'coffre-t1:%d:%s' % (expiry, base64.urlsafe_b64encode(mac).rstrip(b'=').decode())


def escape(s):
    """nginx's escaping of Auth-User and Auth-Pass (ngx_escape_uri,
    NGX_ESCAPE_MAIL_AUTH): space, '%' and controls as %XX."""
    return ''.join('%%%02X' % ord(c) if c in ' %' or ord(c) < 0x20 or ord(c) > 0x7e else c
                   for c in s)


class Answer:
    def __init__(self, status, headers):
        self.status, self.headers = status, headers

    def get(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class AuthHttp(ServerTestCase):
    CONF = {
        'http_listen': '%s:%d' % (HOST, HTTP_PORT),
        'proxy_networks': '127.0.0.1/32',   # and so plaintext logins from there
        'ticket_key_file': KEY_FILE,
        'ticket_lifetime': '30s',
        'auth_http_max_attempts': '5',
        # a slot's check reused for the whole class: each address probed once
        'auth_http_slot_check_ttl': '600s',
    }

    @classmethod
    def setUpServer(cls):
        srv = cls.server
        for u, p in ((ALICE, ALICE_PW), (BOB, BOB_PW), (CAROL, CAROL_PW), (DAVE, DAVE_PW),
                     (ERIN, ERIN_PW), (ODD, ODD_PW.replace('%25', '%')), (MOVER, MOVER_PW),
                     (LOST, LOST_PW), (DOWN, DOWN_PW)):
            srv.add_user(u, p)
        add_slot(srv, 's1')
        # a slot whose ports nothing listens on (free ones, kept closed)
        cls.down_port = harness.free_port()
        slot_util.slot_add(srv, 'sdown', HOST, dict.fromkeys(('imap', 'pop3', 'lmtp'),
                                                             cls.down_port))
        rc, out, err = srv.ctl('user', 'set-slot', DOWN, 'sdown')
        assert rc == 0, out + err
        for u in (ALICE, CAROL, DAVE, ERIN, ODD, MOVER, LOST):
            rc, out, err = srv.ctl('user', 'set-slot', u, 's1')
            assert rc == 0, out + err
        # what `coffrectl user move` does while it copies, and an account
        # left on a slot that was taken out of the table
        db = sqlite3.connect(os.path.join(srv.data_dir, 'accounts.sqlite'))
        with db:
            db.execute("UPDATE accounts SET move_to = 's2' WHERE address = ?", (MOVER,))
            db.execute("UPDATE accounts SET slot = 'gone' WHERE address = ?", (LOST,))
        db.close()

    # -- nginx's side ---------------------------------------------------

    def ask(self, user, password, proto='imap', method='plain', client='127.0.0.1', attempt=1,
            source=None, extra=''):
        """One auth_http request as nginx sends it (HTTP/1.0, one per
        connection); the answer's status and header fields."""
        req = ('GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: %s\r\n'
               'Auth-User: %s\r\nAuth-Pass: %s\r\nAuth-Protocol: %s\r\n'
               'Auth-Login-Attempt: %d\r\nClient-IP: %s\r\nClient-Host: [UNAVAILABLE]\r\n%s\r\n'
               % (method, escape(user), escape(password), proto, attempt, client, extra))
        return self.raw_request(req.encode(), source)

    def raw_request(self, data, source=None):
        sock = socket.create_connection((HOST, HTTP_PORT), timeout=harness.IO_TIMEOUT,
                                        source_address=(source, 0) if source else None)
        with harness.Conn(sock) as c:
            c.send(data)
            raw = harness.read_to_close(c, harness.IO_TIMEOUT).decode('latin-1')
        head = raw.split('\r\n\r\n', 1)[0].split('\r\n')
        m = re.match(r'HTTP/1\.[01] (\d+) ', head[0])
        self.assertIsNotNone(m, raw[:200])
        fields = [tuple(x.strip() for x in l.split(':', 1)) for l in head[1:] if ':' in l]
        return Answer(int(m.group(1)), fields)

    def ok_answer(self, user, password, proto='imap', client='127.0.0.1'):
        a = self.ask(user, password, proto=proto, client=client)
        self.assertEqual(a.status, 200)
        self.assertEqual(a.get('Auth-Status'), 'OK', a.headers)
        return a

    def metric(self, name):
        sock = socket.create_connection((HOST, HTTP_PORT), timeout=harness.IO_TIMEOUT)
        with harness.Conn(sock) as c:
            c.send(b'GET /metrics HTTP/1.0\r\n\r\n')
            body = harness.read_to_close(c, harness.IO_TIMEOUT).decode()
        m = re.search(r'^%s(?:\{\})? (\d+)' % re.escape(name), body, re.M)
        return int(m.group(1)) if m else 0

    # -- the slot's side ------------------------------------------------

    def imap_login(self, user, password, source=None, client=None):
        """A plaintext IMAP LOGIN as nginx makes it to the slot, after a
        PROXY v1 header naming client when given; the tagged reply."""
        with self.server.raw('imap', source=source) as c:
            if client:
                c.send('PROXY TCP4 %s 127.0.0.1 40000 %d\r\n' % (client,
                                                                self.server.ports['imap']))
            self.assertStarts(c.line(), '* OK')
            _, t = c.cmd('a', harness.imap_login_cmd(user, password))
            if t.startswith('a OK'):
                _, s = c.cmd('b', 'SELECT INBOX')
                self.assertTrue(s.startswith('b OK'), s)
            return t

    def imaps_login(self, user, password, source):
        with self.server.raw('imaps', tls=True, source=source) as c:
            self.assertStarts(c.line(), '* OK')
            return c.cmd('a', harness.imap_login_cmd(user, password))[1]

    def pop3_login(self, user, password):
        with self.server.raw('pop3') as c:
            self.assertStarts(c.line(), '+OK')
            c.send('USER %s\r\n' % user)
            self.assertStarts(c.line(), '+OK')
            c.send('PASS %s\r\n' % password)
            r = c.line()
            if r.startswith('+OK'):
                c.send('STAT\r\n')
                self.assertStarts(c.line(), '+OK 0 0')
            c.send('QUIT\r\n')
            return r

    def assertStarts(self, reply, prefix):
        self.assertTrue(reply.startswith(prefix), '%r, not %s' % (reply, prefix))

    # -- tests ----------------------------------------------------------

    def test_imap_ticket(self):
        a = self.ok_answer('Alice', ALICE_PW)
        self.assertEqual(a.get('Auth-Server'), HOST)
        self.assertEqual(a.get('Auth-Port'), str(self.server.ports['imap']))
        self.assertEqual(a.get('Auth-User'), ALICE)      # normalized
        ticket = a.get('Auth-Pass')
        self.assertTrue(ticket.startswith('coffre-t1:'), ticket)
        self.assertNotIn(ALICE_PW, str(a.headers))
        self.assertStarts(self.imap_login(ALICE, ticket), 'a OK')
        # the same ticket again, within its lifetime (nginx may retry)
        self.assertStarts(self.imap_login(ALICE, ticket), 'a OK')
        self.assertIn('auth_http user=%s client=127.0.0.1 proto=imap slot=s1' % ALICE,
                      self.server.log())

    def test_ticket_through_proxy_header(self):
        """nginx with proxy_protocol on: the ticket is bound to Client-IP,
        which the slot learns from the PROXY header."""
        client = '203.0.113.5'
        a = self.ok_answer(ALICE, ALICE_PW, client=client)
        ticket = a.get('Auth-Pass')
        self.assertStarts(self.imap_login(ALICE, ticket, client=client), 'a OK')
        # without the header the client is 127.0.0.1: not the ticket's
        self.assertStarts(self.imap_login(ALICE, ticket), 'a NO')
        # nor from another client address
        self.assertStarts(self.imap_login(ALICE, ticket, client='203.0.113.6'), 'a NO')
        log = self.server.log()
        self.assertIn('auth failed user=%s ip=203.0.113.6 reason="invalid or expired ticket"'
                      % ALICE, log)

    def test_pop3_ticket(self):
        a = self.ok_answer(DAVE, DAVE_PW, proto='pop3')
        self.assertEqual(a.get('Auth-Port'), str(self.server.ports['pop3']))
        self.assertStarts(self.pop3_login(DAVE, a.get('Auth-Pass')), '+OK')

    def test_escaped_credentials(self):
        # nginx sends 'odd pass% word+1' as 'odd%20pass%25%20word+1'
        a = self.ok_answer(ODD, ODD_PW.replace('%25', '%'))
        self.assertStarts(self.imap_login(ODD, a.get('Auth-Pass')), 'a OK')
        bad = self.raw_request(
            ('GET /auth HTTP/1.0\r\nAuth-Method: plain\r\nAuth-User: %s\r\nAuth-Pass: x%%zz\r\n'
             'Auth-Protocol: imap\r\nClient-IP: 127.0.0.1\r\n\r\n' % ODD).encode())
        self.assertEqual(bad.status, 400)

    def test_app_password(self):
        rc, out, err = self.server.ctl('user', 'app-password', 'add', ERIN, '--label', 'phone')
        self.assertEqual(rc, 0, err)
        app = re.search(r'[a-z0-9]{4}(?:-[a-z0-9]{4}){4}', out).group(0)
        self.server.secrets.add(app)
        a = self.ok_answer(ERIN, app)
        self.assertStarts(self.imap_login(ERIN, a.get('Auth-Pass')), 'a OK')

    def test_ticket_refusals(self):
        a = self.ok_answer(CAROL, CAROL_PW)
        ticket = a.get('Auth-Pass')
        exp, mac = ticket.split(':')[1:]
        # another address
        self.assertStarts(self.imap_login(ALICE, ticket), 'a NO')
        # altered: its MAC, its expiry
        flipped = mac[:5] + ('A' if mac[5] != 'A' else 'B') + mac[6:]
        self.assertStarts(self.imap_login(CAROL, 'coffre-t1:%s:%s' % (exp, flipped)), 'a NO')
        self.assertStarts(self.imap_login(CAROL, 'coffre-t1:%d:%s' % (int(exp) + 60, mac)), 'a NO')
        # truncated
        self.assertStarts(self.imap_login(CAROL, ticket[:-1]), 'a NO')
        # made here with the right key: accepted; expired, or with another
        # key, or for another client address: refused
        now = int(time.time())
        self.assertStarts(self.imap_login(CAROL, make_ticket(KEY, CAROL, '127.0.0.1', now + 20)), 'a OK')
        self.assertStarts(self.imap_login(CAROL, make_ticket(KEY, CAROL, '127.0.0.1', now - 2)), 'a NO')
        self.assertStarts(self.imap_login(CAROL, make_ticket(OTHER_KEY, CAROL, '127.0.0.1',
                                                           now + 20)), 'a NO')
        self.assertStarts(self.imap_login(CAROL, make_ticket(KEY, CAROL, '198.51.100.9',
                                                           now + 20)), 'a NO')
        self.assertIn('reason="invalid or expired ticket"', self.server.log())

    def test_ticket_outside_proxy_networks(self):
        # 127.0.0.2 is not in proxy_networks: a ticket is just a (wrong)
        # password there, over IMAPS as any client
        a = self.ok_answer(CAROL, CAROL_PW, client='127.0.0.2')
        ticket = a.get('Auth-Pass')
        self.assertStarts(self.imaps_login(CAROL, ticket, '127.0.0.2'), 'a NO')
        self.assertStarts(self.imaps_login(CAROL, CAROL_PW, '127.0.0.2'), 'a OK')

    def test_wrong_password(self):
        a = self.ask(CAROL, 'not the password')
        self.assertEqual(a.status, 200)
        self.assertEqual(a.get('Auth-Status'), 'Invalid login or password')
        self.assertEqual(a.get('Auth-Wait'), '1')
        self.assertIsNone(a.get('Auth-Server'))
        # nginx asks at most auth_http_max_attempts times in a session
        a = self.ask(CAROL, 'not the password', attempt=5)
        self.assertEqual(a.get('Auth-Status'), 'Invalid login or password')
        self.assertIsNone(a.get('Auth-Wait'))
        # an unknown account answers the same
        a = self.ask('nobody-here@example.org', 'whatever-pass')
        self.assertEqual(a.get('Auth-Status'), 'Invalid login or password')

    def fail_then_hold(self, ip, tag):
        """A failed login from Client-IP ip (in a thread); returns once it
        is counted (logged), while its answer is still held, with the
        thread and its result."""
        results = {}
        user = 'first-%s@example.org' % tag
        t = threading.Thread(target=lambda: results.setdefault(
            'first', self.ask(user, 'wrong one', client=ip)))
        t.start()
        self.assertTrue(harness.wait_for(
            lambda: 'auth failed user=%s ip=%s' % (user, ip) in self.server.log(), 10))
        return t, results

    def test_throttle_by_client_ip(self):
        """A failure from Client-IP A holds A's next attempt back (the
        throttle's wait is counted in coffre_login_throttled_total), and
        not an attempt from Client-IP B made meanwhile. Names no other
        attempt used, so that only the address groups hold anything."""
        a_ip, b_ip = '198.51.100.1', '198.51.100.2'
        before = self.metric('coffre_login_throttled_total')
        t1, results = self.fail_then_hold(a_ip, 'a')
        t2 = threading.Thread(target=lambda: results.setdefault(
            'a', self.ask('second-a@example.org', 'wrong two', client=a_ip)))
        t2.start()
        self.assertTrue(harness.wait_for(
            lambda: self.metric('coffre_login_throttled_total') == before + 1, 10))
        results['b'] = self.ask('second-b@example.org', 'wrong two', client=b_ip)
        t1.join()
        t2.join()
        for k in ('first', 'a', 'b'):
            self.assertEqual(results[k].get('Auth-Status'), 'Invalid login or password', k)
        # B's attempt was checked without waiting
        self.assertEqual(self.metric('coffre_login_throttled_total'), before + 1)
        log = self.server.log()
        self.assertIn('auth failed user=second-a@example.org ip=%s' % a_ip, log)
        self.assertIn('auth failed user=second-b@example.org ip=%s' % b_ip, log)

    def test_temporary_failures(self):
        for user, pw, why in ((BOB, BOB_PW, 'has no slot'),
                              (MOVER, MOVER_PW, 'moving to slot s2'),
                              (LOST, LOST_PW, 'slot gone is not in the directory')):
            a = self.ask(user, pw)
            self.assertEqual(a.status, 200)
            self.assertEqual(a.get('Auth-Status'), TEMP_STATUS, user)
            self.assertEqual(a.get('Auth-Error-Code'), '451 4.3.0')
            self.assertEqual(a.get('Auth-Wait'), '3')
            self.assertIsNone(a.get('Auth-Pass'))
            self.assertIn(why, self.server.log())

    def test_slot_down(self):
        """A slot whose port refuses connections: a temporary failure
        naming it in the log, not an OK that nginx cannot use; the probe
        is made once and its result reused by the logins that follow. A
        slot that listens is answered OK."""
        for proto in ('imap', 'pop3', 'imap'):
            a = self.ask(DOWN, DOWN_PW, proto=proto)
            self.assertEqual(a.status, 200)
            self.assertEqual(a.get('Auth-Status'), TEMP_STATUS, a.headers)
            self.assertEqual(a.get('Auth-Error-Code'), '451 4.3.0')
            self.assertEqual(a.get('Auth-Wait'), '3')
            self.assertIsNone(a.get('Auth-Server'))
            self.assertIsNone(a.get('Auth-Pass'))
        log = self.server.log()
        self.assertIn('auth_http user=%s: slot sdown at %s:%d does not accept connections'
                      % (DOWN, HOST, self.down_port), log)
        self.assertEqual(log.count('auth_http slot check: %s:%d does not accept connections'
                                   % (HOST, self.down_port)), 1, log)
        a = self.ok_answer(ALICE, ALICE_PW)
        self.assertEqual(a.get('Auth-Port'), str(self.server.ports['imap']))
        self.assertNotIn('auth_http slot check: %s:%d does not'
                         % (HOST, self.server.ports['imap']), self.server.log())
        # the probe is a connection from proxy_networks that sends nothing
        # and closes: the slot logs it at debug only, not at info
        self.assertIsNone(re.search(r'service=imap remote=127\.0\.0\.1:\d+ .*closed in=0 out=0',
                                    self.server.log()))

    def test_unsupported(self):
        a = self.ask(ALICE, ALICE_PW, method='cram-md5')
        self.assertEqual(a.get('Auth-Status'), 'Unsupported authentication method')
        self.assertIsNone(a.get('Auth-Wait'))
        a = self.ask(ALICE, ALICE_PW, method='apop')
        self.assertEqual(a.get('Auth-Status'), 'Unsupported authentication method')
        a = self.ask(ALICE, ALICE_PW, proto='smtp')
        self.assertEqual(a.get('Auth-Status'), 'Unsupported protocol: IMAP and POP3 only')
        a = self.ask(ALICE, ALICE_PW, method='login')
        self.assertEqual(a.get('Auth-Status'), 'OK')

    def test_bad_requests(self):
        a = self.ask(ALICE, ALICE_PW, extra='Auth-Pass: again\r\n')
        self.assertEqual(a.status, 400)
        a = self.ask(ALICE, ALICE_PW, client='not-an-address')
        self.assertEqual(a.status, 400)
        a = self.raw_request(b'POST /auth HTTP/1.0\r\nContent-Length: 0\r\n\r\n')
        self.assertEqual(a.status, 405)
        # a head past http_max_header_bytes is refused before any check
        a = self.ask(ALICE, ALICE_PW, extra='X-Pad: %s\r\n' % ('p' * 20000))
        self.assertEqual(a.status, 431)

    def test_outside_proxy_networks(self):
        a = self.ask(ALICE, ALICE_PW, source='127.0.0.2')
        self.assertEqual(a.status, 403)
        self.assertIn('auth_http refused: 127.0.0.2', self.server.log())

    def test_client_goes_away(self):
        """nginx closes while the login is held back by the throttle: the
        login is cancelled, coffred carries on."""
        ip = '198.51.100.77'
        before = self.metric('coffre_login_throttled_total')
        t1, _ = self.fail_then_hold(ip, 'gone')
        sock = socket.create_connection((HOST, HTTP_PORT), timeout=harness.IO_TIMEOUT)
        sock.sendall(('GET /auth HTTP/1.0\r\nAuth-Method: plain\r\n'
                      'Auth-User: second-gone@example.org\r\nAuth-Pass: x\r\n'
                      'Auth-Protocol: imap\r\nClient-IP: %s\r\n\r\n' % ip).encode())
        self.assertTrue(harness.wait_for(
            lambda: self.metric('coffre_login_throttled_total') == before + 1, 10))
        sock.close()
        t1.join()
        self.ok_answer(ALICE, ALICE_PW)
        # never checked: cancelled while it waited
        self.assertNotIn('user=second-gone@example.org', self.server.log())

    def test_zz_reload_new_key(self):
        """SIGHUP reads ticket_key_file again: tickets of the old key are
        refused, those of the new one accepted (then the old key is put
        back)."""
        new = os.urandom(40)

        def put(key, n):
            with open(KEY_FILE, 'wb') as f:
                f.write(key)
            self.server.signal(signal.SIGHUP)
            self.assertTrue(harness.wait_for(
                lambda: self.server.log().count('reload: ticket key read again') == n, 10))
        try:
            put(new, 1)
            now = int(time.time())
            self.assertStarts(self.imap_login(ALICE, make_ticket(KEY, ALICE, '127.0.0.1', now + 20)), 'a NO')
            self.assertStarts(self.imap_login(ALICE, make_ticket(new, ALICE, '127.0.0.1', now + 20)), 'a OK')
            a = self.ok_answer(ALICE, ALICE_PW)
            self.assertEqual(a.get('Auth-Pass').split(':')[2],
                             make_ticket(new, ALICE, '127.0.0.1',
                                         int(a.get('Auth-Pass').split(':')[1])).split(':')[2])
        finally:
            put(KEY, 2)


class AuthHttpNoTickets(ServerTestCase):
    """Without ticket_key_file, nginx is given the password itself, and a
    ticket-shaped password is checked as a password."""
    CONF = {
        'http_listen': '%s:%d' % (HOST, HTTP_PORT),
        'proxy_networks': '127.0.0.1/32',
        'auth_http_default_slot': 'main',
    }

    @classmethod
    def setUpServer(cls):
        srv = cls.server
        srv.add_user(ALICE, ALICE_PW)
        add_slot(srv, 'main')

    def test_password_passed_on(self):
        a = AuthHttp.ask(self, ALICE, ALICE_PW)
        self.assertEqual(a.get('Auth-Status'), 'OK')
        self.assertEqual(a.get('Auth-Pass'), ALICE_PW)   # auth_http_default_slot
        self.assertEqual(a.get('Auth-Port'), str(self.server.ports['imap']))
        self.assertStarts(AuthHttp.imap_login(self, ALICE, ALICE_PW), 'a OK')
        t = make_ticket(KEY, ALICE, '127.0.0.1', int(time.time()) + 20)
        self.assertStarts(AuthHttp.imap_login(self, ALICE, t), 'a NO')
        # the password went to nginx, as asked: not a leak of the log
        self.server.secrets.discard(ALICE_PW)
        self.assertNotIn(ALICE_PW, self.server.log())

    def raw_request(self, data, source=None):
        return AuthHttp.raw_request(self, data, source)

    def assertStarts(self, reply, prefix):
        return AuthHttp.assertStarts(self, reply, prefix)


def nginx_missing():
    if nginx_util.missing():
        return nginx_util.missing()
    if os.geteuid() != 0:
        return 'nginx and coffred with run_user need root'
    return ''


@unittest.skipIf(nginx_missing(), nginx_missing())
class RealNginx(ServerTestCase):
    """A real nginx mail proxy (libnginx-mod-mail) in front of one
    coffred: IMAPS and POP3S logins through it are routed by auth_http,
    reach coffred's plaintext listeners with a PROXY header and a ticket,
    and coffred sees the client's own address."""
    CONF = {
        'http_listen': '%s:%d' % (HOST, HTTP_PORT),
        'proxy_networks': '127.0.0.1/32',
        'ticket_key_file': KEY_FILE,
    }

    @classmethod
    def setUpServer(cls):
        srv = cls.server
        srv.add_user(ALICE, ALICE_PW)
        add_slot(srv, 's1')
        rc, out, err = srv.ctl('user', 'set-slot', ALICE, 's1')
        assert rc == 0, out + err
        cls.nginx = nginx_util.MailProxy(srv.tmp, srv.cert, srv.key,
                                         '%s:%d/auth' % (HOST, HTTP_PORT)).start()

    @classmethod
    def nginx_log(cls):
        return cls.nginx.log()[-3000:]

    @classmethod
    def tearDownClass(cls):
        cls.nginx.stop()
        super().tearDownClass()

    def connect(self, service, source):
        return self.nginx.connect(service, source)

    def test_imaps_through_nginx(self):
        with self.connect('imaps', '127.0.0.3') as c:
            self.assertTrue(c.line().startswith('* OK'))
            _, t = c.cmd('a', harness.imap_login_cmd(ALICE, ALICE_PW))
            self.assertTrue(t.startswith('a OK'), '%s\n%s' % (t, self.nginx_log()))
            _, t = c.cmd('b', 'SELECT INBOX')
            self.assertTrue(t.startswith('b OK'), t)
            c.cmd('c', 'LOGOUT')
        log = self.server.log()
        # routed with a ticket made for the client's own address, which
        # coffred learnt from nginx's PROXY header
        self.assertIn('auth_http user=%s client=127.0.0.3 proto=imap slot=s1' % ALICE, log)
        self.assertRegex(log, r'remote=127\.0\.0\.3:\d+ via=127\.0\.0\.1')
        self.assertIn('imap login user=%s' % ALICE, log)

    def test_pop3s_through_nginx(self):
        with self.connect('pop3s', '127.0.0.3') as c:
            self.assertTrue(c.line().startswith('+OK'))
            c.send('USER %s\r\n' % ALICE)
            self.assertTrue(c.line().startswith('+OK'))
            c.send('PASS %s\r\n' % ALICE_PW)
            r = c.line()
            self.assertTrue(r.startswith('+OK'), '%s\n%s' % (r, self.nginx_log()))
            c.send('STAT\r\n')
            self.assertTrue(c.line().startswith('+OK'))
            c.send('QUIT\r\n')

    def test_wrong_password_through_nginx(self):
        with self.connect('imaps', '127.0.0.4') as c:
            self.assertTrue(c.line().startswith('* OK'))
            _, t = c.cmd('a', harness.imap_login_cmd(ALICE, 'not the password'))
            self.assertEqual(t, 'a NO Invalid login or password')
            # nginx keeps the session after Auth-Wait: the right one works
            _, t = c.cmd('b', harness.imap_login_cmd(ALICE, ALICE_PW))
            self.assertTrue(t.startswith('b OK'), t)
        self.assertIn('auth failed user=%s ip=127.0.0.4' % ALICE, self.server.log())



if __name__ == '__main__':
    harness.main()
