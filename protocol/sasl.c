/* SASL PLAIN and LOGIN exchanges, decoded with auth's strict base64. */
#include "protocol/sasl.h"
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
    else
        return -1;
    return 0;
}

void proto_sasl_clear(struct proto_sasl *s)
{
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
    return s->mech == SASL_MECH_PLAIN      ? METRICS_MECH_PLAIN
           : s->mech == SASL_MECH_EXTERNAL ? METRICS_MECH_EXTERNAL
                                           : METRICS_MECH_LOGIN;
}

const char *proto_sasl_name(const struct proto_sasl *s)
{
    return s->mech == SASL_MECH_PLAIN      ? "PLAIN"
           : s->mech == SASL_MECH_EXTERNAL ? "EXTERNAL"
                                           : "LOGIN";
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
