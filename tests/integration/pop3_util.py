"""Helpers for the POP3 integration tests: test messages, filling a user's
INBOX by dropping Maildir files (coffred picks them up when it opens the
store), logins with poplib, and reading back what a session sees."""
import contextlib
import os
import poplib
import pwd
import socket
import time

import harness

PASS = 'pop3 mail pass'


def make_message(i, body_lines=20, line_len=60, dots=True):
    """A CRLF message; some body lines start with '.' (and one is a lone
    '.'), to exercise dot-stuffing."""
    hdr = ('From: sender%d@example.net\r\n'
           'To: someone@example.org\r\n'
           'Subject: test message %d\r\n'
           'Message-ID: <m%d@example.net>\r\n'
           'Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n'
           '\r\n' % (i, i, i))
    out = [hdr.encode()]
    for n in range(body_lines):
        if dots and n % 7 == 3:
            line = '.'
        elif dots and n % 5 == 1:
            line = '..dotted line %d of message %d' % (n, i)
        else:
            line = ('line %d of message %d ' % (n, i)).ljust(line_len, 'x')
        out.append(line.encode() + b'\r\n')
    return b''.join(out)


def account_mail_dir(server, addr):
    """<data_dir>/users/<id> from `coffrectl user show`."""
    rc, out, err = server.ctl('user', 'show', addr)
    if rc != 0:
        raise RuntimeError('user show %s: %s%s' % (addr, out, err))
    for line in out.splitlines():
        if line.startswith('mail:'):
            return line.split(None, 1)[1].strip()
    raise RuntimeError('no mail: line in %r' % out)


_seq = [0]


def drop_messages(server, addr, messages):
    """Writes messages into the user's Maildir new/ as another delivery
    program would, named so that they sort (and are picked up) in order.
    The store must exist (log in once first) and have no session open, so
    that the next open picks the files up."""
    maildir = os.path.join(account_mail_dir(server, addr), 'Maildir')
    pw = pwd.getpwnam(harness.RUN_USER)
    for m in messages:
        _seq[0] += 1
        name = '%010d.P%dQ%08d.testhost' % (int(time.time()), os.getpid(), _seq[0])
        tmp = os.path.join(maildir, 'tmp', name)
        with open(tmp, 'wb') as f:
            f.write(m)
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        os.rename(tmp, os.path.join(maildir, 'new', name))


def login(server, addr, stls=False, password=PASS):
    p = server.pop3_stls() if stls else server.pop3_ssl()
    p.user(addr)
    p.pass_(password)
    return p


def login_retry(server, addr, stls=False, timeout=20.0):
    """Logs in, waiting while an earlier session of addr is still being
    torn down by the server ([IN-USE])."""
    deadline = time.monotonic() + timeout
    while True:
        p = server.pop3_stls() if stls else server.pop3_ssl()
        try:
            p.user(addr)
            p.pass_(PASS)
            return p
        except poplib.error_proto as e:
            harness.close_quietly(p)
            if b'[IN-USE]' not in e.args[0] or time.monotonic() > deadline:
                raise
            time.sleep(0.05)   # the previous session's close is in flight


def quit(p):
    r = p.quit()
    if not r.startswith(b'+OK'):
        raise AssertionError('QUIT: %r' % r)
    return r


@contextlib.contextmanager
def session(server, addr, stls=False, retry=False):
    """A poplib client logged in as addr (with login_retry when retry) for
    the block; QUIT at its end must answer +OK, and the client is closed
    whatever happens."""
    p = login_retry(server, addr, stls) if retry else login(server, addr, stls)
    try:
        yield p
        quit(p)
    finally:
        harness.close_quietly(p)


def wait_messages(server, addr, n, timeout=20.0):
    """Logs in until the INBOX shows n messages: files dropped while the
    store was still open (a session being torn down) are seen only once it
    has been closed and opened again."""
    deadline = time.monotonic() + timeout
    while True:
        p = login_retry(server, addr)
        count = p.stat()[0]
        quit(p)
        if count == n:
            return
        if time.monotonic() > deadline:
            raise AssertionError('%s has %d messages, expected %d' % (addr, count, n))
        time.sleep(0.05)   # the store is closed on the thread pool


def setup_user(server, addr, messages):
    """Creates addr with the given INBOX contents."""
    server.add_user(addr, PASS)
    p = login(server, addr)           # creates the store
    quit(p)
    drop_messages(server, addr, messages)
    wait_messages(server, addr, len(messages))


def uidl_map(p):
    """{number: uidl} of a session."""
    out = {}
    for l in p.uidl()[1]:
        n, u = l.split()
        out[int(n)] = u.decode()
    return out


def retr_bytes(p, n):
    """The message as the client gets it after un-stuffing, CRLF restored."""
    resp, lines, octets = p.retr(n)
    return b''.join(l + b'\r\n' for l in lines)


def raw_login(server, addr, tls=True):
    """A harness Conn on pop3s, logged in."""
    c = server.raw('pop3s', tls=True)
    if not c.line().startswith('+OK'):
        raise AssertionError('no greeting')
    c.send('USER %s\r\nPASS %s\r\n' % (addr, PASS))
    r1, r2 = c.line(), c.line()
    if not (r1.startswith('+OK') and r2.startswith('+OK')):
        raise AssertionError('login: %r %r' % (r1, r2))
    return c


def read_multi(c):
    """A multi-line response after its first line: lines un-stuffed, as
    bytes without CRLF."""
    out = []
    while True:
        l = c.readline()
        if not l:
            raise EOFError('closed inside a multi-line response')
        l = l.rstrip(b'\r\n')
        if l == b'.':
            return out
        if l.startswith(b'..'):
            l = l[1:]
        out.append(l)
