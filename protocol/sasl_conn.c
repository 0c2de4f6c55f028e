/* What IMAP and POP3 share to run SASL on a connection: its channel
 * bindings, the hand-over of SCRAM's steps to the auth service, and the
 * choice between a password and a proxy's login ticket. Apart from sasl.c
 * so that the exchanges themselves need no connection. */
#include "protocol/sasl.h"
#include "server/base/conn.h"

int proto_sasl_conn_cb(void *conn, const char *name, unsigned char *out, size_t cap)
{
    return conn_channel_binding(conn, name, out, cap);
}

struct auth_login *proto_login_password(struct conn *c, const char *service, const char *user,
                                        size_t ulen, const char *pw, size_t pwlen, auth_login_cb cb,
                                        void *arg)
{
    /* from anywhere else a ticket is just a (wrong) password */
    if (auth_ticket_shape(pw, pwlen) && conn_from_proxy_network(c))
        return auth_login_ticket(conn_auth(c), service, user, ulen, pw, pwlen, conn_info(c)->peer,
                                 cb, arg);
    return auth_login_start_tls(conn_auth(c), service, user, ulen, pw, pwlen, conn_tls_peer(c),
                                conn_info(c)->peer, cb, arg);
}

struct auth_login *proto_sasl_scram_ask(struct proto_sasl *s, int r, struct conn *c,
                                        auth_login_cb cb, void *arg)
{
    const struct sockaddr *peer = conn_info(c)->peer;
    const struct auth_scram_params *p;
    const unsigned char *proof;
    const char *msg, *refuse;
    size_t len;

    if (r == SASL_SCRAM_LOOKUP)
        return auth_scram_begin(conn_auth(c), s->user, s->user_len, peer, cb, arg);
    proto_sasl_scram_check(s, &p, &msg, &len, &proof, &refuse);
    conn_login_begin(c, s->mech == SASL_MECH_SCRAM ? "SCRAM-SHA-256" : "SCRAM-SHA-256-PLUS",
                     s->user, s->user_len);
    return auth_scram_finish(conn_auth(c), s->user, s->user_len, p, msg, len, proof, refuse,
                             conn_tls_peer(c), peer, cb, arg);
}
