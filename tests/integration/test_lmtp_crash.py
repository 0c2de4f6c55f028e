"""Durability of LMTP delivery: coffred is killed with SIGKILL between the
end of DATA and its reply, again and again (the delay varies, so some kills
land before the fsync, some during the index commit, some after the 250).
Afterwards every message that got a 250 is in the store exactly once and
whole; a message that got no reply is absent or present once and whole,
never partial; nothing is left in new/ or cur/ that is not a whole message.

LmtpCrashConcurrent kills coffred during concurrent deliveries over several
connections to several accounts (group commit: the saves of one account
that meet share a directory fsync and an index commit; accounts with no
session open take the light path, one account has an IMAP session open in
every other round so its deliveries go through the open store). After each
restart every message that got a 250 is in the index exactly once, no UID
names two messages, and at the end each one reads back whole. The number
of kills is LMTP_CRASH_KILLS (default 6)."""
import os
import random
import re
import signal
import socket
import threading
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
        # a login opens the store, which takes in what the delivery journal
        # holds (deliveries to an account no session has open wait there)
        c = self.server.imap_ssl()
        try:
            c.login('alice@example.org', 'pw-alice-x1')
            self.assertEqual(c.select('INBOX')[0], 'OK')
            c.logout()
        finally:
            harness.close_quietly(c)
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


KILLS = int(os.environ.get('LMTP_CRASH_KILLS', '6'))
USERS = ['u%d@example.org' % i for i in range(4)]
CONNS = 6


def gc_message(key, rnd):
    body = b''.join(b'group commit line %s %08d\r\n' % (key.encode(), rnd.randrange(10 ** 8))
                    for _ in range(rnd.choice((40, 400, 4000))))
    return (b'Subject: gc %s\r\nMessage-ID: <%s@remote.example>\r\n\r\n' % (
        key.encode(), key.encode()) + body + b'END %s\r\n' % key.encode())


class LmtpCrashConcurrent(ServerTestCase):
    # stores close as their sessions end: deliveries take the light path
    CONF = {'mail_keep_open': '0'}

    @classmethod
    def setUpServer(cls):
        for u in USERS:
            cls.server.add_user(u, 'pw-' + u)

    def deliver_loop(self, tid, rnd_no, stop, out):
        """One LMTP connection delivering until coffred dies; out gets
        (key, recipients, message, acknowledged recipients)."""
        rnd = random.Random(rnd_no * 100 + tid)
        try:
            c = self.server.raw('lmtp')
            L.reply(c)
            c.send('LHLO x\r\n')
            L.reply(c)
        except (OSError, EOFError, AssertionError):
            return
        k = 0
        try:
            while not stop.is_set():
                key = 'g-%d-%d-%d' % (rnd_no, tid, k)
                k += 1
                rcpts = rnd.sample(USERS, rnd.choice((1, 1, 2)))
                msg = gc_message(key, rnd)
                entry = [key, rcpts, msg, []]
                out.append(entry)
                c.send('MAIL FROM:<%s>\r\n' % SENDER + ''.join(
                    'RCPT TO:<%s>\r\n' % r for r in rcpts) + 'DATA\r\n')
                codes = [L.reply(c)[0] for _ in range(len(rcpts) + 2)]
                self.assertEqual(codes, [250] * (len(rcpts) + 1) + [354])
                c.send(msg.replace(b'\r\n.', b'\r\n..') + b'.\r\n')
                for r in rcpts:
                    code, text = L.reply(c)
                    self.assertEqual(code, 250, text)
                    entry[3].append(r)
        except (OSError, EOFError, AssertionError, socket.timeout):
            pass  # killed
        finally:
            c.close()

    def observe(self, seen, acked):
        """Over IMAP: each account's UIDs and Message-IDs. Every acknowledged
        message is there once; a UID keeps naming the same message."""
        for u in USERS:
            c = self.server.imap_ssl()
            try:
                c.login(u, 'pw-' + u)
                typ, data = c.select('INBOX', readonly=True)
                self.assertEqual(typ, 'OK')
                uv = int(c.response('UIDVALIDITY')[1][0])
                typ, data = c.uid('FETCH', '1:*', '(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])')
                self.assertEqual(typ, 'OK')
                have = {}
                for item in data:
                    if not isinstance(item, tuple):
                        continue
                    uid = int(re.search(rb'UID (\d+)', item[0]).group(1))
                    mid = re.search(rb'<([^>]+)@remote', item[1])
                    self.assertIsNotNone(mid, item[1])
                    have[uid] = mid.group(1).decode()
                c.logout()
            finally:
                harness.close_quietly(c)
            keys = list(have.values())
            for key in set(keys):
                self.assertEqual(keys.count(key), 1, '%s indexed %d times in %s'
                                 % (key, keys.count(key), u))
            for key in acked.get(u, ()):
                self.assertIn(key, keys, 'acknowledged %s lost from %s' % (key, u))
            old_uv, old = seen.get(u, (uv, {}))
            self.assertEqual(old_uv, uv, 'UIDVALIDITY of %s changed' % u)
            for uid, key in old.items():
                self.assertEqual(have.get(uid), key, 'UID %d of %s was %s, now %r'
                                 % (uid, u, key, have.get(uid)))
            seen[u] = (uv, have)

    def test_sigkill_during_concurrent_deliveries(self):
        rnd = random.Random(4242)
        sent = []
        acked = {}   # account -> keys acknowledged
        seen = {}    # account -> (uidvalidity, uid -> key)
        for rnd_no in range(KILLS):
            session = None
            if rnd_no % 2:
                # an IMAP session holds u0's store: its deliveries use it
                session = self.server.imap_ssl()
                session.login(USERS[0], 'pw-' + USERS[0])
                session.select('INBOX')
            stop = threading.Event()
            out = []
            threads = [threading.Thread(target=self.deliver_loop, args=(t, rnd_no, stop, out))
                       for t in range(CONNS)]
            for t in threads:
                t.start()
            time.sleep(0.1 + rnd.random() * 0.6)
            self.server.kill()  # SIGKILL
            stop.set()
            for t in threads:
                t.join(30)
            if session:
                harness.close_quietly(session)
            for key, rcpts, msg, ok in out:
                sent.append((key, rcpts, msg, ok))
                for r in ok:
                    acked.setdefault(r, set()).add(key)
            self.server.start()
            if rnd_no % 2 or rnd_no == KILLS - 1:
                self.observe(seen, acked)
        # every acknowledged message reads back whole, from the index
        n_acked = sum(len(v) for v in acked.values())
        self.assertGreater(n_acked, 0)
        want = {(r, key): L.expected(SENDER, r, msg) for key, rcpts, msg, _ in sent
                for r in rcpts}
        for u in USERS:
            c = self.server.imap_ssl()
            try:
                c.login(u, 'pw-' + u)
                c.select('INBOX', readonly=True)
                for uid, key in seen[u][1].items():
                    typ, data = c.uid('FETCH', str(uid), '(BODY.PEEK[])')
                    self.assertEqual(typ, 'OK')
                    self.assertEqual(data[0][1], want[(u, key)], 'message %s of %s' % (key, u))
                c.logout()
            finally:
                harness.close_quietly(c)
            for data in L.messages(self.server, u):
                self.assertIn(data, want.values(), 'partial or foreign file in %s' % u)
        print('\n%d kills: %d transactions, %d deliveries acknowledged, %d stored'
              % (KILLS, len(sent), n_acked, sum(len(v[1]) for v in seen.values())))


if __name__ == '__main__':
    harness.main()
