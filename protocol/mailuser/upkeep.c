/* The upkeep of an open store, on a timer per account: flags written to
 * Maildir file names in batches, changes made by other processes noticed
 * while sessions listen, the caches of a store unused a moment freed
 * (mail_quiet_trim: the next command reads its pages from the system's
 * cache again) and its index closed once unused mail_idle_close, or at
 * the next round once every holder is a session in IMAP IDLE. The
 * rounds run on the thread pool, one at a time per account; the timer also
 * ends the keeping of stores nobody uses (store.c). What stores free goes
 * back to the system (malloc_trim) at most every MAILUSER_MEM_TRIM_MS.
 * New message texts move into the full-text index on a thread of its own
 * at the lowest CPU priority, so that indexing takes only the CPU time
 * nobody else wants and never a pool thread that a command could use. */
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "server/base/workers.h"
#include "protocol/job.h"
#include "protocol/mailuser/mailuser_int.h"
#include "server/base/log.h"

/* How often a user with listeners is polled for changes made by other
 * processes (coffrectl, a Maildir tool). */
#define MAILUSER_POLL_MS 2000

/* At most so often the allocator's free memory goes back to the system. */
#define MAILUSER_MEM_TRIM_MS 2000

struct upkeep {
    struct mailuser *mu;
    bool poll, sync, trim, nap, prune;
    uint64_t nap_ms; /* unused so long, the store falls asleep */
    bool slept;
};

/* ---- full-text indexing ---- */

/* The indexer: one thread (started with the first task) and one task at a
 * time, for one account, started by that account's upkeep tick; NULL when
 * it could not start (texts then wait, still searchable by a scan). One at
 * a time leaves moments with no task in flight, when the loop may end. */
static struct workers *indexer;
static bool indexer_failed;
static bool indexer_busy;        /* a task in flight; loop thread */
static atomic_bool indexer_stop; /* shutting down: a running task ends early */

struct fts_task {
    struct workers_task t;
    struct mailuser *mu;
    size_t left;
    int rc;
};

/* The calling thread gets the lowest CPU priority (Linux: per thread). */
static void lower_priority(void)
{
    static _Thread_local bool done;
    if (!done) {
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
        done = true;
    }
}

/* On the indexer: transactions of MAILUSER_FTS_TXN_MS at most (the writer
 * lock is held no longer), a pause between two for a writer waiting, until
 * nothing waits or the task has run MAILUSER_FTS_TASK_MS. */
static void fts_work(struct workers_task *t)
{
    struct fts_task *k = t->data;
    struct timespec pause = {0, 1000000};
    uint64_t start = uv_hrtime();
    bool more = false;

    lower_priority();
    do {
        k->rc = storage_fts_index_for(k->mu->u, 0, MAILUSER_FTS_TXN_MS, &more);
        if (k->rc || !more)
            break;
        nanosleep(&pause, NULL);
    } while (uv_hrtime() - start < (uint64_t)MAILUSER_FTS_TASK_MS * 1000000 &&
             !atomic_load(&indexer_stop));
    /* counted once a task, for the log and coffre_fts_waiting_texts */
    k->left = 0;
    if (k->rc == 0 && more && storage_fts_waiting(k->mu->u, &k->left) != 0)
        k->left = 1; /* not counted: some wait all the same */
}

static void fts_done(struct workers_task *t, int status)
{
    struct fts_task *k = t->data;
    struct mailuser *mu = k->mu;

    indexer_busy = false;
    mu->fts_running = false;
    if (status == 0 && k->rc == 0) {
        mu->fts_left = k->left;
        log_debug("mailuser: account %lld: full-text index updated, %zu texts waiting",
                  (long long)mu->id, k->left);
    } else {
        /* the texts stay searchable where they are; try again later */
        mu->fts_maybe = true;
        if (status == 0)
            log_warn("mailuser: account %lld: full-text indexing: %s", (long long)mu->id,
                     storage_strerror(k->rc));
    }
    free(k);
    mu_release(mu);
}

/* Starts indexing mu's waiting texts unless a task is in flight. */
static void fts_start(struct mailuser *mu)
{
    struct fts_task *k;

    if (indexer_busy || atomic_load(&indexer_stop) || indexer_failed)
        return;
    if (!indexer) {
        int r = workers_new(mu_loop, 1, &indexer);
        if (r < 0) {
            indexer_failed = true;
            log_error("mailuser: no full-text indexer thread: %s", uv_strerror(r));
            return;
        }
    }
    if (!(k = calloc(1, sizeof(*k))))
        return;
    k->mu = mu;
    k->t.data = k;
    mu->fts_maybe = false;
    indexer_busy = true;
    mu->fts_running = true;
    mu->holds++;
    workers_queue(indexer, &k->t, fts_work, fts_done);
}

void mu_upkeep_shutdown(void)
{
    atomic_store(&indexer_stop, true); /* a task in flight ends after its transaction */
    if (indexer && !indexer_busy) {
        workers_free(indexer); /* the thread waits for work: joined at once */
        indexer = NULL;
    }
}

/* ---- memory back to the system ---- */

static bool mem_wanted, mem_running, mem_stopped;
static uint64_t mem_last; /* uv_now of the end of the last trim */
static void (*mem_trim)(void);

void mailuser_configure_trim(void (*trim)(void))
{
    mem_trim = trim;
}

static void mem_trim_work(void *data)
{
    (void)data;
    if (mem_trim) {
        mem_trim();
        return;
    }
#ifdef __GLIBC__
    /* every arena: the pool threads' too, where the page caches were */
    malloc_trim(0);
#endif
}

static void mem_trim_done(void *data)
{
    (void)data;
    mem_running = false;
    mem_last = uv_now(mu_loop);
}

static void mem_trim_maybe(void)
{
    if (!mem_wanted || mem_running || mem_stopped ||
        uv_now(mu_loop) - mem_last < MAILUSER_MEM_TRIM_MS)
        return;
    if (mu_job_start(mu_loop, PROTO_JOB_NO_ACCOUNT, mem_trim_work, mem_trim_done, NULL, NULL)) {
        mem_wanted = false;
        mem_running = true;
    }
}

void mu_memory_note(void)
{
    mem_wanted = true;
    mem_trim_maybe();
}

void mu_memory_stop(void)
{
    mem_stopped = true;
}

/* ---- rounds ---- */

void mu_upkeep_note(struct mailuser *mu, const struct storage_event *ev)
{
    if (ev->type == STORAGE_EV_FLAGS && !ev->viewer)
        mu->flags_dirty = true; /* a viewer's own \Seen is not in the file names */
    if (ev->type == STORAGE_EV_EXPUNGE)
        mu->prune_due = true; /* expunged UIDs to forget, maybe */
    if (ev->type == STORAGE_EV_NEW || ev->type == STORAGE_EV_EXTERNAL)
        mu->fts_maybe = true; /* new texts (a delivery, files another program dropped in) */
}

static void upkeep_work(void *data)
{
    struct upkeep *k = data;
    size_t left = 0;
    if (k->sync)
        storage_sync_flags(k->mu->u, MAILUSER_SYNC_BATCH, NULL, &left);
    if (k->poll)
        storage_poll(k->mu->u);
    if (k->prune) {
        bool more = false;
        if (storage_vanished_prune(k->mu->u, mu_vanished_keep_days, mu_vanished_keep_count,
                                   MAILUSER_PRUNE_BATCH, &more) != 0 ||
            more)
            k->prune = true; /* again next round */
        else
            k->prune = false;
    }
    if (k->trim)
        storage_trim(k->mu->u);
    /* last: the work above counts as use; not while flags wait for their
     * file names (a store closed asleep is not synced again) */
    if (k->nap && left == 0)
        k->slept = storage_sleep(k->mu->u, k->nap_ms);
    k->sync = left > 0; /* more to do next round */
}

static void upkeep_done(void *data)
{
    struct upkeep *k = data;
    struct mailuser *mu = k->mu;

    mu->upkeep_running = false;
    if (k->trim || k->slept)
        mu_memory_note();
    if (k->sync)
        mu->flags_dirty = true;
    if (k->prune)
        mu->prune_due = true;
    mu_release(mu);
}

static void on_timer(uv_timer_t *t)
{
    struct mailuser *mu = t->data;
    struct upkeep *k;
    uint64_t now = uv_now(mu_loop);
    bool asleep = storage_asleep(mu->u);
    bool poll = !LIST_EMPTY(&mu->listeners) && now - mu->last_poll >= MAILUSER_POLL_MS;
    /* asleep, the index is not opened again for background work: the
     * texts and the flags wait until something wakes it (a command, a
     * delivery) or it closes; its poll only looks at the files */
    bool sync = mu->flags_dirty && !asleep;
    /* every session in IDLE: they said they wait; nothing else holds the
     * store and no job of the account is queued or running */
    bool idling = mu->idling > 0 && mu->idling == mu->holds && !mu_jobs_running(mu->id);
    /* every session idle a while, or in IDLE: the index need not stay open
     * for them */
    bool nap = mu_idle_close_ms > 0 && mu->state == MU_OPEN && !mu->kept &&
               (idling || now - mu->last_nap >= MAILUSER_POLL_MS) && !asleep && !mu->fts_running;
    /* unused a moment: the cached pages need not stay */
    uint64_t last_use = storage_last_use(mu->u);
    bool trim = mu_quiet_ms > 0 && !asleep && last_use != mu->trimmed_use &&
                uv_hrtime() / 1000000 >= last_use + mu_quiet_ms;
    /* expunged UIDs past imap_vanished_keep_*: after expunges, and now
     * and then for the day's marks; never to wake a store asleep */
    bool prune = !asleep && ((mu->prune_due && now - mu->last_prune >= MAILUSER_PRUNE_MIN_MS) ||
                             now - mu->last_prune >= MAILUSER_PRUNE_MS);

    mem_trim_maybe();
    if (mu_keep_tick(mu, now))
        return;
    /* asleep or being put to sleep, the index is not opened again for
     * indexing either */
    if (mu->state == MU_OPEN && !asleep && !mu->napping && !mu->upkeep_running &&
        (mu->fts_maybe || mu->fts_left > 0)) {
        fts_start(mu);
        nap &= !mu->fts_running; /* not while the indexer works on it */
    }
    if (mu->upkeep_running || mu->napping || mu->state != MU_OPEN ||
        (!poll && !sync && !nap && !trim && !prune))
        return;
    k = calloc(1, sizeof(*k));
    if (!k)
        return;
    k->mu = mu;
    k->poll = poll;
    k->sync = sync;
    k->nap = nap;
    k->nap_ms = idling ? 0 : mu_idle_close_ms;
    k->trim = trim;
    k->prune = prune;
    if (prune) {
        mu->prune_due = false;
        mu->last_prune = now;
    }
    if (trim)
        mu->trimmed_use = last_use;
    if (nap)
        mu->last_nap = now;
    if (sync)
        mu->flags_dirty = false;
    if (poll)
        mu->last_poll = now;
    mu->holds++;
    mu->upkeep_running = true;
    if (!mu_job_start(mu_loop, mu->id, upkeep_work, upkeep_done, free, k)) {
        mu->upkeep_running = false;
        mu->flags_dirty |= k->sync;
        mu->prune_due |= k->prune;
        mu->holds--;
        free(k);
    }
}

void mu_upkeep_start(struct mailuser *mu)
{
    mu->fts_maybe = true; /* texts left waiting by an earlier run or a rebuild */
    mu->prune_due = true; /* expunges of an earlier run, and the day's marks */
    uv_timer_init(mu_loop, &mu->timer);
    mu->timer.data = mu;
    uv_timer_start(&mu->timer, on_timer, MAILUSER_UPKEEP_MS, MAILUSER_UPKEEP_MS);
    uv_unref((uv_handle_t *)&mu->timer);
}
