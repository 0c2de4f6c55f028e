/* Internals of the per-account service shared by the files of
 * protocol/mailuser/: the account's state, the requests waiting for its
 * store, and what each file offers the others. store.c opens, shares, keeps
 * and closes stores; events.c carries storage notifications to the loop and
 * wakes it for answers; upkeep.c runs the background rounds. Loop thread
 * only, unless said otherwise. Not for other modules. */
#ifndef COFFRE_MAILUSER_INT_H
#define COFFRE_MAILUSER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

#include "protocol/job.h"
#include "protocol/mailuser.h"

enum mu_state { MU_OPENING, MU_OPEN, MU_CLOSING };

struct mailuser {
    int64_t id;
    char *data_dir;
    uint64_t quota_bytes, quota_messages;
    enum mu_state state;
    struct storage_user *u;
    struct storage_watch *watch;
    unsigned holds; /* sessions, pending opens, running jobs, a lingering delivery */
    unsigned idling; /* of the holds: sessions in IDLE (mailuser_idling) */
    struct mailuser_req *waiters;
    LIST_HEAD(, mailuser_listener) listeners;
    uv_timer_t timer; /* upkeep rounds and the end of keeping */
    bool timer_closed;
    int open_err;
    /* upkeep (upkeep.c) */
    bool upkeep_running;
    bool flags_dirty;
    uint64_t last_poll;
    uint64_t last_nap;    /* uv_now of the last round that tried storage_sleep */
    bool napping;         /* put to sleep to make room for another store */
    uint64_t trimmed_use; /* storage_last_use when its caches were last freed */
    bool closing_counted; /* closing: its files count until mu_free */
    bool fts_maybe;       /* texts may wait for the full-text index */
    bool fts_running;     /* the indexer works on it: not put to sleep */
    size_t fts_left;      /* waiting after the last indexing task */
    bool prune_due;       /* expunges since the last prune of expunged UIDs */
    uint64_t last_prune;  /* uv_now of the last prune round */
    /* keep-open (store.c) */
    bool kept;                  /* no hold since idle_since; closes after keep_ms */
    uint64_t idle_since;        /* uv_now when the last hold went */
    bool lingering;             /* one hold left by a delivery, until linger_until */
    uint64_t linger_until;      /* uv_now */
    LIST_ENTRY(mailuser) entry; /* in the registry while open or opening */
    LIST_ENTRY(mailuser) by_id; /* in the registry's table by account, as long */
};

struct mailuser_req {
    struct mailuser *mu; /* NULL while queued for room (pending) */
    int64_t id;          /* the account, its quota and data_dir: for an open */
    uint64_t quota_bytes, quota_messages;
    char *data_dir;    /* owned until an open starts */
    uint64_t deadline; /* uv_now: past it a queued request fails */
    mailuser_open_cb cb;
    void *arg;
    bool cancelled;
    bool wake; /* not an open: the jobs of account id wait for room (job.c) */
    struct mailuser_req *next;
};

/* The loop every store lives on, set by the first mailuser_open. */
extern uv_loop_t *mu_loop;
/* mail_idle_close: a store unused this long closes its index (0: never). */
extern uint64_t mu_idle_close_ms;
/* mail_quiet_trim: a store unused this long frees its caches (0: never). */
extern uint64_t mu_quiet_ms;
/* imap_vanished_keep_days and imap_vanished_keep_count */
extern unsigned mu_vanished_keep_days;
extern uint64_t mu_vanished_keep_count;

/* events.c */
/* Sets up the wake-up of loop l (once). 0, or -1. */
int mu_events_init(uv_loop_t *l);
/* storage_watch callback, any thread: arg is the account id. */
void mu_storage_event(void *arg, const struct storage_event *ev);
/* Runs on_wakeup soon on the loop thread. */
void mu_wake(void);
/* From now on notifications from pool threads are dropped. */
void mu_events_close(void);

/* job.c */
/* Whether jobs of account id are on the pool. */
bool mu_jobs_running(int64_t id);
/* Whether jobs of account id that may open its store asleep (those of
 * proto_job_start) are on the pool. */
bool mu_jobs_waking(int64_t id);
/* A job of the service itself: never waits for room under mail_max_open
 * (it opens nothing past the bound: an open or a close counted as such, a
 * trim, a nap, an upkeep round of a store awake or of one asleep that only
 * looks at its files). As proto_job_start otherwise. */
struct proto_job *mu_job_start(uv_loop_t *loop, int64_t account, proto_job_fn work,
                               proto_job_fn done, proto_job_fn free_fn, void *data);
/* The jobs of account id waiting for room go to the pool. */
void mu_jobs_admit(int64_t id);

/* store.c */
/* Whether a job of account id may start now: its store is awake, opening,
 * or there is room under mail_max_open for it to wake. */
bool mu_room_for(int64_t id);
/* The jobs of account id wait for room: mu_jobs_admit is called once there
 * is (or mail_open_wait is over: they then run past the bound). 0, or -1
 * when out of memory. */
int mu_wait_room(int64_t id);
/* The open (or opening) mailuser of account id, NULL. */
struct mailuser *mu_find(int64_t id);
/* Answers the requests made ready by mu_wake's callers. */
void mu_answer_ready(void);
/* Drops one hold (an upkeep round's, a job's). */
void mu_release(struct mailuser *mu);
/* The upkeep timer's tick: ends keeping or lingering when due. Returns true
 * when mu was closed (then it must not be touched). */
bool mu_keep_tick(struct mailuser *mu, uint64_t now);

/* upkeep.c */
/* Starts the upkeep timer of a store just opened. */
void mu_upkeep_start(struct mailuser *mu);
/* Notes what an event means for the upkeep (flags to sync, texts to index). */
void mu_upkeep_note(struct mailuser *mu, const struct storage_event *ev);
/* From now on no indexing task starts, one in flight ends early. */
void mu_upkeep_shutdown(void);
/* A store gave back memory (its caches freed, it fell asleep or closed):
 * the memory the allocator keeps free goes back to the system soon. */
void mu_memory_note(void);
/* The daemon stops: no more of that. */
void mu_memory_stop(void);

#endif
