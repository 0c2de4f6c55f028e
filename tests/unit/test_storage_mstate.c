/* Unit test: what SELECT and STATUS need of a mailbox (storage_mbox_info)
 * is kept in memory by the open store and stays what the index says:
 * after each of a few hundred random changes made through the store
 * (APPEND with flags and keywords, STORE of flags and keywords, EXPUNGE,
 * COPY and MOVE in and out) it is compared with the messages as
 * storage_fetch reads them; across a second handle and a reopen; and
 * after changes another program commits to the index (which the store
 * did not make: its state must be built again, also when a change of its
 * own follows before it is used). A FLAGS resync answered from the state
 * (STORAGE_FETCH_NO_MODSEQ) is compared with the same read from the
 * index, for the whole mailbox and for random UID sets, each time. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "storage/storage.h"
#include "tests/unit/check.h"

static char dir[256];

struct truth {
    uint32_t uids[4096];
    size_t n;
    uint32_t unseen, deleted, first_unseen;
    char kw[4096];
};

static int truth_cb(void *arg, const struct storage_msg *m)
{
    struct truth *t = arg;
    if (t->n < sizeof(t->uids) / sizeof(t->uids[0]))
        t->uids[t->n] = m->uid;
    t->n++;
    if (!(m->flags & STORAGE_FLAG_SEEN)) {
        t->unseen++;
        if (!t->first_unseen)
            t->first_unseen = m->uid;
    }
    if (m->flags & STORAGE_FLAG_DELETED)
        t->deleted++;
    /* keywords in use, without case, in order of appearance */
    const char *p = m->keywords;
    while (p && *p) {
        const char *e = strchr(p, ' ');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        bool seen = false;
        for (const char *q = t->kw; *q;) {
            const char *qe = strchr(q + 1, ' ');
            size_t qn = qe ? (size_t)(qe - q - 1) : strlen(q + 1);
            if (qn == n && !strncasecmp(q + 1, p, n))
                seen = true;
            q = qe ? qe : q + 1 + qn;
        }
        if (!seen && n && strlen(t->kw) + n + 2 < sizeof(t->kw)) {
            strcat(t->kw, " ");
            strncat(t->kw, p, n);
        }
        p = e ? e + 1 : NULL;
    }
    return 0;
}

static int line_cb(void *arg, const struct storage_msg *m)
{
    fprintf(arg, "%u %u %s\n", m->uid, m->flags, m->keywords);
    return 0;
}

struct stopper {
    unsigned n, stop_at;
};

static int stop_cb(void *arg, const struct storage_msg *m)
{
    struct stopper *s = arg;
    (void)m;
    return ++s->n == s->stop_at;
}

static unsigned seed_sets = 5;
static uint64_t memory_answers; /* resyncs the state answered */
static unsigned resyncs;

/* A FLAGS resync of set (NULL: all) gives what the index says. */
static bool resync_agrees(struct storage_user *u, int64_t mbox, const struct storage_uidset *set,
                          const char *what)
{
    char *a = NULL, *b = NULL;
    size_t al = 0, bl = 0;
    FILE *fa = open_memstream(&a, &al), *fb = open_memstream(&b, &bl);
    uint64_t before = storage_flags_from_memory(NULL);
    int ra =
        storage_fetch(u, mbox, set, STORAGE_FETCH_NO_SIZES | STORAGE_FETCH_NO_MODSEQ, line_cb, fa);
    memory_answers += storage_flags_from_memory(NULL) - before;
    resyncs++;
    int rb = storage_fetch(u, mbox, set, STORAGE_FETCH_NO_SIZES, line_cb, fb);
    fclose(fa);
    fclose(fb);
    bool ok = ra == 0 && rb == 0 && a && b && !strcmp(a, b);
    if (!ok)
        fprintf(stderr, "%s: resync (%d):\n%s\nindex (%d):\n%s\n", what, ra, a ? a : "", rb,
                b ? b : "");
    free(a);
    free(b);
    return ok;
}

/* The resync of mbox, whole and of random sets, and one stopped early. */
static bool resyncs_agree(struct storage_user *u, int64_t mbox, uint32_t top, size_t nmsgs,
                          const char *what)
{
    struct storage_range r[4];
    bool ok = resync_agrees(u, mbox, NULL, what);

    for (int k = 0; k < 3 && ok; k++) {
        size_t n = 1 + (size_t)rand_r(&seed_sets) % 4;
        for (size_t i = 0; i < n; i++) {
            /* any order, overlapping, reversed, past the last UID */
            r[i].lo = 1 + (uint32_t)rand_r(&seed_sets) % (top + 4);
            r[i].hi = 1 + (uint32_t)rand_r(&seed_sets) % (top + 4);
        }
        struct storage_uidset set = {n, r};
        ok = resync_agrees(u, mbox, &set, what);
    }
    struct stopper st = {0, 3};
    if (ok && storage_fetch(u, mbox, NULL, STORAGE_FETCH_NO_SIZES | STORAGE_FETCH_NO_MODSEQ,
                            stop_cb, &st) != 0)
        ok = false;
    if (ok && st.n != (nmsgs < 3 ? nmsgs : 3)) {
        fprintf(stderr, "%s: a resync stopped at the third message went on to %u\n", what, st.n);
        ok = false;
    }
    return ok;
}

/* storage_mbox_info of mbox agrees with the index, read row by row, and
 * so does a FLAGS resync from the state it keeps. */
static bool agrees(struct storage_user *u, int64_t mbox, const char *what)
{
    struct truth t;
    struct storage_mbox_info in;
    bool ok;

    memset(&t, 0, sizeof(t));
    /* a resync before the state is used (and made right) by
     * storage_mbox_info: as the writes left it */
    if (!resync_agrees(u, mbox, NULL, what)) {
        CHECK(false, what);
        return false;
    }
    if (storage_fetch(u, mbox, NULL, 0, truth_cb, &t) != 0 ||
        storage_mbox_info(u, NULL, mbox, true, &in) != 0) {
        CHECK(false, what);
        return false;
    }
    /* the ranges: ascending, disjoint, not adjacent, the UIDs of the index */
    size_t k = 0;
    bool ranges_ok = true;
    for (size_t i = 0; i < in.nranges && ranges_ok; i++) {
        if (in.ranges[i].lo > in.ranges[i].hi ||
            (i && (uint64_t)in.ranges[i - 1].hi + 1 >= in.ranges[i].lo))
            ranges_ok = false;
        for (uint64_t v = in.ranges[i].lo; ranges_ok && v <= in.ranges[i].hi; v++, k++)
            ranges_ok = k < t.n && t.uids[k] == v;
    }
    ok = ranges_ok && k == t.n && in.messages == t.n && in.unseen == t.unseen &&
         in.deleted == t.deleted && in.first_unseen == t.first_unseen &&
         !strcmp(in.keywords ? in.keywords : "", t.kw);
    if (!ok) {
        fprintf(stderr,
                "%s: state messages %u unseen %u deleted %u first %u kw '%s'; index %zu %u %u %u "
                "'%s'\n",
                what, in.messages, in.unseen, in.deleted, in.first_unseen,
                in.keywords ? in.keywords : "", t.n, t.unseen, t.deleted, t.first_unseen, t.kw);
        CHECK(false, what);
    }
    if (ok && !resyncs_agree(u, mbox, in.mb.uidnext, t.n, what)) {
        CHECK(false, what);
        ok = false;
    }
    storage_mbox_info_free(&in);
    return ok;
}

static const char msg[] = "From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n";
static const char *const kws[] = {"$Label1", "Junk", "$label1", "NonJunk"};

/* One random change through the store. */
static void random_change(struct storage_user *u, int64_t box, int64_t other, unsigned *seed)
{
    unsigned r = (unsigned)rand_r(seed);
    struct storage_range rg;
    struct storage_uidset set = {1, &rg};
    struct storage_mbox_info in;
    uint32_t uid;

    if (storage_mbox_info(u, NULL, box, false, &in) != 0)
        return;
    uint32_t top = in.mb.uidnext;
    storage_mbox_info_free(&in);
    rg.lo = 1 + (uint32_t)rand_r(seed) % top;
    rg.hi = rg.lo + (uint32_t)rand_r(seed) % 8;
    switch (r % 8) {
    case 0:
    case 1: {
        const char *k = kws[rand_r(seed) % 4];
        storage_append(u, box, msg, sizeof(msg) - 1, (unsigned)rand_r(seed) & STORAGE_FLAGS_ALL,
                       r & 8 ? &k : NULL, r & 8 ? 1 : 0, 0, &uid);
        break;
    }
    case 2:
        storage_store(u, box, &set, (enum storage_store_op)(rand_r(seed) % 3),
                      (unsigned)rand_r(seed) & STORAGE_FLAGS_ALL, NULL, 0, 0, NULL, NULL, NULL);
        break;
    case 3: {
        const char *k = kws[rand_r(seed) % 4];
        storage_store(u, box, &set, (enum storage_store_op)(rand_r(seed) % 3),
                      (unsigned)rand_r(seed) & STORAGE_FLAGS_ALL, &k, 1, 0, NULL, NULL, NULL);
        break;
    }
    case 4:
        storage_expunge(u, box, &set, r & 8, NULL);
        break;
    case 5:
        storage_copy(u, box, &set, other, NULL, NULL);
        break;
    case 6:
        storage_move(u, other, &set, box, NULL, NULL);
        break;
    case 7:
        /* a STORE on every message: many at once */
        storage_store(u, box, NULL, r & 8 ? STORAGE_STORE_ADD : STORAGE_STORE_REMOVE,
                      STORAGE_FLAG_SEEN, NULL, 0, 0, NULL, NULL, NULL);
        break;
    }
}

/* What another program does to the index: \Seen set on every message,
 * HIGHESTMODSEQ moved as every writer of the index does. */
static void external_seen(int64_t box)
{
    char path[512], sql[256];
    sqlite3 *db;

    snprintf(path, sizeof(path), "%s/users/1/index.sqlite", dir);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK, "another connection opens the index");
    sqlite3_busy_timeout(db, 5000);
    snprintf(sql, sizeof(sql),
             "BEGIN IMMEDIATE; UPDATE messages SET flags = flags | 1 WHERE mailbox_id = %lld;"
             " UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = %lld; COMMIT;",
             (long long)box, (long long)box);
    CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "another connection commits");
    sqlite3_close(db);
}

/* Another program toggling \Seen on every message of a mailbox, in a loop,
 * while the store writes to the same mailbox. */
struct toggler {
    int64_t box;
    volatile bool stop;
    unsigned commits;
};

static void *toggle_seen(void *arg)
{
    struct toggler *tg = arg;
    char path[512], sql[256];
    sqlite3 *db;

    snprintf(path, sizeof(path), "%s/users/1/index.sqlite", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return NULL;
    sqlite3_busy_timeout(db, 5000);
    for (unsigned i = 0; !tg->stop; i++) {
        snprintf(sql, sizeof(sql),
                 "BEGIN IMMEDIATE; UPDATE messages SET flags = flags %s WHERE mailbox_id = %lld;"
                 " UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = %lld; COMMIT;",
                 i & 1 ? "& ~1" : "| 1", (long long)tg->box, (long long)tg->box);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK)
            tg->commits++;
        else
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        usleep(200); /* the store's writer gets the lock too */
    }
    sqlite3_close(db);
    return NULL;
}

int main(void)
{
    struct storage_user *u, *u2;
    struct storage_mbox box, other;
    struct storage_mbox_info in;
    unsigned seed = 11;
    uint32_t uid;
    bool all = true;

    if (check_mkdtemp(dir, sizeof(dir), "coffre-mstate") != 0)
        return 1;
    CHECK(storage_open(dir, 1, &u) == 0, "store");
    CHECK(storage_mbox_create(u, "Box", 0) == 0 && storage_mbox_create(u, "Other", 0) == 0,
          "mailboxes");
    CHECK(storage_mbox_get(u, "Box", &box) == 0 && storage_mbox_get(u, "Other", &other) == 0,
          "ids");
    for (int i = 0; i < 20; i++)
        storage_append(u, other.id, msg, sizeof(msg) - 1, i % 3 ? STORAGE_FLAG_SEEN : 0, NULL, 0, 0,
                       &uid);
    CHECK(agrees(u, box.id, "empty mailbox"), "empty mailbox");

    for (int i = 0; i < 400 && all; i++) {
        random_change(u, box.id, other.id, &seed);
        all = agrees(u, box.id, "after a change") && agrees(u, other.id, "the other mailbox");
    }
    CHECK(all, "400 random changes: the state always agrees with the index");
    /* the resyncs were answered from memory (each follows a
     * storage_mbox_info, which builds the state when it must) */
    fprintf(stderr, "%llu of %u resyncs answered from the state\n",
            (unsigned long long)memory_answers, resyncs);
    CHECK(memory_answers * 10 >= (uint64_t)resyncs * 9, "resyncs answered from the state");
    uint64_t wrong = 0;
    storage_flags_from_memory(&wrong);
    CHECK(wrong == 0, "no state was ever found to disagree with the index");
    CHECK(storage_mbox_info(u, "box", 0, false, &in) == STORAGE_E_NOMBOX, "names are exact");
    storage_mbox_info_free(&in);

    /* a second open of the account shares the handle and its states */
    CHECK(storage_open(dir, 1, &u2) == 0 && u2 == u, "shared handle");
    storage_append(u2, box.id, msg, sizeof(msg) - 1, 0, NULL, 0, 0, &uid);
    CHECK(agrees(u, box.id, "after an append through the second reference"), "shared");
    storage_close(u2);

    /* changes another program commits */
    CHECK(agrees(u, box.id, "before"), "state built");
    external_seen(box.id);
    CHECK(agrees(u, box.id, "another program's change, then a use"),
          "another program's change shows at the next use");
    external_seen(other.id);
    CHECK(storage_mbox_info(u, NULL, other.id, false, &in) == 0, "built");
    storage_mbox_info_free(&in);
    {
        char path[512];
        sqlite3 *db;
        snprintf(path, sizeof(path), "%s/users/1/index.sqlite", dir);
        sqlite3_open(path, &db);
        sqlite3_busy_timeout(db, 5000);
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "BEGIN IMMEDIATE; UPDATE messages SET flags = 0 WHERE mailbox_id = %lld;"
                 " UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = %lld; COMMIT;",
                 (long long)other.id, (long long)other.id);
        sqlite3_exec(db, sql, NULL, NULL, NULL);
        sqlite3_close(db);
    }
    /* a change of the store's own comes before the next use */
    storage_append(u, other.id, msg, sizeof(msg) - 1, STORAGE_FLAG_SEEN, NULL, 0, 0, &uid);
    CHECK(agrees(u, other.id, "another program's change, then one of ours"),
          "another program's change is not hidden by a change of the store's own");

    /* another program commits while the store writes: whichever order
     * their commits take, the state ends up what the index says */
    {
        struct toggler tg = {.box = box.id};
        pthread_t th;
        bool ok = true;
        for (int round = 0; round < 40 && ok; round++) {
            tg.stop = false;
            if (pthread_create(&th, NULL, toggle_seen, &tg) != 0)
                break;
            for (int i = 0; i < 25; i++) {
                random_change(u, box.id, other.id, &seed);
                storage_mbox_info(u, NULL, box.id, false, &in);
                storage_mbox_info_free(&in);
            }
            tg.stop = true;
            pthread_join(th, NULL);
            ok = agrees(u, box.id, "writes beside another program's commits");
        }
        CHECK(ok && tg.commits > 0, "the state agrees after writes beside another program's");
    }

    /* reopened: built again from the index */
    storage_close(u);
    CHECK(storage_open(dir, 1, &u) == 0, "reopened");
    CHECK(agrees(u, box.id, "reopened") && agrees(u, other.id, "reopened"),
          "the state after a reopen");
    storage_close(u);
    storage_flags_from_memory(&wrong);
    CHECK(wrong == 0, "no state was found to disagree with the index, beside other programs too");
    check_rmtree(dir);
    return check_summary();
}
