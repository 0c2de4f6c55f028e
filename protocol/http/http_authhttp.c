/* nginx's mail proxy asks here who a client is and where its mailbox lives
 * (ngx_mail_auth_http_module): GET auth_http_path with the credentials in
 * Auth-User and Auth-Pass (URL-escaped by nginx), the protocol in
 * Auth-Protocol and the client's address in Client-IP. The password is
 * checked by the login service as an IMAP or POP3 login of that client
 * would be (app passwords, the authentication cache, the failure throttle
 * keyed on Client-IP), then the account's slot is read from the directory
 * on the pool, and the answer sends nginx there with a login ticket in
 * place of the password (auth/ticket.c), or the password itself when
 * ticket_key_file is empty. Only the socket peers of proxy_networks are
 * answered; nginx's hop to the slot is cleartext on a private network. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"
#include "protocol/http/http_int.h"
#include "protocol/job.h"
#include "server/base/base64.h"
#include "server/base/config.h"
#include "server/base/log.h"

#define TEMP_STATUS "Temporary server problem, try again later"
#define TEMP_WAIT 3

struct authhttp {
    struct http_session *s; /* NULL once the session went away */
    struct auth_service *auth;
    struct auth_login *login; /* the password check in flight */
    struct proto_job *job;    /* the slot lookup in flight */
    bool pooled;              /* the slot lookup started: its free function frees this */
    bool checking;            /* waiting for the slot's probe (http_slotcheck.c) */
    struct http_slotcheck_wait wait;
    char proto[8]; /* "imap" or "pop3" */
    struct sockaddr_storage client;
    char client_text[AUTH_TICKET_IP_MAX];
    char user[AUTH_ADDR_MAX]; /* as given, for the log (cut) */
    char *pass;               /* kept for the answer when tickets are off */
    size_t pass_len;
    unsigned attempt;
    struct auth_account acct;
    char slot_name[AUTH_SLOT_MAX];
    struct auth_slot slot;
    int slot_r;
};

static unsigned long long conn_id(struct http_session *s)
{
    return (unsigned long long)conn_info(s->c)->id;
}

static void req_free(struct authhttp *a)
{
    if (a->pass) {
        explicit_bzero(a->pass, a->pass_len);
        free(a->pass);
    }
    explicit_bzero(a, sizeof(*a));
    free(a);
}

/* ---- the request's fields */

struct fields {
    const char *method, *user, *pass, *proto, *attempt, *client;
    size_t method_len, user_len, pass_len, proto_len, attempt_len, client_len;
};

static bool name_is(const char *n, size_t len, const char *lit)
{
    return strlen(lit) == len && !strncasecmp(n, lit, len);
}

/* The fields nginx sends, found in the head (already checked by
 * http_parse_head: one pass, lines end in LF). -1 when one is repeated. */
static int read_fields(const char *p, size_t len, struct fields *f)
{
    const char *end = p + len, *nl = memchr(p, '\n', len);

    memset(f, 0, sizeof(*f));
    for (const char *line = nl ? nl + 1 : end; line < end; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl)
            break;
        const char *le = nl > line && nl[-1] == '\r' ? nl - 1 : nl;
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (!colon)
            continue; /* the empty line */
        const char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t nlen = (size_t)(colon - line), vlen = (size_t)(ve - v);
        const char **slot = NULL;
        size_t *slot_len = NULL;
        if (name_is(line, nlen, "Auth-Method"))
            slot = &f->method, slot_len = &f->method_len;
        else if (name_is(line, nlen, "Auth-User"))
            slot = &f->user, slot_len = &f->user_len;
        else if (name_is(line, nlen, "Auth-Pass"))
            slot = &f->pass, slot_len = &f->pass_len;
        else if (name_is(line, nlen, "Auth-Protocol"))
            slot = &f->proto, slot_len = &f->proto_len;
        else if (name_is(line, nlen, "Auth-Login-Attempt"))
            slot = &f->attempt, slot_len = &f->attempt_len;
        else if (name_is(line, nlen, "Client-IP"))
            slot = &f->client, slot_len = &f->client_len;
        if (!slot)
            continue;
        if (*slot)
            return -1;
        *slot = v;
        *slot_len = vlen;
    }
    return 0;
}

/* nginx's escaping of Auth-User and Auth-Pass (%XX) undone into a new
 * buffer (never longer than the text); NULL when an escape is malformed
 * or memory is short. */
static char *unescape(const char *v, size_t len, size_t *out_len)
{
    char *o = malloc(len + 1);
    size_t n = 0;

    if (!o)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (v[i] != '%') {
            o[n++] = v[i];
            continue;
        }
        int hi = i + 2 < len ? hex_value((unsigned char)v[i + 1]) : -1,
            lo = hi >= 0 ? hex_value((unsigned char)v[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            explicit_bzero(o, n);
            free(o);
            return NULL;
        }
        o[n++] = (char)(hi << 4 | lo);
        i += 2;
    }
    o[n] = '\0';
    *out_len = n;
    return o;
}

/* ---- answers */

static void answer(struct http_session *s, const char *fields)
{
    http_respond(s, 200, NULL, fields, "", 0);
}

/* A refusal nginx passes on to the client. wait: Auth-Wait's seconds
 * (the client may try again after them), 0 for none (nginx closes). */
static void answer_status(struct http_session *s, const char *status, unsigned wait, bool temp)
{
    char f[256];

    snprintf(f, sizeof(f), "Auth-Status: %s\r\n%s", status,
             temp ? "Auth-Error-Code: 451 4.3.0\r\n" : "");
    if (wait) {
        size_t n = strlen(f);
        snprintf(f + n, sizeof(f) - n, "Auth-Wait: %u\r\n", wait);
    }
    answer(s, f);
}

static void answer_temp(struct http_session *s)
{
    answer_status(s, TEMP_STATUS, TEMP_WAIT, true);
}

/* The client's failed attempt: nginx lets it try again after Auth-Wait,
 * up to auth_http_max_attempts. */
static void answer_failed(struct http_session *s, const struct authhttp *a, const char *status)
{
    const struct conf *cf = conn_conf(s->c);
    unsigned wait = (cf->login_failure_delay_ms + 999) / 1000;

    answer_status(s, status, a->attempt >= cf->auth_http_max_attempts ? 0 : wait ? wait : 1, false);
}

/* Whether a password can stand in a header field as it is. */
static bool header_safe(const char *p, size_t len)
{
    if (!len || p[0] == ' ' || p[0] == '\t' || p[len - 1] == ' ' || p[len - 1] == '\t')
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] == 0x7f)
            return false;
    return true;
}

static unsigned slot_port(const struct authhttp *a)
{
    return !strcmp(a->proto, "pop3") ? a->slot.pop3_port : a->slot.imap_port;
}

/* The account's slot is known: nginx is sent there. */
static void answer_ok(struct http_session *s, struct authhttp *a)
{
    char f[AUTH_TICKET_MAX + AUTH_ADDR_MAX + AUTH_PASSWORD_MAX + 256];
    char ticket[AUTH_TICKET_MAX];
    unsigned port = slot_port(a);
    const char *pass = ticket;

    if (auth_service_ticket_make(a->auth, a->acct.address, (const struct sockaddr *)&a->client,
                                 ticket, sizeof(ticket)) != AUTH_OK) {
        if (!a->pass || !header_safe(a->pass, a->pass_len)) {
            log_warn("conn=%llu auth_http user=%s: the password cannot be passed on in a header; "
                     "set ticket_key_file",
                     conn_id(s), a->acct.address);
            answer_temp(s);
            return;
        }
        pass = a->pass;
    }
    if (!port) {
        log_warn("conn=%llu auth_http user=%s: slot %s has no %s port", conn_id(s), a->acct.address,
                 a->slot.name, a->proto);
        answer_temp(s);
        return;
    }
    snprintf(f, sizeof(f),
             "Auth-Status: OK\r\nAuth-Server: %s\r\nAuth-Port: %u\r\nAuth-User: %s\r\n"
             "Auth-Pass: %s\r\n",
             a->slot.host, port, a->acct.address, pass);
    log_info("conn=%llu auth_http user=%s client=%s proto=%s slot=%s server=%s:%u%s", conn_id(s),
             a->acct.address, a->client_text, a->proto, a->slot.name, a->slot.host, port,
             pass == ticket ? " ticket" : "");
    answer(s, f);
    explicit_bzero(f, sizeof(f));
    explicit_bzero(ticket, sizeof(ticket));
}

/* The session goes on with its next request. */
static void done(struct http_session *s)
{
    struct authhttp *a = s->authhttp;

    s->authhttp = NULL;
    if (!a->pooled)
        req_free(a);
    http_session_resume(s);
}

/* ---- the slot's port (http_slotcheck.c) */

/* The slot is down: its accounts get a temporary failure, not nginx's
 * "internal server error" after its own connect fails. */
static void answer_slot_down(struct http_session *s, struct authhttp *a, unsigned port,
                             const char *why)
{
    log_info("conn=%llu auth_http user=%s: slot %s at %s:%u does not accept connections (%s); "
             "try again later",
             conn_id(s), a->acct.address, a->slot.name, a->slot.host, port, why);
    answer_temp(s);
}

static void on_slot_checked(void *arg, bool up, const char *why)
{
    struct authhttp *a = arg;
    struct http_session *s = a->s;

    a->checking = false;
    if (up)
        answer_ok(s, a);
    else
        answer_slot_down(s, a, slot_port(a), why);
    done(s);
}

/* Answers now (true), or once the slot's probe is in (false). */
static bool check_slot(struct http_session *s, struct authhttp *a)
{
    unsigned port = slot_port(a);
    const char *why;
    int r;

    if (!port) {
        answer_ok(s, a); /* says the port is missing */
        return true;
    }
    r = http_slotcheck(conn_loop(s->c), conn_conf(s->c), a->slot.host, port, &a->wait,
                       on_slot_checked, a, &why);
    if (r < 0) {
        a->checking = true;
        return false;
    }
    if (r)
        answer_ok(s, a);
    else
        answer_slot_down(s, a, port, why);
    return true;
}

/* ---- the slot lookup (pool) */

static void slot_work(void *data)
{
    struct authhttp *a = data;

    a->slot_r = auth_service_slot(a->auth, a->slot_name, &a->slot);
}

static void slot_done(void *data)
{
    struct authhttp *a = data;
    struct http_session *s = a->s;

    a->job = NULL;
    if (!s)
        return;
    if (a->slot_r == AUTH_OK && a->slot.host[0]) {
        if (!check_slot(s, a)) {
            /* the session owns the request from here: the job's free
             * function leaves it */
            a->pooled = false;
            return;
        }
    } else {
        log_warn("conn=%llu auth_http user=%s: slot %s %s", conn_id(s), a->acct.address,
                 a->slot_name,
                 a->slot_r == AUTH_E_NOUSER ? "is not in the directory" : "could not be read");
        answer_temp(s);
    }
    done(s);
}

static void slot_free(void *data)
{
    struct authhttp *a = data;

    if (a->pooled)
        req_free(a);
}

/* ---- the login */

static void on_login(void *arg, int result, const struct auth_account *acct)
{
    struct authhttp *a = arg;
    struct http_session *s = a->s;
    const struct conf *cf = conn_conf(s->c);

    a->login = NULL;
    switch (result) {
    case AUTH_OK:
        a->acct = *acct;
        if (acct->move_to[0]) {
            log_info("conn=%llu auth_http user=%s: moving to slot %s; try again later", conn_id(s),
                     acct->address, acct->move_to);
            answer_temp(s);
            break;
        }
        snprintf(a->slot_name, sizeof(a->slot_name), "%s",
                 acct->slot[0] ? acct->slot : cf->auth_http_default_slot);
        if (!a->slot_name[0]) {
            log_warn("conn=%llu auth_http user=%s: the account has no slot and "
                     "auth_http_default_slot is empty",
                     conn_id(s), acct->address);
            answer_temp(s);
            break;
        }
        a->job = proto_job_start(conn_loop(s->c), PROTO_JOB_NO_ACCOUNT, slot_work, slot_done,
                                 slot_free, a);
        if (a->job) {
            a->pooled = true;
            return; /* slot_done answers */
        }
        answer_temp(s);
        break;
    case AUTH_E_FAIL:
        answer_failed(s, a, "Invalid login or password");
        break;
    case AUTH_E_DISABLED:
        answer_failed(s, a, "Account disabled; contact your administrator");
        break;
    default: /* AUTH_E_TEMP, AUTH_E_BUSY */
        answer_temp(s);
        break;
    }
    done(s);
}

bool http_authhttp(struct http_session *s, const struct http_request *r)
{
    const char *head = linebuf_data(&s->in);
    struct fields f;
    struct authhttp *a;
    char *user = NULL, *pass = NULL;
    size_t ulen = 0, plen = 0;

    if (!conn_from_proxy_network(s->c)) {
        log_info("conn=%llu auth_http refused: %s is not in proxy_networks", conn_id(s),
                 conn_info(s->c)->remote);
        http_respond_text(s, 403, "Forbidden");
        return true;
    }
    if (r->method != HTTP_GET) {
        http_respond(s, 405, "text/plain; charset=utf-8", "Allow: GET\r\n", "Method Not Allowed\n",
                     19);
        return true;
    }
    if (read_fields(head, (size_t)s->head_len, &f) < 0) {
        http_respond_text(s, 400, "repeated Auth- field");
        return true;
    }
    if (!f.proto || !f.method || !f.client) {
        http_respond_text(s, 400, "Auth-Protocol, Auth-Method and Client-IP are required");
        return true;
    }
    if (!name_is(f.proto, f.proto_len, "imap") && !name_is(f.proto, f.proto_len, "pop3")) {
        answer_status(s, "Unsupported protocol: IMAP and POP3 only", 0, false);
        return true;
    }
    if (!name_is(f.method, f.method_len, "plain") && !name_is(f.method, f.method_len, "login")) {
        answer_status(s, "Unsupported authentication method", 0, false);
        return true;
    }
    a = calloc(1, sizeof(*a));
    if (!a) {
        answer_temp(s);
        return true;
    }
    a->s = s;
    a->auth = conn_auth(s->c);
    a->attempt = 1;
    for (size_t i = 0; i < f.proto_len; i++)
        a->proto[i] = (char)(f.proto[i] | 0x20); /* letters only, as checked */
    if (f.attempt) {
        unsigned n = 0;
        for (size_t i = 0; i < f.attempt_len && i < 6 && f.attempt[i] >= '0' && f.attempt[i] <= '9';
             i++)
            n = n * 10 + (unsigned)(f.attempt[i] - '0');
        a->attempt = n ? n : 1;
    }
    /* the client's address, as the throttle and the ticket know it */
    {
        char ip[INET6_ADDRSTRLEN + 1] = "";
        struct sockaddr_in *v4 = (struct sockaddr_in *)&a->client;
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a->client;
        if (f.client_len < sizeof(ip)) {
            memcpy(ip, f.client, f.client_len);
            ip[f.client_len] = '\0';
        }
        if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
        } else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
        }
        if (!a->client.ss_family ||
            auth_ticket_ip((const struct sockaddr *)&a->client, a->client_text,
                           sizeof(a->client_text)) != AUTH_OK) {
            req_free(a);
            http_respond_text(s, 400, "Client-IP is not an IP address");
            return true;
        }
    }
    if (!f.user || !f.pass || !(user = unescape(f.user, f.user_len, &ulen)) ||
        !(pass = unescape(f.pass, f.pass_len, &plen))) {
        free(user);
        req_free(a);
        http_respond_text(s, 400, "Auth-User and Auth-Pass are required, %XX-escaped");
        return true;
    }
    snprintf(a->user, sizeof(a->user), "%.*s", (int)(ulen < 200 ? ulen : 200), user);
    if (!auth_service_tickets(a->auth)) {
        /* nginx logs in to the slot with the password itself */
        a->pass = pass;
        a->pass_len = plen;
    }
    a->login = auth_login_start_svc(a->auth, a->proto, user, ulen, pass, plen,
                                    (const struct sockaddr *)&a->client, on_login, a);
    explicit_bzero(user, ulen);
    free(user);
    if (pass != a->pass) {
        explicit_bzero(pass, plen);
        free(pass);
    }
    if (!a->login) {
        req_free(a);
        answer_temp(s);
        return true;
    }
    s->authhttp = a;
    return false; /* on_login answers */
}

void http_authhttp_abort(struct http_session *s, bool answer_now)
{
    struct authhttp *a = s->authhttp;

    if (!a)
        return;
    s->authhttp = NULL;
    if (a->login) {
        auth_login_cancel(a->login);
        a->login = NULL;
    }
    if (answer_now) {
        char quser[LOG_QUOTE_MAX];
        log_quote(quser, sizeof(quser), a->user);
        log_warn("conn=%llu auth_http user=%s: no answer in time", conn_id(s), quser);
        answer_temp(s);
    }
    a->s = NULL;
    if (a->checking) {
        http_slotcheck_cancel(&a->wait);
        a->checking = false;
    }
    if (a->pooled) {
        /* the work may be running: slot_free frees the request after it */
        proto_job_cancel(a->job);
        return;
    }
    req_free(a);
}
