"""Rights that show a shared mailbox (RFC 4314 sections 4 and 6): any right
of a user on another account's mailbox lets MYRIGHTS answer (3.5), and
each command then asks for its own right: a user with `p` alone gets
MYRIGHTS "p" and NO [NOPERM] from SELECT; a user with `i` alone may APPEND
(section 4: APPEND needs i only); a user with no right at all still gets
the bytes of a missing mailbox. POP3 sees only the user's own INBOX, even
when another account shares its INBOX with every right."""
import re
import time

import imap_util
import pop3_util as pu
from imap_util import ImapCase, quote, make_message

ALICE, PA = 'alice@example.org', 'alice password 123'
BOB = 'bob@example.org'
PB = pu.PASS  # the POP3 helpers log in with it
CAROL, PC = 'carol@example.org', 'carol password 89'


def shared(name):
    return 'Shared/%s/%s' % (ALICE, name)


def tail(tagged):
    return tagged.split(b' ', 1)[1]


class AclRights(ImapCase):
    USERS = ((ALICE, PA), (BOB, PB), (CAROL, PC))

    def setUp(self):
        self.box = 'R' + self._testMethodName[5:][-20:]
        a = self.login(ALICE, PA)
        a.cmd('DELETE %s' % quote(self.box))
        a.ok('CREATE %s' % quote(self.box))
        a.append(self.box, make_message(1, subject='one'))
        a.logout()

    def set_rights(self, who, rights, box=None):
        a = self.login(ALICE, PA)
        a.ok('SETACL %s %s %s' % (quote(box or self.box), who, rights))
        a.logout()

    def test_myrights_with_any_right(self):
        self.set_rights(BOB, 'p')
        self.set_rights(CAROL, 'l')
        b = self.login(BOB, PB)
        u = b.ok('MYRIGHTS %s' % quote(shared(self.box)))
        mine = [r for r in u if r.startswith(b'* MYRIGHTS')]
        self.assertEqual(len(mine), 1, u)
        self.assertRegex(mine[0], rb' "?p"?$')
        # known now, so the other commands say what is missing
        _, t = b.cmd('SELECT %s' % quote(shared(self.box)))
        self.assertNO(t, 'NOPERM')
        _, t = b.cmd('STATUS %s (MESSAGES)' % quote(shared(self.box)))
        self.assertNO(t, 'NOPERM')
        _, t = b.cmd('GETACL %s' % quote(shared(self.box)))
        self.assertNO(t, 'NOPERM')
        # carol, with no right at all on the mailbox's child, cannot tell
        # it from a missing one
        a = self.login(ALICE, PA)
        a.ok('CREATE %s' % quote(self.box + '/inner'))
        a.ok('SETACL %s %s p' % (quote(self.box + '/inner'), BOB))
        a.ok('DELETEACL %s %s' % (quote(self.box + '/inner'), CAROL))  # inherited
        c = self.login(CAROL, PC)
        for tmpl in ('MYRIGHTS %s', 'SELECT %s', 'STATUS %s (MESSAGES)', 'GETACL %s'):
            _, th = c.cmd(tmpl % quote(shared(self.box + '/inner')))
            _, tm = c.cmd(tmpl % quote(shared(self.box + '/none')))
            self.assertEqual(tail(th).replace(b'inner', b'N'), tail(tm).replace(b'none', b'N'),
                             tmpl)
            self.assertNO(th)

    def test_append_with_insert_alone(self):
        self.set_rights(BOB, 'i')
        b = self.login(BOB, PB)
        b.append(shared(self.box), make_message(2, subject='from bob'))
        # COPY into it too: i on the destination is all it needs
        b.select('INBOX')
        b.append('INBOX', make_message(3, subject='bob own'))
        b.select('INBOX')
        b.ok('UID COPY 1:* %s' % quote(shared(self.box)))
        a = self.login(ALICE, PA)
        u = a.ok('STATUS %s (MESSAGES)' % quote(self.box))
        self.assertIn(b'MESSAGES 3', b''.join(u))
        # but bob may not read it
        _, t = b.cmd('EXAMINE %s' % quote(shared(self.box)))
        self.assertNO(t, 'NOPERM')

    def test_pop3_sees_own_inbox_only(self):
        a = self.login(ALICE, PA)
        a.ok('SETACL INBOX %s lrswipkxtea' % BOB)
        alice_msgs = [make_message(10 + i, subject='alice %d' % i) for i in range(3)]
        for m in alice_msgs:
            a.append('INBOX', m)
        before = a.ok('STATUS INBOX (MESSAGES UIDNEXT)')
        a.logout()
        b = self.login(BOB, PB)
        b.select('INBOX')
        if b.search('ALL'):
            b.ok('STORE 1:* +FLAGS.SILENT (\\Deleted)')
            b.ok('EXPUNGE')
        bob_msgs = [make_message(20 + i, subject='bob %d' % i) for i in range(2)]
        for m in bob_msgs:
            b.append('INBOX', m)
        # bob sees alice's INBOX over IMAP: the grant is in force
        u = b.ok('STATUS %s (MESSAGES)' % quote(shared('INBOX')))
        self.assertIn(b'MESSAGES 3', b''.join(u))
        b.logout()
        with pu.session(self.server, BOB, retry=True) as p:
            count, _ = p.stat()
            self.assertEqual(count, 2)
            self.assertEqual(len(p.list()[1]), 2)
            subjects = set()
            for n in (1, 2):
                body = pu.retr_bytes(p, n)
                subjects.add(re.search(rb'Subject: ([^\r\n]*)', body).group(1))
            self.assertEqual(subjects, {b'bob 0', b'bob 1'})
            p.dele(1)
        with pu.session(self.server, BOB, retry=True) as p:
            self.assertEqual(p.stat()[0], 1)
        a = self.login(ALICE, PA)
        self.assertEqual(a.ok('STATUS INBOX (MESSAGES UIDNEXT)'), before)
        a.select('INBOX', examine=True)
        self.assertEqual(len(a.search('ALL')), 3)


    def test_selected_view_follows_rename(self):
        a = self.login(ALICE, PA)
        a.ok('CREATE %s' % quote(self.box + '/kid'))
        a.append(self.box + '/kid', make_message(5, subject='kid'))
        a.ok('SETACL %s %s lrs' % (quote(self.box), BOB))
        a.ok('SETACL %s %s lrs' % (quote(self.box + '/kid'), BOB))
        b = self.login(BOB, PB)
        b.select(shared(self.box))
        k = self.login(BOB, PB)
        k.select(shared(self.box + '/kid'))
        # the owner renames the folder, its child with it: both views
        # keep their mailbox (the id stays) and the rights moved with it
        a.ok('RENAME %s %s' % (quote(self.box), quote(self.box + 'N')))
        for c in (b, k):
            for _ in range(2):
                c.ok('FETCH 1 (FLAGS)')
                c.ok('STORE 1 +FLAGS.SILENT (\\Seen)')
                c.ok('NOOP')
        # the new name's rights are the ones in force: revoking them there
        # refuses bob's next commands
        a.ok('DELETEACL %s %s' % (quote(self.box + 'N'), BOB))
        _, t = b.cmd('FETCH 1 (FLAGS)')
        self.assertNO(t, 'NOPERM')
        k.ok('FETCH 1 (FLAGS)')  # the child's own ACL still grants r
        a.ok('DELETEACL %s %s' % (quote(self.box + 'N/kid'), BOB))
        _, t = k.cmd('FETCH 1 (FLAGS)')
        self.assertNO(t, 'NOPERM')
        a.ok('RENAME %s %s' % (quote(self.box + 'N'), quote(self.box)))


    def test_revoke_beside_a_list_change_is_at_once(self):
        """A change of the owner's mailbox list marks the view's name for
        reading again; a revoke on a name that keeps other entries is not
        taken for a rename and refuses the next command at once."""
        self.set_rights(BOB, 'lr')
        self.set_rights(CAROL, 'lr')
        b = self.login(BOB, PB)
        b.select(shared(self.box))
        a = self.login(ALICE, PA)
        a.cmd('DELETE %s' % quote(self.box + '-other'))
        a.ok('CREATE %s' % quote(self.box + '-other'))
        a.ok('DELETEACL %s %s' % (quote(self.box), BOB))
        _, t = b.cmd('FETCH 1 (FLAGS)')
        self.assertNO(t, 'NOPERM')

    def test_list_status_of_shared(self):
        """RFC 5819: a STATUS after the LIST line of each shared mailbox
        bob may read, as STATUS of the name answers (UNSEEN his own), and
        none for one he may only list, nor for the levels."""
        a = self.login(ALICE, PA)
        listed = self.box + '-l'
        a.cmd('DELETE %s' % quote(listed))
        a.ok('CREATE %s' % quote(listed))
        a.append(self.box, make_message(2, subject='two'), flags=['\\Seen'])
        a.append(self.box, make_message(3, subject='three'))
        a.ok('SETACL %s %s lrs' % (quote(self.box), BOB))
        a.ok('SETACL %s %s l' % (quote(listed), BOB))
        b = self.login(BOB, PB)
        b.select(shared(self.box))
        b.ok('STORE 3 +FLAGS.SILENT (\\Seen)')  # bob's own \Seen
        b.ok('UNSELECT')
        items = 'MESSAGES UNSEEN UIDNEXT'
        u = b.ok('LIST "" %s RETURN (STATUS (%s))' % (quote(shared('*')), items))
        want = [r for r in b.ok('STATUS %s (%s)' % (quote(shared(self.box)), items))
                if r.startswith(b'* STATUS')]
        self.assertEqual(len(want), 1)
        self.assertIn(b'MESSAGES 3', want[0])
        self.assertIn(b'UNSEEN 2', want[0])  # alice's \Seen is not bob's
        statuses = [r for r in u if r.startswith(b'* STATUS')]
        self.assertEqual(statuses, want, u)
        # right after its LIST line
        k = u.index(want[0])
        self.assertTrue(u[k - 1].startswith(b'* LIST') and
                        u[k - 1].endswith(quote(shared(self.box)).encode()), u)
        self.assertTrue(any(r.startswith(b'* LIST') and r.endswith(quote(shared(listed)).encode())
                            for r in u), u)


if __name__ == '__main__':
    import unittest
    unittest.main()
