/* GnuTLS server sessions over memory buffers. GnuTLS pulls ciphertext from
 * `in` and pushes records into `out`; the connection layer moves bytes
 * between those buffers and the socket. Nothing here blocks. */
#include "tls/tls.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/base/buf.h"

/* Credentials and priority as loaded at one moment; sessions hold a
 * reference so a reload never pulls them out from under a live session. */
struct creds {
    unsigned refs;
    gnutls_certificate_credentials_t cert;
    gnutls_priority_t prio;
    bool client_ca; /* trusts CAs for client certificates */
};

struct tls_server {
    char *cert, *key, *cert_rsa, *key_rsa, *priority;
    char *client_ca, *client_crl;
    struct creds *cur;
    gnutls_datum_t ticket_key; /* session tickets survive reloads */
};

struct tls_session {
    gnutls_session_t s;
    struct creds *creds;
    struct buf in; /* ciphertext received; GnuTLS has pulled in.p[0 .. in_off) */
    size_t in_off;
    struct buf out; /* records for the socket */
    enum tls_client_cert mode;
    /* what the client's certificate said, allocated after the handshake on
     * listeners that ask for one (2.4 kB that most sessions never need);
     * NULL: none asked */
    struct peer_cert *peer;
};

static const struct peer_cert peer_none = {.why = "no certificate asked on this listener"};

static void creds_unref(struct creds *c)
{
    if (!c || --c->refs)
        return;
    if (c->cert)
        gnutls_certificate_free_credentials(c->cert);
    if (c->prio)
        gnutls_priority_deinit(c->prio);
    free(c);
}

static struct creds *creds_load(const struct tls_server *s, char *err, size_t errlen)
{
    struct creds *c = calloc(1, sizeof(*c));
    const char *errpos = NULL;
    int r;

    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->refs = 1;
    if ((r = gnutls_certificate_allocate_credentials(&c->cert)) < 0)
        goto fail;
    r = gnutls_certificate_set_x509_key_file2(c->cert, s->cert, s->key, GNUTLS_X509_FMT_PEM, NULL,
                                              0);
    if (r < 0) {
        snprintf(err, errlen, "loading %s / %s: %s", s->cert, s->key, gnutls_strerror(r));
        creds_unref(c);
        return NULL;
    }
    if (s->cert_rsa && *s->cert_rsa) {
        r = gnutls_certificate_set_x509_key_file2(c->cert, s->cert_rsa, s->key_rsa,
                                                  GNUTLS_X509_FMT_PEM, NULL, 0);
        if (r < 0) {
            snprintf(err, errlen, "loading %s / %s: %s", s->cert_rsa, s->key_rsa,
                     gnutls_strerror(r));
            creds_unref(c);
            return NULL;
        }
    }
    if (s->client_ca) {
        r = gnutls_certificate_set_x509_trust_file(c->cert, s->client_ca, GNUTLS_X509_FMT_PEM);
        if (r <= 0) {
            snprintf(err, errlen, "tls_client_ca %s: %s", s->client_ca,
                     r < 0 ? gnutls_strerror(r) : "no certificate in the file");
            creds_unref(c);
            return NULL;
        }
        c->client_ca = true;
    }
    if (s->client_crl) {
        r = gnutls_certificate_set_x509_crl_file(c->cert, s->client_crl, GNUTLS_X509_FMT_PEM);
        if (r < 0)
            r = gnutls_certificate_set_x509_crl_file(c->cert, s->client_crl, GNUTLS_X509_FMT_DER);
        if (r < 0) {
            snprintf(err, errlen, "tls_client_crl %s: %s", s->client_crl, gnutls_strerror(r));
            creds_unref(c);
            return NULL;
        }
    }
    r = gnutls_priority_init2(&c->prio, s->priority, &errpos, 0);
    if (r < 0) {
        snprintf(err, errlen, "tls_priority: %s near '%s'", gnutls_strerror(r),
                 errpos ? errpos : "");
        creds_unref(c);
        return NULL;
    }
    return c;
fail:
    snprintf(err, errlen, "gnutls: %s", gnutls_strerror(r));
    creds_unref(c);
    return NULL;
}

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

void tls_server_free(struct tls_server *s)
{
    if (!s)
        return;
    creds_unref(s->cur);
    if (s->ticket_key.data) {
        gnutls_memset(s->ticket_key.data, 0, s->ticket_key.size);
        gnutls_free(s->ticket_key.data);
    }
    free(s->cert);
    free(s->key);
    free(s->cert_rsa);
    free(s->key_rsa);
    free(s->priority);
    free(s->client_ca);
    free(s->client_crl);
    free(s);
}

int tls_server_new(const struct tls_server_opts *o, struct tls_server **out, char *err,
                   size_t errlen)
{
    struct tls_server *s = calloc(1, sizeof(*s));

    *out = NULL;
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->cert = dup_or_null(o->cert);
    s->key = dup_or_null(o->key);
    s->cert_rsa = dup_or_null(o->cert_rsa);
    s->key_rsa = dup_or_null(o->key_rsa);
    s->priority = dup_or_null(o->priority);
    s->client_ca = dup_or_null(o->client_ca);
    s->client_crl = dup_or_null(o->client_crl);
    if (!s->cert || !s->key || !s->priority || (o->cert_rsa && *o->cert_rsa && !s->cert_rsa) ||
        (o->key_rsa && *o->key_rsa && !s->key_rsa) ||
        (o->client_ca && *o->client_ca && !s->client_ca) ||
        (o->client_crl && *o->client_crl && !s->client_crl)) {
        snprintf(err, errlen, "certificate, key and priority are required");
        tls_server_free(s);
        return -1;
    }
    if (gnutls_session_ticket_key_generate(&s->ticket_key) < 0) {
        snprintf(err, errlen, "cannot generate the session ticket key");
        tls_server_free(s);
        return -1;
    }
    s->cur = creds_load(s, err, errlen);
    if (!s->cur) {
        tls_server_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

int tls_server_reload(struct tls_server *s, char *err, size_t errlen)
{
    struct creds *c = creds_load(s, err, errlen);
    if (!c)
        return -1;
    creds_unref(s->cur);
    s->cur = c;
    return 0;
}

static ssize_t on_pull(gnutls_transport_ptr_t p, void *data, size_t len)
{
    struct tls_session *t = p;
    size_t unread = t->in.len - t->in_off;

    if (unread == 0) {
        gnutls_transport_set_errno(t->s, EAGAIN);
        return -1;
    }
    if (len > unread)
        len = unread;
    memcpy(data, t->in.p + t->in_off, len);
    t->in_off += len;
    if (t->in_off == t->in.len) {
        buf_reset(&t->in);
        t->in_off = 0;
    }
    return (ssize_t)len;
}

static ssize_t on_push(gnutls_transport_ptr_t p, const void *data, size_t len)
{
    struct tls_session *t = p;

    buf_add(&t->out, data, len);
    if (t->out.oom) {
        gnutls_transport_set_errno(t->s, ENOMEM);
        return -1;
    }
    return (ssize_t)len;
}

struct tls_session *tls_session_new(struct tls_server *srv)
{
    struct tls_session *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    if (gnutls_init(&t->s, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0) {
        free(t);
        return NULL;
    }
    t->creds = srv->cur;
    t->creds->refs++;
    if (gnutls_priority_set(t->s, t->creds->prio) < 0 ||
        gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, t->creds->cert) < 0 ||
        gnutls_session_ticket_enable_server(t->s, &srv->ticket_key) < 0) {
        tls_session_free(t);
        return NULL;
    }
    gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_IGNORE);
    gnutls_transport_set_ptr(t->s, t);
    gnutls_transport_set_pull_function(t->s, on_pull);
    gnutls_transport_set_push_function(t->s, on_push);
    return t;
}

/* Verification of client certificates: the chain against tls_client_ca and
 * its CRL, the times, and the clientAuth purpose (EKU). */
static const gnutls_typed_vdata_st client_purpose = {
    .type = GNUTLS_DT_KEY_PURPOSE_OID,
    .data = (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT,
};

void tls_session_client_cert(struct tls_session *t, enum tls_client_cert mode)
{
    if (!t->creds->client_ca || mode == TLS_CLIENT_CERT_NONE)
        return;
    t->mode = mode;
    if (mode == TLS_CLIENT_CERT_REQUIRED) {
        gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
        /* GnuTLS fails the handshake itself when the chain does not verify */
        gnutls_session_set_verify_cert2(t->s, (gnutls_typed_vdata_st *)&client_purpose, 1, 0);
    } else {
        gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUEST);
    }
}

static void lower(char *p)
{
    for (; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
}

/* Reads what the client sent: the leaf's fingerprint and e-mail names, and
 * whether the chain verifies. */
static void peer_fill(struct tls_session *t)
{
    struct peer_cert *p;
    unsigned n = 0, status = 0;
    const gnutls_datum_t *certs;
    gnutls_x509_crt_t crt;
    unsigned char md[32];
    size_t mdlen = sizeof(md);
    int r;

    if (t->mode == TLS_CLIENT_CERT_NONE)
        return; /* tls_session_peer answers peer_none */
    if (!t->peer && !(t->peer = malloc(sizeof(*t->peer))))
        return; /* the same answer: no certificate is taken without its record */
    p = t->peer;
    memset(p, 0, sizeof(*p));
    certs = gnutls_certificate_get_peers(t->s, &n);
    if (!certs || n == 0) {
        snprintf(p->why, sizeof(p->why), "no client certificate");
        return;
    }
    p->present = true;
    if (gnutls_fingerprint(GNUTLS_DIG_SHA256, &certs[0], md, &mdlen) == 0 && mdlen == 32)
        for (size_t i = 0; i < mdlen; i++)
            snprintf(p->fingerprint + 2 * i, 3, "%02x", md[i]);
    if (gnutls_x509_crt_init(&crt) == 0) {
        if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0) {
            for (unsigned seq = 0; p->n_emails < PEER_CERT_EMAILS_MAX; seq++) {
                char name[PEER_CERT_EMAIL_LEN];
                size_t len = sizeof(name) - 1;

                r = gnutls_x509_crt_get_subject_alt_name(crt, seq, name, &len, NULL);
                if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                    break;
                if (r != GNUTLS_SAN_RFC822NAME || len == 0 || memchr(name, 0, len))
                    continue; /* another kind, too long, or not text */
                name[len] = '\0';
                lower(name);
                memcpy(p->emails[p->n_emails++], name, len + 1);
            }
        }
        gnutls_x509_crt_deinit(crt);
    }
    r = gnutls_certificate_verify_peers(t->s, (gnutls_typed_vdata_st *)&client_purpose, 1, &status);
    if (r < 0) {
        snprintf(p->why, sizeof(p->why), "verification failed: %s", gnutls_strerror(r));
        return;
    }
    if (status) {
        gnutls_datum_t out = {0};
        const char *what = status & GNUTLS_CERT_REVOKED            ? "revoked"
                           : status & GNUTLS_CERT_EXPIRED          ? "expired"
                           : status & GNUTLS_CERT_NOT_ACTIVATED    ? "not yet valid"
                           : status & GNUTLS_CERT_SIGNER_NOT_FOUND ? "unknown issuer"
                           : status & GNUTLS_CERT_PURPOSE_MISMATCH ? "not for client authentication"
                                                                   : "invalid";

        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
            snprintf(p->why, sizeof(p->why), "%s (%s)", what, (const char *)out.data);
            gnutls_free(out.data);
        } else {
            snprintf(p->why, sizeof(p->why), "%s", what);
        }
        return;
    }
    p->valid = true;
}

const struct peer_cert *tls_session_peer(struct tls_session *t)
{
    return t->peer ? t->peer : &peer_none;
}

void tls_session_free(struct tls_session *t)
{
    if (!t)
        return;
    gnutls_deinit(t->s);
    creds_unref(t->creds);
    buf_free(&t->in);
    buf_free(&t->out);
    free(t->peer);
    free(t);
}

int tls_session_feed(struct tls_session *t, const char *buf, size_t len)
{
    /* make room by dropping what GnuTLS pulled before growing the buffer */
    if (t->in_off && t->in.len + len >= t->in.cap) {
        t->in.len -= t->in_off;
        memmove(t->in.p, t->in.p + t->in_off, t->in.len);
        t->in.p[t->in.len] = '\0';
        t->in_off = 0;
    }
    buf_add(&t->in, buf, len);
    return t->in.oom ? -1 : 0;
}

int tls_session_handshake(struct tls_session *t, const char **errmsg)
{
    int r = gnutls_handshake(t->s);
    if (r == GNUTLS_E_SUCCESS) {
        peer_fill(t);
        return TLS_DONE;
    }
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED || !gnutls_error_is_fatal(r))
        return TLS_AGAIN;
    peer_fill(t); /* what was wrong with the client's certificate, if anything */
    if (errmsg)
        *errmsg = gnutls_strerror(r);
    return TLS_ERROR;
}

ssize_t tls_session_read(struct tls_session *t, char *out, size_t cap)
{
    for (;;) {
        ssize_t r = gnutls_record_recv(t->s, out, cap);
        if (r > 0)
            return r;
        if (r == 0)
            return -1; /* close_notify */
        if (r == GNUTLS_E_AGAIN) {
            /* an idle session keeps no input buffer */
            if (t->in.len == t->in_off) {
                buf_free(&t->in);
                t->in_off = 0;
            }
            return 0;
        }
        if (r == GNUTLS_E_INTERRUPTED || !gnutls_error_is_fatal((int)r))
            continue; /* e.g. a TLS 1.3 key update or a ticket: keep reading */
        return -1;
    }
}

int tls_session_write(struct tls_session *t, const char *buf, size_t len)
{
    while (len) {
        ssize_t r = gnutls_record_send(t->s, buf, len);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
            /* push never refuses; AGAIN can only come from a failed
             * allocation, retried with no data by GnuTLS's rules */
            r = gnutls_record_send(t->s, NULL, 0);
            if (r < 0)
                return -1;
            continue;
        }
        if (r < 0)
            return -1;
        buf += r;
        len -= (size_t)r;
    }
    return 0;
}

void tls_session_bye(struct tls_session *t)
{
    gnutls_bye(t->s, GNUTLS_SHUT_WR);
}

size_t tls_session_take_output(struct tls_session *t, char **buf)
{
    size_t n = t->out.len;

    /* hand over the whole buffer: no copy */
    *buf = n ? buf_take(&t->out) : NULL;
    return *buf ? n : 0;
}

const char *tls_session_version(struct tls_session *t)
{
    const char *v = gnutls_protocol_get_name(gnutls_protocol_get_version(t->s));
    return v ? v : "?";
}

int tls_session_channel_binding(struct tls_session *t, const char *name, unsigned char *out,
                                size_t cap)
{
    gnutls_channel_binding_t type;
    gnutls_datum_t d = {NULL, 0};
    int n;

    /* tls-exporter only where RFC 9266 defines it well: TLS 1.3 (TLS 1.2
     * would need the extended master secret, and has tls-server-end-point) */
    if (!strcmp(name, "tls-exporter") && gnutls_protocol_get_version(t->s) == GNUTLS_TLS1_3)
        type = GNUTLS_CB_TLS_EXPORTER;
    else if (!strcmp(name, "tls-server-end-point"))
        type = GNUTLS_CB_TLS_SERVER_END_POINT;
    else
        return -1;
    if (gnutls_session_channel_binding(t->s, type, &d) < 0)
        return -1;
    n = d.size > 0 && d.size <= cap && d.size <= 1024 ? (int)d.size : -1;
    if (n > 0)
        memcpy(out, d.data, d.size);
    gnutls_free(d.data);
    return n;
}

const char *tls_session_cipher(struct tls_session *t)
{
    const char *c = gnutls_cipher_get_name(gnutls_cipher_get(t->s));
    return c ? c : "?";
}

const char *tls_session_kx(struct tls_session *t)
{
    gnutls_group_t g = gnutls_group_get(t->s);
    const char *n = g ? gnutls_group_get_name(g) : gnutls_kx_get_name(gnutls_kx_get(t->s));
    return n ? n : "?";
}

bool tls_session_resumed(struct tls_session *t)
{
    return gnutls_session_is_resumed(t->s) != 0;
}
