"""IMAP ESEARCH (RFC 4731): SEARCH and UID SEARCH with RETURN (MIN MAX ALL
COUNT), the ESEARCH answer with its TAG and UID, RETURN () meaning ALL, ALL
as a compact sequence set, empty results (nothing but COUNT 0) and answers
after another session expunged messages. SEARCHRES (RFC 5182): RETURN
(SAVE) and "$" in FETCH, STORE, COPY, MOVE, SEARCH, their UID forms and UID
EXPUNGE; "$" empty before any SAVE and after SELECT/EXAMINE, losing the
messages expunged, emptied by a SEARCH ... SAVE answered NO and kept by one
answered BAD, and commands using it pipelined right after the SAVE. WITHIN
(RFC 5032): OLDER and YOUNGER on the internal date."""
import re
import time
import unittest

import harness
import imap_util
from imap_util import ImapCase, Imap, make_message

BOX = 'ES'
# 11 messages; FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith" finds 2, 10 and 11,
# as in the examples of RFC 4731 section 3
SMITH = (3, 5, 7)
FLAGGED = (2, 3, 5, 10, 11)
RFC_CRIT = 'FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"'

ESEARCH_RE = re.compile(rb'^\* ESEARCH \(TAG "([^"]*)"\)( UID)?((?: [A-Za-z]+ [0-9:,]+)*)$')


def esearch(c, text):
    """Runs a command that must end in OK; returns (exact ESEARCH lines,
    a dict of the one ESEARCH answer: 'tag', 'uid' and the upper-case
    result names mapped to their values as text), or (lines, None)."""
    tag = 'T%d' % (c.n + 1)
    u = c.ok(text)
    lines = [r for r in u if r.upper().startswith(b'* ESEARCH')]
    if not lines:
        return lines, None
    m = ESEARCH_RE.match(lines[-1])
    if not m:
        raise AssertionError('not an ESEARCH answer: %r' % lines[-1])
    out = {'tag': m.group(1).decode(), 'uid': bool(m.group(2))}
    words = m.group(3).split()
    for k, v in zip(words[::2], words[1::2]):
        out[k.decode().upper()] = v.decode()
    if out['tag'] != tag:
        raise AssertionError('ESEARCH for tag %r answered %r' % (tag, lines[-1]))
    return lines, out


def fill(cls):
    """BOX with its 11 messages (cls.uids) and an empty mailbox."""
    c = Imap(cls.server.raw('imaps', tls=True))
    c.login()
    c.ok('CREATE %s' % BOX)
    c.ok('CREATE Empty')
    cls.uids = []
    for i in range(1, 12):
        sender = 'smith@example.net' if i in SMITH else 'jones@example.net'
        flags = ['\\Flagged'] if i in FLAGGED else []
        r = c.append(BOX, make_message(i, sender=sender), flags=flags)
        cls.uids.append(r[1] if r else None)
    c.select(BOX)      # takes \Recent away
    c.logout()


class ESearch(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        fill(cls)

    def setUp(self):
        self.c = self.login()
        self.c.select(BOX)

    def test_advertised(self):
        u = self.c.ok('CAPABILITY')
        self.assertIn('ESEARCH', u[0].decode().split())

    def test_rfc4731_examples(self):
        c = self.c
        lines, r = esearch(c, 'SEARCH RETURN (MIN COUNT) ' + RFC_CRIT)
        self.assertEqual(lines, [b'* ESEARCH (TAG "T%d") MIN 2 COUNT 3' % c.n])
        lines, r = esearch(c, 'SEARCH RETURN () ' + RFC_CRIT)
        self.assertEqual(lines, [b'* ESEARCH (TAG "T%d") ALL 2,10:11' % c.n])
        lines, r = esearch(c, 'SEARCH RETURN (MIN MAX) ' + RFC_CRIT)
        self.assertEqual(lines, [b'* ESEARCH (TAG "T%d") MIN 2 MAX 11' % c.n])
        # no ordinary SEARCH response beside the ESEARCH one
        u = c.ok('SEARCH RETURN (ALL) ' + RFC_CRIT)
        self.assertEqual(imap_util.untagged_of(u, 'SEARCH'), [])

    def test_uid_search(self):
        c = self.c
        u = [self.uids[i - 1] for i in (2, 10, 11)]
        lines, r = esearch(c, 'UID SEARCH RETURN (MIN MAX COUNT ALL) ' + RFC_CRIT)
        self.assertTrue(r['uid'])
        self.assertEqual((int(r['MIN']), int(r['MAX']), int(r['COUNT'])), (u[0], u[2], 3))
        self.assertEqual(imap_util.parse_seqset(r['ALL']), u)
        # the RFC's "UID SEARCH RETURN (MIN MAX) 1:5000" in a mailbox of
        # 5000 messages or more; in this one, a UID set
        lines, r = esearch(c, 'UID SEARCH RETURN (MIN MAX) UID 1:5000')
        self.assertEqual((int(r['MIN']), int(r['MAX'])), (self.uids[0], self.uids[-1]))
        self.assertNotIn('COUNT', r)
        self.assertNotIn('ALL', r)

    def test_order_of_results(self):
        # MIN, MAX, ALL, COUNT: the order of RFC 4731's grammar examples,
        # whatever the order asked for
        lines, r = esearch(self.c, 'SEARCH RETURN (COUNT ALL MAX MIN) ' + RFC_CRIT)
        self.assertEqual(lines, [b'* ESEARCH (TAG "T%d") MIN 2 MAX 11 ALL 2,10:11 COUNT 3'
                                 % self.c.n])

    def test_all_is_a_compact_set(self):
        lines, r = esearch(self.c, 'SEARCH RETURN (ALL) NOT 4:6')
        self.assertEqual(r['ALL'], '1:3,7:11')
        lines, r = esearch(self.c, 'SEARCH RETURN (ALL COUNT) ALL')
        self.assertEqual((r['ALL'], r['COUNT']), ('1:11', '11'))
        lines, r = esearch(self.c, 'UID SEARCH RETURN (ALL) 1:*')
        self.assertEqual(imap_util.parse_seqset(r['ALL']), self.uids)

    def test_same_results_as_search(self):
        for crit in ('ALL', 'FLAGGED', 'UNFLAGGED', 'FROM smith', 'OR 1 FROM smith',
                     'NOT 2:*', 'SUBJECT "message 1"', RFC_CRIT):
            for uid in ('', 'UID '):
                with self.subTest(crit=crit, uid=uid):
                    want = self.c.search(crit, uid=bool(uid))
                    lines, r = esearch(self.c, '%sSEARCH RETURN (MIN MAX ALL COUNT) %s'
                                       % (uid, crit))
                    self.assertEqual(int(r['COUNT']), len(want))
                    self.assertEqual(imap_util.parse_seqset(r.get('ALL', '')) if want else [],
                                     want)
                    if want:
                        self.assertEqual((int(r['MIN']), int(r['MAX'])), (want[0], want[-1]))
                    else:
                        self.assertNotIn('MIN', r)

    def test_no_match(self):
        lines, r = esearch(self.c, 'SEARCH RETURN (MIN MAX ALL COUNT) KEYWORD nosuch')
        self.assertEqual(lines, [b'* ESEARCH (TAG "T%d") COUNT 0' % self.c.n])
        lines, r = esearch(self.c, 'UID SEARCH RETURN (MIN MAX ALL COUNT) KEYWORD nosuch')
        self.assertEqual(lines, [b'* ESEARCH (TAG "T%d") UID COUNT 0' % self.c.n])
        # without COUNT: the answer names only its tag
        lines, r = esearch(self.c, 'SEARCH RETURN (MIN MAX ALL) KEYWORD nosuch')
        self.assertEqual(lines, [b'* ESEARCH (TAG "T%d")' % self.c.n])

    def test_charset_and_parentheses(self):
        lines, r = esearch(self.c, 'SEARCH RETURN (COUNT) CHARSET UTF-8 (FLAGGED NOT 2)')
        self.assertEqual(r['COUNT'], '4')

    def test_bad_syntax(self):
        bad = ['SEARCH RETURN (FOO) ALL', 'SEARCH RETURN MIN ALL', 'SEARCH RETURN (MIN',
               'SEARCH RETURN (MIN) ', 'SEARCH RETURN', 'UID SEARCH RETURN (MIN)',
               'SEARCH RETURN (PARTIALX) ALL']
        if not imap_util.AGAINST_DOVECOT:
            # a missing or doubled SP (RFC 4466 search-return-opts); Dovecot
            # lets both pass
            bad += ['SEARCH RETURN (MIN)ALL', 'SEARCH RETURN (MIN  MAX) ALL']
        for cmd in bad:
            with self.subTest(cmd=cmd):
                st, t, u = self.c.status_of(cmd)
                self.assertEqual(st, 'BAD', t)
                self.assertEqual([r for r in u if b'ESEARCH' in r], [])

    def test_empty_mailbox(self):
        c = self.c
        c.select('Empty')
        lines, r = esearch(c, 'SEARCH RETURN (MIN MAX ALL COUNT) ALL')
        self.assertEqual(lines, [b'* ESEARCH (TAG "T%d") COUNT 0' % c.n])
        lines, r = esearch(c, 'UID SEARCH RETURN (ALL COUNT) 1:*')
        self.assertEqual(lines, [b'* ESEARCH (TAG "T%d") UID COUNT 0' % c.n])
        # '*' of UIDs in an empty mailbox names no message (RFC 9051 9:
        # it stands for UIDNEXT there)
        lines, r = esearch(c, 'UID SEARCH RETURN (MIN COUNT) *')
        self.assertEqual(lines, [b'* ESEARCH (TAG "T%d") UID COUNT 0' % c.n])
        # a message number '*' in an empty mailbox names no message either
        lines, r = esearch(c, 'SEARCH RETURN (ALL COUNT) 1:*')
        self.assertEqual(lines, [b'* ESEARCH (TAG "T%d") COUNT 0' % c.n])
        lines, r = esearch(c, 'SEARCH RETURN (MIN) *')
        self.assertEqual(lines, [b'* ESEARCH (TAG "T%d")' % c.n])
        self.assertEqual(c.search('1:*'), [])

    def test_after_expunge_by_another_session(self):
        c = self.c
        c.ok('CREATE Exp')
        self.addCleanup(lambda: self.login().ok('DELETE Exp'))
        c.ok('COPY 1:* Exp')
        c.select('Exp')
        other = self.login()
        other.select('Exp')
        # the first and the last flagged message not from Smith go
        other.ok('STORE 2,11 +FLAGS.SILENT (\\Deleted)')
        other.ok('EXPUNGE')
        # UID SEARCH may announce the expunges (RFC 3501 7.4.1), SEARCH not
        u = c.ok('UID SEARCH RETURN (MIN MAX COUNT) ' + RFC_CRIT)
        m = re.search(rb'UID MIN (\d+) MAX (\d+) COUNT 1$', b'\n'.join(u), re.M)
        self.assertTrue(m, u)
        self.assertEqual(m.group(1), m.group(2))
        u += c.ok('NOOP')
        self.assertEqual(len(imap_util.untagged_of(u, 'EXPUNGE')), 2)
        lines, r = esearch(c, 'SEARCH RETURN (MIN MAX ALL COUNT) ' + RFC_CRIT)
        self.assertEqual(lines, [b'* ESEARCH (TAG "T%d") MIN 9 MAX 9 ALL 9 COUNT 1' % c.n])
        lines, r = esearch(c, 'SEARCH RETURN (ALL COUNT) FLAGGED')
        self.assertEqual((r['ALL'], r['COUNT']), ('2,4,9', '3'))



def fetched_uids(c, text):
    """The UIDs (ascending) of the FETCH responses of a command."""
    u = c.ok(text)
    return sorted(int(m.group(1)) for m in
                  (re.search(rb'UID (\d+)', r) for r in u if re.match(rb'\* \d+ FETCH', r)) if m)


def expunged(untagged, exists):
    """The message numbers, as they were before, that the EXPUNGE
    responses took away, in whatever order they came."""
    left = list(range(1, exists + 1))
    for r in imap_util.untagged_of(untagged, 'EXPUNGE'):
        del left[int(r.split()[1]) - 1]
    return sorted(set(range(1, exists + 1)) - set(left))


class SearchRes(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        fill(cls)

    def setUp(self):
        self.c = self.login()
        self.c.select(BOX)

    def fresh(self, name):
        """A copy of BOX, selected; its UIDs in order."""
        c = self.c
        c.ok('CREATE %s' % name)
        self.addCleanup(lambda: self.login().ok('DELETE %s' % name))
        c.ok('COPY 1:* %s' % name)
        c.select(name)
        return c.search('ALL', uid=True)

    def saved(self, uid_fetch=True):
        return fetched_uids(self.c, '%sFETCH $ (UID)' % ('UID ' if uid_fetch else ''))

    def test_advertised(self):
        u = self.c.ok('CAPABILITY')
        self.assertIn('SEARCHRES', u[0].decode().split())

    def test_rfc5182_example_1(self):
        c = self.c
        u = c.ok('SEARCH RETURN (SAVE) ' + RFC_CRIT)
        # SAVE alone: no ESEARCH and no SEARCH response
        self.assertEqual([r for r in u if b'SEARCH' in r.upper()], [])
        f = c.fetch('$', '(UID FLAGS)')
        self.assertEqual(sorted(f), [2, 10, 11])
        self.assertEqual(self.saved(), [self.uids[i - 1] for i in (2, 10, 11)])

    def test_save_with_min_max(self):
        c = self.c
        want = [self.uids[i - 1] for i in (2, 10, 11)]
        lines, r = esearch(c, 'SEARCH RETURN (MIN MAX SAVE) ' + RFC_CRIT)
        self.assertEqual((r['MIN'], r['MAX']), ('2', '11'))
        self.assertEqual(self.saved(), [want[0], want[2]])
        lines, r = esearch(c, 'SEARCH RETURN (SAVE MIN) ' + RFC_CRIT)
        self.assertEqual(self.saved(), [want[0]])
        lines, r = esearch(c, 'UID SEARCH RETURN (MAX SAVE) ' + RFC_CRIT)
        self.assertEqual(r['MAX'], str(want[2]))
        self.assertEqual(self.saved(), [want[2]])
        # with ALL or COUNT beside them, the whole result
        lines, r = esearch(c, 'SEARCH RETURN (MIN COUNT SAVE) ' + RFC_CRIT)
        self.assertEqual(self.saved(), want)
        lines, r = esearch(c, 'SEARCH RETURN (SAVE ALL) ' + RFC_CRIT)
        self.assertEqual(r['ALL'], '2,10:11')
        self.assertEqual(self.saved(), want)

    def test_dollar_before_any_save(self):
        c = self.c
        self.assertEqual(c.fetch('$', '(UID)'), {})
        self.assertEqual(self.saved(), [])
        self.assertEqual(c.search('$'), [])
        self.assertEqual(c.search('UID $', uid=True), [])
        lines, r = esearch(c, 'UID SEARCH RETURN (COUNT) $')
        self.assertEqual(r['COUNT'], '0')
        c.ok('STORE $ +FLAGS (\\Answered)')
        self.assertEqual(c.search('ANSWERED'), [])

    def test_search_with_dollar(self):
        c = self.c
        c.ok('UID SEARCH RETURN (SAVE) FLAGGED')
        # RFC 5182 example 4: narrowing the saved result
        self.assertEqual(c.search('$ NOT FROM smith'), [2, 10, 11])
        self.assertEqual(c.search('UID $ NOT FROM smith', uid=True),
                         [self.uids[i - 1] for i in (2, 10, 11)])
        self.assertEqual(c.search('OR $ 1'), [1, 2, 3, 5, 10, 11])
        self.assertEqual(c.search('NOT $'), [1, 4, 6, 7, 8, 9])
        # a SAVE that uses "$" replaces it by its own result
        c.ok('SEARCH RETURN (SAVE) $ FROM smith')
        self.assertEqual(self.saved(), [self.uids[i - 1] for i in (3, 5)])

    def test_empty_result_saved(self):
        c = self.c
        c.ok('SEARCH RETURN (SAVE) FLAGGED')
        c.ok('SEARCH RETURN (SAVE) KEYWORD nosuch')
        # RFC 5182 example 5: FETCH $ is OK and fetches nothing
        self.assertEqual(c.fetch('$', '(UID)'), {})

    def test_select_and_examine_reset(self):
        c = self.c
        for cmd in ('SELECT', 'EXAMINE'):
            with self.subTest(cmd=cmd):
                c.ok('SEARCH RETURN (SAVE) ALL')
                self.assertEqual(len(self.saved()), 11)
                c.ok('%s %s' % (cmd, BOX))
                self.assertEqual(self.saved(), [])
        for cmd in ('UNSELECT', 'CLOSE'):
            with self.subTest(cmd=cmd):
                c.select(BOX)
                c.ok('SEARCH RETURN (SAVE) ALL')
                c.ok(cmd)
                c.select(BOX)
                self.assertEqual(self.saved(), [])

    def test_bad_keeps_no_empties(self):
        c = self.c
        want = [self.uids[i - 1] for i in FLAGGED]
        c.ok('SEARCH RETURN (SAVE) FLAGGED')
        bad = ['SEARCH RETURN (SAVE) NOSUCHKEY']
        if not imap_util.AGAINST_DOVECOT:
            # Dovecot answers a message number beyond the mailbox OK, and
            # empties "$" on a BAD for an unknown option (RFC 5182 2.1 says
            # a BAD leaves it)
            bad += ['SEARCH RETURN (SAVE) 99', 'SEARCH RETURN (SAVE NOSUCHOPTION) ALL']
        for cmd in bad:
            with self.subTest(cmd=cmd):
                st, t, u = c.status_of(cmd)
                self.assertEqual(st, 'BAD', t)
                self.assertEqual(self.saved(), want)
        # an unknown charset: NO [BADCHARSET] empties "$" (RFC 5182 2.1);
        # a server answering it BAD keeps it
        st, t, u = c.status_of('SEARCH RETURN (SAVE) CHARSET X-NO-SUCH-CHARSET ALL')
        self.assertIn(st, ('NO', 'BAD'), t)
        self.assertEqual(self.saved(), [] if st == 'NO' else want)

    def test_expunged_leave_dollar(self):
        c = self.c
        uids = self.fresh('ResExp')
        c.ok('SEARCH RETURN (SAVE) ' + RFC_CRIT)
        c.ok('STORE 10 +FLAGS.SILENT (\\Deleted)')
        u = c.ok('EXPUNGE')
        self.assertEqual(imap_util.untagged_of(u, 'EXPUNGE'), [b'* 10 EXPUNGE'])
        self.assertEqual(sorted(c.fetch('$', '(UID)')), [2, 10])
        self.assertEqual(self.saved(), [uids[1], uids[10]])
        # another session expunges one more; once announced, it is gone
        other = self.login()
        other.select('ResExp')
        other.ok('UID STORE %d +FLAGS.SILENT (\\Deleted)' % uids[1])
        other.ok('EXPUNGE')
        u = c.ok('NOOP')
        self.assertEqual(imap_util.untagged_of(u, 'EXPUNGE'), [b'* 2 EXPUNGE'])
        self.assertEqual(sorted(c.fetch('$', '(UID)')), [9])
        self.assertEqual(c.search('$'), [9])
        lines, r = esearch(c, 'SEARCH RETURN (ALL COUNT) $')
        self.assertEqual((r['ALL'], r['COUNT']), ('9', '1'))

    def test_store_copy_move_expunge(self):
        c = self.c
        uids = self.fresh('ResOps')
        c.ok('CREATE ResDst')
        self.addCleanup(lambda: self.login().ok('DELETE ResDst'))
        c.ok('SEARCH RETURN (SAVE) FROM smith')
        c.ok('STORE $ +FLAGS.SILENT (\\Answered)')
        self.assertEqual(c.search('ANSWERED'), list(SMITH))
        c.ok('UID STORE $ -FLAGS.SILENT (\\Answered)')
        self.assertEqual(c.search('ANSWERED'), [])
        c.ok('COPY $ ResDst')
        c.ok('UID COPY $ ResDst')
        u = c.ok('STATUS ResDst (MESSAGES)')
        self.assertIn(b'MESSAGES 6', u[-1])
        # UID EXPUNGE $ expunges only the saved messages marked \Deleted
        c.ok('STORE 1:5 +FLAGS.SILENT (\\Deleted)')
        u = c.ok('UID EXPUNGE $')
        self.assertEqual(expunged(u, 11), [3, 5])
        self.assertEqual(self.saved(), [uids[6]])
        c.ok('MOVE $ ResDst')
        self.assertEqual(c.search('ALL', uid=True), [x for i, x in enumerate(uids)
                                                     if i + 1 not in SMITH])
        c.ok('UID MOVE $ ResDst')     # nothing left in it: OK, nothing moved
        u = c.ok('STATUS ResDst (MESSAGES)')
        self.assertIn(b'MESSAGES 7', u[-1])

    def test_pipelined_after_save(self):
        c = self.c
        c.ok('SEARCH RETURN (SAVE) ALL')
        # the SAVE and the commands using "$" in one write: each runs
        # after the one before it ended (RFC 5182 2.2)
        c.send(b'T901 SEARCH RETURN (SAVE) ' + RFC_CRIT.encode() + b'\r\n'
               b'T902 FETCH $ (UID)\r\nT903 UID SEARCH RETURN (SAVE MIN) FLAGGED\r\n'
               b'T904 UID FETCH $ (UID)\r\n')
        u1, t1 = c.until_tagged('T901')
        u2, t2 = c.until_tagged('T902')
        u3, t3 = c.until_tagged('T903')
        u4, t4 = c.until_tagged('T904')
        for t in (t1, t2, t3, t4):
            self.assertOK(t)
        self.assertEqual(sorted(int(r.split()[1]) for r in u2 if b'FETCH' in r), [2, 10, 11])
        self.assertEqual([r for r in u4 if b'FETCH' in r],
                         [b'* 2 FETCH (UID %d)' % self.uids[1]])

    def test_syntax(self):
        c = self.c
        for cmd in ('FETCH $,1 (UID)', 'FETCH $:3 (UID)', 'FETCH 1:$ (UID)', 'FETCH $$ (UID)',
                    'UID FETCH 1,$ (UID)', 'SEARCH $:2', 'SEARCH UID 1,$', 'STORE $, +FLAGS (x)'):
            with self.subTest(cmd=cmd):
                st, t, u = c.status_of(cmd)
                self.assertEqual(st, 'BAD', t)



def internal_date(t):
    return time.strftime('%d-%b-%Y %H:%M:%S +0000', time.gmtime(t))


class Within(ImapCase):
    DAY = 86400
    # internal dates, in seconds before the start of the test
    AGES = (30 * DAY, 2 * DAY, 3 * 3600, 0)

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        c.ok('CREATE Within')
        now = time.time()
        for i, age in enumerate(cls.AGES):
            c.append('Within', make_message(i), date=internal_date(now - age))
        c.logout()

    def setUp(self):
        self.c = self.login()
        self.c.select('Within')

    def test_advertised(self):
        u = self.c.ok('CAPABILITY')
        self.assertIn('WITHIN', u[0].decode().split())

    def test_older_younger(self):
        # intervals far from every age, so that the seconds the test takes
        # do not matter
        D = self.DAY
        self.check([
            ('OLDER %d' % (10 * D), [1]), ('YOUNGER %d' % (10 * D), [2, 3, 4]),
            ('OLDER %d' % D, [1, 2]), ('YOUNGER %d' % D, [3, 4]),
            ('OLDER 3600', [1, 2, 3]), ('YOUNGER 3600', [4]),
            ('OLDER %d' % (100 * D), []), ('YOUNGER %d' % (100 * D), [1, 2, 3, 4]),
            ('OLDER 3600 YOUNGER %d' % (10 * D), [2, 3]),
            ('NOT YOUNGER %d' % D, [1, 2]), ('OR OLDER %d YOUNGER 3600' % (10 * D), [1, 4]),
            ('YOUNGER 4294967295', [1, 2, 3, 4]), ('OLDER 4294967295', []),
        ])

    def check(self, cases):
        for crit, want in cases:
            with self.subTest(crit=crit):
                self.assertEqual(self.c.search(crit), want)
                lines, r = esearch(self.c, 'SEARCH RETURN (COUNT) ' + crit)
                self.assertEqual(r['COUNT'], str(len(want)))

    def test_bad(self):
        # RFC 5032's interval is an nz-number
        for crit in ('OLDER', 'OLDER x', 'YOUNGER -1', 'YOUNGER 4294967296', 'OLDER 1.5',
                     'YOUNGER 99999999999', 'OLDER 0', 'YOUNGER 0'):
            with self.subTest(crit=crit):
                st, t, u = self.c.status_of('SEARCH ' + crit)
                self.assertEqual(st, 'BAD', t)


if __name__ == '__main__':
    harness.main()
