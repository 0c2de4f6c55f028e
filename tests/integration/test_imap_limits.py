"""What one command may cost and what one account may hold: past
mail_max_query_steps (SQLite steps of one index read), mail_max_header_searches
(SEARCH HEADER keys that read the message files), imap_max_fetch_items,
mail_max_mailboxes and mail_max_subscriptions a command answers
NO [LIMIT] (RFC 5530), changes nothing, and the session goes on."""
import unittest

import imap_util
from imap_util import ImapCase, Imap, USER, USER2, PASS2, make_message


def assert_limit(case, c, command):
    """command is answered NO [LIMIT]; returns its untagged responses."""
    st, t, u = c.status_of(command)
    case.assertEqual(st, 'NO', '%s: %r' % (command[:60], t))
    case.assertIn(b'[LIMIT]', t)
    return u


class CommandCost(ImapCase):
    """The cost budget of one command: SEARCH, FETCH, and any index read."""

    MESSAGES = 300
    CONF = {
        'mail_max_query_steps': '100k',
        'mail_max_header_searches': '8',
        'imap_max_fetch_items': '16',
        'max_bad_commands': '1000',
    }

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        # the other account's store first: coffred makes users/ its own
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login(USER2, PASS2)
        c.logout()
        msgs = [make_message(i, extra='X-F%d: v%d\r\n' % (i % 3, i)) for i in range(cls.MESSAGES)]
        imap_util.drop_messages(cls.server, USER, msgs)

    def still_works(self, c):
        """The session that was refused goes on: SEARCH, FETCH, NOOP."""
        u = c.ok('SEARCH ALL')
        self.assertEqual(len(imap_util.search_result(u)), self.MESSAGES)
        u = c.ok('FETCH 1:3 (FLAGS UID)')
        self.assertEqual(len([r for r in u if b' FETCH ' in r]), 3)
        c.ok('NOOP')

    def test_search_header_keys_past_the_cap(self):
        c, _ = self.selected()
        keys = ' '.join('NOT HEADER X-F%d nothing' % k for k in range(9))
        assert_limit(self, c, 'SEARCH ' + keys)
        self.still_works(c)
        # at the cap it is answered, each message read once for all keys
        keys = ' '.join('NOT HEADER X-F%d nothing' % k for k in range(8))
        self.assertEqual(len(imap_util.search_result(c.ok('SEARCH ' + keys))), self.MESSAGES)
        u = c.ok('SEARCH HEADER X-F1 v298 NOT HEADER X-F2 zz HEADER X-F1 ""')
        self.assertEqual(len(imap_util.search_result(u)), 1)
        # fields the index keeps do not count against it
        keys = ' '.join('NOT HEADER Subject nothing%d' % k for k in range(20))
        self.assertEqual(len(imap_util.search_result(c.ok('SEARCH ' + keys))), self.MESSAGES)

    def test_statement_past_the_step_budget(self):
        c, _ = self.selected()
        # each key is a few steps per message: 60 of them over 300
        # messages are far past 100k steps
        keys = ' '.join('NOT KEYWORD k%d' % k for k in range(60))
        assert_limit(self, c, 'SEARCH ' + keys)
        self.still_works(c)
        self.assertAlive()

    def test_fetch_items_past_the_cap(self):
        c, _ = self.selected()
        u = assert_limit(self, c, 'FETCH 1:* (%s)' % ' '.join(['BODY.PEEK[HEADER]'] * 17))
        self.assertEqual([r for r in u if b' FETCH ' in r], [])
        self.still_works(c)
        u = c.ok('FETCH 1 (%s)' % ' '.join(['FLAGS'] * 16))
        self.assertEqual(len([r for r in u if b' FETCH ' in r]), 1)


class AccountCaps(ImapCase):
    """Mailboxes and subscriptions per account (a new account has six
    mailboxes, all subscribed)."""

    CONF = {'mail_max_mailboxes': '12', 'mail_max_subscriptions': '8'}

    def names(self, c):
        out = []
        for r in c.ok('LIST "" "*"'):
            v = imap_util.parse(b'(' + r.split(b' "/" ', 1)[1] + b')')[0]
            out.append(v if isinstance(v, str) else v.decode())
        return sorted(out)

    def test_mailboxes_past_the_cap(self):
        c = self.login(USER2, PASS2)
        for i in range(5):
            c.ok('CREATE m%d' % i)
        # one left: a name whose parent is missing needs two
        assert_limit(self, c, 'CREATE p/q')
        c.ok('CREATE m5')
        before = self.names(c)
        self.assertEqual(len(before), 12)
        for cmd in ('CREATE m6', 'RENAME m0 p/q', 'RENAME INBOX m7'):
            assert_limit(self, c, cmd)
        self.assertEqual(self.names(c), before, 'a refused command changed the list')
        # renaming within the cap, and creating again after a DELETE
        c.ok('RENAME m0 m0b')
        c.ok('DELETE m1')
        c.ok('CREATE m6')
        c.select('INBOX')
        c.ok('NOOP')
        self.assertAlive()

    def test_subscriptions_past_the_cap(self):
        c = self.login()
        c.ok('SUBSCRIBE s1')
        c.ok('SUBSCRIBE s2')
        assert_limit(self, c, 'SUBSCRIBE s3')
        c.ok('SUBSCRIBE s2')  # already there: still OK
        subs = c.ok('LSUB "" "*"')
        self.assertEqual(len(subs), 8)
        c.ok('UNSUBSCRIBE s1')
        c.ok('SUBSCRIBE s3')
        c.ok('NOOP')
        self.assertAlive()


if __name__ == '__main__':
    unittest.main()
