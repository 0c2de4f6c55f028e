/* The per-account service that every session and delivery of one user
 * shares inside coffred: the open storage handle (kept open a while after
 * its last use), the change notifications fanned out to the sessions on the
 * loop thread, and the background upkeep (flags written to Maildir file
 * names, changes by other processes noticed, new texts put into the
 * full-text index). Opening and closing run on the thread pool, as the
 * protocols' own blocking work does (protocol/job.h). The code is in
 * protocol/mailuser/. Loop thread only, unless said otherwise. */
#ifndef COFFRE_MAILUSER_H
#define COFFRE_MAILUSER_H

#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

#include "auth/auth.h"
#include "storage/storage.h"

/* How often a user with sessions gets its upkeep (flag sync, poll). */
#define MAILUSER_UPKEEP_MS 1000
/* Flag renames per upkeep round. */
#define MAILUSER_SYNC_BATCH 5000
/* Expunged UIDs forgotten in one upkeep round at most (storage_vanished_prune);
 * a round runs after expunges, at most every MAILUSER_PRUNE_MIN_MS, and
 * otherwise every MAILUSER_PRUNE_MS, for the day's marks. */
#define MAILUSER_PRUNE_BATCH 10000
#define MAILUSER_PRUNE_MIN_MS 2000
#define MAILUSER_PRUNE_MS (3600 * 1000)
/* New message texts wait outside the full-text index (SEARCH finds them
 * there too, by a scan) until the indexer (a thread of its own at the
 * lowest CPU priority) moves them in: each upkeep round of an account with
 * texts waiting gives it a task of up to MAILUSER_FTS_TASK_MS, made of
 * transactions of MAILUSER_FTS_TXN_MS at most, so that the account's index
 * writer is never held longer than that (about 100 texts of 8 kB). */
#define MAILUSER_FTS_TASK_MS 500
#define MAILUSER_FTS_TXN_MS 20
/* A store let go after a delivery stays held as it is (no trim, no refresh
 * when taken up again) until MAILUSER_DELIVERY_LINGER_MS after the last
 * delivery to it, for at most MAILUSER_DELIVERY_LINGER_MAX accounts (the
 * one whose time ends first goes first); then mail_keep_open applies. */
#define MAILUSER_DELIVERY_LINGER_MS 10000
#define MAILUSER_DELIVERY_LINGER_MAX 256

struct mailuser;
struct mailuser_req;

/* err is 0 or a STORAGE_E_* code; mu is valid until mailuser_release. */
typedef void (*mailuser_open_cb)(void *arg, int err, struct mailuser *mu);

/* Opens (or shares) the store of acct. The quota of acct is applied. cb is
 * called on the loop thread, unless cancelled. NULL on allocation failure. */
struct mailuser_req *mailuser_open(uv_loop_t *loop, const char *data_dir,
                                   const struct auth_account *acct, mailuser_open_cb cb, void *arg);
/* cb will not be called; a store opened meanwhile is released. */
void mailuser_open_cancel(struct mailuser_req *r);

/* Whether the store of account id is open for sessions now (not only
 * kept open after them): a delivery then goes through it, so that its
 * sessions hear of the message at once; otherwise a delivery takes a light
 * handle of its own (storage_open_light) rather than open the store. */
bool mailuser_in_use(int64_t id);

/* The storage handle; usable from pool threads while the mailuser is held. */
struct storage_user *mailuser_storage(struct mailuser *mu);
int64_t mailuser_id(const struct mailuser *mu);

/* Another hold on a store already held (a session's job on another
 * account's store, which must outlive the session that started it). */
void mailuser_hold(struct mailuser *mu);
/* A session holding mu entered (on) or left (off) IMAP IDLE: it waits for
 * pushed changes and runs nothing until DONE. Once every hold on mu is such
 * a session, the store closes its index files at its next upkeep round
 * rather than after mail_idle_close (unless that is 0). Each on is matched
 * by an off before the session's hold is released. */
void mailuser_idling(struct mailuser *mu, bool on);
/* Drops a session's hold; the last one closes the store on the pool. */
void mailuser_release(struct mailuser *mu);
/* Drops a delivery's hold, the store lingering as said above, so that a
 * stream of deliveries to the same account does not reopen its index for
 * every message. */
void mailuser_release_delivered(struct mailuser *mu);
/* A delivery went through light handles (storage_open_light): those kept
 * after it are closed once past their time even if no other delivery
 * comes (a look every 2 seconds while some are kept); and the delivery
 * journal's checkpoint, when its WAL has grown, is started as a pool job
 * of its own, one at a time. Loop thread. */
void mailuser_light_used(uv_loop_t *loop);

/* A session that wants change notifications. */
struct mailuser_listener {
    /* Called on the loop thread; ev->uids is borrowed for the call. */
    void (*on_event)(void *arg, const struct storage_event *ev);
    void *arg;
    /* private */
    struct mailuser *mu;
    LIST_ENTRY(mailuser_listener) entry;
};

/* A store whose last session ended stays open keep_open_ms (0: closes at
 * once), at most keep_open_max of them (the one idle longest closes first).
 * Taken up again, it first picks up what other programs changed meanwhile.
 * A store whose sessions all left it unused idle_close_ms closes its index
 * files until the next command or delivery (0: never), and one whose
 * holders are all sessions in IMAP IDLE (mailuser_idling) at its next
 * upkeep round; unused quiet_ms, it gives back its readers and cached
 * pages (0: never). */
void mailuser_configure(uint64_t keep_open_ms, unsigned keep_open_max, uint64_t idle_close_ms,
                        uint64_t quiet_ms);
/* At most max_open stores have their index files open (0: no bound); an
 * open past it, or failing for want of descriptors, waits up to wait_ms for
 * one to close or fall asleep, then fails with STORAGE_E_TEMP. The jobs
 * (proto_job_start) that would wake a store asleep past it wait as long,
 * then run. */
void mailuser_configure_open(unsigned max_open, uint64_t wait_ms);

/* What gives freed memory back to the system after stores closed (run on
 * the pool, at most every 2 s); NULL: glibc's malloc_trim. */
void mailuser_configure_trim(void (*trim)(void));
/* Expunged UIDs are remembered keep_days days (0: the count alone) and at
 * least the keep_count newest per mailbox (imap_vanished_keep_days and
 * imap_vanished_keep_count). */
void mailuser_configure_vanished(unsigned keep_days, uint64_t keep_count);

/* An account leaving this server (`coffrectl user move`, the control
 * socket's RELEASE): until uv_now passes until_ms, an open of its store
 * fails with STORAGE_E_TEMP, and a store of it that nobody holds is not
 * kept open nor left to linger: it closes at once (so does one kept or
 * lingering now). Sessions and deliveries are ended by their owners. */
void mailuser_block(uv_loop_t *loop, int64_t id, uint64_t until_ms);
/* A directory read that began at since (uv_now) found the account served
 * here and not moving: a block set before then is over (the account came
 * back, or its move was called off). */
void mailuser_unblock(int64_t id, uint64_t since);
/* Whether account id is blocked as above. */
bool mailuser_blocked(int64_t id);
/* Whether anything of account id is still here: its store open, opening,
 * kept, lingering or closing, or jobs of it queued or running. */
bool mailuser_busy(int64_t id);

/* The daemon is stopping: stores kept open are closed, and notifications
 * from pool threads are dropped from now on (the loop is about to close its
 * handles). */
void mailuser_shutdown(void);

void mailuser_listen(struct mailuser *mu, struct mailuser_listener *l);
void mailuser_unlisten(struct mailuser_listener *l);

#endif
