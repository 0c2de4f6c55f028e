"""GET /metrics after a scripted mix of sessions: IMAPS logins (LOGIN and
AUTHENTICATE PLAIN, right and wrong passwords, one held by the failure
throttle), SELECT, FETCH, STORE, NOOP and bad commands, a POP3S session
with RETR, LMTP recipients delivered and refused (unknown user, over
quota). Each counter moves by exactly what the test did (counts, never
timings), each command's histogram _count equals its count, and the whole
text parses with prometheus_client's OpenMetrics parser. With metrics = no,
nothing moves."""
import base64
import socket
import sys
import time
import unittest

import harness
import lmtp_util as L
from harness import HOST, ServerTestCase

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    # Debian's python3-prometheus-client, when the python3 on PATH is another
    sys.path.append('/usr/lib/python3/dist-packages')
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

ALICE, CAROL, DAVE = 'alice@example.org', 'carol@example.org', 'dave@example.org'
PASS = 'metrics-test-pass-1'
SENDER = 'sender@example.net'
FAIL_SOURCE = '127.0.0.77'   # a client group of its own (client_prefix_v4 is 32)


def message(subject, size):
    """A message of exactly size bytes, CRLF lines, no leading dot."""
    head = ('From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n' % (SENDER, ALICE, subject)).encode()
    rest, lines = size - len(head), []
    while rest > 0:
        k = min(70, rest - 2)
        if rest - (k + 2) == 1:
            k -= 1   # no one-byte line left over
        lines.append(b'y' * k + b'\r\n')
        rest -= k + 2
    m = head + b''.join(lines)
    assert len(m) == size and m.endswith(b'\r\n'), (len(m), m[-4:])
    return m


def http_get(port, path):
    """(status, body) of a GET on a connection of its own."""
    with harness.Conn(socket.create_connection((HOST, port), timeout=harness.IO_TIMEOUT)) as c:
        c.send('GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' % path)
        status = int(c.line().split()[1])
        length = None
        while True:
            h = c.line()
            if not h:
                break
            k, v = h.split(':', 1)
            if k.lower() == 'content-length':
                length = int(v)
        body = c.read_until_eof()
        if length is not None:
            assert len(body) == length, (len(body), length)
        return status, body.decode()


class Snapshot:
    """The parsed text: {(sample name, sorted labels): value} and the families."""

    def __init__(self, text):
        self.text = text
        self.families = {}
        self.samples = {}
        for f in text_string_to_metric_families(text):
            self.families[f.name] = f
            for s in f.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get(self, name, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))), 0)

    def matching(self, name, drop=()):
        """{labels without drop: value} of every sample called name."""
        out = {}
        for (n, labels), v in self.samples.items():
            if n == name:
                key = tuple((k, x) for k, x in labels if k not in drop)
                out[key] = out.get(key, 0) + v
        return out


def delta(after, before, name, drop=()):
    """The samples called name that moved, as {labels: difference}."""
    a, b = after.matching(name, drop), before.matching(name, drop)
    return {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b)
            if a.get(k, 0) != b.get(k, 0)}


def labels(**kw):
    return tuple(sorted(kw.items()))


class MetricsCase(ServerTestCase):
    HTTP_PORT = harness.free_port()
    CONF = {
        'http_listen': '%s:%d' % (HOST, HTTP_PORT),
        # long enough that an attempt sent once a failure is logged is
        # sure to find the gate closed
        'login_failure_delay': '3s',
        'login_failure_delay_max': '6s',
    }

    @classmethod
    def setUpServer(cls):
        for u in (ALICE, CAROL, DAVE):
            cls.server.add_user(u, PASS)
        rc, out, err = cls.server.ctl('user', 'quota', DAVE, '2k')
        if rc != 0:
            raise RuntimeError('quota: ' + err)
        # mail to read, before the first snapshot
        c = L.lmtp(cls.server)
        try:
            for i in range(2):
                _, data = L.send(c, SENDER, [ALICE, CAROL], message('setup %d' % i, 500))
                assert [d[0] for d in data] == [250, 250], data
        finally:
            c.close()

    gets = 0   # GET /metrics made: each is an http connection

    def snapshot(self):
        type(self).gets += 1
        status, text = http_get(self.HTTP_PORT, '/metrics')
        self.assertEqual(status, 200)
        self.assertTrue(text.endswith('# EOF\n'))
        return Snapshot(text)

    def wait_open(self, protocol, value, before):
        """Waits until no connection of protocol is open beyond before's
        (closes are seen by the server a moment after the client's)."""
        deadline = time.monotonic() + harness.IO_TIMEOUT
        while True:
            s = self.snapshot()
            moved = delta(s, before, 'coffre_connections_open', drop=('tls',))
            if moved.get(labels(protocol=protocol), 0) == value or time.monotonic() > deadline:
                self.assertEqual(moved.get(labels(protocol=protocol), 0), value, moved)
                return s


class Metrics(MetricsCase):

    def imap(self, source=None):
        c = self.server.raw('imaps', tls=True, source=source)
        self.assertTrue(c.line().startswith('* OK'))
        return c

    def ok(self, c, tag, text, status='OK'):
        _, t = c.cmd(tag, text)
        self.assertTrue(t.startswith('%s %s' % (tag, status)), (text, t))

    def imap_mix(self, before):
        c = self.imap()
        self.ok(c, 'a1', harness.imap_login_cmd(ALICE, PASS))
        s = self.snapshot()
        self.assertEqual(delta(s, before, 'coffre_connections_open'),
                         {labels(protocol='imaps', tls='TLS1.3'): 1},
                         'the session in progress is open with TLS 1.3')
        self.ok(c, 'a2', 'SELECT INBOX')
        self.ok(c, 'a3', 'FETCH 1:2 (FLAGS)')
        self.ok(c, 'a4', 'FETCH', 'BAD')
        self.ok(c, 'a5', 'STORE 1 +FLAGS (\\Seen)')
        self.ok(c, 'a6', 'NOOP')
        self.ok(c, 'a7', 'NOOP')
        self.ok(c, 'a8', 'FROBNICATE now', 'BAD')   # not a command: "unknown"
        self.ok(c, 'a9', 'LOGOUT')
        c.close()

        c = self.imap()
        ir = base64.b64encode(('\0%s\0%s' % (ALICE, PASS)).encode()).decode()
        self.ok(c, 'b1', 'AUTHENTICATE PLAIN ' + ir)
        self.ok(c, 'b2', 'LOGOUT')
        c.close()

    def pop3_mix(self):
        with self.server.raw('pop3s', tls=True) as c:
            self.assertTrue(c.line().startswith('+OK'))
            for cmd in ('USER ' + CAROL, 'PASS ' + PASS, 'STAT'):
                c.send(cmd + '\r\n')
                self.assertTrue(c.line().startswith('+OK'), cmd)
            for n in (1, 2):
                c.send('RETR %d\r\n' % n)
                self.assertTrue(c.line().startswith('+OK'))
                while c.line() != '.':
                    pass
            c.send('XYZZY\r\n')
            self.assertTrue(c.line().startswith('-ERR'))
            c.send('QUIT\r\n')
            self.assertTrue(c.line().startswith('+OK'))
            self.assertEqual(c.read_until_eof(), b'')

    def lmtp_mix(self):
        """Two recipients delivered (of two messages), one unknown, one
        over quota; returns the bytes delivered."""
        big, small = message('big', 3000), message('small', 700)
        c = L.lmtp(self.server)
        try:
            rcpt, data = L.send(c, SENDER, [ALICE, 'nobody@example.org', DAVE], big)
            self.assertEqual([r[0] for r in rcpt], [250, 550, 250])
            self.assertTrue(rcpt[1][1].startswith(b'5.1.1'), rcpt)
            self.assertEqual([d[0] for d in data], [250, 552])
            self.assertTrue(data[1][1].startswith(b'5.2.2'), data)
            _, data = L.send(c, SENDER, [ALICE], small)
            self.assertEqual([d[0] for d in data], [250])
        finally:
            c.close()
        return len(big) + len(small)

    def failed_logins(self):
        """A wrong password, then, while its answer is held, an attempt from
        the same client group: held by the throttle before its check."""
        first, second = self.imap(FAIL_SOURCE), self.imap(FAIL_SOURCE)
        first.send('f1 %s\r\n' % harness.imap_login_cmd('ghost@example.org', 'wrong'))
        # the failure is counted (and logged) before its answer is held
        logged = 'auth failed user=ghost@example.org ip=%s' % FAIL_SOURCE
        self.assertTrue(harness.wait_for(lambda: logged in self.server.log(),
                                         harness.IO_TIMEOUT), self.server.log_tail())
        second.send('f2 %s\r\n' % harness.imap_login_cmd('ghost@example.org', 'wrong again'))
        for c, tag in ((first, 'f1'), (second, 'f2')):
            _, t = c.until_tag(tag)
            self.assertTrue(t.startswith(tag + ' NO'), t)
            self.ok(c, tag + 'x', 'LOGOUT')
            c.close()

    def test_counts_match_the_sessions(self):
        before = self.snapshot()
        gets = self.gets
        self.imap_mix(before)
        self.pop3_mix()
        delivered = self.lmtp_mix()
        self.failed_logins()
        for p in ('imaps', 'pop3s', 'lmtp'):
            after = self.wait_open(p, 0, before)

        # connections and TLS (each snapshot since the first is one HTTP
        # connection, the last one's own included)
        self.assertEqual(delta(after, before, 'coffre_connections_total'),
                         {labels(protocol='imaps'): 4, labels(protocol='pop3s'): 1,
                          labels(protocol='lmtp'): 1, labels(protocol='http'): self.gets - gets})
        self.assertEqual(delta(after, before, 'coffre_tls_handshakes_total'),
                         {labels(protocol='imaps', version='TLS1.3'): 4,
                          labels(protocol='pop3s', version='TLS1.3'): 1})

        # logins
        self.assertEqual(delta(after, before, 'coffre_logins_total'), {
            labels(protocol='imap', mechanism='login_command', result='ok'): 1,
            labels(protocol='imap', mechanism='PLAIN', result='ok'): 1,
            labels(protocol='imap', mechanism='login_command', result='failed'): 2,
            labels(protocol='pop3', mechanism='user_pass', result='ok'): 1,
        })
        self.assertEqual(delta(after, before, 'coffre_login_throttled_total'), {(): 1})

        # IMAP commands, by tagged status, and their histograms
        imap = delta(after, before, 'coffre_imap_commands_total')
        self.assertEqual(imap, {
            labels(command='LOGIN', result='ok'): 1,
            labels(command='LOGIN', result='no'): 2,
            labels(command='AUTHENTICATE', result='ok'): 1,
            labels(command='SELECT', result='ok'): 1,
            labels(command='FETCH', result='ok'): 1,
            labels(command='FETCH', result='bad'): 1,
            labels(command='STORE', result='ok'): 1,
            labels(command='NOOP', result='ok'): 2,
            labels(command='unknown', result='bad'): 1,
            labels(command='LOGOUT', result='ok'): 4,
        })
        per_command = delta(after, before, 'coffre_imap_commands_total', drop=('result',))
        self.assertEqual(delta(after, before, 'coffre_imap_command_seconds_count'), per_command)
        self.assertEqual(delta(after, before, 'coffre_imap_command_seconds_bucket',
                               drop=()).get(labels(command='NOOP', le='+Inf')), 2)

        # POP3 commands
        pop3 = delta(after, before, 'coffre_pop3_commands_total')
        self.assertEqual(pop3, {
            labels(command='USER'): 1, labels(command='PASS'): 1, labels(command='STAT'): 1,
            labels(command='RETR'): 2, labels(command='unknown'): 1, labels(command='QUIT'): 1,
        })
        self.assertEqual(delta(after, before, 'coffre_pop3_command_seconds_count'), pop3)

        # LMTP
        self.assertEqual(delta(after, before, 'coffre_lmtp_deliveries_total'), {(): 2})
        self.assertEqual(delta(after, before, 'coffre_lmtp_delivered_bytes_total'),
                         {(): delivered})
        self.assertEqual(delta(after, before, 'coffre_lmtp_rejections_total'),
                         {labels(code='550 5.1.1'): 1, labels(code='552 5.2.2'): 1})

        # storage and the pool moved (how much is the storage's business)
        self.assertGreater(delta(after, before, 'coffre_storage_fsync_seconds_count').get(
            labels(what='message'), 0), 0)
        self.assertGreater(delta(after, before, 'coffre_storage_commit_seconds_count').get(
            (), 0), 0)
        self.assertGreater(delta(after, before, 'coffre_pool_wait_seconds_count').get((), 0), 0)

        # the families the README lists, with their types and units
        types = {f.name: (f.type, f.unit) for f in after.families.values()}
        for name, kind, unit in (
                ('coffre_connections', 'counter', ''),
                ('coffre_connections_open', 'gauge', ''),
                ('coffre_tls_handshakes', 'counter', ''),
                ('coffre_logins', 'counter', ''),
                ('coffre_login_throttled', 'counter', ''),
                ('coffre_imap_commands', 'counter', ''),
                ('coffre_imap_command_seconds', 'histogram', 'seconds'),
                ('coffre_pop3_commands', 'counter', ''),
                ('coffre_pop3_command_seconds', 'histogram', 'seconds'),
                ('coffre_lmtp_deliveries', 'counter', ''),
                ('coffre_lmtp_delivered_bytes', 'counter', 'bytes'),
                ('coffre_lmtp_rejections', 'counter', ''),
                ('coffre_storage_fsync_seconds', 'histogram', 'seconds'),
                ('coffre_storage_commit_seconds', 'histogram', 'seconds'),
                ('coffre_pool_jobs', 'gauge', ''),
                ('coffre_pool_wait_seconds', 'histogram', 'seconds'),
                ('coffre_stores', 'gauge', ''),
                ('coffre_fts_waiting_texts', 'gauge', ''),
                ('process_resident_memory_bytes', 'gauge', 'bytes'),
                ('process_open_fds', 'gauge', ''),
                ('process_max_fds', 'gauge', '')):
            self.assertEqual(types.get(name), (kind, unit), name)
        self.assertGreater(after.get('process_max_fds'), after.get('process_open_fds'))
        self.assertGreater(after.get('process_open_fds'), 5)
        # alice's and carol's stores: held open, asleep or kept, never lost
        stores = after.matching('coffre_stores')
        self.assertGreaterEqual(sum(stores.get(labels(state=s), 0)
                                    for s in ('open', 'asleep')), 1, stores)


class MetricsOff(MetricsCase):
    CONF = dict(MetricsCase.CONF, metrics='no')

    def test_nothing_counted(self):
        before = self.snapshot()
        c = self.server.raw('imaps', tls=True)
        self.assertTrue(c.line().startswith('* OK'))
        _, t = c.cmd('a1', harness.imap_login_cmd(ALICE, PASS))
        self.assertTrue(t.startswith('a1 OK'), t)
        _, t = c.cmd('a2', 'SELECT INBOX')
        self.assertTrue(t.startswith('a2 OK'), t)
        c.cmd('a3', 'LOGOUT')
        c.close()
        lm = L.lmtp(self.server)
        try:
            _, data = L.send(lm, SENDER, [ALICE], message('off', 600))
            self.assertEqual([d[0] for d in data], [250])
        finally:
            lm.close()
        after = self.snapshot()
        # the stores' gauges are read from the stores, not counted
        for s in (before, after):
            moved = {k: v for k, v in s.samples.items() if k[0].startswith('coffre_') and v != 0
                     and k[0] not in ('coffre_stores', 'coffre_fts_waiting_texts')}
            self.assertEqual(moved, {}, 'metrics = no counts nothing')
        self.assertGreater(after.get('process_resident_memory_bytes'), 0)


if __name__ == '__main__':
    unittest.main(verbosity=2)
