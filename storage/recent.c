/* \Recent (RFC 3501 2.3.2): which messages of a mailbox some session was
 * the first to be told of. Kept per mailbox as a floor: the messages with
 * a UID up to it were claimed, by the SELECT that found them or by the
 * session that held the mailbox selected read-write when they arrived;
 * those above it are \Recent for the next session to SELECT the mailbox.
 *
 * The floor lives in the index's meta table, key "recent.<mailbox id>",
 * the mailbox's UIDVALIDITY in the high 32 bits of the value and the floor
 * in the low ones: it survives the store's close and a restart, and a
 * mailbox deleted and created again (under an id SQLite may hand out again,
 * with UIDs from 1) starts with nothing claimed, since its UIDVALIDITY is
 * new. It is written in the transaction that claims: a SELECT's own
 * (storage_recent_claim), and every transaction that adds messages to a
 * mailbox while a session holds it selected read-write (its owner, kept
 * in memory by the handle): recent_apply, called by write_txn. Both run
 * under the writer lock, so a message is claimed exactly once. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "storage/internal.h"

struct recent_owner {
    int64_t mbox;
    uint32_t uidvalidity;
    const void *owner;
    struct recent_owner *next;
};

static void floor_key(char *key, size_t len, int64_t mbox)
{
    snprintf(key, len, "recent.%" PRId64, mbox);
}

/* The floor of mbox's incarnation uidvalidity (0 when another one wrote it). */
static int floor_read(sqlite3 *db, int64_t mbox, uint32_t uidvalidity, uint32_t *floor)
{
    char key[40];
    int64_t v = 0;
    floor_key(key, sizeof(key), mbox);
    int rc = db_meta_get(db, key, &v);
    *floor = rc == 0 && (uint32_t)((uint64_t)v >> 32) == uidvalidity ? (uint32_t)v : 0;
    return rc;
}

static int floor_write(sqlite3 *db, int64_t mbox, uint32_t uidvalidity, uint32_t floor)
{
    char key[40];
    floor_key(key, sizeof(key), mbox);
    return db_meta_set(db, key, (int64_t)((uint64_t)uidvalidity << 32 | floor));
}

static struct recent_owner **owner_slot(struct storage_user *u, int64_t mbox);

int recent_forget(struct txn *t, int64_t mbox)
{
    char key[40];

    /* a session still holding the mailbox claims nothing of the next one
     * under this id */
    pthread_mutex_lock(&t->u->rc_lock);
    struct recent_owner **pp = owner_slot(t->u, mbox), *o = *pp;
    if (o) {
        *pp = o->next;
        free(o);
    }
    pthread_mutex_unlock(&t->u->rc_lock);
    floor_key(key, sizeof(key), mbox);
    return db_run_binds(t->db, "DELETE FROM meta WHERE key = ?", key, NULL, 0);
}

/* The owner entry of mbox, under rc_lock. */
static struct recent_owner **owner_slot(struct storage_user *u, int64_t mbox)
{
    struct recent_owner **pp = &u->rc_owners;
    while (*pp && (*pp)->mbox != mbox)
        pp = &(*pp)->next;
    return pp;
}

static bool owner_get(struct storage_user *u, int64_t mbox, uint32_t *uidvalidity)
{
    pthread_mutex_lock(&u->rc_lock);
    struct recent_owner *o = *owner_slot(u, mbox);
    if (o)
        *uidvalidity = o->uidvalidity;
    pthread_mutex_unlock(&u->rc_lock);
    return o != NULL;
}

int recent_apply(struct txn *t)
{
    struct storage_user *u = t->u;
    bool any;

    pthread_mutex_lock(&u->rc_lock);
    any = u->rc_owners != NULL;
    pthread_mutex_unlock(&u->rc_lock);
    if (!any)
        return 0;
    for (size_t i = 0; i < t->nev; i++) {
        const struct pending_event *pe = &t->ev[i];
        uint32_t uv, top = 0, cur;
        int rc;

        if (pe->type != STORAGE_EV_NEW && pe->type != STORAGE_EV_EXTERNAL)
            continue;
        if (!owner_get(u, pe->mbox, &uv))
            continue;
        if (pe->type == STORAGE_EV_NEW) {
            for (size_t k = 0; k < pe->uids.n; k++)
                if (pe->uids.uids[k] > top)
                    top = pe->uids.uids[k];
        } else {
            /* a rescan took in files: their UIDs are not listed */
            struct mbox_row m;
            if (mbox_by_id(t->db, pe->mbox, &m) != 0)
                continue;
            top = m.uidnext ? m.uidnext - 1 : 0;
        }
        if (!top)
            continue;
        if ((rc = floor_read(t->db, pe->mbox, uv, &cur)) != 0)
            return rc;
        if (top > cur && (rc = floor_write(t->db, pe->mbox, uv, top)) != 0)
            return rc;
    }
    return 0;
}

void recent_drop_all(struct storage_user *u)
{
    while (u->rc_owners) {
        struct recent_owner *o = u->rc_owners;
        u->rc_owners = o->next;
        free(o);
    }
}

/* ---- the calls of the protocols ---- */

struct claim_ctx {
    int64_t mbox;
    uint32_t uidvalidity;
    const void *owner;
    struct recent_owner *spare; /* allocated before the lock */
    uint32_t prev, top;
    uint64_t gen;
    bool owned; /* the owner entry is this claim's */
};

/* With the writer lock, before any transaction: the floor and the last UID
 * read, the owner set; a transaction only when the floor moves, so that
 * the SELECT of an unchanged mailbox reads two rows. */
static int claim_before(struct storage_user *u, void *ctx)
{
    struct claim_ctx *c = ctx;
    struct mbox_row m;
    int rc;

    if ((rc = mbox_by_id(u->wdb, c->mbox, &m)) != 0)
        return rc;
    if (m.uidvalidity != c->uidvalidity)
        return STORAGE_E_NOMBOX; /* deleted and created again meanwhile */
    if ((rc = floor_read(u->wdb, c->mbox, m.uidvalidity, &c->prev)) != 0)
        return rc;
    /* from now on the messages added go to this owner */
    pthread_mutex_lock(&u->rc_lock);
    struct recent_owner **pp = owner_slot(u, c->mbox);
    if (!*pp) {
        *pp = c->spare;
        c->spare = NULL;
        (*pp)->mbox = c->mbox;
        (*pp)->next = NULL;
    }
    (*pp)->uidvalidity = m.uidvalidity;
    (*pp)->owner = c->owner;
    c->gen = ++u->rc_gen;
    c->owned = true;
    pthread_mutex_unlock(&u->rc_lock);
    c->top = m.uidnext ? m.uidnext - 1 : 0;
    if (c->top <= c->prev)
        return TXN_NOTHING;
    /* The floor is not worth a sync of its own: lost at a crash, the
     * messages are \Recent once more, and the next durable commit syncs
     * it anyway. */
    return txn_unsynced_before(u, NULL);
}

static int claim_work(struct txn *t, void *ctx)
{
    struct claim_ctx *c = ctx;
    return floor_write(t->db, c->mbox, c->uidvalidity, c->top);
}

int storage_recent_claim(struct storage_user *u, int64_t mbox, uint32_t uidvalidity,
                         const void *owner, uint32_t *prev, uint64_t *gen)
{
    static const struct txn_path path = {.before = claim_before,
                                         .work = claim_work,
                                         .undo = txn_unsynced_after,
                                         .committed = txn_unsynced_after};
    struct claim_ctx c = {.mbox = mbox, .uidvalidity = uidvalidity, .owner = owner};

    if (!(c.spare = calloc(1, sizeof(*c.spare))))
        return STORAGE_E_NOMEM;
    int rc = write_txn_path(u, &path, &c);
    free(c.spare);
    if (rc == TXN_NOTHING)
        rc = 0;
    if (rc && c.owned) /* the SELECT fails: nobody takes the arrivals */
        storage_recent_release(u, mbox, owner);
    *prev = c.prev;
    *gen = c.gen;
    return rc;
}

void storage_recent_release(struct storage_user *u, int64_t mbox, const void *owner)
{
    pthread_mutex_lock(&u->rc_lock);
    struct recent_owner **pp = owner_slot(u, mbox);
    struct recent_owner *o = *pp;
    if (o && o->owner == owner) {
        *pp = o->next;
        free(o);
    }
    pthread_mutex_unlock(&u->rc_lock);
}

int storage_recent_floor(struct storage_user *u, int64_t mbox, uint32_t uidvalidity,
                         uint32_t *floor)
{
    sqlite3 *db = reader_get(u);
    if (!db)
        return STORAGE_E_TEMP;
    int rc = floor_read(db, mbox, uidvalidity, floor);
    reader_put(u, db);
    return rc;
}
