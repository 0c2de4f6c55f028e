"""login_timeout is a deadline, not an idle timer: a client that keeps
sending commands (or a byte at a time) without ever logging in is still
disconnected when it runs out, on every service; a logged-in session is
governed by the idle timeout instead and is not cut by it."""
import socket
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


if __name__ == '__main__':
    harness.main()
