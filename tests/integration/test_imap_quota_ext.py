"""QUOTA (RFC 9208): GETQUOTAROOT and GETQUOTA with the RFC's answers, one
root per account ("User quota") holding the resources the administrator
limited (STORAGE in units of 1024 octets, MESSAGE), SETQUOTA refused to
clients, and the message-count quota (`coffrectl user add/quota
--max-messages N`) enforced by APPEND, MULTIAPPEND, CATENATE, COPY and
LMTP delivery, as the byte quota is; STATUS DELETED and DELETED-STORAGE
(RFC 9051 6.3.11, RFC 9208 4.2).

Against Dovecot (IMAP_TESTS_AGAINST=dovecot) its quota plugin is loaded
with the same root name and per-user limits from its userdb; what Dovecot
2.3 lacks (QUOTA=RES-*, STATUS DELETED and DELETED-STORAGE) and what needs
coffrectl is skipped."""
import os
import time
import unittest

import harness
import lmtp_util as L
from imap_util import AGAINST_DOVECOT, DovecotServer, Imap, ImapCase, make_message

PASSWORD = 'quota-ext-pass-1'
ROOT = b'"User quota"'
SENDER = 'sender@example.net'


class QuotaDovecot(DovecotServer):
    """Dovecot with its quota plugins; limits per user in the userdb."""

    def write_conf(self, path=None, lines=None):
        path = super().write_conf(path, lines)
        with open(path, 'a') as f:
            f.write('mail_plugins = $mail_plugins quota\n'
                    'protocol imap {\n  mail_plugins = $mail_plugins imap_quota\n}\n'
                    'protocol lmtp {\n  mail_plugins = $mail_plugins\n}\n'
                    'plugin {\n  quota = count:User quota\n  quota_vsizes = yes\n}\n')
        return path

    def add_quota_user(self, addr, password, kbytes, messages):
        self.add_user(addr, password)
        rules = []
        if kbytes:
            rules.append('storage=%dK' % kbytes)
        if messages:
            rules.append('messages=%d' % messages)
        path = os.path.join(self.tmp, 'passwd')
        with open(path) as f:
            lines = f.read().splitlines()
        if rules:
            lines[-1] += 'userdb_quota_rule=*:%s' % ':'.join(rules)
        with open(path, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        # Dovecot reads the file again when its mtime moves, at most once
        # a second
        time.sleep(1.1)


if AGAINST_DOVECOT:
    harness.Server = QuotaDovecot


def message(i, size=0):
    m = make_message(i)
    if size > len(m):
        m += b'x' * 76 + b'\r\n'
        while len(m) + 78 <= size:
            m += b'y' * 76 + b'\r\n'
    return m


def quota_of(untagged):
    """{resource: (usage, limit)} of the first QUOTA response, and its root."""
    for r in untagged:
        if r.startswith(b'* QUOTA '):
            head, _, rest = r.partition(b' (')
            words = rest.rstrip(b')').split()
            return head[len(b'* QUOTA '):], {
                words[i].decode().upper(): (int(words[i + 1]), int(words[i + 2]))
                for i in range(0, len(words), 3)}
    return None, {}


class QuotaExt(ImapCase):
    USERS = ()
    n = 0

    def user(self, kbytes=0, messages=0):
        """A new account with these limits: its address."""
        QuotaExt.n += 1
        addr = 'q%d-%d@example.org' % (QuotaExt.n, os.getpid() % 1000)
        if AGAINST_DOVECOT:
            self.server.add_quota_user(addr, PASSWORD, kbytes, messages)
            return addr
        args = ['user', 'add', addr, '--password-stdin']
        if kbytes:
            args += ['--quota', '%dk' % kbytes]
        if messages:
            args += ['--max-messages', str(messages)]
        rc, out, err = self.server.ctl(*args, input=PASSWORD + '\n')
        self.assertEqual(rc, 0, err)
        return addr

    def session(self, addr):
        c = self.connect()
        c.login(addr, PASSWORD)
        return c

    def count(self, c, box='INBOX'):
        u = c.ok('STATUS %s (MESSAGES)' % box)
        return int(u[0].rsplit(b' ', 1)[1].rstrip(b')'))

    # ---- the commands

    def test_capabilities(self):
        c = self.session(self.user(messages=5))
        caps = c.ok('CAPABILITY')[0].decode().split()
        self.assertIn('QUOTA', caps)
        if not AGAINST_DOVECOT:     # Dovecot 2.3 predates RFC 9208
            self.assertIn('QUOTA=RES-STORAGE', caps)
            self.assertIn('QUOTA=RES-MESSAGE', caps)

    def test_getquotaroot_rfc_example(self):
        # RFC 9208 4.1.2: "* QUOTAROOT INBOX "" / * QUOTA "" (STORAGE 10 512)"
        c = self.session(self.user(kbytes=512, messages=10))
        c.append('INBOX', message(1, 3000))
        u = c.ok('GETQUOTAROOT INBOX')
        roots = [r for r in u if r.startswith(b'* QUOTAROOT ')]
        self.assertEqual(len(roots), 1, u)
        self.assertRegex(roots[0], rb'^\* QUOTAROOT "?INBOX"? "User quota"$')
        root, res = quota_of(u)
        self.assertEqual(root, ROOT)
        self.assertEqual(res['STORAGE'][1], 512)
        self.assertEqual(res['STORAGE'][0], 3)     # 3000-odd octets in KiB, rounded up
        self.assertEqual(res['MESSAGE'], (1, 10))
        # GETQUOTA of that root answers the same
        root2, res2 = quota_of(c.ok('GETQUOTA "User quota"'))
        self.assertEqual((root2, res2), (root, res))

    def test_only_limited_resources_listed(self):
        c = self.session(self.user(messages=4))
        _, res = quota_of(c.ok('GETQUOTAROOT INBOX'))
        self.assertEqual(res, {'MESSAGE': (0, 4)})

    def test_getquota_unknown_root(self):
        c = self.session(self.user(messages=4))
        st, t, u = c.status_of('GETQUOTA "no such root"')
        self.assertEqual(st, 'NO', t)
        self.assertFalse([r for r in u if r.startswith(b'* QUOTA ')], u)

    def test_getquotaroot_unknown_mailbox(self):
        c = self.session(self.user(messages=4))
        st, t, _ = c.status_of('GETQUOTAROOT NoSuchBox')
        # Dovecot 2.3 answers the root of a mailbox it does not have
        self.assertEqual(st, 'OK' if AGAINST_DOVECOT else 'NO', t)

    def test_setquota_refused(self):
        c = self.session(self.user(kbytes=100))
        st, t, _ = c.status_of('SETQUOTA "User quota" (STORAGE 100000)')
        self.assertEqual(st, 'NO', t)
        _, res = quota_of(c.ok('GETQUOTA "User quota"'))
        self.assertEqual(res['STORAGE'][1], 100)
        if not AGAINST_DOVECOT:
            self.assertBAD(c.cmd('SETQUOTA "User quota" (STORAGE)')[1])
            self.assertBAD(c.cmd('GETQUOTA')[1])
            self.assertBAD(c.cmd('GETQUOTAROOT')[1])

    @unittest.skipIf(AGAINST_DOVECOT, 'Dovecot lists its root without limits')
    def test_no_limits_no_root(self):
        c = self.session(self.user())
        u = c.ok('GETQUOTAROOT INBOX')
        self.assertEqual(u, [b'* QUOTAROOT "INBOX"'])
        self.assertEqual(c.status_of('GETQUOTA "User quota"')[0], 'NO')

    # ---- the message quota, by every way in

    def test_append_stops_at_message_quota(self):
        c = self.session(self.user(messages=3))
        for i in range(3):
            c.append('INBOX', message(i))
        st, t, _ = c.status_of('APPEND INBOX {}', message(9))
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[OVERQUOTA]', t)
        self.assertEqual(self.count(c), 3)
        _, res = quota_of(c.ok('GETQUOTAROOT INBOX'))
        self.assertEqual(res['MESSAGE'], (3, 3))
        # room again once a message is gone
        c.ok('SELECT INBOX')
        c.ok('STORE 1 +FLAGS (\\Deleted)')
        c.ok('EXPUNGE')
        c.append('INBOX', message(10))
        self.assertEqual(self.count(c), 3)

    def test_multiappend_all_or_none_over_message_quota(self):
        c = self.session(self.user(messages=3))
        c.append('INBOX', message(0))
        st, t, _ = c.status_of('APPEND INBOX {} {} {}', message(1), message(2), message(3))
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[OVERQUOTA]', t)
        self.assertEqual(self.count(c), 1)

    def test_copy_and_move_at_message_quota(self):
        c = self.session(self.user(messages=3))
        c.ok('CREATE Other')
        for i in range(2):
            c.append('INBOX', message(i))
        c.ok('SELECT INBOX')
        st, t, _ = c.status_of('COPY 1:2 Other')
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[OVERQUOTA]', t)
        self.assertEqual(self.count(c, 'Other'), 0)
        c.ok('COPY 1 Other')
        self.assertEqual(self.count(c, 'Other'), 1)
        # at the quota now: a COPY is refused, a MOVE (which adds nothing
        # to the account) goes through
        st, t, _ = c.status_of('COPY 2 Other')
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[OVERQUOTA]', t)
        c.ok('MOVE 2 Other')
        self.assertEqual(self.count(c, 'Other'), 2)
        self.assertEqual(self.count(c), 1)
        _, res = quota_of(c.ok('GETQUOTAROOT INBOX'))
        self.assertEqual(res['MESSAGE'], (3, 3))

    def test_catenate_over_message_quota(self):
        c = self.session(self.user(messages=1))
        c.append('INBOX', message(0))
        st, t, _ = c.status_of('APPEND INBOX CATENATE (TEXT {})', message(1))
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[OVERQUOTA]', t)
        self.assertEqual(self.count(c), 1)

    def test_byte_quota_by_append(self):
        c = self.session(self.user(kbytes=100))
        first = message(0, 60 * 1024)
        c.append('INBOX', first)
        st, t, _ = c.status_of('APPEND INBOX {}', message(1, 60 * 1024))
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[OVERQUOTA]', t)
        _, res = quota_of(c.ok('GETQUOTAROOT INBOX'))
        self.assertEqual(res['STORAGE'], ((len(first) + 1023) // 1024, 100))

    def test_lmtp_over_message_quota(self):
        addr = self.user(messages=2)
        replies = []
        for i in range(3):
            lc = L.lmtp(self.server)
            try:
                _, data = L.send(lc, SENDER, [addr], message(i))
            finally:
                lc.close()
            replies.append(data[0])
        self.assertEqual([r[0] for r in replies[:2]], [250, 250], replies)
        # a full mailbox: 552 5.2.2 (452 4.2.2 with lmtp_quota_temporary)
        self.assertEqual(replies[2][0], 552, replies)
        self.assertTrue(replies[2][1].startswith(b'5.2.2'), replies)
        c = self.session(addr)
        self.assertEqual(self.count(c), 2)

    # ---- STATUS DELETED and DELETED-STORAGE

    @unittest.skipIf(AGAINST_DOVECOT, 'Dovecot 2.3 has neither DELETED nor DELETED-STORAGE')
    def test_status_deleted(self):
        c = self.session(self.user(kbytes=1000))
        c.ok('CREATE Del')
        u = c.ok('STATUS Del (DELETED DELETED-STORAGE MESSAGES)')
        self.assertEqual(u, [b'* STATUS "Del" (MESSAGES 0 DELETED 0 DELETED-STORAGE 0)'])
        sizes = [len(message(i, 5000 + 3000 * i)) for i in range(3)]
        for i in range(3):
            c.append('Del', message(i, 5000 + 3000 * i))
        c.ok('SELECT Del')
        c.ok('STORE 2:3 +FLAGS.SILENT (\\Deleted)')
        u = c.ok('STATUS Del (DELETED DELETED-STORAGE)')
        self.assertEqual(u, [b'* STATUS "Del" (DELETED 2 DELETED-STORAGE %d)'
                             % ((sizes[1] + sizes[2] + 1023) // 1024)])
        _, before = quota_of(c.ok('GETQUOTAROOT Del'))
        c.ok('EXPUNGE')
        _, after = quota_of(c.ok('GETQUOTAROOT Del'))
        # what DELETED-STORAGE announced is what EXPUNGE gave back (to the KiB)
        self.assertLessEqual(abs(before['STORAGE'][0] - after['STORAGE'][0]
                                 - (sizes[1] + sizes[2] + 1023) // 1024), 1)
        u = c.ok('STATUS Del (DELETED DELETED-STORAGE)')
        self.assertEqual(u, [b'* STATUS "Del" (DELETED 0 DELETED-STORAGE 0)'])


@unittest.skipIf(AGAINST_DOVECOT, 'coffrectl')
class QuotaCtl(ImapCase):
    """`coffrectl user add/quota --max-messages`: stored, shown, taking
    effect at the next login; bad arguments are usage errors."""
    USERS = ()

    def ctl_ok(self, *args, **kw):
        rc, out, err = self.server.ctl(*args, **kw)
        self.assertEqual(rc, 0, err)
        return out

    def test_max_messages_set_and_shown(self):
        self.ctl_ok('user', 'add', 'm1@example.org', '--password-stdin', '--max-messages', '7',
                    input=PASSWORD + '\n')
        out = self.ctl_ok('user', 'show', 'm1@example.org')
        self.assertIn('max messages: 7', out)
        self.assertIn('quota:   unlimited', out)
        # the byte quota alone, then the message quota alone: each keeps the other
        self.ctl_ok('user', 'quota', 'm1@example.org', '3M')
        self.assertIn('max messages: 7', self.ctl_ok('user', 'show', 'm1@example.org'))
        self.ctl_ok('user', 'quota', 'm1@example.org', '--max-messages', '0')
        out = self.ctl_ok('user', 'show', 'm1@example.org')
        self.assertIn('max messages: unlimited', out)
        self.assertIn('quota:   3M', out)
        self.ctl_ok('user', 'quota', 'm1@example.org', '1M', '--max-messages=9')
        out = self.ctl_ok('user', 'show', 'm1@example.org')
        self.assertIn('max messages: 9', out)
        self.assertIn('quota:   1M', out)

    def test_bad_arguments(self):
        self.ctl_ok('user', 'add', 'm2@example.org', '--password-stdin', input=PASSWORD + '\n')
        for args in (('user', 'quota', 'm2@example.org'),
                     ('user', 'quota', 'm2@example.org', '--max-messages', 'many'),
                     ('user', 'quota', 'm2@example.org', '--max-messages', '-1'),
                     ('user', 'quota', 'm2@example.org', '--max-messages'),
                     ('user', 'add', 'm3@example.org', '--max-messages', '1x')):
            rc, out, err = self.server.ctl(*args, input=PASSWORD + '\n')
            self.assertEqual(rc, 1, (args, out, err))
        rc, _, _ = self.server.ctl('user', 'quota', 'nobody@example.org', '--max-messages', '3')
        self.assertEqual(rc, 3)

    def test_takes_effect_at_next_login(self):
        self.ctl_ok('user', 'add', 'm4@example.org', '--password-stdin', input=PASSWORD + '\n')
        c = self.connect()
        c.login('m4@example.org', PASSWORD)
        c.append('INBOX', message(0))
        c.append('INBOX', message(1))
        self.ctl_ok('user', 'quota', 'm4@example.org', '--max-messages', '2')
        d = self.connect()
        d.login('m4@example.org', PASSWORD)
        st, t, _ = d.status_of('APPEND INBOX {}', message(2))
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[OVERQUOTA]', t)
        u = d.ok('GETQUOTAROOT INBOX')
        self.assertIn(b'* QUOTA "User quota" (MESSAGE 2 2)', u)


if __name__ == '__main__':
    unittest.main()
