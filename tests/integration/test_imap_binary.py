"""Non-synchronizing literals under LITERAL- (RFC 7888): what is
advertised, the 4096-byte limit when LITERAL+ is not beside it (a larger
literal gets BAD [TOOBIG], its bytes are dropped and the session goes on),
and no such limit while LITERAL+ is advertised."""
import re
import unittest

from imap_util import AGAINST_DOVECOT, ImapCase, make_message


def caps_of(untagged):
    for r in untagged:
        m = re.match(rb'\* CAPABILITY (.*)$', r)
        if m:
            return set(m.group(1).decode().upper().split())
    return set()


class LiteralPlusBeside(ImapCase):
    """The default: LITERAL+ and LITERAL- are both advertised; LITERAL+'s
    larger allowance applies."""

    def test_advertised(self):
        c = self.connect()
        caps = caps_of(c.ok('CAPABILITY'))
        self.assertIn('LITERAL+', caps)
        if AGAINST_DOVECOT and 'LITERAL-' not in caps:
            self.skipTest('the server does not advertise LITERAL-')
        self.assertIn('LITERAL-', caps)
        c.login()
        caps = caps_of(c.ok('CAPABILITY'))
        self.assertTrue({'LITERAL+', 'LITERAL-'} <= caps, caps)

    def test_large_nonsync_literal_taken(self):
        c = self.login()
        c.ok('CREATE PlusBig')
        msg = make_message(1, body='x' * 6000)
        self.assertGreater(len(msg), 4096)
        c.ok('APPEND PlusBig {}', msg, plus=True)
        self.assertEqual(c.select('PlusBig')['exists'], 1)
        # in another command than APPEND too
        u = c.ok('SEARCH BODY {}', 'q' * 5000, plus=True)
        self.assertIn(b'* SEARCH', u)


class LiteralMinusAlone(ImapCase):
    """imap_literal_plus = no: LITERAL- alone, non-synchronizing literals
    up to 4096 bytes."""

    CONF = {'imap_literal_plus': 'no'}

    def setUp(self):
        if AGAINST_DOVECOT:
            self.skipTest('the server is not set up with LITERAL- alone')

    def test_advertised(self):
        c = self.connect()
        caps = caps_of(c.ok('CAPABILITY'))
        self.assertIn('LITERAL-', caps)
        self.assertNotIn('LITERAL+', caps)
        c.login()
        caps = caps_of(c.ok('CAPABILITY'))
        self.assertIn('LITERAL-', caps)
        self.assertNotIn('LITERAL+', caps)
        self.assertNotIn(b'LITERAL+', c.last_tagged)

    def test_limit(self):
        c = self.login()
        c.ok('CREATE Minus')
        # 4096 bytes: non-synchronizing is fine
        msg = make_message(1, body='y' * 5000)[:4096]
        c.ok('APPEND Minus {}', msg, plus=True)
        # 4097: BAD [TOOBIG], the bytes are dropped, nothing is stored
        msg = make_message(2, body='z' * 5000)
        self.assertGreater(len(msg), 4096)
        u, t = c.cmd('APPEND Minus {}', msg, plus=True)
        self.assertRegex(t, rb'^T\d+ BAD \[TOOBIG\]')
        # the session goes on, in step with the client: the next command is
        # answered as itself
        self.assertEqual(c.select('Minus')['exists'], 1)
        # the same message as a synchronizing literal is taken
        c.ok('APPEND Minus {}', msg)
        self.assertEqual(c.select('Minus')['exists'], 2)

    def test_limit_in_any_command_with_more_after_it(self):
        """A literal over the limit in the middle of a command: the rest of
        the command (more arguments, another literal) is dropped with it."""
        c = self.login()
        big = b'M' * 5000
        tag = c.tag()
        c.send(tag.encode() + b' LOGIN {5000+}\r\n' + big + b' {3+}\r\nabc\r\n')
        u, t = c.until_tagged(tag)
        self.assertRegex(t, rb'^T\d+ BAD \[TOOBIG\]')
        u = c.ok('NOOP')
        self.assertEqual(c.status_of('CAPABILITY')[0], 'OK')

    def test_multiappend_second_message_over_limit(self):
        c = self.login()
        c.ok('CREATE MinusMulti')
        small = make_message(3)
        big = make_message(4, body='w' * 6000)
        tag = c.tag()
        c.send(tag.encode() + b' APPEND MinusMulti {%d+}\r\n' % len(small) + small
               + b' {%d+}\r\n' % len(big)  + big + b'\r\n')
        u, t = c.until_tagged(tag)
        self.assertRegex(t, rb'^T\d+ BAD \[TOOBIG\]')
        # all or none (RFC 3502)
        self.assertEqual(c.select('MinusMulti')['exists'], 0)

    def test_before_login(self):
        c = self.connect()
        tag = c.tag()
        c.send(tag.encode() + b' LOGIN {4200+}\r\n' + b'u' * 4200 + b' x\r\n')
        u, t = c.until_tagged(tag)
        self.assertRegex(t, rb'^T\d+ (BAD \[TOOBIG\]|NO)')
        c.login()
        c.ok('NOOP')


if __name__ == '__main__':
    unittest.main()
