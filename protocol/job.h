/* Blocking work for a session (storage calls, account lookups) run on the
 * libuv thread pool, answered on the loop thread. A session that goes away
 * while its job runs cancels it: `done` is then never called, and the job's
 * data is released by free_fn once the work has finished. */
#ifndef COFFRE_JOB_H
#define COFFRE_JOB_H

#include <uv.h>

typedef void (*proto_job_fn)(void *data);

struct proto_job;

/* work runs on a pool thread; done (may be NULL) on the loop thread unless
 * cancelled; free_fn (may be NULL) last, in every case. The handle is
 * invalid once done has begun. Returns NULL on failure (nothing is run, and
 * free_fn is not called). */
struct proto_job *proto_job_start(uv_loop_t *loop, proto_job_fn work, proto_job_fn done,
                                  proto_job_fn free_fn, void *data);
void proto_job_cancel(struct proto_job *j);

#endif
