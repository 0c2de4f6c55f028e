"""Rapid STOREs on one mailbox of 150 messages, one session, CONDSTORE
enabled: the flags every STORE leaves are computed here, and the server's
must match them at the end (FETCH 1:* FLAGS) and in every FETCH FLAGS a
non-.SILENT STORE answers with. The session is the only one changing the
mailbox, so it must never announce FLAGS for a change of its own: not in
the answer to a .SILENT STORE (MODSEQ alone there, RFC 7162 3.1.3), not
later as someone else's change. Meanwhile the server renames the Maildir
files to follow the flags (the flag sync); a rescan must not take a name
it wrote for a change made by another program.

STORE_RACE_COMMANDS (default 1500, 500 under the sanitizers) STOREs are
generated from STORE_RACE_SEED (default 1)."""
import os
import random
import re

import harness
from imap_util import ImapCase, fill_mailbox, make_message

BOX = 'Race'
N = 150
SEED = int(os.environ.get('STORE_RACE_SEED', '1'))
COMMANDS = int(os.environ.get('STORE_RACE_COMMANDS', '500' if harness.sanitized() else '1500'))
SYSTEM = ['\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft']
KEYWORDS = ['$Forwarded', 'Junk', '$Label1', 'work']

FETCH_FLAGS = re.compile(rb'^\* (\d+) FETCH \(.*FLAGS \(([^)]*)\)')


def norm(flags):
    return frozenset(f.lower() for f in flags if f.lower() != '\\recent')


class StoreRace(ImapCase):
    maxDiff = None

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        fill_mailbox(cls.server, BOX, [make_message(i) for i in range(N)])

    def test_rapid_stores(self):
        r = random.Random(SEED)
        c = self.login()
        c.ok('ENABLE CONDSTORE')
        c.select(BOX)
        want = {n: frozenset() for n in range(1, N + 1)}
        echoes = []
        for i in range(COMMANDS):
            lo = r.randint(1, N)
            hi = min(N, lo + r.choice([0, 0, 1, 5, 30, 150]))
            seqs = range(lo, hi + 1)
            op = r.choice(['+', '-', ''])
            silent = r.random() < 0.5
            flags = r.sample(SYSTEM + KEYWORDS, r.randint(0, 3))
            text = 'STORE %d:%d %sFLAGS%s (%s)' % (lo, hi, op, '.SILENT' if silent else '',
                                                  ' '.join(flags))
            untagged = c.ok(text)
            fl = norm(flags)
            for n in seqs:
                if op == '+':
                    want[n] = want[n] | fl
                elif op == '-':
                    want[n] = want[n] - fl
                else:
                    want[n] = fl
            for line in untagged:
                m = FETCH_FLAGS.match(line)
                if not m:
                    continue
                n = int(m.group(1))
                if silent or n not in seqs:
                    echoes.append('%s: %r' % (text, line))
                else:
                    self.assertEqual(norm(m.group(2).decode().split()), want[n],
                                     '%s: message %d' % (text, n))
            # a reader now and then, as clients do between changes
            if i % 7 == 0:
                for line in c.ok('NOOP'):
                    if FETCH_FLAGS.match(line):
                        echoes.append('NOOP after %s: %r' % (text, line))
        got = {}
        for line in c.ok('FETCH 1:* FLAGS'):
            m = FETCH_FLAGS.match(line)
            if m:
                got[int(m.group(1))] = norm(m.group(2).decode().split())
        wrong = ['%d: %s, not %s' % (n, sorted(got.get(n, ())), sorted(want[n]))
                 for n in range(1, N + 1) if got.get(n) != want[n]]
        self.assertEqual(wrong, [], 'flags after %d STOREs (seed %d)' % (COMMANDS, SEED))
        self.assertEqual(echoes[:10], [], 'own changes announced back')
        c.logout()


if __name__ == '__main__':
    harness.main()
