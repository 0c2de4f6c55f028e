"""IMAP4rev2 (RFC 9051) offered beside IMAP4rev1: what ENABLE IMAP4rev2
changes in a session (RFC 9051 appendix E): no \\Recent anywhere (SELECT,
FETCH, STATUS, SEARCH RECENT/NEW/OLD), SEARCH answered with ESEARCH,
mailbox names in UTF-8, UID in unsolicited FETCH, a LIST response at
SELECT; and what it keeps: [NONEXISTENT], [CLOSED], UNSELECT, LSUB, the
\\NonExistent attribute. A rev1 session beside it is unchanged. Dovecot
2.3 does not offer IMAP4rev2: there the tests skip."""
import re

import harness
import imap_util
from imap_util import AGAINST_DOVECOT, ImapCase, make_message, quote

BOX = 'Rev2'


class Rev2(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        from imap_util import Imap
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        # coffred must offer it; Dovecot 2.3 does not
        cls.no_rev2 = AGAINST_DOVECOT and b'IMAP4rev2' not in c.ok('CAPABILITY')[0].split()
        c.ok('CREATE %s' % BOX)
        c.ok('CREATE %s/Child' % BOX)
        for i in range(3):
            c.append(BOX, make_message(i))
        c.logout()

    no_rev2 = False

    def rev2(self):
        """A session with IMAP4rev2 enabled."""
        if self.no_rev2:
            self.skipTest('the server does not offer IMAP4rev2')
        c = self.login()
        u = c.ok('ENABLE IMAP4rev2')
        self.assertIn(b'* ENABLED IMAP4rev2', u)
        return c

    def test_advertised(self):
        c = self.connect()
        caps = c.ok('CAPABILITY')[0].split()
        self.assertIn(b'IMAP4rev1', caps)
        if self.no_rev2:
            self.skipTest('the server does not offer IMAP4rev2')
        self.assertIn(b'IMAP4rev2', caps)
        # what RFC 9051 includes (LIST-STATUS and STATUS=SIZE aside)
        c.login()
        caps = c.ok('CAPABILITY')[0].split()
        for cap in (b'NAMESPACE', b'UNSELECT', b'UIDPLUS', b'ESEARCH', b'SEARCHRES', b'ENABLE',
                    b'IDLE', b'SASL-IR', b'LIST-EXTENDED', b'MOVE', b'BINARY', b'SPECIAL-USE'):
            self.assertIn(cap, caps)
        self.assertTrue(b'LITERAL-' in caps or b'LITERAL+' in caps, caps)

    def test_enable_once(self):
        c = self.rev2()
        u = c.ok('ENABLE IMAP4rev2')
        self.assertIn(b'* ENABLED', u)
        self.assertNotIn(b'* ENABLED IMAP4rev2', u)

    def test_select(self):
        """RFC 9051 6.3.2: EXISTS, FLAGS, PERMANENTFLAGS, UIDVALIDITY,
        UIDNEXT and LIST; no RECENT; a rev1 session still gets RECENT."""
        c = self.rev2()
        u = c.ok('SELECT %s' % BOX)
        self.assertFalse([r for r in u if r.endswith(b' RECENT')], u)
        self.assertIn(b'* 3 EXISTS', u)
        lists = [r for r in u if r.startswith(b'* LIST ')]
        self.assertEqual(len(lists), 1, u)
        self.assertRegex(lists[0], rb'^\* LIST \([^)]*\) "/" "?Rev2"?$')
        self.assertTrue([r for r in u if b'[UIDVALIDITY ' in r], u)
        self.assertTrue([r for r in u if b'[UIDNEXT ' in r], u)
        self.assertTrue([r for r in u if b'[PERMANENTFLAGS ' in r], u)
        o = self.login()
        u = o.ok('EXAMINE %s' % BOX)
        self.assertTrue([r for r in u if re.match(rb'\* \d+ RECENT$', r)], u)

    def test_no_recent_flag(self):
        """A new message is \\Recent to a rev1 session, never to a rev2
        one."""
        box = 'R2new%d' % imap_util.serial()
        c = self.rev2()
        c.ok('CREATE %s' % box)
        c.append(box, make_message(1))
        u = c.ok('SELECT %s' % box)
        self.assertFalse([r for r in u if b'RECENT' in r], u)
        u = c.ok('FETCH 1:* (FLAGS)')
        self.assertTrue(u)
        for r in u:
            self.assertNotIn(b'\\Recent', r)
        # a delivery while selected: EXISTS without RECENT
        o = self.login()
        o.append(box, make_message(2))
        u = c.ok('NOOP')
        self.assertIn(b'* 2 EXISTS', u)
        self.assertFalse([r for r in u if b'RECENT' in r], u)
        for r in c.ok('FETCH 1:* (FLAGS)'):
            self.assertNotIn(b'\\Recent', r)

    def test_status(self):
        c = self.rev2()
        u = c.ok('STATUS %s (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)' % BOX)
        st = [r for r in u if r.startswith(b'* STATUS')]
        self.assertEqual(len(st), 1, u)
        self.assertNotIn(b'RECENT', st[0])
        self.assertIn(b'MESSAGES 3', st[0])
        # RECENT is no STATUS item of RFC 9051's grammar
        st, t, u = c.status_of('STATUS %s (MESSAGES RECENT)' % BOX)
        self.assertEqual(st, 'BAD', t)

    def test_search_keys_removed(self):
        """RFC 9051 appendix E: the RECENT, NEW and OLD search keys were
        removed; a rev1 session keeps them."""
        c = self.rev2()
        c.ok('SELECT %s' % BOX)
        for key in ('RECENT', 'NEW', 'OLD', 'NOT RECENT', 'OR SEEN NEW'):
            with self.subTest(key=key):
                st, t, u = c.status_of('SEARCH %s' % key)
                self.assertEqual(st, 'BAD', t)
        o = self.login()
        o.ok('EXAMINE %s' % BOX)
        for key in ('RECENT', 'NEW', 'OLD'):
            o.ok('SEARCH %s' % key)

    def test_esearch(self):
        """RFC 9051 6.4.4: SEARCH and UID SEARCH answer ESEARCH, as if
        RETURN (ALL) were given; the RFC's RETURN example."""
        c = self.rev2()
        c.ok('EXAMINE %s' % BOX)
        u, t = c.cmd('SEARCH ALL')
        self.assertOK(t)
        tag = t.split(b' ')[0]
        self.assertEqual(u, [b'* ESEARCH (TAG "' + tag + b'") ALL 1:3'])
        u, t = c.cmd('UID SEARCH 2:3')
        tag = t.split(b' ')[0]
        uids = c.fetch('2:3', '(UID)')
        lo, hi = sorted(int(uids[n][0]['UID']) for n in uids)
        self.assertEqual(u, [b'* ESEARCH (TAG "%s") UID ALL %d:%d' % (tag, lo, hi)])
        # nothing found: ESEARCH with the tag alone
        u, t = c.cmd('SEARCH DELETED')
        tag = t.split(b' ')[0]
        self.assertEqual(u, [b'* ESEARCH (TAG "' + tag + b'")'])
        # the RFC's example shape: RETURN (MIN COUNT)
        u, t = c.cmd('SEARCH RETURN (MIN COUNT) UNDELETED')
        tag = t.split(b' ')[0]
        self.assertEqual(u, [b'* ESEARCH (TAG "' + tag + b'") MIN 1 COUNT 3'])
        # a rev1 session still gets SEARCH
        o = self.login()
        o.ok('EXAMINE %s' % BOX)
        self.assertEqual(o.ok('SEARCH ALL'), [b'* SEARCH 1 2 3'])

    def test_rfc_examples(self):
        """RFC 9051's examples in 6.3.1 (ENABLE with an unknown name),
        6.3.11 (STATUS) and 6.4.4 (SEARCH answered with ESEARCH: RETURN (),
        nothing found, CHARSET UTF-8 with a literal)."""
        if self.no_rev2:
            self.skipTest('the server does not offer IMAP4rev2')
        box = 'R2ex%d' % imap_util.serial()
        c = self.login()
        u = c.ok('ENABLE unknown IMAP4rev2')
        self.assertIn(b'* ENABLED IMAP4rev2', u)
        c.ok('CREATE %s' % box)
        for i in range(4):
            c.append(box, make_message(i, body='ordinary text %d' % i))
        c.append(box, make_message(9, body='в отпуск летом\r\n').replace(
            b'charset=us-ascii', b'charset=utf-8\r\nContent-Transfer-Encoding: 8bit'))
        u = c.ok('STATUS %s (UIDNEXT MESSAGES)' % box)
        self.assertRegex(u[0], rb'^\* STATUS "?%s"? \(MESSAGES 5 UIDNEXT \d+\)$' % box.encode())
        c.ok('SELECT %s' % box)
        c.ok('STORE 2,4 +FLAGS (\\Flagged)')
        u, t = c.cmd('SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')
        tag = t.split(b' ')[0]
        self.assertEqual(u, [b'* ESEARCH (TAG "%s") ALL 2,4' % tag])
        u, t = c.cmd('SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')
        tag = t.split(b' ')[0]
        self.assertEqual(u, [b'* ESEARCH (TAG "%s") MIN 2 COUNT 2' % tag])
        u, t = c.cmd('SEARCH TEXT "string not in mailbox"')
        tag = t.split(b' ')[0]
        self.assertEqual(u, [b'* ESEARCH (TAG "%s")' % tag])
        u, t = c.cmd(b'SEARCH CHARSET UTF-8 TEXT {}', 'отпуск'.encode())
        self.assertOK(t)
        tag = t.split(b' ')[0]
        self.assertEqual(u, [b'* ESEARCH (TAG "%s") ALL 5' % tag])

    def test_unsolicited_fetch_has_uid(self):
        """RFC 9051 appendix E: every unsolicited FETCH carries UID."""
        box = 'R2fl%d' % imap_util.serial()
        c = self.rev2()
        c.ok('CREATE %s' % box)
        c.append(box, make_message(1))
        c.ok('SELECT %s' % box)
        uid = int(c.fetch('1', '(UID)')[1][0]['UID'])
        o = self.login()
        o.ok('SELECT %s' % box)
        o.ok('STORE 1 +FLAGS (\\Flagged)')
        u = c.ok('NOOP')
        f = [r for r in u if b' FETCH ' in r]
        self.assertEqual(len(f), 1, u)
        self.assertIn(b'UID %d' % uid, f[0])
        self.assertIn(b'\\Flagged', f[0])

    def test_nonexistent(self):
        c = self.rev2()
        for cmd in ('SELECT NoSuchBox', 'EXAMINE NoSuchBox', 'STATUS NoSuchBox (MESSAGES)',
                    'DELETE NoSuchBox'):
            with self.subTest(cmd=cmd):
                st, t, u = c.status_of(cmd)
                self.assertEqual(st, 'NO', t)
                self.assertIn(b'[NONEXISTENT]', t)

    def test_closed_unselect(self):
        c = self.rev2()
        c.ok('SELECT %s' % BOX)
        u = c.ok('SELECT %s/Child' % BOX)
        self.assertTrue([r for r in u if r.startswith(b'* OK [CLOSED]')], u)
        c.ok('UNSELECT')
        st, t, u = c.status_of('FETCH 1 (FLAGS)')
        self.assertEqual(st, 'BAD', t)

    def test_list_nonexistent_and_lsub(self):
        """\\NonExistent for a subscription without a mailbox (LIST
        (SUBSCRIBED)); LSUB is deprecated, not removed: still answered."""
        c = self.rev2()
        c.ok('SUBSCRIBE Gone%d' % imap_util.serial())
        u = c.ok('LIST (SUBSCRIBED) "" "Gone*"')
        self.assertTrue(u)
        self.assertIn(b'\\NonExistent', u[0])
        u = c.ok('LSUB "" "Gone*"')
        self.assertTrue(u)

    def test_utf8_names(self):
        """RFC 9051 5.1: mailbox names in UTF-8; a rev1 session sees the
        same mailbox in modified UTF-7."""
        n = imap_util.serial()
        name = 'Rev2-Öl-%d' % n
        c = self.rev2()
        c.ok(('CREATE "%s"' % name).encode())
        u = c.ok(('LIST "" "%s"' % name).encode())
        self.assertEqual(len(u), 1, u)
        self.assertIn(('"%s"' % name).encode(), u[0])
        u = c.ok(('STATUS "%s" (MESSAGES)' % name).encode())
        self.assertIn(('"%s"' % name).encode(), u[0])
        c.ok(('SELECT "%s"' % name).encode())
        o = self.login()
        mutf7 = 'Rev2-&ANY-l-%d' % n
        u = o.ok('LIST "" "Rev2-*"')
        self.assertTrue([r for r in u if r.endswith(mutf7.encode())
                         or r.endswith(('"%s"' % mutf7).encode())], u)
        o.ok('EXAMINE %s' % quote(mutf7))


if __name__ == '__main__':
    harness.main()
