/* The login service's own threads: password checks (yescrypt) and account
 * reads run here, not on libuv's pool, so that a login never waits behind
 * mail work. The same shape as uv_queue_work/uv_cancel: work on a thread,
 * done back on the loop thread (through one uv_async_t), cancellation of
 * what has not started. Private to auth/. */
#ifndef COFFRE_AUTH_POOL_H
#define COFFRE_AUTH_POOL_H

#include <sys/queue.h>
#include <uv.h>

struct auth_task;
typedef void (*auth_task_work)(struct auth_task *t);
/* status: 0, or UV_ECANCELED when cancelled before it ran. */
typedef void (*auth_task_done)(struct auth_task *t, int status);

/* Owned by the caller, valid from auth_pool_queue until done has begun. */
struct auth_task {
    void *data; /* the caller's */
    /* private */
    auth_task_work work;
    auth_task_done done;
    int status;
    int state;
    TAILQ_ENTRY(auth_task) entry;
};

struct auth_pool;

/* Starts threads (at least 1) on loop's behalf. 0, or a negative errno. */
int auth_pool_new(uv_loop_t *loop, unsigned threads, struct auth_pool **out);
/* Runs work(t) on a pool thread, then done(t, 0) on the loop thread. While
 * a task is pending, the loop stays alive. Loop thread. */
void auth_pool_queue(struct auth_pool *p, struct auth_task *t, auth_task_work work,
                     auth_task_done done);
/* A task not started yet never will: done(t, UV_ECANCELED) follows on the
 * loop. Returns 0 then, UV_EBUSY when it runs or ran already. Loop thread. */
int auth_pool_cancel(struct auth_pool *p, struct auth_task *t);
/* Stops and joins the threads; nothing may be pending. The memory goes back
 * when the loop runs again, or at once when the loop has closed the pool's
 * handle already (uv_walk at shutdown). */
void auth_pool_free(struct auth_pool *p);

#endif
