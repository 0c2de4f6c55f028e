/* Unit test of full-text SEARCH semantics (RFC 3501: BODY and TEXT match
 * messages containing the string): substrings inside words, one and two
 * characters, case, LIKE metacharacters taken literally, headers for TEXT
 * only, and nothing matched that is not there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"
#include "tests/unit/check.h"

static struct storage_user *u;
static int64_t inbox;

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

int main(void)
{
    static const char m1[] = "From: Alice <alice@example.org>\r\nSubject: Quarterly report\r\n\r\n"
                             "We ordered pizza. Totals: 100% of the_budget.\r\n";
    static const char m2[] = "From: Bob <bob@example.org>\r\nSubject: lunch\r\n\r\n"
                             "Salad again, caf\xc3\xa9 at noon.\r\n";
    const char *base = getenv("TMPDIR");
    char dir[256];
    struct storage_mbox m;
    uint32_t uid, first;

    snprintf(dir, sizeof(dir), "%s/coffre-search-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    CHECK(storage_open(dir, 1, &u) == 0 && storage_mbox_get(u, "INBOX", &m) == 0, "store");
    inbox = m.id;
    CHECK(storage_append(u, inbox, m1, sizeof(m1) - 1, 0, NULL, 0, 0, &uid) == 0 &&
              storage_append(u, inbox, m2, sizeof(m2) - 1, 0, NULL, 0, 0, &uid) == 0,
          "two messages");

    CHECK(search(STORAGE_SEARCH_BODY, "izz", &first) == 1 && first == 1,
          "BODY izz finds pizza (inside a word)");
    CHECK(search(STORAGE_SEARCH_BODY, "PIZZA", NULL) == 1, "BODY is case-insensitive");
    CHECK(search(STORAGE_SEARCH_TEXT, "uarterl", &first) == 1 && first == 1,
          "TEXT finds a substring of the Subject");
    CHECK(search(STORAGE_SEARCH_BODY, "uarterl", NULL) == 0, "BODY does not look at headers");
    CHECK(search(STORAGE_SEARCH_BODY, "zz", &first) == 1 && first == 1,
          "two characters (no trigram)");
    CHECK(search(STORAGE_SEARCH_BODY, "a", NULL) == 2, "one character");
    CHECK(search(STORAGE_SEARCH_BODY, "0%", &first) == 1 && first == 1,
          "% is a character, not a wildcard");
    CHECK(search(STORAGE_SEARCH_BODY, "e_b", &first) == 1 && first == 1,
          "_ is a character, not a wildcard");
    CHECK(search(STORAGE_SEARCH_BODY, "x%", NULL) == 0, "% never matches anything else");
    CHECK(search(STORAGE_SEARCH_BODY, "caf\xc3\xa9", &first) == 1 && first == 2,
          "UTF-8 text");
    CHECK(search(STORAGE_SEARCH_TEXT, "bob@example", &first) == 1 && first == 2,
          "TEXT finds an address");
    CHECK(search(STORAGE_SEARCH_BODY, "pizzas", NULL) == 0, "no match beyond the text");
    CHECK(search(STORAGE_SEARCH_BODY, "\"", NULL) == 0 && search(STORAGE_SEARCH_BODY, "a\"b", NULL) == 0,
          "quotes are text, not query syntax");
    storage_close(u);
    if (failures == 0) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    return check_summary();
}
