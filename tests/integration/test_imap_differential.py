"""Differential test: the same mailboxes loaded into coffred and into a
throw-away Dovecot, the same generated commands sent to both, and the
answers compared after normalization (a string is the same string whether
quoted or sent as a literal; FETCH items in any order; flags as a set).

Every difference is a coffre bug or one of the places where the RFC allows
both answers, listed in tests/data/imap-differences.md; the normalizers of
ALLOWED below cover exactly those places, each named after its section
there.

When both servers offer CONDSTORE it is enabled and the commands include
STORE (some with UNCHANGEDSINCE, answered with [MODIFIED]), FETCH MODSEQ
and CHANGEDSINCE, SEARCH and ESEARCH with MODSEQ (answered with their
MODSEQ), and STATUS HIGHESTMODSEQ and UIDVALIDITY, also of the mailbox
the commands change; modseqs are compared by the STORE that set them
(Modseqs). test_qresync does the same for QRESYNC (SELECT/EXAMINE
(QRESYNC ...), UID FETCH (CHANGEDSINCE n VANISHED), expunges answered by
VANISHED) once both servers offer it, and is skipped until then.

DIFF_QRESYNC_COMMANDS (default 300) commands go to test_qresync.
DIFF_COMMANDS (default 4000, 1500 under the sanitizers) commands are generated from DIFF_SEED
(default 1); a failure prints the seed, the command and both answers.
Needs Dovecot (dovecot-imapd, installed by scripts/install-deps) and root,
as the other Dovecot-backed checks do."""
import email
import email.utils
import os
import random
import re
import shutil
import sys
import time
import unittest

import harness

CoffreServer = harness.Server   # before imap_util may swap it for Dovecot

import imap_util
from imap_util import Imap, Parser, Atom, USER, PASS, corpus

SEED = int(os.environ.get('DIFF_SEED', '1'))
# fewer under the sanitizers, where each command costs more
COMMANDS = int(os.environ.get('DIFF_COMMANDS', '1500' if harness.sanitized() else '4000'))
MBOX = 'Diff'

# ---- the mailbox ---------------------------------------------------------

SUBJECTS = [
    'Hello world', 'Re: Hello world', 'RE: re: Hello world', 'Fwd: Hello world',
    '[list] Re: Hello world', 'Re: [list] meeting notes', 'meeting notes',
    '=?UTF-8?B?w6l0w6kgZW4gbW9udGFnbmU=?=', '=?ISO-8859-1?Q?caf=E9_cr=E8me?=',
    'Hello world (fwd)', '', '  spaced   out  subject  ', 'Re:', 'Quarterly report Q3',
    'Re: Re: Re: Quarterly report Q3', 'URGENT: server down', 'lunch?',
    '=?UTF-8?Q?R=C3=A9union_=C3=A0_10h?=', 'Fw: [dev] patch 1/3', 'x' * 300,
]
DATES = [
    'Sun, 25 Mar 2007 00:00:00 +0200', 'Sat, 24 Mar 2007 23:30:00 -1100',
    '25 Mar 2007 12:00:00 GMT', 'Mon, 26 Mar 2007 01:00:00 +0000',
    'Tue, 1 Jan 2008 00:00:00 +1400', 'Wed, 31 Dec 2008 23:59:59 -1200',
    'Thu, 13 Feb 2009 23:31:30 +0000', 'Fri, 29 Feb 2008 12:00:00 +0100',
    'Sat, 3 Nov 2012 22:15:00 -0700', 'Sun, 31 Mar 2024 02:30:00 +0200',
    'not a date at all', None,
]
INTERNAL = [
    '25-Mar-2007 00:00:00 +0200', '24-Mar-2007 23:30:00 -1100', '26-Mar-2007 01:00:00 +0000',
    '01-Jan-2008 00:00:00 +1400', '31-Dec-2008 23:59:59 -1200', '13-Feb-2009 23:31:30 +0000',
    '29-Feb-2008 12:00:00 +0100', '03-Nov-2012 22:15:00 -0700', '31-Mar-2024 02:30:00 +0200',
    '15-Jun-2020 08:00:00 -0400',
]
ADDRS = [
    'Alice Example <alice@example.org>', '<user-from (comment)@ (comment) domain.org>',
    '"Bob, Jr." <bob@example.net>', 'carol@example.com (Carol C)',
    '=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jurgen@example.de>', 'undisclosed-recipients:;',
    'Team: dave@example.com, "Eve" <eve@example.com>;', 'frank@example.com',
    'Grace Hopper <grace@navy.example.mil>', 'heidi@EXAMPLE.org',
    'Ivan <ivan@example.ru>, judy@example.com',
]
ADDR_SPECS = ['alice@example.org', 'user-from@domain.org', 'bob@example.net',
              'carol@example.com', 'jurgen@example.de', 'dave@example.com', 'eve@example.com',
              'frank@example.com', 'grace@navy.example.mil', 'heidi@EXAMPLE.org',
              'ivan@example.ru', 'judy@example.com']
NAMES = ['Alice Example', 'Bob, Jr.', 'J\u00fcrgen M\u00fcller', 'Grace Hopper', 'Ivan']
WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'invoice', 'meeting',
         'report', 'server', 'Montagne', 'caf\u00e9', 'na\u00efve', 'stra\u00dfe', 'X-Ray',
         'quarterly', 'patch', 'lunch', 'urgent', 'budget']
KEYWORDS = ['$Label1', 'work', '$Forwarded', 'Junk']
SYSFLAGS = ['\\Seen', '\\Answered', '\\Flagged', '\\Draft', '\\Deleted']


def generated(rng, n):
    """n messages with tricky dates, zones, addresses and subjects, and
    threads with missing parents and loops in References."""
    out = []
    for i in range(n):
        h = []
        if rng.random() < 0.95:
            h.append('From: %s' % rng.choice(ADDRS))
        h.append('To: %s' % ', '.join(rng.sample(ADDRS, rng.randint(1, 2))))
        if rng.random() < 0.4:
            h.append('Cc: %s' % rng.choice(ADDRS))
        if rng.random() < 0.1:
            h.append('Bcc: %s' % rng.choice(ADDRS))
        if rng.random() < 0.9:
            s = rng.choice(SUBJECTS)
            h.append('Subject: %s' % s)
        d = rng.choice(DATES)
        if d is not None:
            h.append('Date: %s' % d)
        h.append('Message-ID: <m%d.%d@diff.example>' % (i, SEED))
        if i and rng.random() < 0.6:
            parent = rng.randrange(0, i + 3)   # may name a message that does not exist
            h.append('In-Reply-To: <m%d.%d@diff.example>' % (parent, SEED))
            refs = ['<m%d.%d@diff.example>' % (rng.randrange(0, i + 5), SEED)
                    for _ in range(rng.randint(0, 3))]
            if rng.random() < 0.1:
                refs.append('<m%d.%d@diff.example>' % (i, SEED))  # a loop
            refs.append('<m%d.%d@diff.example>' % (parent, SEED))
            h.append('References: %s' % ' '.join(refs))
        if rng.random() < 0.3:
            h.append('X-Custom: %s %s' % (rng.choice(WORDS), rng.choice(WORDS)))
        h.append('MIME-Version: 1.0')
        body_words = ' '.join(rng.choice(WORDS) for _ in range(rng.randint(0, 40)))
        if rng.random() < 0.3:
            h.append('Content-Type: text/plain; charset=utf-8')
            h.append('Content-Transfer-Encoding: quoted-printable')
            body = body_words.encode('utf-8')
            body = b''.join(b'=%02X' % c if c > 126 or c == 61 else bytes([c]) for c in body)
            body = body.decode('ascii')
        else:
            h.append('Content-Type: text/plain; charset=utf-8')
            body = body_words
        msg = ('\r\n'.join(h) + '\r\n\r\n' + body + '\r\n').encode('utf-8')
        out.append(msg)
    return out


# Corpus messages left out, each a place where the RFCs allow both answers
# (tests/data/imap-differences.md): Dovecot refuses to APPEND an empty
# message; a multipart without a boundary is text/plain to coffre (RFC 2045
# 5.2) and a multipart with one empty part to Dovecot.
LEFT_OUT = {'21-empty', '15-missing-boundary'}


def messages(rng):
    msgs = [eml for name, eml, _ in corpus() if name not in LEFT_OUT]
    msgs += generated(rng, 120)
    out = []
    for m in msgs:
        flags = [f for f in SYSFLAGS if rng.random() < 0.25]
        flags += [k for k in KEYWORDS if rng.random() < 0.15]
        out.append((m, flags, rng.choice(INTERNAL)))
    return out


def undated(msgs):
    """Sequence numbers of the messages without a Date: that parses, or
    with a two-digit year (imap-differences.md: SENT*)."""
    out = set()
    for i, (m, _, _) in enumerate(msgs):
        head = m.split(b'\r\n\r\n', 1)[0].split(b'\n\n', 1)[0]
        hdr = email.message_from_bytes(head + b'\r\n\r\n')
        d = hdr.get('Date')
        if d is None or email.utils.parsedate_tz(str(d)) is None \
                or re.search(r'\b[A-Za-z]{3} \d\d \d', str(d)):
            out.add(i + 1)
    return out


def headless(msgs):
    """Sequence numbers of the messages that are a header without the
    blank line (imap-differences.md: HEADER.FIELDS)."""
    return {i + 1 for i, (m, _, _) in enumerate(msgs)
            if b'\r\n\r\n' not in m and b'\n\n' not in m}


# ---- normalization -------------------------------------------------------

def norm_value(v):
    if isinstance(v, list):
        return tuple(norm_value(x) for x in v)
    if isinstance(v, Atom):
        return ('atom', str(v).upper() if str(v).upper() == 'NIL' else str(v))
    return v


def norm_section_key(k):
    k = re.sub(r'\s+', ' ', k.upper())
    return k.replace('.PEEK', '')


def part_paths(bs, prefix='', top=True):
    """The part numbers a BODYSTRUCTURE defines (RFC 3501 6.4.5): a
    multipart's children 1, 2, ...; a message/rfc822 part's inner body;
    part 1 of a message that is not multipart."""
    out = set()
    if bs and isinstance(bs[0], list):          # multipart
        i = 0
        for sub in bs:
            if not isinstance(sub, list):
                break
            i += 1
            p = '%s%d' % (prefix, i)
            out.add(p)
            out |= part_paths(sub, p + '.', False)
        return out
    if top:
        out.add(prefix + '1')
    if (len(bs) > 8 and isinstance(bs[0], bytes) and bs[0].lower() == b'message'
            and bs[1].lower() == b'rfc822' and isinstance(bs[8], list)):
        inner = bs[8]
        if inner and isinstance(inner[0], list):
            out |= part_paths(inner, prefix, False)
        else:
            out.add(prefix + '1')   # the inner body of a non-multipart message
    return out


class Modseqs:
    """One server's modseqs in a form both servers share (imap-differences.md:
    MODSEQ values). The servers number changes differently (a modseq per
    message or per command, different starting points), so a modseq is
    named by the generated command that set it: h[k] is the highest modseq
    of the mailbox's messages after the k-th STORE (h[0]: when the test
    starts), and a modseq m is "start" when m <= h[0], else the k with
    h[k-1] < m <= h[k] (len(h) for the command being answered). A modseq
    argument is sent as h[k] (CHANGEDSINCE, UNCHANGEDSINCE: the messages
    changed after the k-th STORE) or h[k] + 1 (SEARCH MODSEQ, which takes
    the messages at or above it)."""

    def __init__(self):
        self.h = []

    def canon(self, m):
        m = int(m)
        if not self.h or m <= self.h[0]:
            return ('modseq', 'start')
        for k in range(1, len(self.h)):
            if m <= self.h[k]:
                return ('modseq', k)
        return ('modseq', len(self.h))

    def text(self, template):
        """<MS:k> is h[k], <MS+:k> is h[k] + 1."""
        return re.sub(r'<MS(\+?):(\d+)>',
                      lambda m: str(self.h[int(m.group(2))] + (1 if m.group(1) else 0)),
                      template)


_SEARCH_MODSEQ = re.compile(rb' ?\(MODSEQ (\d+)\)\s*$')
_MODIFIED = re.compile(rb'\[MODIFIED ([0-9:,]+)\]')


_SECTION_PATH = re.compile(r'^BODY\[([0-9.]*?)\.?(HEADER|TEXT|MIME|HEADER\.FIELDS.*)?\]')


class Normalizer:
    """What both servers must agree on. known: the corpus as seen by the
    test (seq -> part paths, seqs without a usable Date)."""

    def __init__(self, paths, undated, headless, parted, placeholders):
        self.paths = paths
        self.undated = undated
        self.headless = headless
        self.parted = parted
        self.placeholders = placeholders
        self.nonascii = set()   # envelope strings beyond ASCII, encoded or not
        self.ms = None          # the Modseqs of the server whose answer is normalized
        self.encoded = set()    # messages with an RFC 2047 encoded word in the header

    def value(self, v):
        if isinstance(v, list):
            return tuple(self.value(x) for x in v)
        if isinstance(v, Atom):
            return ('atom', str(v))
        return v

    def fetch(self, resp):
        n, items, _ = imap_util.parse_fetch(resp)
        out = {}
        for k, v in items.items():
            k = norm_section_key(k)
            if k == 'FLAGS':
                v = tuple(sorted(str(f).lower() for f in v))
            elif k == 'MODSEQ' and self.ms is not None:
                v = self.ms.canon(v[0])
            elif k == 'ENVELOPE' and v and isinstance(v[1], bytes):
                # Dovecot folds runs of white space in the subject
                # (imap-differences.md: ENVELOPE subject)
                v = list(v)
                v[1] = b' '.join(v[1].split())
                v = self.value(v)
            else:
                v = self.value(v)
            if n in self.headless and k.startswith('BODY[HEADER.FIELDS') and \
                    isinstance(v, bytes):
                # Dovecot adds a blank line there or not (imap-differences.md)
                v = v[:-2] if v.endswith(b'\r\n\r\n') or v == b'\r\n' else v
            m = _SECTION_PATH.match(k)
            if m and m.group(1) and m.group(1).rstrip('.') not in self.paths.get(n, ()):
                # a part that does not exist (imap-differences.md)
                v = 'no such part'
            out[k] = v
        return ('FETCH', n, tuple(sorted(out.items(), key=lambda kv: kv[0])))

    def disputed(self, text):
        """The messages whose place in the answer to this command the RFCs
        leave open (imap-differences.md); sequence numbers, which are
        also the UIDs of this mailbox."""
        t = text.upper() + ' '
        drop = set()
        if 'SENT' in t or re.search(r'\bDATE\b', t):
            # SENT* and SORT DATE on a message without a usable Date:
            drop |= self.undated
        if 'TEXT ' in t:
            # TEXT and the headers of MIME parts, and the encoded words
            # as written (a string may be found inside their base64)
            drop |= self.parted | self.encoded
        if re.search(r'\b(FROM|TO|CC|BCC|DISPLAYFROM|DISPLAYTO)\b', t):
            # Dovecot's MISSING_DOMAIN placeholders
            drop |= self.placeholders
        return drop

    def modseq_tail(self, resp, drop, text=''):
        """A SEARCH or SORT answer without its (MODSEQ n), and n in the
        shared form (left out when a disputed message may count in it, or
        when a MODSEQ key may stand inside an OR: Dovecot then sends none,
        imap-differences.md)."""
        m = _SEARCH_MODSEQ.search(resp)
        if not m:
            return resp, None
        return resp[:m.start()], (None if drop or self.ms is None or or_modseq(text)
                                  else self.ms.canon(m.group(1)))

    def search(self, text, resp):
        drop = self.disputed(text)
        resp, ms = self.modseq_tail(resp, drop, text)
        nums = [int(x) for x in resp.split()[2:]]
        out = ('SEARCH', tuple(sorted(x for x in nums if x not in drop)))
        return out + (ms,) if ms else out

    def esearch(self, text, resp):
        """* ESEARCH (TAG "x") [UID] MIN n MAX n COUNT n ALL set: the
        results as a dict, ALL as the set of numbers."""
        drop = self.disputed(text)
        p = Parser(resp)
        p.i = len(b'* ESEARCH')
        out = {}
        while not p.at_end():
            p.sp()
            v = p.value()
            if isinstance(v, list):
                continue            # the (TAG "...") correlator
            name = str(v).upper()
            if name == 'UID':
                out['UID'] = True
                continue
            p.sp()
            val = str(p.value())
            if name == 'ALL':
                nums = tuple(sorted(set(imap_util.parse_seqset(val)) - drop))
                if nums:        # an empty ALL is left out (RFC 4731 3.1)
                    out[name] = nums
            elif name == 'MODSEQ' and self.ms is not None:
                out[name] = self.ms.canon(val)
            else:
                out[name] = val
        if drop:
            # MIN, MAX and COUNT may count a disputed message, and MODSEQ
            # be its modseq
            for k in ('MIN', 'MAX', 'COUNT', 'MODSEQ'):
                out.pop(k, None)
        if or_modseq(text):
            out.pop('MODSEQ', None)
        return ('ESEARCH', tuple(sorted(out.items())))

    def sort(self, text, resp):
        drop = self.disputed(text)
        resp, ms = self.modseq_tail(resp, drop, text)
        nums = [int(x) for x in resp.split()[2:]]
        out = ('SORT', tuple(x for x in nums if x not in drop))
        return out + (ms,) if ms else out

    def esort(self, text, resp):
        """RFC 5267 ESORT: an ESEARCH answer whose ALL is in sort order
        and whose MIN and MAX are the first and last in it."""
        kind, items = self.esearch(text, resp)
        out = dict(items)
        drop = self.disputed(text)
        m = re.search(rb' ALL ([0-9:,]+)', resp)
        out.pop('ALL', None)
        if m:
            nums = tuple(x for x in imap_util.parse_seqset(m.group(1).decode())
                         if x not in drop)
            if nums:
                out['ALL'] = nums
        return ('ESORT', tuple(sorted(out.items())))

    def list(self, resp):
        kind, attrs, sep, name = norm_list(resp)
        # \Marked and \UnMarked are optional (RFC 3501 7.2.2)
        attrs = tuple(a for a in attrs if a not in ('\\marked', '\\unmarked'))
        if kind == 'LSUB' and name in GONE:
            attrs = ()   # a subscribed name with no mailbox (imap-differences.md)
        return (kind, attrs, sep, name)

    def __call__(self, kind, text, untagged, tagged, ms=None):
        self.ms = ms
        status = re.match(rb'\S+ (OK|NO|BAD)', tagged)
        status = status.group(1).decode() if status else tagged
        m = _MODIFIED.search(tagged) if isinstance(tagged, bytes) else None
        if m:
            # STORE (UNCHANGEDSINCE): the messages left alone, as a set
            status += ' MODIFIED %s' % imap_util.seqset(
                sorted(set(imap_util.parse_seqset(m.group(1).decode()))))
        out = []
        for r in untagged:
            if kind == 'SEARCH' and r.startswith(b'* SEARCH'):
                out.append(self.search(text, r))
            elif kind in ('FETCH', 'STORE') and re.match(rb'\* \d+ FETCH', r):
                out.append(self.fetch(r))
            elif kind == 'LIST' and re.match(rb'\* (LIST|LSUB) ', r):
                out.append(self.list(r))
            elif kind == 'STATUS' and r.startswith(b'* STATUS '):
                out.append(norm_status(r, ms))
            elif kind == 'ESEARCH' and r.startswith(b'* ESEARCH'):
                out.append(self.esearch(text, r))
            elif kind == 'SORT' and r.startswith(b'* SORT'):
                out.append(self.sort(text, r))
            elif kind == 'ESORT' and r.startswith(b'* ESEARCH'):
                out.append(self.esort(text, r))
            elif kind == 'THREAD' and r.startswith(b'* THREAD'):
                out.append(('THREAD', r[len(b'* THREAD'):].strip()))
        if kind == 'STORE' and ms is not None:
            # FETCH for a message the STORE did not change (its flags were
            # already so, or UNCHANGEDSINCE left it alone) is the server's
            # choice (imap-differences.md: STORE answers): only those with
            # the modseq of this command are compared
            now = ('modseq', len(ms.h))
            out = [r for r in out if dict(r[2]).get('MODSEQ') == now]
        if kind in ('LIST', 'STORE'):
            out.sort()
        return status, tuple(out)


def norm_list(resp):
    m = re.match(rb'\* (LIST|LSUB) ', resp)
    p = Parser(resp)
    p.i = m.end()
    attrs = p.value()
    p.sp()
    sep = p.value()
    p.sp()
    name = p.value()
    if isinstance(name, Atom):
        name = str(name).encode()
    return (m.group(1).decode(), tuple(sorted(str(a).lower() for a in attrs)), sep, name)


def norm_status(resp, ms=None):
    """UIDVALIDITY is each server's own: only its presence is compared;
    HIGHESTMODSEQ in the shared form for the mailbox the commands change,
    only its presence for the others (imap-differences.md: MODSEQ
    values)."""
    m = re.match(rb'\* STATUS ', resp)
    p = Parser(resp)
    p.i = m.end()
    name = p.value()
    if isinstance(name, Atom):
        name = str(name).encode()
    p.sp()
    items = p.value()
    pairs = []
    for k, v in zip(items[0::2], items[1::2]):
        key = str(k).upper()
        if key == 'UIDVALIDITY':
            v = 'present'
        elif key == 'HIGHESTMODSEQ':
            v = ms.canon(v) if ms is not None and name == MBOX.encode() else 'present'
        pairs.append((key, v))
    return ('STATUS', name, tuple(sorted(pairs)))


# ---- command generation --------------------------------------------------

DATES_SEARCH = ['24-Mar-2007', '25-Mar-2007', '26-Mar-2007', '1-Jan-2008', '31-Dec-2008',
                '1-Jan-2009', '13-Feb-2009', '29-Feb-2008', '3-Nov-2012', '4-Nov-2012',
                '31-Mar-2024', '15-Jun-2020', '1-Jan-1990']


SET_KEY = re.compile(r'^(UID )?[0-9*:,]+$')
_RANGE_KEY = r'((SENT)?(BEFORE|ON|SINCE)|LARGER|SMALLER) \S+'
NOT_RECENT = re.compile(r'^NOT (NEW|OLD|RECENT)$')
SIZE_KEY = re.compile(r'^(LARGER|SMALLER) ')
RANGE_OR = re.compile(r'^OR %s ' % _RANGE_KEY)
DATES_OR = re.compile(r'^(OR %s %s|\(%s %s\))$' % ((_RANGE_KEY,) * 4))


def quoted(s):
    return '"%s"' % s.replace('\\', '\\\\').replace('"', '\\"')


class Gen:
    def __init__(self, rng, count, caps=(), esort_rng=None):
        self.r = rng
        self.re = esort_rng or random.Random(0)
        self.n = count      # messages in the mailbox
        self.caps = set(caps)   # extensions both servers announce
        self.dated = set()      # UIDs of the messages with a usable Date:
        # CONDSTORE: enabled on both; its choices drawn from a generator of
        # its own. epochs: the STOREs so far (Modseqs.h has epochs + 1)
        self.condstore = 'CONDSTORE' in self.caps
        self.rc = random.Random(rng.random())
        self.epochs = 0

    def modseq_arg(self, plus=False):
        """A modseq argument (Modseqs.text): the start, or after one of the
        STOREs so far, the last one most often."""
        r = self.rc
        k = self.epochs if r.random() < 0.4 else r.randint(0, self.epochs)
        return '<MS%s:%d>' % ('+' if plus else '', k)

    def seqset(self):
        """A set of 1-3 ranges; "*" in one of them at most: Dovecot
        answers some sets with two ranges reaching "*" wrongly
        (imap-differences.md)."""
        r, n = self.r, self.n
        parts = []
        star = False
        for _ in range(r.randint(1, 3)):
            c = r.random()
            a = r.randint(1, n)
            if c < 0.3 or (c >= 0.6 and star):
                parts.append(str(a))
            elif c < 0.6:
                parts.append('%d:%d' % (a, r.randint(1, n)))
            elif c < 0.8:
                parts.append('%d:*' % a)
                star = True
            else:
                parts.append('*')
                star = True
        return ','.join(parts)

    def uidset(self):
        r, n = self.r, self.n
        c = r.random()
        if c < 0.5:
            return self.seqset()
        if c < 0.7:
            return '%d:%d' % (r.randint(1, n + 5), 4294967295)
        return '%d' % r.randint(1, n + 5)

    def text(self, address=False):
        """A string to search for: words, addresses, subjects, pieces of
        them. Left out (imap-differences.md): RFC 2047 encoded words as
        written, runs of white space, and in address keys the punctuation
        between and around addresses (<>, ;:, quotes, comments)."""
        r = self.r
        subjects = [x for x in SUBJECTS[:12] if '=?' not in x and '  ' not in x]
        w = r.choice(WORDS + ADDR_SPECS + NAMES + subjects)
        c = r.random()
        if c < 0.3 and len(w) > 4:
            a = r.randint(0, len(w) - 3)
            w = w[a:a + r.randint(3, len(w) - a)]
        elif c < 0.5:
            w = w.upper()
        if address:
            w = re.sub(r'[<>;:"(),]', '', w).strip() or 'example'
        return w

    def key(self, depth=0):
        r = self.r
        c = r.random()
        if depth < 2 and c < 0.08:
            inner = self.key(depth + 1)
            while DATES_OR.match(inner) or RANGE_OR.match(inner) or SIZE_KEY.match(inner) or \
                    ('*' in inner and SET_KEY.match(inner)
                                            and ',' in inner) or 'MODSEQ' in inner:
                # Dovecot answers NOT OR (or NOT of a group of) two date
                # or size keys wrongly, and NOT MODSEQ, and stops
                # at NOT of some sets with "*" (imap-differences.md)
                inner = self.key(depth + 1)
            return 'NOT ' + inner
        if depth < 2 and c < 0.16:
            a, b = self.key(depth + 1), self.key(depth + 1)
            while NOT_RECENT.match(a) or NOT_RECENT.match(b):
                # Dovecot answers OR NOT NEW NEW wrongly (imap-differences.md)
                a, b = self.key(depth + 1), self.key(depth + 1)
            return 'OR %s %s' % (a, b)
        if depth < 2 and c < 0.2:
            return '(%s %s)' % (self.key(depth + 1), self.key(depth + 1))
        simple = ['ALL', 'ANSWERED', 'DELETED', 'DRAFT', 'FLAGGED', 'SEEN', 'UNANSWERED',
                  'UNDELETED', 'UNDRAFT', 'UNFLAGGED', 'UNSEEN', 'NEW', 'OLD', 'RECENT']
        c = r.random()
        if c < 0.15:
            return r.choice(simple)
        if c < 0.2:
            return '%s %s' % (r.choice(['KEYWORD', 'UNKEYWORD']), r.choice(KEYWORDS))
        if c < 0.35:
            return '%s %s' % (r.choice(['BEFORE', 'ON', 'SINCE', 'SENTBEFORE', 'SENTON',
                                        'SENTSINCE']), r.choice(DATES_SEARCH))
        if c < 0.6:
            key = r.choice(['FROM', 'TO', 'CC', 'BCC', 'SUBJECT', 'BODY', 'TEXT'])
            return '%s %s' % (key, quoted(self.text(key in ('FROM', 'TO', 'CC', 'BCC'))))
        if c < 0.68:
            return 'HEADER %s %s' % (r.choice(['Subject', 'X-Custom', 'Message-ID', 'References',
                                               'Content-Type', 'In-Reply-To', 'X-Absent']),
                                     quoted(r.choice(['', self.text(), 'diff.example'])))
        if c < 0.78:
            return '%s %d' % (r.choice(['LARGER', 'SMALLER']), r.choice([0, 100, 500, 1000,
                                                                           3000, 100000]))
        if c < 0.88:
            return 'UID ' + self.uidset()
        if self.condstore and self.rc.random() < 0.3:
            # RFC 7162 3.1.5
            # no entry name ("/flags/work" all): Dovecot keeps a modseq per
            # flag, coffre one per message (imap-differences.md: CONDSTORE)
            return 'MODSEQ ' + (self.modseq_arg(True) if self.rc.random() < 0.9 else '1')
        return self.seqset()

    def criteria(self):
        return ' '.join(self.key() for _ in range(self.r.randint(1, 3)))

    def search(self):
        r = self.r
        uid = r.random() < 0.4
        charset = 'CHARSET UTF-8 ' if r.random() < 0.2 else ''
        return 'SEARCH', '%sSEARCH %s%s' % ('UID ' if uid else '', charset, self.criteria())

    def esearch(self):
        """RFC 4731: SEARCH RETURN (...)."""
        r = self.r
        uid = r.random() < 0.4
        opts = r.sample(['MIN', 'MAX', 'ALL', 'COUNT'], r.randint(0, 4))
        return 'ESEARCH', '%sSEARCH RETURN (%s) %s' % ('UID ' if uid else '', ' '.join(opts),
                                                       self.criteria())

    SORT_KEYS = ['ARRIVAL', 'CC', 'DATE', 'FROM', 'SIZE', 'SUBJECT', 'TO']

    def sort(self):
        """RFC 5256 SORT, RFC 5957 DISPLAYFROM and DISPLAYTO."""
        r = self.r
        keys = self.SORT_KEYS + ['DISPLAYFROM', 'DISPLAYTO']
        # no REVERSE: Dovecot does not keep tied messages in mailbox order
        # under it (imap-differences.md)
        prog = ' '.join(r.sample(keys, r.choice((1, 1, 2, 3))))
        uid = r.random() < 0.3
        crit = self.criteria()
        if 'ESORT' in self.caps and self.re.random() < 0.4:
            # RFC 5267 ESORT, drawn from a generator of its own so that the
            # other commands stay those of the same seed
            opts = self.re.sample(['MIN', 'MAX', 'ALL', 'COUNT'], self.re.randint(0, 4))
            return 'ESORT', '%sSORT RETURN (%s) (%s) UTF-8 %s' % (
                'UID ' if uid else '', ' '.join(opts), prog, crit)
        return 'SORT', '%sSORT (%s) UTF-8 %s' % ('UID ' if uid else '', prog, crit)

    def thread(self):
        """RFC 5256 THREAD, over the messages whose sent date both servers
        read alike (imap-differences.md: SENT*)."""
        r = self.r
        # ORDEREDSUBJECT and REFS order by sent date, which Dovecot does not
        # take to UTC there (imap-differences.md)
        algos = [a for a in ('REFERENCES',) if 'THREAD=' + a in self.caps]
        uid = r.random() < 0.3
        crit = 'ALL' if r.random() < 0.4 else self.criteria()
        if self.dated:
            crit += ' UID ' + imap_util.seqset(sorted(self.dated))
        return 'THREAD', '%sTHREAD %s UTF-8 %s' % ('UID ' if uid else '', r.choice(algos), crit)

    FETCH_ATTS = ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'UID', 'BODY',
                  'BODYSTRUCTURE', 'BODY.PEEK[HEADER]', 'BODY.PEEK[TEXT]', 'BODY.PEEK[]',
                  'BODY.PEEK[HEADER.FIELDS (From Subject)]',
                  'BODY.PEEK[HEADER.FIELDS (DATE x-custom message-id)]',
                  # Thunderbird's listing: the listing blocks, often as they are
                  'BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority '
                  'X-Priority References Newsgroups In-Reply-To Content-Type)]',
                  'BODY.PEEK[HEADER.FIELDS.NOT (Received Subject)]', 'BODY.PEEK[1]',
                  'BODY.PEEK[1.MIME]', 'BODY.PEEK[2]', 'BODY.PEEK[1.1]', 'BODY.PEEK[2.HEADER]',
                  'BODY.PEEK[1]<0.10>', 'BODY.PEEK[]<5.20>', 'BODY.PEEK[TEXT]<100.50>',
                  'RFC822.HEADER', 'BODY.PEEK[3]', 'BODY.PEEK[2.1.MIME]']

    def fetch(self):
        r = self.r
        uid = r.random() < 0.3
        atts = r.sample(self.FETCH_ATTS, r.randint(1, 3))
        if r.random() < 0.1:
            atts = [r.choice(['ALL', 'FAST', 'FULL'])]
        s = self.uidset() if uid else self.seqset()
        macro = atts[0] in ('ALL', 'FAST', 'FULL')    # never inside parentheses
        mod = ''
        if self.condstore and not macro:
            c = self.rc.random()
            if c < 0.3:
                atts.append('MODSEQ')
            if c < 0.15 or 0.3 <= c < 0.4:
                # RFC 7162 3.1.4.1: only the messages changed since
                mod = ' (CHANGEDSINCE %s)' % self.modseq_arg()
        a = atts[0] if macro or (len(atts) == 1 and r.random() < 0.5) \
            else '(%s)' % ' '.join(atts)
        if mod and not macro and not a.startswith('('):
            # Dovecot answers BAD to a lone BODY[...] item followed by a
            # modifier (imap-differences.md: CONDSTORE)
            a = '(%s)' % a
        return 'FETCH', '%sFETCH %s %s%s' % ('UID ' if uid else '', s, a, mod)

    STORE_FLAGS = ['\\Seen', '\\Answered', '\\Flagged', '\\Draft', '\\Deleted'] + KEYWORDS

    def store(self):
        """RFC 7162 3.1.3: STORE, now and then conditional (UNCHANGEDSINCE);
        the answers name the messages left alone in [MODIFIED]."""
        r = self.rc
        uid = r.random() < 0.3
        s = self.uidset() if uid else self.seqset()
        cond = ''
        c = r.random()
        if c < 0.4:
            cond = ' (UNCHANGEDSINCE %s)' % self.modseq_arg()
        elif c < 0.45:
            cond = ' (UNCHANGEDSINCE 0)'
        op = r.choice(['+FLAGS', '-FLAGS', 'FLAGS']) + ('.SILENT' if r.random() < 0.3 else '')
        flags = ' '.join(r.sample(self.STORE_FLAGS, r.randint(0 if op.startswith('FLAGS') else 1,
                                                              3)))
        return 'STORE', '%sSTORE %s%s %s (%s)' % ('UID ' if uid else '', s, cond, op, flags)

    LIST_PATTERNS = ['*', '%', 'Tree/%', 'Tree/*', 'Tree', 'tree/*', 'INBOX', 'inbox', 'T*',
                     '%/%', 'Tree/Sub%', '*Sub*', 'Nope', 'Tree/Deep/%', 'Tree/%/%']

    def list(self):
        r = self.r
        ref = r.choice(['""', '""', '"Tree/"', '"Tree"'])
        cmd = r.choice(['LIST', 'LIST', 'LSUB'])
        return 'LIST', '%s %s %s' % (cmd, ref, quoted(r.choice(self.LIST_PATTERNS)))

    def status(self):
        r = self.r
        items = r.sample(['MESSAGES', 'UIDNEXT', 'UNSEEN', 'RECENT'], r.randint(1, 4))
        boxes = ['Tree/Sub1', 'Tree', 'INBOX']
        if self.condstore:
            # HIGHESTMODSEQ (RFC 7162 3.1.2.2), UIDVALIDITY, and the
            # mailbox the commands change (selected: RFC 3501 6.3.10 allows it)
            more = self.rc.sample(['HIGHESTMODSEQ', 'UIDVALIDITY'], self.rc.randint(0, 2))
            items = self.rc.sample(items + more, len(items) + len(more))
            boxes.append(MBOX)
        return 'STATUS', 'STATUS %s (%s)' % (r.choice(boxes), ' '.join(items))

    def command(self):
        if self.condstore and self.rc.random() < 0.12:
            return self.store()
        c = self.r.random()
        if c < 0.1 and 'ESEARCH' in self.caps:
            return self.esearch()
        if 0.1 <= c < 0.2 and 'SORT' in self.caps:
            return self.sort()
        if 0.2 <= c < 0.25 and any(x.startswith('THREAD=') for x in self.caps):
            return self.thread()
        if c < 0.5:
            return self.search()
        if c < 0.85:
            return self.fetch()
        if c < 0.95:
            return self.list()
        return self.status()


EXTENSIONS = {'ESEARCH', 'SORT', 'ESORT', 'SORT=DISPLAY', 'THREAD=REFERENCES', 'THREAD=ORDEREDSUBJECT',
              'THREAD=REFS', 'CONDSTORE', 'QRESYNC'}


def or_modseq(text):
    """A MODSEQ search key after an OR: it may be one of the OR's operands,
    where Dovecot sends no MODSEQ with the answer (imap-differences.md)."""
    return re.search(r'\bOR\b.*\bMODSEQ\b', text.upper()) is not None


def highest_modseq(c):
    """The highest modseq of the selected mailbox's messages (SEARCH MODSEQ
    1 matches all of them and answers with the highest)."""
    for r in c.ok('SEARCH MODSEQ 1'):
        m = _SEARCH_MODSEQ.search(r)
        if r.startswith(b'* SEARCH') and m:
            return int(m.group(1))
    raise AssertionError('no (MODSEQ n) in the answer to SEARCH MODSEQ 1')


def capabilities(c):
    for r in c.ok('CAPABILITY'):
        if r.startswith(b'* CAPABILITY '):
            return set(r.decode().upper().split()[2:])
    return set()


def first_difference(a, b, na, nb):
    """The first pair of responses that differ, raw, for the log."""
    if na[0] != nb[0]:
        return 'coffre:  %r\ndovecot: %r\n' % (a[1], b[1])
    ra, rb = na[1], nb[1]
    for i in range(max(len(ra), len(rb))):
        x = ra[i] if i < len(ra) else None
        y = rb[i] if i < len(rb) else None
        if x != y:
            if x and y and x[0] == 'FETCH':
                dx, dy = dict(x[2]), dict(y[2])
                keys = [k for k in sorted(set(dx) | set(dy)) if dx.get(k) != dy.get(k)]
                if keys:
                    return 'seq %d %s\ncoffre:  %r\ndovecot: %r\n' % (
                        x[1], keys[0], dx.get(keys[0]), dy.get(keys[0]))
            return 'coffre:  %r\ndovecot: %r\n' % (x, y)
    return '?\n'


# ---- the test ------------------------------------------------------------

# Tree/Deep is created: coffre creates the superior names of a new
# mailbox, Dovecot does not (imap-differences.md).
TREE = ['Tree', 'Tree/Sub1', 'Tree/Sub2', 'Tree/Deep', 'Tree/Deep/Er', 'Other']
SUBSCRIBED = ['Tree/Sub1', 'Tree/Deep/Er', 'Gone']
GONE = {b'Gone'}
# coffre subscribes the mailboxes it creates for a new account; the test
# starts both servers with the same subscriptions
DEFAULTS = ['INBOX', 'Drafts', 'Sent', 'Trash', 'Junk', 'Archive']


def load(server, msgs):
    c = Imap(server.raw('imaps', tls=True))
    c.login(USER, PASS)
    c.ok('CREATE %s' % MBOX)
    for name in TREE:
        c.cmd('CREATE %s' % name)
    for name in DEFAULTS:
        c.cmd('UNSUBSCRIBE %s' % name)
    c.ok('CREATE Gone')
    for name in SUBSCRIBED:
        c.ok('SUBSCRIBE %s' % name)
    c.ok('DELETE Gone')
    c.ok('APPEND Tree/Sub1 {}', msgs[0][0])
    for m, flags, date in msgs:
        c.ok('APPEND %s (%s) "%s" {}' % (MBOX, ' '.join(flags), date), m)
    return c


def fresh_sort(server, text, answer):
    """The same SORT in a new session on the mailbox. A SORT's messages are
    named by their UIDs (sequence numbers and UIDs are one here), since a
    new session sees no \\Recent; an ESORT is sent as it is, unless it
    reads \\Recent (then the answer is given back unchanged)."""
    lines = [x for x in answer[0] if x.startswith(b'* SORT')]
    nums = [int(x) for x in lines[0].split()[2:]] if lines else []
    prog = re.search(r'SORT (?:RETURN \([^)]*\) )?\(([^)]*)\)', text).group(1)
    if ' RETURN ' in text:
        if re.search(r'\b(RECENT|NEW|OLD)\b', text.upper()):
            return answer
        again = text
    elif nums:
        again = 'SORT (%s) UTF-8 UID %s' % (prog, imap_util.seqset(sorted(nums)))
    else:
        return answer
    c = Imap(server.raw('imaps', tls=True))
    try:
        c.login(USER, PASS)
        c.ok('EXAMINE %s' % MBOX)
        return c.cmd(again)
    finally:
        c.close()


@unittest.skipIf(imap_util.AGAINST_DOVECOT, 'compares coffre with Dovecot itself')
@unittest.skipUnless(os.geteuid() == 0 and shutil.which('dovecot'),
                     'needs root and Dovecot (scripts/install-deps)')
class Differential(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.servers = []
        for make in (lambda: CoffreServer(name='coffre'),
                     lambda: imap_util.DovecotServer(name='dovecot')):
            s = make()
            cls.servers.append(s)
            s.start()
            s.add_user(USER, PASS)

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers:
            try:
                s.stop()
            finally:
                s.cleanup()

    def known_parts(self, cc, dc, n):
        """seq -> part numbers, from the BODYSTRUCTURE both servers give."""
        paths = {}
        for c in (cc, dc):
            got = {}
            for r in c.ok('FETCH 1:%d BODYSTRUCTURE' % n):
                seq, items, _ = imap_util.parse_fetch(r)
                got[seq] = items['BODYSTRUCTURE']
            if not paths:
                paths = got
            self.assertEqual(paths, got, 'BODYSTRUCTURE differs')
        self.structures = paths
        return {seq: part_paths(bs) for seq, bs in paths.items()}

    def test_same_answers(self):
        rng = random.Random(SEED)
        msgs = messages(rng)
        coffre, dovecot = self.servers
        cc = load(coffre, msgs)
        dc = load(dovecot, msgs)
        for c in (cc, dc):
            c.ok('SELECT %s' % MBOX)
        paths = self.known_parts(cc, dc, len(msgs))
        parted = {seq for seq, bs in self.structures.items()
                  if isinstance(bs[0], list) or paths[seq] != {'1'}}
        placeholders, nonascii = set(), set()
        for r in cc.ok('FETCH 1:%d ENVELOPE' % len(msgs)):
            if b'"MISSING_' in r:
                placeholders.add(imap_util.parse_fetch(r)[0])
            if b'=?' in r or any(ch >= 0x80 for ch in r):
                nonascii.add(imap_util.parse_fetch(r)[0])
        norm = Normalizer(paths, undated(msgs), headless(msgs), parted, placeholders)
        norm.nonascii = nonascii
        norm.encoded = {i + 1 for i, (m, _, _) in enumerate(msgs)
                        if b'=?' in m.split(b'\r\n\r\n', 1)[0]}
        caps = capabilities(cc) & capabilities(dc)
        sys.stderr.write('extensions both servers announce: %s\n'
                         % (' '.join(sorted(caps & EXTENSIONS)) or '-'))
        gen = Gen(random.Random(SEED + 1), len(msgs), caps, random.Random(SEED + 2))
        mss = (Modseqs(), Modseqs())
        if gen.condstore:
            for c, ms in zip((cc, dc), mss):
                c.ok('ENABLE CONDSTORE')
                ms.h.append(highest_modseq(c))
        # THREAD over the messages whose dates and base subjects both
        # servers read alike (imap-differences.md)
        gen.dated = set(range(1, len(msgs) + 1)) - norm.undated - nonascii
        diffs = []
        unstable = 0
        spent = [0.0, 0.0, 0.0]
        statuses = {}
        for i in range(COMMANDS):
            kind, template = gen.command()
            # the modseq arguments are each server's own numbers
            text, dtext = mss[0].text(template), mss[1].text(template)
            t0 = time.monotonic()
            try:
                a = cc.cmd(text)
            except Exception:
                sys.stderr.write('coffre stopped answering at: %s\n%s\n'
                                 % (text, coffre.log_tail()))
                raise
            t1 = time.monotonic()
            try:
                b = dc.cmd(dtext)
            except Exception:
                sys.stderr.write('Dovecot stopped answering at: %s\n%s\n'
                                 % (dtext, dovecot.log_tail()))
                raise
            t2 = time.monotonic()
            na, nb = norm(kind, text, *a, ms=mss[0]), norm(kind, dtext, *b, ms=mss[1])
            if kind == 'STORE':
                for c, ms in zip((cc, dc), mss):
                    ms.h.append(highest_modseq(c))
                gen.epochs += 1
            if text != template:
                text = '%s    [coffre: %s; dovecot: %s]' % (template, text, dtext)
            statuses[na[0]] = statuses.get(na[0], 0) + 1
            spent[0] += t1 - t0
            spent[1] += t2 - t1
            spent[2] += time.monotonic() - t2
            if na != nb and kind in ('SORT', 'ESORT') and na == norm(
                    kind, dtext, *fresh_sort(dovecot, dtext, b), ms=mss[1]):
                # Dovecot's answer to a SORT of several keys can change with
                # what its session sorted before; a new session sorting the
                # same messages gives coffre's answer (imap-differences.md)
                unstable += 1
            elif na != nb:
                diffs.append((text, a, b, na, nb))
        sys.stderr.write('differential: %d commands compared, %d differences (seed %d); '
                         'seconds in coffre %.1f, in Dovecot %.1f, comparing %.1f\n'
                         % (COMMANDS, len(diffs), SEED, *spent))
        sys.stderr.write('SORT answers of Dovecot that a new Dovecot session corrected: %d\n'
                         % unstable)
        sys.stderr.write('coffre answered: %s\n' % ', '.join(
            '%s %d' % kv for kv in sorted(statuses.items())))
        for text, a, b, na, nb in diffs[:40]:
            sys.stderr.write('\n>>> %s\n' % text)
            sys.stderr.write(first_difference(a, b, na, nb))
        self.assertEqual(len(diffs), 0, 'differences between coffre and Dovecot')
        self.assertTrue(coffre.alive())

    def test_qresync(self):
        """QRESYNC (RFC 7162 section 3.2), once both servers offer it: in a
        mailbox of its own, flag changes, expunges and new messages, with
        UID FETCH (CHANGEDSINCE n VANISHED) and SELECT/EXAMINE (QRESYNC
        (uidvalidity modseq [known-uids])) between them; untagged
        VANISHED, VANISHED (EARLIER) and FETCH compared. UIDs are the same
        on both servers (the same APPENDs and expunges); UIDVALIDITY is
        each server's own; modseqs as Modseqs names them, h[k] being the
        mailbox's HIGHESTMODSEQ after the k-th change (an expunge leaves
        a modseq no message holds). A VANISHED set is compared with the
        UIDs never given left out (RFC 7162 3.2.10 lets the server name
        them)."""
        coffre, dovecot = self.servers
        sessions = [Imap(sv.raw('imaps', tls=True)) for sv in self.servers]
        for c in sessions:
            self.addCleanup(c.close)
            c.login(USER, PASS)
        caps = capabilities(sessions[0]) & capabilities(sessions[1])
        if 'QRESYNC' not in caps:
            self.skipTest('QRESYNC is not offered by both servers (%s)'
                          % ', '.join(n for n, c in zip(('coffre', 'Dovecot'), sessions)
                                      if 'QRESYNC' not in capabilities(c)))
        rng = random.Random(SEED + 7)
        box = 'QR'
        msgs = generated(random.Random(SEED + 8), 60)
        mss = (Modseqs(), Modseqs())
        validity = []
        for c, ms in zip(sessions, mss):
            c.ok('CREATE %s' % box)
            for m in msgs:
                c.ok('APPEND %s {}' % box, m)
            c.ok('ENABLE QRESYNC')
            info = c.select(box)
            validity.append(info['uidvalidity'])
        given = set(range(1, len(msgs) + 1))     # every UID given so far
        live = set(given)

        def highest(c):
            for r in c.ok('STATUS %s (HIGHESTMODSEQ)' % box):
                m = re.search(rb'HIGHESTMODSEQ (\d+)', r)
                if m:
                    return int(m.group(1))
            raise AssertionError('no HIGHESTMODSEQ for %s' % box)

        for c, ms in zip(sessions, mss):
            ms.h.append(highest(c))

        def norm(ms, text, untagged, tagged):
            st = re.match(rb'\S+ (OK|NO|BAD)', tagged)
            out = [st.group(1).decode() if st else tagged]
            selecting = text.startswith(('SELECT', 'EXAMINE'))
            for r in untagged:
                m = re.match(rb'\* VANISHED (\(EARLIER\) )?([0-9:,]+)\s*$', r)
                if m:
                    uids = set(imap_util.parse_seqset(m.group(2).decode())) & given
                    out.append(('VANISHED', bool(m.group(1)), tuple(sorted(uids))))
                elif re.match(rb'\* \d+ FETCH', r):
                    n, items, _ = imap_util.parse_fetch(r)
                    it = {}
                    for k, v in items.items():
                        if k == 'FLAGS':
                            v = tuple(sorted(str(f).lower() for f in v))
                        elif k == 'MODSEQ':
                            v = ms.canon(v[0])
                        elif k == 'UID':
                            v = int(v)
                        it[k] = v
                    out.append(('FETCH', n, tuple(sorted(it.items()))))
                elif re.match(rb'\* \d+ (EXISTS|EXPUNGE)', r):
                    n, what = r.split()[1:3]
                    out.append((what.decode(), int(n)))
                elif selecting and re.search(rb'\[(UIDNEXT|HIGHESTMODSEQ|CLOSED)', r):
                    # (Dovecot also sends OK [HIGHESTMODSEQ] after an APPEND
                    # to the selected mailbox: compared in SELECT only)
                    m = re.search(rb'\[(UIDNEXT|HIGHESTMODSEQ|CLOSED) ?(\d*)\]', r)
                    k = m.group(1).decode()
                    v = ms.canon(m.group(2)) if k == 'HIGHESTMODSEQ' else m.group(2)
                    out.append((k, v))
            if 'STORE' in text:
                # FETCH of messages the STORE did not change: as in
                # test_same_answers
                now = ('modseq', len(ms.h))
                out = out[:1] + [x for x in out[1:]
                                 if x[0] != 'FETCH' or dict(x[2]).get('MODSEQ') == now]
            # several VANISHED lines may split one set: merged
            van = {}
            rest = []
            for x in out[1:]:
                if x[0] == 'VANISHED':
                    van.setdefault(x[1], set()).update(x[2])
                else:
                    rest.append(x)
            rest += [('VANISHED', k, tuple(sorted(v))) for k, v in sorted(van.items())]
            return (out[0], tuple(sorted(rest, key=repr)))

        def uidset(pool, star=True):
            pool = sorted(pool)
            if not pool:
                return '1'
            pick = rng.sample(pool, min(len(pool), rng.randint(1, 6)))
            if star and rng.random() < 0.3:
                return '%d:*' % rng.choice(pool)
            return imap_util.seqset(sorted(pick))

        diffs = []
        seen = {}
        n_new = 0
        for i in range(int(os.environ.get('DIFF_QRESYNC_COMMANDS', '300'))):
            k = rng.randint(0, len(mss[0].h) - 1)
            c = rng.random()
            changes = False
            if c < 0.3:
                template = 'UID STORE %s %s (%s)' % (
                    uidset(live), rng.choice(['+FLAGS', '-FLAGS', '+FLAGS.SILENT']),
                    ' '.join(rng.sample(['\\Seen', '\\Flagged', '\\Answered', 'work'],
                                        rng.randint(1, 2))))
                changes = True
            elif c < 0.45 and len(live) > 10:
                gone = set(rng.sample(sorted(live), min(len(live), rng.randint(1, 3))))
                for cc in sessions:
                    cc.ok('UID STORE %s +FLAGS.SILENT (\\Deleted)' % imap_util.seqset(sorted(gone)))
                template = 'UID EXPUNGE %s' % imap_util.seqset(sorted(gone))
                live -= gone
                changes = True
            elif c < 0.55:      # (also instead of an expunge while few are left)
                n_new += 1
                template = 'APPEND %s {}' % box
                changes = True
            elif c < 0.8:
                template = 'UID FETCH %s (FLAGS) (CHANGEDSINCE <MS:%d> VANISHED)' % (
                    rng.choice(['1:*', '%d:*' % rng.randint(1, max(given)),
                                uidset(given)]), k)
            else:
                known = ''
                if rng.random() < 0.5:
                    known = ' ' + uidset(given, star=False)
                template = '%s %s (QRESYNC (<UV> <MS:%d>%s))' % (
                    rng.choice(['SELECT', 'EXAMINE']), box, k, known)
            answers = []
            for cc, ms, uv in zip(sessions, mss, validity):
                text = ms.text(template).replace('<UV>', str(uv))
                if template.startswith('APPEND'):
                    a = cc.cmd(text, msgs[n_new % len(msgs)])
                else:
                    a = cc.cmd(text)
                answers.append((text, a))
            if template.startswith('APPEND'):
                given.add(max(given) + 1)
                live.add(max(given))
            na = [norm(ms, t, *a) for ms, (t, a) in zip(mss, answers)]
            if changes:
                for cc, ms in zip(sessions, mss):
                    ms.h.append(highest(cc))
            if template.startswith(('SELECT', 'EXAMINE')) and \
                    not all(a[1].split()[1:2] == [b'OK'] for _, a in answers):
                for cc in sessions:
                    cc.ok('SELECT %s' % box)
            elif template.startswith('EXAMINE'):
                for cc in sessions:
                    cc.ok('SELECT %s' % box)    # changes need a read-write session
            for x in na[0][1]:
                seen[x[0]] = seen.get(x[0], 0) + 1
            if na[0] != na[1]:
                diffs.append((template, answers, na))
        sys.stderr.write('QRESYNC: %d commands compared, %d differences (seed %d); '
                         'responses compared: %s\n'
                         % (i + 1, len(diffs), SEED,
                            ', '.join('%s %d' % kv for kv in sorted(seen.items()))))
        for template, answers, na in diffs[:20]:
            sys.stderr.write('\n>>> %s\ncoffre:  %r\ndovecot: %r\n' % (template, na[0], na[1]))
        self.assertEqual(len(diffs), 0, 'QRESYNC answers differ between coffre and Dovecot')
        self.assertTrue(coffre.alive())


if __name__ == '__main__':
    unittest.main()
