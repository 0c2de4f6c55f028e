"""IMAP QRESYNC (RFC 7162 section 3.2): ENABLE QRESYNC (CONDSTORE with it),
SELECT/EXAMINE (QRESYNC (uidvalidity modseq [known-uids [seq-match]]))
answered with VANISHED (EARLIER) and the FETCH of the messages changed,
the parameter ignored for another UIDVALIDITY and refused before ENABLE;
untagged VANISHED instead of EXPUNGE (EXPUNGE, UID EXPUNGE, MOVE, another
session's expunges at NOOP and in IDLE; none at CLOSE); UID FETCH ...
(CHANGEDSINCE m VANISHED); [CLOSED] at a SELECT that closes a mailbox.

A client that disconnects while another session flags, expunges and
delivers (LMTP) rebuilds the mailbox (UIDs, flags, modseqs) from the
QRESYNC answer alone, checked against a full UID FETCH 1:* (FLAGS MODSEQ):
as it is, after a restart of the server, and (coffre) after
`coffrectl mailbox reindex`. With few expunged UIDs remembered
(imap_vanished_keep_count), a resync from before what was forgotten gets
every missing UID the client names, narrowed by its sequence match data
(3.2.5.2), and the client still rebuilds the exact mailbox."""
import re
import time
import unittest

import imap_util
import lmtp_util
from imap_util import ImapCase, Imap, make_message, USER, AGAINST_DOVECOT

N = 10

HMS_RE = re.compile(rb'^\* OK \[HIGHESTMODSEQ (\d+)\]')
UIDV_RE = re.compile(rb'^\* OK \[UIDVALIDITY (\d+)\]')
VAN_RE = re.compile(rb'^\* VANISHED (\(EARLIER\) )?([0-9:,]+)$')


def uids_of(s):
    return set(imap_util.parse_seqset(s.decode() if isinstance(s, bytes) else s))


def vanished(untagged, earlier):
    """The UIDs of the VANISHED responses (EARLIER or not) in untagged."""
    out = set()
    for r in untagged:
        m = VAN_RE.match(r)
        if m and bool(m.group(1)) == earlier:
            out |= uids_of(m.group(2))
    return out


def norm_flags(fl):
    # \Recent belongs to one session: not part of the mailbox's state
    return frozenset(str(f).lower() for f in fl if str(f).lower() != '\\recent')


def fetches(untagged):
    """[(uid, flags, modseq)] of the FETCH responses, in order (items
    missing are None)."""
    out = []
    for r in untagged:
        if re.match(rb'\* \d+ FETCH ', r):
            n, it, raw = imap_util.parse_fetch(r)
            out.append((int(it['UID']) if 'UID' in it else None,
                        norm_flags(it['FLAGS']) if 'FLAGS' in it else None,
                        int(it['MODSEQ'][0]) if 'MODSEQ' in it else None))
    return out


def full_state(c):
    """{uid: (flags, modseq)} from UID FETCH 1:* (FLAGS MODSEQ)."""
    u = c.ok('UID FETCH 1:* (FLAGS MODSEQ)')
    return {uid: (fl, ms) for uid, fl, ms in fetches(u)}


class Replica:
    """What a QRESYNC client keeps of a mailbox between sessions."""

    def __init__(self, uidvalidity, highestmodseq, msgs):
        self.uidvalidity = uidvalidity
        self.highestmodseq = highestmodseq
        self.msgs = dict(msgs)

    def apply(self, untagged):
        """Applies a SELECT (QRESYNC) answer: False when the UIDVALIDITY
        changed (the replica is then useless: a full resync is needed)."""
        for r in untagged:
            m = UIDV_RE.match(r)
            if m and int(m.group(1)) != self.uidvalidity:
                return False
        for uid in vanished(untagged, True) | vanished(untagged, False):
            self.msgs.pop(uid, None)
        for uid, fl, ms in fetches(untagged):
            self.msgs[uid] = (fl, ms)
        for r in untagged:
            m = HMS_RE.match(r)
            if m:
                self.highestmodseq = int(m.group(1))
        return True


def select_qresync(c, box, uidvalidity, modseq, rest='', examine=False):
    return c.cmd('%s %s (QRESYNC (%d %d%s))' % ('EXAMINE' if examine else 'SELECT', box,
                                                uidvalidity, modseq, rest))


def changes_meanwhile(case, box):
    """Another session flags, expunges and appends, LMTP delivers (to
    INBOX), while the client is away. Returns the UIDs it knew that went."""
    o = case.login()
    o.select(box)
    had = sorted(full_state(o))
    o.ok('UID STORE %d,%d +FLAGS (\\Seen $Label1)' % (had[0], had[3]))
    o.ok('UID STORE %d,%d +FLAGS (\\Deleted)' % (had[1], had[5]))
    o.ok('UID EXPUNGE %d,%d' % (had[1], had[5]))
    lm = lmtp_util.lmtp(case.server)
    for i in range(3):
        rcpt, replies = lmtp_util.send(lm, 'sender@example.net', [USER], make_message(100 + i))
        case.assertEqual([r[0] for r in replies], [250])
    lm.quit()
    o.append(box, make_message(201), flags=['\\Flagged'])
    o.ok('NOOP')
    newest = max(full_state(o))
    o.ok('UID STORE %d +FLAGS (\\Answered)' % newest)
    o.ok('UID STORE %d +FLAGS (\\Deleted)' % (newest - 1))
    o.ok('UID EXPUNGE %d' % (newest - 1))
    o.ok('UID STORE %d -FLAGS (\\Seen)' % had[0])
    o.ok('UID STORE %d +FLAGS (\\Draft)' % had[2])
    o.logout()
    return {had[1], had[5]}


class QresyncBase(ImapCase):

    def setUp(self):
        self.box = 'QR%d' % imap_util.serial()
        c = self.login()
        c.ok('CREATE %s' % self.box)
        for i in range(N):
            c.append(self.box, make_message(i))
        c.logout()

    def qclient(self, select=True):
        c = self.login()
        u = c.ok('ENABLE QRESYNC')
        self.assertTrue(any(r.startswith(b'* ENABLED') and b'QRESYNC' in r for r in u), u)
        if select:
            info = c.select(self.box)
            c.info = info
        return c

    def other(self):
        o = self.login()
        o.select(self.box)
        return o

    def snapshot(self, c):
        """A Replica of the selected mailbox as c sees it now."""
        c.ok('NOOP')
        state = full_state(c)
        # the mailbox's HIGHESTMODSEQ: the highest modseq of its messages
        # or higher (expunges); STATUS asks it again, after the fetch
        st = c.ok('STATUS %s (HIGHESTMODSEQ UIDVALIDITY)' % self.box)
        m = re.search(rb'HIGHESTMODSEQ (\d+)', st[0])
        hms = int(m.group(1))
        m = re.search(rb'UIDVALIDITY (\d+)', st[0])
        return Replica(int(m.group(1)), hms, state)


class Qresync(QresyncBase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        for i in range(N):
            c.append('INBOX', make_message(i))
        c.logout()

    def test_advertised(self):
        c = self.login()
        u = c.ok('CAPABILITY')
        caps = u[0].decode().split()
        self.assertIn('QRESYNC', caps)
        self.assertIn('CONDSTORE', caps)

    def test_enable_implies_condstore(self):
        c = self.login()
        u = c.ok('ENABLE QRESYNC')
        self.assertTrue(any(r.startswith(b'* ENABLED') and b'QRESYNC' in r for r in u), u)
        u = c.ok('SELECT %s' % self.box)
        self.assertTrue(any(HMS_RE.match(r) for r in u), u)
        # MODSEQ in FETCH answers not asked for it (CONDSTORE on)
        u = c.ok('STORE 1 +FLAGS (\\Flagged)')
        self.assertRegex(u[0], rb'MODSEQ \(\d+\)')

    def test_select_qresync_needs_enable(self):
        c = self.login()
        info = c.select(self.box)
        c.ok('UNSELECT')
        u, t = select_qresync(c, self.box, info['uidvalidity'], 1)
        self.assertBAD(t)

    def test_bad_syntax(self):
        c = self.qclient(select=False)
        bad = ['(QRESYNC)', '(QRESYNC ())', '(QRESYNC (1))', '(QRESYNC (1 1 1:5 (1:3 1:4)))',
               '(QRESYNC (1 x))']
        if not AGAINST_DOVECOT:
            bad.append('(QRESYNC (0 1))')  # nz-number; Dovecot takes it
        for args in bad:
            u, t = c.cmd('SELECT %s %s' % (self.box, args))
            self.assertBAD(t, args)

    def test_other_uidvalidity_ignored(self):
        c = self.qclient()
        uv = c.info['uidvalidity']
        c.ok('UNSELECT')
        o = self.other()
        o.ok('STORE 1 +FLAGS (\\Seen)')
        o.ok('STORE 2 +FLAGS (\\Deleted)')
        o.ok('EXPUNGE')
        u, t = select_qresync(c, self.box, uv + 1, 1)
        self.assertOK(t)
        self.assertEqual(vanished(u, True), set(), u)
        self.assertEqual(fetches(u), [], u)
        self.assertTrue(any(HMS_RE.match(r) for r in u), u)

    def test_rfc_select_example(self):
        """RFC 7162 3.2.5.1: VANISHED (EARLIER) of the known UIDs gone
        since, then the FETCH (UID FLAGS MODSEQ) of those changed, after
        the usual SELECT responses and before the tagged OK."""
        c = self.qclient()
        rep = self.snapshot(c)
        c.ok('UNSELECT')
        o = self.other()
        o.ok('UID STORE 3,5 +FLAGS (\\Flagged)')
        o.ok('UID STORE 2,7 +FLAGS (\\Deleted)')
        o.ok('EXPUNGE')
        o.ok('UID STORE 5 +FLAGS (\\Answered)')
        u, t = select_qresync(c, self.box, rep.uidvalidity, rep.highestmodseq,
                              ' 1:%d' % N)
        self.assertOK(t)
        self.assertEqual(vanished(u, True), {2, 7}, u)
        self.assertEqual(vanished(u, False), set(), u)
        got = fetches(u)
        self.assertEqual(sorted(x[0] for x in got), [3, 5], u)
        for uid, fl, ms in got:
            self.assertIsNotNone(fl)
            self.assertGreater(ms, rep.highestmodseq)
        self.assertIn('\\flagged', dict((x[0], x[1]) for x in got)[3])
        self.assertIn('\\answered', dict((x[0], x[1]) for x in got)[5])
        # order: UIDVALIDITY and HIGHESTMODSEQ, then VANISHED, then FETCH
        iv = [i for i, r in enumerate(u) if VAN_RE.match(r)][0]
        ifs = [i for i, r in enumerate(u) if b' FETCH ' in r]
        iu = [i for i, r in enumerate(u) if UIDV_RE.match(r)][0]
        self.assertLess(iu, iv)
        self.assertLess(iv, min(ifs))
        # the mailbox is as the answer says
        self.assertEqual(full_state(c), {k: v for k, v in self.apply(rep, u).msgs.items()})

    def apply(self, rep, u):
        self.assertTrue(rep.apply(u))
        return rep

    def test_known_uids_limit(self):
        """Only the known UIDs are reported vanished or changed."""
        c = self.qclient()
        rep = self.snapshot(c)
        c.ok('UNSELECT')
        o = self.other()
        o.ok('UID STORE 1,2,3,8 +FLAGS (\\Deleted)')
        o.ok('UID EXPUNGE 1,2,3,8')
        o.ok('UID STORE 4,9 +FLAGS (\\Seen)')
        u, t = select_qresync(c, self.box, rep.uidvalidity, rep.highestmodseq, ' 2:5')
        self.assertOK(t)
        self.assertEqual(vanished(u, True), {2, 3}, u)
        self.assertEqual([x[0] for x in fetches(u)], [4], u)

    def test_examine(self):
        c = self.qclient()
        rep = self.snapshot(c)
        c.ok('UNSELECT')
        o = self.other()
        o.ok('UID STORE 4 +FLAGS (\\Deleted)')
        o.ok('EXPUNGE')
        u, t = select_qresync(c, self.box, rep.uidvalidity, rep.highestmodseq, examine=True)
        self.assertOK(t)
        self.assertIn(b'READ-ONLY', t)
        self.assertEqual(vanished(u, True), {4}, u)

    def test_closed(self):
        """[CLOSED] when a SELECT closes the selected mailbox (3.2.11)."""
        c = self.qclient()
        c.ok('CREATE %sB' % self.box)
        u = c.ok('SELECT %sB' % self.box)
        self.assertTrue(any(re.match(rb'\* OK \[CLOSED\]', r) for r in u), u)
        ic = [i for i, r in enumerate(u) if b'[CLOSED]' in r][0]
        ie = [i for i, r in enumerate(u) if r.endswith(b' EXISTS')][0]
        self.assertLess(ic, ie)
        # not without a mailbox selected
        c.ok('UNSELECT')
        u = c.ok('SELECT %s' % self.box)
        self.assertFalse(any(b'[CLOSED]' in r for r in u), u)

    def test_vanished_instead_of_expunge(self):
        c = self.qclient()
        c.ok('UID STORE 2,4,5 +FLAGS (\\Deleted)')
        u = c.ok('EXPUNGE')
        self.assertFalse(any(r.endswith(b' EXPUNGE') for r in u), u)
        self.assertEqual(vanished(u, False), {2, 4, 5}, u)
        self.assertEqual([r for r in u if VAN_RE.match(r)], [b'* VANISHED 2,4:5'])
        # UID EXPUNGE
        c.ok('UID STORE 6,7 +FLAGS (\\Deleted)')
        u = c.ok('UID EXPUNGE 7')
        self.assertEqual(vanished(u, False), {7}, u)
        self.assertFalse(any(r.endswith(b' EXPUNGE') for r in u), u)
        # MOVE
        c.ok('CREATE %sD' % self.box)
        u = c.ok('UID MOVE 8:9 %sD' % self.box)
        self.assertEqual(vanished(u, False), {8, 9}, u)
        self.assertFalse(any(r.endswith(b' EXPUNGE') for r in u), u)
        # another session's expunge, at NOOP
        o = self.other()
        o.ok('UID STORE 1 +FLAGS (\\Deleted)')
        o.ok('UID EXPUNGE 1')
        u = c.ok('NOOP')
        self.assertEqual(vanished(u, False), {1}, u)
        self.assertFalse(any(r.endswith(b' EXPUNGE') for r in u), u)
        # ... and in IDLE
        c.idle()
        o.ok('UID STORE 3 +FLAGS (\\Deleted)')
        o.ok('UID EXPUNGE 3')
        r = c.line_until(b'* VANISHED', forbid=rb' EXPUNGE$')
        self.assertEqual(r, b'* VANISHED 3')
        c.done()
        # CLOSE expunges silently (RFC 3501, 7162 3.2.10 keeps it so)
        u = c.ok('CLOSE')
        self.assertEqual([r for r in u if VAN_RE.match(r) or r.endswith(b'EXPUNGE')], [], u)
        c.select(self.box)
        self.assertNotIn(6, full_state(c))

    def test_expunge_without_qresync(self):
        """Sessions that did not enable QRESYNC still get EXPUNGE."""
        c, info = self.selected(self.box)
        c.ok('UID STORE 2 +FLAGS (\\Deleted)')
        u = c.ok('EXPUNGE')
        self.assertEqual(u[0], b'* 2 EXPUNGE')

    def test_uid_fetch_vanished(self):
        """RFC 7162 3.2.6: UID FETCH ... (CHANGEDSINCE m VANISHED)."""
        c = self.qclient()
        rep = self.snapshot(c)
        o = self.other()
        o.ok('UID STORE 3,4,8 +FLAGS (\\Deleted)')
        o.ok('UID EXPUNGE 3:4,8')
        o.ok('UID STORE 6 +FLAGS (\\Seen)')
        o.logout()
        c.logout()
        # a client back, SELECT without QRESYNC, then asking: VANISHED
        # (EARLIER) before the FETCH
        c = self.qclient()
        u = c.ok('UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)' % rep.highestmodseq)
        self.assertEqual(vanished(u, True), {3, 4, 8}, u)
        iv = [i for i, r in enumerate(u) if r.startswith(b'* VANISHED (EARLIER)')][0]
        ifs = [i for i, r in enumerate(u) if b' FETCH ' in r]
        self.assertTrue(ifs and iv < min(ifs), u)
        self.assertIn(6, [x[0] for x in fetches(u)])
        # within the set only
        u = c.ok('UID FETCH 1:3 (FLAGS) (CHANGEDSINCE %d VANISHED)' % rep.highestmodseq)
        self.assertEqual(vanished(u, True), {3}, u)
        # the highest UID gone: '*' still names it
        c.ok('UID STORE %d +FLAGS (\\Deleted)' % N)
        c.ok('UID EXPUNGE %d' % N)
        u = c.ok('UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)' % rep.highestmodseq)
        self.assertEqual(vanished(u, True), {3, 4, 8, N}, u)

    def test_uid_fetch_vanished_bad(self):
        c = self.login()
        c.select(self.box)
        u, t = c.cmd('UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)')
        self.assertBAD(t, 'VANISHED before ENABLE QRESYNC')
        c.ok('ENABLE QRESYNC')
        u, t = c.cmd('FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)')
        self.assertBAD(t, 'VANISHED in FETCH')
        u, t = c.cmd('UID FETCH 1:* (FLAGS) (VANISHED)')
        self.assertBAD(t, 'VANISHED without CHANGEDSINCE')

    # -- the bullet: a client rebuilds the mailbox from the answer
    # (INBOX, where LMTP delivers)

    def resync(self, rep):
        c = self.qclient(select=False)
        u, t = select_qresync(c, 'INBOX', rep.uidvalidity, rep.highestmodseq)
        self.assertOK(t)
        return c, u

    def check_rebuilt(self, rep, c, u):
        self.assertTrue(rep.apply(u), 'UIDVALIDITY changed')
        self.assertEqual(rep.msgs, full_state(c), c.transcript())

    def inbox_snapshot(self):
        self.box = 'INBOX'
        c = self.qclient()
        rep = self.snapshot(c)
        c.logout()
        return rep

    def test_reconnect_rebuilds_mailbox(self):
        rep = self.inbox_snapshot()
        gone = changes_meanwhile(self, 'INBOX')
        c, u = self.resync(rep)
        self.assertTrue(vanished(u, True) >= gone, u)
        self.check_rebuilt(rep, c, u)
        # and once more from there, nothing changed: nothing to tell
        c.logout()
        c, u = self.resync(rep)
        self.assertEqual(vanished(u, True), set(), u)
        self.assertEqual(fetches(u), [], u)
        self.check_rebuilt(rep, c, u)

    def test_reconnect_after_restart(self):
        rep = self.inbox_snapshot()
        changes_meanwhile(self, 'INBOX')
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        c, u = self.resync(rep)
        self.check_rebuilt(rep, c, u)

    def test_changes_after_restart(self):
        """Changes made after the restart, from a snapshot taken before."""
        rep = self.inbox_snapshot()
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        changes_meanwhile(self, 'INBOX')
        c, u = self.resync(rep)
        self.check_rebuilt(rep, c, u)

    @unittest.skipIf(AGAINST_DOVECOT, 'coffrectl')
    def test_reconnect_after_reindex(self):
        rep = self.inbox_snapshot()
        changes_meanwhile(self, 'INBOX')
        # with coffred stopped: a reindex under a running coffred that has
        # the account open is seen only when the account is opened again
        self.assertEqual(self.server.stop(), 0)
        rc, out, err = self.server.ctl('mailbox', 'reindex', USER)
        self.assertEqual(rc, 0, out + err)
        self.server.start()
        c, u = self.resync(rep)
        # everything changed as far as the client can know
        self.assertEqual(len(fetches(u)), len(full_state(c)), u)
        st = c.ok('STATUS INBOX (UIDVALIDITY)')
        uv = int(re.search(rb'UIDVALIDITY (\d+)', st[0]).group(1))
        # the rebuilt index kept the mailbox's UIDVALIDITY: the answer must
        # then tell everything (its expunges and modseqs were lost)
        self.assertEqual(uv, rep.uidvalidity)
        self.check_rebuilt(rep, c, u)
        # a modseq from the rebuilt index resyncs as usual
        c.logout()
        have = sorted(rep.msgs)
        o = self.other()
        o.ok('UID STORE %d -FLAGS ($Label1)' % have[0])
        o.ok('UID STORE %d +FLAGS (\\Deleted)' % have[2])
        o.ok('UID EXPUNGE %d' % have[2])
        o.logout()
        c, u = self.resync(rep)
        self.assertEqual(vanished(u, True), {have[2]}, u)
        self.assertEqual([x[0] for x in fetches(u)], [have[0]], u)
        self.check_rebuilt(rep, c, u)


@unittest.skipIf(AGAINST_DOVECOT, 'imap_vanished_keep_count is coffre\'s')
class QresyncPruned(QresyncBase):
    """Few expunged UIDs remembered: resyncs from before what was forgotten
    get every missing UID they name (RFC 7162 3.2.5.2)."""

    CONF = {'imap_vanished_keep_count': '1', 'imap_vanished_keep_days': '0'}

    def wait_forgotten(self, rep, uid):
        """Until a resync from rep reports uid, which went before rep was
        taken: the expunges since rep.highestmodseq were forgotten."""
        deadline = time.monotonic() + 30
        while True:
            c = self.qclient(select=False)
            u, t = select_qresync(c, self.box, rep.uidvalidity, rep.highestmodseq)
            self.assertOK(t)
            if uid in vanished(u, True):
                return c, u
            c.logout()
            if time.monotonic() > deadline:
                self.fail('expunges never forgotten: %r' % u)
            time.sleep(0.5)

    def test_floor(self):
        c = self.qclient()
        # UID 5 goes before the client's snapshot: it never knew it
        c.ok('UID STORE 5 +FLAGS (\\Deleted)')
        c.ok('UID EXPUNGE 5')
        rep = self.snapshot(c)
        c.logout()
        o = self.other()
        for uid in (2, 7, 9):
            o.ok('UID STORE %d +FLAGS (\\Deleted)' % uid)
            o.ok('UID EXPUNGE %d' % uid)
        o.ok('UID STORE 3 +FLAGS (\\Flagged)')
        o.logout()
        c, u = self.wait_forgotten(rep, 5)
        # every UID up to the highest that does not exist
        self.assertEqual(vanished(u, True), {2, 5, 7, 9}, u)
        since = rep.highestmodseq
        self.check(rep, c, u)
        rep.highestmodseq = since  # the questions below ask from there again
        c.logout()
        # known UIDs: only those
        c = self.qclient(select=False)
        u, t = select_qresync(c, self.box, rep.uidvalidity, rep.highestmodseq, ' 1:4,6:8')
        self.assertOK(t)
        self.assertEqual(vanished(u, True), {2, 7}, u)
        c.logout()
        # sequence match data: the client's messages 1 and 3 (UIDs 1 and
        # 3 in its view of 1,3,4,6,8,10: UID 2 gone) no longer hold at
        # their numbers, the first does: only what is above UID 1 is told
        c = self.qclient(select=False)
        u, t = select_qresync(c, self.box, rep.uidvalidity, rep.highestmodseq,
                              ' 1:10 (1,3,4 1,3,4)')
        self.assertOK(t)
        self.assertEqual(vanished(u, True), {2, 5, 7, 9}, u)
        c.logout()
        # the client's numbers as the mailbox has them now (1:1, 3:2, 4:3):
        # nothing at or below UID 4 can have gone since
        c = self.qclient(select=False)
        u, t = select_qresync(c, self.box, rep.uidvalidity, rep.highestmodseq,
                              ' 1:10 (1:3 1,3:4)')
        self.assertOK(t)
        self.assertEqual(vanished(u, True), {5, 7, 9}, u)
        c.logout()
        # a modseq at or above the floor: the expunges one by one
        c = self.qclient()
        rep2 = self.snapshot(c)
        c.ok('UID STORE 4 +FLAGS (\\Deleted)')
        c.ok('UID EXPUNGE 4')
        c.logout()
        c = self.qclient(select=False)
        u, t = select_qresync(c, self.box, rep2.uidvalidity, rep2.highestmodseq)
        self.assertOK(t)
        self.assertEqual(vanished(u, True), {4}, u)
        # UID FETCH VANISHED below the floor: the same rule
        u = c.ok('UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)' % rep.highestmodseq)
        self.wait_until_full(c, rep, {2, 4, 5, 7, 9})

    def wait_until_full(self, c, rep, want):
        deadline = time.monotonic() + 30
        while True:
            u = c.ok('UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)' % rep.highestmodseq)
            if vanished(u, True) == want:
                return
            if time.monotonic() > deadline:
                self.fail('UID FETCH VANISHED: %r' % u)
            time.sleep(0.5)

    def check(self, rep, c, u):
        self.assertTrue(rep.apply(u))
        self.assertEqual(rep.msgs, full_state(c))

    def test_rebuild_below_floor(self):
        """The whole reconnect scenario with expunges forgotten."""
        c = self.login()
        for i in range(N):
            c.append('INBOX', make_message(i))
        c.select('INBOX')
        first = min(full_state(c))
        c.ok('UID STORE %d +FLAGS (\\Deleted)' % first)
        c.ok('UID EXPUNGE %d' % first)
        c.logout()
        self.box = 'INBOX'
        c = self.qclient()
        rep = self.snapshot(c)
        c.logout()
        changes_meanwhile(self, 'INBOX')
        # expunges one at a time: with one remembered (and those sharing
        # its modseq), those of changes_meanwhile are forgotten
        o = self.login()
        o.select('INBOX')
        for uid in sorted(full_state(o))[-3:-1]:
            o.ok('UID STORE %d +FLAGS (\\Deleted)' % uid)
            o.ok('UID EXPUNGE %d' % uid)
        o.logout()
        deadline = time.monotonic() + 30
        while True:
            c = self.qclient(select=False)
            u, t = select_qresync(c, 'INBOX', rep.uidvalidity, rep.highestmodseq)
            self.assertOK(t)
            if first in vanished(u, True):
                break  # told as a UID that does not exist: the floor passed
            c.logout()
            self.assertLess(time.monotonic(), deadline, u)
            time.sleep(0.5)
        self.check(rep, c, u)


if __name__ == '__main__':
    unittest.main()
