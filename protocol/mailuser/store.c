/* The store cache of the per-account service: one storage handle per
 * account for all its sessions and deliveries, opened and closed on the
 * thread pool. A store nobody holds any more is kept open for a while
 * (mail_keep_open): a client that logs in again finds its index open, and
 * closing (flag names written back, index checkpointed) happens once rather
 * than per session. A delivery lingers a little longer still, holding its
 * store as it was, so that a stream of deliveries to the same accounts
 * neither reopens nor refreshes their index per message.
 *
 * Stores with their index files open are at most mail_max_open (derived
 * from the open-file limit): past it, an open waits in a queue while a
 * store closes or one whose sessions are quiet is put to sleep
 * (storage_sleep), at most mail_open_wait; an open that fails for want of
 * descriptors waits the same way. A store asleep counts for nothing, and
 * whatever would wake it takes a place first and waits the same way when
 * there is none: a job of one of its sessions or of a delivery (job.c asks
 * mu_room_for), a session taking up a store kept asleep. Loop thread. */
#include <stdlib.h>
#include <string.h>

#include "protocol/job.h"
#include "protocol/mailuser/mailuser_int.h"
#include "server/base/log.h"
#include "server/base/metrics.h"

/* The stores open or opening; a closing one has left. Also in a table by
 * account, so that finding one (every event, every open) takes the same
 * time with 5,000 accounts open as with 5. */
static LIST_HEAD(, mailuser) registry = LIST_HEAD_INITIALIZER(registry);
#define REGISTRY_BUCKETS 4096 /* power of two */
static LIST_HEAD(mu_bucket, mailuser) by_id[REGISTRY_BUCKETS];
/* The stores closing: out of the registry until mu_free. */
static LIST_HEAD(, mailuser) closing_list = LIST_HEAD_INITIALIZER(closing_list);
static struct mailuser_req *ready, **ready_tail = &ready; /* answers due on the loop */

uint64_t mu_idle_close_ms;
uint64_t mu_quiet_ms = 2000;
unsigned mu_vanished_keep_days = 30;
uint64_t mu_vanished_keep_count = 100000;
static unsigned max_open; /* 0: no bound */
static uint64_t open_wait_ms;
static unsigned n_closing;       /* closing: their files are still open */
static unsigned n_naps;          /* put to sleep to make room, not done */
static uint64_t fds_short_until; /* uv_now: an open failed for want of descriptors */
static struct mailuser_req *pending, **pending_tail = &pending; /* waiting for room */
static size_t n_pending;
static uv_timer_t pending_timer;
static bool pending_timer_on;
#define PENDING_TICK_MS 100
static uint64_t keep_ms;
static unsigned keep_max;
static unsigned n_kept;
static unsigned n_lingering;
static bool shutting_down;

static struct mu_bucket *bucket_of(int64_t id)
{
    return &by_id[(uint64_t)id & (REGISTRY_BUCKETS - 1)];
}

struct mailuser *mu_find(int64_t id)
{
    struct mailuser *mu;
    LIST_FOREACH(mu, bucket_of(id), by_id)
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
        if (!mu) {
            /* refused before any open: the account is leaving */
            if (!r->cancelled)
                r->cb(r->arg, STORAGE_E_TEMP, NULL);
        } else if (r->cancelled) {
            mu_release(mu);
        } else if (mu->open_err) {
            int err = mu->open_err;
            mu_release(mu);
            r->cb(r->arg, err, NULL);
        } else {
            r->cb(r->arg, 0, mu); /* the hold passes to the session */
        }
        free(r->data_dir);
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
    if (mu->state != MU_CLOSING) {
        LIST_REMOVE(mu, entry);
        LIST_REMOVE(mu, by_id);
        LIST_INSERT_HEAD(&closing_list, mu, entry);
    }
    mu->state = MU_CLOSING;
}

static void retry_pending(void);

static void mu_free(struct mailuser *mu)
{
    bool counted = mu->closing_counted;
    if (mu->state == MU_CLOSING)
        LIST_REMOVE(mu, entry);
    free(mu->data_dir);
    free(mu);
    mu_memory_note();
    if (counted) {
        n_closing--;
        retry_pending(); /* its descriptors are free */
    }
}

static void close_work(void *data)
{
    struct mailuser *mu = data;
    if (mu->watch)
        storage_unwatch(mu->watch);
    if (mu->u) {
        /* leave the file names right for other Maildir tools; asleep, they
         * were before it fell asleep (nap_work, the upkeep round) and the
         * index is not opened again for them */
        if (!storage_asleep(mu->u))
            storage_sync_flags(mu->u, 0, NULL, NULL);
        storage_close(mu->u);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    struct mailuser *mu = h->data;
    mu->timer_closed = true;
    if (!mu_job_start(mu_loop, mu->id, close_work, NULL, (proto_job_fn)mu_free, mu)) {
        close_work(mu); /* no pool: close here rather than leak the index */
        mu_free(mu);
    }
}

static void begin_close(struct mailuser *mu)
{
    /* a store asleep closes without opening its index: it takes no place */
    bool asleep = mu->u && mu->state == MU_OPEN && storage_asleep(mu->u);
    stop_sharing(mu);
    if (mu->u && !mu->closing_counted && !asleep) {
        mu->closing_counted = true;
        n_closing++;
    }
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

/* Makes room for one more kept store by closing the one idle the longest;
 * awake: only among those with their index open (for descriptors). */
static bool evict_oldest_kept(bool awake)
{
    struct mailuser *mu, *old = NULL;
    LIST_FOREACH(mu, &registry, entry)
    {
        if (mu->kept && mu->holds == 0 && (!awake || !storage_asleep(mu->u)) &&
            (!old || mu->idle_since < old->idle_since))
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
    mu_memory_note();
    mu_release(data);
}

void mu_release(struct mailuser *mu)
{
    if (--mu->holds > 0)
        return;
    if (mu->kept) {
        /* an upkeep round or the trim of a kept store ended */
        if (!shutting_down && !mailuser_blocked(mu->id))
            return;
        unkeep(mu);
    }
    if (mu->state == MU_OPEN && keep_ms > 0 && !shutting_down && keep_max > 0 &&
        !mailuser_blocked(mu->id) && !uv_is_closing((uv_handle_t *)&mu->timer) &&
        (n_kept < keep_max || evict_oldest_kept(false))) {
        mu->kept = true;
        mu->idle_since = uv_now(mu_loop);
        n_kept++;
        /* kept, it holds the open index and little else */
        mu->holds++;
        if (!mu_job_start(mu_loop, mu->id, trim_work, trim_done, NULL, mu))
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
    if (mu->lingering || mu->state != MU_OPEN || shutting_down || mailuser_blocked(mu->id) ||
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

static void metrics_sample(struct metrics_stores *out);

void mailuser_configure_open(unsigned max_open_stores, uint64_t wait_ms)
{
    max_open = max_open_stores;
    open_wait_ms = wait_ms;
    metrics_stores_sampler(metrics_sample);
}

void mailuser_configure(uint64_t keep_open_ms, unsigned keep_open_max, uint64_t idle_close_ms,
                        uint64_t quiet_ms)
{
    mu_idle_close_ms = idle_close_ms;
    mu_quiet_ms = quiet_ms;
    keep_ms = keep_open_ms;
    keep_max = keep_open_max;
}

void mailuser_configure_vanished(unsigned keep_days, uint64_t keep_count)
{
    mu_vanished_keep_days = keep_days;
    mu_vanished_keep_count = keep_count;
}

void mailuser_hold(struct mailuser *mu)
{
    mu->holds++;
}

void mailuser_idling(struct mailuser *mu, bool on)
{
    if (on)
        mu->idling++;
    else if (mu->idling > 0)
        mu->idling--;
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
        storage_set_quota(mu->u, mu->quota_bytes, mu->quota_messages);
        mu->watch = storage_watch(mu->u, mu_storage_event, (void *)(intptr_t)mu->id);
        if (!mu->watch) {
            storage_close(mu->u);
            mu->u = NULL;
            mu->open_err = STORAGE_E_NOMEM;
        }
    }
}

/* Queues r for room; the queue's timer is set up with its first request,
 * whichever path queues it. */
static void pending_add(struct mailuser_req *r)
{
    if (!pending_timer.loop) {
        uv_timer_init(mu_loop, &pending_timer);
        uv_unref((uv_handle_t *)&pending_timer);
    }
    r->next = NULL;
    *pending_tail = r;
    pending_tail = &r->next;
    n_pending++;
}

/* Takes r's request back into the queue for room, as if it had not been
 * started: the store could not be opened for want of descriptors. */
static void requeue(struct mailuser_req *r, struct mailuser *mu)
{
    r->data_dir = strdup(mu->data_dir);
    r->mu = NULL;
    if (!r->data_dir) {
        r->mu = mu;
        answer_later(r);
        return;
    }
    mu_release(mu);
    pending_add(r);
}

static void open_done(void *data)
{
    struct mailuser *mu = data;
    struct mailuser_req *r, *next;
    uint64_t now = uv_now(mu_loop);

    if (mu->open_err) {
        bool wait = mu->open_err == STORAGE_E_TEMP && max_open && !shutting_down;
        if (wait) {
            log_warn("mailuser: cannot open the store of account %lld now (%s): its logins wait "
                     "for another store to close",
                     (long long)mu->id, storage_strerror(mu->open_err));
            fds_short_until = now + PENDING_TICK_MS * 2;
        } else {
            log_error("mailuser: cannot open the store of account %lld: %s", (long long)mu->id,
                      storage_strerror(mu->open_err));
        }
        stop_sharing(mu); /* later opens try again */
        r = mu->waiters;
        mu->waiters = NULL;
        for (; r; r = next) {
            next = r->next;
            if (wait && !r->cancelled && now < r->deadline)
                requeue(r, mu);
            else
                answer_later(r);
        }
        retry_pending();
        return;
    }
    mu->state = MU_OPEN;
    mu_upkeep_start(mu);
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

/* r joins mu, open or opening. */
static void attach(struct mailuser_req *r, struct mailuser *mu)
{
    mu->holds++;
    mu->quota_bytes = r->quota_bytes;
    mu->quota_messages = r->quota_messages;
    r->mu = mu;
    if (mu->kept) {
        unkeep(mu);
        storage_set_quota(mu->u, r->quota_bytes, r->quota_messages);
        mu->state = MU_OPENING;
        mu->waiters = r;
        if (!mu_job_start(mu_loop, mu->id, refresh_work, refresh_done, NULL, mu))
            refresh_done(mu); /* no pool: use the index as it is */
        return;
    }
    if (mu->state == MU_OPEN) {
        storage_set_quota(mu->u, r->quota_bytes, r->quota_messages); /* a short mutex, no I/O */
        answer_later(r);
    } else {
        r->next = mu->waiters;
        mu->waiters = r;
    }
}

/* Opens r's account anew; r->data_dir passes to the store. -1 when out of
 * memory (r unchanged). */
static int start_open(struct mailuser_req *r)
{
    struct mailuser *mu = calloc(1, sizeof(*mu));

    if (!mu)
        return -1;
    mu->data_dir = r->data_dir;
    mu->id = r->id;
    mu->quota_bytes = r->quota_bytes;
    mu->quota_messages = r->quota_messages;
    mu->state = MU_OPENING;
    mu->holds = 1;
    r->mu = mu;
    r->next = NULL;
    mu->waiters = r;
    if (!mu_job_start(mu_loop, mu->id, open_work, open_done, NULL, mu)) {
        free(mu);
        r->mu = NULL;
        return -1;
    }
    r->data_dir = NULL;
    LIST_INSERT_HEAD(&registry, mu, entry);
    LIST_INSERT_HEAD(bucket_of(mu->id), mu, by_id);
    return 0;
}

/* Asleep (its index files closed) and nothing of it running: waking it
 * takes a place under mail_max_open. */
static bool dormant(struct mailuser *mu)
{
    return mu->state == MU_OPEN && storage_asleep(mu->u) && !mu_jobs_waking(mu->id);
}

static unsigned peak_open; /* the most open_count has seen */

/* More stores open than the bound (a wait past mail_open_wait, a delivery
 * to several accounts, a file changed by another program): what they are. */
static void log_over(unsigned n)
{
    struct mailuser *mu;
    unsigned opening = 0, awake = 0, kept = 0, waking = 0;

    LIST_FOREACH(mu, &registry, entry)
    {
        if (mu->state != MU_OPEN)
            opening++;
        else if (!storage_asleep(mu->u))
            awake++, kept += mu->kept;
        else if (mu_jobs_waking(mu->id))
            waking++;
    }
    log_warn("mailuser: %u stores with their index open, past mail_max_open %u (opening %u, "
             "awake %u of which kept %u, waking %u, closing %u)",
             n, max_open, opening, awake, kept, waking, n_closing);
}

/* Stores whose index files are open, or may be: opening, awake, running a
 * job, closing. */
static unsigned open_count(void)
{
    struct mailuser *mu;
    unsigned n = n_closing;

    LIST_FOREACH(mu, &registry, entry)
    {
        if (!dormant(mu))
            n++;
    }
    if (n > peak_open) {
        peak_open = n;
        if (max_open && n > max_open)
            log_over(n);
    }
    return n;
}

/* The stores' figures for GET /metrics: open as open_count() counts them. */
static void metrics_sample(struct metrics_stores *out)
{
    struct mailuser *mu;

    out->open = n_closing;
    LIST_FOREACH(mu, &registry, entry)
    {
        if (dormant(mu))
            out->asleep++;
        else
            out->open++;
        out->kept += mu->kept;
        out->fts_left += mu->fts_left;
    }
    out->waiting = n_pending;
}

/* A new store may open or one asleep wake now: nothing waits before it. */
static bool room_now(void)
{
    return !pending && uv_now(mu_loop) >= fds_short_until && open_count() < max_open;
}

static void nap_work(void *data)
{
    struct mailuser *mu = data;
    /* the file names right first: asleep, it does not open for them */
    storage_sync_flags(mu->u, 0, NULL, NULL);
    storage_sleep(mu->u, 0);
}

static void nap_done(void *data)
{
    struct mailuser *mu = data;
    mu->napping = false;
    n_naps--;
    mu_memory_note();
    mu_release(mu);
    retry_pending();
}

/* Frees the descriptors of one store: closes the kept store idle longest,
 * or else puts to sleep the awake store unused longest whose account runs
 * nothing (its sessions reopen it at their next command). Room comes when
 * that is done (retry_pending). false when no store can give way. */
static bool make_room(void)
{
    struct mailuser *mu, *best = NULL;

    if (evict_oldest_kept(true))
        return true;
    LIST_FOREACH(mu, &registry, entry)
    {
        if (mu->state != MU_OPEN || mu->kept || mu->napping || mu->upkeep_running ||
            mu->fts_running || storage_asleep(mu->u) || mu_jobs_running(mu->id))
            continue;
        if (!best || storage_last_use(mu->u) < storage_last_use(best->u))
            best = mu;
    }
    if (!best)
        return false;
    best->napping = true;
    best->holds++;
    n_naps++;
    if (!mu_job_start(mu_loop, best->id, nap_work, nap_done, NULL, best)) {
        best->napping = false;
        best->holds--;
        n_naps--;
        return false;
    }
    return true;
}

static void on_pending_timer(uv_timer_t *t);

/* Whether r, queued, takes a place when it goes: an open, the taking up of
 * a store kept asleep, jobs waking a store asleep (wake). mu: the account's
 * store, NULL. */
static bool takes_room(const struct mailuser_req *r, struct mailuser *mu)
{
    if (r->wake)
        return mu && dormant(mu);
    return !mu || (mu->kept && dormant(mu));
}

/* Starts the queued opens and wakes there is room for, oldest first; makes
 * room for the others. */
static void retry_pending(void)
{
    struct mailuser_req *r;
    struct mailuser *mu;
    unsigned n;
    bool short_fds;

    if (!pending || shutting_down)
        return;
    n = open_count();
    short_fds = uv_now(mu_loop) < fds_short_until;
    while ((r = pending)) {
        bool takes = false;
        mu = NULL;
        if (!r->cancelled) {
            mu = mu_find(r->id);
            takes = takes_room(r, mu);
            if (takes && (short_fds || n >= max_open))
                break;
        }
        pending = r->next;
        if (!pending)
            pending_tail = &pending;
        n_pending--;
        if (takes)
            n++;
        if (r->cancelled) {
            free(r->data_dir);
            free(r);
        } else if (r->wake) {
            int64_t id = r->id;
            free(r);
            mu_jobs_admit(id);
        } else if (mu) {
            attach(r, mu); /* opened meanwhile for another session, or kept */
        } else if (start_open(r) == 0) {
            /* counted above */
        } else {
            r->cb(r->arg, STORAGE_E_NOMEM, NULL);
            free(r->data_dir);
            free(r);
        }
    }
    while (n_pending > n_naps + n_closing && make_room())
        ;
    if (pending && !pending_timer_on) {
        pending_timer_on = true;
        uv_timer_start(&pending_timer, on_pending_timer, PENDING_TICK_MS, PENDING_TICK_MS);
    } else if (!pending && pending_timer_on) {
        pending_timer_on = false;
        uv_timer_stop(&pending_timer);
    }
}

/* Queued opens past mail_open_wait fail (NO [UNAVAILABLE] for a login);
 * jobs that waited as long run past the bound, rather than fail a command
 * of a session already in. */
static void on_pending_timer(uv_timer_t *t)
{
    struct mailuser_req **pp = &pending, *r;
    uint64_t now = uv_now(mu_loop);
    unsigned expired = 0, woken = 0;

    (void)t;
    while ((r = *pp)) {
        if (r->cancelled || now < r->deadline) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        n_pending--;
        if (r->wake) {
            int64_t id = r->id;
            woken++;
            free(r);
            mu_jobs_admit(id);
            continue;
        }
        expired++;
        r->cb(r->arg, STORAGE_E_TEMP, NULL);
        free(r->data_dir);
        free(r);
    }
    pending_tail = pp;
    while (*pending_tail)
        pending_tail = &(*pending_tail)->next;
    if (expired)
        log_warn("mailuser: %u login(s) waited mail_open_wait for a store to close in vain "
                 "(mail_max_open %u stores open)",
                 expired, max_open);
    if (woken)
        log_warn("mailuser: %u account(s) waited mail_open_wait for room to open their index "
                 "again: opened past mail_max_open %u",
                 woken, max_open);
    retry_pending();
}

static void queue_pending(struct mailuser_req *r)
{
    pending_add(r);
    retry_pending();
}

bool mu_room_for(int64_t id)
{
    struct mailuser *mu;

    if (!max_open || shutting_down || !(mu = mu_find(id)) || !dormant(mu))
        return true;
    return room_now();
}

int mu_wait_room(int64_t id)
{
    struct mailuser_req *r = calloc(1, sizeof(*r));

    if (!r)
        return -1;
    r->wake = true;
    r->id = id;
    r->deadline = uv_now(mu_loop) + open_wait_ms;
    queue_pending(r);
    return 0;
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
    r->id = acct->id;
    r->quota_bytes = acct->quota_bytes;
    r->quota_messages = acct->quota_messages;
    r->deadline = uv_now(mu_loop) + open_wait_ms;
    if (mailuser_blocked(acct->id)) {
        answer_later(r);
        return r;
    }

    mu = mu_find(acct->id);
    /* a store kept asleep wakes when taken up: it needs a place */
    if (mu && !(max_open && mu->kept && dormant(mu))) {
        attach(r, mu);
        return r;
    }
    if (!(r->data_dir = strdup(data_dir))) {
        free(r);
        return NULL;
    }
    if (max_open && !room_now()) {
        queue_pending(r);
        return r;
    }
    if (mu) {
        attach(r, mu);
        return r;
    }
    if (start_open(r) < 0) {
        free(r->data_dir);
        free(r);
        return NULL;
    }
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

/* ---- accounts leaving ---- */

/* Accounts blocked by mailuser_block: few at a time (the moves running). */
struct block {
    int64_t id;
    uint64_t at, until;
    struct block *next;
};
static struct block *blocks;

bool mailuser_blocked(int64_t id)
{
    uint64_t now = mu_loop ? uv_now(mu_loop) : 0;

    for (struct block **pp = &blocks, *b; (b = *pp);) {
        if (now >= b->until) {
            *pp = b->next;
            free(b);
            continue;
        }
        if (b->id == id)
            return true;
        pp = &b->next;
    }
    return false;
}

void mailuser_block(uv_loop_t *loop, int64_t id, uint64_t until_ms)
{
    struct block *b;
    struct mailuser *mu;

    if (mu_events_init(loop) < 0)
        return;
    for (b = blocks; b && b->id != id; b = b->next)
        ;
    if (!b && (b = calloc(1, sizeof(*b)))) {
        b->id = id;
        b->next = blocks;
        blocks = b;
    }
    if (b) {
        b->at = uv_now(mu_loop);
        b->until = until_ms;
    }
    if (!(mu = mu_find(id)))
        return;
    /* let go of what keeps it open without a holder */
    if (mu->lingering) {
        end_linger(mu);
        if (!(mu = mu_find(id)))
            return;
    }
    if (mu->kept && mu->holds == 0) {
        unkeep(mu);
        begin_close(mu);
    }
}

void mailuser_unblock(int64_t id, uint64_t since)
{
    for (struct block **pp = &blocks, *b; (b = *pp); pp = &b->next) {
        if (b->id == id && b->at <= since) {
            *pp = b->next;
            free(b);
            return;
        }
    }
}

bool mailuser_busy(int64_t id)
{
    struct mailuser *mu;

    if (mu_find(id) || mu_jobs_running(id))
        return true;
    LIST_FOREACH(mu, &closing_list, entry)
    {
        if (mu->id == id)
            return true;
    }
    return false;
}

/* ---- light delivery handles ---- */

/* Light handles kept after a delivery (storage_open_light) close past
 * mail_keep_open even when no other light delivery comes to close them:
 * a timer looks every LIGHT_EXPIRE_TICK_MS while some are kept. */
#define LIGHT_EXPIRE_TICK_MS 2000
static uv_timer_t light_timer;
static bool light_timer_on, light_expiring;
static unsigned light_left; /* kept after the last look; loop thread */

static void light_expire_work(void *data)
{
    (void)data;
    light_left = storage_light_expire();
}

static void light_expire_done(void *data)
{
    (void)data;
    light_expiring = false;
    if (light_left == 0 && light_timer_on) {
        light_timer_on = false;
        uv_timer_stop(&light_timer);
    }
}

static void on_light_timer(uv_timer_t *t)
{
    if (light_expiring || shutting_down)
        return;
    if (mu_job_start(t->loop, PROTO_JOB_NO_ACCOUNT, light_expire_work, light_expire_done, NULL,
                     NULL))
        light_expiring = true;
}

static bool ckpt_running;

static void ckpt_work(void *data)
{
    (void)data;
    storage_journal_checkpoint();
}

static void ckpt_done(void *data)
{
    (void)data;
    ckpt_running = false;
}

void mailuser_light_used(uv_loop_t *l)
{
    if (shutting_down)
        return;
    if (!ckpt_running && storage_journal_checkpoint_due() &&
        mu_job_start(l, PROTO_JOB_NO_ACCOUNT, ckpt_work, ckpt_done, NULL, NULL))
        ckpt_running = true;
    if (light_timer_on)
        return;
    if (!light_timer.loop) {
        uv_timer_init(l, &light_timer);
        uv_unref((uv_handle_t *)&light_timer);
    }
    light_timer_on = true;
    uv_timer_start(&light_timer, on_light_timer, LIGHT_EXPIRE_TICK_MS, LIGHT_EXPIRE_TICK_MS);
}

void mailuser_shutdown(void)
{
    struct mailuser *mu, *next;

    shutting_down = true;
    mu_upkeep_shutdown();
    mu_memory_stop();
    while (pending) {
        struct mailuser_req *r = pending;
        pending = r->next;
        if (r->wake)
            mu_jobs_admit(r->id); /* they end the sessions' work */
        else if (!r->cancelled)
            r->cb(r->arg, STORAGE_E_TEMP, NULL);
        free(r->data_dir);
        free(r);
    }
    pending_tail = &pending;
    n_pending = 0;
    if (pending_timer.loop && !uv_is_closing((uv_handle_t *)&pending_timer))
        uv_close((uv_handle_t *)&pending_timer, NULL);
    if (light_timer.loop && !uv_is_closing((uv_handle_t *)&light_timer))
        uv_close((uv_handle_t *)&light_timer, NULL);
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
