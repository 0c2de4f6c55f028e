"""IMAP FETCH (RFC 3501 6.4.5, 7.4.2): every data item, exact ENVELOPE,
BODYSTRUCTURE and BODY of the storage MIME corpus (tests/data/mime), body
sections and partial fetches, \\Seen set implicitly, the macros, over IMAPS
and over STARTTLS."""
import datetime
import re

import harness
import imap_util
from imap_util import ImapCase, Atom, corpus, escape_crlf, unescape_crlf, make_message

NESTED = None
for _name, _eml, _exp in corpus():
    if _name.startswith('05-nested'):
        NESTED = _eml


def crlf(b):
    """Bare LF turned into CRLF."""
    return b.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')


def item(items, name):
    """The fetch item named name (case and inner spacing normalized)."""
    want = re.sub(r'\s+', ' ', name.upper())
    for k, v in items.items():
        if re.sub(r'\s+', ' ', k.upper()) == want:
            return v
    raise AssertionError('no %s in %r' % (name, sorted(items)))


class FetchCorpus(ImapCase):
    """APPEND each corpus message, then FETCH ENVELOPE BODYSTRUCTURE BODY
    and compare them byte for byte with the .expected files."""

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = imap_util.Imap(cls.server.raw('imaps', tls=True))
        c.login()
        c.ok('CREATE Corpus')
        cls.uids = {}
        cls.corpus, cls.refused = [], []
        for name, eml, exp in corpus():
            st, t, u = c.status_of('APPEND Corpus {}', eml)
            if st != 'OK':
                cls.refused.append((name, len(eml), t))
                continue
            cls.corpus.append((name, eml, exp))
            m = re.search(rb'\[APPENDUID \d+ (\d+)\]', t)
            cls.uids[name] = int(m.group(1)) if m else None
        c.logout()

    def test_corpus_is_there(self):
        self.assertGreaterEqual(len(self.corpus), 24)
        # only an empty message may be refused (Dovecot does: "Can't save a
        # zero byte message"); everything else must be stored
        for name, size, t in self.refused:
            self.assertEqual(size, 0, (name, t))
            self.assertRegex(t, rb'^T\d+ NO', t)

    def fetch_all(self, items):
        c = self.login()
        info = c.select('Corpus')
        self.assertEqual(info['exists'], len(self.corpus))
        res = c.fetch('1:*', items)
        self.assertEqual(sorted(res), list(range(1, len(self.corpus) + 1)))
        return c, res

    def test_envelope_bodystructure_body_exact(self):
        c, res = self.fetch_all('(ENVELOPE BODYSTRUCTURE BODY)')
        for seq, (name, eml, exp) in enumerate(self.corpus, 1):
            items, raws = res[seq]
            for key in ('envelope', 'bodystructure', 'body'):
                with self.subTest(message=name, item=key):
                    self.assertIn(key.encode(), [k.encode() for k in exp], name)
                    got = escape_crlf(raws[key.upper()])
                    self.assertEqual(got.decode('utf-8', 'replace'),
                                     exp[key].decode('utf-8', 'replace'))

    def test_uid_fetch_envelope_matches_seq_fetch(self):
        c = self.login()
        c.select('Corpus')
        for name, eml, exp in self.corpus:
            uid = self.uids[name]
            if uid is None:
                self.skipTest('no APPENDUID')
            with self.subTest(message=name):
                res = c.fetch(str(uid), '(UID ENVELOPE)', uid=True)
                self.assertEqual(len(res), 1)
                (items, raws), = res.values()
                self.assertEqual(int(items['UID']), uid)
                self.assertEqual(escape_crlf(raws['ENVELOPE']), exp['envelope'])

    def test_body_and_size_byte_identical(self):
        c, res = self.fetch_all('(RFC822.SIZE BODY.PEEK[])')
        for seq, (name, eml, exp) in enumerate(self.corpus, 1):
            items, raws = res[seq]
            with self.subTest(message=name):
                # APPEND may turn bare LF into CRLF (RFC 3501 messages are
                # CRLF; Dovecot does the same); otherwise the bytes are kept
                want = eml if item(items, 'BODY[]') == eml else crlf(eml)
                self.assertEqual(item(items, 'BODY[]'), want)
                self.assertEqual(int(items['RFC822.SIZE']), len(want))

    def test_sections(self):
        c = self.login()
        c.select('Corpus')
        for seq, (name, eml, exp) in enumerate(self.corpus, 1):
            for key, want in exp.items():
                if not key.startswith('section:'):
                    continue
                sec = key.split(':', 1)[1]
                with self.subTest(message=name, section=sec):
                    res = c.fetch(str(seq), '(BODY.PEEK[%s])' % sec)
                    got = item(res[seq][0], 'BODY[%s]' % sec)
                    if want == b'NONE':
                        self.assertIn(got, (None, b''))
                    elif b'\r\n' not in eml and escape_crlf(got or b'') != want:
                        # bare-LF message normalized at APPEND (see above)
                        self.assertEqual(got, crlf(unescape_crlf(want)))
                    else:
                        self.assertEqual(escape_crlf(got or b''), want)

    def test_peek_does_not_set_seen(self):
        c, res = self.fetch_all('(FLAGS)')
        for seq in res:
            self.assertNotIn('\\Seen', res[seq][0]['FLAGS'])


class FetchCorpusStartTLS(FetchCorpus):
    """The same corpus checks over port 143 after STARTTLS."""
    TLS = False


class FetchItems(ImapCase):
    """Every FETCH data item on known messages (IMAPS)."""
    DATE = '17-Jul-1996 02:44:25 -0700'

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = imap_util.Imap(cls.server.raw('imaps', tls=True))
        c.login()
        cls.simple = make_message(1, subject='fetch items', body='line one\r\nline two\r\n',
                                  extra='X-Custom: yes\r\nCc: carol@example.org\r\n')
        cls.nested = NESTED
        r1 = c.append('INBOX', cls.simple, flags=['\\Flagged', '$Label1'], date=cls.DATE)
        r2 = c.append('INBOX', cls.nested)
        cls.uid1 = r1[1] if r1 else 1
        cls.uid2 = r2[1] if r2 else 2
        c.logout()

    def setUp(self):
        # each test may change \Seen: start from the appended state
        self.c = self.login()
        self.c.select('INBOX')
        self.c.ok('STORE 1:* FLAGS ()')
        self.c.ok('STORE 1 FLAGS (\\Flagged $Label1)')

    def one(self, items, seq=1, uid=False):
        res = self.c.fetch(str(seq), items, uid=uid)
        self.assertEqual(len(res), 1, res)
        return list(res.values())[0]

    def test_flags(self):
        it, _ = self.one('(FLAGS)')
        self.assertEqual(set(it['FLAGS']), {'\\Flagged', '$Label1'})
        it, _ = self.one('FLAGS', seq=2)
        self.assertEqual(it['FLAGS'], [])

    def test_internaldate_from_append(self):
        it, _ = self.one('(INTERNALDATE)')
        got = datetime.datetime.strptime(it['INTERNALDATE'].decode().strip(),
                                         '%d-%b-%Y %H:%M:%S %z')
        want = datetime.datetime.strptime(self.DATE, '%d-%b-%Y %H:%M:%S %z')
        self.assertEqual(got, want)
        self.assertRegex(it['INTERNALDATE'].decode(),
                         r'^[ 0-3]\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}$')

    def test_rfc822_size_and_uid(self):
        it, _ = self.one('(RFC822.SIZE UID)')
        self.assertEqual(int(it['RFC822.SIZE']), len(self.simple))
        self.assertEqual(int(it['UID']), self.uid1)

    def test_uid_fetch_always_includes_uid(self):
        it, _ = self.one('(FLAGS)', seq=self.uid2, uid=True)
        self.assertEqual(int(it['UID']), self.uid2)

    def test_rfc822_sets_seen(self):
        it, _ = self.one('(RFC822)')
        self.assertEqual(it['RFC822'], self.simple)
        it, _ = self.one('(FLAGS)')
        self.assertIn('\\Seen', it['FLAGS'])

    def test_rfc822_header_and_text(self):
        hdr, _, text = self.simple.partition(b'\r\n\r\n')
        it, _ = self.one('(RFC822.HEADER RFC822.TEXT)')
        self.assertEqual(it['RFC822.HEADER'], hdr + b'\r\n\r\n')
        self.assertEqual(it['RFC822.TEXT'], text)
        # RFC822.HEADER is a peek; RFC822.TEXT sets \Seen
        it, _ = self.one('(FLAGS)')
        self.assertIn('\\Seen', it['FLAGS'])

    def test_rfc822_header_does_not_set_seen(self):
        self.one('(RFC822.HEADER)')
        it, _ = self.one('(FLAGS)')
        self.assertNotIn('\\Seen', it['FLAGS'])

    def test_body_sets_seen_and_peek_does_not(self):
        it, _ = self.one('(BODY.PEEK[])')
        self.assertEqual(item(it, 'BODY[]'), self.simple)
        self.assertNotIn('FLAGS', it)
        it, _ = self.one('(FLAGS)')
        self.assertNotIn('\\Seen', it['FLAGS'])
        u = self.c.ok('FETCH 1 (BODY[])')
        # \Seen is reported by an untagged FETCH FLAGS (in the same or
        # another FETCH response)
        self.assertTrue(any(b'\\Seen' in r for r in u), u)
        it, _ = self.one('(FLAGS)')
        self.assertIn('\\Seen', it['FLAGS'])

    def test_header_sections(self):
        hdr, _, text = self.simple.partition(b'\r\n\r\n')
        it, _ = self.one('(BODY.PEEK[HEADER])')
        self.assertEqual(item(it, 'BODY[HEADER]'), hdr + b'\r\n\r\n')
        it, _ = self.one('(BODY.PEEK[HEADER.FIELDS (Subject CC x-custom)])')
        got = item(it, 'BODY[HEADER.FIELDS (SUBJECT CC X-CUSTOM)]')
        self.assertEqual(got, b'Subject: fetch items\r\nX-Custom: yes\r\nCc: carol@example.org\r\n\r\n')
        it, _ = self.one('(BODY.PEEK[HEADER.FIELDS.NOT (Subject Date Message-ID MIME-Version '
                         'Content-Type X-Custom)])')
        got = item(it, 'BODY[HEADER.FIELDS.NOT (SUBJECT DATE MESSAGE-ID MIME-VERSION '
                   'CONTENT-TYPE X-CUSTOM)]')
        self.assertEqual(got, b'From: Sender 1 <sender@example.net>\r\nTo: alice@example.org\r\n'
                         b'Cc: carol@example.org\r\n\r\n')
        it, _ = self.one('(BODY.PEEK[HEADER.FIELDS (No-Such-Header)])')
        self.assertEqual(item(it, 'BODY[HEADER.FIELDS (NO-SUCH-HEADER)]'), b'\r\n')

    def test_text_and_part_1_of_single_part(self):
        hdr, _, text = self.simple.partition(b'\r\n\r\n')
        it, _ = self.one('(BODY.PEEK[TEXT] BODY.PEEK[1])')
        self.assertEqual(item(it, 'BODY[TEXT]'), text)
        self.assertEqual(item(it, 'BODY[1]'), text)

    def test_nested_parts(self):
        it, _ = self.one('(BODY.PEEK[1.1] BODY.PEEK[1.2] BODY.PEEK[2] BODY.PEEK[1.2.MIME] '
                         'BODY.PEEK[2.MIME])', seq=2)
        self.assertEqual(item(it, 'BODY[1.1]'), b'hi')
        self.assertEqual(item(it, 'BODY[1.2]'), b'<b>hi</b>')
        self.assertEqual(item(it, 'BODY[2]'), b'iVBORw0KGgo=')
        self.assertEqual(item(it, 'BODY[1.2.MIME]'),
                         b'Content-Type: text/html; charset=us-ascii\r\n\r\n')
        self.assertTrue(item(it, 'BODY[2.MIME]').startswith(b'Content-Type: image/png'),
                        item(it, 'BODY[2.MIME]'))

    def test_partial(self):
        it, raws = self.one('(BODY.PEEK[]<0.10>)')
        self.assertEqual(item(it, 'BODY[]<0>'), self.simple[:10])
        it, _ = self.one('(BODY.PEEK[TEXT]<5.3>)')
        text = self.simple.partition(b'\r\n\r\n')[2]
        self.assertEqual(item(it, 'BODY[TEXT]<5>'), text[5:8])
        it, _ = self.one('(BODY.PEEK[]<%d.10>)' % (len(self.simple) - 4))
        self.assertEqual(item(it, 'BODY[]<%d>' % (len(self.simple) - 4)), self.simple[-4:])
        it, _ = self.one('(BODY.PEEK[]<100000.10>)')
        self.assertEqual(item(it, 'BODY[]<100000>'), b'')

    def test_envelope_of_known_message(self):
        it, _ = self.one('(ENVELOPE)')
        env = it['ENVELOPE']
        self.assertEqual(env[1], b'fetch items')
        self.assertEqual(env[2], [[b'Sender 1', None, b'sender', b'example.net']])
        self.assertEqual(env[5], [[None, None, b'alice', b'example.org']])
        self.assertEqual(env[6], [[None, None, b'carol', b'example.org']])
        self.assertEqual(env[9], b'<m1@example.net>')

    def test_macros(self):
        it, _ = self.one('ALL')
        self.assertEqual(set(it), {'FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE'})
        it, _ = self.one('FAST')
        self.assertEqual(set(it), {'FLAGS', 'INTERNALDATE', 'RFC822.SIZE'})
        it, _ = self.one('FULL')
        self.assertEqual(set(it), {'FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODY'})

    def test_bodystructure_of_known_message(self):
        it, _ = self.one('(BODYSTRUCTURE)')
        bs = it['BODYSTRUCTURE']
        self.assertEqual([bs[0].lower(), bs[1].lower()], [b'text', b'plain'])
        self.assertEqual(int(bs[6]), len(self.simple.partition(b'\r\n\r\n')[2]))
        self.assertEqual(int(bs[7]), 2)

    def test_sequence_ranges_and_star(self):
        res = self.c.fetch('2:1', '(UID)')
        self.assertEqual(sorted(res), [1, 2])
        res = self.c.fetch('*', '(UID)')
        self.assertEqual(list(res), [2])
        res = self.c.fetch('*:1', '(UID)')
        self.assertEqual(sorted(res), [1, 2])
        res = self.c.fetch('1,2', '(UID)')
        self.assertEqual(sorted(res), [1, 2])

    def test_uid_fetch_range_beyond_last(self):
        # RFC 3501 6.4.8: "n:*" with n > UIDNEXT-1 still matches the last one
        res = self.c.fetch('%d:*' % (self.uid2 + 100), '(UID)', uid=True)
        self.assertEqual([int(v[0]['UID']) for v in res.values()], [self.uid2])
        u = self.c.ok('UID FETCH %d (UID)' % (self.uid2 + 100))
        self.assertEqual(u, [])

    def test_fetch_beyond_exists_is_bad_or_no(self):
        u, t = self.c.cmd('FETCH 3 (FLAGS)')
        self.assertRegex(t, rb'^T\d+ (BAD|NO)')

    def test_bad_items(self):
        for bad in ('(FLAGS', 'NOSUCHITEM', '(BODY[1.2.3.x])', '(BODY[HEADER.FIELDS])',
                    '(BODY[]<1.0.1>)', ''):
            with self.subTest(items=bad):
                u, t = self.c.cmd('FETCH 1 %s' % bad)
                self.assertRegex(t, rb'^T\d+ BAD', bad)
        self.c.ok('NOOP')


class HeaderFieldsPass(ImapCase):
    """Thunderbird's header fetch of a whole folder, answered in one pass
    over the index: more messages than one step of output holds, each
    exact, a header too long for the index among them, partial fetches,
    .NOT, and \\Seen set implicitly reported with FLAGS."""

    N = 400
    TB = ('From To Cc Bcc Subject Date Message-ID Priority X-Priority References '
          'Newsgroups In-Reply-To Content-Type')

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = imap_util.Imap(cls.server.raw('imaps', tls=True))
        c.login()
        c.ok('CREATE Pass')
        cls.msgs = []
        for i in range(cls.N):
            # about 5 kB of References each: 400 of them are two steps of
            # output (IMAP_FETCH_STEP_BYTES, 1 MB)
            refs = ' '.join('<r%d.%d@example.net>' % (i, k) for k in range(200))
            extra = 'References: %s\r\nX-Other: %d\r\n' % (refs, i)
            if i == 7:
                extra += ''.join('X-Filler: %0100d\r\n' % k for k in range(800))
            m = make_message(i, extra=extra)
            c.append('Pass', m)
            cls.msgs.append(m)
        c.logout()

    @staticmethod
    def fields(msg, names, negate=False):
        """HEADER.FIELDS of msg computed here (fields unfolded as stored)."""
        hdr = msg.split(b'\r\n\r\n', 1)[0] + b'\r\n'
        want = {n.lower().encode() for n in names}
        out = b''
        for line in hdr.split(b'\r\n')[:-1]:
            name = line.split(b':', 1)[0].strip().lower()
            if (name in want) != negate:
                out += line + b'\r\n'
        return out + b'\r\n'

    def test_all_exact_in_one_fetch(self):
        c = self.login()
        info = c.select('Pass')
        self.assertEqual(info['exists'], self.N)
        label = 'BODY[HEADER.FIELDS (%s)]' % self.TB.upper()
        res = c.fetch('1:*', '(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (%s)])' % self.TB,
                      uid=True)
        self.assertEqual(sorted(res), list(range(1, self.N + 1)))
        names = self.TB.split()
        for seq, (it, raw) in res.items():
            m = self.msgs[seq - 1]
            with self.subTest(seq=seq):
                self.assertEqual(int(it['RFC822.SIZE']), len(m))
                self.assertEqual(item(it, label), self.fields(m, names))
                self.assertNotIn('\\Seen', it['FLAGS'])

    def test_bodies_over_many_steps(self):
        """Bodies answered in many steps, each made on the pool while the
        loop sends the one before: every byte, in order, and the header
        fields of the same messages in the same command."""
        c = self.login()
        c.ok('CREATE Bodies')
        msgs = []
        for i in range(6):
            # distinct lines, so that a slice sent twice or out of order shows
            body = ''.join('body %d line %06d of the big message\r\n' % (i, k)
                           for k in range(18000))
            msgs.append(make_message(1000 + i, body=body))
            c.append('Bodies', msgs[-1])
        self.assertGreater(sum(map(len, msgs)), 4 * 1024 * 1024)
        c.select('Bodies')
        res = c.fetch('1:*', '(UID BODY.PEEK[] BODY.PEEK[HEADER.FIELDS (Subject)])')
        self.assertEqual(sorted(res), list(range(1, 7)))
        for seq, (it, raw) in res.items():
            with self.subTest(seq=seq):
                self.assertEqual(item(it, 'BODY[]'), msgs[seq - 1])
                self.assertEqual(item(it, 'BODY[HEADER.FIELDS (SUBJECT)]'),
                                 self.fields(msgs[seq - 1], ['Subject']))

    def test_not_partial_and_seen(self):
        c = self.login()
        c.select('Pass')
        res = c.fetch('8:9', '(BODY.PEEK[HEADER.FIELDS.NOT (References X-Filler)] '
                      'BODY.PEEK[HEADER.FIELDS (Subject)]<3.5>)')
        for seq in (8, 9):
            it, _ = res[seq]
            m = self.msgs[seq - 1]
            self.assertEqual(item(it, 'BODY[HEADER.FIELDS.NOT (REFERENCES X-FILLER)]'),
                             self.fields(m, ['References', 'X-Filler'], negate=True))
            self.assertEqual(item(it, 'BODY[HEADER.FIELDS (SUBJECT)]<3>'),
                             self.fields(m, ['Subject'])[3:8])
        # without PEEK: \Seen is set and reported with the answer
        res = c.fetch('10:11', '(BODY[HEADER.FIELDS (Subject)])')
        for seq in (10, 11):
            it, _ = res[seq]
            self.assertIn('\\Seen', it['FLAGS'])
            self.assertEqual(item(it, 'BODY[HEADER.FIELDS (SUBJECT)]'),
                             self.fields(self.msgs[seq - 1], ['Subject']))
        res = c.fetch('10:12', '(FLAGS)')
        self.assertIn('\\Seen', res[10][0]['FLAGS'])
        self.assertNotIn('\\Seen', res[12][0]['FLAGS'])
        c.ok('STORE 10:11 -FLAGS.SILENT (\\Seen)')


class FetchItemsStartTLS(FetchItems):
    """The same over port 143 after STARTTLS."""
    TLS = False


if __name__ == '__main__':
    harness.main()
