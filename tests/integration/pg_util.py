"""A private PostgreSQL server for the integration tests, from Debian's
postgresql package: initdb and pg_ctl run as an unprivileged user (the
`postgres` account when the tests run as root, else the current user),
the cluster and its unix socket in the test's temporary directory, TCP on
a loopback address and a free port. Nothing of the system's own clusters
is used or touched.

    pg = pg_util.start(tmpdir)      # raises Unavailable without the binaries
    pg.dsn                          # libpq string for accounts_dsn
    pg.stop()                       # pg_ctl stop (fast); safe to repeat
    pg.restart()                    # start again after stop() (or stop, start)
    pg.psql('SELECT ...')           # rows as a list of tuples of str
    pg.create_db('name')            # another empty database; its DSN
    pg.cleanup()                    # stop, and the cluster's files removed

Environment: PG_BIN, the directory of initdb and pg_ctl (default: the
newest /usr/lib/postgresql/*/bin).
"""
import atexit
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys

import harness

START_TIMEOUT = 60   # seconds pg_ctl waits for the server (-t)
DB = 'coffre'
ROLE = 'coffre'


class Unavailable(Exception):
    """The PostgreSQL binaries are missing: the test should skip."""


def pg_bin():
    d = os.environ.get('PG_BIN')
    if d:
        return d
    cands = sorted(glob.glob('/usr/lib/postgresql/*/bin'),
                   key=lambda p: [int(x) for x in p.split('/')[-2].split('.') if x.isdigit()])
    return cands[-1] if cands else ''


def missing():
    """None when initdb, pg_ctl and psql are there, else what is missing."""
    d = pg_bin()
    need = [n for n in ('initdb', 'pg_ctl', 'postgres', 'psql')
            if not (d and os.access(os.path.join(d, n), os.X_OK))
            and not (n == 'psql' and shutil.which('psql'))]
    if need:
        return ('PostgreSQL binaries missing (%s in %s); scripts/install-deps installs '
                'the postgresql package' % (', '.join(need), d or '/usr/lib/postgresql/*/bin'))
    return None


class Pg:
    def __init__(self, tmpdir, host=harness.HOST, port=None):
        reason = missing()
        if reason:
            raise Unavailable(reason)
        self.bin = pg_bin()
        self.host = host
        self.port = port or harness.free_port()
        self.base = os.path.join(tmpdir, 'pg')
        self.data = os.path.join(self.base, 'data')
        self.sock = os.path.join(self.base, 'sock')
        self.logfile = os.path.join(self.base, 'postgresql.log')
        self.running = False
        self.user = None   # run as this account (root only)
        if os.geteuid() == 0:
            self.user = 'postgres'
            try:
                pw = pwd.getpwnam(self.user)
            except KeyError:
                pw = pwd.getpwnam('nobody')
                self.user = 'nobody'
            # the unprivileged user must reach its directory
            os.chmod(tmpdir, os.stat(tmpdir).st_mode | 0o711)
            os.makedirs(self.sock)
            for p in (self.base, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        else:
            os.makedirs(self.sock)
        os.chmod(self.base, 0o700)
        self.dsn = 'host=%s port=%d dbname=%s user=%s' % (self.host, self.port, DB, ROLE)
        self._init()
        atexit.register(self.stop)

    def _run(self, args, check=True, timeout=120, input=None):
        if self.user:
            args = ['runuser', '-u', self.user, '--'] + args
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                           input=input, cwd=self.base)
        if check and r.returncode != 0:
            raise RuntimeError('%s failed (%d): %s%s\n%s' % (
                ' '.join(args), r.returncode, r.stdout, r.stderr, self.log_tail()))
        return r

    def _tool(self, name):
        p = os.path.join(self.bin, name)
        return p if os.access(p, os.X_OK) else shutil.which(name)

    def _init(self):
        self._run([self._tool('initdb'), '-D', self.data, '-U', 'postgres', '--auth=trust',
                   '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'])
        with open(os.path.join(self.data, 'postgresql.conf'), 'a') as f:
            f.write("\n# tests/integration/pg_util.py\n"
                    "listen_addresses = '%s'\n"
                    "port = %d\n"
                    "unix_socket_directories = '%s'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\n"
                    "logging_collector = off\n" % (self.host, self.port, self.sock))
        self.restart()
        self.psql("CREATE ROLE %s LOGIN" % ROLE, db='postgres')
        self.psql("CREATE DATABASE %s OWNER %s" % (DB, ROLE), db='postgres')

    def restart(self):
        """Starts the server (stopping it first when it runs)."""
        if self.running:
            self.stop()
        self._run([self._tool('pg_ctl'), '-D', self.data, '-l', self.logfile, '-w',
                   '-t', str(START_TIMEOUT), 'start'])
        self.running = True
        return self

    start = restart

    def stop(self, mode='fast'):
        """pg_ctl stop; nothing when it is not running."""
        if not self.running:
            return
        self._run([self._tool('pg_ctl'), '-D', self.data, '-m', mode, '-w',
                   '-t', str(START_TIMEOUT), 'stop'], check=False)
        self.running = False

    def psql(self, sql, db=DB, user=None):
        """Runs sql over the unix socket as the superuser (or user); the
        rows as tuples of str."""
        r = self._run([self._tool('psql'), '-X', '-q', '-A', '-t', '-F', '\t', '-v',
                       'ON_ERROR_STOP=1', '-h', self.sock, '-p', str(self.port),
                       '-U', user or 'postgres', '-d', db, '-c', sql])
        return [tuple(l.split('\t')) for l in r.stdout.splitlines() if l]

    def create_db(self, name):
        """A new empty database owned by the role coffre; its DSN."""
        self.psql('CREATE DATABASE %s OWNER %s' % (name, ROLE), db='postgres')
        return 'host=%s port=%d dbname=%s user=%s' % (self.host, self.port, name, ROLE)

    def log_tail(self, n=40):
        try:
            with open(self.logfile, encoding='utf-8', errors='replace') as f:
                lines = f.read().splitlines()
        except OSError:
            return ''
        return '---- postgresql log ----\n%s\n---- end ----' % '\n'.join(lines[-n:])

    def cleanup(self):
        self.stop()
        if os.environ.get('KEEP_TMP') == '1':
            sys.stderr.write('KEEP_TMP: %s kept\n' % self.base)
        else:
            shutil.rmtree(self.base, ignore_errors=True)


def _exit_on_sigterm(signum, frame):
    sys.exit(128 + signum)   # atexit then stops the servers


def start(tmpdir, host=harness.HOST, port=None):
    """A running private PostgreSQL with an empty database `coffre` owned by
    the role `coffre` (trust authentication on loopback)."""
    # a test killed by meson's timeout (SIGTERM) still stops its server
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return Pg(tmpdir, host=host, port=port)
