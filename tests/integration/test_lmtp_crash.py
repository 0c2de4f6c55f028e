"""Durability of LMTP delivery: coffred is killed with SIGKILL between the
end of DATA and its reply, again and again (the delay varies, so some kills
land before the fsync, some during the index commit, some after the 250).
Afterwards every message that got a 250 is in the store exactly once and
whole; a message that got no reply is absent or present once and whole,
never partial; nothing is left in new/ or cur/ that is not a whole message."""
import os
import random
import signal
import socket
import time

import harness
import lmtp_util as L
from harness import ServerTestCase

ROUNDS = 20
SENDER = 'crash@remote.example'


def message(i, size):
    rnd = random.Random(i)
    line = b'crash test line %d ' % i
    body = b''.join(line + b'%08d\r\n' % rnd.randrange(10 ** 8) for _ in range(size // 30))
    return (b'Subject: crash %d\r\nMessage-ID: <crash-%d@remote.example>\r\n\r\n' % (i, i)
            + body + b'END-OF-MESSAGE %d\r\n' % i)


class LmtpCrash(ServerTestCase):

    @classmethod
    def setUpServer(cls):
        cls.server.add_user('alice@example.org', 'pw-alice-x1')

    def restart(self):
        self.server.kill()
        self.server.start()

    def test_sigkill_between_data_and_reply(self):
        rnd = random.Random(2033)
        sent = {}   # i -> (message, acknowledged)
        for i in range(ROUNDS):
            msg = message(i, rnd.choice((2000, 60000, 400000)))
            with self.server.raw('lmtp') as c:
                L.reply(c)
                c.send('LHLO x\r\nMAIL FROM:<%s>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n'
                       % SENDER)
                self.assertEqual([L.reply(c)[0] for _ in range(4)], [250, 250, 250, 354])
                stuffed = msg.replace(b'\r\n.', b'\r\n..')
                c.send(stuffed + b'.\r\n')
                # kill somewhere between the final dot and a little after the reply
                time.sleep(rnd.choice((0, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.02, 0.05, 0.1)))
                self.server.proc.send_signal(signal.SIGKILL)
                self.server.proc.wait()
                acked = False
                try:
                    code, text = L.reply(c)
                    self.assertIn(code, (250,), text)
                    acked = True
                except (EOFError, ConnectionResetError, socket.timeout):
                    pass
                sent[i] = (msg, acked)
            self.restart()
        self.server.kill()
        files = L.message_files(self.server, 'alice@example.org')
        contents = L.messages(self.server, 'alice@example.org')
        want = {i: L.expected(SENDER, 'alice@example.org', m) for i, (m, _) in sent.items()}
        for data, path in zip(contents, files):
            self.assertIn(data, want.values(), 'partial or foreign file %s (%d bytes)'
                          % (path, len(data)))
        acked = sum(1 for _, a in sent.values() if a)
        for i, (m, a) in sent.items():
            n = contents.count(want[i])
            if a:
                self.assertEqual(n, 1, 'acknowledged message %d stored %d times' % (i, n))
            else:
                self.assertIn(n, (0, 1), 'unacknowledged message %d stored %d times' % (i, n))
        print('\n%d rounds: %d acknowledged, %d killed before the reply (%d of those stored)'
              % (ROUNDS, acked, ROUNDS - acked,
                 sum(1 for i, (m, a) in sent.items() if not a and want[i] in contents)))
        # the index agrees after a restart: a new delivery still works and
        # the store opens without complaint
        self.server.start()
        c = L.lmtp(self.server)
        try:
            _, data = L.send(c, SENDER, ['alice@example.org'], message(999, 100))
        finally:
            c.close()
        self.assertEqual(data[0][0], 250)


if __name__ == '__main__':
    harness.main()
