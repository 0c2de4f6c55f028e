"""IMAP SEARCH and UID SEARCH (RFC 3501 6.4.4): every search key, OR, NOT,
parentheses, sequence sets and UID sets, CHARSET UTF-8 and US-ASCII (and
BADCHARSET for others), TEXT and BODY through the full-text index."""
import unittest

import harness
import imap_util
from imap_util import AGAINST_DOVECOT
from imap_util import ImapCase, Imap, make_message

BOX = 'Srch'


def msg(frm, to, subject, date, body, cc=None, bcc=None, extra=''):
    h = 'From: %s\r\nTo: %s\r\n' % (frm, to)
    if cc:
        h += 'Cc: %s\r\n' % cc
    if bcc:
        h += 'Bcc: %s\r\n' % bcc
    h += 'Subject: %s\r\nDate: %s\r\n%sMIME-Version: 1.0\r\n' % (subject, date, extra)
    h += 'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
    return h.encode() + body.encode()


MESSAGES = [
    # (message, flags, internal date)
    (msg('Alice <alice@a.example>', 'bob@b.example', 'Quarterly report',
         'Wed, 01 Jan 2020 12:00:00 +0000', 'Numbers go up this quarter.\r\n'),
     ['\\Seen', '\\Answered'], '01-Jan-2020 12:00:00 +0000'),
    (msg('Carol <carol@c.example>', 'dave@d.example', 'Lunch?',
         'Mon, 15 Feb 2021 12:00:00 +0000', 'Pizza on friday?\r\n', cc='erin@e.example',
         bcc='frank@f.example'),
     ['\\Flagged', '$Important'], '15-Feb-2021 12:00:00 +0000'),
    (msg('=?UTF-8?Q?Zo=C3=AB?= <zoe@z.example>', 'bob@b.example',
         '=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=', 'Thu, 10 Mar 2022 12:00:00 +0000',
         'Ein Käsekuchen für alle.\r\n' + 'padding line of text\r\n' * 500),
     ['\\Draft', '\\Deleted'], '10-Mar-2022 12:00:00 +0000'),
    (msg('Bob <bob@b.example>', 'alice@a.example', 'Re: Quarterly report',
         'Thu, 10 Mar 2022 12:00:00 +0000', 'The report is attached.\r\n',
         extra='X-Mailer: searchtest 1.0\r\n'),
     [], '10-Mar-2022 12:00:00 +0000'),
    (msg('Eve <eve@e.example>', 'all@lists.example', 'hello', 'Sat, 01 Apr 2023 12:00:00 +0000',
         'short\r\n'),
     [], '01-Apr-2023 12:00:00 +0000'),
]


class Search(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        c.ok('CREATE %s' % BOX)
        cls.uids = []
        for m, flags, date in MESSAGES:
            r = c.append(BOX, m, flags=flags, date=date)
            cls.uids.append(r[1] if r else None)
        # consume \Recent in this session so later sessions see none
        c.select(BOX)
        c.logout()

    def setUp(self):
        self.c = self.login()
        self.c.select(BOX)

    def s(self, crit):
        return self.c.search(crit)

    def check(self, cases):
        for crit, want in cases:
            with self.subTest(criteria=crit):
                self.assertEqual(self.s(crit), want)

    def test_flags(self):
        self.check([
            ('ALL', [1, 2, 3, 4, 5]),
            ('ANSWERED', [1]), ('UNANSWERED', [2, 3, 4, 5]),
            ('DELETED', [3]), ('UNDELETED', [1, 2, 4, 5]),
            ('DRAFT', [3]), ('UNDRAFT', [1, 2, 4, 5]),
            ('FLAGGED', [2]), ('UNFLAGGED', [1, 3, 4, 5]),
            ('SEEN', [1]), ('UNSEEN', [2, 3, 4, 5]),
            ('KEYWORD $Important', [2]), ('UNKEYWORD $Important', [1, 3, 4, 5]),
            ('KEYWORD $Nothing', []),
            ('RECENT', []), ('NEW', []), ('OLD', [1, 2, 3, 4, 5]),
        ])

    def test_addresses_and_subject(self):
        self.check([
            ('FROM alice', [1]), ('FROM "b.example"', [4]), ('FROM ALICE', [1]),
            ('TO bob', [1, 3]), ('TO "alice@a.example"', [4]),
            ('CC erin', [2]), ('BCC frank', [2]), ('CC nobody', []),
            ('SUBJECT quarterly', [1, 4]), ('SUBJECT "Re: Quarterly"', [4]),
            ('SUBJECT lunch', [2]),
            ('HEADER X-Mailer searchtest', [4]), ('HEADER X-Mailer ""', [4]),
            ('HEADER Message-ID ""', []),
        ])

    def test_decoded_header_utf8(self):
        r = self.c.ok('SEARCH CHARSET UTF-8 SUBJECT {}', 'Grüße'.encode())
        self.assertEqual(imap_util.search_result(r), [3])
        r = self.c.ok('SEARCH CHARSET UTF-8 FROM {}', 'Zoë'.encode())
        self.assertEqual(imap_util.search_result(r), [3])
        r = self.c.ok('SEARCH CHARSET UTF-8 BODY {}', 'Käsekuchen'.encode())
        self.assertEqual(imap_util.search_result(r), [3])

    def test_charsets(self):
        self.assertEqual(self.s('CHARSET US-ASCII SUBJECT lunch'), [2])
        self.assertEqual(self.s('CHARSET utf-8 SUBJECT lunch'), [2])
        u, t = self.c.cmd('SEARCH CHARSET X-UNKNOWN-1 SUBJECT lunch')
        self.assertNO(t, 'BADCHARSET')
        if not AGAINST_DOVECOT:
            # the list after BADCHARSET is optional (RFC 3501 7.1); coffre
            # names the charsets it knows, Dovecot none
            self.assertIn(b'UTF-8', t)

    def test_charsets_converted(self):
        """RFC 3501 6.4.4: the strings are in the charset named; the
        message text they are matched against is Unicode."""
        for cs, key, word in (('ISO-8859-1', 'SUBJECT', 'Grüße'),
                              ('WINDOWS-1252', 'BODY', 'Käsekuchen'),
                              ('ISO-8859-15', 'FROM', 'Zoë'),
                              ('iso-8859-1', 'TEXT', 'KÄSEKUCHEN')):
            with self.subTest(charset=cs, key=key):
                r = self.c.ok('SEARCH CHARSET %s %s {}' % (cs, key), word.encode(cs))
                self.assertEqual(imap_util.search_result(r), [3])

    def test_dates(self):
        self.check([
            ('BEFORE 10-Mar-2022', [1, 2]), ('ON 10-Mar-2022', [3, 4]),
            ('SINCE 10-Mar-2022', [3, 4, 5]), ('SINCE 2-Apr-2023', []),
            ('SENTBEFORE 15-Feb-2021', [1]), ('SENTON 15-Feb-2021', [2]),
            ('SENTSINCE 15-Feb-2021', [2, 3, 4, 5]),
            ('ON 1-Jan-2020', [1]), ('ON "01-Jan-2020"', [1]),
        ])

    def test_sizes(self):
        sizes = [len(m) for m, _, _ in MESSAGES]
        big = sizes[2]
        self.check([
            ('LARGER %d' % (big - 1), [3]), ('LARGER %d' % big, []),
            ('SMALLER %d' % (min(sizes) + 1), [sizes.index(min(sizes)) + 1]),
            ('SMALLER 1', []),
        ])

    def test_body_and_text_fulltext(self):
        self.check([
            ('BODY pizza', [2]), ('BODY PIZZA', [2]), ('BODY "report is attached"', [4]),
            ('BODY quarterly', []),            # only in the subject
            ('TEXT quarterly', [1, 4]),         # TEXT covers the header
            ('TEXT alice', [1, 4]),
            ('TEXT numbers', [1]),
            ('BODY nowherefound', []),
        ])

    def test_body_substring(self):
        # RFC 3501: "contains the specified string", a substring
        self.check([('BODY izz', [2]), ('TEXT uarterl', [1, 4])])

    def test_sets_and_uids(self):
        u = self.uids
        self.check([
            ('1:2', [1, 2]), ('2:*', [2, 3, 4, 5]), ('*', [5]), ('4:2', [2, 3, 4]),
            ('1,3,5', [1, 3, 5]),
            ('UID %d' % u[1], [2]), ('UID %d:%d' % (u[1], u[3]), [2, 3, 4]),
            ('UID %d:*' % (u[4] + 50), [5]),
        ])
        self.assertEqual(self.c.search('UID %d,%d' % (u[0], u[4]), uid=True), [u[0], u[4]])
        self.assertEqual(self.c.search('FLAGGED', uid=True), [u[1]])
        self.assertEqual(self.c.search('ALL', uid=True), u)

    def test_boolean(self):
        self.check([
            ('NOT SEEN', [2, 3, 4, 5]),
            ('OR FLAGGED DRAFT', [2, 3]),
            ('OR OR FLAGGED DRAFT SEEN', [1, 2, 3]),
            ('(FLAGGED) (KEYWORD $Important)', [2]),
            ('FROM bob (OR SUBJECT quarterly SUBJECT nothing)', [4]),
            ('NOT (OR FROM alice FROM bob)', [2, 3, 5]),
            ('NOT NOT SEEN', [1]),
            ('SUBJECT quarterly NOT ANSWERED', [4]),
            ('1:3 UNSEEN', [2, 3]),
            ('UNDELETED SINCE 1-Jan-2021 SMALLER 100000', [2, 4, 5]),
        ])

    def test_recent_new_old(self):
        c = self.login()
        c.ok('CREATE Fresh')
        c.append('Fresh', make_message(1), flags=['\\Seen'])
        c.append('Fresh', make_message(2))
        c.select('Fresh')
        self.assertEqual(c.search('RECENT'), [1, 2])
        self.assertEqual(c.search('NEW'), [2])
        self.assertEqual(c.search('OLD'), [])
        self.assertEqual(c.search('NOT RECENT'), [])

    def test_errors(self):
        for crit in ('', 'FROB', 'BEFORE', 'BEFORE 31-Foo-2020', 'LARGER', 'LARGER -1',
                     'OR SEEN', '(SEEN', 'SEEN)', 'UID', 'HEADER', 'HEADER Subject',
                     'KEYWORD', 'CHARSET', 'NOT'):
            with self.subTest(criteria=crit):
                u, t = self.c.cmd('SEARCH %s' % crit)
                self.assertBAD(t)
        self.c.ok('NOOP')


if __name__ == '__main__':
    harness.main()
