"""IMAP ESORT (RFC 5267 section 3): SORT and UID SORT with RETURN (MIN MAX
ALL COUNT), answered by ESEARCH with the TAG and UID of RFC 4731, MIN and
MAX the first and last message in sort order, ALL a sequence set in sort
order; RETURN () meaning ALL; SAVE (RFC 5182) keeping the set found, or
the first and last in sort order with MIN/MAX alone; empty results, an
empty mailbox, '*' in one, and expunges between commands."""
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


class ESort(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        c.ok('CREATE %s' % BOX)
        c.ok('CREATE CtxEmpty')
        cls.uids = []
        for i in range(1, len(DAYS) + 1):
            r = c.append(BOX, msg(i))
            cls.uids.append(r[1] if r else None)
        c.logout()

    def setUp(self):
        self.c = self.login()
        self.c.select(BOX)
        if None in self.uids:
            u = self.c.ok('UID SEARCH ALL')
            type(self).uids = imap_util.search_result(u)

    def one(self, text):
        """The one ESEARCH line of a command that must end in OK, with no
        SORT answer beside it."""
        u = self.c.ok(text)
        self.assertEqual(imap_util.untagged_of(u, 'SORT'), [], u)
        lines = esearch_lines(u)
        self.assertEqual(len(lines), 1, u)
        return lines[0]

    def tagged(self, rest=b''):
        return b'* ESEARCH (TAG "T%d")' % self.c.n + rest

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


if __name__ == '__main__':
    harness.main()
