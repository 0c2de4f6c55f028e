"""MULTIAPPEND streamed with LITERAL+: the client sends a whole command at
once, so the server reads the next messages while it writes the earlier
ones. Every message is stored whole, in order, with bare LFs made CRLF,
whatever its size (several chunks of the server's literal buffer, or
part of one); a message that fails while it is written (it grows past
max_message_size with its bare LFs) fails the command with nothing
saved, the messages sent after it are read and dropped, and the session
goes on; a client that leaves in the middle of such a command leaves no
message behind and the server serves the next one. Hundreds of small
messages, which the server writes many to a job, come out whole and in
order around the pieces that stop such a job from taking more (a
CATENATE with a URL sent as a literal, a synchronizing literal, a
message bigger than what is left of the buffer); one past the account's message limit among them fails the
command with nothing saved."""
import re
import unittest

import harness
import imap_util
from imap_util import ImapCase

MAX = 300000


def message(i, body_bytes, bare_lf=False):
    """A message of about body_bytes of text; with bare_lf every line
    ends in LF alone."""
    eol = b'\n' if bare_lf else b'\r\n'
    head = (b'From: Ann <ann@example.org>' + eol + b'Subject: stream %d' % i + eol +
            b'Message-ID: <s%d@x>' % i + eol + eol)
    line = b'line of message %d, padded to a common width for the test' % i
    n = max(1, body_bytes // (len(line) + len(eol)))
    return head + (line + eol) * n


def crlf(m):
    return re.sub(rb'(?<!\r)\n', b'\r\n', m)


class AppendStream(ImapCase):
    CONF = {'max_message_size': str(MAX)}

    @staticmethod
    def literals(msgs):
        """msgs as the LITERAL+ messages of a MULTIAPPEND."""
        return b''.join(b' {%d+}\r\n' % len(m) + m for m in msgs)

    def send_all(self, c, mbox, msgs):
        """One MULTIAPPEND of msgs, all of it in one send; (untagged, tagged)."""
        tag = c.tag()
        c.send(b'%s APPEND %s' % (tag.encode(), mbox.encode()) + self.literals(msgs) + b'\r\n')
        return c.until_tagged(tag, timeout=60)

    def bodies(self, c, mbox):
        c.select(mbox, examine=True)
        f = c.fetch('1:*', '(UID BODY.PEEK[])')
        return [it['BODY[]'] for n, (it, raw) in sorted(f.items())]

    def test_many_messages_in_one_send(self):
        c = self.login()
        c.ok('CREATE Stream')
        # small ones, one over three chunks of 256 kB is too big for MAX:
        # so sizes up to MAX, and bare-LF ones among them
        sizes = [200, 5000, 290000, 70, 100000, 3000, 260000, 1, 12000] * 3
        msgs = [message(i, s, bare_lf=(i % 4 == 1)) for i, s in enumerate(sizes)]
        msgs = [m for m in msgs if len(crlf(m)) <= MAX]
        u, t = self.send_all(c, 'Stream', msgs)
        self.assertOK(t)
        m = re.search(rb'\[APPENDUID \d+ (\d+):(\d+)\]', t)
        self.assertTrue(m, t)
        self.assertEqual(int(m.group(2)) - int(m.group(1)) + 1, len(msgs))
        got = self.bodies(self.login(), 'Stream')
        self.assertEqual(len(got), len(msgs))
        for i, (g, want) in enumerate(zip(got, msgs)):
            self.assertEqual(g, crlf(want), 'message %d' % i)
        c.ok('NOOP')

    @unittest.skipIf(imap_util.AGAINST_DOVECOT, 'max_message_size is a setting of coffred')
    def test_failure_while_written_drops_the_rest(self):
        c = self.login()
        c.ok('CREATE Fail')
        # under MAX as sent, over it once its bare LFs are CRLF
        grows = message(1, MAX - 3000, bare_lf=True)
        self.assertLess(len(grows), MAX)
        self.assertGreater(len(crlf(grows)), MAX)
        msgs = [message(0, 4000), grows] + [message(i, 4000 * i) for i in range(2, 30)]
        u, t = self.send_all(c, 'Fail', msgs)
        self.assertRegex(t, rb'^T\d+ NO ')
        self.assertIn(b'TOOBIG', t)
        # nothing of the command saved; the session reads commands again
        st = c.ok('STATUS Fail (MESSAGES)')
        self.assertIn(b'(MESSAGES 0)', b''.join(st))
        self.assertEqual(c.append('Fail', message(99, 100))[1] > 0, True)

    def small_messages(self, first, n):
        sizes = [1, 60, 700, 3000, 20000, 250, 120000, 90, 255000, 4000]
        return [message(i, sizes[i % len(sizes)], bare_lf=(i % 7 == 3))
                for i in range(first, first + n)]

    def test_small_messages_around_other_pieces(self):
        c = self.login()
        c.ok('CREATE Small')
        part1, part2, part3 = (self.small_messages(0, 150), self.small_messages(150, 150),
                               self.small_messages(300, 100))
        text = message(999, 500)
        sync = message(998, 3000)
        # a CATENATE of a URL sent as a literal, then a TEXT part
        src = message(997, 2000)
        uv, uid = c.append('INBOX', src)
        url = b'/INBOX;UIDVALIDITY=%d/;UID=%d' % (uv, uid)
        tag = c.tag()
        data = (b'%s APPEND Small' % tag.encode() + self.literals(part1) +
                b' CATENATE (URL {%d+}\r\n' % len(url) + url +
                b' TEXT {%d+}\r\n' % len(text) + text + b')' + self.literals(part2))
        c.send(data + b' {%d}\r\n' % len(sync))
        r = c.line(timeout=60)
        self.assertTrue(r.startswith(b'+'), r)
        c.send(sync + self.literals(part3) + b'\r\n')
        u, t = c.until_tagged(tag, timeout=60)
        self.assertOK(t)
        want = part1 + [src + text] + part2 + [sync] + part3
        m = re.search(rb'\[APPENDUID \d+ (\d+):(\d+)\]', t)
        self.assertTrue(m, t)
        self.assertEqual(int(m.group(2)) - int(m.group(1)) + 1, len(want))
        got = self.bodies(self.login(), 'Small')
        self.assertEqual(len(got), len(want))
        for i, (g, w) in enumerate(zip(got, want)):
            self.assertEqual(g, crlf(w), 'message %d' % i)
        c.ok('NOOP')

    @unittest.skipIf(imap_util.AGAINST_DOVECOT, 'sets the message limit with coffrectl')
    def test_small_messages_past_message_limit(self):
        rc, out, err = self.server.ctl('user', 'quota', 'alice@example.org', '--max-messages', '120')
        self.assertEqual(rc, 0, err)
        self.addCleanup(self.server.ctl, 'user', 'quota', 'alice@example.org', '0',
                        '--max-messages', '0')
        c = self.login()
        c.ok('CREATE Limit')
        st = c.ok('STATUS INBOX (MESSAGES)')
        u, t = self.send_all(c, 'Limit', self.small_messages(0, 200))
        self.assertRegex(t, rb'^T\d+ NO \[(OVERQUOTA|LIMIT)\]')
        st = c.ok('STATUS Limit (MESSAGES)')
        self.assertIn(b'(MESSAGES 0)', b''.join(st))
        c.ok('NOOP')

    def test_client_leaves_midway(self):
        c = self.login()
        c.ok('CREATE Gone')
        tag = c.tag()
        data = (b'%s APPEND Gone' % tag.encode() +
                self.literals([message(i, 50000) for i in range(20)]))
        # the command's end never comes: the connection closes in its middle
        c.send(data[:len(data) * 2 // 3])
        c.close()
        c2 = self.login()
        st = c2.ok('STATUS Gone (MESSAGES)')
        self.assertIn(b'(MESSAGES 0)', b''.join(st))
        c2.append('Gone', message(100, 100))
        self.assertEqual(len(self.bodies(c2, 'Gone')), 1)


if __name__ == '__main__':
    harness.main()
