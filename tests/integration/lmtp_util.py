"""Helpers for the LMTP tests: an smtplib.LMTP client that reads the
per-recipient replies after DATA (RFC 2033; smtplib reads only the first),
a raw reply reader, the Maildir files of an account, and coffred's peak
memory."""
import os
import smtplib
import threading

import harness


def lmtp(server, host=None):
    """An smtplib.LMTP client after LHLO (host: a unix socket path)."""
    c = smtplib.LMTP(host or harness.HOST, 0 if host else server.ports['lmtp'],
                     timeout=harness.IO_TIMEOUT)
    code, _ = c.ehlo('client.example.org')
    if code != 250:
        raise AssertionError('LHLO answered %d' % code)
    return c


def send(c, sender, rcpts, msg, mail_options=()):
    """MAIL, RCPT each, DATA: returns (rcpt replies, data replies), the data
    replies one per accepted recipient in RCPT order."""
    code, text = c.mail(sender, list(mail_options))
    if code != 250:
        return None, [(code, text)]
    rcpt = [c.rcpt(r) for r in rcpts]
    accepted = sum(1 for code, _ in rcpt if code == 250)
    if accepted == 0:
        return rcpt, []
    replies = [c.data(msg)]
    for _ in range(accepted - 1):
        replies.append(c.getreply())
    return rcpt, replies


def reply(conn):
    """One (possibly multi-line) reply from a harness.Conn: (code, [texts])."""
    texts = []
    while True:
        l = conn.line()
        if len(l) < 3 or not l[:3].isdigit() or (len(l) > 3 and l[3] not in ' -'):
            raise AssertionError('malformed LMTP reply line %r' % l)
        texts.append(l[4:])
        if len(l) == 3 or l[3] == ' ':
            return int(l[:3]), texts


def user_id(server, addr):
    rc, out, err = server.ctl('user', 'show', addr)
    if rc != 0:
        raise AssertionError('coffrectl user show %s: %s' % (addr, err))
    for line in out.splitlines():
        if line.startswith('id:'):
            return int(line.split()[1])
    raise AssertionError('no id in %r' % out)


def maildir(server, addr, folder=None):
    base = os.path.join(server.data_dir, 'users', str(user_id(server, addr)), 'Maildir')
    return os.path.join(base, '.' + folder) if folder else base


def pending_files(server, addr):
    """Paths of the account's deliveries waiting in the delivery journal
    (<data_dir>/pending/<id>.<name>): acknowledged, taken into INBOX at the
    account's next login."""
    d = os.path.join(server.data_dir, 'pending')
    pre = '%d.' % user_id(server, addr)
    try:
        return sorted(os.path.join(d, n) for n in os.listdir(d) if n.startswith(pre))
    except FileNotFoundError:
        return []


def message_files(server, addr, folder=None):
    """Paths of the messages in new/ and cur/ (not tmp/), sorted by name;
    for INBOX, those waiting in the delivery journal after them."""
    d = maildir(server, addr, folder)
    out = []
    for sub in ('new', 'cur'):
        try:
            out += [os.path.join(d, sub, n) for n in os.listdir(os.path.join(d, sub))]
        except FileNotFoundError:
            pass
    return sorted(out) + ([] if folder else pending_files(server, addr))


def messages(server, addr, folder=None):
    res = []
    for p in message_files(server, addr, folder):
        with open(p, 'rb') as f:
            res.append(f.read())
    return res


def tmp_files(server, addr, folder=None):
    try:
        return os.listdir(os.path.join(maildir(server, addr, folder), 'tmp'))
    except FileNotFoundError:
        return []


def crlf(data):
    """Bare LF -> CRLF, as the store does."""
    return data.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')


def expected(sender, rcpt, body):
    """What the store must hold: the two added headers, then the body."""
    return (b'Return-Path: <' + sender.encode() + b'>\r\nDelivered-To: ' + rcpt.encode()
            + b'\r\n' + crlf(body))


def vm_hwm_kb(pid):
    """Peak resident memory of a process (VmHWM), in kB."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    raise AssertionError('no VmHWM for pid %d' % pid)


def reset_hwm(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open('/proc/%d/clear_refs' % pid, 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def status_kb(pid, field):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise AssertionError('no %s for pid %d' % (field, pid))


class AnonPeak:
    """Samples a process's anonymous resident memory (RssAnon: heap and
    stacks, not the page cache of files it maps) while a block runs; .peak
    is the largest value seen, in kB. VmHWM would also count the mapped
    message file, which the store maps to parse it (page cache, not
    memory the daemon holds)."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()

    def _run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, status_kb(self.pid, 'RssAnon'))
            self.stop.wait(0.002)

    def __enter__(self):
        self.peak = status_kb(self.pid, 'RssAnon')
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()
        self.peak = max(self.peak, status_kb(self.pid, 'RssAnon'))


def has_asan(pid):
    """True when the process runs with AddressSanitizer."""
    with open('/proc/%d/maps' % pid) as f:
        return 'libasan' in f.read()
