"""LMTP delivery into a shared folder through the recipient's detail:
bob+Shared/alice/support@example.org goes into alice's folder "support"
when bob has the post right (p) there, into bob's INBOX otherwise (no
right, a right other than p, a negative entry, an owner or folder that
does not exist), with the same replies to the sender either way; the
owner's quota applies, and the audit line names the folder as
Shared/alice@example.org/support. Rights changed with coffrectl while
coffred runs apply to the next delivery."""
import json
import os
import pwd
import shutil
import tempfile
import unittest

import harness
import lmtp_util as L
from harness import ServerTestCase, imap_quote

PASS = 'acl lmtp pass 1'
A = 'alice@example.org'
B = 'bob@example.org'
C = 'carol@example.org'
SENDER = 'sender@remote.example'
RUN = pwd.getpwnam(harness.RUN_USER)


def body(tag, size=0):
    return ('Subject: %s\r\nMessage-ID: <%s@remote.example>\r\n\r\n%s\r\n'
            % (tag, tag, tag + 'x' * size)).encode()


class AclLmtp(ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.adir = tempfile.mkdtemp(prefix='coffre-it-acl-lmtp-')
        os.chmod(cls.adir, 0o755)
        os.chown(cls.adir, RUN.pw_uid, RUN.pw_gid)
        cls.audit = os.path.join(cls.adir, 'audit.log')
        cls.CONF = {'lmtp_save_to_detail_mailbox': 'yes', 'audit_log': cls.audit,
                    'log_format': 'json'}
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.adir, ignore_errors=True)

    @classmethod
    def setUpServer(cls):
        for u in (A, B, C):
            cls.server.add_user(u, PASS)
        c = cls.server.raw('imaps', tls=True)
        try:
            assert c.line().startswith('* OK')
            _, t = c.cmd('l', 'LOGIN %s %s' % (imap_quote(A), imap_quote(PASS)))
            assert t.startswith('l OK'), t
            for i, n in enumerate(('support', 'small', 'other')):
                _, t = c.cmd('c%d' % i, 'CREATE %s' % n)
                assert t.startswith('c%d OK' % i), t
            c.cmd('o', 'LOGOUT')
        finally:
            c.close()
        for u in (B, C):  # their stores exist
            c = L.lmtp(cls.server)
            L.send(c, SENDER, [u], body('hello-' + u.split('@')[0]))
            c.close()

    # -- helpers ----------------------------------------------------------

    def ctl(self, *args):
        rc, out, err = self.server.ctl(*args)
        self.assertEqual(rc, 0, '%s: %s%s' % (' '.join(args), out, err))

    def acl(self, *args):
        """coffrectl mailbox acl ..., then waits for coffred to read it."""
        log = self.server.log
        asked = log().count('asks for the access control lists to be read again')
        self.ctl('mailbox', 'acl', *args)
        harness.wait_for(lambda: log().count('asks for the access control lists') > asked
                         and log().count('acl: reloaded') >= log().count(
                             'asks for the access control lists'), 5)

    def deliver(self, rcpt, msg):
        c = L.lmtp(self.server)
        try:
            r, d = L.send(c, SENDER, [rcpt], msg)
        finally:
            c.close()
        return r, d

    def has(self, addr, folder, msg, rcpt):
        return L.expected(SENDER, rcpt, msg) in L.messages(self.server, addr, folder)

    def audit_folder(self, tag):
        def rec():
            with open(self.audit) as f:
                for l in f:
                    r = json.loads(l)
                    if r.get('event') == 'delivery' and r.get('message_id') == \
                            '<%s@remote.example>' % tag:
                        return r
            return None
        harness.wait_for(lambda: rec() is not None, 5)
        r = rec()
        self.assertIsNotNone(r, tag)
        return r.get('folder')

    # -- tests ------------------------------------------------------------

    def test_post_right_decides(self):
        rcpt = 'bob+Shared/alice/support@example.org'
        got = rcpt.lower()  # Delivered-To: the address as given, lower-cased

        # no entry for bob: his INBOX
        m1 = body('no-entry')
        r1, d1 = self.deliver(rcpt, m1)
        self.assertTrue(self.has(B, None, m1, got))
        self.assertFalse(self.has(A, 'support', m1, got))
        self.assertEqual(self.audit_folder('no-entry'), 'INBOX')

        # every right but p: still his INBOX
        self.acl('set', A, 'support', B, 'lrswikxtea')
        m2 = body('no-post')
        r2, d2 = self.deliver(rcpt, m2)
        self.assertTrue(self.has(B, None, m2, got))
        self.assertFalse(self.has(A, 'support', m2, got))

        # p: alice's folder, her store
        self.acl('set', A, 'support', B, '+p')
        m3 = body('post')
        r3, d3 = self.deliver(rcpt, m3)
        self.assertTrue(self.has(A, 'support', m3, got))
        self.assertFalse(self.has(B, None, m3, got))
        self.assertFalse(self.has(A, None, m3, got))
        self.assertEqual(self.audit_folder('post'), 'Shared/alice@example.org/support')

        # the sender was told the same each time
        self.assertEqual(r1, r2)
        self.assertEqual(r1, r3)
        self.assertEqual(d1, d2)
        self.assertEqual(d1, d3)

        # a negative entry takes p away again
        self.acl('set', A, 'support', '-' + B, 'p')
        m4 = body('negative')
        self.deliver(rcpt, m4)
        self.assertTrue(self.has(B, None, m4, got))
        self.assertFalse(self.has(A, 'support', m4, got))
        self.acl('delete', A, 'support', '-' + B)

        # carol has nothing there
        m5 = body('carol')
        self.deliver('carol+Shared/alice/support@example.org', m5)
        self.assertTrue(self.has(C, None, m5, 'carol+shared/alice/support@example.org'))
        self.assertFalse(self.has(A, 'support', m5, 'carol+shared/alice/support@example.org'))

    def test_anyone_p_and_missing_names(self):
        self.acl('set', A, 'other', 'anyone', 'p')
        m1 = body('anyone-post')
        self.deliver('carol+Shared/alice/other@example.org', m1)
        self.assertTrue(self.has(A, 'other', m1, 'carol+shared/alice/other@example.org'))
        # an owner or a folder that does not exist: the recipient's INBOX
        for tag, rcpt in (('no-owner', 'bob+Shared/nobody/other@example.org'),
                          ('no-folder', 'bob+Shared/alice/nosuch@example.org'),
                          ('no-level', 'bob+Shared/alice@example.org'),
                          ('dotdot', 'bob+Shared/alice/../bob/INBOX@example.org')):
            m = body(tag)
            r, d = self.deliver(rcpt, m)
            self.assertEqual(d[0][0], 250, tag)
            self.assertTrue(self.has(B, None, m, rcpt.lower()), tag)
            self.assertFalse(self.has(A, None, m, rcpt.lower()), tag)

    def test_owner_quota(self):
        self.acl('set', A, 'small', B, 'p')
        self.ctl('user', 'quota', A, '1K')
        try:
            m = body('too-big-for-alice', 4096)
            r, d = self.deliver('bob+Shared/alice/small@example.org', m)
            self.assertIn(d[0][0], (452, 552), d)
            self.assertFalse(self.has(A, 'small', m, 'bob+shared/alice/small@example.org'))
            # bob himself has room
            m2 = body('fits-bob', 4096)
            r, d = self.deliver(B, m2)
            self.assertEqual(d[0][0], 250, d)
        finally:
            self.ctl('user', 'quota', A, '0')


if __name__ == '__main__':
    unittest.main()
