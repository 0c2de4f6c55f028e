"""Per-user \\Seen on shared mailboxes (RFC 4314 leaves \\Seen to the
server; coffre keeps one per user by default). alice shares a folder
with bob and carol (lrswi). bob reads a message (non-PEEK FETCH) and
marks another (STORE +FLAGS \\Seen): his FETCH FLAGS, SEARCH SEEN/UNSEEN,
STATUS UNSEEN and SELECT's UNSEEN show it, and his other session in IDLE
is told (FETCH FLAGS), while alice (the owner) and carol still see both
unseen, and alice's session in IDLE hears nothing of it. alice's own
\\Seen stays hers; CONDSTORE's MODSEQ of bob's change moves; APPEND with
\\Seen by bob is seen by bob only, and so is a COPY into the folder,
while a COPY out of it takes bob's \\Seen; a user without `s` (lrw)
sets no \\Seen by FETCH and may not STORE it;
bob's \\Seen survives `coffrectl mailbox reindex` of alice's index.
With the mailbox's \\Seen made shared (`coffrectl mailbox seen ...
shared`), everybody reads and writes the one \\Seen of the messages."""
import re
import unittest

import harness
from imap_util import Imap, ImapCase, make_message

PASS = 'acl seen pass 1'
A = 'alice@example.org'
B = 'bob@example.org'
C = 'carol@example.org'
D = 'dave@example.org'
BOXES = ('team', 'ops', 'kept', 'cp')


def shared(name):
    return 'Shared/%s/%s' % (A, name)


def flags_of(c, seqs):
    """{seq: set of flags} of FETCH seqs (FLAGS), \\Recent left out."""
    out = {}
    for n, (it, _raw) in c.fetch(seqs, '(FLAGS)').items():
        out[n] = set(str(f) for f in it['FLAGS']) - {'\\Recent'}
    return out


def status_unseen(c, name):
    u = c.ok('STATUS %s (UNSEEN)' % harness.imap_quote(name))
    for r in u:
        m = re.search(rb'\(UNSEEN (\d+)\)', r)
        if r.startswith(b'* STATUS') and m:
            return int(m.group(1))
    raise AssertionError('no STATUS answer: %r' % u)


class AclSeen(ImapCase):
    USERS = ((A, PASS), (B, PASS), (C, PASS), (D, PASS))

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        for box in BOXES:
            cls._owner_do(lambda i, box=box: (
                i.ok('CREATE %s' % box),
                [i.append(box, make_message(k, subject='%s %d' % (box, k))) for k in range(1, 5)]))
        n = cls._reloads()
        for box in BOXES:
            for who, rights in ((B, 'lrswi'), (C, 'lrswi'), (D, 'lrw')):
                rc, out, err = cls.server.ctl('mailbox', 'acl', 'set', A, box, who, rights)
                assert rc == 0, (out, err)
        cls._wait_reloads(n + 3 * len(BOXES))

    @classmethod
    def _owner_do(cls, fn):
        i = Imap(cls.server.raw('imaps', tls=True))
        try:
            i.login(A, PASS)
            fn(i)
            i.logout()
        finally:
            i.close()

    @classmethod
    def _reloads(cls):
        return sum(1 for l in cls.server.log().splitlines() if 'acl: reloaded' in l)

    @classmethod
    def _wait_reloads(cls, n):
        harness.wait_for(lambda: cls._reloads() >= n, 10)
        assert cls._reloads() >= n, cls.server.log_tail()

    def as_user(self, user, box=None, examine=False):
        c = self.login(user, PASS)
        if box:
            c.select(box, examine=examine)
        return c

    def test_per_user_seen(self):
        box = shared('team')
        alice = self.as_user(A, 'team')
        bob = self.as_user(B)
        info = bob.select(box)
        self.assertEqual(info['exists'], 4)
        self.assertEqual(info['unseen'], 1, 'bob starts with every message unseen')
        carol = self.as_user(C, box)
        bob2 = self.as_user(B, box)
        alice_idle = self.as_user(A, 'team')

        # alice's own \Seen: hers alone
        alice.ok('STORE 4 +FLAGS (\\Seen)')
        self.assertEqual(flags_of(bob, '4')[4], set(), "alice's \\Seen is not bob's")

        bob2.ok('ENABLE CONDSTORE')
        before = int(bob2.fetch('1', '(MODSEQ)')[1][0]['MODSEQ'][0])
        bob2.idle()
        alice_idle.idle()

        # bob reads message 1 and marks message 2
        u = bob.ok('FETCH 1 (BODY[TEXT])')
        self.assertTrue(any(re.match(rb'\* 1 FETCH .*FLAGS \(\\Seen\)', r, re.S) for r in u),
                        'a non-PEEK fetch sets \\Seen: %r' % u)
        u = bob.ok('STORE 2 +FLAGS (\\Seen)')
        self.assertTrue(any(re.match(rb'\* 2 FETCH \(FLAGS \(\\Seen\)', r) for r in u), u)

        # bob's other session, in IDLE, is told of both
        got = set()
        while got != {1, 2}:
            r = bob2.line(timeout=10)
            m = re.match(rb'\* (\d+) FETCH \(.*FLAGS \(\\Seen\)', r)
            if m:
                got.add(int(m.group(1)))
        bob2.done()
        after = int(bob2.fetch('1', '(MODSEQ)')[1][0]['MODSEQ'][0])
        self.assertGreater(after, before, "bob's change moves the message's MODSEQ")

        # a change everybody sees (carol flags 3): alice's IDLE announces
        # it, and nothing of bob's \Seen before it
        carol.ok('STORE 3 +FLAGS (\\Flagged)')
        alice_idle.line_until(re.compile(rb'\* 3 FETCH \(.*\\Flagged'),
                              forbid=rb'^\* [12] FETCH')
        alice_idle.done()

        # bob sees his \Seen everywhere
        self.assertEqual(flags_of(bob, '1:4'),
                         {1: {'\\Seen'}, 2: {'\\Seen'}, 3: {'\\Flagged'}, 4: set()})
        self.assertEqual(bob.search('UNSEEN'), [3, 4])
        self.assertEqual(bob.search('SEEN'), [1, 2])
        self.assertEqual(bob.search('UNSEEN FLAGGED'), [3])
        self.assertEqual(status_unseen(bob, box), 2)
        self.assertEqual(bob.select(box)['unseen'], 3, "SELECT's first unseen is bob's")

        # alice and carol still see 1 and 2 unseen
        self.assertEqual(flags_of(alice, '1:3'), {1: set(), 2: set(), 3: {'\\Flagged'}})
        self.assertEqual(alice.search('UNSEEN'), [1, 2, 3])
        self.assertEqual(status_unseen(alice, 'team'), 3)
        self.assertEqual(flags_of(carol, '1:4'), {1: set(), 2: set(), 3: {'\\Flagged'}, 4: set()})
        self.assertEqual(carol.search('UNSEEN'), [1, 2, 3, 4])
        self.assertEqual(carol.search('SEEN'), [])
        self.assertEqual(status_unseen(carol, box), 4)

        # bob takes \Seen away again, for himself
        bob.ok('STORE 1 -FLAGS.SILENT (\\Seen)')
        self.assertEqual(bob.search('UNSEEN'), [1, 3, 4])

        # APPEND with \Seen by bob: seen by bob, not by alice
        bob.append(box, make_message(9, subject='from bob'), flags=['\\Seen'])
        bob.ok('NOOP')
        self.assertEqual(bob.search('SEEN'), [2, 5])
        self.assertEqual(alice.search('SEEN'), [4])
        self.assertEqual(carol.search('SEEN'), [])

    def test_no_seen_right(self):
        box = shared('team')
        dave = self.as_user(D)
        info = dave.select(box)
        self.assertIn(b'READ-WRITE', info['tagged'], 'w: read-write')
        before = status_unseen(self.as_user(C), box)
        dave.ok('FETCH 1:4 (BODY[TEXT])')
        self.assertEqual(dave.search('SEEN'), [], 'without `s` a fetch sets no \\Seen')
        st, t, _ = dave.status_of('STORE 3 +FLAGS (\\Seen)')
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'NOPERM', t)
        self.assertEqual(dave.search('SEEN'), [])
        self.assertEqual(status_unseen(self.as_user(C), box), before)

    def test_copy(self):
        box = shared('cp')
        bob = self.as_user(B, box)
        bob.ok('STORE 2 +FLAGS.SILENT (\\Seen)')
        bob.ok('CREATE mine')
        # out of the shared folder: bob's \Seen becomes the copy's
        bob.ok('COPY 2,4 mine')
        mine = self.as_user(B, 'mine')
        self.assertEqual(flags_of(mine, '1:2'), {1: {'\\Seen'}, 2: set()})
        # into it: the copy is seen by bob alone
        mine.ok('COPY 1 %s' % harness.imap_quote(box))
        bob.ok('NOOP')
        self.assertEqual(bob.search('SEEN'), [2, 5])
        self.assertEqual(self.as_user(A, 'cp').search('SEEN'), [])
        self.assertEqual(self.as_user(C, box).search('SEEN'), [])

    def test_reindex_keeps(self):
        box = shared('kept')
        bob = self.as_user(B, box)
        bob.ok('STORE 1,3 +FLAGS.SILENT (\\Seen)')
        bob.logout()
        rc, out, err = self.server.ctl('mailbox', 'reindex', A)
        self.assertEqual(rc, 0, out + err)
        bob = self.as_user(B, box)
        self.assertEqual(bob.search('SEEN'), [1, 3], "bob's \\Seen survives a reindex")
        self.assertEqual(status_unseen(self.as_user(C), box), 4)
        self.assertEqual(self.as_user(A, 'kept').search('SEEN'), [])

    def test_shared_seen(self):
        box = shared('ops')
        n = self._reloads()
        rc, out, err = self.server.ctl('mailbox', 'seen', A, 'ops', 'shared')
        self.assertEqual(rc, 0, out + err)
        self._wait_reloads(n + 1)
        alice = self.as_user(A, 'ops')
        bob = self.as_user(B, box)
        carol = self.as_user(C, box)
        bob.ok('STORE 2 +FLAGS (\\Seen)')
        bob.ok('FETCH 3 (BODY[TEXT])')
        alice.ok('STORE 4 +FLAGS (\\Seen)')
        for who in (alice, bob, carol):
            who.ok('NOOP')
            self.assertEqual(who.search('SEEN'), [2, 3, 4])
            self.assertEqual(flags_of(who, '1:4'),
                             {1: set(), 2: {'\\Seen'}, 3: {'\\Seen'}, 4: {'\\Seen'}})
        self.assertEqual(status_unseen(carol, box), 1)
        self.assertEqual(status_unseen(alice, 'ops'), 1)


if __name__ == '__main__':
    unittest.main(verbosity=2)
