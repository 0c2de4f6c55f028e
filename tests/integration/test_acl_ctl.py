"""Access control lists from the administrator's side: `coffrectl group`
(add, del, members add/del, list) and `coffrectl mailbox acl get/set/
delete` and `mailbox seen` with their exit codes and messages (unknown
owner, mailbox, address, group; bad rights and identifiers; the owner
refused; acl_max_entries), one audit line per command, each change read
again by the running coffred through its control socket (its log says
so) and nothing said when coffred is not running, the entries of an
account going with `user del`, and `restore --user` carrying them."""
import json
import os
import pwd
import shutil
import unittest

import harness
from harness import ServerTestCase, imap_quote

PASS = 'acl ctl pass 1'
A = 'alice@example.org'
B = 'bob@example.org'
C = 'carol@example.org'
D = 'dave@example.org'
RUN = pwd.getpwnam(harness.RUN_USER)


def imap_create(server, user, *names):
    c = server.raw('imaps', tls=True)
    try:
        assert c.line().startswith('* OK')
        _, t = c.cmd('l', 'LOGIN %s %s' % (imap_quote(user), imap_quote(PASS)))
        assert t.startswith('l OK'), t
        for i, n in enumerate(names):
            _, t = c.cmd('c%d' % i, 'CREATE %s' % imap_quote(n))
            assert t.startswith('c%d OK' % i), t
        c.cmd('o', 'LOGOUT')
    finally:
        c.close()


class AclCtl(ServerTestCase):
    CONF = {'acl_max_entries': '4', 'log_format': 'json'}

    @classmethod
    def setUpServer(cls):
        cls.audit = os.path.join(cls.server.tmp, 'audit.log')
        for u in (A, B, C, D):
            cls.server.add_user(u, PASS)
        imap_create(cls.server, A, 'support', 'support/old', 'supportx', 'lim')
        imap_create(cls.server, B, 'bobbox')

    def ctl(self, *args):
        return self.server.ctl(*args)

    def ok(self, *args):
        rc, out, err = self.ctl(*args)
        self.assertEqual(rc, 0, '%s: %s%s' % (' '.join(args), out, err))
        self.assertEqual(err, '', ' '.join(args))
        return out

    def fails(self, code, *args, says=None):
        rc, out, err = self.ctl(*args)
        self.assertEqual(rc, code, '%s: %s%s' % (' '.join(args), out, err))
        if says:
            self.assertIn(says, err)
        return err

    def reloads(self):
        return sum(1 for l in self.server.log().splitlines() if 'acl: reloaded' in l)

    def wait_reloads(self, n):
        harness.wait_for(lambda: self.reloads() >= n, 5)
        self.assertGreaterEqual(self.reloads(), n, self.server.log_tail())

    def acl(self, owner, mailbox):
        out = self.ok('mailbox', 'acl', 'get', owner, mailbox)
        return dict(l.split('\t') for l in out.splitlines())

    def test_groups(self):
        self.ok('group', 'add', 'sales')
        self.fails(4, 'group', 'add', 'Sales', says='exists already')
        self.fails(5, 'group', 'add', 'a b', says='not an identifier')
        self.ok('group', 'add', 'empty')
        self.ok('group', 'members', 'sales', 'add', C)
        self.ok('group', 'members', 'sales', 'add', 'dave')  # the default domain? none set
        self.fails(4, 'group', 'members', 'sales', 'add', C, says='already')
        self.fails(3, 'group', 'members', 'sales', 'add', 'ghost@example.org', says='no such user')
        self.fails(3, 'group', 'members', 'nosuch', 'add', C, says='no such group')
        self.fails(3, 'group', 'members', 'empty', 'del', C, says='is not in empty')
        self.assertEqual(self.ok('group', 'members', 'sales').split(), [C, D])
        self.assertEqual(self.ok('group', 'members', 'empty'), '')
        lines = self.ok('group', 'list').splitlines()
        self.assertIn('sales\t2', lines)
        self.assertIn('empty\t0', lines)
        self.ok('group', 'members', 'sales', 'del', D)
        self.assertEqual(self.ok('group', 'members', 'sales').split(), [C])
        self.fails(1, 'group', 'frobnicate')
        self.ok('group', 'del', 'empty')
        self.fails(3, 'group', 'del', 'empty', says='no such group')

    def test_acl_set_get_delete(self):
        self.ok('mailbox', 'acl', 'set', A, 'support', B, 'lr')
        self.assertEqual(self.acl(A, 'support'), {B: 'lr'})
        self.ok('mailbox', 'acl', 'set', A, 'support', B, '+sw')
        self.assertEqual(self.acl(A, 'support'), {B: 'lrsw'})
        self.ok('mailbox', 'acl', 'set', A, 'support', B, '-w')
        self.ok('mailbox', 'acl', 'set', A, 'support', 'anyone', 'l')
        self.ok('mailbox', 'acl', 'set', A, 'support', '-' + C, 'c')
        self.assertEqual(self.acl(A, 'support'), {B: 'lrs', 'anyone': 'l', '-' + C: 'kx'})
        # the children and a name sharing the prefix have their own lists
        self.assertEqual(self.acl(A, 'support/old'), {})
        self.assertEqual(self.acl(A, 'supportx'), {})
        self.fails(1, 'mailbox', 'acl', 'set', A, 'support', B, 'lrQ', says='not a rights string')
        self.fails(5, 'mailbox', 'acl', 'set', A, 'support', 'a b', 'l', says='not an identifier')
        self.fails(1, 'mailbox', 'acl', 'set', A, 'support', A, 'l', says='owns the mailbox')
        self.fails(3, 'mailbox', 'acl', 'set', A, 'nosuch', B, 'l', says='has no mailbox nosuch')
        self.fails(3, 'mailbox', 'acl', 'set', 'ghost@example.org', 'support', B, 'l',
                   says='no such user')
        self.fails(3, 'mailbox', 'acl', 'set', A, 'support', 'ghost@example.org', 'l',
                   says='no such user')
        self.fails(3, 'mailbox', 'acl', 'set', A, 'support', '$nosuch', 'l',
                   says='no such group')
        self.fails(1, 'mailbox', 'acl', 'set', A, 'support', B)
        self.ok('mailbox', 'acl', 'delete', A, 'support', B)
        self.fails(3, 'mailbox', 'acl', 'delete', A, 'support', B, says='has no entry')
        self.assertEqual(self.acl(A, 'support'), {'anyone': 'l', '-' + C: 'kx'})
        self.ok('mailbox', 'acl', 'set', A, 'support', '-' + C, '')
        self.assertEqual(self.acl(A, 'support'), {'anyone': 'l'})

    def test_limit(self):
        for u in (B, C, D, 'anyone'):
            self.ok('mailbox', 'acl', 'set', A, 'lim', u, 'l')
        self.ok('group', 'add', 'limgroup')
        self.fails(10, 'mailbox', 'acl', 'set', A, 'lim', '$limgroup', 'l',
                   says='acl_max_entries')
        self.ok('mailbox', 'acl', 'set', A, 'lim', B, '+r')
        self.ok('mailbox', 'acl', 'delete', A, 'lim', D)
        self.ok('mailbox', 'acl', 'set', A, 'lim', '$limgroup', 'l')

    def test_seen(self):
        self.ok('mailbox', 'seen', A, 'support', 'shared')
        self.ok('mailbox', 'seen', A, 'support', 'per-user')
        self.fails(1, 'mailbox', 'seen', A, 'support', 'sometimes')
        self.fails(3, 'mailbox', 'seen', A, 'nosuch', 'shared')

    def requests(self):
        return self.server.log().count('asks for the access control lists to be read again')

    def test_reload_reaches_coffred(self):
        # what earlier tests asked for is read first
        harness.wait_for(lambda: self.reloads() == self.requests(), 5)
        before = self.reloads()
        self.assertEqual(before, self.requests())
        self.ok('mailbox', 'acl', 'set', B, 'bobbox', A, 'lr')
        self.wait_reloads(before + 1)
        self.ok('group', 'add', 'reloaders')
        self.ok('group', 'members', 'reloaders', 'add', B)
        self.wait_reloads(before + 2)
        # a refused change, and a read, ask for nothing
        self.fails(3, 'mailbox', 'acl', 'set', B, 'bobbox', 'ghost@example.org', 'l')
        self.acl(B, 'bobbox')
        self.ok('group', 'list')
        self.assertEqual((self.requests(), self.reloads()), (before + 2, before + 2))

    def test_reload_seen_by_imap(self):
        """A session already logged in sees each change at its next
        command: MYRIGHTS and GETACL on the shared name."""
        c = self.server.raw('imaps', tls=True)
        try:
            self.assertTrue(c.line().startswith('* OK'))
            _, t = c.cmd('l', 'LOGIN %s %s' % (imap_quote(C), imap_quote(PASS)))
            self.assertTrue(t.startswith('l OK'), t)
            name = '"Shared/%s/supportx"' % A

            def myrights(tag):
                lines, t = c.cmd(tag, 'MYRIGHTS ' + name)
                return lines, t

            lines, t = myrights('m1')
            self.assertTrue(t.startswith('m1 NO'), t)  # nothing: as if missing
            asked = self.requests()
            self.ok('mailbox', 'acl', 'set', A, 'supportx', C, 'lra')
            harness.wait_for(lambda: self.reloads() >= self.requests() > asked, 5)
            lines, t = myrights('m2')
            self.assertTrue(t.startswith('m2 OK'), t)
            unq = [l.replace('"lra"', 'lra') for l in lines]  # atom or quoted string
            self.assertIn('* MYRIGHTS %s lra' % name, unq)
            lines, t = c.cmd('g', 'GETACL ' + name)
            self.assertTrue(t.startswith('g OK'), t)
            unq = [l.replace('"lra"', 'lra').replace('"%s"' % C, C) for l in lines]
            acl = [l for l in unq if l.startswith('* ACL %s ' % name)]
            self.assertEqual(len(acl), 1, lines)
            self.assertIn(' %s lra' % C, acl[0])
            asked = self.requests()
            self.ok('mailbox', 'acl', 'delete', A, 'supportx', C)
            harness.wait_for(lambda: self.reloads() >= self.requests() > asked, 5)
            lines, t = myrights('m3')
            self.assertTrue(t.startswith('m3 NO'), t)
            c.cmd('o', 'LOGOUT')
        finally:
            c.close()

    def test_user_del_forgets(self):
        e = 'erin@example.org'
        self.server.add_user(e, PASS)
        imap_create(self.server, e, 'erinbox')
        self.ok('mailbox', 'acl', 'set', e, 'erinbox', B, 'lr')
        self.ok('mailbox', 'acl', 'set', B, 'bobbox', e, 'lr')
        self.ok('mailbox', 'acl', 'set', B, 'bobbox', '-' + e, 'r')
        self.ok('group', 'add', 'erins')
        self.ok('group', 'members', 'erins', 'add', e)
        self.ok('user', 'del', e)
        self.assertNotIn(e, self.acl(B, 'bobbox'))
        self.assertNotIn('-' + e, self.acl(B, 'bobbox'))
        self.assertEqual(self.ok('group', 'members', 'erins'), '')
        self.server.add_user(e, PASS)
        self.assertEqual(self.acl(e, 'erinbox'), {})


class AclCtlOffline(unittest.TestCase):
    """coffred not running: changes are made and nothing is said about it."""

    def test_silent_without_coffred(self):
        srv = harness.Server()
        try:
            srv.add_user(A, PASS)
            rc, out, err = srv.ctl('group', 'add', 'offline')
            self.assertEqual((rc, err), (0, ''), out)
            rc, out, err = srv.ctl('group', 'members', 'offline', 'add', A)
            self.assertEqual((rc, err), (0, ''), out)
            rc, out, err = srv.ctl('group', 'members', 'offline')
            self.assertEqual((rc, out.split()), (0, [A]), err)
        finally:
            srv.cleanup()

    def test_one_admin_line_each(self):
        srv = harness.Server({'log_format': 'json'})
        try:
            audit = os.path.join(srv.tmp, 'audit.log')
            srv.conf['audit_log'] = audit
            srv.write_conf()
            srv.ctl('group', 'add', 'auditors')
            srv.ctl('group', 'add', 'auditors')
            srv.ctl('group', 'members', 'auditors')
            srv.ctl('mailbox', 'acl', 'get', 'ghost@example.org', 'INBOX')
            with open(audit) as f:
                recs = [json.loads(l) for l in f if l.strip()]
            admin = [r for r in recs if r.get('event') == 'admin']
            self.assertEqual([(r['family'], r['action'], r['exit']) for r in admin],
                             [('group', 'add', 0), ('group', 'add', 4),
                              ('group', 'members', 0), ('mailbox', 'acl', 3)])
        finally:
            srv.cleanup()


class AclRestore(unittest.TestCase):
    """restore --user carries the account's lists, its share settings and
    memberships, and nothing naming an address that is no account there."""

    def test_restore_user(self):
        srv = harness.Server()
        new = harness.Server()
        try:
            srv.start()
            for u in (A, B, C):
                srv.add_user(u, PASS)
            imap_create(srv, B, 'bobbox')
            srv.ctl('group', 'add', 'sales')
            srv.ctl('group', 'members', 'sales', 'add', B)
            for ident, rights in ((A, 'lr'), (C, 'lrs'), ('anyone', 'l'), ('$sales', 'i'),
                                  ('-' + A, 'r')):
                rc, out, err = srv.ctl('mailbox', 'acl', 'set', B, 'bobbox', ident, rights)
                self.assertEqual(rc, 0, out + err)
            rc, out, err = srv.ctl('mailbox', 'seen', B, 'bobbox', 'shared')
            self.assertEqual(rc, 0, out + err)
            dest = os.path.join(srv.tmp, 'backup')
            os.makedirs(dest)
            os.chown(dest, RUN.pw_uid, RUN.pw_gid)
            rc, out, err = srv.ctl('backup', dest)
            self.assertEqual(rc, 0, out + err)
            srv.stop()

            # the new site has alice and a group sales, not carol
            new.add_user(A, PASS)
            new.ctl('group', 'add', 'sales')
            rc, out, err = new.ctl('restore', dest, '--user', B)
            self.assertEqual(rc, 0, out + err)
            rc, out, err = new.ctl('mailbox', 'acl', 'get', B, 'bobbox')
            self.assertEqual(rc, 0, out + err)
            got = dict(l.split('\t') for l in out.splitlines())
            self.assertEqual(got, {A: 'lr', '-' + A: 'r', 'anyone': 'l', '$sales': 'i'})
            rc, out, err = new.ctl('group', 'members', 'sales')
            self.assertEqual(out.split(), [B], err)
            db = os.path.join(new.data_dir, 'accounts.sqlite')
            import sqlite3
            with sqlite3.connect(db) as h:
                self.assertEqual(h.execute('SELECT mailbox, seen_shared FROM mailbox_share')
                                 .fetchall(), [('bobbox', 1)])
        finally:
            srv.cleanup()
            new.cleanup()


if __name__ == '__main__':
    unittest.main()
