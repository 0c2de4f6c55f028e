/* Unit test of the full-text index against a reference: generated messages
 * (words with punctuation, case changed at random, non-ASCII letters; text
 * parts plain, base64, quoted-printable or ISO-8859-1; RFC 2047 subjects)
 * and thousands of search strings (substrings of the texts at random
 * places, of one to a dozen characters, case changed, and a fixed list).
 * SEARCH BODY must give exactly the messages whose decoded text contains
 * the string in the i;unicode-casemap comparator (TEXT: or whose Subject, From or
 * To decoded, or whose header block as sent, does), and BODY and TEXT the
 * same answers whether the texts wait for the index, are in it, or half and
 * half; after an expunge (bodies reused for new messages) and after the
 * upgrade of an index of schema 4 (the trigram index) or 5 (the header
 * block not in the word index) likewise. */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/internal.h"
#include "storage/storage.h"
#include "tests/unit/check.h"
#include "tests/unit/index_sql.h"

#define NMSG 90
#define FROM "Dora <dora@example.net>"
#define TO "rcpt@example.net"
#define TEXT_MAX 2048

static struct storage_user *u;
static int64_t inbox;
static char dir[256];

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (unsigned)(rs % n);
}

/* UTF-8 words; those of the second list are not in ISO-8859-1 */
static const char *const latin_words[] = {"pizza",
                                          "Pizzeria",
                                          "zanzibar",
                                          "caf\xc3\xa9",
                                          "CR\xc3\x88ME",
                                          "br\xc3\xbbl\xc3\xa9"
                                          "e",
                                          "na\xc3\xafve",
                                          "Stra\xc3\x9f"
                                          "e",
                                          "100%",
                                          "e_b",
                                          "foo-bar",
                                          "bob@example.org",
                                          "a",
                                          "I",
                                          "x",
                                          "qz",
                                          "re:",
                                          "o'clock",
                                          "\"quoted\"",
                                          "AbC",
                                          "abcabc",
                                          "MiXeD",
                                          "\xc3\x9c"
                                          "ber",
                                          "l'\xc3\xa9t\xc3\xa9",
                                          "12",
                                          "2024-05-01",
                                          "x_y_z"};
static const char *const other_words[] = {"\xce\x91\xce\xb2\xce\xb3",
                                          "\xce\xb1\xce\xbb\xcf\x86\xce\xb1", "\xce\xa9mega"};
static const char *const seps[] = {" ", "  ", ", ", ".\r\n", "-", "_", "/", "\r\n", " (", ") "};
#define N(a) (sizeof(a) / sizeof((a)[0]))

struct msg {
    char text[TEXT_MAX]; /* the decoded body text, UTF-8 */
    char subject[200];   /* decoded */
    char header[600];    /* the header block as sent */
    uint32_t uid;
    bool gone;
};
static struct msg msgs[NMSG + 30];
static size_t nmsgs;

/* Code point of the UTF-8 sequence at s (its length in *l). */
static uint32_t cp_at(const unsigned char *s, size_t *l)
{
    if (s[0] < 0x80) {
        *l = 1;
        return s[0];
    }
    if ((s[0] & 0xe0) == 0xc0) {
        *l = 2;
        return (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
    }
    *l = 3;
    return (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
}

static size_t put_cp(char *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    o[0] = (char)(0xe0 | c >> 12);
    o[1] = (char)(0x80 | (c >> 6 & 0x3f));
    o[2] = (char)(0x80 | (c & 0x3f));
    return 3;
}

/* The reference folding, for the letters of this test: ASCII, Latin-1,
 * Greek capitals. */
static uint32_t lower(uint32_t c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 0xc0 && c <= 0xde && c != 0xd7) ||
        (c >= 0x391 && c <= 0x3a9 && c != 0x3a2))
        return c + 0x20;
    return c;
}

static uint32_t upper(uint32_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 0xe0 && c <= 0xfe && c != 0xf7) ||
        (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2))
        return c - 0x20;
    return c;
}

/* The reference i;unicode-casemap form (RFC 5051), for the letters of
 * this test: the titlecase of each character (ASCII, Latin-1 and Greek
 * small letters to capitals; final sigma to sigma), then the canonical
 * decomposition of the Latin-1 capitals, from UnicodeData.txt: "é" is "E"
 * and U+0301, so that "e" is found in "café" and "é" is not found in
 * "cafe". */
static uint32_t title(uint32_t c)
{
    if (c == 0x3c2)
        return 0x3a3;
    if (c == 0xff)
        return 0x178;
    return upper(c);
}

static size_t decompose(uint32_t c, char *o)
{
    /* base letter and combining mark of U+00C0..U+00DD; 0: none */
    static const char base[] = "AAAAAA\0CEEEEIIII\0NOOOOO\0\0UUUUY";
    static const uint16_t mark[] = {0x300, 0x301, 0x302, 0x303, 0x308, 0x30a, 0,     0x327,
                                    0x300, 0x301, 0x302, 0x308, 0x300, 0x301, 0x302, 0x308,
                                    0,     0x303, 0x300, 0x301, 0x302, 0x303, 0x308, 0,
                                    0,     0x300, 0x301, 0x302, 0x308, 0x301};
    if (c == 0x178)
        return put_cp(o, 'Y') + put_cp(o + 1, 0x308);
    if (c >= 0xc0 && c <= 0xdd && mark[c - 0xc0])
        return put_cp(o, (uint32_t)base[c - 0xc0]) + put_cp(o + 1, mark[c - 0xc0]);
    return put_cp(o, c);
}

static void fold(const char *s, char *out, size_t cap)
{
    size_t o = 0, l;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 8 < cap; p += l)
        o += decompose(title(cp_at(p, &l)), out + o);
    out[o] = '\0';
}

/* s with the case of its letters changed at random */
static void shuffle_case(const char *s, char *out, size_t cap)
{
    size_t o = 0, l;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 4 < cap; p += l) {
        uint32_t c = cp_at(p, &l);
        unsigned r = rnd(3);
        o += put_cp(out + o, r == 0 ? c : r == 1 ? lower(c) : upper(c));
    }
    out[o] = '\0';
}

static bool contains(const char *hay, const char *needle)
{
    char h[TEXT_MAX * 3], n[512];
    fold(hay, h, sizeof(h));
    fold(needle, n, sizeof(n));
    return strstr(h, n) != NULL;
}

static void gen_text(char *out, size_t cap, size_t nwords, bool latin1)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < nwords; i++) {
        const char *w = !latin1 && rnd(6) == 0 ? other_words[rnd(N(other_words))]
                                               : latin_words[rnd(N(latin_words))];
        char cw[64];
        shuffle_case(w, cw, sizeof(cw));
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? seps[rnd(N(seps))] : "", cw);
    }
}

static void b64(const char *s, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0, col = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)s[i + 2];
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
        if ((col += 4) >= 72) {
            out[o++] = '\r';
            out[o++] = '\n';
            col = 0;
        }
    }
    out[o] = '\0';
}

/* quoted-printable: every byte outside printable ASCII, space and '='
 * encoded;
 * soft line breaks now and then */
static void qp(const char *s, char *out)
{
    size_t o = 0, col = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\r' && p[1] == '\n') {
            memcpy(out + o, "\r\n", 2);
            o += 2;
            p++;
            col = 0;
            continue;
        }
        if (col > 60) {
            memcpy(out + o, "=\r\n", 3);
            o += 3;
            col = 0;
        }
        if (*p <= 0x20 || *p >= 0x7f || *p == '=')
            o += (size_t)sprintf(out + o, "=%02X", *p);
        else
            out[o++] = (char)*p;
        col += 3;
    }
    out[o] = '\0';
}

/* UTF-8 (Latin-1 letters only) to ISO-8859-1 */
static void to_latin1(const char *s, char *out)
{
    size_t o = 0, l;
    for (const unsigned char *p = (const unsigned char *)s; *p; p += l)
        out[o++] = (char)cp_at(p, &l);
    out[o] = '\0';
}

static void append_msg(size_t i, bool latin1only)
{
    static char raw[TEXT_MAX * 4], enc[TEXT_MAX * 4], subj[400];
    struct msg *m = &msgs[nmsgs];
    unsigned kind = (unsigned)(i % 4);
    const char *cte = "8bit", *cs = "utf-8";
    size_t n;

    memset(m, 0, sizeof(*m));
    gen_text(m->text, sizeof(m->text), 3 + rnd(40), kind == 3 || latin1only);
    gen_text(m->subject, 80, 1 + rnd(4), true);
    if (i % 3 == 0) {
        char b[300];
        b64(m->subject, b);
        snprintf(subj, sizeof(subj), "=?UTF-8?B?%s?=", b);
    } else {
        /* a subject must not break its header line */
        size_t o = 0;
        for (const char *p = m->subject; *p; p++)
            if (*p != '\r' && *p != '\n')
                subj[o++] = *p;
        subj[o] = '\0';
        memcpy(m->subject, subj, o + 1);
    }
    if (kind == 1) {
        b64(m->text, enc);
        cte = "base64";
    } else if (kind == 2) {
        qp(m->text, enc);
        cte = "quoted-printable";
    } else if (kind == 3) {
        to_latin1(m->text, enc);
        cs = "iso-8859-1";
    } else {
        strcpy(enc, m->text);
    }
    n = (size_t)snprintf(raw, sizeof(raw),
                         "From: " FROM "\r\nTo: " TO "\r\n"
                         "Subject: %s\r\nMIME-Version: 1.0\r\n"
                         "Content-Type: text/plain; charset=%s\r\n"
                         "Content-Transfer-Encoding: %s\r\n\r\n%s",
                         subj, cs, cte, enc);
    CHECK(storage_append(u, inbox, raw, n, 0, NULL, 0, 0, &m->uid) == 0);
    {
        const char *e = strstr(raw, "\r\n\r\n");
        size_t hl = e ? (size_t)(e - raw) + 4 : 0;
        CHECK(hl > 0 && hl < sizeof(m->header), "header kept for the reference");
        memcpy(m->header, raw, hl < sizeof(m->header) ? hl : 0);
    }
    nmsgs++;
}

/* the search strings */
static char queries[3000][64];
static size_t nq;

static void add_query(const char *s)
{
    if (nq < N(queries) && *s && strlen(s) < sizeof(queries[0]))
        strcpy(queries[nq++], s);
}

/* a piece of s of 1..12 characters at a random place, case changed */
static void add_piece(const char *s)
{
    size_t len = strlen(s), a, b, chars = 1 + rnd(12);
    char piece[64], cased[64];
    if (len == 0)
        return;
    a = rnd((unsigned)len);
    while (a > 0 && ((unsigned char)s[a] & 0xc0) == 0x80)
        a--;
    b = a;
    while (b < len && chars > 0 && b - a < 40) {
        b++;
        while (b < len && ((unsigned char)s[b] & 0xc0) == 0x80)
            b++;
        chars--;
    }
    memcpy(piece, s + a, b - a);
    piece[b - a] = '\0';
    shuffle_case(piece, cased, sizeof(cased));
    /* a string of spaces only matches everything: not what is tested here */
    if (strspn(cased, " \r\n") < strlen(cased))
        add_query(cased);
}

static void make_queries(void)
{
    static const char *const fixed[] = {"pizza",
                                        "izz",
                                        "PIZZ",
                                        "zanzibar",
                                        "ZANZI",
                                        "caf\xc3\xa9",
                                        "CAF\xc3\x89",
                                        "\xc3\xa9",
                                        "\xc3\x89",
                                        "cr\xc3\xa8me",
                                        "\xc3\x9c"
                                        "BER",
                                        "stra\xc3\x9f"
                                        "e",
                                        "100%",
                                        "0%",
                                        "e_b",
                                        "_",
                                        "%",
                                        "-",
                                        "foo-bar",
                                        "FOO BAR",
                                        "bob@",
                                        "@example",
                                        "example.org",
                                        "o'clock",
                                        "'",
                                        "\"quoted\"",
                                        "\"",
                                        "abcabc",
                                        "bcab",
                                        "cabca",
                                        "abc abc",
                                        "re:",
                                        "qz",
                                        "q",
                                        "\xce\xb1\xce\xb2",
                                        "\xce\x91\xce\x92\xce\x93",
                                        "MEGA",
                                        "\xcf\x89mega",
                                        "2024-05",
                                        "-05-",
                                        "x_y",
                                        "y_z",
                                        "nowhere",
                                        "pizzas pizza",
                                        "pizza, pizza",
                                        "a, I"};
    for (size_t i = 0; i < N(fixed); i++)
        add_query(fixed[i]);
    for (size_t i = 0; i < nmsgs; i++) {
        for (int k = 0; k < 8; k++)
            add_piece(msgs[i].text);
        add_piece(msgs[i].subject);
    }
}

static int searched(enum storage_search_op op, const char *s, uint32_t **uids, size_t *n)
{
    struct storage_search q = {.op = op, .str = s};
    struct storage_uidlist out = {0};
    int rc = storage_search(u, inbox, &q, &out);
    *uids = out.uids;
    *n = out.n;
    return rc;
}

/* answers of the previous state, to compare with */
static uint32_t *prev[N(queries)][2];
static size_t nprev[N(queries)][2];

/* Every query: BODY and TEXT against the reference, and against the
 * previous state's answers (when compare), less the messages gone. */
static void check_all(const char *phase, bool compare)
{
    size_t bad_ref = 0, bad_prev = 0, errors = 0;
    char what[200];

    for (size_t q = 0; q < nq; q++) {
        for (int t = 0; t < 2; t++) {
            uint32_t *got;
            size_t n;
            if (searched(t ? STORAGE_SEARCH_TEXT : STORAGE_SEARCH_BODY, queries[q], &got, &n) !=
                0) {
                errors++;
                continue;
            }
            {
                /* the reference: BODY the text; TEXT also the Subject
                 * (decoded), From and To, and the header block */
                size_t k = 0;
                bool ok = true;
                for (size_t i = 0; i < nmsgs; i++) {
                    if (msgs[i].gone ||
                        !(contains(msgs[i].text, queries[q]) ||
                          (t &&
                           (contains(msgs[i].subject, queries[q]) || contains(FROM, queries[q]) ||
                            contains(TO, queries[q]) || contains(msgs[i].header, queries[q])))))
                        continue;
                    if (k >= n || got[k] != msgs[i].uid)
                        ok = false;
                    k++;
                }
                if (!ok || k != n) {
                    if (bad_ref++ < 5)
                        printf("  %s: %s \"%s\": %zu found, %zu expected\n", phase,
                               t ? "TEXT" : "BODY", queries[q], n, k);
                }
            }
            if (compare) {
                /* the previous answer less the messages gone since */
                size_t k = 0;
                bool ok = true;
                for (size_t i = 0; i < nprev[q][t]; i++) {
                    bool gone = false;
                    for (size_t j = 0; j < nmsgs; j++)
                        if (msgs[j].uid == prev[q][t][i] && msgs[j].gone)
                            gone = true;
                    if (gone)
                        continue;
                    if (k >= n || got[k] != prev[q][t][i])
                        ok = false;
                    k++;
                }
                if (!ok || k != n) {
                    if (bad_prev++ < 5)
                        printf("  %s: %s \"%s\": %zu found, %zu before\n", phase,
                               t ? "TEXT" : "BODY", queries[q], n, k);
                }
            }
            free(prev[q][t]);
            prev[q][t] = got;
            nprev[q][t] = n;
        }
    }
    snprintf(what, sizeof(what), "%s: %zu strings, BODY and TEXT as the reference", phase, nq);
    CHECK(errors == 0 && bad_ref == 0, what);
    if (compare) {
        snprintf(what, sizeof(what), "%s: BODY and TEXT as before", phase);
        CHECK(errors == 0 && bad_prev == 0, what);
    }
}

static long long rows(const char *sql)
{
    return index_sql_int(dir, sql);
}

/* Runs sql (text ?1, uid ?2) for every message still there, with the
 * text this test gave it. */
static int with_texts(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *ins;
    int rc = sqlite3_prepare_v2(db, sql, -1, &ins, NULL);

    for (size_t i = 0; rc == SQLITE_OK && i < nmsgs; i++) {
        if (msgs[i].gone)
            continue;
        sqlite3_reset(ins);
        sqlite3_bind_text(ins, 1, msgs[i].text, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 2, msgs[i].uid);
        rc = sqlite3_step(ins) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    sqlite3_finalize(ins);
    return rc;
}

/* The (closed) store's index, opened directly; NULL on failure. */
static sqlite3 *open_index(void)
{
    char path[300];
    sqlite3 *db;

    snprintf(path, sizeof(path), "%s/users/1/index.sqlite", dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* Turns the (closed) index into one of schema 4 as that version left it:
 * the trigram index (with its content) of the indexed texts, the others
 * waiting. */
static int downgrade_to_4(void)
{
    sqlite3 *db = open_index();
    int rc;

    if (!db)
        return -1;
    /* texts of the bodies indexed today: from the bodies and the message
     * texts of this test, put back by body id */
    rc = sqlite3_exec(db,
                      "BEGIN;"
                      "CREATE TEMP TABLE t(body_id INTEGER PRIMARY KEY, text);"
                      "CREATE VIRTUAL TABLE fts4 USING fts5(subject, from_, to_, cc, bcc, text,"
                      " tokenize = 'trigram');"
                      "COMMIT;",
                      NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = with_texts(db, "INSERT INTO temp.t(body_id, text) SELECT body_id, ? FROM messages"
                            " WHERE uid = ? AND body_id IN (SELECT body_id FROM fts)");
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db,
                          "BEGIN;"
                          "INSERT INTO fts4(rowid, subject, from_, to_, cc, bcc, text)"
                          " SELECT b.id, b.subject, b.from_, b.to_, b.cc, b.bcc, t.text"
                          " FROM bodies b JOIN temp.t t ON t.body_id = b.id;"
                          "DROP TABLE fts; DROP TABLE fts_words; DROP TABLE fts_grams;"
                          " DROP TABLE fts_terms;"
                          "ALTER TABLE fts4 RENAME TO fts;"
                          "UPDATE meta SET value = 4 WHERE key = 'schema';" INDEX_SQL_HEADERS_BACK
                          "COMMIT;",
                          NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

/* Turns the (closed) index into one of schema 5 as that version left it:
 * the word index's header column held the five decoded fields only. */
static int downgrade_to_5(void)
{
    sqlite3 *db = open_index();
    int rc;

    if (!db)
        return -1;
    rc = sqlite3_exec(db,
                      "BEGIN; INSERT INTO fts_words(fts_words) VALUES ('delete-all');"
                      "UPDATE meta SET value = 5 WHERE key = 'schema';" INDEX_SQL_HEADERS_BACK
                      "DROP INDEX fts_pending_ids;",
                      NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = with_texts(db, "INSERT INTO fts_words(rowid, head, body)"
                            " SELECT b.id, substr(coalesce(char(10) || b.subject, '') ||"
                            " coalesce(char(10) || b.from_, '') ||"
                            " coalesce(char(10) || b.to_, '') ||"
                            " coalesce(char(10) || b.cc, '') ||"
                            " coalesce(char(10) || b.bcc, ''), 2), ?"
                            " FROM messages m JOIN bodies b ON b.id = m.body_id"
                            " WHERE m.uid = ? AND b.id IN (SELECT body_id FROM fts)");
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

int main(void)
{
    struct storage_mbox m;
    size_t left = 0, indexed;

    if (check_mkdtemp(dir, sizeof(dir), "coffre-fts") != 0)
        return 1;
    CHECK(storage_open(dir, 1, &u) == 0 && storage_mbox_get(u, "INBOX", &m) == 0, "store");
    inbox = m.id;
    for (size_t i = 0; i < NMSG; i++)
        append_msg(i, false);
    make_queries();
    CHECK(nq > 500, "search strings made");

    check_all("all texts waiting", false);
    /* the indexer lets go of the index after the text it is on when a
     * writer waits for it (writer_lock counts them) */
    {
        int64_t last = 0;
        int waiting = 1;
        CHECK(db_begin(u->wdb) == 0 && fts_index_batch(u->wdb, -1, 0, &waiting, &last) == 0 &&
                  last > 0 && db_commit(u->wdb) == 0,
              "indexing for a writer waiting");
        CHECK(rows("SELECT count(*) FROM fts_pending") == NMSG - 1,
              "one text indexed, then it stops");
    }
    /* the background indexer's form says only whether more wait; the
     * count is apart, on fts_pending_ids */
    {
        bool more = false;
        size_t n = 0;
        CHECK(storage_fts_index_for(u, 1, 0, &more) == 0 && more &&
                  storage_fts_waiting(u, &n) == 0 && n == NMSG - 2,
              "one more indexed: the rest wait and are counted");
        CHECK(rows("SELECT count(*) FROM fts_pending") == NMSG - 2, "the count is the table's");
        CHECK(rows("SELECT count(*) FROM sqlite_schema WHERE name = 'fts_pending_ids'") == 1,
              "fts_pending_ids in a new index");
    }
    CHECK(storage_fts_index(u, NMSG / 3 - 1, &left) == 0 && left == NMSG - 1 - NMSG / 3,
          "a third indexed");
    check_all("a third indexed", true);
    CHECK(storage_fts_index(u, 0, &left) == 0 && left == 0, "all indexed");
    check_all("all indexed", true);
    CHECK(rows("SELECT count(*) FROM fts") == NMSG && rows("SELECT count(*) FROM fts_pending") == 0,
          "every text in the index");

    /* expunge a third and the last five; their bodies go, and new messages
     * take their ids */
    {
        struct storage_range r[NMSG];
        struct storage_uidset set = {0, r};
        /* the last ones too: their body ids are the next ones given */
        for (size_t i = 0; i < NMSG; i++) {
            if (i % 3 != 0 && i < NMSG - 5)
                continue;
            r[set.n].lo = r[set.n].hi = msgs[i].uid;
            set.n++;
            msgs[i].gone = true;
        }
        CHECK(storage_store(u, inbox, &set, STORAGE_STORE_ADD, STORAGE_FLAG_DELETED, NULL, 0, 0,
                            NULL, NULL, NULL) == 0 &&
                  storage_expunge(u, inbox, &set, true, NULL) == 0,
              "a third and the last five expunged");
    }
    check_all("after the expunge", true);
    for (size_t i = 0; i < 15; i++)
        append_msg(NMSG + i, false);
    check_all("new messages waiting", false);
    CHECK(storage_fts_index(u, 7, NULL) == 0, "some indexed");
    check_all("new messages half indexed", true);
    CHECK(storage_fts_index(u, 0, &left) == 0 && left == 0, "all indexed again");
    check_all("all indexed again", true);
    indexed = (size_t)rows("SELECT count(*) FROM fts");

    /* an index of schema 4, texts indexed (trigrams) and waiting, is
     * upgraded on open: the same answers at once, and once reindexed */
    for (size_t i = 0; i < 5; i++)
        append_msg(NMSG + 15 + i, false);
    check_all("five more waiting", false);
    storage_close(u);
    u = NULL;
    CHECK(downgrade_to_4() == 0 && rows("SELECT count(*) FROM fts") == (long long)indexed &&
              rows("SELECT count(*) FROM fts_pending") == 5,
          "an index of schema 4");
    CHECK(storage_open(dir, 1, &u) == 0, "opened and upgraded");
    CHECK(rows("SELECT value FROM meta WHERE key = 'schema'") == 11 &&
              rows("SELECT count(*) FROM fts") == 0 &&
              rows("SELECT count(*) FROM fts_pending") == (long long)indexed + 5 &&
              rows("SELECT count(*) FROM sqlite_schema WHERE name = 'fts_words'") == 1,
          "the old index's texts wait for the new one");
    check_all("upgraded, texts waiting", true);
    CHECK(storage_fts_index(u, 0, &left) == 0 && left == 0, "reindexed");
    check_all("upgraded and reindexed", true);
    CHECK(rows("SELECT count(*) FROM fts") == (long long)indexed + 5, "every text indexed");

    /* an index of schema 5 (header block not in the word index) is
     * upgraded on open: its texts wait, then are indexed again; a body
     * indexed before and expunged after leaves the index whole */
    indexed += 5;
    for (size_t i = 0; i < 3; i++)
        append_msg(NMSG + 20 + i, false);
    check_all("three more waiting", false);
    storage_close(u);
    u = NULL;
    CHECK(downgrade_to_5() == 0 && rows("SELECT count(*) FROM fts_pending") == 3,
          "an index of schema 5");
    CHECK(storage_open(dir, 1, &u) == 0, "opened and upgraded from 5");
    CHECK(rows("SELECT value FROM meta WHERE key = 'schema'") == 11 &&
              rows("SELECT count(*) FROM fts") == 0 &&
              rows("SELECT count(*) FROM fts_pending") == (long long)indexed + 3,
          "the texts of schema 5 wait for the index");
    CHECK(storage_fts_waiting(u, &left) == 0 && left == indexed + 3,
          "fts_pending_ids made at the open, counting them");
    check_all("upgraded from 5, texts waiting", true);
    CHECK(storage_fts_index(u, 0, &left) == 0 && left == 0, "reindexed from 5");
    check_all("upgraded from 5 and reindexed", true);
    {
        struct storage_range r = {msgs[1].uid, msgs[NMSG + 19].uid};
        struct storage_uidset set = {1, &r};
        for (size_t i = 1; i <= NMSG + 19; i++)
            msgs[i].gone = true;
        CHECK(storage_store(u, inbox, &set, STORAGE_STORE_ADD, STORAGE_FLAG_DELETED, NULL, 0, 0,
                            NULL, NULL, NULL) == 0 &&
                  storage_expunge(u, inbox, &set, true, NULL) == 0,
              "most expunged after the upgrade");
    }
    check_all("expunged after the upgrade from 5", true);
    CHECK(rows("SELECT count(*) FROM fts") == 3, "their texts left the index");

    storage_close(u);
    for (size_t q = 0; q < nq; q++) {
        free(prev[q][0]);
        free(prev[q][1]);
    }
    check_rmtree(dir);
    return check_summary();
}
