"""POP3 DELE of a large maildrop, QUIT, and a client that vanishes at once,
then an immediate new login: the last session closing the store and the
next one opening it overlap. The next session must get the maildrop whole
(all deleted or none, every listed message retrievable), and the store must
open cleanly: an index being checkpointed by the closing handle was once
taken for a damaged one, moved aside and rebuilt, and the login failed."""
import harness
from harness import ServerTestCase, close_quietly
import pop3_util as pu


class Pop3QuitRace(ServerTestCase):

    def test_lock_held_until_update_done(self):
        n = 1500   # enough that the expunge outlasts a new login
        addr = 'race@example.org'
        pu.setup_user(self.server, addr,
                      [pu.make_message(i, body_lines=2) for i in range(n)])
        p = pu.login(self.server, addr)
        self.assertEqual(p.stat()[0], n)
        # every DELE and the QUIT in one write, then the client vanishes
        # without reading a reply: the server's writes fail while its
        # UPDATE runs, and the connection closes under it
        p.sock.sendall(b''.join(b'DELE %d\r\n' % i for i in range(1, n + 1)) + b'QUIT\r\n')
        close_quietly(p)
        # Whether the server got to the QUIT before the writes failed decides
        # between "all deleted" and "none deleted" (RFC 1939: no QUIT, no
        # UPDATE). What must never happen is a snapshot taken while the
        # deletion runs: messages listed that are gone when fetched.
        q = pu.login_retry(self.server, addr)
        try:
            count = q.stat()[0]
            self.assertIn(count, (0, n))
            for i in range(1, count + 1):
                resp, lines, octets = q.top(i, 0)
                self.assertTrue(resp.startswith(b'+OK'), resp)
            pu.quit(q)
        finally:
            close_quietly(q)


if __name__ == '__main__':
    harness.main()
