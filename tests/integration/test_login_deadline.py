"""login_timeout is a deadline, not an idle timer: a client that keeps
sending commands (or a byte at a time) without ever logging in is still
disconnected when it runs out, on every service; a logged-in session is
governed by the idle timeout instead and is not cut by it. The deadline
counts from accept, across the TLS handshake: a slow or stalled handshake
does not add tls_handshake_timeout to it."""
import socket
import threading
import time

import harness
from harness import ServerTestCase

PASSWORD = 'deadline-pass-1'


class LoginDeadline(ServerTestCase):
    CONF = {'login_timeout': '2s'}

    def trickle_until_closed(self, conn, line, limit=15.0):
        """Sends line every 0.5 s; returns the seconds until the server
        closed the connection, or None if it was still open after limit."""
        start = time.monotonic()
        while time.monotonic() - start < limit:
            try:
                conn.send(line)
            except OSError:
                return time.monotonic() - start
            try:
                while True:
                    if conn.readline(timeout=0.5) == b'':
                        return time.monotonic() - start   # EOF: closed
            except socket.timeout:
                pass
        return None

    def test_commands_do_not_extend_the_login_deadline(self):
        for svc, tls, line in (('imap', False, b'a NOOP\r\n'), ('imaps', True, b'a NOOP\r\n'),
                               ('pop3', False, b'CAPA\r\n'), ('pop3s', True, b'CAPA\r\n')):
            with self.server.raw(svc, tls=tls) as c:
                c.line()
                took = self.trickle_until_closed(c, line)
                self.assertIsNotNone(took, '%s: still connected after 15 s of commands' % svc)
        self.assertServerAlive()

    def test_logged_in_session_is_not_cut(self):
        self.server.add_user('deadline@example.org', PASSWORD)
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            c.cmd('a', 'LOGIN deadline@example.org %s' % PASSWORD)
            self.assertIsNone(self.trickle_until_closed(c, b'b NOOP\r\n', limit=5.0),
                              'logged-in session closed by login_timeout')


class DeadlineAcrossHandshake(ServerTestCase):
    """The handshake timeout (30 s) is far above login_timeout (10 s): a
    connection closed near 10 s shows the deadline counted from accept;
    one that lived on for tls_handshake_timeout, or login_timeout after a
    late handshake (19 s), shows it restarted."""
    CONF = {'login_timeout': '10s', 'tls_handshake_timeout': '30s'}
    LOGIN_TIMEOUT = 10.0
    SLACK = 5.0   # upper bound only: load can delay the close, not hasten it

    def closed_after(self, service, handshake_at):
        """Connects to service; starts TLS after handshake_at seconds (None:
        never); returns the seconds from connect to the server's close, or
        None when still open after 25 s."""
        t0 = time.monotonic()
        sock = socket.create_connection((harness.HOST, self.server.ports[service]), timeout=25)
        try:
            if handshake_at is not None:
                time.sleep(handshake_at)
                try:
                    sock = self.server.ctx().wrap_socket(sock, server_hostname='localhost')
                except (OSError, ValueError):
                    return time.monotonic() - t0   # closed during the handshake
            sock.settimeout(max(0.1, 25 - (time.monotonic() - t0)))
            try:
                while sock.recv(4096):
                    pass
            except socket.timeout:
                return None
            except OSError:
                pass
            return time.monotonic() - t0
        finally:
            sock.close()

    def test_login_timeout_counts_from_accept(self):
        cases = [('imaps', None), ('pop3s', None), ('imaps', 9.0), ('pop3s', 9.0)]
        took = [None] * len(cases)

        def run(i):
            took[i] = self.closed_after(*cases[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(cases))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for (svc, at), dt in zip(cases, took):
            what = '%s, handshake %s' % (svc, 'never' if at is None else 'at %.0f s' % at)
            self.assertIsNotNone(dt, '%s: still open after 25 s' % what)
            self.assertLessEqual(dt, self.LOGIN_TIMEOUT + self.SLACK,
                                 '%s: closed after %.1f s' % (what, dt))
        self.assertServerAlive()


if __name__ == '__main__':
    harness.main()
