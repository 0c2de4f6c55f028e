/* The store cache of the per-account service: one storage handle per
 * account for all its sessions and deliveries, opened and closed on the
 * thread pool. A store nobody holds any more is kept open for a while
 * (mail_keep_open): a client that logs in again finds its index open, and
 * closing (flag names written back, index checkpointed) happens once rather
 * than per session. A delivery lingers a little longer still, holding its
 * store as it was, so that a stream of deliveries to the same accounts
 * neither reopens nor refreshes their index per message. Loop thread. */
#include <stdlib.h>
#include <string.h>

#include "protocol/job.h"
#include "protocol/mailuser/mailuser_int.h"
#include "server/base/log.h"

/* The stores open or opening; a closing one has left. */
static LIST_HEAD(, mailuser) registry = LIST_HEAD_INITIALIZER(registry);
static struct mailuser_req *ready, **ready_tail = &ready; /* answers due on the loop */

uint64_t mu_idle_close_ms;
static uint64_t keep_ms;
static unsigned keep_max;
static unsigned n_kept;
static unsigned n_lingering;
static bool shutting_down;

struct mailuser *mu_find(int64_t id)
{
    struct mailuser *mu;
    LIST_FOREACH(mu, &registry, entry)
    {
        if (mu->id == id)
            return mu;
    }
    return NULL;
}

void mu_answer_ready(void)
{
    struct mailuser_req *r = ready;

    ready = NULL;
    ready_tail = &ready;
    while (r) {
        struct mailuser_req *next = r->next;
        struct mailuser *mu = r->mu;
        if (r->cancelled) {
            mu_release(mu);
        } else if (mu->open_err) {
            int err = mu->open_err;
            mu_release(mu);
            r->cb(r->arg, err, NULL);
        } else {
            r->cb(r->arg, 0, mu); /* the hold passes to the session */
        }
        free(r);
        r = next;
    }
}

/* Answers a request on the next loop iteration, never from inside the call
 * that made it. */
static void answer_later(struct mailuser_req *r)
{
    r->next = NULL;
    *ready_tail = r;
    ready_tail = &r->next;
    mu_wake();
}

static void answer_waiters(struct mailuser *mu)
{
    struct mailuser_req *r = mu->waiters, *next;

    mu->waiters = NULL;
    for (; r; r = next) {
        next = r->next;
        answer_later(r);
    }
}

/* ---- closing ---- */

/* Not shared any more: later opens of the account start afresh. */
static void stop_sharing(struct mailuser *mu)
{
    if (mu->state != MU_CLOSING)
        LIST_REMOVE(mu, entry);
    mu->state = MU_CLOSING;
}

static void mu_free(struct mailuser *mu)
{
    free(mu->data_dir);
    free(mu);
}

static void close_work(void *data)
{
    struct mailuser *mu = data;
    if (mu->watch)
        storage_unwatch(mu->watch);
    if (mu->u) {
        /* leave the file names right for other Maildir tools */
        storage_sync_flags(mu->u, 0, NULL, NULL);
        storage_close(mu->u);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    struct mailuser *mu = h->data;
    mu->timer_closed = true;
    if (!proto_job_start(mu_loop, mu->id, close_work, NULL, (proto_job_fn)mu_free, mu)) {
        close_work(mu); /* no pool: close here rather than leak the index */
        mu_free(mu);
    }
}

static void begin_close(struct mailuser *mu)
{
    stop_sharing(mu);
    if (mu->u && !uv_is_closing((uv_handle_t *)&mu->timer)) {
        uv_close((uv_handle_t *)&mu->timer, on_timer_closed);
        return;
    }
    if (mu->u) {
        /* the loop is shutting down and closed the timer already */
        close_work(mu);
        mu_free(mu);
        return;
    }
    mu_free(mu); /* open failed: nothing to close */
}

/* ---- keeping ---- */

static void unkeep(struct mailuser *mu)
{
    mu->kept = false;
    n_kept--;
}

/* Makes room for one more kept store by closing the one idle the longest. */
static bool evict_oldest_kept(void)
{
    struct mailuser *mu, *old = NULL;
    LIST_FOREACH(mu, &registry, entry)
    {
        if (mu->kept && mu->holds == 0 && (!old || mu->idle_since < old->idle_since))
            old = mu;
    }
    if (!old)
        return false;
    unkeep(old);
    begin_close(old);
    return true;
}

static void trim_work(void *data)
{
    struct mailuser *mu = data;
    storage_trim(mu->u);
}

static void trim_done(void *data)
{
    mu_release(data);
}

void mu_release(struct mailuser *mu)
{
    if (--mu->holds > 0)
        return;
    if (mu->kept) {
        /* an upkeep round or the trim of a kept store ended */
        if (!shutting_down)
            return;
        unkeep(mu);
    }
    if (mu->state == MU_OPEN && keep_ms > 0 && !shutting_down && keep_max > 0 &&
        !uv_is_closing((uv_handle_t *)&mu->timer) && (n_kept < keep_max || evict_oldest_kept())) {
        mu->kept = true;
        mu->idle_since = uv_now(mu_loop);
        n_kept++;
        /* kept, it holds the open index and little else */
        mu->holds++;
        if (!proto_job_start(mu_loop, mu->id, trim_work, trim_done, NULL, mu))
            mu->holds--;
        return;
    }
    begin_close(mu);
}

/* ---- lingering after a delivery ---- */

static void end_linger(struct mailuser *mu)
{
    mu->lingering = false;
    n_lingering--;
    mu_release(mu);
}

/* Makes room for one more lingering store by letting go of the one whose
 * linger ends first. */
static void evict_first_lingering(void)
{
    struct mailuser *mu, *first = NULL;
    LIST_FOREACH(mu, &registry, entry)
    {
        if (mu->lingering && (!first || mu->linger_until < first->linger_until))
            first = mu;
    }
    if (first)
        end_linger(first);
}

void mailuser_release_delivered(struct mailuser *mu)
{
    if (!mu)
        return;
    if (mu->lingering || mu->state != MU_OPEN || shutting_down ||
        uv_is_closing((uv_handle_t *)&mu->timer)) {
        if (mu->lingering) /* one hold is enough */
            mu->linger_until = uv_now(mu_loop) + MAILUSER_DELIVERY_LINGER_MS;
        mu_release(mu);
        return;
    }
    if (n_lingering == MAILUSER_DELIVERY_LINGER_MAX)
        evict_first_lingering();
    mu->lingering = true;
    mu->linger_until = uv_now(mu_loop) + MAILUSER_DELIVERY_LINGER_MS;
    n_lingering++;
}

bool mu_keep_tick(struct mailuser *mu, uint64_t now)
{
    if (mu->lingering && now >= mu->linger_until) {
        end_linger(mu);
        if (mu->state == MU_CLOSING)
            return true;
    }
    if (mu->kept && mu->holds == 0 && now - mu->idle_since >= keep_ms) {
        unkeep(mu);
        begin_close(mu);
        return true;
    }
    return false;
}

void mailuser_configure(uint64_t keep_open_ms, unsigned keep_open_max, uint64_t idle_close_ms)
{
    mu_idle_close_ms = idle_close_ms;
    keep_ms = keep_open_ms;
    keep_max = keep_open_max;
}

void mailuser_release(struct mailuser *mu)
{
    if (mu)
        mu_release(mu);
}

/* ---- opening ---- */

static void open_work(void *data)
{
    struct mailuser *mu = data;
    mu->open_err = storage_open(mu->data_dir, mu->id, &mu->u);
    if (mu->open_err == 0) {
        storage_set_quota(mu->u, mu->quota_bytes, 0);
        mu->watch = storage_watch(mu->u, mu_storage_event, (void *)(intptr_t)mu->id);
        if (!mu->watch) {
            storage_close(mu->u);
            mu->u = NULL;
            mu->open_err = STORAGE_E_NOMEM;
        }
    }
}

static void open_done(void *data)
{
    struct mailuser *mu = data;

    if (mu->open_err) {
        log_error("mailuser: cannot open the store of account %lld: %s", (long long)mu->id,
                  storage_strerror(mu->open_err));
        stop_sharing(mu); /* later opens try again */
    } else {
        mu->state = MU_OPEN;
        mu_upkeep_start(mu);
    }
    answer_waiters(mu);
}

/* A kept store taken up again: pick up what other programs did meanwhile,
 * as an open would. */
static void refresh_work(void *data)
{
    struct mailuser *mu = data;
    int rc = storage_refresh(mu->u);
    if (rc == 0)
        rc = storage_poll(mu->u);
    if (rc)
        log_warn("mailuser: account %lld: looking for changes made meanwhile: %s",
                 (long long)mu->id, storage_strerror(rc));
}

static void refresh_done(void *data)
{
    struct mailuser *mu = data;
    mu->state = MU_OPEN;
    answer_waiters(mu);
}

struct mailuser_req *mailuser_open(uv_loop_t *l, const char *data_dir,
                                   const struct auth_account *acct, mailuser_open_cb cb, void *arg)
{
    struct mailuser_req *r;
    struct mailuser *mu;

    if (mu_events_init(l) < 0)
        return NULL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cb = cb;
    r->arg = arg;

    mu = mu_find(acct->id);
    if (mu) {
        mu->holds++;
        mu->quota_bytes = acct->quota_bytes;
        r->mu = mu;
        if (mu->kept) {
            unkeep(mu);
            storage_set_quota(mu->u, acct->quota_bytes, 0);
            mu->state = MU_OPENING;
            mu->waiters = r;
            if (!proto_job_start(mu_loop, mu->id, refresh_work, refresh_done, NULL, mu))
                refresh_done(mu); /* no pool: use the index as it is */
            return r;
        }
        if (mu->state == MU_OPEN) {
            storage_set_quota(mu->u, acct->quota_bytes, 0); /* a short mutex, no I/O */
            answer_later(r);
        } else {
            r->next = mu->waiters;
            mu->waiters = r;
        }
        return r;
    }

    mu = calloc(1, sizeof(*mu));
    if (!mu || !(mu->data_dir = strdup(data_dir))) {
        free(mu);
        free(r);
        return NULL;
    }
    mu->id = acct->id;
    mu->quota_bytes = acct->quota_bytes;
    mu->state = MU_OPENING;
    mu->holds = 1;
    r->mu = mu;
    mu->waiters = r;
    if (!proto_job_start(mu_loop, mu->id, open_work, open_done, NULL, mu)) {
        mu_free(mu);
        free(r);
        return NULL;
    }
    LIST_INSERT_HEAD(&registry, mu, entry);
    return r;
}

void mailuser_open_cancel(struct mailuser_req *r)
{
    if (r)
        r->cancelled = true;
}

struct storage_user *mailuser_storage(struct mailuser *mu)
{
    return mu->u;
}

int64_t mailuser_id(const struct mailuser *mu)
{
    return mu->id;
}

void mailuser_shutdown(void)
{
    struct mailuser *mu, *next;

    shutting_down = true;
    for (mu = LIST_FIRST(&registry); mu; mu = next) {
        next = LIST_NEXT(mu, entry);
        if (mu->lingering)
            end_linger(mu); /* closes it unless a session still holds it */
        else if (mu->kept && mu->holds == 0) {
            unkeep(mu);
            begin_close(mu);
        }
    }
    mu_events_close();
}
