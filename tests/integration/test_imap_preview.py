"""IMAP PREVIEW (RFC 8970): FETCH PREVIEW and PREVIEW (LAZY), the preview
made from the first text part when the message is saved (HTML tags and
entities gone, white space collapsed, at most 256 characters, UTF-8 kept
as a literal), "" for a message without text; the RFC's examples and
syntax errors."""
import os
import sqlite3
import unittest

import harness
import imap_util
from imap_util import ImapCase, Imap

BOX = 'Pv'


def mime(body, ctype='text/plain; charset=utf-8', cte=None, subject='s'):
    h = ('From: a@example.net\r\nTo: b@example.org\r\nSubject: %s\r\n'
         'Message-ID: <%s@x>\r\nMIME-Version: 1.0\r\nContent-Type: %s\r\n'
         % (subject, abs(hash(body)) % 10**9, ctype))
    if cte:
        h += 'Content-Transfer-Encoding: %s\r\n' % cte
    return (h + '\r\n' + body).encode()


PLAIN = mime('Hello   world,\r\n\r\n  this\tis a\r\ntest.\r\n')
LONG = mime(('word ' * 200) + '\r\n')
HTML = mime('<html><head><style>p {color: red}</style></head><body><p>Caf&eacute; '
            '&amp; <b>bar</b></p><script>x()</script>\r\n<p>next&nbsp;line &#233;&#xE9;</p>'
            '</body></html>\r\n',
            ctype='text/html; charset=us-ascii')
ALT = mime('--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n'
           'iVBORw0KGgo=\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n'
           'Content-Transfer-Encoding: quoted-printable\r\n\r\nR=E9sum=E9 du jour\r\n'
           '--b\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n--b--\r\n',
           ctype='multipart/mixed; boundary="b"')
NOTEXT = mime('--b\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\r\n--b--\r\n',
              ctype='multipart/mixed; boundary="b"')
UTF8 = mime(('\u00e9t\u00e9 \u2014 ' * 60) + '\r\n')


class Preview(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        c.ok('CREATE %s' % BOX)
        for m in (PLAIN, LONG, HTML, ALT, NOTEXT, UTF8):
            c.append(BOX, m)
        c.logout()

    def previews(self, c, items='PREVIEW', seqs='1:*'):
        out = {}
        for n, (it, raw) in c.fetch(seqs, items).items():
            v = it['PREVIEW']
            out[n] = v.decode('utf-8') if v is not None else None
        return out

    def test_capability(self):
        c = self.login()
        self.assertIn(b'PREVIEW', c.ok('CAPABILITY')[0].split())

    def test_previews(self):
        c = self.login()
        c.select(BOX)
        p = self.previews(c)
        self.assertEqual(p[1], 'Hello world, this is a test.')
        self.assertLessEqual(len(p[2]), 256)
        self.assertTrue(p[2].startswith('word word'), p[2])
        self.assertNotIn('  ', p[2])
        self.assertFalse(p[2].endswith(' '))
        self.assertNotIn('<', p[3])
        self.assertNotIn('color', p[3])
        self.assertNotIn('x()', p[3])
        self.assertIn('bar', p[3])
        self.assertIn('& bar', p[3])
        self.assertIn('Caf\u00e9 & bar', p[3])
        self.assertIn('\u00e9\u00e9', p[3])
        self.assertIn('next', p[3])
        if not imap_util.AGAINST_DOVECOT:
            self.assertEqual(p[3], 'Caf\u00e9 & bar next line \u00e9\u00e9')
        # the first text part, decoded and in UTF-8; the image skipped
        self.assertEqual(p[4], 'R\u00e9sum\u00e9 du jour')
        if not imap_util.AGAINST_DOVECOT:
            self.assertEqual(p[5], '')    # Dovecot answers NIL
        self.assertIn(p[5], ('', None))
        self.assertLessEqual(len(p[6]), 256)
        self.assertTrue(p[6].startswith('\u00e9t\u00e9 \u2014 \u00e9t\u00e9'), p[6])
        if not imap_util.AGAINST_DOVECOT:
            self.assertEqual(len(p[6]), 256)
            self.assertEqual(len(p[2]), 256)

    def test_lazy_and_uid(self):
        # RFC 8970 3.1 and 5: PREVIEW (LAZY), with other items, UID FETCH
        c = self.login()
        c.select(BOX)
        p = self.previews(c, '(UID PREVIEW (LAZY) FLAGS)')
        q = self.previews(c, 'PREVIEW')
        for n in p:
            self.assertIn(p[n], (q[n], None))
        u = c.ok('UID FETCH 1 (PREVIEW)')
        self.assertRegex(u[0], rb'PREVIEW "Hello world, this is a test\."')
        # PREVIEW sets no \Seen
        f = c.fetch('1:*', 'FLAGS')
        self.assertTrue(all(b'\\Seen' not in [x.encode() for x in it['FLAGS']]
                            for it, raw in f.values()))

    @unittest.skipIf(imap_util.AGAINST_DOVECOT, "coffre's index")
    def test_computed_when_missing(self):
        # the bodies of an index upgraded from schema 8 have no preview:
        # FETCH computes it from the file and keeps it
        path = os.path.join(os.path.dirname(imap_util.user_maildir(self.server, imap_util.USER)),
                            'index.sqlite')
        db = sqlite3.connect(path, timeout=10)
        db.execute('UPDATE bodies SET preview = NULL')
        db.commit()
        c = self.login()
        c.select(BOX)
        # one message alone, then all (a batch that stops at each one)
        self.assertEqual(self.previews(c, 'PREVIEW', '1')[1], 'Hello world, this is a test.')
        db.execute('UPDATE bodies SET preview = NULL')
        db.commit()
        p = self.previews(c)
        self.assertEqual(p[1], 'Hello world, this is a test.')
        self.assertEqual(p[4], 'R\u00e9sum\u00e9 du jour')
        self.assertEqual(p[5], '')
        self.assertEqual(db.execute('SELECT count(*) FROM bodies WHERE preview IS NULL')
                         .fetchone()[0], 0)
        # with a section: the message-at-a-time path
        db.execute('UPDATE bodies SET preview = NULL')
        db.commit()
        f = c.fetch('1:2', '(PREVIEW BODY.PEEK[TEXT])')
        self.assertEqual(f[1][0]['PREVIEW'], b'Hello world, this is a test.')
        self.assertTrue(f[2][0]['PREVIEW'].startswith(b'word word'))
        db.close()

    def test_syntax(self):
        c = self.login()
        c.select(BOX)
        bad = ['FETCH 1 PREVIEW (FOO)', 'FETCH 1 (PREVIEW (LAZY)', 'FETCH 1 PREVIEW(LAZY)']
        if not imap_util.AGAINST_DOVECOT:
            bad.append('FETCH 1 PREVIEW ()')   # Dovecot takes it
        for bad in bad:
            self.assertBAD(c.cmd(bad)[1], bad)
        self.assertAlive()


if __name__ == '__main__':
    harness.main()
