/* A stand-in for server/conn.c so the fuzz targets can drive the real
 * protocol sessions without sockets: output is checked and dropped, STARTTLS
 * and closing only set flags, and logins complete when the driver says. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/acl.h"
#include "auth/auth.h"
#include "server/base/config.h"
#include "server/base/conn.h"
#include "tests/fuzz/fake_conn.h"

struct conn {
    void *proto;
    struct conn_info info;
    struct sockaddr_storage peer;
    bool tls, closing, plain_ok;
};

static struct conf fake_conf;
static struct conn the_conn;
static auth_login_cb pending_cb;
static void *pending_arg;
static int pending_handle;
static bool pending_scram_first; /* the pending login is SCRAM's first step */
static bool closed_early;

void *conn_proto(struct conn *c) { return c->proto; }
void conn_set_proto(struct conn *c, void *p) { c->proto = p; }
const struct conn_info *conn_info(struct conn *c) { return &c->info; }
const struct conf *conn_conf(struct conn *c) { return &fake_conf; }
struct auth_service *conn_auth(struct conn *c) { return NULL; }
const char *conn_hostname(struct conn *c) { return "fuzz.example"; }
struct uv_loop_s *conn_loop(struct conn *c) { return NULL; }
size_t conn_write_queued(struct conn *c) { return 0; }
bool conn_is_tls(struct conn *c) { return c->tls; }
const struct peer_cert *conn_tls_peer(struct conn *c) { return NULL; }
bool conn_client_cert_valid(struct conn *c) { return false; }
bool conn_plaintext_auth_ok(struct conn *c) { return c->tls || c->plain_ok; }
bool conn_from_proxy_network(struct conn *c) { return false; }
int conn_channel_binding(struct conn *c, const char *name, unsigned char *out, size_t cap)
{
    /* a fixed stand-in, so that the fuzzers reach the -PLUS paths */
    if (!c->tls || cap < 32)
        return -1;
    memset(out, 0x5a, 32);
    return 32;
}
void conn_pause(struct conn *c) {}
void conn_resume(struct conn *c) {}
void conn_set_timeout(struct conn *c, unsigned ms) {}
void conn_set_logged_in(struct conn *c) {}
void conn_set_user(struct conn *c, const char *user) {}
void conn_login_begin(struct conn *c, const char *mech, const char *user, size_t ulen) {}
void conn_login_end(struct conn *c, int auth_result, const char *refused) {}
void conn_set_login_label(struct conn *c, const char *label) {}
void conn_set_client_id(struct conn *c, const char *name, const char *version) {}
void conn_count_command(struct conn *c) {}
const char *conn_login_revoked(struct conn *c, const char *address) { return NULL; }
bool conn_closing(struct conn *c) { return c->closing; }
void conn_close(struct conn *c) { c->closing = true; }
void conn_abort(struct conn *c) { c->closing = true; }

void conn_write(struct conn *c, const void *buf, size_t len)
{
    /* every reply a protocol writes is whole lines */
    if (len && ((const char *)buf)[len - 1] != '\n')
        abort();
}

void conn_printf(struct conn *c, const char *fmt, ...)
{
    char out[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, sizeof(out), fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(out))
        conn_write(c, out, (size_t)n);
}

int conn_compress(struct conn *c, const char *pending, size_t len)
{
    return -1; /* the fuzzed session is never compressed */
}

bool conn_compressed(struct conn *c)
{
    return false;
}

int conn_starttls(struct conn *c)
{
    if (c->tls)
        return -1;
    c->tls = true;
    return 0;
}

struct auth_login *auth_login_start_svc(struct auth_service *s, const char *service,
                                        const char *user, size_t ulen, const char *pw,
                                        size_t pwlen, const struct sockaddr *remote,
                                        auth_login_cb cb, void *arg)
{
    if (pending_cb)
        abort(); /* a session must never run two logins at once */
    pending_cb = cb;
    pending_arg = arg;
    return (struct auth_login *)&pending_handle;
}

struct auth_login *auth_login_start_tls(struct auth_service *s, const char *service,
                                        const char *user, size_t ulen, const char *pw, size_t pwlen,
                                        const struct peer_cert *peer,
                                        const struct sockaddr *remote, auth_login_cb cb, void *arg)
{
    return auth_login_start_svc(s, service, user, ulen, pw, pwlen, remote, cb, arg);
}

struct auth_login *auth_login_ticket(struct auth_service *s, const char *service, const char *user,
                                     size_t ulen, const char *ticket, size_t tlen,
                                     const struct sockaddr *remote, auth_login_cb cb, void *arg)
{
    return auth_login_start_svc(s, service, user, ulen, ticket, tlen, remote, cb, arg);
}

struct auth_login *auth_login_external(struct auth_service *s, const char *authzid, size_t alen,
                                       const struct peer_cert *peer, const struct sockaddr *remote,
                                       auth_login_cb cb, void *arg)
{
    return auth_login_start_svc(s, "imap", authzid, alen, NULL, 0, remote, cb, arg);
}

struct auth_login *auth_scram_begin(struct auth_service *s, const char *user, size_t ulen,
                                    const struct sockaddr *remote, auth_login_cb cb, void *arg)
{
    struct auth_login *l = auth_login_start_svc(s, "imap", user, ulen, NULL, 0, remote, cb, arg);

    pending_scram_first = true;
    return l;
}

struct auth_login *auth_scram_finish(struct auth_service *s, const char *user, size_t ulen,
                                     const struct auth_scram_params *p, const void *auth_msg,
                                     size_t len, const unsigned char proof[AUTH_SCRAM_KEY_LEN],
                                     const char *refuse, const struct peer_cert *peer,
                                     const struct sockaddr *remote, auth_login_cb cb, void *arg)
{
    return auth_login_start_svc(s, "imap", user, ulen, NULL, 0, remote, cb, arg);
}

const struct auth_scram_params *auth_login_scram_params(const struct auth_login *l)
{
    static const struct auth_scram_params p = {.salt = "fuzzsalt", .salt_len = 8, .iter = 4096};
    return &p;
}

const unsigned char *auth_login_scram_signature(const struct auth_login *l)
{
    static const unsigned char sig[AUTH_SCRAM_KEY_LEN];
    return sig;
}

void auth_login_cancel(struct auth_login *l)
{
    pending_cb = NULL;
    pending_scram_first = false;
}

/* Another account's store is never reached here (no loop, no service);
 * weak: fuzz-lmtp has a lookup of its own. */
__attribute__((weak)) int auth_service_lookup(struct auth_service *s, const char *address, size_t len,
                        struct auth_account *out)
{
    return AUTH_E_NOUSER;
}

/* The ACL snapshot a target gives (fake_conn_set_acl; none by default:
 * the shared namespace names nothing); a change is made at once and
 * succeeds. */
static const struct acl_snap *fake_acl;

void fake_conn_set_acl(const struct acl_snap *snap)
{
    fake_acl = snap;
}

const struct acl_snap *auth_service_acl(struct auth_service *s)
{
    return fake_acl;
}

int auth_service_acl_change(struct auth_service *s, const struct acl_change *ch,
                            void (*cb)(void *arg, int result), void *arg)
{
    cb(arg, 0);
    return 0;
}

int auth_service_acl_reload(struct auth_service *s, void (*cb)(void *arg, int result), void *arg)
{
    if (cb)
        cb(arg, 0);
    return 0;
}

/* auth_http (protocol/http/http_authhttp.c): no tickets, no slots */
bool auth_service_tickets(const struct auth_service *s)
{
    return false;
}

int auth_service_ticket_make(struct auth_service *s, const char *address,
                             const struct sockaddr *client, char *out, size_t cap)
{
    return AUTH_E_FAIL;
}

int auth_service_slot(struct auth_service *s, const char *name, struct auth_slot *out)
{
    return AUTH_E_NOUSER;
}

struct conf *fake_conn_conf(void)
{
    static bool init;
    if (!init) {
        conf_defaults(&fake_conf);
        fake_conf.max_line_length = 1024; /* small limits reach the edges sooner */
        fake_conf.max_literal_size = 2048;
        fake_conf.max_bad_commands = 50;
        init = true;
    }
    return &fake_conf;
}

bool fake_conn_closed_early(void)
{
    return closed_early;
}

struct conn *fake_conn_new(bool tls, bool plain_ok)
{
    fake_conn_conf();
    memset(&the_conn, 0, sizeof(the_conn));
    the_conn.tls = tls;
    the_conn.plain_ok = plain_ok;
    the_conn.info.id = 1;
    the_conn.info.service = "fuzz";
    the_conn.info.remote = "fuzz";
    the_conn.info.peer = (const struct sockaddr *)&the_conn.peer;
    pending_cb = NULL;
    pending_scram_first = false;
    return &the_conn;
}

void fake_conn_finish_login(bool ok)
{
    static const struct auth_account acct = {.id = 7, .address = "fuzz@example.org"};
    auth_login_cb cb = pending_cb;
    if (!cb)
        return;
    bool first = pending_scram_first;
    pending_cb = NULL;
    pending_scram_first = false;
    cb(pending_arg, ok ? AUTH_OK : AUTH_E_FAIL, ok && !first ? &acct : NULL);
}

int fake_conn_drive(const struct conn_handler *h, const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    struct conn *c = fake_conn_new(flags & 1, flags & 2);
    data++;
    size--;
    if (h->on_open(c) < 0)
        return 0;
    /* feed in chunks whose sizes come from the flags, completing logins
     * between chunks, as the loop would */
    size_t chunk = 1 + ((flags >> 2) & 0x3f) * 7;
    bool ok = flags & 0x80;
    while (size && !c->closing) {
        size_t n = size < chunk ? size : chunk;
        h->on_input(c, (const char *)data, n);
        data += n;
        size -= n;
        if (pending_cb) {
            fake_conn_finish_login(ok);
            ok = !ok;
        }
    }
    closed_early = c->closing;
    if (!c->closing && h->on_timeout)
        h->on_timeout(c);
    h->on_close(c);
    return 0;
}
