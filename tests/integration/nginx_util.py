"""A private nginx with its mail module (Debian's libnginx-mod-mail) in front
of coffred: IMAPS and POP3S listeners on free loopback ports, logins routed
by an auth_http service, the hop to the backends in cleartext with a PROXY
protocol header. Started as `nginx -p DIR -c CONF -e LOG -g 'daemon off;'`
with its pid file, error log and configuration in the test's own
directory; its workers run as the harness's unprivileged user.

Used by test_cluster.py and scripts/bench/cluster (through `write_conf`'s
text, so that both run the configuration the README shows).
"""
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time

import harness

NGINX = shutil.which('nginx') or '/usr/sbin/nginx'
MAIL_MODULE = '/usr/lib/nginx/modules/ngx_mail_module.so'
START_TIMEOUT = 20.0


def missing():
    """Why nginx cannot run here ('' when it can)."""
    if not os.access(NGINX, os.X_OK):
        return 'nginx is not installed (scripts/install-deps)'
    if not os.path.exists(MAIL_MODULE):
        return 'the nginx mail module is not installed (libnginx-mod-mail, scripts/install-deps)'
    return ''


def mail_conf(prefix, cert, key, auth_http, servers, user=None, extra=''):
    """The nginx.conf text. servers: list of (protocol, listen address,
    port) with protocol 'imap' or 'pop3', each over implicit TLS."""
    user = user or harness.RUN_USER
    group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    blocks = ''.join('    server {\n'
                     '        listen %s:%d ssl;\n'
                     '        protocol %s;\n'
                     '    }\n' % (addr, port, proto) for proto, addr, port in servers)
    return '''# written by tests/integration/nginx_util.py
load_module %(module)s;
worker_processes 1;
user %(user)s %(group)s;
pid %(prefix)s/nginx.pid;
error_log %(prefix)s/error.log info;
events {
    worker_connections 1024;
}
mail {
    # routing: coffred's auth_http answers Auth-Server, Auth-Port, Auth-Pass
    auth_http %(auth_http)s;
    auth_http_timeout 30s;
    # the hop to the slots: cleartext on a private network, with the
    # client's real address in a PROXY header
    proxy_protocol on;
    proxy_pass_error_message on;
    # the client side: TLS as coffre's own policy (TLS 1.2 minimum,
    # forward-secret AEAD suites only)
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;
    ssl_prefer_server_ciphers on;
    ssl_session_cache shared:MAIL:1m;
    imap_auth plain login;
    imap_capabilities IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE CONDSTORE SPECIAL-USE;
    pop3_auth plain;
    pop3_capabilities TOP UIDL RESP-CODES PIPELINING AUTH-RESP-CODE;
%(extra)s%(blocks)s}
''' % dict(module=MAIL_MODULE, user=user, group=group, prefix=prefix, auth_http=auth_http,
           cert=cert, key=key, blocks=blocks, extra=extra)


class MailProxy:
    """One nginx master (and its worker) with IMAPS and POP3S listeners on
    listen_host, free ports; auth_http is 'HOST:PORT/PATH'."""

    def __init__(self, tmp, cert, key, auth_http, listen_host=harness.HOST):
        self.dir = os.path.join(tmp, 'nginx')
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.host = listen_host
        self.cert, self.key = cert, key
        self.ports = {}
        for s in ('imaps', 'pop3s'):
            while True:
                p = harness.free_port()
                if p not in self.ports.values():
                    break
            self.ports[s] = p
        self.conf_path = os.path.join(self.dir, 'nginx.conf')
        self.log_path = os.path.join(self.dir, 'error.log')
        with open(self.conf_path, 'w') as f:
            f.write(mail_conf(self.dir, cert, key, auth_http,
                              [('imap', listen_host, self.ports['imaps']),
                               ('pop3', listen_host, self.ports['pop3s'])]))
        self.proc = None
        self.out = None

    def start(self):
        self.out = open(os.path.join(self.dir, 'stderr.log'), 'ab')
        self.proc = subprocess.Popen(
            [NGINX, '-p', self.dir, '-c', self.conf_path, '-e', self.log_path,
             '-g', 'daemon off;'], stdin=subprocess.DEVNULL, stdout=self.out,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        waiting = dict(self.ports)
        while waiting:
            if self.proc.poll() is not None:
                raise RuntimeError('nginx exited with %d during start-up\n%s'
                                   % (self.proc.returncode, self.log_tail()))
            for name, port in list(waiting.items()):
                try:
                    socket.create_connection((self.host, port), timeout=1).close()
                    del waiting[name]
                except OSError:
                    pass
            if waiting:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError('nginx does not listen on %s\n%s'
                                       % (waiting, self.log_tail()))
                time.sleep(0.05)   # polling a port that is not open yet
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        """SIGTERM (fast shutdown), then SIGKILL of the master; the
        worker follows its master."""
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                continue
        if self.out:
            self.out.close()
            self.out = None

    def log(self):
        return harness.read_log(self.log_path) + harness.read_log(
            os.path.join(self.dir, 'stderr.log'))

    def log_tail(self, n=40):
        lines = self.log().splitlines()
        return '---- nginx log (%s) ----\n%s\n---- end ----' % (self.log_path,
                                                               '\n'.join(lines[-n:]))

    def connect(self, service, source=None, timeout=harness.IO_TIMEOUT):
        """A harness.Conn over TLS to one of nginx's listeners, from source
        (a loopback address: the client's address as nginx sees it)."""
        sock = socket.create_connection((self.host, self.ports[service]), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        sock = harness.client_context(self.cert).wrap_socket(sock, server_hostname='localhost')
        return harness.Conn(sock, timeout)
