"""I18NLEVEL=1 (RFC 5255): SEARCH and SORT compare strings with the
i;unicode-casemap comparator (RFC 5051): each character titlecased, then
fully decomposed, the results compared as octets. So "e" is inside "é"
(E and a combining acute), "É" and "é" are equal, and "É" sorts with E,
not after Z as its UTF-8 bytes would."""
import unittest

import imap_util
from imap_util import AGAINST_DOVECOT
from imap_util import ImapCase

BOX = 'I18n'


def msg(frm, subject, body, date):
    return ('From: %s\r\nTo: rcpt@example.net\r\nSubject: %s\r\nDate: %s\r\n'
            'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n'
            'Content-Transfer-Encoding: 8bit\r\n\r\n%s\r\n'
            % (frm, subject, date, body)).encode()


MESSAGES = [
    msg('Dora <dora@d.example>', 'Dessert', 'pudding tonight', 'Mon, 01 Jan 2024 10:00:00 +0000'),
    msg('=?UTF-8?Q?=C3=89mile?= <emile@e.example>', '=?UTF-8?Q?=C3=89clair?=',
        'Crème brûlée', 'Mon, 01 Jan 2024 11:00:00 +0000'),
    msg('Fred <fred@f.example>', 'Fruit', 'a cafe nearby', 'Mon, 01 Jan 2024 12:00:00 +0000'),
    msg('Zoë <zoe@z.example>', 'éclair', 'CAFÉ AU LAIT', 'Mon, 01 Jan 2024 13:00:00 +0000'),
    msg('Adam <adam@a.example>', 'Straße', 'ΑΛΦΑ and ωμέγα', 'Mon, 01 Jan 2024 14:00:00 +0000'),
    msg('Eve <eve@e.example>', 'Ecole', 'na\u00efve', 'Mon, 01 Jan 2024 15:00:00 +0000'),
    # the ligature has no titlecase mapping of its own (UnicodeData.txt);
    # its compatibility decomposition is "fi", small letters
    msg('Fi <fi@f.example>', '\ufb01le', 'x', 'Mon, 01 Jan 2024 16:00:00 +0000'),
]


class I18n(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        imap_util.fill_mailbox(cls.server, BOX, MESSAGES)

    def setUp(self):
        self.c, _ = self.selected(BOX)

    def search(self, criteria):
        """criteria: 'KEY "string"', the string sent as a literal."""
        key, _, value = criteria.partition(' ')
        r = self.c.ok('SEARCH CHARSET UTF-8 %s {}' % key, value.strip('"').encode())
        return imap_util.search_result(r)

    def sort(self, keys):
        u, t = self.c.cmd('SORT (%s) UTF-8 ALL' % keys)
        self.assertRegex(t, rb'^T\d+ OK')
        line = [x for x in u if x.startswith(b'* SORT')][0]
        return [int(n) for n in line.split()[2:]]

    def test_advertised(self):
        if AGAINST_DOVECOT:
            return
        caps = self.c.ok('CAPABILITY')[0]
        self.assertIn(b' I18NLEVEL=1', caps)

    def test_search_header_keys(self):
        # "É" is "E" and U+0301: "e" is inside it, but "eclair" is not
        # inside "E\u0301CLAIR", the mark sits between E and C
        for crit, want in (('SUBJECT "eclair"', []),
                           ('SUBJECT "e"', [1, 2, 4, 5, 6, 7]),
                           ('SUBJECT "fi"', []),           # "FI" is not "fi"
                           ('SUBJECT "\ufb01"', [7]),
                           ('SUBJECT "FILE"', []),
                           ('SUBJECT "\ufb01LE"', [7]),
                           ('SUBJECT "clair"', [2, 4]),
                           ('SUBJECT "ÉCLAIR"', [2, 4]),
                           ('SUBJECT "éclair"', [2, 4]),
                           ('SUBJECT "ecole"', [6]),
                           ('SUBJECT "école"', []),       # é is not inside a plain e
                           ('SUBJECT "STRASSE"', []),     # no full case folding: ß stays ß
                           ('SUBJECT "straße"', [5]),
                           ('FROM "emile"', [2]),
                           ('FROM "ZOE"', [4]),
                           ('FROM "zoë"', [4])):
            with self.subTest(crit=crit):
                self.assertEqual(self.search(crit), want)

    def test_search_body_and_text(self):
        for crit, want in (('BODY "cafe"', [3, 4]),
                           ('BODY "café"', [4]),
                           ('BODY "creme brulee"', []),
                           ('BODY "CRÈME BRÛLÉE"', [2]),
                           ('BODY "brûlé"', [2]),
                           ('BODY "naive"', []),
                           ('BODY "NAÏVE"', [6]),
                           ('BODY "nai"', [6]),
                           ('BODY "ΩΜΈΓΑ"', [5]),
                           ('BODY "alfa"', []),
                           ('BODY "άλφα"', []),
                           ('TEXT "eclair"', []),
                           ('TEXT "ÉCLAIR"', [2, 4]),
                           ('TEXT "zoe"', [4])):
            with self.subTest(crit=crit):
                self.assertEqual(self.search(crit), want)

    def test_sort_subject(self):
        # DESSERT, ECOLE, E+U+0301 CLAIR (2 and 4 equal: arrival order;
        # "C" is before the combining mark's first byte), FRUIT, STRAßE,
        # fiLE (small letters after capitals)
        self.assertEqual(self.sort('SUBJECT'), [1, 6, 2, 4, 3, 5, 7])
        self.assertEqual(self.sort('SUBJECT ARRIVAL'), [1, 6, 2, 4, 3, 5, 7])

    def test_sort_from(self):
        # mailboxes: dora emile fred zoe adam eve
        self.assertEqual(self.sort('FROM'), [5, 1, 2, 6, 7, 3, 4])
        # display names: Dora, Émile (E+acute, after EVE), Fred, Zoë,
        # Adam, Eve, Fi
        self.assertEqual(self.sort('DISPLAYFROM'), [5, 1, 6, 2, 7, 3, 4])


if __name__ == '__main__':
    unittest.main()
