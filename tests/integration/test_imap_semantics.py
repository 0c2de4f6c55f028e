"""IMAP semantics that RFC 3501 (and RFC 3502) fix and that are easy to get
subtly wrong: UID sets reaching 4294967295, MULTIAPPEND in CAPABILITY,
mailbox names that are not valid modified UTF-7, SEARCH TEXT over the
header, the SENT* dates, and address keys over comments and folding."""
import re

import harness
from imap_util import ImapCase, make_message

UID_MAX = 4294967295


class UidSets(ImapCase):
    """RFC 3501 9 (seq-number) and 6.4.8: in a UID set, "*" is the largest
    UID in use; a number is a number. "n:4294967295" with n above every UID
    matches nothing, while "n:*" still matches the last message (the range
    is "*:n", which contains it)."""

    def setUp(self):
        self.c = self.login()
        self.box = 'Uids%d' % id(self)
        self.c.ok('CREATE %s' % self.box)
        for i in range(3):
            self.c.append(self.box, make_message(i))
        info = self.c.select(self.box)
        self.uidnext = info['uidnext']
        self.last = self.uidnext - 1

    def uids_of(self, untagged):
        return sorted(int(m.group(1)) for r in untagged
                      for m in [re.search(rb'UID (\d+)', r)] if m)

    def test_search(self):
        c, n = self.c, self.uidnext
        self.assertEqual(c.search('UID %d:%d' % (n, UID_MAX), uid=True), [])
        self.assertEqual(c.search('UID %d' % UID_MAX, uid=True), [])
        self.assertEqual(c.search('UID %d:*' % n, uid=True), [self.last])
        self.assertEqual(c.search('UID %d:%d' % (self.last, UID_MAX), uid=True), [self.last])
        self.assertEqual(c.search('UID %d:%d' % (n, UID_MAX)), [])

    def test_fetch(self):
        c, n = self.c, self.uidnext
        self.assertEqual(self.uids_of(c.ok('UID FETCH %d:%d FLAGS' % (n, UID_MAX))), [])
        self.assertEqual(self.uids_of(c.ok('UID FETCH %d FLAGS' % UID_MAX)), [])
        self.assertEqual(self.uids_of(c.ok('UID FETCH %d:* FLAGS' % n)), [self.last])

    def test_store(self):
        c, n = self.c, self.uidnext
        c.ok('UID STORE %d:%d +FLAGS (\\Flagged)' % (n, UID_MAX))
        self.assertEqual(c.search('FLAGGED'), [])
        c.ok('UID STORE %d:* +FLAGS.SILENT (\\Flagged)' % n)
        self.assertEqual(c.search('FLAGGED', uid=True), [self.last])

    def test_copy(self):
        c, n = self.c, self.uidnext
        dst = self.box + 'Copy'
        c.ok('CREATE %s' % dst)
        c.ok('UID COPY %d:%d %s' % (n, UID_MAX, dst))
        self.assertRegex(c.last_tagged, rb'^T\d+ OK')
        self.assertNotIn(b'COPYUID', c.last_tagged)
        u = c.ok('STATUS %s (MESSAGES)' % dst)
        self.assertIn(b'MESSAGES 0', b' '.join(u))
        c.ok('UID COPY %d:* %s' % (n, dst))
        u = c.ok('STATUS %s (MESSAGES)' % dst)
        self.assertIn(b'MESSAGES 1', b' '.join(u))


if __name__ == '__main__':
    harness.main()
