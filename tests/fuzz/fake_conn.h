/* Drives a protocol handler from fuzz input through tests/fuzz/fake_conn.c.
 * The first byte picks TLS on/off, plaintext-auth networks, chunk size and
 * login results; the rest is the client's bytes. */
#ifndef COFFRE_FAKE_CONN_H
#define COFFRE_FAKE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/base/conn.h"

struct conn *fake_conn_new(bool tls, bool plain_ok);
/* The configuration the stand-in connection gives (small limits, set on
 * first use); a test may change it before driving. */
struct conf *fake_conn_conf(void);
void fake_conn_finish_login(bool ok);
/* The ACL snapshot auth_service_acl gives (borrowed; NULL: none). */
struct acl_snap;
void fake_conn_set_acl(const struct acl_snap *snap);
int fake_conn_drive(const struct conn_handler *h, const uint8_t *data, size_t size);
/* Whether the protocol closed the connection before the last drive's
 * input ran out. */
bool fake_conn_closed_early(void);

#endif
