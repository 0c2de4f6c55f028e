/* Configuration: defaults for every setting and limit (this is the one place
 * they live), and the parser of the `key = value` file. Each key here has a
 * line in the README's configuration table. */
#include "server/base/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PRIORITY                                                                           \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:"                  \
    "-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD:"                     \
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:"                                 \
    "-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:%SERVER_PRECEDENCE"

static int parse_addr_list(struct conf_addr_list *l, const char *v, bool allow_unix, char *err,
                           size_t errlen);

void conf_defaults(struct conf *c)
{
    char err[128];

    memset(c, 0, sizeof(*c));
    snprintf(c->data_dir, sizeof(c->data_dir), "/var/lib/coffre");
    snprintf(c->run_user, sizeof(c->run_user), "coffre");
    snprintf(c->tls_cert, sizeof(c->tls_cert), "/etc/coffre/cert.pem");
    snprintf(c->tls_key, sizeof(c->tls_key), "/etc/coffre/key.pem");
    snprintf(c->tls_priority, sizeof(c->tls_priority), "%s", DEFAULT_PRIORITY);
    c->tls_handshake_timeout_ms = 30 * 1000;   /* a client that stalls its handshake */

    parse_addr_list(&c->imap_listen, "0.0.0.0:143,[::]:143", false, err, sizeof(err));
    parse_addr_list(&c->imaps_listen, "0.0.0.0:993,[::]:993", false, err, sizeof(err));
    parse_addr_list(&c->pop3_listen, "0.0.0.0:110,[::]:110", false, err, sizeof(err));
    parse_addr_list(&c->pop3s_listen, "0.0.0.0:995,[::]:995", false, err, sizeof(err));
    parse_addr_list(&c->lmtp_listen, "127.0.0.1:24", true, err, sizeof(err));
    c->lmtp_socket_mode = 0660;
    c->lmtp_max_recipients = 50;           /* Postfix sends at most 50 by default */
    snprintf(c->recipient_delimiter, sizeof(c->recipient_delimiter), "+");

    c->max_line_length = 65536;            /* longest command line, CRLF included */
    c->max_literal_size = 65536;           /* literals other than APPEND's message */
    c->max_message_size = 50u << 20;       /* APPEND and LMTP message size */
    c->max_connections = 50000;            /* whole server */
    c->max_connections_per_ip = 200;       /* one remote address */
    c->max_bad_commands = 20;              /* BAD/-ERR replies before disconnecting */

    c->login_timeout_ms = 60 * 1000;               /* before authentication */
    c->imap_idle_timeout_ms = 30 * 60 * 1000;      /* RFC 3501: at least 30 minutes */
    c->pop3_idle_timeout_ms = 10 * 60 * 1000;      /* RFC 1939: at least 10 minutes */
    c->pop3_max_command_length = 255;      /* RFC 2449: 255 octets with CRLF; AUTH excepted */
    c->lmtp_idle_timeout_ms = 5 * 60 * 1000;
    c->shutdown_timeout_ms = 3 * 1000;     /* how long SIGTERM waits for writes to drain */

    c->login_failure_delay_ms = 1000;      /* first failure; doubles per further failure */
    c->login_failure_delay_max_ms = 15000;
    c->auth_cache_ttl_s = 3600;
    c->quota_warning_percent = 90;         /* IMAP [ALERT] at login from this use */
    c->thread_pool_size = 8;                /* fsync-bound work scales to about 8 on one disk */
    c->mail_keep_open_ms = 60 * 1000;       /* clients reconnect: keep the index open */
    c->mail_keep_open_max = 1000;

    c->imap_max_nesting = 100;                  /* parentheses and search keys */
    c->imap_max_connections_per_user_ip = 20;   /* Thunderbird opens up to 5 per account */
    c->imap_max_commands_per_second = 1000;     /* then input is paused until the next second */
    c->imap_max_pending_updates = 10000;        /* then the session resyncs from the index */
    c->imap_output_timeout_ms = 120 * 1000;     /* output stalled that long: disconnect */
}

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
        case 'k': mul = 1ull << 10; break;
        case 'm': mul = 1ull << 20; break;
        case 'g': mul = 1ull << 30; break;
        default: return -1;
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

static int parse_nets(struct conf *c, const char *v, char *err, size_t errlen)
{
    char buf[2048];
    char *save = NULL, *tok;

    if (strlen(v) >= sizeof(buf)) {
        snprintf(err, errlen, "network list too long");
        return -1;
    }
    snprintf(buf, sizeof(buf), "%s", v);
    c->n_plaintext_nets = 0;
    for (tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        struct conf_net *n;
        char *slash = strchr(tok, '/');
        unsigned long prefix;
        char *end;

        if (c->n_plaintext_nets >= CONF_MAX_NETS) {
            snprintf(err, errlen, "too many networks (at most %d)", CONF_MAX_NETS);
            return -1;
        }
        n = &c->plaintext_auth_networks[c->n_plaintext_nets];
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
        c->n_plaintext_nets++;
    }
    return 0;
}

bool conf_net_match(const struct conf_net *nets, size_t n, const struct sockaddr *addr)
{
    const uint8_t *a;
    int fam = addr->sa_family;
    uint8_t mapped[4];

    if (fam == AF_INET) {
        a = (const uint8_t *)&((const struct sockaddr_in *)addr)->sin_addr;
    } else if (fam == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)addr;
        a = (const uint8_t *)&s6->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            memcpy(mapped, a + 12, 4);
            a = mapped;
            fam = AF_INET;
        }
    } else {
        return false;
    }
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

#define STR(field)                                                                                 \
    do {                                                                                           \
        if (strlen(value) >= sizeof(c->field)) {                                                   \
            snprintf(err, errlen, "value too long for %s", key);                                  \
            return -1;                                                                             \
        }                                                                                          \
        snprintf(c->field, sizeof(c->field), "%s", value);                                         \
        return 0;                                                                                  \
    } while (0)

#define UINT(field, lo, hi)                                                                        \
    do {                                                                                           \
        if (parse_uint(value, lo, hi, &c->field) < 0) {                                            \
            snprintf(err, errlen, "%s must be a number from %u to %u", key, (unsigned)(lo),       \
                     (unsigned)(hi));                                                              \
            return -1;                                                                             \
        }                                                                                          \
        return 0;                                                                                  \
    } while (0)

#define DURATION(field, lo_ms)                                                                     \
    do {                                                                                           \
        if (parse_duration_min(value, lo_ms, &c->field) < 0) {                                     \
            snprintf(err, errlen, "%s must be a duration (e.g. 30s, 500ms, 10m) of at least %ums", \
                     key, (unsigned)(lo_ms));                                                      \
            return -1;                                                                             \
        }                                                                                          \
        return 0;                                                                                  \
    } while (0)

#define SIZE(field, lo, hi)                                                                        \
    do {                                                                                           \
        uint64_t v_;                                                                               \
        if (conf_parse_size(value, &v_) < 0 || v_ < (lo) || v_ > (hi)) {                           \
            snprintf(err, errlen, "%s must be a size (e.g. 64k, 50M) from %llu to %llu bytes",    \
                     key, (unsigned long long)(lo), (unsigned long long)(hi));                     \
            return -1;                                                                             \
        }                                                                                          \
        c->field = v_;                                                                             \
        return 0;                                                                                  \
    } while (0)

int conf_set(struct conf *c, const char *key, const char *value, char *err, size_t errlen)
{
    if (!strcmp(key, "data_dir")) {
        if (value[0] != '/') {
            snprintf(err, errlen, "data_dir must be an absolute path");
            return -1;
        }
        STR(data_dir);
    }
    if (!strcmp(key, "run_user"))
        STR(run_user);
    if (!strcmp(key, "default_domain")) {
        for (const char *p = value; *p; p++) {
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-') {
                snprintf(err, errlen, "default_domain is not a domain name: %s", value);
                return -1;
            }
        }
        STR(default_domain);
    }
    if (!strcmp(key, "tls_cert"))
        STR(tls_cert);
    if (!strcmp(key, "tls_key"))
        STR(tls_key);
    if (!strcmp(key, "tls_cert_rsa"))
        STR(tls_cert_rsa);
    if (!strcmp(key, "tls_key_rsa"))
        STR(tls_key_rsa);
    if (!strcmp(key, "tls_priority")) {
        if (!*value) {
            snprintf(err, errlen, "tls_priority must not be empty");
            return -1;
        }
        STR(tls_priority);
    }
    if (!strcmp(key, "tls_handshake_timeout"))
        DURATION(tls_handshake_timeout_ms, 100);
    if (!strcmp(key, "imap_listen"))
        return parse_addr_list(&c->imap_listen, value, false, err, errlen);
    if (!strcmp(key, "imaps_listen"))
        return parse_addr_list(&c->imaps_listen, value, false, err, errlen);
    if (!strcmp(key, "pop3_listen"))
        return parse_addr_list(&c->pop3_listen, value, false, err, errlen);
    if (!strcmp(key, "pop3s_listen"))
        return parse_addr_list(&c->pop3s_listen, value, false, err, errlen);
    if (!strcmp(key, "lmtp_listen"))
        return parse_addr_list(&c->lmtp_listen, value, true, err, errlen);
    if (!strcmp(key, "lmtp_socket_mode")) {
        char *end;
        unsigned long m;
        errno = 0;
        m = strtoul(value, &end, 8);
        if (errno || *end || !*value || m > 0777) {
            snprintf(err, errlen, "lmtp_socket_mode must be an octal mode such as 0660");
            return -1;
        }
        c->lmtp_socket_mode = (unsigned)m;
        return 0;
    }
    if (!strcmp(key, "plaintext_auth_networks"))
        return parse_nets(c, value, err, errlen);
    if (!strcmp(key, "max_line_length")) {
        uint64_t v;
        if (conf_parse_size(value, &v) < 0 || v < 1024 || v > (16u << 20)) {
            snprintf(err, errlen, "max_line_length must be a size from 1k to 16M");
            return -1;
        }
        c->max_line_length = (size_t)v;
        return 0;
    }
    if (!strcmp(key, "lmtp_socket_user"))
        STR(lmtp_socket_user);
    if (!strcmp(key, "lmtp_socket_group"))
        STR(lmtp_socket_group);
    if (!strcmp(key, "lmtp_max_recipients"))
        UINT(lmtp_max_recipients, 1, 100000);
    if (!strcmp(key, "recipient_delimiter")) {
        for (const char *p = value; *p; p++) {
            if (!ispunct((unsigned char)*p) || *p == '@' || *p == '"' || *p == '\\') {
                snprintf(err, errlen, "recipient_delimiter must be punctuation such as + or -");
                return -1;
            }
        }
        STR(recipient_delimiter);
    }
    if (!strcmp(key, "lmtp_save_to_detail_mailbox")) {
        if (parse_bool(value, &c->lmtp_save_to_detail_mailbox) < 0) {
            snprintf(err, errlen, "lmtp_save_to_detail_mailbox must be yes or no");
            return -1;
        }
        return 0;
    }
    if (!strcmp(key, "lmtp_quota_temporary")) {
        if (parse_bool(value, &c->lmtp_quota_temporary) < 0) {
            snprintf(err, errlen, "lmtp_quota_temporary must be yes or no");
            return -1;
        }
        return 0;
    }
    if (!strcmp(key, "max_literal_size"))
        SIZE(max_literal_size, 1024, 1ull << 30);
    if (!strcmp(key, "max_message_size"))
        SIZE(max_message_size, 1024, 4ull << 30);
    if (!strcmp(key, "max_connections"))
        UINT(max_connections, 1, 1000000);
    if (!strcmp(key, "max_connections_per_ip"))
        UINT(max_connections_per_ip, 1, 1000000);
    if (!strcmp(key, "max_bad_commands"))
        UINT(max_bad_commands, 1, 100000);
    if (!strcmp(key, "login_timeout"))
        DURATION(login_timeout_ms, 1000);
    if (!strcmp(key, "imap_idle_timeout"))
        DURATION(imap_idle_timeout_ms, 30 * 60 * 1000);
    if (!strcmp(key, "pop3_idle_timeout"))
        DURATION(pop3_idle_timeout_ms, 10 * 60 * 1000);
    if (!strcmp(key, "pop3_max_command_length"))
        UINT(pop3_max_command_length, 255, 65536);
    if (!strcmp(key, "lmtp_idle_timeout"))
        DURATION(lmtp_idle_timeout_ms, 1000);
    if (!strcmp(key, "shutdown_timeout"))
        DURATION(shutdown_timeout_ms, 0);
    if (!strcmp(key, "login_failure_delay"))
        DURATION(login_failure_delay_ms, 0);
    if (!strcmp(key, "login_failure_delay_max"))
        DURATION(login_failure_delay_max_ms, 0);
    if (!strcmp(key, "auth_cache_ttl")) {
        unsigned ms;
        if (conf_parse_duration_ms(value, &ms) < 0) {
            snprintf(err, errlen, "auth_cache_ttl must be a duration (0 disables the cache)");
            return -1;
        }
        c->auth_cache_ttl_s = ms / 1000;
        return 0;
    }
    if (!strcmp(key, "quota_warning_percent"))
        UINT(quota_warning_percent, 0, 100);
    if (!strcmp(key, "thread_pool_size"))
        UINT(thread_pool_size, 1, 128);
    if (!strcmp(key, "mail_keep_open"))
        DURATION(mail_keep_open_ms, 0);
    if (!strcmp(key, "mail_keep_open_max"))
        UINT(mail_keep_open_max, 0, 1000000);
    if (!strcmp(key, "imap_max_nesting"))
        UINT(imap_max_nesting, 2, 10000);
    if (!strcmp(key, "imap_max_connections_per_user_ip"))
        UINT(imap_max_connections_per_user_ip, 1, 100000);
    if (!strcmp(key, "imap_max_commands_per_second"))
        UINT(imap_max_commands_per_second, 1, 1000000);
    if (!strcmp(key, "imap_max_pending_updates"))
        UINT(imap_max_pending_updates, 16, 10000000);
    if (!strcmp(key, "imap_output_timeout"))
        DURATION(imap_output_timeout_ms, 1000);
    if (!strcmp(key, "log_debug")) {
        if (parse_bool(value, &c->log_debug) < 0) {
            snprintf(err, errlen, "log_debug must be yes or no");
            return -1;
        }
        return 0;
    }
    snprintf(err, errlen, "unknown setting '%s'", key);
    return -1;
}

int conf_validate(const struct conf *c, char *err, size_t errlen)
{
    bool tls_needed = c->imap_listen.n || c->imaps_listen.n || c->pop3_listen.n ||
                      c->pop3s_listen.n;

    if (tls_needed && (!c->tls_cert[0] || !c->tls_key[0])) {
        snprintf(err, errlen, "tls_cert and tls_key are required when IMAP or POP3 listens");
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
