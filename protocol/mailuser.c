/* Per-account shared state in coffred: one storage handle per account for
 * all its sessions, storage notifications carried from whatever thread made
 * the change to the loop (one uv_async for the process), and the upkeep
 * rounds on the thread pool. Everything here runs on the loop thread except
 * on_storage_event and the job bodies. */
#include "protocol/mailuser.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/job.h"
#include "server/base/log.h"

/* How often a user with listeners is polled for changes made by other
 * processes (coffrectl, a Maildir tool). */
#define MAILUSER_POLL_MS 2000

enum mu_state { MU_OPENING, MU_OPEN, MU_CLOSING };

struct mailuser {
    int64_t id;
    char *data_dir;
    uint64_t quota_bytes;
    enum mu_state state;
    struct storage_user *u;
    struct storage_watch *watch;
    unsigned holds; /* sessions, pending opens and running upkeep rounds */
    struct mailuser_req *waiters;
    struct mailuser_listener *listeners;
    uv_timer_t timer;
    bool timer_closed;
    bool upkeep_running;
    bool flags_dirty;
    uint64_t last_poll;
    bool fts_maybe;    /* texts may wait for the full-text index */
    size_t fts_left;   /* waiting after the last indexing round */
    uint64_t last_new; /* uv_now of the last NEW or EXTERNAL event */
    int open_err;
    bool kept;           /* no session since idle_since; closes after keep_ms */
    uint64_t idle_since; /* uv_now when the last session let go */
    struct mailuser *next;
};

struct mailuser_req {
    struct mailuser *mu;
    mailuser_open_cb cb;
    void *arg;
    bool cancelled;
    struct mailuser_req *next;
};

/* An event on its way from a pool thread to the loop. */
struct qev {
    int64_t user;
    struct storage_event ev;
    struct qev *next;
    uint32_t uids[];
};

static uv_loop_t *loop;
static uv_async_t wakeup;
static bool wakeup_ready;
static struct mailuser *registry;
static struct mailuser_req *ready, **ready_tail = &ready; /* answers due on the loop */

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static struct qev *q_head, **q_tail = &q_head;
static bool q_closed;

static unsigned fts_jobs; /* upkeep rounds indexing now, all accounts */

/* Stores kept open after their last session (mail_keep_open): a client that
 * logs in again finds its index open, and closing (flag names written back,
 * index checkpointed) happens once rather than per session. */
static uint64_t keep_ms;
static unsigned keep_max;
static unsigned n_kept;
static bool shutting_down;

static void release(struct mailuser *mu);

/* ---- events: pool thread -> loop ---- */

static void on_storage_event(void *arg, const struct storage_event *ev)
{
    struct qev *q = malloc(sizeof(*q) + ev->n * sizeof(uint32_t));
    if (!q) {
        log_error("mailuser: out of memory; a change notification is lost");
        return;
    }
    q->user = (int64_t)(intptr_t)arg;
    q->ev = *ev;
    if (ev->n)
        memcpy(q->uids, ev->uids, ev->n * sizeof(uint32_t));
    q->ev.uids = q->uids;
    q->next = NULL;
    pthread_mutex_lock(&q_lock);
    if (q_closed) {
        pthread_mutex_unlock(&q_lock);
        free(q);
        return;
    }
    *q_tail = q;
    q_tail = &q->next;
    uv_async_send(&wakeup);
    pthread_mutex_unlock(&q_lock);
}

static struct mailuser *find(int64_t id)
{
    for (struct mailuser *mu = registry; mu; mu = mu->next)
        if (mu->id == id && mu->state != MU_CLOSING)
            return mu;
    return NULL;
}

static void dispatch(struct qev *q)
{
    struct mailuser *mu = find(q->user);
    struct mailuser_listener *l, *next;

    if (!mu)
        return;
    if (q->ev.type == STORAGE_EV_FLAGS)
        mu->flags_dirty = true;
    if (q->ev.type == STORAGE_EV_NEW || q->ev.type == STORAGE_EV_EXTERNAL) {
        /* new texts (a delivery, or files another program dropped in) wait;
         * indexed once the account is quiet */
        mu->fts_maybe = true;
        mu->last_new = uv_now(loop);
    }
    /* a listener may unlisten itself (or close) from its callback */
    for (l = mu->listeners; l; l = next) {
        next = l->next;
        l->on_event(l->arg, &q->ev);
    }
}

static void on_wakeup(uv_async_t *a)
{
    struct qev *q;
    struct mailuser_req *r;

    pthread_mutex_lock(&q_lock);
    q = q_head;
    q_head = NULL;
    q_tail = &q_head;
    pthread_mutex_unlock(&q_lock);
    while (q) {
        struct qev *next = q->next;
        dispatch(q);
        free(q);
        q = next;
    }

    r = ready;
    ready = NULL;
    ready_tail = &ready;
    while (r) {
        struct mailuser_req *next = r->next;
        struct mailuser *mu = r->mu;
        if (r->cancelled) {
            release(mu);
        } else if (mu->open_err) {
            int err = mu->open_err;
            release(mu);
            r->cb(r->arg, err, NULL);
        } else {
            r->cb(r->arg, 0, mu); /* the hold passes to the session */
        }
        free(r);
        r = next;
    }
}

static int ensure_wakeup(uv_loop_t *l)
{
    if (wakeup_ready)
        return 0;
    if (uv_async_init(l, &wakeup, on_wakeup) < 0)
        return -1;
    uv_unref((uv_handle_t *)&wakeup);
    loop = l;
    wakeup_ready = true;
    return 0;
}

/* Answers a request on the next loop iteration, never from inside the call
 * that made it. */
static void answer_later(struct mailuser_req *r)
{
    r->next = NULL;
    *ready_tail = r;
    ready_tail = &r->next;
    uv_async_send(&wakeup);
}

/* ---- closing ---- */

static void unlink_registry(struct mailuser *mu)
{
    for (struct mailuser **p = &registry; *p; p = &(*p)->next) {
        if (*p == mu) {
            *p = mu->next;
            return;
        }
    }
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
    if (!proto_job_start(loop, close_work, NULL, (proto_job_fn)mu_free, mu)) {
        close_work(mu); /* no pool: close here rather than leak the index */
        mu_free(mu);
    }
}

static void begin_close(struct mailuser *mu)
{
    mu->state = MU_CLOSING;
    unlink_registry(mu);
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

static void unkeep(struct mailuser *mu)
{
    mu->kept = false;
    n_kept--;
}

/* Makes room for one more kept store by closing the one idle the longest. */
static bool evict_oldest_kept(void)
{
    struct mailuser *old = NULL;
    for (struct mailuser *mu = registry; mu; mu = mu->next)
        if (mu->kept && mu->holds == 0 && (!old || mu->idle_since < old->idle_since))
            old = mu;
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
    release(data);
}

static void release(struct mailuser *mu)
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
        !uv_is_closing((uv_handle_t *)&mu->timer) &&
        (n_kept < keep_max || evict_oldest_kept())) {
        mu->kept = true;
        mu->idle_since = uv_now(loop);
        n_kept++;
        /* kept, it holds the open index and little else */
        mu->holds++;
        if (!proto_job_start(loop, trim_work, trim_done, NULL, mu))
            mu->holds--;
        return;
    }
    begin_close(mu);
}

void mailuser_configure(uint64_t keep_open_ms, unsigned keep_open_max)
{
    keep_ms = keep_open_ms;
    keep_max = keep_open_max;
}

void mailuser_release(struct mailuser *mu)
{
    if (mu)
        release(mu);
}

/* ---- upkeep ---- */

struct upkeep {
    struct mailuser *mu;
    bool poll, sync, fts;
    size_t fts_left;
    int fts_rc;
};

static void upkeep_work(void *data)
{
    struct upkeep *k = data;
    size_t left = 0;
    if (k->sync)
        storage_sync_flags(k->mu->u, MAILUSER_SYNC_BATCH, NULL, &left);
    if (k->poll)
        storage_poll(k->mu->u);
    if (k->fts)
        k->fts_rc = storage_fts_index(k->mu->u, MAILUSER_FTS_BATCH, &k->fts_left);
    k->sync = left > 0; /* more to do next round */
}

static void upkeep_done(void *data)
{
    struct upkeep *k = data;
    struct mailuser *mu = k->mu;

    mu->upkeep_running = false;
    if (k->sync)
        mu->flags_dirty = true;
    if (k->fts) {
        fts_jobs--;
        if (k->fts_rc == 0) {
            mu->fts_left = k->fts_left;
            log_debug("mailuser: account %lld: full-text index updated, %zu texts waiting",
                      (long long)mu->id, k->fts_left);
        } else {
            /* the texts stay searchable where they are; try again later */
            mu->fts_maybe = true;
            log_warn("mailuser: account %lld: full-text indexing: %s", (long long)mu->id,
                     storage_strerror(k->fts_rc));
        }
    }
    release(mu);
}

static void on_timer(uv_timer_t *t)
{
    struct mailuser *mu = t->data;
    struct upkeep *k;
    uint64_t now = uv_now(loop);
    bool poll = mu->listeners && now - mu->last_poll >= MAILUSER_POLL_MS;
    bool fts = (mu->fts_maybe || mu->fts_left > 0) && fts_jobs < MAILUSER_FTS_JOBS &&
               now - mu->last_new >= MAILUSER_FTS_QUIET_MS;

    if (mu->kept && mu->holds == 0 && now - mu->idle_since >= keep_ms) {
        unkeep(mu);
        begin_close(mu);
        return;
    }
    if (mu->upkeep_running || mu->state != MU_OPEN || (!poll && !mu->flags_dirty && !fts))
        return;
    k = calloc(1, sizeof(*k));
    if (!k)
        return;
    k->mu = mu;
    k->poll = poll;
    k->sync = mu->flags_dirty;
    k->fts = fts;
    mu->flags_dirty = false;
    if (fts) {
        mu->fts_maybe = false;
        fts_jobs++;
    }
    if (poll)
        mu->last_poll = now;
    mu->holds++;
    mu->upkeep_running = true;
    if (!proto_job_start(loop, upkeep_work, upkeep_done, free, k)) {
        mu->upkeep_running = false;
        mu->flags_dirty = k->sync;
        if (fts) {
            mu->fts_maybe = true;
            fts_jobs--;
        }
        mu->holds--;
        free(k);
    }
}

/* ---- opening ---- */

static void open_work(void *data)
{
    struct mailuser *mu = data;
    mu->open_err = storage_open(mu->data_dir, mu->id, &mu->u);
    if (mu->open_err == 0) {
        storage_set_quota(mu->u, mu->quota_bytes, 0);
        mu->watch = storage_watch(mu->u, on_storage_event, (void *)(intptr_t)mu->id);
        if (!mu->watch) {
            storage_close(mu->u);
            mu->u = NULL;
            mu->open_err = STORAGE_E_NOMEM;
        }
    }
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

static void answer_waiters(struct mailuser *mu)
{
    struct mailuser_req *r = mu->waiters, *next;

    mu->waiters = NULL;
    for (; r; r = next) {
        next = r->next;
        answer_later(r);
    }
}

static void refresh_done(void *data)
{
    struct mailuser *mu = data;
    mu->state = MU_OPEN;
    answer_waiters(mu);
}

static void open_done(void *data)
{
    struct mailuser *mu = data;

    if (mu->open_err) {
        log_error("mailuser: cannot open the store of account %lld: %s", (long long)mu->id,
                  storage_strerror(mu->open_err));
        /* not shared any more: later opens try again */
        unlink_registry(mu);
        mu->state = MU_CLOSING;
    } else {
        mu->state = MU_OPEN;
        mu->fts_maybe = true; /* texts left waiting by an earlier run or a rebuild */
        mu->last_new = uv_now(loop);
        uv_timer_init(loop, &mu->timer);
        mu->timer.data = mu;
        uv_timer_start(&mu->timer, on_timer, MAILUSER_UPKEEP_MS, MAILUSER_UPKEEP_MS);
        uv_unref((uv_handle_t *)&mu->timer);
    }
    answer_waiters(mu);
}

struct mailuser_req *mailuser_open(uv_loop_t *l, const char *data_dir,
                                   const struct auth_account *acct, mailuser_open_cb cb,
                                   void *arg)
{
    struct mailuser_req *r;
    struct mailuser *mu;

    if (ensure_wakeup(l) < 0)
        return NULL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cb = cb;
    r->arg = arg;

    mu = find(acct->id);
    if (mu) {
        mu->holds++;
        mu->quota_bytes = acct->quota_bytes;
        r->mu = mu;
        if (mu->kept) {
            unkeep(mu);
            storage_set_quota(mu->u, acct->quota_bytes, 0);
            mu->state = MU_OPENING;
            mu->waiters = r;
            if (!proto_job_start(loop, refresh_work, refresh_done, NULL, mu))
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
    if (!proto_job_start(loop, open_work, open_done, NULL, mu)) {
        mu_free(mu);
        free(r);
        return NULL;
    }
    mu->next = registry;
    registry = mu;
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

void mailuser_listen(struct mailuser *mu, struct mailuser_listener *l)
{
    l->mu = mu;
    l->prev = NULL;
    l->next = mu->listeners;
    if (mu->listeners)
        mu->listeners->prev = l;
    mu->listeners = l;
}

void mailuser_unlisten(struct mailuser_listener *l)
{
    struct mailuser *mu = l->mu;
    if (!mu)
        return;
    if (l->prev)
        l->prev->next = l->next;
    else
        mu->listeners = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->mu = NULL;
    l->prev = l->next = NULL;
}

void mailuser_shutdown(void)
{
    struct mailuser *mu, *next;

    shutting_down = true;
    for (mu = registry; mu; mu = next) {
        next = mu->next;
        if (mu->kept && mu->holds == 0) {
            unkeep(mu);
            begin_close(mu);
        }
    }
    pthread_mutex_lock(&q_lock);
    q_closed = true;
    pthread_mutex_unlock(&q_lock);
}
