"""POP3 TRANSACTION and UPDATE with poplib over POP3S and STLS: STAT, LIST
and UIDL with and without argument, RETR with exact sizes and dot-stuffing,
TOP with 0 and n lines, DELE+RSET, DELE then QUIT deletes, DELE then a
dropped connection deletes nothing, the snapshot, IN-USE for a second
session while IMAP still works, pipelining, UIDL stable across a restart."""
import os
import poplib
import socket
import time

import harness
from harness import ServerTestCase, close_quietly
import pop3_util as pu
from pop3_util import PASS


def messages(n, base=0):
    return [pu.make_message(base + i, body_lines=5 + 13 * i) for i in range(n)]


class Pop3Mail(ServerTestCase):

    users = 0

    def user(self, msgs):
        """A fresh account holding msgs, for one test."""
        Pop3Mail.users += 1
        addr = 'pm%d@example.org' % Pop3Mail.users
        pu.setup_user(self.server, addr, msgs)
        return addr

    def check_all(self, stls):
        msgs = messages(6)
        addr = self.user(msgs)
        p = pu.login(self.server, addr, stls=stls)
        try:
            count, size = p.stat()
            self.assertEqual(count, 6)
            self.assertEqual(size, sum(len(m) for m in msgs))
            # LIST without and with argument
            resp, lines, _ = p.list()
            self.assertTrue(resp.startswith(b'+OK'), resp)
            listed = {int(a): int(b) for a, b in (l.split() for l in lines)}
            self.assertEqual(sorted(listed), [1, 2, 3, 4, 5, 6])
            for n in listed:
                self.assertEqual(p.list(n), b'+OK %d %d' % (n, listed[n]))
            # the snapshot keeps message order: sizes match in order
            self.assertEqual([listed[n] for n in sorted(listed)], [len(m) for m in msgs])
            # UIDL without and with argument; unique, legal characters
            uidls = pu.uidl_map(p)
            self.assertEqual(sorted(uidls), [1, 2, 3, 4, 5, 6])
            self.assertEqual(len(set(uidls.values())), 6)
            for n, u in uidls.items():
                self.assertTrue(1 <= len(u) <= 70 and all(0x21 <= ord(ch) <= 0x7e for ch in u), u)
                self.assertEqual(p.uidl(n), ('+OK %d %s' % (n, u)).encode())
            # RETR: exact bytes after un-stuffing, sizes equal LIST's
            total = 0
            for n in range(1, 7):
                got = pu.retr_bytes(p, n)
                self.assertEqual(got, msgs[n - 1])
                self.assertEqual(len(got), listed[n])
                total += len(got)
            self.assertEqual(total, size)
            # TOP 0: the header and the blank line; TOP n: n body lines
            hdr, body = msgs[3].split(b'\r\n\r\n', 1)
            resp, lines, _ = p.top(4, 0)
            self.assertTrue(resp.startswith(b'+OK'), resp)
            self.assertEqual(b''.join(l + b'\r\n' for l in lines), hdr + b'\r\n\r\n')
            resp, lines, _ = p.top(4, 5)
            want = hdr + b'\r\n\r\n' + b''.join(l + b'\r\n' for l in body.split(b'\r\n')[:5])
            self.assertEqual(b''.join(l + b'\r\n' for l in lines), want)
            resp, lines, _ = p.top(4, 100000)
            self.assertEqual(b''.join(l + b'\r\n' for l in lines), msgs[3])
            # NOOP, CAPA in TRANSACTION
            self.assertTrue(p.noop().startswith(b'+OK'))
            caps = p.capa()
            for cap in ('TOP', 'UIDL', 'RESP-CODES', 'PIPELINING', 'EXPIRE'):
                self.assertIn(cap, caps)
            self.assertEqual(caps['EXPIRE'], ['NEVER'])
            self.assertNotIn('USER', caps)
            self.assertNotIn('STLS', caps)
            # DELE then RSET
            self.assertTrue(p.dele(2).startswith(b'+OK'))
            self.assertEqual(p.stat(), (5, size - len(msgs[1])))
            for fn in (lambda: p.list(2), lambda: p.uidl(2), lambda: p.retr(2),
                       lambda: p.top(2, 0), lambda: p.dele(2)):
                with self.assertRaises(poplib.error_proto):
                    fn()
            self.assertNotIn(2, pu.uidl_map(p))
            self.assertTrue(p.rset().startswith(b'+OK'))
            self.assertEqual(p.stat(), (6, size))
            self.assertEqual(pu.uidl_map(p), uidls)
            # DELE then QUIT deletes
            p.dele(1)
            p.dele(5)
            r = pu.quit(p)
            self.assertIn(b'2 messages deleted', r)
        finally:
            close_quietly(p)
        with pu.session(self.server, addr, stls=stls, retry=True) as p:
            self.assertEqual(p.stat(), (4, sum(len(msgs[i]) for i in (1, 2, 3, 5))))
            after = pu.uidl_map(p)
            self.assertEqual(list(after.values()), [uidls[n] for n in (2, 3, 4, 6)])
            self.assertEqual(pu.retr_bytes(p, 1), msgs[1])
            self.assertEqual(pu.retr_bytes(p, 4), msgs[5])

    def test_all_commands_pop3s(self):
        self.check_all(stls=False)

    def test_all_commands_stls(self):
        self.check_all(stls=True)

    def test_dropped_connection_deletes_nothing(self):
        msgs = messages(4)
        addr = self.user(msgs)
        p = pu.login(self.server, addr)
        before = pu.uidl_map(p)
        for n in range(1, 5):
            p.retr(n)
            p.dele(n)
        self.assertEqual(p.stat(), (0, 0))
        # drop the TCP connection: no QUIT, no TLS close_notify
        p.sock.shutdown(socket.SHUT_RDWR)
        p.sock.close()
        p.file.close()
        with pu.session(self.server, addr, retry=True) as p:
            self.assertEqual(p.stat()[0], 4)
            self.assertEqual(pu.uidl_map(p), before)
            for n in range(1, 5):
                self.assertEqual(pu.retr_bytes(p, n), msgs[n - 1])

    def test_snapshot_hides_new_mail(self):
        addr = self.user(messages(2))
        with pu.session(self.server, addr) as p:
            self.assertEqual(p.stat()[0], 2)
            pu.drop_messages(self.server, addr, messages(1, base=50))
            # a rescan by another session would not change this one
            self.assertEqual(p.stat()[0], 2)
            self.assertEqual(len(p.list()[1]), 2)

    def test_in_use(self):
        addr = self.user(messages(2))
        a = pu.login(self.server, addr)
        try:
            b = self.server.pop3_ssl()
            try:
                b.user(addr)
                with self.assertRaises(poplib.error_proto) as cm:
                    b.pass_(PASS)
                self.assertTrue(cm.exception.args[0].startswith(b'-ERR [IN-USE]'),
                                cm.exception.args[0])
                # still in AUTHORIZATION: a transaction command is refused
                with self.assertRaises(poplib.error_proto):
                    b.stat()
                # IMAP of the same user is not locked out
                im = self.server.imap_ssl()
                try:
                    typ, _ = im.login(addr, PASS)
                    self.assertEqual(typ, 'OK')
                finally:
                    close_quietly(im)
                # the first session is unaffected
                self.assertEqual(a.stat()[0], 2)
                pu.quit(a)
                # once it is gone, the second may log in
                b.user(addr)
                deadline = time.monotonic() + 20
                while True:
                    try:
                        b.pass_(PASS)
                        break
                    except poplib.error_proto as e:
                        if b'[IN-USE]' not in e.args[0] or time.monotonic() > deadline:
                            raise
                        b.user(addr)
                        time.sleep(0.05)
                self.assertEqual(b.stat()[0], 2)
                pu.quit(b)
            finally:
                close_quietly(b)
        finally:
            close_quietly(a)

    def test_pipelining(self):
        msgs = messages(3)
        addr = self.user(msgs)
        c = self.server.raw('pop3s', tls=True)
        try:
            self.assertTrue(c.line().startswith('+OK'))
            c.send('USER %s\r\nPASS %s\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nTOP 2 0\r\n'
                   'RETR 3\r\nDELE 2\r\nLIST 2\r\nNOOP\r\nRSET\r\nQUIT\r\n' % (addr, PASS))
            self.assertTrue(c.line().startswith('+OK'))               # USER
            self.assertEqual(c.line(), '+OK Logged in.')               # PASS
            self.assertEqual(c.line(), '+OK 3 %d' % sum(map(len, msgs)))
            self.assertTrue(c.line().startswith('+OK 3 messages'))    # LIST
            self.assertEqual(len(pu.read_multi(c)), 3)
            self.assertTrue(c.line().startswith('+OK 2 '))            # UIDL 2
            self.assertEqual(c.line(), '+OK %d octets' % len(msgs[0]))
            self.assertEqual(b''.join(l + b'\r\n' for l in pu.read_multi(c)), msgs[0])
            self.assertTrue(c.line().startswith('+OK'))               # TOP 2 0
            self.assertEqual(b''.join(l + b'\r\n' for l in pu.read_multi(c)),
                             msgs[1].split(b'\r\n\r\n')[0] + b'\r\n\r\n')
            self.assertEqual(c.line(), '+OK %d octets' % len(msgs[2]))
            self.assertEqual(b''.join(l + b'\r\n' for l in pu.read_multi(c)), msgs[2])
            self.assertTrue(c.line().startswith('+OK'))               # DELE 2
            self.assertTrue(c.line().startswith('-ERR'))              # LIST 2
            self.assertTrue(c.line().startswith('+OK'))               # NOOP
            self.assertTrue(c.line().startswith('+OK 3 messages'))    # RSET
            self.assertTrue(c.line().startswith('+OK'))               # QUIT
            self.assertEqual(c.read_until_eof(), b'')
        finally:
            c.close()
        with pu.session(self.server, addr, retry=True) as p:
            self.assertEqual(p.stat()[0], 3)

    def test_large_message_streamed(self):
        # 3 MB with long runs of dot lines across the 64 KB chunk boundaries
        big = pu.make_message(900, body_lines=50000, line_len=58)
        addr = self.user([big, pu.make_message(901)])
        with pu.session(self.server, addr) as p:
            self.assertEqual(p.list(1), b'+OK 1 %d' % len(big))
            self.assertEqual(pu.retr_bytes(p, 1), big)
            self.assertEqual(pu.retr_bytes(p, 2), pu.make_message(901))

    def test_empty_maildrop(self):
        addr = self.user([])
        with pu.session(self.server, addr) as p:
            self.assertEqual(p.stat(), (0, 0))
            self.assertEqual(p.list()[1], [])
            self.assertEqual(p.uidl()[1], [])
            with self.assertRaises(poplib.error_proto):
                p.retr(1)


class Pop3Restart(ServerTestCase):
    """UIDL is stable across a restart of coffred, and deletions persist."""

    def test_uidl_stable_across_restart(self):
        addr = 'restart@example.org'
        msgs = messages(5)
        pu.setup_user(self.server, addr, msgs)
        p = pu.login(self.server, addr)
        before = pu.uidl_map(p)
        p.dele(3)
        pu.quit(p)
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        with pu.session(self.server, addr) as p:
            after = pu.uidl_map(p)
            self.assertEqual(list(after.values()), [before[n] for n in (1, 2, 4, 5)])
            self.assertEqual(pu.retr_bytes(p, 3), msgs[3])
        # new mail gets a UIDL never used before
        pu.drop_messages(self.server, addr, messages(1, base=70))
        pu.wait_messages(self.server, addr, 5)
        with pu.session(self.server, addr, retry=True) as p:
            again = pu.uidl_map(p)
            self.assertEqual(len(again), 5)
            self.assertEqual(list(again.values())[:4], list(after.values()))
            self.assertNotIn(again[5], before.values())


if __name__ == '__main__':
    harness.main()
