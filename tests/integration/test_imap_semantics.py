"""IMAP semantics that RFC 3501 (and RFC 3502) fix and that are easy to get
subtly wrong: UID sets reaching 4294967295, MULTIAPPEND in CAPABILITY,
mailbox names that are not valid modified UTF-7, SEARCH TEXT over the
header, the SENT* dates, and address keys over comments and folding."""
import re
import time

import harness
from imap_util import AGAINST_DOVECOT
from imap_util import ImapCase, USER, PASS, make_message, parse_fetch

UID_MAX = 4294967295


class UidSets(ImapCase):
    """RFC 3501 9 (seq-number) and 6.4.8: in a UID set, "*" is the largest
    UID in use; a number is a number. "n:4294967295" with n above every UID
    matches nothing, while "n:*" still matches the last message (the range
    is "*:n", which contains it)."""

    def setUp(self):
        self.c = self.login()
        self.box = 'Uids%d' % id(self)
        self.c.ok('CREATE %s' % self.box)
        for i in range(3):
            self.c.append(self.box, make_message(i))
        info = self.c.select(self.box)
        self.uidnext = info['uidnext']
        self.last = self.uidnext - 1

    def uids_of(self, untagged):
        return sorted(int(m.group(1)) for r in untagged
                      for m in [re.search(rb'UID (\d+)', r)] if m)

    def test_search(self):
        c, n = self.c, self.uidnext
        self.assertEqual(c.search('UID %d:%d' % (n, UID_MAX), uid=True), [])
        self.assertEqual(c.search('UID %d' % UID_MAX, uid=True), [])
        self.assertEqual(c.search('UID %d:*' % n, uid=True), [self.last])
        self.assertEqual(c.search('UID %d:%d' % (self.last, UID_MAX), uid=True), [self.last])
        self.assertEqual(c.search('UID %d:%d' % (n, UID_MAX)), [])

    def test_fetch(self):
        c, n = self.c, self.uidnext
        self.assertEqual(self.uids_of(c.ok('UID FETCH %d:%d FLAGS' % (n, UID_MAX))), [])
        self.assertEqual(self.uids_of(c.ok('UID FETCH %d FLAGS' % UID_MAX)), [])
        self.assertEqual(self.uids_of(c.ok('UID FETCH %d:* FLAGS' % n)), [self.last])

    def test_store(self):
        c, n = self.c, self.uidnext
        c.ok('UID STORE %d:%d +FLAGS (\\Flagged)' % (n, UID_MAX))
        self.assertEqual(c.search('FLAGGED'), [])
        c.ok('UID STORE %d:* +FLAGS.SILENT (\\Flagged)' % n)
        self.assertEqual(c.search('FLAGGED', uid=True), [self.last])

    def test_copy(self):
        c, n = self.c, self.uidnext
        dst = self.box + 'Copy'
        c.ok('CREATE %s' % dst)
        c.ok('UID COPY %d:%d %s' % (n, UID_MAX, dst))
        self.assertRegex(c.last_tagged, rb'^T\d+ OK')
        self.assertNotIn(b'COPYUID', c.last_tagged)
        u = c.ok('STATUS %s (MESSAGES)' % dst)
        self.assertIn(b'MESSAGES 0', b' '.join(u))
        c.ok('UID COPY %d:* %s' % (n, dst))
        u = c.ok('STATUS %s (MESSAGES)' % dst)
        self.assertIn(b'MESSAGES 1', b' '.join(u))


def caps_of(resp):
    """The capability names of a '* CAPABILITY ...' line or of a
    '[CAPABILITY ...]' response code, upper-cased; None if there is none."""
    m = re.search(rb'(?:^\* |\[)CAPABILITY ([^\]\r\n]*)', resp)
    return set(m.group(1).decode().upper().split()) if m else None


class MultiAppend(ImapCase):
    """RFC 3502 section 3: a server that accepts MULTIAPPEND says so with
    the MULTIAPPEND capability. coffre lists it before and after login;
    Dovecot only after (tests/data/imap-differences.md)."""

    def test_advertised(self):
        c = self.connect()
        lists = []
        greeting = caps_of(c.greeting)
        if greeting is not None:
            lists.append(('greeting', greeting))
        u = c.ok('CAPABILITY')
        lists.append(('CAPABILITY before login', caps_of(u[0])))
        u, t = c.cmd('LOGIN %s %s' % (harness.imap_quote(USER), harness.imap_quote(PASS)))
        self.assertOK(t)
        if caps_of(t) is not None:
            lists.append(('LOGIN OK', caps_of(t)))
        u = c.ok('CAPABILITY')
        lists.append(('CAPABILITY after login', caps_of(u[0])))
        for where, caps in lists:
            if AGAINST_DOVECOT and 'after' not in where and 'LOGIN' not in where:
                continue  # before login it lists only a few (imap-differences.md)
            with self.subTest(where=where):
                self.assertIn('MULTIAPPEND', caps)

    def test_multiappend(self):
        c = self.login()
        c.ok('CREATE Multi')
        msgs = [make_message(i) for i in range(3)]
        c.ok('APPEND Multi (\\Seen) {} (\\Flagged) {} {}', *msgs)
        info = c.select('Multi')
        self.assertEqual(info['exists'], 3)
        got = c.fetch('1:3', '(FLAGS BODY.PEEK[])')
        for i in range(3):
            self.assertEqual(got[i + 1][0]['BODY[]'], msgs[i])
        self.assertEqual(c.search('SEEN'), [1])
        self.assertEqual(c.search('FLAGGED'), [2])


BAD_NAMES = ['a&b', '&Jjo', '&Jjo-&', 'x/&AGE', '&-&AGEA-', '&AGE-']


def list_names(untagged, kind=b'LIST'):
    """The mailbox names (as sent, quotes removed) of LIST/LSUB responses."""
    out = []
    for r in untagged:
        if r.startswith(b'* ' + kind + b' '):
            n = r.rsplit(b' ', 1)[1]
            out.append(n[1:-1] if n.startswith(b'"') else n)
    return out


class InvalidNames(ImapCase):
    """RFC 3501 5.1.3: a name that is not valid modified UTF-7 is still a
    well-formed astring, so a command naming it is well formed: the
    mailbox does not exist (NO), it is not a syntax error (BAD). A LIST
    pattern that is not valid modified UTF-7 matches no name."""

    def setUp(self):
        self.c = self.login()

    def test_no_such_mailbox(self):
        c = self.c
        c.ok('CREATE Real')
        c.append('Real', make_message(1))
        for name in BAD_NAMES:
            q = harness.imap_quote(name)
            for cmd in ('SELECT %s', 'EXAMINE %s', 'STATUS %s (MESSAGES)', 'DELETE %s',
                        'RENAME %s Elsewhere', 'UNSUBSCRIBE %s', 'COPY 1 %s'):
                with self.subTest(name=name, cmd=cmd):
                    if cmd.startswith('COPY'):
                        c.select('Real')
                    u, t = c.cmd(cmd % q)
                    self.assertNO(t)
        # the session is still usable and nothing was made
        self.assertNotIn(b'Elsewhere', list_names(c.ok('LIST "" *')))
        c.ok('NOOP')

    def test_failed_select_deselects(self):
        c = self.c
        c.select('INBOX')
        u, t = c.cmd('SELECT "a&b"')
        self.assertNO(t)
        u, t = c.cmd('FETCH 1 FLAGS')
        self.assertBAD(t)   # no mailbox selected any more (RFC 3501 6.3.1)

    def test_create_refused(self):
        c = self.c
        for name in BAD_NAMES:
            with self.subTest(name=name):
                u, t = c.cmd('CREATE %s' % harness.imap_quote(name))
                self.assertNO(t)
                u, t = c.cmd('RENAME INBOX %s' % harness.imap_quote(name))
                self.assertNO(t)
        names = list_names(c.ok('LIST "" *'))
        self.assertFalse(set(names) & {n.encode() for n in BAD_NAMES}, names)

    def test_syntax_still_bad(self):
        c = self.c
        for cmd in ('SELECT "a&b" extra', 'STATUS "a&b"', 'STATUS "a&b" (FROB)',
                    'RENAME "a&b"', 'DELETE', 'EXAMINE "a&b" (', 'LIST "a&b"',
                    'CREATE "a&b" extra', 'RENAME "a&b" "c&d" extra'):
            if AGAINST_DOVECOT and 'extra' in cmd:
                continue  # it judges the name first (imap-differences.md)
            with self.subTest(cmd=cmd):
                u, t = c.cmd(cmd)
                self.assertBAD(t)

    def test_list_pattern_matches_nothing(self):
        c = self.c
        c.ok('CREATE "a&-b"')   # "a&b", validly encoded
        c.ok('SUBSCRIBE "a&-b"')
        for pat in BAD_NAMES + ['a&b*', '*&Jjo%']:
            if AGAINST_DOVECOT and pat.startswith('a&b'):
                continue  # it reads such a pattern as UTF-8 (imap-differences.md)
            with self.subTest(pattern=pat):
                self.assertEqual(list_names(c.ok('LIST "" %s' % harness.imap_quote(pat))), [])
                self.assertEqual(list_names(c.ok('LSUB "" %s' % harness.imap_quote(pat)),
                                            b'LSUB'), [])
                self.assertEqual(list_names(c.ok('LIST %s *' % harness.imap_quote(pat))), [])
        u = c.ok('LIST "" (%s "a&-b")' % harness.imap_quote('&Jjo'))
        self.assertEqual(list_names(u), [b'a&-b'])
        self.assertEqual(list_names(c.ok('LIST "" "a&-b"')), [b'a&-b'])
        self.assertEqual(list_names(c.ok('LSUB "" "a&-b"'), b'LSUB'), [b'a&-b'])


INDEXED_RE = re.compile(r'full-text index updated, (\d+) texts waiting')
WAIT_INDEXED = 60.0  # generous: the machine may be loaded; not a timing check


class HeaderText(ImapCase):
    """RFC 3501 6.4.4: TEXT matches "the header or body of the message", so
    a word found only in some header field (not Subject, From, To, Cc, Bcc)
    matches TEXT, and not BODY; before the upkeep has indexed the text and
    after."""
    CONF = {'log_debug': 'yes'}

    def indexed_lines(self):
        return [int(m.group(1)) for m in INDEXED_RE.finditer(self.server.log())]

    def wait_all_indexed(self, after):
        if AGAINST_DOVECOT:
            return  # it indexes as it saves
        deadline = time.monotonic() + WAIT_INDEXED
        while time.monotonic() < deadline:
            if any(n == 0 for n in self.indexed_lines()[after:]):
                return
            time.sleep(0.2)
        self.fail('the upkeep did not index the new texts\n' + self.server.log_tail())

    def checks(self, c, phase):
        for crit, want in (('TEXT zanzibarquux', [1]),      # X-Header only, one word
                           ('TEXT anzibarqu', [1]),         # inside that word
                           ('TEXT "mango-tango 42"', [2]),  # X-Other: phrase
                           ('TEXT "Tango 4"', [2]),
                           ('TEXT x-other', [2]),           # a field name is header too
                           ('TEXT kiwi', [3]),              # continuation line
                           ('TEXT plainbody', [1, 2, 3]),   # the body still
                           ('BODY zanzibarquux', []),       # BODY: not the header
                           ('BODY mango', []),
                           ('TEXT "quux mango"', []),
                           ('TEXT zanzibarquuxes', [])):
            with self.subTest(phase=phase, criteria=crit):
                self.assertEqual(c.search(crit), want)

    def test_header_fields(self):
        c = self.login()
        before = len(self.indexed_lines())
        c.ok('CREATE Hdr')
        c.append('Hdr', make_message(1, extra='X-Header: ZanzibarQuux\r\n',
                                     body='plainbody one\r\n'))
        c.append('Hdr', make_message(2, extra='X-Other: mango-tango 42\r\n',
                                     body='plainbody two\r\n'))
        c.append('Hdr', make_message(3, extra='X-Fruit: apple\r\n kiwi\r\n',
                                     body='plainbody three\r\n'))
        c.select('Hdr')
        self.checks(c, 'waiting')
        self.wait_all_indexed(before)
        self.checks(c, 'indexed')
        c2 = self.login()
        c2.select('Hdr')
        self.checks(c2, 'indexed, new session')


class SentDates(ImapCase):
    """RFC 3501 6.4.4: SENTBEFORE, SENTON and SENTSINCE compare "the
    message's Date: header (disregarding time and timezone)": the date as
    written, not the moment converted to another zone. BEFORE, ON and SINCE
    compare the internal date, also disregarding time and zone: the day
    FETCH INTERNALDATE shows."""

    DATES = [
        # (Date: header, the day as written)
        ('Sun, 25 Mar 2007 00:00:00 +0200', '25-Mar-2007'),   # 24 Mar in UTC
        ('Sat, 24 Mar 2007 23:30:00 -0500', '24-Mar-2007'),   # 25 Mar in UTC
        ('Sun, 25 Mar 2007 12:00:00 +0000', '25-Mar-2007'),
        ('25 Mar 2007 23:59:59 -1200', '25-Mar-2007'),       # no weekday, 26 Mar in UTC
        ('Mon, 26 Mar 2007 01:00:00 +1400', '26-Mar-2007'),   # 25 Mar in UTC
        ('Mon, 26 Mar 07 00:10:00 (CEST) +0200', '26-Mar-2007'),  # comment, 2-digit year
    ]

    def setUp(self):
        self.c = self.login()
        self.box = 'Sent%d' % id(self)
        self.c.ok('CREATE %s' % self.box)
        for i, (date, _) in enumerate(self.DATES):
            self.c.append(self.box, make_message(i, date=date))
        self.c.select(self.box)

    def test_sent(self):
        c = self.c
        days = ['24-Mar-2007', '25-Mar-2007', '26-Mar-2007', '27-Mar-2007']
        order = {d: k for k, d in enumerate(days)}
        for day in days:
            on = [i + 1 for i, (_, d) in enumerate(self.DATES) if d == day]
            before = [i + 1 for i, (_, d) in enumerate(self.DATES) if order[d] < order[day]]
            since = [i + 1 for i, (_, d) in enumerate(self.DATES) if order[d] >= order[day]]
            with self.subTest(day=day):
                self.assertEqual(c.search('SENTON %s' % day), on)
                self.assertEqual(c.search('SENTBEFORE %s' % day), before)
                self.assertEqual(c.search('SENTSINCE %s' % day), since)
                self.assertEqual(c.search('NOT SENTON %s' % day),
                                 [i for i in range(1, len(self.DATES) + 1) if i not in on])

    def test_internal(self):
        """The APPEND dates are 25 March 00:30 +0200 (23:30 on the 24th in
        UTC) and 24 March 21:00 -0500 (02:00 on the 25th in UTC): whatever
        zone the server keeps, ON matches the day of INTERNALDATE."""
        c = self.c
        box = self.box + 'I'
        c.ok('CREATE %s' % box)
        c.append(box, make_message(1), date='25-Mar-2007 00:30:00 +0200')
        c.append(box, make_message(2), date='24-Mar-2007 21:00:00 -0500')
        c.select(box)
        got = c.fetch('1:2', '(INTERNALDATE)')
        for n in (1, 2):
            idate = got[n][0]['INTERNALDATE'].decode()
            day = idate.split(' ')[0].lstrip()
            if len(day.split('-')[0]) == 1:
                day = '0' + day
            with self.subTest(message=n, internaldate=idate):
                self.assertIn(n, c.search('ON %s' % day))
                self.assertIn(n, c.search('SINCE %s' % day))
                self.assertNotIn(n, c.search('BEFORE %s' % day))


class AddressKeys(ImapCase):
    """RFC 3501 6.4.4: FROM, TO, CC and BCC look at the address fields;
    RFC 5322 3.2.2 and 3.4: comments and folding white space inside an
    address are not part of it, so the address written without them
    matches; the display name matches too."""

    def msg(self, i, frm, to, cc=None, bcc=None):
        h = 'From: %s\r\nTo: %s\r\n' % (frm, to)
        if cc:
            h += 'Cc: %s\r\n' % cc
        if bcc:
            h += 'Bcc: %s\r\n' % bcc
        h += ('Subject: addr %d\r\nDate: Thu, 10 Mar 2022 12:00:00 +0000\r\n'
              'Message-ID: <addr%d@example.net>\r\n\r\nbody\r\n' % (i, i))
        return h.encode()

    def test_comments_and_folding(self):
        c = self.login()
        c.ok('CREATE Addr')
        msgs = [
            self.msg(1, '<user-from (comment)@ (comment) domain.org>',
                     'Some One <user-to@\r\n domain.org>'),
            self.msg(2, '"Joe Q. Public" <john.q.public@example.com>',
                     'Mary Smith <mary@x.test>, jdoe@one.test, Who? <one@y.test>',
                     cc='<boss@nil.test>, "Giant; \\"Big\\" Box" <sysservices@example.net>',
                     bcc='Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>'),
            self.msg(3, 'Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>',
                     'A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;',
                     cc='Undisclosed recipients:;'),
            self.msg(4, 'plain@domain.org (Plain Person)', 'user-to@domain.org'),
        ]
        for m in msgs:
            c.append('Addr', m)
        c.select('Addr')
        for crit, want in (
                ('FROM user-from@domain.org', [1]),
                ('FROM "<user-from@domain.org>"', [1]),
                ('TO user-to@domain.org', [1, 4]),
                ('TO "Some One"', [1]),
                ('FROM "Joe Q. Public"', [2]),
                ('FROM john.q.public@example.com', [2]),
                ('TO mary@x.test', [2]),
                ('TO "Mary Smith"', [2]),
                ('TO jdoe@one.test', [2, 3]),
                ('CC sysservices@example.net', [2]),
                ('CC boss@nil.test', [2]),
                ('BCC pete@silly.test', [2]),
                ('FROM pete@silly.test', [3]),
                ('FROM "Pete"', [3]),
                ('TO c@a.test', [3]),
                ('TO "Ed Jones"', [3]),
                ('FROM plain@domain.org', [4]),
                ('FROM nobody@domain.org', []),
                ('FROM "user-from@domain.com"', []),
                # a comment is not part of the address, and a string over
                # the comma between two addresses is in neither
                ('FROM comment', []),
                ('FROM "(comment)@"', []),
                ('BCC "his account"', []),
                ('TO "x.test>, jdoe"', []),
                ('TO "x.test, jdoe"', []),
                ('FROM "\\"Joe Q. Public\\""', [2]),
                ('TO "user-to@domain.org.uk"', [])):
            with self.subTest(criteria=crit):
                self.assertEqual(c.search(crit), want)


class HeaderFieldsWithoutBody(ImapCase):
    """RFC 3501 6.4.5: the blank line ending the header "is always included
    in header data, except in the case of a message which has no body and
    no blank line" -- HEADER.FIELDS and HEADER.FIELDS.NOT too."""

    def test_blank_line_only_when_present(self):
        c = self.login()
        box = 'HdrOnly'
        c.ok('CREATE %s' % box)
        c.append(box, b'From: a@example.com\r\nSubject: header only')
        c.append(box, b'From: a@example.com\r\nSubject: with body\r\n\r\nbody\r\n')
        c.select(box)
        got = {}
        for sec in ('HEADER.FIELDS (Subject)', 'HEADER.FIELDS.NOT (From)'):
            for untagged in c.ok('FETCH 1:2 (BODY.PEEK[%s])' % sec):
                n, items, _ = parse_fetch(untagged)
                got[(n, sec)] = list(items.values())[0]
        if not AGAINST_DOVECOT:
            # Dovecot adds the blank line here or not depending on what it
            # has cached (tests/data/imap-differences.md)
            self.assertEqual(got[(1, 'HEADER.FIELDS (Subject)')], b'Subject: header only\r\n')
            self.assertEqual(got[(1, 'HEADER.FIELDS.NOT (From)')], b'Subject: header only\r\n')
        self.assertEqual(got[(2, 'HEADER.FIELDS (Subject)')], b'Subject: with body\r\n\r\n')
        self.assertEqual(got[(2, 'HEADER.FIELDS.NOT (From)')], b'Subject: with body\r\n\r\n')


class BadCommandsInARow(ImapCase):
    """max_bad_commands closes a session that sends that many invalid
    commands in a row; one that lives for days and sometimes sends a BAD
    between good commands stays (Dovecot too counts them in a row)."""

    CONF = {'max_bad_commands': '3'}

    def test_interleaved_bad_commands_keep_the_session(self):
        c = self.login()
        for _ in range(10):
            self.assertBAD(c.cmd('FETCH')[1])
            c.ok('NOOP')
        c.ok('SELECT INBOX')
        if AGAINST_DOVECOT:
            return      # Dovecot's limit is its own (20)
        for _ in range(2):
            self.assertBAD(c.cmd('FETCH')[1])
        self.assertBAD(c.cmd('FETCH')[1])
        self.assertEqual(c.line(), b'* BYE Too many invalid commands.')


if __name__ == '__main__':
    harness.main()
