/* Blocking work for a session (storage calls, account lookups) run on the
 * libuv thread pool, answered on the loop thread. A session that goes away
 * while its job runs cancels it: `done` is then never called, and the job's
 * data is released by free_fn once the work has finished.
 *
 * The jobs of one account run at most max_jobs_per_account at a time; the
 * others wait, in the order they came, on the loop thread (not on a pool
 * thread), so that one account's work never takes every pool thread and
 * never parks a thread waiting for its own other jobs (an account's index
 * has more read connections than that: storage/internal.h). Loop thread. */
#ifndef COFFRE_JOB_H
#define COFFRE_JOB_H

#include <stdint.h>
#include <uv.h>

typedef void (*proto_job_fn)(void *data);

struct proto_job;

/* The account of work not tied to one (an account lookup, a delivery to
 * several): it is not queued, it goes to the pool at once. */
#define PROTO_JOB_NO_ACCOUNT 0
/* The per-account cap when proto_job_configure was not called. */
#define PROTO_JOB_PER_ACCOUNT_DEFAULT 2

/* Sets max_jobs_per_account (at least 1), before the first job. */
void proto_job_configure(unsigned max_per_account);

/* work runs on a pool thread, after the jobs of the same account (an
 * account id, or PROTO_JOB_NO_ACCOUNT) started before it have begun; done
 * (may be NULL) on the loop thread unless cancelled; free_fn (may be NULL)
 * last, in every case. The handle is invalid once done has begun. Returns
 * NULL on failure (nothing is run, and free_fn is not called). */
struct proto_job *proto_job_start(uv_loop_t *loop, int64_t account, proto_job_fn work,
                                  proto_job_fn done, proto_job_fn free_fn, void *data);
/* A job waiting for its turn still runs its work when the turn comes, as
 * one already running finishes it: only done is skipped. */
void proto_job_cancel(struct proto_job *j);

#endif
