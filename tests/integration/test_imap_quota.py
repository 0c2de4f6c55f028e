"""IMAP quota: an account near its quota is warned with [ALERT] when it
logs in (RFC 3501 7.1: the client must show ALERT text to the user), one
far from it is not, quota_warning_percent = 0 never warns, and an APPEND
over the quota is refused with [OVERQUOTA] leaving the mailbox as it was.
The quota is checked while the data streams in: what a MULTIAPPEND over
the quota leaves in the account's tmp/ stays near the quota, whatever
the client sends."""
import os
import time

import harness
import imap_util
from harness import ServerTestCase, close_quietly

PASSWORD = 'quota-pass-1'
KB = 1024
MB = 1024 * KB


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


class ImapQuotaStreaming(ServerTestCase):
    """A 2 MB quota and a MULTIAPPEND of 16 MB (32 messages of 512 kB):
    refused once the next message would not fit, with no more than the
    quota and one message written into tmp/ (all 16 MB were before)."""
    QUOTA = 2 * MB
    N = 32
    MSG = message(512 * KB)

    def user(self, addr):
        rc, out, err = self.server.ctl('user', 'add', addr, '--password-stdin', '--quota', '2M',
                                       input=PASSWORD + '\n')
        self.assertEqual(rc, 0, err)
        return os.path.join(imap_util.user_maildir(self.server, addr), 'tmp')

    def login(self, addr):
        c = self.server.raw('imaps', tls=True)
        c.line()
        _, tagged = c.cmd('l', 'LOGIN %s %s' % (addr, PASSWORD))
        self.assertIn(' OK ', tagged + ' ')
        return c

    def assert_nothing_saved(self, c, tmp):
        untagged, tagged = c.cmd('s', 'SELECT INBOX')
        self.assertIn(' OK ', tagged + ' ')
        self.assertIn('* 0 EXISTS', untagged)
        # the drafts are removed on the pool: wait for it, not for a time
        deadline = time.monotonic() + harness.IO_TIMEOUT
        while harness.dir_bytes(tmp) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(harness.dir_bytes(tmp), 0)

    def test_announced_literal_over_quota_gets_no_continuation(self):
        tmp = self.user('announce@example.org')
        with self.login('announce@example.org') as c:
            c.send('a APPEND INBOX {%d}\r\n' % (3 * MB))
            line = c.line()
            self.assertTrue(line.startswith('a NO [OVERQUOTA]'), line)
            _, tagged = c.cmd('n', 'NOOP')
            self.assertIn(' OK ', tagged + ' ')
            self.assert_nothing_saved(c, tmp)

    def test_multiappend_stops_at_quota(self):
        tmp = self.user('multi@example.org')
        size = len(self.MSG)
        peak = sent = 0
        with self.login('multi@example.org') as c:
            c.send('a APPEND INBOX {%d}\r\n' % size)
            while True:
                line = c.line()
                # each "+" comes once the messages before it are on disk
                peak = max(peak, harness.dir_bytes(tmp))
                if not line.startswith('+'):
                    break
                sent += 1
                c.send(self.MSG + (b' {%d}\r\n' % size if sent < self.N else b'\r\n'))
            self.assertTrue(line.startswith('a NO [OVERQUOTA]'), line)
            self.assertLessEqual(sent, self.QUOTA // size + 1)
            self.assertLessEqual(peak, self.QUOTA + size,
                                 'tmp/ held %d bytes during the upload' % peak)
            self.assert_nothing_saved(c, tmp)

    def test_multiappend_literal_plus_not_written_past_quota(self):
        tmp = self.user('plus@example.org')
        size = len(self.MSG)
        data = (b'a APPEND INBOX {%d+}\r\n' % size + self.MSG
                + (b' {%d+}\r\n' % size + self.MSG) * (self.N - 1) + b'\r\n')
        with self.login('plus@example.org') as c:
            watch = harness.PeakWatcher(tmp)
            watch.start()
            try:
                c.send(data)
                _, tagged = c.until_tag('a')
            finally:
                peak = watch.stop()
            self.assertTrue(tagged.startswith('a NO [OVERQUOTA]'), tagged)
            self.assertLessEqual(peak, self.QUOTA + size,
                                 'tmp/ held %d bytes during the upload' % peak)
            # the rest was read and dropped: the session goes on
            _, tagged = c.cmd('n', 'NOOP')
            self.assertIn(' OK ', tagged + ' ')
            self.assert_nothing_saved(c, tmp)

    def test_bare_lf_growth_stops_at_quota(self):
        """A literal announced within the quota that grows past it as its
        bare LFs become CRLF is cut at the quota too."""
        tmp = self.user('lf@example.org')
        body = b'Subject: lf\n\n' + b'\n' * (int(1.5 * MB))
        with self.login('lf@example.org') as c:
            watch = harness.PeakWatcher(tmp)
            watch.start()
            try:
                c.send(b'a APPEND INBOX {%d+}\r\n' % len(body) + body + b'\r\n')
                _, tagged = c.until_tag('a')
            finally:
                peak = watch.stop()
            self.assertTrue(tagged.startswith('a NO [OVERQUOTA]'), tagged)
            self.assertLessEqual(peak, self.QUOTA)
            self.assert_nothing_saved(c, tmp)


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
