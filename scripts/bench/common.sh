# Shell shared by scripts/bench/imap and scripts/bench/bigfolder (sourced, not
# run): a throwaway work directory, the builds, coffred and Dovecot (IMAPS)
# started side by side with the same certificate, their memory and CPU, and
# the machine's load beside each figure.
#
# The sourcing script sets ROOT and BUILD, then calls bench_init PREFIX.
# Needs root for Dovecot (it drops to its own users).

PASS=${PASS:-'bench password 12345'}
COFFRED_PID=
DOVECOT_PID=
HAVE_DOVECOT=0
AS_ROOT=0
[ "$(id -u)" = 0 ] && AS_ROOT=1

bench_init() { # PREFIX: WORK, the cleanup on exit, the open-file limit
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 755 "$WORK"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    # client sockets here and as many in the server: root may raise its
    # hard limit (up to fs.nr_open) to BENCH_NOFILE
    local hard want=${BENCH_NOFILE:-65536}
    [ "$AS_ROOT" = 1 ] && ulimit -Hn "$want" 2>/dev/null || true
    hard=$(ulimit -Hn)
    [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ] && want=$hard
    ulimit -n "$want"
    NOFILE=$want
}

bench_cleanup() {
    set +e
    if [ -n "$COFFRED_PID" ]; then kill "$COFFRED_PID" 2>/dev/null; wait "$COFFRED_PID" 2>/dev/null; fi
    [ -n "$DOVECOT_PID" ] && stop_dovecot
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 300); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
machine_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }
# Before a measured phase: writes back what is dirty, then waits until the
# whole machine has used under 0.15 of a CPU for 3 seconds in a row (at
# most 3 minutes) and at least MIN seconds passed (default 0); prints the
# seconds waited. Files written or removed just before (a generated input,
# a previous run's work directory) keep the disk busy for a while, and the
# phase measured meanwhile carries it.
wait_quiet() { # [MIN]
    local t0 still=0 last now min=${1:-0}
    t0=$(date +%s)
    sync
    last=$(machine_busy | cut -d' ' -f1)
    while { [ "$still" -lt 3 ] || [ $(($(date +%s) - t0)) -lt "$min" ]; } &&
        [ $(($(date +%s) - t0)) -lt $((180 + min)) ]; do
        sleep 1
        now=$(machine_busy | cut -d' ' -f1)
        if awk -v a="$last" -v b="$now" -v hz="$(getconf CLK_TCK)" 'BEGIN { exit !((b - a) / hz < 0.15) }'; then
            still=$((still + 1))
        else
            still=0
        fi
        last=$now
    done
    echo $(($(date +%s) - t0))
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# every process of this Dovecot instance (the master and its descendants):
# their ids, their memory, or their CPU seconds (with reaped children's);
# one pass over /proc (10,000 processes)
DOVECOT_PY='
import os, sys
root = int(sys.argv[1])
kids = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            with open("/proc/%s/stat" % p) as f:
                st = f.read().rsplit(")", 1)[1].split()
            kids.setdefault(int(st[1]), []).append(int(p))
        except OSError:
            pass
todo, allp = [root], []
while todo:
    p = todo.pop()
    allp.append(p)
    todo.extend(kids.get(p, []))
if sys.argv[2] == "pids":
    print(" ".join(map(str, allp)))
    sys.exit(0)
if sys.argv[2] == "cpu":
    t = 0
    for p in allp:
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read().rsplit(")", 1)[1].split()
            t += sum(int(x) for x in st[11:15])
        except OSError:
            pass
    print("%.2f" % (t / os.sysconf("SC_CLK_TCK")))
    sys.exit(0)
rss = pss = 0
for p in allp:
    try:
        with open("/proc/%d/status" % p) as f:
            rss += sum(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        with open("/proc/%d/smaps_rollup" % p) as f:
            pss += sum(int(l.split()[1]) for l in f if l.startswith("Pss:"))
    except OSError:
        pass
print(rss, pss, len(allp))
'
dovecot_pids() { python3 -c "$DOVECOT_PY" "$DOVECOT_PID" pids; }
dovecot_mem() { python3 -c "$DOVECOT_PY" "$DOVECOT_PID" mem; } # "rss_kb pss_kb nprocs"
coffre_mem() { echo "$(rss_kb "$COFFRED_PID") $(pss_kb "$COFFRED_PID") 1"; }
# CPU seconds a server has used so far: coffred, or Dovecot's whole tree
server_cpu() { # coffre|dovecot
    if [ "$1" = coffre ]; then
        awk -v t="$(getconf CLK_TCK)" '{printf "%.2f\n", ($14 + $15) / t}' "/proc/$COFFRED_PID/stat"
    else
        python3 -c "$DOVECOT_PY" "$DOVECOT_PID" cpu
    fi
}

# The machine's load beside a figure: phase_begin before, phase_end after;
# phase_end prints "SERVER_CPU_S OTHER_CPU_S LOADAVG1" (OTHER: every CPU
# second the machine spent meanwhile that was not the server's, the
# benchmark client included) and sets PHASE_NOTE to a readable form.
phase_begin() { # coffre|dovecot
    PH_SRV=$1
    PH_C0=$(server_cpu "$1")
    read -r PH_B0 PH_T0 <<<"$(machine_busy)"
    PH_W0=$(date +%s.%N)
}
phase_end() {
    local c1 b1 t1 w1
    c1=$(server_cpu "$PH_SRV")
    read -r b1 t1 <<<"$(machine_busy)"
    w1=$(date +%s.%N)
    awk -v c0="$PH_C0" -v c1="$c1" -v b0="$PH_B0" -v b1="$b1" -v w0="$PH_W0" -v w1="$w1" \
        -v hz="$(getconf CLK_TCK)" -v la="$(loadavg)" 'BEGIN {
        s = c1 - c0; o = (b1 - b0) / hz - s; if (o < 0) o = 0
        split(la, l, " ")
        printf "%.2f %.2f %s %.1f\n", s, o, l[1], w1 - w0 }'
}
# "server 1.23 s CPU, others 4.56 s, load 2.10" from phase_end's output
phase_note() { # "SRV OTHER LOAD WALL"
    awk -v a="$1" 'BEGIN { split(a, f, " ");
        printf "server %.1f s CPU, others %.1f s CPU over %.1f s, load %s", f[1], f[2], f[4], f[3] }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a ~ /^[0-9.]+$/) printf "%.2f", a / b; else print "n/a" }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }

# ---- builds and certificate ----
bench_build() { # coffred, coffrectl and imap_client; CERT and KEY
    if [ ! -f "$BUILD/build.ninja" ]; then
        # a warning must not stop a benchmark (CI builds with -Werror)
        meson setup "$BUILD" "$ROOT" --buildtype=release -Dwerror=false >/dev/null
    fi
    ninja -C "$BUILD" server/coffred server/coffrectl >/dev/null
    CLIENT="$WORK/imap_client"
    cc -O2 -o "$CLIENT" "$ROOT/scripts/bench/imap_client.c" -lgnutls -lpthread -lm -lz
    "$ROOT/scripts/gen-cert" "$WORK" localhost >/dev/null
    CERT="$WORK/cert.pem"
    KEY="$WORK/key.pem"
    chmod 644 "$KEY"
}

# ---- coffre ----
coffre_setup() { # writes the configuration; C, CPORT (and CLPORT: LMTP, with BENCH_LMTP=1)
    C="$WORK/coffre"
    mkdir -p "$C/data"
    CPORT=$(free_port)
    CLPORT=
    [ "${BENCH_LMTP:-0}" = 1 ] && CLPORT=$(free_port)
    cat >"$C/coffred.conf" <<EOF
data_dir = $C/data
run_user = nobody
tls_cert = $CERT
tls_key = $KEY
imap_listen =
imaps_listen = 127.0.0.1:$CPORT
pop3_listen =
pop3s_listen =
lmtp_listen = ${CLPORT:+127.0.0.1:$CLPORT}
max_connections = 100000
max_connections_per_ip = 100000
imap_max_connections_per_user_ip = 100000
EOF
    # a coffred older than the per-user+IP limit does not know the key
    if ! "$BUILD/server/coffred" -c "$C/coffred.conf" --check-config >/dev/null 2>&1; then
        sed -i '/^imap_max_connections_per_user_ip/d' "$C/coffred.conf"
    fi
}
# Adds PREFIX1..PREFIXN@bench.example (yescrypt, two at a time) and prints
# "ADDRESS ID" for each account of coffre's user list.
coffre_add_users() { # PREFIX N
    seq "$2" | xargs -P 2 -I{} sh -c 'echo "$2" | "$0" -c "$1" user add "$3{}@bench.example" \
        --password-stdin >/dev/null' "$BUILD/server/coffrectl" "$C/coffred.conf" "$PASS" "$1"
}
coffre_user_dirs() { # PREFIX: "ADDRESS DIR" for the accounts of that prefix
    "$BUILD/server/coffrectl" -c "$C/coffred.conf" user list |
        awk -v p="$1" -v d="$C/data/users" -F'\t' 'index($1, p) == 1 &&
            substr($1, length(p) + 1) ~ /^[0-9]+@/ { print $1, d "/" $2 "/Maildir" }'
}
start_coffred() {
    "$BUILD/server/coffred" -c "$C/coffred.conf" --foreground 2>>"$C/coffred.log" &
    COFFRED_PID=$!
    wait_port "$CPORT"
}
stop_coffred() {
    kill "$COFFRED_PID"
    wait "$COFFRED_PID" || true
    COFFRED_PID=
}

# ---- Dovecot (IMAPS, passwd-file with coffre's yescrypt hashes) ----
dovecot_check() { # HAVE_DOVECOT=1 when Dovecot can run here and is wanted
    DOVECOT=$(command -v dovecot || true)
    if [[ " ${BENCH_SERVERS:-coffre dovecot} " != *" dovecot "* ]]; then
        echo "BENCH_SERVERS leaves Dovecot out: no comparison"
    elif [ -z "$DOVECOT" ] || [ ! -x /usr/lib/dovecot/imap ]; then
        echo "dovecot not installed (scripts/install-deps --bench): no comparison"
    elif [ "$AS_ROOT" != 1 ]; then
        echo "not root: Dovecot needs root to start; no comparison"
    else
        HAVE_DOVECOT=1
    fi
}
# COMPRESS=DEFLATE comes from the imap_zlib plugin (it acts only on the
# COMPRESS command); LMTP (DLPORT) with BENCH_LMTP=1.
dovecot_setup() { # writes the configuration; D, DPORT (and DLPORT)
    D="$WORK/dovecot"
    mkdir -p "$D/run" "$D/state" "$D/home"
    DPORT=$(free_port)
    DLPORT=
    local protos=imap
    if [ "${BENCH_LMTP:-0}" = 1 ]; then
        DLPORT=$(free_port)
        protos="imap lmtp"
    fi
    : >"$D/passwd"
    chmod 755 "$D"
    local hib=0 procs=$((${DOVECOT_PROCESSES:-11000}))
    [ "${DOVECOT_HIBERNATE:-0}" = 1 ] && hib=10s
    cat >"$D/dovecot.conf" <<EOF
base_dir = $D/run
state_dir = $D/state
log_path = $D/dovecot.log
protocols = $protos
listen = 127.0.0.1
ssl = required
ssl_cert = <$CERT
ssl_key = <$KEY
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_cache_size = 10M
passdb {
  driver = passwd-file
  args = scheme=PLAIN $D/passwd
}
userdb {
  driver = passwd-file
  args = $D/passwd
}
mail_location = maildir:~/Maildir
first_valid_uid = 1
default_process_limit = $procs
default_client_limit = $((2 * procs))
default_vsz_limit = 1G
imap_hibernate_timeout = $hib
protocol imap {
  mail_max_userip_connections = 100000
  mail_plugins = \$mail_plugins imap_zlib
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $DPORT
  }
  # high-performance mode: long-lived login processes, one per core
  service_count = 0
  process_min_avail = 2
  process_limit = 8
  client_limit = $((procs / 2 + 100))
  vsz_limit = 1G
}
service imap {
  process_limit = $procs
  client_limit = 1
  # reuse imap processes and keep some ready: faster logins
  service_count = 100
  process_min_avail = 4
}
service lmtp {
  process_limit = 10
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${DLPORT:-0}
  }
}
service anvil {
  client_limit = $((2 * procs + 1000))
}
service auth {
  client_limit = $((2 * procs + 1000))
}
EOF
}
# Each account's password as coffre stores it, its yescrypt hash from
# coffre's accounts database ({CRYPT}: Dovecot checks it with the same
# libxcrypt), so that a login costs both servers one yescrypt; {PLAIN}
# only when coffre has no such account (BENCH_SERVERS=dovecot).
dovecot_add_users() { # PREFIX N: passwd lines; prints "ADDRESS MAILDIR"
    python3 - "$1" "$2" "$PASS" "$(id -u nobody)" "$(id -g nobody)" "$D/home" "$D/passwd" \
        "${C:-}/data/accounts.sqlite" <<'PYEOF'
import os, sqlite3, sys
prefix, n, pw, uid, gid, home, passwd, accounts = sys.argv[1:9]
hashes = {}
if os.path.exists(accounts):
    hashes = dict(sqlite3.connect('file:%s?mode=ro' % accounts, uri=True).execute(
        "SELECT address, hash FROM accounts WHERE address LIKE ? || '%'", (prefix,)))
with open(passwd, 'a') as f:
    for i in range(1, int(n) + 1):
        a = '%s%d@bench.example' % (prefix, i)
        secret = '{CRYPT}' + hashes[a] if a in hashes else '{PLAIN}' + pw
        f.write('%s:%s:%s:%s::%s/%s%d::\n' % (a, secret, uid, gid, home, prefix, i))
        print('%s %s/%s%d/Maildir' % (a, home, prefix, i))
PYEOF
}
stop_dovecot() { # the master and its descendants, by process id
    local pids
    pids=$(dovecot_pids)
    kill "$DOVECOT_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$DOVECOT_PID" 2>/dev/null || break; sleep 0.1; done
    for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
    wait "$DOVECOT_PID" 2>/dev/null || true
    DOVECOT_PID=
}
start_dovecot() {
    chown -R nobody:nogroup "$D/home"
    "$DOVECOT" -F -c "$D/dovecot.conf" &
    DOVECOT_PID=$!
    wait_port "$DPORT"
}

# Index bytes and mail bytes under an account's directory: mail is every
# file in a cur/, new/ or tmp/ folder, the index everything else.
store_sizes() { # DIR: prints "MAIL_KB INDEX_KB"
    python3 - "$1" <<'EOF'
import os, sys
mail = idx = 0
for d, _, files in os.walk(sys.argv[1]):
    inmail = os.path.basename(d) in ('cur', 'new', 'tmp')
    for f in files:
        try:
            n = os.lstat(os.path.join(d, f)).st_blocks * 512
        except OSError:
            continue
        if inmail:
            mail += n
        else:
            idx += n
print(mail // 1024, idx // 1024)
EOF
}
# How much of the index files under DIR (all but mail) is in the page
# cache: "RES_MB of SIZE_MB MB". The machine may drop page cache nobody
# has mapped for a while, so a figure measured after a pause can be one
# of reads from disk.
index_resident() { # DIR
    local files
    files=$(python3 - "$1" <<'EOF'
import os, sys
for d, _, files in os.walk(sys.argv[1]):
    if os.path.basename(d) not in ('cur', 'new', 'tmp'):
        for f in files:
            print(os.path.join(d, f))
EOF
)
    [ -n "$files" ] || { echo "0 of 0 MB"; return; }
    # shellcheck disable=SC2086
    fincore -b -n -r -o RES,SIZE $files 2>/dev/null |
        awk '{ r += $1; s += $2 } END { printf "%.1f of %.1f MB\n", r / 1048576, s / 1048576 }'
}
# The largest index files under DIR (not mail): "  NAME SIZE" lines.
index_files() { # DIR
    python3 - "$1" <<'PYEOF'
import os, sys
top = []
for d, _, files in os.walk(sys.argv[1]):
    if os.path.basename(d) in ('cur', 'new', 'tmp'):
        continue
    for f in files:
        p = os.path.join(d, f)
        try:
            top.append((os.lstat(p).st_blocks * 512, os.path.relpath(p, sys.argv[1])))
        except OSError:
            pass
for n, p in sorted(top, reverse=True)[:5]:
    print('    %-40s %10.1f MB' % (p, n / 1048576))
PYEOF
}

# ---- the login phase: client certificates and Dovecot's password stores ----
# A throw-away CA (ECDSA P-256) with an empty revocation list, and one
# client certificate per account PREFIX1..PREFIXN@bench.example (CN and
# SAN rfc822Name the address, extended key usage clientAuth), all on one
# key: DIR/ca.pem, DIR/crl.pem, DIR/ca+crl.pem (Dovecot's ssl_ca), DIR/key.pem,
# DIR/PREFIXn.pem. certtool, two at a time.
bench_client_certs() { # DIR PREFIX N
    local d=$1
    mkdir -p "$d"
    certtool --generate-privkey --key-type ecdsa --curve secp256r1 --outfile "$d/ca.key" 2>/dev/null
    printf 'cn = "coffre bench CA"\nca\ncert_signing_key\ncrl_signing_key\nexpiration_days = 30\n' \
        >"$d/ca.tmpl"
    certtool --generate-self-signed --load-privkey "$d/ca.key" --template "$d/ca.tmpl" \
        --outfile "$d/ca.pem" 2>/dev/null
    printf 'crl_next_update = 30\ncrl_number = 1\n' >"$d/crl.tmpl"
    certtool --generate-crl --load-ca-privkey "$d/ca.key" --load-ca-certificate "$d/ca.pem" \
        --template "$d/crl.tmpl" --outfile "$d/crl.pem" 2>/dev/null
    cat "$d/ca.pem" "$d/crl.pem" >"$d/ca+crl.pem"
    certtool --generate-privkey --key-type ecdsa --curve secp256r1 --outfile "$d/key.pem" 2>/dev/null
    seq "$3" | xargs -P 2 -I{} sh -c 'a="$2{}@bench.example"
        printf "cn = \"%s\"\nemail = \"%s\"\ntls_www_client\nsigning_key\nexpiration_days = 30\nserial = %d\n" \
            "$a" "$a" "$(( {} + 1000 ))" >"$1/$2{}.tmpl"
        certtool --generate-certificate --load-privkey "$1/key.pem" --load-ca-certificate "$1/ca.pem" \
            --load-ca-privkey "$1/ca.key" --template "$1/$2{}.tmpl" --outfile "$1/$2{}.pem" 2>/dev/null
        rm -f "$1/$2{}.tmpl"' _ "$d" "$2"
    chmod 644 "$d"/*.pem
}
# Dovecot's password stores for the login phase, written from coffre's
# accounts database so that both servers hold the same secrets for
# PREFIXn@bench.example: the yescrypt hash ({CRYPT}: PLAIN, LOGIN), the
# SCRAM-SHA-256 secret with coffre's salt and iteration count
# ({SCRAM-SHA-256}iter,salt,StoredKey,ServerKey: SCRAM-SHA-256, since
# Dovecot cannot check a SCRAM proof against a crypt hash), and the
# addresses without a password (EXTERNAL: the client certificate's CN).
dovecot_login_passdbs() { # PREFIX CERTDIR
    python3 - "$C/data/accounts.sqlite" "$1" "$D" <<'PYEOF'
import sqlite3, sys
db, prefix, d = sys.argv[1:4]
rows = sqlite3.connect('file:%s?mode=ro' % db, uri=True).execute(
    "SELECT address, hash, scram FROM accounts WHERE address LIKE ? || '%'", (prefix,)).fetchall()
with open(d + '/login-crypt', 'w') as c, open(d + '/login-scram', 'w') as s, \
        open(d + '/login-cert', 'w') as e:
    for addr, h, sc in rows:
        if not addr[len(prefix):].split('@')[0].isdigit():
            continue
        c.write('%s:{CRYPT}%s\n' % (addr, h))
        f = sc.split(':')  # SCRAM-SHA-256:iter:salt:StoredKey:ServerKey
        s.write('%s:{SCRAM-SHA-256}%s\n' % (addr, ','.join(f[1:])))
        e.write('%s:::::::nopassword=y\n' % addr)
PYEOF
    chmod 644 "$D"/login-crypt "$D"/login-scram "$D"/login-cert
    # the passdb block becomes three, each for its mechanisms; client
    # certificates asked for (not required) and checked against the CA and
    # its CRL; EXTERNAL takes the user name from the certificate's CN
    python3 - "$D/dovecot.conf" "$D" "$2" <<'PYEOF'
import re, sys
path, d, certs = sys.argv[1:4]
conf = open(path).read()
conf = re.sub(r'passdb \{.*?\n\}\n', '''passdb {
  driver = passwd-file
  args = scheme=CRYPT %(d)s/login-crypt
  mechanisms = plain login
}
passdb {
  driver = passwd-file
  args = %(d)s/login-scram
  mechanisms = scram-sha-256
}
passdb {
  driver = passwd-file
  args = %(d)s/login-cert
  mechanisms = external
}
''' % {'d': d}, conf, count=1, flags=re.S)
conf = conf.replace('auth_mechanisms = plain login\n',
                    'auth_mechanisms = plain login scram-sha-256 external\n'
                    'ssl_ca = <%s/ca+crl.pem\n'
                    'ssl_verify_client_cert = yes\n'
                    'ssl_require_crl = yes\n'
                    'auth_ssl_username_from_cert = yes\n'
                    'ssl_cert_username_field = commonName\n'
                    'auth_cache_verify_password_with_worker = yes\n' % certs)
open(path, 'w').write(conf)
PYEOF
}
