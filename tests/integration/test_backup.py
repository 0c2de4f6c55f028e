"""coffrectl backup / restore / user export (issue 17).

A backup taken while LMTP delivers on several connections and IMAP
sessions flag and expunge, restored into a fresh data directory and served
by a second coffred: every message acknowledged before the backup started
is there (but those the test expunged), with the UIDVALIDITY and UID the
live server gave it, its bytes, and its flags as at the backup's start or
later; `coffrectl mailbox check` passes. Then an incremental backup, the
refusals of restore, the restore of one account, the export to mboxrd, and
a backup onto another file system (copies instead of links)."""
import imaplib
import json
import mailbox
import os
import pwd
import random
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

import harness
import lmtp_util
from harness import ServerTestCase

A = 'ann@example.org'
B = 'bo@example.org'
PW = 'backup test password 1'
PW_B = 'backup test password 2'
NOBODY = pwd.getpwnam(harness.RUN_USER)

FETCH_RE = re.compile(rb'UID (\d+)|FLAGS \(([^)]*)\)')


def own_dir(path):
    os.makedirs(path, exist_ok=True)
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    return path


def login(server, user, pw):
    c = server.imap_ssl()
    c.login(user, pw)
    return c


def folders(c):
    typ, data = c.list()
    assert typ == 'OK', data
    out = []
    for line in data:
        m = re.match(rb'\(([^)]*)\) "[^"]*" "?([^"]*)"?$', line)
        if m and b'\\Noselect' not in m.group(1):
            out.append(m.group(2).decode())
    return sorted(out)


def view(c, folder):
    """(UIDVALIDITY, {uid: (flags, bytes)}) of a folder, read-only."""
    typ, _ = c.select('"%s"' % folder, readonly=True)
    assert typ == 'OK', folder
    uv = int(c.response('UIDVALIDITY')[1][0])
    typ, data = c.uid('FETCH', '1:*', '(UID FLAGS BODY.PEEK[])')
    assert typ == 'OK', data
    msgs = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        uid = flags = None
        for m in FETCH_RE.finditer(item[0]):
            if m.group(1):
                uid = int(m.group(1))
            else:
                flags = frozenset(f for f in m.group(2).decode().split() if f != '\\Recent')
        msgs[uid] = (flags, item[1])
    return uv, msgs


def account_view(server, user, pw):
    c = login(server, user, pw)
    try:
        return {f: view(c, f) for f in folders(c)}
    finally:
        c.logout()


def msgid(body):
    m = re.search(rb'Message-ID: <([^>]+)>', body)
    return m.group(1).decode() if m else None


def message(n, extra=b''):
    return (b'From: Sender <s@example.net>\r\nSubject: message %d\r\n'
            b'Message-ID: <m%d.%d@test>\r\n\r\nbody of %d\r\n' % (n, n, random.getrandbits(32), n)
            + extra)


class RestoringTestCase(ServerTestCase):
    """Stops and removes the servers a test started on restored data."""

    others = []

    @classmethod
    def tearDownClass(cls):
        for s in cls.others:
            s.stop()
            s.cleanup()
        super().tearDownClass()

    def other_server(self, name='restored'):
        s = harness.Server(name=name)
        self.others.append(s)
        return s


def scram_of(data_dir, address):
    """The SCRAM secrets stored for address in data_dir's accounts."""
    con = sqlite3.connect('file:%s?mode=ro' % os.path.join(data_dir, 'accounts.sqlite'), uri=True)
    try:
        row = con.execute('SELECT scram FROM accounts WHERE address = ?', (address,)).fetchone()
    finally:
        con.close()
    return row[0] if row else None


def app_passwords_of(data_dir, address):
    """The app passwords of address in data_dir's accounts, without ids."""
    con = sqlite3.connect('file:%s?mode=ro' % os.path.join(data_dir, 'accounts.sqlite'), uri=True)
    try:
        return con.execute('SELECT p.selector, p.label, p.hash, p.services FROM app_passwords p'
                           ' JOIN accounts a ON a.id = p.account WHERE a.address = ?'
                           ' ORDER BY p.selector', (address,)).fetchall()
    finally:
        con.close()


def client_certs_of(data_dir, address):
    """The client certificate settings of address in data_dir's accounts:
    require_client_cert and the pinned fingerprints, without ids."""
    con = sqlite3.connect('file:%s?mode=ro' % os.path.join(data_dir, 'accounts.sqlite'), uri=True)
    try:
        req = con.execute('SELECT require_client_cert FROM accounts WHERE address = ?',
                          (address,)).fetchone()
        pins = con.execute('SELECT c.fingerprint, c.added FROM client_certs c'
                           ' JOIN accounts a ON a.id = c.account_id WHERE a.address = ?'
                           ' ORDER BY c.fingerprint', (address,)).fetchall()
    finally:
        con.close()
    return (req[0] if req else None), pins


class BackupTest(RestoringTestCase):

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(A, PW)
        cls.server.add_user(B, PW_B)
        cls.others = []


    def deliver(self, rcpt, body):
        c = lmtp_util.lmtp(self.server)
        try:
            _, replies = lmtp_util.send(c, 'sender@example.net', [rcpt], body)
            self.assertEqual(replies[0][0], 250, replies)
        finally:
            c.quit()

    def check_ok(self, server, user):
        rc, out, err = server.ctl('mailbox', 'check', user)
        self.assertEqual(rc, 0, out + err)

    def manifest(self, dest):
        with open(os.path.join(dest, 'manifest')) as f:
            return json.load(f)

    # ---- the whole story, in order ----

    def test_backup_restore_export(self):
        srv = self.server
        seq = iter(range(1, 1 << 30))
        rc, out, err = srv.ctl('user', 'app-password', 'add', B, '--label', 'phone')
        self.assertEqual(rc, 0, out + err)
        rc, out, err = srv.ctl('user', 'cert', 'add', B, '--fingerprint', 'ab' * 32)
        self.assertEqual(rc, 0, out + err)
        # some mail, a folder with flags and keywords, and an expunge
        for _ in range(40):
            self.deliver(A, message(next(seq)))
        for _ in range(15):
            self.deliver(B, message(next(seq)))
        c = login(srv, A, PW)
        c.create('Work')
        for i in range(8):
            n = next(seq)
            body = message(n, b'From the start of a line\r\n>From quoted\r\n>>From twice\r\n')
            typ, _ = c.append('Work', '(\\Seen $Label%d)' % (i % 3) if i % 2 else '(\\Flagged)',
                              None, body)
            self.assertEqual(typ, 'OK')
        c.select('INBOX')
        typ, data = c.uid('FETCH', '1:3', '(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])')
        gone = {msgid(d[1]) for d in data if isinstance(d, tuple)}
        self.assertEqual(len(gone), 3)
        c.uid('STORE', '1:3', '+FLAGS', '(\\Deleted)')
        c.expunge()
        c.logout()
        test_expunged = set()   # Message-IDs the test expunged (any time)

        # the load: deliveries on four connections, flag changes and
        # expunges in two IMAP sessions
        stop = threading.Event()
        acked = []              # (time acknowledged, rcpt, Message-ID)
        lock = threading.Lock()
        errors = []

        def deliverer(rcpt):
            try:
                c = lmtp_util.lmtp(srv)
                while not stop.is_set():
                    with lock:
                        n = next(seq)
                    body = message(n)
                    _, replies = lmtp_util.send(c, 'sender@example.net', [rcpt], body)
                    if replies[0][0] != 250:
                        errors.append(replies)
                        return
                    with lock:
                        acked.append((time.monotonic(), rcpt, msgid(body)))
                c.quit()
            except Exception as e:  # reported by the test
                errors.append(repr(e))

        def flagger(user, pw):
            try:
                c = login(srv, user, pw)
                c.select('INBOX')
                rnd = random.Random(7)
                while not stop.is_set():
                    typ, data = c.uid('SEARCH', 'ALL')
                    uids = data[0].split()
                    if len(uids) < 10:
                        continue
                    pick = rnd.choice(uids[:-5]).decode()
                    if rnd.random() < 0.2:
                        typ, data = c.uid('FETCH', pick, '(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])')
                        mid = msgid(data[0][1]) if data and isinstance(data[0], tuple) else None
                        if mid:
                            with lock:
                                test_expunged.add(mid)
                            c.uid('STORE', pick, '+FLAGS', '(\\Deleted)')
                            c.uid('EXPUNGE', pick)
                    else:
                        c.uid('STORE', pick, '+FLAGS',
                              rnd.choice(['(\\Seen)', '(\\Flagged)', '(\\Answered)', '($Later)']))
                c.logout()
            except Exception as e:
                errors.append(repr(e))

        threads = [threading.Thread(target=deliverer, args=(r,)) for r in (A, A, B, B)]
        threads += [threading.Thread(target=flagger, args=(A, PW)),
                    threading.Thread(target=flagger, args=(B, PW_B))]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            # the live view at the backup's start (flags may only grow after)
            before = {A: account_view(srv, A, PW), B: account_view(srv, B, PW_B)}
            dest = own_dir(os.path.join(srv.tmp, 'backup'))
            started = time.monotonic()
            rc, out, err = srv.ctl('backup', dest)
            self.assertEqual(rc, 0, out + err)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        with lock:
            acked_before = [(r, m) for t, r, m in acked if t < started]
            acked_during = [(r, m) for t, r, m in acked if t >= started]
        self.assertGreater(len(acked_before), 10)
        self.assertGreater(len(acked_during), 0, 'no delivery ran beside the backup')
        live = {A: account_view(srv, A, PW), B: account_view(srv, B, PW_B)}
        man = self.manifest(dest)
        if os.environ.get('COFFRE_TEST_VERBOSE') == '1':
            print('backup beside the load:', [{k: a[k] for k in a if k != 'mailboxes'}
                                              for a in man['accounts']])
        self.assertEqual(sorted(a['address'] for a in man['accounts']), [A, B])
        for a in man['accounts']:
            self.assertEqual(a['problems'], 0)
            uvs = {m['name']: m['uidvalidity'] for m in a['mailboxes']}
            for f, (uv, _) in before[a['address']].items():
                self.assertEqual(uvs[f], uv, f)

        # restore into a fresh data directory and serve it
        new = self.other_server()
        rc, out, err = new.ctl('restore', dest)
        self.assertEqual(rc, 0, out + err)
        new.start()
        for user in (A, B):
            self.check_ok(new, user)
        restored = {A: account_view(new, A, PW), B: account_view(new, B, PW_B)}

        for user in (A, B):
            where = {}  # Message-ID -> (folder, uid) in the restored store
            for f, (uv, msgs) in restored[user].items():
                self.assertEqual(uv, live[user][f][0], 'UIDVALIDITY of %s' % f)
                for uid, (flags, body) in msgs.items():
                    where[msgid(body)] = (f, uid)
                    # the UID the live server gave the same message
                    lf = live[user][f][1].get(uid)
                    if lf is not None:
                        self.assertEqual(lf[1], body, '%s uid %d' % (f, uid))
                    b = before[user][f][1].get(uid)
                    if b is not None:
                        self.assertEqual(b[1], body)
                        # flags as at the start or later (the load only adds)
                        self.assertLessEqual(b[0], flags, '%s uid %d' % (f, uid))
                        if lf is not None:
                            self.assertLessEqual(flags, lf[0], '%s uid %d' % (f, uid))
            # everything of the live view at the start, but the test's expunges
            for f, (uv, msgs) in before[user].items():
                for uid, (flags, body) in msgs.items():
                    mid = msgid(body)
                    if mid in test_expunged:
                        continue
                    self.assertEqual(where.get(mid), (f, uid), 'uid %d of %s missing' % (uid, f))
            # what the test expunged before the backup is not back
            self.assertEqual(gone & set(where), set())
            # every delivery acknowledged before the backup started
            for r, mid in acked_before:
                if r == user and mid not in test_expunged:
                    self.assertIn(mid, where, 'acknowledged %s missing' % mid)
                    f, uid = where[mid]
                    self.assertIn(uid, live[user][f][1], 'uid changed')

        # ---- incremental: only the new files ----
        # (one run to take in what the load added after the backup, then
        # five deliveries: the next run links those five and nothing else)
        rc, out, err = srv.ctl('backup', dest, '--incremental')
        self.assertEqual(rc, 0, out + err)
        for _ in range(5):
            self.deliver(A, message(next(seq)))
        inodes = {os.stat(os.path.join(d, n)).st_ino
                  for d, _, files in os.walk(os.path.join(dest, 'users')) for n in files
                  if '/Maildir' in d}
        rc, out, err = srv.ctl('backup', dest, '--incremental')
        self.assertEqual(rc, 0, out + err)
        man = self.manifest(dest)
        by = {a['address']: a for a in man['accounts']}
        self.assertEqual(by[A]['files_linked'] + by[A]['files_copied'], 5, by[A])
        self.assertTrue(by[A]['index_copied'])
        self.assertFalse(by[B]['index_copied'], by[B])
        self.assertEqual(by[B]['files_linked'] + by[B]['files_copied'], 0)
        after = {os.stat(os.path.join(d, n)).st_ino
                 for d, _, files in os.walk(os.path.join(dest, 'users')) for n in files
                 if '/Maildir/' in d + '/' and ('/cur' in d or '/new' in d)}
        self.assertEqual(len(after - inodes), 5)
        # an unchanged account whose copied index went: copied again
        os.unlink(os.path.join(dest, 'users', str(by[B]['id']), 'index.sqlite'))
        rc, out, err = srv.ctl('backup', dest, '--incremental')
        self.assertEqual(rc, 0, out + err)
        by = {a['address']: a for a in self.manifest(dest)['accounts']}
        self.assertTrue(by[B]['index_copied'], by[B])
        self.assertEqual(by[B]['problems'], 0)
        rc, out, err = srv.ctl('backup', dest)
        self.assertNotEqual(rc, 0, 'a full backup into a used directory must be refused')

        # ---- restore refuses newer data, and runs only with coffred stopped ----
        rc, out, err = new.ctl('restore', dest)
        self.assertNotEqual(rc, 0)
        self.assertIn('coffred is running', err)
        new.stop()
        rc, out, err = new.ctl('restore', dest)
        self.assertEqual(rc, 4, out + err)
        rc, out, err = new.ctl('restore', dest, '--user', A)
        self.assertEqual(rc, 4, out + err)
        rc, out, err = new.ctl('restore', dest, '--force')
        self.assertEqual(rc, 0, out + err)
        new.start()
        self.check_ok(new, A)
        inbox = [m for m in by[A]['mailboxes'] if m['name'] == 'INBOX'][0]
        c = login(new, A, PW)
        c.select('INBOX', readonly=True)
        self.assertEqual(int(c.response('EXISTS')[1][0]), inbox['messages'])
        c.logout()
        new.stop()

        # ---- one account, into a site that lacks it ----
        one = self.other_server()
        rc, out, err = one.ctl('user', 'add', 'carl@example.org', '--password-stdin',
                               input='carl password 123\n')
        self.assertEqual(rc, 0, err)
        rc, out, err = one.ctl('restore', dest, '--user', B)
        self.assertEqual(rc, 0, out + err)
        # the SCRAM secrets come along: a SCRAM-only client still logs in
        self.assertIsNotNone(scram_of(srv.data_dir, B))
        self.assertEqual(scram_of(one.data_dir, B), scram_of(srv.data_dir, B))
        # and its app passwords
        self.assertEqual(len(app_passwords_of(srv.data_dir, B)), 1)
        self.assertEqual(app_passwords_of(one.data_dir, B), app_passwords_of(srv.data_dir, B))
        # and its client certificate pins
        self.assertEqual(len(client_certs_of(srv.data_dir, B)[1]), 1)
        self.assertEqual(client_certs_of(one.data_dir, B), client_certs_of(srv.data_dir, B))
        one.start()
        self.check_ok(one, B)
        got = account_view(one, B, PW_B)
        for f, (uv, msgs) in got.items():
            self.assertEqual(uv, live[B][f][0])
            for uid, (flags, body) in msgs.items():
                self.assertEqual(live[B][f][1][uid][1], body)
        self.assertEqual(sum(len(m) for _, m in got.values()), by[B]['messages'])
        # the account there has newer mail now: refused, then forced
        c = lmtp_util.lmtp(one)
        lmtp_util.send(c, 'x@example.net', [B], message(next(seq)))
        c.quit()
        one.stop()
        rc, out, err = one.ctl('restore', dest, '--user', B)
        self.assertEqual(rc, 4, out + err)
        self.assertIn('newer', err)
        rc, out, err = one.ctl('restore', dest, '--user', B, '--force')
        self.assertEqual(rc, 0, out + err)
        self.assertTrue([n for n in os.listdir(one.data_dir) if n.startswith('replaced-')])

        # ---- export to mboxrd ----
        self.export_and_compare(srv, A, PW)

    def export_and_compare(self, srv, user, pw):
        state = account_view(srv, user, pw)
        out_dir = own_dir(tempfile.mkdtemp(prefix='coffre-export-'))
        try:
            path = os.path.join(out_dir, 'all.mbox')
            rc, out, err = srv.ctl('user', 'export', user, '--mbox', path)
            self.assertEqual(rc, 0, out + err)
            rc, out, err = srv.ctl('user', 'export', user, '--mbox', path)
            self.assertNotEqual(rc, 0, 'an existing file must not be overwritten')
            box = mailbox.mbox(path, create=False)
            expect = {}
            for f, (uv, msgs) in state.items():
                for uid, (flags, body) in msgs.items():
                    expect[msgid(body)] = (f, flags, body)
            got = list(box)
            self.assertEqual(len(got), len(expect))
            seen_quoted = False
            for m in got:
                mid = msgid(m.as_bytes())
                f, flags, body = expect[mid]
                self.assertEqual(m['X-Folder'], f)
                # the From_ line: the envelope sender delivery recorded
                if body.startswith(b'Return-Path: <sender@example.net>'):
                    self.assertTrue(m.get_from().startswith('sender@example.net '), m.get_from())
                # flags: Status/X-Status as mailbox.mboxMessage reads them
                want = ''.join(sorted(
                    {'\\Seen': 'R', '\\Answered': 'A', '\\Flagged': 'F',
                     '\\Deleted': 'D', '\\Draft': 'T'}[x] for x in flags if x.startswith('\\')))
                self.assertEqual(''.join(sorted(m.get_flags().replace('O', ''))), want, mid)
                kws = sorted(x for x in flags if not x.startswith('\\'))
                self.assertEqual(sorted((m['X-Keywords'] or '').split()), kws, mid)
            # bytes: the body as stored, CRLF as LF, one '>' less on quoted lines
            with open(path, 'rb') as fh:
                text = fh.read()
            for chunk in re.split(rb'\n\n(?=From \S+ \w{3} \w{3} [ \d]\d )', text):
                chunk = chunk[chunk.index(b'\n') + 1:]  # the From_ line
                head, _, rest = chunk.partition(b'\n\n')
                lines = [l for l in head.split(b'\n')
                         if not re.match(rb'(Status|X-Status|X-Keywords|X-Folder): ', l)]
                body_lines = [re.sub(rb'^>(>*From )', rb'\1', l) for l in rest.split(b'\n')]
                if b'>>From twice' in rest:
                    seen_quoted = True
                unq = b'\n'.join(lines) + b'\n\n' + b'\n'.join(body_lines)
                mid = msgid(unq)
                want = expect[mid][2].replace(b'\r\n', b'\n')
                self.assertEqual(unq.rstrip(b'\n'), want.rstrip(b'\n'), mid)
            self.assertTrue(seen_quoted, 'no quoted From line exported')
            box.close()
            # one folder
            path2 = os.path.join(out_dir, 'work.mbox')
            rc, out, err = srv.ctl('user', 'export', user, '--mbox', path2, '--folder', 'Work')
            self.assertEqual(rc, 0, out + err)
            box2 = mailbox.mbox(path2, create=False)
            self.assertEqual(len(box2), len(state['Work'][1]))
            box2.close()
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)

    def test_backup_other_file_system(self):
        """DEST on /dev/shm while the data directory is on the disk: copies."""
        if not os.path.isdir('/dev/shm') or \
                os.stat('/dev/shm').st_dev == os.stat(self.server.tmp).st_dev:
            self.skipTest('no second file system at /dev/shm')
        srv = self.server
        for i in range(6):
            self.deliver(B, message(900000 + i))
        dest = own_dir(tempfile.mkdtemp(prefix='coffre-backup-', dir='/dev/shm'))
        try:
            rc, out, err = srv.ctl('backup', dest)
            self.assertEqual(rc, 0, out + err)
            by = {a['address']: a for a in self.manifest(dest)['accounts']}
            self.assertEqual(by[B]['files_linked'], 0)
            self.assertGreaterEqual(by[B]['files_copied'], 6)
            live = account_view(srv, B, PW_B)
            new = self.other_server()
            rc, out, err = new.ctl('restore', dest)
            self.assertEqual(rc, 0, out + err)
            new.start()
            self.check_ok(new, B)
            got = account_view(new, B, PW_B)
            self.assertEqual({f: (uv, {u: b for u, (_, b) in m.items()})
                              for f, (uv, m) in got.items()},
                             {f: (uv, {u: b for u, (_, b) in m.items()})
                              for f, (uv, m) in live.items()})
            new.stop()
        finally:
            shutil.rmtree(dest, ignore_errors=True)


C = 'cy@example.org'
PW_C = 'backup steps password 3'


class BackupStepsTest(RestoringTestCase):
    """The backup paused after linking the files and after the index
    snapshot (COFFRE_BACKUP_PAUSE), the store changed in each gap: what the
    restored store holds is the index as the snapshot saw it, every file
    there."""

    @classmethod
    def setUpServer(cls):
        cls.server.add_user(C, PW_C)
        cls.others = []

    def deliver(self, n):
        body = message(n)
        c = lmtp_util.lmtp(self.server)
        try:
            _, replies = lmtp_util.send(c, 'sender@example.net', [C], body)
            self.assertEqual(replies[0][0], 250, replies)
        finally:
            c.quit()
        return msgid(body)

    def imap(self, *cmds):
        c = login(self.server, C, PW_C)
        c.select('INBOX')
        try:
            for cmd in cmds:
                typ, data = c.uid(*cmd)
                self.assertEqual(typ, 'OK', (cmd, data))
        finally:
            c.logout()

    def wait_renamed(self, uid, letter):
        """Until the flag sync gave uid's file the flag letter."""
        md = lmtp_util.maildir(self.server, C)
        def renamed():
            for n in os.listdir(os.path.join(md, 'cur')):
                if ',U=%d,' % uid in n and ':2,' in n and letter in n.split(':2,')[1]:
                    return True
            return False
        harness.wait_for(renamed, 30)
        self.assertTrue(renamed(), 'uid %d never renamed with %s' % (uid, letter))

    def wait_file(self, path, proc):
        deadline = time.monotonic() + 60
        while not os.path.exists(path):
            self.assertIsNone(proc.poll(), 'backup ended early')
            self.assertLess(time.monotonic(), deadline, 'backup never reached ' + path)
            time.sleep(0.02)

    def test_changes_between_the_steps(self):
        srv = self.server
        mids = {}
        for i in range(1, 11):
            mids[i] = self.deliver(7000 + i)
        c = login(srv, C, PW_C)
        c.create('Work')
        c.logout()
        # uid 3's file in cur/ with flags in its name, as the sync left it
        self.imap(('STORE', '3', '+FLAGS', '(\\Seen)'))
        self.wait_renamed(3, 'S')
        live0 = account_view(srv, C, PW_C)
        self.assertEqual(sorted(live0['INBOX'][1]), list(range(1, 11)))

        work = own_dir(tempfile.mkdtemp(prefix='coffre-steps-'))
        dest = own_dir(os.path.join(work, 'backup'))
        pause = os.path.join(work, 'p')
        env = dict(os.environ, COFFRE_BACKUP_PAUSE=pause)
        proc = subprocess.Popen([harness.COFFRECTL, '-c', srv.conf_path, 'backup', dest],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # between the files and the index
            self.wait_file(pause + '.files', proc)
            x = self.deliver(7100)                      # in the snapshot, not linked
            d = self.deliver(7101)                      # the same, expunged after it
            self.imap(('STORE', '2', '+FLAGS', '(\\Deleted)'), ('EXPUNGE', '2'))
            self.imap(('STORE', '3', '+FLAGS', '(\\Flagged)'))
            self.wait_renamed(3, 'F')                   # linked under its old name
            os.unlink(pause + '.files')
            # between the index and the matching
            self.wait_file(pause + '.index', proc)
            self.imap(('STORE', '4', '+FLAGS', '(\\Deleted)'), ('EXPUNGE', '4'))
            y = self.deliver(7102)                      # after the snapshot
            self.imap(('STORE', '5', '+FLAGS', '(\\Answered)'))
            self.wait_renamed(5, 'R')
            self.imap(('MOVE', '6', 'Work'))
            self.imap(('STORE', '12', '+FLAGS', '(\\Deleted)'), ('EXPUNGE', '12'))
            os.unlink(pause + '.index')
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 0, out + err)
        with open(os.path.join(dest, 'manifest')) as f:
            acct = json.load(f)['accounts'][0]

        live = account_view(srv, C, PW_C)
        # restored from a copy run_user may read but not write
        for dirpath, dirs, files in os.walk(dest):
            for n in dirs + files:
                os.chown(os.path.join(dirpath, n), 0, 0)
                os.chmod(os.path.join(dirpath, n), 0o755 if n in dirs else 0o644)
        os.chown(dest, 0, 0)
        os.chmod(dest, 0o755)
        new = self.other_server('restored-steps')
        rc, out, err = new.ctl('restore', dest)
        self.assertEqual(rc, 0, out + err)
        new.start()
        rc, out, err = new.ctl('mailbox', 'check', C)
        self.assertEqual(rc, 0, out + err)
        got = account_view(new, C, PW_C)
        # one account from it too, into a site that lacks it
        one = self.other_server('restored-one')
        rc, out, err = one.ctl('restore', dest, '--user', C)
        self.assertEqual(rc, 0, out + err)
        shutil.rmtree(work, ignore_errors=True)

        uv, msgs = got['INBOX']
        self.assertEqual(uv, live['INBOX'][0])
        by_mid = {msgid(b): (u, f) for u, (f, b) in msgs.items()}
        # the snapshot's messages: 1..10 but 2 (expunged before it), 11 (x);
        # 12 (d) was expunged before its file could be linked
        self.assertEqual(sorted(msgs), [1, 3, 4, 5, 6, 7, 8, 9, 10, 11])
        self.assertEqual(by_mid[x][0], 11)
        self.assertNotIn(d, by_mid)
        self.assertNotIn(y, by_mid)
        self.assertNotIn(mids[2], by_mid)
        for uid in (1, 3, 4, 5, 6, 7, 8, 9, 10):
            self.assertEqual(msgid(msgs[uid][1]), mids[uid])
            self.assertEqual(msgs[uid][1], live0['INBOX'][1][uid][1])
        self.assertEqual(msgs[11][1], live['INBOX'][1][11][1])
        # flags as the snapshot had them
        self.assertEqual(msgs[3][0], {'\\Seen', '\\Flagged'})
        self.assertNotIn('\\Answered', msgs[5][0])
        # the move came after the snapshot: the message is still in INBOX only
        self.assertEqual(got['Work'][1], {})
        # and the manifest counted what happened
        self.assertEqual(acct['lost_during_backup'], 1, acct)   # d
        self.assertGreaterEqual(acct['files_renamed'], 1, acct)  # uid 3
        self.assertGreaterEqual(acct['files_removed'], 1, acct)  # uid 2


if __name__ == '__main__':
    harness.main()
