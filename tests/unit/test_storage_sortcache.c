/* Unit test of the sort cache (storage/sortcache.c): after appends and
 * expunges made through the open store, through a light delivery handle
 * and by a repair on a handle of its own (another connection, seen only
 * through the mailbox row's stamps), every SORT and THREAD answered from
 * the cache equals the one computed from the index with the cache off;
 * also when the cache is too small to hold the mailbox. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/storage.h"
#include "tests/unit/check.h"

static struct storage_user *u;
static int64_t inbox;
static char dir[256];
static unsigned seq;

#define CACHE_BYTES (64ull << 20)

static void set_cache(uint64_t bytes)
{
    storage_set_limits(&(struct storage_limits){.sort_cache_bytes = bytes});
}

/* A message of its number alone: few subjects and senders (equal keys),
 * some with bytes above 0x7f, dates repeating, references to earlier
 * ones. */
static int message(unsigned i, char *m, size_t len)
{
    static const char *const subj[] = {"alpha",       "Re: alpha", "beta",  "Fwd: gamma",
                                       "caf\xc3\xa9", "\xff\xfe",  "",      "[list] beta",
                                       "Zeta",        "zeta",      "alpha2"};
    static const char *const from[] = {"Zed <zed@x>", "bob@x",   "Bob <bob@y>",   "adam@x",
                                       "\xc3\xa9l@x", "<odd@x>", "undisclosed:;", "Ann <ann@z>"};
    /* the body padded with i % 37 spaces: sizes differ, for SORT (SIZE) */
    char refs[200] = "";
    if (i > 3 && i % 3)
        snprintf(refs, sizeof(refs), "References: <m%u@x> <m%u@x>\r\n", i / 3, i / 2);
    return snprintf(m, len,
                    "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %02u Mar 2021 10:%02u:00 +0000\r\n"
                    "Message-ID: <m%u@x>\r\n%s\r\nbody %*s.\r\n",
                    from[i % 8], from[(i / 8) % 8], subj[(i * 7) % 11], 1 + i % 5, i % 3, i, refs,
                    (int)(i % 37), "");
}

static int add(void)
{
    char m[1000];
    unsigned i = ++seq;
    int n = message(i, m, sizeof(m));
    uint32_t uid;
    return storage_append(u, inbox, m, (size_t)n, 0, NULL, 0, 1600000000 + (i * 13) % 17, &uid);
}

static int deliver_light(void)
{
    struct storage_user *l;
    struct storage_draft *d = NULL;
    char m[1000];
    int n = message(++seq, m, sizeof(m)), rc;
    uint32_t uid;

    if ((rc = storage_open_light(dir, 1, &l)) != 0)
        return rc;
    if ((rc = storage_draft_new(l, 0, &d)) == 0 &&
        (rc = storage_draft_write(d, m, (size_t)n)) == 0 && (rc = storage_draft_finish(d)) == 0)
        rc = storage_deliver(l, NULL, d, &uid, NULL);
    storage_draft_free(d);
    storage_close_light(l);
    return rc;
}

static int expunge(uint32_t lo, uint32_t hi)
{
    struct storage_range r = {lo, hi};
    struct storage_uidset set = {1, &r};
    int rc = storage_store(u, inbox, &set, STORAGE_STORE_ADD, STORAGE_FLAG_DELETED, NULL, 0, 0,
                           NULL, NULL, NULL);
    return rc ? rc : storage_expunge(u, inbox, &set, true, NULL);
}

/* Removes every step-th message file of the Maildir, then a repair on
 * its own handle takes them out of the index. */
static int expunge_behind(unsigned step)
{
    char path[600];
    unsigned k = 0;
    snprintf(path, sizeof(path), "%s/users/1/Maildir/cur", dir);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && k++ % step == 0) {
            snprintf(path, sizeof(path), "%s/users/1/Maildir/cur/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
    return storage_repair(dir, 1);
}

static int sort(const struct storage_search *q, const struct storage_sort_crit *c, size_t n,
                uint64_t cache, struct storage_uidlist *l)
{
    set_cache(cache);
    int rc = storage_sort(u, inbox, q, c, n, l);
    set_cache(CACHE_BYTES);
    return rc;
}

static void shape(const struct storage_thread *t, uint32_t x, char **o, size_t *left)
{
    const struct storage_thread_node *n = &t->nodes[x - 1];
    int w = snprintf(*o, *left, "(%u", n->uid);
    if (w < 0 || (size_t)w >= *left)
        return;
    *o += w, *left -= (size_t)w;
    for (uint32_t c = n->child; c; c = t->nodes[c - 1].next)
        shape(t, c, o, left);
    if (*left > 1) {
        *(*o)++ = ')';
        **o = '\0';
        (*left)--;
    }
}

static int thread(const struct storage_search *q, enum storage_thread_algo a, uint64_t cache,
                  char *out, size_t len)
{
    struct storage_thread t;
    set_cache(cache);
    int rc = storage_thread(u, inbox, q, a, &t);
    set_cache(CACHE_BYTES);
    if (rc)
        return rc;
    out[0] = '\0';
    char *o = out;
    size_t left = len;
    for (uint32_t r = t.root; r; r = t.nodes[r - 1].next)
        shape(&t, r, &o, &left);
    storage_thread_free(&t);
    return 0;
}

/* Every criterion list below on each query, cached (twice: built, then
 * used) against the index; *mism the first that differs. */
static bool same_answers(uint64_t cache, const char **mism)
{
    static const struct storage_sort_crit crits[][3] = {
        {{STORAGE_SORT_SUBJECT, false}},
        {{STORAGE_SORT_SUBJECT, true}},
        {{STORAGE_SORT_FROM, false}},
        {{STORAGE_SORT_FROM, true}},
        {{STORAGE_SORT_DATE, false}},
        {{STORAGE_SORT_DATE, true}},
        {{STORAGE_SORT_ARRIVAL, false}},
        {{STORAGE_SORT_ARRIVAL, true}},
        {{STORAGE_SORT_SIZE, true}},
        {{STORAGE_SORT_TO, false}},
        {{STORAGE_SORT_CC, false}},
        {{STORAGE_SORT_DISPLAYFROM, false}},
        {{STORAGE_SORT_DISPLAYTO, true}},
        {{STORAGE_SORT_SUBJECT, false}, {STORAGE_SORT_DATE, true}},
        {{STORAGE_SORT_FROM, true}, {STORAGE_SORT_SUBJECT, false}, {STORAGE_SORT_SIZE, false}},
        {{STORAGE_SORT_DATE, false}, {STORAGE_SORT_FROM, false}},
    };
    static const size_t ncrit[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 2};
    struct storage_range r[2] = {{3, 40}, {55, UINT32_MAX}};
    struct storage_search all = {.op = STORAGE_SEARCH_ALL},
                          uids = {.op = STORAGE_SEARCH_UID, .set = {2, r}},
                          subj = {.op = STORAGE_SEARCH_HEADER, .field = "subject", .str = "alpha"};
    const struct storage_search *qs[] = {&all, &uids, &subj};
    static const char *const qname[] = {"ALL", "UID 3:40,55:*", "SUBJECT alpha"};
    static char what[100];

    for (size_t qi = 0; qi < 3; qi++) {
        for (size_t ci = 0; ci < sizeof(ncrit) / sizeof(ncrit[0]); ci++) {
            struct storage_uidlist want, got;
            if (sort(qs[qi], crits[ci], ncrit[ci], 0, &want) != 0)
                return *mism = "a SORT from the index failed", false;
            for (int pass = 0; pass < 2; pass++) {
                bool ok = sort(qs[qi], crits[ci], ncrit[ci], cache, &got) == 0 && got.n == want.n &&
                          memcmp(got.uids, want.uids, want.n * sizeof(*want.uids)) == 0;
                storage_uidlist_free(&got);
                if (!ok) {
                    storage_uidlist_free(&want);
                    snprintf(what, sizeof(what), "SORT %s, criteria %zu, pass %d", qname[qi], ci,
                             pass);
                    return *mism = what, false;
                }
            }
            storage_uidlist_free(&want);
        }
        for (int a = 0; a < 3; a++) {
            static char want[100000], got[100000];
            enum storage_thread_algo algo = a == 0   ? STORAGE_THREAD_REFERENCES
                                            : a == 1 ? STORAGE_THREAD_REFS
                                                     : STORAGE_THREAD_ORDEREDSUBJECT;
            if (thread(qs[qi], algo, 0, want, sizeof(want)) != 0 ||
                thread(qs[qi], algo, cache, got, sizeof(got)) != 0 || strcmp(want, got) != 0) {
                snprintf(what, sizeof(what), "THREAD %s, algorithm %d", qname[qi], a);
                return *mism = what, false;
            }
        }
    }
    return true;
}

static void check_same(const char *when)
{
    const char *mism = "";
    char what[200];
    bool ok = same_answers(CACHE_BYTES, &mism);
    snprintf(what, sizeof(what), "%s: cached SORT and THREAD as from the index%s%s", when,
             ok ? "" : "; differs: ", mism);
    CHECK(ok, what);
}

int main(void)
{
    struct storage_mbox m;
    bool ok = true;

    if (check_mkdtemp(dir, sizeof(dir), "coffre-sortcache") != 0)
        return 1;
    set_cache(CACHE_BYTES);
    CHECK(storage_open(dir, 1, &u) == 0 && storage_mbox_get(u, "INBOX", &m) == 0, "store");
    inbox = m.id;
    for (int i = 0; i < 120 && ok; i++)
        ok = add() == 0;
    CHECK(ok, "120 messages");
    check_same("first use");

    for (int i = 0; i < 15 && ok; i++)
        ok = add() == 0;
    CHECK(ok, "15 appended");
    check_same("after appends of this store");

    CHECK(expunge(10, 25) == 0 && expunge(60, 60) == 0, "expunged 10:25 and 60");
    check_same("after expunges of this store");

    for (int i = 0; i < 6 && ok; i++)
        ok = deliver_light() == 0;
    CHECK(ok, "6 delivered through a light handle");
    check_same("after deliveries of another connection");

    CHECK(add() == 0 && expunge_behind(7) == 0, "files removed, repaired on another handle");
    check_same("after expunges of another connection");

    CHECK(expunge(1, 100) == 0, "most messages expunged");
    check_same("after most were expunged");
    for (int i = 0; i < 40 && ok; i++)
        ok = add() == 0;
    CHECK(ok, "40 more");
    check_same("after refilling");

    const char *mism = "";
    CHECK(same_answers(3000, &mism), "a cache too small for the mailbox: answers from the index");

    storage_close(u);
    set_cache(0);
    return check_summary();
}
