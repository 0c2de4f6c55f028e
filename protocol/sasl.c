/* SASL PLAIN and LOGIN exchanges, decoded with auth's strict base64, and
 * the framing of SCRAM's (protocol/sasl_scram.c). */
#include "protocol/sasl.h"
#include "protocol/sasl_scram.h"
#include "server/base/base64.h"

#include <string.h>
#include <strings.h>

int proto_sasl_start(struct proto_sasl *s, const char *mech, size_t len)
{
    memset(s, 0, sizeof(*s));
    if (len == 5 && !strncasecmp(mech, "PLAIN", 5))
        s->mech = SASL_MECH_PLAIN;
    else if (len == 5 && !strncasecmp(mech, "LOGIN", 5))
        s->mech = SASL_MECH_LOGIN;
    else if (len == 8 && !strncasecmp(mech, "EXTERNAL", 8))
        s->mech = SASL_MECH_EXTERNAL;
    else if (len == 13 && !strncasecmp(mech, "SCRAM-SHA-256", 13))
        s->mech = SASL_MECH_SCRAM;
    else if (len == 18 && !strncasecmp(mech, "SCRAM-SHA-256-PLUS", 18))
        s->mech = SASL_MECH_SCRAM_PLUS;
    else
        return -1;
    if ((s->mech == SASL_MECH_SCRAM || s->mech == SASL_MECH_SCRAM_PLUS) && proto_scram_new(s) < 0)
        return -1;
    return 0;
}

int proto_sasl_start_cb(struct proto_sasl *s, const char *mech, size_t len, proto_sasl_cb_fn cb,
                        void *arg)
{
    if (proto_sasl_start(s, mech, len) < 0)
        return -1;
    s->cb_data = cb;
    s->cb_arg = arg;
    if (s->mech == SASL_MECH_SCRAM_PLUS && !proto_sasl_plus_ok(cb, arg)) {
        proto_sasl_clear(s);
        return -1;
    }
    return 0;
}

const char *proto_sasl_mechs(bool plus)
{
    return plus ? "PLAIN LOGIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS" : "PLAIN LOGIN SCRAM-SHA-256";
}

void proto_sasl_clear(struct proto_sasl *s)
{
    proto_scram_free(s);
    explicit_bzero(s, sizeof(*s));
}

/* Decodes a base64 response into out; "=" is empty. -1 when malformed. */
static long decode(const char *line, size_t len, unsigned char *out, size_t cap)
{
    if (len == 1 && line[0] == '=')
        return 0;
    return base64_decode_strict(line, len, out, cap);
}

int proto_sasl_step(struct proto_sasl *s, const char *line, size_t len, const char **challenge)
{
    unsigned char buf[AUTH_ADDR_MAX * 2 + AUTH_PASSWORD_MAX + 4];
    long n;

    *challenge = "";
    if (len == 1 && line[0] == '*')
        return SASL_CANCEL;

    if (s->scram) {
        if (s->step == 0 && len == 0) {
            s->step = 1; /* no initial response: ask for the client-first */
            return SASL_CONTINUE;
        }
        s->step = 1;
        n = len == 0 ? 0 : decode(line, len, buf, sizeof(buf));
        int r = n < 0 ? SASL_BAD : proto_scram_step(s, buf, (size_t)n);
        explicit_bzero(buf, sizeof(buf));
        return r;
    }

    if (s->mech == SASL_MECH_PLAIN) {
        struct auth_sasl_plain p;
        if (s->step == 0 && len == 0) {
            s->step = 1; /* no initial response: ask for it */
            return SASL_CONTINUE;
        }
        n = decode(line, len, buf, sizeof(buf));
        if (n < 0 || auth_sasl_plain_parse(buf, (size_t)n, &p) < 0 ||
            p.authcid_len >= sizeof(s->user) || p.passwd_len >= sizeof(s->pass)) {
            explicit_bzero(buf, sizeof(buf));
            return SASL_BAD;
        }
        memcpy(s->user, p.authcid, p.authcid_len);
        s->user_len = p.authcid_len;
        memcpy(s->pass, p.passwd, p.passwd_len);
        s->pass_len = p.passwd_len;
        explicit_bzero(buf, sizeof(buf));
        return SASL_DONE;
    }

    if (s->mech == SASL_MECH_EXTERNAL) {
        /* RFC 4422 appendix A: the message is the authorization identity
         * (empty: the certificate's own); without an initial response an
         * empty challenge asks for it */
        if (s->step == 0 && len == 0) {
            s->step = 1;
            return SASL_CONTINUE;
        }
        n = len == 0 ? 0 : decode(line, len, buf, sizeof(buf));
        if (n < 0 || (size_t)n >= sizeof(s->user) || memchr(buf, 0, (size_t)n))
            return SASL_BAD;
        memcpy(s->user, buf, (size_t)n);
        s->user_len = (size_t)n;
        return SASL_DONE;
    }

    /* LOGIN: "Username:" then "Password:"; an initial response is the name */
    switch (s->step) {
    case 0:
        s->step = 1;
        if (len == 0) {
            *challenge = "VXNlcm5hbWU6"; /* "Username:" */
            return SASL_CONTINUE;
        }
        /* fall through: the initial response carries the user name */
        /* FALLTHROUGH */
    case 1:
        n = decode(line, len, buf, sizeof(buf));
        if (n <= 0 || (size_t)n >= sizeof(s->user) || memchr(buf, 0, (size_t)n))
            return SASL_BAD;
        memcpy(s->user, buf, (size_t)n);
        s->user_len = (size_t)n;
        s->step = 2;
        *challenge = "UGFzc3dvcmQ6"; /* "Password:" */
        return SASL_CONTINUE;
    default:
        n = decode(line, len, buf, sizeof(buf));
        if (n < 0 || (size_t)n >= sizeof(s->pass) || memchr(buf, 0, (size_t)n)) {
            explicit_bzero(buf, sizeof(buf));
            return SASL_BAD;
        }
        memcpy(s->pass, buf, (size_t)n);
        s->pass_len = (size_t)n;
        explicit_bzero(buf, sizeof(buf));
        return SASL_DONE;
    }
}

enum metrics_mech proto_sasl_metric(const struct proto_sasl *s)
{
    switch (s->mech) {
    case SASL_MECH_PLAIN:
        return METRICS_MECH_PLAIN;
    case SASL_MECH_SCRAM:
    case SASL_MECH_SCRAM_PLUS:
        return METRICS_MECH_SCRAM;
    case SASL_MECH_EXTERNAL:
        return METRICS_MECH_EXTERNAL;
    default:
        return METRICS_MECH_LOGIN;
    }
}

const char *proto_sasl_name(const struct proto_sasl *s)
{
    switch (s->mech) {
    case SASL_MECH_PLAIN:
        return "PLAIN";
    case SASL_MECH_SCRAM:
        return "SCRAM-SHA-256";
    case SASL_MECH_SCRAM_PLUS:
        return "SCRAM-SHA-256-PLUS";
    case SASL_MECH_EXTERNAL:
        return "EXTERNAL";
    default:
        return "LOGIN";
    }
}

enum metrics_login_result proto_login_metric(int auth_result)
{
    switch (auth_result) {
    case AUTH_OK:
        return METRICS_LOGIN_OK;
    case AUTH_E_DISABLED:
        return METRICS_LOGIN_DISABLED;
    case AUTH_E_TEMP:
        return METRICS_LOGIN_TEMPFAIL;
    case AUTH_E_BUSY:
        return METRICS_LOGIN_REFUSED;
    default:
        return METRICS_LOGIN_FAILED;
    }
}
