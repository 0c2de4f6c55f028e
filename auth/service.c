/* The login service of coffred: verifies a user's password on threads of
 * its own (server/base/workers.h: a login never waits behind mail work on
 * libuv's pool; the account row is re-read at every login, so coffrectl's
 * changes apply at once), remembers successful verifications in an
 * authentication cache, and throttles guessing with timers, never blocking
 * the loop.
 *
 * The throttle counts failures per client group (an address cut to
 * client_prefix_v4/v6 bits), per account name and per (account, group)
 * pair. Once a group or an account has failures, each attempt on it waits
 * *before* it is checked until login_failure_delay * 2^(failures-1)
 * (capped) has passed since the previous check on it began, whichever
 * connection it comes on; a login cancelled while it waits is never checked.
 * Every answer given while failures are counted is held as long as a
 * failure's would be, so the time of an answer does not tell a failure from
 * a success. A success forgives only its own pair's failures (they are taken
 * back from the group's and the account's counts) and makes the pair known
 * good: later attempts of that account from that group wait only for the
 * pair's own failures, so that neither a guessing neighbour nor a
 * distributed attack on the account locks its owner out at home. Attempts
 * waiting or being checked are limited per group and per account (those of
 * a known-good pair per pair, with the account's limit); past the limit
 * AUTH_E_BUSY is answered at once, without a check. */
#include "auth/acl.h"
#include "auth/auth.h"
#include "auth/auth_priv.h"
#include "server/base/workers.h"
#include "server/base/config.h"
#include "server/base/log.h"
#include "server/base/metrics.h"
#include "server/base/peercert.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#define CACHE_MAX 100000                     /* remembered verifications */
#define CACHE_BUCKETS 65536                  /* power of two */
#define THROTTLE_MAX 100000                  /* remembered groups, names and pairs */
#define THROTTLE_BUCKETS 65536               /* power of two */
#define THROTTLE_FORGET_MS (15u * 60 * 1000) /* failures and good pairs forgotten after this */
#define HMAC_LEN 32
#define KEY_LEN 32
#define IP_TEXT_MAX 64
#define THROTTLE_KEY_MAX (AUTH_ADDR_MAX + IP_TEXT_MAX + 16)

/* ---- authentication cache (thread pool, under cache_mu) ---- */

struct cache_entry {
    unsigned char mac[HMAC_LEN];
    uint32_t who; /* hash of the address: auth_service_forget */
    uint64_t expires_ns;
    LIST_ENTRY(cache_entry) bucket;
    TAILQ_ENTRY(cache_entry) order; /* oldest first; one TTL, so by expiry */
};
LIST_HEAD(cache_bucket, cache_entry);
TAILQ_HEAD(cache_order, cache_entry);

/* ---- failure throttling (loop thread only) ---- */

/* A client group ("ip:..."), an account name ("user:...") or a pair of both
 * ("pair:..."). Entries that a login holds are pinned (out of the order
 * list, never evicted); the others are remembered while they count
 * failures or, for a pair, a recent success. */
struct throttle_entry {
    char key[THROTTLE_KEY_MAX];
    unsigned failures; /* not yet forgotten or forgiven */
    uint64_t fail_ms;  /* uv_now of the last failure */
    uint64_t good_ms;  /* pairs: uv_now of the last success, 0 = none */
    uint64_t next_ms;  /* no attempt held back by it is checked before this */
    unsigned inflight; /* logins holding it: waiting, being checked or answered */
    LIST_ENTRY(throttle_entry) bucket;
    TAILQ_ENTRY(throttle_entry) order; /* unpinned ones, least recently used first */
    uint64_t used_ms;
};
LIST_HEAD(throttle_bucket, throttle_entry);
TAILQ_HEAD(throttle_order, throttle_entry);

enum login_phase {
    LOGIN_WAITING, /* throttled: timer running before the check */
    LOGIN_WORKING, /* queued or running on the service's threads */
    LOGIN_HOLDING, /* checked, timer running before the callback */
    LOGIN_CALLING, /* inside the user's callback */
};

enum { T_IP, T_USER, T_PAIR, T_N };

/* What a login checks: a password, or one of SCRAM's two server steps
 * (the salt and iteration count for a name, then the client's proof). */
enum login_kind { KIND_PASSWORD, KIND_SCRAM_FIRST, KIND_SCRAM_FINAL, KIND_TICKET };

struct scram_work {
    struct auth_scram_params params; /* FIRST: out; FINAL: what the client was given */
    unsigned char *msg;              /* FINAL: AuthMessage, owned */
    size_t len;
    unsigned char proof[AUTH_SCRAM_KEY_LEN]; /* FINAL: ClientProof */
    unsigned char sig[AUTH_SCRAM_KEY_LEN];   /* FINAL: ServerSignature on success */
    const char *refuse;                      /* FINAL: the protocol's reason to fail */
};

struct auth_login {
    struct auth_service *s;
    enum login_phase phase;
    bool cancelled;
    bool addr_ok;
    bool timer_used;
    bool known_good;   /* the pair succeeded lately: only its own failures hold it back */
    bool scram_filled; /* a password login stored the account's missing SCRAM secret */
    bool ticket_ok;    /* KIND_TICKET: the ticket checked out (on the loop, at the start) */
    enum login_kind kind;
    struct scram_work *scram; /* SCRAM kinds */
    const char *why;          /* why a check failed, for the log (static text) */
    struct workers_task work;
    uv_timer_t timer;
    auth_login_cb cb;
    void *arg;
    char user[AUTH_ADDR_MAX]; /* normalized when addr_ok, else a lower-cased copy */
    char ip[IP_TEXT_MAX];     /* for logs */
    char svc[8];              /* "imap", "pop3": app passwords allowed there; "" none */
    struct throttle_entry *t[T_N];
    char *pw; /* wiped and freed once verified */
    size_t pwlen;
    int result;
    struct auth_account acct;
    bool external;               /* SASL EXTERNAL: the certificate instead of a password */
    bool has_peer;               /* peer holds the TLS session's client certificate */
    struct peer_cert peer;       /* copied at the start: the session may go first */
    char authzid[AUTH_ADDR_MAX]; /* EXTERNAL: normalized, "" when none was given */
    char reason[224];            /* a certificate refusal's reason, for the log only */
    LIST_ENTRY(auth_login) entry;
};

struct auth_service {
    uv_loop_t *loop;
    struct auth_db *db;
    struct workers *pool;
    char default_domain[256];
    unsigned cache_ttl_s;
    unsigned delay_ms;
    unsigned delay_max_ms;
    uint64_t forget_ms;
    unsigned prefix_v4, prefix_v6;
    unsigned max_inflight_ip, max_inflight_user; /* 0 = unlimited */
    unsigned scram_iter;
    bool closing;
    char dummy_hash[CRYPT_OUTPUT_SIZE];            /* unknown users are verified against it */
    unsigned char key[KEY_LEN];                    /* per process, for the cache's HMAC */
    unsigned char ticket_key[AUTH_TICKET_KEY_MAX]; /* ticket_key_file (loop thread) */
    size_t ticket_len;                             /* 0: tickets off */
    unsigned ticket_life_s;

    pthread_mutex_t cache_mu;
    struct cache_bucket *cache_buckets;
    struct cache_order cache_order;
    size_t cache_n;

    struct throttle_bucket *thr_buckets;
    struct throttle_order thr_order;
    size_t thr_n;

    LIST_HEAD(, auth_login) logins; /* every login not yet freed */

    /* access control lists: the snapshot the loop reads, and the changes
     * and reloads on the service's threads, one at a time (acl_mu). They
     * share the logins' connection: a second connection to the database
     * in the process was seen to leave the logins' reads on an old state
     * of it (an account added later was not found). A login's statement
     * that runs during an ACL transaction is part of it (reads, or the
     * bookkeeping writes of a login, which a rolled back change would
     * take along and the next login would make again). */
    struct acl_snap *acl;
    uint64_t acl_gen;      /* of the snapshot in place (loop thread) */
    uint64_t acl_load_gen; /* of the last one loaded (under acl_mu) */
    pthread_mutex_t acl_mu;
    bool acl_mu_ok;
    LIST_HEAD(, acl_task) acl_tasks; /* queued or running */
};

struct acl_task {
    struct auth_service *s;
    struct workers_task work;
    bool change; /* else a reload */
    struct acl_change ch;
    void (*cb)(void *arg, int result);
    void *arg;
    int result;
    struct acl_snap *snap; /* loaded after the change */
    uint64_t gen;
    LIST_ENTRY(acl_task) entry;
};

static uint32_t hash_bytes(const void *p, size_t len)
{
    const unsigned char *b = p;
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 16777619u;
    }
    return h;
}

/* ---- cache ---- */

static void cache_remove(struct auth_service *s, struct cache_entry *e)
{
    LIST_REMOVE(e, bucket);
    TAILQ_REMOVE(&s->cache_order, e, order);
    s->cache_n--;
    free(e);
}

/* HMAC(key, address 0 password 0 stored_hash): the cache never holds a
 * password or anything that verifies one without the process's key. */
static int cache_mac(const struct auth_service *s, const char *addr, const char *pw, size_t pwlen,
                     const char *hash, unsigned char mac[HMAC_LEN])
{
    size_t alen = strlen(addr), hlen = strlen(hash);
    size_t len = alen + 1 + pwlen + 1 + hlen;
    unsigned char *buf;
    int r;

    buf = malloc(len);
    if (!buf)
        return -1;
    memcpy(buf, addr, alen);
    buf[alen] = 0;
    memcpy(buf + alen + 1, pw, pwlen);
    buf[alen + 1 + pwlen] = 0;
    memcpy(buf + alen + 1 + pwlen + 1, hash, hlen);
    r = gnutls_hmac_fast(GNUTLS_MAC_SHA256, s->key, sizeof(s->key), buf, len, mac);
    explicit_bzero(buf, len);
    free(buf);
    return r < 0 ? -1 : 0;
}

static void cache_expire(struct auth_service *s, uint64_t now)
{
    struct cache_entry *e;

    while ((e = TAILQ_FIRST(&s->cache_order)) && e->expires_ns <= now)
        cache_remove(s, e);
}

static bool cache_lookup(struct auth_service *s, const unsigned char mac[HMAC_LEN])
{
    struct cache_entry *e;
    uint64_t now = uv_hrtime();
    bool hit = false;

    pthread_mutex_lock(&s->cache_mu);
    cache_expire(s, now);
    LIST_FOREACH(e, &s->cache_buckets[hash_bytes(mac, HMAC_LEN) & (CACHE_BUCKETS - 1)], bucket)
    {
        if (gnutls_memcmp(e->mac, mac, HMAC_LEN) == 0) {
            hit = true;
            break;
        }
    }
    pthread_mutex_unlock(&s->cache_mu);
    return hit;
}

static void cache_insert(struct auth_service *s, const unsigned char mac[HMAC_LEN],
                         const char *addr)
{
    struct cache_bucket *b = &s->cache_buckets[hash_bytes(mac, HMAC_LEN) & (CACHE_BUCKETS - 1)];
    struct cache_entry *e;
    uint64_t now = uv_hrtime();

    pthread_mutex_lock(&s->cache_mu);
    cache_expire(s, now);
    LIST_FOREACH(e, b, bucket)
    {
        if (memcmp(e->mac, mac, HMAC_LEN) == 0) {
            cache_remove(s, e);
            break;
        }
    }
    while (s->cache_n >= CACHE_MAX && (e = TAILQ_FIRST(&s->cache_order)))
        cache_remove(s, e);
    e = calloc(1, sizeof(*e));
    if (e) { /* without memory, the next login just runs yescrypt again */
        memcpy(e->mac, mac, HMAC_LEN);
        e->who = hash_bytes(addr, strlen(addr));
        e->expires_ns = now + (uint64_t)s->cache_ttl_s * 1000000000u;
        LIST_INSERT_HEAD(b, e, bucket);
        TAILQ_INSERT_TAIL(&s->cache_order, e, order);
        s->cache_n++;
    }
    pthread_mutex_unlock(&s->cache_mu);
}

/* Drops the entries of address (and of any address whose hash is the
 * same: they verify again). A walk of the cache, rare: an account leaving
 * this server (`coffrectl user move`). */
void auth_service_forget(struct auth_service *s, const char *address)
{
    uint32_t who = hash_bytes(address, strlen(address));
    struct cache_entry *e, *next;

    pthread_mutex_lock(&s->cache_mu);
    for (e = TAILQ_FIRST(&s->cache_order); e; e = next) {
        next = TAILQ_NEXT(e, order);
        if (e->who == who)
            cache_remove(s, e);
    }
    pthread_mutex_unlock(&s->cache_mu);
}

/* ---- throttling ---- */

/* Forgets e; listed tells whether it is in the order list (unpinned). */
static void throttle_remove(struct auth_service *s, struct throttle_entry *e, bool listed)
{
    LIST_REMOVE(e, bucket);
    if (listed)
        TAILQ_REMOVE(&s->thr_order, e, order);
    s->thr_n--;
    free(e);
}

/* Failures older than the forget period no longer count. */
static void throttle_age(struct auth_service *s, struct throttle_entry *e, uint64_t now)
{
    if (e->failures && now - e->fail_ms >= s->forget_ms) {
        e->failures = 0;
        e->next_ms = 0;
    }
    if (e->good_ms && now - e->good_ms >= s->forget_ms)
        e->good_ms = 0;
}

/* Finds or makes the entry of key and pins it for a login; NULL without
 * memory. */
static struct throttle_entry *throttle_hold(struct auth_service *s, const char *key)
{
    struct throttle_bucket *b =
        &s->thr_buckets[hash_bytes(key, strlen(key)) & (THROTTLE_BUCKETS - 1)];
    struct throttle_entry *e;
    uint64_t now = uv_now(s->loop);

    /* forget what has not been used for a while */
    while ((e = TAILQ_FIRST(&s->thr_order)) && now - e->used_ms >= s->forget_ms)
        throttle_remove(s, e, true);
    LIST_FOREACH(e, b, bucket)
    {
        if (strcmp(e->key, key) == 0)
            break;
    }
    if (!e) {
        while (s->thr_n >= THROTTLE_MAX && (e = TAILQ_FIRST(&s->thr_order)))
            throttle_remove(s, e, true);
        e = calloc(1, sizeof(*e));
        if (!e)
            return NULL;
        snprintf(e->key, sizeof(e->key), "%s", key);
        LIST_INSERT_HEAD(b, e, bucket);
        s->thr_n++;
    } else if (e->inflight == 0) {
        TAILQ_REMOVE(&s->thr_order, e, order);
    }
    e->inflight++;
    throttle_age(s, e, now);
    return e;
}

/* A login lets go of e: kept while it remembers something. */
static void throttle_release(struct auth_service *s, struct throttle_entry *e)
{
    if (--e->inflight)
        return;
    if (!e->failures && !e->good_ms) {
        throttle_remove(s, e, false);
        return;
    }
    e->used_ms = uv_now(s->loop);
    TAILQ_INSERT_TAIL(&s->thr_order, e, order);
}

/* login_failure_delay * 2^(n-1), capped; 0 for no failure. */
static uint64_t failure_delay(const struct auth_service *s, unsigned n)
{
    uint64_t d = s->delay_ms;

    if (n == 0)
        return 0;
    for (unsigned i = 1; i < n && d < s->delay_max_ms; i++)
        d *= 2;
    return d > s->delay_max_ms ? s->delay_max_ms : d;
}

/* The entries that hold an attempt back: the pair alone when it is known
 * good, else the group and the account. */
static size_t login_gates(const struct auth_login *l, struct throttle_entry **g)
{
    if (l->known_good) {
        g[0] = l->t[T_PAIR];
        return 1;
    }
    g[0] = l->t[T_IP];
    g[1] = l->t[T_USER];
    return 2;
}

/* The most failures among the entries that hold the attempt back. */
static unsigned gate_failures(const struct auth_login *l)
{
    struct throttle_entry *g[2];
    size_t n = login_gates(l, g);
    unsigned most = 0;

    for (size_t i = 0; i < n; i++)
        if (g[i]->failures > most)
            most = g[i]->failures;
    return most;
}

/* Counts a checked failure; returns how long its answer is held. */
static uint64_t throttle_failed(struct auth_service *s, struct auth_login *l)
{
    uint64_t now = uv_now(s->loop);

    for (int i = 0; i < T_N; i++) {
        struct throttle_entry *e = l->t[i];
        uint64_t next;

        if (e->failures < UINT_MAX)
            e->failures++;
        e->fail_ms = now;
        next = now + failure_delay(s, e->failures);
        if (next > e->next_ms)
            e->next_ms = next;
    }
    return failure_delay(s, gate_failures(l));
}

/* Any other answer: held as a failure's would be while failures are
 * counted; a success then forgives its pair's failures. */
static uint64_t throttle_answered(struct auth_service *s, struct auth_login *l, bool success)
{
    unsigned n = gate_failures(l);
    uint64_t hold = n ? failure_delay(s, n < UINT_MAX ? n + 1 : n) : 0;
    struct throttle_entry *pair = l->t[T_PAIR];

    if (!success)
        return hold;
    for (int i = T_IP; i <= T_USER; i++) {
        struct throttle_entry *e = l->t[i];

        e->failures -= pair->failures < e->failures ? pair->failures : e->failures;
        if (!e->failures)
            e->next_ms = 0;
    }
    pair->failures = 0;
    pair->next_ms = 0;
    pair->good_ms = uv_now(s->loop);
    if (!pair->good_ms)
        pair->good_ms = 1;
    return hold;
}

/* ---- logins ---- */

static void wipe_password(struct auth_login *l)
{
    if (!l->pw)
        return;
    explicit_bzero(l->pw, l->pwlen + 1);
    free(l->pw);
    l->pw = NULL;
    l->pwlen = 0;
}

static void service_destroy(struct auth_service *s);

/* Frees a login whose work and timer are over; finishes a deferred
 * auth_service_free when it was the last one. */
static void login_free(struct auth_login *l)
{
    struct auth_service *s = l->s;

    LIST_REMOVE(l, entry);
    for (int i = 0; i < T_N; i++)
        if (l->t[i])
            throttle_release(s, l->t[i]);
    wipe_password(l);
    if (l->scram) {
        if (l->scram->msg) {
            explicit_bzero(l->scram->msg, l->scram->len);
            free(l->scram->msg);
        }
        explicit_bzero(l->scram, sizeof(*l->scram));
        free(l->scram);
    }
    explicit_bzero(&l->acct, sizeof(l->acct));
    free(l);
    if (s->closing && LIST_EMPTY(&s->logins) && LIST_EMPTY(&s->acl_tasks))
        service_destroy(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    login_free(h->data);
}

/* The login is over: its timer (if any) must be closed before the memory
 * goes back. */
static void login_release(struct auth_login *l)
{
    if (l->timer_used) {
        if (!uv_is_closing((uv_handle_t *)&l->timer))
            uv_close((uv_handle_t *)&l->timer, on_timer_closed);
        return;
    }
    login_free(l);
}

static void login_deliver(struct auth_login *l)
{
    if (!l->cancelled && !l->s->closing) {
        l->phase = LOGIN_CALLING;
        l->cb(l->arg, l->result,
              l->result == AUTH_OK && l->kind != KIND_SCRAM_FIRST ? &l->acct : NULL);
    }
    login_release(l);
}

static void on_hold_done(uv_timer_t *t)
{
    login_deliver(t->data);
}

/* Runs cb after ms on the login's timer; false when it cannot. */
static bool login_timer(struct auth_login *l, uint64_t ms, uv_timer_cb cb)
{
    if (!l->timer_used) {
        if (uv_timer_init(l->s->loop, &l->timer) != 0)
            return false;
        l->timer_used = true;
        l->timer.data = l;
    }
    return uv_timer_start(&l->timer, cb, ms, 0) == 0;
}

/* A password login of an account without a SCRAM secret stores one
 * (accounts made before SCRAM, or restored from an older backup). */
static void scram_fill(struct auth_login *l, const char *hash)
{
    struct auth_scram_secret sec;
    char text[AUTH_SCRAM_TEXT_MAX];

    if (auth_scram_new_secret(l->pw, l->pwlen, l->s->scram_iter, &sec) == AUTH_OK &&
        auth_scram_secret_format(&sec, text, sizeof(text)) == AUTH_OK &&
        auth_db_scram_fill(l->s->db, l->acct.address, hash, text) == AUTH_OK)
        l->scram_filled = true;
    explicit_bzero(&sec, sizeof(sec));
    explicit_bzero(text, sizeof(text));
}

/* For a name without a secret: a salt and keys that stay the same for the
 * name while the process runs (a second exchange does not tell it apart
 * from an account) and that no proof matches but by chance. */
static void scram_fake(struct auth_service *s, const char *user, struct auth_scram_secret *sec)
{
    unsigned char mac[HMAC_LEN];
    char buf[AUTH_ADDR_MAX + 16];
    int n;

    memset(sec, 0, sizeof(*sec));
    n = snprintf(buf, sizeof(buf), "scram-salt %s", user);
    gnutls_hmac_fast(GNUTLS_MAC_SHA256, s->key, sizeof(s->key), buf, (size_t)n, mac);
    memcpy(sec->salt, mac, AUTH_SCRAM_SALT_LEN);
    sec->salt_len = AUTH_SCRAM_SALT_LEN;
    sec->iter = s->scram_iter;
    n = snprintf(buf, sizeof(buf), "scram-keys %s", user);
    gnutls_hmac_fast(GNUTLS_MAC_SHA256, s->key, sizeof(s->key), buf, (size_t)n, sec->stored_key);
    memcpy(sec->server_key, sec->stored_key, AUTH_SCRAM_KEY_LEN);
    explicit_bzero(mac, sizeof(mac));
}

/* SCRAM's steps on the service's threads: the account's secret (or a fake
 * one), then for the final step the proof's check. */
/* An account with require_client_cert: whether this login's certificate
 * fails it (none, not valid, or not mapping to the account); the reason
 * goes to l->reason. Blocking: the service's threads. */
static bool cert_refused(struct auth_login *l)
{
    if (auth_cert_matches(l->s->db, l->has_peer ? &l->peer : NULL, &l->acct))
        return false;
    snprintf(l->reason, sizeof(l->reason), "account requires a client certificate: %s",
             !l->has_peer     ? "none on this connection"
             : !l->peer.valid ? l->peer.why
                              : "the certificate is not this account's");
    return true;
}

static void scram_work(struct auth_login *l)
{
    struct auth_service *s = l->s;
    struct scram_work *w = l->scram;
    struct auth_scram_secret sec, fake;
    char text[AUTH_SCRAM_TEXT_MAX];
    bool real = false, ok;
    int r = AUTH_E_NOUSER;

    scram_fake(s, l->user, &fake);
    if (l->addr_ok)
        r = auth_db_lookup_scram(s->db, l->user, &l->acct, NULL, 0, text, sizeof(text));
    if (r != AUTH_OK && r != AUTH_E_NOUSER) {
        l->result = AUTH_E_TEMP;
        goto out;
    }
    if (r == AUTH_OK && auth_scram_secret_parse(text, &sec) == AUTH_OK)
        real = true;
    else
        sec = fake;
    if (l->kind == KIND_SCRAM_FIRST) {
        explicit_bzero(&l->acct, sizeof(l->acct)); /* nothing said of the account yet */
        memcpy(w->params.salt, sec.salt, sec.salt_len);
        w->params.salt_len = sec.salt_len;
        w->params.iter = sec.iter;
        l->result = AUTH_OK;
        goto out;
    }
    /* the final step: the same work whatever is wrong */
    if (w->params.salt_len != sec.salt_len || w->params.iter != sec.iter ||
        memcmp(w->params.salt, sec.salt, sec.salt_len) != 0) {
        sec = fake; /* the password changed between the two steps */
        if (real && !l->why)
            l->why = "the SCRAM secret changed during the exchange";
        real = false;
    }
    ok = auth_scram_verify(&sec, w->msg, w->len, w->proof, w->sig);
    if (!l->why)
        l->why = r == AUTH_E_NOUSER ? "unknown user"
                 : !real            ? "no SCRAM secret for this account (log in once with PLAIN)"
                 : !ok              ? "wrong password"
                                    : NULL;
    /* two factors: the same answer as a wrong password */
    if (!l->why && l->acct.require_client_cert && cert_refused(l))
        l->why = l->reason;
    if (l->why)
        l->result = AUTH_E_FAIL;
    else
        l->result = l->acct.disabled ? AUTH_E_DISABLED : AUTH_OK;
out:
    explicit_bzero(&sec, sizeof(sec));
    explicit_bzero(&fake, sizeof(fake));
    explicit_bzero(text, sizeof(text));
}

/* A ticket login on the service's threads: the ticket was checked at the
 * start; the account must exist, and is then refused as a password login
 * is (disabled, or needing a client certificate that a proxied connection
 * cannot carry). No hashing. */
static void ticket_work(struct auth_login *l)
{
    char hash[CRYPT_OUTPUT_SIZE];
    int r = l->addr_ok ? auth_db_lookup(l->s->db, l->user, &l->acct, hash, sizeof(hash))
                       : AUTH_E_NOUSER;

    explicit_bzero(hash, sizeof(hash));
    if (r == AUTH_E_NOUSER) {
        snprintf(l->reason, sizeof(l->reason), "ticket login: unknown user");
        l->result = AUTH_E_FAIL;
    } else if (r != AUTH_OK) {
        l->result = AUTH_E_TEMP;
    } else if (!l->ticket_ok) {
        snprintf(l->reason, sizeof(l->reason), "invalid or expired ticket");
        l->result = AUTH_E_FAIL;
    } else if (l->acct.require_client_cert && cert_refused(l)) {
        l->result = AUTH_E_FAIL;
    } else {
        l->result = l->acct.disabled ? AUTH_E_DISABLED : AUTH_OK;
    }
}

/* The service's threads: everything that may block or burn CPU.
 *
 * A password of the app password form ("SSSS-...", app_password.c) on a
 * mail service is first checked against the one app password of the
 * account with that selector (or, when there is none, against the dummy
 * hash, so that the cost does not tell whether the selector exists), then
 * against the main password. An attempt thus costs at most two yescrypt
 * computations, one when the password has not the app password form,
 * whatever the number of app passwords. The cache is keyed by the hash the
 * password matched: once an app password is deleted its row is not found,
 * so its cache entry is never consulted again. */
static void on_work(struct workers_task *w)
{
    struct auth_login *l = w->data;
    struct auth_service *s = l->s;
    char hash[CRYPT_OUTPUT_SIZE], app_hash[CRYPT_OUTPUT_SIZE], scram[AUTH_SCRAM_TEXT_MAX];
    char sel[AUTH_APP_SELECTOR_LEN + 1];
    unsigned char mac[HMAC_LEN], app_mac[HMAC_LEN];
    struct auth_app_password app;
    bool verified = false, via_app = false, use_cache, app_form, have_app = false;
    bool main_mac = false, app_mac_ok = false;
    int r;

    if (l->external) {
        if (!l->peer.valid) {
            snprintf(l->reason, sizeof(l->reason), "client certificate %s", l->peer.why);
            l->result = AUTH_E_FAIL;
            goto out;
        }
        r = l->addr_ok ? auth_cert_map(s->db, &l->peer, l->authzid, &l->acct) : AUTH_E_NOUSER;
        if (r == AUTH_E_NOUSER) {
            snprintf(l->reason, sizeof(l->reason),
                     l->authzid[0] ? "certificate sha256=%s does not map to the authorization "
                                     "identity"
                                   : "certificate sha256=%s maps to no account",
                     l->peer.fingerprint);
            l->result = AUTH_E_FAIL;
        } else if (r != AUTH_OK) {
            l->result = AUTH_E_TEMP;
        } else {
            l->result = l->acct.disabled ? AUTH_E_DISABLED : AUTH_OK;
        }
        goto out;
    }

    if (l->kind == KIND_TICKET) {
        ticket_work(l);
        return;
    }
    if (l->kind != KIND_PASSWORD) {
        scram_work(l);
        return;
    }

    scram[0] = '\0';
    app_hash[0] = '\0';
    app_form = l->svc[0] && l->pw && auth_app_parse(l->pw, l->pwlen, sel);
    if (!l->addr_ok || !l->pw) {
        /* the same cost as a wrong password */
        (void)auth_password_verify(l->pw ? l->pw : "", s->dummy_hash);
        if (app_form)
            (void)auth_password_verify(l->pw, s->dummy_hash);
        l->result = AUTH_E_FAIL;
        goto out;
    }
    r = auth_db_lookup_scram(s->db, l->user, &l->acct, hash, sizeof(hash), scram, sizeof(scram));
    if (r == AUTH_E_NOUSER) {
        (void)auth_password_verify(l->pw, s->dummy_hash);
        if (app_form)
            (void)auth_password_verify(l->pw, s->dummy_hash);
        l->result = AUTH_E_FAIL;
        goto out;
    }
    if (r != AUTH_OK) {
        l->result = AUTH_E_TEMP;
        goto out;
    }
    if (app_form) {
        r = auth_app_lookup(s->db, l->acct.id, sel, &app, app_hash, sizeof(app_hash));
        if (r == AUTH_E_TEMP) {
            l->result = AUTH_E_TEMP;
            goto out;
        }
        /* usable only where its services say (IMAP and POP3) */
        have_app = r == AUTH_OK && auth_app_service_ok(app.services, l->svc);
    }
    /* disabled accounts always pay for yescrypt and are never cached */
    use_cache = s->cache_ttl_s > 0 && !l->acct.disabled;
    if (use_cache) {
        app_mac_ok =
            have_app && cache_mac(s, l->acct.address, l->pw, l->pwlen, app_hash, app_mac) == 0;
        main_mac = cache_mac(s, l->acct.address, l->pw, l->pwlen, hash, mac) == 0;
    }
    if (app_mac_ok && cache_lookup(s, app_mac))
        verified = via_app = true;
    else if (main_mac && cache_lookup(s, mac))
        verified = true;
    if (!verified && app_form) {
        via_app = auth_password_verify(l->pw, have_app ? app_hash : s->dummy_hash) && have_app;
        if (via_app && app_mac_ok)
            cache_insert(s, app_mac, l->acct.address);
        verified = via_app;
    }
    if (!verified) {
        verified = auth_password_verify(l->pw, hash);
        if (verified && main_mac)
            cache_insert(s, mac, l->acct.address);
    }
    if (!verified) {
        l->result = AUTH_E_FAIL;
    } else if (l->acct.require_client_cert && cert_refused(l)) {
        /* two factors: the same answer as a wrong password */
        l->result = AUTH_E_FAIL;
    } else if (l->acct.disabled) {
        l->result = AUTH_E_DISABLED;
    } else {
        l->result = AUTH_OK;
        if (via_app) {
            snprintf(l->acct.app_label, sizeof(l->acct.app_label), "%s", app.label);
            auth_app_touch(s->db, &app);
        }
    }
    /* the SCRAM secret comes from the main password, never an app password */
    if (l->result == AUTH_OK && !via_app && !scram[0])
        scram_fill(l, hash);
out:
    explicit_bzero(hash, sizeof(hash));
    explicit_bzero(app_hash, sizeof(app_hash));
    explicit_bzero(scram, sizeof(scram));
    explicit_bzero(mac, sizeof(mac));
    explicit_bzero(app_mac, sizeof(app_mac));
    wipe_password(l);
}

int auth_service_lookup(struct auth_service *s, const char *address, size_t len,
                        struct auth_account *out)
{
    char addr[AUTH_ADDR_MAX];
    char hash[CRYPT_OUTPUT_SIZE];
    int r;

    if (auth_normalize_address(address, len, s->default_domain, addr, sizeof(addr)) < 0)
        return AUTH_E_BADADDR;
    r = auth_db_lookup(s->db, addr, out, hash, sizeof(hash));
    explicit_bzero(hash, sizeof(hash));
    return r;
}

int auth_service_slot(struct auth_service *s, const char *name, struct auth_slot *out)
{
    return auth_slot_get(s->db, name, out);
}

/* Loop thread: count the outcome, then answer at once or after the delay. */
static void on_work_done(struct workers_task *w, int status)
{
    struct auth_login *l = w->data;
    struct auth_service *s = l->s;
    uint64_t hold;

    if (status < 0) { /* cancelled before it ran: nothing to count or log */
        login_release(l);
        return;
    }
    /* the name as the client sent it: quoted, so it cannot forge fields */
    char quser[LOG_QUOTE_MAX];
    log_quote(quser, sizeof(quser), l->user);
    if (l->kind == KIND_SCRAM_FIRST) {
        /* nothing checked yet: the final step is counted */
        if (l->result != AUTH_OK)
            log_warn("auth temporary failure user=%s ip=%s", quser, l->ip);
        hold = 0;
    } else if (l->result == AUTH_E_FAIL) {
        /* counted even when the client already went away */
        hold = throttle_failed(s, l);
        if (l->why && l->why != l->reason) {
            /* SCRAM's final step: static text */
            log_info("auth failed user=%s ip=%s mech=SCRAM-SHA-256 reason=\"%s\"", quser, l->ip,
                     l->why);
        } else if (l->reason[0]) {
            char qwhy[LOG_QUOTE_MAX];
            log_quote(qwhy, sizeof(qwhy), l->reason);
            log_info("auth failed user=%s ip=%s%s reason=%s", quser, l->ip,
                     l->kind == KIND_SCRAM_FINAL ? " mech=SCRAM-SHA-256" : "", qwhy);
        } else {
            log_info("auth failed user=%s ip=%s", quser, l->ip);
        }
    } else {
        hold = throttle_answered(s, l, l->result == AUTH_OK);
        if (l->result == AUTH_E_DISABLED)
            log_info("auth refused: account disabled user=%s ip=%s", quser, l->ip);
        else if (l->result != AUTH_OK)
            log_warn("auth temporary failure user=%s ip=%s", quser, l->ip);
        if (l->scram_filled)
            log_info("auth stored the SCRAM secret of user=%s", quser);
    }
    if (l->result != AUTH_OK)
        explicit_bzero(&l->acct, sizeof(l->acct));

    if (hold > 0 && !l->cancelled && !s->closing) {
        l->phase = LOGIN_HOLDING;
        if (login_timer(l, hold, on_hold_done))
            return;
    }
    login_deliver(l);
}

/* Queues the check on the service's threads. */
static int login_check(struct auth_login *l)
{
    l->phase = LOGIN_WORKING;
    workers_queue(l->s->pool, &l->work, on_work, on_work_done);
    return 0;
}

static void on_gate(uv_timer_t *t);

/* Checks the attempt now when nothing holds it back, else waits until the
 * entries holding it back allow it. Returns 0, or -1 when neither the check
 * nor the wait could start. */
static int login_gate(struct auth_login *l)
{
    struct auth_service *s = l->s;
    struct throttle_entry *g[2];
    size_t n = login_gates(l, g);
    uint64_t now = uv_now(s->loop), at = now;

    for (size_t i = 0; i < n; i++)
        if (g[i]->next_ms > at)
            at = g[i]->next_ms;
    if (at > now) {
        l->phase = LOGIN_WAITING;
        metrics_count(METRICS_LOGIN_THROTTLED, 0);
        return login_timer(l, at - now, on_gate) ? 0 : -1;
    }
    /* the next attempt on a failing entry waits its delay from now on,
     * whatever connection it comes on */
    for (size_t i = 0; i < n; i++)
        if (g[i]->failures)
            g[i]->next_ms = now + failure_delay(s, g[i]->failures);
    return login_check(l);
}

static void on_gate(uv_timer_t *t)
{
    struct auth_login *l = t->data;

    if (login_gate(l) < 0) {
        l->result = AUTH_E_TEMP;
        login_deliver(l);
    }
}

static void format_remote(const struct auth_service *s, const struct sockaddr *sa, char *ip,
                          size_t iplen, char *key, size_t keylen)
{
    char buf[INET6_ADDRSTRLEN];
    uint8_t group[16];
    int fam = conf_client_group(sa, s->prefix_v4, s->prefix_v6, group);

    snprintf(ip, iplen, "unknown");
    snprintf(key, keylen, "ip:unknown");
    if (fam == AF_INET) {
        const void *a =
            sa->sa_family == AF_INET
                ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr[12];
        if (inet_ntop(AF_INET, a, buf, sizeof(buf)))
            snprintf(ip, iplen, "%s", buf);
        if (inet_ntop(AF_INET, group + 12, buf, sizeof(buf)))
            snprintf(key, keylen, "ip:%s/%u", buf, s->prefix_v4);
    } else if (fam == AF_INET6) {
        if (inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, sizeof(buf)))
            snprintf(ip, iplen, "%s", buf);
        if (inet_ntop(AF_INET6, group, buf, sizeof(buf)))
            snprintf(key, keylen, "ip:%s/%u", buf, s->prefix_v6);
    }
}

static struct auth_login *login_begin(struct auth_service *s, const char *service, const char *user,
                                      size_t ulen, const char *pw, size_t pwlen,
                                      const struct peer_cert *peer, bool external, bool authz_given,
                                      const struct sockaddr *remote, auth_login_cb cb, void *arg,
                                      enum login_kind kind, struct scram_work *sw);

struct auth_login *auth_login_start(struct auth_service *s, const char *user, size_t ulen,
                                    const char *pw, size_t pwlen, const struct sockaddr *remote,
                                    auth_login_cb cb, void *arg)
{
    return auth_login_start_svc(s, NULL, user, ulen, pw, pwlen, remote, cb, arg);
}

struct auth_login *auth_login_start_svc(struct auth_service *s, const char *service,
                                        const char *user, size_t ulen, const char *pw, size_t pwlen,
                                        const struct sockaddr *remote, auth_login_cb cb, void *arg)
{
    return auth_login_start_tls(s, service, user, ulen, pw, pwlen, NULL, remote, cb, arg);
}

struct auth_login *auth_login_start_tls(struct auth_service *s, const char *service,
                                        const char *user, size_t ulen, const char *pw, size_t pwlen,
                                        const struct peer_cert *peer, const struct sockaddr *remote,
                                        auth_login_cb cb, void *arg)
{
    return login_begin(s, service, user, ulen, pw, pwlen, peer, false, false, remote, cb, arg,
                       KIND_PASSWORD, NULL);
}

struct auth_login *auth_login_ticket(struct auth_service *s, const char *service, const char *user,
                                     size_t ulen, const char *ticket, size_t tlen,
                                     const struct sockaddr *remote, auth_login_cb cb, void *arg)
{
    return login_begin(s, service, user, ulen, ticket, tlen, NULL, false, false, remote, cb, arg,
                       KIND_TICKET, NULL);
}

void auth_service_set_ticket_key(struct auth_service *s, const unsigned char *key, size_t len,
                                 unsigned lifetime_s)
{
    explicit_bzero(s->ticket_key, sizeof(s->ticket_key));
    s->ticket_len = key && len <= sizeof(s->ticket_key) ? len : 0;
    if (s->ticket_len)
        memcpy(s->ticket_key, key, len);
    s->ticket_life_s = lifetime_s;
}

bool auth_service_tickets(const struct auth_service *s)
{
    return s->ticket_len != 0;
}

int auth_service_ticket_make(struct auth_service *s, const char *address,
                             const struct sockaddr *client, char *out, size_t cap)
{
    char ip[AUTH_TICKET_IP_MAX];

    if (!s->ticket_len || auth_ticket_ip(client, ip, sizeof(ip)) != AUTH_OK)
        return AUTH_E_FAIL;
    return auth_ticket_make(s->ticket_key, s->ticket_len, address, ip,
                            (int64_t)time(NULL) + s->ticket_life_s, out, cap);
}

/* EXTERNAL is throttled under the name it claims: the authorization
 * identity, else the certificate's first e-mail name, else its
 * fingerprint. */
struct auth_login *auth_login_external(struct auth_service *s, const char *authzid, size_t alen,
                                       const struct peer_cert *peer, const struct sockaddr *remote,
                                       auth_login_cb cb, void *arg)
{
    static const struct peer_cert none = {.why = "absent"};
    char name[AUTH_ADDR_MAX];

    if (!peer)
        peer = &none;
    if (alen)
        return login_begin(s, NULL, authzid, alen, NULL, 0, peer, true, true, remote, cb, arg,
                           KIND_PASSWORD, NULL);
    if (peer->valid && peer->n_emails)
        snprintf(name, sizeof(name), "%s", peer->emails[0]);
    else
        snprintf(name, sizeof(name), "cert:%.16s", peer->fingerprint);
    return login_begin(s, NULL, name, strlen(name), NULL, 0, peer, true, false, remote, cb, arg,
                       KIND_PASSWORD, NULL);
}

struct auth_login *auth_scram_begin(struct auth_service *s, const char *user, size_t ulen,
                                    const struct sockaddr *remote, auth_login_cb cb, void *arg)
{
    struct scram_work *w = calloc(1, sizeof(*w));

    if (!w)
        return NULL;
    return login_begin(s, NULL, user, ulen, NULL, 0, NULL, false, false, remote, cb, arg,
                       KIND_SCRAM_FIRST, w);
}

struct auth_login *auth_scram_finish(struct auth_service *s, const char *user, size_t ulen,
                                     const struct auth_scram_params *p, const void *auth_msg,
                                     size_t len, const unsigned char proof[AUTH_SCRAM_KEY_LEN],
                                     const char *refuse, const struct peer_cert *peer,
                                     const struct sockaddr *remote, auth_login_cb cb, void *arg)
{
    struct scram_work *w = calloc(1, sizeof(*w));

    if (!w || !(w->msg = malloc(len ? len : 1))) {
        free(w);
        return NULL;
    }
    memcpy(w->msg, auth_msg, len);
    w->len = len;
    w->params = *p;
    memcpy(w->proof, proof, AUTH_SCRAM_KEY_LEN);
    w->refuse = refuse;
    return login_begin(s, NULL, user, ulen, NULL, 0, peer, false, false, remote, cb, arg,
                       KIND_SCRAM_FINAL, w);
}

const struct auth_scram_params *auth_login_scram_params(const struct auth_login *l)
{
    return l->kind == KIND_SCRAM_FIRST ? &l->scram->params : NULL;
}

const unsigned char *auth_login_scram_signature(const struct auth_login *l)
{
    return l->kind == KIND_SCRAM_FINAL && l->result == AUTH_OK ? l->scram->sig : NULL;
}

static struct auth_login *login_begin(struct auth_service *s, const char *service, const char *user,
                                      size_t ulen, const char *pw, size_t pwlen,
                                      const struct peer_cert *peer, bool external, bool authz_given,
                                      const struct sockaddr *remote, auth_login_cb cb, void *arg,
                                      enum login_kind kind, struct scram_work *sw)
{
    char ip_key[IP_TEXT_MAX + 8], key[THROTTLE_KEY_MAX];
    struct auth_login *l;

    if (s->closing || ((kind == KIND_SCRAM_FIRST || kind == KIND_SCRAM_FINAL) && !sw)) {
        if (sw)
            free(sw->msg);
        free(sw);
        return NULL;
    }
    l = calloc(1, sizeof(*l));
    if (!l) {
        if (sw)
            free(sw->msg);
        free(sw);
        return NULL;
    }
    l->kind = kind;
    l->scram = sw;
    /* set before the work is queued: the threads read it */
    l->why = sw ? sw->refuse : NULL;
    l->s = s;
    l->cb = cb;
    l->arg = arg;
    l->phase = LOGIN_WORKING;
    l->work.data = l;
    if (service && strlen(service) < sizeof(l->svc))
        memcpy(l->svc, service, strlen(service) + 1);
    l->addr_ok =
        auth_normalize_address(user, ulen, s->default_domain, l->user, sizeof(l->user)) == AUTH_OK;
    if (!l->addr_ok) {
        /* still throttled and logged under (a bounded copy of) its name */
        size_t n = ulen < sizeof(l->user) - 1 ? ulen : sizeof(l->user) - 1;

        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)user[i];

            l->user[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        l->user[n] = '\0';
    }
    format_remote(s, remote, l->ip, sizeof(l->ip), ip_key, sizeof(ip_key));
    l->external = external;
    if (peer) {
        l->peer = *peer;
        l->has_peer = true;
    }
    if (external) {
        /* a name the client did not give (taken from the certificate for
         * the throttle) asks for nothing: the certificate's account */
        if (authz_given)
            snprintf(l->authzid, sizeof(l->authzid), "%s", l->addr_ok ? l->user : "");
        else
            l->addr_ok = true;
    }
    if (kind == KIND_TICKET) {
        /* HMAC only: checked here, the account read on the threads */
        char ip[AUTH_TICKET_IP_MAX];
        l->ticket_ok = s->ticket_len && l->addr_ok && pw &&
                       auth_ticket_ip(remote, ip, sizeof(ip)) == AUTH_OK &&
                       auth_ticket_check(s->ticket_key, s->ticket_len, pw, pwlen, l->user, ip,
                                         (int64_t)time(NULL)) == AUTH_OK;
    }
    /* a password with a NUL would be cut short by crypt: never matches */
    if (kind == KIND_PASSWORD && pw && pwlen <= AUTH_PASSWORD_MAX && !memchr(pw, '\0', pwlen)) {
        l->pw = malloc(pwlen + 1);
        if (!l->pw) {
            l->cancelled = true;
            LIST_INSERT_HEAD(&s->logins, l, entry);
            login_free(l);
            return NULL;
        }
        memcpy(l->pw, pw, pwlen);
        l->pw[pwlen] = '\0';
        l->pwlen = pwlen;
    }
    LIST_INSERT_HEAD(&s->logins, l, entry);
    l->t[T_IP] = throttle_hold(s, ip_key);
    snprintf(key, sizeof(key), "user:%s", l->user);
    l->t[T_USER] = throttle_hold(s, key);
    /* the group first: it holds no space, so the key reads one way */
    snprintf(key, sizeof(key), "pair:%s %s", ip_key, l->user);
    l->t[T_PAIR] = throttle_hold(s, key);
    if (!l->t[T_IP] || !l->t[T_USER] || !l->t[T_PAIR])
        goto fail;
    l->known_good = l->t[T_PAIR]->good_ms != 0;
    /* A known-good pair is limited on its own: neither a flood from its
     * address group nor a distributed attack on the account (which fill
     * their limits) locks the owner out. */
    if (l->known_good
            ? s->max_inflight_user && l->t[T_PAIR]->inflight > s->max_inflight_user
            : (s->max_inflight_ip && l->t[T_IP]->inflight > s->max_inflight_ip) ||
                  (s->max_inflight_user && l->t[T_USER]->inflight > s->max_inflight_user)) {
        /* answered without a check, so it tells nothing */
        char quser[LOG_QUOTE_MAX];

        log_quote(quser, sizeof(quser), l->user);
        log_info("auth refused: too many logins in progress user=%s ip=%s", quser, l->ip);
        wipe_password(l);
        l->result = AUTH_E_BUSY;
        l->phase = LOGIN_HOLDING;
        if (login_timer(l, 0, on_hold_done))
            return l;
        goto fail;
    }
    /* SCRAM's first step checks nothing: it is not held back */
    if (kind == KIND_SCRAM_FIRST ? login_check(l) < 0 : login_gate(l) < 0)
        goto fail;
    return l;
fail:
    l->cancelled = true; /* no callback: the caller sees NULL */
    login_release(l);
    return NULL;
}

void auth_login_cancel(struct auth_login *l)
{
    if (!l || l->cancelled)
        return;
    l->cancelled = true;
    switch (l->phase) {
    case LOGIN_WORKING:
        /* on_work_done frees it; if it has not started, it never will */
        workers_cancel(l->s->pool, &l->work);
        break;
    case LOGIN_WAITING: /* never checked: nothing counted */
    case LOGIN_HOLDING:
        uv_timer_stop(&l->timer);
        login_release(l);
        break;
    case LOGIN_CALLING:
        /* login_deliver frees it when the callback returns */
        break;
    }
}

/* ---- service ---- */

int auth_service_new(uv_loop_t *loop, const struct auth_service_opts *o, struct auth_service **out,
                     char *err, size_t errlen)
{
    struct auth_service *s;
    unsigned char rnd[24];
    char dummy_pw[sizeof(rnd) * 2 + 1];

    *out = NULL;
    s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return AUTH_E_TEMP;
    }
    s->loop = loop;
    s->cache_ttl_s = o->cache_ttl_s;
    s->delay_ms = o->failure_delay_ms;
    s->delay_max_ms = o->failure_delay_max_ms < o->failure_delay_ms ? o->failure_delay_ms
                                                                    : o->failure_delay_max_ms;
    s->forget_ms = s->delay_max_ms > THROTTLE_FORGET_MS ? s->delay_max_ms : THROTTLE_FORGET_MS;
    s->prefix_v4 = o->client_prefix_v4 && o->client_prefix_v4 <= 32 ? o->client_prefix_v4 : 32;
    s->prefix_v6 = o->client_prefix_v6 && o->client_prefix_v6 <= 128 ? o->client_prefix_v6 : 64;
    s->max_inflight_ip = o->max_pending_per_ip;
    s->max_inflight_user = o->max_pending_per_user;
    s->scram_iter =
        o->scram_iterations >= AUTH_SCRAM_ITER_MIN && o->scram_iterations <= AUTH_SCRAM_ITER_MAX
            ? o->scram_iterations
            : AUTH_SCRAM_ITER_DEFAULT;
    snprintf(s->default_domain, sizeof(s->default_domain), "%s",
             o->default_domain ? o->default_domain : "");
    TAILQ_INIT(&s->cache_order);
    TAILQ_INIT(&s->thr_order);
    LIST_INIT(&s->logins);
    if (pthread_mutex_init(&s->cache_mu, NULL) != 0) {
        snprintf(err, errlen, "cannot create a mutex");
        free(s);
        return AUTH_E_TEMP;
    }
    s->cache_buckets = calloc(CACHE_BUCKETS, sizeof(*s->cache_buckets));
    s->thr_buckets = calloc(THROTTLE_BUCKETS, sizeof(*s->thr_buckets));
    if (!s->cache_buckets || !s->thr_buckets) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (gnutls_rnd(GNUTLS_RND_KEY, s->key, sizeof(s->key)) < 0 ||
        gnutls_rnd(GNUTLS_RND_RANDOM, rnd, sizeof(rnd)) < 0) {
        snprintf(err, errlen, "no random numbers from GnuTLS");
        goto fail;
    }
    /* the dummy hash for unknown users: same method and cost as real ones */
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(dummy_pw + 2 * i, 3, "%02x", rnd[i]);
    if (auth_password_hash(dummy_pw, s->dummy_hash, sizeof(s->dummy_hash)) != AUTH_OK) {
        snprintf(err, errlen, "cannot hash with libxcrypt");
        goto fail;
    }
    explicit_bzero(dummy_pw, sizeof(dummy_pw));
    explicit_bzero(rnd, sizeof(rnd));
    if (auth_db_open(o->data_dir, &s->db, err, errlen) != AUTH_OK)
        goto fail;
    acl_db_set_max_entries(s->db, o->acl_max_entries);
    LIST_INIT(&s->acl_tasks);
    if (pthread_mutex_init(&s->acl_mu, NULL) != 0) {
        snprintf(err, errlen, "cannot create a mutex");
        goto fail;
    }
    s->acl_mu_ok = true;
    /* at start-up, before the loop serves anyone */
    if (acl_snap_load(s->db, &s->acl) != AUTH_OK) {
        snprintf(err, errlen, "cannot read the access control lists of the account database");
        goto fail;
    }
    if (workers_new(loop, o->threads ? o->threads : AUTH_THREADS_DEFAULT, &s->pool) < 0) {
        snprintf(err, errlen, "cannot start the login threads");
        goto fail;
    }
    *out = s;
    return AUTH_OK;
fail:
    explicit_bzero(dummy_pw, sizeof(dummy_pw));
    service_destroy(s);
    return AUTH_E_TEMP;
}

static void service_destroy(struct auth_service *s)
{
    struct cache_entry *c;
    struct throttle_entry *t;

    while ((c = TAILQ_FIRST(&s->cache_order)))
        cache_remove(s, c);
    while ((t = TAILQ_FIRST(&s->thr_order)))
        throttle_remove(s, t, true);
    free(s->cache_buckets);
    free(s->thr_buckets);
    workers_free(s->pool);
    auth_db_close(s->db);
    acl_snap_unref(s->acl);
    if (s->acl_mu_ok)
        pthread_mutex_destroy(&s->acl_mu);
    pthread_mutex_destroy(&s->cache_mu);
    explicit_bzero(s->key, sizeof(s->key));
    explicit_bzero(s->ticket_key, sizeof(s->ticket_key));
    free(s);
}

/* Logins still pending are cancelled: their callbacks are not called. The
 * service's memory goes back now when nothing is pending, otherwise when the
 * last pending work or timer ends, which needs the loop to run again (as it
 * must anyway to close handles). If the loop never runs again, that memory
 * is leaked, never touched. Callers normally cancel their logins first. */
void auth_service_free(struct auth_service *s)
{
    struct auth_login *l, *next;

    if (!s || s->closing)
        return;
    s->closing = true;
    for (l = LIST_FIRST(&s->logins); l; l = next) {
        next = LIST_NEXT(l, entry);
        auth_login_cancel(l);
    }
    /* ACL work not started never will (its done frees it); what runs
     * ends first */
    for (struct acl_task *t = LIST_FIRST(&s->acl_tasks); t; t = LIST_NEXT(t, entry))
        workers_cancel(s->pool, &t->work);
    if (LIST_EMPTY(&s->logins) && LIST_EMPTY(&s->acl_tasks))
        service_destroy(s);
}

/* ---- access control lists ---- */

const struct acl_snap *auth_service_acl(struct auth_service *s)
{
    return s->acl;
}

static int acl_apply(struct auth_db *db, const struct acl_change *ch)
{
    switch (ch->op) {
    case ACL_CH_SET:
        return acl_db_set(db, ch->owner, ch->mailbox, ch->ident, ch->rights, ch->mode);
    case ACL_CH_DELETE:
        return acl_db_delete(db, ch->owner, ch->mailbox, ch->ident);
    case ACL_CH_RENAME:
        return acl_db_rename(db, ch->owner, ch->mailbox, ch->other);
    case ACL_CH_DROP:
        return acl_db_drop(db, ch->owner, ch->mailbox);
    case ACL_CH_INHERIT:
        return acl_db_inherit(db, ch->owner, ch->mailbox, ch->other);
    }
    return AUTH_E_TEMP;
}

/* The service's thread: the change, then the tables read again. The
 * generation taken under the same lock orders the snapshots as their
 * reads, so that the loop never puts an older one in place of a newer. */
static void on_acl_work(struct workers_task *w)
{
    struct acl_task *t = w->data;
    struct auth_service *s = t->s;

    pthread_mutex_lock(&s->acl_mu);
    t->result = t->change ? acl_apply(s->db, &t->ch) : AUTH_OK;
    if (t->result == AUTH_OK) {
        if (acl_snap_load(s->db, &t->snap) == AUTH_OK)
            t->gen = ++s->acl_load_gen;
        else
            t->snap = NULL; /* the change stays; the next load shows it */
    }
    pthread_mutex_unlock(&s->acl_mu);
}

static void on_acl_done(struct workers_task *w, int status)
{
    struct acl_task *t = w->data;
    struct auth_service *s = t->s;

    LIST_REMOVE(t, entry);
    if (status == 0 && t->result == AUTH_OK && !t->snap)
        log_warn("acl: the access control lists could not be read again; the change shows at "
                 "the next reload");
    if (t->snap && t->gen > s->acl_gen) {
        acl_snap_unref(s->acl);
        s->acl = t->snap;
        s->acl_gen = t->gen;
        t->snap = NULL;
        if (!t->change) {
            size_t mailboxes, entries = acl_snap_count(s->acl, &mailboxes);
            log_info("acl: reloaded, %zu entries on %zu mailboxes", entries, mailboxes);
        }
    }
    acl_snap_unref(t->snap);
    if (!t->change && t->cb) { /* a reload's waiter always hears, to free what it holds */
        bool loaded = status == 0 && !s->closing && t->gen != 0;
        t->cb(t->arg, loaded ? AUTH_OK : AUTH_E_TEMP);
    } else if (status == 0 && t->cb && !s->closing)
        t->cb(t->arg, t->result);
    free(t);
    if (s->closing && LIST_EMPTY(&s->logins) && LIST_EMPTY(&s->acl_tasks))
        service_destroy(s);
}

static int acl_queue(struct auth_service *s, const struct acl_change *ch,
                     void (*cb)(void *arg, int result), void *arg)
{
    struct acl_task *t;

    if (s->closing || !(t = calloc(1, sizeof(*t))))
        return -1;
    t->s = s;
    t->change = ch != NULL;
    if (ch)
        t->ch = *ch;
    t->cb = cb;
    t->arg = arg;
    t->work.data = t;
    LIST_INSERT_HEAD(&s->acl_tasks, t, entry);
    workers_queue(s->pool, &t->work, on_acl_work, on_acl_done);
    return 0;
}

int auth_service_acl_change(struct auth_service *s, const struct acl_change *ch,
                            void (*cb)(void *arg, int result), void *arg)
{
    return acl_queue(s, ch, cb, arg);
}

int auth_service_acl_reload(struct auth_service *s, void (*cb)(void *arg, int result), void *arg)
{
    if (acl_queue(s, NULL, cb, arg) == 0)
        return 0;
    log_warn("acl: reload not started (out of memory)");
    return -1;
}
