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
from imap_util import ImapCase, USER, USER2, PASS2

INDEXED_RE = re.compile(r'full-text index updated, (\d+) texts waiting')
WAIT_INDEXED = 60.0  # generous: the machine may be loaded; not a timing check


def message(subject, body):
    return ('From: Dora <dora@example.net>\r\nTo: %s\r\nSubject: %s\r\n'
            'Date: Thu, 10 Mar 2022 12:00:00 +0000\r\nMIME-Version: 1.0\r\n'
            'Content-Type: text/plain; charset=utf-8\r\n'
            'Content-Transfer-Encoding: 8bit\r\n\r\n%s' % (USER, subject, body)).encode()


class SearchPending(ImapCase):
    CONF = {'log_debug': 'yes'}

    def deliver(self, msg, to=USER):
        c = L.lmtp(self.server)
        try:
            rcpt, data = L.send(c, 'dora@example.net', [to], msg)
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

    def test_indexed_while_mail_keeps_coming(self):
        """New texts are indexed while deliveries go on, without waiting for
        a quiet moment: a delivery every 0.3 s until the log says that an
        indexing task left nothing waiting (the upkeep used to wait for 2 s
        without new mail). The account is USER2's, out of the way of the
        test above."""
        c = self.login(USER2, PASS2)
        c.select('INBOX')
        # the round that looks for leftovers when the account opens
        deadline = time.monotonic() + WAIT_INDEXED
        lines0 = 0
        while time.monotonic() < deadline and len(self.indexed_lines()) <= lines0:
            time.sleep(0.2)
        lines0 = len(self.indexed_lines())
        sent = 0
        while sent < 200:
            self.deliver(message('stream %d' % sent, 'a marimba in the stream\r\n'), USER2)
            sent += 1
            if sent >= 3 and any(n == 0 for n in self.indexed_lines()[lines0:]):
                break
            time.sleep(0.3)
        self.assertLess(sent, 200, 'nothing indexed while mail kept coming\n' +
                        self.server.log_tail())
        c.ok('NOOP')
        self.assertEqual(c.search('BODY marimba'), list(range(1, sent + 1)))

    def test_indexer_at_lowest_priority(self):
        """The indexer is a thread of its own at nice 19: it takes only the
        CPU time nobody else wants."""
        if self.server.wrap:
            self.skipTest('coffred runs under a wrapper')
        before = len(self.indexed_lines())
        c = self.login(USER2, PASS2)
        c.select('INBOX')
        self.deliver(message('priority', 'a kalimba\r\n'), USER2)
        deadline = time.monotonic() + WAIT_INDEXED
        while time.monotonic() < deadline and len(self.indexed_lines()) <= before:
            time.sleep(0.2)
        pid = self.server.proc.pid
        nices = {}
        for tid in os.listdir('/proc/%d/task' % pid):
            try:
                with open('/proc/%d/task/%s/stat' % (pid, tid)) as f:
                    fields = f.read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            nices[int(tid)] = int(fields[16])  # field 19 of stat(5)
        if nices.get(pid) == 19:
            self.skipTest('coffred runs at nice 19 already')
        self.assertIn(19, nices.values(), 'no thread at nice 19: %r' % nices)
        # the loop thread (and with it every other one) keeps its priority
        self.assertEqual(sorted(nices.values()).count(19), 1, nices)


if __name__ == '__main__':
    harness.main()
