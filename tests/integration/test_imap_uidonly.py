"""IMAP UIDONLY (RFC 9586): ENABLE UIDONLY, after which no message
sequence number goes either way. Every command form naming messages by
sequence number (FETCH, STORE, COPY, MOVE, SEARCH, SORT, THREAD, REPLACE,
a sequence set among UID SEARCH/SORT/THREAD keys, SELECT's QRESYNC
sequence match data) is refused with BAD [UIDREQUIRED]; FETCH answers and
unsolicited flag changes (NOOP, IDLE, NOTIFY) come as "* uid UIDFETCH
(...)"; expunges (own, another session's) as VANISHED, QRESYNC on or not;
EXISTS still counts; UID SEARCH answers ESEARCH; SELECT sends no [UNSEEN
n]. With CONDSTORE and QRESYNC on as well. UNAUTHENTICATE forgets it.

Dovecot 2.3 lacks UIDONLY: against it every test skips."""
import re

import harness
import imap_util
import lmtp_util
from imap_util import ImapCase, Imap, make_message, USER

N = 8

UIDFETCH_RE = re.compile(rb'^\* (\d+) UIDFETCH \(')
VAN_RE = re.compile(rb'^\* VANISHED (\(EARLIER\) )?([0-9:,]+)$')
UIDREQ_RE = rb'^T\d+ BAD \[UIDREQUIRED\]'


def uidfetches(untagged):
    """{uid: items} of the UIDFETCH responses (merged per UID)."""
    out = {}
    for r in untagged:
        if UIDFETCH_RE.match(r):
            n, it, raw = imap_util.parse_fetch(r.replace(b' UIDFETCH ', b' FETCH ', 1))
            out.setdefault(n, {}).update(it)
    return out


def seq_fetches(untagged):
    return [r for r in untagged if re.match(rb'^\* \d+ FETCH ', r)]


def vanished(untagged, earlier=False):
    out = set()
    for r in untagged:
        m = VAN_RE.match(r)
        if m and bool(m.group(1)) == earlier:
            out |= set(imap_util.parse_seqset(m.group(2).decode()))
    return out


def flags_of(items):
    return {str(f).lower() for f in items['FLAGS']}


class UidOnly(ImapCase):

    def setUp(self):
        c = Imap(self.server.raw('imaps', tls=True))
        caps = c.ok('CAPABILITY')[0].split()
        c.close()
        if imap_util.AGAINST_DOVECOT and b'UIDONLY' not in caps:
            self.skipTest('the server does not offer UIDONLY')
        self.box = 'UO%d' % imap_util.serial()
        c = self.login()
        c.ok('CREATE %s' % self.box)
        for i in range(N):
            c.append(self.box, make_message(i))
        c.logout()

    def uclient(self, select=True, also=''):
        c = self.login()
        u = c.ok('ENABLE UIDONLY%s' % also)
        enabled = [r for r in u if r.startswith(b'* ENABLED')]
        self.assertEqual(len(enabled), 1, u)
        self.assertIn(b'UIDONLY', enabled[0].split(), u)
        if select:
            c.select(self.box)
        return c

    def other(self):
        o = self.login()
        o.select(self.box)
        return o

    def test_advertised_and_enabled_once(self):
        c = self.login()
        self.assertIn(b'UIDONLY', c.ok('CAPABILITY')[0].split())
        u = c.ok('ENABLE UIDONLY')
        self.assertEqual([r for r in u if r.startswith(b'* ENABLED')], [b'* ENABLED UIDONLY'])
        u = c.ok('ENABLE UIDONLY')
        self.assertEqual([r for r in u if r.startswith(b'* ENABLED')], [b'* ENABLED'])

    def test_sequence_numbers_refused(self):
        """Every use of a sequence number, '*' among them, is BAD
        [UIDREQUIRED]; each of these commands is valid before ENABLE."""
        c = self.login()
        c.ok('CREATE %sD' % self.box)
        c.select(self.box)
        refused = [
            'FETCH 1 (FLAGS)',
            'FETCH * (UID)',
            'FETCH 1:* (FLAGS) (CHANGEDSINCE 1)',
            'STORE 1 +FLAGS (\\Flagged)',
            'STORE 2:* FLAGS.SILENT (\\Seen)',
            'COPY 1 %sD' % self.box,
            'MOVE 1 %sD' % self.box,
            'SEARCH ALL',
            'SEARCH RETURN (COUNT) ALL',
            'SORT (ARRIVAL) UTF-8 ALL',
            'THREAD REFERENCES UTF-8 ALL',
            'UID SEARCH 1:3',
            'UID SEARCH *',
            'UID SEARCH UID 1:* NOT 2',
            'UID SEARCH OR 1 UID 5',
            'UID SEARCH RETURN (ALL) (SEEN 1,2)',
            'UID SORT (ARRIVAL) UTF-8 1:*',
            'UID THREAD REFERENCES UTF-8 2',
        ]
        for cmd in refused:
            c.ok(cmd)  # valid without UIDONLY
        c.ok('UNSELECT')
        c.ok('ENABLE UIDONLY')
        c.select(self.box)
        before = c.ok('UID FETCH 1:* (FLAGS)')
        for cmd in refused:
            u, t = c.cmd(cmd)
            self.assertRegex(t, UIDREQ_RE, cmd)
            self.assertEqual(seq_fetches(u), [], cmd)
        u, t = c.cmd('REPLACE 1 %s {}' % self.box, make_message(99))
        self.assertRegex(t, UIDREQ_RE)
        # nothing was changed, copied or moved by the refused commands
        self.assertEqual(c.ok('UID FETCH 1:* (FLAGS)'), before)
        st = c.ok('STATUS %sD (MESSAGES)' % self.box)
        self.assertIn(b'(MESSAGES 2)', st[0])  # the COPY and MOVE before ENABLE
        # UIDs, "*" as the highest UID and "$" stay allowed
        c.ok('UID FETCH 1:* (FLAGS)')
        c.ok('UID SEARCH RETURN (SAVE) UID 2:4')
        u = c.ok('UID SEARCH $')
        self.assertIn(b' UID ALL 2:4', b'\n'.join(u))
        u = c.ok('UID FETCH $ (FLAGS)')
        self.assertEqual(sorted(uidfetches(u)), [2, 3, 4], u)
        c.ok('UID STORE * +FLAGS (\\Flagged)')
        c.ok('EXPUNGE')
        self.assertAlive()

    def test_replace_refused_before_its_message(self):
        """REPLACE with a message larger than a command line: BAD
        [UIDREQUIRED] before the message is asked for (synchronizing
        literal); a small one sent with LITERAL+ is refused too."""
        c = self.uclient()
        big = make_message(98, body='x' * 200000)
        c.send('A1 REPLACE 1 %s {%d}\r\n' % (self.box, len(big)))
        r = c.line(timeout=10)
        self.assertRegex(r, rb'^A1 BAD \[UIDREQUIRED\]')
        u, t = c.cmd('REPLACE 2 %s {}' % self.box, make_message(97), plus=True)
        self.assertRegex(t, UIDREQ_RE)
        u = c.ok('UID FETCH 1:* (FLAGS)')
        self.assertEqual(sorted(uidfetches(u)), list(range(1, N + 1)))

    def test_uid_fetch_answers_uidfetch(self):
        """UID FETCH: "* uid UIDFETCH (...)", no sequence number and no
        UID item unless asked for."""
        c = self.uclient()
        u = c.ok('UID FETCH 2:4 (FLAGS RFC822.SIZE)')
        self.assertEqual(seq_fetches(u), [], u)
        got = uidfetches(u)
        self.assertEqual(sorted(got), [2, 3, 4], u)
        for r in u:
            if UIDFETCH_RE.match(r):
                self.assertNotIn(b'UID ', r.split(b'UIDFETCH', 1)[1], r)
        for it in got.values():
            self.assertIn('RFC822.SIZE', it)
        # UID asked for: there, and the only item is fine too
        u = c.ok('UID FETCH 5 (UID)')
        self.assertEqual(u, [b'* 5 UIDFETCH (UID 5)'])
        # bodies, streamed
        u = c.ok('UID FETCH 6 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
        self.assertEqual(list(uidfetches(u)), [6], u)
        # UID STORE: its answer too
        u = c.ok('UID STORE 3 +FLAGS (\\Flagged)')
        self.assertEqual(seq_fetches(u), [], u)
        self.assertIn('\\flagged', flags_of(uidfetches(u)[3]))
        # the \Seen set by a fetch of the body
        u = c.ok('UID FETCH 7 (BODY[TEXT])')
        self.assertEqual(seq_fetches(u), [], u)
        self.assertIn('\\seen', flags_of(uidfetches(u)[7]))

    def test_other_sessions_flags(self):
        """Another session's flag change: UIDFETCH at NOOP and in IDLE,
        MODSEQ in it once CONDSTORE is on."""
        c = self.uclient(also=' CONDSTORE')
        o = self.other()
        o.ok('UID STORE 2 +FLAGS (\\Answered)')
        u = c.ok('NOOP')
        self.assertEqual(seq_fetches(u), [], u)
        got = uidfetches(u)
        self.assertEqual(list(got), [2], u)
        self.assertIn('\\answered', flags_of(got[2]))
        self.assertIn('MODSEQ', got[2])
        self.assertNotIn('UID', got[2])
        c.idle()
        o.ok('UID STORE 5 +FLAGS ($Label1)')
        r = c.line_until(UIDFETCH_RE, forbid=rb'^\* \d+ FETCH ')
        got = uidfetches([r])
        self.assertEqual(list(got), [5], r)
        self.assertIn('$label1', flags_of(got[5]))
        c.done()

    def test_expunges_vanished(self):
        """VANISHED, never EXPUNGE, without QRESYNC: own EXPUNGE, UID
        EXPUNGE, UID MOVE, another session's at NOOP and in IDLE."""
        c = self.uclient()
        c.ok('UID STORE 2,4,5 +FLAGS (\\Deleted)')
        u = c.ok('EXPUNGE')
        self.assertFalse(any(r.endswith(b' EXPUNGE') for r in u), u)
        self.assertEqual([r for r in u if VAN_RE.match(r)], [b'* VANISHED 2,4:5'])
        c.ok('UID STORE 6,7 +FLAGS (\\Deleted)')
        u = c.ok('UID EXPUNGE 7')
        self.assertEqual(vanished(u), {7}, u)
        self.assertFalse(any(r.endswith(b' EXPUNGE') for r in u), u)
        c.ok('CREATE %sD' % self.box)
        u = c.ok('UID MOVE 8 %sD' % self.box)
        self.assertEqual(vanished(u), {8}, u)
        self.assertFalse(any(r.endswith(b' EXPUNGE') for r in u), u)
        o = self.other()
        o.ok('UID STORE 1 +FLAGS (\\Deleted)')
        o.ok('UID EXPUNGE 1')
        u = c.ok('NOOP')
        self.assertEqual(vanished(u), {1}, u)
        self.assertFalse(any(r.endswith(b' EXPUNGE') for r in u), u)
        c.idle()
        o.ok('UID STORE 3 +FLAGS (\\Deleted)')
        o.ok('UID EXPUNGE 3')
        r = c.line_until(b'* VANISHED', forbid=rb' EXPUNGE$')
        self.assertEqual(r, b'* VANISHED 3')
        c.done()
        u = c.ok('UID SEARCH ALL')
        self.assertIn(b' UID ALL 6', b'\n'.join(u))

    def test_delivery_exists(self):
        """An LMTP delivery is announced with EXISTS (a count, not a
        sequence number) and its flags come as UIDFETCH."""
        c = self.login()
        c.ok('ENABLE UIDONLY QRESYNC')
        info = c.select('INBOX')
        lm = lmtp_util.lmtp(self.server)
        rcpt, replies = lmtp_util.send(lm, 'sender@example.net', [USER], make_message(100))
        self.assertEqual([r[0] for r in replies], [250])
        lm.quit()
        u = c.ok('NOOP')
        self.assertIn(b'* %d EXISTS' % (info['exists'] + 1), u)
        self.assertEqual(seq_fetches(u), [], u)
        u = c.ok('UID FETCH %d:* (FLAGS)' % info['uidnext'])
        self.assertEqual(list(uidfetches(u)), [info['uidnext']], u)

    def test_notify_message_new(self):
        """NOTIFY's MessageNew with fetch attributes: UIDFETCH."""
        c = self.uclient()
        c.ok('NOTIFY SET (selected (MessageNew (FLAGS) MessageExpunge FlagChange))')
        o = self.other()
        uid = o.append(self.box, make_message(50))[1]
        seen = {}
        while uid not in seen:
            r = c.line(timeout=10)
            self.assertNotRegex(r, rb'^\* \d+ FETCH ')
            seen.update(uidfetches([r]))
        o.ok('UID STORE %d +FLAGS (\\Deleted)' % uid)
        o.ok('UID EXPUNGE %d' % uid)
        r = c.line_until(b'* VANISHED', forbid=rb'^\* \d+ (FETCH|EXPUNGE)')
        self.assertEqual(r, b'* VANISHED %d' % uid)

    def test_search_and_sort(self):
        c = self.uclient()
        # UIDs and sequence numbers apart
        c.ok('UID STORE 1 +FLAGS (\\Deleted)')
        c.ok('EXPUNGE')
        c.ok('UID STORE 3,6 +FLAGS (\\Seen)')
        u = c.ok('UID SEARCH UNSEEN')
        self.assertEqual([r for r in u if r.startswith(b'* ')],
                         [b'* ESEARCH (TAG "%s") UID ALL 2,4:5,7:8' % c.last_tagged.split()[0]])
        u = c.ok('UID SEARCH RETURN (MIN MAX COUNT) SEEN')
        self.assertIn(b' UID MIN 3 MAX 6 COUNT 2', u[0])
        u = c.ok('UID SORT (ARRIVAL) UTF-8 SEEN')
        self.assertEqual([r for r in u if r.startswith(b'* ')], [b'* SORT 3 6'])
        u = c.ok('UID THREAD REFERENCES UTF-8 UID 3:4')
        self.assertTrue(any(r.startswith(b'* THREAD') for r in u), u)

    def test_select_no_unseen(self):
        """SELECT: EXISTS, no [UNSEEN n] (a sequence number)."""
        c = self.login()
        o = self.other()
        o.ok('UID STORE 1:2 +FLAGS (\\Seen)')
        o.logout()
        u = c.ok('SELECT %s' % self.box)
        self.assertTrue(any(r.startswith(b'* OK [UNSEEN 3]') for r in u), u)
        c.ok('UNSELECT')
        c.ok('ENABLE UIDONLY')
        u = c.ok('SELECT %s' % self.box)
        self.assertIn(b'* %d EXISTS' % N, u)
        self.assertFalse(any(b'[UNSEEN' in r for r in u), u)

    def test_qresync_select(self):
        """SELECT (QRESYNC ...): the sequence match data is refused; with
        known UIDs only, VANISHED (EARLIER) and the changes as UIDFETCH."""
        c = self.uclient(select=False, also=' QRESYNC')
        u = c.ok('SELECT %s' % self.box)
        uidvalidity = int(re.search(rb'UIDVALIDITY (\d+)', b'\n'.join(u)).group(1))
        hms = int(re.search(rb'HIGHESTMODSEQ (\d+)', b'\n'.join(u)).group(1))
        c.ok('UNSELECT')
        o = self.other()
        o.ok('UID STORE 3 +FLAGS (\\Flagged)')
        o.ok('UID STORE 2 +FLAGS (\\Deleted)')
        o.ok('UID EXPUNGE 2')
        o.logout()
        u, t = c.cmd('SELECT %s (QRESYNC (%d %d 1:%d (1:3 1:3)))' % (self.box, uidvalidity, hms, N))
        self.assertRegex(t, UIDREQ_RE)
        u = c.ok('SELECT %s (QRESYNC (%d %d 1:%d))' % (self.box, uidvalidity, hms, N))
        hms2 = int(re.search(rb'HIGHESTMODSEQ (\d+)', b'\n'.join(u)).group(1))
        self.assertEqual(vanished(u, True), {2}, u)
        self.assertEqual(seq_fetches(u), [], u)
        got = uidfetches(u)
        self.assertEqual(list(got), [3], u)
        self.assertIn('\\flagged', flags_of(got[3]))
        self.assertGreater(int(got[3]['MODSEQ'][0]), hms)
        # UID FETCH (CHANGEDSINCE VANISHED)
        o = self.other()
        o.ok('UID STORE 4 +FLAGS (\\Seen)')
        o.ok('UID STORE 5 +FLAGS (\\Deleted)')
        o.ok('UID EXPUNGE 5')
        o.logout()
        u = c.ok('UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)' % hms2)
        self.assertEqual(vanished(u, True) | vanished(u), {5}, u)
        self.assertIn(4, uidfetches(u))
        self.assertEqual(seq_fetches(u), [], u)

    def test_condstore(self):
        """UNCHANGEDSINCE: [MODIFIED uid-set]; the others' answers in
        UIDFETCH with MODSEQ."""
        c = self.uclient(also=' CONDSTORE')
        u = c.ok('UID FETCH 1:* (MODSEQ)')
        ms = max(int(it['MODSEQ'][0]) for it in uidfetches(u).values())
        o = self.other()
        o.ok('UID STORE 2 +FLAGS (\\Answered)')
        u, t = c.cmd('UID STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)' % ms)
        self.assertRegex(t, rb'^T\d+ OK \[MODIFIED 2\]')
        self.assertEqual(seq_fetches(u), [], u)
        got = uidfetches(u)
        self.assertIn('\\flagged', flags_of(got[1]))
        self.assertIn('MODSEQ', got[1])
        u = c.ok('UID SEARCH MODSEQ %d' % (ms + 1))
        self.assertIn(b' UID ', u[0])
        self.assertTrue(u[0].startswith(b'* ESEARCH'), u)

    def test_unauthenticate_forgets(self):
        c = self.login()
        if b'UNAUTHENTICATE' not in c.ok('CAPABILITY')[0].split():
            self.skipTest('no UNAUTHENTICATE')
        self.assertIn(b'* ENABLED UIDONLY', c.ok('ENABLE UIDONLY'))
        c.select(self.box)
        self.assertRegex(c.cmd('FETCH 1 (UID)')[1], UIDREQ_RE)
        c.ok('UNAUTHENTICATE')
        c.login()
        c.select(self.box)
        u = c.ok('FETCH 1 (UID)')
        self.assertEqual(u, [b'* 1 FETCH (UID 1)'])


if __name__ == '__main__':
    harness.main()
