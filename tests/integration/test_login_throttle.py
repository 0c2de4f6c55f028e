"""Password guessing against the login throttle, the way an attacker who
has read the code would try it: several threads, a new connection for each
guess, each connection dropped when no answer came within 250 ms (a quick
answer used to mean success, since only failures were delayed), and now
and then a successful login to the attacker's own account (which used to
clear the address's failures). Whatever the client does with its
connections, coffred checks no more guesses than the throttle allows per
address group and per account: an upper bound on what the server counts,
which load can only lower."""
import re
import socket
import threading
import time

import harness
from harness import ServerTestCase, imap_login_cmd

OWN_USER, OWN_PASS = 'mallory@example.org', 'mallory own password'
VICTIM, VICTIM_PASS = 'victor@example.org', 'victor secret password'

DELAY = 0.5      # login_failure_delay below
PENDING = 4      # login_max_pending_per_ip and _per_user below
THREADS = 4
WINDOW = 6.0     # seconds of guessing
DROP_AFTER = 0.25


class Attacker:
    """Guessing threads; counts what they saw."""

    def __init__(self, server, service, sources, victims):
        self.server, self.service = server, service
        self.sources, self.victims = sources, victims
        self.lock = threading.Lock()
        self.sent = self.answered_fail = self.dropped = self.busy = 0
        self.own_ok = self.own_tries = 0
        self.errors = []

    def login(self, c, user, password, timeout):
        """Sends one login; returns the reply line, or None when none came
        within timeout."""
        if self.service == 'imaps':
            c.send('a %s\r\n' % imap_login_cmd(user, password))
            try:
                return c.until_tag('a', timeout=timeout)[1]
            except socket.timeout:
                return None
        c.send('USER %s\r\n' % user)
        r = c.line(timeout=10)
        if not r.startswith('+OK'):
            return r
        c.send('PASS %s\r\n' % password)
        try:
            return c.line(timeout=timeout)
        except socket.timeout:
            return None

    def one(self, n, source):
        """One attempt on a new connection; True when told to come back
        later."""
        own = n % 6 == 5
        user = OWN_USER if own else self.victims[n % len(self.victims)]
        password = OWN_PASS if own else 'guess %d' % n
        try:
            with self.server.raw(self.service, tls=True, source=source, timeout=10) as c:
                c.line()
                r = self.login(c, user, password, 15 if own else DROP_AFTER)
        except (OSError, EOFError) as e:
            with self.lock:
                self.errors.append(repr(e))
            return
        ok = r is not None and (r.startswith('a OK') or r.startswith('+OK'))
        busy = False
        with self.lock:
            if own:
                self.own_tries += 1
                self.own_ok += ok
                return
            self.sent += 1
            if r is None:
                self.dropped += 1
            elif 'UNAVAILABLE' in r or 'SYS/TEMP' in r:
                self.busy += 1
                busy = True
            elif not ok:
                self.answered_fail += 1
            else:
                self.errors.append('a guess succeeded: %r' % r)
        return busy

    def own_login(self, source):
        """The attacker's own account, once, before guessing."""
        with self.server.raw(self.service, tls=True, source=source) as c:
            c.line()
            r = self.login(c, OWN_USER, OWN_PASS, 15)
            assert r.startswith('a OK') or r.startswith('+OK'), r

    def run(self, window):
        for source in self.sources:
            self.own_login(source)
        counter = iter(range(1 << 30))
        counter_lock = threading.Lock()
        stop = time.monotonic() + window

        def worker(source):
            while time.monotonic() < stop:
                with counter_lock:
                    n = next(counter)
                if self.one(n, source):
                    time.sleep(DROP_AFTER)  # as a client told to try later

        threads = [threading.Thread(target=worker, args=(self.sources[i % len(self.sources)],))
                   for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


class LoginThrottle(ServerTestCase):
    CONF = {'login_failure_delay': '500ms', 'login_failure_delay_max': '1s',
            'login_max_pending_per_ip': str(PENDING), 'login_max_pending_per_user': str(PENDING)}

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(OWN_USER, OWN_PASS)
        cls.server.add_user(VICTIM, VICTIM_PASS)

    def failures_logged(self, pattern):
        return len([l for l in self.server.log().splitlines()
                    if 'auth failed' in l and re.search(pattern, l)])

    def attack(self, service, sources, victims, pattern):
        """Guesses for WINDOW seconds; returns (attacker, failures coffred
        checked and logged, the bound the throttle promises)."""
        before = self.failures_logged(pattern)
        t0 = time.monotonic()
        a = Attacker(self.server, service, sources, victims)
        a.run(WINDOW)
        # checks started before the end finish and are logged
        time.sleep(2.0)
        checked = self.failures_logged(pattern) - before
        elapsed = time.monotonic() - t0
        # The first guesses, at most PENDING at once, find no failure yet;
        # from then on one check per login_failure_delay at most (it
        # doubles up to the cap: DELAY is the lowest spacing).
        bound = PENDING + 1 + elapsed / DELAY
        return a, checked, bound

    def check_address(self, service, source):
        a, checked, bound = self.attack(
            service, [source], ['ghost%d@example.org' % i for i in range(5)],
            r'ip=%s$' % re.escape(source))
        report = ('%s from %s: %d guesses checked, bound %.0f; sent %d, dropped %d, '
                  'answered failures %d, busy %d; own logins %d/%d; errors %r'
                  % (service, source, checked, bound, a.sent, a.dropped, a.answered_fail,
                     a.busy, a.own_ok, a.own_tries, a.errors[:3]))
        if harness.os.environ.get('COFFRE_TEST_VERBOSE') == '1':
            print(report)
        self.assertGreater(checked, 0, report)
        self.assertLessEqual(checked, bound, report)
        # the attacker's own logins went through (its pair is known good),
        # and did not clear the address's failures
        self.assertGreater(a.own_ok, 0, report)
        self.assertFalse([e for e in a.errors if 'succeeded' in e], report)

    def check_account(self, service, sources):
        a, checked, bound = self.attack(service, sources, [VICTIM],
                                        r'user=%s ' % re.escape(VICTIM))
        report = ('%s on %s from %s: %d guesses checked, bound %.0f; sent %d, dropped %d, '
                  'answered failures %d, busy %d; own logins %d/%d; errors %r'
                  % (service, VICTIM, sources, checked, bound, a.sent, a.dropped,
                     a.answered_fail, a.busy, a.own_ok, a.own_tries, a.errors[:3]))
        if harness.os.environ.get('COFFRE_TEST_VERBOSE') == '1':
            print(report)
        self.assertGreater(checked, 0, report)
        self.assertLessEqual(checked, bound, report)
        self.assertFalse([e for e in a.errors if 'succeeded' in e], report)

    def test_imaps_guesses_per_address(self):
        self.check_address('imaps', '127.0.0.31')

    def test_pop3s_guesses_per_address(self):
        self.check_address('pop3s', '127.0.0.32')

    def test_imaps_guesses_per_account(self):
        self.check_account('imaps', ['127.0.0.41', '127.0.0.42', '127.0.0.43', '127.0.0.44'])

    def test_pop3s_guesses_per_account(self):
        # the account's failures from the IMAP test are still counted; other
        # addresses, so only the account links them
        self.check_account('pop3s', ['127.0.0.51', '127.0.0.52', '127.0.0.53', '127.0.0.54'])

    def test_owner_logs_in_during_a_distributed_attack(self):
        # The owner has logged in from home before: a guessing neighbour or
        # a distributed attack does not hold the owner back there.
        with self.server.raw('imaps', tls=True, source='127.0.0.61') as c:
            c.line()
            _, t = c.cmd('a', imap_login_cmd(VICTIM, VICTIM_PASS))
            self.assertTrue(t.startswith('a OK'), t)
        a = Attacker(self.server, 'imaps', ['127.0.0.62', '127.0.0.63'], [VICTIM])
        th = threading.Thread(target=a.run, args=(4.0,))
        th.start()
        try:
            time.sleep(1.0)
            with self.server.raw('imaps', tls=True, source='127.0.0.61') as c:
                c.line()
                _, t = c.cmd('a', imap_login_cmd(VICTIM, VICTIM_PASS))
                self.assertTrue(t.startswith('a OK'), t)
        finally:
            th.join()


if __name__ == '__main__':
    harness.main()
