/* Unit test: per-user \Seen on shared mailboxes (storage/pseen.c). A
 * viewer's \Seen is its own: set and cleared by storage_pseen_store, read
 * back as merged ranges (checked against a reference after a few hundred
 * random changes), leaving the message rows (the owner's \Seen) alone;
 * each change moves the changed messages' modseq and the mailbox's
 * HIGHESTMODSEQ and raises an event naming the viewer; SEARCH SEEN and
 * UNSEEN answer from the viewer's set for the viewer and from the rows for
 * the owner; the counts of SELECT and STATUS for the viewer; UNCHANGEDSINCE;
 * expunged messages leave the counts; the sets go with a deleted mailbox
 * and survive storage_reindex; an index made before the table was added
 * gets it at open. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"
#include "tests/unit/check.h"

static char dir[256];
static const char msg[] = "From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n";

#define BOB 1001
#define CAROL 1002

static struct storage_range all_r = {1, UINT32_MAX};
static const struct storage_uidset all_set = {1, &all_r};

static int64_t box_id(struct storage_user *u, const char *name)
{
    struct storage_mbox mb;
    return storage_mbox_get(u, name, &mb) == 0 ? mb.id : -1;
}

static void append(struct storage_user *u, int64_t mbox, int n, unsigned flags)
{
    uint32_t uid;
    for (int i = 0; i < n; i++)
        CHECK(storage_append(u, mbox, msg, sizeof(msg) - 1, flags, NULL, 0, 0, &uid) == 0);
}

/* One set: lo..hi */
static int store(struct storage_user *u, int64_t mbox, int64_t viewer, uint32_t lo, uint32_t hi,
                 bool seen, uint64_t *modseq)
{
    struct storage_range r = {lo, hi};
    struct storage_uidset set = {1, &r};
    return storage_pseen_store(u, mbox, viewer, &set, seen, 0, NULL, NULL, modseq);
}

/* The set as "lo-hi,lo-hi" */
static const char *seen_str(struct storage_user *u, int64_t mbox, int64_t viewer)
{
    static char out[1024];
    struct storage_seen s;
    size_t o = 0;

    out[0] = '\0';
    if (storage_pseen_get(u, mbox, viewer, &s) != 0)
        return "error";
    for (size_t i = 0; i < s.n && o < sizeof(out) - 32; i++)
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%u-%u", i ? "," : "", s.r[i].lo,
                              s.r[i].hi);
    storage_seen_free(&s);
    return out;
}

struct rows {
    unsigned flags[512];
    uint64_t modseq[512];
};

static int rows_cb(void *arg, const struct storage_msg *m)
{
    struct rows *r = arg;
    if (m->uid < 512) {
        r->flags[m->uid] = m->flags;
        r->modseq[m->uid] = m->modseq;
    }
    return 0;
}

static void rows_of(struct storage_user *u, int64_t mbox, struct rows *r)
{
    memset(r, 0, sizeof(*r));
    CHECK(storage_fetch(u, mbox, &all_set, 0, rows_cb, r) == 0);
}

/* SEARCH of one flag node, as "1 2 3" */
static const char *search_str(struct storage_user *u, int64_t mbox, int64_t viewer,
                              enum storage_search_op op, unsigned flags)
{
    static char out[2048];
    struct storage_search q = {.op = op, .flags = flags, .viewer = viewer};
    struct storage_uidlist l;
    size_t o = 0;

    out[0] = '\0';
    if (storage_search(u, mbox, &q, &l) != 0)
        return "error";
    for (size_t i = 0; i < l.n && o < sizeof(out) - 16; i++)
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%u", i ? " " : "", l.uids[i]);
    storage_uidlist_free(&l);
    return out;
}

struct evlog {
    int flags_events;
    int64_t viewer;
    uint64_t modseq;
    uint32_t uids[64];
    size_t n;
};

static void on_event(void *arg, const struct storage_event *ev)
{
    struct evlog *e = arg;
    if (ev->type != STORAGE_EV_FLAGS)
        return;
    e->flags_events++;
    e->viewer = ev->viewer;
    e->modseq = ev->modseq;
    e->n = 0;
    for (size_t i = 0; i < ev->n && i < 64; i++)
        e->uids[e->n++] = ev->uids[i];
}

static void test_basics(struct storage_user *u)
{
    int64_t box = box_id(u, "Team");
    struct storage_mbox before, after;
    struct rows r0, r1;
    uint64_t ms = 0;
    struct evlog ev = {0};
    struct storage_watch *w;

    append(u, box, 10, 0);
    /* the owner has read 1 and 2 */
    {
        struct storage_range r = {1, 2};
        struct storage_uidset set = {1, &r};
        CHECK(storage_store(u, box, &set, STORAGE_STORE_ADD, STORAGE_FLAG_SEEN, NULL, 0, 0, NULL,
                            NULL, NULL) == 0);
    }
    CHECK(strcmp(seen_str(u, box, BOB), "") == 0, "a viewer starts with nothing seen");

    w = storage_watch(u, on_event, &ev);
    rows_of(u, box, &r0);
    CHECK(storage_mbox_get(u, "Team", &before) == 0);
    CHECK(store(u, box, BOB, 3, 4, true, &ms) == 0, "bob sets \\Seen on 3:4");
    CHECK(strcmp(seen_str(u, box, BOB), "3-4") == 0, "bob's set is 3:4");
    CHECK(storage_mbox_get(u, "Team", &after) == 0);
    CHECK(ms == before.highestmodseq + 1 && after.highestmodseq == ms,
          "the change takes the mailbox's next modseq");
    rows_of(u, box, &r1);
    {
        bool rows_ok = true, modseq_ok = true;
        for (uint32_t uid = 1; uid <= 10; uid++) {
            rows_ok &= r1.flags[uid] == r0.flags[uid];
            bool changed = uid == 3 || uid == 4;
            modseq_ok &= changed ? r1.modseq[uid] == ms : r1.modseq[uid] == r0.modseq[uid];
        }
        CHECK(rows_ok, "the message rows (the owner's \\Seen) are left alone");
        CHECK(modseq_ok, "only the changed messages take the new modseq");
    }
    CHECK(ev.flags_events == 1 && ev.viewer == BOB && ev.modseq == ms && ev.n == 2 &&
              ev.uids[0] == 3 && ev.uids[1] == 4,
          "the event names the viewer and the changed messages");

    CHECK(store(u, box, BOB, 5, 5, true, NULL) == 0 && strcmp(seen_str(u, box, BOB), "3-5") == 0,
          "an adjacent UID joins the range");
    CHECK(store(u, box, BOB, 8, 9, true, NULL) == 0 &&
              strcmp(seen_str(u, box, BOB), "3-5,8-9") == 0,
          "a separate run is a range of its own");
    CHECK(store(u, box, BOB, 6, 7, true, NULL) == 0 && strcmp(seen_str(u, box, BOB), "3-9") == 0,
          "filling the gap merges the ranges");
    CHECK(store(u, box, BOB, 5, 5, false, NULL) == 0 &&
              strcmp(seen_str(u, box, BOB), "3-4,6-9") == 0,
          "clearing one UID splits the range");
    ev.flags_events = 0;
    CHECK(store(u, box, BOB, 6, 7, true, &ms) == 0 && ms == 0 && ev.flags_events == 0,
          "setting what is set changes nothing: no modseq, no event");
    CHECK(store(u, box, BOB, 20, 30, true, &ms) == 0 && ms == 0 &&
              strcmp(seen_str(u, box, BOB), "3-4,6-9") == 0,
          "UIDs above UIDNEXT are not taken");
    CHECK(store(u, box, CAROL, 1, 1, true, NULL) == 0 &&
              strcmp(seen_str(u, box, CAROL), "1-1") == 0 &&
              strcmp(seen_str(u, box, BOB), "3-4,6-9") == 0,
          "each viewer has a set of its own");

    /* a change of the rows is for everybody */
    ev.flags_events = 0;
    {
        struct storage_range r = {10, 10};
        struct storage_uidset set = {1, &r};
        CHECK(storage_store(u, box, &set, STORAGE_STORE_ADD, STORAGE_FLAG_FLAGGED, NULL, 0, 0, NULL,
                            NULL, NULL) == 0);
    }
    CHECK(ev.flags_events == 1 && ev.viewer == 0, "a STORE of the rows names no viewer");
    storage_unwatch(w);

    /* SEARCH: the viewer's set for the viewer, the rows for the owner */
    CHECK(strcmp(search_str(u, box, BOB, STORAGE_SEARCH_FLAGS, STORAGE_FLAG_SEEN), "3 4 6 7 8 9") ==
              0,
          "SEARCH SEEN of bob");
    CHECK(strcmp(search_str(u, box, BOB, STORAGE_SEARCH_UNFLAGS, STORAGE_FLAG_SEEN), "1 2 5 10") ==
              0,
          "SEARCH UNSEEN of bob");
    CHECK(strcmp(search_str(u, box, 0, STORAGE_SEARCH_FLAGS, STORAGE_FLAG_SEEN), "1 2") == 0,
          "SEARCH SEEN of the owner");
    CHECK(strcmp(search_str(u, box, 0, STORAGE_SEARCH_UNFLAGS, STORAGE_FLAG_SEEN),
                 "3 4 5 6 7 8 9 10") == 0,
          "SEARCH UNSEEN of the owner");
    CHECK(strcmp(search_str(u, box, CAROL, STORAGE_SEARCH_UNFLAGS, STORAGE_FLAG_SEEN),
                 "2 3 4 5 6 7 8 9 10") == 0,
          "SEARCH UNSEEN of carol");
    CHECK(strcmp(search_str(u, box, BOB, STORAGE_SEARCH_FLAGS,
                            STORAGE_FLAG_SEEN | STORAGE_FLAG_FLAGGED),
                 "") == 0 &&
              strcmp(search_str(u, box, BOB, STORAGE_SEARCH_UNFLAGS,
                                STORAGE_FLAG_SEEN | STORAGE_FLAG_FLAGGED),
                     "1 2 5") == 0,
          "SEEN with another flag: the set for \\Seen, the rows for the other");
    {
        /* NOT SEEN under an AND, the viewer on the root */
        struct storage_search seen = {.op = STORAGE_SEARCH_FLAGS, .flags = STORAGE_FLAG_SEEN};
        struct storage_search not = {.op = STORAGE_SEARCH_NOT, .child = &seen};
        struct storage_range r = {1, 6};
        struct storage_search uid = {.op = STORAGE_SEARCH_UID, .set = {1, &r}, .next = &not };
        struct storage_search q = {.op = STORAGE_SEARCH_AND, .child = &uid, .viewer = BOB};
        struct storage_uidlist l;
        CHECK(storage_search(u, box, &q, &l) == 0 && l.n == 3 && l.uids[0] == 1 && l.uids[1] == 2 &&
                  l.uids[2] == 5,
              "1:6 NOT SEEN of bob");
        storage_uidlist_free(&l);
    }

    /* the counts of SELECT and STATUS */
    {
        struct storage_mbox_info own, bob, carol;
        CHECK(storage_mbox_info(u, NULL, box, false, &own) == 0 && own.unseen == 8 &&
                  own.first_unseen == 3,
              "the owner's unseen count and first unseen");
        CHECK(storage_mbox_info_viewer(u, NULL, box, BOB, false, &bob) == 0 && bob.unseen == 4 &&
                  bob.first_unseen == 1 && bob.messages == 10 && !bob.ranges,
              "bob's unseen count and first unseen");
        CHECK(storage_mbox_info_viewer(u, "Team", 0, CAROL, true, &carol) == 0 &&
                  carol.unseen == 9 && carol.first_unseen == 2 && carol.nranges == 1,
              "carol's");
        storage_mbox_info_free(&own);
        storage_mbox_info_free(&bob);
        storage_mbox_info_free(&carol);
    }

    /* FETCH FLAGS of a viewer */
    rows_of(u, box, &r1);
    {
        struct storage_seen s;
        CHECK(storage_pseen_get(u, box, BOB, &s) == 0);
        CHECK(storage_seen_flags(&s, 1, r1.flags[1]) == 0 &&
                  storage_seen_flags(&s, 3, r1.flags[3]) == STORAGE_FLAG_SEEN &&
                  storage_seen_flags(&s, 10, r1.flags[10]) == STORAGE_FLAG_FLAGGED,
              "FETCH FLAGS rewritten for bob");
        storage_seen_free(&s);
    }

    /* UNCHANGEDSINCE */
    {
        struct storage_range r = {1, 2};
        struct storage_uidset set = {1, &r};
        struct storage_uidlist failed = {0}, changed = {0};
        uint64_t m1 = 0;
        CHECK(store(u, box, CAROL, 2, 2, true, NULL) == 0); /* 2 moves on */
        rows_of(u, box, &r1);
        uint64_t since = r1.modseq[1];
        CHECK(storage_pseen_store(u, box, BOB, &set, true, since, &failed, &changed, &m1) == 0 &&
                  failed.n == 1 && failed.uids[0] == 2 && changed.n == 1 && changed.uids[0] == 1,
              "UNCHANGEDSINCE leaves the newer message alone");
        CHECK(strcmp(seen_str(u, box, BOB), "1-1,3-4,6-9") == 0, "and keeps it unseen");
        storage_uidlist_free(&failed);
        storage_uidlist_free(&changed);
    }

    /* a viewer's STORE FLAGS (...) on the rows leaves the owner's \Seen */
    {
        struct storage_range r = {1, 3};
        struct storage_uidset set = {1, &r};
        struct storage_mbox_info own;
        rows_of(u, box, &r0);
        CHECK(storage_store(u, box, &set, STORAGE_STORE_SET,
                            STORAGE_FLAG_DRAFT | STORAGE_FLAG_SEEN | STORAGE_STORE_KEEP_SEEN, NULL,
                            0, 0, NULL, NULL, NULL) == 0);
        rows_of(u, box, &r1);
        CHECK(r1.flags[1] == (STORAGE_FLAG_SEEN | STORAGE_FLAG_DRAFT) &&
                  r1.flags[2] == (STORAGE_FLAG_SEEN | STORAGE_FLAG_DRAFT) &&
                  r1.flags[3] == STORAGE_FLAG_DRAFT,
              "SET with KEEP_SEEN keeps the rows' \\Seen as it was");
        CHECK(storage_mbox_info(u, NULL, box, false, &own) == 0 && own.unseen == 8,
              "and the owner's count with it");
        storage_mbox_info_free(&own);
        CHECK(storage_store(u, box, &set, STORAGE_STORE_SET, STORAGE_FLAG_SEEN, NULL, 0, 0, NULL,
                            NULL, NULL) == 0);
        CHECK(storage_store(u, box, &set, STORAGE_STORE_REMOVE, STORAGE_FLAG_SEEN, NULL, 0, 0, NULL,
                            NULL, NULL) == 0);
        CHECK(storage_store(u, box, &(struct storage_uidset){1, &(struct storage_range){1, 2}},
                            STORAGE_STORE_ADD, STORAGE_FLAG_SEEN, NULL, 0, 0, NULL, NULL,
                            NULL) == 0);
    }

    /* the owner's state kept for SELECT follows the modseq of a viewer's change */
    {
        struct storage_mbox_info own;
        struct storage_mbox mb;
        CHECK(store(u, box, BOB, 10, 10, true, &ms) == 0 && ms > 0);
        CHECK(storage_mbox_get(u, "Team", &mb) == 0 &&
                  storage_mbox_info(u, NULL, box, false, &own) == 0 &&
                  own.mb.highestmodseq == mb.highestmodseq && own.unseen == 8,
              "the owner's counts stay the rows'");
        storage_mbox_info_free(&own);
    }
}

static void test_random(struct storage_user *u)
{
    int64_t box = box_id(u, "Random");
    bool ref[201] = {0};
    bool ok = true;
    unsigned seed = 12345;

    append(u, box, 200, 0);
    for (int i = 0; i < 400 && ok; i++) {
        struct storage_range r[3];
        struct storage_uidset set = {0, r};
        bool seen;
        seed = seed * 1103515245 + 12345;
        seen = (seed >> 16) % 3 != 0;
        set.n = 1 + (seed >> 8) % 3;
        for (size_t k = 0; k < set.n; k++) {
            seed = seed * 1103515245 + 12345;
            uint32_t lo = 1 + (seed >> 16) % 200, len = (seed >> 4) % 12;
            r[k].lo = lo;
            r[k].hi = lo + len > 200 ? 200 : lo + len;
            for (uint32_t x = r[k].lo; x <= r[k].hi; x++)
                ref[x] = seen;
        }
        if (storage_pseen_store(u, box, BOB, &set, seen, 0, NULL, NULL, NULL) != 0) {
            ok = false;
            break;
        }
        /* the set, as ranges, against the reference */
        struct storage_seen s;
        if (storage_pseen_get(u, box, BOB, &s) != 0) {
            ok = false;
            break;
        }
        size_t k = 0;
        for (uint32_t x = 1; x <= 200 && ok; x++) {
            bool in = storage_seen_has(&s, x);
            ok = in == ref[x];
        }
        for (k = 0; k < s.n && ok; k++) {
            ok = s.r[k].lo <= s.r[k].hi && (k == 0 || s.r[k].lo > s.r[k - 1].hi + 1);
        }
        storage_seen_free(&s);
        if (!ok)
            fprintf(stderr, "random: mismatch after change %d\n", i);
    }
    CHECK(ok, "400 random changes: the ranges are the reference, merged");
    {
        struct storage_mbox_info bob;
        uint32_t unseen = 0, first = 0;
        for (uint32_t x = 1; x <= 200; x++)
            if (!ref[x]) {
                unseen++;
                if (!first)
                    first = x;
            }
        CHECK(storage_mbox_info_viewer(u, NULL, box, BOB, false, &bob) == 0 &&
                  bob.unseen == unseen && bob.first_unseen == first,
              "the counts agree with the reference");
        storage_mbox_info_free(&bob);
    }
}

static void test_expunge_delete(struct storage_user *u)
{
    int64_t box = box_id(u, "Exp");
    struct storage_mbox_info bob;

    append(u, box, 8, 0);
    CHECK(store(u, box, BOB, 1, UINT32_MAX, true, NULL) == 0 &&
              strcmp(seen_str(u, box, BOB), "1-8") == 0,
          "1:* is one range");
    CHECK(store(u, box, BOB, 6, 6, false, NULL) == 0);
    {
        struct storage_range r = {2, 3};
        struct storage_uidset set = {1, &r};
        struct storage_uidlist gone = {0};
        CHECK(storage_expunge(u, box, &set, false, &gone) == 0 && gone.n == 2);
        storage_uidlist_free(&gone);
    }
    CHECK(storage_mbox_info_viewer(u, NULL, box, BOB, false, &bob) == 0 && bob.messages == 6 &&
              bob.unseen == 1 && bob.first_unseen == 6,
          "expunged messages leave the viewer's counts");
    storage_mbox_info_free(&bob);
    CHECK(strcmp(search_str(u, box, BOB, STORAGE_SEARCH_FLAGS, STORAGE_FLAG_SEEN), "1 4 5 7 8") ==
              0,
          "and its SEARCH");
    append(u, box, 2, 0);
    CHECK(strcmp(search_str(u, box, BOB, STORAGE_SEARCH_UNFLAGS, STORAGE_FLAG_SEEN), "6 9 10") == 0,
          "new messages are unseen for the viewer");
    CHECK(store(u, box, BOB, 1, UINT32_MAX, true, NULL) == 0 &&
              strcmp(seen_str(u, box, BOB), "1-10") == 0,
          "1:* again: one range over the holes");

    /* a mailbox deleted and created again starts with nothing seen */
    CHECK(storage_mbox_delete(u, "Exp") == 0 && storage_mbox_create(u, "Exp", 0) == 0);
    box = box_id(u, "Exp");
    append(u, box, 3, 0);
    CHECK(strcmp(seen_str(u, box, BOB), "") == 0 &&
              strcmp(search_str(u, box, BOB, STORAGE_SEARCH_UNFLAGS, STORAGE_FLAG_SEEN), "1 2 3") ==
                  0,
          "a mailbox deleted takes its viewers' sets along");
}

/* UIDs an import keeps below UIDNEXT are not taken by a 1:* of a viewer
 * before their messages come */
static void test_import_reserved(struct storage_user *u)
{
    int64_t box = box_id(u, "Imp");
    struct storage_import_msg m = {.uid = 10, .data = msg, .len = sizeof(msg) - 1};

    append(u, box, 3, 0);
    CHECK(storage_import_uidnext(u, box, 20) == 0);
    CHECK(store(u, box, BOB, 1, UINT32_MAX, true, NULL) == 0 &&
              strcmp(seen_str(u, box, BOB), "1-3") == 0,
          "1:* stops at the last message, not at UIDNEXT");
    CHECK(storage_import_messages(u, box, &m, 1) == 0 && m.status == STORAGE_IMPORT_ADDED);
    CHECK(strcmp(search_str(u, box, BOB, STORAGE_SEARCH_UNFLAGS, STORAGE_FLAG_SEEN), "10") == 0,
          "a message imported under UIDNEXT afterwards is unseen for the viewer");
}

int main(void)
{
    struct storage_user *u;
    char team_before[1024];

    if (check_mkdtemp(dir, sizeof(dir), "coffre-pseen") != 0)
        return 1;
    CHECK(storage_open(dir, 1, &u) == 0, "store");
    CHECK(storage_mbox_create(u, "Team", 0) == 0 && storage_mbox_create(u, "Random", 0) == 0 &&
          storage_mbox_create(u, "Exp", 0) == 0 && storage_mbox_create(u, "Imp", 0) == 0);
    test_basics(u);
    test_random(u);
    test_expunge_delete(u);
    test_import_reserved(u);
    CHECK(store(u, box_id(u, "INBOX"), BOB, 1, 1, true, NULL) == 0, "an empty mailbox: nothing");
    CHECK(store(u, box_id(u, "Team"), 0, 1, 1, true, NULL) == STORAGE_E_INVAL,
          "viewer 0 is refused");
    snprintf(team_before, sizeof(team_before), "%s", seen_str(u, box_id(u, "Team"), BOB));
    storage_close(u);

    /* reindex: the index is rebuilt from the Maildir, the sets are kept */
    CHECK(storage_reindex(dir, 1) == 0, "reindex");
    CHECK(storage_open(dir, 1, &u) == 0);
    CHECK(strcmp(seen_str(u, box_id(u, "Team"), BOB), team_before) == 0 &&
              strcmp(seen_str(u, box_id(u, "Team"), CAROL), "1-2") == 0,
          "the viewers' sets survive a reindex");
    CHECK(strcmp(search_str(u, box_id(u, "Team"), BOB, STORAGE_SEARCH_UNFLAGS, STORAGE_FLAG_SEEN),
                 "2 5") == 0,
          "and answer SEARCH after it");
    CHECK(store(u, box_id(u, "Team"), BOB, 2, 2, true, NULL) == 0 &&
              strcmp(seen_str(u, box_id(u, "Team"), BOB), "1-4,6-10") == 0,
          "and take changes after it");
    storage_close(u);

    /* an index of the same schema made before the table existed */
    {
        char path[512];
        sqlite3 *db;
        snprintf(path, sizeof(path), "%s/users/1/index.sqlite", dir);
        CHECK(sqlite3_open(path, &db) == SQLITE_OK &&
              sqlite3_exec(db, "DROP TABLE pseen", NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(db);
    }
    CHECK(storage_open(dir, 1, &u) == 0);
    CHECK(strcmp(seen_str(u, box_id(u, "Team"), BOB), "") == 0 &&
              store(u, box_id(u, "Team"), BOB, 2, 2, true, NULL) == 0 &&
              strcmp(seen_str(u, box_id(u, "Team"), BOB), "2-2") == 0,
          "an index without the table gets it at open");
    storage_close(u);
    check_rmtree(dir);
    return check_summary();
}
