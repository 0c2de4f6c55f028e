/* Unit test: the \Recent floor kept in the index (storage/recent.c). A
 * claim gives the floor it found and moves it to the last UID; while a
 * claim holds the mailbox, every message added to it (APPEND, COPY, MOVE,
 * delivery) moves the floor too, and after the release none does; the
 * floor survives the close of the store; a mailbox deleted and created
 * again starts at 0; a claim of another incarnation fails and holds
 * nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"
#include "tests/unit/check.h"

static char dir[256];
static const char msg[] = "From: a@example.org\r\nSubject: r\r\n\r\nbody\r\n";

static uint32_t floor_of(struct storage_user *u, const char *name)
{
    struct storage_mbox mb;
    uint32_t f = UINT32_MAX;
    if (storage_mbox_get(u, name, &mb) != 0 ||
        storage_recent_floor(u, mb.id, mb.uidvalidity, &f) != 0)
        return UINT32_MAX;
    return f;
}

static void append(struct storage_user *u, const char *name, int n)
{
    struct storage_mbox mb;
    uint32_t uid;
    CHECK(storage_mbox_get(u, name, &mb) == 0);
    for (int i = 0; i < n; i++)
        CHECK(storage_append(u, mb.id, msg, sizeof(msg) - 1, 0, NULL, 0, 0, &uid) == 0);
}

static int claim(struct storage_user *u, const char *name, const void *owner, uint32_t *prev,
                 uint64_t *gen)
{
    struct storage_mbox mb;
    if (storage_mbox_get(u, name, &mb) != 0)
        return -1;
    return storage_recent_claim(u, mb.id, mb.uidvalidity, owner, prev, gen);
}

int main(void)
{
    struct storage_user *u;
    struct storage_mbox box, src;
    uint32_t prev = 99;
    uint64_t g1 = 0, g2 = 0, g3 = 0;
    int a, b, c; /* owners: their addresses are the tokens */

    if (check_mkdtemp(dir, sizeof(dir), "coffre-recent") != 0)
        return 1;
    CHECK(storage_open(dir, 1, &u) == 0, "store");
    CHECK(storage_mbox_create(u, "Box", 0) == 0 && storage_mbox_create(u, "Src", 0) == 0,
          "mailboxes");
    append(u, "Box", 3);
    CHECK(floor_of(u, "Box") == 0, "nothing claimed at first");
    CHECK(claim(u, "Box", &a, &prev, &g1) == 0 && prev == 0, "a claim finds floor 0");
    CHECK(floor_of(u, "Box") == 3, "and moves it to the last UID");
    CHECK(claim(u, "Box", &a, &prev, &g2) == 0 && prev == 3 && g2 > g1,
          "a claim again finds it there, with a later number");

    /* the holder takes what is added */
    append(u, "Box", 1);
    CHECK(floor_of(u, "Box") == 4, "APPEND to a mailbox held moves the floor");
    append(u, "Src", 3);
    CHECK(storage_mbox_get(u, "Box", &box) == 0 && storage_mbox_get(u, "Src", &src) == 0);
    struct storage_range r1 = {1, 1}, r2 = {2, 2}, r3 = {3, 3};
    struct storage_uidset s1 = {1, &r1}, s2 = {1, &r2}, s3 = {1, &r3};
    CHECK(storage_copy(u, src.id, &s1, box.id, NULL, NULL) == 0 && floor_of(u, "Box") == 5,
          "COPY in moves it");
    CHECK(storage_move(u, src.id, &s2, box.id, NULL, NULL) == 0 && floor_of(u, "Box") == 6,
          "MOVE in moves it");
    CHECK(floor_of(u, "Src") == 0, "the source's floor stays");

    /* a release by another owner changes nothing; by the holder, it ends */
    storage_recent_release(u, box.id, &b);
    append(u, "Box", 1);
    CHECK(floor_of(u, "Box") == 7, "a release by a session not holding it is ignored");
    storage_recent_release(u, box.id, &a);
    append(u, "Box", 2);
    CHECK(storage_copy(u, src.id, &s3, box.id, NULL, NULL) == 0);
    CHECK(floor_of(u, "Box") == 7, "after the release, arrivals wait for the next claim");

    /* a later claim takes over */
    CHECK(claim(u, "Box", &b, &prev, &g3) == 0 && prev == 7 && g3 > g2, "b claims 8..10");
    CHECK(claim(u, "Box", &c, &prev, &g3) == 0 && prev == 10, "c claims after b");
    storage_recent_release(u, box.id, &b); /* b was superseded: c holds on */
    append(u, "Box", 1);
    CHECK(floor_of(u, "Box") == 11, "the latest claim holds the mailbox");
    storage_recent_release(u, box.id, &c);

    /* kept in the index */
    append(u, "Box", 2);
    storage_close(u);
    CHECK(storage_open(dir, 1, &u) == 0, "open again");
    CHECK(floor_of(u, "Box") == 11, "the floor survives the close");
    CHECK(claim(u, "Box", &a, &prev, &g1) == 0 && prev == 11, "and the next claim finds it");
    CHECK(floor_of(u, "Box") == 13, "claiming the two added meanwhile");
    storage_recent_release(u, box.id, &a);

    /* another incarnation under the same name */
    uint32_t old_uv = box.uidvalidity;
    CHECK(storage_mbox_delete(u, "Box") == 0 && storage_mbox_create(u, "Box", 0) == 0, "again");
    CHECK(storage_mbox_get(u, "Box", &box) == 0 && box.uidvalidity != old_uv);
    append(u, "Box", 2);
    CHECK(floor_of(u, "Box") == 0, "a mailbox created again starts at 0");
    CHECK(storage_recent_claim(u, box.id, old_uv, &a, &prev, &g1) == STORAGE_E_NOMBOX,
          "a claim of the deleted incarnation fails");
    append(u, "Box", 1);
    CHECK(floor_of(u, "Box") == 0, "and holds nothing");
    CHECK(claim(u, "Box", &a, &prev, &g1) == 0 && prev == 0 && floor_of(u, "Box") == 3,
          "the new incarnation's messages are claimed once");
    storage_recent_release(u, box.id, &a);

    storage_close(u);
    check_rmtree(dir);
    return check_summary();
}
