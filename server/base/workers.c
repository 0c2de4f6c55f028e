/* A few threads of their own (server/base/workers.h): one queue under a
 * mutex, threads waiting on a condition variable, finished tasks handed
 * back to the loop through a uv_async_t. */
#include "server/base/workers.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

enum task_state { TASK_QUEUED, TASK_RUNNING, TASK_FINISHED };

TAILQ_HEAD(task_list, workers_task);

struct workers {
    uv_loop_t *loop;
    uv_async_t async;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct task_list queued;   /* under mu */
    struct task_list finished; /* under mu */
    bool stop;                 /* under mu */
    unsigned pending;          /* queued to done; loop thread */
    unsigned nthreads;
    pthread_t threads[];
};

static void *worker(void *arg)
{
    struct workers *p = arg;
    struct workers_task *t;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && TAILQ_EMPTY(&p->queued))
            pthread_cond_wait(&p->cond, &p->mu);
        if (p->stop)
            break;
        t = TAILQ_FIRST(&p->queued);
        TAILQ_REMOVE(&p->queued, t, entry);
        t->state = TASK_RUNNING;
        pthread_mutex_unlock(&p->mu);

        t->work(t);

        pthread_mutex_lock(&p->mu);
        t->state = TASK_FINISHED;
        TAILQ_INSERT_TAIL(&p->finished, t, entry);
        uv_async_send(&p->async);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Loop thread: the finished (or cancelled) tasks' done callbacks. A done
 * callback may free the pool's owner, and with it the pool (its memory
 * stays until the handle's close callback): nothing is locked after. */
static void on_async(uv_async_t *a)
{
    struct workers *p = a->data;
    struct task_list done = TAILQ_HEAD_INITIALIZER(done);
    struct workers_task *t;

    pthread_mutex_lock(&p->mu);
    TAILQ_CONCAT(&done, &p->finished, entry);
    pthread_mutex_unlock(&p->mu);
    while ((t = TAILQ_FIRST(&done))) {
        TAILQ_REMOVE(&done, t, entry);
        if (--p->pending == 0 && !uv_is_closing((uv_handle_t *)&p->async))
            uv_unref((uv_handle_t *)&p->async); /* nothing left to wait for */
        t->done(t, t->status);
    }
}

int workers_new(uv_loop_t *loop, unsigned threads, struct workers **out)
{
    struct workers *p;
    sigset_t all, old;
    int r;

    *out = NULL;
    if (threads < 1)
        threads = 1;
    p = calloc(1, sizeof(*p) + threads * sizeof(p->threads[0]));
    if (!p)
        return -ENOMEM;
    p->loop = loop;
    TAILQ_INIT(&p->queued);
    TAILQ_INIT(&p->finished);
    if ((r = uv_async_init(loop, &p->async, on_async)) < 0) {
        free(p);
        return r;
    }
    p->async.data = p;
    uv_unref((uv_handle_t *)&p->async);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    /* signals are the loop's business (uv_signal_t), not these threads' */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (r = 0; p->nthreads < threads; p->nthreads++)
        if ((r = pthread_create(&p->threads[p->nthreads], NULL, worker, p)) != 0)
            break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        workers_free(p);
        return -r;
    }
    *out = p;
    return 0;
}

void workers_queue(struct workers *p, struct workers_task *t, workers_task_work work,
                   workers_task_done done)
{
    t->work = work;
    t->done = done;
    t->status = 0;
    t->state = TASK_QUEUED;
    if (p->pending++ == 0)
        uv_ref((uv_handle_t *)&p->async); /* the loop waits for the answer */
    pthread_mutex_lock(&p->mu);
    TAILQ_INSERT_TAIL(&p->queued, t, entry);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

int workers_cancel(struct workers *p, struct workers_task *t)
{
    int r = UV_EBUSY;

    pthread_mutex_lock(&p->mu);
    if (t->state == TASK_QUEUED) {
        TAILQ_REMOVE(&p->queued, t, entry);
        t->state = TASK_FINISHED;
        t->status = UV_ECANCELED;
        TAILQ_INSERT_TAIL(&p->finished, t, entry);
        uv_async_send(&p->async);
        r = 0;
    }
    pthread_mutex_unlock(&p->mu);
    return r;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void workers_free(struct workers *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    if (uv_is_closing((uv_handle_t *)&p->async))
        free(p); /* closed by a uv_walk, and the loop has run since */
    else
        uv_close((uv_handle_t *)&p->async, on_closed);
}
