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
modifier of FETCH and UID FETCH (RFC 9394 3.3).

CONTEXT=SEARCH (RFC 5267 section 4): SEARCH RETURN (UPDATE) keeps the
result up to date with ESEARCH ADDTO and REMOVEFROM as this session or
another changes flags, appends (APPEND from another connection, LMTP
delivery, during IDLE too) and expunges (REMOVEFROM before the EXPUNGE);
CONTEXT alone as a hint; CANCELUPDATE; the end of the contexts at SELECT,
EXAMINE, CLOSE and UNSELECT; a tag in use; NOUPDATE past
imap_max_search_updates.

CONTEXT=SORT (RFC 5267 section 4): SORT RETURN (UPDATE) with positions in
the sorted result, ADDTO and REMOVEFROM taken one after the other as a
client applies them; the list a client keeps that way is the one a new
SORT answers."""
import re
import unittest

import harness
import imap_util
import lmtp_util
from imap_util import ImapCase, AGAINST_DOVECOT, USER

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
            % (i, subject, DAYS[(i - 1) % len(DAYS)], i, i)).encode()


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
        imap_util.fill_mailbox(cls.server, BOX, [msg(i) for i in range(1, len(DAYS) + 1)],
                               also=['CtxEmpty'])

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



def updates(untagged, tag):
    """The ADDTO and REMOVEFROM of tag's context in untagged, in order:
    [('ADDTO' or 'REMOVEFROM', [numbers])], sets as lists."""
    out = []
    for r in untagged:
        m = re.match(rb'\* ESEARCH \(TAG "%s"\)( UID)?(.*)$' % tag.encode(), r)
        if not m:
            continue
        for name, pos, st in re.findall(rb'(ADDTO|REMOVEFROM) \((\d+) ([0-9:,]+)\)', m.group(2)):
            out.append((name.decode(), ordered_set(st.decode())))
    return out


def updates_at(untagged, tag):
    """The ADDTO and REMOVEFROM of tag's context with their positions:
    [(name, [(position, [numbers in order])])]."""
    out = []
    for r in untagged:
        m = re.match(rb'\* ESEARCH \(TAG "%s"\)( UID)?(.*)$' % tag.encode(), r)
        if not m:
            continue
        for name, body in re.findall(rb'(ADDTO|REMOVEFROM) \(([^)]*)\)', m.group(2)):
            w = body.split()
            out.append((name.decode(), [(int(w[i]), ordered_set(w[i + 1].decode()))
                                        for i in range(0, len(w), 2)]))
    return out


def apply_updates(lst, ups, test):
    """A client's list after the updates, each taken in turn (RFC 5267
    4.3.3, 4.3.4): REMOVEFROM removes at the position, ADDTO inserts from
    it on."""
    lst = list(lst)
    for name, groups in ups:
        for pos, nums in groups:
            for v in nums:
                if name == 'REMOVEFROM':
                    test.assertEqual(lst[pos - 1], v, (lst, ups))
                    del lst[pos - 1]
                else:
                    lst.insert(pos - 1, v)
                    pos += 1
    return lst


def merged(ups):
    """The ADDTO and REMOVEFROM of a list of updates as two sets."""
    add, rem = set(), set()
    for name, nums in ups:
        (add if name == 'ADDTO' else rem).update(nums)
    return add, rem


class Context(ContextCase):
    """Dovecot 2.3 has CONTEXT=SEARCH; what it leaves out is said where a
    check is skipped."""

    def setUp(self):
        super().setUp()
        self.c.ok('CREATE CtxU')
        self.addCleanup(lambda: self.login().ok('DELETE CtxU'))
        self.c.ok('COPY 1:* CtxU')
        self.c.select('CtxU')
        self.c.ok('STORE 1 +FLAGS.SILENT (\\Seen)')
        self.uids = imap_util.search_result(self.c.ok('UID SEARCH ALL'))

    def other(self):
        o = self.login()
        o.select('CtxU')
        return o

    def test_advertised(self):
        caps = self.c.ok('CAPABILITY')[0].split()
        self.assertIn(b'CONTEXT=SEARCH', caps)
        self.assertIn(b'ESEARCH', caps)

    def test_initial_answers(self):
        # RFC 5267 4.2: UPDATE adds no data of its own, CONTEXT is a hint
        self.assertEqual(self.one('SEARCH RETURN (UPDATE) UNSEEN'), self.tagged())
        self.assertEqual(self.one('UID SEARCH RETURN (UPDATE COUNT) UNSEEN'),
                         self.tagged(b' UID COUNT 5'))
        self.assertEqual(self.one('SEARCH RETURN (CONTEXT) UNSEEN'), self.tagged(b' ALL 2:6'))
        self.assertEqual(self.one('SEARCH RETURN (CONTEXT COUNT) UNSEEN'),
                         self.tagged(b' COUNT 5'))
        self.assertEqual(self.one('SEARCH RETURN (UPDATE MIN MAX) UNSEEN'),
                         self.tagged(b' MIN 2 MAX 6'))

    def test_own_store(self):
        c = self.c
        c.ok('SEARCH RETURN (UPDATE) UNSEEN')
        t1 = 'T%d' % c.n
        c.ok('UID SEARCH RETURN (UPDATE) UNSEEN')
        t2 = 'T%d' % c.n
        u = c.ok('STORE 1 -FLAGS (\\Seen)')
        self.assertEqual(updates(u, t1), [('ADDTO', [1])])
        self.assertEqual(updates(u, t2), [('ADDTO', [self.uids[0]])])
        # the FETCH first, then the update (4.3.3)
        fetch = [i for i, r in enumerate(u) if b' FETCH ' in r]
        upd = [i for i, r in enumerate(u) if b'ADDTO' in r]
        self.assertTrue(fetch and upd and fetch[0] < upd[0], u)
        u = c.ok('STORE 2:3 +FLAGS.SILENT (\\Seen)')
        self.assertEqual(merged(updates(u, t1)), (set(), {2, 3}))
        self.assertEqual(merged(updates(u, t2)), (set(), set(self.uids[1:3])))
        # a change that keeps the message unseen: no update
        u = c.ok('STORE 4 FLAGS (\\Flagged)')
        self.assertEqual(updates(u, t1) + updates(u, t2), [])

    def test_other_session(self):
        c, o = self.c, self.other()
        c.ok('UID SEARCH RETURN (UPDATE) UNSEEN')
        t1 = 'T%d' % c.n
        c.ok('SEARCH RETURN (UPDATE COUNT) UNSEEN')
        t2 = 'T%d' % c.n
        o.ok('STORE 1 -FLAGS (\\Seen)')
        o.ok('STORE 2 +FLAGS (\\Seen)')
        r = o.append('CtxU', msg(7))
        u = c.ok('NOOP')
        new_uid = imap_util.search_result(c.ok('UID SEARCH 7'))[0]
        self.assertEqual(merged(updates(u, t1)), ({self.uids[0], new_uid}, {self.uids[1]}))
        self.assertEqual(merged(updates(u, t2)), ({1, 7}, {2}))
        exists = [i for i, r in enumerate(u) if r.endswith(b' EXISTS')]
        upd = [i for i, r in enumerate(u) if b'ADDTO' in r]
        self.assertTrue(exists and upd and exists[0] < upd[0], u)
        # an expunge: the REMOVEFROM comes before the EXPUNGE (4.3.4)
        o.ok('STORE 1 +FLAGS.SILENT (\\Deleted)')
        o.ok('EXPUNGE')
        u = c.ok('NOOP')
        self.assertEqual(merged(updates(u, t1)), (set(), {self.uids[0]}))
        self.assertEqual(merged(updates(u, t2)), (set(), {1}))
        rem = [i for i, r in enumerate(u) if b'REMOVEFROM' in r]
        exp = [i for i, r in enumerate(u) if r.endswith(b' EXPUNGE')]
        self.assertTrue(rem and exp and max(rem) < exp[0], u)
        # what the contexts hold now is the same as a new search
        self.assertEqual(self.one('SEARCH RETURN (ALL) UNSEEN'), self.tagged(b' ALL 2:6'))

    def test_expunge_of_a_message_not_in_the_result(self):
        c, o = self.c, self.other()
        c.ok('SEARCH RETURN (UPDATE) UNSEEN')
        t1 = 'T%d' % c.n
        o.ok('STORE 1 +FLAGS.SILENT (\\Deleted)')   # seen: not in the result
        o.ok('EXPUNGE')
        u = c.ok('NOOP')
        self.assertEqual(updates(u, t1), [])
        self.assertEqual(len(imap_util.untagged_of(u, 'EXPUNGE')), 1)
        # the numbers moved: message 2 is now 1
        u = o.ok('STORE 1 +FLAGS (\\Seen)')
        u = c.ok('NOOP')
        self.assertEqual(updates(u, t1), [('REMOVEFROM', [1])])

    def test_lmtp_delivery_during_idle(self):
        c = self.c
        c.select('INBOX')
        c.ok('SEARCH RETURN (UPDATE) UNSEEN')
        t1 = 'T%d' % c.n
        c.idle()
        l = lmtp_util.lmtp(self.server)
        rcpt, replies = lmtp_util.send(l, 'sender@example.net', [USER], msg(8))
        l.quit()
        self.assertEqual([code for code, _ in replies], [250])
        got = []
        while not any(b'ADDTO' in r for r in got):
            got.append(c.line())
        u = c.done()
        n = int([r for r in got if r.endswith(b' EXISTS')][-1].split()[1])
        self.assertEqual(updates(got, t1), [('ADDTO', [n])])

    def test_cancelupdate(self):
        c = self.c
        c.ok('SEARCH RETURN (UPDATE) UNSEEN')
        t1 = 'T%d' % c.n
        c.ok('SEARCH RETURN (UPDATE) UNSEEN')
        t2 = 'T%d' % c.n
        for bad in ['CANCELUPDATE', 'CANCELUPDATE %s' % t1]:
            self.assertEqual(c.status_of(bad)[0], 'BAD', bad)
        if not AGAINST_DOVECOT:
            # an unknown tag among them: nothing is cancelled (Dovecot
            # cancels the known ones: imap-differences.md)
            self.assertEqual(c.status_of('CANCELUPDATE "%s" "X1"' % t1)[0], 'NO')
        self.assertEqual(c.status_of('CANCELUPDATE "%s"' % t1)[0], 'OK')
        self.assertEqual(c.status_of('CANCELUPDATE "%s"' % t1)[0], 'NO')
        self.assertEqual(c.status_of('CANCELUPDATE "X2"')[0], 'NO')
        u = c.ok('STORE 1 -FLAGS (\\Seen)')
        self.assertEqual(updates(u, t1), [])
        self.assertEqual(updates(u, t2), [('ADDTO', [1])])
        # the tag is free again
        c.ok('SEARCH RETURN (UPDATE) UNSEEN')

    def test_tag_in_use(self):
        c = self.c
        st, t, u = c.status_of('SEARCH RETURN (UPDATE) UNSEEN')
        tag = 'T%d' % c.n
        # the same tag again: the next command sent is given it by hand
        c.send(('%s SEARCH RETURN (UPDATE) FLAGGED\r\n' % tag).encode())
        u, t = c.until_tagged(tag)
        self.assertEqual(t.split()[1], b'BAD', t)
        self.assertEqual(c.status_of('SEARCH RETURN (UPDATE UPDATE) ALL')[0], 'BAD')

    def test_ends_with_the_mailbox(self):
        for cmd in ('SELECT CtxU', 'EXAMINE CtxU', 'CLOSE', 'UNSELECT'):
            with self.subTest(cmd=cmd):
                c = self.login()
                c.select('CtxU')
                c.ok('SEARCH RETURN (UPDATE) ALL')
                t1 = 'T%d' % c.n
                c.ok(cmd)
                c.select('CtxU')
                u = c.ok('STORE 2 +FLAGS (\\Seen)')
                u += c.ok('STORE 2 -FLAGS (\\Seen)')
                self.assertFalse([r for r in u if b'TAG "%s"' % t1.encode() in r], u)
                if not AGAINST_DOVECOT:
                    self.assertEqual(c.status_of('CANCELUPDATE "%s"' % t1)[0], 'NO')
                c.logout()

    def test_sequence_numbers_of_the_criteria(self):
        # 4.3: the set is read when the command comes, as UIDs after
        c, o = self.c, self.other()
        c.ok('SEARCH RETURN (UPDATE) 3:* UNSEEN')
        t1 = 'T%d' % c.n
        o.ok('STORE 1 +FLAGS.SILENT (\\Deleted)')
        o.ok('EXPUNGE')
        o.append('CtxU', msg(9))
        u = c.ok('NOOP')
        self.assertEqual(updates(u, t1), [])
        u = c.ok('STORE 1 -FLAGS (\\Seen)')   # old 2: not in 3:*
        self.assertEqual(updates(u, t1), [])
        u = c.ok('STORE 2 +FLAGS (\\Seen)')   # old 3
        self.assertEqual(updates(u, t1), [('REMOVEFROM', [2])])


class ContextLimit(ContextCase):
    CONF = {'imap_max_search_updates': '1'}

    def test_noupdate(self):
        if AGAINST_DOVECOT:
            self.skipTest('the limit is a coffre setting')
        c = self.c
        c.ok('SEARCH RETURN (UPDATE) UNSEEN')
        t1 = 'T%d' % c.n
        u = c.ok('SEARCH RETURN (UPDATE COUNT) UNSEEN')
        t2 = 'T%d' % c.n
        self.assertEqual(u[0], b'* ESEARCH (TAG "%s") COUNT 6' % t2.encode())
        self.assertTrue(u[1].startswith(b'* NO [NOUPDATE "%s"]' % t2.encode()), u)
        c.ok('CANCELUPDATE "%s"' % t1)
        c.ok('SEARCH RETURN (UPDATE) UNSEEN')
        t3 = 'T%d' % c.n
        u = c.ok('STORE 1 +FLAGS (\\Seen)')
        self.assertEqual(updates(u, t3), [('REMOVEFROM', [1])])
        self.assertEqual(updates(u, t2), [])



class ContextSort(ContextCase):
    """CONTEXT=SORT: not in Dovecot 2.3."""

    def setUp(self):
        if AGAINST_DOVECOT:
            self.skipTest('CONTEXT=SORT is not in Dovecot 2.3')
        super().setUp()
        self.c.ok('CREATE CtxS')
        self.addCleanup(lambda: self.login().ok('DELETE CtxS'))
        self.c.ok('COPY 1:* CtxS')
        self.c.select('CtxS')
        self.c.ok('STORE 1 +FLAGS.SILENT (\\Seen)')
        self.uids = imap_util.search_result(self.c.ok('UID SEARCH ALL'))

    def sorted_now(self, uid=True):
        u = self.c.ok('%sSORT (DATE) UTF-8 UNSEEN' % ('UID ' if uid else ''))
        return [int(x) for x in imap_util.untagged_of(u, 'SORT')[0].split()[2:]]

    def test_advertised(self):
        self.assertIn(b'CONTEXT=SORT', self.c.ok('CAPABILITY')[0].split())

    def test_positions(self):
        c = self.c
        # unseen 2 to 6 in DATE order: 4, 2, 5, 6, 3
        self.assertEqual(self.one('SORT RETURN (UPDATE ALL) (DATE) UTF-8 UNSEEN'),
                         self.tagged(b' ALL 4,2,5:6,3'))
        t = 'T%d' % c.n
        # 1 (5 March) joins between 6 and 3
        u = c.ok('STORE 1 -FLAGS (\\Seen)')
        self.assertEqual(updates_at(u, t), [('ADDTO', [(5, [1])])])
        u = c.ok('STORE 5 +FLAGS (\\Seen)')
        self.assertEqual(updates_at(u, t), [('REMOVEFROM', [(3, [5])])])
        # 4, 2, 6, 1, 3 less 2 and 6: both at position 2, one after the other
        u = c.ok('STORE 2,6 +FLAGS.SILENT (\\Seen)')
        self.assertEqual(updates_at(u, t), [('REMOVEFROM', [(2, [2, 6])])])
        # an expunge: the position before the EXPUNGE
        c.ok('STORE 4 +FLAGS.SILENT (\\Deleted)')
        u = c.ok('EXPUNGE')
        self.assertEqual(updates_at(u, t), [('REMOVEFROM', [(1, [4])])])
        rem = [i for i, r in enumerate(u) if b'REMOVEFROM' in r]
        exp = [i for i, r in enumerate(u) if r.endswith(b' EXPUNGE')]
        self.assertTrue(rem and exp and rem[0] < exp[0], u)

    def test_client_list_follows(self):
        c, o = self.c, self.login()
        o.select('CtxS')
        line = self.one('UID SORT RETURN (UPDATE ALL) (DATE) UTF-8 UNSEEN')
        t = 'T%d' % c.n
        lst = ordered_set(line.split()[-1].decode())
        steps = [lambda: o.ok('STORE 1 -FLAGS (\\Seen)'),
                 lambda: o.append('CtxS', msg(7)),      # 5 March, after 1
                 lambda: o.append('CtxS', msg(10)),     # 1 March, first
                 lambda: o.ok('STORE 2:4 +FLAGS.SILENT (\\Seen)'),
                 lambda: (o.ok('STORE 5 +FLAGS.SILENT (\\Deleted)'), o.ok('EXPUNGE')),
                 lambda: o.ok('STORE 1:* -FLAGS.SILENT (\\Seen)'),
                 lambda: (o.ok('STORE 1,3 +FLAGS.SILENT (\\Deleted \\Seen)'),
                          o.ok('EXPUNGE'))]
        for i, step in enumerate(steps):
            step()
            u = c.ok('NOOP')
            lst = apply_updates(lst, updates_at(u, t), self)
            self.assertEqual(lst, self.sorted_now(), 'after step %d: %r %r' % (i, u, c.transcript()))

    def test_sequence_numbers(self):
        c = self.c
        self.one('SORT RETURN (UPDATE) (REVERSE DATE) UTF-8 UNSEEN')
        t = 'T%d' % c.n
        lst = self.sorted_now(uid=False)[::-1]
        u = c.ok('STORE 1 -FLAGS (\\Seen)')
        lst = apply_updates(lst, updates_at(u, t), self)
        self.assertEqual(lst, self.sorted_now(uid=False)[::-1])
        c.ok('STORE 2 +FLAGS.SILENT (\\Deleted)')
        u = c.ok('EXPUNGE')
        lst = apply_updates(lst, updates_at(u, t), self)
        # the numbers moved down past the expunged one
        lst = [x - 1 if x > 2 else x for x in lst]
        self.assertEqual(lst, self.sorted_now(uid=False)[::-1])

    def test_tag_in_use_and_cancel(self):
        c = self.c
        c.ok('SORT RETURN (UPDATE) (DATE) UTF-8 UNSEEN')
        t = 'T%d' % c.n
        c.send(('%s SORT RETURN (UPDATE) (DATE) UTF-8 ALL\r\n' % t).encode())
        u, tl = c.until_tagged(t)
        self.assertEqual(tl.split()[1], b'BAD', tl)
        c.ok('CANCELUPDATE "%s"' % t)
        u = c.ok('STORE 1 -FLAGS (\\Seen)')
        self.assertEqual(updates_at(u, t), [])


if __name__ == '__main__':
    harness.main()
