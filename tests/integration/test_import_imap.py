"""coffrectl import --from-imap against a live, throw-away Dovecot.

Two users' accounts are filled in Dovecot over IMAP (folders at several
levels and with non-ASCII names, keywords, internal dates, subscriptions
including one to a folder that does not exist, special-use folders, holes
in the UIDs from expunges, a message larger than a literal kept inline),
imported into the coffre data directory that a running coffred serves,
and then every folder is compared through both servers' IMAP: UIDVALIDITY,
UIDNEXT, UIDs, FLAGS with keywords, INTERNALDATE, RFC822.SIZE, BODY[]
bytes, subscriptions and special-use attributes.

Then the source changes (new messages, flags set and cleared, an expunge)
and a second run copies only the new messages, applies the flag changes
(through CONDSTORE's CHANGEDSINCE, as Dovecot offers it), reports the
expunge without applying it, and a session that had the folder selected
in coffred sees the new messages. A wrong password and an untrusted
certificate are refused with a clear message.

Needs root and Dovecot (scripts/install-deps), as the other Dovecot-backed
checks do."""
import datetime
import os
import re
import shutil
import socket
import threading
import time
import unittest

import harness

CoffreServer = harness.Server   # before imap_util may swap it for Dovecot

import imap_util
from imap_util import Imap, USER, PASS, USER2, PASS2, quote

SPECIAL = {'\\Sent', '\\Drafts', '\\Trash', '\\Junk', '\\Archive', '\\All', '\\Flagged'}
CAFE = 'Caf&AOk-'            # "Café" in modified UTF-7
DEEP = 'Work/Projects/2026'


def message(n, folder, size=0):
    body = ('Message %d in %s.\r\n' % (n, folder)) + ('x' * 70 + '\r\n') * (size // 72)
    return ('From: Sender %d <s%d@example.net>\r\nTo: alice@example.org\r\n'
            'Subject: note %d (%s)\r\nMessage-ID: <%d.%s@example.net>\r\n'
            'Date: Mon, 2 Mar 2026 10:%02d:00 +0100\r\n\r\n%s'
            % (n, n, n, folder, n, re.sub(r'\W', '', folder), n % 60, body))


def connect(server, user, password):
    c = Imap(server.raw('imaps', tls=True))
    c.login(user, password)
    return c


def listing(c):
    """{name: set of special-use attributes} of LIST RETURN (SPECIAL-USE)."""
    out = {}
    for r in c.ok('LIST "" "*" RETURN (SPECIAL-USE)'):
        if not r.startswith(b'* LIST '):
            continue
        p = imap_util.Parser(r)
        p.i = len(b'* LIST ')
        attrs = p.value()
        p.sp()
        p.value()
        p.sp()
        name = p.value()
        name = name.decode() if isinstance(name, bytes) else str(name)
        if any(str(a).lower() in ('\\noselect', '\\nonexistent') for a in attrs):
            continue
        out[name] = {str(a) for a in attrs if str(a) in SPECIAL}
    return out


def subscriptions(c):
    out = set()
    for r in c.ok('LSUB "" "*"'):
        if r.startswith(b'* LSUB '):
            p = imap_util.Parser(r)
            p.i = len(b'* LSUB ')
            p.value()
            p.sp()
            p.value()
            p.sp()
            name = p.value()
            out.add(name.decode() if isinstance(name, bytes) else str(name))
    return out


def date_of(s):
    s = s.decode() if isinstance(s, bytes) else str(s)
    return datetime.datetime.strptime(s.strip(), '%d-%b-%Y %H:%M:%S %z').timestamp()


def folder_state(c, name):
    """(uidvalidity, uidnext, {uid: (flags, date, size, body)})."""
    info = c.select(name, examine=True)
    msgs = {}
    if info['exists']:
        for _seq, (it, _raw) in c.fetch('1:*', '(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])',
                                        uid=True).items():
            flags = frozenset(str(f) for f in it['FLAGS'] if str(f) != '\\Recent')
            body = it['BODY[]']
            msgs[int(it['UID'])] = (flags, date_of(it['INTERNALDATE']), int(it['RFC822.SIZE']),
                                    bytes(body, 'latin-1') if isinstance(body, str) else body)
    return info['uidvalidity'], info['uidnext'], msgs


def fill(d, user_tag):
    """Folders, messages, keywords, dates, subscriptions and holes."""
    for name in ('Work', 'Work/Projects', DEEP, CAFE, 'Lists', 'Ghost'):
        d.ok('CREATE %s' % quote(name))
    for name in ('Work', DEEP, CAFE, 'Ghost'):
        d.ok('SUBSCRIBE %s' % quote(name))
    d.ok('DELETE Ghost')   # its subscription stays
    plan = {
        'INBOX': 9, 'Work': 7, DEEP: 4, CAFE: 3, 'Lists': 6, 'Sent': 4, 'Drafts': 2,
        'Archive': 3, 'Trash': 0,
    }
    flagsets = [(), ('\\Seen',), ('\\Seen', '\\Answered'), ('\\Flagged', '$Forwarded'),
                ('\\Draft',), ('\\Seen', 'Work', '$label1'), ('\\Deleted',),
                ('$Junk', 'project-x')]
    n = 0
    for folder, count in plan.items():
        for i in range(count):
            n += 1
            size = 150000 if (folder == 'Work' and i == 2) else (i * 300)
            date = '%02d-Feb-2026 %02d:%02d:17 %s' % (1 + i, i, n % 60,
                                                     '+0530' if i % 2 else '-0800')
            flags = [f for f in flagsets[(n + i) % len(flagsets)] if f != '\\Deleted']
            d.append(folder, message(n, folder + user_tag, size), flags=flags, date=date)
        # holes: expunge the second and the fourth message
        if count >= 4:
            d.select(folder)
            d.ok('STORE 2,4 +FLAGS.SILENT (\\Deleted)')
            d.ok('EXPUNGE')
            d.ok('CLOSE')


@unittest.skipIf(imap_util.AGAINST_DOVECOT, 'imports from Dovecot into coffre')
@unittest.skipUnless(os.geteuid() == 0 and shutil.which('dovecot'),
                     'needs root and Dovecot (scripts/install-deps)')
class ImportImap(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        try:
            cls.start_and_fill()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start_and_fill(cls):
        cls.servers = []
        cls.coffre = CoffreServer(name='coffre')
        cls.servers.append(cls.coffre)
        cls.dovecot = imap_util.DovecotServer(name='dovecot')
        cls.servers.append(cls.dovecot)
        for s in cls.servers:
            s.start()
        cls.users = [(USER, PASS, 'coffre pass 1'), (USER2, PASS2, 'coffre pass 2')]
        for user, src_pw, dst_pw in cls.users:
            cls.dovecot.add_user(user, src_pw)
            cls.coffre.add_user(user, dst_pw)
        for k, (user, src_pw, _) in enumerate(cls.users):
            d = connect(cls.dovecot, user, src_pw)
            fill(d, '-%d' % k)
            d.logout()

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers:
            try:
                s.stop()
            finally:
                s.cleanup()

    def run_import(self, user, password, url=None, ca=True, extra=()):
        url = url or 'imaps://localhost:%d' % self.dovecot.ports['imaps']
        args = ['import', '--from-imap', url, user, '--source-user', user, '--password-stdin']
        if ca:
            args += ['--ca-file', self.dovecot.cert]
        return self.coffre.ctl(*(args + list(extra)), input=password + '\n', timeout=120)

    def compare(self, user, src_pw, dst_pw, kept_here=None):
        """Every folder of the source against coffre's. kept_here: {folder:
        {uid}} expunged on the source and still in coffre."""
        kept_here = kept_here or {}
        d = connect(self.dovecot, user, src_pw)
        c = connect(self.coffre, user, dst_pw)
        try:
            dl, cl = listing(d), listing(c)
            self.assertEqual(set(dl), set(cl), 'folders differ')
            for name, attrs in dl.items():
                self.assertEqual(attrs, cl[name], 'special-use of %s' % name)
            self.assertEqual(subscriptions(d), subscriptions(c), 'subscriptions')
            for name in sorted(dl):
                dv, dn, dm = folder_state(d, name)
                cv, cn, cm = folder_state(c, name)
                self.assertEqual(dv, cv, 'UIDVALIDITY of %s' % name)
                self.assertEqual(dn, cn, 'UIDNEXT of %s' % name)
                extra = kept_here.get(name, set())
                self.assertEqual(set(dm) | extra, set(cm), 'UIDs of %s' % name)
                for uid, want in dm.items():
                    got = cm[uid]
                    self.assertEqual(want[0], got[0], 'FLAGS of %s UID %d' % (name, uid))
                    self.assertEqual(want[1], got[1], 'INTERNALDATE of %s UID %d' % (name, uid))
                    self.assertEqual(want[2], got[2], 'RFC822.SIZE of %s UID %d' % (name, uid))
                    self.assertEqual(want[3], got[3], 'BODY[] of %s UID %d' % (name, uid))
        finally:
            d.logout()
            c.logout()

    def test_1_import_then_incremental(self):
        # coffred serves the data directory all along; the first run gives
        # every folder the source's UIDVALIDITY, so a session watches a
        # folder from the second run on
        for k, (user, src_pw, dst_pw) in enumerate(self.users):
            # the second user over imap:// with STARTTLS
            url = None if k == 0 else 'imap://localhost:%d' % self.dovecot.ports['imap']
            rc, out, err = self.run_import(user, src_pw, url=url, extra=('--jobs', '3'))
            self.assertEqual(rc, 0, out + err)
            self.assertRegex(out, r'imported 11 folders: [1-9]\d* new messages')
            self.compare(user, src_pw, dst_pw)
        self.assertEqual(self.coffre.sanitizer_reports(), [])
        watcher = connect(self.coffre, USER, self.users[0][2])
        before = watcher.select('Work')['exists']

        # nothing changed: a second run adds nothing
        rc, out, err = self.run_import(USER, PASS)
        self.assertEqual(rc, 0, out + err)
        self.assertIn(': 0 new messages', out)
        self.assertIn('0 flag updates', out)

        # the source changes: three new messages, flags set and cleared, an
        # expunge
        d = connect(self.dovecot, USER, PASS)
        d.select('Work')
        uids = sorted(int(it['UID']) for it, _ in d.fetch('1:*', '(UID)').values())
        d.ok('UID STORE %d +FLAGS (\\Flagged NewKeyword)' % uids[0])
        d.ok('UID STORE %d FLAGS (\\Answered)' % uids[1])
        d.ok('UID STORE %d +FLAGS.SILENT (\\Deleted)' % uids[-1])
        d.ok('EXPUNGE')
        for i in range(3):
            d.append('Work', message(100 + i, 'Work-new'), flags=['\\Seen', 'Later'],
                     date='03-Mar-2026 12:00:0%d +0000' % i)
        # and a folder emptied on the source
        d.select('Archive')
        archived = sorted(int(it['UID']) for it, _ in d.fetch('1:*', '(UID)').values())
        self.assertTrue(archived)
        d.ok('STORE 1:* +FLAGS.SILENT (\\Deleted)')
        d.ok('EXPUNGE')
        d.logout()

        rc, out, err = self.run_import(USER, PASS)
        self.assertEqual(rc, 0, out + err)
        self.assertIn(': 3 new messages', out)
        self.assertIn('2 flag updates', out)
        self.assertIn('%d expunged on the source' % (1 + len(archived)), out)
        self.assertRegex(out, r'flags of [1-9]\d* folders? by CHANGEDSINCE')
        self.compare(USER, PASS, self.users[0][2], kept_here={'Work': {uids[-1]},
                                                          'Archive': set(archived)})

        # the session selected in coffred hears of the three new messages
        self.assertEqual(self.exists_after_noop(watcher), before + 3)
        watcher.logout()

        # a folder made again on the source has a new UIDVALIDITY: its UIDs
        # name other messages now, and the run says so and leaves it alone
        d = connect(self.dovecot, USER, PASS)
        d.ok('DELETE Lists')
        d.ok('CREATE Lists')
        d.append('Lists', message(300, 'Lists-again'))
        d.logout()
        c = connect(self.coffre, USER, self.users[0][2])
        lists_before = folder_state(c, 'Lists')
        c.logout()
        rc, out, err = self.run_import(USER, PASS)
        self.assertEqual(rc, 9, out + err)
        self.assertIn('imported 10 folders (1 failed, 0 skipped)', out)
        self.assertRegex(err, r'Lists: not imported: UIDVALIDITY changed on the source since '
                              r'the last run \(\d+, now \d+\)')
        c = connect(self.coffre, USER, self.users[0][2])
        self.assertEqual(folder_state(c, 'Lists'), lists_before)
        c.logout()

    def exists_after_noop(self, c):
        """The EXISTS a selected session hears by NOOP (coffred looks for
        other processes' commits every few seconds)."""
        deadline = time.monotonic() + 30
        while True:
            u = c.ok('NOOP')
            exists = [int(m.group(1)) for m in (re.match(rb'\* (\d+) EXISTS', r) for r in u)
                      if m]
            if exists or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertTrue(exists, 'no EXISTS within 30 s')
        return exists[-1]

    def test_2_wrong_password(self):
        rc, out, err = self.run_import(USER, 'not the password')
        self.assertNotEqual(rc, 0)
        self.assertIn('login as %s refused by the server' % USER, err)

    def test_3_untrusted_certificate(self):
        # no --ca-file: the test CA is not in the system trust store
        rc, out, err = self.run_import(USER, PASS, ca=False)
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, r'certificate of localhost refused')
        # another CA than the one that signed it
        rc, out, err = self.run_import(USER, PASS, ca=False,
                                       extra=('--ca-file', self.coffre.cert))
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, r'certificate of localhost refused')

    def test_4_no_plaintext_login(self):
        """imap:// to a server that does not offer STARTTLS: no login is
        tried, the password never leaves."""
        got = []
        srv = socket.socket()
        srv.bind(('127.0.0.1', 0))
        srv.listen(1)
        port = srv.getsockname()[1]

        def serve():
            c, _ = srv.accept()
            c.settimeout(20)
            c.sendall(b'* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] plaintext only\r\n')
            data = b''
            try:
                while True:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                    for line in data.split(b'\r\n')[:-1]:
                        tag = line.split(b' ', 1)[0]
                        if b' CAPABILITY' in line.upper():
                            c.sendall(b'* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\n'
                                      + tag + b' OK done\r\n')
                        elif line:
                            c.sendall(tag + b' OK fine\r\n')
                    data = data.split(b'\r\n')[-1]
                    got.append(chunk)
            except OSError:
                pass
            c.close()

        t = threading.Thread(target=serve)
        t.start()
        try:
            rc, out, err = self.run_import(USER, PASS, url='imap://localhost:%d' % port)
        finally:
            t.join(30)
            srv.close()
        self.assertNotEqual(rc, 0)
        self.assertIn('does not offer STARTTLS; not logging in over plaintext', err)
        sent = b''.join(got)
        self.assertNotIn(PASS.encode(), sent)
        self.assertNotIn(b'AUTHENTICATE', sent.upper())
        self.assertNotIn(b'LOGIN', sent.upper().replace(b'LOGOUT', b''))


if __name__ == '__main__':
    unittest.main(verbosity=2)
