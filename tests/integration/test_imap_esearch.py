"""IMAP ESEARCH (RFC 4731): SEARCH and UID SEARCH with RETURN (MIN MAX ALL
COUNT), the ESEARCH answer with its TAG and UID, RETURN () meaning ALL, ALL
as a compact sequence set, empty results (nothing but COUNT 0) and answers
after another session expunged messages."""
import re
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


class ESearch(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
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
        if not imap_util.AGAINST_DOVECOT:
            # a message number '*' in an empty mailbox: see
            # tests/data/imap-differences.md (Dovecot answers BAD)
            lines, r = esearch(c, 'SEARCH RETURN (ALL COUNT) 1:*')
            self.assertEqual(lines, [b'* ESEARCH (TAG "T%d") COUNT 0' % c.n])
            lines, r = esearch(c, 'SEARCH RETURN (MIN) *')
            self.assertEqual(lines, [b'* ESEARCH (TAG "T%d")' % c.n])

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


if __name__ == '__main__':
    harness.main()
