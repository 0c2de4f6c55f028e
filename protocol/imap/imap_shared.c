/* Another account's store, for a session working in the shared namespace
 * (RFC 4314, RFC 2342): the owner is looked up in the account database on
 * the pool (auth_service_lookup) and its store opened through the
 * per-account service exactly as its own sessions and deliveries open it
 * (mailuser_open: one store per account in the process, the owner's
 * quota), held while a mailbox of it is selected or for one command, and
 * the jobs on it counted in the owner's queue. Also the flags a STORE
 * needs rights for and the flags a COPY or APPEND keeps (the rights of the
 * selected mailbox are imap_mailbox.c's). Above the session core, as the
 * commands are: the session calls it only through s->shared_abort. Loop
 * thread. */
#include <stdlib.h>
#include <string.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"
#include "server/base/config.h"

/* ---- acquiring a store ---- */

struct lookup_job;

struct imap_shared_open {
    struct imap_session *s;
    struct lookup_job *lookup; /* the account lookup on the pool, or NULL */
    struct mailuser_req *req;  /* then the store's open, or NULL */
    int64_t owner;
    imap_shared_cb *cb;
    void (*abort)(void *arg);
    void *arg;
};

struct lookup_job {
    struct imap_job j;
    struct imap_shared_open *so; /* NULL once the session dropped it */
    struct auth_service *svc;
    char address[AUTH_ADDR_MAX];
    struct auth_account acct;
    int rc;
};

static void lookup_work(struct imap_job *j)
{
    struct lookup_job *lj = (struct lookup_job *)j;
    lj->rc = auth_service_lookup(lj->svc, lj->address, strlen(lj->address), &lj->acct);
}

/* The acquisition ends: the session goes on with cb. */
static void so_end(struct imap_shared_open *so, int err, struct mailuser *mu)
{
    struct imap_session *s = so->s;
    imap_shared_cb *cb = so->cb;
    void *arg = so->arg;

    s->shared_open = NULL;
    s->shared_abort = NULL;
    free(so);
    s->wait = IMAP_WAIT_NONE;
    cb(s, err, mu, arg);
    imap_flush(s);
}

static void on_open(void *arg, int err, struct mailuser *mu)
{
    struct imap_shared_open *so = arg;
    so->req = NULL;
    so_end(so, err ? err : 0, err ? NULL : mu);
}

static void lookup_done(struct imap_session *s, struct imap_job *j)
{
    struct lookup_job *lj = (struct lookup_job *)j;
    struct imap_shared_open *so = lj->so;

    if (!so)
        return;
    so->lookup = NULL;
    /* the address must still name the account the ACL names: one deleted
     * and made again has another id and none of the old one's mail */
    if (lj->rc != AUTH_OK || lj->acct.id != so->owner) {
        so_end(so, lj->rc == AUTH_E_TEMP ? STORAGE_E_TEMP : STORAGE_E_NOMBOX, NULL);
        return;
    }
    so->req = mailuser_open(conn_loop(s->c), conn_conf(s->c)->data_dir, &lj->acct, on_open, so);
    if (!so->req) {
        so_end(so, STORAGE_E_NOMEM, NULL);
        return;
    }
    imap_wait(s, IMAP_WAIT_JOB);
}

int imap_shared_acquire(struct imap_session *s, int64_t owner, const char *owner_address,
                        imap_shared_cb *cb, void (*abort)(void *arg), void *arg)
{
    struct imap_shared_open *so;
    struct lookup_job *lj;

    if (s->shared_open || !s->mu || !conn_loop(s->c) || !conn_auth(s->c) || owner <= 0 ||
        strlen(owner_address) >= AUTH_ADDR_MAX)
        return -1;
    if (!(so = calloc(1, sizeof(*so))))
        return -1;
    if (!(lj = calloc(1, sizeof(*lj)))) {
        free(so);
        return -1;
    }
    so->s = s;
    so->owner = owner;
    so->cb = cb;
    so->abort = abort;
    so->arg = arg;
    lj->so = so;
    lj->svc = conn_auth(s->c);
    memcpy(lj->address, owner_address, strlen(owner_address) + 1);
    /* the lookup is the session's own work: counted in its own queue */
    if (imap_job_start(s, &lj->j, lookup_work, lookup_done) < 0) {
        free(so);
        return -1;
    }
    so->lookup = lj;
    s->shared_open = so;
    s->shared_abort = imap_shared_abort;
    return 0;
}

struct mailuser *imap_shared_held(struct imap_session *s, int64_t owner)
{
    struct mailuser *mu = s->sel && s->sel->mu && s->sel->owner == owner ? s->sel->mu : NULL;
    if (mu)
        mailuser_hold(mu);
    return mu;
}

void imap_shared_abort(struct imap_session *s)
{
    struct imap_shared_open *so = s->shared_open;
    if (!so)
        return;
    s->shared_open = NULL;
    s->shared_abort = NULL;
    if (so->lookup)
        so->lookup->so = NULL; /* its job is cancelled with the session's */
    if (so->req)
        mailuser_open_cancel(so->req);
    if (so->abort)
        so->abort(so->arg);
    free(so);
}

/* ---- a command's job on another account's store ---- */

static void job_drop(void *arg)
{
    struct imap_job *j = arg;
    if (j->free_fn)
        j->free_fn(j);
    else
        free(j);
}

static void job_go(struct imap_session *s, int err, struct mailuser *mu, void *arg)
{
    struct imap_job *j = arg;

    if (err) {
        job_drop(j);
        if (err == STORAGE_E_NOMBOX)
            imap_finish(s, "NO", "[NONEXISTENT] No such mailbox.");
        else
            imap_finish(s, "NO", "[UNAVAILABLE] Mail store unavailable; try again later.");
        return;
    }
    j->store = mu;
    int r = imap_job_start(s, j, j->work, j->done); /* the job takes a hold of its own */
    mailuser_release(mu);
    if (r < 0)
        imap_finish(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
}

void imap_shared_job(struct imap_session *s, const struct imap_mref *r, struct imap_job *j,
                     imap_job_work *work, imap_job_done *done)
{
    if (!r->shared || r->owner == s->account_id) {
        imap_cmd_job(s, j, work, done);
        return;
    }
    if (!imap_storage(s)) {
        job_drop(j);
        return;
    }
    j->work = work; /* kept for job_go */
    j->done = done;
    struct mailuser *mu = imap_shared_held(s, r->owner);
    if (mu) {
        job_go(s, 0, mu, j); /* the selected mailbox's owner: held already */
        return;
    }
    if (imap_shared_acquire(s, r->owner, r->owner_address, job_go, job_drop, j) < 0) {
        job_drop(j);
        imap_finish(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
    }
}

struct mailuser *imap_sel_store(struct imap_session *s)
{
    return s->sel && s->sel->mu ? s->sel->mu : s->mu;
}

void imap_sel_job(struct imap_session *s, struct imap_job *j, imap_job_work *work,
                  imap_job_done *done)
{
    j->store = s->sel && s->sel->mu ? s->sel->mu : NULL;
    imap_cmd_job(s, j, work, done);
}

/* ---- flags and rights ---- */

#define FLAGS_W (STORAGE_FLAG_ANSWERED | STORAGE_FLAG_FLAGGED | STORAGE_FLAG_DRAFT)

unsigned imap_store_rights(int op, unsigned flags, size_t nkw)
{
    unsigned need = 0;
    if (op == STORAGE_STORE_SET)
        return ACL_SEEN | ACL_DELMSG | ACL_WRITE; /* every flag is set or cleared */
    if (flags & STORAGE_FLAG_SEEN)
        need |= ACL_SEEN;
    if (flags & STORAGE_FLAG_DELETED)
        need |= ACL_DELMSG;
    if ((flags & FLAGS_W) || nkw)
        need |= ACL_WRITE;
    return need;
}

unsigned imap_flags_allowed(unsigned rights, unsigned flags, bool *keywords)
{
    unsigned keep = 0;
    if (rights & ACL_SEEN)
        keep |= STORAGE_FLAG_SEEN;
    if (rights & ACL_DELMSG)
        keep |= STORAGE_FLAG_DELETED;
    if (rights & ACL_WRITE)
        keep |= FLAGS_W;
    if (keywords)
        *keywords = rights & ACL_WRITE;
    return flags & keep;
}
