"""IMAP quota: an account near its quota is warned with [ALERT] when it
logs in (RFC 3501 7.1: the client must show ALERT text to the user), one
far from it is not, quota_warning_percent = 0 never warns, and an APPEND
over the quota is refused with [OVERQUOTA] leaving the mailbox as it was."""
import harness
from harness import ServerTestCase, close_quietly

PASSWORD = 'quota-pass-1'
KB = 1024


def message(size):
    head = b'From: a@example.org\r\nSubject: filler\r\n\r\n'
    line = b'x' * 78 + b'\r\n'
    return head + line * ((size - len(head)) // len(line))


class ImapQuota(ServerTestCase):

    def user(self, addr, quota):
        rc, out, err = self.server.ctl('user', 'add', addr, '--password-stdin', '--quota', quota,
                                       input=PASSWORD + '\n')
        self.assertEqual(rc, 0, err)

    def login_lines(self, addr):
        """The untagged lines a LOGIN gets before its tagged OK."""
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            untagged, tagged = c.cmd('a', 'LOGIN %s %s' % (addr, PASSWORD))
            self.assertIn(' OK ', tagged + ' ')
            return untagged

    def fill(self, addr, nbytes):
        m = self.server.imap_ssl()
        try:
            m.login(addr, PASSWORD)
            typ, _ = m.append('INBOX', None, None, message(nbytes))
            self.assertEqual(typ, 'OK')
            m.logout()
        finally:
            close_quietly(m)

    def test_alert_near_quota(self):
        self.user('full@example.org', '1M')
        self.fill('full@example.org', 950 * KB)
        alerts = [l for l in self.login_lines('full@example.org') if '[ALERT]' in l]
        self.assertEqual(len(alerts), 1, alerts)
        self.assertIn('9', alerts[0])          # "9x% full"
        self.assertIn('% full', alerts[0])

    def test_no_alert_far_from_quota(self):
        self.user('roomy@example.org', '10M')
        self.fill('roomy@example.org', 100 * KB)
        self.assertFalse([l for l in self.login_lines('roomy@example.org') if '[ALERT]' in l])

    def test_no_alert_without_quota(self):
        self.user('unlimited@example.org', '0')
        self.fill('unlimited@example.org', 100 * KB)
        self.assertFalse([l for l in self.login_lines('unlimited@example.org') if '[ALERT]' in l])

    def test_append_over_quota_refused(self):
        self.user('tight@example.org', '200k')
        self.fill('tight@example.org', 150 * KB)
        m = self.server.imap_ssl()
        try:
            m.login('tight@example.org', PASSWORD)
            typ, data = m.append('INBOX', None, None, message(100 * KB))
            self.assertEqual(typ, 'NO')
            self.assertIn(b'[OVERQUOTA]', data[0])
            typ, data = m.select('INBOX')
            self.assertEqual(data[0], b'1')
            m.logout()
        finally:
            close_quietly(m)


class ImapQuotaWarningOff(ServerTestCase):
    CONF = {'quota_warning_percent': '0'}

    def test_never_warns(self):
        rc, out, err = self.server.ctl('user', 'add', 'off@example.org', '--password-stdin',
                                       '--quota', '1M', input=PASSWORD + '\n')
        self.assertEqual(rc, 0, err)
        m = self.server.imap_ssl()
        try:
            m.login('off@example.org', PASSWORD)
            m.append('INBOX', None, None, message(990 * KB))
            m.logout()
        finally:
            close_quietly(m)
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            untagged, tagged = c.cmd('a', 'LOGIN off@example.org %s' % PASSWORD)
            self.assertIn(' OK ', tagged + ' ')
            self.assertFalse([l for l in untagged if '[ALERT]' in l])


if __name__ == '__main__':
    harness.main()
