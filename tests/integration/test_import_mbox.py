"""coffrectl import --from-mbox: mboxrd, mboxo and mboxcl2 files into a
running coffred, checked over IMAP byte for byte: the From_ quoting undone
as each format says, Status/X-Status/X-Keywords read into flags and
keywords and removed, the From_ line's date as INTERNALDATE; a rerun adds
nothing, and a message appended to the file since is added alone."""
import imaplib
import os
import re
import ssl
import subprocess
import tempfile
import threading
import unittest

import harness
import lmtp_util
from harness import ServerTestCase

USER = 'mboxer@example.org'
USER2 = 'live@example.org'
PASS = 'mbox import password 1'

# The messages as they were received (LF line ends, as an mbox has them).
ORIG = [
    (b'From: a@example.org\nSubject: one\nMessage-ID: <1@x>\n\n'
     b'Hello.\nFrom here on, a line that starts with From.\n'
     b'>From one quoted by its writer\n>>From two of them\n\nFrom again after an empty line\n'),
    (b'From: b@example.org\nSubject: two\n\nplain body\n'),
    (b'From: c@example.org\nSubject: three\n\nlast one, no empty line at its end\n'),
]
META = [
    # header lines the mailer added, what they mean
    (b'Status: RO\nX-Status: AF\nX-Keywords: Work, $Label1\n',
     {b'\\Seen', b'\\Answered', b'\\Flagged', b'Work', b'$Label1'}),
    (b'Status: O\n', set()),
    (b'X-Status: DT\nX-UID: 17\n', {b'\\Deleted', b'\\Draft'}),
]
FROM_LINES = [b'From a@example.org Mon Jun  1 10:00:00 2020\n',
              b'From MAILER-DAEMON Sat Jan  3 01:05:34 1996\n',
              b'From c@example.org Tue Feb 29 23:59:59 2000 +0100\n']
DATES = ['01-Jun-2020 10:00:00 +0000', '03-Jan-1996 01:05:34 +0000',
         '29-Feb-2000 22:59:59 +0000']


def with_meta(msg, meta):
    head, _, body = msg.partition(b'\n\n')
    return head + b'\n' + meta + b'\n' + body


def rd_quote(body):
    return re.sub(rb'(?m)^(>*From )', rb'>\1', body)


def o_quote(body):
    return re.sub(rb'(?m)^From ', b'>From ', body)


def mbox(quote, msgs=ORIG):
    out = b''
    for i, m in enumerate(msgs):
        out += FROM_LINES[i] + quote(with_meta(m, META[i][0])) + b'\n'
    return out


def cl2(msgs=ORIG):
    out = b''
    for i, m in enumerate(msgs):
        head, _, body = with_meta(m, META[i][0]).partition(b'\n\n')
        out += (FROM_LINES[i] + head + b'\nContent-Length: %d\n\n' % len(body) + body + b'\n')
    return out


def crlf(b):
    return b.replace(b'\n', b'\r\n')


class ImportMbox(ServerTestCase):

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(USER, PASS)
        cls.server.add_user(USER2, PASS)
        cls.dir = tempfile.mkdtemp(prefix='mbox-', dir=cls.server.tmp)
        os.chmod(cls.dir, 0o755)

    def write(self, name, data):
        p = os.path.join(self.dir, name)
        with open(p, 'wb') as f:
            f.write(data)
        os.chmod(p, 0o644)
        return p

    def imp(self, *args, expect=0):
        rc, out, err = self.server.ctl('import', '--from-mbox', *args)
        self.assertEqual(rc, expect, out + err)
        return out

    def folder(self, name, user=USER):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = imaplib.IMAP4_SSL('127.0.0.1', self.server.ports['imaps'], ssl_context=ctx)
        c.login(user, PASS)
        try:
            typ, _ = c.select('"%s"' % name, readonly=True)
            self.assertEqual(typ, 'OK', name)
            typ, data = c.uid('FETCH', '1:*', '(UID FLAGS INTERNALDATE BODY.PEEK[])')
            out = []
            for item in data:
                if isinstance(item, tuple):
                    h = item[0]
                    flags = set(re.search(rb'FLAGS \(([^)]*)\)', h).group(1).split()) - \
                        {b'\\Recent'}
                    out.append((int(re.search(rb'UID (\d+)', h).group(1)), flags,
                                re.search(rb'INTERNALDATE "([^"]+)"', h).group(1).decode(),
                                item[1]))
            return out
        finally:
            c.logout()

    def check(self, got, originals):
        self.assertEqual(len(got), len(originals))
        for i, (uid, flags, date, body) in enumerate(got):
            with self.subTest(message=i):
                self.assertEqual(body, crlf(originals[i]), 'bytes as received')
                self.assertEqual(flags, META[i][1], 'flags and keywords')
                self.assertEqual(date, DATES[i], 'From_ line date')

    def test_mboxrd(self):
        p = self.write('rd', mbox(rd_quote))
        self.assertIn(b'>>>From two of them', mbox(rd_quote))
        out = self.imp(p, USER, '--folder', 'Imported/rd')
        self.assertIn('3 added', out)
        self.check(self.folder('Imported/rd'), ORIG)

    def test_mboxo(self):
        # mboxo cannot carry ">From " as it is: a message with ">>From "
        # comes back whole only when read as mboxo
        origs = [ORIG[0].replace(b'>From one quoted by its writer\n', b''), ORIG[1], ORIG[2]]
        data = mbox(o_quote, origs)
        self.assertIn(b'\n>>From two of them', data)
        p = self.write('Old.mbox', data)
        self.imp(p, USER, '--mbox-format', 'mboxo')
        self.check(self.folder('Old'), origs)
        # the same file read as mboxrd loses one '>' there: the formats differ
        self.imp(p, USER, '--folder', 'OldAsRd', '--mbox-format', 'mboxrd')
        got = self.folder('OldAsRd')
        self.assertIn(b'\r\n>From two of them', got[0][3])

    def test_mboxcl2_detected(self):
        data = cl2()
        self.assertIn(b'\n\nFrom again after an empty line', data)   # not quoted
        p = self.write('cl2', data)
        self.imp(p, USER, '--folder', 'CL2')
        self.check(self.folder('CL2'), ORIG)

    def test_rerun_and_append(self):
        data = mbox(rd_quote, ORIG[:2])
        p = self.write('inbox', data)
        out = self.imp(p, USER)
        self.assertIn('2 added', out)
        before = self.folder('INBOX')
        out = self.imp(p, USER)
        self.assertIn('0 added', out)
        self.assertIn('2 already present', out)
        self.assertEqual(self.folder('INBOX'), before)
        # the mailbox file grew: only the new message comes in
        with open(p, 'ab') as f:
            f.write(FROM_LINES[2] + rd_quote(with_meta(ORIG[2], META[2][0])) + b'\n')
        out = self.imp(p, USER)
        self.assertIn('1 added', out)
        got = self.folder('INBOX')
        self.assertEqual(got[:2], before)
        self.check(got, ORIG)

    def test_deliveries_during_import(self):
        """Mail delivered to INBOX while a big file is imported into it
        takes UIDs outside the file's: every imported message has the UID
        base + its position, none is skipped, no delivery is lost."""
        n = 4000
        body = b'From: bulk@example.org\nSubject: bulk %d\n\n' + b'line of text\n' * 40
        data = b''.join(FROM_LINES[0] + (body % i) + b'\n' for i in range(n))
        p = self.write('bulk', data)
        imp = subprocess.Popen([harness.COFFRECTL, '-c', self.server.conf_path, 'import',
                                '--from-mbox', p, USER2, '--folder', 'INBOX'],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        codes = []
        for i in range(30):
            c = lmtp_util.lmtp(self.server)
            try:
                _, replies = lmtp_util.send(c, 'x@example.net', [USER2],
                                            b'Subject: live %d\r\n\r\nlive\r\n' % i)
            finally:
                c.close()
            codes.append(replies[0][0])
        out, err = imp.communicate(timeout=300)
        self.assertEqual(imp.returncode, 0, out + err)
        self.assertIn('%d added' % n, out)
        self.assertEqual(codes, [250] * 30)
        got = self.folder('INBOX', USER2)
        self.assertEqual(len(got), n + 30, 'every message once')
        bulk = [(u, b) for u, _, _, b in got if b'Subject: bulk ' in b]
        live = [u for u, _, _, b in got if b'Subject: live ' in b]
        self.assertEqual(len(bulk), n)
        self.assertEqual(len(live), 30)
        base = bulk[0][0]
        for k, (u, b) in enumerate(bulk):
            self.assertEqual(u, base + k, 'the file keeps its UIDs in order')
            self.assertIn(b'Subject: bulk %d\r\n' % k, b)
        self.assertTrue(all(u < base or u >= base + n for u in live))

if __name__ == '__main__':
    unittest.main(verbosity=2)
