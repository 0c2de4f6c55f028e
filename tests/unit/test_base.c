/* Unit tests of the base layer's byte buffer, IMAP string writer, base64
 * forms (strict, lenient, and the modified-UTF-7 alphabet), hex digits,
 * the metrics text and the prepared statements kept per connection. */
#include <stdlib.h>
#include <string.h>

#include "server/base/base64.h"
#include "server/base/buf.h"
#include "server/base/log.h"
#include "server/base/metrics.h"
#include "server/base/sqlcache.h"

#include "tests/unit/check.h"

/* b holds exactly want (and its NUL terminator). */
static int holds(const struct buf *b, const char *want, size_t len)
{
    return !b->oom && b->len == len && memcmp(b->p, want, len) == 0 && b->p[len] == '\0';
}

static void test_buf(void)
{
    struct buf b = {0};

    buf_str(&b, "abc");
    buf_addc(&b, '-');
    buf_addu(&b, 18446744073709551615u);
    buf_printf(&b, " %d%s", 42, "x");
    CHECK(holds(&b, "abc-18446744073709551615 42x", 28), "appends of every kind");
    buf_addself(&b, 0, 3);
    CHECK(holds(&b, "abc-18446744073709551615 42xabc", 31), "a copy of its own bytes");
    buf_addself(&b, 30, 5);
    CHECK(b.len == 31, "a copy past the end is refused");

    char big[1000];
    memset(big, 'z', sizeof(big));
    buf_reset(&b);
    buf_printf(&b, "%.*s", (int)sizeof(big), big);
    CHECK(holds(&b, big, sizeof(big)), "printf longer than the small buffer");

    char *p = buf_take(&b);
    CHECK(p && strlen(p) == sizeof(big) && b.p == NULL && b.len == 0, "take hands over the bytes");
    free(p);
    p = buf_take(&b);
    CHECK(p && p[0] == '\0', "take of an empty buffer gives an empty string");
    free(p);

    b.oom = true;
    buf_str(&b, "x");
    CHECK(b.len == 0 && buf_take(&b) == NULL, "after a failed append, take gives NULL");
    buf_free(&b);
}

static void test_imap_string(void)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } v[] = {
        {"", 0, "\"\""},
        {"plain text", 10, "\"plain text\""},
        {"say \"hi\" \\o/", 12, "\"say \\\"hi\\\" \\\\o/\""},
        {"nul\0here", 8, "\"nul here\""},
        {"two\r\nlines", 10, "{10}\r\ntwo\r\nlines"},
        {"caf\xc3\xa9", 5, "{5}\r\ncaf\xc3\xa9"},
        {"8bit\0\xff\"", 7, "{7}\r\n8bit \xff\""},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct buf b = {0};
        buf_imap_string(&b, v[i].in, v[i].len);
        CHECK(holds(&b, v[i].out, strlen(v[i].out)), v[i].out);
        buf_free(&b);
    }
    struct buf b = {0};
    buf_imap_nstring(&b, NULL, 0);
    buf_addc(&b, ' ');
    buf_imap_nstring(&b, "x", 1);
    CHECK(holds(&b, "NIL \"x\"", 7), "nstring: NIL and a string");
    buf_free(&b);
}

static void test_base64(void)
{
    char enc[16];
    unsigned char dec[16];

    CHECK(base64_encode((const unsigned char *)"f\xfb\xff", 3, enc, sizeof(enc)) == 4 &&
              strcmp(enc, "Zvv/") == 0,
          "encode uses + and /");
    CHECK(base64_decode_strict("Zvv/", 4, dec, sizeof(dec)) == 3 && dec[2] == 0xff,
          "strict decode");
    CHECK(base64_decode_strict("Zvv/\n", 5, dec, sizeof(dec)) == -1, "strict refuses a line end");
    CHECK(base64_value(',', BASE64_IMAP_63) == 63 && base64_value('/', BASE64_IMAP_63) == -1 &&
              base64_char(63, BASE64_IMAP_63) == ',',
          "the modified UTF-7 alphabet has ',' for 63");

    CHECK(hex_value('0') == 0 && hex_value('9') == 9 && hex_value('a') == 10 &&
              hex_value('F') == 15 && hex_value('g') == -1 && hex_value(' ') == -1,
          "hex digits in either case, nothing else");

    struct buf b = {0};
    base64_decode_lenient(&b, "Zm9v\r\nYm!Fy=junk", 16);
    CHECK(holds(&b, "foobar", 6), "lenient decode skips line ends and strays, stops at '='");
    buf_free(&b);
}

static void test_log_quote(void)
{
    char q[LOG_QUOTE_MAX], small[12];

    CHECK(!strcmp(log_quote(q, sizeof(q), "alice@example.org"), "alice@example.org"),
          "a plain value stays as it is");
    CHECK(!strcmp(log_quote(q, sizeof(q), "x ip=1.2.3.4"), "\"x ip=1.2.3.4\""),
          "a space or '=' puts it in quotes");
    CHECK(!strcmp(log_quote(q, sizeof(q), "a\"b\\c\n\xff"), "\"a\\\"b\\\\c\\x0a\\xff\""),
          "quotes, backslashes and other bytes escaped");
    CHECK(!strcmp(log_quote(q, sizeof(q), ""), "\"\""), "empty is \"\"");
    CHECK(!strcmp(log_quote(small, sizeof(small), "0123456789abcdef"), "\"012...\""),
          "cut with ... when it does not fit");
    char big[256];
    memset(big, 0x01, sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK(strlen(log_quote(q, sizeof(q), big)) == 2 + 4 * (sizeof(big) - 1),
          "LOG_QUOTE_MAX holds a whole 255-byte name of escapes");
}

static void test_metrics(void)
{
    struct buf b = {0};

    metrics_render(&b);
    CHECK(!b.oom && b.len > 6 && !strcmp(b.p + b.len - 6, "# EOF\n"), "the text ends with # EOF");
    CHECK(strstr(b.p, "\nprocess_resident_memory_bytes ") != NULL, "resident memory is listed");
    const char *v = strstr(b.p, "\nprocess_resident_memory_bytes ");
    CHECK(v && strtoull(v + 31, NULL, 10) > 0, "this process has resident memory");
    buf_free(&b);
}

/* One row of SELECT ?1 + 1 through st: its value, -1 without one. */
static long long plus_one(sqlite3_stmt *st, long long v)
{
    sqlite3_bind_int64(st, 1, v);
    return sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
}

static void test_sqlcache(void)
{
    static const char q[] = "SELECT ?1 + 1";
    char same_text[sizeof(q)];
    sqlite3 *db = NULL, *other = NULL;
    sqlite3_stmt *a, *b, *c, *d;

    memcpy(same_text, q, sizeof(q));
    CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK &&
              sqlite3_open(":memory:", &other) == SQLITE_OK,
          "two connections open");
    CHECK(sqlc_prepare(db, q, &a) == SQLITE_OK && plus_one(a, 1) == 2, "a statement prepared");
    /* handed out: the same text while a is in use gets another statement */
    CHECK(sqlc_prepare(db, q, &b) == SQLITE_OK && b != a && plus_one(b, 5) == 6,
          "a nested user gets its own statement");
    CHECK(sqlc_close(db) == SQLITE_BUSY, "a connection with a statement in use is not closed");
    CHECK(sqlc_finalize(b) == SQLITE_OK && sqlc_finalize(a) == SQLITE_OK, "both given back");
    /* given back reset, bindings cleared: the next user starts afresh */
    CHECK(sqlc_prepare(db, same_text, &c) == SQLITE_OK && (c == a || c == b),
          "the same text (another copy of it) gets a kept statement");
    CHECK(sqlite3_step(c) == SQLITE_ROW && sqlite3_column_type(c, 0) == SQLITE_NULL,
          "a kept statement comes back with its bindings cleared");
    CHECK(sqlc_finalize(c) == SQLITE_OK, "given back after a row not read to its end");
    CHECK(sqlc_prepare(other, q, &d) == SQLITE_OK && d != a && d != b &&
              sqlite3_db_handle(d) == other && plus_one(d, 9) == 10,
          "another connection has statements of its own");
    CHECK(sqlc_finalize(d) == SQLITE_OK && sqlc_close(other) == SQLITE_OK,
          "a connection with kept statements closes");
    CHECK(sqlc_prepare(db, "SELECT no_such_column", &a) != SQLITE_OK && a == NULL,
          "an error is the prepare's own");
    /* released: the connection stays open, its statements are prepared anew */
    CHECK(sqlc_prepare(db, q, &a) == SQLITE_OK && sqlc_finalize(a) == SQLITE_OK,
          "a statement kept before the release");
    sqlc_release(db);
    CHECK(sqlite3_next_stmt(db, NULL) == NULL, "a release finalizes the kept statements");
    CHECK(sqlc_prepare(db, q, &b) == SQLITE_OK && plus_one(b, 2) == 3 &&
              sqlc_finalize(b) == SQLITE_OK,
          "after a release the connection prepares again");
    CHECK(sqlc_finalize(NULL) == SQLITE_OK && sqlc_close(db) == SQLITE_OK, "db closes");
}

int main(void)
{
    test_log_quote();
    test_buf();
    test_imap_string();
    test_base64();
    test_metrics();
    test_sqlcache();
    return check_summary();
}
