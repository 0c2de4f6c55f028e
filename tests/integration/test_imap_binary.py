"""BINARY (RFC 3516): FETCH BINARY[part]<partial>, BINARY.PEEK and
BINARY.SIZE decode base64 and quoted-printable parts (7bit, 8bit and
binary as they are), answer a literal8 where the data holds NUL, refuse an
unknown transfer encoding with NO [UNKNOWN-CTE]; APPEND takes a literal8,
and no other command does. Then non-synchronizing literals under LITERAL-
(RFC 7888): what is advertised, the 4096-byte limit when LITERAL+ is not
beside it (a larger literal gets BAD [TOOBIG], its bytes are dropped and
the session goes on), and no such limit while LITERAL+ is advertised."""
import base64
import os
import re
import unittest

from imap_util import AGAINST_DOVECOT, ImapCase, make_message

MIXED = (b'From: a@example.org\r\nTo: b@example.org\r\nSubject: binary parts\r\n'
         b'Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMIME-Version: 1.0\r\n'
         b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
         b'preamble\r\n'
         b'--XX\r\nContent-Type: text/plain; charset=utf-8\r\n'
         b'Content-Transfer-Encoding: quoted-printable\r\n\r\n'
         b'caf=C3=A9 soft=\r\nbreak  \r\nline2 =3D=\r\n\r\n'
         b'--XX\r\nContent-Type: application/octet-stream\r\n'
         b'Content-Transfer-Encoding: base64\r\n\r\n'
         b'AAECAwD/\r\n'
         b'--XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: Base64\r\n\r\n'
         b'SGVs\r\nbG8=\r\n'
         b'--XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
         b'plain =3D text\r\n'
         b'--XX\r\nContent-Type: message/rfc822\r\n\r\n'
         b'Subject: inner\r\nMIME-Version: 1.0\r\n'
         b'Content-Type: multipart/alternative; boundary="YY"\r\n\r\n'
         b'--YY\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n'
         b'aW5uZXI=\r\n'
         b'--YY\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n'
         b'\r\n<p>=3D</p>\r\n'
         b'--YY--\r\n'
         b'\r\n--XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n'
         b'--XX--\r\n')

# a part in an encoding nobody decodes, and base64 with characters outside
# the alphabet
ODD = (b'Subject: odd parts\r\nMIME-Version: 1.0\r\n'
       b'Content-Type: multipart/mixed; boundary="ZZ"\r\n\r\n'
       b'--ZZ\r\nContent-Type: application/x-foo\r\n'
       b'Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 foo\r\n'
       b'--ZZ\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n'
       b'SGV#sb\r\nG8*=\r\n'
       b'--ZZ--\r\n')

# the decoded parts of MIXED
QP_TEXT = 'café softbreak\r\nline2 ='.encode()
NUL_BYTES = b'\x00\x01\x02\x03\x00\xff'


def binary_items(untagged):
    """{label: value} of the BINARY and BINARY.SIZE items of the FETCH
    responses: bytes (with 'literal8' recorded in a second dict), int for
    sizes, None for NIL. Labels as answered: 'BINARY[1]<0>'."""
    out, lit8 = {}, {}
    for r in untagged:
        if not re.match(rb'\* \d+ FETCH ', r):
            continue
        i = 0
        pat = re.compile(rb'(BINARY(?:\.SIZE)?\[[0-9.]*\](?:<\d+>)?) ')
        while True:
            m = pat.search(r, i)
            if not m:
                break
            label = m.group(1).decode()
            j = m.end()
            lm = re.match(rb'(~?)\{(\d+)\}\r\n', r[j:])
            if lm:
                n = int(lm.group(2))
                start = j + lm.end()
                out[label] = r[start:start + n]
                lit8[label] = lm.group(1) == b'~'
                i = start + n
                continue
            qm = re.match(rb'"((?:[^"\\]|\\.)*)"', r[j:])
            if qm:
                out[label] = re.sub(rb'\\(.)', rb'\1', qm.group(1))
                lit8[label] = False
                i = j + qm.end()
                continue
            nm = re.match(rb'(\d+|NIL)', r[j:])
            if not nm:
                raise AssertionError('unparsed BINARY item in %r' % r[:300])
            out[label] = None if nm.group(1) == b'NIL' else int(nm.group(1))
            i = j + nm.end()
    return out, lit8


class Binary(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()

    def mailbox(self, name, *messages):
        c = self.login()
        c.ok('CREATE %s' % name)
        for m in messages:
            c.append(name, m)
        c.select(name)
        return c

    def fetch(self, c, items, seq='1'):
        u = c.ok('FETCH %s (%s)' % (seq, items))
        return binary_items(u)

    def test_advertised(self):
        c = self.login()
        caps = set(c.ok('CAPABILITY')[0].decode().upper().split())
        self.assertIn('BINARY', caps)

    def test_decoded_parts(self):
        c = self.mailbox('BinParts', MIXED)
        got, lit8 = self.fetch(c, 'BINARY.PEEK[1] BINARY.PEEK[2] BINARY.PEEK[3] '
                                  'BINARY.PEEK[4] BINARY.PEEK[5.1] BINARY.PEEK[5.2]')
        self.assertEqual(got['BINARY[1]'], QP_TEXT)
        self.assertEqual(got['BINARY[2]'], NUL_BYTES)
        # data with NUL goes as a literal8 (RFC 3516 4.2)
        self.assertTrue(lit8['BINARY[2]'])
        self.assertEqual(got['BINARY[4]'], b'plain =3D text')
        # a part of a message/rfc822 part, in a multipart of its own
        self.assertEqual(got['BINARY[5.1]'], b'inner')
        self.assertEqual(got['BINARY[5.2]'], b'<p>=</p>')
        self.assertEqual(got['BINARY[3]'], b'Hello')
        got, _ = self.fetch(c, 'BINARY.SIZE[1] BINARY.SIZE[2] BINARY.SIZE[4] BINARY.SIZE[5.1]')
        self.assertEqual(got['BINARY.SIZE[1]'], len(QP_TEXT))
        self.assertEqual(got['BINARY.SIZE[2]'], len(NUL_BYTES))
        self.assertEqual(got['BINARY.SIZE[4]'], len(b'plain =3D text'))
        self.assertEqual(got['BINARY.SIZE[5.1]'], 5)

    def test_whole_and_multipart_sections_as_they_are(self):
        """BINARY[] is the message, a multipart or message/rfc822 part its
        body: nothing to decode (their encodings are 7bit here)."""
        c = self.mailbox('BinWhole', MIXED)
        got, _ = self.fetch(c, 'BINARY.PEEK[] BINARY.PEEK[5] BINARY.SIZE[5] BODY.PEEK[5]')
        if not AGAINST_DOVECOT:
            # Dovecot decodes every part of the message and rewrites their
            # headers (tests/data/imap-differences.md)
            self.assertEqual(got['BINARY[]'], MIXED)
        body5 = c.fetch('1', 'BODY.PEEK[5]')[1][0]['BODY[5]']
        if not AGAINST_DOVECOT:
            self.assertEqual(got['BINARY[5]'], body5)
            self.assertEqual(got['BINARY.SIZE[5]'], len(body5))
        # a nested multipart section
        got, _ = self.fetch(c, 'BINARY.PEEK[5.1] BINARY.SIZE[5.1]')
        self.assertEqual(got['BINARY[5.1]'], b'inner')

    def test_partial(self):
        c = self.mailbox('BinPartial', MIXED)
        got, lit8 = self.fetch(c, 'BINARY.PEEK[2]<1.2> BINARY.PEEK[1]<3.2> '
                                  'BINARY.PEEK[1]<100.10> BINARY.PEEK[2]<4.100>')
        self.assertEqual(got['BINARY[2]<1>'], b'\x01\x02')
        self.assertEqual(got['BINARY[1]<3>'], 'é'.encode())
        # beyond the end: empty
        self.assertEqual(got['BINARY[1]<100>'], b'')
        # to the end
        self.assertEqual(got['BINARY[2]<4>'], b'\x00\xff')
        self.assertTrue(lit8['BINARY[2]<4>'])

    def test_empty_and_missing_parts(self):
        c = self.mailbox('BinEmpty', MIXED)
        got, _ = self.fetch(c, 'BINARY.PEEK[6] BINARY.SIZE[6]')
        self.assertEqual(got['BINARY[6]'], b'')
        self.assertEqual(got['BINARY.SIZE[6]'], 0)
        # a part that does not exist
        st, t, u = c.status_of('FETCH 1 (BINARY.PEEK[99])')
        if st == 'OK':
            got, _ = binary_items(u)
            self.assertIn(got['BINARY[99]'], (b'', None))
        else:
            self.assertEqual(st, 'NO', t)

    def test_unknown_transfer_encoding(self):
        c = self.mailbox('BinUnknown', ODD, make_message(2))
        st, t, u = c.status_of('FETCH 1:2 (BINARY.PEEK[1])')
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[UNKNOWN-CTE]', t)
        st, t, u = c.status_of('FETCH 1 (BINARY.SIZE[1])')
        self.assertEqual(st, 'NO', t)
        self.assertIn(b'[UNKNOWN-CTE]', t)
        # BODY still answers the part as it is
        self.assertEqual(c.fetch('1', 'BODY.PEEK[1]')[1][0]['BODY[1]'], b'begin 644 foo')

    def test_invalid_base64_characters(self):
        """Characters outside the base64 alphabet are ignored (RFC 2045
        6.8: "Any characters outside of the base64 alphabet are to be
        ignored in base64-encoded data")."""
        c = self.mailbox('BinOdd', ODD)
        st, t, u = c.status_of('FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])')
        if AGAINST_DOVECOT:
            # Dovecot refuses the part (tests/data/imap-differences.md)
            self.assertEqual(st, 'NO', t)
            return
        self.assertEqual(st, 'OK', t)
        got, _ = binary_items(u)
        self.assertEqual(got['BINARY[2]'], b'Hello')
        self.assertEqual(got['BINARY.SIZE[2]'], 5)

    def test_seen(self):
        c = self.mailbox('BinSeen', MIXED, MIXED)
        c.ok('FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])')
        self.assertEqual(c.search('SEEN'), [])
        u = c.ok('FETCH 2 (BINARY[1])')
        self.assertEqual(c.search('SEEN'), [2])
        self.assertTrue(any(b'\\Seen' in r for r in u), u)

    def test_bad_sections(self):
        c = self.mailbox('BinBad', MIXED)
        for items in ('BINARY[1.MIME]', 'BINARY[HEADER]', 'BINARY[1.TEXT]',
                      'BINARY.SIZE[1]<0.10>', 'BINARY[1', 'BINARY[1]<0>', 'BINARY[0]',
                      'BINARY.PEEK[1.]'):
            if AGAINST_DOVECOT and items != 'BINARY[1':
                continue  # Dovecot answers the others (not in RFC 3516's grammar)
            st, t, u = c.status_of('FETCH 1 (%s)' % items)
            self.assertEqual(st, 'BAD', (items, t, u))
        c.ok('NOOP')

    def test_large_attachment_streams_decoded(self):
        """A base64 attachment over several read slices: the bytes, the
        size, and a partial across slice boundaries."""
        data = os.urandom(700 * 1024) + b'\x00' + os.urandom(1000)
        enc = base64.encodebytes(data).replace(b'\n', b'\r\n')
        msg = (b'Subject: big\r\nMIME-Version: 1.0\r\n'
               b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
               b'--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n'
               b'--B\r\nContent-Type: application/octet-stream\r\n'
               b'Content-Transfer-Encoding: base64\r\n\r\n' + enc +
               b'--B--\r\n')
        c = self.mailbox('BinBig', msg)
        got, lit8 = self.fetch(c, 'BINARY.SIZE[2]')
        self.assertEqual(got['BINARY.SIZE[2]'], len(data))
        got, lit8 = self.fetch(c, 'BINARY.PEEK[2]')
        self.assertEqual(got['BINARY[2]'], data)
        self.assertTrue(lit8['BINARY[2]'])
        got, lit8 = self.fetch(c, 'BINARY.PEEK[2]<131000.300000>')
        self.assertEqual(got['BINARY[2]<131000>'], data[131000:431000])
        got, lit8 = self.fetch(c, 'BINARY.PEEK[1]')
        self.assertEqual(got['BINARY[1]'], b'see attached')

    def test_append_literal8(self):
        c = self.login()
        c.ok('CREATE BinAppend')
        msg = make_message(5, body='8bit \xe9t\xe9\r\n'.encode('latin-1').decode('latin-1'))
        msg = msg.replace(b'\xc3\xa9', b'\xe9')
        for plus in (False, True):
            tag = c.tag()
            if plus:
                c.send(tag.encode() + b' APPEND BinAppend ~{%d+}\r\n' % len(msg) + msg + b'\r\n')
            else:
                c.send(tag.encode() + b' APPEND BinAppend (\\Seen) ~{%d}\r\n' % len(msg))
                r = c.line()
                self.assertTrue(r.startswith(b'+'), r)
                c.send(msg + b'\r\n')
            u, t = c.until_tagged(tag)
            self.assertRegex(t, rb'^T\d+ OK')
        info = c.select('BinAppend')
        self.assertEqual(info['exists'], 2)
        self.assertEqual(c.fetch('1', 'BODY.PEEK[]')[1][0]['BODY[]'], msg)
        self.assertEqual(c.search('SEEN'), [1])

    def test_append_literal8_with_nul(self):
        c = self.login()
        c.ok('CREATE BinNul')
        msg = make_message(6, body='a\x00b\r\n')
        tag = c.tag()
        c.send(tag.encode() + b' APPEND BinNul ~{%d}\r\n' % len(msg))
        r = c.line()
        self.assertTrue(r.startswith(b'+'), r)
        c.send(msg + b'\r\n')
        u, t = c.until_tagged(tag)
        if AGAINST_DOVECOT:
            # Dovecot stores it (tests/data/imap-differences.md)
            self.assertRegex(t, rb'^T\d+ OK')
            return
        # this store keeps no NUL: refused as RFC 3516 4.4 allows
        self.assertRegex(t, rb'^T\d+ NO \[UNKNOWN-CTE\]')
        self.assertEqual(c.select('BinNul')['exists'], 0)

    def test_literal8_only_for_append(self):
        c = self.login()
        c.ok('SELECT INBOX')
        tag = c.tag()
        c.send(tag.encode() + b' SEARCH BODY ~{3}\r\n')
        r = c.line()
        if r.startswith(b'+'):
            c.send(b'abc\r\n')
            u, r = c.until_tagged(tag)
        self.assertRegex(r, rb'^T\d+ BAD')
        tag = c.tag()
        c.send(tag.encode() + b' SEARCH BODY ~{3+}\r\nabc\r\n')
        u, t = c.until_tagged(tag)
        self.assertRegex(t, rb'^T\d+ BAD')
        c.ok('NOOP')


def caps_of(untagged):
    for r in untagged:
        m = re.match(rb'\* CAPABILITY (.*)$', r)
        if m:
            return set(m.group(1).decode().upper().split())
    return set()


class LiteralPlusBeside(ImapCase):
    """The default: LITERAL+ is advertised, and LITERAL- is not (RFC 7888
    section 5: a server does not advertise both); LITERAL+'s allowance
    applies."""

    def test_advertised(self):
        c = self.connect()
        caps = caps_of(c.ok('CAPABILITY'))
        self.assertIn('LITERAL+', caps)
        self.assertNotIn('LITERAL-', caps)
        c.login()
        caps = caps_of(c.ok('CAPABILITY'))
        self.assertIn('LITERAL+', caps)
        self.assertNotIn('LITERAL-', caps)

    def test_large_nonsync_literal_taken(self):
        c = self.login()
        c.ok('CREATE PlusBig')
        msg = make_message(1, body='x' * 6000)
        self.assertGreater(len(msg), 4096)
        c.ok('APPEND PlusBig {}', msg, plus=True)
        self.assertEqual(c.select('PlusBig')['exists'], 1)
        # in another command than APPEND too
        u = c.ok('SEARCH BODY {}', 'q' * 5000, plus=True)
        self.assertIn(b'* SEARCH', u)


class LiteralMinusAlone(ImapCase):
    """imap_literal_plus = no: LITERAL- alone, non-synchronizing literals
    up to 4096 bytes."""

    CONF = {'imap_literal_plus': 'no'}

    def setUp(self):
        if AGAINST_DOVECOT:
            self.skipTest('the server is not set up with LITERAL- alone')

    def test_advertised(self):
        c = self.connect()
        caps = caps_of(c.ok('CAPABILITY'))
        self.assertIn('LITERAL-', caps)
        self.assertNotIn('LITERAL+', caps)
        c.login()
        caps = caps_of(c.ok('CAPABILITY'))
        self.assertIn('LITERAL-', caps)
        self.assertNotIn('LITERAL+', caps)
        self.assertNotIn(b'LITERAL+', c.last_tagged)

    def test_limit(self):
        c = self.login()
        c.ok('CREATE Minus')
        # 4096 bytes: non-synchronizing is fine
        msg = make_message(1, body='y' * 5000)[:4096]
        c.ok('APPEND Minus {}', msg, plus=True)
        # 4097: BAD [TOOBIG], the bytes are dropped, nothing is stored
        msg = make_message(2, body='z' * 5000)
        self.assertGreater(len(msg), 4096)
        u, t = c.cmd('APPEND Minus {}', msg, plus=True)
        self.assertRegex(t, rb'^T\d+ BAD \[TOOBIG\]')
        # the session goes on, in step with the client: the next command is
        # answered as itself
        self.assertEqual(c.select('Minus')['exists'], 1)
        # the same message as a synchronizing literal is taken
        c.ok('APPEND Minus {}', msg)
        self.assertEqual(c.select('Minus')['exists'], 2)

    def test_limit_in_any_command_with_more_after_it(self):
        """A literal over the limit in the middle of a command: the rest of
        the command (more arguments, another literal) is dropped with it."""
        c = self.login()
        big = b'M' * 5000
        tag = c.tag()
        c.send(tag.encode() + b' LOGIN {5000+}\r\n' + big + b' {3+}\r\nabc\r\n')
        u, t = c.until_tagged(tag)
        self.assertRegex(t, rb'^T\d+ BAD \[TOOBIG\]')
        u = c.ok('NOOP')
        self.assertEqual(c.status_of('CAPABILITY')[0], 'OK')

    def test_multiappend_second_message_over_limit(self):
        c = self.login()
        c.ok('CREATE MinusMulti')
        small = make_message(3)
        big = make_message(4, body='w' * 6000)
        tag = c.tag()
        c.send(tag.encode() + b' APPEND MinusMulti {%d+}\r\n' % len(small) + small
               + b' {%d+}\r\n' % len(big)  + big + b'\r\n')
        u, t = c.until_tagged(tag)
        self.assertRegex(t, rb'^T\d+ BAD \[TOOBIG\]')
        # all or none (RFC 3502)
        self.assertEqual(c.select('MinusMulti')['exists'], 0)

    def test_before_login(self):
        c = self.connect()
        tag = c.tag()
        c.send(tag.encode() + b' LOGIN {4200+}\r\n' + b'u' * 4200 + b' x\r\n')
        u, t = c.until_tagged(tag)
        self.assertRegex(t, rb'^T\d+ (BAD \[TOOBIG\]|NO)')
        c.login()
        c.ok('NOOP')


if __name__ == '__main__':
    unittest.main()
