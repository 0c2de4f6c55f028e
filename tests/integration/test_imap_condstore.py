"""IMAP CONDSTORE (RFC 7162 section 3.1): ENABLE CONDSTORE and the commands
that enable it by themselves (SELECT/EXAMINE (CONDSTORE), STATUS
(HIGHESTMODSEQ), FETCH MODSEQ, CHANGEDSINCE, UNCHANGEDSINCE, SEARCH MODSEQ);
HIGHESTMODSEQ at SELECT/EXAMINE once enabled and in STATUS; the MODSEQ
fetch item and the CHANGEDSINCE modifier; STORE (UNCHANGEDSINCE n) with
[MODIFIED set], the messages changed since left alone; MODSEQ in the
FETCH answers of STORE (alone with .SILENT) and in those announcing
another session's changes; SEARCH MODSEQ with its (MODSEQ n) and ESEARCH
MODSEQ; an empty mailbox."""
import re

import harness
import imap_util
from imap_util import ImapCase, Imap, make_message

BOX = 'CS'
N = 6

HMS_RE = re.compile(rb'^\* OK \[HIGHESTMODSEQ (\d+)\]')


def highestmodseq(untagged):
    """The HIGHESTMODSEQ of untagged OK responses, or None."""
    for r in untagged:
        m = HMS_RE.match(r)
        if m:
            return int(m.group(1))
    return None


def modseqs(fetched):
    """{seq: modseq} of Imap.fetch's answer."""
    return {n: int(it['MODSEQ'][0]) for n, (it, raw) in fetched.items() if 'MODSEQ' in it}


def flags_of(fetched, n):
    return set(str(f).lower() for f in fetched[n][0]['FLAGS'])


class Condstore(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        c.ok('CREATE Empty')
        c.logout()

    def setUp(self):
        # a fresh mailbox for each test: flags changed by one do not
        # disturb another
        self.box = '%s%d' % (BOX, imap_util.serial())
        c = self.login()
        c.ok('CREATE %s' % self.box)
        for i in range(N):
            c.append(self.box, make_message(i))
        c.logout()

    def other(self):
        """A second session with the mailbox selected."""
        o = self.login()
        o.select(self.box)
        return o

    def test_advertised(self):
        c = self.login()
        u = c.ok('CAPABILITY')
        self.assertIn('CONDSTORE', u[0].decode().split())

    def test_enable(self):
        c = self.login()
        u = c.ok('SELECT %s' % self.box)
        self.assertIsNone(highestmodseq(u), 'HIGHESTMODSEQ before CONDSTORE is enabled')
        c.ok('UNSELECT')
        u = c.ok('ENABLE CONDSTORE')
        self.assertIn(b'* ENABLED CONDSTORE', u)
        u = c.ok('SELECT %s' % self.box)
        hms = highestmodseq(u)
        self.assertIsNotNone(hms, u)
        self.assertGreater(hms, 0)
        u = c.ok('EXAMINE %s' % self.box)
        self.assertEqual(highestmodseq(u), hms)
        ms = modseqs(c.fetch('1:*', '(MODSEQ)'))
        self.assertEqual(sorted(ms), list(range(1, N + 1)))
        self.assertTrue(all(0 < v <= hms for v in ms.values()), (ms, hms))
        # a STORE's answer comes with MODSEQ once enabled
        u = c.ok('SELECT %s' % self.box)
        u = c.ok('STORE 1 +FLAGS (\\Seen)')
        n, it, raw = imap_util.parse_fetch([r for r in u if b'FETCH' in r][0])
        self.assertGreater(int(it['MODSEQ'][0]), hms)

    def test_select_condstore(self):
        for cmd, flag in (('SELECT', '\\Answered'), ('EXAMINE', '\\Draft')):
            with self.subTest(cmd=cmd):
                c = self.login()
                u = c.ok('%s %s (CONDSTORE)' % (cmd, self.box))
                hms = highestmodseq(u)
                self.assertIsNotNone(hms, u)
                # enabled for what follows: another session's change is
                # announced with MODSEQ
                o = self.other()
                o.ok('STORE 1 +FLAGS (%s)' % flag)
                u = c.ok('NOOP')
                n, it, raw = imap_util.parse_fetch([r for r in u if b'FETCH' in r][0])
                self.assertGreater(int(it['MODSEQ'][0]), hms)
                c.logout()
        c = self.login()
        st, t, u = c.status_of('SELECT %s (NOSUCHPARAM)' % self.box)
        self.assertEqual(st, 'BAD', t)

    def test_status(self):
        c = self.login()
        u = c.ok('STATUS %s (MESSAGES HIGHESTMODSEQ)' % self.box)
        m = re.search(rb'HIGHESTMODSEQ (\d+)', b' '.join(u))
        self.assertIsNotNone(m, u)
        hms = int(m.group(1))
        # STATUS HIGHESTMODSEQ enabled CONDSTORE: SELECT tells it
        u = c.ok('SELECT %s' % self.box)
        self.assertEqual(highestmodseq(u), hms)
        c.ok('STORE 1 +FLAGS (\\Seen)')
        u = c.ok('STATUS Empty (HIGHESTMODSEQ)')
        self.assertRegex(b' '.join(u), rb'HIGHESTMODSEQ [1-9]\d*')
        o = self.login()
        u = o.ok('STATUS %s (HIGHESTMODSEQ)' % self.box)
        self.assertGreater(int(re.search(rb'HIGHESTMODSEQ (\d+)', b' '.join(u)).group(1)), hms)

    def test_fetch_modseq_enables(self):
        c = self.login()
        c.select(self.box)
        u = c.ok('FETCH 1:* (MODSEQ)')
        ms = {}
        for r in u:
            if re.match(rb'\* \d+ FETCH', r):
                n, it, raw = imap_util.parse_fetch(r)
                ms[n] = int(it['MODSEQ'][0])
        self.assertEqual(sorted(ms), list(range(1, N + 1)))
        # the first CONDSTORE enabling command tells the mailbox's
        # HIGHESTMODSEQ
        hms = highestmodseq(u)
        self.assertIsNotNone(hms, u)
        self.assertEqual(max(ms.values()), hms)
        # a STORE's answer carries MODSEQ now
        u = c.ok('STORE 2 +FLAGS (\\Flagged)')
        n, it, raw = imap_util.parse_fetch([r for r in u if b'FETCH' in r][0])
        self.assertEqual(n, 2)
        self.assertGreater(int(it['MODSEQ'][0]), hms)

    def test_changedsince(self):
        c = self.login()
        u = c.ok('SELECT %s (CONDSTORE)' % self.box)
        hms = highestmodseq(u)
        o = self.other()
        o.ok('STORE 2,5 +FLAGS (\\Answered)')
        f = c.fetch('1:*', '(FLAGS) (CHANGEDSINCE %d)' % hms)
        self.assertEqual(sorted(f), [2, 5])
        for n in (2, 5):
            self.assertIn('\\answered', flags_of(f, n))
            self.assertGreater(int(f[n][0]['MODSEQ'][0]), hms)
        # UID FETCH, and nothing changed since the highest
        u = c.ok('UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)' % max(modseqs(f).values()))
        self.assertEqual([r for r in u if b'FETCH' in r], [])
        # CHANGEDSINCE implies MODSEQ
        f = c.fetch('1:*', '(UID) (CHANGEDSINCE 1)')
        self.assertEqual(sorted(modseqs(f)), list(range(1, N + 1)))

    def test_changedsince_enables(self):
        c = self.login()
        c.select(self.box)
        f = c.fetch('1:*', '(FLAGS) (CHANGEDSINCE 1)')
        self.assertEqual(len(modseqs(f)), N)
        u = c.ok('STORE 1 +FLAGS (\\Draft)')
        self.assertIn(b'MODSEQ', b' '.join(u))

    def test_unchangedsince(self):
        c = self.login()
        c.ok('ENABLE CONDSTORE')
        c.select(self.box)
        ms = modseqs(c.fetch('1:*', '(MODSEQ)'))
        since = max(ms[3], ms[4])
        o = self.other()
        o.ok('STORE 4 +FLAGS (\\Seen)')
        u, t = c.cmd('STORE 3,4 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)' % since)
        self.assertRegex(t, rb'^T\d+ OK \[MODIFIED 4\]')
        f = o.fetch('3:4', '(FLAGS)')
        self.assertIn('\\flagged', flags_of(f, 3))
        self.assertNotIn('\\flagged', flags_of(f, 4))
        # UID STORE names UIDs
        uids = {n: int(it['UID']) for n, (it, raw) in c.fetch('1:*', '(UID)').items()}
        u, t = c.cmd('UID STORE %d,%d (UNCHANGEDSINCE %d) -FLAGS (\\Flagged)'
                     % (uids[3], uids[4], since))
        self.assertRegex(t, rb'^T\d+ OK \[MODIFIED %d:%d\]|^T\d+ OK \[MODIFIED %d,%d\]'
                         % (uids[3], uids[4], uids[3], uids[4]))

    def test_unchangedsince_rfc_example(self):
        # RFC 7162 3.1.3, example 6: the .SILENT STORE answers MODSEQ alone
        # for the messages changed and names the others in MODIFIED
        c = self.login()
        c.ok('SELECT %s (CONDSTORE)' % self.box)
        ms = modseqs(c.fetch('1:*', '(MODSEQ)'))
        since = ms[5]
        o = self.other()
        o.ok('STORE 6 +FLAGS (\\Seen)')
        u, t = c.cmd('STORE 6,5 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Deleted)' % since)
        self.assertRegex(t, rb'^T\d+ OK \[MODIFIED 6\]')
        mine = [imap_util.parse_fetch(r) for r in u if re.match(rb'\* 5 FETCH', r)]
        self.assertEqual(len(mine), 1, u)
        self.assertNotIn('FLAGS', mine[0][1])
        self.assertGreater(int(mine[0][1]['MODSEQ'][0]), since)

    def test_unchangedsince_zero(self):
        c = self.login()
        c.select(self.box)
        u, t = c.cmd('STORE 1,2 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)')
        self.assertRegex(t, rb'^T\d+ OK \[MODIFIED 1:2\]|^T\d+ OK \[MODIFIED 1,2\]')
        f = c.fetch('1:2', '(FLAGS)')
        self.assertNotIn('\\seen', flags_of(f, 1))
        self.assertNotIn('\\seen', flags_of(f, 2))
        # and it enabled CONDSTORE
        u = c.ok('STORE 1 +FLAGS (\\Seen)')
        self.assertIn(b'MODSEQ', b' '.join(u))

    def test_unsolicited_modseq(self):
        c = self.login()
        c.ok('ENABLE CONDSTORE')
        c.select(self.box)
        o = self.other()
        o.ok('STORE 3 +FLAGS (\\Flagged)')
        u = c.ok('NOOP')
        got = [imap_util.parse_fetch(r) for r in u if b'FETCH' in r]
        self.assertEqual(len(got), 1, u)
        n, it, raw = got[0]
        self.assertEqual(n, 3)
        self.assertIn('FLAGS', it)
        self.assertIn('MODSEQ', it)
        # not enabled: no MODSEQ
        d = self.login()
        d.select(self.box)
        o.ok('STORE 3 -FLAGS (\\Flagged)')
        u = d.ok('NOOP')
        self.assertNotIn(b'MODSEQ', b' '.join(u))

    def test_search_modseq(self):
        c = self.login()
        u = c.ok('SELECT %s (CONDSTORE)' % self.box)
        hms = highestmodseq(u)
        o = self.other()
        o.ok('STORE 2 +FLAGS (\\Flagged)')
        o.ok('STORE 4 +FLAGS (\\Flagged)')
        f = c.fetch('1:*', '(FLAGS)')
        ms = modseqs(f)
        u = c.ok('SEARCH MODSEQ %d' % (hms + 1))
        line = [r for r in u if r.startswith(b'* SEARCH')][0]
        self.assertEqual(line, b'* SEARCH 2 4 (MODSEQ %d)' % max(ms[2], ms[4]))
        # the RFC's form with an entry name, and OR
        u = c.ok('SEARCH OR NOT MODSEQ %d MODSEQ "/flags/\\\\draft" all %d'
                 % (hms + 1, ms[4]))
        line = [r for r in u if r.startswith(b'* SEARCH')][0]
        self.assertEqual(line, b'* SEARCH 1 3 4 5 6 (MODSEQ %d)' % max(ms.values()))
        # nothing found: no MODSEQ
        u = c.ok('SEARCH MODSEQ %d' % (max(ms.values()) + 1))
        self.assertEqual([r for r in u if r.startswith(b'* SEARCH')], [b'* SEARCH'])
        # ESEARCH
        u = c.ok('UID SEARCH RETURN (COUNT) MODSEQ %d' % (hms + 1))
        line = [r for r in u if r.startswith(b'* ESEARCH')][0]
        self.assertRegex(line, rb' COUNT 2 MODSEQ %d$' % max(ms[2], ms[4]))

    def test_sort_modseq(self):
        c = self.login()
        u = c.ok('SELECT %s (CONDSTORE)' % self.box)
        hms = highestmodseq(u)
        o = self.other()
        o.ok('STORE 5 +FLAGS (\\Seen)')
        o.ok('STORE 2 +FLAGS (\\Seen)')
        ms = modseqs(c.fetch('2,5', '(MODSEQ)'))
        u = c.ok('SORT (ARRIVAL) UTF-8 MODSEQ %d' % (hms + 1))
        line = [r for r in u if r.startswith(b'* SORT')][0]
        self.assertEqual(line, b'* SORT 2 5 (MODSEQ %d)' % max(ms.values()))
        u = c.ok('SORT (ARRIVAL) UTF-8 MODSEQ %d' % (max(ms.values()) + 1))
        self.assertEqual([r for r in u if r.startswith(b'* SORT')], [b'* SORT'])

    def test_search_and_sort_modseq_enable(self):
        for cmd, word, flag in (('SEARCH MODSEQ 1', b'SEARCH', '\\Seen'),
                                ('SORT (ARRIVAL) UTF-8 MODSEQ 1', b'SORT', '\\Draft')):
            with self.subTest(cmd=cmd):
                c = self.login()
                c.select(self.box)
                u = c.ok(cmd)
                self.assertRegex([r for r in u if r.startswith(b'* ' + word)][0],
                                 rb'^\* ' + word + rb' 1 2 3 4 5 6 \(MODSEQ \d+\)$')
                u = c.ok('STORE 1 +FLAGS (%s)' % flag)
                self.assertIn(b'MODSEQ', b' '.join(u))
                c.logout()

    def test_empty_mailbox(self):
        c = self.login()
        u = c.ok('SELECT Empty (CONDSTORE)')
        self.assertIsNotNone(highestmodseq(u), u)
        u = c.ok('UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)')
        self.assertEqual([r for r in u if b'FETCH' in r], [])
        u = c.ok('SEARCH MODSEQ 1')
        self.assertEqual([r for r in u if r.startswith(b'* SEARCH')], [b'* SEARCH'])
        u, t = c.cmd('UID STORE 1:* (UNCHANGEDSINCE 5) +FLAGS (\\Seen)')
        self.assertOK(t)
        self.assertNotIn(b'MODIFIED', t)

    def test_bad(self):
        c = self.login()
        c.select(self.box)
        for cmd in ('FETCH 1 (FLAGS) (CHANGEDSINCE x)',
                    'FETCH 1 (FLAGS) (CHANGEDSINCE)', 'FETCH 1 (FLAGS) (CHANGEDSINCE -1)',
                    'STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)',
                    'STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)',
                    'STORE 1 (NOSUCH 3) +FLAGS (\\Seen)',
                    'SEARCH MODSEQ', 'SEARCH MODSEQ x', 'SEARCH MODSEQ -1',
                    'SEARCH MODSEQ "/flags/\\\\seen" nosuchtype 5',
                    'STATUS %s (HIGHESTMODSEQ' % self.box):
            with self.subTest(cmd=cmd):
                st, t, u = c.status_of(cmd)
                self.assertEqual(st, 'BAD', t)
        self.assertAlive()


if __name__ == '__main__':
    harness.main()
