"""Per-address limits count a client group, not a single address: IPv4
addresses sharing client_prefix_v4 bits (IPv6: client_prefix_v6, a /64 by
default) are one client for max_connections_per_ip and
imap_max_connections_per_user_ip, as they are for the login throttle.
127.0.0.x are all local on Linux, so a /24 is tested over loopback."""
import harness
from harness import ServerTestCase, imap_login_cmd, timed

USER, PASS = 'grouped@example.org', 'grouped password 1'


class ConnectionsPerGroup(ServerTestCase):
    CONF = {'client_prefix_v4': '24', 'max_connections_per_ip': '3',
            'imap_max_connections_per_user_ip': '2'}

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(USER, PASS)

    def greeting(self, source):
        c = self.server.raw('imap', source=source)
        return c, c.line()

    def test_connections_counted_per_ipv4_prefix(self):
        held = []
        try:
            for i in range(3):
                c, g = self.greeting('127.0.0.%d' % (2 + i))
                held.append(c)
                self.assertTrue(g.startswith('* OK'), g)
            # a fourth address of the same /24: the group is full
            c, g = self.greeting('127.0.0.9')
            held.append(c)
            self.assertTrue(g.startswith('* BYE Too many connections'), g)
            # another /24 is another client
            c, g = self.greeting('127.0.1.9')
            held.append(c)
            self.assertTrue(g.startswith('* OK'), g)
        finally:
            for c in held:
                c.close()
        self.assertIn('refused: too many connections', self.server.log())

    def test_sessions_per_user_counted_per_ipv4_prefix(self):
        held = []
        try:
            for i in range(2):
                c = self.server.raw('imaps', tls=True, source='127.0.2.%d' % (2 + i))
                held.append(c)
                c.line()
                _, t = c.cmd('a', imap_login_cmd(USER, PASS))
                self.assertTrue(t.startswith('a OK'), t)
            c = self.server.raw('imaps', tls=True, source='127.0.2.7')
            held.append(c)
            c.line()
            _, t = c.cmd('a', imap_login_cmd(USER, PASS))
            self.assertTrue(t.startswith('a NO [LIMIT]'), t)
        finally:
            for c in held:
                c.close()

    def test_login_throttle_counts_the_same_group(self):
        # failures from two addresses of one /24 add up: the third one's
        # answer waits login_failure_delay * 4 (a lower bound)
        dts = []
        for i in range(3):
            with self.server.raw('imaps', tls=True, source='127.0.3.%d' % (2 + i)) as c:
                c.line()
                (_, t), dt = timed(c.cmd, 'a', imap_login_cmd('ghost%d@example.org' % i, 'x'))
                self.assertTrue(t.startswith('a NO [AUTHENTICATIONFAILED]'), t)
                dts.append(dt)
        self.assertGreaterEqual(dts[2], 4 * harness.FAILURE_DELAY * 0.95, dts)
        self.assertIn('ip=127.0.3.4', self.server.log())


if __name__ == '__main__':
    harness.main()
