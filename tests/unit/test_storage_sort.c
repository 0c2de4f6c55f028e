/* Unit test of SORT and THREAD in storage: the base subject of RFC 5256
 * 2.1 on the cases of the RFC's grammar, the keys read back from ENVELOPE
 * strings, storage_sort and storage_thread on a store, and the upgrade of
 * an index of schema 6 (no sort keys) that fills them on open. */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/mime.h"
#include "storage/storage.h"
#include "tests/unit/check.h"
#include "tests/unit/index_sql.h"

static const struct {
    const char *in, *base;
    int refwd;
} subjects[] = {
    {"", "", 0},
    {"hello", "HELLO", 0},
    {"Re: hello", "HELLO", 1},
    {"RE: re: Re:hello", "HELLO", 1},
    {"Fwd: hello", "HELLO", 1},
    {"fw: hello", "HELLO", 1},
    {"Re [2]: hello", "HELLO", 1},
    {"Re[2]:hello", "HELLO", 1},
    {"[list] Re: hello", "HELLO", 1},
    {"Re: [list] hello", "HELLO", 1},
    {"[list] hello", "HELLO", 0},
    {"[a][b] [c] hello", "HELLO", 0},
    {"[list]", "[LIST]", 0},
    {"[list]  ", "[LIST]", 0},
    {"Re: [list]", "[LIST]", 1},
    {"hello (fwd)", "HELLO", 1},
    {"hello (FWD) (fwd)  ", "HELLO", 1},
    {"[fwd: hello]", "HELLO", 1},
    {"[Fwd: Re: hello (fwd)]", "HELLO", 1},
    {"Fw: [fwd: [fwd: hello]]", "HELLO", 1},
    {"[fwd: hello", "[FWD: HELLO", 0},
    {"hello]", "HELLO]", 0},
    {"  hello \t  world\r\n ", "HELLO WORLD", 0},
    {"Rehello", "REHELLO", 0},
    {"Re hello", "RE HELLO", 0},
    {"Re: ", "", 1},
    {"re:re:re:", "", 1},
    {"[a[b]] hello", "[A[B]] HELLO", 0},
    /* i;unicode-casemap: titlecase, then decomposed ("ö" is "O" and U+0308) */
    {"Re: Sch\xc3\xb6n", "SCHO\xcc\x88N", 1},
    {"\xc3\x89t\xc3\xa9", "E\xcc\x81TE\xcc\x81", 0},
    /* the ligature has no titlecase mapping; it decomposes to small letters */
    {"\xef\xac\x81le", "fiLE", 0},
    {"(fwd)", "", 1},
};

static void test_base_subjects(void)
{
    for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
        int refwd = -1;
        char *b = mime_base_subject(subjects[i].in, strlen(subjects[i].in), &refwd);
        char what[200];
        snprintf(what, sizeof(what), "base subject of \"%s\"", subjects[i].in);
        CHECK(b && strcmp(b, subjects[i].base) == 0 && refwd == subjects[i].refwd, what);
        if (b && strcmp(b, subjects[i].base) != 0)
            printf("     got \"%s\"\n", b);
        free(b);
    }
}

static void test_keys(void)
{
    struct mime_summary ms;
    struct mime_sort_keys k;
    const char *m = "From: =?UTF-8?Q?Zo=C3=AB?= <zoe@z.example>, other@o.example\r\n"
                    "To: undisclosed:;, \"Al \\\"B\\\" C\" <al@a.example>\r\n"
                    "Cc: plain@p.example (Comment Name)\r\n"
                    "Subject: =?UTF-8?Q?Re=3A_caf=C3=A9?=\r\n\r\nbody\r\n";

    CHECK(mime_parse(m, strlen(m), &ms) == 0, "parsed");
    CHECK(mime_sort_keys(ms.envelope, ms.subject, &k) == 0, "keys");
    CHECK(strcmp(k.subject, "CAFE\xcc\x81") == 0 && k.refwd == 1, "subject key");
    CHECK(strcmp(k.addr[0], "ZOE") == 0 && strcmp(k.display[0], "ZOE\xcc\x88") == 0,
          "from: mailbox and decoded display name");
    CHECK(strcmp(k.addr[1], "UNDISCLOSED") == 0 && strcmp(k.display[1], "UNDISCLOSED") == 0,
          "to: a group's start is the first address, its name the mailbox (RFC 5256 3)");
    CHECK(strcmp(k.addr[2], "PLAIN") == 0 && strcmp(k.display[2], "COMMENT NAME") == 0,
          "cc: a comment as the name");
    mime_sort_keys_free(&k);
    mime_summary_free(&ms);
    m = "To: \"Al \\\"B\\\" C\" <al@a.example>, undisclosed:;\r\n\r\nbody\r\n";
    CHECK(mime_parse(m, strlen(m), &ms) == 0 && mime_sort_keys(ms.envelope, ms.subject, &k) == 0,
          "keys of a second message");
    CHECK(strcmp(k.addr[1], "AL") == 0 && strcmp(k.display[1], "AL \"B\" C") == 0,
          "to: quotes undone");
    mime_sort_keys_free(&k);
    mime_summary_free(&ms);
    CHECK(mime_sort_keys(NULL, NULL, &k) == 0 && !*k.subject && !k.addr[0], "no envelope");
    mime_sort_keys_free(&k);
    CHECK(mime_sort_keys("(garbage", "x", &k) == 0 && !k.addr[0], "a broken envelope");
    mime_sort_keys_free(&k);
}

static struct storage_user *u;
static int64_t inbox;
static char dir[256];

static uint32_t add(const char *subject, const char *from, int day, const char *id,
                    const char *refs)
{
    static char m[40000];
    uint32_t uid = 0;
    int n = snprintf(m, sizeof(m),
                     "From: %s\r\nSubject: %s\r\nDate: %02d Mar 2021 10:00:00 +0000\r\n"
                     "Message-ID: %s\r\n%s%s%s\r\nbody\r\n",
                     from, subject, day, id, refs ? "References: " : "", refs ? refs : "",
                     refs ? "\r\n" : "");
    if (storage_append(u, inbox, m, (size_t)n, 0, NULL, 0, 1600000000 - day, &uid) != 0)
        return 0;
    return uid;
}

static bool sorted_as(enum storage_sort_key key, bool rev, const uint32_t *want, size_t n)
{
    struct storage_search all = {.op = STORAGE_SEARCH_ALL};
    struct storage_sort_crit c = {key, rev};
    struct storage_uidlist l;
    bool ok;

    if (storage_sort(u, inbox, &all, &c, 1, &l) != 0)
        return false;
    ok = l.n == n && memcmp(l.uids, want, n * sizeof(*want)) == 0;
    storage_uidlist_free(&l);
    return ok;
}

/* The thread forest written as RFC 5256 would (UIDs). */
static void shape(const struct storage_thread *t, uint32_t x, char *out, size_t len)
{
    size_t o = strlen(out);
    const struct storage_thread_node *n = &t->nodes[x - 1];
    snprintf(out + o, len - o, "(%u", n->uid);
    for (uint32_t c = n->child; c; c = t->nodes[c - 1].next)
        shape(t, c, out, len);
    o = strlen(out);
    snprintf(out + o, len - o, ")");
}

static bool threads_as(enum storage_thread_algo algo, const char *want)
{
    struct storage_search all = {.op = STORAGE_SEARCH_ALL};
    struct storage_thread t;
    char got[1000] = "";

    if (storage_thread(u, inbox, &all, algo, &t) != 0)
        return false;
    for (uint32_t r = t.root; r; r = t.nodes[r - 1].next)
        shape(&t, r, got, sizeof(got));
    storage_thread_free(&t);
    if (strcmp(got, want) != 0)
        printf("     got %s\n", got);
    return strcmp(got, want) == 0;
}

static void check_store(const char *when)
{
    uint32_t by_subject[] = {2, 4, 1, 3}, by_from[] = {3, 2, 4, 1}, by_date[] = {4, 2, 3, 1},
             by_arrival[] = {1, 3, 2, 4}, rev_from[] = {1, 2, 4, 3};
    char what[100];

    snprintf(what, sizeof(what), "%s: SORT SUBJECT, FROM, REVERSE FROM, DATE, ARRIVAL", when);
    CHECK(sorted_as(STORAGE_SORT_SUBJECT, false, by_subject, 4) &&
              sorted_as(STORAGE_SORT_FROM, false, by_from, 4) &&
              sorted_as(STORAGE_SORT_FROM, true, rev_from, 4) &&
              sorted_as(STORAGE_SORT_DATE, false, by_date, 4) &&
              sorted_as(STORAGE_SORT_ARRIVAL, false, by_arrival, 4),
          what);
    snprintf(what, sizeof(what), "%s: THREAD REFERENCES", when);
    CHECK(threads_as(STORAGE_THREAD_REFERENCES, "(4(2)(1))(3)"), what);
    snprintf(what, sizeof(what), "%s: THREAD REFS", when);
    CHECK(threads_as(STORAGE_THREAD_REFS, "(3)(4(2)(1))"), what);
    snprintf(what, sizeof(what), "%s: THREAD ORDEREDSUBJECT", when);
    CHECK(threads_as(STORAGE_THREAD_ORDEREDSUBJECT, "(4(2))(3)(1)"), what);
}

static int downgrade_to_6(void)
{
    return index_sql_exec(dir,
                          "DROP TABLE sortkeys; UPDATE meta SET value = 6 WHERE key = "
                          "'schema';" INDEX_SQL_HEADERS_BACK "PRAGMA wal_checkpoint(TRUNCATE);");
}

int main(void)
{
    struct storage_mbox m;

    test_base_subjects();
    test_keys();

    if (check_mkdtemp(dir, sizeof(dir), "coffre-sort") != 0)
        return 1;
    CHECK(storage_open(dir, 1, &u) == 0 && storage_mbox_get(u, "INBOX", &m) == 0, "store");
    inbox = m.id;
    CHECK(add("beta", "Zed <zed@x>", 9, "<b@x>", "<a@x>") == 1 &&
              add("Re: alpha", "bob@x", 3, "<c@x>", "<a@x>") == 2 &&
              add("gamma", "adam@x", 5, "<d@x>", "<a@x> <missing@x> <d@x>") == 3 &&
              add("alpha", "Bob <bob@x>", 1, "<a@x>", NULL) == 4,
          "four messages");
    /* 1 and 2 are 4's children by References; 3 names a missing parent
     * and itself last: RFC 5256 3 (1.B) takes it from that parent and the
     * link to itself would be a loop, so it is a root (as with Dovecot) */
    check_store("new index");

    storage_close(u);
    u = NULL;
    CHECK(downgrade_to_6() == 0 &&
              index_sql_int(dir, "SELECT count(*) FROM sqlite_schema WHERE name = 'sortkeys'") == 0,
          "an index of schema 6");
    CHECK(storage_open(dir, 1, &u) == 0, "opened and upgraded");
    CHECK(index_sql_int(dir, "SELECT value FROM meta WHERE key = 'schema'") == 11 &&
              index_sql_int(dir, "SELECT count(*) FROM sortkeys") == 4,
          "every body has its keys");
    check_store("upgraded from 6");
    {
        struct storage_range r = {1, 4};
        struct storage_uidset set = {1, &r};
        CHECK(storage_store(u, inbox, &set, STORAGE_STORE_ADD, STORAGE_FLAG_DELETED, NULL, 0, 0,
                            NULL, NULL, NULL) == 0 &&
                  storage_expunge(u, inbox, &set, true, NULL) == 0 &&
                  index_sql_int(dir, "SELECT count(*) FROM sortkeys") == 0,
              "expunged: the keys go with the bodies");
    }
    {
        /* References naming far more ids than there are messages */
        static char refs[1500 * 16];
        size_t o = 0;
        for (int i = 0; i < 1500; i++)
            o += (size_t)snprintf(refs + o, sizeof(refs) - o, "%s<r%d@x>", i ? " " : "", i);
        CHECK(add("long", "l@x", 2, "<long@x>", refs) == 5 &&
                  threads_as(STORAGE_THREAD_REFERENCES, "(5)") &&
                  threads_as(STORAGE_THREAD_REFS, "(5)"),
              "1,500 references, all missing: dummies pruned");
    }
    storage_close(u);
    return check_summary();
}
