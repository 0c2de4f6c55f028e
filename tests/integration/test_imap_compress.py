"""COMPRESS=DEFLATE (RFC 4978, issue 14): Python's zlib on the client side
(raw deflate, windowBits -15, a sync flush after each command), over TLS
and over plaintext from plaintext_auth_networks: the session works as
before, a second COMPRESS is refused, bad arguments are BAD, a corrupt
stream or a decompression bomb ends the session and nothing else, and an
idle compressed session holds only the decompressor's state.

Dovecot 2.3 offers COMPRESS=DEFLATE with its imap_zlib plugin: against
Dovecot (IMAP_TESTS_AGAINST=dovecot) the plugin is loaded here, and the
tests that read coffred's log or memory are skipped.
"""
import re
import socket
import time
import unittest
import zlib

import harness
from imap_util import (AGAINST_DOVECOT, PASS2, USER, USER2, DovecotServer, Imap, ImapCase,
                       make_message, proc_rss_kb)


class ZlibDovecot(DovecotServer):
    """Dovecot with COMPRESS=DEFLATE (its imap_zlib plugin)."""

    def write_conf(self, path=None, lines=None):
        path = super().write_conf(path, lines)
        with open(path, 'a') as f:
            f.write('mail_plugins = $mail_plugins zlib\n'
                    'protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n')
        return path


if AGAINST_DOVECOT:
    harness.Server = ZlibDovecot


def proc_hwm_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    return 0


class ZConn(harness.Conn):
    """A harness.Conn whose bytes are raw deflate both ways from now on."""

    def __init__(self, conn):
        super().__init__(conn.sock, conn.timeout)
        self.buf = conn.buf
        self.comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.decomp = zlib.decompressobj(-15)
        self.wire_in = 0
        self.plain_in = 0
        self.plain_out = 0

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.plain_out += len(data)
        self.sock.sendall(self.comp.compress(data) + self.comp.flush(zlib.Z_SYNC_FLUSH))

    def _fill(self, timeout=None):
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return False
        except OSError as e:
            if 'EOF' in str(e) or 'UNEXPECTED' in str(e).upper():
                return False
            raise
        if not chunk:
            return False
        self.wire_in += len(chunk)
        plain = self.decomp.decompress(chunk)
        self.plain_in += len(plain)
        self.buf += plain
        return True


def compress(c):
    """COMPRESS DEFLATE on Imap c, then switches c to deflate."""
    u, t = c.cmd('COMPRESS DEFLATE')
    if not re.match(rb'^T\d+ OK', t):
        raise AssertionError('COMPRESS: %r' % t)
    c.c = ZConn(c.c)
    return c


class CompressTest(ImapCase):

    def compressed(self, user=USER):
        c = self.login()
        caps = c.ok('CAPABILITY')[0]
        if b'COMPRESS=DEFLATE' not in caps.split():
            self.fail('COMPRESS=DEFLATE not offered: %r' % caps)
        return compress(c)

    def test_session(self):
        c = self.compressed()
        self.assertEqual(c.c.buf, b'')
        c.ok('CREATE Zs')
        c.ok('SELECT Zs')
        # APPEND with a synchronizing literal, then FETCH it back
        body = b''.join(b'Line %d of a long message that compresses well.\r\n' % i
                        for i in range(20000))
        msg = make_message(1, subject='big', body=body.decode())
        c.ok('APPEND Zs {}', msg)
        u = c.ok('FETCH 1 (BODY.PEEK[])', timeout=60)
        got = [r for r in u if b'FETCH' in r]
        self.assertEqual(len(got), 1)
        self.assertTrue(msg in got[0], 'the message came back different')
        self.assertLess(c.c.wire_in * 5, c.c.plain_in,
                        'a repetitive message was not compressed on the wire')
        # IDLE, woken by another session's APPEND
        c.idle()
        o = self.login(USER)
        o.ok('APPEND Zs {}', make_message(2, subject='push'))
        o.logout()
        seen = []
        while True:
            r = c.line(timeout=10)
            seen.append(r)
            if re.match(rb'^\* 2 EXISTS', r):
                break
        c.done()
        u, t = c.cmd('FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
        self.assertOK(t)
        self.assertIn(b'push', b''.join(u))
        u, t = c.cmd('LOGOUT')
        self.assertOK(t)
        self.assertTrue(any(r.startswith(b'* BYE') for r in u))

    def test_twice(self):
        c = self.compressed()
        u, t = c.cmd('COMPRESS DEFLATE')
        self.assertNO(t, 'COMPRESSIONACTIVE')
        c.ok('NOOP')

    def test_bad_arguments(self):
        c = self.login()
        for bad in ('COMPRESS', 'COMPRESS DEFLATE extra', 'COMPRESS "DEFLATE'):
            u, t = c.cmd(bad)
            self.assertBAD(t, bad)
        # an unknown algorithm: "arguments invalid" (BAD, RFC 4978 section
        # 3) for coffre; Dovecot answers NO
        u, t = c.cmd('COMPRESS LZW')
        self.assertRegex(t, rb'^T\d+ (BAD|NO)' if AGAINST_DOVECOT else rb'^T\d+ BAD')
        # still uncompressed
        c.ok('NOOP')

    def test_not_before_login(self):
        c = self.connect()
        u, t = c.cmd('COMPRESS DEFLATE')
        self.assertNotRegex(t, rb'^T\d+ OK')
        c.ok('NOOP')

    def test_corrupt_stream(self):
        c = self.compressed()
        c.ok('SELECT INBOX')
        # BTYPE 11 is reserved: no decompressor can take this
        c.c.sock.sendall(b'\xff' * 64)
        self.assertEqual(c.read_response(timeout=10), b'')
        self.assertAlive()

    def test_bomb(self):
        """A command that makes the session wait, then 64 MiB of one
        character without a line end, deflated to ~64 KiB: the session
        ends or refuses the line, and the server holds none of it."""
        if AGAINST_DOVECOT:
            self.skipTest('checks coffred memory')
        c = self.compressed()
        pid = self.server.proc.pid
        before = proc_rss_kb(pid)
        with open('/proc/%d/clear_refs' % pid, 'w') as f:
            f.write('5')  # resets the peak (VmHWM) to the present size
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        # SELECT makes the session wait for the pool: what comes after it
        # must not be inflated meanwhile
        data = comp.compress(b'T8 SELECT INBOX\r\nT9 NOOP ' + b'a' * (64 << 20)) + comp.flush(zlib.Z_SYNC_FLUSH)
        try:
            c.c.sock.sendall(data)
            while c.read_response(timeout=30):
                pass
        except (OSError, EOFError):
            pass
        peak = proc_hwm_kb(pid)
        self.assertLess(peak - before, 32 * 1024,
                        'RSS went from %d to %d KiB' % (before, peak))
        self.assertAlive()

    def closed_line(self, port):
        deadline = time.time() + 10
        while time.time() < deadline:
            for line in self.server.log().splitlines():
                m = re.search(r'remote=(\S+) user=\S+ closed .* zlib_held=(\d+) zlib_peak=(\d+)',
                              line)
                if m and m.group(1) == port:
                    return int(m.group(2)), int(m.group(3))
            time.sleep(0.1)
        self.fail('no close line with zlib figures for %s' % port)

    def test_idle_state(self):
        """While a compressed session waits, zlib holds neither a
        compressor nor a decompressor: only the part of the 32 KiB window
        the client has filled, which is at most what it sent."""
        if AGAINST_DOVECOT:
            self.skipTest('reads coffred\'s log')
        c = self.compressed()
        c.ok('CREATE Zi')
        c.ok('SELECT Zi')
        for i in range(5):
            c.ok('APPEND Zi {}', make_message(10 + i))
        c.ok('FETCH 1:* (FLAGS ENVELOPE BODY.PEEK[])')
        c.idle()
        port = '%s:%d' % c.c.sock.getsockname()[:2]
        time.sleep(0.5)  # nothing to wait for: the session simply idles
        c.c.sock.close()
        held, peak = self.closed_line(port)
        self.assertLessEqual(held, min(c.c.plain_out, 32768),
                             'idle session holds %d bytes of zlib state after the client sent %d'
                             % (held, c.c.plain_out))
        self.assertGreater(peak, 32768, 'zlib was never counted')

    def test_idle_state_full_window(self):
        """After more than 32 KiB from the client, the idle session keeps
        the whole window and nothing else; input after the pause is still
        decoded against it."""
        if AGAINST_DOVECOT:
            self.skipTest('reads coffred\'s log')
        c = self.compressed()
        c.ok('CREATE Zw')
        msg = make_message(1, subject='window', body='The same words again. ' * 3000)
        c.ok('APPEND Zw {}', msg)
        c.ok('SELECT Zw')
        c.ok('NOOP')
        # repeats what the client sent before the pause: the client's
        # compressor refers back to it, the server must still have it
        c.ok('APPEND Zw {}', msg)
        u = c.ok('FETCH 2 (BODY.PEEK[])')
        self.assertTrue(any(msg in r for r in u), 'the second APPEND was decoded wrongly')
        c.idle()
        port = '%s:%d' % c.c.sock.getsockname()[:2]
        c.c.sock.close()
        held, peak = self.closed_line(port)
        self.assertLessEqual(held, 32768)


class PlaintextCompressTest(ImapCase):
    """On plaintext, COMPRESS is there for plaintext_auth_networks."""

    CONF = {'plaintext_auth_networks': '127.0.0.0/8'}

    def test_plaintext_network(self):
        c = Imap(self.server.raw('imap'))
        self.addCleanup(c.close)
        c.login(USER2, PASS2)
        compress(c)
        c.select('INBOX')
        c.ok('APPEND INBOX {}', make_message(1))
        u = c.ok('FETCH 1 (UID)')
        self.assertTrue(any(b'FETCH' in r for r in u))
        c.logout()


if __name__ == '__main__':
    unittest.main()
