"""The control socket and `coffrectl who/kick/reload/stats`: the session
list against live IMAPS (one session with a mailbox selected, one in IDLE),
POP3S and LMTP sessions; kick by address and by session id (the client
reads BYE or -ERR and the close, other sessions go on, POP3 deletions are
not committed); `user disable` and `user del` end an IDLE session within
1 s of coffrectl's exit, and the old password (cached) no longer logs in;
`reload` installs a new certificate before it answers; `stats` prints
OpenMetrics text; the socket's permissions and SO_PEERCRED keep others
out; malformed, huge, silent and surplus requests are answered or closed
and coffred goes on."""
import grp
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import time
import unittest

import harness
from harness import HOST, ServerTestCase, imap_quote

RUN_USER = 'daemon'  # not nobody: nobody is the outsider here
PASS = 'control pass 1'


def pem_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class Control(ServerTestCase):
    CONF = {
        'run_user': RUN_USER,
        'auth_cache_ttl': '1h',
        'control_timeout': '3s',
        'control_max_connections': '2',
    }

    @classmethod
    def setUpServer(cls):
        cls.sock_path = cls.server.conf['control_socket']
        for u in ('who-a', 'who-b', 'kick-a', 'kick-b', 'kid', 'pop', 'dis', 'gone', 'race',
                  'race-pop', 'big', 'half'):
            cls.server.add_user(u + '@example.org', PASS)

    # -- helpers ----------------------------------------------------------

    def imaps(self, user):
        c = self.server.raw('imaps', tls=True)
        self.assertTrue(c.line().startswith('* OK'))
        _, t = c.cmd('l', 'LOGIN %s %s' % (imap_quote(user + '@example.org'), imap_quote(PASS)))
        self.assertTrue(t.startswith('l OK'), t)
        return c

    def idle(self, user):
        c = self.imaps(user)
        _, t = c.cmd('s', 'SELECT INBOX')
        self.assertTrue(t.startswith('s OK'), t)
        c.send('i IDLE\r\n')
        self.assertTrue(c.line().startswith('+ '))
        return c

    def pop3s(self, user):
        c = self.server.raw('pop3s', tls=True)
        self.assertTrue(c.line().startswith('+OK'))
        c.send('USER %s@example.org\r\n' % user)
        self.assertTrue(c.line().startswith('+OK'))
        c.send('PASS %s\r\n' % PASS)
        self.assertTrue(c.line().startswith('+OK'))
        return c

    def who(self, *args):
        rc, out, err = self.server.ctl('who', *args)
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split('\t'), ['ID', 'USER', 'PROTO', 'ADDRESS', 'TLS',
                                                'MAILBOX', 'STATE', 'IDLE', 'LOGIN'])
        rows = {}
        for l in lines[1:]:
            f = l.split('\t')
            self.assertEqual(len(f), 9, l)
            rows[f[3]] = dict(zip(('id', 'user', 'proto', 'addr', 'tls', 'mailbox', 'state',
                                   'idle', 'login'), f))
        return rows

    @staticmethod
    def addr(c):
        h, p = c.sock.getsockname()[:2]
        return '%s:%d' % (h, p)

    def login_ok(self, user):
        c = self.server.raw('imaps', tls=True)
        with c:
            c.line()
            _, t = c.cmd('l', 'LOGIN %s %s' % (imap_quote(user + '@example.org'),
                                               imap_quote(PASS)))
            return t.startswith('l OK')

    def raw_control(self, data, as_user=None):
        """Sends data on a new control connection and returns all it gets."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(15)
        s.connect(self.sock_path)
        try:
            s.sendall(data)
        except OSError:
            pass  # refused before all of it went: the reply says why
        out = b''
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        s.close()
        return out

    # -- who --------------------------------------------------------------

    def test_who(self):
        t0 = int(time.time())
        sel = self.imaps('who-a')
        _, t = sel.cmd('c', 'CREATE Work')
        self.assertTrue(t.startswith('c OK'), t)
        _, t = sel.cmd('s', 'SELECT Work')
        self.assertTrue(t.startswith('s OK'), t)
        idl = self.idle('who-a')
        pop = self.pop3s('who-b')
        lmtp = self.server.raw('lmtp')
        self.assertTrue(lmtp.line().startswith('220'))
        lmtp.send('LHLO test\r\n')
        while not lmtp.line().startswith('250 '):
            pass
        t1 = int(time.time())
        time.sleep(1.1)  # so that the silent sessions have been idle a second or more
        with sel, idl, pop, lmtp:
            rows = self.who()
            r = rows[self.addr(sel)]
            self.assertEqual((r['user'], r['proto'], r['mailbox'], r['state']),
                             ('who-a@example.org', 'imaps', 'Work', 'ready'))
            self.assertRegex(r['tls'], r'^TLS1\.[23]$')
            r = rows[self.addr(idl)]
            self.assertEqual((r['user'], r['proto'], r['mailbox'], r['state']),
                             ('who-a@example.org', 'imaps', 'INBOX', 'idle'))
            self.assertGreaterEqual(int(r['idle']), 1)
            r = rows[self.addr(pop)]
            self.assertEqual((r['user'], r['proto'], r['mailbox'], r['state']),
                             ('who-b@example.org', 'pop3s', '-', 'ready'))
            self.assertRegex(r['tls'], r'^TLS1\.[23]$')
            r = rows[self.addr(lmtp)]
            self.assertEqual((r['user'], r['proto'], r['tls'], r['mailbox'], r['state'],
                              r['login']), ('-', 'lmtp', 'none', '-', 'ready', '-'))
            for c in (sel, idl, pop):
                r = rows[self.addr(c)]
                login = int(time.mktime(time.strptime(r['login'], '%Y-%m-%dT%H:%M:%SZ'))
                            - time.timezone)
                self.assertTrue(t0 <= login <= t1, (t0, r['login'], t1))
                self.assertTrue(r['id'].isdigit())
            # one account's sessions only
            mine = self.who('who-a@example.org')
            self.assertEqual(set(mine), {self.addr(sel), self.addr(idl)})
            # IDLE goes on untouched
            idl.send('DONE\r\n')
            self.assertTrue(idl.line().startswith('i OK'))

    # -- kick -------------------------------------------------------------

    def assertEnded(self, c, first, timeout=10):
        line = c.readline(timeout=timeout).decode().rstrip('\r\n')
        self.assertEqual(line, first)
        self.assertEqual(harness.read_to_close(c, timeout), b'')

    def test_kick_user(self):
        a1, a2 = self.imaps('kick-a'), self.idle('kick-a')
        b = self.imaps('kick-b')
        with a1, a2, b:
            rc, out, err = self.server.ctl('kick', 'kick-a@example.org')
            self.assertEqual((rc, out), (0, 'ended 2 sessions\n'), err)
            self.assertEnded(a1, '* BYE Disconnected by the administrator.')
            self.assertEnded(a2, '* BYE Disconnected by the administrator.')
            _, t = b.cmd('n', 'NOOP')
            self.assertTrue(t.startswith('n OK'), t)
            self.assertEqual(self.who('kick-a@example.org'), {})
            # nothing left to end
            rc, out, _ = self.server.ctl('kick', 'kick-a@example.org')
            self.assertEqual((rc, out), (3, 'ended 0 sessions\n'))

    def test_kick_session_id(self):
        one, two = self.imaps('kid'), self.imaps('kid')
        with one, two:
            sid = self.who('kid@example.org')[self.addr(one)]['id']
            rc, out, err = self.server.ctl('kick', sid)
            self.assertEqual((rc, out), (0, 'ended 1 session\n'), err)
            self.assertEnded(one, '* BYE Disconnected by the administrator.')
            _, t = two.cmd('n', 'NOOP')
            self.assertTrue(t.startswith('n OK'), t)

    def test_kick_waits_for_the_response_in_progress(self):
        # A FETCH of a large message stalls on a client that does not read:
        # the kick lands in the middle of it and waits. The client then reads
        # the whole literal, the tagged OK, and only then the BYE.
        body = b''.join(b'line %07d of a large message\r\n' % i for i in range(200000))
        msg = b'Subject: big\r\n\r\n' + body
        with self.imaps('big') as c:
            c.send('a APPEND INBOX {%d}\r\n' % len(msg))
            self.assertTrue(c.line().startswith('+'))
            c.send(msg + b'\r\n')
            _, t = c.until_tag('a')
            self.assertTrue(t.startswith('a OK'), t)
        sock = socket.create_connection((HOST, self.server.ports['imaps']))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        c = harness.Conn(self.server.ctx().wrap_socket(sock, server_hostname='localhost'))
        with c:
            c.line()
            _, t = c.cmd('l', 'LOGIN big@example.org %s' % imap_quote(PASS))
            self.assertTrue(t.startswith('l OK'), t)
            _, t = c.cmd('s', 'SELECT INBOX')
            self.assertTrue(t.startswith('s OK'), t)
            c.send('f FETCH 1 BODY[]\r\n')
            me = self.addr(c)
            self.assertTrue(harness.wait_for(
                lambda: self.who('big@example.org')[me]['state'] == 'command', 10))
            rc, out, err = self.server.ctl('kick', 'big@example.org')
            self.assertEqual((rc, out), (0, 'ended 1 session\n'), err)
            head = c.readline()
            m = re.match(rb'^\* 1 FETCH \(.*BODY\[\] \{(\d+)\}\r\n$', head)
            self.assertTrue(m, head)
            n = int(m.group(1))
            self.assertEqual(n, len(msg))
            rest = c.read_until_eof(timeout=60)
            self.assertEqual(rest[:n], msg)
            tail = rest[n:].decode().split('\r\n')
            self.assertTrue(tail[0].endswith(')'), tail[0])  # e.g. " FLAGS (\\Seen))"
            self.assertTrue(tail[1].startswith('f OK'), tail)
            self.assertEqual(tail[2:], ['* BYE Disconnected by the administrator.', ''])

    def test_kick_during_an_append_literal(self):
        # A session waiting for the rest of an APPEND's literal waits on its
        # client: it ends at once, and nothing of the message is stored.
        with self.imaps('half') as c:
            c.send('a APPEND INBOX {100000}\r\n')
            self.assertTrue(c.line().startswith('+'))
            c.send(b'Subject: half\r\n\r\n' + b'x' * 5000)
            me = self.addr(c)
            self.assertTrue(harness.wait_for(
                lambda: self.who('half@example.org')[me]['state'] == 'command', 10))
            rc, out, err = self.server.ctl('kick', 'half@example.org')
            self.assertEqual((rc, out), (0, 'ended 1 session\n'), err)
            self.assertEnded(c, '* BYE Disconnected by the administrator.')
        with self.imaps('half') as c:
            u, t = c.cmd('s', 'STATUS INBOX (MESSAGES)')
            self.assertTrue(t.startswith('s OK'), t)
            self.assertIn('(MESSAGES 0)', u[0])

    def test_kick_pop3_keeps_deletions_uncommitted(self):
        with self.imaps('pop') as c:
            msg = 'Subject: kept\r\n\r\nbody\r\n'
            c.send('a APPEND INBOX {%d}\r\n' % len(msg))
            self.assertTrue(c.line().startswith('+'))
            c.send(msg + '\r\n')
            _, t = c.until_tag('a')
            self.assertTrue(t.startswith('a OK'), t)
        p = self.pop3s('pop')
        with p:
            p.send('DELE 1\r\n')
            self.assertTrue(p.line().startswith('+OK'))
            sid = self.who('pop@example.org')[self.addr(p)]['id']
            rc, out, err = self.server.ctl('kick', sid)
            self.assertEqual(rc, 0, err)
            self.assertEnded(p, '-ERR [SYS/PERM] Disconnected by the administrator.')
        # the session ended without UPDATE: the message is still there
        self.assertTrue(harness.wait_for(lambda: not self.who('pop@example.org'), 10))
        with self.pop3s('pop') as p:
            p.send('STAT\r\n')
            self.assertEqual(p.line().split()[:2], ['+OK', '1'])
            p.send('QUIT\r\n')
            self.assertTrue(p.line().startswith('+OK'))

    # -- user disable / del -----------------------------------------------

    def ends_within_a_second(self, user, verb, text):
        self.assertTrue(self.login_ok(user))  # the password is in the cache now
        c = self.idle(user)
        with c:
            rc, out, err = self.server.ctl('user', verb, user + '@example.org')
            returned = time.monotonic()
            self.assertEqual(rc, 0, err)
            self.assertIn('ended 1 live session', out)
            # The requirement: ended within 1 s. What is checked: by the
            # time coffrectl has returned plus a read of at most 1 s, the
            # client has read the BYE and the close.
            line = c.readline(timeout=1.0).decode().rstrip('\r\n')
            self.assertEqual(line, '* BYE %s' % text)
            left = max(0.0, returned + 1.0 - time.monotonic())
            self.assertEqual(c.read_until_eof(timeout=left), b'')
        self.assertFalse(self.login_ok(user), 'logged in again after %s' % verb)

    def test_user_disable_ends_idle(self):
        self.ends_within_a_second('dis', 'disable', 'Account disabled.')

    def test_user_del_ends_idle(self):
        self.ends_within_a_second('gone', 'del', 'Account deleted.')

    def test_login_answered_after_disable_is_refused(self):
        # A login checked before `user disable` but answered after it must
        # not stand. One failure makes the service hold the next answer
        # as long as a failure's (login_failure_delay, doubled): the
        # disable lands while the right password's answer is held.
        self.assertTrue(self.login_ok('race'))
        with self.server.raw('imaps', tls=True) as c:
            c.line()
            _, t = c.cmd('f', 'LOGIN race@example.org %s' % imap_quote('wrong password'))
            self.assertTrue(t.startswith('f NO'), t)
            c.send('l LOGIN race@example.org %s\r\n' % imap_quote(PASS))
            time.sleep(0.1)  # the check runs (a cache hit); its answer is held
            rc, out, err = self.server.ctl('user', 'disable', 'race@example.org')
            self.assertEqual(rc, 0, err)
            _, t = c.until_tag('l')
            self.assertTrue(t.startswith('l NO [CONTACTADMIN]'), t)
        self.assertEqual(self.who('race@example.org'), {})

    def test_pop3_login_answered_after_del_is_refused(self):
        self.assertTrue(self.login_ok('race-pop'))
        with self.server.raw('pop3s', tls=True) as c:
            c.line()
            c.send('USER race-pop@example.org\r\n')
            c.line()
            c.send('PASS wrong password\r\n')
            self.assertTrue(c.line().startswith('-ERR'))
            c.send('USER race-pop@example.org\r\nPASS %s\r\n' % PASS)
            self.assertTrue(c.line().startswith('+OK'))
            time.sleep(0.1)
            rc, out, err = self.server.ctl('user', 'del', 'race-pop@example.org')
            self.assertEqual(rc, 0, err)
            self.assertEqual(c.line(), '-ERR [AUTH] Authentication failed.')
        self.assertEqual(self.who('race-pop@example.org'), {})

    # -- reload and stats -------------------------------------------------

    def peer_der(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with self.server.raw('imaps', tls=True, ctx=ctx) as c:
            der = c.sock.getpeercert(binary_form=True)
            c.line()
            return der

    def test_reload(self):
        srv = self.server
        old = pem_der(srv.cert)
        self.assertEqual(self.peer_der(), old)
        newdir = os.path.join(srv.tmp, 'new')
        harness.gen_cert(newdir, 'coffre-test-2')
        saved = os.path.join(srv.tmp, 'saved')
        os.makedirs(saved, exist_ok=True)
        for f in (srv.cert, srv.key):
            shutil.copy2(f, saved)
        pw = pwd.getpwnam(RUN_USER)
        try:
            shutil.copyfile(os.path.join(newdir, 'key.pem'), srv.key)
            shutil.copyfile(os.path.join(newdir, 'cert.pem'), srv.cert)
            for f in (srv.key, srv.cert):
                os.chmod(f, 0o600)
                os.chown(f, pw.pw_uid, pw.pw_gid)
            new = pem_der(srv.cert)
            self.assertNotEqual(old, new)
            rc, out, err = srv.ctl('reload')
            self.assertEqual((rc, out), (0, 'reloaded\n'), err)
            # done before coffrectl returned: no waiting
            self.assertEqual(self.peer_der(), new)
            # a reload that fails says so and keeps what is in force
            with open(srv.key, 'w') as f:
                f.write('not a key\n')
            rc, out, err = srv.ctl('reload')
            self.assertEqual(rc, 7)
            self.assertIn('coffrectl: coffred: ', err)
            self.assertEqual(self.peer_der(), new)
        finally:
            for f in (srv.cert, srv.key):
                shutil.copyfile(os.path.join(saved, os.path.basename(f)), f)
                os.chown(f, pw.pw_uid, pw.pw_gid)
            srv.ctl('reload')

    def test_stats(self):
        rc, out, err = self.server.ctl('stats')
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.endswith('# EOF\n'), out[-200:])
        self.assertIn('# TYPE ', out)
        try:
            from prometheus_client.openmetrics import parser
        except ImportError:
            return
        self.assertTrue(list(parser.text_string_to_metric_families(out)))

    # -- who may use it ---------------------------------------------------

    def as_user(self, uid, gid, groups, *args):
        cmd = ['setpriv', '--reuid=%d' % uid, '--regid=%d' % gid]
        cmd += ['--groups=' + ','.join(map(str, groups))] if groups else ['--clear-groups']
        return subprocess.run(cmd + [harness.COFFRECTL, '-c', self.server.conf_path] +
                              list(args), capture_output=True, text=True, timeout=30)

    def test_permissions(self):
        st = os.stat(self.sock_path)
        pw = pwd.getpwnam(RUN_USER)
        self.assertEqual((st.st_mode & 0o777, st.st_uid, st.st_gid), (0o660, pw.pw_uid, pw.pw_gid))
        nobody = pwd.getpwnam('nobody')
        # nobody, not in the group: the socket's mode keeps it out
        r = self.as_user(nobody.pw_uid, nobody.pw_gid, None, 'who')
        self.assertEqual(r.returncode, 7, r.stderr)
        self.assertIn('Permission denied', r.stderr)
        # a member of run_user's group (supplementary) is let in
        r = self.as_user(nobody.pw_uid, nobody.pw_gid, [pw.pw_gid], 'who')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith('ID\t'))
        # a mode loosened by hand: SO_PEERCRED still refuses nobody, and logs it
        os.chmod(self.sock_path, 0o666)
        try:
            r = self.as_user(nobody.pw_uid, nobody.pw_gid, None, 'who')
            self.assertEqual(r.returncode, 7, r.stderr)
            self.assertIn('coffred: permission denied', r.stderr)
            r = self.as_user(nobody.pw_uid, nobody.pw_gid, None, 'kick', 'kid@example.org')
            self.assertEqual(r.returncode, 7, r.stderr)
            self.assertIn('coffred: permission denied', r.stderr)
        finally:
            os.chmod(self.sock_path, 0o660)
        self.assertTrue(harness.wait_for(
            lambda: 'control: refused a connection from pid' in self.server.log()
            and ' uid %d ' % nobody.pw_uid in self.server.log(), 10))

    # -- bad requests -----------------------------------------------------

    def test_bad_requests(self):
        cases = [
            (b'HELLO\n', b'ERR unknown request\n'),
            (b'\n', b'ERR request: empty\n'),
            (b'WHO a b\n', b'ERR unknown request\n'),
            (b'KICK ID 12x\n', b'ERR KICK ID: not a session number\n'),
            (b'KICK ID -1\n', b'ERR KICK ID: not a session number\n'),
            (b'KICK USER x@example.org angry\n',
             b'ERR KICK USER: the reason is disabled or deleted\n'),
            (b'KICK\n', b'ERR usage: KICK ID N | KICK USER ADDRESS [disabled|deleted]\n'),
            (b'A B C D E F\n', b'ERR request: too many words\n'),
            (b'WHO \x01\n', b'ERR request: only printable ASCII\n'),
            (b'WHO \xc3\xa9\n', b'ERR request: only printable ASCII\n'),
            (b'x' * 1025 + b'\n', b'ERR request too long\n'),
            (b'y' * (1 << 20), b'ERR request too long\n'),
        ]
        for req, want in cases:
            with self.subTest(req=req[:40]):
                self.assertEqual(self.raw_control(req), want)
        # the largest request taken, and CRLF
        self.assertEqual(self.raw_control(b'WHO ' + b'z' * 1020 + b'\n'), b'OK\n')
        self.assertEqual(self.raw_control(b'WHO nobody@example.org\r\n'), b'OK\n')
        # silent clients are closed after control_timeout; while two are
        # open (control_max_connections), a third is turned away
        quiet = []
        for _ in range(2):
            q = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            q.settimeout(30)
            q.connect(self.sock_path)
            quiet.append(q)
        self.assertEqual(self.raw_control(b'WHO\n'), b'ERR busy: too many control connections\n')
        for q in quiet:
            self.assertEqual(q.recv(100), b'')  # closed by coffred, nothing said
            q.close()
        self.assertIn('timed out', self.server.log())
        # half a request, then gone
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.sock_path)
        s.sendall(b'WH')
        s.close()
        rc, out, err = self.server.ctl('who')
        self.assertEqual(rc, 0, err)
        self.assertServerAlive()


class ControlOff(ServerTestCase):
    """control_socket empty: no socket, coffrectl says coffred is not there,
    and user disable works as before."""
    CONF = {'control_socket': ''}

    def test_off(self):
        self.server.add_user('off@example.org', PASS)
        rc, _, err = self.server.ctl('who')
        self.assertEqual(rc, 7)
        self.assertIn('not running', err)
        rc, out, err = self.server.ctl('user', 'disable', 'off@example.org')
        self.assertEqual((rc, out, err), (0, 'disabled off@example.org\n', ''))


if __name__ == '__main__':
    unittest.main()
