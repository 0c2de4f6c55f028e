"""Helpers for the IMAP4rev1 integration tests (issue 6): a raw IMAP client
that reads whole responses (literals included) so that tests can compare
exact bytes, a parser for IMAP response data, a base class that starts
coffred with a user, and helpers to fill a user's Maildir directly.

Everything talks to the real coffred over real TLS sockets (harness.py).
"""
import email.utils
import itertools
import os
import pwd
import re
import socket
import ssl
import time

import harness
from harness import ServerTestCase

USER = 'alice@example.org'
PASS = 'correct horse battery staple'
USER2 = 'bob@example.org'
PASS2 = 'tr0ub4dor&3 is not a good one'

MIME_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data', 'mime')

_LITERAL_RE = re.compile(rb'\{(\d+)\+?\}\r\n$')


# ---- response parsing --------------------------------------------------

class Atom(str):
    """An IMAP atom (also numbers, flags, NIL is None)."""


class ParseError(Exception):
    pass


class Parser:
    """Parses IMAP response data (RFC 3501 section 9 'response' grammar,
    loosely): atoms, numbers, quoted strings, literals, NIL, parenthesized
    lists, and fetch-att names with sections like BODY[HEADER.FIELDS (A B)]<0>.
    Strings (quoted or literal) come back as bytes, atoms as Atom, NIL as
    None, lists as Python lists. value_raw() also returns the exact bytes."""

    ATOM_STOP = b' ()[]{"\r\n'

    def __init__(self, data):
        self.d = data if isinstance(data, bytes) else data.encode()
        self.i = 0

    def at_end(self):
        return self.i >= len(self.d)

    def peek(self):
        return self.d[self.i:self.i + 1]

    def sp(self):
        if self.peek() != b' ':
            raise ParseError('expected SP at %d in %r' % (self.i, self.d[:300]))
        self.i += 1

    def value(self):
        c = self.peek()
        if c == b'(':
            self.i += 1
            out = []
            while True:
                if self.peek() == b')':
                    self.i += 1
                    return out
                if out:
                    # a list may hold elements without SP after ')' (body
                    # structures: "(...)(...)"); RFC 3501 allows that only
                    # for body parts, but accept it.
                    if self.peek() == b' ':
                        self.i += 1
                out.append(self.value())
                if self.at_end():
                    raise ParseError('unterminated list in %r' % self.d[:300])
        if c == b'"':
            self.i += 1
            out = bytearray()
            while True:
                ch = self.d[self.i:self.i + 1]
                if not ch:
                    raise ParseError('unterminated quoted string')
                self.i += 1
                if ch == b'\\':
                    out += self.d[self.i:self.i + 1]
                    self.i += 1
                elif ch == b'"':
                    return bytes(out)
                else:
                    out += ch
        if c == b'{' or (c == b'~' and self.d[self.i + 1:self.i + 2] == b'{'):
            if c == b'~':
                self.i += 1
            j = self.d.index(b'}', self.i)
            n = int(self.d[self.i + 1:j].rstrip(b'+'))
            if self.d[j + 1:j + 3] != b'\r\n':
                raise ParseError('literal without CRLF')
            start = j + 3
            self.i = start + n
            if self.i > len(self.d):
                raise ParseError('short literal')
            return self.d[start:self.i]
        # atom, possibly with [section] and <partial>
        start = self.i
        while not self.at_end():
            ch = self.peek()
            if ch == b'[':
                depth = 0
                while not self.at_end():
                    ch = self.peek()
                    self.i += 1
                    if ch == b'[':
                        depth += 1
                    elif ch == b']':
                        depth -= 1
                        if depth == 0:
                            break
                continue
            if ch in self.ATOM_STOP:
                break
            self.i += 1
        if self.i == start:
            raise ParseError('unexpected %r at %d in %r' % (c, self.i, self.d[:300]))
        tok = self.d[start:self.i].decode('utf-8', 'replace')
        if tok.upper() == 'NIL':
            return None
        return Atom(tok)

    def value_raw(self):
        start = self.i
        v = self.value()
        return v, self.d[start:self.i]


_serials = itertools.count(1)


def serial():
    """A number never given twice in this process: names of mailboxes
    made per test, which must not meet another test's."""
    return next(_serials)


def parse(data):
    """The whole of data as one value."""
    p = Parser(data)
    v = p.value()
    return v


def parse_fetch(resp):
    """'* N FETCH (...)' (bytes, literals inline) -> (N, {NAME: value},
    {NAME: raw bytes}). Names are upper-cased; for BODY[...] the section
    text is kept as sent."""
    m = re.match(rb'\* (\d+) FETCH ', resp)
    if not m:
        raise ParseError('not a FETCH response: %r' % resp[:200])
    p = Parser(resp)
    p.i = m.end()
    if p.peek() != b'(':
        raise ParseError('FETCH without list: %r' % resp[:200])
    p.i += 1
    items, raws = {}, {}
    while True:
        if p.peek() == b')':
            p.i += 1
            break
        if items:
            p.sp()
        name = p.value()
        if not isinstance(name, Atom):
            raise ParseError('bad fetch item name %r' % (name,))
        p.sp()
        v, raw = p.value_raw()
        key = name.upper()
        items[key] = v
        raws[key] = raw
    rest = resp[p.i:]
    if rest not in (b'', b'\r\n'):
        raise ParseError('trailing bytes after FETCH: %r' % rest[:100])
    return int(m.group(1)), items, raws


def escape_crlf(b):
    """The .expected files' notation: CR and LF written as \\r and \\n."""
    return b.replace(b'\r', b'\\r').replace(b'\n', b'\\n')


def unescape_crlf(s):
    return s.replace(b'\\r', b'\r').replace(b'\\n', b'\n')


def load_expected(path):
    """NN-name.expected -> {key: bytes value}."""
    out = {}
    with open(path, 'rb') as f:
        for line in f:
            line = line.rstrip(b'\n')
            if not line or line.startswith(b'#'):
                continue
            k, _, v = line.partition(b': ')
            out[k.decode()] = v
    return out


def corpus():
    """[(name, eml bytes, expected dict)] for tests/data/mime."""
    out = []
    for fn in sorted(os.listdir(MIME_DIR)):
        if not fn.endswith('.eml'):
            continue
        base = fn[:-4]
        with open(os.path.join(MIME_DIR, fn), 'rb') as f:
            eml = f.read()
        exp = os.path.join(MIME_DIR, base + '.expected')
        if os.path.exists(exp):
            out.append((base, eml, load_expected(exp)))
    return out


# ---- raw client ----------------------------------------------------------

class ImapError(AssertionError):
    pass


class Imap:
    """A raw IMAP client over a harness.Conn. Responses are bytes with
    literals inline and without the final CRLF."""

    def __init__(self, conn, greeting=True):
        self.c = conn
        self.n = 0
        self.log = []   # (direction, bytes): the transcript, for reports
        self.last_tagged = b''
        self.greeting = self.read_response() if greeting else None

    # -- reading

    def read_response(self, timeout=None):
        """One complete response (a line plus any literals and their
        continuation lines); b'' at EOF. Raises socket.timeout."""
        out = b''
        while True:
            line = self.c.readline(timeout)
            if not line:
                if out:
                    raise ImapError('EOF inside a response: %r' % out[:200])
                return b''
            out += line
            m = _LITERAL_RE.search(line)
            if not m:
                break
            n = int(m.group(1))
            deadline = time.monotonic() + (self.c.timeout if timeout is None else timeout)
            while len(self.c.buf) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout('literal of %d not complete' % n)
                if not self.c._fill(left):
                    raise ImapError('EOF inside a literal')
            out += self.c.buf[:n]
            self.c.buf = self.c.buf[n:]
        self.log.append(('S', out))
        return out.rstrip(b'\r\n') if out.endswith(b'\r\n') else out

    def line(self, timeout=None):
        r = self.read_response(timeout)
        if r == b'':
            raise EOFError('connection closed by the server')
        return r

    def line_until(self, match, forbid=None, timeout=10):
        """Reads lines until one that starts with match (bytes) or matches
        it (a compiled regular expression), and returns it; a line
        matching the regular expression forbid before it fails."""
        while True:
            r = self.line(timeout=timeout)
            if forbid is not None and re.search(forbid, r):
                raise AssertionError('%r came before %r' % (r, match))
            if (r.startswith(match) if isinstance(match, bytes) else match.match(r)):
                return r

    # -- writing

    def tag(self):
        self.n += 1
        return 'T%d' % self.n

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.log.append(('C', data))
        self.c.send(data)

    def until_tagged(self, tag, timeout=None):
        """(untagged responses, tagged response) as bytes."""
        untagged = []
        tb = tag.encode() + b' '
        while True:
            r = self.line(timeout)
            if r.startswith(tb):
                return untagged, r
            untagged.append(r)

    def cmd(self, text, *literals, timeout=None, plus=False):
        """Sends 'TAG text'; text may contain {} placeholders replaced by
        synchronizing literals (or LITERAL+ when plus). Returns (untagged,
        tagged) as bytes."""
        tag = self.tag()
        if isinstance(text, str):
            text = text.encode()
        parts = text.split(b'{}')
        if len(parts) - 1 != len(literals):
            raise ValueError('placeholders and literals differ')
        self.send(tag.encode() + b' ' + parts[0])
        for lit, rest in zip(literals, parts[1:]):
            if isinstance(lit, str):
                lit = lit.encode()
            if plus:
                self.send(b'{%d+}\r\n' % len(lit))
            else:
                self.send(b'{%d}\r\n' % len(lit))
                r = self.line(timeout)
                if not r.startswith(b'+'):
                    # refused: the tagged answer (or BYE) instead of '+'
                    untagged = []
                    while not r.startswith(tag.encode() + b' '):
                        untagged.append(r)
                        r = self.line(timeout)
                    return untagged, r
            self.send(lit + rest)
        self.send(b'\r\n')
        return self.until_tagged(tag, timeout)

    def ok(self, text, *literals, timeout=None, plus=False):
        """cmd() that must end in OK; returns the untagged responses."""
        u, t = self.cmd(text, *literals, timeout=timeout, plus=plus)
        if not re.match(rb'T\d+ OK', t):
            raise ImapError('%s -> %r (untagged %r)' % (
                text if isinstance(text, str) else text.decode('latin-1'), t, u[-5:]))
        self.last_tagged = t
        return u

    def status_of(self, text, *literals, **kw):
        """'OK', 'NO' or 'BAD' of a command, plus the whole tagged line."""
        u, t = self.cmd(text, *literals, **kw)
        return t.split(b' ', 2)[1].decode(), t, u

    # -- conveniences

    def login(self, user=USER, password=PASS):
        return self.ok('LOGIN %s %s' % (harness.imap_quote(user), harness.imap_quote(password)))

    def select(self, mbox='INBOX', examine=False):
        """SELECT/EXAMINE; returns a dict: exists, recent, uidvalidity,
        uidnext, unseen, flags, permanentflags, tagged."""
        u = self.ok('%s %s' % ('EXAMINE' if examine else 'SELECT', quote(mbox)))
        return select_info(u, self.last_tagged)

    def append(self, mbox, msg, flags=None, date=None):
        """APPEND; returns (uidvalidity, uid) from APPENDUID when present,
        else None."""
        opt = ''
        if flags is not None:
            opt += ' (%s)' % ' '.join(flags)
        if date is not None:
            opt += ' "%s"' % date
        self.ok('APPEND %s%s {}' % (quote(mbox), opt), msg)
        m = re.search(rb'\[APPENDUID (\d+) (\d+)\]', self.last_tagged)
        return (int(m.group(1)), int(m.group(2))) if m else None

    def fetch(self, seqset, items, uid=False):
        """{seq: (items dict, raws dict)} of the FETCH responses."""
        u = self.ok('%sFETCH %s %s' % ('UID ' if uid else '', seqset, items))
        out = {}
        for r in u:
            if re.match(rb'\* \d+ FETCH ', r):
                n, it, raw = parse_fetch(r)
                if n in out:
                    out[n][0].update(it)
                    out[n][1].update(raw)
                else:
                    out[n] = (it, raw)
        return out

    def search(self, criteria, uid=False):
        u = self.ok('%sSEARCH %s' % ('UID ' if uid else '', criteria))
        return search_result(u)

    def idle(self):
        """Sends IDLE and reads its continuation (the tag in tag_idle)."""
        self.tag_idle = self.tag()
        self.send('%s IDLE\r\n' % self.tag_idle)
        r = self.line()
        if not r.startswith(b'+'):
            raise ImapError('IDLE -> %r' % r)

    def done(self, timeout=None):
        """Ends IDLE; returns the untagged responses before its OK."""
        self.send('DONE\r\n')
        u, t = self.until_tagged(self.tag_idle, timeout)
        if not re.match(rb'T\d+ OK', t):
            raise ImapError('DONE -> %r' % t)
        return u

    def logout(self):
        try:
            self.ok('LOGOUT')
        except (OSError, EOFError, ImapError):
            pass
        self.c.close()

    def close(self):
        self.c.close()

    def transcript(self, last=40):
        return '\n'.join('%s: %r' % (d, b[:300]) for d, b in self.log[-last:])


def quote(s):
    """A mailbox name or string as an IMAP quoted string."""
    return harness.imap_quote(s)


def select_info(untagged, tagged):
    info = {'exists': None, 'recent': None, 'uidvalidity': None, 'uidnext': None,
            'unseen': None, 'flags': None, 'permanentflags': None, 'tagged': tagged,
            'untagged': untagged}
    for r in untagged:
        m = re.match(rb'\* (\d+) EXISTS$', r)
        if m:
            info['exists'] = int(m.group(1))
        m = re.match(rb'\* (\d+) RECENT$', r)
        if m:
            info['recent'] = int(m.group(1))
        for code in ('UIDVALIDITY', 'UIDNEXT', 'UNSEEN'):
            m = re.match(rb'\* OK \[' + code.encode() + rb' (\d+)\]', r)
            if m:
                info[code.lower()] = int(m.group(1))
        m = re.match(rb'\* FLAGS \((.*)\)$', r)
        if m:
            info['flags'] = set(m.group(1).decode().split())
        m = re.match(rb'\* OK \[PERMANENTFLAGS \((.*)\)\]', r)
        if m:
            info['permanentflags'] = set(m.group(1).decode().split())
    return info


def search_result(untagged):
    res = None
    for r in untagged:
        if r.upper().startswith(b'* SEARCH'):
            res = [int(x) for x in r[8:].split()]
    if res is None:
        raise ImapError('no * SEARCH response in %r' % untagged)
    return res


def untagged_of(untagged, word):
    """The untagged responses whose first word after '* ' (or after the
    number) is word."""
    w = word.upper().encode()
    out = []
    for r in untagged:
        parts = r.split(b' ', 3)
        if len(parts) > 1 and parts[1].upper() == w:
            out.append(r)
        elif len(parts) > 2 and parts[1].isdigit() and parts[2].upper() == w:
            out.append(r)
    return out


def seqset(nums):
    """A compact sequence set from an iterable of numbers."""
    nums = sorted(set(nums))
    out, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else '%d:%d' % (nums[i], nums[j]))
        i = j + 1
    return ','.join(out)


def parse_seqset(s):
    out = []
    for part in s.split(','):
        if ':' in part:
            a, b = part.split(':')
            a, b = int(a), int(b)
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


def make_message(i, subject=None, body=None, sender='sender@example.net',
                 to=USER, date=None, extra=''):
    """A small RFC 5322 message with CRLF line ends."""
    subject = subject if subject is not None else 'message %d' % i
    body = body if body is not None else 'This is the body of message %d.\r\n' % i
    date = date or email.utils.formatdate(1700000000 + i * 60, localtime=False)
    return ('From: Sender %d <%s>\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n'
            'Message-ID: <m%d@example.net>\r\n%sMIME-Version: 1.0\r\n'
            'Content-Type: text/plain; charset=us-ascii\r\n\r\n%s'
            % (i, sender, to, subject, date, i, extra, body)).encode()


# ---- server side ---------------------------------------------------------

def user_id(server, addr):
    rc, out, err = server.ctl('user', 'show', addr)
    if rc != 0:
        raise RuntimeError('coffrectl user show %s: %d %s' % (addr, rc, err))
    m = re.search(r'^id:\s*(\d+)', out, re.M)
    return int(m.group(1))


def user_maildir(server, addr):
    return os.path.join(server.data_dir, 'users', str(user_id(server, addr)), 'Maildir')


def drop_messages(server, addr, messages, folder=None):
    """Writes messages straight into the user's Maildir new/ (before the
    account's first login: storage builds its index from the Maildir on the
    first open). folder: a Maildir++ folder name ('.Name') or None for
    INBOX. Files are owned by the harness RUN_USER so that the dropped
    privileges can rename them."""
    md = user_maildir(server, addr)
    base = os.path.join(md, folder) if folder else md
    try:
        pw = pwd.getpwnam(harness.RUN_USER) if os.getuid() == 0 else None
    except KeyError:
        pw = None
    dirs = [os.path.dirname(md), md, base] + [os.path.join(base, d) for d in ('cur', 'new', 'tmp')]
    for d in dirs:
        os.makedirs(d, exist_ok=True)
        if pw:
            os.chown(d, pw.pw_uid, pw.pw_gid)
        os.chmod(d, 0o700)
    if folder:
        mf = os.path.join(base, 'maildirfolder')
        open(mf, 'w').close()
        if pw:
            os.chown(mf, pw.pw_uid, pw.pw_gid)
    t = int(time.time())
    new = os.path.join(base, 'new')
    for i, m in enumerate(messages):
        # the nanoseconds keep names apart between calls within a second
        p = os.path.join(new, '%d.M%dP%dN%d.coffre-test' % (t, i, os.getpid(), time.time_ns()))
        with open(p, 'wb') as f:
            f.write(m)
        if pw:
            os.chown(p, pw.pw_uid, pw.pw_gid)
    return len(messages)


def proc_rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def fill_mailbox(server, mbox, messages, also=()):
    """For a test class's setup: creates mbox (and the empty mailboxes in
    also) as USER and appends messages (bytes each) to mbox, in order."""
    c = Imap(server.raw('imaps', tls=True))
    try:
        c.login()
        c.ok('CREATE %s' % quote(mbox))
        for name in also:
            c.ok('CREATE %s' % quote(name))
        for m in messages:
            c.append(mbox, m)
        c.logout()
    finally:
        c.close()


class ImapCase(ServerTestCase):
    """coffred with USER and USER2; helpers for raw IMAP clients."""

    USERS = ((USER, PASS), (USER2, PASS2))
    TLS = True      # False: sessions on port 143 with STARTTLS

    @classmethod
    def setUpServer(cls):
        for u, p in cls.USERS:
            cls.server.add_user(u, p)

    def connect(self, tls=None):
        """A raw IMAPS client (greeting read). tls=False: port 143 with
        STARTTLS done; None: the class's TLS."""
        if tls is None:
            tls = self.TLS
        if tls:
            c = Imap(self.server.raw('imaps', tls=True))
        else:
            c = Imap(self.server.raw('imap'))
            u, t = c.cmd('STARTTLS')
            if not t.startswith(b'T1 OK'):
                raise ImapError('STARTTLS: %r' % t)
            c.c.starttls(self.server.ctx())
        self.addCleanup(c.close)
        return c

    def login(self, user=USER, password=PASS, tls=None):
        c = self.connect(tls)
        c.login(user, password)
        return c

    def selected(self, mbox='INBOX', user=USER, password=PASS):
        c = self.login(user, password)
        info = c.select(mbox)
        return c, info

    def assertOK(self, tagged, msg=None):
        self.assertRegex(tagged, rb'^T\d+ OK', msg)

    def assertNO(self, tagged, code=None, msg=None):
        self.assertRegex(tagged, rb'^T\d+ NO' + ((rb' \[' + code.encode()) if code else b''), msg)

    def assertBAD(self, tagged, msg=None):
        self.assertRegex(tagged, rb'^T\d+ BAD', msg)

    def assertAlive(self):
        """The server still serves a new session completely (login, select,
        fetch)."""
        self.assertTrue(self.server.alive(), 'coffred died\n' + self.server.log_tail())
        c = Imap(self.server.raw('imaps', tls=True))
        try:
            c.login(USER2, PASS2)
            c.select('INBOX')
            c.ok('NOOP')
            c.logout()
        finally:
            c.close()


# ---- checking the tests themselves against Dovecot ------------------------

class DovecotServer(harness.Server):
    """Stand-in for harness.Server running Debian's Dovecot instead of
    coffred, to check that these tests accept a known IMAP server
    (IMAP_TESTS_AGAINST=dovecot). Needs root and dovecot-imapd/-lmtpd.
    Never used by meson test."""

    def __init__(self, extra_conf=None, name='dovecot', wrap=None):
        super().__init__(extra_conf, name, wrap=wrap)
        self.users = {}

    def write_conf(self, path=None, lines=None):
        path = path or self.conf_path
        d = self.tmp
        os.makedirs(os.path.join(d, 'run'), exist_ok=True)
        os.makedirs(self.data_dir, exist_ok=True)
        with open(os.path.join(d, 'passwd'), 'a'):
            pass
        with open(path, 'w') as f:
            f.write('''base_dir = %(d)s/run
state_dir = %(d)s/run
log_path = %(d)s/coffred.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <%(cert)s
ssl_key = <%(key)s
disable_plaintext_auth = yes
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN %(d)s/passwd
}
userdb {
  driver = passwd-file
  args = %(d)s/passwd
}
auth_username_format = %%Lu
mail_location = maildir:~/Maildir
first_valid_uid = 1
imap_idle_notify_interval = 2 mins
namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    special_use = \\Drafts
    auto = create
  }
  mailbox Sent {
    special_use = \\Sent
    auto = create
  }
  mailbox Trash {
    special_use = \\Trash
    auto = create
  }
  mailbox Junk {
    special_use = \\Junk
    auto = create
  }
  mailbox Archive {
    special_use = \\Archive
    auto = create
  }
}
protocol imap {
  mail_max_userip_connections = 1000
  imap_capability = +XLIST
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %(imap)d
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = %(imaps)d
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %(lmtp)d
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
}
''' % dict(d=d, cert=self.cert, key=self.key, **self.ports))
        return path

    def start(self):
        self.logf = open(self.log_path, 'ab')
        import subprocess
        self.proc = subprocess.Popen(['dovecot', '-F', '-c', self.conf_path],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        waiting = dict(self.ports)
        for s in ('pop3', 'pop3s'):
            waiting.pop(s, None)
        deadline = time.monotonic() + 20
        while waiting and time.monotonic() < deadline:
            harness.drop_listening(waiting)
            time.sleep(0.05)
        if waiting:
            raise RuntimeError('dovecot did not listen: %s' % self.log_tail())
        return self

    def add_user(self, addr, password):
        uid = len(self.users) + 1
        self.users[addr.lower()] = uid
        home = os.path.join(self.data_dir, 'users', str(uid))
        os.makedirs(home, exist_ok=True)
        pw = pwd.getpwnam(harness.RUN_USER)
        for p in (self.data_dir, os.path.join(self.data_dir, 'users'), home):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        with open(os.path.join(self.tmp, 'passwd'), 'a') as f:
            f.write('%s:{PLAIN}%s:%d:%d::%s::\n' % (addr.lower(), password, pw.pw_uid,
                                                    pw.pw_gid, home))

    def ctl(self, *args, input=None, timeout=60):
        if args[:2] == ('user', 'show'):
            return 0, 'id: %d\n' % self.users[args[2].lower()], ''
        return 7, '', 'not with dovecot'

    def sanitizer_reports(self):
        return []

    def leaked_secrets(self):
        return []


# Where the RFC leaves a choice and Dovecot takes the other one, a test
# checks coffre's choice only when it runs against coffred.
AGAINST_DOVECOT = os.environ.get('IMAP_TESTS_AGAINST') == 'dovecot'

if AGAINST_DOVECOT:
    harness.Server = DovecotServer    # ServerTestCase looks it up at setUpClass
