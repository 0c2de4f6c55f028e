"""Integration test harness: starts the real coffred on free loopback ports
with a temporary data directory and a freshly generated certificate, and
gives the tests real clients (imaplib, poplib, raw sockets, TLS).

Environment: COFFRED, COFFRECTL (binaries), GEN_CERT (scripts/gen-cert);
KEEP_TMP=1 keeps the temporary directories; COFFRE_TEST_VERBOSE=1 prints the
daemon log of every class, not only of failing tests.
"""
import contextlib
import os
import pwd
import shutil
import signal
import random
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import imaplib
import poplib

COFFRED = os.environ.get('COFFRED', '')
COFFRECTL = os.environ.get('COFFRECTL', '')
GEN_CERT = os.environ.get('GEN_CERT') or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', 'scripts', 'gen-cert')

HOST = '127.0.0.1'
RUN_USER = 'nobody'
START_TIMEOUT = 20.0      # ASan builds start slowly
IO_TIMEOUT = 20.0         # one reply; login failure delays are at most a few s
SERVICES = ('imap', 'imaps', 'pop3', 'pop3s', 'lmtp')

# Limits used by every test unless a class overrides them.
DEFAULT_CONF = {
    'default_domain': 'example.org',
    'login_failure_delay': '300ms',
    'login_failure_delay_max': '2s',
    'http_listen': '',     # its default is a fixed port; test_http.py picks one
}
FAILURE_DELAY = 0.300


def require_binaries():
    """Exits with a clear message when the test is run without the build."""
    missing = [n for n, v in (('COFFRED', COFFRED), ('COFFRECTL', COFFRECTL))
               if not v or not os.access(v, os.X_OK)]
    if missing:
        sys.stderr.write('set %s to the built binaries (meson test does)\n'
                         % ' and '.join(missing))
        sys.exit(2)


_sanitized = None


def sanitized(server=None):
    """Whether coffred is an AddressSanitizer build (its memory figures then
    include ASan's shadow and quarantine, and say little about coffred's own)."""
    global _sanitized
    if _sanitized is None:
        with open(COFFRED, 'rb') as f:
            _sanitized = b'__asan_init' in f.read()
    return _sanitized


# Listening ports come from below the kernel's ephemeral range: a port the
# kernel hands out for bind(0) is also what it gives the next outgoing
# connection as its source port, so a test with many client sockets (or a
# suite running beside it) could take a server's port before it binds.
PORT_RANGE = (20000, 32000)


def _ephemeral_low():
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    low, high = PORT_RANGE[0], min(PORT_RANGE[1], _ephemeral_low())
    for _ in range(1000):
        p = random.randrange(low, high)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((HOST, p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError('no free port in %d-%d' % (low, high))


def gen_cert(directory, cn='localhost', force=False):
    args = [GEN_CERT, directory, cn] + (['--force'] if force else [])
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError('gen-cert failed (%d): %s' % (r.returncode, r.stderr))
    return os.path.join(directory, 'cert.pem'), os.path.join(directory, 'key.pem')


def client_context(cafile, minimum=None, maximum=None):
    """An SSLContext that trusts only the test certificate, checking the
    host name 'localhost' (the harness passes server_hostname)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


class Conn:
    """A raw client connection with a line reader. Reads wait on the socket
    (with a timeout), never on a sleep."""

    def __init__(self, sock, timeout=IO_TIMEOUT):
        self.sock = sock
        self.buf = b''
        self.timeout = timeout
        sock.settimeout(timeout)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, timeout=None):
        """Reads more bytes into buf; returns False at EOF."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            chunk = self.sock.recv(65536)
        except ssl.SSLError as e:
            # A reset or truncated TLS stream is a close for our purposes.
            if 'EOF' in str(e) or 'UNEXPECTED' in str(e).upper():
                return False
            raise
        except ConnectionResetError:
            return False
        if not chunk:
            return False
        self.buf += chunk
        return True

    def readline(self, timeout=None):
        """One line with its CRLF; b'' at EOF. Raises socket.timeout when
        nothing complete arrives in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b'\n' not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout('no complete line within the timeout; have %r'
                                     % self.buf[:200])
            if not self._fill(left):
                rest, self.buf = self.buf, b''
                return rest
        i = self.buf.index(b'\n') + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def line(self, timeout=None):
        """readline() as str without CRLF; fails the test at EOF."""
        raw = self.readline(timeout)
        if not raw:
            raise EOFError('connection closed by the server')
        return raw.decode('utf-8', 'replace').rstrip('\r\n')

    def cmd(self, tag, text, timeout=None):
        """Sends 'tag text' and returns (untagged lines, tagged line)."""
        self.send('%s %s\r\n' % (tag, text))
        return self.until_tag(tag, timeout)

    def until_tag(self, tag, timeout=None):
        untagged = []
        while True:
            line = self.line(timeout)
            if line.startswith(tag + ' '):
                return untagged, line
            untagged.append(line)

    def read_until_eof(self, timeout=None, limit=16 << 20):
        """Everything the server sends until it closes; raises on timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout('server did not close the connection')
            if not self._fill(left):
                break
        out, self.buf = self.buf, b''
        return out

    def starttls(self, ctx, server_hostname='localhost'):
        """Upgrades in place. Whatever the server sent after its OK and before
        the handshake would be a protocol violation: the caller should check
        pending() first."""
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        return self

    def pending(self):
        return self.buf

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_log(path):
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')
    except OSError:
        return ''


def drop_listening(waiting):
    """Removes from waiting ({name: port}) the ports that accept a connection."""
    for name, port in list(waiting.items()):
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            del waiting[name]
        except OSError:
            pass


class Server:
    """One coffred process with its own temporary directory, certificate,
    data directory and five loopback ports."""

    def __init__(self, extra_conf=None, name='coffre', wrap=None):
        require_binaries()
        # a command coffred runs under, e.g. ['prlimit', '--nofile=64:64', '--']
        self.wrap = list(wrap or ())
        self.tmp = tempfile.mkdtemp(prefix='coffre-it-')
        # Started as root, coffred drops to run_user; it must reach data/.
        os.chmod(self.tmp, 0o755)
        self.data_dir = os.path.join(self.tmp, 'data')
        self.log_path = os.path.join(self.tmp, 'coffred.log')
        self.conf_path = os.path.join(self.tmp, 'coffred.conf')
        self.cert, self.key = gen_cert(self.tmp, 'coffre-test-1')
        self.ports = {}
        for s in SERVICES:
            while True:
                p = free_port()
                if p not in self.ports.values():
                    break
            self.ports[s] = p
        self.conf = {
            'data_dir': self.data_dir,
            'run_user': RUN_USER,
            'tls_cert': self.cert,
            'tls_key': self.key,
            # in the test's directory: servers of parallel tests do not meet
            'control_socket': os.path.join(self.tmp, 'control.sock'),
        }
        for s in SERVICES:
            self.conf[s + '_listen'] = '%s:%d' % (HOST, self.ports[s])
        self.conf.update(DEFAULT_CONF)
        # A value may be a function of the ports, e.g. to add a listener.
        for k, v in (extra_conf or {}).items():
            self.conf[k] = v(self.ports) if callable(v) else v
        self.write_conf()
        self.proc = None
        self.logf = None
        self.name = name
        self.secrets = set()

    def write_conf(self, path=None, lines=None):
        path = path or self.conf_path
        with open(path, 'w') as f:
            f.write('# written by tests/integration/harness.py\n')
            for k, v in self.conf.items():
                if v is not None:
                    f.write('%s = %s\n' % (k, v))
            for l in lines or ():
                f.write(l + '\n')
        os.chmod(path, 0o644)
        return path

    # -- life cycle -------------------------------------------------------

    def start(self):
        self.logf = open(self.log_path, 'ab')
        self.proc = subprocess.Popen(self.wrap + [COFFRED, '-c', self.conf_path, '--foreground'],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        try:
            self.wait_ports()
        except Exception:
            self.kill()
            raise
        return self

    def wait_ports(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        waiting = dict(self.ports)
        while waiting:
            if self.proc.poll() is not None:
                raise RuntimeError('coffred exited with %d during start-up\n%s'
                                   % (self.proc.returncode, self.log_tail()))
            drop_listening(waiting)
            if waiting:
                if time.monotonic() > deadline:
                    raise RuntimeError('coffred did not listen on %s within %ds\n%s'
                                       % (waiting, timeout, self.log_tail()))
                time.sleep(0.05)   # polling a port that is not open yet

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=10.0):
        """SIGTERM, wait; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        rc = self.proc.returncode
        if self.logf:
            self.logf.close()
            self.logf = None
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.logf:
            self.logf.close()
            self.logf = None

    def cleanup(self):
        self.kill()
        if os.environ.get('KEEP_TMP') == '1':
            sys.stderr.write('KEEP_TMP: %s kept\n' % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self):
        return read_log(self.log_path)

    def log_tail(self, n=60):
        lines = self.log().splitlines()
        return '---- coffred log (%s, last %d lines) ----\n%s\n---- end of log ----' % (
            self.log_path, min(n, len(lines)), '\n'.join(lines[-n:]))

    def sanitizer_reports(self):
        """ASan/UBSan/LSan findings in the log."""
        bad = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:',
               'ERROR: UndefinedBehaviorSanitizer')
        return [l for l in self.log().splitlines() if any(b in l for b in bad)]

    # -- coffrectl --------------------------------------------------------

    def ctl(self, *args, input=None, timeout=60):
        r = subprocess.run([COFFRECTL, '-c', self.conf_path] + list(args),
                           input=input, capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def add_user(self, addr, password):
        rc, out, err = self.ctl('user', 'add', addr, '--password-stdin',
                                input=password + '\n')
        if rc != 0:
            raise RuntimeError('coffrectl user add %s failed (%d): %s%s'
                               % (addr, rc, out, err))
        self.secrets.add(password)

    def leaked_secrets(self):
        """Passwords given to add_user that appear in the daemon's log."""
        log = self.log()
        return sorted(p for p in self.secrets if p in log)

    # -- clients ----------------------------------------------------------

    def ctx(self, **kw):
        return client_context(self.cert, **kw)

    def raw(self, service, tls=False, ctx=None, source=None, timeout=IO_TIMEOUT):
        """A connected Conn; implicit TLS when tls is True. source: a local
        address to bind (e.g. '127.0.0.2') to appear as another client."""
        sock = socket.create_connection((HOST, self.ports[service]), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        if tls:
            sock = (ctx or self.ctx()).wrap_socket(sock, server_hostname='localhost')
        return Conn(sock, timeout)

    def imap_ssl(self, ctx=None):
        c = imaplib.IMAP4_SSL(HOST, self.ports['imaps'], ssl_context=ctx or self.ctx(),
                              timeout=IO_TIMEOUT)
        # imaplib checks the host name against HOST; we connect to 127.0.0.1,
        # and the certificate names it (ip_address), so that is verified too.
        return c

    def imap_plain(self):
        return imaplib.IMAP4(HOST, self.ports['imap'], timeout=IO_TIMEOUT)

    def imap_starttls(self, ctx=None):
        c = self.imap_plain()
        c.starttls(ssl_context=ctx or self.ctx())
        return c

    def pop3_ssl(self, ctx=None):
        return poplib.POP3_SSL(HOST, self.ports['pop3s'], context=ctx or self.ctx(),
                               timeout=IO_TIMEOUT)

    def pop3_plain(self):
        return poplib.POP3(HOST, self.ports['pop3'], timeout=IO_TIMEOUT)

    def pop3_stls(self, ctx=None):
        c = self.pop3_plain()
        c.stls(context=ctx or self.ctx())
        return c


def imap_greeting_caps(conn):
    """Reads the IMAP greeting from a Conn; returns (line, set of capabilities)."""
    g = conn.line()
    return g, caps_from_code(g)


def caps_from_code(line):
    """The capabilities inside a [CAPABILITY ...] response code, upper-cased."""
    up = line.upper()
    i = up.find('[CAPABILITY ')
    if i < 0:
        return set()
    j = up.find(']', i)
    return set(up[i + len('[CAPABILITY '):j].split())


def imap_capability(conn, tag='c'):
    """Runs CAPABILITY on a Conn; returns the set of capabilities."""
    untagged, tagged = conn.cmd(tag, 'CAPABILITY')
    if not tagged.startswith(tag + ' OK'):
        raise AssertionError('CAPABILITY failed: %r' % tagged)
    caps = [l for l in untagged if l.upper().startswith('* CAPABILITY ')]
    if len(caps) != 1:
        raise AssertionError('expected one * CAPABILITY line, got %r' % untagged)
    return set(caps[0].upper().split()[2:])


def imap_quote(s):
    return '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'


def imap_login_cmd(user, password):
    """A LOGIN command (without its tag) with both arguments quoted."""
    return 'LOGIN %s %s' % (imap_quote(user), imap_quote(password))


def imap_sasl_answer(conn, tag, mechanism, response):
    """Starts AUTHENTICATE mechanism on a Conn without an initial response,
    answers the first continuation with the line response; returns the
    tagged reply."""
    conn.send('%s AUTHENTICATE %s\r\n' % (tag, mechanism))
    cont = conn.line()
    if not cont.startswith('+'):
        raise AssertionError('AUTHENTICATE %s: no continuation: %r' % (mechanism, cont))
    conn.send(response + '\r\n')
    return conn.until_tag(tag)[1]


def dir_bytes(path):
    """Bytes of the files in a directory (files may go while we look)."""
    total = 0
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return 0
    for n in names:
        try:
            total += os.stat(os.path.join(path, n)).st_size
        except FileNotFoundError:
            pass
    return total


class PeakWatcher(threading.Thread):
    """Samples a directory's size until stopped and keeps the largest seen
    (a busy machine samples less often, which only lowers the peak)."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.peak = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, dir_bytes(self.path))
            self.done.wait(0.002)

    def stop(self):
        self.done.set()
        self.join()
        return self.peak


def wait_for(pred, timeout):
    """Polls pred every 50 ms until it is true or timeout seconds passed;
    returns its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def send_ignoring_close(conn, data):
    """Sends data; a server closing (or resetting) mid-way is an answer too."""
    try:
        conn.send(data)
        return True
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
        return False


def read_to_close(conn, timeout):
    """Everything the server sends until it closes; b'' when it resets the
    connection instead."""
    try:
        return conn.read_until_eof(timeout=timeout)
    except (ConnectionResetError, ssl.SSLError):
        return b''


def close_quietly(client):
    """Closes an imaplib/poplib client whatever state it is in."""
    for name in ('shutdown', 'close'):
        fn = getattr(client, name, None)
        if fn:
            try:
                fn()
            except (OSError, EOFError, imaplib.IMAP4.error, poplib.error_proto):
                pass
            return


@contextlib.contextmanager
def closed_after(client):
    """Yields the imaplib/poplib client; close_quietly() after the block."""
    try:
        yield client
    finally:
        close_quietly(client)


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    r = fn(*args, **kw)
    return r, time.monotonic() - t0


class ServerTestCase(unittest.TestCase):
    """One coffred per class. Subclasses set CONF (extra config) and may
    override setUpServer() to add users. The daemon log tail is printed for
    every failing test; tearDownClass fails when coffred died, did not exit 0
    on SIGTERM, or a sanitizer reported anything."""

    CONF = {}
    WRAP = None  # a command to run coffred under (Server's wrap)
    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.CONF, name=cls.__name__, wrap=cls.WRAP)
        try:
            cls.server.start()
            cls.setUpServer()
        except Exception:
            sys.stderr.write(cls.server.log_tail() + '\n')
            cls.server.cleanup()
            raise

    @classmethod
    def setUpServer(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        srv = cls.server
        try:
            was_alive = srv.alive()
            rc = srv.stop()
            reports = srv.sanitizer_reports()
            leaked = srv.leaked_secrets()
            if os.environ.get('COFFRE_TEST_VERBOSE') == '1' or not was_alive or rc != 0 \
                    or reports:
                sys.stderr.write(srv.log_tail(200) + '\n')
            if not was_alive:
                raise AssertionError('coffred died during %s (exit %r)'
                                     % (cls.__name__, srv.proc.returncode))
            if rc != 0:
                raise AssertionError('coffred exited %r on SIGTERM after %s'
                                     % (rc, cls.__name__))
            if reports:
                raise AssertionError('sanitizer reports:\n' + '\n'.join(reports[:20]))
            if leaked:
                raise AssertionError('passwords in the coffred log: %r' % leaked)
        finally:
            srv.cleanup()

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        r = super().run(result)
        if len(result.failures) + len(result.errors) > before and self.server:
            sys.stderr.write('\n%s\n%s\n' % (self.id(), self.server.log_tail()))
        return r

    def assertServerAlive(self):
        self.assertTrue(self.server.alive(), 'coffred is not running\n' + self.server.log_tail())
        with self.server.raw('imaps', tls=True) as c:
            g = c.line()
            self.assertTrue(g.startswith('* OK'), g)


def main():
    require_binaries()
    unittest.main(verbosity=2)
