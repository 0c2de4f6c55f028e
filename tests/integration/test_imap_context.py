"""IMAP ESORT (RFC 5267 section 3): SORT and UID SORT with RETURN (MIN MAX
ALL COUNT), answered by ESEARCH with the TAG and UID of RFC 4731, MIN and
MAX the first and last message in sort order, ALL a sequence set in sort
order; RETURN () meaning ALL; SAVE (RFC 5182) keeping the set found, or
the first and last in sort order with MIN/MAX alone; empty results, an
empty mailbox, '*' in one, and expunges between commands.

PARTIAL (RFC 9394): RETURN (PARTIAL n:m) and (PARTIAL -n:-m) of SEARCH
and SORT, answered as PARTIAL (range set-or-NIL) in mailbox or sort order,
MIN/MAX/COUNT over the whole result, what SAVE keeps beside it (RFC 9394
3.2), the range syntax (never with ALL, never twice), and the PARTIAL
modifier of FETCH and UID FETCH (RFC 9394 3.3)."""
import unittest

import harness
import imap_util
from imap_util import ImapCase, Imap, AGAINST_DOVECOT

BOX = 'Ctx'
# (subject, day of the Date: header): DATE order 4, 2, 5, 6, 1, 3;
# "orange" in 1, 2, 4, 6
DAYS = [5, 2, 6, 1, 3, 4]
ORANGE = (1, 2, 4, 6)
DATE_ORDER = [4, 2, 5, 6, 1, 3]


def msg(i):
    subject = 'orange %d' % i if i in ORANGE else 'apple %d' % i
    return ('From: a%d@example.net\r\nTo: b@example.net\r\nSubject: %s\r\n'
            'Date: Mon, %02d Mar 2021 12:00:00 +0000\r\nMessage-ID: <ctx%d@example.net>\r\n'
            'MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nbody %d\r\n'
            % (i, subject, DAYS[i - 1], i, i)).encode()


def ordered_set(s):
    """The numbers of a sequence set in the order written ('4,2,5:6' is
    4, 2, 5, 6); a range runs up or down as written."""
    out = []
    for part in s.split(','):
        if ':' in part:
            a, b = (int(x) for x in part.split(':'))
            out += list(range(a, b + 1)) if a <= b else list(range(a, b - 1, -1))
        else:
            out.append(int(part))
    return out


def esearch_lines(untagged):
    return [r for r in untagged if r.upper().startswith(b'* ESEARCH')]


class ContextCase(ImapCase):
    """BOX with the messages of DAYS, and an empty mailbox."""

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        c.ok('CREATE %s' % BOX)
        c.ok('CREATE CtxEmpty')
        for i in range(1, len(DAYS) + 1):
            c.append(BOX, msg(i))
        c.logout()

    def setUp(self):
        self.c = self.login()
        self.c.select(BOX)
        self.uids = imap_util.search_result(self.c.ok('UID SEARCH ALL'))

    def one(self, text):
        """The one ESEARCH line of a command that must end in OK, with no
        SORT or SEARCH answer beside it."""
        u = self.c.ok(text)
        self.assertEqual(imap_util.untagged_of(u, 'SORT') + imap_util.untagged_of(u, 'SEARCH'),
                         [], u)
        lines = esearch_lines(u)
        self.assertEqual(len(lines), 1, u)
        return lines[0]

    def tagged(self, rest=b''):
        return b'* ESEARCH (TAG "T%d")' % self.c.n + rest


class ESort(ContextCase):

    def test_advertised(self):
        caps = self.c.ok('CAPABILITY')[0].split()
        self.assertIn(b'ESORT', caps)

    def test_min_max_count(self):
        # RFC 5267 3: MIN and MAX are the first and last in sort order,
        # not the lowest and highest numbers
        self.assertEqual(self.one('SORT RETURN (MIN) (DATE) UTF-8 ALL'), self.tagged(b' MIN 4'))
        self.assertEqual(self.one('SORT RETURN (MAX) (DATE) UTF-8 ALL'), self.tagged(b' MAX 3'))
        self.assertEqual(self.one('SORT RETURN (MIN MAX) (REVERSE DATE) UTF-8 ALL'),
                         self.tagged(b' MIN 3 MAX 4'))
        self.assertEqual(self.one('SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT orange'),
                         self.tagged(b' COUNT 4'))
        self.assertEqual(self.one('SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 SUBJECT orange'),
                         self.tagged(b' MIN 4 MAX 1 COUNT 4'))

    def test_all_in_sort_order(self):
        line = self.one('SORT RETURN (ALL) (DATE) UTF-8 ALL')
        # runs ascending by one may be written as ranges: "4,2,5:6,1,3"
        self.assertTrue(line.startswith(self.tagged(b' ALL ')), line)
        self.assertEqual(ordered_set(line.split()[-1].decode()), DATE_ORDER)
        self.assertEqual(line, self.tagged(b' ALL 4,2,5:6,1,3'))
        line = self.one('SORT RETURN (ALL) (REVERSE DATE) UTF-8 ALL')
        self.assertEqual(ordered_set(line.split()[-1].decode()), DATE_ORDER[::-1])
        # the same order as the plain SORT answer
        for crit, keys in (('ALL', 'SUBJECT'), ('SUBJECT orange', 'REVERSE DATE'),
                           ('NOT 2', 'ARRIVAL'), ('1:4', 'REVERSE SUBJECT')):
            with self.subTest(crit=crit, keys=keys):
                u = self.c.ok('SORT (%s) UTF-8 %s' % (keys, crit))
                want = [int(x) for x in imap_util.untagged_of(u, 'SORT')[0].split()[2:]]
                line = self.one('SORT RETURN (ALL COUNT) (%s) UTF-8 %s' % (keys, crit))
                words = line.split()
                self.assertEqual(ordered_set(words[words.index(b'ALL') + 1].decode()), want)
                self.assertEqual(int(words[words.index(b'COUNT') + 1]), len(want))

    def test_empty_return_is_all(self):
        self.assertEqual(self.one('SORT RETURN () (DATE) UTF-8 SUBJECT orange'),
                         self.tagged(b' ALL 4,2,6,1'))

    def test_order_of_results(self):
        self.assertEqual(self.one('SORT RETURN (COUNT ALL MAX MIN) (DATE) UTF-8 SUBJECT orange'),
                         self.tagged(b' MIN 4 MAX 1 ALL 4,2,6,1 COUNT 4'))

    def test_uid_sort(self):
        u = self.uids
        line = self.one('UID SORT RETURN (MIN MAX ALL COUNT) (DATE) UTF-8 ALL')
        words = line.split()
        self.assertEqual(words[4], b'UID', line)
        self.assertEqual(int(words[words.index(b'MIN') + 1]), u[DATE_ORDER[0] - 1])
        self.assertEqual(int(words[words.index(b'MAX') + 1]), u[DATE_ORDER[-1] - 1])
        self.assertEqual(ordered_set(words[words.index(b'ALL') + 1].decode()),
                         [u[i - 1] for i in DATE_ORDER])
        self.assertEqual(int(words[words.index(b'COUNT') + 1]), len(DATE_ORDER))
        # a UID set among the search keys
        line = self.one('UID SORT RETURN (ALL) (DATE) UTF-8 UID %d:%d' % (u[1], u[3]))
        self.assertEqual(ordered_set(line.split()[-1].decode()), [u[3], u[1], u[2]])

    def test_no_match(self):
        self.assertEqual(self.one('SORT RETURN (MIN MAX ALL COUNT) (DATE) UTF-8 KEYWORD nosuch'),
                         self.tagged(b' COUNT 0'))
        self.assertEqual(self.one('UID SORT RETURN (MIN MAX ALL COUNT) (DATE) UTF-8 '
                                  'KEYWORD nosuch'), self.tagged(b' UID COUNT 0'))
        # without COUNT: the answer names only its tag
        self.assertEqual(self.one('SORT RETURN (MIN MAX ALL) (DATE) UTF-8 KEYWORD nosuch'),
                         self.tagged())

    def test_empty_mailbox(self):
        c = self.c
        c.select('CtxEmpty')
        self.assertEqual(self.one('SORT RETURN (MIN MAX ALL COUNT) (DATE) UTF-8 ALL'),
                         self.tagged(b' COUNT 0'))
        self.assertEqual(self.one('UID SORT RETURN (ALL COUNT) (ARRIVAL) UTF-8 1:*'),
                         self.tagged(b' UID COUNT 0'))
        # '*' in an empty mailbox names no message
        self.assertEqual(self.one('UID SORT RETURN (MIN COUNT) (SUBJECT) UTF-8 *'),
                         self.tagged(b' UID COUNT 0'))
        self.assertEqual(self.one('SORT RETURN (ALL) (DATE) UTF-8 *'), self.tagged())

    def test_save(self):
        c = self.c
        # SAVE alone: no ESEARCH answer; "$" is the set found, in no order
        u = c.ok('SORT RETURN (SAVE) (DATE) UTF-8 SUBJECT orange')
        self.assertEqual(esearch_lines(u), [])
        self.assertEqual(imap_util.untagged_of(u, 'SORT'), [])
        self.assertEqual(c.search('$'), list(ORANGE))
        # SAVE with MIN or MAX alone: the first or last in sort order
        self.assertEqual(self.one('SORT RETURN (SAVE MIN) (DATE) UTF-8 ALL'),
                         self.tagged(b' MIN 4'))
        self.assertEqual(c.search('$'), [4])
        self.assertEqual(self.one('SORT RETURN (SAVE MIN MAX) (DATE) UTF-8 ALL'),
                         self.tagged(b' MIN 4 MAX 3'))
        self.assertEqual(c.search('$'), [3, 4])
        # with ALL or COUNT beside them: the whole result
        self.assertEqual(self.one('UID SORT RETURN (SAVE MAX COUNT) (REVERSE DATE) UTF-8 '
                                  'SUBJECT apple'),
                         self.tagged(b' UID MAX %d COUNT 2' % self.uids[5 - 1]))
        self.assertEqual(c.search('$'), [3, 5])
        # "$" in the search keys of a SORT
        self.assertEqual(self.one('SORT RETURN (ALL) (REVERSE SUBJECT) UTF-8 $'),
                         self.tagged(b' ALL 5,3'))

    def test_save_failed_empties(self):
        c = self.c
        c.ok('SORT RETURN (SAVE) (DATE) UTF-8 SUBJECT orange')
        self.assertEqual(c.search('$'), list(ORANGE))
        st, t, u = c.status_of('SORT RETURN (SAVE) (DATE) NO-SUCH-CHARSET ALL')
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'BADCHARSET', t)
        # RFC 5182 2.1: a command with SAVE that fails leaves "$" empty
        self.assertEqual(c.search('$'), [])

    def test_bad_syntax(self):
        bad = ['SORT RETURN (FOO) (DATE) UTF-8 ALL', 'SORT RETURN MIN (DATE) UTF-8 ALL',
               'SORT RETURN (MIN (DATE) UTF-8 ALL', 'SORT RETURN (MIN) UTF-8 ALL',
               'SORT RETURN (MIN) (DATE) UTF-8', 'UID SORT RETURN (ALL)',
               'THREAD RETURN (ALL) REFERENCES UTF-8 ALL']
        for cmd in bad:
            with self.subTest(cmd=cmd):
                st, t, u = self.c.status_of(cmd)
                self.assertEqual(st, 'BAD', t)
                self.assertEqual(esearch_lines(u), [])

    def test_after_expunge_by_another_session(self):
        c = self.c
        c.ok('CREATE CtxExp')
        self.addCleanup(lambda: self.login().ok('DELETE CtxExp'))
        c.ok('COPY 1:* CtxExp')
        c.select('CtxExp')
        all_uids = imap_util.search_result(c.ok('UID SEARCH ALL'))
        other = self.login()
        other.select('CtxExp')
        other.ok('STORE 5 +FLAGS.SILENT (\\Deleted)')
        other.ok('EXPUNGE')
        if not AGAINST_DOVECOT:
            # before the expunge is announced: sequence numbers stay, the
            # message is gone from the answer
            self.assertEqual(self.one('SORT RETURN (ALL COUNT) (DATE) UTF-8 ALL'),
                             self.tagged(b' ALL 4,2,6,1,3 COUNT 5'))
        u = c.ok('NOOP')
        self.assertEqual(len(imap_util.untagged_of(u, 'EXPUNGE')), 1)
        # old 1, 2, 3, 4, 6 are now 1 to 5: DATE order 4, 2, 5, 1, 3
        self.assertEqual(self.one('SORT RETURN (MIN MAX ALL COUNT) (DATE) UTF-8 ALL'),
                         self.tagged(b' MIN 4 MAX 3 ALL 4,2,5,1,3 COUNT 5'))
        line = self.one('UID SORT RETURN (ALL) (DATE) UTF-8 ALL')
        self.assertEqual(ordered_set(line.split()[-1].decode()),
                         [all_uids[i - 1] for i in (4, 2, 6, 1, 3)])



def fetch_seqs(untagged):
    return [int(r.split()[1]) for r in untagged if len(r.split()) > 2 and r.split()[2] == b'FETCH']


class Partial(ContextCase):
    """Dovecot 2.3 takes positive PARTIAL ranges of SEARCH and SORT (from
    RFC 5267, as CONTEXT=SEARCH has them) but not RFC 9394: no PARTIAL
    capability, no negative ranges, no FETCH modifier, and SAVE keeps the
    whole result; those checks run against coffre only."""

    def rfc9394_only(self):
        if AGAINST_DOVECOT:
            self.skipTest('RFC 9394 beyond RFC 5267: not in Dovecot 2.3')

    def test_advertised(self):
        self.rfc9394_only()
        self.assertIn(b'PARTIAL', self.c.ok('CAPABILITY')[0].split())

    def test_first_ranges(self):
        u = self.uids
        # RFC 9394 3.1: position 1 is the lowest UID found
        self.assertEqual(self.one('SEARCH RETURN (PARTIAL 1:3) ALL'),
                         self.tagged(b' PARTIAL (1:3 1:3)'))
        self.assertEqual(self.one('UID SEARCH RETURN (PARTIAL 2:3) UNDELETED UNKEYWORD $Junk'),
                         self.tagged(b' UID PARTIAL (2:3 %d:%d)' % (u[1], u[2])))
        # a range beyond the results: those there are, or NIL
        self.assertEqual(self.one('SEARCH RETURN (PARTIAL 5:500) ALL'),
                         self.tagged(b' PARTIAL (5:500 5:6)'))
        self.assertEqual(self.one('UID SEARCH RETURN (PARTIAL 24000:24500) ALL'),
                         self.tagged(b' UID PARTIAL (24000:24500 NIL)'))
        self.assertEqual(self.one('SEARCH RETURN (PARTIAL 2:3) SUBJECT orange'),
                         self.tagged(b' PARTIAL (2:3 2,4)'))

    def test_reversed_range(self):
        # 3:2 is 2:3 (RFC 9394 4); the range is answered as written
        # (Dovecot writes it back as 2:3)
        line = self.one('SEARCH RETURN (PARTIAL 3:2) SUBJECT orange')
        self.assertIn(line, (self.tagged(b' PARTIAL (3:2 2,4)'),
                             self.tagged(b' PARTIAL (2:3 2,4)')))

    def test_last_ranges(self):
        self.rfc9394_only()
        u = self.uids
        # -1 is the last result, -2 the one before
        self.assertEqual(self.one('SEARCH RETURN (PARTIAL -1:-2) ALL'),
                         self.tagged(b' PARTIAL (-1:-2 5:6)'))
        self.assertEqual(self.one('UID SEARCH RETURN (PARTIAL -1:-100) UNDELETED'),
                         self.tagged(b' UID PARTIAL (-1:-100 %d:%d)' % (u[0], u[-1])))
        self.assertEqual(self.one('SEARCH RETURN (PARTIAL -3:-2) SUBJECT orange'),
                         self.tagged(b' PARTIAL (-3:-2 2,4)'))
        self.assertEqual(self.one('SEARCH RETURN (PARTIAL -5:-9) SUBJECT orange'),
                         self.tagged(b' PARTIAL (-5:-9 NIL)'))
        self.assertEqual(self.one('SEARCH RETURN (PARTIAL -4:-9) SUBJECT orange'),
                         self.tagged(b' PARTIAL (-4:-9 1)'))

    def test_with_min_max_count(self):
        # MIN, MAX and COUNT are of the whole result
        self.assertEqual(self.one('SEARCH RETURN (MIN MAX COUNT PARTIAL 2:3) SUBJECT orange'),
                         self.tagged(b' MIN 1 MAX 6 PARTIAL (2:3 2,4) COUNT 4'))
        self.assertEqual(self.one('SEARCH RETURN (COUNT PARTIAL 1:2) KEYWORD nosuch'),
                         self.tagged(b' PARTIAL (1:2 NIL) COUNT 0'))

    def test_sort(self):
        # positions in sort order: DATE order 4, 2, 5, 6, 1, 3
        self.assertEqual(self.one('SORT RETURN (PARTIAL 2:4) (DATE) UTF-8 ALL'),
                         self.tagged(b' PARTIAL (2:4 2,5:6)'))
        self.assertEqual(self.one('SORT RETURN (MIN MAX PARTIAL 1:2) (DATE) UTF-8 ALL'),
                         self.tagged(b' MIN 4 MAX 3 PARTIAL (1:2 4,2)'))
        if not AGAINST_DOVECOT:
            self.assertEqual(self.one('SORT RETURN (PARTIAL -1:-2) (DATE) UTF-8 ALL'),
                             self.tagged(b' PARTIAL (-1:-2 1,3)'))
            u = self.uids
            self.assertEqual(self.one('UID SORT RETURN (PARTIAL -2:-3) (REVERSE DATE) UTF-8 ALL'),
                             self.tagged(b' UID PARTIAL (-2:-3 %d,%d)' % (u[5 - 1], u[2 - 1])))

    def test_empty_mailbox(self):
        self.c.select('CtxEmpty')
        self.assertEqual(self.one('SEARCH RETURN (PARTIAL 1:10) ALL'),
                         self.tagged(b' PARTIAL (1:10 NIL)'))
        self.assertEqual(self.one('SORT RETURN (PARTIAL 1:10 COUNT) (DATE) UTF-8 ALL'),
                         self.tagged(b' PARTIAL (1:10 NIL) COUNT 0'))
        if not AGAINST_DOVECOT:
            self.assertEqual(self.one('UID SEARCH RETURN (PARTIAL -1:-10) *'),
                             self.tagged(b' UID PARTIAL (-1:-10 NIL)'))
            u = self.c.ok('UID FETCH 1:* (FLAGS) (PARTIAL -1:-30)')
            self.assertEqual(fetch_seqs(u), [])

    def test_save(self):
        self.rfc9394_only()
        c = self.c
        # RFC 9394 3.2: SAVE with PARTIAL keeps what PARTIAL returned,
        # with the MIN/MAX messages; with COUNT, all found
        u = c.ok('SEARCH RETURN (SAVE PARTIAL 2:3) ALL')
        self.assertEqual(esearch_lines(u), [self.tagged(b' PARTIAL (2:3 2:3)')])
        self.assertEqual(c.search('$'), [2, 3])
        self.one('SEARCH RETURN (SAVE MIN PARTIAL 3:4) ALL')
        self.assertEqual(c.search('$'), [1, 3, 4])
        self.one('SEARCH RETURN (SAVE MIN MAX PARTIAL -3:-2) ALL')
        self.assertEqual(c.search('$'), [1, 4, 5, 6])
        self.one('SEARCH RETURN (SAVE COUNT PARTIAL 1:1) ALL')
        self.assertEqual(c.search('$'), [1, 2, 3, 4, 5, 6])
        # SORT: the PARTIAL messages in sort order, then as a set
        self.one('SORT RETURN (SAVE MAX PARTIAL 1:2) (DATE) UTF-8 ALL')
        self.assertEqual(c.search('$'), [2, 3, 4])

    def test_bad_syntax(self):
        bad = ['SEARCH RETURN (PARTIAL 1:5 ALL) ALL', 'SEARCH RETURN (ALL PARTIAL 1:5) ALL',
               'SEARCH RETURN (PARTIAL 1:5 PARTIAL 6:9) ALL', 'SEARCH RETURN (PARTIAL) ALL',
               'SEARCH RETURN (PARTIAL 0:5) ALL', 'SEARCH RETURN (PARTIAL 1:*) ALL',
               'SEARCH RETURN (PARTIAL -1:5) ALL', 'SEARCH RETURN (PARTIAL 5) ALL',
               'SEARCH RETURN (PARTIAL 1:4294967296) ALL', 'SEARCH RETURN (PARTIAL x:y) ALL',
               'SORT RETURN (PARTIAL 1:2 ALL) (DATE) UTF-8 ALL']
        if not AGAINST_DOVECOT:
            bad += ['SEARCH RETURN (PARTIAL 1:-5) ALL', 'SEARCH RETURN (PARTIAL -0:-5) ALL',
                    'UID FETCH 1:* (FLAGS) (PARTIAL 0:1)', 'UID FETCH 1:* (FLAGS) (PARTIAL)',
                    'UID FETCH 1:* (FLAGS) (FOO 1:2)', 'UID FETCH 1:* (FLAGS) (PARTIAL 1:2',
                    'UID FETCH 1:* (FLAGS) (PARTIAL 1:2) x']
        for cmd in bad:
            with self.subTest(cmd=cmd):
                st, t, u = self.c.status_of(cmd)
                self.assertEqual(st, 'BAD', t)
                self.assertEqual(esearch_lines(u), [])

    def test_fetch(self):
        self.rfc9394_only()
        c, u = self.c, self.uids
        # RFC 9394 3.3: the messages of the set at those positions
        self.assertEqual(fetch_seqs(c.ok('UID FETCH 1:* (FLAGS) (PARTIAL -1:-30)')),
                         [1, 2, 3, 4, 5, 6])
        self.assertEqual(fetch_seqs(c.ok('UID FETCH 1:* (FLAGS) (PARTIAL -1:-2)')), [5, 6])
        self.assertEqual(fetch_seqs(c.ok('UID FETCH 1:* (UID) (PARTIAL 1:2)')), [1, 2])
        self.assertEqual(fetch_seqs(c.ok('UID FETCH %d,%d:%d (UID) (PARTIAL 2:3)'
                                         % (u[1], u[3], u[5]))), [4, 5])
        self.assertEqual(fetch_seqs(c.ok('FETCH 2:5 (UID) (PARTIAL -1:-1)')), [5])
        self.assertEqual(fetch_seqs(c.ok('UID FETCH 1:* (UID) (PARTIAL 7:9)')), [])

    def test_after_expunge_by_another_session(self):
        self.rfc9394_only()
        c = self.c
        c.ok('CREATE CtxPExp')
        self.addCleanup(lambda: self.login().ok('DELETE CtxPExp'))
        c.ok('COPY 1:* CtxPExp')
        c.select('CtxPExp')
        other = self.login()
        other.select('CtxPExp')
        other.ok('STORE 6 +FLAGS.SILENT (\\Deleted)')
        other.ok('EXPUNGE')
        # not yet announced: the message is gone from the answer, the
        # sequence numbers stay
        self.assertEqual(self.one('SEARCH RETURN (PARTIAL -1:-2) ALL'),
                         self.tagged(b' PARTIAL (-1:-2 4:5)'))
        self.assertEqual(len(imap_util.untagged_of(c.ok('NOOP'), 'EXPUNGE')), 1)
        self.assertEqual(self.one('SEARCH RETURN (PARTIAL -1:-2 COUNT) ALL'),
                         self.tagged(b' PARTIAL (-1:-2 4:5) COUNT 5'))


if __name__ == '__main__':
    harness.main()
