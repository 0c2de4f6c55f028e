/* Thread-pool jobs with cancellation, for every protocol and the
 * per-account service (protocol/job.h). An account with jobs has an entry
 * here: how many of its jobs are on the pool, and the others in a FIFO;
 * when one of them ends, the next one goes to the pool. The first job of an
 * account whose store is asleep would open its index again: past
 * mail_max_open it waits, with the account's later jobs, until store.c
 * finds room (mu_jobs_admit). Loop thread. */
#include "protocol/job.h"
#include "protocol/mailuser/mailuser_int.h"
#include "server/base/metrics.h"

#include <stdbool.h>
#include <stdlib.h>
#include <sys/queue.h>

#define ACCOUNT_BUCKETS 256 /* power of two */

struct job_account;

struct proto_job {
    uv_work_t w;
    uv_loop_t *loop;
    struct job_account *acct; /* NULL: not tied to an account */
    bool gated;               /* may open its account's store asleep */
    proto_job_fn work, done, free_fn;
    void *data;
    bool cancelled;
    uint64_t metrics_t0; /* started (metrics_job_started) */
    STAILQ_ENTRY(proto_job) next;
};

struct job_account {
    int64_t id;
    unsigned running; /* on the pool (queued there or working) */
    unsigned waking;  /* of them, jobs that may open a store asleep (gated) */
    bool room_wait;   /* its store asleep and no room: the jobs wait (store.c) */
    STAILQ_HEAD(, proto_job) waiting;
    LIST_ENTRY(job_account) bucket;
};

LIST_HEAD(account_bucket, job_account);

static unsigned per_account = PROTO_JOB_PER_ACCOUNT_DEFAULT;
static struct account_bucket accounts[ACCOUNT_BUCKETS];

void proto_job_configure(unsigned max_per_account)
{
    per_account = max_per_account ? max_per_account : 1;
}

static struct job_account *account_find(int64_t id)
{
    struct job_account *a;
    LIST_FOREACH(a, &accounts[(uint64_t)id & (ACCOUNT_BUCKETS - 1)], bucket)
    {
        if (a->id == id)
            return a;
    }
    return NULL;
}

static struct job_account *account_get(int64_t id)
{
    struct job_account *a = account_find(id);

    if (a)
        return a;
    a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->id = id;
    STAILQ_INIT(&a->waiting);
    LIST_INSERT_HEAD(&accounts[(uint64_t)id & (ACCOUNT_BUCKETS - 1)], a, bucket);
    return a;
}

static void on_work(uv_work_t *w)
{
    struct proto_job *j = w->data;
    metrics_job_begin(j->metrics_t0);
    j->work(j->data);
    metrics_job_end();
}

static void on_after_work(uv_work_t *w, int status);

/* uv_queue_work fails only without a work callback, which proto_job_start
 * refuses. */
static void to_pool(struct proto_job *j)
{
    metrics_job_pooled();
    (void)uv_queue_work(j->loop, &j->w, on_work, on_after_work);
}

bool mu_jobs_running(int64_t id)
{
    struct job_account *a = account_find(id);
    return a && a->running > 0;
}

bool mu_jobs_waking(int64_t id)
{
    struct job_account *a = account_find(id);
    return a && a->waking > 0;
}

static void run(struct job_account *a, struct proto_job *j)
{
    a->running++;
    if (j->gated)
        a->waking++;
    to_pool(j);
}

/* Whether j, a's next job, must first wait for room: it may open the store
 * asleep, and no job of a that may is running. Then the wait has begun (and
 * may even have ended already: a must not be touched). */
static bool wait_room(struct job_account *a, struct proto_job *j)
{
    if (!j->gated || a->waking > 0 || mu_room_for(a->id))
        return false;
    a->room_wait = true;
    if (mu_wait_room(a->id) < 0) {
        a->room_wait = false; /* out of memory: it runs past the bound */
        return false;
    }
    return true;
}

/* Sends a's waiting jobs to the pool while there is a place; frees a once
 * nothing of it is left. */
static void account_dispatch(struct job_account *a)
{
    struct proto_job *next;

    while (!a->room_wait && a->running < per_account && (next = STAILQ_FIRST(&a->waiting))) {
        if (wait_room(a, next))
            return;
        STAILQ_REMOVE_HEAD(&a->waiting, next);
        run(a, next);
    }
    if (a->running == 0 && STAILQ_EMPTY(&a->waiting)) {
        LIST_REMOVE(a, bucket);
        free(a);
    }
}

void mu_jobs_admit(int64_t id)
{
    struct job_account *a = account_find(id);

    struct proto_job *first;

    if (!a || !a->room_wait)
        return;
    a->room_wait = false;
    /* the place is the first job's: it runs without asking again */
    if (a->running < per_account && (first = STAILQ_FIRST(&a->waiting))) {
        STAILQ_REMOVE_HEAD(&a->waiting, next);
        run(a, first);
    }
    account_dispatch(a);
}

/* Job j of a ends: the next waiting one takes its place. */
static void account_job_ended(struct job_account *a, struct proto_job *j)
{
    a->running--;
    if (j->gated)
        a->waking--;
    account_dispatch(a);
}

static void on_after_work(uv_work_t *w, int status)
{
    struct proto_job *j = w->data;

    (void)status;
    /* first the account's next job, then this one's answer: what done
     * starts queues behind the jobs that were already waiting */
    if (j->acct)
        account_job_ended(j->acct, j);
    if (!j->cancelled && j->done)
        j->done(j->data);
    if (j->free_fn)
        j->free_fn(j->data);
    free(j);
}

/* gated: the job may open a store asleep (see the top of the file). */
static struct proto_job *job_start(uv_loop_t *loop, int64_t account, proto_job_fn work,
                                   proto_job_fn done, proto_job_fn free_fn, void *data, bool gated)
{
    struct proto_job *j;

    if (!loop || !work)
        return NULL;
    j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->loop = loop;
    j->work = work;
    j->done = done;
    j->free_fn = free_fn;
    j->data = data;
    j->gated = gated;
    j->w.data = j;
    j->metrics_t0 = metrics_job_started();
    /* without memory for the account's entry, the job goes uncounted */
    if (account != PROTO_JOB_NO_ACCOUNT)
        j->acct = account_get(account);
    if (!j->acct) {
        to_pool(j);
        return j;
    }
    if (j->acct->running >= per_account || (gated && j->acct->room_wait)) {
        STAILQ_INSERT_TAIL(&j->acct->waiting, j, next);
        return j;
    }
    /* queued first: the room may come at once, and the job with it */
    STAILQ_INSERT_TAIL(&j->acct->waiting, j, next);
    if (wait_room(j->acct, j))
        return j;
    STAILQ_REMOVE(&j->acct->waiting, j, proto_job, next);
    run(j->acct, j);
    return j;
}

struct proto_job *proto_job_start(uv_loop_t *loop, int64_t account, proto_job_fn work,
                                  proto_job_fn done, proto_job_fn free_fn, void *data)
{
    return job_start(loop, account, work, done, free_fn, data, true);
}

struct proto_job *mu_job_start(uv_loop_t *loop, int64_t account, proto_job_fn work,
                               proto_job_fn done, proto_job_fn free_fn, void *data)
{
    return job_start(loop, account, work, done, free_fn, data, false);
}

void proto_job_cancel(struct proto_job *j)
{
    if (j)
        j->cancelled = true;
}
