"""The open-file limit: coffred raises its soft limit to the hard one and
says so, and a connection it cannot serve for want of descriptors is
closed at once and counted in the log, never dropped in silence."""
import os
import re
import socket
import threading
import time
import unittest

import harness
import imap_util
from harness import ServerTestCase

SMALL = 64  # descriptors: a few dozen connections fill them


# what these tests check is coffred's own open-file limit, log and index
# files; against Dovecot (IMAP_TESTS_AGAINST=dovecot) there is none of that
COFFRE_ONLY = unittest.skipIf(imap_util.AGAINST_DOVECOT, "coffred's descriptors and log")


def refused_total(log):
    return sum(int(n) for n in re.findall(r'(\d+) connection\(s\) refused or failed', log))


@COFFRE_ONLY
class RaisesItsLimit(ServerTestCase):
    WRAP = ['prlimit', '--nofile=256:4096', '--']

    def test_soft_limit_raised_to_hard_and_logged(self):
        self.assertServerAlive()
        self.assertIn('open-file limit: 4096 (hard limit 4096)', self.server.log())


@COFFRE_ONLY
class OutOfDescriptors(ServerTestCase):
    WRAP = ['prlimit', '--nofile=%d:%d' % (SMALL, SMALL), '--']

    def test_connections_past_the_limit_are_closed_and_logged(self):
        self.assertIn('open-file limit: %d' % SMALL, self.server.log())
        socks, greeted, shed = [], 0, 0
        try:
            for _ in range(2 * SMALL):
                s = socket.create_connection((harness.HOST, self.server.ports['imap']),
                                             timeout=harness.IO_TIMEOUT)
                socks.append(s)
            for s in socks:
                try:
                    data = s.recv(100)
                except ConnectionResetError:
                    data = b''
                if data.startswith(b'* OK'):
                    greeted += 1
                else:
                    shed += 1
        finally:
            for s in socks:
                s.close()
        self.assertGreater(greeted, 0)
        self.assertGreater(shed, 0, 'every connection fit under the limit: raise the count')
        # the last line of a burst comes within a second
        end = time.monotonic() + 10
        while refused_total(self.server.log()) < shed and time.monotonic() < end:
            time.sleep(0.1)
        log = self.server.log()
        self.assertGreaterEqual(refused_total(log), shed, log[-3000:])
        self.assertIn('Too many open files', log)
        # a storm is a few lines, not one per connection
        self.assertLess(len(re.findall('refused or failed', log)), shed)
        # once they are gone, it serves again
        end = time.monotonic() + 10
        while True:
            try:
                with self.server.raw('imap') as c:
                    self.assertTrue(c.line().startswith('* OK'))
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)


@COFFRE_ONLY
class MoreAccountsThanFit(ServerTestCase):
    """Under 128 descriptors mail_max_open comes to 3 stores ((128 - 64) / 2
    = 32 descriptors, 6 of them for the 2 delivery connections that may be
    kept, then 8 per store): 30 accounts log in at once, select and wait in IDLE. Every one
    gets in: the logins past the bound wait while quiet stores fall asleep,
    instead of failing with NO [UNAVAILABLE] or a reset connection."""
    WRAP = ['prlimit', '--nofile=128:128', '--']
    CONF = {'mail_open_wait': '120s', 'login_max_pending_per_ip': '100'}
    ACCOUNTS = 30

    def test_all_accounts_get_in(self):
        users = ['u%d@example.org' % i for i in range(self.ACCOUNTS)]
        for u in users:
            self.server.add_user(u, 'pw-' + u)
        self.assertIn('accounts with their index open: at most 3', self.server.log())
        results, clients = {}, []
        lock = threading.Lock()

        def one(u):
            c = None
            try:
                c = imap_util.Imap(self.server.raw('imaps', tls=True, timeout=150))
                with lock:
                    clients.append(c)
                u_, t = c.cmd('LOGIN %s %s' % (imap_util.quote(u), imap_util.quote('pw-' + u)),
                              timeout=150)
                if not re.match(rb'^T\d+ OK', t):
                    raise AssertionError('LOGIN: %r' % t)
                u_, t = c.cmd('SELECT INBOX', timeout=150)
                if not re.match(rb'^T\d+ OK', t):
                    raise AssertionError('SELECT: %r' % t)
                c.idle()
                results[u] = 'idle'
            except Exception as e:  # reported below, per account
                results[u] = repr(e)

        threads = [threading.Thread(target=one, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join(200)
        failed = {u: r for u, r in results.items() if r != 'idle'}
        try:
            self.assertEqual(len(results), len(users))
            self.assertEqual(failed, {}, self.server.log_tail(80))
            # and they still work: DONE, NOOP in each
            for c in clients:
                c.done(timeout=60)
                c.ok('NOOP', timeout=60)
        finally:
            for c in clients:
                c.close()


@COFFRE_ONLY
class ConnectionsLeaveRoomForStores(ServerTestCase):
    """The connections get what the open-file limit leaves beside the
    stores (here 400 - 64 - 8 x 5 stores - 3 x 2 delivery handles = 290):
    those past it are refused at once with * BYE and logged, and a session
    taken in while all the others are held still opens its account's
    index, rather than fail with NO [UNAVAILABLE] for want of a
    descriptor."""
    WRAP = ['prlimit', '--nofile=400:400', '--']
    CONF = {'mail_max_open': '5', 'mail_delivery_keep_max': '2',
            'max_connections_per_ip': '1000'}
    CAP = 400 - 64 - 8 * 5 - 3 * 2
    MORE = 20
    ADDR = 'room@example.org'

    def test_connections_past_the_room_are_refused(self):
        self.server.add_user(self.ADDR, 'pw-room-user')
        self.assertIn('connections: at most %d (max_connections, lowered' % self.CAP,
                      self.server.log())
        c = imap_util.Imap(self.server.raw('imaps', tls=True))
        socks, greeted, bye = [], 1, 0
        try:
            for _ in range(self.CAP - 1 + self.MORE):
                socks.append(socket.create_connection((harness.HOST, self.server.ports['imap']),
                                                      timeout=harness.IO_TIMEOUT))
            for s in socks:
                data = s.recv(200)
                if data.startswith(b'* OK'):
                    greeted += 1
                elif data.startswith(b'* BYE Too many connections'):
                    bye += 1
            self.assertEqual(greeted, self.CAP, self.server.log_tail(20))
            self.assertEqual(bye, self.MORE)
            # every descriptor a connection may take is taken: the store
            # still opens
            c.login(self.ADDR, 'pw-room-user')
            c.ok('SELECT INBOX')
            c.logout()
        finally:
            c.close()
            for s in socks:
                s.close()
        self.assertIn('refused: too many connections', self.server.log())
        self.assertNotIn('Too many open files', self.server.log())
        self.assertServerAlive()


@COFFRE_ONLY
class IndexUnopenableForAWhile(ServerTestCase):
    """A login whose index cannot be opened for a moment (here its file
    unreadable to coffred's user; a descriptor shortage fails the same
    way) waits and tries again: it gets in once the file can be opened,
    and coffred stays up. The first such wait of a coffred's life queues
    the login for a retry without any login having queued before."""
    CONF = {'mail_keep_open': '0', 'mail_open_wait': '120s'}
    ADDR = 'late@example.org'

    def index_open(self, idx):
        fds = '/proc/%d/fd' % self.server.proc.pid
        for fd in os.listdir(fds):
            try:
                if os.readlink(os.path.join(fds, fd)).startswith(idx):
                    return True
            except OSError:
                continue
        return False

    def test_login_waits_and_gets_in(self):
        self.server.add_user(self.ADDR, 'pw-late-login')
        c = imap_util.Imap(self.server.raw('imaps', tls=True))
        c.login(self.ADDR, 'pw-late-login')
        c.ok('SELECT INBOX')
        c.logout()
        c.close()
        root = os.path.dirname(imap_util.user_maildir(self.server, self.ADDR))
        idx = os.path.realpath(os.path.join(root, 'index.sqlite'))
        self.assertTrue(harness.wait_for(lambda: not self.index_open(idx), 30),
                        'the index stayed open after the last session')
        mode = os.stat(idx).st_mode & 0o7777
        os.chmod(idx, 0)
        result = {}

        def login():
            try:
                c2 = imap_util.Imap(self.server.raw('imaps', tls=True, timeout=150))
                _, t = c2.cmd('LOGIN %s pw-late-login' % self.ADDR, timeout=150)
                result['login'] = t
                _, t = c2.cmd('SELECT INBOX', timeout=150)
                result['select'] = t
                c2.logout()
                c2.close()
            except Exception as e:  # reported below
                result['error'] = repr(e)

        th = threading.Thread(target=login)
        try:
            th.start()
            waited = harness.wait_for(
                lambda: 'cannot open the store of account' in self.server.log(), 60)
            # a few retries fail too while the file stays unreadable
            time.sleep(1)
        finally:
            os.chmod(idx, mode)
        self.assertTrue(waited, self.server.log_tail(30))
        th.join(150)
        self.assertServerAlive()
        self.assertNotIn('error', result, self.server.log_tail(30))
        self.assertRegex(result.get('login', b''), rb'^T\d+ OK')
        self.assertRegex(result.get('select', b''), rb'^T\d+ OK')


if __name__ == '__main__':
    harness.main()
