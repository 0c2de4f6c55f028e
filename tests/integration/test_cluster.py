"""coffre beyond one machine, with real components on loopback addresses:
a private PostgreSQL cluster holds the account directory (pg_util.py),
three coffred slots serve their own accounts from their own data
directories on 127.0.0.11, .12 and .13, nginx's mail proxy (Debian's
libnginx-mod-mail, nginx_util.py) takes IMAPS and POP3S logins and routes
each to its account's slot through the auth_http answer of slot s1 (with a
ticket as the password and the client's address in a PROXY header), and a
private Postfix routes each recipient to its slot with a pgsql
transport_maps query (the README's "Several slots behind nginx" blocks).

It shows, one test each: logins of 30 accounts reach their slot (IMAPS
and POP3S, LOGIN, AUTHENTICATE PLAIN and USER/PASS, CAPABILITY first as
Thunderbird does); a wrong password is throttled by the real client's
address; a message given to Postfix wakes the account's IDLE session
through nginx; one slot killed costs only its own accounts (temporary
failures, Postfix defers and delivers when it is back); `coffrectl user
move` while mail arrives and a client flags messages; a PostgreSQL outage
during logins; PROXY headers only from proxy_networks.

Every component started here is stopped in tearDownClass, also when a
test or the set-up fails. Skipped (with the reason) only when nginx, its
mail module, Postfix or PostgreSQL is not installed, or not run as root.
"""
import atexit
import base64
import os
import pwd
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import unittest

import harness
import imap_util as I
import lmtp_util as L
import nginx_util
import pg_util
import slot_util
import test_lmtp_postfix as P
from harness import imap_login_cmd

SLOTS = (('s1', '127.0.0.11'), ('s2', '127.0.0.12'), ('s3', '127.0.0.13'))
NACCOUNTS = 30
DOMAIN = 'example.org'
NGINX_HOP = '127.0.0.1'      # nginx's source address towards the slots
PROXY_NETWORKS = '127.0.0.1/32'
CLIENT = '127.0.0.3'         # a client whose address only PROXY headers carry
GUESSER = '127.0.0.2'        # a client that gets passwords wrong
NEIGHBOUR = '127.0.0.4'      # a client that does not
MTA_HOP = '127.0.0.5'        # Postfix's source address towards the slots
WAIT = 60.0                  # generous: Postfix retries, slow machines, ASan
SLOT_CHECK_TTL = 2.0         # auth_http_slot_check_ttl's default: a slot's check reused so long
TEMP_STATUS = 'Temporary server problem, try again later'
README = P.README


def address(i):
    return 'user%02d@%s' % (i, DOMAIN)


def password(i):
    return 'pw-user%02d-not-guessable' % i


def slot_of(i):
    return SLOTS[(i - 1) % len(SLOTS)][0]


def readme_block(marker):
    """The fenced block after <!-- marker --> in README.md."""
    with open(README) as f:
        text = f.read()
    m = re.search(r'<!-- %s -->\s*```[a-z]*\n(.*?)```' % re.escape(marker), text, re.S)
    if not m:
        raise AssertionError('README.md has no %s block' % marker)
    return m.group(1)


def b64(s):
    return base64.b64encode(s.encode()).decode()


# ---- the answers a client gets -------------------------------------------

def classify(line):
    """'ok', 'invalid' (the password called wrong), 'temp' (come back
    later), 'closed' (no answer at all) or 'other' for a login's answer as
    nginx passes it on: coffre's Auth-Status text, nginx's own error when a
    slot cannot be reached, or the slot's tagged answer."""
    if not line:
        return 'closed'
    up = line.upper()
    if re.match(r'^(\S+ OK|\+OK)', line):
        return 'ok'
    if 'INVALID LOGIN OR PASSWORD' in up or 'AUTHENTICATIONFAILED' in up or \
            '[AUTH]' in up:
        return 'invalid'
    if 'TEMPORARY' in up or '[UNAVAILABLE]' in up or '[SYS/TEMP]' in up or \
            'INTERNAL SERVER ERROR' in up:
        return 'temp'
    return 'other'


def imap_answer(c, tag):
    """The tagged answer to tag; when the connection closes first, the
    last untagged BAD or BYE (nginx's own error) or None."""
    last = None
    tb = tag.encode() + b' '
    while True:
        try:
            r = c.line()
        except (OSError, EOFError, I.ImapError):
            return last
        if r.startswith(tb):
            return r.decode('utf-8', 'replace')
        if r.startswith(b'* BAD') or r.startswith(b'* BYE') or r.startswith(b'* NO'):
            last = r.decode('utf-8', 'replace')


def imap_login(proxy, user, pw, mech='LOGIN', source=CLIENT):
    """A Thunderbird-like IMAPS login through nginx: greeting, CAPABILITY,
    then LOGIN or AUTHENTICATE PLAIN (answering the continuation, no
    SASL-IR). Returns (Imap or None, answer line or None)."""
    try:
        conn = proxy.connect('imaps', source=source)
    except OSError:
        return None, None
    c = I.Imap(conn, greeting=False)
    try:
        g = c.read_response()
        if not g.startswith(b'* OK'):
            c.close()
            return None, g.decode('utf-8', 'replace') or None
        u, t = c.cmd('CAPABILITY')
        caps = b' '.join(u).upper()
        if b'AUTH=PLAIN' not in caps or b'IMAP4REV1' not in caps:
            raise AssertionError('nginx CAPABILITY: %r' % u)
        tag = c.tag()
        if mech == 'LOGIN':
            c.send('%s %s\r\n' % (tag, imap_login_cmd(user, pw)))
        else:
            c.send('%s AUTHENTICATE PLAIN\r\n' % tag)
            r = c.line()
            if not r.startswith(b'+'):
                raise AssertionError('AUTHENTICATE PLAIN: %r' % r)
            c.send(b64('\0%s\0%s' % (user, pw)) + '\r\n')
        line = imap_answer(c, tag)
        if classify(line) == 'ok':
            return c, line
        c.close()
        return None, line
    except (OSError, EOFError):
        c.close()
        return None, None


def pop3_login(proxy, user, pw, mech='USER', source=CLIENT):
    """A Thunderbird-like POP3S login through nginx: greeting, CAPA, then
    AUTH PLAIN or USER/PASS. Returns (Conn or None, answer line or None)."""
    try:
        c = proxy.connect('pop3s', source=source)
    except OSError:
        return None, None
    try:
        if not c.line().startswith('+OK'):
            c.close()
            return None, None
        c.send('CAPA\r\n')
        capa = []
        first = c.line()
        if not first.startswith('+OK'):
            raise AssertionError('CAPA: %r' % first)
        while True:
            l = c.line()
            if l == '.':
                break
            capa.append(l.upper())
        if not any(l.startswith('SASL') and 'PLAIN' in l for l in capa):
            raise AssertionError('nginx CAPA: %r' % capa)
        if mech == 'USER':
            c.send('USER %s\r\n' % user)
            r = c.line()
            if r.startswith('+OK'):
                c.send('PASS %s\r\n' % pw)
                r = c.line()
        else:
            c.send('AUTH PLAIN\r\n')
            r = c.line()
            if r.startswith('+'):
                c.send(b64('\0%s\0%s' % (user, pw)) + '\r\n')
                r = c.line()
        if classify(r) == 'ok':
            return c, r
        c.close()
        return None, r
    except (OSError, EOFError):
        c.close()
        return None, None


# ---- the recording relay in front of auth_http ----------------------------

class AuthHttpRecorder:
    """A TCP relay between nginx and coffred's auth_http listener that keeps
    each request's and answer's header fields, so that the test can read
    what coffre answered (Auth-Status, Auth-Wait, Auth-Server) for which
    Client-IP. nginx sends one HTTP/1.0 request per connection."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((NGINX_HOP, harness.free_port()))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.exchanges = []     # (request fields, status line, answer fields)
        self.stopping = False
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    @staticmethod
    def fields(head):
        lines = head.decode('latin-1').split('\r\n')
        out = {}
        for l in lines[1:]:
            if ':' in l:
                k, v = l.split(':', 1)
                out[k.strip().lower()] = v.strip()
        return lines[0], out

    @staticmethod
    def read_message(s):
        data = b''
        while b'\r\n\r\n' not in data:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b'\r\n\r\n')
        n = int(AuthHttpRecorder.fields(head)[1].get('content-length', '0') or 0)
        while len(body) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b'\r\n\r\n' + body

    def accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.relay, args=(c,), daemon=True).start()

    def relay(self, c):
        try:
            c.settimeout(60)
            req = self.read_message(c)
            u = socket.create_connection(self.upstream, timeout=60,
                                         source_address=(NGINX_HOP, 0))
            try:
                u.sendall(req)
                ans = self.read_message(u)
            finally:
                u.close()
            c.sendall(ans)
            _, qf = self.fields(req.partition(b'\r\n\r\n')[0])
            status, af = self.fields(ans.partition(b'\r\n\r\n')[0])
            with self.lock:
                self.exchanges.append((qf, status, af))
        except OSError:
            pass
        finally:
            c.close()

    def answers(self, client_ip=None, user=None):
        with self.lock:
            return [(q, s, a) for q, s, a in self.exchanges
                    if (client_ip is None or q.get('client-ip') == client_ip)
                    and (user is None or q.get('auth-user', '').lower() == user)]

    def stop(self):
        self.stopping = True
        self.sock.close()


# ---- the slots --------------------------------------------------------------

class Slot(harness.Server):
    """A coffred of one slot, listening on its own loopback address: IMAP,
    POP3 and LMTP in cleartext for the proxy hop (from proxy_networks
    only), IMAPS and POP3S for direct use; s1 also serves auth_http."""

    def __init__(self, name, host, common, http=False):
        self.host = host
        conf = dict(common)
        conf['slot_name'] = name
        for s in harness.SERVICES:
            conf[s + '_listen'] = (lambda svc: lambda p: '%s:%d' % (host, p[svc]))(s)
        if http:
            self.http_port = harness.free_port()
            conf['http_listen'] = '%s:%d' % (host, self.http_port)
        super().__init__(conf, name=name)

    def wait_ports(self, timeout=harness.START_TIMEOUT):
        deadline = time.monotonic() + timeout
        waiting = dict(self.ports)
        while waiting:
            if self.proc.poll() is not None:
                raise RuntimeError('%s exited with %d during start-up\n%s'
                                   % (self.name, self.proc.returncode, self.log_tail()))
            for svc, port in list(waiting.items()):
                try:
                    socket.create_connection((self.host, port), timeout=1).close()
                    del waiting[svc]
                except OSError:
                    pass
            if waiting:
                if time.monotonic() > deadline:
                    raise RuntimeError('%s did not listen on %s\n%s'
                                       % (self.name, waiting, self.log_tail()))
                time.sleep(0.05)   # polling a port that is not open yet

    def raw(self, service, tls=False, ctx=None, source=None, timeout=harness.IO_TIMEOUT):
        sock = socket.create_connection((self.host, self.ports[service]), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        if tls:
            sock = (ctx or self.ctx()).wrap_socket(sock, server_hostname='localhost')
        return harness.Conn(sock, timeout)

    def lmtp(self):
        c = smtplib.LMTP(self.host, self.ports['lmtp'], timeout=harness.IO_TIMEOUT)
        code, _ = c.ehlo('client.example.org')
        if code != 250:
            raise AssertionError('LHLO answered %d' % code)
        return c

    def logins(self, user, result='ok'):
        """The audit lines of this slot's log for user's logins with result."""
        return [l for l in self.log().splitlines()
                if 'audit: event=login ' in l and ' user=%s ' % user in l
                and ' result=%s' % result in l]

    def who(self):
        rc, out, err = self.ctl('who')
        if rc not in (0, 3):
            raise AssertionError('coffrectl who on %s: %d %s' % (self.name, rc, err))
        return out


def postfix_table(pg, block):
    """A README pgsql table for Postfix, pointed at the private PostgreSQL
    (its role `postfix`, trust authentication on loopback)."""
    out = []
    for line in block.splitlines():
        key = line.split('=', 1)[0].strip()
        if key == 'hosts':
            line = 'hosts = inet:%s:%d' % (pg.host, pg.port)
        elif key == 'password':
            continue
        elif key == 'dbname':
            line = 'dbname = %s' % pg_util.DB
        out.append(line)
    return '\n'.join(out) + '\n'


class ClusterPostfix(P.PrivatePostfix):
    """test_lmtp_postfix.py's private Postfix, with the README's cluster
    main.cf lines (transport_maps and virtual_mailbox_maps in PostgreSQL)
    instead of the single-server ones, and quick retries."""

    def __init__(self, tmp, pg):
        super().__init__(tmp, 24)
        main_cf = os.path.join(self.conf, 'main.cf')
        with open(main_cf) as f:
            text = f.read()
        text = text.split(P.readme_main_cf())[0]
        tables = {}
        for name in ('coffre-transport.cf', 'coffre-mailboxes.cf'):
            path = os.path.join(self.conf, name)
            with open(path, 'w') as f:
                f.write(postfix_table(pg, readme_block('postfix-' + name)))
            os.chmod(path, 0o644)
            tables[name] = path
        lines = readme_block('postfix-cluster-main.cf')
        for name, path in tables.items():
            lines = lines.replace('/etc/postfix/' + name, path)
        text += lines + ('# tests: Postfix as on a host of its own, outside proxy_networks\n'
                         'lmtp_bind_address = %s\n'
                         '# tests: retries within seconds\n'
                         'queue_run_delay = 1s\n'
                         'minimal_backoff_time = 1s\n'
                         'maximal_backoff_time = 2s\n'
                         'lmtp_connect_timeout = 5s\n' % MTA_HOP)
        with open(main_cf, 'w') as f:
            f.write(text)

    def maillog(self):
        return harness.read_log(os.path.join(self.dir, 'maillog'))

    def queue(self):
        r = subprocess.run(['postqueue', '-c', self.conf, '-p'], capture_output=True, text=True,
                           timeout=60)
        return r.stdout + r.stderr

    def flush(self):
        subprocess.run(['postqueue', '-c', self.conf, '-f'], capture_output=True, timeout=60)

    def flush_until(self, pred, timeout):
        """Waits for pred while asking Postfix every 5 s to try its
        deferred mail again (a flush also unthrottles a destination it set
        aside after failures), rather than waiting on its backoff while
        the machine is busy; returns pred's last value."""
        last = [float('-inf')]

        def check():
            if time.monotonic() - last[0] >= 5:
                self.flush()
                last[0] = time.monotonic()
            return pred()
        return harness.wait_for(check, timeout)

    def send(self, rcpt, subject, message_id, extra=''):
        msg = ('From: Bob <bob@remote.example>\r\nTo: %s\r\nSubject: %s\r\n'
               'Message-ID: <%s>\r\n%s\r\nHello %s.\r\n' % (rcpt, subject, message_id, extra,
                                                            rcpt)).encode()
        s = smtplib.SMTP(harness.HOST, self.port, timeout=harness.IO_TIMEOUT)
        try:
            s.ehlo('client.example.net')
            refused = s.sendmail('bob@remote.example', [rcpt], msg)
        finally:
            s.quit()
        if refused:
            raise AssertionError('Postfix refused %s: %r' % (rcpt, refused))


def parallel_logins(proxy, accounts, source):
    """IMAP logins of accounts through nginx, all at once from source; their
    answers in the order of accounts."""
    out = [None] * len(accounts)

    def one(k):
        c, out[k] = imap_login(proxy, address(accounts[k]), password(accounts[k]),
                               source=source)
        if c:
            c.logout()

    th = [threading.Thread(target=one, args=(k,)) for k in range(len(accounts))]
    for t in th:
        t.start()
    for t in th:
        t.join(120)
    return out


def throttled(slot):
    """coffre_login_throttled_total of a slot (coffrectl stats): attempts
    the failure throttle held before their check."""
    rc, out, err = slot.ctl('stats')
    if rc != 0:
        raise AssertionError('coffrectl stats: %d %s' % (rc, err))
    m = re.search(r'^coffre_login_throttled_total (\d+)', out, re.M)
    if not m:
        raise AssertionError('no coffre_login_throttled_total in %r' % out[-2000:])
    return int(m.group(1))


def welcome(i):
    """The message each account gets from its own slot at set-up: its
    X-Slot field says which slot took it."""
    return ('From: setup@%s\r\nTo: %s\r\nSubject: welcome %d\r\nX-Slot: %s\r\n'
            'Message-ID: <welcome-%d@test>\r\n\r\nwelcome\r\n'
            % (DOMAIN, address(i), i, slot_of(i), i)).encode()


class Cluster(unittest.TestCase):
    """All components, started once for the class; each test leaves them
    running as it found them."""

    @classmethod
    def setUpClass(cls):
        why = nginx_util.missing() or pg_util.missing()
        if not why and not os.access(P.POSTFIX, os.X_OK):
            why = 'postfix is not installed (scripts/install-deps)'
        if not why and not os.path.exists('/usr/lib/postfix/postfix-pgsql.so'):
            why = 'postfix-pgsql is not installed (scripts/install-deps)'
        if not why and os.getuid() != 0:
            why = 'nginx, Postfix and three slots on their own addresses need root'
        if why:
            raise unittest.SkipTest(why)
        harness.require_binaries()
        cls.slots, cls.pg, cls.postfix, cls.proxy, cls.recorder = {}, None, None, None, None
        cls.stopped = False
        # nginx and Postfix outlive this process unless stopped: at exit,
        # and when meson's timeout sends SIGTERM, too
        atexit.register(cls.stop_all)
        signal.signal(signal.SIGTERM, lambda *a: (cls.stop_all(), os._exit(128 + 15)))
        try:
            cls.start_all()
        except BaseException:
            cls.dump_logs()
            cls.stop_all()
            raise

    @classmethod
    def start_all(cls):
        import tempfile
        cls.tmp = tempfile.mkdtemp(prefix='coffre-it-cluster-')
        os.chmod(cls.tmp, 0o755)
        cls.pg = pg_util.start(cls.tmp)
        # the ticket key every slot and the routing service share
        key = os.path.join(cls.tmp, 'ticket.key')
        with open(key, 'wb') as f:
            f.write(os.urandom(32))
        # read by coffred as root at start and as run_user at reload
        os.chown(key, 0, pwd.getpwnam(harness.RUN_USER).pw_gid)
        os.chmod(key, 0o640)
        common = {
            'accounts_backend': 'postgresql',
            'accounts_dsn': cls.pg.dsn,
            'proxy_networks': PROXY_NETWORKS,
            'ticket_key_file': key,
            # bounded like harness.DEFAULT_CONF's; the same in every slot
            'login_failure_delay': '1s',
            'login_failure_delay_max': '4s',
        }
        for n, (name, host) in enumerate(SLOTS):
            cls.slots[name] = Slot(name, host, common, http=(n == 0))
        for s in cls.slots.values():
            s.start()
        s1 = cls.slots['s1']
        for name, s in cls.slots.items():
            slot_util.slot_add(s1, name, s.host, s.ports, s.data_dir)
        for i in range(1, NACCOUNTS + 1):
            cls.slots[slot_of(i)].add_user(address(i), password(i))
        # the accounts of the PostgreSQL outage test: never logged in before
        for i in range(NACCOUNTS + 1, NACCOUNTS + 7):
            cls.slots[slot_of(i)].add_user(address(i), password(i))
        # each account's first message, from its own slot
        for i in range(1, NACCOUNTS + 1):
            c = cls.slots[slot_of(i)].lmtp()
            try:
                rcpt, data = L.send(c, 'setup@%s' % DOMAIN, [address(i)], welcome(i))
                if [r[0] for r in rcpt] != [250] or [r[0] for r in data] != [250]:
                    raise RuntimeError('welcome to %s: %r %r' % (address(i), rcpt, data))
            finally:
                c.quit()
        cls.recorder = AuthHttpRecorder((s1.host, s1.http_port))
        cls.proxy = nginx_util.MailProxy(cls.tmp, s1.cert, s1.key,
                                         '%s:%d/auth' % (NGINX_HOP, cls.recorder.port))
        cls.proxy.start()
        # Postfix's role, with the README's grants
        cls.pg.psql('CREATE ROLE postfix LOGIN')
        with open(README) as f:
            grants = re.findall(r'`(GRANT [^`]*;)`', f.read())
        for sql in grants:
            cls.pg.psql(sql)
        cls.postfix = ClusterPostfix(cls.tmp, cls.pg)
        cls.postfix.start()

    @classmethod
    def stop_all(cls):
        if cls.stopped:
            return []
        cls.stopped = True
        errors = []
        for what, fn in (('nginx', lambda: cls.proxy and cls.proxy.stop()),
                         ('postfix', lambda: cls.postfix and cls.postfix.stop()),
                         ('recorder', lambda: cls.recorder and cls.recorder.stop())):
            try:
                fn()
            except Exception as e:   # go on stopping the others
                errors.append('%s: %r' % (what, e))
        for s in cls.slots.values():
            try:
                s.stop()
            except Exception as e:
                errors.append('%s: %r' % (s.name, e))
        try:
            if cls.pg:
                cls.pg.cleanup()
        except Exception as e:
            errors.append('postgresql: %r' % e)
        for s in cls.slots.values():
            s.cleanup()
        if getattr(cls, 'tmp', None):
            if os.environ.get('KEEP_TMP') == '1':
                sys.stderr.write('KEEP_TMP: %s kept\n' % cls.tmp)
            else:
                import shutil
                shutil.rmtree(cls.tmp, ignore_errors=True)
        return errors

    @classmethod
    def dump_logs(cls):
        for s in cls.slots.values():
            sys.stderr.write(s.log_tail(40) + '\n')
        if cls.proxy:
            sys.stderr.write(cls.proxy.log_tail() + '\n')
        if cls.postfix:
            sys.stderr.write('---- postfix ----\n%s\n' % cls.postfix.log())

    @classmethod
    def tearDownClass(cls):
        dead = [s.name for s in cls.slots.values() if not s.alive()]
        reports = {s.name: s.sanitizer_reports() for s in cls.slots.values()}
        leaked = {s.name: s.leaked_secrets() for s in cls.slots.values()}
        if os.environ.get('COFFRE_TEST_VERBOSE') == '1' or dead:
            cls.dump_logs()
        rcs = {s.name: s.stop() for s in cls.slots.values()}
        errors = cls.stop_all()
        if dead:
            raise AssertionError('slots died: %r' % dead)
        bad = {k: v for k, v in rcs.items() if v != 0}
        if bad:
            raise AssertionError('slots did not exit 0 on SIGTERM: %r' % bad)
        if any(reports.values()):
            raise AssertionError('sanitizer reports: %r' % reports)
        if any(leaked.values()):
            raise AssertionError('passwords in a slot log: %r' % leaked)
        if errors:
            raise AssertionError('stopping: %r' % errors)

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        r = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            self.dump_logs()
        return r

    # -- helpers ------------------------------------------------------------

    def slot(self, name):
        return self.slots[name]

    def wait_login(self, i, timeout=WAIT, source=CLIENT):
        """Logs account i in through nginx, retrying temporary failures
        until timeout; returns the Imap client."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            c, line = imap_login(self.proxy, address(i), password(i), source=source)
            if c:
                return c
            self.assertNotEqual(classify(line), 'invalid', line)
            last = line
            time.sleep(0.2)   # the answer said: try again later
        self.fail('no login of %s within %ds; last answer %r' % (address(i), timeout, last))

    def inbox(self, c):
        """{Message-ID: (uid, flags)} of INBOX, and its UIDVALIDITY."""
        info = c.select()
        out = {}
        if info['exists']:
            for _, (it, raw) in c.fetch('1:*', '(UID FLAGS BODY.PEEK[HEADER.FIELDS '
                                        '(MESSAGE-ID)])').items():
                hdr = [v for k, v in it.items() if k.startswith('BODY[')][0]
                m = re.search(rb'<([^>]+)>', hdr)
                mid = m.group(1).decode()
                self.assertNotIn(mid, out, 'message %s twice in INBOX' % mid)
                out[mid] = (int(it['UID']), set(f.decode() if isinstance(f, bytes) else f
                                                 for f in it['FLAGS']))
        return out, info['uidvalidity']

    # -- the tests ----------------------------------------------------------

    def test_1_logins_reach_their_slot(self):
        """30 accounts, IMAPS and POP3S through nginx, each mechanism in
        turn: every session is served by the account's slot (its welcome
        message says X-Slot, its slot's audit log has the login with the
        client's address carried by PROXY, the other slots have none)."""
        for i in range(1, NACCOUNTS + 1):
            mech = ('LOGIN', 'PLAIN')[i % 2]
            c, line = imap_login(self.proxy, address(i), password(i), mech=mech)
            self.assertIsNotNone(c, 'IMAP %s %s: %r' % (mech, address(i), line))
            try:
                info = c.select()
                self.assertEqual(info['exists'], 1, address(i))
                f = c.fetch('1', '(BODY.PEEK[HEADER.FIELDS (X-SLOT)])')
                hdr = [v for k, v in f[1][0].items() if k.startswith('BODY[')][0]
                self.assertEqual(hdr.strip(), b'X-Slot: ' + slot_of(i).encode(), address(i))
            finally:
                c.logout()
            pmech = ('USER', 'PLAIN')[i % 2]
            p, line = pop3_login(self.proxy, address(i), password(i), mech=pmech)
            self.assertIsNotNone(p, 'POP3 %s %s: %r' % (pmech, address(i), line))
            try:
                p.send('STAT\r\n')
                self.assertTrue(p.line().startswith('+OK 1 '), address(i))
                p.send('RETR 1\r\n')
                self.assertTrue(p.line().startswith('+OK'))
                body = []
                while True:
                    l = p.line()
                    if l == '.':
                        break
                    body.append(l)
                self.assertIn('X-Slot: %s' % slot_of(i), body)
                p.send('QUIT\r\n')
                self.assertTrue(p.line().startswith('+OK'))
            finally:
                p.close()
        for i in range(1, NACCOUNTS + 1):
            for name, s in self.slots.items():
                lines = [l for l in s.logins(address(i)) if 'remote=%s:' % CLIENT in l]
                protos = sorted(set(re.search(r' proto=(\w+)', l).group(1) for l in lines))
                if name == slot_of(i):
                    self.assertEqual(protos, ['imap', 'pop3'], '%s on %s' % (address(i), name))
                else:
                    self.assertEqual(protos, [], '%s logged in on %s' % (address(i), name))
        # the routing answers named each account's slot
        hosts = dict(SLOTS)
        for i in range(1, NACCOUNTS + 1):
            ok = [a for q, st, a in self.recorder.answers(CLIENT, address(i))
                  if a.get('auth-status') == 'OK']
            self.assertTrue(ok, address(i))
            for a in ok:
                self.assertEqual(a.get('auth-server'), hosts[slot_of(i)], address(i))
                # the slot gets a ticket, never the password
                self.assertNotEqual(a.get('auth-pass'), password(i))

    def test_2_wrong_password_throttled_by_real_client_address(self):
        """Wrong passwords from GUESSER through nginx: refused ('Invalid
        login or password', with an Auth-Wait for nginx), counted by s1's
        auth_http against GUESSER's address, not nginx's. Then a right
        password from NEIGHBOUR is answered at once (no Auth-Wait, not held
        by the throttle), while one from GUESSER, for an account that never
        logged in from there, is held by the throttle before its check
        (coffre_login_throttled_total), and still logs in."""
        s1 = self.slot('s1')
        victim = 7
        for n in range(3):
            c, line = imap_login(self.proxy, address(victim), 'wrong guess %d' % n,
                                 source=GUESSER, mech=('LOGIN', 'PLAIN')[n % 2])
            self.assertIsNone(c)
            self.assertEqual(classify(line), 'invalid', line)
        p, line = pop3_login(self.proxy, address(victim), 'wrong guess pop', source=GUESSER)
        self.assertIsNone(p)
        self.assertEqual(classify(line), 'invalid', line)
        bad = [a for q, st, a in self.recorder.answers(GUESSER)]
        self.assertEqual(len(bad), 4, bad)
        for a in bad:
            self.assertEqual(a.get('auth-status'), 'Invalid login or password', a)
            self.assertGreaterEqual(int(a.get('auth-wait', '0')), 1,
                                    'a wrong password must make nginx wait: %r' % a)
        log = s1.log()
        self.assertEqual(len(re.findall(r'auth failed user=%s ip=%s\b' % (
            re.escape(address(victim)), re.escape(GUESSER)), log)), 4, log[-3000:])
        self.assertNotRegex(log, r'auth failed user=\S+ ip=%s\b' % re.escape(NGINX_HOP))

        # two logins at once from each address, right passwords, accounts
        # that never logged in from either: the throttle holds GUESSER's
        # second before its check (its address has failures), not
        # NEIGHBOUR's
        held = throttled(s1)
        lines = parallel_logins(self.proxy, [8, 11], NEIGHBOUR)
        self.assertEqual([classify(l) for l in lines], ['ok', 'ok'], lines)
        good = self.recorder.answers(NEIGHBOUR)
        self.assertEqual([a.get('auth-status') for q, st, a in good], ['OK', 'OK'])
        self.assertFalse([a for q, st, a in good if 'auth-wait' in a], good)
        self.assertEqual(throttled(s1), held, 'NEIGHBOUR was held by the throttle')

        lines = parallel_logins(self.proxy, [9, 12], GUESSER)
        self.assertEqual([classify(l) for l in lines], ['ok', 'ok'], lines)
        self.assertGreater(throttled(s1), held, 'GUESSER was not held by the throttle')

    def test_3_postfix_delivery_wakes_idle_through_nginx(self):
        """A message given to Postfix reaches the account's slot (pgsql
        transport_maps) and its IDLE session through nginx."""
        i = 2
        c = self.wait_login(i)
        try:
            n = c.select()['exists']
            c.idle()
            t0 = time.monotonic()
            self.postfix.send(address(i), 'to the idle session', 'idle-1@test')
            t_sent = time.monotonic()
            r = c.line_until(re.compile(rb'^\* \d+ EXISTS'), timeout=WAIT)
            t1 = time.monotonic()
            self.assertEqual(r, b'* %d EXISTS' % (n + 1))
            c.done()
            f = c.fetch(str(n + 1), '(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])')
            hdr = [v for k, v in f[n + 1][0].items() if k.startswith('BODY[')][0]
            self.assertIn(b'<idle-1@test>', hdr)
        finally:
            c.logout()
        sys.stderr.write('IDLE latency: SMTP to Postfix done to * EXISTS through nginx: '
                         '%.0f ms (SMTP dialogue %.0f ms)\n'
                         % ((t1 - t_sent) * 1000, (t_sent - t0) * 1000))
        files = L.messages(self.slot(slot_of(i)), address(i))
        self.assertEqual(sum(1 for m in files if b'<idle-1@test>' in m), 1)
        for name, s in self.slots.items():
            if name != slot_of(i):
                self.assertFalse(os.path.exists(os.path.join(
                    s.data_dir, 'users', str(L.user_id(s, address(i))))) and any(
                    b'<idle-1@test>' in m for m in L.messages(s, address(i))))

    def test_4_one_slot_lost(self):
        """s3 killed: its accounts get temporary failures only, the others
        log in and receive mail; Postfix defers s3's mail and delivers it
        once s3 is back and the queue is flushed."""
        s3 = self.slot('s3')
        s3.kill()
        try:
            mine = [i for i in range(1, 13) if slot_of(i) == 's3']
            others = [i for i in range(1, 13) if slot_of(i) != 's3']
            # auth_http reuses s3's last check (up) for SLOT_CHECK_TTL
            time.sleep(SLOT_CHECK_TTL + 0.5)
            # auth_http finds s3's port closed and answers a temporary
            # failure, which nginx passes on after Auth-Wait (3 s): the
            # logins run side by side
            answers = {}

            def login(i):
                c, iline = imap_login(self.proxy, address(i), password(i))
                p, pline = pop3_login(self.proxy, address(i), password(i))
                answers[i] = (c, iline, p, pline)
            threads = [threading.Thread(target=login, args=(i,)) for i in mine]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for i in mine:
                c, iline, p, pline = answers[i]
                self.assertIsNone(c)
                self.assertIsNone(p)
                # nginx's own "internal server error" no more, and nothing
                # says the password is wrong
                self.assertRegex(iline or '', r'^\S+ NO %s$' % re.escape(TEMP_STATUS),
                                 'IMAP %s' % address(i))
                self.assertEqual(pline, '-ERR %s' % TEMP_STATUS, 'POP3 %s' % address(i))
                for line in (iline, pline):
                    self.assertEqual(classify(line), 'temp', line)
                    self.assertNotIn('INTERNAL SERVER ERROR', line.upper())
            self.assertRegex(self.slot('s1').log(),
                             r'auth_http user=\S+: slot s3 at 127\.0\.0\.13:\d+ does not '
                             r'accept connections')
            for i in others:
                c, line = imap_login(self.proxy, address(i), password(i))
                self.assertIsNotNone(c, '%s: %r' % (address(i), line))
                c.logout()
            self.postfix.send(address(3), 'while s3 is down', 'down-3@test')
            self.postfix.send(address(1), 'while s3 is down', 'down-1@test')
            # s1's mail goes through; s3's waits in the queue, deferred
            self.assertTrue(harness.wait_for(
                lambda: any(b'<down-1@test>' in m for m in L.messages(
                    self.slot('s1'), address(1))), WAIT), self.postfix.log())
            self.assertTrue(harness.wait_for(
                lambda: address(3) in self.postfix.queue() and
                'refused' in self.postfix.queue(), WAIT), self.postfix.queue())
            self.assertIn('status=deferred', self.postfix.maillog())
            self.assertFalse(any(b'<down-3@test>' in m for m in L.messages(s3, address(3))))
        finally:
            if not s3.alive():
                s3.start()
        self.assertTrue(self.postfix.flush_until(
            lambda: any(b'<down-3@test>' in m for m in L.messages(s3, address(3))), WAIT),
            self.postfix.queue() + self.postfix.log())
        c = self.wait_login(3)
        try:
            mids = self.inbox(c)[0]
            self.assertIn('down-3@test', mids)
        finally:
            c.logout()

    def test_5_user_move_under_load(self):
        """coffrectl user move from s1 to s2 while Postfix delivers to the
        account and a client through nginx flags its messages: nothing
        lost or duplicated, UIDVALIDITY and UIDs unchanged, every flag
        acknowledged is kept, and the client's next login lands on s2."""
        i = 10     # on s1
        self.assertEqual(slot_of(i), 's1')
        s1, s2 = self.slot('s1'), self.slot('s2')
        seed = 20
        c = s1.lmtp()
        try:
            for k in range(seed):
                msg = ('From: a@remote.example\r\nSubject: seed %d\r\nMessage-ID: <seed-%d@test>'
                       '\r\n\r\nseed\r\n' % (k, k)).encode()
                rcpt, data = L.send(c, 'a@remote.example', [address(i)], msg)
                self.assertEqual([d[0] for d in data], [250])
        finally:
            c.quit()
        c = self.wait_login(i)
        before, uidvalidity = self.inbox(c)
        c.logout()
        self.assertEqual(len(before), seed + 1)

        stop = threading.Event()
        flagged = set()        # UIDs whose STORE was acknowledged
        logins = []            # answers of the flagger's logins
        errors = []
        uids = sorted(u for u, _ in before.values())

        def flagger():
            k = 0
            while not stop.is_set():
                cl, line = imap_login(self.proxy, address(i), password(i))
                logins.append(line)
                if cl is None:
                    if classify(line) not in ('temp',):
                        errors.append('login: %r' % line)
                        return
                    time.sleep(0.1)   # moving: try again later
                    continue
                try:
                    cl.select()
                    while not stop.is_set():
                        uid = uids[k % len(uids)]
                        st, t, _ = cl.status_of('UID STORE %d +FLAGS (\\Flagged)' % uid)
                        if st != 'OK':
                            break
                        flagged.add(uid)
                        k += 1
                except (OSError, EOFError, I.ImapError):
                    pass          # ended by the move: log in again
                finally:
                    cl.close()

        sent = []              # Message-IDs acknowledged (Postfix or the slot)
        lmtp_answers = []      # (code, slot) of the direct deliveries

        def via_postfix():
            for k in range(20):
                if stop.is_set():
                    return
                try:
                    self.postfix.send(address(i), 'during the move %d' % k, 'pf-%d@test' % k)
                    sent.append('pf-%d@test' % k)
                except Exception as e:
                    errors.append('send: %r' % e)
                time.sleep(0.25)   # spread over the move

        def via_lmtp():
            """Delivers straight to the slot the directory names, as
            Postfix does, again after a 451 (moving) or a 550 (moved)."""
            for k in range(20):
                mid = 'lmtp-%d@test' % k
                msg = ('From: a@remote.example\r\nSubject: lmtp %d\r\nMessage-ID: <%s>\r\n'
                       '\r\nduring the move\r\n' % (k, mid)).encode()
                deadline = time.monotonic() + WAIT
                while True:
                    if time.monotonic() > deadline:
                        errors.append('%s never delivered: %r' % (mid, lmtp_answers[-5:]))
                        return
                    name = self.pg.psql("SELECT slot FROM accounts WHERE address = '%s'"
                                        % address(i))[0][0]
                    try:
                        c = self.slot(name).lmtp()
                        try:
                            rcpt, data = L.send(c, 'a@remote.example', [address(i)], msg)
                        finally:
                            c.close()
                    except (OSError, smtplib.SMTPException) as e:
                        errors.append('lmtp to %s: %r' % (name, e))
                        return
                    code = (data or rcpt)[0][0]
                    lmtp_answers.append((code, name))
                    if code == 250:
                        sent.append(mid)
                        break
                    if code not in (451, 550):
                        errors.append('%s: %r %r' % (mid, rcpt, data))
                        return
                    time.sleep(0.05)   # moving (451) or moved (550): ask again
                time.sleep(0.1)

        th = [threading.Thread(target=flagger), threading.Thread(target=via_postfix),
              threading.Thread(target=via_lmtp)]
        for t in th:
            t.start()
        try:
            self.assertTrue(harness.wait_for(lambda: len(flagged) >= 3 and len(sent) >= 3,
                                             WAIT), (logins[-3:], errors))
            rc, out, err = s1.ctl('user', 'move', address(i), '--to', 's2', timeout=120)
            self.assertEqual(rc, 0, out + err)
            moved_at = len(flagged)
            # the flagger goes on, through nginx, on s2
            self.assertTrue(harness.wait_for(lambda: len(flagged) >= moved_at + 5 and
                                             s2.logins(address(i)), WAIT),
                            (logins[-3:], errors))
        finally:
            th[1].join(60)
            th[2].join(WAIT + 10)
            stop.set()
            th[0].join(60)
        self.assertEqual(errors, [])
        self.assertEqual(len(sent), 40)
        sys.stderr.write('user move: direct LMTP answers during the run: %s; flags stored: %d; '
                         'Postfix deferrals: %d\n' % (
                             ', '.join('%d from %s x%d' % (code, n, lmtp_answers.count((code, n)))
                                       for code, n in sorted(set(lmtp_answers))),
                             len(flagged), self.postfix.maillog().count('status=deferred')))
        # the messages s1 deferred go to s2 once Postfix tries them again
        self.assertTrue(self.postfix.flush_until(
            lambda: 'Mail queue is empty' in self.postfix.queue(), WAIT * 2),
            self.postfix.queue())
        c = self.wait_login(i)
        try:
            after, uv = self.inbox(c)
        finally:
            c.logout()
        self.assertEqual(uv, uidvalidity)
        for mid, (uid, _) in before.items():
            self.assertIn(mid, after)
            self.assertEqual(after[mid][0], uid, mid)
        for mid in sent:
            self.assertIn(mid, after)
        # nothing but what was sent, each once (inbox() fails on a double)
        self.assertEqual(len(after), len(before) + len(sent))   # inbox() refused doubles
        by_uid = {uid: flags for uid, flags in after.values()}
        for uid in flagged:
            self.assertIn('\\Flagged', by_uid[uid], uid)
        rc, out, err = s1.ctl('user', 'show', address(i))
        self.assertRegex(out, r'(?m)^slot:\s*s2\s*$')
        # the last login (above) was served by s2
        self.assertTrue(s2.logins(address(i)))
        last_s1 = len(s1.logins(address(i)))
        c = self.wait_login(i)
        c.logout()
        self.assertEqual(len(s1.logins(address(i))), last_s1)

    def test_6_postgresql_outage_during_logins(self):
        """PostgreSQL stopped while clients log in through nginx: only
        temporary failures (never a wrong-password answer), every slot
        keeps running; once PostgreSQL is back, logins work again without
        restarting coffred."""
        pids = {n: s.proc.pid for n, s in self.slots.items()}
        fresh = list(range(NACCOUNTS + 1, NACCOUNTS + 7))   # nothing cached for them
        answers = []
        stop = threading.Event()

        def client(accounts):
            k = 0
            while not stop.is_set():
                i = accounts[k % len(accounts)]
                k += 1
                c, line = imap_login(self.proxy, address(i), password(i))
                answers.append((i, classify(line), line))
                if c:
                    c.logout()

        self.pg.stop()
        try:
            th = [threading.Thread(target=client, args=(fresh,)),
                  threading.Thread(target=client, args=([1, 2, 3],))]
            for t in th:
                t.start()
            try:
                self.assertTrue(harness.wait_for(
                    lambda: sum(1 for _, k, _ in answers if k == 'temp') >= 6, WAIT), answers)
            finally:
                stop.set()
                for t in th:
                    t.join(60)
        finally:
            self.pg.start()
        kinds = {k for _, k, _ in answers}
        self.assertTrue(kinds <= {'ok', 'temp'}, [a for a in answers if a[1] not in
                                                  ('ok', 'temp')])
        self.assertTrue(any(k == 'temp' and i in fresh for i, k, _ in answers), answers)
        for i in fresh + [1, 2, 3]:
            c = self.wait_login(i)
            c.logout()
        for n, s in self.slots.items():
            self.assertTrue(s.alive(), n)
            self.assertEqual(s.proc.pid, pids[n], '%s was restarted' % n)

    def test_0_readme_nginx_conf_is_the_tested_one(self):
        """Every directive of the README's nginx mail block, but for the
        addresses, paths and ports, is in the configuration nginx runs
        here (nginx_util.mail_conf)."""
        with open(self.proxy.conf_path) as f:
            ran = set(l.strip() for l in f)
        skip = ('listen', 'server', 'auth_http ', 'ssl_certificate', 'ssl_session_cache',
                'load_module', 'mail', '}')
        for line in readme_block('nginx-mail.conf').splitlines():
            d = line.split('#')[0].strip()
            if d and not d.startswith(skip):
                self.assertIn(d, ran, 'README nginx directive %r not tested' % d)

    def test_7_proxy_header_only_from_proxy_networks(self):
        """On slot s1's IMAP listener: PROXY v1 and v2 from 127.0.0.1 (in
        proxy_networks) give the session the carried address; the same
        header from 127.0.0.2 is refused and never believed."""
        s1 = self.slot('s1')
        v1 = 'PROXY TCP4 203.0.113.9 %s 40001 %d\r\n' % (s1.host, s1.ports['imap'])
        sig = b'\r\n\r\n\x00\r\nQUIT\n'
        v2 = sig + bytes([0x21, 0x11, 0, 12]) + socket.inet_aton('198.51.100.20') + \
            socket.inet_aton(s1.host) + (40002).to_bytes(2, 'big') + \
            s1.ports['imap'].to_bytes(2, 'big')
        for header, carried in ((v1.encode(), '203.0.113.9'), (v2, '198.51.100.20')):
            with s1.raw('imap', source=NGINX_HOP) as c:
                c.send(header)
                g = c.line()
                self.assertTrue(g.startswith('* OK'), g)
                self.assertTrue(harness.wait_for(lambda: carried in s1.who(), 10), s1.who())
                untagged, t = c.cmd('a', 'NOOP')
                self.assertTrue(t.startswith('a OK'), t)
        forged = v1.replace('203.0.113.9', '192.0.2.66').encode()
        with s1.raw('imap', source=GUESSER) as c:
            c.send(forged)
            rest = harness.read_to_close(c, 20)
            self.assertNotIn(b'\r\na OK', rest)
        self.assertNotIn('192.0.2.66', s1.who())
        self.assertNotIn('remote=192.0.2.66', s1.log())


if __name__ == '__main__':
    harness.main()
