/* Unit test: how long expunged UIDs are remembered (storage/vanished.c).
 * storage_vanished_prune keeps the expunges of the last keep_days days
 * and the keep_count newest, whichever is more, forgets at most max per
 * call, and raises the mailbox's floor (read by storage_changes_floor) to
 * the highest modseq forgotten; the day's mark tells the age of an
 * expunge; a mailbox deleted leaves no key in meta. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/storage.h"
#include "tests/unit/check.h"
#include "tests/unit/index_sql.h"

static char dir[256];
static const char msg[] = "From: a@example.org\r\nSubject: v\r\n\r\nbody\r\n";

/* Runs sql (no result) in the index of user 1, behind the storage's back. */
static int index_exec(const char *sql)
{
    char path[300];
    sqlite3 *db;
    int rc;

    snprintf(path, sizeof(path), "%s/users/1/index.sqlite", dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

/* The expunges mbox remembers since `since`, and its floor. */
static size_t remembered(struct storage_user *u, int64_t mbox, uint64_t *floor, uint32_t *first)
{
    struct storage_uidlist l = {0};
    size_t n;
    CHECK(storage_changes_floor(u, mbox, 0, NULL, NULL, &l, floor) == 0);
    n = l.n;
    *first = n ? l.uids[0] : 0;
    storage_uidlist_free(&l);
    return n;
}

static uint64_t expunge_one(struct storage_user *u, int64_t mbox, uint32_t uid)
{
    struct storage_range r = {uid, uid};
    struct storage_uidset s = {1, &r};
    struct storage_mbox mb;
    CHECK(storage_expunge(u, mbox, &s, false, NULL) == 0);
    CHECK(storage_mbox_get(u, "Box", &mb) == 0);
    return mb.highestmodseq;
}

int main(void)
{
    struct storage_user *u;
    struct storage_mbox mb;
    uint64_t ms[6], floor = 99;
    uint32_t uid, first;
    bool more = true;
    char sql[512];

    if (check_mkdtemp(dir, sizeof(dir), "coffre-vanished") != 0)
        return 1;
    CHECK(storage_open(dir, 1, &u) == 0, "store");
    CHECK(storage_mbox_create(u, "Box", 0) == 0 && storage_mbox_get(u, "Box", &mb) == 0);
    for (int i = 0; i < 10; i++)
        CHECK(storage_append(u, mb.id, msg, sizeof(msg) - 1, 0, NULL, 0, 0, &uid) == 0);
    for (uint32_t i = 1; i <= 5; i++)
        ms[i] = expunge_one(u, mb.id, i);
    CHECK(remembered(u, mb.id, &floor, &first) == 5 && floor == 0, "all five, no floor");

    /* young: the days keep them all, whatever the count */
    CHECK(storage_vanished_prune(u, 30, 1, 1000, &more) == 0 && !more);
    CHECK(remembered(u, mb.id, &floor, &first) == 5 && floor == 0, "30 days keep them");
    CHECK(index_sql_int(dir, "SELECT count(*) FROM meta WHERE key LIKE 'vanished_mark:%'") == 1,
          "the day's mark recorded");

    /* the count alone (keep_days 0) keeps more than asked when they are
     * few */
    CHECK(storage_vanished_prune(u, 0, 10, 1000, &more) == 0 && !more);
    CHECK(remembered(u, mb.id, &floor, &first) == 5 && floor == 0, "ten kept: all five");

    /* a mark of 40 days ago saying the first three were expunged by then:
     * they are old, and beyond the newest one */
    long long day = (long long)time(NULL) / 86400 - 40;
    snprintf(sql, sizeof(sql),
             "INSERT INTO meta(key, value) VALUES ('vanished_mark:%" PRId64 ":%08lld', %" PRIu64
             ")",
             mb.id, day, ms[3]);
    CHECK(index_exec(sql) == 0);
    /* bounded: one at a time */
    CHECK(storage_vanished_prune(u, 30, 1, 1, &more) == 0 && more, "one forgotten, more left");
    CHECK(remembered(u, mb.id, &floor, &first) == 4 && floor == ms[1] && first == 2,
          "the oldest went, the floor is its modseq");
    CHECK(storage_vanished_prune(u, 30, 1, 1000, &more) == 0 && !more);
    CHECK(remembered(u, mb.id, &floor, &first) == 2 && floor == ms[3] && first == 4,
          "the old ones went; the young ones stay although the count is 1");

    /* the count decides once the days do not */
    CHECK(storage_vanished_prune(u, 0, 1, 1000, &more) == 0 && !more);
    CHECK(remembered(u, mb.id, &floor, &first) == 1 && floor == ms[4] && first == 5,
          "the newest one stays");
    CHECK(storage_vanished_prune(u, 0, 1, 1000, &more) == 0 && !more);
    CHECK(remembered(u, mb.id, &floor, &first) == 1 && floor == ms[4], "nothing more");

    /* the floor survives the store's close */
    storage_close(u);
    CHECK(storage_open(dir, 1, &u) == 0);
    CHECK(remembered(u, mb.id, &floor, &first) == 1 && floor == ms[4], "floor kept");

    /* a mailbox is looked at once it holds a sixteenth more than the
     * count: 17 of 16 stay, 18 go down to 16 */
    struct storage_mbox b2;
    CHECK(storage_mbox_create(u, "Two", 0) == 0 && storage_mbox_get(u, "Two", &b2) == 0);
    for (int i = 0; i < 20; i++)
        CHECK(storage_append(u, b2.id, msg, sizeof(msg) - 1, 0, NULL, 0, 0, &uid) == 0);
    for (uint32_t i = 1; i <= 17; i++) {
        struct storage_range r = {i, i};
        struct storage_uidset one = {1, &r};
        CHECK(storage_expunge(u, b2.id, &one, false, NULL) == 0);
    }
    CHECK(storage_vanished_prune(u, 0, 16, 1000, &more) == 0);
    CHECK(remembered(u, b2.id, &floor, &first) == 17 && floor == 0, "17 of 16: not yet");
    {
        struct storage_range r = {18, 18};
        struct storage_uidset one = {1, &r};
        CHECK(storage_expunge(u, b2.id, &one, false, NULL) == 0);
    }
    CHECK(storage_vanished_prune(u, 0, 16, 1000, &more) == 0);
    CHECK(remembered(u, b2.id, &floor, &first) == 16 && first == 3 && floor > 0,
          "18 of 16: the two oldest go");

    /* a mailbox deleted leaves no key behind */
    CHECK(storage_mbox_delete(u, "Box") == 0);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM meta WHERE key LIKE 'vanished_%%:%" PRId64 ":%%'", mb.id);
    CHECK(index_sql_int(dir, sql) == 0, "meta keys of the deleted mailbox gone");
    storage_close(u);
    check_rmtree(dir);
    return check_summary();
}
