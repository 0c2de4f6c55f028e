"""IMAP REPLACE (RFC 8508): REPLACE and UID REPLACE save the new message
(APPENDUID in an untagged OK), then expunge the one replaced (EXPUNGE to
this session and to others); a failure of the save (no such mailbox,
NUL in a literal8, over the message size limit) leaves the old message,
and so does a UID this session does not see or a mailbox only EXAMINEd;
one message only; with LITERAL+ and with CATENATE naming the message
replaced. The examples of RFC 8508 section 3."""
import re

import harness
import imap_util
from imap_util import ImapCase, Imap, make_message

APPENDUID_RE = re.compile(rb'^\* OK \[APPENDUID (\d+) (\d+)\]')


def draft(i, text):
    return ('From: me@example.org\r\nSubject: draft %d\r\nMessage-ID: <d%d@x>\r\n\r\n%s\r\n'
            % (i, i, text)).encode()


class Replace(ImapCase):

    def setUp(self):
        c = Imap(self.server.raw('imaps', tls=True))
        caps = c.ok('CAPABILITY')[0].split()
        c.close()
        if imap_util.AGAINST_DOVECOT and b'REPLACE' not in caps:
            self.skipTest('the server does not offer REPLACE')
        self.box = 'Dr%d' % imap_util.serial()
        self.c = self.login()
        self.c.ok('CREATE %s' % self.box)
        self.uids = [self.c.append(self.box, draft(i, 'version %d' % i))[1] for i in range(3)]
        self.c.select(self.box)

    def texts(self, mbox):
        c = self.login()
        c.select(mbox, examine=True)
        f = c.fetch('1:*', '(UID BODY.PEEK[TEXT])')
        c.logout()
        return [(int(it['UID']), it['BODY[TEXT]']) for n, (it, raw) in sorted(f.items())]

    def test_capability(self):
        self.assertIn(b'REPLACE', self.c.ok('CAPABILITY')[0].split())

    def test_rfc_replace_same_mailbox(self):
        # RFC 8508 3.2: REPLACE 2, the new message into the same mailbox
        other = self.login()
        other.select(self.box)
        u, t = self.c.cmd('REPLACE 2 %s {}' % self.box, draft(9, 'version 9'))
        self.assertOK(t)
        self.assertRegex(t, rb'REPLACE completed')
        m = [APPENDUID_RE.match(r) for r in u if APPENDUID_RE.match(r)]
        self.assertEqual(len(m), 1, u)
        new = int(m[0].group(2))
        self.assertIn(b'* 2 EXPUNGE', u)
        # the new message is announced; the old is gone
        self.assertIn(b'* 3 EXISTS', u + self.c.ok('NOOP'))
        self.assertEqual(self.texts(self.box),
                         [(self.uids[0], b'version 0\r\n'), (self.uids[2], b'version 2\r\n'),
                          (new, b'version 9\r\n')])
        # another session sees both changes
        u2 = other.ok('NOOP')
        self.assertIn(b'* 2 EXPUNGE', u2)
        self.assertEqual(other.search('ALL'), [1, 2, 3])

    def test_rfc_uid_replace_other_mailbox(self):
        # RFC 8508 3.3: UID REPLACE into another mailbox, with flags
        self.c.ok('CREATE %sSent' % self.box)
        u, t = self.c.cmd('UID REPLACE %d %sSent (\\Seen) {}' % (self.uids[1], self.box),
                          draft(5, 'sent'))
        self.assertOK(t)
        self.assertRegex(t, rb'UID REPLACE completed')
        self.assertTrue(any(APPENDUID_RE.match(r) for r in u), u)
        self.assertIn(b'* 2 EXPUNGE', u)
        self.assertFalse(any(re.match(rb'\* \d+ EXISTS', r) for r in u), u)
        self.assertEqual([x[1] for x in self.texts(self.box)], [b'version 0\r\n', b'version 2\r\n'])
        self.assertEqual([x[1] for x in self.texts(self.box + 'Sent')], [b'sent\r\n'])
        c = self.login()
        c.select(self.box + 'Sent')
        self.assertIn('\\Seen', c.fetch('1', 'FLAGS')[1][0]['FLAGS'])

    def test_literal_plus(self):
        u, t = self.c.cmd('REPLACE 1 %s {}' % self.box, draft(7, 'plus'), plus=True)
        self.assertOK(t)
        self.assertIn(b'* 1 EXPUNGE', u)
        self.assertEqual(len(self.texts(self.box)), 3)

    def test_failures_keep_the_old(self):
        before = self.texts(self.box)
        # no such mailbox
        u, t = self.c.cmd('REPLACE 1 NoSuchBox {}', draft(8, 'x'))
        self.assertNO(t, 'TRYCREATE')
        # a UID this session does not see
        u, t = self.c.cmd('UID REPLACE %d %s {}' % (self.uids[2] + 100, self.box), draft(8, 'x'))
        self.assertRegex(t, rb'^T\d+ NO')
        if not imap_util.AGAINST_DOVECOT:
            # NUL in a literal8: this store keeps none (RFC 3516 4.4)
            u, t = self.c.cmd('REPLACE 1 %s ~{}' % self.box, b'a\x00b\r\n' + draft(8, 'x'))
            self.assertNO(t, 'UNKNOWN-CTE')
        # syntax: sequence number beyond the mailbox, 0, two messages
        self.assertBAD(self.c.cmd('REPLACE 4 %s {}' % self.box, draft(8, 'x'))[1])
        self.assertBAD(self.c.cmd('REPLACE 0 %s {}' % self.box, draft(8, 'x'))[1])
        self.assertBAD(self.c.cmd('REPLACE 1 %s {} {}' % self.box, draft(8, 'x'),
                                  draft(8, 'y'))[1])
        self.assertBAD(self.c.cmd('REPLACE %s {}' % self.box, draft(8, 'x'))[1])
        self.assertEqual(self.texts(self.box), before)
        self.assertEqual(self.c.search('ALL'), [1, 2, 3])
        # read-only
        self.c.select(self.box, examine=True)
        u, t = self.c.cmd('REPLACE 1 %s {}' % self.box, draft(8, 'x'))
        self.assertRegex(t, rb'^T\d+ NO')
        self.assertEqual(self.texts(self.box), before)
        # not selected
        self.c.ok('UNSELECT')
        u, t = self.c.cmd('REPLACE 1 %s {}' % self.box, draft(8, 'x'))
        self.assertRegex(t, rb'^T\d+ (BAD|NO)')
        self.assertEqual(self.texts(self.box), before)
        self.assertAlive()

    def test_catenate(self):
        # RFC 8508 4.2: the new message made of the old one's header
        uv = int(re.search(rb'UIDVALIDITY (\d+)',
                           self.c.ok('STATUS %s (UIDVALIDITY)' % self.box)[0]).group(1))
        url = '/%s;UIDVALIDITY=%d/;UID=%d/;SECTION=HEADER' % (self.box, uv, self.uids[0])
        u, t = self.c.cmd('REPLACE 1 %s CATENATE (URL "%s" TEXT {})' % (self.box, url),
                          b'edited\r\n')
        self.assertOK(t)
        self.assertIn(b'* 1 EXPUNGE', u)
        c = self.login()
        c.select(self.box)
        f = c.fetch('3', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])')
        self.assertIn(b'draft 0', f[3][0]['BODY[HEADER.FIELDS (SUBJECT)]'])
        self.assertEqual(f[3][0]['BODY[TEXT]'], b'edited\r\n')



class ReplaceLimits(Replace):
    """The limits of APPEND hold: a message over max_message_size is
    refused (before its "+") and the old one stays."""

    CONF = {'max_message_size': '4K'}

    def test_too_big(self):
        before = self.texts(self.box)
        big = draft(9, 'x' * 8000)
        u, t = self.c.cmd('REPLACE 1 %s {}' % self.box, big)
        self.assertRegex(t, rb'^T\d+ NO')
        self.assertEqual(self.texts(self.box), before)
        u, t = self.c.cmd('UID REPLACE %d %s CATENATE (TEXT {})' % (self.uids[0], self.box), big)
        self.assertRegex(t, rb'^T\d+ NO')
        self.assertEqual(self.texts(self.box), before)
        self.assertAlive()


if __name__ == '__main__':
    harness.main()
