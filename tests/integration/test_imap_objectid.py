"""IMAP OBJECTID (RFC 8474): MAILBOXID in the CREATE, SELECT/EXAMINE and
STATUS answers, kept by RENAME and never given again to a mailbox deleted
and created again; EMAILID kept by MOVE and shared by COPY, never given to
another message; THREADID the same for the messages of one thread
(Message-ID, In-Reply-To, References), whatever order they come in; SEARCH
EMAILID and THREADID. The examples of RFC 8474 sections 4 to 7."""
import re

import harness
import imap_util
from imap_util import ImapCase, Imap, make_message

ID = rb'[A-Za-z0-9_-]{1,255}'
CREATE_RE = re.compile(rb'^T\d+ OK \[MAILBOXID \((' + ID + rb')\)\]')
SELECT_RE = re.compile(rb'^\* OK \[MAILBOXID \((' + ID + rb')\)\]')
STATUS_RE = re.compile(rb'MAILBOXID \((' + ID + rb')\)')


def msg(mid, subject, irt=None, refs=None, body='hello'):
    h = 'From: a@example.net\r\nTo: b@example.org\r\nSubject: %s\r\n' % subject
    h += 'Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n'
    if mid:
        h += 'Message-ID: %s\r\n' % mid
    if irt:
        h += 'In-Reply-To: %s\r\n' % irt
    if refs:
        h += 'References: %s\r\n' % refs
    return (h + '\r\n' + body + '\r\n').encode()


class ObjectId(ImapCase):

    def setUp(self):
        # Dovecot 2.3 does not offer OBJECTID
        c = Imap(self.server.raw('imaps', tls=True))
        caps = c.ok('CAPABILITY')[0].split()
        c.close()
        if imap_util.AGAINST_DOVECOT and b'OBJECTID' not in caps:
            self.skipTest('the server does not offer OBJECTID')

    def create(self, c, name):
        u, t = c.cmd('CREATE %s' % imap_util.quote(name))
        self.assertOK(t)
        m = CREATE_RE.match(t)
        self.assertTrue(m, t)
        return m.group(1)

    def status_id(self, c, name):
        u = c.ok('STATUS %s (MAILBOXID)' % imap_util.quote(name))
        m = STATUS_RE.search(u[0])
        self.assertTrue(m, u)
        return m.group(1)

    def select_id(self, c, name, examine=False):
        info = c.select(name, examine=examine)
        ids = [SELECT_RE.match(r).group(1) for r in info['untagged'] if SELECT_RE.match(r)]
        self.assertEqual(len(ids), 1, info['untagged'])
        return ids[0]

    def ids(self, c, items='(EMAILID THREADID)', seqs='1:*'):
        out = {}
        for n, (it, raw) in c.fetch(seqs, items).items():
            out[n] = {k: (v[0] if isinstance(v, list) and v else v) for k, v in it.items()}
            for k in ('EMAILID', 'THREADID'):
                if k in it and it[k] is not None:
                    self.assertIsInstance(it[k], list, raw)
                    self.assertEqual(len(it[k]), 1, raw)
                    self.assertRegex(it[k][0].encode(), b'^' + ID + b'$')
        return out

    def test_capability(self):
        c = self.login()
        self.assertIn(b'OBJECTID', c.ok('CAPABILITY')[0].split())

    def test_mailboxid(self):
        # RFC 8474 4.1, 4.2: CREATE, SELECT, STATUS, RENAME, DELETE
        c = self.login()
        a = self.create(c, 'foo')
        self.assertEqual(self.select_id(c, 'foo'), a)
        self.assertEqual(self.select_id(c, 'foo', examine=True), a)
        c.ok('UNSELECT')
        self.assertEqual(self.status_id(c, 'foo'), a)
        u = c.ok('STATUS foo (UIDNEXT MAILBOXID MESSAGES)')
        self.assertRegex(u[0], rb'^\* STATUS "?foo"? \(.*MAILBOXID \(' + re.escape(a) + rb'\)')
        c.ok('RENAME foo bar')
        self.assertEqual(self.status_id(c, 'bar'), a)
        self.assertEqual(self.select_id(c, 'bar'), a)
        c.ok('UNSELECT')
        # a mailbox made again under an old name is another mailbox
        b = self.create(c, 'foo')
        self.assertNotEqual(b, a)
        c.ok('DELETE bar')
        c.ok('DELETE foo')
        seen = {a, b}
        for i in range(3):
            x = self.create(c, 'foo')
            self.assertNotIn(x, seen)
            seen.add(x)
            c.ok('DELETE foo')
        inbox = self.status_id(c, 'INBOX')
        self.assertNotIn(inbox, seen)
        # a child made with its parent: both have ids, not the same
        c.ok('CREATE p1/p2')
        self.assertNotEqual(self.status_id(c, 'p1'), self.status_id(c, 'p1/p2'))
        c.ok('DELETE p1/p2')
        c.ok('DELETE p1')

    def test_rename_inbox(self):
        # RFC 8474 4.2: INBOX keeps its id, the new mailbox gets its own
        c = self.login(imap_util.USER2, imap_util.PASS2)
        c.append('INBOX', make_message(1))
        inbox = self.status_id(c, 'INBOX')
        c.ok('RENAME INBOX Old')
        self.assertEqual(self.status_id(c, 'INBOX'), inbox)
        self.assertNotEqual(self.status_id(c, 'Old'), inbox)

    def test_emailid(self):
        # RFC 8474 5.1: kept by MOVE; COPY keeps it here too (allowed)
        c = self.login()
        self.create(c, 'E1')
        self.create(c, 'E2')
        for i in range(3):
            c.append('E1', make_message(i))
        c.select('E1')
        before = self.ids(c)
        emails = [before[n]['EMAILID'] for n in (1, 2, 3)]
        self.assertEqual(len(set(emails)), 3)
        c.ok('COPY 1 E2')
        c.ok('MOVE 2 E2')
        c.select('E2')
        after = self.ids(c)
        if not imap_util.AGAINST_DOVECOT:
            self.assertEqual(after[1]['EMAILID'], emails[0])   # the copy
        self.assertEqual(after[2]['EMAILID'], emails[1])       # the moved one
        self.assertEqual(c.search('EMAILID %s' % emails[1]), [2])
        c.select('E1')
        self.assertEqual(c.search('EMAILID %s' % emails[1]), [])
        self.assertEqual(c.search('EMAILID %s' % emails[2]), [2])
        self.assertEqual(c.search('NOT EMAILID %s' % emails[2]), [1])
        # an id that is no message's
        self.assertEqual(c.search('EMAILID Mnosuchid'), [])
        self.assertEqual(c.search('EMAILID 0'), [])
        # the last message expunged, another saved: a new id
        c.ok('STORE 2 +FLAGS.SILENT (\\Deleted)')
        c.ok('EXPUNGE')
        c.ok('DELETE E2')
        c.append('E1', make_message(2))
        c.select('E1')
        now = self.ids(c)
        self.assertNotIn(now[2]['EMAILID'], emails)

    def test_threadid(self):
        c = self.login()
        self.create(c, 'T')
        # a reply before its parent, a thread, another thread, no ids at all
        c.append('T', msg('<c@x>', 'Re: one', irt='<p@x>', refs='<p@x>'))
        c.append('T', msg('<p@x>', 'one'))
        c.append('T', msg('<q@x>', 'two'))
        c.append('T', msg('<g@x>', 'Re: Re: one', irt='<c@x>', refs='<p@x> <c@x>'))
        c.append('T', msg(None, 'three'))
        c.append('T', msg('<r@x>', 'Re: two', irt='<q@x>'))
        c.select('T')
        got = self.ids(c)
        th = [got[n]['THREADID'] for n in range(1, 7)]
        if th[0] is None and imap_util.AGAINST_DOVECOT:
            self.skipTest('THREADID NIL (Dovecot keeps no threads)')
        self.assertEqual(th[0], th[1])
        self.assertEqual(th[0], th[3])
        self.assertEqual(th[2], th[5])
        self.assertEqual(len({th[0], th[2], th[4]}), 3, th)
        self.assertEqual(c.search('THREADID %s' % th[0]), [1, 2, 4])
        self.assertEqual(c.search('THREADID %s' % th[2]), [3, 6])
        self.assertEqual(c.search('THREADID %s' % th[4]), [5])
        self.assertEqual(c.search('THREADID Tnosuch'), [])
        # a thread across mailboxes; kept by COPY and MOVE
        self.create(c, 'T2')
        c.append('T2', msg('<h@x>', 'Re: one', irt='<g@x>'))
        c.ok('MOVE 3 T2')
        c.select('T2')
        got2 = self.ids(c)
        self.assertEqual(got2[1]['THREADID'], th[0])
        self.assertEqual(got2[2]['THREADID'], th[2])
        # one mailbox's search does not see the other's
        self.assertEqual(c.search('THREADID %s' % th[0]), [1])

    def test_uid_fetch_and_syntax(self):
        c = self.login()
        self.create(c, 'S')
        c.append('S', make_message(1))
        c.select('S')
        u = c.ok('UID FETCH 1 (EMAILID)')
        self.assertRegex(u[0], rb'^\* 1 FETCH \(UID 1 EMAILID \(' + ID + rb'\)\)$|'
                               rb'^\* 1 FETCH \(EMAILID \(' + ID + rb'\) UID 1\)$')
        for bad in ('SEARCH EMAILID', 'SEARCH THREADID', 'SEARCH EMAILID (x)',
                    'SEARCH EMAILID "a b"'):
            self.assertBAD(c.cmd(bad)[1], bad)
        self.assertBAD(c.cmd('STATUS S (MAILBOXID FOO)')[1])
        self.assertAlive()


if __name__ == '__main__':
    harness.main()
