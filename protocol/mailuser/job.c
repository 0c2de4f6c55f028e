/* Thread-pool jobs with cancellation, for every protocol and the
 * per-account service (protocol/job.h). */
#include "protocol/job.h"

#include <stdbool.h>
#include <stdlib.h>

struct proto_job {
    uv_work_t w;
    proto_job_fn work, done, free_fn;
    void *data;
    bool cancelled;
};

static void on_work(uv_work_t *w)
{
    struct proto_job *j = w->data;
    j->work(j->data);
}

static void on_after_work(uv_work_t *w, int status)
{
    struct proto_job *j = w->data;
    if (!j->cancelled && j->done)
        j->done(j->data);
    if (j->free_fn)
        j->free_fn(j->data);
    free(j);
}

struct proto_job *proto_job_start(uv_loop_t *loop, proto_job_fn work, proto_job_fn done,
                                  proto_job_fn free_fn, void *data)
{
    struct proto_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->work = work;
    j->done = done;
    j->free_fn = free_fn;
    j->data = data;
    j->w.data = j;
    if (uv_queue_work(loop, &j->w, on_work, on_after_work) < 0) {
        free(j);
        return NULL;
    }
    return j;
}

void proto_job_cancel(struct proto_job *j)
{
    if (j)
        j->cancelled = true;
}
