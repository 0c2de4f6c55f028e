/* Server side of the SASL exchanges offered by IMAP AUTHENTICATE and POP3
 * AUTH: PLAIN (RFC 4616) and LOGIN. The protocol frames the base64 lines;
 * this decodes them and says what to send next. */
#ifndef COFFRE_SASL_H
#define COFFRE_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/auth.h"
#include "server/base/metrics.h"

enum proto_sasl_mech { SASL_MECH_PLAIN, SASL_MECH_LOGIN, SASL_MECH_EXTERNAL };

struct proto_sasl {
    enum proto_sasl_mech mech;
    int step;
    char user[AUTH_ADDR_MAX * 2]; /* EXTERNAL: the authorization identity, may be empty */
    size_t user_len;
    char pass[AUTH_PASSWORD_MAX];
    size_t pass_len;
};

enum {
    SASL_CONTINUE = 1, /* send "+ " challenge and wait for a line */
    SASL_DONE = 0,     /* user/pass ready */
    SASL_BAD = -1,     /* malformed response */
    SASL_CANCEL = -2,  /* client sent "*" */
};

/* Mechanism names offered, space separated: "PLAIN LOGIN". */
#define PROTO_SASL_MECHS "PLAIN LOGIN"

/* Offered only when the TLS session carries a valid client certificate. */
#define PROTO_SASL_EXTERNAL "EXTERNAL"

/* Returns 0, or -1 for an unknown mechanism (case-insensitive name). */
int proto_sasl_start(struct proto_sasl *s, const char *mech, size_t len);

/* Feeds one client response (base64; "=" is an empty initial response).
 * On SASL_CONTINUE, *challenge is the base64 text to send after "+ ". */
int proto_sasl_step(struct proto_sasl *s, const char *line, size_t len, const char **challenge);

/* The metrics' names of s's mechanism and of a login's auth result. */
enum metrics_mech proto_sasl_metric(const struct proto_sasl *s);
enum metrics_login_result proto_login_metric(int auth_result);

/* The mechanism's name for logs and the audit trail. */
const char *proto_sasl_name(const struct proto_sasl *s);

/* Wipes the credentials. */
void proto_sasl_clear(struct proto_sasl *s);

#endif
