/* The IMAP client's connection: TCP, TLS (implicit for imaps://, STARTTLS
 * required for imap://: a password never crosses in clear), certificate
 * and host name checks, login, and one command at a time. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "server/base/base64.h"
#include "server/base/buf.h"
#include "server/imapc.h"

#define CAPS_MAX 2048

struct imapc {
    int fd;
    gnutls_session_t tls;
    gnutls_certificate_credentials_t cred;
    bool tls_on, dead;
    unsigned timeout_ms;
    unsigned tagn;
    struct imapc_reader rd;
    char caps[CAPS_MAX]; /* " CAP1 CAP2 ... " upper case */
};

static int wait_fd(struct imapc *c, short ev)
{
    struct pollfd p = {.fd = c->fd, .events = ev};
    int n;

    do
        n = poll(&p, 1, (int)c->timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        errno = ETIMEDOUT;
    return n > 0 ? 0 : -1;
}

static ssize_t conn_read(void *arg, char *buf, size_t cap)
{
    struct imapc *c = arg;
    ssize_t n;

    if (c->tls_on) {
        do {
            if (gnutls_record_check_pending(c->tls) == 0 && wait_fd(c, POLLIN) < 0)
                return -1;
            n = gnutls_record_recv(c->tls, buf, cap);
        } while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
        if (n == GNUTLS_E_PREMATURE_TERMINATION)
            return 0;
        return n < 0 ? -1 : n;
    }
    if (wait_fd(c, POLLIN) < 0)
        return -1;
    do
        n = recv(c->fd, buf, cap, 0);
    while (n < 0 && errno == EINTR);
    return n;
}

static int conn_write(struct imapc *c, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n;
        if (c->tls_on) {
            n = gnutls_record_send(c->tls, p, len);
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                if (wait_fd(c, POLLOUT) < 0)
                    return -1;
                continue;
            }
        } else {
            if (wait_fd(c, POLLOUT) < 0)
                return -1;
            n = send(c->fd, p, len, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
        }
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Parses imap[s]://host[:port][/]. */
static int parse_url(const char *url, bool *implicit, char *host, size_t hostcap, char *port,
                     size_t portcap)
{
    const char *h, *end, *colon;
    size_t hl;

    if (!strncasecmp(url, "imaps://", 8)) {
        *implicit = true;
        h = url + 8;
    } else if (!strncasecmp(url, "imap://", 7)) {
        *implicit = false;
        h = url + 7;
    } else {
        return -1;
    }
    end = h + strcspn(h, "/");
    if (*end && strcmp(end, "/") != 0)
        return -1;
    if (*h == '[') { /* [v6 address] */
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb)
            return -1;
        hl = (size_t)(rb - h - 1);
        if (hl == 0 || hl >= hostcap)
            return -1;
        memcpy(host, h + 1, hl);
        host[hl] = '\0';
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        if (!colon && rb + 1 != end)
            return -1;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        hl = (size_t)((colon ? colon : end) - h);
        if (hl == 0 || hl >= hostcap)
            return -1;
        memcpy(host, h, hl);
        host[hl] = '\0';
    }
    if (colon) {
        size_t pl = (size_t)(end - colon - 1);
        if (pl == 0 || pl >= portcap || strspn(colon + 1, "0123456789") < pl)
            return -1;
        memcpy(port, colon + 1, pl);
        port[pl] = '\0';
    } else {
        snprintf(port, portcap, "%s", *implicit ? "993" : "143");
    }
    return 0;
}

static int tcp_connect(const char *host, const char *port, unsigned timeout_ms, char *err,
                       size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    int fd = -1, rc;

    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
        snprintf(err, errlen, "%s: %s", host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        /* a blocking connect bounded by the same timeout as reads */
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        snprintf(err, errlen, "connect to %s port %s: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static void set_caps(struct imapc *c, const struct imapc_reader *r, size_t from)
{
    size_t o = 0;

    c->caps[o++] = ' ';
    for (size_t i = from; i < r->ntoks; i++) {
        const char *s = imapc_tok_str(r, i);
        size_t n;
        if (!s || r->toks[i].type != IMAPC_ATOM)
            break;
        n = strlen(s);
        if (o + n + 2 >= sizeof(c->caps))
            break;
        for (size_t k = 0; k < n; k++)
            c->caps[o++] = (char)((s[k] >= 'a' && s[k] <= 'z') ? s[k] - 32 : s[k]);
        c->caps[o++] = ' ';
    }
    c->caps[o] = '\0';
}

bool imapc_has(const struct imapc *c, const char *cap)
{
    char want[128];

    if (snprintf(want, sizeof(want), " %s ", cap) >= (int)sizeof(want))
        return false;
    return strcasestr(c->caps, want) != NULL;
}

/* Response code CAPABILITY in an OK (greeting or tagged). */
static void code_caps(struct imapc *c, const struct imapc_reader *r)
{
    for (size_t i = 0; i + 1 < r->ntoks; i++)
        if (r->toks[i].type == IMAPC_CODE_OPEN && imapc_tok_is(r, i + 1, "CAPABILITY"))
            set_caps(c, r, i + 2);
}

static void resp_text(const struct imapc_reader *r, char *err, size_t errlen)
{
    const char *t = r->ntoks ? imapc_tok_str(r, r->ntoks - 1) : NULL;
    snprintf(err, errlen, "%s", t && r->toks[r->ntoks - 1].type == IMAPC_TEXT ? t : "");
}

static int send_line(struct imapc *c, const char *tag, const char *p, size_t len)
{
    struct buf b = {0};
    int rc;

    if (tag) {
        buf_str(&b, tag);
        buf_addc(&b, ' ');
    }
    buf_add(&b, p, len);
    buf_add(&b, "\r\n", 2);
    if (b.oom) {
        buf_free(&b);
        return -1;
    }
    rc = conn_write(c, b.p, b.len);
    buf_free(&b);
    return rc;
}

/* Reads up to the tagged reply of `tag`. */
static int read_reply(struct imapc *c, const char *tag, imapc_untagged_fn cb, void *arg, char *err,
                      size_t errlen)
{
    struct imapc_reader *r = &c->rd;

    for (;;) {
        if (imapc_read_response(r) < 0) {
            snprintf(err, errlen, "%s", r->err);
            c->dead = true;
            return IMAPC_EIO;
        }
        if (imapc_tok_is(r, 0, "+")) {
            snprintf(err, errlen, "unexpected continuation request");
            c->dead = true;
            return IMAPC_EIO;
        }
        if (imapc_tok_is(r, 0, "*")) {
            if (imapc_tok_is(r, 1, "BYE")) {
                resp_text(r, err, errlen);
                c->dead = true;
                return IMAPC_EIO;
            }
            if (imapc_tok_is(r, 1, "CAPABILITY"))
                set_caps(c, r, 2);
            else if (imapc_tok_is(r, 1, "OK"))
                code_caps(c, r);
            if (cb && cb(arg, r) != 0) {
                if (!*err)
                    snprintf(err, errlen, "unexpected response from the server");
                c->dead = true;
                return IMAPC_EIO;
            }
            continue;
        }
        if (!imapc_tok_is(r, 0, tag)) {
            snprintf(err, errlen, "response with an unknown tag");
            c->dead = true;
            return IMAPC_EIO;
        }
        resp_text(r, err, errlen);
        if (imapc_tok_is(r, 1, "OK")) {
            code_caps(c, r);
            return IMAPC_OK;
        }
        return imapc_tok_is(r, 1, "NO") ? IMAPC_NO : IMAPC_BAD;
    }
}

int imapc_cmd(struct imapc *c, const char *cmd, imapc_untagged_fn cb, void *arg, imapc_sink_fn sink,
              void *sarg, char *err, size_t errlen)
{
    char tag[16];
    int rc;

    err[0] = '\0';
    if (c->dead) {
        snprintf(err, errlen, "connection lost");
        return IMAPC_EIO;
    }
    snprintf(tag, sizeof(tag), "C%u", ++c->tagn);
    if (send_line(c, tag, cmd, strlen(cmd)) < 0) {
        snprintf(err, errlen, "write error: %s", strerror(errno));
        c->dead = true;
        return IMAPC_EIO;
    }
    c->rd.sink = sink;
    c->rd.sarg = sarg;
    rc = read_reply(c, tag, cb, arg, err, errlen);
    c->rd.sink = NULL;
    c->rd.sarg = NULL;
    return rc;
}

int imapc_cmd_mbox(struct imapc *c, const char *fmt, const char *name, imapc_untagged_fn cb,
                   void *arg, char *err, size_t errlen)
{
    const char *pct = strstr(fmt, "%s");
    struct buf b = {0};
    char *cmd;
    int rc;

    if (!pct || strchr(name, '\r') || strchr(name, '\n')) {
        snprintf(err, errlen, "mailbox name cannot be sent");
        return IMAPC_BAD;
    }
    buf_add(&b, fmt, (size_t)(pct - fmt));
    /* names come from the server's LIST in its own encoding: a quoted
     * string keeps them byte for byte (8-bit ones only where it allows) */
    buf_addc(&b, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_addc(&b, '\\');
        buf_addc(&b, *p);
    }
    buf_addc(&b, '"');
    buf_str(&b, pct + 2);
    if (!(cmd = buf_take(&b))) {
        snprintf(err, errlen, "out of memory");
        return IMAPC_EIO;
    }
    rc = imapc_cmd(c, cmd, cb, arg, NULL, NULL, err, errlen);
    free(cmd);
    return rc;
}

static int start_tls(struct imapc *c, const struct imapc_opts *o, const char *host, char *err,
                     size_t errlen)
{
    int rc;

    if (gnutls_certificate_allocate_credentials(&c->cred) < 0)
        goto oom;
    if (o->ca_file) {
        rc = gnutls_certificate_set_x509_trust_file(c->cred, o->ca_file, GNUTLS_X509_FMT_PEM);
        if (rc <= 0) {
            snprintf(err, errlen, "cannot load CA certificates from %s: %s", o->ca_file,
                     rc < 0 ? gnutls_strerror(rc) : "no certificate found");
            return -1;
        }
    } else if ((rc = gnutls_certificate_set_x509_system_trust(c->cred)) <= 0) {
        snprintf(err, errlen, "cannot load the system's trusted certificates%s%s",
                 rc < 0 ? ": " : "", rc < 0 ? gnutls_strerror(rc) : "");
        return -1;
    }
    if (gnutls_init(&c->tls, GNUTLS_CLIENT) < 0)
        goto oom;
    if (gnutls_set_default_priority(c->tls) < 0 ||
        gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->cred) < 0)
        goto oom;
    /* SNI only for names, not for addresses */
    if (strspn(host, "0123456789.") != strlen(host) && !strchr(host, ':'))
        gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, host, strlen(host));
    /* verify the chain and that the certificate names this host */
    gnutls_session_set_verify_cert(c->tls, host, 0);
    gnutls_transport_set_int(c->tls, c->fd);
    gnutls_handshake_set_timeout(c->tls, c->timeout_ms);
    do
        rc = gnutls_handshake(c->tls);
    while (rc < 0 && !gnutls_error_is_fatal(rc));
    if (rc < 0) {
        if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
            gnutls_datum_t why = {0};
            unsigned status = gnutls_session_get_verify_cert_status(c->tls);
            gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0);
            snprintf(err, errlen, "certificate of %s refused: %s (use --ca-file for a private CA)",
                     host, why.data ? (const char *)why.data : "not trusted");
            gnutls_free(why.data);
        } else {
            snprintf(err, errlen, "TLS handshake with %s failed: %s", host, gnutls_strerror(rc));
        }
        return -1;
    }
    c->tls_on = true;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* Sends a command holding a secret, wipes and frees it. */
static int cmd_secret(struct imapc *c, struct buf *cmd, char *msg, size_t msglen)
{
    int rc;

    if (cmd->oom) {
        buf_free(cmd);
        snprintf(msg, msglen, "out of memory");
        return IMAPC_EIO;
    }
    rc = imapc_cmd(c, cmd->p, NULL, NULL, NULL, NULL, msg, msglen);
    explicit_bzero(cmd->p, cmd->len);
    buf_free(cmd);
    return rc;
}

static int login(struct imapc *c, const struct imapc_opts *o, char *err, size_t errlen)
{
    size_t ul = strlen(o->user), pl = strlen(o->password);
    char msg[1024];
    int rc;

    if (ul == 0 || ul > 255 || pl == 0 || pl > 512 || strpbrk(o->user, "\r\n") ||
        strpbrk(o->password, "\r\n")) {
        snprintf(err, errlen, "source user or password empty, too long or with line breaks");
        return -1;
    }
    if (imapc_has(c, "AUTH=PLAIN")) {
        char raw[1 + 255 + 1 + 512], *b64;
        size_t rl = 0, bl;
        struct buf cmd = {0};

        raw[rl++] = '\0';
        memcpy(raw + rl, o->user, ul);
        rl += ul;
        raw[rl++] = '\0';
        memcpy(raw + rl, o->password, pl);
        rl += pl;
        bl = (rl + 2) / 3 * 4;
        if (!(b64 = malloc(bl + 1)) ||
            base64_encode((const unsigned char *)raw, rl, b64, bl + 1) != (long)bl) {
            free(b64);
            explicit_bzero(raw, sizeof(raw));
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        explicit_bzero(raw, sizeof(raw));
        if (imapc_has(c, "SASL-IR")) {
            buf_str(&cmd, "AUTHENTICATE PLAIN ");
            buf_add(&cmd, b64, bl);
            explicit_bzero(b64, bl);
            free(b64);
            rc = cmd_secret(c, &cmd, msg, sizeof(msg));
        } else {
            char tag[16];
            snprintf(tag, sizeof(tag), "C%u", ++c->tagn);
            if (send_line(c, tag, "AUTHENTICATE PLAIN", 18) < 0 ||
                imapc_read_response(&c->rd) < 0 || !imapc_tok_is(&c->rd, 0, "+") ||
                send_line(c, NULL, b64, bl) < 0) {
                explicit_bzero(b64, bl);
                free(b64);
                snprintf(err, errlen, "AUTHENTICATE PLAIN failed: %s",
                         c->rd.failed ? c->rd.err : "unexpected response");
                return -1;
            }
            explicit_bzero(b64, bl);
            free(b64);
            msg[0] = '\0';
            rc = read_reply(c, tag, NULL, NULL, msg, sizeof(msg));
        }
    } else if (!imapc_has(c, "LOGINDISABLED")) {
        struct buf cmd = {0};
        buf_str(&cmd, "LOGIN ");
        buf_imap_string(&cmd, o->user, ul);
        buf_addc(&cmd, ' ');
        buf_imap_string(&cmd, o->password, pl);
        if (cmd.oom || memchr(cmd.p, '{', cmd.len)) {
            /* a literal would need a continuation: refuse rather than guess */
            if (cmd.p)
                explicit_bzero(cmd.p, cmd.len);
            buf_free(&cmd);
            snprintf(err, errlen, "source user or password cannot be sent with LOGIN");
            return -1;
        }
        rc = cmd_secret(c, &cmd, msg, sizeof(msg));
    } else {
        snprintf(err, errlen, "the server offers neither AUTH=PLAIN nor LOGIN");
        return -1;
    }
    if (rc != IMAPC_OK) {
        snprintf(err, errlen, "login as %s refused by the server: %s", o->user,
                 msg[0] ? msg : "(no reason given)");
        return -1;
    }
    return 0;
}

struct imapc *imapc_connect(const struct imapc_opts *o, char *err, size_t errlen)
{
    char host[256], port[8], msg[512];
    struct imapc *c;
    bool implicit;

    if (parse_url(o->url, &implicit, host, sizeof(host), port, sizeof(port)) < 0) {
        snprintf(err, errlen, "bad URL %s: want imaps://host[:port] or imap://host[:port]", o->url);
        return NULL;
    }
    if (!(c = calloc(1, sizeof(*c)))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->timeout_ms = o->timeout_ms ? o->timeout_ms : 120000;
    c->fd = -1;
    if (imapc_reader_init(&c->rd, o->arena_max, o->inline_max, o->depth_max) < 0) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->rd.read = conn_read;
    c->rd.rarg = c;
    if ((c->fd = tcp_connect(host, port, c->timeout_ms, err, errlen)) < 0)
        goto fail;
    if (implicit && start_tls(c, o, host, err, errlen) < 0)
        goto fail;
    /* greeting */
    if (imapc_read_response(&c->rd) < 0) {
        snprintf(err, errlen, "%s: no greeting: %s", host, c->rd.err);
        goto fail;
    }
    if (!imapc_tok_is(&c->rd, 0, "*") || !imapc_tok_is(&c->rd, 1, "OK")) {
        snprintf(err, errlen, "%s: the server refused the connection", host);
        goto fail;
    }
    code_caps(c, &c->rd);
    if (!implicit) {
        if (c->caps[0] == '\0' &&
            imapc_cmd(c, "CAPABILITY", NULL, NULL, NULL, NULL, msg, sizeof(msg)) != IMAPC_OK) {
            snprintf(err, errlen, "%s: CAPABILITY failed: %s", host, msg);
            goto fail;
        }
        if (!imapc_has(c, "STARTTLS")) {
            snprintf(err, errlen, "%s does not offer STARTTLS; not logging in over plaintext",
                     host);
            goto fail;
        }
        if (imapc_cmd(c, "STARTTLS", NULL, NULL, NULL, NULL, msg, sizeof(msg)) != IMAPC_OK) {
            snprintf(err, errlen, "%s: STARTTLS refused: %s", host, msg);
            goto fail;
        }
        /* anything sent before the handshake would be taken as if it came
         * over TLS (the STARTTLS injection): refuse */
        if (imapc_reader_pending(&c->rd) > 0) {
            snprintf(err, errlen, "%s sent data after STARTTLS before the handshake", host);
            goto fail;
        }
        if (start_tls(c, o, host, err, errlen) < 0)
            goto fail;
        c->caps[0] = '\0'; /* capabilities before TLS are not to be trusted */
    }
    if (c->caps[0] == '\0' &&
        imapc_cmd(c, "CAPABILITY", NULL, NULL, NULL, NULL, msg, sizeof(msg)) != IMAPC_OK) {
        snprintf(err, errlen, "%s: CAPABILITY failed: %s", host, msg);
        goto fail;
    }
    if (login(c, o, err, errlen) < 0)
        goto fail;
    /* capabilities may change after login; ask when the OK did not say */
    if (!imapc_has(c, "IMAP4REV1") && !imapc_has(c, "IMAP4REV2"))
        c->caps[0] = '\0';
    if (imapc_cmd(c, "CAPABILITY", NULL, NULL, NULL, NULL, msg, sizeof(msg)) != IMAPC_OK) {
        snprintf(err, errlen, "%s: CAPABILITY failed: %s", host, msg);
        goto fail;
    }
    return c;
fail:
    c->dead = true;
    imapc_close(c);
    return NULL;
}

void imapc_close(struct imapc *c)
{
    char msg[256];

    if (!c)
        return;
    if (!c->dead && c->fd >= 0)
        imapc_cmd(c, "LOGOUT", NULL, NULL, NULL, NULL, msg, sizeof(msg));
    if (c->tls) {
        if (c->tls_on && !c->dead)
            gnutls_bye(c->tls, GNUTLS_SHUT_WR);
        gnutls_deinit(c->tls);
    }
    if (c->cred)
        gnutls_certificate_free_credentials(c->cred);
    if (c->fd >= 0)
        close(c->fd);
    imapc_reader_free(&c->rd);
    free(c);
}
