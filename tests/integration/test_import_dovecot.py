"""coffrectl import --from-dovecot-maildir against a real Dovecot 2.3.

A throw-away Dovecot (Debian's dovecot-imapd, imap_util.DovecotServer)
with three users, folders (one with a non-ASCII name), keywords,
subscriptions, expunges (UIDs with holes), and, for one user, files
compressed by Dovecot's zlib plugin for part of the time (zlib_save = gz,
then off), all filled over IMAP; one file dropped into new/ behind
Dovecot's back. Its tree is imported into a running coffred (one user by
PATH ADDRESS, two through --users-from, one through a %u pattern), then
every folder is compared over IMAP on both servers: UIDVALIDITY, UIDNEXT,
UIDs, FLAGS with keywords, INTERNALDATE, RFC822.SIZE, BODY[] bytes, and
LSUB. mbsync state made against Dovecot then continues against coffre
with nothing transferred. A second import adds nothing; an import killed
with SIGKILL half-way and run again ends with every message once.

Needs root, Dovecot and mbsync (scripts/install-deps)."""
import imaplib
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

import harness

CoffreServer = harness.Server   # before imap_util may swap it for Dovecot

import imap_util

PASS = 'import test password 1'
ALICE, BOB, CAROL, DAVE = ('alice@example.org', 'bob@example.org', 'carol@example.org',
                           'dave@example.org')
MBSYNC = shutil.which('mbsync')
NONASCII = 'Entwürfe'


def mutf7(name):
    """IMAP modified UTF-7 of name (RFC 3501 5.1.3)."""
    out, buf = [], []

    def flush():
        if buf:
            b = ''.join(buf).encode('utf-16-be')
            import base64
            out.append('&' + base64.b64encode(b).decode().rstrip('=').replace('/', ',') + '-')
            buf.clear()
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append('&-' if ch == '&' else ch)
        else:
            buf.append(ch)
    flush()
    return ''.join(out)


def imap(server, user):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = imaplib.IMAP4_SSL('127.0.0.1', server.ports['imaps'], ssl_context=ctx, timeout=60)
    c.login(user, PASS)
    return c


def q(name):
    return '"%s"' % mutf7(name).replace('\\', '\\\\').replace('"', '\\"')


def message(i, size=0, lf_from=False):
    body = 'Body of message %d.\r\n' % i
    if lf_from:
        body += 'From the start of a line\r\n>From quoted already\r\n'
    body += ('filler line %d with some words in it\r\n' % i) * (size // 40)
    return ('From: Sender %d <s%d@example.net>\r\nTo: someone@example.org\r\n'
            'Subject: message %d\r\nMessage-ID: <m%d@example.net>\r\n'
            'Date: Mon, 1 Jun 2020 10:%02d:00 +0000\r\n\r\n' % (i, i, i, i, i % 60)
            + body).encode()


FLAG_SETS = ['', '\\Seen', '\\Seen \\Answered', '\\Flagged', '\\Seen $Forwarded',
             '\\Draft', '\\Deleted \\Seen', 'Work $Label1', '\\Seen \\Flagged Todo Work']


def fill(c, folder, start, n, expunge=()):
    """n messages into folder with varied flags, keywords and dates; then
    the positions listed in expunge are expunged (holes in the UIDs)."""
    for k in range(n):
        i = start + k
        flags = FLAG_SETS[i % len(FLAG_SETS)]
        date = '"%02d-Mar-20%02d %02d:%02d:%02d %s"' % (1 + i % 28, 10 + i % 12, i % 24, i % 60,
                                                       (i * 7) % 60, ['+0000', '-0500', '+0130'][i % 3])
        typ, _ = c.append(q(folder), '(%s)' % flags, date, message(i, (i * 137) % 6000, i % 5 == 0))
        assert typ == 'OK', (folder, i)
    if expunge:
        c.select(q(folder))
        for pos in expunge:
            c.uid('STORE', str(pos), '+FLAGS.SILENT', '(\\Deleted)')
        # keep the \Deleted messages the fill gave: only those marked here go
        typ, data = c.uid('SEARCH', 'DELETED')
        keep = set(data[0].split()) - {str(p).encode() for p in expunge}
        if keep:
            c.uid('STORE', b','.join(sorted(keep)).decode(), '-FLAGS.SILENT', '(\\Deleted)')
        c.expunge()
        if keep:
            c.uid('STORE', b','.join(sorted(keep)).decode(), '+FLAGS.SILENT', '(\\Deleted)')
        c.unselect()   # not CLOSE: it would expunge them


FETCH_RE = re.compile(rb'UID (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE "([^"]+)"|RFC822\.SIZE (\d+)')


def folder_state(c, name):
    """Everything a client caches of a folder."""
    typ, st = c.status(q(name), '(UIDVALIDITY UIDNEXT MESSAGES)')
    assert typ == 'OK', (name, st)
    status = dict(re.findall(rb'(UIDVALIDITY|UIDNEXT|MESSAGES) (\d+)', st[0]))
    typ, _ = c.select(q(name), readonly=True)
    assert typ == 'OK', name
    msgs = {}
    if int(status[b'MESSAGES']):
        typ, data = c.uid('FETCH', '1:*', '(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])')
        assert typ == 'OK'
        for item in data:
            if not isinstance(item, tuple):
                continue
            head, body = item
            got = {}
            for m in FETCH_RE.finditer(head):
                if m.group(1):
                    got['uid'] = int(m.group(1))
                elif m.group(2) is not None:
                    got['flags'] = frozenset(f for f in m.group(2).split()
                                             if f.lower() != b'\\recent')
                elif m.group(3):
                    got['date'] = m.group(3)
                elif m.group(4):
                    got['size'] = int(m.group(4))
            got['body'] = body
            msgs[got['uid']] = got
    c.unselect()
    return {'uidvalidity': status[b'UIDVALIDITY'], 'uidnext': status[b'UIDNEXT'],
            'messages': msgs}


def listing(c, cmd, selectable_only=False):
    typ, data = getattr(c, cmd)('""', '*')
    names = set()
    for line in data:
        if line is None:
            continue
        if isinstance(line, tuple):
            line = line[0] + line[1]
        m = re.match(rb'\(([^)]*)\) (?:"[^"]*"|NIL) (.*)$', line)
        attrs = m.group(1).lower().split()
        if selectable_only and (b'\\noselect' in attrs or b'\\nonexistent' in attrs):
            continue
        name = m.group(2).strip(b'"')
        names.add(name.decode())
    return names


def account_state(server, user):
    c = imap(server, user)
    try:
        folders = sorted(listing(c, 'list', selectable_only=True))
        subs = listing(c, 'lsub')
        state = {}
        for f in folders:
            state[f] = folder_state(c, imaplib_decode(f))
        return folders, subs, state
    finally:
        c.logout()


def imaplib_decode(name):
    """A LIST name (modified UTF-7) back to Unicode."""
    import base64

    def dec(m):
        s = m.group(1)
        if not s:
            return '&'
        s = s.replace(',', '/')
        return base64.b64decode(s + '=' * (-len(s) % 4)).decode('utf-16-be')
    return re.sub(r'&([^-]*)-', dec, name)


def mbsyncrc(path, server, user, root):
    with open(path, 'w') as f:
        f.write('''IMAPAccount acct
Host 127.0.0.1
Port %d
User %s
Pass "%s"
SSLType IMAPS
CertificateFile %s

IMAPStore remote
Account acct

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel ch
Far :remote:
Near :local:
Patterns *
Create Near
Expunge None
Remove None
Sync All
SyncState *
''' % (server.ports['imaps'], user, PASS, server.cert, root, root))


def local_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs if not f.startswith('.mbsync'))


@unittest.skipIf(imap_util.AGAINST_DOVECOT, 'compares coffre with Dovecot itself')
@unittest.skipUnless(os.geteuid() == 0 and shutil.which('dovecot'),
                     'needs root and Dovecot (scripts/install-deps)')
class ImportDovecot(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dovecot = imap_util.DovecotServer(name='dovecot')
        cls.coffre = None
        cls.tmp = tempfile.mkdtemp(prefix='coffre-import-')
        os.chmod(cls.tmp, 0o755)
        try:
            cls.fill_dovecot()
            cls.coffre = CoffreServer(name='coffre')
            cls.coffre.start()
            for u in (ALICE, BOB, CAROL, DAVE):
                cls.coffre.add_user(u, PASS)
        except Exception:
            sys.stderr.write(cls.dovecot.log_tail() + '\n')
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for s in (cls.dovecot, cls.coffre):
            if s is None:
                continue
            try:
                s.stop()
            finally:
                s.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def dovecot_conf(cls, zlib_save):
        d = cls.dovecot
        d.write_conf()
        with open(d.conf_path, 'a') as f:
            f.write('mail_plugins = $mail_plugins zlib\n')
            if zlib_save:
                f.write('plugin {\n  zlib_save = gz\n  zlib_save_level = 6\n}\n')

    @classmethod
    def fill_dovecot(cls):
        d = cls.dovecot
        for u in (ALICE, BOB, CAROL):
            d.add_user(u, PASS)
        cls.home = {u: os.path.join(d.data_dir, 'users', str(d.users[u])) for u in d.users}
        # compressed files for alice's first half (and carol's)
        cls.dovecot_conf(zlib_save=True)
        d.start()
        c = imap(d, ALICE)
        for f in ('Work', 'Work/Projects', NONASCII, 'Archive/2020'):
            assert c.create(q(f))[0] == 'OK', f
        fill(c, 'INBOX', 0, 40, expunge=(3, 4, 17))
        fill(c, 'Work', 100, 15)
        fill(c, NONASCII, 200, 6)
        for f in ('Work', 'Work/Projects', NONASCII, 'Sent'):
            c.subscribe(q(f))
        c.logout()
        c = imap(d, CAROL)
        c.create(q('Lists/Debian'))
        fill(c, 'Lists/Debian', 300, 12, expunge=(12,))
        c.subscribe(q('Lists/Debian'))
        c.logout()
        d.stop()
        # the rest uncompressed: both kinds in alice's folders
        cls.dovecot_conf(zlib_save=False)
        d.start()
        c = imap(d, ALICE)
        fill(c, 'INBOX', 40, 25, expunge=(45,))
        fill(c, 'Work/Projects', 400, 10, expunge=(1, 2))
        fill(c, 'Sent', 500, 8)
        fill(c, 'Archive/2020', 600, 5)
        c.unsubscribe(q('Sent'))
        c.logout()
        c = imap(d, BOB)
        fill(c, 'INBOX', 700, 30, expunge=(30,))   # UIDNEXT above the last UID
        fill(c, 'Trash', 800, 4)
        c.subscribe('INBOX')
        c.logout()
        d.stop()
        # delivered behind Dovecot's back: in new/, not in the uidlist yet
        bob_new = os.path.join(cls.home[BOB], 'Maildir', 'new')
        dropped = message(999).replace(b'\r\n', b'\n')
        p = os.path.join(bob_new, '1700000000.M1P1.dropped,S=%d' % len(dropped))
        with open(p, 'wb') as f:
            f.write(dropped)
        os.utime(p, (1600000000, 1600000000))
        pw = __import__('pwd').getpwnam(harness.RUN_USER)
        os.chown(p, pw.pw_uid, pw.pw_gid)
        # mbsync of alice against Dovecot, before the move
        d.start()
        if MBSYNC:
            cls.mbsync_root = os.path.join(cls.tmp, 'mbsync')
            os.makedirs(cls.mbsync_root)
            cls.mbsync_rc = os.path.join(cls.tmp, 'mbsyncrc')
            mbsyncrc(cls.mbsync_rc, d, ALICE, cls.mbsync_root)
            r = subprocess.run([MBSYNC, '-c', cls.mbsync_rc, '-a'], capture_output=True,
                               text=True, timeout=300)
            assert r.returncode == 0, r.stdout + r.stderr
        cls.source = {u: account_state(d, u) for u in (ALICE, BOB, CAROL)}
        d.stop()
        # Dovecot stays stopped: its tree is the migration's source
        cls.compressed = 0
        for u in (ALICE, CAROL):
            for dp, _, fs in os.walk(os.path.join(cls.home[u], 'Maildir')):
                for fn in fs:
                    if os.path.basename(dp) in ('cur', 'new'):
                        with open(os.path.join(dp, fn), 'rb') as f:
                            cls.compressed += f.read(2) == b'\x1f\x8b'

    def run_import(self, *args, expect=0):
        rc, out, err = self.coffre.ctl('import', '--from-dovecot-maildir', *args, timeout=300)
        self.assertEqual(rc, expect, 'import %r: %s\n%s' % (args, out, err))
        return out, err

    def import_all(self):
        users_from = os.path.join(self.tmp, 'users')
        with open(users_from, 'w') as f:
            f.write('# address path\n%s %s\n%s %s\n' % (
                ALICE, os.path.join(self.home[ALICE], 'Maildir'),
                BOB, os.path.join(self.home[BOB], 'Maildir')))
        os.chmod(users_from, 0o644)
        tree = os.path.join(self.tmp, 'tree')
        os.makedirs(tree, exist_ok=True)
        link = os.path.join(tree, CAROL)
        if not os.path.islink(link):
            os.symlink(os.path.join(self.home[CAROL], 'Maildir'), link)
        return [self.run_import(os.path.join(self.home[ALICE], 'Maildir'), ALICE)[0],
                self.run_import('--users-from', users_from)[0],
                self.run_import(os.path.join(tree, '%u'))[0]]

    def test_1_import_matches_dovecot(self):
        self.assertGreater(self.compressed, 10, 'the source has compressed files')
        outs = self.import_all()
        self.assertIn('added', outs[0])
        for u in (ALICE, BOB, CAROL):
            folders, subs, state = account_state(self.coffre, u)
            sfolders, ssubs, sstate = self.source[u]
            with self.subTest(user=u):
                # Dovecot's Maildir++ has parents that are no mailbox
                # ("Lists" of "Lists/Debian"); coffre makes them
                parents = {f.rsplit('/', 1)[0] for f in sfolders if '/' in f}
                self.assertEqual(set(folders) - (parents - set(sfolders)), set(sfolders), 'LIST')
                self.assertEqual(subs, ssubs, 'LSUB')
                for f in sfolders:
                    with self.subTest(folder=f):
                        self.assertIn(f, state)
                        a, b = sstate[f], state[f]
                        self.assertEqual(b['uidvalidity'], a['uidvalidity'], 'UIDVALIDITY')
                        self.assertEqual(b['uidnext'], a['uidnext'], 'UIDNEXT')
                        self.assertEqual(sorted(b['messages']), sorted(a['messages']), 'UIDs')
                        for uid, m in a['messages'].items():
                            self.assertEqual(b['messages'][uid], m, 'message UID %d' % uid)
        # the source had what is checked
        alice = self.source[ALICE][2]
        self.assertIn(NONASCII, [imaplib_decode(f) for f in alice])
        uids = sorted(alice['INBOX']['messages'])
        self.assertNotIn(3, uids)          # holes
        self.assertTrue(any(b'Work' in m['flags'] for m in alice['INBOX']['messages'].values()))
        self.assertTrue(any(b'\\Deleted' in m['flags']
                            for m in alice['INBOX']['messages'].values()))
        bob = self.source[BOB][2]['INBOX']
        self.assertEqual(int(bob['uidnext']), 32)   # 31 the dropped file, 30 expunged

    def test_2_rerun_adds_nothing(self):
        before = {u: account_state(self.coffre, u) for u in (ALICE, BOB, CAROL)}
        out, _ = self.run_import(os.path.join(self.home[ALICE], 'Maildir'), ALICE)
        self.assertRegex(out, r'messages: 0 added')
        self.assertRegex(out, r'[1-9]\d* already present')
        for u in (ALICE, BOB, CAROL):
            self.assertEqual(account_state(self.coffre, u), before[u])

    @unittest.skipUnless(MBSYNC, 'mbsync (isync) is not installed')
    def test_3_mbsync_continues(self):
        files = local_files(self.mbsync_root)
        self.assertGreater(len(files), 100)
        mbsyncrc(self.mbsync_rc, self.coffre, ALICE, self.mbsync_root)
        # -Dn: the IMAP conversation, to see what mbsync asks for
        r = subprocess.run([MBSYNC, '-Dn', '-c', self.mbsync_rc, '-a'], capture_output=True,
                           text=True, timeout=300)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        self.assertNotRegex(out, r'(?i)uidvalidity[^\n]*changed', out)
        sent = [l for l in out.splitlines() if l.startswith('>>> ')]
        self.assertTrue(any(' SELECT ' in l for l in sent), 'mbsync talked to coffre')
        for l in sent:
            self.assertNotRegex(l, r'BODY(\.PEEK)?\[\]|RFC822[ )]|APPEND|STORE|EXPUNGE',
                                'mbsync fetched or changed something: %s' % l)
        self.assertEqual(local_files(self.mbsync_root), files, 'nothing downloaded again')

    def test_4_kill_and_rerun(self):
        """A bigger tree in Dovecot's layout, written directly; the import
        killed with SIGKILL once some of it is in, then run again."""
        root = os.path.join(self.tmp, 'dave', 'Maildir')
        n = 6000
        for sub in ('cur', 'new', 'tmp'):
            os.makedirs(os.path.join(root, sub))
        kws = ['$Forwarded', 'Work', 'Later']
        with open(os.path.join(root, 'dovecot-keywords'), 'w') as f:
            for i, k in enumerate(kws):
                f.write('%d %s\n' % (i, k))
        lines = ['3 V1234567 N%d Gabc' % (n + 5)]
        want = {}
        for i in range(1, n + 1):
            base = '1600000000.M%dP1.host' % i
            body = message(i, 200 + (i * 31) % 3000).replace(b'\r\n', b'\n')
            flags = ''.join(sorted({0: 'S', 1: 'RS', 2: 'F', 3: ''}[i % 4])) + \
                ('ab' if i % 5 == 0 else '')
            name = '%s,S=%d:2,%s' % (base, len(body), flags)
            with open(os.path.join(root, 'cur', name), 'wb') as f:
                f.write(body)
            os.utime(os.path.join(root, 'cur', name), (1500000000 + i, 1500000000 + i))
            lines.append('%d G%s :%s,S=%d' % (i, base, base, len(body)))
            want[i] = body.replace(b'\n', b'\r\n')
        with open(os.path.join(root, 'dovecot-uidlist'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        subprocess.run(['chown', '-R', harness.RUN_USER, os.path.join(self.tmp, 'dave')],
                       check=True)
        rc, out, _ = self.coffre.ctl('user', 'show', DAVE)
        uid_dir = re.search(r'id:\s+(\d+)', out).group(1)
        cur = os.path.join(self.coffre.data_dir, 'users', uid_dir, 'Maildir', 'cur')
        p = subprocess.Popen([harness.COFFRECTL, '-c', self.coffre.conf_path, 'import',
                              '--from-dovecot-maildir', root, DAVE],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        killed_at = 0
        while time.monotonic() < deadline and p.poll() is None:
            try:
                killed_at = len(os.listdir(cur))
            except FileNotFoundError:
                killed_at = 0
            if killed_at >= n // 3:
                p.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        p.communicate()
        self.assertEqual(p.returncode, -signal.SIGKILL, 'the import was killed half-way')
        self.assertLess(killed_at, n)
        out, err = self.run_import(root, DAVE)
        self.assertRegex(out, r'[1-9]\d* already present')
        c = imap(self.coffre, DAVE)
        try:
            st = folder_state(c, 'INBOX')
        finally:
            c.logout()
        self.assertEqual(st['uidvalidity'], b'1234567')
        self.assertEqual(int(st['uidnext']), n + 5)
        self.assertEqual(sorted(st['messages']), list(range(1, n + 1)), 'each message once')
        for i, m in st['messages'].items():
            self.assertEqual(m['body'], want[i], 'message %d' % i)
            exp = {b'\\Seen'} if i % 4 in (0, 1) else set()
            if i % 4 == 1:
                exp.add(b'\\Answered')
            if i % 4 == 2:
                exp.add(b'\\Flagged')
            if i % 5 == 0:
                exp |= {b'$Forwarded', b'Work'}
            self.assertEqual(set(m['flags']), exp, 'flags of %d' % i)
        rc, out, err = self.coffre.ctl('mailbox', 'check', DAVE)
        self.assertEqual(rc, 0, out + err)


if __name__ == '__main__':
    unittest.main(verbosity=2)
