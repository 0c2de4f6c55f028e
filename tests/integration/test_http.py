"""The HTTP listener (protocol/http): GET /health (and 503 with the reason
when the data directory cannot be written), GET /metrics read by
prometheus_client's OpenMetrics parser, Thunderbird's autoconfig checked
field by field against the config-v1.1 format, Outlook's POX autodiscover,
the TLS listener with the mail certificate, and bad requests (huge and
slow heads, pipelining, HTTP/0.9, absolute-form, long targets, garbage,
large bodies) each answered with its status while IMAPS logins and SELECT
keep working."""
import email.utils
import imaplib
import os
import select
import socket
import ssl
import sys
import time
import xml.etree.ElementTree as ET

import harness
from harness import HOST, ServerTestCase

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    # Debian's python3-prometheus-client, when the python3 on PATH is another
    sys.path.append('/usr/lib/python3/dist-packages')
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

USER, PASS = 'alice@example.org', 'http-test-pass-1'
HTTP_PORT = harness.free_port()
HTTPS_PORT = harness.free_port()
while HTTPS_PORT == HTTP_PORT:
    HTTPS_PORT = harness.free_port()
AD_REQ_NS = 'http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006'
AD_NS = 'http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006'
AD_OUTLOOK_NS = 'http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a'
OPENMETRICS = 'application/openmetrics-text; version=1.0.0; charset=utf-8'


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None


def read_response(conn, head=False):
    """One response from a harness Conn, framed by its Content-Length; None
    when the server closed before a status line."""
    line = conn.readline()
    if not line:
        return None
    parts = line.decode('latin-1').rstrip('\r\n').split(' ', 2)
    assert parts[0] == 'HTTP/1.1', line
    headers = []
    while True:
        h = conn.readline()
        if h in (b'\r\n', b''):
            break
        k, v = h.decode('latin-1').rstrip('\r\n').split(':', 1)
        headers.append((k, v.strip()))
    r = Response(int(parts[1]), headers, b'')
    n = int(r.header('Content-Length'))
    if not head:
        while len(conn.buf) < n:
            if not conn._fill():
                break
        r.body, conn.buf = conn.buf[:n], conn.buf[n:]
    return r


def get(path, host='example.org', extra=''):
    return ('GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n' % (path, host, extra)).encode()


def ad_request(address, schema=AD_OUTLOOK_NS):
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<Autodiscover xmlns="%s">\n  <Request>\n'
            '    <EMailAddress>%s</EMailAddress>\n'
            '    <AcceptableResponseSchema>%s</AcceptableResponseSchema>\n'
            '  </Request>\n</Autodiscover>\n' % (AD_REQ_NS, address, schema)).encode()


class Http(ServerTestCase):
    CONF = {
        'http_listen': '%s:%d' % (HOST, HTTP_PORT),
        'http_tls_listen': '%s:%d' % (HOST, HTTPS_PORT),
        'http_header_timeout': '1s',
        'http_health_interval': '100ms',
        'autoconfig_hostname': 'mail.example.org',
        'autoconfig_domains': 'example.org, example.net',
        'autoconfig_smtp_hostname': 'smtp.example.org',
        'autoconfig_smtp_port': '4650',
    }

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(USER, PASS)

    # -- clients --------------------------------------------------------

    def http(self, tls=False):
        port = HTTPS_PORT if tls else HTTP_PORT
        sock = socket.create_connection((HOST, port), timeout=harness.IO_TIMEOUT)
        if tls:
            sock = self.server.ctx().wrap_socket(sock, server_hostname='localhost')
        return harness.Conn(sock)

    def request(self, data, tls=False, head=False):
        """Sends data on a new connection; returns the response."""
        with self.http(tls) as c:
            c.send(data)
            r = read_response(c, head)
            self.assertIsNotNone(r, 'no response to %r' % data[:80])
            self.check_common(r)
            return r

    def check_common(self, r):
        """Every answer: Date (an IMF-fixdate), Content-Length, no Server."""
        date = r.header('Date')
        self.assertIsNotNone(date)
        self.assertTrue(date.endswith(' GMT'), date)
        self.assertIsNotNone(email.utils.parsedate_to_datetime(date))
        self.assertIsNotNone(r.header('Content-Length'))
        self.assertIsNone(r.header('Server'))

    def refused(self, data, status, tls=False):
        """data is answered status, then the connection closes."""
        with self.http(tls) as c:
            harness.send_ignoring_close(c, data)
            r = read_response(c)
            self.assertIsNotNone(r, 'no response to %r' % data[:80])
            self.assertEqual(r.status, status, r.body)
            self.check_common(r)
            self.assertEqual(r.header('Connection'), 'close')
            self.assertEqual(harness.read_to_close(c, harness.IO_TIMEOUT), b'')
        return r

    def mail_works(self):
        """An IMAPS login and a SELECT over a real TLS connection."""
        m = self.server.imap_ssl()
        try:
            self.assertEqual(m.login(USER, PASS)[0], 'OK')
            typ, data = m.select('INBOX')
            self.assertEqual(typ, 'OK', data)
            m.logout()
        finally:
            harness.close_quietly(m)

    # -- /health --------------------------------------------------------

    def health(self):
        r = self.request(get('/health'))
        return r.status, r.body.decode()

    def wait_health(self, status):
        """Asks until /health answers status (each probe is reused for
        http_health_interval); returns the body."""
        deadline = time.monotonic() + harness.IO_TIMEOUT
        while True:
            got, body = self.health()
            if got == status or time.monotonic() > deadline:
                self.assertEqual(got, status, body)
                return body
            time.sleep(0.05)

    def test_health(self):
        self.assertEqual(self.health(), (200, 'ok\n'))
        data = self.server.data_dir
        mode = os.stat(data).st_mode & 0o7777
        os.chmod(data, 0o500)   # coffred runs as nobody: no file can be made there
        try:
            body = self.wait_health(503)
            self.assertIn('data directory %s' % data, body)
            self.assertIn('cannot create a file', body)
            self.assertIn('Permission denied', body)
        finally:
            os.chmod(data, mode)
        self.assertEqual(self.wait_health(200), 'ok\n')
        self.assertFalse(os.path.exists(os.path.join(data, '.health-probe')))
        r = self.request(get('/health').replace(b'GET', b'HEAD'), head=True)
        self.assertEqual((r.status, r.header('Content-Length'), r.body), (200, '3', b''))
        self.mail_works()

    # -- /metrics -------------------------------------------------------

    def test_metrics(self):
        r = self.request(get('/metrics'))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header('Content-Type'), OPENMETRICS)
        text = r.body.decode()
        self.assertTrue(text.endswith('# EOF\n'))
        families = {f.name: f for f in text_string_to_metric_families(text)}
        rss = families['process_resident_memory_bytes']
        self.assertEqual(rss.type, 'gauge')
        self.assertGreater(rss.samples[0].value, 0)
        self.assertEqual(self.request(get('/metrics', extra='Content-Length: 0\r\n').replace(
            b'GET', b'POST')).status, 405)

    # -- autoconfig -----------------------------------------------------

    def check_autoconfig(self, body, domain):
        root = ET.fromstring(body)
        self.assertEqual(root.tag, 'clientConfig')
        self.assertEqual(root.attrib, {'version': '1.1'})
        providers = list(root)
        self.assertEqual([p.tag for p in providers], ['emailProvider'])
        p = providers[0]
        self.assertEqual(p.attrib, {'id': domain})
        self.assertEqual([d.text for d in p.findall('domain')], [domain])
        self.assertEqual(p.find('displayName').text, domain)
        allowed = {'domain', 'displayName', 'displayShortName', 'incomingServer',
                   'outgoingServer', 'documentation'}
        self.assertLessEqual({e.tag for e in p}, allowed)
        servers = p.findall('incomingServer')
        self.assertEqual(sorted(s.get('type') for s in servers), ['imap', 'pop3'])
        want_port = {'imap': self.server.ports['imaps'], 'pop3': self.server.ports['pop3s']}
        for s in servers:
            fields = {e.tag: e.text for e in s}
            self.assertEqual(set(fields), {'hostname', 'port', 'socketType', 'authentication',
                                           'username'})
            self.assertEqual(fields['hostname'], 'mail.example.org')
            self.assertEqual(int(fields['port']), want_port[s.get('type')])
            self.assertNotIn(int(fields['port']), (self.server.ports['imap'],
                                                   self.server.ports['pop3']))
            self.assertEqual(fields['socketType'], 'SSL')   # never plain or STARTTLS
            self.assertEqual(fields['authentication'], 'password-cleartext')
            self.assertEqual(fields['username'], '%EMAILADDRESS%')
        # Thunderbird wants an outgoing server: the MTA's, over implicit TLS
        out = p.findall('outgoingServer')
        self.assertEqual([o.get('type') for o in out], ['smtp'])
        self.assertEqual({e.tag: e.text for e in out[0]}, {
            'hostname': 'smtp.example.org', 'port': '4650', 'socketType': 'SSL',
            'authentication': 'password-cleartext', 'username': '%EMAILADDRESS%'})

    def test_autoconfig(self):
        for path in ('/.well-known/autoconfig/mail/config-v1.1.xml',
                     '/mail/config-v1.1.xml'):
            r = self.request(get(path + '?emailaddress=' + 'bob%2Bx%40Example.ORG'))
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.header('Content-Type'), 'application/xml; charset=utf-8')
            self.check_autoconfig(r.body, 'example.org')
        # no address: the domain of the name asked (autoconfig.DOMAIN)
        r = self.request(get('/mail/config-v1.1.xml', host='autoconfig.example.net'))
        self.check_autoconfig(r.body, 'example.net')
        # over TLS, with the mail certificate
        r = self.request(get('/mail/config-v1.1.xml?emailaddress=a@example.org'), tls=True)
        self.check_autoconfig(r.body, 'example.org')
        # a domain not served, a malformed address
        self.assertEqual(self.request(get('/mail/config-v1.1.xml?emailaddress=a@other.test'))
                         .status, 404)
        for bad in ('a%3Cb%3E@example.org', 'no-at-sign', 'a@exa_mple.org', 'a@example.org%00',
                    'a@' + 'x' * 300 + '.org', '%zz'):
            r = self.refused(get('/mail/config-v1.1.xml?emailaddress=' + bad), 400)
            self.assertNotIn(b'<', r.body)
        self.mail_works()

    # -- autodiscover ---------------------------------------------------

    def autodiscover(self, body, tls=False, path='/autodiscover/autodiscover.xml'):
        head = ('POST %s HTTP/1.1\r\nHost: autodiscover.example.org\r\n'
                'Content-Type: text/xml\r\nContent-Length: %d\r\n\r\n' % (path, len(body)))
        return self.request(head.encode() + body, tls=tls)

    def test_autodiscover(self):
        addr = 'o&brien@example.org'      # '&' is a character of addresses: escaped
        r = self.autodiscover(ad_request(addr.replace('&', '&amp;')))
        self.assertEqual(r.status, 200, r.body)
        root = ET.fromstring(r.body)
        self.assertEqual(root.tag, '{%s}Autodiscover' % AD_NS)
        resp = root.find('{%s}Response' % AD_OUTLOOK_NS)
        acct = resp.find('{%s}Account' % AD_OUTLOOK_NS)
        q = lambda e, n: e.find('{%s}%s' % (AD_OUTLOOK_NS, n)).text
        self.assertEqual(q(acct, 'AccountType'), 'email')
        self.assertEqual(q(acct, 'Action'), 'settings')
        protos = acct.findall('{%s}Protocol' % AD_OUTLOOK_NS)
        self.assertEqual([q(p, 'Type') for p in protos], ['IMAP', 'POP3', 'SMTP'])
        ports = {'IMAP': self.server.ports['imaps'], 'POP3': self.server.ports['pop3s'],
                 'SMTP': 4650}
        for p in protos:
            self.assertEqual(q(p, 'Server'), 'smtp.example.org' if q(p, 'Type') == 'SMTP'
                             else 'mail.example.org')
            self.assertEqual(int(q(p, 'Port')), ports[q(p, 'Type')])
            self.assertEqual(q(p, 'SSL'), 'on')
            self.assertEqual(q(p, 'LoginName'), addr)
        # over TLS, the path in Outlook's capitals
        r = self.autodiscover(ad_request(USER), tls=True,
                              path='/Autodiscover/Autodiscover.xml')
        self.assertEqual(r.status, 200)
        # another response schema: the error Autodiscover gives for it
        r = self.autodiscover(ad_request(USER, schema='http://example.test/other'))
        err = ET.fromstring(r.body).find('{%s}Response/{%s}Error' % (AD_NS, AD_NS))
        self.assertEqual(err.find('{%s}ErrorCode' % AD_NS).text, '601')
        # not an address served
        r = self.autodiscover(ad_request('x@other.test'))
        err = ET.fromstring(r.body).find('{%s}Response/{%s}Error' % (AD_NS, AD_NS))
        self.assertEqual(err.find('{%s}ErrorCode' % AD_NS).text, '603')
        # XML it must not read: entities, DTD, two roots, unclosed, another root
        bombs = [
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><Autodiscover/>',
            ad_request(USER) + b'<Autodiscover/>',
            ad_request(USER)[:-20],
            ad_request(USER).replace(b'Autodiscover', b'Other'),
            ad_request('&unknown;'),
            b'<Autodiscover' + b'<a>' * 50 + b'>',
            b'<Autodiscover>' + b'<a>' * 20 + b'</a>' * 20 + b'</Autodiscover>',
        ]
        for b in bombs:
            self.assertEqual(self.autodiscover(b).status, 400, b)
        self.assertEqual(self.request(get('/autodiscover/autodiscover.xml')).status, 405)
        self.mail_works()

    def test_body_in_later_reads(self):
        # the head first, then a body large enough to make the input buffer
        # grow, a piece at a time: the answer still reads the head right
        body = ad_request(USER).replace(b'<Request>', b'<Request>' + b' ' * 12000)
        with self.http() as c:
            c.send(b'POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n'
                   b'Content-Length: %d\r\n\r\n' % len(body))
            for i in range(0, len(body), 3000):
                c.send(body[i:i + 3000])
                time.sleep(0.05)    # separate reads, not a timing check
            r = read_response(c)
            self.assertEqual(r.status, 200, r.body)
            self.assertIn(b'<LoginName>%s</LoginName>' % USER.encode(), r.body)

    def test_expect_continue(self):
        # .NET clients (Outlook) send Expect: 100-continue and wait for it
        body = ad_request(USER)
        with self.http() as c:
            c.send(b'POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n'
                   b'Expect: 100-continue\r\nContent-Length: %d\r\n\r\n' % len(body))
            self.assertEqual(c.readline(), b'HTTP/1.1 100 Continue\r\n')
            self.assertEqual(c.readline(), b'\r\n')
            c.send(body)
            r = read_response(c)
            self.assertEqual(r.status, 200)
            self.check_common(r)
        self.refused(get('/health', extra='Expect: tea\r\n'), 417)

    # -- the TLS listener -----------------------------------------------

    def test_tls_listener_uses_the_mail_certificate(self):
        with self.http(tls=True) as h, self.server.raw('imaps', tls=True) as m:
            self.assertEqual(h.sock.getpeercert(binary_form=True),
                             m.sock.getpeercert(binary_form=True))
            h.send(get('/mail/config-v1.1.xml?emailaddress=a@example.org'))
            self.assertEqual(read_response(h).status, 200)
            # the server's figures are not for the Internet
            for path in ('/metrics', '/health'):
                h.send(get(path))
                r = read_response(h)
                self.check_common(r)
                self.assertEqual(r.status, 404)

    # -- the parser and the connection ----------------------------------

    def test_keep_alive_and_close(self):
        with self.http() as c:
            for _ in range(3):
                c.send(get('/health'))
                r = read_response(c)
                self.assertEqual(r.status, 200)
                self.assertIsNone(r.header('Connection'))
            c.send(get('/health', extra='Connection: close\r\n'))
            r = read_response(c)
            self.assertEqual((r.status, r.header('Connection')), (200, 'close'))
            self.assertEqual(harness.read_to_close(c, harness.IO_TIMEOUT), b'')
        # HTTP/1.0: closed after the answer
        with self.http() as c:
            c.send(b'GET /health HTTP/1.0\r\n\r\n')
            self.assertEqual(read_response(c).header('Connection'), 'close')
            self.assertEqual(harness.read_to_close(c, harness.IO_TIMEOUT), b'')

    def test_pipelining_answers_in_order(self):
        paths = ['/health', '/nope', '/metrics', '/mail/config-v1.1.xml?emailaddress=a@example.org',
                 '/health', '/autodiscover/autodiscover.xml']
        want = [200, 404, 200, 200, 200, 405]
        with self.http() as c:
            c.send(b''.join(get(p) for p in paths))
            got = []
            for p in paths:
                r = read_response(c)
                self.check_common(r)
                got.append((r.status, r.header('Content-Type')))
            self.assertEqual([g[0] for g in got], want)
            self.assertEqual(got[2][1], OPENMETRICS)
            self.assertEqual(got[3][1], 'application/xml; charset=utf-8')
            c.send(get('/health'))      # the connection is still good
            self.assertEqual(read_response(c).status, 200)

    def test_pipelining_is_bounded(self):
        n = 40
        with self.http() as c:
            c.send(get('/health') * n)
            answers = []
            while True:
                r = read_response(c)
                if r is None:
                    break
                answers.append(r)
        self.assertEqual(len(answers), 16)       # http_max_pipeline
        self.assertEqual(answers[-1].header('Connection'), 'close')
        self.assertTrue(all(a.status == 200 for a in answers))
        self.mail_works()

    def test_http09_and_versions(self):
        self.refused(b'GET /health\r\n', 400)
        self.refused(b'GET /health HTTP/2.0\r\nHost: x\r\n\r\n', 505)
        self.refused(b'GET /health HTTP/1.1x\r\nHost: x\r\n\r\n', 400)
        self.refused(b'GET /health HTTP/1.1\r\n\r\n', 400)          # no Host
        self.refused(get('/health', extra='Host: y\r\n'), 400)       # two
        self.mail_works()

    def test_absolute_form(self):
        # RFC 9112 3.2.2: the authority of the target is the host, not Host
        r = self.request(b'GET http://autoconfig.example.net/mail/config-v1.1.xml HTTP/1.1\r\n'
                         b'Host: autoconfig.example.org\r\n\r\n')
        self.assertEqual(r.status, 200)
        self.check_autoconfig(r.body, 'example.net')
        r = self.request(b'GET HTTPS://localhost:1/health HTTP/1.1\r\nHost: x\r\n\r\n')
        self.assertEqual(r.status, 200)
        self.refused(b'GET http://user@localhost/health HTTP/1.1\r\nHost: x\r\n\r\n', 400)
        self.refused(b'GET * HTTP/1.1\r\nHost: x\r\n\r\n', 400)
        self.refused(b'GET localhost:80 HTTP/1.1\r\nHost: x\r\n\r\n', 400)

    def test_long_target_and_big_heads(self):
        self.refused(get('/' + 'a' * 10000), 414)
        # over the limit before the line ends: answered at once
        self.refused(b'GET /' + b'a' * 10000, 414)
        self.refused(get('/health', extra='X-Big: %s\r\n' % ('b' * 20000)), 431)
        self.refused(get('/health', extra=''.join('X-%d: y\r\n' % i for i in range(100))), 431)
        self.refused(b'G' * 9000, 501)       # a method longer than a request line
        self.mail_works()

    def test_methods(self):
        r = self.refused(get('/health').replace(b'GET', b'PUT'), 405)
        self.assertEqual(r.header('Allow'), 'GET, HEAD, POST')
        self.refused(get('/health').replace(b'GET', b'BREW'), 501)
        self.refused(b'POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n\r\n', 411)
        self.refused(b'POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n'
                     b'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 411)
        self.refused(b'POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n'
                     b'Transfer-Encoding: gzip\r\n\r\n', 501)

    def test_garbage(self):
        for g in (b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03' + bytes(range(200)) + b'\r\n\r\n',
                  b'\x00\x01\x02\r\n\r\n',
                  b'GET /health HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n',
                  b'GET /health HTTP/1.1\r\nHost : x\r\n\r\n',
                  b'GET /health HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n',
                  b'GET /he\x7fa HTTP/1.1\r\nHost: x\r\n\r\n',
                  b'GET  /health HTTP/1.1\r\nHost: x\r\n\r\n',
                  b'GET /health HTTP/1.1\rHost: x\r\n\r\n',
                  b'GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\n'):
            self.refused(g, 400)
        self.mail_works()

    def test_body_too_large(self):
        body = b'x' * 20000     # http_max_body: 16k
        self.refused(b'POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n'
                     b'Content-Length: %d\r\n\r\n' % len(body) + body, 413)
        self.refused(b'POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n'
                     b'Content-Length: 99999999999\r\n\r\n', 413)
        self.mail_works()

    def test_slow_head_and_body(self):
        # a byte every 50 ms for up to 10 s does not extend
        # http_header_timeout (1 s here): the 408 comes while bytes still
        # come; meanwhile the mail service answers
        with self.http() as c:
            c.send(b'GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ')
            self.mail_works()
            answered = False
            for _ in range(200):
                if select.select([c.sock], [], [], 0.05)[0]:
                    answered = True
                    break
                if not harness.send_ignoring_close(c, b'X'):
                    break
            self.assertTrue(answered, 'no answer while the head kept coming')
            r = read_response(c)
            self.assertEqual((r.status, r.header('Connection')), (408, 'close'))
            self.check_common(r)
        # a body that does not come
        with self.http() as c:
            c.send(b'POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n'
                   b'Content-Length: 100\r\n\r\nabc')
            r = read_response(c)
            self.assertEqual(r.status, 408)
            self.assertEqual(harness.read_to_close(c, harness.IO_TIMEOUT), b'')
        self.mail_works()

    def test_idle_connection_does_not_stop_mail(self):
        # connections that say nothing, and a head left half-way over TLS
        idle = [self.http() for _ in range(5)]
        try:
            with self.http(tls=True) as t:
                t.send(b'GET /health HTTP/1.1\r\n')
                self.mail_works()
                r = read_response(t)
                self.assertEqual(r.status, 408)
        finally:
            for c in idle:
                c.close()
        self.mail_works()


LIMITS_PORT = harness.free_port()


class HttpLimits(ServerTestCase):
    """The idle timeout between requests, and the per-address connection
    limit of the connection layer, on the HTTP listener."""
    CONF = {
        'http_listen': '%s:%d' % (HOST, LIMITS_PORT),
        'http_idle_timeout': '300ms',
        'max_connections_per_ip': '3',
    }

    def http(self, source=None):
        sock = socket.create_connection((HOST, LIMITS_PORT), timeout=harness.IO_TIMEOUT,
                                        source_address=(source, 0) if source else None)
        return harness.Conn(sock)

    def test_idle_connection_closed_without_an_answer(self):
        with self.http() as c:
            c.send(get('/health'))
            self.assertEqual(read_response(c).status, 200)
            # nothing more asked: closed, with no 408 (no request was begun)
            self.assertEqual(harness.read_to_close(c, harness.IO_TIMEOUT), b'')
        with self.http() as c:
            c.send(b'\r\n\r\n')      # empty lines before a request are no request
            self.assertEqual(harness.read_to_close(c, harness.IO_TIMEOUT), b'')

    def test_connections_per_address(self):
        held = [self.http('127.0.0.5') for _ in range(3)]
        try:
            # each in the middle of a head (http_header_timeout: 10 s), not idle
            for c in held:
                c.send(b'GET /health HTTP/1.1\r\n')
            # the fourth from the same address is closed unanswered
            with self.http('127.0.0.5') as c:
                harness.send_ignoring_close(c, get('/health'))
                self.assertEqual(harness.read_to_close(c, harness.IO_TIMEOUT), b'')
            # another address is served
            with self.http('127.0.0.6') as c:
                c.send(get('/health'))
                self.assertEqual(read_response(c).status, 200)
        finally:
            for c in held:
                c.close()


if __name__ == '__main__':
    harness.main()
