"""One account cannot starve the others. While account A runs the costliest
command coffre accepts, a SEARCH with hundreds of header keys that each read
every message file, on eight connections in a loop, account B logs in and
reads a message about as fast as when the server is quiet: within 10x, the
quiet time taken as at least 50 ms so that scheduling noise on a small
machine cannot fail the test. (Each of those SEARCHes holds a pool thread
from start to end; a FETCH 1:* BODY[] or a SEARCH TEXT answered from the
full-text index would leave threads free between its steps.) And with every
pool thread busy with other accounts' work, B's password is still checked
at once (LoginNotQueued).

A's clients run in processes of their own (the test's own client must not
wait for them on Python's GIL) and note when each command was sent and
answered, so that the test shows that A's commands were in progress during
each of B's loaded measurements. A SEARCH the server refuses as too costly
(NO [LIMIT]) is replaced by one with half the keys.

After the load, the test waits until A's commands already sent have begun
(a new command of A's, queued behind them, is answered), so that coffred
stops on SIGTERM in time."""
import datetime
import multiprocessing
import os
import socket
import statistics
import tempfile
import time

import harness
import imap_util
from imap_util import Imap, ImapCase, USER, PASS, USER2, PASS2, make_message

USER3, PASS3 = 'carol@example.org', 'another account, busy too'
SAMPLES = 7
FACTOR = 10
QUIET_FLOOR = 0.050       # seconds


def a_message(i, to=USER):
    # a few kilobytes each, with several header fields
    extra = ''.join('X-Field-%d: value %d of message %d\r\n' % (k, k, i) for k in range(12))
    body = ''.join('line %d of message %d, some words to search through\r\n' % (k, i)
                   for k in range(40))
    return make_message(i, body=body, extra=extra, to=to)


def _answer(conn, tag):
    """Reads up to the tagged reply of tag and returns it (what comes before
    it is dropped)."""
    mark = b'\r\n' + tag + b' '
    buf, conn.buf = b'\r\n' + conn.buf, b''
    while True:
        i = buf.find(mark)
        if i >= 0:
            end = buf.find(b'\r\n', i + 2)
            if end >= 0:
                return buf[i + 2:end]
        else:
            buf = buf[-(len(mark) - 1):]   # what comes before is answered data
        chunk = conn.sock.recv(1 << 16)
        if not chunk:
            raise EOFError('connection closed by the server')
        buf += chunk


def header_search(keys):
    """A SEARCH that reads every message file once per key."""
    return 'UID SEARCH ' + ' '.join('NOT HEADER X-F%d y' % k for k in range(keys))


def load_client(port, cafile, user, password, keys, record_path):
    """One loading connection, in a process of its own: a SEARCH with keys
    header keys in a loop until killed, two of them always sent and not yet
    answered, so that the server has the next one at hand when one ends and
    the connection is never idle while the client reads an answer. Notes
    'S tag t' when a command is sent and 'D tag t status' when answered (t:
    time.monotonic(), one clock for every process)."""
    out = os.open(record_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sock = socket.create_connection((harness.HOST, port), timeout=300)
    sock = harness.client_context(cafile).wrap_socket(sock, server_hostname='localhost')
    conn = harness.Conn(sock, timeout=300)
    conn.line()
    n = 0

    def send(text):
        nonlocal n
        n += 1
        tag = b'L%d' % n
        os.write(out, b'S %s %.6f\n' % (tag, time.monotonic()))
        conn.send(tag + b' ' + text.encode() + b'\r\n')
        return tag

    def answer(tag):
        reply = _answer(conn, tag)
        status = reply.split(b' ', 2)[1]
        if status == b'NO' and b'[LIMIT]' in reply:
            status = b'LIMIT'
        os.write(out, b'D %s %.6f %s\n' % (tag, time.monotonic(), status))
        return status

    answer(send('LOGIN %s %s' % (harness.imap_quote(user), harness.imap_quote(password))))
    answer(send('SELECT INBOX'))
    pending = [(send(header_search(keys)), keys)]
    while True:
        pending.append((send(header_search(keys)), keys))
        tag, sent_keys = pending.pop(0)
        if answer(tag) == b'LIMIT' and sent_keys == keys and keys > 1:
            keys //= 2          # the costliest SEARCH the server still accepts


def read_records(path):
    """[(sent, answered or None, status)] of one load client, commands in
    the order sent; the two first ones are LOGIN and SELECT."""
    cmds, by_tag = [], {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) < 3:
                continue        # a line the killed client did not finish
            if p[0] == 'S':
                by_tag[p[1]] = len(cmds)
                cmds.append([float(p[2]), None, None])
            elif p[0] == 'D' and p[1] in by_tag and len(p) == 4:
                cmds[by_tag[p[1]]][1:] = [float(p[2]), p[3]]
    return cmds


class LoadCase(ImapCase):
    """LOADERS: (user, password) of each loading connection;
    MESSAGES: {user: count} put into the loading accounts' INBOX; KEYS:
    header keys per SEARCH, about 2.5 ms each per 1,000 messages in a
    release build on a quiet server; a sanitizer build takes forty times
    longer, and gets a fortieth of the keys (coffred must still stop in
    time after the load)."""

    LOADERS = ()
    MESSAGES = {}
    KEYS = 300

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        for u, n in cls.MESSAGES.items():
            imap_util.drop_messages(cls.server, u, [a_message(i, u) for i in range(n)])
        imap_util.drop_messages(cls.server, USER2, [make_message(1, to=USER2)])
        # every index built, and B's password verified once (later logins
        # are answered from the authentication cache, loaded or not)
        for u, p in cls.USERS:
            c = Imap(cls.server.raw('imaps', tls=True))
            c.login(u, p)
            c.select('INBOX')
            c.logout()
        cls.keys = max(1, cls.KEYS // 40) if harness.sanitized() else cls.KEYS

    def measure_under_load(self, measure):
        """measure() quiet, then under the load of LOADERS; returns (quiet
        median, loaded median, loaded samples). Checks that the loading
        commands were in progress during each loaded measurement, and
        answered OK or NO [LIMIT]."""
        bound_of = lambda q: FACTOR * max(q, QUIET_FLOOR)
        quiet = statistics.median(b - a for a, b in (measure() for _ in range(SAMPLES)))
        bound = bound_of(quiet)

        tmp = tempfile.mkdtemp(prefix='load-', dir=self.server.tmp)
        paths = [os.path.join(tmp, 'c%d' % i) for i in range(len(self.LOADERS))]
        mp = multiprocessing.get_context('fork')
        procs = [mp.Process(target=load_client, daemon=True,
                            args=(self.server.ports['imaps'], self.server.cert, u, p,
                                  self.keys, paths[i]))
                 for i, (u, p) in enumerate(self.LOADERS)]
        for p in procs:
            p.start()
        windows = []
        try:
            # every connection logged in, selected, and its first costly
            # command sent
            deadline = time.monotonic() + 60
            while not all(os.path.exists(p) and len(read_records(p)) >= 3 for p in paths):
                self.assertLess(time.monotonic(), deadline, 'the load did not get going')
                for p in procs:
                    self.assertTrue(p.is_alive(), 'a load client died')
                time.sleep(0.05)
            time.sleep(0.5)     # the server is busy with them
            for _ in range(SAMPLES):
                windows.append(measure())
                # the median is past the bound already: stop there
                if sum(b - a > bound for a, b in windows) > SAMPLES // 2:
                    break
                for p in procs:
                    self.assertTrue(p.is_alive(), 'a load client died')
        finally:
            stopped = time.monotonic()
            for p in procs:
                p.kill()
            for p in procs:
                p.join(10)
            self.drain()
        records = [read_records(p) for p in paths]

        # a command was in progress on every loading connection during each
        # measurement: sent before it ended, answered after it began (or
        # not before the load stopped)
        for a, b in windows:
            busy = sum(any(s < b and (d if d is not None else stopped) > a for s, d, _ in r[2:])
                       for r in records)
            self.assertEqual(busy, len(self.LOADERS),
                             'the load was not in progress on every connection during a '
                             'measurement')
        statuses = [st for r in records for _, _, st in r if st is not None]
        self.assertTrue(set(statuses) <= {'OK', 'LIMIT'}, statuses)

        took = [d - s for r in records for s, d, _ in r[2:] if d is not None]
        loaded = sorted(b - a for a, b in windows)
        median = statistics.median(loaded + [float('inf')] * (SAMPLES - len(loaded)))
        print('quiet %.0f ms, loaded %.0f ms (%s); SEARCHes of %d header keys: %d answered%s'
              % (quiet * 1000, median * 1000, ', '.join('%.0f' % (x * 1000) for x in loaded),
                 self.keys, len(took),
                 ', median %.0f ms' % (statistics.median(took) * 1000) if took else ''))
        return quiet, median, bound

    def drain(self):
        """Waits until the loading accounts' commands already sent have
        begun: a new command of each account is queued behind them."""
        for u, p in sorted(set(self.LOADERS)):
            c = Imap(self.server.raw('imaps', tls=True, timeout=300))
            try:
                c.login(u, p)
                c.ok('EXAMINE INBOX', timeout=300)
                c.logout()
            finally:
                c.close()


class Fairness(LoadCase):
    """Eight connections of A."""

    LOADERS = ((USER, PASS),) * 8
    MESSAGES = {USER: 1000}

    def b_reads(self):
        """B's LOGIN, SELECT and FETCH BODY[] on a new connection; returns
        when the three commands began and ended."""
        c = self.connect()
        # each command in one segment: the client's writes must not wait for
        # the server's delayed ACK (40 ms on Linux)
        c.c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.monotonic()
        c.login(USER2, PASS2)
        c.select('INBOX')
        got = c.fetch('1', 'BODY[]')
        t1 = time.monotonic()
        self.assertIn(b'message 1', got[1][0]['BODY[]'])
        c.logout()
        return t0, t1

    def test_login_and_fetch_under_load_of_another_account(self):
        quiet, loaded, bound = self.measure_under_load(self.b_reads)
        self.assertLessEqual(loaded, bound,
                             'B took %.0f ms to log in and read under the load of A, quiet '
                             '%.0f ms' % (loaded * 1000, quiet * 1000))


def log_time(line):
    """The time (time.time() scale) of a coffred log line."""
    stamp = line.split(' ', 1)[0]
    return datetime.datetime.strptime(stamp, '%Y-%m-%dT%H:%M:%S.%fZ').replace(
        tzinfo=datetime.timezone.utc).timestamp()


class LoginNotQueued(LoadCase):
    """Every pool thread busy with the work of other accounts (a pool of two,
    one job per account, two accounts each running SEARCH with header keys):
    B's password is still checked at once, on the login service's own
    threads. Measured from the LOGIN sent to coffred's log line of the
    login, written when the check answers (the tagged OK follows once B's
    store is open, which is pool work)."""

    CONF = {'thread_pool_size': '2', 'max_jobs_per_account': '1'}
    USERS = ((USER, PASS), (USER2, PASS2), (USER3, PASS3))
    LOADERS = ((USER, PASS), (USER3, PASS3))
    MESSAGES = {USER: 1000, USER3: 1000}
    KEYS = 600

    def b_login(self):
        """B's LOGIN on a new connection, left as soon as coffred logs that
        the check answered (B's store is not waited for); returns when it
        was sent and when the check answered, on the time.monotonic()
        scale."""
        c = Imap(self.server.raw('imaps', tls=True))
        try:
            c.c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connected = ' remote=%s:%d connected' % (harness.HOST, c.c.sock.getsockname()[1])
            mono, wall = time.monotonic(), time.time()
            c.send('T1 LOGIN %s %s\r\n' % (harness.imap_quote(USER2), harness.imap_quote(PASS2)))
            while True:
                log = self.server.log().splitlines()
                conn = [l.split('conn=', 1)[1].split(' ', 1)[0] for l in log if connected in l]
                done = [log_time(l) for l in log
                        if conn and 'conn=%s imap login user=%s' % (conn[-1], USER2) in l]
                if done:
                    break
                self.assertLess(time.monotonic() - mono, 120, 'B\'s login not checked')
                time.sleep(0.005)   # coffred writes the line
        finally:
            c.close()
        # the log has milliseconds: a check within the millisecond reads 0
        return mono, mono + max(done[-1] - wall, 0)

    def test_login_while_the_pool_is_busy(self):
        quiet, loaded, bound = self.measure_under_load(self.b_login)
        self.assertLessEqual(loaded, bound,
                             'the password check of B took %.0f ms while the pool was busy, '
                             'quiet %.0f ms' % (loaded * 1000, quiet * 1000))


if __name__ == '__main__':
    harness.main()
