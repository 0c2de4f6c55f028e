/* The upkeep of an open store, on a timer per account: flags written to
 * Maildir file names in batches, changes made by other processes noticed
 * while sessions listen, new message texts moved into the full-text index
 * once the account is quiet, the caches of a store unused a moment freed
 * (mail_quiet_trim: the next command reads its pages from the system's
 * cache again)
 * and its index closed once unused mail_idle_close. The rounds run on the
 * thread pool, one at a time per account; the timer also ends the keeping
 * of stores nobody uses (store.c). What stores free goes back to the
 * system (malloc_trim) at most every MAILUSER_MEM_TRIM_MS. */
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "protocol/job.h"
#include "protocol/mailuser/mailuser_int.h"
#include "server/base/log.h"

/* How often a user with listeners is polled for changes made by other
 * processes (coffrectl, a Maildir tool). */
#define MAILUSER_POLL_MS 2000

/* At most so often the allocator's free memory goes back to the system. */
#define MAILUSER_MEM_TRIM_MS 2000

static unsigned fts_jobs; /* upkeep rounds indexing now, all accounts */

struct upkeep {
    struct mailuser *mu;
    bool poll, sync, fts, trim, nap;
    bool slept;
    size_t fts_left;
    int fts_rc;
};

/* ---- memory back to the system ---- */

static bool mem_wanted, mem_running, mem_stopped;
static uint64_t mem_last; /* uv_now of the end of the last trim */

static void mem_trim_work(void *data)
{
    (void)data;
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
    if (ev->type == STORAGE_EV_FLAGS)
        mu->flags_dirty = true;
    if (ev->type == STORAGE_EV_NEW || ev->type == STORAGE_EV_EXTERNAL) {
        /* new texts (a delivery, or files another program dropped in) wait;
         * indexed once the account is quiet */
        mu->fts_maybe = true;
        mu->last_new = uv_now(mu_loop);
    }
}

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
    if (k->trim)
        storage_trim(k->mu->u);
    if (k->nap) /* last: the work above counts as use */
        k->slept = storage_sleep(k->mu->u, mu_idle_close_ms);
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
    bool fts = (mu->fts_maybe || mu->fts_left > 0) && fts_jobs < MAILUSER_FTS_JOBS &&
               now - mu->last_new >= MAILUSER_FTS_QUIET_MS && !asleep;
    bool sync = mu->flags_dirty && !asleep;
    /* every session idle a while: the index need not stay open for them */
    bool nap = mu_idle_close_ms > 0 && mu->state == MU_OPEN && !mu->kept &&
               now - mu->last_nap >= MAILUSER_POLL_MS && !asleep;
    /* unused a moment: the cached pages need not stay */
    uint64_t last_use = storage_last_use(mu->u);
    bool trim = mu_quiet_ms > 0 && !asleep && last_use != mu->trimmed_use &&
                uv_hrtime() / 1000000 >= last_use + mu_quiet_ms;

    mem_trim_maybe();
    if (mu_keep_tick(mu, now))
        return;
    if (mu->upkeep_running || mu->napping || mu->state != MU_OPEN ||
        (!poll && !sync && !fts && !nap && !trim))
        return;
    k = calloc(1, sizeof(*k));
    if (!k)
        return;
    k->mu = mu;
    k->poll = poll;
    k->sync = sync;
    k->fts = fts;
    k->nap = nap;
    k->trim = trim;
    if (trim)
        mu->trimmed_use = last_use;
    if (nap)
        mu->last_nap = now;
    if (sync)
        mu->flags_dirty = false;
    if (fts) {
        mu->fts_maybe = false;
        fts_jobs++;
    }
    if (poll)
        mu->last_poll = now;
    mu->holds++;
    mu->upkeep_running = true;
    if (!mu_job_start(mu_loop, mu->id, upkeep_work, upkeep_done, free, k)) {
        mu->upkeep_running = false;
        mu->flags_dirty |= k->sync;
        if (fts) {
            mu->fts_maybe = true;
            fts_jobs--;
        }
        mu->holds--;
        free(k);
    }
}

void mu_upkeep_start(struct mailuser *mu)
{
    mu->fts_maybe = true; /* texts left waiting by an earlier run or a rebuild */
    mu->last_new = uv_now(mu_loop);
    uv_timer_init(mu_loop, &mu->timer);
    mu->timer.data = mu;
    uv_timer_start(&mu->timer, on_timer, MAILUSER_UPKEEP_MS, MAILUSER_UPKEEP_MS);
    uv_unref((uv_handle_t *)&mu->timer);
}
