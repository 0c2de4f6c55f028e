"""An account whose sessions all wait closes its index files: at once when
they are all in IMAP IDLE, after mail_idle_close when some are only quiet.
coffred then holds no descriptor on index.sqlite, its
WAL or its shared memory for it. Mail delivered meanwhile is still pushed
to the sessions in IDLE, and after DONE they work as before; the first
command after the close opens the index again (its cost is printed beside
the same command with the index open)."""
import os
import socket
import sys
import time

import unittest

import harness
import imap_util
import lmtp_util
from imap_util import ImapCase, USER, USER2, make_message

# what these tests check is coffred's own descriptors on its index files;
# against Dovecot (IMAP_TESTS_AGAINST=dovecot) there are none to look at
COFFRE_ONLY = unittest.skipIf(imap_util.AGAINST_DOVECOT, "coffred's index files, not the protocol")

STEP = 10.0  # seconds for a pushed response: generous, the test never asserts speed


def index_fds(server, addr):
    """coffred's descriptors on addr's index.sqlite, -wal and -shm."""
    root = os.path.dirname(imap_util.user_maildir(server, addr))
    idx = os.path.realpath(os.path.join(root, 'index.sqlite'))
    n = 0
    fds = '/proc/%d/fd' % server.proc.pid
    for fd in os.listdir(fds):
        try:
            target = os.readlink(os.path.join(fds, fd))
        except OSError:
            continue
        if target.startswith(idx):
            n += 1
    return n


wait_for = harness.wait_for


@COFFRE_ONLY
class IdleClose(ImapCase):
    CONF = {'mail_idle_close': '1s'}

    def deliver(self, i):
        c = lmtp_util.lmtp(self.server)
        try:
            rcpt, data = lmtp_util.send(c, 'sender@example.net', [USER], make_message(i))
            self.assertEqual(data[0][0], 250, data)
        finally:
            c.quit()

    def expect_exists(self, c, n):
        seen = []
        while True:
            try:
                r = c.line(timeout=STEP)
            except socket.timeout:
                self.fail('no * %d EXISTS within %.0f s; got %r' % (n, STEP, seen))
            seen.append(r)
            if r == b'* %d EXISTS' % n:
                return

    def timed_fetch(self, c, n):
        t0 = time.perf_counter()
        u, t = c.cmd('FETCH 1:* (FLAGS)')
        dt = time.perf_counter() - t0
        self.assertOK(t)
        self.assertEqual(len([r for r in u if b' FETCH ' in r]), n, u)
        return dt

    def test_idle_sessions_hold_no_index_file(self):
        for i in range(3):
            self.deliver(i)
        # USER2 stays busy beside: only the idle account closes
        other = self.login(USER2, imap_util.PASS2)
        other.select('INBOX')
        a, b = self.login(), self.login()
        self.assertEqual(a.select('INBOX')['exists'], 3)
        self.assertEqual(b.select('INBOX')['exists'], 3)
        warm = sorted(self.timed_fetch(a, 3) for _ in range(5))[2]
        self.assertGreater(index_fds(self.server, USER), 0, 'the index is not open at all')

        a.idle()
        b.idle()
        self.assertTrue(wait_for(lambda: index_fds(self.server, USER) == 0, 30),
                        'coffred still holds %d descriptor(s) on the index of an account whose '
                        'sessions are all in IDLE' % index_fds(self.server, USER))

        # delivered meanwhile: pushed to both sessions
        self.deliver(3)
        self.expect_exists(a, 4)
        self.expect_exists(b, 4)

        # closed again; after DONE the session works normally
        self.assertTrue(wait_for(lambda: index_fds(self.server, USER) == 0, 30))
        a.done(STEP)
        cold = self.timed_fetch(a, 4)
        u, t = a.cmd('UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (Subject)])')
        self.assertOK(t)
        a.ok('NOOP')
        b.done(STEP)
        b.ok('NOOP')
        b.logout()
        a.logout()
        other.ok('NOOP')
        sys.stderr.write('reopening cost: FETCH 1:* (FLAGS) of 4 messages %.2f ms after the '
                         'index closed, %.2f ms with it open\n' % (cold * 1e3, warm * 1e3))

    def test_zero_keeps_the_index_open(self):
        """mail_idle_close 0 is the old behaviour; checked on another server."""
        srv = harness.Server({'mail_idle_close': '0'}, name='IdleCloseOff')
        try:
            srv.start()
            srv.add_user(USER, imap_util.PASS)
            c = imap_util.Imap(srv.raw('imaps', tls=True))
            c.login(USER, imap_util.PASS)
            c.select('INBOX')
            c.idle()
            time.sleep(3)
            self.assertGreater(index_fds(srv, USER), 0)
            c.done()
            c.logout()
            c.close()
            self.assertEqual(srv.stop(), 0)
        finally:
            srv.cleanup()


@COFFRE_ONLY
class IdlingCloses(ImapCase):
    """Once every session of an account is in IDLE, its index files close
    at once, without waiting mail_idle_close (here ten minutes); as long as
    one session is merely quiet (no command, not in IDLE), they stay open.
    Mail delivered meanwhile is pushed, and DONE brings the session back."""
    CONF = {'mail_idle_close': '600s'}

    def test_index_closes_when_every_session_is_in_idle(self):
        c = lmtp_util.lmtp(self.server)
        try:
            for i in range(2):
                rcpt, data = lmtp_util.send(c, 'sender@example.net', [USER], make_message(i))
                self.assertEqual(data[0][0], 250, data)
        finally:
            c.quit()
        a, b = self.login(), self.login()
        self.assertEqual(a.select('INBOX')['exists'], 2)
        self.assertEqual(b.select('INBOX')['exists'], 2)
        a.idle()
        # b is quiet, not in IDLE: the index stays (5 s is past the upkeep
        # rounds that would close it; mail_idle_close is far off)
        time.sleep(5)
        self.assertGreater(index_fds(self.server, USER), 0,
                           'the index closed while a session not in IDLE held the account')
        b.idle()
        self.assertTrue(wait_for(lambda: index_fds(self.server, USER) == 0, 30),
                        'coffred still holds %d descriptor(s) on the index of an account whose '
                        'sessions are all in IDLE' % index_fds(self.server, USER))
        # leaving IDLE and coming back: closed again
        a.done(STEP)
        self.assertEqual(len([r for r in a.ok('FETCH 1:* (FLAGS)') if b' FETCH ' in r]), 2)
        a.idle()
        self.assertTrue(wait_for(lambda: index_fds(self.server, USER) == 0, 30))
        # a session that logs out while in IDLE leaves the count right: the
        # other, made quiet, keeps the index open again
        a.close()
        b.done(STEP)
        u = b.ok('FETCH 1:* (FLAGS ENVELOPE)')
        self.assertEqual(len([r for r in u if b' FETCH ' in r]), 2, u)
        self.assertGreater(index_fds(self.server, USER), 0)
        time.sleep(5)
        self.assertGreater(index_fds(self.server, USER), 0,
                           'the index closed while its only session was quiet, not in IDLE')
        b.logout()


@COFFRE_ONLY
class QuietStore(ImapCase):
    """Long before mail_idle_close, an account whose sessions are quiet a
    moment (no command, not in IDLE) gives back its read connections and
    cached pages: coffred holds fewer descriptors on its index than while
    it was read, and the next command opens a reader again."""
    CONF = {'mail_idle_close': '600s'}

    def read_then_wait(self):
        """A session that read the index, now quiet; and coffred's
        descriptors on the index after the read."""
        c = self.login()
        c.append('INBOX', make_message(1))
        c.select('INBOX')
        c.ok('FETCH 1:* (FLAGS ENVELOPE)')
        busy = index_fds(self.server, USER)
        self.assertGreater(busy, 0)
        return c, busy

    def test_quiet_account_closes_its_readers(self):
        c, busy = self.read_then_wait()
        self.assertTrue(wait_for(lambda: index_fds(self.server, USER) < busy, 60),
                        'still %d descriptor(s) on the index of an account quiet for a minute, '
                        'as many as while it was read' % index_fds(self.server, USER))
        self.assertGreater(index_fds(self.server, USER), 0, 'the index closed, not trimmed')
        u = c.ok('FETCH 1:* (FLAGS ENVELOPE)')
        self.assertEqual(len([r for r in u if b' FETCH ' in r]), 1, u)
        c.logout()


@COFFRE_ONLY
class QuietTrimOff(QuietStore):
    """mail_quiet_trim 0: the readers and pages stay until mail_idle_close."""
    CONF = {'mail_idle_close': '600s', 'mail_quiet_trim': '0'}

    def test_quiet_account_closes_its_readers(self):
        c, busy = self.read_then_wait()
        time.sleep(5)  # past the default 2 s: nothing may change
        self.assertEqual(index_fds(self.server, USER), busy)
        c.logout()

if __name__ == '__main__':
    harness.main()
