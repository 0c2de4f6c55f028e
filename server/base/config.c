/* Configuration: the table of every setting and limit with its default
 * (this is the one place they live), and the parser of the `key = value`
 * file that works from it. Each row has a line in the README's
 * configuration table, under the heading of its group, with the same
 * default (tests/integration/test_config_keys.py checks it). */
#include "server/base/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void trim(char **s)
{
    char *p = *s, *e;
    while (*p && isspace((unsigned char)*p))
        p++;
    e = p + strlen(p);
    while (e > p && isspace((unsigned char)e[-1]))
        *--e = '\0';
    *s = p;
}

int conf_parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    uint64_t mul = 1;

    if (!*s || *s == '-' || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    if (*end) {
        switch (tolower((unsigned char)*end)) {
        case 'k':
            mul = 1ull << 10;
            break;
        case 'm':
            mul = 1ull << 20;
            break;
        case 'g':
            mul = 1ull << 30;
            break;
        default:
            return -1;
        }
        end++;
        if (*end == 'b' || *end == 'B')
            end++;
        if (*end)
            return -1;
    }
    if (v > UINT64_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

int conf_parse_duration_ms(const char *s, unsigned *out)
{
    char *end;
    unsigned long long v;
    unsigned long long mul = 1000; /* plain numbers are seconds */

    if (!*s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    if (!strcmp(end, "ms"))
        mul = 1;
    else if (!strcmp(end, "s") || !*end)
        mul = 1000;
    else if (!strcmp(end, "m") || !strcmp(end, "min"))
        mul = 60000;
    else if (!strcmp(end, "h"))
        mul = 3600000;
    else
        return -1;
    if (v > UINT_MAX / mul)
        return -1;
    *out = (unsigned)(v * mul);
    return 0;
}

static int parse_duration_min(const char *s, unsigned min_ms, unsigned *out)
{
    unsigned v;
    if (conf_parse_duration_ms(s, &v) < 0 || v < min_ms)
        return -1;
    *out = v;
    return 0;
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    uint64_t v;
    if (conf_parse_size(s, &v) < 0 || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcmp(s, "1") ||
        !strcasecmp(s, "on")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(s, "no") || !strcasecmp(s, "false") || !strcmp(s, "0") ||
        !strcasecmp(s, "off")) {
        *out = false;
        return 0;
    }
    return -1;
}

/* "ADDR:PORT", "[v6]:PORT", "*:PORT" (both families) or "unix:/path". */
static int parse_one_addr(struct conf_addr_list *l, const char *item, bool allow_unix, char *err,
                          size_t errlen)
{
    char host[64];
    const char *port_s;
    char *end;
    unsigned long port;

    if (l->n >= CONF_MAX_ADDRS) {
        snprintf(err, errlen, "too many addresses (at most %d)", CONF_MAX_ADDRS);
        return -1;
    }
    if (!strncmp(item, "unix:", 5)) {
        struct conf_addr *a = &l->a[l->n];
        if (!allow_unix) {
            snprintf(err, errlen, "unix sockets are only for lmtp_listen: %s", item);
            return -1;
        }
        if (item[5] != '/' || strlen(item + 5) >= sizeof(a->path)) {
            snprintf(err, errlen, "unix socket needs an absolute path under 108 bytes: %s", item);
            return -1;
        }
        memset(a, 0, sizeof(*a));
        a->is_unix = true;
        snprintf(a->path, sizeof(a->path), "%s", item + 5);
        snprintf(a->text, sizeof(a->text), "%s", item);
        l->n++;
        return 0;
    }
    if (item[0] == '[') {
        const char *rb = strchr(item, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - item - 1) >= sizeof(host))
            goto bad;
        memcpy(host, item + 1, rb - item - 1);
        host[rb - item - 1] = '\0';
        port_s = rb + 2;
    } else {
        const char *colon = strrchr(item, ':');
        if (!colon || (size_t)(colon - item) >= sizeof(host) || strchr(item, ':') != colon)
            goto bad;
        memcpy(host, item, colon - item);
        host[colon - item] = '\0';
        port_s = colon + 1;
    }
    if (!isdigit((unsigned char)*port_s))
        goto bad;
    errno = 0;
    port = strtoul(port_s, &end, 10);
    if (errno || *end || port == 0 || port > 65535)
        goto bad;

    if (!strcmp(host, "*")) {
        char v4[32], v6[32];
        snprintf(v4, sizeof(v4), "0.0.0.0:%lu", port);
        snprintf(v6, sizeof(v6), "[::]:%lu", port);
        if (parse_one_addr(l, v4, false, err, errlen) < 0)
            return -1;
        return parse_one_addr(l, v6, false, err, errlen);
    }

    {
        struct conf_addr *a = &l->a[l->n];
        memset(a, 0, sizeof(*a));
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
        if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            s4->sin_port = htons((uint16_t)port);
        } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons((uint16_t)port);
        } else {
            goto bad;
        }
        snprintf(a->text, sizeof(a->text), "%s", item);
        l->n++;
    }
    return 0;
bad:
    snprintf(err, errlen, "not an ADDR:PORT or [V6ADDR]:PORT address: %s", item);
    return -1;
}

static int parse_addr_list(struct conf_addr_list *l, const char *v, bool allow_unix, char *err,
                           size_t errlen)
{
    char buf[1024];
    char *save = NULL, *tok;

    if (strlen(v) >= sizeof(buf)) {
        snprintf(err, errlen, "address list too long");
        return -1;
    }
    snprintf(buf, sizeof(buf), "%s", v);
    l->n = 0;
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        trim(&tok);
        if (!*tok)
            continue;
        if (parse_one_addr(l, tok, allow_unix, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* A list of networks (CIDR) into nets[0..*n). */
static int parse_net_list(struct conf_net *nets, size_t *count, const char *v, char *err,
                          size_t errlen)
{
    char buf[2048];
    char *save = NULL, *tok;

    if (strlen(v) >= sizeof(buf)) {
        snprintf(err, errlen, "network list too long");
        return -1;
    }
    snprintf(buf, sizeof(buf), "%s", v);
    *count = 0;
    for (tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        struct conf_net *n;
        char *slash = strchr(tok, '/');
        unsigned long prefix;
        char *end;

        if (*count >= CONF_MAX_NETS) {
            snprintf(err, errlen, "too many networks (at most %d)", CONF_MAX_NETS);
            return -1;
        }
        n = &nets[*count];
        memset(n, 0, sizeof(*n));
        if (slash)
            *slash = '\0';
        if (inet_pton(AF_INET, tok, n->addr) == 1) {
            n->family = AF_INET;
            prefix = 32;
        } else if (inet_pton(AF_INET6, tok, n->addr) == 1) {
            n->family = AF_INET6;
            prefix = 128;
        } else {
            snprintf(err, errlen, "not an IP address: %s", tok);
            return -1;
        }
        if (slash) {
            unsigned long p;
            errno = 0;
            p = strtoul(slash + 1, &end, 10);
            if (errno || *end || !slash[1] || p > prefix) {
                snprintf(err, errlen, "bad prefix length: %s", slash + 1);
                return -1;
            }
            prefix = p;
        }
        n->prefix = (unsigned)prefix;
        (*count)++;
    }
    return 0;
}

static int parse_nets(struct conf *c, const struct conf_setting *s, const char *v, char *err,
                      size_t errlen)
{
    (void)s;
    return parse_net_list(c->plaintext_auth_networks, &c->n_plaintext_nets, v, err, errlen);
}

static int parse_proxy_nets(struct conf *c, const struct conf_setting *s, const char *v, char *err,
                            size_t errlen)
{
    (void)s;
    return parse_net_list(c->proxy_networks, &c->n_proxy_nets, v, err, errlen);
}

/* The address bytes of an IPv4 or IPv6 sockaddr, a v4-mapped IPv6
 * address as the IPv4 one it carries. Returns the family, 0 for others. */
static int addr_bytes(const struct sockaddr *addr, const uint8_t **bytes)
{
    if (addr->sa_family == AF_INET) {
        *bytes = (const uint8_t *)&((const struct sockaddr_in *)addr)->sin_addr;
        return AF_INET;
    }
    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)addr;
        *bytes = (const uint8_t *)&s6->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            *bytes += 12;
            return AF_INET;
        }
        return AF_INET6;
    }
    return 0;
}

bool conf_net_match(const struct conf_net *nets, size_t n, const struct sockaddr *addr)
{
    const uint8_t *a;
    int fam = addr_bytes(addr, &a);

    if (!fam)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned bits = nets[i].prefix, full = bits / 8, rest = bits % 8;
        if (nets[i].family != fam)
            continue;
        if (memcmp(nets[i].addr, a, full))
            continue;
        if (rest && ((nets[i].addr[full] ^ a[full]) & (0xff << (8 - rest)) & 0xff))
            continue;
        return true;
    }
    return false;
}

int conf_client_group(const struct sockaddr *addr, unsigned v4_prefix, unsigned v6_prefix,
                      uint8_t key[16])
{
    const uint8_t *a;
    int fam = addr ? addr_bytes(addr, &a) : 0;
    unsigned bits, start;

    memset(key, 0, 16);
    if (fam == AF_INET) {
        /* as a v4-mapped IPv6 address, so both spellings group together */
        key[10] = key[11] = 0xff;
        memcpy(key + 12, a, 4);
        start = 12;
        bits = v4_prefix > 32 ? 32 : v4_prefix;
    } else if (fam == AF_INET6) {
        memcpy(key, a, 16);
        start = 0;
        bits = v6_prefix > 128 ? 128 : v6_prefix;
    } else {
        return -1;
    }
    /* clear the bits past the prefix */
    for (unsigned i = start + bits / 8; i < 16; i++) {
        unsigned keep = i == start + bits / 8 ? bits % 8 : 0;
        key[i] &= (uint8_t)(0xff00u >> keep);
    }
    return fam;
}

/* ---- value checks and parsers named by rows */

static bool is_absolute(const char *v)
{
    return v[0] == '/';
}

static bool is_log_format(const char *v)
{
    return !strcmp(v, "text") || !strcmp(v, "json");
}

static bool is_client_cert_mode(const char *v)
{
    return !strcmp(v, "none") || !strcmp(v, "optional") || !strcmp(v, "required");
}

static bool is_log_target(const char *v)
{
    return !strcmp(v, "stderr") || !strcmp(v, "syslog") || v[0] == '/';
}

static bool is_empty_or_absolute(const char *v)
{
    return !v[0] || v[0] == '/';
}

/* An origin-form path without query: what auth_http_path may be. */
static bool is_http_path(const char *v)
{
    if (v[0] != '/')
        return false;
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '?' || *p == '#')
            return false;
    return true;
}

static bool is_not_empty(const char *v)
{
    return v[0] != '\0';
}

static bool is_accounts_backend(const char *v)
{
    return !strcmp(v, "sqlite") || !strcmp(v, "postgresql");
}

/* Empty, or a slot name: what auth_slot_name_ok() accepts. */
static bool is_slot_name(const char *v)
{
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
            return false;
    return true;
}

static bool is_domain_name(const char *v)
{
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
            return false;
    return true;
}

/* Characters that may separate user and detail: punctuation that an
 * address carries unquoted. */
static bool is_delimiter(const char *v)
{
    for (const char *p = v; *p; p++)
        if (!ispunct((unsigned char)*p) || *p == '@' || *p == '"' || *p == '\\')
            return false;
    return true;
}

/* The shared namespace's prefix: empty, or levels of printable ASCII
 * (no wildcard, quote or backslash, not INBOX) each ending in '/'. */
static bool is_ns_prefix(const char *v)
{
    size_t n = strlen(v);
    if (!n)
        return true;
    if (v[0] == '/' || v[n - 1] != '/' || strstr(v, "//") || !strncasecmp(v, "INBOX/", 6))
        return false;
    for (const char *p = v; *p; p++)
        if (*p < 0x21 || *p > 0x7e || *p == '%' || *p == '*' || *p == '"' || *p == '\\' ||
            *p == '&')
            return false;
    return true;
}

/* A file mode in octal, such as 0660. */
static int parse_mode(struct conf *c, const struct conf_setting *s, const char *v, char *err,
                      size_t errlen)
{
    char *end;
    unsigned long m;

    errno = 0;
    m = strtoul(v, &end, 8);
    if (errno || *end || !*v || m > 0777) {
        snprintf(err, errlen, "%s must be an octal mode such as 0660", s->name);
        return -1;
    }
    *(unsigned *)((char *)c + s->off) = (unsigned)m;
    return 0;
}

/* ---- the table */

#define FIELD(f) .off = offsetof(struct conf, f), .size = sizeof(((struct conf *)0)->f)
#define ROW(n, d, g) .name = n, .def = d, .group = g
#define BOOL(f) .type = CONF_BOOL, FIELD(f)
#define UINT(f, lo, hi) .type = CONF_UINT, FIELD(f), .min = lo, .max = hi
#define SIZE(f, lo, hi) .type = CONF_SIZE, FIELD(f), .min = lo, .max = hi
#define DURATION(f, lo_ms) .type = CONF_DURATION, FIELD(f), .min = lo_ms
#define SECONDS(f) .type = CONF_SECONDS, FIELD(f)
#define STRING(f) .type = CONF_STRING, FIELD(f)
#define PATH(f) .type = CONF_PATH, FIELD(f)
#define ADDRS(f) .type = CONF_ADDRS, FIELD(f)
#define CUSTOM(f, fn) .type = CONF_CUSTOM, FIELD(f), .parse = fn

#define KB 1024ull
#define MB (1024ull * 1024)
#define GB (1024ull * 1024 * 1024)
#define MIN (60u * 1000)

/* GnuTLS priority: TLS 1.2 and 1.3, ECDHE only (X25519, P-256, P-384; no
 * finite-field groups), AEAD ciphers, no SHA-1 signatures. */
#define DEFAULT_PRIORITY                                                                           \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:"                  \
    "-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD:"                     \
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:"                                  \
    "-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:%SERVER_PRECEDENCE"

const struct conf_setting conf_settings[] = {
    /* ---- General */
    {ROW("data_dir", "/var/lib/coffre", "General"), PATH(data_dir), .valid = is_absolute,
     .errmsg = "data_dir must be an absolute path", .doc = "accounts database and mail"},
    {ROW("run_user", "coffre", "General"), STRING(run_user),
     .doc = "user coffred and coffrectl become when started as root"},
    {ROW("thread_pool_size", "8", "General"), UINT(thread_pool_size, 1, 128),
     .doc = "threads for disk work (fsync-bound work scales to about 8 on one disk)"},
    {ROW("max_jobs_per_account", "2", "General"), UINT(max_jobs_per_account, 1, 127),
     .doc = "pool threads one account's work may take at once; the rest waits in its queue "
            "(below thread_pool_size)"},
    {ROW("auth_threads", "2", "General"), UINT(auth_threads, 1, 64),
     .doc = "threads of their own for password checks, so logins never wait behind mail work"},
    {ROW("shutdown_timeout", "3s", "General"), DURATION(shutdown_timeout_ms, 0),
     .doc = "how long SIGTERM and closing wait for pending writes to drain"},
    {ROW("log_debug", "no", "General"), BOOL(log_debug), .doc = "debug logging"},
    {ROW("metrics", "yes", "General"), BOOL(metrics),
     .doc = "keep the counters GET /metrics and `coffrectl stats` show; `no` counts nothing "
            "(read at start)"},
    {ROW("log_format", "text", "General"), STRING(log_format), .valid = is_log_format,
     .errmsg = "log_format must be text or json",
     .doc = "log lines as text or one JSON object each"},
    {ROW("log_target", "stderr", "General"), STRING(log_target), .valid = is_log_target,
     .errmsg = "log_target must be stderr, syslog or an absolute file path",
     .doc = "where log lines go: stderr, syslog (facility mail) or a file, reopened on SIGHUP"},
    {ROW("log_queue_size", "1M", "General"), SIZE(log_queue_size, 64 * KB, 1 * GB),
     .doc = "lines for syslog or a file wait for the log writer up to this many bytes; past "
            "it they are dropped and counted"},
    {ROW("audit_log", "", "General"), PATH(audit_log), .valid = is_empty_or_absolute,
     .errmsg = "audit_log must be an absolute path",
     .doc = "hash-chained audit log file; empty = audit lines go to the normal log only"},
    {ROW("audit_anchor_interval", "1h", "General"), DURATION(audit_anchor_interval_ms, 0),
     .doc = "how often the audit log's head (seq and hash) is written to the normal log; 0 = "
            "never"},

    /* ---- TLS */
    {ROW("tls_cert", "/etc/coffre/cert.pem", "TLS"), PATH(tls_cert),
     .doc = "PEM certificate chain"},
    {ROW("tls_key", "/etc/coffre/key.pem", "TLS"), PATH(tls_key), .doc = "PEM key of tls_cert"},
    {ROW("tls_cert_rsa", "", "TLS"), PATH(tls_cert_rsa),
     .doc = "optional second certificate (RSA) for old clients"},
    {ROW("tls_key_rsa", "", "TLS"), PATH(tls_key_rsa), .doc = "key of tls_cert_rsa"},
    {ROW("tls_priority", DEFAULT_PRIORITY, "TLS"), STRING(tls_priority), .valid = is_not_empty,
     .errmsg = "tls_priority must not be empty", .doc = "GnuTLS priority string"},
    {ROW("tls_handshake_timeout", "30s", "TLS"), DURATION(tls_handshake_timeout_ms, 100),
     .doc = "a client that stalls its handshake is dropped"},
    {ROW("tls_client_ca", "", "TLS"), PATH(tls_client_ca),
     .doc = "PEM CA certificates that client certificates must chain to; reloaded on SIGHUP"},
    {ROW("tls_client_crl", "", "TLS"), PATH(tls_client_crl),
     .doc = "revocation list (PEM or DER) of tls_client_ca; reloaded on SIGHUP"},
    {ROW("imap_client_cert", "none", "TLS"), STRING(imap_client_cert), .valid = is_client_cert_mode,
     .errmsg = "imap_client_cert must be none, optional or required",
     .doc = "ask imap clients for a certificate (SASL EXTERNAL, require_client_cert)"},
    {ROW("imaps_client_cert", "none", "TLS"), STRING(imaps_client_cert),
     .valid = is_client_cert_mode, .errmsg = "imaps_client_cert must be none, optional or required",
     .doc = "ask imaps clients for a certificate (SASL EXTERNAL, require_client_cert)"},
    {ROW("pop3_client_cert", "none", "TLS"), STRING(pop3_client_cert), .valid = is_client_cert_mode,
     .errmsg = "pop3_client_cert must be none, optional or required",
     .doc = "ask pop3 clients for a certificate (SASL EXTERNAL, require_client_cert)"},
    {ROW("pop3s_client_cert", "none", "TLS"), STRING(pop3s_client_cert),
     .valid = is_client_cert_mode, .errmsg = "pop3s_client_cert must be none, optional or required",
     .doc = "ask pop3s clients for a certificate (SASL EXTERNAL, require_client_cert)"},

    /* ---- Connections, for every protocol */
    {ROW("max_connections", "50000", "Connections"), UINT(max_connections, 1, 1000000),
     .doc = "connections in all (lowered at start to what the open-file limit leaves beside "
            "the stores, mail_max_open, and said so in the log)"},
    {ROW("max_connections_per_ip", "200", "Connections"), UINT(max_connections_per_ip, 1, 1000000),
     .doc = "connections from one remote address"},
    {ROW("client_prefix_v4", "32", "Connections"), UINT(client_prefix_v4, 8, 32),
     .doc = "IPv4 clients sharing this prefix count as one client (per-address limits)"},
    {ROW("client_prefix_v6", "64", "Connections"), UINT(client_prefix_v6, 16, 128),
     .doc = "IPv6 clients sharing this prefix count as one client (one site usually owns a /64, "
            "and the login throttle counts it as one)"},
    {ROW("max_bad_commands", "20", "Connections"), UINT(max_bad_commands, 1, 100000),
     .doc = "BAD/-ERR replies before disconnecting"},
    {ROW("max_line_length", "64k", "Connections"), SIZE(max_line_length, 1 * KB, 16 * MB),
     .errmsg = "max_line_length must be a size from 1k to 16M",
     .doc = "longest command line, CRLF included"},
    {ROW("max_line_length_prelogin", "8k", "Connections"),
     SIZE(max_line_length_prelogin, 1 * KB, 16 * MB),
     .doc = "longest line before login (at most max_line_length), literals included"},
    {ROW("max_message_size", "50M", "Connections"), SIZE(max_message_size, 1 * KB, 4 * GB),
     .doc = "largest message (APPEND, LMTP)"},
    {ROW("login_timeout", "60s", "Connections"), DURATION(login_timeout_ms, 1000),
     .doc = "time to log in after connecting"},

    /* ---- Authentication */
    {ROW("default_domain", "", "Authentication"), STRING(default_domain), .valid = is_domain_name,
     .errmsg = "default_domain is not a domain name: ", .errmsg_value = true,
     .doc = "domain added to a login name without @; empty refuses such names"},
    {ROW("plaintext_auth_networks", "", "Authentication"),
     CUSTOM(plaintext_auth_networks, parse_nets),
     .doc = "networks (CIDR) allowed to log in without TLS"},
    {ROW("proxy_networks", "", "Authentication"), CUSTOM(proxy_networks, parse_proxy_nets),
     .doc = "proxies (CIDR) that may send a PROXY header (v1 or v2), log clients in without "
            "TLS or with a login ticket, and ask auth_http_path"},
    {ROW("proxy_header_wait", "200ms", "Authentication"), DURATION(proxy_header_wait_ms, 10),
     .doc = "on IMAP, POP3 and LMTP without implicit TLS, how long a connection from "
            "proxy_networks may take to begin its PROXY header before it is greeted as a "
            "direct client"},
    {ROW("login_failure_delay", "1s", "Authentication"), DURATION(login_failure_delay_ms, 0),
     .doc = "after a failed login, the client's address group and the account wait this long "
            "before their next login is checked; doubles per further failure"},
    {ROW("login_failure_delay_max", "15s", "Authentication"),
     DURATION(login_failure_delay_max_ms, 0), .doc = "cap of that delay"},
    {ROW("login_max_pending_per_ip", "20", "Authentication"),
     UINT(login_max_pending_per_ip, 1, 100000),
     .doc = "logins waiting or being checked at once from one address group; beyond, a "
            "temporary error"},
    {ROW("login_max_pending_per_user", "10", "Authentication"),
     UINT(login_max_pending_per_user, 1, 100000),
     .doc = "logins waiting or being checked at once for one account; beyond, a temporary error"},
    {ROW("scram_iterations", "10000", "Authentication"), UINT(scram_iterations, 4096, 10000000),
     .doc = "PBKDF2 iterations of the SCRAM-SHA-256 secrets made when a password is set or "
            "first used; each client login computes as many"},
    {ROW("auth_cache_ttl", "1h", "Authentication"), SECONDS(auth_cache_ttl_s),
     .errmsg = "auth_cache_ttl must be a duration (0 disables the cache)",
     .doc = "how long a verified password is remembered (as a keyed hash); 0 = never"},
    {ROW("max_app_passwords", "20", "Authentication"), UINT(max_app_passwords, 1, 1000),
     .doc = "app passwords one account may have (coffrectl user app-password add)"},
    {ROW("ticket_key_file", "", "Authentication"), PATH(ticket_key_file),
     .valid = is_empty_or_absolute, .errmsg = "ticket_key_file must be an absolute path or empty",
     .doc = "file of at least 32 random bytes, not readable by others, shared by the auth_http "
            "service and every slot: login tickets are signed with it; empty = no tickets"},
    {ROW("ticket_lifetime", "30s", "Authentication"), SECONDS(ticket_lifetime_s),
     .doc = "how long a login ticket made by auth_http is good for"},

    /* ---- Account directory */
    {ROW("accounts_backend", "sqlite", "Account directory"), STRING(accounts_backend),
     .valid = is_accounts_backend, .errmsg = "accounts_backend must be sqlite or postgresql",
     .doc = "where the accounts live: an SQLite file, or a PostgreSQL database shared by "
            "several coffred slots (read at start)"},
    {ROW("accounts_dsn", "", "Account directory"), STRING(accounts_dsn),
     .doc = "sqlite: absolute path of the accounts file (empty = <data_dir>/accounts.sqlite); "
            "postgresql: libpq connection string (connect_timeout=3 added when absent)"},
    {ROW("slot_name", "", "Account directory"), STRING(slot_name), .valid = is_slot_name,
     .errmsg = "slot_name may hold letters, digits, '.', '_' and '-' only",
     .doc = "this coffred's slot; empty = not sharded (every account is served here)"},
    {ROW("accounts_pool_size", "8", "Account directory"), UINT(accounts_pool_size, 1, 256),
     .doc = "connections to PostgreSQL one process keeps at most (postgresql only)"},

    /* ---- Mail storage */
    {ROW("mail_keep_open", "60s", "Mail storage"), DURATION(mail_keep_open_ms, 0),
     .doc = "an account's index stays open this long after its last session (clients reconnect)"},
    {ROW("mail_keep_open_max", "1000", "Mail storage"), UINT(mail_keep_open_max, 0, 1000000),
     .doc = "accounts kept open so at most"},
    {ROW("mail_delivery_keep_max", "256", "Mail storage"), UINT(mail_delivery_keep_max, 0, 1000000),
     .doc = "accounts no session has open whose delivery connection (3 descriptors) stays open "
            "after a delivery, at most mail_keep_open, for the next one (lowered to what an "
            "eighth of the open-file limit holds); 0 = closed at once"},
    {ROW("mail_delivery_journal", "yes", "Mail storage"), BOOL(mail_delivery_journal),
     .doc = "a delivery into the INBOX of an account no session has open is written to the "
            "data directory's delivery journal (deliveries.sqlite; one commit for many "
            "accounts), and its index takes it in, giving its UID, at its next open or change; "
            "no = into the account's index at once"},
    {ROW("mail_delivery_journal_max", "64", "Mail storage"),
     UINT(mail_delivery_journal_max, 1, 1000000),
     .doc = "deliveries of one account that wait in the delivery journal at most; the next goes "
            "into its index, which takes them in first (what a login has to take in at most)"},
    {ROW("mail_idle_close", "30s", "Mail storage"), DURATION(mail_idle_close_ms, 0),
     .doc = "an account whose sessions all waited this long (IMAP IDLE, no command) closes its "
            "index files until the next command or delivery; 0 = never"},
    {ROW("mail_quiet_trim", "2s", "Mail storage"), DURATION(mail_quiet_trim_ms, 0),
     .doc = "an account unused this long gives back its read connections and cached pages, its "
            "index staying open; 0 = never"},
    {ROW("mail_max_open", "0", "Mail storage"), UINT(mail_max_open, 0, 1000000),
     .doc = "accounts with their index files open at most (0: half of the open-file limit less "
            "64, less 3 for each delivery connection mail_delivery_keep_max keeps, divided by "
            "8, and 1000 at most); past it a login waits for one to close or fall asleep"},
    {ROW("mail_open_wait", "30s", "Mail storage"), DURATION(mail_open_wait_ms, 0),
     .doc = "how long a login waits for room under mail_max_open (or for descriptors) before "
            "NO [UNAVAILABLE]; the commands and deliveries waking an account asleep wait as long, "
            "then run past the bound"},
    {ROW("mail_sort_cache", "64M", "Mail storage"), SIZE(mail_sort_cache, 0, 64 * GB),
     .doc = "bytes of sort keys and orders an open account keeps in memory for SORT and THREAD "
            "(its mailboxes used longest ago go first); 0 = none, each reads the index"},
    {ROW("mail_max_query_steps", "50M", "Mail storage"),
     UINT(mail_max_query_steps, 10000, 4000000000u),
     .doc = "SQLite steps one index read of a command may take (a costly SEARCH); then NO [LIMIT]"},
    {ROW("mail_max_header_searches", "32", "Mail storage"),
     UINT(mail_max_header_searches, 1, 100000),
     .doc = "SEARCH HEADER keys on fields outside the index (they read the message files)"},
    {ROW("mail_max_mailboxes", "10000", "Mail storage"), UINT(mail_max_mailboxes, 10, 10000000),
     .doc = "mailboxes of one account: CREATE and RENAME past it answer NO [LIMIT]"},
    {ROW("mail_max_subscriptions", "10000", "Mail storage"),
     UINT(mail_max_subscriptions, 1, 10000000),
     .doc = "subscriptions of one account: SUBSCRIBE past it answers NO [LIMIT]"},
    {ROW("acl_max_entries", "100", "Mail storage"), UINT(acl_max_entries, 1, 100000),
     .doc = "entries of one mailbox's access control list: SETACL past it answers NO [LIMIT]"},

    /* ---- IMAP */
    {ROW("imap_listen", "*:143", "IMAP"), ADDRS(imap_listen), .doc = "IMAP with STARTTLS"},
    {ROW("imaps_listen", "*:993", "IMAP"), ADDRS(imaps_listen), .doc = "IMAP over TLS"},
    {ROW("imap_idle_timeout", "30m", "IMAP"), DURATION(imap_idle_timeout_ms, 30 * MIN),
     .doc = "autologout (RFC 3501: at least 30 minutes)"},
    {ROW("imap_output_timeout", "2m", "IMAP"), DURATION(imap_output_timeout_ms, 1000),
     .doc = "a client that stops reading its responses that long is disconnected"},
    {ROW("max_literal_size", "64k", "IMAP"), SIZE(max_literal_size, 1 * KB, 1 * GB),
     .doc = "largest literal other than APPEND's message"},
    {ROW("imap_literal_plus", "yes", "IMAP"), BOOL(imap_literal_plus),
     .doc =
         "advertise LITERAL+ beside LITERAL-; no: non-synchronizing literals stop at 4096 bytes"},
    {ROW("imap_max_nesting", "100", "IMAP"), UINT(imap_max_nesting, 2, 10000),
     .doc = "deepest parenthesized list or search key"},
    {ROW("imap_catenate_max_parts", "100", "IMAP"), UINT(imap_catenate_max_parts, 1, 100000),
     .doc = "TEXT and URL parts of one message built by APPEND's CATENATE (RFC 4469)"},
    {ROW("imap_url_max_length", "1024", "IMAP"), UINT(imap_url_max_length, 64, 65536),
     .doc = "longest IMAP URL a CATENATE part may give (RFC 5092)"},
    {ROW("imap_max_connections_per_user_ip", "20", "IMAP"),
     UINT(imap_max_connections_per_user_ip, 1, 100000),
     .doc = "sessions of one account from one address (Thunderbird opens up to 5)"},
    {ROW("imap_max_commands_per_second", "1000", "IMAP"),
     UINT(imap_max_commands_per_second, 1, 1000000),
     .doc = "then the session's input waits for the next second"},
    {ROW("imap_max_pending_updates", "10000", "IMAP"), UINT(imap_max_pending_updates, 16, 10000000),
     .doc = "new/expunged UIDs queued for a session; then it resyncs from the index"},
    {ROW("imap_max_search_updates", "16", "IMAP"), UINT(imap_max_search_updates, 0, 1000),
     .doc = "searches kept up to date (RETURN (UPDATE)) per session; then * NO [NOUPDATE]"},
    {ROW("imap_notify_interval", "200ms", "IMAP"), DURATION(imap_notify_interval_ms, 0),
     .doc = "NOTIFY: at most one STATUS per mailbox per interval; the first at once"},
    {ROW("imap_max_fetch_items", "100", "IMAP"), UINT(imap_max_fetch_items, 8, 100000),
     .doc = "attributes in one FETCH (Thunderbird asks for about 6); then NO [LIMIT]"},
    {ROW("imap_vanished_keep_days", "30", "IMAP"), UINT(imap_vanished_keep_days, 0, 100000),
     .doc = "expunged UIDs are remembered for QRESYNC (VANISHED) at least this many days, "
            "and at least the imap_vanished_keep_count newest per mailbox: whichever keeps "
            "more; 0 = the count alone"},
    {ROW("imap_vanished_keep_count", "100000", "IMAP"),
     UINT(imap_vanished_keep_count, 0, 4000000000u),
     .doc = "expunged UIDs remembered per mailbox at least, whatever their age; a client "
            "resyncing from before what is forgotten is told every UID it knew that is gone"},
    {ROW("quota_warning_percent", "90", "IMAP"), UINT(quota_warning_percent, 0, 100),
     .doc = "login answers [ALERT] from this quota use; 0 = never"},
    {ROW("shared_prefix", "Shared/", "IMAP"), STRING(shared_prefix), .valid = is_ns_prefix,
     .errmsg = "shared_prefix must be empty or levels ending in '/': ", .errmsg_value = true,
     .doc = "the shared namespace (others' mailboxes shared by ACL); empty: none"},

    /* ---- POP3 */
    {ROW("pop3_listen", "*:110", "POP3"), ADDRS(pop3_listen), .doc = "POP3 with STLS"},
    {ROW("pop3s_listen", "*:995", "POP3"), ADDRS(pop3s_listen), .doc = "POP3 over TLS"},
    {ROW("pop3_idle_timeout", "10m", "POP3"), DURATION(pop3_idle_timeout_ms, 10 * MIN),
     .doc = "inactivity timeout (RFC 1939: at least 10 minutes)"},
    {ROW("pop3_max_command_length", "255", "POP3"), UINT(pop3_max_command_length, 255, 65536),
     .doc = "longest command line with CRLF (RFC 2449: 255); AUTH excepted"},

    /* ---- LMTP */
    {ROW("lmtp_listen", "127.0.0.1:24", "LMTP"), ADDRS(lmtp_listen), .unix_ok = true,
     .doc = "LMTP for the MTA (TCP or unix:/path)"},
    {ROW("lmtp_socket_mode", "0660", "LMTP"), CUSTOM(lmtp_socket_mode, parse_mode),
     .doc = "mode of an LMTP unix socket"},
    {ROW("lmtp_socket_user", "", "LMTP"), STRING(lmtp_socket_user),
     .doc = "owner given to an LMTP unix socket; empty = unchanged"},
    {ROW("lmtp_socket_group", "", "LMTP"), STRING(lmtp_socket_group),
     .doc = "group given to an LMTP unix socket; empty = unchanged"},
    {ROW("lmtp_max_recipients", "50", "LMTP"), UINT(lmtp_max_recipients, 1, 100000),
     .doc = "RCPT TO accepted per transaction (Postfix sends at most 50 by default)"},
    {ROW("recipient_delimiter", "+", "LMTP"), STRING(recipient_delimiter), .valid = is_delimiter,
     .errmsg = "recipient_delimiter must be punctuation such as + or -",
     .doc = "characters separating user and detail; empty = off"},
    {ROW("lmtp_save_to_detail_mailbox", "no", "LMTP"), BOOL(lmtp_save_to_detail_mailbox),
     .doc = "deliver user+detail into folder detail when it exists"},
    {ROW("lmtp_quota_temporary", "no", "LMTP"), BOOL(lmtp_quota_temporary),
     .doc = "over quota answers 452 4.2.2 (retry) instead of 552 5.2.2 (bounce)"},
    {ROW("lmtp_idle_timeout", "5m", "LMTP"), DURATION(lmtp_idle_timeout_ms, 1000),
     .doc = "inactivity timeout"},
    {ROW("lmtp_moved_grace", "10m", "LMTP"), DURATION(lmtp_moved_grace_ms, 1000),
     .doc = "after `coffrectl user move`, the old slot answers 451 4.2.1 (not 550 5.1.1) for "
            "so long"},

    /* ---- HTTP */
    {ROW("http_listen", "127.0.0.1:9580", "HTTP"), ADDRS(http_listen),
     .doc = "HTTP for /metrics, /health, autoconfig and autodiscover; empty = off"},
    {ROW("http_tls_listen", "", "HTTP"), ADDRS(http_tls_listen),
     .doc = "autoconfig and autodiscover over TLS from the first byte, with tls_cert (for "
            "the autoconfig. and autodiscover. names); empty = off"},
    {ROW("http_max_request_line", "8k", "HTTP"), UINT(http_max_request_line, 64, 1048576),
     .doc = "longest request line with CRLF; a longer target is answered 414"},
    {ROW("http_max_header_bytes", "16k", "HTTP"), UINT(http_max_header_bytes, 256, 1048576),
     .doc = "request line and header fields of one request; more is answered 431"},
    {ROW("http_max_headers", "64", "HTTP"), UINT(http_max_headers, 4, 10000),
     .doc = "header fields of one request; more is answered 431"},
    {ROW("http_max_body", "16k", "HTTP"), UINT(http_max_body, 0, 16 * 1048576),
     .doc = "largest request body (autodiscover's POST); more is answered 413"},
    {ROW("http_header_timeout", "10s", "HTTP"), DURATION(http_header_timeout_ms, 100),
     .doc = "a request's head and body must arrive within this from its first byte; else 408"},
    {ROW("http_idle_timeout", "60s", "HTTP"), DURATION(http_idle_timeout_ms, 100),
     .doc = "a kept-alive connection with no request for this long is closed"},
    {ROW("http_max_pipeline", "16", "HTTP"), UINT(http_max_pipeline, 1, 1000),
     .doc = "requests a client sends ahead of their answers; the last one allowed is answered "
            "with Connection: close"},
    {ROW("http_health_interval", "2s", "HTTP"), DURATION(http_health_interval_ms, 100),
     .doc = "GET /health reuses the data directory's last write probe for this long"},
    {ROW("auth_http_path", "/auth", "HTTP"), STRING(auth_http_path), .valid = is_http_path,
     .errmsg = "auth_http_path must be a path starting with /",
     .doc = "nginx mail proxy's auth_http endpoint on http_listen, answered to proxy_networks"},
    {ROW("auth_http_default_slot", "", "HTTP"), STRING(auth_http_default_slot),
     .doc = "slot given to nginx for an account that has none; empty = such logins get a "
            "temporary failure"},
    {ROW("auth_http_max_attempts", "10", "HTTP"), UINT(auth_http_max_attempts, 1, 100),
     .doc = "from this Auth-Login-Attempt on, a failed login's answer has no Auth-Wait and "
            "nginx closes the client's connection"},
    {ROW("auth_http_slot_check_timeout", "1s", "HTTP"),
     DURATION(auth_http_slot_check_timeout_ms, 0),
     .doc = "before answering OK, the slot's port must accept a TCP connection within this, "
            "else a temporary failure; 0 = no check"},
    {ROW("auth_http_slot_check_ttl", "2s", "HTTP"), DURATION(auth_http_slot_check_ttl_ms, 0),
     .doc = "how long a slot's check (up or down) is reused for other logins"},
    {ROW("autoconfig_hostname", "", "HTTP"), STRING(autoconfig_hostname),
     .doc = "server name given to mail clients by autoconfig and autodiscover; empty = the "
            "host name"},
    {ROW("autoconfig_domains", "", "HTTP"), STRING(autoconfig_domains),
     .doc = "mail domains autoconfig answers for, separated by commas or spaces; empty = any"},
    {ROW("autoconfig_smtp_hostname", "", "HTTP"), STRING(autoconfig_smtp_hostname),
     .doc = "the MTA's submission server given to mail clients; empty = autoconfig_hostname"},
    {ROW("autoconfig_smtp_port", "465", "HTTP"), UINT(autoconfig_smtp_port, 0, 65535),
     .doc = "its submission port over implicit TLS (RFC 8314); 0 = no outgoing server given"},

    /* ---- Administration: the control socket (server/control.c) */
    {ROW("control_socket", "/run/coffre/control.sock", "Administration"), PATH(control_socket),
     .valid = is_empty_or_absolute, .errmsg = "control_socket must be an absolute path or empty",
     .doc = "unix socket of coffrectl who/kick/reload/stats (mode 0660, group of run_user); "
            "empty = none"},
    {ROW("control_max_connections", "4", "Administration"), UINT(control_max_connections, 1, 64),
     .doc = "control connections served at once; more are closed at once"},
    {ROW("control_timeout", "5s", "Administration"), DURATION(control_timeout_ms, 100),
     .doc = "time a control client has to send its request and take the reply"},
    {ROW("control_release_hold", "10m", "Administration"), DURATION(control_release_hold_ms, 1000),
     .doc = "after RELEASE (`coffrectl user move`), how long the account's store may not open "
            "here again (the copy runs meanwhile)"},
    {ROW("control_max_reply", "8M", "Administration"), SIZE(control_max_reply, 64 * KB, 1 * GB),
     .doc = "largest control reply (the session list of `who`); a longer one is cut and says so"},

    /* coffrectl import --from-imap (server/ctl_import_imap.c) */
    {ROW("import_imap_jobs", "4", "Import"), UINT(import_imap_jobs, 1, 16),
     .doc = "connections to the source server (--jobs), folders spread over them"},
    {ROW("import_imap_timeout", "2m", "Import"), DURATION(import_imap_timeout_ms, 1000),
     .doc = "a source server silent for so long is given up"},
    {ROW("import_imap_batch", "500", "Import"), UINT(import_imap_batch, 1, 100000),
     .doc = "messages fetched and committed together"},
    {ROW("import_imap_batch_size", "16M", "Import"), SIZE(import_imap_batch_size, 64 * KB, 1 * GB),
     .doc = "bytes fetched and committed together (a larger message goes alone)"},
};

const size_t conf_n_settings = sizeof(conf_settings) / sizeof(conf_settings[0]);

/* ---- the parser */

const struct conf_setting *conf_find(const char *key)
{
    for (size_t i = 0; i < conf_n_settings; i++)
        if (!strcmp(conf_settings[i].name, key))
            return &conf_settings[i];
    return NULL;
}

static int bad_value(const struct conf_setting *s, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The row's own error message when it has one, else fmt. Returns -1. */
static int bad_value(const struct conf_setting *s, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (s->errmsg) {
        snprintf(err, errlen, "%s", s->errmsg);
        return -1;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Parses value as row s says and stores it into its field of c. */
static int apply(struct conf *c, const struct conf_setting *s, const char *value, char *err,
                 size_t errlen)
{
    void *field = (char *)c + s->off;
    uint64_t v;
    unsigned ms;

    switch (s->type) {
    case CONF_BOOL:
        if (parse_bool(value, field) < 0)
            return bad_value(s, err, errlen, "%s must be yes or no", s->name);
        return 0;
    case CONF_UINT:
        if (parse_uint(value, (unsigned)s->min, (unsigned)s->max, field) < 0)
            return bad_value(s, err, errlen, "%s must be a number from %u to %u", s->name,
                             (unsigned)s->min, (unsigned)s->max);
        return 0;
    case CONF_SIZE:
        if (conf_parse_size(value, &v) < 0 || v < s->min || v > s->max)
            return bad_value(s, err, errlen,
                             "%s must be a size (e.g. 64k, 50M) from %llu to %llu bytes", s->name,
                             (unsigned long long)s->min, (unsigned long long)s->max);
        if (s->size == sizeof(uint64_t)) {
            memcpy(field, &v, sizeof(v));
        } else {
            size_t z = (size_t)v;
            memcpy(field, &z, sizeof(z));
        }
        return 0;
    case CONF_DURATION:
        if (parse_duration_min(value, (unsigned)s->min, field) < 0)
            return bad_value(s, err, errlen,
                             "%s must be a duration (e.g. 30s, 500ms, 10m) of at least %ums",
                             s->name, (unsigned)s->min);
        return 0;
    case CONF_SECONDS:
        if (conf_parse_duration_ms(value, &ms) < 0)
            return bad_value(s, err, errlen, "%s must be a duration", s->name);
        *(unsigned *)field = ms / 1000;
        return 0;
    case CONF_STRING:
    case CONF_PATH:
        if (s->valid && !s->valid(value)) {
            snprintf(err, errlen, "%s%s", s->errmsg, s->errmsg_value ? value : "");
            return -1;
        }
        if (strlen(value) >= s->size) {
            snprintf(err, errlen, "value too long for %s", s->name);
            return -1;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case CONF_ADDRS:
        return parse_addr_list(field, value, s->unix_ok, err, errlen);
    case CONF_CUSTOM:
        return s->parse(c, s, value, err, errlen);
    }
    return -1;
}

void conf_defaults(struct conf *c)
{
    char err[128];

    memset(c, 0, sizeof(*c));
    /* each default parses: unit-config checks it */
    for (size_t i = 0; i < conf_n_settings; i++)
        apply(c, &conf_settings[i], conf_settings[i].def, err, sizeof(err));
}

int conf_set(struct conf *c, const char *key, const char *value, char *err, size_t errlen)
{
    const struct conf_setting *s = conf_find(key);

    if (!s) {
        snprintf(err, errlen, "unknown setting '%s'", key);
        return -1;
    }
    return apply(c, s, value, err, errlen);
}

bool conf_needs_tls(const struct conf *c)
{
    return c->imap_listen.n || c->imaps_listen.n || c->pop3_listen.n || c->pop3s_listen.n ||
           c->http_tls_listen.n;
}

size_t conf_prelogin_line(const struct conf *c)
{
    return c->max_line_length_prelogin < c->max_line_length ? c->max_line_length_prelogin
                                                            : c->max_line_length;
}

int conf_validate(const struct conf *c, char *err, size_t errlen)
{
    bool tls_needed = conf_needs_tls(c);

    if (c->ticket_lifetime_s < 1) {
        snprintf(err, errlen, "ticket_lifetime must be at least 1s");
        return -1;
    }
    if (tls_needed && (!c->tls_cert[0] || !c->tls_key[0])) {
        snprintf(err, errlen, "tls_cert and tls_key are required when IMAP, POP3 or HTTPS listens");
        return -1;
    }
    if (!c->tls_client_ca[0] &&
        (strcmp(c->imap_client_cert, "none") || strcmp(c->imaps_client_cert, "none") ||
         strcmp(c->pop3_client_cert, "none") || strcmp(c->pop3s_client_cert, "none"))) {
        snprintf(err, errlen, "*_client_cert other than none needs tls_client_ca");
        return -1;
    }
    if (c->tls_client_crl[0] && !c->tls_client_ca[0]) {
        snprintf(err, errlen, "tls_client_crl needs tls_client_ca");
        return -1;
    }
    if (!c->tls_cert_rsa[0] != !c->tls_key_rsa[0]) {
        snprintf(err, errlen, "tls_cert_rsa and tls_key_rsa go together");
        return -1;
    }
    if (!tls_needed && !c->lmtp_listen.n) {
        snprintf(err, errlen, "no listener configured");
        return -1;
    }
    /* a pool of one thread is shared as it is */
    if (c->max_jobs_per_account >= c->thread_pool_size && c->max_jobs_per_account > 1) {
        snprintf(err, errlen,
                 "max_jobs_per_account (%u) must be below thread_pool_size (%u), so that one "
                 "account never takes every pool thread",
                 c->max_jobs_per_account, c->thread_pool_size);
        return -1;
    }
    if (c->login_failure_delay_max_ms < c->login_failure_delay_ms) {
        snprintf(err, errlen, "login_failure_delay_max is smaller than login_failure_delay");
        return -1;
    }
    return 0;
}

int conf_load(struct conf *c, const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "r");
    char line[4096];
    char reason[512];
    unsigned lineno = 0;

    if (!f) {
        snprintf(err, errlen, "%s: %s", file, strerror(errno));
        return -1;
    }
    snprintf(c->path, sizeof(c->path), "%s", file);
    while (fgets(line, sizeof(line), f)) {
        char *p = line, *eq, *key, *value;
        size_t len = strlen(line);

        lineno++;
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            snprintf(err, errlen, "%s:%u: line too long", file, lineno);
            fclose(f);
            return -1;
        }
        trim(&p);
        if (!*p || *p == '#')
            continue;
        eq = strchr(p, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%u: expected 'key = value'", file, lineno);
            fclose(f);
            return -1;
        }
        *eq = '\0';
        key = p;
        value = eq + 1;
        trim(&key);
        trim(&value);
        if (!*key) {
            snprintf(err, errlen, "%s:%u: expected 'key = value'", file, lineno);
            fclose(f);
            return -1;
        }
        if (conf_set(c, key, value, reason, sizeof(reason)) < 0) {
            snprintf(err, errlen, "%s:%u: %s", file, lineno, reason);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    if (conf_validate(c, reason, sizeof(reason)) < 0) {
        snprintf(err, errlen, "%s: %s", file, reason);
        return -1;
    }
    return 0;
}
