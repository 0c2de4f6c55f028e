"""CATENATE (RFC 4469): APPEND builds a message from TEXT literals and
IMAP URLs (RFC 5092) of the user's own messages and parts, URL-PARTIAL
(RFC 5550 section 4) included. The new message's bytes are exactly the
concatenation (FETCH BODY[] compared with the parts fetched one by one);
a URL that names nothing gets NO [BADURL url] and nothing is appended, in
a MULTIAPPEND neither; after an error the rest of the command is still
read (non-synchronizing literals dropped, a synchronizing one answered NO
in place of its "+"), and the session goes on."""
import re
import socket
import unittest
import urllib.parse

from imap_util import AGAINST_DOVECOT, USER, USER2, ImapCase, make_message

BOUNDARY = b'------------030308070208000400050907'

# a draft as RFC 4469's appendix A has it: a multipart with a text part
# and a base64 attachment
DRAFT = (b'From: Fred Foobar <foobar@Blurdybloop.example.COM>\r\n'
         b'Subject: afternoon meeting\r\n'
         b'To: mooch@owatagu.siam.edu.example\r\n'
         b'Message-Id: <B27397-0100000@Blurdybloop.example.COM>\r\n'
         b'MIME-Version: 1.0\r\n'
         b'Content-Type: multipart/mixed; boundary="' + BOUNDARY[2:] + b'"\r\n\r\n'
         b'This is a multi-part message in MIME format.\r\n'
         b'--' + BOUNDARY[2:] + b'\r\n'
         b'Content-Type: text/plain; charset=us-ascii\r\n'
         b'Content-Transfer-Encoding: 7bit\r\n\r\n'
         b'Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n\r\n'
         b'--' + BOUNDARY[2:] + b'\r\n'
         b'Content-Type: application/octet-stream; name="notes.bin"\r\n'
         b'Content-Transfer-Encoding: base64\r\n\r\n'
         b'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n'
         b'--' + BOUNDARY[2:] + b'--\r\n')

# a message/rfc822 part
FORWARD = (b'Subject: fwd\r\nMIME-Version: 1.0\r\n'
           b'Content-Type: multipart/mixed; boundary="QQ"\r\n\r\n'
           b'--QQ\r\nContent-Type: text/plain\r\n\r\nsee below\r\n'
           b'--QQ\r\nContent-Type: message/rfc822\r\n\r\n'
           b'Subject: inner\r\nFrom: x@example.org\r\n\r\ninner body\r\n'
           b'--QQ--\r\n')


def raw(c, data):
    """Sends a command written out (tag added), literals and all;
    returns its tagged answer."""
    tag = c.tag()
    c.send(tag.encode() + b' ' + data)
    return c.until_tagged(tag)[1]


def count(c, mbox):
    st = c.ok('STATUS "%s" (MESSAGES)' % mbox)
    return int(re.search(rb'MESSAGES (\d+)', b' '.join(st)).group(1))


def url(mbox, uid, uidvalidity=None, section=None, partial=None):
    u = '/' + urllib.parse.quote(mbox, safe='&')
    if uidvalidity is not None:
        u += ';UIDVALIDITY=%d' % uidvalidity
    u += '/;UID=%d' % uid
    if section is not None:
        u += '/;SECTION=' + section
    if partial is not None:
        u += '/;PARTIAL=' + partial
    return u


class Catenate(ImapCase):

    def setUp(self):
        self.c = self.login()

    def mailbox(self, name, *messages):
        """Creates name with messages; (uidvalidity, [uids])."""
        self.c.ok('CREATE "%s"' % name)
        uids, uv = [], None
        for m in messages:
            uv, uid = self.c.append(name, m)
            uids.append(uid)
        if uv is None:
            st = self.c.ok('STATUS "%s" (UIDVALIDITY)' % name)
            uv = int(re.search(rb'UIDVALIDITY (\d+)', b' '.join(st)).group(1))
        return uv, uids

    def body(self, mbox, uid, section=''):
        """BODY.PEEK[section] of uid in mbox, as stored."""
        self.c.select(mbox)
        got = self.c.fetch(str(uid), '(BODY.PEEK[%s])' % section, uid=True)
        self.assertEqual(len(got), 1, got)
        ((items, raws),) = got.values()
        for k, v in items.items():
            if k.startswith('BODY['):
                return v
        raise AssertionError('no BODY in %r' % items)

    def count(self, mbox):
        return count(self.c, mbox)

    def appended_uid(self, tagged):
        m = re.search(rb'\[APPENDUID (\d+) ([\d,:]+)\]', tagged)
        self.assertTrue(m, tagged)
        return m.group(2).decode()

    # -- what is offered

    def test_advertised(self):
        caps = set(b' '.join(self.c.ok('CAPABILITY')).decode().upper().split())
        self.assertIn('CATENATE', caps)
        self.assertIn('URL-PARTIAL', caps)

    # -- RFC 4469's examples

    def test_rfc_example_forward_with_parts(self):
        """Appendix A: a new message made of the draft's header, a new
        boundary line, the draft's first part with its MIME header, and
        the second message whole."""
        other = make_message(30)
        uv, (u20, u30) = self.mailbox('Drafts4469', DRAFT, other)
        sep = b'\r\n--' + BOUNDARY[2:] + b'\r\n'
        end = b'\r\n--' + BOUNDARY[2:] + b'--\r\n'
        t = self.c.ok(
            'APPEND Drafts4469 CATENATE (URL "%s" TEXT {} URL "%s" URL "%s" TEXT {} URL "%s" '
            'TEXT {})' % (url('Drafts4469', u20, uv, 'HEADER'), url('Drafts4469', u20, uv, '1.MIME'),
                          url('Drafts4469', u20, uv, '1'), url('Drafts4469', u30, uv)),
            sep, sep, end)
        new = int(self.appended_uid(self.c.last_tagged))
        want = (self.body('Drafts4469', u20, 'HEADER') + sep + self.body('Drafts4469', u20, '1.MIME')
                + self.body('Drafts4469', u20, '1') + sep + other + end)
        self.assertEqual(self.body('Drafts4469', new), want)
        self.assertEqual(self.count('Drafts4469'), 3)

    def test_rfc_example_nonsync(self):
        """The same with LITERAL+ literals: no "+" between them."""
        uv, (u1,) = self.mailbox('Plus4469', DRAFT)
        sep = b'\r\n--' + BOUNDARY[2:] + b'\r\n'
        self.c.ok('APPEND Plus4469 CATENATE (URL "%s" TEXT {} URL "%s")'
                  % (url('Plus4469', u1, uv, 'HEADER'), url('Plus4469', u1, uv, '2')),
                  sep, plus=True)
        new = int(self.appended_uid(self.c.last_tagged))
        self.assertEqual(self.body('Plus4469', new),
                         self.body('Plus4469', u1, 'HEADER') + sep + self.body('Plus4469', u1, '2'))

    def test_rfc_example_badurl_expunged(self):
        """Appendix A's failure: a URL to an expunged message, NO [BADURL
        url], nothing appended."""
        uv, (u1, u2) = self.mailbox('Gone4469', make_message(1), make_message(2))
        self.c.select('Gone4469')
        self.c.ok('UID STORE %d +FLAGS.SILENT (\\Deleted)' % u2)
        self.c.ok('EXPUNGE')
        bad = url('Gone4469', u2, uv, '1')
        st, t, _ = self.c.status_of('APPEND Gone4469 CATENATE (URL "%s" TEXT {} URL "%s")'
                                    % (url('Gone4469', u1, uv), bad), b'\r\n--x\r\n')
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[BADURL ' + bad.encode() + b']', t)
        self.assertEqual(self.count('Gone4469'), 1)

    # -- the URL forms

    def test_whole_message_without_uidvalidity(self):
        """RFC 5092 makes UIDVALIDITY optional; the message is the one
        with that UID now."""
        msg = make_message(3)
        uv, (u1,) = self.mailbox('NoUv', msg)
        self.c.ok('APPEND NoUv CATENATE (URL "%s")' % url('NoUv', u1))
        new = int(self.appended_uid(self.c.last_tagged))
        self.assertEqual(self.body('NoUv', new), msg)

    def test_urls_alone_in_one_line(self):
        """No literal at all: the command is one line."""
        a, b = make_message(4), make_message(5)
        uv, (u1, u2) = self.mailbox('OneLine', a, b)
        self.c.ok('APPEND OneLine (\\Seen $Joined) CATENATE (URL "%s" URL %s)'
                  % (url('OneLine', u1, uv), url('OneLine', u2, uv)))
        new = int(self.appended_uid(self.c.last_tagged))
        self.assertEqual(self.body('OneLine', new), a + b)
        ((items, _),) = self.c.fetch(str(new), '(FLAGS)', uid=True).values()
        self.assertIn('\\Seen', items['FLAGS'])
        self.assertIn('$Joined', items['FLAGS'])

    def test_absolute_url_naming_the_user(self):
        if AGAINST_DOVECOT:
            self.skipTest('Dovecot takes relative URLs alone (tests/data/imap-differences.md)')
        msg = make_message(6)
        uv, (u1,) = self.mailbox('Absolute', msg)
        host = socket.gethostname()
        rel = url('Absolute', u1, uv, 'TEXT')
        self.c.ok('APPEND Absolute CATENATE (URL "imap://%s@%s%s")'
                  % (urllib.parse.quote(USER, safe=''), host, rel))
        new = int(self.appended_uid(self.c.last_tagged))
        self.assertEqual(self.body('Absolute', new), self.body('Absolute', u1, 'TEXT'))

    def test_percent_encoded_mailbox_and_section(self):
        """enc-mailbox is the name in UTF-8, %-encoded (RFC 5092; not the
        modified UTF-7 of the IMAP command); keywords in any case."""
        msg = make_message(7)
        uv, (u1,) = self.mailbox('Entw&APw-rfe mit Leer', msg)   # "Entwürfe mit Leer"
        u = ('/' + urllib.parse.quote('Entwürfe mit Leer') + ';UIDVALIDITY=' + str(uv)
             + '/;uid=%d/;section=header' % u1)
        self.assertIn('Entw%C3%BCrfe%20mit%20Leer', u)
        self.c.ok('APPEND INBOX CATENATE (URL "%s")' % u)
        new = int(self.appended_uid(self.c.last_tagged))
        self.assertEqual(self.body('INBOX', new), self.body('Entw&APw-rfe mit Leer', u1, 'HEADER'))
        # inbox in any case, an encoded character in the section
        uv, whole = self.c.append('INBOX', msg)
        self.c.ok('APPEND INBOX CATENATE (URL "/inbox/;UID=%d/;SECTION=%%54EXT")' % whole)
        newer = int(self.appended_uid(self.c.last_tagged))
        self.assertEqual(self.body('INBOX', newer), self.body('INBOX', whole, 'TEXT'))

    def test_partial(self):
        """URL-PARTIAL: offset.length of the part, and offset alone to
        its end."""
        msg = make_message(8, body='0123456789abcdefghij\r\n')
        uv, (u1,) = self.mailbox('Partial', msg)
        self.c.ok('APPEND Partial CATENATE (URL "%s" URL "%s" URL "%s")'
                  % (url('Partial', u1, uv, 'TEXT', '3.5'), url('Partial', u1, uv, None, '0.4'),
                     url('Partial', u1, uv, 'TEXT', '18')))
        new = int(self.appended_uid(self.c.last_tagged))
        self.assertEqual(self.body('Partial', new), b'34567' + msg[:4] + b'ij\r\n')
        # a range past the end gives nothing (as FETCH BODY[]<o.l>)
        self.c.ok('APPEND Partial CATENATE (URL "%s" URL "%s")'
                  % (url('Partial', u1, uv, 'TEXT', '5000.3'), url('Partial', u1, uv, 'TEXT', '0.3')))
        new = int(self.appended_uid(self.c.last_tagged))
        self.assertEqual(self.body('Partial', new), b'012')

    def test_header_fields(self):
        """SECTION=HEADER.FIELDS (...) and .NOT, of the message and of a
        message/rfc822 part, as FETCH gives them."""
        uv, (u1,) = self.mailbox('Fields', FORWARD)
        secs = ['HEADER.FIELDS (Subject)', 'HEADER.FIELDS.NOT (Subject MIME-Version)',
                '2.HEADER.FIELDS ("From")']
        self.c.ok('APPEND Fields CATENATE (%s)' % ' '.join(
            'URL "%s"' % url('Fields', u1, uv, urllib.parse.quote(sec, safe='()')) for sec in secs))
        new = int(self.appended_uid(self.c.last_tagged))
        want = b''.join(self.body('Fields', u1, sec) for sec in secs)
        self.assertEqual(want, b'Subject: fwd\r\n\r\n'
                         b'Content-Type: multipart/mixed; boundary="QQ"\r\n\r\n'
                         b'From: x@example.org\r\n\r\n')
        self.assertEqual(self.body('Fields', new), want)

    def test_base64_part_raw(self):
        """A URL to a base64 part gives its bytes as stored (RFC 4469
        section 3: no decoding)."""
        uv, (u1,) = self.mailbox('Raw64', DRAFT)
        self.c.ok('APPEND Raw64 CATENATE (TEXT {} URL "%s")' % url('Raw64', u1, uv, '2'),
                  b'Subject: raw\r\n\r\n')
        new = int(self.appended_uid(self.c.last_tagged))
        got = self.body('Raw64', new)
        self.assertEqual(got, b'Subject: raw\r\n\r\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=')

    def test_message_rfc822_part(self):
        """A message/rfc822 part: the embedded message, its HEADER and
        its TEXT (RFC 3501 section-spec)."""
        uv, (u1,) = self.mailbox('Fwd', FORWARD)
        parts = ['2', '2.HEADER', '2.TEXT', '1.MIME']
        self.c.ok('APPEND Fwd CATENATE (%s)'
                  % ' '.join('URL "%s"' % url('Fwd', u1, uv, p) for p in parts))
        new = int(self.appended_uid(self.c.last_tagged))
        want = b''.join(self.body('Fwd', u1, p) for p in parts)
        self.assertIn(b'Subject: inner\r\n', want)
        self.assertEqual(self.body('Fwd', new), want)

    def test_empty_mailbox(self):
        """Into an empty mailbox: fine; a URL into an empty one: BADURL."""
        msg = make_message(9)
        uv, (u1,) = self.mailbox('Src', msg)
        self.mailbox('Empty')
        self.c.ok('APPEND Empty CATENATE (URL "%s")' % url('Src', u1, uv))
        self.assertEqual(self.count('Empty'), 1)
        self.mailbox('Empty2')
        st, t, _ = self.c.status_of('APPEND Src CATENATE (URL "/Empty2/;UID=1")')
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[BADURL /Empty2/;UID=1]', t)
        self.assertEqual(self.count('Src'), 1)

    # -- URLs that name nothing

    def assertBadUrl(self, mbox, bad, before):
        for lit in (False, True):
            if lit:
                st, t, _ = self.c.status_of('APPEND %s CATENATE (TEXT {} URL "%s" TEXT {})'
                                            % (mbox, bad), b'Subject: x\r\n\r\n', b'tail\r\n')
            else:
                st, t, _ = self.c.status_of('APPEND %s CATENATE (URL "%s")' % (mbox, bad))
            self.assertEqual(st, 'NO', (bad, t))
            if AGAINST_DOVECOT and ('NoSuchBox' in bad or ';UID=' not in bad):
                # Dovecot says NO without the code for these when no
                # literal comes (and with the text of an earlier error)
                continue
            self.assertRegex(t, rb'^T\d+ NO \[BADURL ', bad)
            self.assertEqual(self.count(mbox), before)

    def test_badurls(self):
        msg = make_message(10, body='one part\r\n')
        uv, (u1,) = self.mailbox('Bad', msg)
        host = socket.gethostname()
        bads = [url('Bad', u1, uv + 1),                          # another UIDVALIDITY
                url('Bad', u1 + 5, uv),                          # no such UID
                url('Bad', u1, uv, '1/;PARTIAL=1.0')]
        if not AGAINST_DOVECOT:
            # a part the message does not have: Dovecot takes it as empty,
            # as its FETCH does (tests/data/imap-differences.md)
            bads += [url('Bad', u1, uv, '3'), url('Bad', u1, uv, '1.2.3'),
                     url('Bad', u1, uv, '1.TEXT'),   # not a message/rfc822
                     url('Bad', u1, uv, '0'),        # not an nz-number (Dovecot takes it)
                     # no names (Dovecot: NO [SERVERBUG]), a name FETCH
                     # refuses too (Dovecot takes it, matching nothing)
                     url('Bad', u1, uv, 'HEADER.FIELDS%20()'),
                     url('Bad', u1, uv, 'HEADER.FIELDS%20(A:B)')]
            # an absolute URL: Dovecot takes none, this user's or not
            bads += ['imap://%s@elsewhere.example%s' % (urllib.parse.quote(USER, safe=''),
                                                        url('Bad', u1, uv))]
        for bad in bads + [
                    url('NoSuchBox', 1),                         # no such mailbox
                    '/Bad;UIDVALIDITY=%d' % uv,                  # no UID
                    '/Bad;UIDVALIDITY=%d/;UID=0' % uv,           # UID 0
                    'imap://%s@%s%s' % (urllib.parse.quote(USER2, safe=''), host,
                                        url('Bad', u1, uv)),     # another user
                    'http://example.org/']:
            self.assertBadUrl('Bad', bad, 1)

    def test_other_users_mailbox_unreachable(self):
        """A URL never reaches another account: bob's INBOX with alice's
        name is alice's own INBOX, and naming bob is refused."""
        bob = self.login(USER2, 'tr0ub4dor&3 is not a good one')
        bob.append('INBOX', make_message(11, subject='secret of bob'))
        host = socket.gethostname()
        st, t, _ = self.c.status_of('APPEND INBOX CATENATE (URL "imap://%s@%s/INBOX/;UID=1")'
                                    % (urllib.parse.quote(USER2, safe=''), host))
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[BADURL ', t)

    # -- MULTIAPPEND (RFC 3502) with CATENATE

    def test_multiappend_mixing(self):
        a, b = make_message(12), make_message(13)
        uv, (u1,) = self.mailbox('Multi', a)
        tail = b'\r\n-- \r\nsent from here\r\n'
        self.c.ok('APPEND Multi (\\Seen) {} CATENATE (URL "%s" TEXT {}) (\\Flagged) CATENATE '
                  '(URL "%s") {}' % (url('Multi', u1, uv), url('Multi', u1, uv, 'HEADER')),
                  b, tail, a)
        uids = self.appended_uid(self.c.last_tagged)
        lo, hi = (int(x) for x in uids.split(':'))
        self.assertEqual(hi - lo, 3)
        self.assertEqual(self.body('Multi', lo), b)
        self.assertEqual(self.body('Multi', lo + 1), a + tail)
        self.assertEqual(self.body('Multi', lo + 2), self.body('Multi', u1, 'HEADER'))
        self.assertEqual(self.body('Multi', lo + 3), a)

    def test_multiappend_atomic(self):
        """A bad URL in the last message: none of the messages is
        appended, the earlier ones included."""
        a = make_message(14)
        uv, (u1,) = self.mailbox('Atomic', a)
        for plus in (False, True):
            st, t, _ = self.c.status_of(
                'APPEND Atomic {} CATENATE (URL "%s" TEXT {}) CATENATE (TEXT {} URL "%s")'
                % (url('Atomic', u1, uv), url('Atomic', u1 + 9, uv)),
                a, b'x\r\n', b'y\r\n', plus=plus)
            self.assertEqual(st, 'NO', t)
            self.assertIn(b'[BADURL ', t)
            self.assertEqual(self.count('Atomic'), 1)

    # -- literals after an error (RFC 4469 section 5)

    def test_nonsync_after_error_read_and_dropped(self):
        """The URL fails before the TEXT literals come: the server still
        reads them (LITERAL+) and answers NO at the end; the next command
        is read as a command."""
        self.mailbox('After')
        tag = self.c.tag()
        junk = b'T99 LOGOUT\r\n' * 3
        self.c.send(tag.encode() + b' APPEND After CATENATE (URL "/After/;UID=77" TEXT {%d+}\r\n'
                    % len(junk) + junk + b' TEXT {5+}\r\nhello) CATENATE (TEXT {%d+}\r\n'
                    % len(junk) + junk + b')\r\n')
        u, t = self.c.until_tagged(tag)
        self.assertRegex(t, rb'^T\d+ NO \[BADURL /After/;UID=77\]')
        self.c.ok('NOOP')
        self.assertEqual(self.count('After'), 0)

    def test_sync_after_error_refused(self):
        """A synchronizing TEXT literal after the error: NO in place of
        its "+", and the client sends nothing more of the command."""
        self.mailbox('AfterSync')
        tag = self.c.tag()
        self.c.send(tag.encode() + b' APPEND AfterSync CATENATE (URL "/AfterSync/;UID=5" TEXT {5}\r\n')
        r = self.c.line()
        self.assertRegex(r, rb'^T\d+ NO \[BADURL /AfterSync/;UID=5\]')
        self.c.ok('NOOP')
        self.assertEqual(self.count('AfterSync'), 0)

    def test_syntax_error_after_literal(self):
        """A syntax error in the text after a TEXT literal: BAD once the
        command ends, its non-synchronizing literals dropped."""
        self.mailbox('Syn')
        t = raw(self.c, b'APPEND Syn CATENATE (TEXT {3+}\r\nabc BOGUS "x" TEXT {4+}'
                b'\r\nT1 N) {2+}\r\nhi\r\n')
        self.assertRegex(t, rb'^T\d+ BAD')
        self.c.ok('NOOP')
        self.assertEqual(self.count('Syn'), 0)

    def test_bad_syntax(self):
        uv, (u1,) = self.mailbox('Syntax', make_message(20))
        good = url('Syntax', u1, uv)
        texts = ['APPEND Syntax CATENATE ()',
                 'APPEND Syntax CATENATE (FOO "%s")' % good,
                 'APPEND Syntax CATENATE (TEXT "quoted")',
                 'APPEND Syntax CATENATE URL "%s"' % good,
                 'APPEND Syntax CATENATE (URL "%s"' % good,
                 'APPEND Syntax CATENATE (URL "%s") junk' % good,
                 'APPEND Syntax (\\Seen) "bad date" CATENATE (URL "%s")' % good]
        if not AGAINST_DOVECOT:
            # Dovecot 2.3.19's imap process dies on this one (signal 11)
            texts.append('APPEND Syntax CATENATE (URL)')
        for text in texts:
            st, t, _ = self.c.status_of(text)
            self.assertEqual(st, 'BAD', (text, t))
        self.assertEqual(self.count('Syntax'), 1)
        self.c.ok('NOOP')

    def test_literal8_text(self):
        """TEXT takes a literal8 where BINARY is offered (RFC 4469
        section 5 with RFC 3516)."""
        msg = make_message(15)
        uv, (u1,) = self.mailbox('Lit8', msg)
        tag = self.c.tag()
        head = b'Subject: eight\r\n\r\n'
        self.c.send(tag.encode() + b' APPEND Lit8 CATENATE (TEXT ~{%d}\r\n' % len(head))
        self.assertTrue(self.c.line().startswith(b'+'))
        self.c.send(head + b' URL "%s")\r\n' % url('Lit8', u1, uv, 'TEXT').encode())
        u, t = self.c.until_tagged(tag)
        self.assertOK(t)
        new = int(self.appended_uid(t))
        self.assertEqual(self.body('Lit8', new), head + self.body('Lit8', u1, 'TEXT'))

    def test_url_as_literal(self):
        """A URL is an astring: it may come as a literal, first or after
        a TEXT part, synchronizing or not."""
        msg = make_message(18)
        uv, (u1,) = self.mailbox('UrlLit', msg)
        u = url('UrlLit', u1, uv, 'TEXT')
        for plus in (False, True):
            self.c.ok('APPEND UrlLit CATENATE (URL {} TEXT {} URL {})', u, b'--\r\n', u, plus=plus)
            new = int(self.appended_uid(self.c.last_tagged))
            text = self.body('UrlLit', u1, 'TEXT')
            self.assertEqual(self.body('UrlLit', new), text + b'--\r\n' + text)
        st, t, _ = self.c.status_of('APPEND UrlLit CATENATE (TEXT {} URL {})', b'x', '/UrlLit/;UID=99')
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[BADURL /UrlLit/;UID=99]', t)
        self.c.ok('NOOP')

    def test_disconnect_midway(self):
        """A session that goes away while its parts are copied or its TEXT
        is read leaves nothing behind and the server serving."""
        big = make_message(19, body=('z' * 998 + '\r\n') * 500)
        uv, (u1,) = self.mailbox('Mid', big)
        urls = ' '.join(['URL "%s"' % url('Mid', u1, uv)] * 8)
        for cut in (0, 5000):
            c = self.login()
            c.send(('T1 APPEND Mid CATENATE (%s TEXT {100000+}\r\n' % urls).encode() + b'x' * cut)
            c.close()
        self.assertAlive()
        self.assertEqual(self.count('Mid'), 1)

    def test_quota(self):
        """The parts count against the quota as a literal does: NO
        [OVERQUOTA], nothing appended."""
        if AGAINST_DOVECOT:
            self.skipTest('the quota is set with coffrectl')
        addr, pw = 'carol@example.org', 'a long enough passphrase'
        rc, out, err = self.server.ctl('user', 'add', addr, '--password-stdin', '--quota', '10K',
                                       input=pw + '\n')
        self.assertEqual(rc, 0, err)
        c = self.login(addr, pw)
        c.ok('CREATE Q')
        uv, uid = c.append('Q', make_message(1, body='q' * 3000 + '\r\n'))
        u = 'URL "%s"' % url('Q', uid, uv)
        st, t, _ = c.status_of('APPEND Q CATENATE (%s)' % ' '.join([u] * 4))
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[OVERQUOTA]', t)
        self.assertEqual(count(c, 'Q'), 1)
        c.ok('APPEND Q CATENATE (%s)' % u)
        self.assertEqual(count(c, 'Q'), 2)

    def test_empty_text_part(self):
        msg = make_message(16)
        uv, (u1,) = self.mailbox('EmptyText', msg)
        self.c.ok('APPEND EmptyText CATENATE (TEXT {} URL "%s" TEXT {})'
                  % url('EmptyText', u1, uv), b'', b'')
        new = int(self.appended_uid(self.c.last_tagged))
        self.assertEqual(self.body('EmptyText', new), msg)

    def test_session_goes_on(self):
        """Pipelined commands after a CATENATE of URLs alone are run in
        order once it ends."""
        msg = make_message(17)
        uv, (u1,) = self.mailbox('Pipe', msg)
        t1, t2 = self.c.tag(), self.c.tag()
        self.c.send(('%s APPEND Pipe CATENATE (URL "%s")\r\n%s STATUS Pipe (MESSAGES)\r\n'
                     % (t1, url('Pipe', u1, uv), t2)).encode())
        u, t = self.c.until_tagged(t1)
        self.assertOK(t)
        u, t = self.c.until_tagged(t2)
        self.assertOK(t)
        self.assertIn(b'MESSAGES 2', b' '.join(u))


class CatenateLimits(ImapCase):
    """The size limit of APPEND bounds the message CATENATE builds; the
    parts and the URL length have limits of their own."""

    CONF = {'max_message_size': '4K', 'imap_catenate_max_parts': '5',
            'imap_url_max_length': '100'}

    def setUp(self):
        if AGAINST_DOVECOT:
            self.skipTest('the limits are coffred settings')
        self.c = self.login()

    def count(self, mbox):
        return count(self.c, mbox)

    def test_toobig_from_urls(self):
        self.c.ok('CREATE Big')
        uv, uid = self.c.append('Big', make_message(1, body='y' * 1500 + '\r\n'))
        u = url('Big', uid, uv)
        self.c.ok('APPEND Big CATENATE (URL "%s" URL "%s")' % (u, u))
        st, t, _ = self.c.status_of('APPEND Big CATENATE (URL "%s" URL "%s" URL "%s")' % (u, u, u))
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[TOOBIG]', t)
        self.assertEqual(self.count('Big'), 2)

    def test_toobig_text_refused_before_plus(self):
        self.c.ok('CREATE Big2')
        uv, uid = self.c.append('Big2', make_message(1, body='y' * 3000 + '\r\n'))
        tag = self.c.tag()
        self.c.send(tag.encode() + b' APPEND Big2 CATENATE (URL "%s" TEXT {2000}\r\n'
                    % url('Big2', uid, uv).encode())
        r = self.c.line()
        self.assertRegex(r, rb'^T\d+ NO \[TOOBIG\]')
        # non-synchronizing: read and dropped, NO at the end
        t = raw(self.c, b'APPEND Big2 CATENATE (URL "%s" TEXT {2000+}\r\n'
                % url('Big2', uid, uv).encode() + b'z' * 2000 + b')\r\n')
        self.assertRegex(t, rb'^T\d+ NO \[TOOBIG\]')
        self.c.ok('NOOP')
        self.assertEqual(self.count('Big2'), 1)

    def test_too_many_parts(self):
        self.c.ok('CREATE Parts')
        uv, uid = self.c.append('Parts', make_message(1))
        u = 'URL "%s"' % url('Parts', uid, uv)
        self.c.ok('APPEND Parts CATENATE (%s)' % ' '.join([u] * 5))
        st, t, _ = self.c.status_of('APPEND Parts CATENATE (%s)' % ' '.join([u] * 6))
        self.assertEqual(st, 'BAD', t)
        # with literals: the ones announced are still read
        t = raw(self.c, b'APPEND Parts CATENATE (TEXT {1+}\r\na TEXT {1+}\r\nb TEXT {1+}\r\nc '
                b'TEXT {1+}\r\nd TEXT {1+}\r\ne TEXT {1+}\r\nf TEXT {1+}\r\ng)\r\n')
        self.assertRegex(t, rb'^T\d+ BAD')
        self.c.ok('NOOP')
        self.assertEqual(self.count('Parts'), 2)

    def test_url_too_long(self):
        self.c.ok('CREATE Long')
        long = '/Long/;UID=1/;SECTION=' + '1.' * 60 + '1'
        st, t, _ = self.c.status_of('APPEND Long CATENATE (URL "%s")' % long)
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[BADURL ', t)


if __name__ == '__main__':
    unittest.main()
