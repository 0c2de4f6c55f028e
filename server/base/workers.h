/* Threads of a module's own, beside libuv's pool: the login service's
 * (auth/service.c: password checks and account reads, so that a login never
 * waits behind mail work) and the full-text indexer's (one thread at the
 * lowest CPU priority, protocol/mailuser/upkeep.c). The same shape as
 * uv_queue_work/uv_cancel: work on a thread, done back on the loop thread
 * (through one uv_async_t), cancellation of what has not started. */
#ifndef COFFRE_BASE_WORKERS_H
#define COFFRE_BASE_WORKERS_H

#include <sys/queue.h>
#include <uv.h>

struct workers_task;
typedef void (*workers_task_work)(struct workers_task *t);
/* status: 0, or UV_ECANCELED when cancelled before it ran. */
typedef void (*workers_task_done)(struct workers_task *t, int status);

/* Owned by the caller, valid from workers_queue until done has begun. */
struct workers_task {
    void *data; /* the caller's */
    /* private */
    workers_task_work work;
    workers_task_done done;
    int status;
    int state;
    TAILQ_ENTRY(workers_task) entry;
};

struct workers;

/* Starts threads (at least 1) on loop's behalf. 0, or a negative errno. */
int workers_new(uv_loop_t *loop, unsigned threads, struct workers **out);
/* Runs work(t) on a pool thread, then done(t, 0) on the loop thread. While
 * a task is pending, the loop stays alive. Loop thread. */
void workers_queue(struct workers *p, struct workers_task *t, workers_task_work work,
                   workers_task_done done);
/* A task not started yet never will: done(t, UV_ECANCELED) follows on the
 * loop. Returns 0 then, UV_EBUSY when it runs or ran already. Loop thread. */
int workers_cancel(struct workers *p, struct workers_task *t);
/* Stops and joins the threads; nothing may be pending. The memory goes back
 * when the loop runs again, or at once when the loop has closed the pool's
 * handle already (uv_walk at shutdown). */
void workers_free(struct workers *p);

#endif
