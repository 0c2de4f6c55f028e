"""UTF8=ACCEPT (RFC 6855): after ENABLE UTF8=ACCEPT mailbox names are
UTF-8 both ways (stored once; a session that did not enable it sees the
same mailbox in modified UTF-7, and the other way round), a name that is
not UTF-8 is refused, APPEND takes UTF8 (literal8) (refused before
ENABLE), and SEARCH takes no CHARSET once enabled (RFC 6855 3). Debian
12's Dovecot 2.3.19 does not offer UTF8=ACCEPT: there the tests skip."""
import harness
import imap_util
from imap_util import AGAINST_DOVECOT, ImapCase, make_message, quote

N = 'Café-%d'
M = 'Caf&AOk--%d'


class Utf8Accept(ImapCase):

    no_utf8 = False

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        from imap_util import Imap
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        # coffred must offer it; Dovecot may not
        cls.no_utf8 = AGAINST_DOVECOT and b'UTF8=ACCEPT' not in c.ok('CAPABILITY')[0].split()
        c.logout()

    def utf8(self):
        if self.no_utf8:
            self.skipTest('the server does not offer UTF8=ACCEPT')
        c = self.login()
        u = c.ok('ENABLE UTF8=ACCEPT')
        self.assertIn(b'* ENABLED UTF8=ACCEPT', u)
        return c

    def n(self):
        """This test's number: the same at every call, another test's never."""
        if not hasattr(self, '_n'):
            self._n = imap_util.serial()
        return self._n

    def test_advertised(self):
        c = self.login()
        if self.no_utf8:
            self.skipTest('the server does not offer UTF8=ACCEPT')
        self.assertIn(b'UTF8=ACCEPT', c.ok('CAPABILITY')[0].split())

    def test_utf8_to_mutf7(self):
        """A folder made with a UTF-8 name by a UTF8=ACCEPT session is the
        modified UTF-7 one of a rev1 session, with its messages."""
        name, mname = N % self.n(), M % self.n()
        c = self.utf8()
        c.ok(('CREATE "%s"' % name).encode())
        c.ok(('APPEND "%s" {}' % name).encode(), make_message(1))
        u = c.ok(('LIST "" "%s"' % name).encode())
        self.assertEqual(len(u), 1, u)
        self.assertTrue(u[0].endswith(('"%s"' % name).encode()), u)
        u = c.ok(('STATUS "%s" (MESSAGES)' % name).encode())
        self.assertIn(('"%s" (MESSAGES 1)' % name).encode(), u[0])
        o = self.login()
        u = o.ok('LIST "" "Caf*-%d"' % self.n())
        self.assertEqual(len(u), 1, u)
        self.assertTrue(u[0].endswith(mname.encode()) or
                        u[0].endswith(('"%s"' % mname).encode()), u)
        self.assertNotIn('é'.encode(), u[0])
        u = o.ok('STATUS %s (MESSAGES)' % quote(mname))
        self.assertIn(b'MESSAGES 1', u[0])

    def test_list_status_names(self):
        """LIST ... RETURN (STATUS) names the mailbox of its STATUS line as
        its LIST line does: UTF-8 after ENABLE, modified UTF-7 before."""
        name, mname = 'L' + N % self.n(), 'L' + M % self.n()
        c = self.utf8()
        if b'LIST-STATUS' not in c.ok('CAPABILITY')[0].split():
            self.skipTest('the server does not offer LIST-STATUS')
        c.ok(('CREATE "%s"' % name).encode())
        u = c.ok(('LIST "" "%s" RETURN (STATUS (MESSAGES))' % name).encode())
        self.assertEqual(u[1], ('* STATUS "%s" (MESSAGES 0)' % name).encode(), u)
        o = self.login()
        u = o.ok('LIST "" %s RETURN (STATUS (MESSAGES))' % quote(mname))
        self.assertIn(u[1], (('* STATUS %s (MESSAGES 0)' % mname).encode(),
                             ('* STATUS "%s" (MESSAGES 0)' % mname).encode()), u)

    def test_notify_and_quota_names(self):
        """NOTIFY's STATUS and GETQUOTAROOT's QUOTAROOT name the mailbox in
        UTF-8 after ENABLE UTF8=ACCEPT, as the session's LIST does."""
        name = 'Q' + N % self.n()
        c = self.utf8()
        caps = c.ok('CAPABILITY')[0].split()
        c.ok(('CREATE "%s"' % name).encode())
        if b'NOTIFY' in caps:
            u = c.ok(('NOTIFY SET STATUS (MAILBOXES "%s" (MessageNew MessageExpunge))'
                      % name).encode())
            st = [x for x in u if x.startswith(b'* STATUS ')]
            self.assertEqual(len(st), 1, u)
            self.assertTrue(st[0].startswith(('* STATUS "%s" (' % name).encode()), u)
            c.ok('NOTIFY NONE')
        if b'QUOTA' in caps:
            u = c.ok(('GETQUOTAROOT "%s"' % name).encode())
            self.assertTrue(u[0].startswith(('* QUOTAROOT "%s"' % name).encode()), u)

    def test_mutf7_to_utf8(self):
        name, mname = 'B' + N % self.n(), 'B' + M % self.n()
        o = self.login()
        o.ok('CREATE %s' % quote(mname))
        c = self.utf8()
        u = c.ok('LIST "" "BCaf*"')
        self.assertEqual(len(u), 1, u)
        self.assertTrue(u[0].endswith(('"%s"' % name).encode()), u)
        u = c.ok(('SELECT "%s"' % name).encode())
        self.assertIn(b'* 0 EXISTS', u)
        c.ok(('RENAME "%s" "%s-ü"' % (name, name)).encode())
        u = o.ok('LIST "" "BCaf*"')
        self.assertTrue(u[0].endswith((mname + '-&APw-').encode()) or
                        u[0].endswith(('"%s-&APw-"' % mname).encode()), u)

    def test_bad_names(self):
        """Not modified UTF-7 before ENABLE, not UTF-8 after: refused."""
        c = self.utf8()
        o = self.login()
        st, t, u = o.status_of(('CREATE "%s"' % ('X' + N % self.n())).encode())
        self.assertIn(st, ('NO', 'BAD'), t)
        for raw in (b'CREATE "Bad\xff\xfe"', b'CREATE "Bad\xc3"', b'CREATE "Bad\xe0\x80\x80"',
                    b'CREATE "Bad\xe2\x80\xa8"', b'CREATE "Bad\xc2\x85"'):
            with self.subTest(raw=raw):
                st, t, u = c.status_of(raw)
                self.assertIn(st, ('NO', 'BAD'), t)
        u = c.ok('LIST "" "Bad*"')
        self.assertEqual(u, [])

    def test_ampersand_and_patterns(self):
        """'&' is itself in a UTF-8 name ('&-' in modified UTF-7); a
        LIST pattern in UTF-8 with wildcards; ENABLE answered once."""
        n = self.n()
        c = self.utf8()
        self.assertNotIn(b'* ENABLED UTF8=ACCEPT', c.ok('ENABLE UTF8=ACCEPT'))
        c.ok(('CREATE "Amp&é-%d/Kind"' % n).encode())
        u = c.ok(('LIST "" "Amp&é-%d*"' % n).encode())
        self.assertEqual(sorted(u), sorted([
            ('* LIST (\\HasChildren) "/" "Amp&é-%d"' % n).encode(),
            ('* LIST (\\HasNoChildren) "/" "Amp&é-%d/Kind"' % n).encode()]))
        u = c.ok(('LIST "Amp&é-%d/" "%%"' % n).encode())
        self.assertEqual(len(u), 1, u)
        o = self.login()
        u = o.ok('LIST "" "Amp*-%d"' % n)
        self.assertEqual(len(u), 1, u)
        self.assertTrue(u[0].endswith(b'Amp&-&AOk--%d' % n) or
                        u[0].endswith(b'"Amp&-&AOk--%d"' % n), u)

    def test_append_utf8(self):
        """RFC 6855 4: APPEND mailbox UTF8 (~{n}...) once enabled; a
        message with UTF-8 in its header, read back as sent."""
        msg = ('From: Jörg <jörg@example.net>\r\nSubject: Grüße\r\n\r\nHallo\r\n').encode()
        box = 'U8app%d' % self.n()
        c = self.utf8()
        o = self.login()
        o.ok('CREATE %s' % box)
        st, t, u = o.status_of(b'APPEND ' + box.encode() + b' UTF8 (~{%d+}\r\n' % len(msg) +
                               msg + b')')
        self.assertEqual(st, 'BAD', t)
        tag = c.tag()
        c.send(b'%s APPEND %s UTF8 (~{%d}\r\n' % (tag.encode(), box.encode(), len(msg)))
        self.assertTrue(c.line().startswith(b'+'))
        c.send(msg + b')\r\n')
        u, t = c.until_tagged(tag)
        self.assertOK(t)
        c.ok('SELECT %s' % box)
        f = c.fetch('1', 'BODY.PEEK[]')
        self.assertTrue(f[1][1]['BODY[]'].endswith(b'}\r\n' + msg), f)

    def test_search_charset(self):
        """RFC 6855 3: no CHARSET in SEARCH once enabled (BAD); UTF-8
        strings search without it; a session that did not enable it is
        unchanged."""
        box = 'U8s%d' % self.n()
        c = self.utf8()
        c.ok('CREATE %s' % box)
        c.ok('APPEND %s {}' % box, make_message(1, subject='Grüße'))
        c.ok('SELECT %s' % box)
        st, t, u = c.status_of('SEARCH CHARSET UTF-8 ALL')
        self.assertEqual(st, 'BAD', t)
        u = c.ok('SEARCH SUBJECT "Grüße"'.encode())
        self.assertTrue([r for r in u if r.startswith(b'* SEARCH') and r != b'* SEARCH'] or
                        [r for r in u if b'ESEARCH' in r], u)
        # erratum 4029: SORT and THREAD's charset other than UTF-8 is BAD
        for cmd in ('SORT (ARRIVAL) ISO-8859-1 ALL', 'THREAD REFERENCES KOI8-R ALL'):
            with self.subTest(cmd=cmd):
                st, t, u = c.status_of(cmd)
                self.assertEqual(st, 'BAD', t)
        c.ok('SORT (ARRIVAL) UTF-8 ALL')
        o = self.login()
        o.ok('SELECT %s' % box)
        o.ok('SEARCH CHARSET UTF-8 ALL')
        o.ok('SORT (ARRIVAL) ISO-8859-1 ALL')


if __name__ == '__main__':
    harness.main()
