/* Unit tests for the IMAP parser pieces: sequence sets, modified UTF-7,
 * astrings/literals/quoted strings, list nesting, flags, dates, FETCH
 * attributes and SEARCH keys. Pure functions, no server needed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/imap/imap.h"
#include "protocol/imap/imap_private.h"
#include "server/base/config.h"
#include "tests/fuzz/fake_conn.h"

static int failures;

#define CHECK(cond, what)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, what);                         \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static int seqset(const char *s, struct imap_seqset *out, struct imap_arena *ar)
{
    return imap_parse_seqset(s, strlen(s), ar, out);
}

static void test_seqsets(void)
{
    struct imap_arena ar = {0};
    struct imap_seqset set;

    CHECK(seqset("1", &set, &ar) == IMAP_ARG_OK && set.n == 1 && set.r[0].lo == 1 &&
              set.r[0].hi == 1,
          "1");
    CHECK(seqset("1:5,7,9:*", &set, &ar) == IMAP_ARG_OK && set.n == 3 && set.r[1].lo == 7 &&
              set.r[2].lo == 9 && set.r[2].hi == IMAP_STAR,
          "1:5,7,9:*");
    CHECK(seqset("5:2", &set, &ar) == IMAP_ARG_OK && set.r[0].lo == 2 && set.r[0].hi == 5,
          "reversed range 5:2 is 2:5");
    CHECK(seqset("*:4", &set, &ar) == IMAP_ARG_OK && set.r[0].lo == 4 && set.r[0].hi == IMAP_STAR,
          "*:4 is 4:*");
    CHECK(seqset("4294967295", &set, &ar) == IMAP_ARG_OK && set.r[0].lo == 4294967295u &&
              set.r[0].hi == 4294967295u && set.r[0].hi != IMAP_STAR,
          "largest number, not taken for *");
    CHECK(seqset("*:4294967295", &set, &ar) == IMAP_ARG_OK && set.r[0].lo == 4294967295u &&
              set.r[0].hi == IMAP_STAR,
          "*:4294967295 is 4294967295:*");
    CHECK(seqset("*", &set, &ar) == IMAP_ARG_OK && set.r[0].lo == IMAP_STAR &&
              set.r[0].hi == IMAP_STAR,
          "* alone");
    CHECK(seqset("$", &set, &ar) == IMAP_ARG_OK && set.saved && set.n == 0,
          "$ is the saved result (RFC 5182)");
    CHECK(seqset("1:*", &set, &ar) == IMAP_ARG_OK && !set.saved, "a set is not $");
    const char *bad[] = {"0",
                         "4294967296",
                         "1:",
                         ":1",
                         "1,,2",
                         "1:2:3",
                         "-1",
                         "a",
                         "1:0",
                         "*:0",
                         "99999999999999999999",
                         "1,",
                         "",
                         "01",
                         " 1",
                         "$,1",
                         "1,$",
                         "$:2",
                         "$$",
                         "*$",
                         "$*"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char what[64];
        snprintf(what, sizeof(what), "bad set '%s' refused", bad[i]);
        CHECK(seqset(bad[i], &set, &ar) != IMAP_ARG_OK, what);
    }
    imap_arena_free(&ar);
}

static void test_mutf7(void)
{
    char out[256], back[256];
    struct {
        const char *m, *u;
    } good[] = {
        {"INBOX", "INBOX"},
        {"&ZeVnLIqe-", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"},
        {"Gr&APwA3w-e", "Gr\xc3\xbc\xc3\x9f"
                        "e"},
        {"a&-b", "a&b"},
        {"&2D3cAA-", "\xf0\x9f\x90\x80"}, /* a surrogate pair */
        {"~peter/mail/&U,BTFw-/&ZeVnLIqe-",
         "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        CHECK(mutf7_decode(good[i].m, strlen(good[i].m), out, sizeof(out)) == 0 &&
                  !strcmp(out, good[i].u),
              good[i].m);
        CHECK(imap_mutf7_encode(good[i].u, strlen(good[i].u), back, sizeof(back)) == 0 &&
                  !strcmp(back, good[i].m),
              "encode round trip");
    }
    const char *bad[] = {"&Jjo",     "&AGE-",           "&-&",      "a&ZeVnLIqe",      "&Jjo!-",
                         "&2D0-",    "&U,BTF2XlZyyKng", "&AAA-",    "&ZeVnLIqe-&AGE-", "a\x01",
                         "\xc3\xa9", "&3AA-",           "&2D3YPQ-", "&ZeVnLIq-"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char what[64];
        snprintf(what, sizeof(what), "invalid mUTF-7 #%zu refused", i);
        CHECK(mutf7_decode(bad[i], strlen(bad[i]), out, sizeof(out)) < 0, what);
    }
    CHECK(imap_mutf7_encode("\xff", 1, out, sizeof(out)) < 0, "invalid UTF-8 not encoded");
}

static void args(struct imap_args *a, const char *s)
{
    imap_args_init(a, s, strlen(s), 10);
}

static void test_strings(void)
{
    struct imap_args a;
    char out[64];
    size_t n;

    static const char nul[] = "{3}\r\na\0b";
    static const struct {
        const char *in;
        size_t len;       /* 0: strlen(in) */
        const char *want; /* the value; NULL: refused */
        const char *what;
    } cases[] = {
        {"atom", 0, "atom", "atom"},
        {"\"a \\\"q\\\" \\\\b\"", 0, "a \"q\" \\b", "quoted with escapes"},
        {"\"bad \\x\"", 0, NULL, "bad escape refused"},
        {"\"open", 0, NULL, "unterminated quote refused"},
        {"{9}\r\nshort", 0, NULL, "short literal refused"},
        {nul, sizeof(nul) - 1, NULL, "NUL in literal refused"},
        {"x]y", 0, "x]y", "']' allowed in astring"},
        {"(x", 0, NULL, "'(' is not an astring"},
        {"\"0123456789012345678901234567890123456789012345678901234567890123456789\"", 0, NULL,
         "longer than the buffer refused"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r;

        imap_args_init(&a, cases[i].in, cases[i].len ? cases[i].len : strlen(cases[i].in), 10);
        r = imap_args_astring(&a, out, sizeof(out), &n);
        if (cases[i].want)
            CHECK(r == 0 && !strcmp(out, cases[i].want), cases[i].what);
        else
            CHECK(r != 0, cases[i].what);
    }
    args(&a, "{5}\r\nab cd rest");
    CHECK(imap_args_astring(&a, out, sizeof(out), &n) == 0 && n == 5 && !strcmp(out, "ab cd") &&
              !strcmp(a.p, " rest"),
          "literal");
    args(&a, "{5+}\r\nab cd");
    CHECK(imap_args_astring(&a, out, sizeof(out), &n) == 0 && n == 5, "non-sync literal");
}

static void test_nesting(void)
{
    struct imap_args a;
    char buf[64];
    memset(buf, '(', 20);
    buf[20] = 0;
    args(&a, buf);
    int r = 0;
    unsigned opened = 0;
    while ((r = imap_args_open(&a)) == IMAP_ARG_OK)
        opened++;
    CHECK(opened == 10 && r == IMAP_ARG_DEEP, "nesting stops at the limit");
    args(&a, ")");
    CHECK(imap_args_close(&a) != IMAP_ARG_OK, "unbalanced ')' refused");
}

static void test_flags(void)
{
    struct imap_arena ar = {0};
    struct imap_args a;
    struct imap_flags f;

    args(&a, "(\\Seen \\flagged $Label1 \\Recent)");
    CHECK(imap_args_flags(&a, &ar, false, &f) == 0 &&
              f.flags == (STORAGE_FLAG_SEEN | STORAGE_FLAG_FLAGGED) && f.nkw == 1 &&
              !strcmp(f.kw[0], "$Label1") && f.recent,
          "flag list");
    args(&a, "\\Deleted \\Draft");
    CHECK(imap_args_flags(&a, &ar, true, &f) == 0 &&
              f.flags == (STORAGE_FLAG_DELETED | STORAGE_FLAG_DRAFT),
          "bare flags (STORE)");
    args(&a, "(\\Bogus)");
    CHECK(imap_args_flags(&a, &ar, false, &f) != 0, "unknown system flag refused");
    args(&a, "(a\"b)");
    CHECK(imap_args_flags(&a, &ar, false, &f) != 0, "quote in keyword refused");
    args(&a, "()");
    CHECK(imap_args_flags(&a, &ar, false, &f) == 0 && !f.flags && !f.nkw, "empty list");
    imap_arena_free(&ar);
}

static void test_dates(void)
{
    int64_t t;
    struct imap_args a;

    CHECK(imap_parse_date("1-Feb-1994", 10, &t) == 0 && t == 760060800, "1-Feb-1994");
    CHECK(imap_parse_date("01-feb-1994", 11, &t) == 0 && t == 760060800, "case, leading zero");
    CHECK(imap_parse_date("29-Feb-2024", 11, &t) == 0, "leap day");
    CHECK(imap_parse_date("29-Feb-2023", 11, &t) != 0, "not a leap year");
    CHECK(imap_parse_date("32-Jan-2020", 11, &t) != 0, "day 32");
    CHECK(imap_parse_date("1-Foo-2020", 10, &t) != 0, "bad month");
    CHECK(imap_parse_date("1-Jan-20", 8, &t) != 0, "two-digit year");
    CHECK(imap_parse_date("1-Jan-2020x", 11, &t) != 0, "trailing garbage");
    args(&a, "\"17-Jul-1996 02:44:25 -0700\"");
    CHECK(imap_args_datetime(&a, &t) == 0 && t == 837596665, "date-time with zone");
    args(&a, "\" 7-Jul-1996 02:44:25 +0000\"");
    CHECK(imap_args_datetime(&a, &t) == 0, "date-time with space-padded day");
    args(&a, "\"17-Jul-1996 25:44:25 +0000\"");
    CHECK(imap_args_datetime(&a, &t) != 0, "hour 25 refused");
    args(&a, "\"17-Jul-1996 02:44:25\"");
    CHECK(imap_args_datetime(&a, &t) != 0, "missing zone refused");
}

static void test_fetch_atts(void)
{
    struct imap_arena ar = {0};
    struct imap_args a;
    struct imap_fetch_spec sp;
    const char *err;

    args(&a, "ALL");
    CHECK(imap_fetch_parse(&a, &ar, &sp, &err) == 0 && sp.flags &&
              (sp.storage_what & STORAGE_FETCH_ENVELOPE) && !sp.need_body,
          "ALL macro");
    args(&a, "(UID BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100> RFC822.SIZE)");
    CHECK(imap_fetch_parse(&a, &ar, &sp, &err) == 0 && sp.uid && sp.need_body && !sp.sets_seen,
          "peek header fields");
    const struct imap_fetch_item *it = sp.items ? sp.items->next : NULL;
    CHECK(it && it->kind == SEC_FIELDS && it->nnames == 2 && !strcmp(it->names[1], "To") &&
              it->partial && it->origin == 0 && it->count == 100 &&
              !strcmp(it->label, "BODY[HEADER.FIELDS (From \"To\")]<0>"),
          "header fields item");
    args(&a, "BODY[1.2.MIME]");
    CHECK(imap_fetch_parse(&a, &ar, &sp, &err) == 0 && sp.sets_seen &&
              !strcmp(sp.items->part, "1.2") && sp.items->kind == SEC_MIME,
          "part MIME sets \\Seen");
    args(&a, "body[text]");
    CHECK(imap_fetch_parse(&a, &ar, &sp, &err) == 0 && !strcmp(sp.items->label, "BODY[TEXT]"),
          "label upper case");
    const char *bad[] = {"BODY[MIME]",
                         "BODY[0]",
                         "BODY[1.]",
                         "BODY[HEADER.FIELDS]",
                         "BODY[HEADER.FIELDS ()]",
                         "BODY[]<1>",
                         "BODY[]<0.0>",
                         "BODY[TEXT",
                         "FOO",
                         "(FLAGS",
                         "(FLAGS))",
                         "BODY[HEADER.FIELDS (a:b)]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        args(&a, bad[i]);
        int r = imap_fetch_parse(&a, &ar, &sp, &err);
        CHECK(r != 0 || !imap_args_at_end(&a), bad[i]);
    }
    imap_arena_free(&ar);
}

static void test_search_keys(void)
{
    struct imap_arena ar = {0};
    struct imap_args a;
    struct storage_search *q;
    const char *err;

    args(&a, "OR FROM alice (SINCE 1-Jan-2020 NOT SEEN) 1:3,5 UID 7:*");
    CHECK(imap_search_parse(&a, &ar, &q, &err) == 0 && q->op == STORAGE_SEARCH_AND, "keys");
    const struct storage_search *k = q->child;
    CHECK(k && k->op == STORAGE_SEARCH_OR && k->child->op == STORAGE_SEARCH_HEADER &&
              !strcmp(k->child->field, "From") && !strcmp(k->child->str, "alice"),
          "OR FROM");
    CHECK(k && k->next && k->next->op == STORAGE_SEARCH_UID && (k->next->flags & IMAP_SK_SEQ) &&
              k->next->set.n == 2,
          "sequence set");
    CHECK(k && k->next && k->next->next && k->next->next->op == STORAGE_SEARCH_UID &&
              !(k->next->next->flags & IMAP_SK_SEQ) && k->next->next->set.r[0].hi == IMAP_STAR,
          "UID set");
    args(&a, "ON 2-Mar-2021");
    CHECK(imap_search_parse(&a, &ar, &q, &err) == 0 && q->child->op == STORAGE_SEARCH_AND &&
              q->child->child->num + 86400 == q->child->child->next->num,
          "ON is one day");
    args(&a, "HEADER X-Spam {3}\r\nyes LARGER 100 NEW");
    CHECK(imap_search_parse(&a, &ar, &q, &err) == 0, "literal argument");
    const char *bad[] = {"",    "FROB", "FROM",    "SINCE 1-Foo-2020", "OR ALL",
                         "NOT", "(ALL", "ALL)",    "LARGER x",         "UID 0",
                         "0",   "1:",   "KEYWORD", "HEADER \"\" x",    "LARGER 99999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        args(&a, bad[i]);
        int r = imap_search_parse(&a, &ar, &q, &err);
        CHECK(r != 0 || !imap_args_at_end(&a), bad[i]);
    }
    /* depth: 10,000 NOTs are refused, not recursed into */
    size_t n = 10000 * 4 + 4;
    char *deep = malloc(n);
    if (deep) {
        for (size_t i = 0; i < 10000; i++)
            memcpy(deep + i * 4, "NOT ", 4);
        memcpy(deep + 40000, "ALL", 4);
        imap_args_init(&a, deep, strlen(deep), 100);
        CHECK(imap_search_parse(&a, &ar, &q, &err) == IMAP_ARG_DEEP, "deep NOT refused");
        free(deep);
    }
    imap_arena_free(&ar);
}

/* Drives a session with `head` then `rounds` times "y{1+}\r\n" (a
 * one-byte LITERAL+ literal, then the line goes on) and a last "y\r\n". */
static void drive_literals(const char *head, size_t headlen, size_t rounds)
{
    static const char unit[] = "y{1+}\r\n";
    size_t ulen = sizeof(unit) - 1, len = 1 + headlen + rounds * ulen + 3, i;
    uint8_t *in = malloc(len);

    if (!in) {
        CHECK(0, "allocation");
        return;
    }
    in[0] = 0xfd; /* TLS, 442-byte reads */
    memcpy(in + 1, head, headlen);
    for (i = 0; i < rounds; i++)
        memcpy(in + 1 + headlen + i * ulen, unit, ulen);
    memcpy(in + len - 3, "y\r\n", 3);
    fake_conn_drive(&imap_handler, in, len);
    CHECK(!fake_conn_closed_early(), "the session reads the whole command");
    free(in);
}

/* Each line of a command that ends in a literal is offered to the command
 * table (APPEND takes its literal over); finding the tag and the command
 * name looked from the start of everything received so far: a command of
 * half a million one-byte literals without a space, or after a 1 MB
 * command name, took minutes (the test's timeout fails it). */
static void test_literal_lines_linear(void)
{
    struct conf *cf = fake_conn_conf(), saved = *cf;
    const size_t rounds = 500000, namelen = 1 << 20;
    char *head = malloc(namelen + 16);

    /* the commands come before login: the limit there is raised too */
    cf->max_line_length = 16u << 20;
    cf->max_line_length_prelogin = 16u << 20;
    cf->max_literal_size = 64u << 20;
    drive_literals("aaaa{1+}\r\n", 10, rounds);
    if (head) {
        memcpy(head, "t ", 2);
        memset(head + 2, 'A', namelen);
        memcpy(head + 2 + namelen, "{1+}\r\n", 6);
        drive_literals(head, namelen + 8, rounds);
    }
    CHECK(head != NULL, "half a million literals after a long tag and a long name");
    free(head);
    *cf = saved;
}

/* The sequence-number <-> UID map of a selected mailbox: ranges, checked
 * against a plain array of UIDs through random appends and expunges; a
 * mailbox of 100,000 messages without holes is one range. */
static bool map_agrees(const struct uidmap *m, const uint32_t *v, size_t n)
{
    if (m->n != n || uidmap_max(m) != (n ? v[n - 1] : 0))
        return false;
    for (size_t i = 0; i < n; i++)
        if (uidmap_at(m, i) != v[i] || uidmap_find(m, v[i]) != (ssize_t)i ||
            uidmap_lower_bound(m, v[i]) != i)
            return false;
    for (size_t i = 0; i + 1 < n; i++)
        if (v[i + 1] > v[i] + 1 &&
            (uidmap_find(m, v[i] + 1) != -1 || uidmap_lower_bound(m, v[i] + 1) != i + 1))
            return false;
    for (size_t k = 0; k + 1 < m->nr; k++)
        if (m->r[k].hi + 1 >= m->r[k + 1].lo)
            return false; /* ranges disjoint and not adjacent */
    return uidmap_lower_bound(m, UINT32_MAX) == (n && v[n - 1] == UINT32_MAX ? n - 1 : n);
}

static void test_uidmap(void)
{
    static uint32_t v[4000];
    struct uidmap m = {0};
    size_t n = 0;
    unsigned seed = 7;
    bool ok = true;

    CHECK(map_agrees(&m, v, 0), "empty map");
    for (int round = 0; round < 300 && ok; round++) {
        unsigned r = (unsigned)rand_r(&seed);
        if (r % 3 && n < 3000) {
            /* new messages above the last */
            uint32_t u = (n ? v[n - 1] : 0) + 1 + (r & 4 ? (uint32_t)(rand_r(&seed) % 5) : 0);
            for (int k = 0; k < 1 + (int)(r % 20) && n < 3000; k++, u++) {
                ok &= uidmap_push(&m, u) == 0;
                v[n++] = u;
            }
        } else if (n) {
            /* an expunge of some, ascending, with UIDs not in the map */
            uint32_t gone[64];
            size_t ng = 0, w = 0;
            uint32_t u = v[(size_t)rand_r(&seed) % n] - 1;
            while (ng < 1 + r % 60 && u < v[n - 1] + 3) {
                u += 1 + (uint32_t)(rand_r(&seed) % 3);
                gone[ng++] = u;
            }
            ok &= uidmap_remove(&m, gone, ng) == 0;
            for (size_t i = 0, j = 0; i < n; i++) {
                while (j < ng && gone[j] < v[i])
                    j++;
                if (j < ng && gone[j] == v[i])
                    continue;
                v[w++] = v[i];
            }
            n = w;
        }
        ok &= map_agrees(&m, v, n);
    }
    CHECK(ok, "the map agrees with a plain array through appends and expunges");
    uidmap_free(&m);

    for (uint32_t u = 1; u <= 100000; u++)
        uidmap_push(&m, u);
    CHECK(m.n == 100000 && m.nr == 1, "100,000 messages without holes are one range");
    uint32_t mid[] = {50000};
    CHECK(uidmap_remove(&m, mid, 1) == 0 && m.nr == 2 && uidmap_at(&m, 49999) == 50001 &&
              uidmap_find(&m, 50000) == -1,
          "an expunge splits the range");
    uidmap_free(&m);
}

int main(void)
{
    test_seqsets();
    test_mutf7();
    test_strings();
    test_nesting();
    test_flags();
    test_dates();
    test_fetch_atts();
    test_search_keys();
    test_literal_lines_linear();
    test_uidmap();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
