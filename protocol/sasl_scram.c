/* SCRAM-SHA-256 and SCRAM-SHA-256-PLUS messages on the server's side (RFC
 * 5802 section 7, RFC 7677): the client-first and client-final messages
 * read strictly, left to right, once, under fixed bounds; the server-first
 * and server-final messages written. The secrets and the proof's check
 * live in the auth service (auth_scram_begin, auth_scram_finish).
 *
 * What a client may not do is not answered at once but remembered as a
 * reason to refuse the proof (counted and delayed like a wrong password):
 * a channel binding flag that does not match the mechanism, "y" where
 * -PLUS is offered (a downgrade, RFC 5802 section 6), an unknown or
 * unusable channel binding type, channel binding data other than this
 * connection's (a man in the middle), an authorization identity other than
 * the user, a nonce other than this exchange's (a replayed message).
 * Messages that break the grammar are a protocol error (BAD).
 *
 * The user name and the authorization identity are prepared as RFC 5802
 * section 5.1 asks, with the profile the secrets' passwords are prepared
 * with (auth_scram_prepare: PRECIS OpaqueString), before the account is
 * looked up; the AuthMessage keeps the bytes as sent. */
#include "protocol/sasl.h"
#include "protocol/sasl_scram.h"
#include "server/base/base64.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MSG_MAX 2048   /* a decoded client message */
#define NAME_MAX_ 255  /* a user name or authzid, unescaped */
#define NONCE_MAX 256  /* the client's nonce */
#define SNONCE_RAW 24  /* random bytes of the server's nonce */
#define CB_DATA_MAX 64 /* channel binding data: a SHA-512 at most */
#define GS2_MAX (NAME_MAX_ * 3 + 64)

enum scram_state { SCRAM_FIRST, SCRAM_LOOKUP, SCRAM_FINAL, SCRAM_CHECK, SCRAM_DONE };

struct proto_scram {
    enum scram_state state;
    const char *refuse; /* static text */
    char cb_name[32];   /* p=: the type asked for ("" for n and y) */
    char gs2[GS2_MAX];  /* the gs2 header as sent */
    size_t gs2_len;
    char cnonce[NONCE_MAX];
    size_t cnonce_len;
    char nonce[NONCE_MAX + 64]; /* client's and server's */
    size_t nonce_len;
    struct auth_scram_params params;
    /* AuthMessage: client-first-bare "," server-first "," final-without-proof */
    char auth[MSG_MAX * 2 + 512];
    size_t auth_len;
    unsigned char proof[AUTH_SCRAM_KEY_LEN];
    char out[MSG_MAX]; /* the base64 challenge */
};

/* ---- reading ---- */

/* saslname (RFC 5802 7): "=2C" is ',', "=3D" is '=', no other '=', no ','
 * nor NUL. Unescapes p[0..len) into out; -1 when malformed or too long. */
static long unescape(const char *p, size_t len, char *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        char c = p[i];

        if (c == '\0' || c == ',')
            return -1;
        if (c == '=') {
            if (len - i < 3)
                return -1;
            if (p[i + 1] == '2' && p[i + 2] == 'C')
                c = ',';
            else if (p[i + 1] == '3' && p[i + 2] == 'D')
                c = '=';
            else
                return -1;
            i += 2;
        }
        if (n + 1 >= cap)
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    return (long)n;
}

/* The length of the attribute value at p (up to ',' or the end). */
static size_t value_len(const char *p, size_t left)
{
    const char *comma = memchr(p, ',', left);

    return comma ? (size_t)(comma - p) : left;
}

/* One "x=" attribute name at *pos: true and *pos past the '='. */
static bool attr(const char *m, size_t len, size_t *pos, char name)
{
    if (len - *pos < 2 || m[*pos] != name || m[*pos + 1] != '=')
        return false;
    *pos += 2;
    return true;
}

/* Extensions: "," ALPHA "=" 1*value-char, each ignored (RFC 5802 5.1:
 * unknown optional attributes are ignored). True when the rest of m from
 * pos is such a list. */
static bool extensions(const char *m, size_t len, size_t pos)
{
    while (pos < len) {
        size_t v;

        if (m[pos] != ',' || len - pos < 4)
            return false;
        pos++;
        if (!((m[pos] >= 'a' && m[pos] <= 'z') || (m[pos] >= 'A' && m[pos] <= 'Z')) ||
            m[pos + 1] != '=')
            return false;
        pos += 2;
        v = value_len(m + pos, len - pos);
        if (v == 0)
            return false;
        pos += v;
    }
    return true;
}

static bool printable_nonce(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ',')
            return false;
    return len > 0;
}

/* The types this server takes, and whether cb gives their data. */
static bool cb_works(struct proto_sasl *s, const char *name)
{
    unsigned char buf[CB_DATA_MAX];

    return s->cb_data && s->cb_data(s->cb_arg, name, buf, sizeof(buf)) > 0;
}

bool proto_sasl_plus_ok(proto_sasl_cb_fn cb, void *arg)
{
    unsigned char buf[CB_DATA_MAX];

    return cb && (cb(arg, "tls-exporter", buf, sizeof(buf)) > 0 ||
                  cb(arg, "tls-server-end-point", buf, sizeof(buf)) > 0);
}

/* name (NUL-terminated, cap bytes) prepared in place; its new length, or
 * -1 when the prepared form does not fit. */
static long prepare_name(char *name, size_t cap)
{
    char out[NAME_MAX_ * 3 + 1];
    long n = auth_scram_prepare(name, strlen(name), out, sizeof(out));

    if (n < 0 || (size_t)n >= cap)
        return -1;
    memcpy(name, out, (size_t)n + 1);
    return n;
}

static void refuse(struct proto_scram *sc, const char *why)
{
    if (!sc->refuse)
        sc->refuse = why;
}

/* client-first-message = gs2-header client-first-message-bare */
static int client_first(struct proto_sasl *s, const char *m, size_t len)
{
    struct proto_scram *sc = s->scram;
    char authzid[NAME_MAX_ + 1];
    bool plus = s->mech == SASL_MECH_SCRAM_PLUS, has_authzid = false;
    size_t pos = 0, v;
    long n;

    if (len == 0 || memchr(m, '\0', len))
        return SASL_BAD;
    /* gs2-cbind-flag */
    if (m[0] == 'n' || m[0] == 'y') {
        pos = 1;
        if (plus)
            refuse(sc, "SCRAM-SHA-256-PLUS without channel binding");
        else if (m[0] == 'y' && proto_sasl_plus_ok(s->cb_data, s->cb_arg))
            refuse(sc, "channel binding downgrade: 'y' while SCRAM-SHA-256-PLUS is offered");
    } else if (attr(m, len, &pos, 'p')) {
        v = value_len(m + pos, len - pos);
        if (v == 0 || v >= sizeof(sc->cb_name))
            return SASL_BAD;
        for (size_t i = 0; i < v; i++) {
            char c = m[pos + i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-'))
                return SASL_BAD;
        }
        memcpy(sc->cb_name, m + pos, v);
        sc->cb_name[v] = '\0';
        pos += v;
        if (!plus)
            refuse(sc, "channel binding asked for with SCRAM-SHA-256");
        else if ((strcmp(sc->cb_name, "tls-exporter") != 0 &&
                  strcmp(sc->cb_name, "tls-server-end-point") != 0) ||
                 !cb_works(s, sc->cb_name))
            refuse(sc, "channel binding type not supported on this connection");
    } else {
        return SASL_BAD;
    }
    if (pos >= len || m[pos++] != ',')
        return SASL_BAD;
    if (attr(m, len, &pos, 'a')) {
        v = value_len(m + pos, len - pos);
        n = unescape(m + pos, v, authzid, sizeof(authzid));
        if (v == 0 || n <= 0)
            return SASL_BAD;
        has_authzid = true;
        pos += v;
    }
    if (pos >= len || m[pos++] != ',')
        return SASL_BAD;
    if (has_authzid && prepare_name(authzid, sizeof(authzid)) < 0)
        return SASL_BAD;
    if (pos > sizeof(sc->gs2))
        return SASL_BAD;
    memcpy(sc->gs2, m, pos);
    sc->gs2_len = pos;

    /* client-first-message-bare: [reserved-mext ","] username "," nonce */
    size_t bare = pos;
    if (len - pos >= 2 && m[pos] == 'm' && m[pos + 1] == '=')
        return SASL_BAD; /* mandatory extensions: none is supported */
    if (!attr(m, len, &pos, 'n'))
        return SASL_BAD;
    v = value_len(m + pos, len - pos);
    n = unescape(m + pos, v, s->user, sizeof(s->user));
    if (v == 0 || n <= 0)
        return SASL_BAD;
    if ((n = prepare_name(s->user, sizeof(s->user))) <= 0)
        return SASL_BAD;
    s->user_len = (size_t)n;
    pos += v;
    if (pos >= len || m[pos++] != ',' || !attr(m, len, &pos, 'r'))
        return SASL_BAD;
    v = value_len(m + pos, len - pos);
    if (!printable_nonce(m + pos, v) || v >= sizeof(sc->cnonce))
        return SASL_BAD;
    memcpy(sc->cnonce, m + pos, v);
    sc->cnonce_len = v;
    pos += v;
    if (!extensions(m, len, pos))
        return SASL_BAD;
    /* the authorization identity must be the user (addresses ignore case) */
    if (has_authzid &&
        ((size_t)strlen(authzid) != s->user_len || strncasecmp(authzid, s->user, s->user_len)))
        refuse(sc, "authorization identity other than the user");
    if (len - bare > MSG_MAX)
        return SASL_BAD;
    memcpy(sc->auth, m + bare, len - bare);
    sc->auth_len = len - bare;
    sc->state = SCRAM_LOOKUP;
    return SASL_SCRAM_LOOKUP;
}

/* client-final-message = channel-binding "," nonce ["," extensions] ","
 * proof */
static int client_final(struct proto_sasl *s, const char *m, size_t len)
{
    struct proto_scram *sc = s->scram;
    unsigned char cbind[GS2_MAX + CB_DATA_MAX], expect[GS2_MAX + CB_DATA_MAX];
    size_t pos = 0, v, without_proof, elen;
    long n;

    if (len == 0 || memchr(m, '\0', len) || !attr(m, len, &pos, 'c'))
        return SASL_BAD;
    v = value_len(m + pos, len - pos);
    n = base64_decode_strict(m + pos, v, cbind, sizeof(cbind));
    if (v == 0 || n <= 0)
        return SASL_BAD;
    pos += v;
    if (pos >= len || m[pos++] != ',' || !attr(m, len, &pos, 'r'))
        return SASL_BAD;
    v = value_len(m + pos, len - pos);
    if (!printable_nonce(m + pos, v))
        return SASL_BAD;
    if (v != sc->nonce_len || memcmp(m + pos, sc->nonce, v) != 0)
        refuse(sc, "nonce other than this exchange's (a replayed message?)");
    pos += v;
    /* the proof is the last attribute: ",p=" and 44 base64 characters */
    if (len - pos < 3 + 44 || memcmp(m + len - 47, ",p=", 3) != 0)
        return SASL_BAD;
    without_proof = len - 47;
    if (!extensions(m, without_proof, pos))
        return SASL_BAD;
    if (base64_decode_strict(m + len - 44, 44, sc->proof, sizeof(sc->proof)) != AUTH_SCRAM_KEY_LEN)
        return SASL_BAD;

    /* c= is the gs2 header, then this connection's binding data for p= */
    memcpy(expect, sc->gs2, sc->gs2_len);
    elen = sc->gs2_len;
    if (sc->cb_name[0]) {
        int d = s->cb_data ? s->cb_data(s->cb_arg, sc->cb_name, expect + elen, CB_DATA_MAX) : -1;
        if (d <= 0)
            refuse(sc, "channel binding type not supported on this connection");
        else
            elen += (size_t)d;
    }
    if ((size_t)n != elen || gnutls_memcmp(cbind, expect, elen) != 0)
        refuse(sc, sc->cb_name[0] ? "channel binding mismatch (a man in the middle?)"
                                  : "channel binding header mismatch");

    if (sc->auth_len + 1 + without_proof > sizeof(sc->auth))
        return SASL_BAD;
    sc->auth[sc->auth_len++] = ',';
    memcpy(sc->auth + sc->auth_len, m, without_proof);
    sc->auth_len += without_proof;
    sc->state = SCRAM_CHECK;
    return SASL_SCRAM_CHECK;
}

/* ---- the exchange ---- */

int proto_scram_new(struct proto_sasl *s)
{
    s->scram = calloc(1, sizeof(*s->scram));
    return s->scram ? 0 : -1;
}

void proto_scram_free(struct proto_sasl *s)
{
    if (!s->scram)
        return;
    explicit_bzero(s->scram, sizeof(*s->scram));
    free(s->scram);
    s->scram = NULL;
}

int proto_scram_step(struct proto_sasl *s, const unsigned char *msg, size_t len)
{
    struct proto_scram *sc = s->scram;

    switch (sc->state) {
    case SCRAM_FIRST:
        return client_first(s, (const char *)msg, len);
    case SCRAM_FINAL:
        return client_final(s, (const char *)msg, len);
    case SCRAM_DONE:
        /* the client acknowledges the server-final message with nothing */
        return len == 0 ? SASL_SCRAM_DONE : SASL_BAD;
    default: /* no line is read while the auth service works */
        return SASL_BAD;
    }
}

int proto_sasl_scram_first(struct proto_sasl *s, const struct auth_scram_params *p,
                           const char *snonce, const char **challenge)
{
    struct proto_scram *sc = s->scram;
    unsigned char rnd[SNONCE_RAW];
    char snb[64], salt[AUTH_SCRAM_SALT_MAX * 2], first[NONCE_MAX + 256];
    int n;

    *challenge = "";
    if (!sc || sc->state != SCRAM_LOOKUP)
        return SASL_BAD;
    if (!snonce) {
        if (gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof(rnd)) < 0 ||
            base64_encode(rnd, sizeof(rnd), snb, sizeof(snb)) < 0)
            return SASL_BAD;
        snonce = snb; /* 32 characters, no ',' and no '=' */
    }
    if (base64_encode(p->salt, p->salt_len, salt, sizeof(salt)) < 0)
        return SASL_BAD;
    n = snprintf(sc->nonce, sizeof(sc->nonce), "%.*s%s", (int)sc->cnonce_len, sc->cnonce, snonce);
    if (n < 0 || (size_t)n >= sizeof(sc->nonce))
        return SASL_BAD;
    sc->nonce_len = (size_t)n;
    n = snprintf(first, sizeof(first), "r=%s,s=%s,i=%u", sc->nonce, salt, p->iter);
    if (n < 0 || (size_t)n >= sizeof(first) || sc->auth_len + 1 + (size_t)n > sizeof(sc->auth))
        return SASL_BAD;
    sc->auth[sc->auth_len++] = ',';
    memcpy(sc->auth + sc->auth_len, first, (size_t)n);
    sc->auth_len += (size_t)n;
    sc->params = *p;
    if (base64_encode((const unsigned char *)first, (size_t)n, sc->out, sizeof(sc->out)) < 0)
        return SASL_BAD;
    sc->state = SCRAM_FINAL;
    *challenge = sc->out;
    return SASL_CONTINUE;
}

void proto_sasl_scram_check(struct proto_sasl *s, const struct auth_scram_params **p,
                            const char **msg, size_t *len, const unsigned char **proof,
                            const char **refuse_why)
{
    struct proto_scram *sc = s->scram;

    *p = &sc->params;
    *msg = sc->auth;
    *len = sc->auth_len;
    *proof = sc->proof;
    *refuse_why = sc->refuse;
}

int proto_sasl_scram_final(struct proto_sasl *s, const unsigned char sig[AUTH_SCRAM_KEY_LEN],
                           const char **challenge)
{
    struct proto_scram *sc = s->scram;
    char v[64] = "v=";

    *challenge = "";
    if (!sc || sc->state != SCRAM_CHECK ||
        base64_encode(sig, AUTH_SCRAM_KEY_LEN, v + 2, sizeof(v) - 2) < 0 ||
        base64_encode((const unsigned char *)v, strlen(v), sc->out, sizeof(sc->out)) < 0)
        return SASL_BAD;
    sc->state = SCRAM_DONE;
    *challenge = sc->out;
    return SASL_CONTINUE;
}
