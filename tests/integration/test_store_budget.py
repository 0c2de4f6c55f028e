"""Every open of an account's index counts under mail_max_open, not only
the first: a store put to sleep (mail_idle_close, or to make room for
another) and woken again by its own sessions' commands, by the sessions'
announcements of new mail, or by a delivery takes a place too, and waits
for one when none is free, rather than open its files past the bound.

More accounts than mail_max_open (3) each have two sessions SELECTed and in
IDLE; mail arrives over LMTP for every account while its store sleeps, and
after the stores fell asleep again every session ends IDLE and runs
commands, all at once. Every command is answered OK (none NO, BAD or BYE,
no connection reset), every delivery accepted, and the accounts whose
index coffred holds open, sampled from /proc all along, never outnumber
mail_max_open."""
import os
import re
import signal
import threading
import time

import harness
import imap_util
import lmtp_util
from harness import ServerTestCase

BOUND = 3
ACCOUNTS = 8
WAIT = 120  # seconds a step may take on a loaded machine: never asserted as speed


def users():
    return ['b%d@example.org' % i for i in range(ACCOUNTS)]


def pw(u):
    return 'pw-' + u


def all_stopped(pid):
    """Whether every thread of pid is stopped (after SIGSTOP)."""
    try:
        tasks = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return True
    for t in tasks:
        try:
            with open('/proc/%d/task/%s/stat' % (pid, t)) as f:
                state = f.read().rsplit(')', 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ('T', 't', 'Z', 'X'):
            return False
    return True


class IndexSampler(threading.Thread):
    """Samples coffred's descriptors: the accounts (users/<id>) with any
    of index.sqlite, -wal or -shm open; keeps the most seen at once. Each
    sample is one instant: coffred is stopped (SIGSTOP, every thread) while
    its descriptors are read, so that a store closing and another opening
    meanwhile are not both seen."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server = server
        self.stop = threading.Event()
        self.most = 0
        self.most_ids = []
        self.samples = 0
        self.users_dir = os.path.realpath(os.path.join(server.data_dir, 'users')) + '/'

    def open_accounts(self, instant=False):
        pid = self.server.proc.pid
        fds = '/proc/%d/fd' % pid
        ids = set()
        if instant:
            os.kill(pid, signal.SIGSTOP)
        try:
            if instant:
                end = time.monotonic() + 5
                while not all_stopped(pid) and time.monotonic() < end:
                    time.sleep(0.0005)
            try:
                names = os.listdir(fds)
            except OSError:
                return ids
            for fd in names:
                try:
                    target = os.readlink(os.path.join(fds, fd))
                except OSError:
                    continue
                if target.startswith(self.users_dir) and re.search(
                        r'/index\.sqlite(-wal|-shm)?$', target):
                    ids.add(target[len(self.users_dir):].split('/', 1)[0])
        finally:
            if instant:
                os.kill(pid, signal.SIGCONT)
        return ids

    def run(self):
        while not self.stop.is_set():
            ids = self.open_accounts(instant=True)
            self.samples += 1
            if len(ids) > self.most:
                self.most = len(ids)
                self.most_ids = sorted(ids)
            time.sleep(0.01)


class WokenStoresTakeAPlace(ServerTestCase):
    CONF = {'mail_max_open': str(BOUND), 'mail_idle_close': '1s', 'mail_open_wait': '300s',
            'mail_keep_open': '2s', 'login_max_pending_per_ip': '100',
            'imap_max_connections_per_user_ip': '100'}

    @classmethod
    def setUpServer(cls):
        for u in users():
            cls.server.add_user(u, pw(u))

    def deliver(self, u, i):
        c = lmtp_util.lmtp(self.server)
        try:
            rcpt, data = lmtp_util.send(c, 'sender@example.net', [u],
                                        imap_util.make_message(i, to=u))
            self.assertEqual(rcpt[0][0], 250, rcpt)
            self.assertEqual(data[0][0], 250, data)
        finally:
            c.quit()

    def all_at_once(self, fn, items):
        """fn(item) in a thread each; {item: exception repr} of those that
        failed."""
        errors = {}

        def one(x):
            try:
                fn(x)
            except Exception as e:  # reported per item
                errors[x] = repr(e)

        threads = [threading.Thread(target=one, args=(x,)) for x in items]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT * 2)
        self.assertFalse([t for t in threads if t.is_alive()], 'a step did not end')
        return errors

    def asleep_all(self, sampler):
        return harness.wait_for(lambda: not sampler.open_accounts(), WAIT)

    def test_reopens_stay_under_the_bound(self):
        self.assertIn('accounts with their index open: at most %d' % BOUND, self.server.log())
        for n, u in enumerate(users()):
            self.deliver(u, n)
        sampler = IndexSampler(self.server)
        sampler.start()
        sessions = {}  # (user, k) -> Imap
        lock = threading.Lock()

        def open_session(key):
            u, _ = key
            c = imap_util.Imap(self.server.raw('imaps', tls=True, timeout=WAIT))
            with lock:
                sessions[key] = c
            c.ok('LOGIN %s %s' % (imap_util.quote(u), imap_util.quote(pw(u))), timeout=WAIT)
            u_ = c.ok('SELECT INBOX', timeout=WAIT)
            self.assertIn(b'* 1 EXISTS', u_)
            c.idle()

        keys = [(u, k) for u in users() for k in range(2)]
        try:
            self.assertEqual(self.all_at_once(open_session, keys), {}, self.server.log_tail(60))
            self.assertTrue(self.asleep_all(sampler), 'the stores of sessions in IDLE stay open')

            # new mail for every account while it sleeps: each delivery and
            # the announcements to its two sessions open its index again
            self.assertEqual(self.all_at_once(lambda u: self.deliver(u, 100), users()), {},
                             self.server.log_tail(60))

            def pushed(key):
                c = sessions[key]
                while c.line(timeout=WAIT) != b'* 2 EXISTS':
                    pass

            self.assertEqual(self.all_at_once(pushed, keys), {}, self.server.log_tail(60))
            self.assertTrue(self.asleep_all(sampler), 'the stores stay open after the delivery')

            # every session ends IDLE and works, all at once, stores asleep
            def commands(key):
                c = sessions[key]
                c.done(timeout=WAIT)
                c.ok('NOOP', timeout=WAIT)
                f = c.ok('FETCH 1:* (FLAGS)', timeout=WAIT)
                # both messages answered; the other session's STORE may add
                # flag updates of its own (RFC 3501 7.4.2), so the count of
                # lines is not fixed
                self.assertEqual({int(r.split()[1]) for r in f if b' FETCH ' in r}, {1, 2}, f)
                c.ok('STORE 1 +FLAGS (\\Seen)', timeout=WAIT)
                c.ok('STATUS INBOX (MESSAGES UNSEEN)', timeout=WAIT)
                c.ok('SELECT INBOX', timeout=WAIT)
                c.ok('NOOP', timeout=WAIT)
                c.idle()

            self.assertEqual(self.all_at_once(commands, keys), {}, self.server.log_tail(60))
            self.assertTrue(self.asleep_all(sampler))
            for c in sessions.values():
                c.done(timeout=WAIT)
                c.ok('NOOP', timeout=WAIT)
        finally:
            sampler.stop.set()
            sampler.join(10)
            for c in sessions.values():
                c.close()
        self.assertGreater(sampler.samples, 10)
        self.assertLessEqual(sampler.most, BOUND,
                             'the index of %d accounts open at once (%s), mail_max_open %d' %
                             (sampler.most, ', '.join(sampler.most_ids), BOUND))
        # and coffred's own count agrees
        bad = [line for line in self.server.log().splitlines()
               if 'unable to open database file' in line or 'past mail_max_open' in line]
        self.assertEqual(bad, [])


if __name__ == '__main__':
    harness.main()
