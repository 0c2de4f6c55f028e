"""The PROXY protocol (v1 and v2) from proxy_networks, refused from
elsewhere: the carried client address in the log, `coffrectl who`, the
login throttle and the per-address connection limit; plaintext logins from
the proxy's network only; IMAPS with a v2 header before the ClientHello;
POP3 and LMTP with v1; malformed and forged headers closed.

127.0.0.1 plays the proxy (proxy_networks = 127.0.0.1/32); 127.0.0.2, also
local on Linux, plays a client elsewhere. The carried addresses are
documentation addresses (RFC 5737, RFC 3849) that no socket here has."""
import ipaddress
import select
import socket
import struct
import time

import harness
import lmtp_util
from harness import (HOST, Conn, ServerTestCase, imap_greeting_caps, imap_login_cmd,
                     read_to_close, send_ignoring_close, wait_for)

PASS = 'proxied password 1'
PROXY = '127.0.0.1'
ELSEWHERE = '127.0.0.2'
SIG2 = b'\r\n\r\n\x00\r\nQUIT\n'


def v1(src, sport, dst=HOST, dport=143):
    fam = 'TCP6' if ':' in src else 'TCP4'
    return ('PROXY %s %s %s %d %d\r\n' % (fam, src, dst, sport, dport)).encode()


def v2(src, sport, dst, dport, command=1, tlvs=b''):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 0x11 if s.version == 4 else 0x21
    body = s.packed + d.packed + struct.pack('!HH', sport, dport) + tlvs
    return SIG2 + bytes([0x20 | command, fam]) + struct.pack('!H', len(body)) + body


def who(server):
    """`coffrectl who` rows keyed by the ADDRESS column."""
    rc, out, err = server.ctl('who')
    if rc != 0:
        raise AssertionError('coffrectl who: %s' % err)
    rows = {}
    for l in out.splitlines()[1:]:
        f = l.split('\t')
        rows[f[3]] = {'user': f[1], 'proto': f[2], 'state': f[6]}
    return rows


def silent(conn):
    """Nothing has arrived on the connection (neither bytes nor the close)."""
    if conn.buf:
        return False
    r, _, _ = select.select([conn.sock], [], [], 0)
    return not r and (not hasattr(conn.sock, 'pending') or conn.sock.pending() == 0)


class ProxyTestCase(ServerTestCase):
    CONF = {'proxy_networks': '%s/32' % PROXY}

    def connect(self, service, header=b'', source=PROXY, tls=False):
        """A Conn to service from source that sent header first (before the
        handshake when tls)."""
        sock = socket.create_connection((HOST, self.server.ports[service]),
                                        timeout=harness.IO_TIMEOUT,
                                        source_address=(source, 0))
        if header:
            sock.sendall(header)
        if tls:
            sock = self.server.ctx().wrap_socket(sock, server_hostname='localhost')
        return Conn(sock)

    def imap_login(self, c, user, tag='l'):
        _, t = c.cmd(tag, imap_login_cmd(user, PASS))
        return t


class Proxied(ProxyTestCase):

    @classmethod
    def setUpServer(cls):
        for u in ('p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7'):
            cls.server.add_user(u + '@example.org', PASS)

    def test_v1_imap_plaintext_login_carries_the_address(self):
        with self.connect('imap', v1('192.0.2.10', 40001)) as c:
            g, caps = imap_greeting_caps(c)
            self.assertTrue(g.startswith('* OK'), g)
            # the proxy's hop: plaintext login allowed, no STARTTLS needed
            self.assertNotIn('LOGINDISABLED', caps)
            self.assertTrue(self.imap_login(c, 'p1@example.org').startswith('l OK'))
            rows = who(self.server)
            self.assertIn('192.0.2.10:40001', rows)
            self.assertEqual(rows['192.0.2.10:40001']['user'], 'p1@example.org')
            self.assertFalse(any(a.startswith(PROXY + ':') for a in rows), rows)
        self.assertIn('remote=192.0.2.10:40001 via=%s:' % PROXY, self.server.log())
        # the close line and the audit trail's logout, once coffred saw the close
        self.assertTrue(wait_for(lambda: 'remote=192.0.2.10:40001 user=p1@example.org closed'
                                 in self.server.log(), 10))
        self.assertIn('event=logout proto=imap service=imap', self.server.log())

    def test_header_in_pieces_holds_the_greeting(self):
        hdr = v1('192.0.2.11', 40011)
        with self.connect('imap', hdr[:9]) as c:
            # a header begun is waited for past proxy_header_wait (200 ms):
            # no greeting as a direct client meanwhile
            time.sleep(0.6)
            self.assertTrue(silent(c), c.buf)
            c.send(hdr[9:])
            g, caps = imap_greeting_caps(c)
            self.assertTrue(g.startswith('* OK'), g)
            self.assertNotIn('LOGINDISABLED', caps)
            self.assertTrue(self.imap_login(c, 'p3@example.org').startswith('l OK'))
            self.assertIn('192.0.2.11:40011', who(self.server))

    def test_v2_imaps_header_before_client_hello(self):
        hdr = v2('2001:db8::7', 5555, '2001:db8::1', 993, tlvs=b'\x04\x00\x03abc')
        with self.connect('imaps', hdr, tls=True) as c:
            g = c.line()
            self.assertTrue(g.startswith('* OK'), g)
            self.assertTrue(self.imap_login(c, 'p2@example.org').startswith('l OK'))
            rows = who(self.server)
            self.assertIn('[2001:db8::7]:5555', rows)
            self.assertEqual(rows['[2001:db8::7]:5555']['proto'], 'imaps')
        self.assertIn('remote=[2001:db8::7]:5555 via=%s:' % PROXY, self.server.log())

    def test_v2_local_keeps_the_proxy_address(self):
        hdr = SIG2 + b'\x20\x00\x00\x00'
        with self.connect('imap', hdr) as c:
            self.assertTrue(c.line().startswith('* OK'))
            self.assertTrue(self.imap_login(c, 'p3@example.org').startswith('l OK'))
            port = c.sock.getsockname()[1]
            self.assertIn('%s:%d' % (PROXY, port), who(self.server))

    def test_no_header_from_the_proxy_network_still_served(self):
        # a direct client on the proxy's network waits for the greeting,
        # which comes after proxy_header_wait
        with self.connect('imap') as c:
            g, caps = imap_greeting_caps(c)
            self.assertTrue(g.startswith('* OK'), g)
            self.assertNotIn('LOGINDISABLED', caps)
            self.assertTrue(self.imap_login(c, 'p4@example.org').startswith('l OK'))
        with self.connect('pop3') as c:
            self.assertTrue(c.line().startswith('+OK'))
            c.send('USER p4@example.org\r\n')
            self.assertTrue(c.line().startswith('+OK'))
            c.send('PASS %s\r\n' % PASS)
            self.assertTrue(c.line().startswith('+OK'))
        # and on the implicit-TLS port, the handshake at once
        with self.connect('imaps', tls=True) as c:
            self.assertTrue(c.line().startswith('* OK'))

    def test_plaintext_refused_elsewhere(self):
        with self.connect('imap', source=ELSEWHERE) as c:
            g, caps = imap_greeting_caps(c)
            self.assertIn('LOGINDISABLED', caps)
            self.assertTrue(self.imap_login(c, 'p5@example.org').startswith('l NO'))
        with self.connect('pop3', source=ELSEWHERE) as c:
            self.assertTrue(c.line().startswith('+OK'))
            c.send('USER p5@example.org\r\n')
            self.assertTrue(c.line().startswith('-ERR'))

    def test_forged_header_from_elsewhere_refused(self):
        forged = '203.0.113.99'
        with self.connect('imap', source=ELSEWHERE) as c:
            self.assertTrue(c.line().startswith('* OK'))
            c.send(v1(forged, 1111))
            self.assertTrue(c.line().startswith('* BYE PROXY header refused'))
            self.assertEqual(read_to_close(c, harness.IO_TIMEOUT), b'')
        with self.connect('pop3', source=ELSEWHERE) as c:
            self.assertTrue(c.line().startswith('+OK'))
            c.send(v2(forged, 2222, HOST, 110))
            self.assertTrue(c.line().startswith('-ERR PROXY header refused'))
        with self.connect('lmtp', source=ELSEWHERE) as c:
            self.assertTrue(c.line().startswith('220'))
            c.send(v1(forged, 3333))
            self.assertTrue(c.line().startswith('421 4.7.0'))
        # implicit TLS: closed before any handshake
        with self.connect('imaps', v2(forged, 4444, HOST, 993), source=ELSEWHERE) as c:
            self.assertEqual(read_to_close(c, harness.IO_TIMEOUT), b'')
        log = self.server.log()
        self.assertGreaterEqual(
            log.count('remote=%s:' % ELSEWHERE), 4)
        self.assertEqual(log.count('refused: PROXY header from outside proxy_networks'), 4)
        self.assertNotIn(forged, log)
        self.assertNotIn(forged, ''.join(who(self.server)))

    def test_pop3_v1(self):
        with self.connect('pop3', v1('192.0.2.20', 40020, dport=110)) as c:
            self.assertTrue(c.line().startswith('+OK'))
            c.send('USER p6@example.org\r\n')
            self.assertTrue(c.line().startswith('+OK'))
            c.send('PASS %s\r\n' % PASS)
            self.assertTrue(c.line().startswith('+OK'))
            self.assertEqual(who(self.server)['192.0.2.20:40020']['proto'], 'pop3')
        self.assertIn('service=pop3 remote=192.0.2.20:40020 via=', self.server.log())

    def test_lmtp_v1(self):
        with self.connect('lmtp', v1('192.0.2.30', 40030, dport=24)) as c:
            self.assertEqual(lmtp_util.reply(c)[0], 220)
            for line, want in (('LHLO mx.example.org', 250), ('MAIL FROM:<a@example.net>', 250),
                               ('RCPT TO:<p7@example.org>', 250), ('DATA', 354)):
                c.send(line + '\r\n')
                self.assertEqual(lmtp_util.reply(c)[0], want, line)
            c.send('Subject: proxied\r\n\r\nhello\r\n.\r\n')
            self.assertEqual(lmtp_util.reply(c)[0], 250)
            c.send('QUIT\r\n')
            self.assertEqual(lmtp_util.reply(c)[0], 221)
        self.assertEqual(len(lmtp_util.message_files(self.server, 'p7@example.org')), 1)
        self.assertIn('service=lmtp remote=192.0.2.30:40030 via=', self.server.log())

    def test_malformed_headers_closed(self):
        bad = [
            b'PROXY TCP4 192.0.2.256 127.0.0.1 1 143\r\n',
            b'PROXY TCP4 192.0.2.1 127.0.0.1 65536 143\r\n',
            b'PROXY TCP6 192.0.2.1 127.0.0.1 1 143\r\n',
            b'PROXY TCP4 192.0.2.1 127.0.0.1 1 143\n',
            b'PROXY UNKNOWN ' + b'x' * 120 + b'\r\n',
            SIG2 + b'\x21\x31\x00\x0c' + b'\x00' * 12,   # AF_UNIX: not taken
            SIG2 + b'\x21\x11\x00\x08' + b'\x00' * 8,    # too short for IPv4
            SIG2 + b'\x31\x11\x00\x0c' + b'\x00' * 12,   # version 3
            SIG2 + b'\x21\x11\xff\xff',                  # 64 KiB announced
        ]
        for i, h in enumerate(bad):
            service = ('imap', 'imaps', 'pop3', 'lmtp')[i % 4]
            with self.connect(service) as c:
                send_ignoring_close(c, h)
                # no greeting, no handshake: the close
                self.assertEqual(read_to_close(c, harness.IO_TIMEOUT), b'', h)
        self.assertEqual(self.server.log().count('malformed PROXY header'), len(bad))
        # still serving, through the proxy and directly
        with self.connect('imap', v1('192.0.2.40', 40040)) as c:
            self.assertTrue(c.line().startswith('* OK'))
            self.assertTrue(self.imap_login(c, 'p1@example.org').startswith('l OK'))
        self.assertServerAlive()


class ProxiedConnectionLimit(ProxyTestCase):
    """max_connections_per_ip counts a proxy's connections under the
    addresses they carry, not under the proxy's."""
    CONF = dict(ProxyTestCase.CONF, max_connections_per_ip='2')

    def greeting(self, carried):
        c = self.connect('imap', v1(carried, 50000))
        return c, c.line()

    def test_counted_under_the_carried_address(self):
        held = []
        try:
            for i in range(4):  # four clients through one proxy address
                c, g = self.greeting('192.0.2.%d' % (100 + i))
                held.append(c)
                self.assertTrue(g.startswith('* OK'), g)
            for i in range(2):
                c, g = self.greeting('192.0.2.50')
                held.append(c)
                self.assertTrue(g.startswith('* OK'), g)
            c, g = self.greeting('192.0.2.50')
            held.append(c)
            self.assertTrue(g.startswith('* BYE Too many connections'), g)
            self.assertIn('remote=192.0.2.50:50000 refused: too many connections',
                          self.server.log())
            # released under the same address when one goes
            held.pop(-2).close()

            def another():
                c, g = self.greeting('192.0.2.50')
                held.append(c)
                return g.startswith('* OK')
            self.assertTrue(wait_for(another, 10))
        finally:
            for c in held:
                c.close()


class ProxiedThrottle(ProxyTestCase):
    """The login throttle is keyed on the carried address: failures of one
    proxied client do not delay another behind the same proxy. Long delays
    so that the order of the answers is unambiguous."""
    CONF = dict(ProxyTestCase.CONF, login_failure_delay='6s', login_failure_delay_max='6s')

    @classmethod
    def setUpServer(cls):
        cls.server.add_user('ta@example.org', PASS)
        cls.server.add_user('tb@example.org', PASS)

    def test_failures_of_one_client_do_not_delay_another(self):
        a = self.connect('imap', v1('192.0.2.10', 41000))
        b = self.connect('imap', v1('198.51.100.20', 42000))
        a2 = b2 = None
        try:
            a.line()
            b.line()
            a.send('f %s\r\n' % imap_login_cmd('ghost@example.org', 'wrong'))
            self.assertTrue(wait_for(lambda: 'ip=192.0.2.10' in self.server.log(), 15))
            # A's failure is held for login_failure_delay; B, another
            # client behind the same proxy, logs in meanwhile
            _, t = b.cmd('g', imap_login_cmd('tb@example.org', PASS))
            self.assertTrue(t.startswith('g OK'), t)
            self.assertTrue(silent(a), 'A was answered before B: B waited for A')
            _, t = a.until_tag('f')
            self.assertTrue(t.startswith('f NO'), t)
            # A, on another connection, is still held back; B is not
            a2 = self.connect('imap', v1('192.0.2.10', 41001))
            b2 = self.connect('imap', v1('198.51.100.20', 42001))
            a2.line()
            b2.line()
            a2.send('h %s\r\n' % imap_login_cmd('ta@example.org', PASS))
            _, t = b2.cmd('k', imap_login_cmd('tb@example.org', PASS))
            self.assertTrue(t.startswith('k OK'), t)
            self.assertTrue(silent(a2), 'A2 was answered before B2')
            _, t = a2.until_tag('h')
            self.assertTrue(t.startswith('h OK'), t)
        finally:
            for c in (a, b, a2, b2):
                if c:
                    c.close()
        self.assertNotIn('ip=%s' % PROXY, self.server.log())


if __name__ == '__main__':
    harness.main()
