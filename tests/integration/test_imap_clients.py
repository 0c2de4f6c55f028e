"""Real IMAP clients against coffred: mbsync (isync) two-way sync of a
1,000-message account with several folders (flags and deletions in both
directions, then a second sync that changes nothing), curl fetching a
message by UID (byte-identical), and replays of Thunderbird's and Outlook's
start-up sequences against a 20,000-message INBOX, checking every answer."""
import base64
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import harness
import imap_util
from imap_util import ImapCase, Imap, make_message, quote, drop_messages

MBSYNC = shutil.which('mbsync')
CURL = shutil.which('curl')

SYNC_USER = 'sync@example.org'
SYNC_PASS = 'sync password 1234'
BIG_USER = 'big@example.org'
BIG_PASS = 'big mailbox password'
BIG_N = 20000

SYNC_FOLDERS = {None: 600, 'Work': 200, 'Lists': 150, 'Lists/Debian': 50}   # 1,000 in all

TB_HEADERS = ('From To Cc Bcc Subject Date Message-ID Priority X-Priority References '
              'Newsgroups In-Reply-To Content-Type Reply-To')


def maildir_folder(name):
    """Maildir++ directory of an IMAP folder name (storage.h)."""
    return '.' + '.'.join(c.replace('%', '%25').replace('.', '%2E') for c in name.split('/'))


def local_messages(root):
    """{relative folder: {Message-ID: maildir flags}} of an mbsync Maildir
    tree (SubFolders Verbatim)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if os.path.basename(dirpath) not in ('cur', 'new'):
            continue
        folder = os.path.relpath(os.path.dirname(dirpath), root)
        box = out.setdefault(folder, {})
        for fn in filenames:
            with open(os.path.join(dirpath, fn), 'rb') as f:
                head = f.read(4096)
            m = re.search(rb'^Message-ID: (<[^>]+>)', head, re.M | re.I)
            flags = fn.split(':2,', 1)[1] if ':2,' in fn else ''
            box[m.group(1).decode() if m else fn] = flags
    return out


def server_messages(c, folder):
    """{Message-ID: set of flags} of a server folder, and its UIDs."""
    info = c.select(folder)
    out = {}
    if not info['exists']:
        return out
    res = c.fetch('1:*', '(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])')
    for seq, (it, raw) in res.items():
        hdr = [v for k, v in it.items() if k.startswith('BODY[')][0]
        m = re.search(rb'<[^>]+>', hdr)
        out[m.group(0).decode()] = set(it['FLAGS']) - {'\\Recent'}
    return out


@unittest.skipUnless(MBSYNC, 'mbsync (isync) is not installed: scripts/install-deps')
class Mbsync(ImapCase):
    USERS = ((SYNC_USER, SYNC_PASS),)

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        n = 0
        cls.ids = {}
        for folder, count in SYNC_FOLDERS.items():
            msgs = []
            for i in range(count):
                n += 1
                msgs.append(make_message(n, to=SYNC_USER, subject='%s %d' % (folder or 'INBOX', n)))
            drop_messages(cls.server, SYNC_USER, msgs,
                          folder=maildir_folder(folder) if folder else None)
        cls.total = n
        cls.local = tempfile.mkdtemp(prefix='coffre-mbsync-')

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.local, ignore_errors=True)
        super().tearDownClass()

    def mbsyncrc(self):
        root = os.path.join(self.local, 'mail')
        os.makedirs(root, exist_ok=True)
        rc = os.path.join(self.local, 'mbsyncrc')
        with open(rc, 'w') as f:
            f.write('''IMAPAccount coffre
Host 127.0.0.1
Port %d
User %s
Pass "%s"
SSLType IMAPS
SSLVersions TLSv1.2 TLSv1.3
CertificateFile %s
PipelineDepth 50

IMAPStore coffre-remote
Account coffre

MaildirStore coffre-local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel coffre
Far :coffre-remote:
Near :coffre-local:
Patterns *
Create Both
Expunge Both
Remove None
Sync All
SyncState *
''' % (self.server.ports['imaps'], SYNC_USER, SYNC_PASS, self.server.cert, root, root))
        return rc, root

    def run_mbsync(self, rc):
        r = subprocess.run([MBSYNC, '-c', rc, '-a'], capture_output=True, text=True,
                           timeout=600)
        self.assertEqual(r.returncode, 0, 'mbsync failed:\n%s\n%s' % (r.stdout, r.stderr))
        return r

    def server_state(self):
        c = self.login(SYNC_USER, SYNC_PASS)
        out = {}
        for folder in SYNC_FOLDERS:
            out[folder or 'INBOX'] = server_messages(c, folder or 'INBOX')
        c.logout()
        return out

    def test_two_way_sync(self):
        rc, root = self.mbsyncrc()
        # 1. first sync: everything comes down
        self.run_mbsync(rc)
        local = local_messages(root)
        server = self.server_state()
        for folder in server:
            with self.subTest(folder=folder):
                self.assertEqual(set(local.get(folder, {})), set(server[folder]))
        self.assertEqual(sum(len(v) for v in server.values()), self.total)

        # 2. changes on both sides
        c = self.login(SYNC_USER, SYNC_PASS)
        c.select('Work')
        c.ok('STORE 1:5 +FLAGS (\\Seen)')             # server: 5 seen in Work
        c.ok('STORE 6 +FLAGS (\\Deleted)')            # server: one deletion
        c.ok('EXPUNGE')
        c.append('Lists', make_message(5000, to=SYNC_USER, subject='server new'))
        work = server_messages(c, 'Work')
        c.logout()
        server_seen_ids = {mid for mid, fl in work.items() if '\\Seen' in fl}
        self.assertEqual(len(server_seen_ids), 5)

        inbox_cur = os.path.join(root, 'INBOX', 'cur')
        inbox_new = os.path.join(root, 'INBOX', 'new')
        files = sorted(os.listdir(inbox_cur)) + sorted(os.listdir(inbox_new))
        self.assertGreaterEqual(len(files), 10)
        flagged_local, deleted_local = [], []
        for k, fn in enumerate(files[:7]):
            d = inbox_cur if fn in os.listdir(inbox_cur) else inbox_new
            p = os.path.join(d, fn)
            with open(p, 'rb') as f:
                mid = re.search(rb'^Message-ID: (<[^>]+>)', f.read(4096), re.M).group(1).decode()
            if k < 4:
                # local: flag 4 messages (Maildir info 'F')
                base, _, fl = fn.partition(':2,')
                os.rename(p, os.path.join(inbox_cur, base + ':2,' + ''.join(sorted(fl + 'F'))))
                flagged_local.append(mid)
            elif k < 6:
                os.unlink(p)            # local: 2 deletions
                deleted_local.append(mid)
        # local: a new message in Work
        newmsg = make_message(6000, to=SYNC_USER, subject='local new')
        with open(os.path.join(root, 'Work', 'new', '1700000000.local1.host'), 'wb') as f:
            f.write(newmsg)

        # 3. second sync: both directions
        self.run_mbsync(rc)
        server = self.server_state()
        local = local_messages(root)
        for folder in server:
            with self.subTest(folder=folder):
                self.assertEqual(set(local.get(folder, {})), set(server[folder]))
        for mid in flagged_local:
            self.assertIn('\\Flagged', server['INBOX'][mid])
        for mid in deleted_local:
            self.assertNotIn(mid, server['INBOX'])
        self.assertIn('<m6000@example.net>', server['Work'])
        self.assertIn('<m5000@example.net>', local['Lists'])
        for mid in server_seen_ids:
            self.assertIn('S', local['Work'][mid])
        self.assertEqual(len(server['Work']), SYNC_FOLDERS['Work'] - 1 + 1)
        self.assertEqual(len(server['INBOX']), SYNC_FOLDERS[None] - 2)

        # 4. a third sync changes nothing on either side
        c = self.login(SYNC_USER, SYNC_PASS)
        before_status = [c.ok('STATUS %s (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)' % quote(f or 'INBOX'))
                         for f in SYNC_FOLDERS]
        c.logout()
        before_local = local_messages(root)
        before_files = sorted(os.path.relpath(os.path.join(d, f), root)
                              for d, _, fs in os.walk(root) for f in fs
                              if not f.startswith('.mbsync'))
        r = self.run_mbsync(rc)
        c = self.login(SYNC_USER, SYNC_PASS)
        after_status = [c.ok('STATUS %s (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)' % quote(f or 'INBOX'))
                        for f in SYNC_FOLDERS]
        c.logout()
        after_files = sorted(os.path.relpath(os.path.join(d, f), root)
                             for d, _, fs in os.walk(root) for f in fs
                             if not f.startswith('.mbsync'))
        self.assertEqual(before_status, after_status)
        self.assertEqual(before_files, after_files)
        self.assertEqual(before_local, local_messages(root))
        self.assertEqual(server, self.server_state())


@unittest.skipUnless(CURL, 'curl is not installed')
class Curl(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        cls.msgs = [make_message(i, body='line %d\r\n' % i * 50) for i in range(1, 4)]
        cls.msgs.append([e for n, e, x in imap_util.corpus() if n.startswith('13-')][0])
        cls.uids = []
        for m in cls.msgs:
            r = c.append('INBOX', m)
            cls.uids.append(r[1] if r else None)
        c.logout()

    def curl(self, url, *extra):
        r = subprocess.run([CURL, '-sS', '--cacert', self.server.cert,
                            '-u', '%s:%s' % (imap_util.USER, imap_util.PASS)] + list(extra) +
                           [url], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_fetch_by_uid_imaps(self):
        for m, uid in zip(self.msgs, self.uids):
            with self.subTest(uid=uid):
                got = self.curl('imaps://127.0.0.1:%d/INBOX;UID=%d' % (
                    self.server.ports['imaps'], uid))
                self.assertEqual(got, m)

    def test_fetch_by_uid_starttls(self):
        got = self.curl('imap://127.0.0.1:%d/INBOX;UID=%d' % (self.server.ports['imap'],
                                                             self.uids[1]), '--ssl-reqd')
        self.assertEqual(got, self.msgs[1])

    def test_fetch_section(self):
        got = self.curl('imaps://127.0.0.1:%d/INBOX;UID=%d;SECTION=HEADER' % (
            self.server.ports['imaps'], self.uids[0]))
        self.assertEqual(got, self.msgs[0].partition(b'\r\n\r\n')[0] + b'\r\n\r\n')

    def test_list_and_search(self):
        got = self.curl('imaps://127.0.0.1:%d/' % self.server.ports['imaps'])
        self.assertIn(b'INBOX', got)
        self.assertIn(b'Sent', got)
        got = self.curl('imaps://127.0.0.1:%d/INBOX' % self.server.ports['imaps'],
                        '-X', 'UID SEARCH ALL')
        self.assertEqual(got.strip(), b'* SEARCH ' + ' '.join(map(str, self.uids)).encode())


class ClientReplays(ImapCase):
    """Thunderbird's and Outlook's start-up against 20,000 messages dropped
    into the Maildir before the first login (index built on first open)."""

    USERS = ((BIG_USER, BIG_PASS), (imap_util.USER, imap_util.PASS))

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        # every 10th message seen (cur/ with :2,S), every 100th also flagged
        news, curs = [], []
        for i in range(1, BIG_N + 1):
            m = make_message(i, to=BIG_USER, extra='References: <r%d@example.net>\r\n' % i)
            (curs if i % 10 == 0 else news).append((i, m))
        drop_messages(cls.server, BIG_USER, [m for i, m in news])
        md = imap_util.user_maildir(cls.server, BIG_USER)
        pw = harness.RUN_USER
        import pwd
        ent = pwd.getpwnam(pw) if os.getuid() == 0 else None
        for i, m in curs:
            flags = 'FS' if i % 100 == 0 else 'S'
            p = os.path.join(md, 'cur', '1700000000.M%dP1.drop:2,%s' % (i, flags))
            with open(p, 'wb') as f:
                f.write(m)
            if ent:
                os.chown(p, ent.pw_uid, ent.pw_gid)
        for f in ('Work', 'Lists'):
            drop_messages(cls.server, BIG_USER, [make_message(90000 + k, to=BIG_USER)
                                                 for k in range(5)], folder=maildir_folder(f))
        cls.appended = 0

    def big(self):
        c = imap_util.Imap(self.server.raw('imaps', tls=True, timeout=300))
        self.addCleanup(c.close)
        return c

    def check_inbox_answers(self, c, info, total):
        self.assertEqual(info['exists'], total)
        self.assertIsNotNone(info['uidvalidity'])
        self.assertIsNotNone(info['uidnext'])
        # UID FETCH 1:* (FLAGS): every message, once, in sequence order
        u = c.ok('UID FETCH 1:* (FLAGS)')
        rows = []
        for r in u:
            m = re.match(rb'\* (\d+) FETCH \((.*)\)$', r)
            if not m:
                continue
            it = imap_util.parse_fetch(r)[1]
            rows.append((int(m.group(1)), int(it['UID']), set(it['FLAGS'])))
        self.assertEqual([s for s, _, _ in rows], list(range(1, total + 1)))
        uids = [u_ for _, u_, _ in rows]
        self.assertEqual(uids, sorted(set(uids)))
        self.assertLess(uids[-1], info['uidnext'])
        seen = sum(1 for _, _, f in rows if '\\Seen' in f)
        flagged = sum(1 for _, _, f in rows if '\\Flagged' in f)
        self.assertEqual(flagged, BIG_N // 100)
        self.assertGreaterEqual(seen, BIG_N // 10)
        return uids

    def check_header_fetch(self, c, uids, items, field_names):
        """UID FETCH of the last 500 messages: each answer's headers belong
        to one message (Subject and Message-ID agree)."""
        want = uids[-500:]
        u = c.ok('UID FETCH %d:%d (%s)' % (want[0], want[-1], items))
        got = {}
        for r in u:
            if not re.match(rb'\* \d+ FETCH', r):
                continue
            n, it, raw = imap_util.parse_fetch(r)
            hdr = [v for k, v in it.items() if k.startswith('BODY[')][0]
            got[int(it['UID'])] = (it, hdr)
        self.assertEqual(sorted(got), want)
        for uid, (it, hdr) in got.items():
            m1 = re.search(rb'^Subject: message (\d+)\r$', hdr, re.M)
            m2 = re.search(rb'^Message-ID: <m(\d+)@example.net>\r$', hdr, re.M)
            self.assertTrue(m1 and m2, hdr)
            self.assertEqual(m1.group(1), m2.group(1))
            self.assertTrue(hdr.endswith(b'\r\n\r\n'), hdr[-20:])
            for name in field_names:
                self.assertIsNotNone(re.search(rb'^' + name + rb':', hdr, re.M | re.I),
                                     (name, hdr))
            if 'RFC822.SIZE' in it:
                self.assertGreater(int(it['RFC822.SIZE']), len(hdr))
        return got

    def test_thunderbird_startup(self):
        c = self.big()
        u = c.ok('CAPABILITY')
        caps = set(u[0].decode().upper().split()[2:])
        self.assertTrue({'IMAP4REV1', 'AUTH=PLAIN', 'SASL-IR'} <= caps, caps)
        ir = base64.b64encode(('\0%s\0%s' % (BIG_USER, BIG_PASS)).encode()).decode()
        c.ok('AUTHENTICATE PLAIN %s' % ir)
        # capabilities after login: from the tagged OK, else asked again
        m = re.search(rb'\[CAPABILITY ([^\]]*)\]', c.last_tagged)
        if m:
            caps = set(m.group(1).decode().upper().split())
        else:
            u = c.ok('CAPABILITY')
            caps = set(u[0].decode().upper().split()[2:])
        self.assertTrue({'IMAP4REV1', 'IDLE', 'ID', 'UIDPLUS', 'MOVE', 'SPECIAL-USE',
                         'NAMESPACE'} <= caps, caps)
        u = c.ok('ID ("name" "Thunderbird" "version" "115.3.1")')
        self.assertEqual(len(imap_util.untagged_of(u, 'ID')), 1)
        if 'UTF8=ACCEPT' in caps:
            c.ok('ENABLE UTF8=ACCEPT')
        c.ok('NAMESPACE')
        u = c.ok('LIST (SPECIAL-USE) "" "*"')
        self.assertEqual(len(u), 5, u)
        u = c.ok('LIST "" "*"')
        names = []
        for r in u:
            m = re.match(rb'\* LIST \([^)]*\) "/" "?([^"]*)"?$', r)
            self.assertIsNotNone(m, r)
            names.append(m.group(1).decode())
        self.assertTrue({'INBOX', 'Work', 'Lists', 'Sent', 'Drafts', 'Trash'} <= set(names), names)
        c.ok('LSUB "" "*"')
        for n in names:
            u = c.ok('STATUS %s (UIDNEXT MESSAGES UNSEEN RECENT)' % quote(n))
            m = re.search(rb'MESSAGES (\d+)', u[0])
            want = {'INBOX': BIG_N + self.appended, 'Work': 5, 'Lists': 5}.get(n, 0)
            self.assertEqual(int(m.group(1)), want, (n, u))
            if n == 'INBOX':
                self.assertIn(b'UNSEEN %d' % (BIG_N - BIG_N // 10 + self.appended), u[0])
        info = c.select('INBOX')
        uids = self.check_inbox_answers(c, info, BIG_N + self.appended)
        self.check_header_fetch(c, uids[:BIG_N], 'UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (%s)]'
                                % TB_HEADERS, [b'From', b'To', b'Subject', b'Date', b'Message-ID',
                                               b'References', b'Content-Type'])
        # the header fetch is a peek
        res = c.fetch('%d' % uids[-1], '(FLAGS)', uid=True)
        self.assertNotIn('\\Seen', list(res.values())[0][0]['FLAGS'])
        # IDLE on INBOX; a delivery shows up
        tag = c.tag()
        c.send('%s IDLE\r\n' % tag)
        self.assertTrue(c.line().startswith(b'+'))
        o = self.login(BIG_USER, BIG_PASS)
        o.append('INBOX', make_message(BIG_N + 1, to=BIG_USER))
        ClientReplays.appended += 1
        r = c.line(timeout=5)
        self.assertEqual(r, b'* %d EXISTS' % (BIG_N + self.appended))
        c.send('DONE\r\n')
        c.until_tagged(tag)
        c.logout()

    def test_outlook_startup(self):
        c = self.big()
        u = c.ok('CAPABILITY')
        caps = set(u[0].decode().upper().split()[2:])
        self.assertIn('XLIST', caps)
        c.ok('LOGIN %s %s' % (quote(BIG_USER), quote(BIG_PASS)))
        u = c.ok('XLIST "" "*"')
        uses = {}
        for r in u:
            m = re.match(rb'\* XLIST \(([^)]*)\) "/" "?([^"]*)"?$', r)
            self.assertIsNotNone(m, r)
            uses[m.group(2).decode()] = m.group(1).decode().lower()
        for n, use in (('Sent', '\\sent'), ('Trash', '\\trash'), ('Drafts', '\\drafts')):
            self.assertIn(use, uses.get(n, ''), uses)
        info = c.select('INBOX')
        # Outlook needs both in every SELECT answer
        self.assertIsNotNone(info['exists'])
        self.assertIsNotNone(info['uidvalidity'])
        uids = self.check_inbox_answers(c, info, BIG_N + self.appended)
        u = c.ok('UID FETCH 1:* (UID FLAGS)')
        self.assertEqual(len([r for r in u if b' FETCH ' in r]), BIG_N + self.appended)
        self.check_header_fetch(c, uids[:BIG_N], 'UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[HEADER]',
                                [b'From', b'To', b'Subject', b'Date', b'Message-ID'])
        # one message body
        res = c.fetch('%d' % uids[5], '(UID RFC822.SIZE BODY.PEEK[])', uid=True)
        it = list(res.values())[0][0]
        self.assertEqual(int(it['RFC822.SIZE']), len(it['BODY[]']))
        self.assertIn(b'This is the body of message', it['BODY[]'])
        # polling with NOOP; a new message appears at the next NOOP
        self.assertEqual([r for r in c.ok('NOOP') if b'EXISTS' in r], [])
        o = self.login(BIG_USER, BIG_PASS)
        o.append('INBOX', make_message(BIG_N + 2, to=BIG_USER))
        ClientReplays.appended += 1
        u = c.ok('NOOP')
        self.assertIn(b'* %d EXISTS' % (BIG_N + self.appended), u)
        for f in ('Work', 'Lists', 'Sent'):
            c.ok('STATUS %s (MESSAGES UNSEEN)' % f)
        c.logout()


if __name__ == '__main__':
    harness.main()
