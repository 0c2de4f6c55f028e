/* Unit test of full-text SEARCH semantics (RFC 3501: BODY and TEXT match
 * messages containing the string): substrings inside words, one and two
 * characters, case (ASCII and beyond), LIKE metacharacters taken literally,
 * headers for TEXT only, and nothing matched that is not there. Every check
 * runs with the texts waiting for the full-text index (as after delivery),
 * with one indexed and one waiting, and with both indexed: the answers must
 * be the same. Expunging a message removes its text from wherever it is. */
#include <dirent.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"
#include "tests/unit/check.h"
#include "tests/unit/index_sql.h"

static struct storage_user *u;
static int64_t inbox;
static char dir[256];

static size_t search(enum storage_search_op op, const char *str, uint32_t *first)
{
    struct storage_search q = {.op = op, .str = str};
    struct storage_uidlist out = {0};
    size_t n;
    if (storage_search(u, inbox, &q, &out) != 0)
        return (size_t)-1;
    n = out.n;
    if (first)
        *first = n ? out.uids[0] : 0;
    storage_uidlist_free(&out);
    return n;
}

/* Rows of a table of the index, read behind the storage's back. */
static long long rows(const char *table)
{
    char sql[100];

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    return index_sql_int(dir, sql);
}

static void checks_all(const char *phase)
{
    char what[200];
    static const struct {
        enum storage_search_op op;
        const char *str;
        size_t n;       /* messages found */
        uint32_t first; /* the first of them; 0: not checked */
        const char *what;
    } cases[] = {
        {STORAGE_SEARCH_BODY, "izz", 1, 1, "BODY izz finds pizza (inside a word)"},
        {STORAGE_SEARCH_BODY, "PIZZA", 1, 0, "BODY is case-insensitive"},
        {STORAGE_SEARCH_TEXT, "uarterl", 1, 1, "TEXT finds a substring of the Subject"},
        {STORAGE_SEARCH_TEXT, "QUARTERLY REP", 1, 1, "TEXT of the Subject is case-insensitive"},
        {STORAGE_SEARCH_BODY, "uarterl", 0, 0, "BODY does not look at headers"},
        {STORAGE_SEARCH_BODY, "zz", 1, 1, "two characters (no trigram)"},
        {STORAGE_SEARCH_BODY, "ZZ", 1, 1, "two characters, other case"},
        {STORAGE_SEARCH_TEXT, "qu", 1, 1, "TEXT: two characters of the Subject"},
        {STORAGE_SEARCH_BODY, "qu", 0, 0, "BODY: two characters only in a header"},
        {STORAGE_SEARCH_BODY, "a", 2, 0, "one character"},
        {STORAGE_SEARCH_BODY, "0%", 1, 1, "% is a character, not a wildcard"},
        {STORAGE_SEARCH_BODY, "e_b", 1, 1, "_ is a character, not a wildcard"},
        {STORAGE_SEARCH_BODY, "x%", 0, 0, "% never matches anything else"},
        {STORAGE_SEARCH_BODY, "100%", 1, 1, "% in a longer string"},
        {STORAGE_SEARCH_BODY, "caf\xc3\xa9", 1, 2, "UTF-8 text"},
        {STORAGE_SEARCH_BODY, "CAF\xc3\x89", 1, 2, "non-ASCII case folded (E acute)"},
        {STORAGE_SEARCH_BODY, "\xc3\xa9 at", 1, 2,
         "a substring starting with a non-ASCII character"},
        {STORAGE_SEARCH_TEXT, "bob@example", 1, 2, "TEXT finds an address"},
        {STORAGE_SEARCH_TEXT, "example.org", 2, 0, "TEXT: both From addresses"},
        {STORAGE_SEARCH_BODY, "pizzas", 0, 0, "no match beyond the text"},
        {STORAGE_SEARCH_BODY, "again pizza", 0, 0, "no match made of two texts"},
        {STORAGE_SEARCH_BODY, "\"pizza\"", 0, 0, "a quoted word is not a phrase query"},
        {STORAGE_SEARCH_BODY, "pizza OR salad", 0, 0, "OR is text, not an operator"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t first = 0;
        size_t n = search(cases[i].op, cases[i].str, &first);

        snprintf(what, sizeof(what), "%s: %s", phase, cases[i].what);
        CHECK(n == cases[i].n && (cases[i].first == 0 || first == cases[i].first), what);
    }
    snprintf(what, sizeof(what), "%s: %s", phase, "TEXT: no match across the Subject and the body");
    CHECK(search(STORAGE_SEARCH_TEXT, "lunchSalad", NULL) == 0 &&
              search(STORAGE_SEARCH_TEXT, "lunch Salad", NULL) == 0,
          what);
    snprintf(what, sizeof(what), "%s: %s", phase, "SUBJECT and HEADER fold non-ASCII case");
    {
        struct storage_search subj = {
            .op = STORAGE_SEARCH_HEADER, .field = "Subject", .str = "CAF\xc3\x89"};
        struct storage_search place = {.op = STORAGE_SEARCH_HEADER,
                                       .field = "X-Place",
                                       .str = "\xc3\xa9"
                                              "COLE"};
        struct storage_uidlist a = {0}, b = {0};
        CHECK(storage_search(u, inbox, &subj, &a) == 0 && a.n == 1 && a.uids[0] == 2 &&
                  storage_search(u, inbox, &place, &b) == 0 && b.n == 1 && b.uids[0] == 2,
              what);
        storage_uidlist_free(&a);
        storage_uidlist_free(&b);
    }
    snprintf(what, sizeof(what), "%s: %s", phase, "quotes are text, not query syntax");
    CHECK(search(STORAGE_SEARCH_BODY, "\"", NULL) == 0 &&
              search(STORAGE_SEARCH_BODY, "a\"b", NULL) == 0,
          what);
}

/* Renames the file of uid in INBOX's cur/ as a flag sync does before its
 * transaction commits (the index still names the old file): flags S. */
static int rename_behind(uint32_t uid)
{
    char cur[400], tag[32], from[700], to[700];
    struct dirent *de;
    DIR *d;
    int rc = -1;

    snprintf(cur, sizeof(cur), "%s/users/1/Maildir/cur", dir);
    snprintf(tag, sizeof(tag), ",U=%u,", (unsigned)uid);
    if (!(d = opendir(cur)))
        return -1;
    while ((de = readdir(d)) != NULL) {
        char *info;
        if (!strstr(de->d_name, tag))
            continue;
        snprintf(from, sizeof(from), "%s/%s", cur, de->d_name);
        snprintf(to, sizeof(to), "%s/%s", cur, de->d_name);
        if ((info = strstr(to + strlen(cur), ":2,")) != NULL)
            strcpy(info, ":2,S");
        else
            strcat(to, ":2,S");
        rc = strcmp(from, to) != 0 ? rename(from, to) : -1;
        break;
    }
    closedir(d);
    return rc;
}

int main(void)
{
    static const char m1[] = "From: Alice <alice@example.org>\r\nSubject: Quarterly report\r\n\r\n"
                             "We ordered pizza. Totals: 100% of the_budget.\r\n";
    static const char m2[] = "From: Bob <bob@example.org>\r\nSubject: lunch caf\xc3\xa9\r\n"
                             "X-Place: \xc3\x89"
                             "cole\r\n\r\n"
                             "Salad again, caf\xc3\xa9 at noon.\r\n";
    static const char m3[] = "From: Carol <carol@example.org>\r\nSubject: pizza again\r\n\r\n"
                             "Mushroom pizza.\r\n";
    struct storage_mbox m;
    struct storage_range r = {3, 4};
    struct storage_uidset set = {1, &r};
    uint32_t uid;
    size_t left = 99;

    if (check_mkdtemp(dir, sizeof(dir), "coffre-search") != 0)
        return 1;
    CHECK(storage_open(dir, 1, &u) == 0 && storage_mbox_get(u, "INBOX", &m) == 0, "store");
    inbox = m.id;
    CHECK(storage_append(u, inbox, m1, sizeof(m1) - 1, 0, NULL, 0, 0, &uid) == 0 &&
              storage_append(u, inbox, m2, sizeof(m2) - 1, 0, NULL, 0, 0, &uid) == 0,
          "two messages");
    CHECK(rows("fts_pending") == 2 && rows("fts") == 0, "new texts wait, out of the index");
    checks_all("both waiting");

    CHECK(storage_fts_index(u, 1, &left) == 0 && left == 1, "one indexed, one still waits");
    CHECK(rows("fts_pending") == 1 && rows("fts") == 1, "the oldest was moved");
    checks_all("one indexed");

    CHECK(storage_fts_index(u, 0, &left) == 0 && left == 0, "all indexed");
    CHECK(rows("fts_pending") == 0 && rows("fts") == 2, "nothing waits");
    checks_all("both indexed");
    CHECK(storage_fts_index(u, 0, &left) == 0 && left == 0 && storage_fts_index(u, 5, NULL) == 0,
          "indexing with nothing waiting");

    /* expunge one waiting and one indexed message: their texts go */
    CHECK(storage_append(u, inbox, m3, sizeof(m3) - 1, 0, NULL, 0, 0, &uid) == 0 && uid == 3,
          "a third message");
    CHECK(storage_fts_index(u, 0, NULL) == 0, "indexed");
    CHECK(storage_append(u, inbox, m3, sizeof(m3) - 1, 0, NULL, 0, 0, &uid) == 0 && uid == 4,
          "a fourth, waiting");
    CHECK(search(STORAGE_SEARCH_BODY, "mushroom", NULL) == 2, "both found");
    CHECK(storage_store(u, inbox, &set, STORAGE_STORE_ADD, STORAGE_FLAG_DELETED, NULL, 0, 0, NULL,
                        NULL, NULL) == 0 &&
              storage_expunge(u, inbox, &set, true, NULL) == 0,
          "expunged");
    CHECK(search(STORAGE_SEARCH_BODY, "mushroom", NULL) == 0, "gone from SEARCH");
    CHECK(rows("fts_pending") == 0 && rows("fts") == 2, "their texts gone from both tables");
    checks_all("after expunge");

    /* a long needle against a long line: the comparison stays linear (a
     * comparison restarted at every position takes 600,000 x 60,000 steps,
     * past the test's timeout) */
    {
        static const char head[] = "From: a@example.org\r\nSubject: long\r\n\r\n";
        size_t body = 600000, nl = 60000;
        char *msg = malloc(sizeof(head) + body + 2), *needle = malloc(nl + 2);
        CHECK(msg && needle, "memory");
        if (msg && needle) {
            memcpy(msg, head, sizeof(head) - 1);
            memset(msg + sizeof(head) - 1, 'a', body);
            memcpy(msg + sizeof(head) - 1 + body, "\r\n", 2);
            CHECK(storage_append(u, inbox, msg, sizeof(head) - 1 + body + 2, 0, NULL, 0, 0, &uid) ==
                      0,
                  "a message of one 600 kB line");
            memset(needle, 'A', nl);
            memcpy(needle + nl, "b", 2);
            for (int indexed = 0; indexed < 2; indexed++) {
                CHECK(search(STORAGE_SEARCH_BODY, needle, NULL) == 0,
                      "60 kB of A then b: not there");
                needle[nl] = '\0';
                CHECK(search(STORAGE_SEARCH_BODY, needle, &r.lo) == 1 && r.lo == uid,
                      "60 kB of A: found, without case");
                needle[nl] = 'b';
                CHECK(storage_fts_index(u, 0, NULL) == 0, "indexed");
            }
        }
        free(msg);
        free(needle);
    }
    /* a HEADER criterion on a field outside the index reads the file: one
     * that a flag sync renamed before committing is looked up by its
     * unique name, as FETCH does */
    {
        struct storage_search place = {
            .op = STORAGE_SEARCH_HEADER, .field = "X-Place", .str = "cole"};
        struct storage_uidlist a = {0};
        CHECK(rename_behind(2) == 0, "file of uid 2 renamed behind the index");
        CHECK(storage_search(u, inbox, &place, &a) == 0 && a.n == 1 && a.uids[0] == 2,
              "HEADER finds the message whose file was renamed");
        storage_uidlist_free(&a);
    }
    storage_close(u);
    check_rmtree(dir);
    return check_summary();
}
