"""What one command may cost and what one account may hold: past
mail_max_query_steps (SQLite steps of one index read), mail_max_header_searches
(SEARCH HEADER keys that read the message files), imap_max_fetch_items,
mail_max_mailboxes and mail_max_subscriptions a command answers
NO [LIMIT] (RFC 5530), changes nothing, and the session goes on.
LIST (SUBSCRIBED RECURSIVEMATCH) grows linearly with the subscriptions, and
a big LIST answer is produced as the client reads it, not all at once."""
import os
import re
import socket
import sqlite3
import time
import unittest

import harness
import imap_util
from imap_util import ImapCase, Imap, USER, USER2, PASS2, make_message

MB = 1 << 20


def assert_limit(case, c, command):
    """command is answered NO [LIMIT]; returns its untagged responses."""
    st, t, u = c.status_of(command)
    case.assertEqual(st, 'NO', '%s: %r' % (command[:60], t))
    case.assertIn(b'[LIMIT]', t)
    return u


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])


class CommandCost(ImapCase):
    """The cost budget of one command: SEARCH, FETCH, and any index read."""

    MESSAGES = 300
    CONF = {
        'mail_max_query_steps': '100k',
        'mail_max_header_searches': '8',
        'imap_max_fetch_items': '16',
        'max_bad_commands': '1000',
    }

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        # the other account's store first: coffred makes users/ its own
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login(USER2, PASS2)
        c.logout()
        msgs = [make_message(i, extra='X-F%d: v%d\r\n' % (i % 3, i)) for i in range(cls.MESSAGES)]
        imap_util.drop_messages(cls.server, USER, msgs)

    def still_works(self, c):
        """The session that was refused goes on: SEARCH, FETCH, NOOP."""
        u = c.ok('SEARCH ALL')
        self.assertEqual(len(imap_util.search_result(u)), self.MESSAGES)
        u = c.ok('FETCH 1:3 (FLAGS UID)')
        self.assertEqual(len([r for r in u if b' FETCH ' in r]), 3)
        c.ok('NOOP')

    def test_search_header_keys_past_the_cap(self):
        c, _ = self.selected()
        keys = ' '.join('NOT HEADER X-F%d nothing' % k for k in range(9))
        assert_limit(self, c, 'SEARCH ' + keys)
        self.still_works(c)
        # at the cap it is answered, each message read once for all keys
        keys = ' '.join('NOT HEADER X-F%d nothing' % k for k in range(8))
        self.assertEqual(len(imap_util.search_result(c.ok('SEARCH ' + keys))), self.MESSAGES)
        u = c.ok('SEARCH HEADER X-F1 v298 NOT HEADER X-F2 zz HEADER X-F1 ""')
        self.assertEqual(len(imap_util.search_result(u)), 1)
        # fields the index keeps do not count against it
        keys = ' '.join('NOT HEADER Subject nothing%d' % k for k in range(20))
        self.assertEqual(len(imap_util.search_result(c.ok('SEARCH ' + keys))), self.MESSAGES)

    def test_statement_past_the_step_budget(self):
        c, _ = self.selected()
        # each key is a few steps per message: 60 of them over 300
        # messages are far past 100k steps
        keys = ' '.join('NOT KEYWORD k%d' % k for k in range(60))
        assert_limit(self, c, 'SEARCH ' + keys)
        self.still_works(c)
        self.assertAlive()

    def test_fetch_items_past_the_cap(self):
        c, _ = self.selected()
        u = assert_limit(self, c, 'FETCH 1:* (%s)' % ' '.join(['BODY.PEEK[HEADER]'] * 17))
        self.assertEqual([r for r in u if b' FETCH ' in r], [])
        self.still_works(c)
        u = c.ok('FETCH 1 (%s)' % ' '.join(['FLAGS'] * 16))
        self.assertEqual(len([r for r in u if b' FETCH ' in r]), 1)


class AccountCaps(ImapCase):
    """Mailboxes and subscriptions per account (a new account has six
    mailboxes, all subscribed)."""

    CONF = {'mail_max_mailboxes': '12', 'mail_max_subscriptions': '8'}

    def names(self, c):
        out = []
        for r in c.ok('LIST "" "*"'):
            v = imap_util.parse(b'(' + r.split(b' "/" ', 1)[1] + b')')[0]
            out.append(v if isinstance(v, str) else v.decode())
        return sorted(out)

    def test_mailboxes_past_the_cap(self):
        c = self.login(USER2, PASS2)
        for i in range(5):
            c.ok('CREATE m%d' % i)
        # one left: a name whose parent is missing needs two
        assert_limit(self, c, 'CREATE p/q')
        c.ok('CREATE m5')
        before = self.names(c)
        self.assertEqual(len(before), 12)
        for cmd in ('CREATE m6', 'RENAME m0 p/q', 'RENAME INBOX m7'):
            assert_limit(self, c, cmd)
        self.assertEqual(self.names(c), before, 'a refused command changed the list')
        # renaming within the cap, and creating again after a DELETE
        c.ok('RENAME m0 m0b')
        c.ok('DELETE m1')
        c.ok('CREATE m6')
        c.select('INBOX')
        c.ok('NOOP')
        self.assertAlive()

    def test_subscriptions_past_the_cap(self):
        c = self.login()
        c.ok('SUBSCRIBE s1')
        c.ok('SUBSCRIBE s2')
        assert_limit(self, c, 'SUBSCRIBE s3')
        c.ok('SUBSCRIBE s2')  # already there: still OK
        subs = c.ok('LSUB "" "*"')
        self.assertEqual(len(subs), 8)
        c.ok('UNSUBSCRIBE s1')
        c.ok('SUBSCRIBE s3')
        c.ok('NOOP')
        self.assertAlive()


def fill_subscriptions(server, subs):
    """Writes subscriptions {address: [names]} straight into the accounts'
    indexes, coffred stopped (thousands of SUBSCRIBE, each a durable
    commit, take minutes); each account has logged in once."""
    for addr in subs:
        c = Imap(server.raw('imaps', tls=True))
        c.login(addr, imap_util.PASS if addr == USER else PASS2)
        c.logout()
        c.close()
    server.stop()
    for addr, names in subs.items():
        path = os.path.join(server.data_dir, 'users', str(imap_util.user_id(server, addr)),
                            'index.sqlite')
        db = sqlite3.connect(path)
        db.executemany('INSERT INTO subscriptions(name) VALUES (?)', [(n,) for n in names])
        db.commit()
        db.close()
    server.start()


class RecursiveMatch(ImapCase):
    """LIST (SUBSCRIBED RECURSIVEMATCH) over n and 4n subscriptions."""

    N = 3000

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        # parents (not subscribed) with four subscribed children each
        fill_subscriptions(cls.server, {
            USER: ['g%d/c%d' % (i // 4, i) for i in range(cls.N)],
            USER2: ['g%d/c%d' % (i // 4, i) for i in range(4 * cls.N)],
        })

    def cost(self, c, rounds):
        """CPU ticks coffred spends on `rounds` LIST (SUBSCRIBED
        RECURSIVEMATCH), and the lines of one answer."""
        pid = self.server.proc.pid
        t0 = cpu_ticks(pid)
        for _ in range(rounds):
            # "%" stops at the parents, so each is answered with CHILDINFO
            # ("*" would answer the children themselves, RFC 5258 3.5)
            u = c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', timeout=300)
        return cpu_ticks(pid) - t0, u

    def test_recursivematch_is_linear(self):
        n = self.N
        a = self.login()
        b = self.login(USER2, PASS2)
        rounds = 10
        cost_small, u = self.cost(a, rounds)
        self.assertEqual(len([r for r in u if b'CHILDINFO' in r]), n // 4)
        self.assertTrue(b'* LIST (\\NonExistent) "/" "g0" ("CHILDINFO" ("SUBSCRIBED"))' in u,
                        'no CHILDINFO for g0')
        cost_large, u = self.cost(b, rounds)
        self.assertEqual(len([r for r in u if b'CHILDINFO' in r]), n)
        self.assertEqual(len(u), n + 6)
        # linear: four times as much; quadratic: sixteen. Measured in CPU
        # time of coffred (not the wall clock), with a factor two of margin
        self.assertLess(cost_large, 8 * max(cost_small, 10),
                        'LIST of 4n subscriptions cost %d ticks, of n %d' % (cost_large,
                                                                             cost_small))


class BigList(ImapCase):
    """An LSUB answer of 20 MB (more than loopback's socket buffers hold) to
    a client that does not read."""

    CONF = {'imap_output_timeout': '3s'}
    COUNT = 100000

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        # 190-byte names
        fill_subscriptions(cls.server,
                           {USER2: ['n%06d/%s' % (i, 'x' * 183) for i in range(cls.COUNT)]})

    def test_big_list_is_streamed(self):
        s = socket.create_connection((harness.HOST, self.server.ports['imaps']))
        s = self.server.ctx().wrap_socket(s, server_hostname='localhost')
        v = Imap(harness.Conn(s))
        v.login(USER2, PASS2)
        port = '127.0.0.1:%d' % v.c.sock.getsockname()[1]
        v.c.sock.sendall(b'S1 LSUB "" "*"\r\n')
        # never read: past imap_output_timeout the session is dropped
        time.sleep(5)
        try:
            v.c.read_until_eof(timeout=30, limit=64 * MB)
        except socket.timeout:
            self.fail('a client that does not read was never disconnected')
        peak = None
        deadline = time.time() + 10
        while peak is None and time.time() < deadline:
            for line in self.server.log().splitlines():
                m = re.search(r'remote=(\S+) user=\S+ closed .*queued_peak=(\d+)', line)
                if m and m.group(1) == port:
                    peak = int(m.group(2))
            time.sleep(0.1)
        self.assertIsNotNone(peak, 'the stalled session was not closed')
        self.assertLess(peak, 1536 * 1024, 'a 20 MB LSUB queued %d bytes at once' % peak)
        # read, the whole answer comes, in name order
        c = self.login(USER2, PASS2)
        u = c.ok('LSUB "" "*"', timeout=120)
        self.assertEqual(len(u), self.COUNT + 6)
        names = [r.rsplit(b' ', 1)[1] for r in u]
        self.assertEqual(names, sorted(names))
        self.assertAlive()


if __name__ == '__main__':
    unittest.main()
