"""STATUS items (RFC 3501 6.3.10, RFC 7162 3.1.2.2) as the session that
asks sees the mailbox: RECENT of the mailbox the session has selected
counts the messages that are \\Recent in that session (its FETCH FLAGS
show them, its SELECT counted them), while another session, which will
never see them \\Recent, counts none; MESSAGES, UIDNEXT, UNSEEN and
HIGHESTMODSEQ agree with what SELECT and FETCH say. Found by the
differential test (test_imap_differential.py) against Dovecot."""
import re

from imap_util import ImapCase, make_message, quote


def status(c, box, items):
    u = c.ok('STATUS %s (%s)' % (quote(box), items))
    for r in u:
        if r.startswith(b'* STATUS'):
            kv = re.search(rb'\(([^)]*)\)\s*$', r).group(1).split()
            return {k.decode().upper(): int(v) for k, v in zip(kv[0::2], kv[1::2])}
    raise AssertionError('no STATUS in %r' % u)


class StatusItems(ImapCase):

    def setUp(self):
        self.box = 'S-' + self._testMethodName[-24:]
        c = self.login()
        c.cmd('DELETE %s' % quote(self.box))
        c.ok('CREATE %s' % quote(self.box))
        for i in range(3):
            c.append(self.box, make_message(i + 1), flags=['\\Seen'] if i == 0 else None)
        c.logout()

    def test_recent_of_the_selected_mailbox(self):
        a = self.login()
        info = a.select(self.box)
        self.assertEqual((info['exists'], info['recent']), (3, 3))
        self.assertEqual(status(a, self.box, 'RECENT MESSAGES'), {'RECENT': 3, 'MESSAGES': 3})
        b = self.login()
        self.assertEqual(status(b, self.box, 'RECENT'), {'RECENT': 0})
        # a new message while a holds the mailbox: \Recent to a alone
        b.append(self.box, make_message(4))
        a.ok('NOOP')
        self.assertEqual(a.search('RECENT'), [1, 2, 3, 4])
        self.assertEqual(status(a, self.box, 'RECENT'), {'RECENT': 4})
        self.assertEqual(status(b, self.box, 'RECENT'), {'RECENT': 0})
        # EXAMINE takes nothing: no \Recent in a read-only session now
        b.select(self.box, examine=True)
        self.assertEqual(status(b, self.box, 'RECENT'), {'RECENT': 0})

    def test_counts_agree_with_select(self):
        a = self.login()
        a.ok('ENABLE CONDSTORE')
        info = a.select(self.box)
        st = status(a, self.box, 'MESSAGES UIDNEXT UNSEEN HIGHESTMODSEQ')
        self.assertEqual(st['MESSAGES'], info['exists'])
        self.assertEqual(st['UNSEEN'], 2)
        self.assertEqual(st['UIDNEXT'], info['uidnext'])
        a.ok('STORE 2 +FLAGS.SILENT (\\Seen)')
        st2 = status(a, self.box, 'UNSEEN HIGHESTMODSEQ')
        self.assertEqual(st2['UNSEEN'], 1)
        self.assertGreater(st2['HIGHESTMODSEQ'], st['HIGHESTMODSEQ'])
        modseq = max(int(re.search(rb'MODSEQ \((\d+)\)', r).group(1))
                     for r in a.ok('FETCH 1:* (MODSEQ)') if b'FETCH' in r)
        self.assertEqual(st2['HIGHESTMODSEQ'], modseq)


if __name__ == '__main__':
    import unittest
    unittest.main()
