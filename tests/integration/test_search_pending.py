"""IMAP SEARCH BODY/TEXT on messages whose text is not yet in the full-text
index: a delivery leaves its text waiting (indexing costs too much inside a
delivery); SEARCH must find it right away, and still after the upkeep has
moved it into the index once the account has been quiet. The indexing is
waited for through coffred's debug log line, not a fixed sleep."""
import os
import re
import time
import unittest

import harness
import imap_util
import lmtp_util as L
from imap_util import ImapCase, USER

INDEXED_RE = re.compile(r'full-text index updated, (\d+) texts waiting')
WAIT_INDEXED = 60.0  # generous: the machine may be loaded; not a timing check


def message(subject, body):
    return ('From: Dora <dora@example.net>\r\nTo: %s\r\nSubject: %s\r\n'
            'Date: Thu, 10 Mar 2022 12:00:00 +0000\r\nMIME-Version: 1.0\r\n'
            'Content-Type: text/plain; charset=utf-8\r\n'
            'Content-Transfer-Encoding: 8bit\r\n\r\n%s' % (USER, subject, body)).encode()


class SearchPending(ImapCase):
    CONF = {'log_debug': 'yes'}

    def deliver(self, msg):
        c = L.lmtp(self.server)
        try:
            rcpt, data = L.send(c, 'dora@example.net', [USER], msg)
        finally:
            c.close()
        self.assertEqual([code for code, _ in data], [250])

    def indexed_lines(self):
        return [int(m.group(1)) for m in INDEXED_RE.finditer(self.server.log())]

    def wait_all_indexed(self, after):
        """Waits for a debug line, later than the first `after` ones, that says
        nothing is waiting any more."""
        deadline = time.monotonic() + WAIT_INDEXED
        while time.monotonic() < deadline:
            lines = self.indexed_lines()
            if any(n == 0 for n in lines[after:]):
                return
            time.sleep(0.2)
        self.fail('the upkeep did not index the new texts\n' + self.server.log_tail())

    def checks(self, c, phase, want):
        cases = [
            ('BODY xylophon', want),          # a word's beginning
            ('BODY LOPHONIC', want),          # inside a word, other case
            ('BODY "quintessence of"', want),
            ('TEXT zebracrossing', want),     # Subject only
            ('BODY zebracrossing', []),       # BODY does not look at the Subject
            ('BODY "qz"', want),              # two characters: no trigram
            ('BODY xylophonics', []),         # beyond the text
        ]
        for crit, w in cases:
            with self.subTest(phase=phase, criteria=crit):
                self.assertEqual(c.search(crit), w)
        r = c.ok('SEARCH CHARSET UTF-8 BODY {}', 'CRÈME BRÛLÉE'.encode())
        with self.subTest(phase=phase, criteria='non-ASCII case'):
            self.assertEqual(imap_util.search_result(r), want)

    def test_new_message_found_before_and_after_indexing(self):
        c = self.login()
        c.select('INBOX')  # holds the account open: its upkeep runs
        self.checks(c, 'empty', [])
        # the first round after the account is opened looks for leftovers;
        # after it, indexing runs only after a delivery (and 2 s of quiet)
        self.wait_all_indexed(0)
        before = len(self.indexed_lines())
        self.deliver(message('zebracrossing notes',
                             'A xylophonic quintessence of crème brûlée.\r\nqz\r\n'))
        c.ok('NOOP')
        # straight after delivery the text waits outside the index
        self.checks(c, 'just delivered', [1])
        self.wait_all_indexed(before)
        self.checks(c, 'indexed', [1])

        # a second message while the first is indexed: one of each kind
        before = len(self.indexed_lines())
        self.deliver(message('other', 'Another xylophonic tune, qz.\r\n'))
        c.ok('NOOP')
        self.assertEqual(c.search('BODY xylophonic'), [1, 2])
        self.assertEqual(c.search('TEXT zebracrossing'), [1])
        self.wait_all_indexed(before)
        self.assertEqual(c.search('BODY xylophonic'), [1, 2])

        # expunged messages are gone from SEARCH whatever their state
        c.ok('STORE 1:2 +FLAGS (\\Deleted)')
        c.ok('EXPUNGE')
        self.assertEqual(c.search('BODY xylophonic'), [])
        self.assertServerAlive()


if __name__ == '__main__':
    harness.main()
