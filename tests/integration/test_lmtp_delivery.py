"""LMTP delivery (issue 4) with Python's smtplib.LMTP and raw sockets against
the real coffred: per-recipient replies, unknown/disabled recipients,
pipelining, CHUNKING, 8-bit and SMTPUTF8, dot-stuffing, bare LF, detail
addresses, size limits, quota, a 30 MB message with bounded memory, a unix
socket, and the temporary-failure path. Messages are checked byte for byte
in the account's Maildir."""
import os
import random
import smtplib
import socket
import stat

import harness
import lmtp_util as L
from harness import ServerTestCase

SENDER = 'sender@remote.example'


def body(subject, text=b'Hello.\r\n'):
    return (b'From: Sender <sender@remote.example>\r\nTo: alice@example.org\r\n'
            b'Subject: ' + subject.encode() + b'\r\nMessage-ID: <' + subject.encode()
            + b'@remote.example>\r\n\r\n' + text)


class LmtpDelivery(ServerTestCase):
    CONF = {
        'max_message_size': '64M',
        'lmtp_max_recipients': '5',
        'lmtp_save_to_detail_mailbox': 'yes',
        'lmtp_listen': lambda ports: '%s:%d,unix:%s' % (
            harness.HOST, ports['lmtp'], '/tmp/coffre-lmtp-%d.sock' % ports['lmtp']),
    }

    @classmethod
    def setUpServer(cls):
        for u in ('alice', 'bob', 'carol', 'dave', 'erin'):
            cls.server.add_user(u + '@example.org', 'pw-' + u + '-x1')
        cls.server.ctl('user', 'disable', 'carol@example.org')
        rc, out, err = cls.server.ctl('user', 'quota', 'dave@example.org', '2k')
        if rc != 0:
            raise RuntimeError('quota: ' + err)

    def inbox(self, user):
        return L.messages(self.server, user + '@example.org')

    def test_multi_recipient_with_unknown(self):
        msg = body('multi-1')
        before = {u: len(self.inbox(u)) for u in ('alice', 'bob')}
        c = L.lmtp(self.server)
        try:
            rcpt, data = L.send(c, SENDER, ['alice@example.org', 'nobody@example.org',
                                            'BOB@Example.ORG', 'carol@example.org'], msg)
            self.assertEqual(rcpt[0][0], 250)
            self.assertEqual(rcpt[1][0], 550)
            self.assertTrue(rcpt[1][1].startswith(b'5.1.1'), rcpt[1])
            self.assertEqual(rcpt[2][0], 250)
            self.assertEqual(rcpt[3][0], 550)
            self.assertTrue(rcpt[3][1].startswith(b'5.2.1'), rcpt[3])
            # one reply per accepted recipient, in RCPT order
            self.assertEqual([d[0] for d in data], [250, 250])
            self.assertIn(b'alice@example.org', data[0][1])
            self.assertIn(b'bob@example.org', data[1][1])
            self.assertEqual(c.noop()[0], 250)   # nothing left unread
        finally:
            c.close()
        a = self.inbox('alice')
        b = self.inbox('bob')
        self.assertEqual(len(a), before['alice'] + 1)
        self.assertEqual(len(b), before['bob'] + 1)
        self.assertIn(L.expected(SENDER, 'alice@example.org', msg), a)
        self.assertIn(L.expected(SENDER, 'bob@example.org', msg), b)

    def test_same_address_twice_is_one_file_hard_linked(self):
        msg = body('twice')
        c = L.lmtp(self.server)
        try:
            rcpt, data = L.send(c, SENDER, ['erin@example.org', 'erin@example.org'], msg)
        finally:
            c.close()
        self.assertEqual([d[0] for d in data], [250, 250])
        files = [p for p in L.message_files(self.server, 'erin@example.org')
                 if open(p, 'rb').read() == L.expected(SENDER, 'erin@example.org', msg)]
        self.assertEqual(len(files), 2)
        self.assertEqual(os.stat(files[0]).st_ino, os.stat(files[1]).st_ino)

    def test_over_quota_per_recipient(self):
        big = body('quota', b'x' * 3000 + b'\r\n')
        c = L.lmtp(self.server)
        try:
            rcpt, data = L.send(c, SENDER, ['dave@example.org', 'alice@example.org'], big)
        finally:
            c.close()
        self.assertEqual(data[0][0], 552, data)
        self.assertTrue(data[0][1].startswith(b'5.2.2'), data)
        self.assertEqual(data[1][0], 250, data)
        self.assertEqual(self.inbox('dave'), [])
        self.assertEqual(L.tmp_files(self.server, 'dave@example.org'), [])

    def test_dot_stuffing(self):
        text = (b'.leading dot\r\n..two dots\r\n.\r\n\r\n. \r\nlast line without dot\r\n'
                b'...\r\nend.\r\n')
        msg = body('dots', text)
        c = L.lmtp(self.server)
        try:
            _, data = L.send(c, SENDER, ['alice@example.org'], msg)  # smtplib stuffs
        finally:
            c.close()
        self.assertEqual(data[0][0], 250)
        self.assertIn(L.expected(SENDER, 'alice@example.org', msg), self.inbox('alice'))

    def test_bare_lf_becomes_crlf(self):
        with self.server.raw('lmtp') as c:
            L.reply(c)
            c.send('LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n')
            self.assertEqual([L.reply(c)[0] for _ in range(4)], [250, 250, 250, 354])
            c.send(b'Subject: bare-lf\nMessage-ID: <bare-lf@x>\n\nline one\n..dot\nend\n.\n')
            self.assertEqual(L.reply(c)[0], 250)
        self.assertIn(b'Return-Path: <a@b.example>\r\nDelivered-To: alice@example.org\r\n'
                      b'Subject: bare-lf\r\nMessage-ID: <bare-lf@x>\r\n\r\nline one\r\n'
                      b'.dot\r\nend\r\n', self.inbox('alice'))

    def test_8bit_and_smtputf8(self):
        sender = 'δοκιμή@παράδειγμα.example'
        msg = ('From: =?utf-8?q?x?= <%s>\r\nSubject: Grüße, 日本語\r\nMessage-ID: <utf8@x>\r\n'
               'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n'
               '\r\nÄÖÜ ß — 8-bit body ✓\r\n' % sender).encode('utf-8') + b'\xff\xfe raw\r\n'
        c = L.lmtp(self.server)
        try:
            self.assertTrue(c.has_extn('smtputf8'))
            self.assertTrue(c.has_extn('8bitmime'))
            _, data = L.send(c, sender, ['alice@example.org'], msg,
                             mail_options=('SMTPUTF8', 'BODY=8BITMIME'))
        finally:
            c.close()
        self.assertEqual(data[0][0], 250, data)
        self.assertIn(b'Return-Path: <' + sender.encode() + b'>\r\nDelivered-To: '
                      b'alice@example.org\r\n' + msg, self.inbox('alice'))

    def test_pipelining(self):
        msg = body('pipe-1')
        with self.server.raw('lmtp') as c:
            L.reply(c)
            # everything up to DATA in one write, then the body with the next
            # transaction (BDAT) and QUIT in one write
            c.send('LHLO x\r\nMAIL FROM:<p@remote.example>\r\nRCPT TO:<alice@example.org>\r\n'
                   'RCPT TO:<ghost@example.org>\r\nRCPT TO:<bob@example.org>\r\nNOOP\r\nDATA\r\n')
            codes = [L.reply(c)[0] for _ in range(7)]
            self.assertEqual(codes, [250, 250, 250, 550, 250, 250, 354])
            second = body('pipe-2')
            c.send(msg + b'.\r\nMAIL FROM:<p@remote.example>\r\nRCPT TO:<bob@example.org>\r\n'
                   + b'BDAT %d LAST\r\n' % len(second) + second + b'RSET\r\nQUIT\r\n')
            replies = [L.reply(c) for _ in range(7)]
            self.assertEqual([r[0] for r in replies], [250, 250, 250, 250, 250, 250, 221])
            self.assertIn('alice@example.org', replies[0][1][0])
            self.assertIn('bob@example.org', replies[1][1][0])
            self.assertEqual(c.read_until_eof(), b'')
        self.assertIn(L.expected('p@remote.example', 'alice@example.org', msg),
                      self.inbox('alice'))
        b = self.inbox('bob')
        self.assertIn(L.expected('p@remote.example', 'bob@example.org', msg), b)
        self.assertIn(L.expected('p@remote.example', 'bob@example.org', second), b)

    def test_chunking(self):
        parts = [b'Subject: chunks\r\nMessage-ID: <chunks@x>\r\n\r\n',
                 b'a line\r\n.\r\n..not stuffed in BDAT\r\n', b'', b'\r\n.', b'tail\r\n']
        with self.server.raw('lmtp') as c:
            L.reply(c)
            c.send('LHLO x\r\n')
            code, caps = L.reply(c)
            self.assertIn('CHUNKING', caps)
            c.send('MAIL FROM:<c@remote.example>\r\nRCPT TO:<alice@example.org>\r\n')
            self.assertEqual([L.reply(c)[0] for _ in range(2)], [250, 250])
            for p in parts:
                c.send(b'BDAT %d\r\n' % len(p) + p)
                self.assertEqual(L.reply(c)[0], 250)
            c.send('BDAT 0 LAST\r\n')
            code, text = L.reply(c)
            self.assertEqual(code, 250, text)
            c.send('DATA\r\n')      # no transaction any more
            self.assertEqual(L.reply(c)[0], 503)
        self.assertIn(L.expected('c@remote.example', 'alice@example.org', b''.join(parts)),
                      self.inbox('alice'))

    def test_bdat_refused_chunk_is_consumed(self):
        with self.server.raw('lmtp') as c:
            L.reply(c)
            c.send('LHLO x\r\nBDAT 12\r\nNOOP\r\nQUIT\r\nNOOP\r\n')
            self.assertEqual(L.reply(c)[0], 250)
            self.assertEqual(L.reply(c)[0], 503)  # the 12 bytes were data, not commands
            self.assertEqual(L.reply(c)[0], 250)  # NOOP

    def test_order_and_syntax_errors(self):
        with self.server.raw('lmtp') as c:
            L.reply(c)
            c.send('MAIL FROM:<a@b>\r\n')
            code, text = L.reply(c)
            self.assertEqual((code, text[0][:5]), (503, '5.5.1'))
            c.send('LHLO x\r\n')
            L.reply(c)
            for cmd, want in (('RCPT TO:<alice@example.org>', '503 5.5.1'),
                              ('DATA', '503 5.5.1'),
                              ('MAIL FROM:a@b', '501 5.1.7'),
                              ('MAIL FROM:<a@b> FOO=1', '555 5.5.4'),
                              ('MAIL FROM:<a@b> BODY=BINARYMIME', '501 5.5.4'),
                              ('MAIL FROM:<a@b> SIZE=99999999999999999999999', '501 5.5.4'),
                              ('MAIL FROM:<a@b>', '250 2.1.0'),
                              ('MAIL FROM:<a@b>', '503 5.5.1'),
                              ('RCPT TO:<>', '501 5.1.3'),
                              ('RCPT TO:<alice@example.org> NOTIFY=NEVER', '555 5.5.4'),
                              ('RCPT TO:alice@example.org', '501 5.1.3'),
                              ('DATA', '503 5.5.1'),
                              ('VRFY alice', '252 2.5.0'),
                              ('BDAT x', '501 5.5.4'),
                              ('RSET', '250 2.0.0')):
                c.send(cmd + '\r\n')
                code, text = L.reply(c)
                self.assertEqual('%d %s' % (code, text[0][:5]), want, cmd)

    def test_too_many_recipients(self):
        with self.server.raw('lmtp') as c:
            L.reply(c)
            c.send('LHLO x\r\nMAIL FROM:<a@b.example>\r\n')
            L.reply(c), L.reply(c)
            for i in range(5):
                c.send('RCPT TO:<alice@example.org>\r\n')
                self.assertEqual(L.reply(c)[0], 250)
            c.send('RCPT TO:<alice@example.org>\r\n')
            code, text = L.reply(c)
            self.assertEqual((code, text[0][:5]), (452, '4.5.3'))

    def test_detail_address(self):
        a = body('detail-junk')
        b = body('detail-none')
        c = L.lmtp(self.server)
        try:
            # "Junk" exists (created with every store): it goes there
            _, d1 = L.send(c, SENDER, ['alice+Junk@example.org'], a)
            # no folder "nosuch": INBOX
            _, d2 = L.send(c, SENDER, ['alice+nosuch@example.org'], b)
        finally:
            c.close()
        self.assertEqual((d1[0][0], d2[0][0]), (250, 250))
        self.assertIn(L.expected(SENDER, 'alice+junk@example.org', a),
                      L.messages(self.server, 'alice@example.org', 'Junk'))
        self.assertIn(L.expected(SENDER, 'alice+nosuch@example.org', b), self.inbox('alice'))

    def test_size_declared_too_big(self):
        c = L.lmtp(self.server)
        try:
            self.assertEqual(c.mail(SENDER, ['SIZE=%d' % (65 << 20)])[0], 552)
            self.assertEqual(c.mail(SENDER, ['SIZE=1000'])[0], 250)
        finally:
            c.close()

    def test_unix_socket(self):
        path = '/tmp/coffre-lmtp-%d.sock' % self.server.ports['lmtp']
        self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o660)
        msg = body('unix-socket')
        c = L.lmtp(self.server, host=path)
        try:
            _, data = L.send(c, SENDER, ['bob@example.org'], msg)
        finally:
            c.close()
        self.assertEqual(data[0][0], 250)
        self.assertIn(L.expected(SENDER, 'bob@example.org', msg), self.inbox('bob'))

    def test_30mb_message_small_memory(self):
        rnd = random.Random(4)
        words = [b'lorem', b'ipsum', b'dolor', b'sit', b'amet', b'.dot', b'x' * 20]
        lines = []
        size = 0
        while size < 30 << 20:
            line = b' '.join(rnd.choice(words) for _ in range(rnd.randint(1, 14)))
            if rnd.random() < 0.01:
                line = b'.' + line      # stuffed on the wire
            lines.append(line)
            size += len(line) + 2
        msg = body('big-30m', b'\r\n'.join(lines) + b'\r\n')
        pid = self.server.proc.pid
        # warm up (first delivery to this account, buffers) before measuring
        c = L.lmtp(self.server)
        try:
            L.send(c, SENDER, ['bob@example.org'], body('warm-up'))
            base = L.status_kb(pid, 'RssAnon')
            hwm_before = L.vm_hwm_kb(pid)
            with L.AnonPeak(pid) as peak:
                _, data = L.send(c, SENDER, ['bob@example.org'], msg)
            hwm_after = L.vm_hwm_kb(pid)
        finally:
            c.close()
        self.assertEqual(data[0][0], 250, data)
        growth = peak.peak - base
        print('\n30 MB message: RssAnon peak +%d kB, VmHWM %d -> %d kB (includes the mapped '
              'file)' % (growth, hwm_before, hwm_after))
        # ASan keeps freed blocks (the socket read buffers) in its quarantine
        limit = 40 if L.has_asan(pid) else 20
        self.assertLess(growth, limit * 1024,
                        'coffred anonymous memory grew by %d kB for a 30 MB message' % growth)
        want = L.expected(SENDER, 'bob@example.org', msg)
        self.assertIn(want, [m for m in self.inbox('bob') if len(m) == len(want)])


class LmtpQuotaStreaming(ServerTestCase):
    """A 16 MB message to a 2 MB-quota account and to one without a quota:
    the first one's copy stops being written at its quota (it reached all
    16 MB in tmp/ before), it gets 552 5.2.2 at the end of the data, the
    other its delivery; the session goes on."""
    CONF = {'max_message_size': '64M'}
    QUOTA = 2 << 20

    @classmethod
    def setUpServer(cls):
        for u in ('frank', 'gina'):
            cls.server.add_user(u + '@example.org', 'pw-' + u + '-x1')
        rc, out, err = cls.server.ctl('user', 'quota', 'frank@example.org', '2M')
        if rc != 0:
            raise RuntimeError('quota: ' + err)

    def send_watched(self, sender, rcpts, msg, watch_addr):
        tmp = os.path.join(L.maildir(self.server, watch_addr), 'tmp')
        watch = harness.PeakWatcher(tmp)
        c = L.lmtp(self.server)
        watch.start()
        try:
            _, data = L.send(c, sender, rcpts, msg)
        finally:
            peak = watch.stop()
        try:
            self.assertEqual(c.noop()[0], 250)   # the session goes on
        finally:
            c.close()
        return data, peak

    def test_copy_stops_at_quota_others_delivered(self):
        line = b'q' * 1022 + b'\r\n'
        msg = body('quota-16m', line * (16 << 10))
        data, peak = self.send_watched(SENDER, ['frank@example.org', 'gina@example.org'], msg,
                                       'frank@example.org')
        self.assertEqual(data[0][0], 552, data)
        self.assertTrue(data[0][1].startswith(b'5.2.2'), data)
        self.assertEqual(data[1][0], 250, data)
        self.assertLessEqual(peak, self.QUOTA, 'tmp/ held %d bytes during the data' % peak)
        self.assertEqual(L.message_files(self.server, 'frank@example.org'), [])
        self.assertEqual(L.tmp_files(self.server, 'frank@example.org'), [])
        want = L.expected(SENDER, 'gina@example.org', msg)
        self.assertIn(want, L.messages(self.server, 'gina@example.org'))
        uid = L.user_id(self.server, 'frank@example.org')
        self.assertIn('lmtp: account %d over quota after' % uid, self.server.log())

    def test_within_quota_still_delivered(self):
        msg = body('quota-small', b'small\r\n' * 1000)
        data, peak = self.send_watched(SENDER, ['frank@example.org'], msg, 'frank@example.org')
        self.assertEqual(data[0][0], 250, data)
        self.assertIn(L.expected(SENDER, 'frank@example.org', msg),
                      L.messages(self.server, 'frank@example.org'))


class LmtpLimits(ServerTestCase):
    CONF = {'max_message_size': '20k', 'lmtp_quota_temporary': 'yes'}

    @classmethod
    def setUpServer(cls):
        cls.server.add_user('alice@example.org', 'pw-alice-x1')
        cls.server.add_user('dave@example.org', 'pw-dave-x1')
        cls.server.ctl('user', 'quota', 'dave@example.org', '1k')

    def test_size_limit_while_streaming(self):
        big = body('too-big', b'y' * 30000 + b'\r\n')
        small = body('small-after')
        c = L.lmtp(self.server)
        try:
            self.assertIn('20480', c.esmtp_features.get('size', ''))
            _, data = L.send(c, SENDER, ['alice@example.org', 'alice@example.org'], big)
            self.assertEqual([d[0] for d in data], [552, 552])
            self.assertTrue(data[0][1].startswith(b'5.3.4'), data)
            # the session goes on
            _, data = L.send(c, SENDER, ['alice@example.org'], small)
            self.assertEqual(data[0][0], 250)
        finally:
            c.close()
        self.assertEqual(L.messages(self.server, 'alice@example.org'),
                         [L.expected(SENDER, 'alice@example.org', small)])
        self.assertEqual(L.tmp_files(self.server, 'alice@example.org'), [])

    def test_quota_temporary(self):
        c = L.lmtp(self.server)
        try:
            _, data = L.send(c, SENDER, ['dave@example.org'], body('q', b'z' * 2000 + b'\r\n'))
        finally:
            c.close()
        self.assertEqual(data[0][0], 452)
        self.assertTrue(data[0][1].startswith(b'4.2.2'), data)


class LmtpTempFailure(ServerTestCase):
    """A Maildir the daemon cannot write to (coffred runs as nobody, so the
    mode bits apply): 451 4.3.0, nothing half-written visible, and delivery
    works again once the directory is writable."""

    @classmethod
    def setUpServer(cls):
        cls.server.add_user('alice@example.org', 'pw-alice-x1')

    def deliver(self, subject):
        c = L.lmtp(self.server)
        try:
            return L.send(c, SENDER, ['alice@example.org'], body(subject, b'w' * 5000 + b'\r\n'))
        finally:
            c.close()

    def test_readonly_dirs(self):
        self.assertEqual(self.deliver('first')[1][0][0], 250)
        md = L.maildir(self.server, 'alice@example.org')
        for sub in ('tmp', 'new'):
            d = os.path.join(md, sub)
            mode = os.stat(d).st_mode
            os.chmod(d, 0o555)
            try:
                _, data = self.deliver('ro-' + sub)
            finally:
                os.chmod(d, stat.S_IMODE(mode))
            self.assertEqual(data[0][0], 451, (sub, data))
            self.assertTrue(data[0][1].startswith(b'4.3.0'), data)
            self.assertEqual(len(L.messages(self.server, 'alice@example.org')), 1, sub)
            self.assertEqual(L.tmp_files(self.server, 'alice@example.org'), [], sub)
        self.assertEqual(self.deliver('again')[1][0][0], 250)
        self.assertEqual(len(L.messages(self.server, 'alice@example.org')), 2)
        self.assertServerAlive()


class LmtpJournal(ServerTestCase):
    """Deliveries to an account no session has open wait in the delivery
    journal (<data_dir>/pending/ and deliveries.sqlite), are acknowledged
    only once durable there, and the next login takes them in, in order,
    byte for byte, with their UIDs; the quota counts them; while a session
    has the store open, deliveries go straight into it (pushed in IDLE)."""
    CONF = {'mail_keep_open': '0'}

    @classmethod
    def setUpServer(cls):
        cls.server.add_user('alice@example.org', 'pw-alice-x1')
        cls.server.add_user('dave@example.org', 'pw-dave-x1')
        cls.server.add_user('erin@example.org', 'pw-erin-x1')
        rc, out, err = cls.server.ctl('user', 'quota', 'dave@example.org', '4k')
        if rc != 0:
            raise RuntimeError('quota: ' + err)
        # each account's index made by a login; closed at the logout
        for u in ('alice', 'dave', 'erin'):
            c = cls.server.imap_ssl()
            c.login(u + '@example.org', 'pw-%s-x1' % u)
            c.select('INBOX')
            c.logout()

    def pending(self, user):
        pre = '%d.' % (user if isinstance(user, int) else L.user_id(self.server, user))
        try:
            return sorted(n for n in os.listdir(os.path.join(self.server.data_dir, 'pending'))
                          if n.startswith(pre))
        except FileNotFoundError:
            return []

    def deliver(self, user, msg):
        c = L.lmtp(self.server)
        try:
            return L.send(c, SENDER, [user], msg)[1][0]
        finally:
            c.close()

    def test_journal_then_login(self):
        user = 'alice@example.org'
        msgs = [body('journal-%d' % i, (b'line %d\r\n' % i) * (1 + 400 * i)) for i in range(4)]
        for m in msgs:
            self.assertEqual(self.deliver(user, m)[0], 250)
        # the first may still meet the store of the login closing
        self.assertGreaterEqual(len(self.pending(user)), 3)
        self.assertEqual(len(L.messages(self.server, user)), 4)
        c = self.server.imap_ssl()
        try:
            c.login(user, 'pw-alice-x1')
            typ, data = c.select('INBOX')
            self.assertEqual((typ, data[0]), ('OK', b'4'))
            typ, data = c.uid('FETCH', '1:*', '(UID BODY.PEEK[])')
            self.assertEqual(typ, 'OK')
            got = [(int(d[0].split(b'UID ')[1].split()[0]), d[1]) for d in data
                   if isinstance(d, tuple)]
            self.assertEqual([u for u, _ in got], [1, 2, 3, 4])
            for (_, data), m in zip(got, msgs):
                self.assertEqual(data, L.expected(SENDER, user, m))
            typ, data = c.uid('SEARCH', 'TEXT', 'journal-3')
            self.assertEqual(data[0], b'4')
            # the body's text, which the take-in read again from the file
            typ, data = c.uid('SEARCH', 'BODY', '"line 2"')
            self.assertEqual((typ, data[0]), ('OK', b'3'))
            self.assertEqual(self.pending(user), [])
            # a session has the store open: straight in, pushed to IDLE
            c.send(b'a1 IDLE\r\n')
            self.assertTrue(c.readline().startswith(b'+'))
            self.assertEqual(self.deliver(user, body('journal-idle'))[0], 250)
            lines = [c.readline().strip() for _ in range(1)]
            while lines[-1] != b'* 5 EXISTS' and len(lines) < 4:
                lines.append(c.readline().strip())
            self.assertEqual(lines[-1], b'* 5 EXISTS', lines)
            c.send(b'DONE\r\n')
            while not c.readline().startswith(b'a1 '):
                pass
            self.assertEqual(self.pending(user), [])
            c.logout()
        finally:
            harness.close_quietly(c)
        self.assertEqual(len(L.messages(self.server, user)), 5)
        self.assertServerAlive()

    def test_deleted_account_keeps_journaled_mail(self):
        user = 'erin@example.org'
        uid = L.user_id(self.server, user)
        msgs = [body('gone-%d' % i) for i in range(3)]
        for m in msgs:
            self.assertEqual(self.deliver(user, m)[0], 250)
        self.assertGreaterEqual(len(self.pending(user)), 2)
        rc, out, err = self.server.ctl('user', 'del', user)
        self.assertEqual(rc, 0, err)
        # the journal let them go into the mail kept in users/<id>
        self.assertEqual(self.pending(uid), [])
        new = os.path.join(self.server.data_dir, 'users', str(uid), 'Maildir', 'new')
        kept = []
        for n in sorted(os.listdir(new)):
            with open(os.path.join(new, n), 'rb') as f:
                kept.append(f.read())
        self.assertEqual(sorted(kept), sorted(L.expected(SENDER, user, m) for m in msgs))
        self.assertServerAlive()

    def test_quota_counts_journaled(self):
        user = 'dave@example.org'
        m = body('q', b'q' * 1000 + b'\r\n')
        codes = [self.deliver(user, m)[0] for _ in range(4)]
        # 4k holds three of about 1.25k; the fourth is over, though they
        # only wait in the journal
        self.assertEqual(codes, [250, 250, 250, 552])
        self.assertGreaterEqual(len(self.pending(user)), 2)
        self.assertEqual(len(L.messages(self.server, user)), 3)
        c = self.server.imap_ssl()
        try:
            c.login(user, 'pw-dave-x1')
            self.assertEqual(c.select('INBOX')[1][0], b'3')
            c.logout()
        finally:
            harness.close_quietly(c)
        self.assertEqual(self.pending(user), [])
        self.assertEqual(len(L.messages(self.server, user)), 3)


if __name__ == '__main__':
    harness.main()
