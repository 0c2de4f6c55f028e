"""Bad input: configuration errors name file and line; over-long lines,
malformed base64, huge literals, garbage handshakes and command floods get a
protocol error or a close, and the server goes on serving."""
import base64
import os
import socket
import ssl
import subprocess
import threading
import time
import unittest

import harness
from harness import (Server, ServerTestCase, HOST, imap_login_cmd, imap_sasl_answer,
                     read_to_close, send_ignoring_close)

USER = 'bad@example.org'
PASS = 'bad input pass'
MB = 1 << 20


class ConfigErrors(unittest.TestCase):
    """coffred refusing a configuration: no server is started."""

    def setUp(self):
        harness.require_binaries()
        self.srv = Server()
        self.addCleanup(self.srv.cleanup)

    def write(self, lines):
        path = os.path.join(self.srv.tmp, 'bad.conf')
        with open(path, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        return path

    def run_coffred(self, *args):
        return subprocess.run([harness.COFFRED] + list(args), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=30)

    def good_lines(self):
        return ['%s = %s' % kv for kv in self.srv.conf.items()]

    def run_with_line(self, line, mode='--foreground'):
        """Runs coffred on the good configuration with line inserted as its
        line 3; returns (the file's path, the completed process)."""
        lines = self.good_lines()
        lines.insert(2, line)
        path = self.write(lines)
        return path, self.run_coffred('-c', path, mode)

    def assertNotListening(self):
        for port in self.srv.ports.values():
            with self.assertRaises(OSError):
                socket.create_connection((HOST, port), timeout=2).close()

    def test_bad_key_names_file_and_line(self):
        path, r = self.run_with_line('no_such_key = 1')
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertIn('%s:3:' % path, r.stderr)
        self.assertNotListening()

    def test_bad_value_names_file_and_line(self):
        for bad in ('max_line_length = banana', 'login_failure_delay = 3 parsecs',
                    'imap_listen = 127.0.0.1:99999', 'max_message_size = -5'):
            path, r = self.run_with_line(bad)
            self.assertNotEqual(r.returncode, 0, bad)
            self.assertIn('%s:3:' % path, r.stderr, bad)

    def test_missing_equals_names_line(self):
        path, r = self.run_with_line('this line has no equals sign')
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('%s:3:' % path, r.stderr)

    def test_check_config(self):
        r = self.run_coffred('-c', self.srv.conf_path, '--check-config')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotListening()
        path, r = self.run_with_line('no_such_key = 1', '--check-config')
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn('%s:3:' % path, r.stderr)

    def test_missing_config_file(self):
        r = self.run_coffred('-c', os.path.join(self.srv.tmp, 'nope.conf'), '--foreground')
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('nope.conf', r.stderr)


def b64(s):
    return base64.b64encode(s.encode()).decode()


class BadInput(ServerTestCase):
    CONF = {'tls_handshake_timeout': '2s'}

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(USER, PASS)

    def still_serves(self):
        self.assertServerAlive()
        with self.server.raw('imap') as c:
            self.assertTrue(c.line().startswith('* OK'))
            _, t = c.cmd('z', 'NOOP')
            self.assertTrue(t.startswith('z OK'), t)
        with self.server.raw('pop3s', tls=True) as c:
            self.assertTrue(c.line().startswith('+OK'))

    def long_line(self, service, tls, expect_prefixes):
        with self.server.raw(service, tls=tls) as c:
            c.line()
            send_ignoring_close(c, b'a' * MB)
            # Either an error line or a close, within the timeout.
            data = read_to_close(c, 20)
            if data:
                self.assertTrue(data.startswith(expect_prefixes),
                                'after a 1 MB line %s sent %r' % (service, data[:200]))
        self.still_serves()

    def test_long_line_imap(self):
        self.long_line('imap', False, (b'* BAD', b'* BYE'))

    def test_long_line_imaps(self):
        self.long_line('imaps', True, (b'* BAD', b'* BYE'))

    def test_long_line_pop3(self):
        self.long_line('pop3', False, b'-ERR')

    def test_long_line_pop3s(self):
        self.long_line('pop3s', True, b'-ERR')

    def test_long_line_lmtp(self):
        self.long_line('lmtp', False, b'5')

    def test_long_line_in_login_after_tls(self):
        # The limit also holds in the middle of a command with arguments.
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            send_ignoring_close(c, b'a LOGIN "' + b'x' * MB)
            data = read_to_close(c, 20)
            self.assertNotIn(b'a OK', data)
        self.still_serves()

    def test_line_just_under_limit_is_a_command(self):
        # 60 kB (under the 64k default) is parsed as a line, not cut off
        # (once logged in: before, max_line_length_prelogin holds).
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            _, t = c.cmd('l', imap_login_cmd(USER, PASS))
            self.assertTrue(t.startswith('l OK'), t)
            _, t = c.cmd('a', 'NOOP ' + 'x' * 60000)
            self.assertTrue(t.startswith('a BAD') or t.startswith('a OK'), t)
            _, t = c.cmd('b', 'NOOP')
            self.assertTrue(t.startswith('b OK'), t)

    def test_line_just_under_prelogin_limit_is_a_command(self):
        # 8,000 bytes (under the 8k default of max_line_length_prelogin)
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            _, t = c.cmd('a', 'NOOP ' + 'x' * 8000)
            self.assertTrue(t.startswith('a BAD') or t.startswith('a OK'), t)
            _, t = c.cmd('b', imap_login_cmd(USER, PASS))
            self.assertTrue(t.startswith('b OK'), t)

    # An over-long line is answered as soon as it passes the limit, before
    # any CRLF (it was answered only at its end, or at the discard limit).

    def test_100kb_without_crlf_imap_before_login(self):
        with self.server.raw('imap') as c:
            c.line()
            send_ignoring_close(c, b'a LOGIN ' + b'x' * (100 << 10))
            r = c.line()
            self.assertTrue(r.startswith('* BYE [TOOBIG]'), r)
            self.assertEqual(read_to_close(c, 20), b'')
        self.still_serves()

    def test_100kb_without_crlf_imaps_after_login(self):
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            _, t = c.cmd('l', imap_login_cmd(USER, PASS))
            self.assertTrue(t.startswith('l OK'), t)
            c.send(b'a NOOP ' + b'x' * (100 << 10))
            r = c.line()
            self.assertTrue(r.startswith('* BAD [TOOBIG]'), r)
            c.send('\r\n')
            self.assertTrue(c.line().startswith('a BAD [TOOBIG]'))
            _, t = c.cmd('b', 'NOOP')
            self.assertTrue(t.startswith('b OK'), t)

    def test_long_line_without_crlf_pop3_before_login(self):
        # over pop3_max_command_length, under max_line_length_prelogin
        with self.server.raw('pop3') as c:
            c.line()
            c.send('USER ' + 'x' * 4000)
            r = c.line()
            self.assertTrue(r.startswith('-ERR'), r)
            c.send('\r\nCAPA\r\n')
            self.assertTrue(c.line().startswith('+OK'))

    def test_100kb_without_crlf_pop3_before_login(self):
        with self.server.raw('pop3') as c:
            c.line()
            send_ignoring_close(c, b'USER ' + b'x' * (100 << 10))
            self.assertTrue(c.line().startswith('-ERR'))
            self.assertNotIn(b'+OK', read_to_close(c, 20))
        self.still_serves()

    def test_100kb_without_crlf_lmtp(self):
        with self.server.raw('lmtp') as c:
            c.line()
            send_ignoring_close(c, b'LHLO ' + b'x' * (100 << 10))
            r = c.line()
            self.assertTrue(r.startswith('500 5.5.2'), r)
            self.assertEqual(read_to_close(c, 20), b'')
        self.still_serves()

    def test_malformed_base64_imap(self):
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            for i, junk in enumerate(('!!!notbase64!!!', 'AGFsaWNl=AGZvbw', 'A', '====',
                                      'AG\x01Fs')):
                _, t = c.cmd('m%d' % i, 'AUTHENTICATE PLAIN ' + junk)
                self.assertTrue(t.startswith('m%d BAD' % i), '%r -> %r' % (junk, t))
            t = imap_sasl_answer(c, 'n', 'PLAIN', '%%%% not base64 %%%%')
            self.assertTrue(t.startswith('n BAD'), t)
            t = imap_sasl_answer(c, 'o', 'LOGIN', '@@@@')
            self.assertTrue(t.startswith('o BAD'), t)
            # Still usable.
            _, t = c.cmd('p', imap_login_cmd(USER, PASS))
            self.assertTrue(t.startswith('p OK'), t)

    def test_plain_without_nuls(self):
        # Valid base64 that is not a PLAIN message: a refusal, never OK.
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            _, t = c.cmd('a', 'AUTHENTICATE PLAIN ' + b64(USER + PASS))
            self.assertTrue(t.startswith('a BAD') or t.startswith('a NO'), t)
            _, t = c.cmd('b', 'AUTHENTICATE PLAIN ' + b64('\0\0'))
            self.assertTrue(t.startswith('b BAD') or t.startswith('b NO'), t)
            _, t = c.cmd('c', 'AUTHENTICATE PLAIN ' + b64('\0%s\0%s\0extra' % (USER, PASS)))
            self.assertTrue(t.startswith('c BAD') or t.startswith('c NO'), t)

    def test_malformed_base64_pop3(self):
        with self.server.raw('pop3s', tls=True) as c:
            c.line()
            c.send('AUTH PLAIN !!!notbase64!!!\r\n')
            r = c.line()
            self.assertTrue(r.startswith('-ERR'), r)
            c.send('USER %s\r\n' % USER)
            self.assertTrue(c.line().startswith('+OK'))
            c.send('PASS %s\r\n' % PASS)
            self.assertEqual(c.line(), '+OK Logged in.')

    def first_reply(self, line):
        """The first line imaps answers line with after the greeting, '' when
        it closes instead."""
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            c.send(line)
            try:
                return c.line()
            except EOFError:
                return ''

    def test_huge_literal_refused(self):
        r = self.first_reply('a LOGIN {4000000000}\r\n')
        self.assertFalse(r.startswith('+'), 'continuation offered for a 4 GB literal')
        if r:
            self.assertTrue(r.startswith('a BAD') or r.startswith('a NO') or
                            r.startswith('* BYE'), r)
        r = self.first_reply('a LOGIN {99999999999999999999999}\r\n')
        self.assertFalse(r.startswith('+'), r)
        self.still_serves()

    def test_nul_and_binary_in_command(self):
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            c.send(b'a NOOP\x00junk\r\n')
            t = c.line()
            self.assertTrue(t.startswith('a BAD') or t.startswith('* BAD'), t)
            c.send(b'\xff\xfe\xfd\r\n')
            t = c.line()
            self.assertIn('BAD', t)
            _, t = c.cmd('b', 'NOOP')
            self.assertTrue(t.startswith('b OK'), t)

    def test_garbage_instead_of_handshake(self):
        for svc in ('imaps', 'pop3s'):
            s = socket.create_connection((HOST, self.server.ports[svc]), timeout=10)
            try:
                s.sendall(b'GET / HTTP/1.0\r\nHost: x\r\n\r\n' + os.urandom(4096))
                data = b''
                while True:
                    try:
                        chunk = s.recv(4096)
                    except ConnectionResetError:
                        break
                    if not chunk:
                        break
                    data += chunk
                # Whatever came back is a TLS alert at most, not a greeting.
                self.assertNotIn(b'OK', data)
            finally:
                s.close()
        self.still_serves()

    def test_handshake_timeout(self):
        # tls_handshake_timeout = 2s: a client that never starts its
        # handshake is disconnected, and the wait does not affect others.
        s = socket.create_connection((HOST, self.server.ports['imaps']), timeout=30)
        try:
            self.still_serves()
            t0 = time.monotonic()
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b''
            self.assertEqual(data, b'')
            self.assertLess(time.monotonic() - t0, 25)
        finally:
            s.close()

    def flood(self, service, tls, payload, count_ok):
        """Writes payload from a thread while reading replies; returns the
        number of lines matching count_ok and whether the server closed."""
        with self.server.raw(service, tls=tls, timeout=60) as c:
            c.line()
            err = []

            def writer():
                try:
                    c.sock.sendall(payload)
                except OSError as e:
                    err.append(e)
            th = threading.Thread(target=writer, daemon=True)
            th.start()
            n = 0
            closed = False
            while True:
                try:
                    l = c.readline(timeout=30)
                except (ConnectionResetError, ssl.SSLError):
                    closed = True
                    break
                if not l:
                    closed = True
                    break
                if count_ok(l):
                    n += 1
                    if n == payload.count(b'\n'):
                        break
            th.join(30)
            return n, closed

    def assertFloodAnswered(self, service, tls, payload, count_ok):
        """Every command of payload answered (count_ok) or the connection
        closed; and the server still serves."""
        n, closed = self.flood(service, tls, payload, count_ok)
        want = payload.count(b'\n')
        self.assertTrue(n == want or closed, 'answered %d of %d without closing' % (n, want))
        self.still_serves()

    def test_noop_flood_imap(self):
        payload = b''.join(b'n%d NOOP\r\n' % i for i in range(10000))
        self.assertFloodAnswered('imaps', True, payload, lambda l: b' OK' in l)

    def test_noop_flood_pop3(self):
        payload = b'NOOP\r\n' * 10000
        self.assertFloodAnswered('pop3s', True, payload,
                                 lambda l: l.startswith((b'+OK', b'-ERR')))

    def test_bad_command_flood(self):
        # 10,000 unknown commands: BAD each, or a disconnect (max_bad_commands).
        payload = b''.join(b'x%d FROB\r\n' % i for i in range(10000))
        self.assertFloodAnswered('imap', False, payload, lambda l: b' BAD' in l)

    def test_many_connections_then_service(self):
        conns = []
        try:
            for _ in range(50):
                conns.append(socket.create_connection((HOST, self.server.ports['imap']),
                                                      timeout=10))
            for s in conns:
                s.sendall(b'a NOOP\r\n')
        finally:
            for s in conns:
                s.close()
        self.still_serves()


class Timeouts(ServerTestCase):
    CONF = {'login_timeout': '2s'}

    def test_login_timeout(self):
        # A client that connects and never logs in is disconnected; all four
        # wait at the same time.
        conns = []
        for svc, tls in (('imap', False), ('imaps', True), ('pop3', False), ('pop3s', True)):
            c = self.server.raw(svc, tls=tls)
            c.line()
            conns.append((svc, c))
        for svc, c in conns:
            with c:
                data = read_to_close(c, 20)
                self.assertNotIn(b'OK', data, svc)
        self.assertServerAlive()


if __name__ == '__main__':
    harness.main()
