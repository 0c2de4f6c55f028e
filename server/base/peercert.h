/* The client certificate of a TLS session as the handshake left it: filled
 * by tls/ (the verification), read by auth/ (the mapping to an account) and
 * the protocols (whether SASL EXTERNAL is offered). A plain struct here, in
 * the base layer, so that neither module includes the other. */
#ifndef COFFRE_PEERCERT_H
#define COFFRE_PEERCERT_H

#include <stdbool.h>

#define PEER_CERT_EMAILS_MAX 8 /* SAN rfc822Names kept from one certificate */
#define PEER_CERT_EMAIL_LEN 256

/* The client's certificate as the handshake left it. */
struct peer_cert {
    bool present;         /* the client sent a certificate */
    bool valid;           /* it verified against tls_client_ca/_crl, for client auth, now */
    char why[160];        /* when not valid: the reason, for the log ("" when valid) */
    char fingerprint[65]; /* SHA-256 of the leaf (DER), lower-case hex; "" when absent */
    unsigned n_emails;    /* SAN rfc822Names of the leaf, lower-cased */
    char emails[PEER_CERT_EMAILS_MAX][PEER_CERT_EMAIL_LEN];
};

#endif
