"""IMAP SORT and THREAD (RFC 5256) and SORT=DISPLAY (RFC 5957), with their
UID forms: every sort key and REVERSE, ties in mailbox order, missing
headers, the base subject of RFC 5256 2.1 (RFC 2047 words, Re:/Fwd:/[list]
prefixes, (fwd) trailers, [fwd: ...]), THREAD=ORDEREDSUBJECT and
THREAD=REFERENCES with missing parents and loops in References, an empty
mailbox and expunges between commands."""
import re

import harness
from imap_util import ImapCase, Imap, AGAINST_DOVECOT


def msg(subject=None, frm=None, to=None, cc=None, date=None, msgid=None, refs=None,
        irt=None, body='body\r\n'):
    h = ''
    if frm is not None:
        h += 'From: %s\r\n' % frm
    if to is not None:
        h += 'To: %s\r\n' % to
    if cc is not None:
        h += 'Cc: %s\r\n' % cc
    if subject is not None:
        h += 'Subject: %s\r\n' % subject
    if date is not None:
        h += 'Date: %s\r\n' % date
    if msgid is not None:
        h += 'Message-ID: %s\r\n' % msgid
    if refs is not None:
        h += 'References: %s\r\n' % refs
    if irt is not None:
        h += 'In-Reply-To: %s\r\n' % irt
    return (h + 'MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n' + body).encode()


def day(d, hh=12):
    return '%s, %02d Mar 2021 %02d:00:00 +0000' % (
        ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'][d % 7], d, hh)


def sort_of(untagged):
    for r in untagged:
        if r.startswith(b'* SORT'):
            return [int(x) for x in r[6:].split()]
    raise AssertionError('no * SORT in %r' % untagged)


def thread_of(untagged):
    for r in untagged:
        if r.startswith(b'* THREAD'):
            return r[8:].strip().decode()
    raise AssertionError('no * THREAD in %r' % untagged)


# Messages for the key tests: (message, internal date)
KEYED = [
    (msg('beta', 'Zed <zed@z.example>', 'mia@m.example', 'Bea <bea@b.example>',
         day(3), body='x' * 300), '05-Mar-2021 10:00:00 +0000'),
    (msg('Alpha', '"Anna" <bob@b.example>', 'Carl <carl@c.example>', None,
         day(1), body='x' * 100), '01-Mar-2021 10:00:00 +0000'),
    (msg('gamma', 'adam@a.example', 'al@a.example', 'cy@c.example',
         day(2), body='x' * 200), '03-Mar-2021 10:00:00 +0000'),
    # the same keys as message 2 but arrived later: ties in mailbox order
    (msg('Alpha', '"Anna" <bob@b.example>', 'Carl <carl@c.example>', None,
         day(1), body='x' * 100), '02-Mar-2021 10:00:00 +0000'),
]


class Sort(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        c.ok('CREATE Keys')
        for m, date in KEYED:
            c.append('Keys', m, date=date)
        c.ok('CREATE Empty')
        c.logout()

    def box(self, name):
        c = self.login()
        c.select(name)
        return c

    def fill(self, name, messages):
        c = self.login()
        c.ok('CREATE %s' % name)
        for m in messages:
            if isinstance(m, tuple):
                c.append(name, m[0], date=m[1])
            else:
                c.append(name, m)
        c.select(name)
        return c

    def sort(self, c, criteria, search='ALL', uid=False):
        return sort_of(c.ok('%sSORT (%s) UTF-8 %s' % ('UID ' if uid else '', criteria, search)))

    def thread(self, c, algo, search='ALL', uid=False):
        return thread_of(c.ok('%sTHREAD %s UTF-8 %s' % ('UID ' if uid else '', algo, search)))

    # ---- capability

    def test_capability(self):
        c = self.login()
        caps = c.ok('CAPABILITY')[0].split()
        for cap in (b'SORT', b'SORT=DISPLAY', b'THREAD=ORDEREDSUBJECT', b'THREAD=REFERENCES',
                    b'THREAD=REFS'):
            self.assertIn(cap, caps)

    # ---- keys

    def test_each_key(self):
        c = self.box('Keys')
        self.assertEqual(self.sort(c, 'ARRIVAL'), [2, 4, 3, 1])
        self.assertEqual(self.sort(c, 'REVERSE ARRIVAL'), [1, 3, 4, 2])
        self.assertEqual(self.sort(c, 'DATE'), [2, 4, 3, 1])
        self.assertEqual(self.sort(c, 'SIZE'), [2, 4, 3, 1])
        self.assertEqual(self.sort(c, 'REVERSE SIZE'), [1, 3, 2, 4])
        # base subjects compare with i;ascii-casemap: "Alpha" < "beta" < "gamma"
        self.assertEqual(self.sort(c, 'SUBJECT'), [2, 4, 1, 3])
        # FROM: the mailbox part of the first address: adam, bob, bob, zed
        self.assertEqual(self.sort(c, 'FROM'), [3, 2, 4, 1])
        # TO: al, carl, carl, mia
        self.assertEqual(self.sort(c, 'TO'), [3, 2, 4, 1])
        # CC: none (empty key first), none, bea, cy
        self.assertEqual(self.sort(c, 'CC'), [2, 4, 1, 3])
        self.assertEqual(self.sort(c, 'REVERSE CC'), [3, 1, 2, 4])

    def test_several_keys(self):
        c = self.box('Keys')
        self.assertEqual(self.sort(c, 'SUBJECT REVERSE ARRIVAL'), [4, 2, 1, 3])
        self.assertEqual(self.sort(c, 'REVERSE SUBJECT ARRIVAL'), [3, 1, 2, 4])
        # REVERSE applies to one key; equal keys stay in mailbox order
        self.assertEqual(self.sort(c, 'REVERSE FROM'), [1, 2, 4, 3])

    def test_display(self):
        c = self.box('Keys')
        # display names: Zed, Anna, (none: adam@a.example), Anna
        self.assertEqual(self.sort(c, 'DISPLAYFROM'), [3, 2, 4, 1])
        # al@a.example < Carl < mia@m.example
        self.assertEqual(self.sort(c, 'DISPLAYTO'), [3, 2, 4, 1])
        self.assertEqual(self.sort(c, 'REVERSE DISPLAYFROM'), [1, 2, 4, 3])

    def test_search_criteria_and_uid(self):
        c = self.box('Keys')
        c.ok('STORE 1,3 +FLAGS (\\Seen)')
        self.assertEqual(self.sort(c, 'SUBJECT', 'SEEN'), [1, 3])
        self.assertEqual(self.sort(c, 'SUBJECT', 'NOT SEEN 1:3'), [2])
        self.assertEqual(self.sort(c, 'ARRIVAL', 'SUBJECT alpha'), [2, 4])
        uids = [int(x) for x in re.findall(
            rb'UID (\d+)', b' '.join(c.ok('FETCH 1:* (UID)')))]
        self.assertEqual(self.sort(c, 'DATE', uid=True),
                         [uids[1], uids[3], uids[2], uids[0]])
        c.ok('STORE 1,3 -FLAGS (\\Seen)')
        self.assertEqual(sort_of(c.ok('SORT (DATE) US-ASCII ALL')), [2, 4, 3, 1])

    def test_charset_converted(self):
        """The search keys of SORT and THREAD are in the charset named, as
        SEARCH's (RFC 5256 3, RFC 3501 6.4.4)."""
        self.fill('Charset', [msg('=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=', date=day(2)),
                              msg('other', date=day(1))])
        c = self.box('Charset')
        for cs in ('ISO-8859-1', 'WINDOWS-1252'):
            with self.subTest(charset=cs):
                u = c.ok('SORT (DATE) %s SUBJECT {}' % cs, 'grüße'.encode(cs))
                self.assertEqual(sort_of(u), [1])
                u = c.ok('THREAD REFERENCES %s SUBJECT {}' % cs, 'Grüße'.encode(cs))
                self.assertEqual(thread_of(u), '(1)')

    def test_bad_arguments(self):
        c = self.box('Keys')
        # (Dovecot converts every charset iconv knows)
        st, t, u = c.status_of('SORT (DATE) X-NO-SUCH-CHARSET ALL')
        self.assertEqual(st, 'NO')
        self.assertIn(b'[BADCHARSET', t)
        for bad in ('SORT DATE UTF-8 ALL', 'SORT () UTF-8 ALL', 'SORT (NOSUCHKEY) UTF-8 ALL',
                    'SORT (REVERSE) UTF-8 ALL', 'SORT (DATE) UTF-8', 'SORT (DATE)',
                    'SORT (DATE) UTF-8 NOSUCHSEARCH', 'THREAD NOSUCHALGO UTF-8 ALL',
                    'THREAD REFERENCES UTF-8', 'SORT (DATE) UTF-8 99'):
            if AGAINST_DOVECOT and bad.endswith(' 99'):
                continue  # Dovecot finds nothing there; coffre's SEARCH says BAD too
            st, t, u = c.status_of(bad)
            self.assertEqual(st, 'BAD', bad)
        # not in the authenticated state
        c2 = self.login()
        st, t, u = c2.status_of('SORT (DATE) UTF-8 ALL')
        self.assertEqual(st, 'BAD')

    def test_empty_mailbox(self):
        c = self.box('Empty')
        u = c.ok('SORT (SUBJECT) UTF-8 ALL')
        self.assertIn(b'* SORT', u)
        self.assertEqual(thread_of(c.ok('THREAD REFERENCES UTF-8 ALL')), '')
        self.assertEqual(thread_of(c.ok('UID THREAD ORDEREDSUBJECT UTF-8 ALL')), '')
        # nothing matches: the same empty answers
        c = self.box('Keys')
        self.assertEqual(self.sort(c, 'DATE', 'SUBJECT nothing-like-this'), [])
        self.assertEqual(self.thread(c, 'REFERENCES', 'SUBJECT nothing-like-this'), '')

    def test_missing_headers(self):
        # no Subject, From, To, Date: empty keys sort first; DATE is then
        # the internal date
        c = self.fill('Bare', [
            (msg('b', 'b@x.example', 'b@x.example', None, day(10)), '20-Mar-2021 00:00:00 +0000'),
            (msg(None, None, None, None, None), '15-Mar-2021 00:00:00 +0000'),
            (msg('a', 'a@x.example', 'a@x.example', None, day(5)), '01-Mar-2021 00:00:00 +0000'),
        ])
        self.assertEqual(self.sort(c, 'SUBJECT'), [2, 3, 1])
        self.assertEqual(self.sort(c, 'FROM'), [2, 3, 1])
        self.assertEqual(self.sort(c, 'TO'), [2, 3, 1])
        self.assertEqual(self.sort(c, 'DATE'), [3, 1, 2])

    def test_base_subject(self):
        # all of these have the base subject "hello" (RFC 5256 2.1)
        same = ['Re: hello', 'Fwd: Hello', 'RE: Re: re:   hello', '[list] Re: hello',
                'Re: [list] hello', 'hello (fwd)', '[fwd: hello]', 'Fw: [fwd: Re: hello (fwd)]',
                '=?UTF-8?Q?hello?=', '=?ISO-8859-1?B?aGVsbG8=?=', 'Re[2]: hello',
                '  hello  ', 'Re:\r\n hello', 'HELLO']
        msgs = [msg(s, 'a@x.example', 'b@x.example', None, day(1 + i))
                for i, s in enumerate(same)]
        # and these do not
        other = ['[list] ', 'Rehello', 'hello world', '[fwd: hello', 'Re hello']
        msgs += [msg(s, 'a@x.example', 'b@x.example', None, day(20 + i))
                 for i, s in enumerate(other)]
        c = self.fill('Subj', msgs)
        n = len(same)
        t = self.thread(c, 'ORDEREDSUBJECT', '1:%d' % n)
        # one thread: the first message the root, the others its children
        self.assertEqual(t, '(1 %s)' % ''.join('(%d)' % i for i in range(2, n + 1)))
        # each of the others stands alone
        for i in range(n + 1, n + len(other) + 1):
            self.assertEqual(self.thread(c, 'ORDEREDSUBJECT', '1,%d' % i), '(1)(%d)' % i)
        # sorted as one key, in mailbox order among themselves
        self.assertEqual(self.sort(c, 'SUBJECT', '1:%d' % n), list(range(1, n + 1)))
        # "[list] " keeps its blob (removing it would leave nothing): the
        # keys are "[LIST]", "REHELLO", "HELLO WORLD", "[FWD: HELLO", "RE HELLO"
        self.assertEqual(self.sort(c, 'SUBJECT', '%d:*' % (n + 1)),
                         [n + 3, n + 5, n + 2, n + 4, n + 1])

    def test_encoded_subjects_sort(self):
        c = self.fill('Enc', [
            msg('=?UTF-8?B?w4lsw6lwaGFudA==?=', 'a@x.example', None, None, day(1)),  # Éléphant
            msg('=?UTF-8?Q?zebra?=', 'a@x.example', None, None, day(2)),
            msg('Re: =?UTF-8?Q?apple?=', 'a@x.example', None, None, day(3)),
            msg('=?UTF-8?Q?Re=3A_Banana?=', 'a@x.example', None, None, day(4)),
        ])
        # decoded: apple, Banana (its "Re:" was encoded), Éléphant (É is E
        # and a combining mark in i;unicode-casemap, I18NLEVEL=1), zebra
        self.assertEqual(self.sort(c, 'SUBJECT'), [3, 4, 1, 2])

    # ---- threads

    def test_orderedsubject(self):
        c = self.fill('Ordered', [
            msg('b topic', 'a@x.example', None, None, day(5)),
            msg('a topic', 'a@x.example', None, None, day(3)),
            msg('Re: b topic', 'a@x.example', None, None, day(4)),
            msg('Re: a topic', 'a@x.example', None, None, day(9)),
            msg('Re: a topic', 'a@x.example', None, None, day(6)),
        ])
        # threads by their first message's date; in each, the first by
        # date is the root and the others its children, by date
        self.assertEqual(self.thread(c, 'ORDEREDSUBJECT'), '(2 (5)(4))(3 1)')

    def test_references(self):
        c = self.fill('Refs', [
            msg('topic', 'a@x.example', None, None, day(1), '<a@x>'),
            msg('Re: topic', 'a@x.example', None, None, day(3), '<b@x>', '<a@x>'),
            msg('Re: topic', 'a@x.example', None, None, day(2), '<c@x>', '<a@x>'),
            msg('Re: topic', 'a@x.example', None, None, day(4), '<d@x>', '<a@x> <c@x>'),
            # parents never seen: one dummy grandparent for both
            msg('lost one', 'a@x.example', None, None, day(5), '<e@x>', '<x@x> <y@x>'),
            msg('lost two', 'a@x.example', None, None, day(6), '<f@x>', '<x@x>'),
            # In-Reply-To alone
            msg('Re: topic', 'a@x.example', None, None, day(7), '<g@x>', None, '<d@x>'),
        ])
        self.assertEqual(self.thread(c, 'REFERENCES'), '(1 (3 4 7)(2))((5)(6))')
        uids = [int(x) for x in re.findall(rb'UID (\d+)', b' '.join(c.ok('FETCH 1:* (UID)')))]
        self.assertEqual(self.thread(c, 'REFERENCES', uid=True),
                         '(%d (%d %d %d)(%d))((%d)(%d))' % tuple(
                             uids[i - 1] for i in (1, 3, 4, 7, 2, 5, 6)))
        # a search narrows the messages threaded: 3's parent left out
        self.assertEqual(self.thread(c, 'REFERENCES', '3:4'), '(3 4)')

    def test_references_loops(self):
        c = self.fill('Loops', [
            # each names the other as parent
            msg('one', 'a@x.example', None, None, day(1), '<p@x>', '<q@x>'),
            msg('two', 'a@x.example', None, None, day(2), '<q@x>', '<p@x>'),
            # a References list that loops on itself and names itself
            msg('three', 'a@x.example', None, None, day(3), '<r@x>', '<s@x> <t@x> <s@x> <r@x>'),
            # a duplicate Message-ID: the second is a message of its own
            msg('four', 'a@x.example', None, None, day(4), '<u@x>'),
            msg('five', 'a@x.example', None, None, day(5), '<u@x>'),
        ])
        t = self.thread(c, 'REFERENCES')
        # every message once, whatever the loops
        nums = sorted(int(x) for x in re.findall(r'\d+', t))
        self.assertEqual(nums, [1, 2, 3, 4, 5])
        self.assertEqual(t, '(2 1)(3)(4)(5)')

    def test_references_subject_merge(self):
        c = self.fill('Merge', [
            msg('meeting', 'a@x.example', None, None, day(1), '<m1@x>'),
            # a reply whose References were lost: joined by its subject
            msg('Re: meeting', 'a@x.example', None, None, day(2), '<m2@x>'),
            # two threads of one subject, neither a reply: a dummy holds both
            msg('lunch', 'a@x.example', None, None, day(3), '<l1@x>'),
            msg('lunch', 'a@x.example', None, None, day(4), '<l2@x>'),
        ])
        self.assertEqual(self.thread(c, 'REFERENCES'), '(1 2)((3)(4))')

    def test_refs(self):
        c = self.fill('Refs2', [
            msg('topic', 'a@x.example', None, None, day(1), '<a@x>'),
            msg('Re: topic', 'a@x.example', None, None, day(9), '<b@x>', '<a@x>'),
            msg('other', 'a@x.example', None, None, day(2), '<c@x>'),
            msg('Re: other', 'a@x.example', None, None, day(3), '<d@x>', '<c@x>'),
            msg('lost', 'a@x.example', None, None, day(4), '<e@x>', '<zz@x>'),
            msg('lost2', 'a@x.example', None, None, day(5), '<f@x>', '<yy@x>'),
            msg('lost2b', 'a@x.example', None, None, day(6), '<g@x>', '<yy@x>'),
            msg('topic', 'a@x.example', None, None, day(7), '<h@x>'),
            msg('Re: topic', 'a@x.example', None, None, day(8), '<i@x>'),
        ])
        # REFERENCES gathers the threads of one base subject under a dummy
        self.assertEqual(self.thread(c, 'REFERENCES'), '((1 2)(8)(9))(3 4)(5)((6)(7))')
        # REFS does not, and orders the threads by their latest message
        self.assertEqual(self.thread(c, 'REFS'), '(3 4)(5)((6)(7))(8)(9)(1 2)')
        self.assertEqual(self.thread(c, 'REFS', '3:*'), '(3 4)(5)((6)(7))(8)(9)')

    # ---- changes between commands

    def test_expunge_between_commands(self):
        c = self.fill('Gone', [msg('s%d' % i, 'a@x.example', None, None, day(10 - i))
                               for i in range(1, 6)])
        self.assertEqual(self.sort(c, 'DATE'), [5, 4, 3, 2, 1])
        other = self.login()
        other.select('Gone')
        other.ok('STORE 2,4 +FLAGS (\\Deleted)')
        other.ok('EXPUNGE')
        # not yet told: its sequence numbers still hold; an expunged
        # message may or may not be listed (RFC 3501 7.4.1 forbids the
        # EXPUNGE here, not the answer)
        got = self.sort(c, 'DATE')
        self.assertEqual([x for x in got if x not in (2, 4)], [5, 3, 1])
        u = c.ok('NOOP')
        self.assertEqual(len([r for r in u if r.endswith(b'EXPUNGE')]), 2)
        self.assertEqual(self.sort(c, 'DATE'), [3, 2, 1])
        self.assertEqual(self.thread(c, 'ORDEREDSUBJECT'), '(3)(2)(1)')
        # a message delivered meanwhile takes part once announced
        other.append('Gone', msg('s0', 'a@x.example', None, None, day(1)))
        u = c.ok('NOOP')
        self.assertEqual(self.sort(c, 'DATE'), [4, 3, 2, 1])


if __name__ == '__main__':
    harness.main()
