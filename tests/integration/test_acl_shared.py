"""Shared mailboxes (RFC 4314, RFC 2342): alice (the owner) shares a folder
with bob, who reaches it as Shared/alice@example.org/<name> over IMAPS.
Each step of the rights (lr, then lrswi, then lrswite, then none) is
checked through bob's SELECT, FETCH, STORE, APPEND, COPY, MOVE, EXPUNGE
and IDLE; alice's and bob's sessions see each other's changes at once
(IDLE), a delivery into alice's folder reaches bob's IDLE, mailbox ids of
the two accounts never meet (the same id in both stores), alice's other
folders stay out of bob's reach answering as missing ones, and the ACL
survives a restart and `coffrectl mailbox reindex`.

test_core_steps (lr, then lrswi, then revoked) also runs against Dovecot
(IMAP_TESTS_AGAINST=dovecot: its acl and imap_acl plugins, vfile ACLs, the
shared namespace Shared/%u/ of test_acl_ns.py); the other tests check
coffre's own choices and are skipped there. Where the two answer
differently and RFC 4314 allows both (marked DIFFERENCES): STORE of a
flag the user may not change is NO [NOPERM] in coffre and an OK that
changes nothing in Dovecot (section 4: a server SHOULD NOT fail a STORE
when some flags may be changed; with none of them, both are seen), and
EXPUNGE without e is NO [NOPERM] in coffre, an OK that expunges nothing
in Dovecot.

Choices the RFC leaves open, as coffre makes them: SELECT says
READ-WRITE when the user has any of i, e, s, t, w (RFC 4314 5.2, \\Seen
being kept for everybody); no message of another account's mailbox is
\\Recent in a sharer's view (the owner's sessions keep them); a revoked
`r` refuses the selected-state commands with NO [NOPERM] until CLOSE or
UNSELECT (5.1.1 allows that or BYE) and nothing more of the mailbox is
announced; a STORE naming a flag the user may not change fails whole with
NO [NOPERM] (section 4 says SHOULD NOT fail when some may be changed;
changing part of what was asked is not done either)."""
import os
import re
import sqlite3
import time
import unittest

import harness
import imap_util
import lmtp_util
from imap_util import ImapCase, USER, PASS, USER2, PASS2, make_message, quote
from test_acl_ns import DovecotAclServer

DOVECOT = imap_util.AGAINST_DOVECOT

ALICE, BOB = USER, USER2
CAROL, CAROL_PASS = 'carol@example.org', 'carol has a passphrase too'
SHARED = 'Shared/%s/' % ALICE
# the first folder each creates: the same mailbox id in both stores
TWIN = 'Twin'


def mailbox_id(server, addr, name):
    path = os.path.join(server.data_dir, 'users', str(imap_util.user_id(server, addr)),
                        'index.sqlite')
    db = sqlite3.connect('file:%s?mode=ro' % path, uri=True)
    try:
        row = db.execute('SELECT id FROM mailboxes WHERE name = ?', (name,)).fetchone()
    finally:
        db.close()
    return row[0] if row else None


def flags_of(c, seqset='1:*'):
    """{seq: set of flags (lower case), \\Recent left out}"""
    return {n: {f.lower() for f in it['FLAGS']} - {'\\recent'}
            for n, (it, _) in c.fetch(seqset, '(FLAGS)').items()}


def tagged_text(t):
    """The tagged answer without its tag."""
    return t.split(b' ', 1)[1]


class SharedFolder(ImapCase):

    USERS = ((USER, PASS), (USER2, PASS2), (CAROL, CAROL_PASS))

    @classmethod
    def setUpClass(cls):
        if DOVECOT:
            saved = harness.Server
            harness.Server = DovecotAclServer
            try:
                super().setUpClass()
            finally:
                harness.Server = saved
        else:
            super().setUpClass()

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        # TWIN first in both stores, before anything else is created
        for u, p in cls.USERS:
            c = imap_util.Imap(cls.server.raw('imaps', tls=True))
            try:
                c.login(u, p)
                c.ok('CREATE %s' % TWIN)
                c.logout()
            finally:
                c.close()

    def setUp(self):
        if DOVECOT and self._testMethodName != 'test_core_steps':
            # coffre's own choices (per-user \Seen, NOPERM after a revoke
            # while selected, coffrectl, quota): test_core_steps is the part
            # both servers answer
            self.skipTest('checked against coffred only')
        self.box = 'T' + self._testMethodName[5:][-20:]
        self.priv = self.box + '-private'
        self.sbox = SHARED + self.box
        a = self.login(ALICE, PASS)
        for b in (self.box, self.priv):
            a.cmd('DELETE %s' % quote(b))
            a.ok('CREATE %s' % quote(b))
        a.append(self.box, make_message(1, subject='one'))
        a.append(self.box, make_message(2, subject='two'), flags=['\\Flagged'])
        a.append(self.box, make_message(3, subject='three'), flags=['\\Seen'])
        a.append(self.priv, make_message(9, subject='private'))
        a.logout()
        self.bob_clean()

    def bob_clean(self):
        b = self.login(BOB, PASS2)
        b.select('INBOX')
        b.ok('STORE 1:* +FLAGS.SILENT (\\Deleted)') if b.search('ALL') else None
        b.ok('EXPUNGE')
        b.logout()

    def share(self, rights, box=None):
        a = self.login(ALICE, PASS)
        a.ok('SETACL %s %s %s' % (quote(box or self.box), BOB, rights))
        a.logout()

    def revoke(self, box=None):
        a = self.login(ALICE, PASS)
        a.ok('DELETEACL %s %s' % (quote(box or self.box), BOB))
        a.logout()

    def alice_flags(self, box=None):
        a = self.login(ALICE, PASS)
        a.select(box or self.box, examine=True)
        f = flags_of(a)
        a.logout()
        return f

    # ---- the core steps, on coffred and on Dovecot ----

    def test_core_steps(self):
        """lr, then lrswi, then revoked: bob's SELECT, FETCH, STORE,
        APPEND, COPY and EXPUNGE at each step. Runs against Dovecot too
        (IMAP_TESTS_AGAINST=dovecot, acl and imap_acl plugins, vfile ACLs);
        where RFC 4314 lets the two answer differently, each server's own
        answer is checked (see DIFFERENCES)."""
        msg = make_message(5, subject='from bob')
        # -- lr
        self.share('lr')
        b = self.login(BOB, PASS2)
        info = b.select(self.sbox)
        self.assertEqual(info['exists'], 3)
        self.assertIn(b'[READ-ONLY]', info['tagged'])
        got = b.fetch('2', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
        self.assertIn(b'two', got[2][1]['BODY[HEADER.FIELDS (SUBJECT)]'])
        st, t, _ = b.status_of('STORE 1 +FLAGS (\\Flagged)')
        if DOVECOT:
            self.assertEqual(st, 'OK', t)  # DIFFERENCES: ignored on a read-only mailbox
        else:
            self.assertIn(b'NO [NOPERM]', t)
        self.assertEqual(self.alice_flags()[1], set())
        for cmd, lits in (('APPEND %s {}' % quote(self.sbox), (msg,)),
                          ('COPY 1 %s' % quote(self.sbox), ()), ('EXPUNGE', ())):
            st, t, _ = b.status_of(cmd, *lits)
            if DOVECOT and cmd == 'EXPUNGE':
                self.assertEqual(st, 'OK', t)  # DIFFERENCES: nothing marked, nothing done
                continue
            self.assertEqual(st, 'NO', (cmd, t))
            self.assertIn(b'[NOPERM]', t, cmd)
        self.assertEqual(len(self.alice_flags()), 3)
        b.logout()
        # -- lrswi (a new session: Dovecot keeps a session's rights)
        self.share('lrswi')
        b = self.login(BOB, PASS2)
        info = b.select(self.sbox)
        self.assertIn(b'[READ-WRITE]', info['tagged'])
        self.assertNotIn('\\Deleted', info['permanentflags'])
        b.ok('STORE 2 +FLAGS (\\Answered)')
        self.assertIn('\\answered', self.alice_flags()[2])
        st, t, _ = b.status_of('STORE 2 +FLAGS (\\Deleted)')
        if DOVECOT:
            self.assertEqual(st, 'OK', t)  # DIFFERENCES: \Deleted silently dropped
        else:
            self.assertIn(b'NO [NOPERM]', t)
        self.assertNotIn('\\deleted', self.alice_flags()[2])
        b.ok('APPEND %s {}' % quote(self.sbox), msg)
        b.append('INBOX', make_message(6, subject='bob own'))
        b.select('INBOX')
        b.ok('COPY 1 %s' % quote(self.sbox))
        self.assertEqual(len(self.alice_flags()), 5)
        b.select(self.sbox)
        st, t, _ = b.status_of('EXPUNGE')
        if DOVECOT:
            self.assertEqual(st, 'OK', t)  # DIFFERENCES: nothing marked, nothing done
        else:
            self.assertIn(b'NO [NOPERM]', t)
        self.assertEqual(len(self.alice_flags()), 5)
        b.logout()
        # -- revoked: as a missing mailbox
        self.revoke()
        b = self.login(BOB, PASS2)
        st, t1, _ = b.status_of('SELECT %s' % quote(self.sbox))
        self.assertEqual(st, 'NO')
        _, t2, _ = b.status_of('SELECT %s' % quote(SHARED + 'no-such-box'))
        self.assertEqual(re.sub(rb' \([0-9.+ ]+ secs\)', b'', tagged_text(t1))
                         .replace(self.box.encode(), b'N'),
                         re.sub(rb' \([0-9.+ ]+ secs\)', b'', tagged_text(t2))
                         .replace(b'no-such-box', b'N'))
        for cmd, lits in (('APPEND %s {}' % quote(self.sbox), (msg,)),
                          ('STATUS %s (MESSAGES)' % quote(self.sbox), ())):
            st, t, _ = b.status_of(cmd, *lits)
            self.assertEqual(st, 'NO', (cmd, t))
        b.logout()
        self.assertEqual(len(self.alice_flags()), 5)

    # ---- lr: reading only ----

    def test_read_only_lr(self):
        self.share('lr')
        b = self.login(BOB, PASS2)
        info = b.select(self.sbox)
        self.assertEqual(info['exists'], 3)
        self.assertIn(b'[READ-ONLY]', info['tagged'])
        self.assertEqual(info['recent'], 0)
        self.assertEqual(info['permanentflags'], set())
        # the bytes are alice's
        got = b.fetch('2', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
        self.assertIn(b'two', got[2][1]['BODY[HEADER.FIELDS (SUBJECT)]'])
        # a body fetch without s sets no \Seen
        b.fetch('1', '(BODY[])')
        self.assertNotIn('\\seen', self.alice_flags()[1])
        # STORE of any kind of flag needs a right bob lacks
        for fl in ('\\Seen', '\\Deleted', '\\Flagged', 'kw1'):
            st, t, _ = b.status_of('STORE 1 +FLAGS (%s)' % fl)
            self.assertEqual(st, 'NO', fl)
            self.assertIn(b'[NOPERM]', t)
        self.assertEqual(self.alice_flags()[1], set())
        # EXPUNGE needs e, APPEND and COPY into need i
        st, t, _ = b.status_of('EXPUNGE')
        self.assertIn(b'NO [NOPERM]', t)
        st, t, _ = b.status_of('APPEND %s {}' % quote(self.sbox), make_message(5))
        self.assertIn(b'NO [NOPERM]', t)
        st, t, _ = b.status_of('COPY 1 %s' % quote(self.sbox))
        self.assertIn(b'NO [NOPERM]', t)
        # MOVE from it needs t and e
        st, t, _ = b.status_of('MOVE 1 INBOX')
        self.assertIn(b'NO [NOPERM]', t)
        # COPY out of it to bob's own INBOX: r is enough
        b.ok('COPY 1:3 INBOX')
        m = re.search(rb'\[COPYUID (\d+) ([\d:,]+) ([\d:,]+)\]', b.last_tagged)
        self.assertTrue(m, b.last_tagged)
        st = b.ok('STATUS INBOX (MESSAGES UIDVALIDITY)')
        self.assertIn(b'MESSAGES 3', st[0])
        self.assertIn(b'UIDVALIDITY %s' % m.group(1), st[0])
        # nothing changed for alice
        self.assertEqual(len(self.alice_flags()), 3)
        # SEARCH, SORT and THREAD read alice's messages
        b.select(self.sbox)
        self.assertEqual(b.search('SUBJECT two'), [2])
        u = b.ok('SORT (SUBJECT) UTF-8 ALL')
        self.assertTrue([r for r in u if r.startswith(b'* SORT 1 3 2')], u)
        u = b.ok('THREAD ORDEREDSUBJECT UTF-8 ALL')
        self.assertTrue([r for r in u if r.startswith(b'* THREAD')], u)
        b.ok('CLOSE')  # without e: closes, expunges nothing
        self.assertEqual(len(self.alice_flags()), 3)
        b.logout()
        # bob claimed no \Recent: alice's first SELECT has them all
        a = self.login(ALICE, PASS)
        self.assertEqual(a.select(self.box)['recent'], 3)
        a.logout()

    def test_examine_changes_nothing(self):
        self.share('lrswite')
        b = self.login(BOB, PASS2)
        info = b.select(self.sbox, examine=True)
        self.assertIn(b'[READ-ONLY]', info['tagged'])
        b.fetch('1', '(BODY[])')
        self.assertNotIn('\\seen', self.alice_flags()[1])
        st, t, _ = b.status_of('STORE 1 +FLAGS (\\Seen)')
        self.assertIn(b'NO [READ-ONLY]', t)
        b.logout()

    def test_rights_change_while_selected(self):
        self.share('lr')
        b = self.login(BOB, PASS2)
        self.assertIn(b'[READ-ONLY]', b.select(self.sbox)['tagged'])
        self.share('lrswi')
        # the next command says so (RFC 4314 5.1.1) and may use them
        u = b.ok('NOOP')
        perm = [r for r in u if b'PERMANENTFLAGS' in r]
        self.assertTrue(perm and b'\\Seen' in perm[0], u)
        self.assertTrue([r for r in u if b'[READ-WRITE]' in r], u)
        b.ok('STORE 1 +FLAGS (\\Seen)')
        # bob's own \Seen (per-user \Seen, test_acl_seen.py), not alice's
        self.assertIn('\\seen', flags_of(b, '1')[1])
        self.assertNotIn('\\seen', self.alice_flags()[1])
        self.share('lr')
        st, t, _ = b.status_of('STORE 2 +FLAGS (\\Seen)')
        self.assertIn(b'NO [NOPERM]', t)
        self.assertTrue([r for r in b.log[-4:] if b'[READ-ONLY]' in r[1]], b.log[-4:])
        b.logout()

    def test_between_two_owners(self):
        self.share('lrswite')
        c = self.login(CAROL, CAROL_PASS)
        cbox = 'C' + self.box
        c.cmd('DELETE %s' % quote(cbox))
        c.ok('CREATE %s' % quote(cbox))
        c.ok('SETACL %s %s lrsi' % (quote(cbox), BOB))
        c.logout()
        b = self.login(BOB, PASS2)
        b.select(self.sbox)
        # alice's mailbox to carol's: r on the one, i on the other; carol
        # gave no w, so \Flagged stays behind; \Seen is each user's own
        # (alice's on 3 is not bob's, and bob's would be his alone)
        b.ok('COPY 2 %s' % quote('Shared/%s/%s' % (CAROL, cbox)))
        self.assertIn(b'COPYUID', b.last_tagged)
        b.ok('MOVE 3 %s' % quote('Shared/%s/%s' % (CAROL, cbox)))
        b.logout()
        c = self.login(CAROL, CAROL_PASS)
        c.select(cbox)
        f = flags_of(c)
        self.assertEqual(f, {1: set(), 2: set()})
        got = c.fetch('1:2', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
        self.assertIn(b'two', got[1][1]['BODY[HEADER.FIELDS (SUBJECT)]'])
        self.assertIn(b'three', got[2][1]['BODY[HEADER.FIELDS (SUBJECT)]'])
        c.logout()
        self.assertEqual(len(self.alice_flags()), 2)

    # ---- lrswi: reading, flags but \Deleted, inserting ----

    def test_write_lrswi(self):
        self.share('lrswi')
        b = self.login(BOB, PASS2)
        info = b.select(self.sbox)
        self.assertIn(b'[READ-WRITE]', info['tagged'])
        perm = info['permanentflags']
        self.assertTrue({'\\Seen', '\\Flagged', '\\Answered', '\\Draft', '\\*'} <= perm, perm)
        self.assertNotIn('\\Deleted', perm)
        # a body fetch sets \Seen now, bob's own (per-user \Seen)
        b.fetch('1', '(BODY[])')
        self.assertIn('\\seen', flags_of(b, '1')[1])
        self.assertNotIn('\\seen', self.alice_flags()[1])
        b.ok('STORE 2 +FLAGS (\\Answered kw1)')
        self.assertTrue({'\\answered', 'kw1'} <= self.alice_flags()[2])
        st, t, _ = b.status_of('STORE 2 +FLAGS (\\Deleted)')
        self.assertIn(b'NO [NOPERM]', t)
        # FLAGS (replace) would clear \Deleted too: needs t
        st, t, _ = b.status_of('STORE 2 FLAGS (\\Seen)')
        self.assertIn(b'NO [NOPERM]', t)
        self.assertNotIn('\\deleted', self.alice_flags()[2])
        # APPEND: \Deleted dropped (no t), \Seen (bob's own) and a keyword kept
        a_uv = self.uidvalidity(ALICE, PASS, self.box)
        uv, uid = b.append(self.sbox, make_message(4, subject='from bob'),
                           flags=['\\Seen', '\\Deleted', 'kw2'])
        self.assertEqual(uv, a_uv)
        f = self.alice_flags()
        self.assertEqual(len(f), 4)
        self.assertEqual(f[4], {'kw2'})
        b.ok('NOOP')
        self.assertEqual(flags_of(b, '4')[4], {'\\seen', 'kw2'})
        # COPY from bob's own INBOX into it, flags as the rights allow
        b.append('INBOX', make_message(6, subject='bob own'), flags=['\\Deleted', '\\Flagged'])
        b.select('INBOX')
        b.ok('COPY 1 %s' % quote(self.sbox))
        m = re.search(rb'\[COPYUID (\d+) (\d+) (\d+)\]', b.last_tagged)
        self.assertEqual(int(m.group(1)), a_uv)
        f = self.alice_flags()
        self.assertEqual(f[5], {'\\flagged'})
        b.select(self.sbox)
        st, t, _ = b.status_of('EXPUNGE')
        self.assertIn(b'NO [NOPERM]', t)
        st, t, _ = b.status_of('MOVE 1 INBOX')
        self.assertIn(b'NO [NOPERM]', t)
        b.logout()

    def uidvalidity(self, user, pw, box):
        c = self.login(user, pw)
        u = c.ok('STATUS %s (UIDVALIDITY)' % quote(box))
        c.logout()
        return int(re.search(rb'UIDVALIDITY (\d+)', u[0]).group(1))

    # ---- revoked while selected ----

    def test_revoked_while_selected(self):
        self.share('lrswi')
        b = self.login(BOB, PASS2)
        b.select(self.sbox)
        self.revoke()
        # RFC 4314 5.1.1: the selected-state commands are refused ...
        for cmd in ('FETCH 1 (FLAGS)', 'UID SEARCH ALL', 'STORE 1 +FLAGS (\\Seen)',
                    'COPY 1 INBOX'):
            st, t, _ = b.status_of(cmd)
            self.assertEqual(st, 'NO', cmd)
            self.assertIn(b'[NOPERM]', t)
        # ... nothing of the mailbox is announced any more ...
        a = self.login(ALICE, PASS)
        a.append(self.box, make_message(7))
        u = b.ok('NOOP')
        self.assertFalse([r for r in u if b'EXISTS' in r], u)
        b.idle()
        a.append(self.box, make_message(8))
        with self.assertRaises(Exception):
            b.line(timeout=1.0)
        u = b.done()
        self.assertFalse([r for r in u if b'EXISTS' in r or b'FETCH' in r], u)
        # ... until it is left; then it answers as a missing mailbox
        b.ok('CLOSE')
        st, t1, _ = b.status_of('SELECT %s' % quote(self.sbox))
        st2, t2, _ = b.status_of('SELECT %s' % quote(SHARED + 'no-such-box'))
        self.assertEqual(tagged_text(t1), tagged_text(t2))
        self.assertEqual(st, 'NO')
        b.logout()
        a.logout()

    # ---- both at once ----

    def test_idle_both_ways(self):
        self.share('lrswite')
        a = self.login(ALICE, PASS)
        a.select(self.box)
        b = self.login(BOB, PASS2)
        b.select(self.sbox)
        # alice's change reaches bob in IDLE at once
        b.idle()
        a.append(self.box, make_message(10))
        b.line_until(b'* 4 EXISTS')
        a.ok('STORE 1 +FLAGS (\\Answered)')
        r = b.line_until(re.compile(rb'\* 1 FETCH'))
        self.assertIn(b'\\Answered', r)
        b.done()
        # and bob's reaches alice
        a.idle()
        b.ok('STORE 2 +FLAGS (\\Deleted)')
        r = a.line_until(re.compile(rb'\* 2 FETCH'))
        self.assertIn(b'\\Deleted', r)
        b.ok('EXPUNGE')
        a.line_until(b'* 2 EXPUNGE')
        b.append(self.sbox, make_message(11))
        a.line_until(b'* 4 EXISTS')
        a.done()
        a.logout()
        b.logout()

    def test_notify_selected(self):
        # NOTIFY (RFC 5465) for the selected mailbox: alice's changes come
        # to bob at rest, without a command
        self.share('lrswite')
        b = self.login(BOB, PASS2)
        b.select(self.sbox)
        b.ok('NOTIFY SET (selected (MessageNew MessageExpunge FlagChange))')
        a = self.login(ALICE, PASS)
        a.select(self.box)
        a.ok('STORE 1 +FLAGS.SILENT (\\Flagged)')
        r = b.line_until(re.compile(rb'\* 1 FETCH'))
        self.assertIn(b'\\Flagged', r)
        a.append(self.box, make_message(12))
        b.line_until(b'* 4 EXISTS')
        a.ok('STORE 2 +FLAGS.SILENT (\\Deleted)')
        a.ok('EXPUNGE')
        b.line_until(b'* 2 EXPUNGE')
        b.ok('NOTIFY NONE')
        a.logout()
        b.logout()

    def test_delivery_seen_in_idle(self):
        self.share('lr', box='INBOX')
        b = self.login(BOB, PASS2)
        n = b.select(SHARED + 'INBOX')['exists']
        b.idle()
        l = lmtp_util.lmtp(self.server)
        try:
            rcpt, data = lmtp_util.send(l, 'sender@example.net', [ALICE], make_message(20))
            self.assertEqual([r[0] for r in data], [250])
        finally:
            l.quit()
        b.line_until(b'* %d EXISTS' % (n + 1))
        b.done()
        b.logout()
        self.revoke(box='INBOX')

    def test_owner_quota_and_multiappend(self):
        dave, dpw = 'dave@example.org', 'dave keeps a small mailbox'
        self.server.add_user(dave, dpw)
        rc, out, err = self.server.ctl('user', 'quota', dave, '--max-messages', '2')
        self.assertEqual(rc, 0, out + err)
        d = self.login(dave, dpw)
        d.ok('CREATE Drop')
        d.ok('SETACL Drop %s lrsi' % BOB)
        d.logout()
        drop = 'Shared/%s/Drop' % dave
        b = self.login(BOB, PASS2)
        # MULTIAPPEND: both or neither, the flags as the rights allow
        b.ok('APPEND %s (\\Seen \\Flagged) {} (\\Deleted) {}' % quote(drop),
             make_message(40), make_message(41))
        m = re.search(rb'\[APPENDUID (\d+) ([\d:,]+)\]', b.last_tagged)
        self.assertTrue(m, b.last_tagged)
        self.assertEqual(m.group(2), b'1:2')
        # dave's quota, not bob's (who has none), is what counts
        st, t, _ = b.status_of('APPEND %s {}' % quote(drop), make_message(42))
        self.assertIn(b'NO [OVERQUOTA]', t)
        b.append('INBOX', make_message(43))
        # \Seen is bob's own (per-user \Seen), \Flagged needs w
        b.select(drop)
        self.assertEqual(flags_of(b), {1: {'\\seen'}, 2: set()})
        b.logout()
        d = self.login(dave, dpw)
        d.select('Drop')
        self.assertEqual(flags_of(d), {1: set(), 2: set()})
        d.logout()

    def test_expunge_close_replace_with_te(self):
        self.share('lrswite')
        b = self.login(BOB, PASS2)
        b.select(self.sbox)
        uids = sorted(int(it['UID']) for it, _ in b.fetch('1:*', '(UID)').values())
        b.ok('STORE 1:2 +FLAGS (\\Deleted)')
        u = b.ok('UID EXPUNGE %d' % uids[0])
        self.assertIn(b'* 1 EXPUNGE', u)
        # REPLACE (RFC 8508) within alice's store: i, t and e
        b.ok('REPLACE 2 %s {}' % quote(self.sbox), make_message(50, subject='replaced'))
        self.assertIn(b'APPENDUID', b'\n'.join(r[1] for r in b.log[-6:]))
        b.ok('STORE 1 +FLAGS (\\Deleted)')
        b.ok('CLOSE')  # with e: expunges
        b.logout()
        a = self.login(ALICE, PASS)
        a.select(self.box)
        got = a.fetch('1:*', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
        self.assertEqual(len(got), 1)
        self.assertIn(b'Subject: replaced', got[1][1]['BODY[HEADER.FIELDS (SUBJECT)]'])
        a.logout()

    # ---- COPY and MOVE both ways ----

    def test_copy_move_both_ways(self):
        self.share('lrswite')
        b = self.login(BOB, PASS2)
        b.select(self.sbox)
        b.ok('MOVE 2 INBOX')
        m = re.search(rb'\[COPYUID (\d+) (\d+) (\d+)\]', b'\n'.join(r[1] for r in b.log[-4:]))
        self.assertTrue(m)
        self.assertEqual(int(m.group(1)), self.uidvalidity(BOB, PASS2, 'INBOX'))
        self.assertEqual(len(self.alice_flags()), 2)
        b.select('INBOX')
        got = b.fetch('1', '(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
        self.assertIn(b'two', got[1][1]['BODY[HEADER.FIELDS (SUBJECT)]'])
        self.assertIn('\\Flagged', got[1][0]['FLAGS'])
        b.ok('MOVE 1 %s' % quote(self.sbox))
        u = [r[1] for r in b.log[-4:]]
        m = re.search(rb'\[COPYUID (\d+) (\d+) (\d+)\]', b'\n'.join(u))
        self.assertEqual(int(m.group(1)), self.uidvalidity(ALICE, PASS, self.box))
        f = self.alice_flags()
        self.assertEqual(len(f), 3)
        self.assertIn('\\flagged', f[3])
        self.assertEqual(b.select('INBOX')['exists'], 0)
        b.logout()

    # ---- ids of two accounts never meet ----

    def test_same_mailbox_id_in_both_stores(self):
        aid, bid = (mailbox_id(self.server, ALICE, TWIN), mailbox_id(self.server, BOB, TWIN))
        self.assertIsNotNone(aid)
        self.assertEqual(aid, bid)
        self.share('lrswite', box=TWIN)
        try:
            b1 = self.login(BOB, PASS2)
            n = b1.select(SHARED + TWIN)['exists']
            b2 = self.login(BOB, PASS2)
            m0 = b2.select(TWIN)['exists']  # bob's own, the same id
            a = self.login(ALICE, PASS)
            a.select(TWIN)
            b1.idle()
            a.idle()
            # bob's own mailbox changes: neither alice nor bob's view of
            # alice's mailbox hears of it
            b2.append(TWIN, make_message(30))
            b2.append(TWIN, make_message(31))
            with self.assertRaises(Exception):
                b1.line(timeout=1.0)
            with self.assertRaises(Exception):
                a.line(timeout=0.2)
            # alice's does reach bob's view of it, not bob's own
            a.done()
            a.append(TWIN, make_message(32))
            b1.line_until(b'* %d EXISTS' % (n + 1))
            b1.done()
            u = b2.ok('NOOP')
            exists = [int(r.split()[1]) for r in u if r.endswith(b' EXISTS')]
            self.assertTrue(all(e == m0 + 2 for e in exists), u)
            self.assertEqual(len(b2.search('ALL')), m0 + 2)
            a.logout()
            b1.logout()
            b2.logout()
        finally:
            self.revoke(box=TWIN)

    # ---- what is not shared stays out of reach ----

    def test_other_folders_unreachable(self):
        self.share('lrswite')
        b = self.login(BOB, PASS2)
        missing = SHARED + 'no-such-box'
        for cmd in ('SELECT %s', 'EXAMINE %s', 'STATUS %s (MESSAGES)'):
            _, t1, u1 = b.status_of(cmd % quote(SHARED + self.priv))
            _, t2, u2 = b.status_of(cmd % quote(missing))
            self.assertEqual(tagged_text(t1), tagged_text(t2), cmd)
            self.assertTrue(t1.split(b' ')[1] == b'NO', t1)
        _, t1, _ = b.status_of('APPEND %s {}' % quote(SHARED + self.priv), make_message(1))
        _, t2, _ = b.status_of('APPEND %s {}' % quote(missing), make_message(1))
        self.assertEqual(tagged_text(t1), tagged_text(t2))
        b.select(self.sbox)
        _, t1, _ = b.status_of('COPY 1 %s' % quote(SHARED + self.priv))
        _, t2, _ = b.status_of('COPY 1 %s' % quote(missing))
        self.assertEqual(tagged_text(t1), tagged_text(t2))
        # a name with ".." never climbs out of the shared folder
        for name in (self.sbox + '/../' + self.priv, SHARED + '../' + ALICE + '/' + self.priv,
                     'Shared/../' + self.priv):
            st, _, _ = b.status_of('SELECT %s' % quote(name))
            self.assertEqual(st, 'NO', name)
        # CATENATE into alice's folder never looks a URL up in her store
        b.select(self.sbox)
        st, t, _ = b.status_of('APPEND %s CATENATE (URL "/%s;UIDVALIDITY=%d/;UID=1")'
                               % (quote(self.sbox), self.priv,
                                  self.uidvalidity(ALICE, PASS, self.priv)))
        self.assertEqual(st, 'NO')
        self.assertEqual(len(self.alice_flags()), 3)
        b.logout()
        # alice's private folder is as it was
        self.assertEqual(len(self.alice_flags(self.priv)), 1)

    # ---- coffrectl changes reach the running sessions ----

    def test_coffrectl_share_and_revoke(self):
        rc, out, err = self.server.ctl('mailbox', 'acl', 'set', ALICE, self.box, BOB, 'lr')
        self.assertEqual(rc, 0, out + err)
        b = self.login(BOB, PASS2)
        self.assertIn(b'[READ-ONLY]', b.select(self.sbox)['tagged'])
        rc, out, err = self.server.ctl('mailbox', 'acl', 'set', ALICE, self.box, BOB, 'lrswi')
        self.assertEqual(rc, 0, out + err)
        b.ok('STORE 1 +FLAGS (\\Flagged)')
        self.assertIn('\\flagged', self.alice_flags()[1])
        rc, out, err = self.server.ctl('mailbox', 'acl', 'delete', ALICE, self.box, BOB)
        self.assertEqual(rc, 0, out + err)
        st, t, _ = b.status_of('FETCH 1 (FLAGS)')
        self.assertIn(b'NO [NOPERM]', t)
        b.ok('UNSELECT')
        st, t, _ = b.status_of('EXAMINE %s' % quote(self.sbox))
        self.assertIn(b'NO [NONEXISTENT]', t)
        b.logout()

    # ---- the ACL lasts ----

    def test_survives_restart_and_reindex(self):
        self.share('lr')
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        b = self.login(BOB, PASS2)
        self.assertEqual(b.select(self.sbox)['exists'], 3)
        b.logout()
        rc, out, err = self.server.ctl('mailbox', 'reindex', ALICE)
        self.assertEqual(rc, 0, out + err)
        b = self.login(BOB, PASS2)
        self.assertEqual(b.select(self.sbox)['exists'], 3)
        st, t, _ = b.status_of('STORE 1 +FLAGS (\\Seen)')
        self.assertIn(b'NO [NOPERM]', t)
        b.logout()


if __name__ == '__main__':
    unittest.main()
