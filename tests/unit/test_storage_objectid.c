/* Unit test of object ids (RFC 8474) and previews (RFC 8970) in storage:
 * mime_preview on white space, length and bad bytes; the preview of a
 * parsed message; EMAILID, THREADID and MAILBOXID of a store; and the
 * upgrade of an index of schema 8 (no ids, no previews), ids and threads
 * made on open, previews computed when first asked for. */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/base/buf.h"
#include "storage/mime.h"
#include "storage/storage.h"
#include "tests/unit/check.h"
#include "tests/unit/index_sql.h"

static bool preview_is(const char *in, size_t len, const char *want)
{
    struct buf b = {0};
    mime_preview(in, len, &b);
    bool ok = !b.oom && b.len == strlen(want) && (b.len == 0 || memcmp(b.p, want, b.len) == 0);
    if (!ok)
        fprintf(stderr, "preview of %.40s: [%.*s], want [%s]\n", in, (int)b.len, b.p ? b.p : "",
                want);
    buf_free(&b);
    return ok;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static void test_preview(void)
{
    CHECK(preview_is("", 0, ""), "empty");
    CHECK(preview_is(" \r\n\t ", 5, ""), "only white space");
    CHECK(preview_is("  Hello \r\n\r\n  world\t!  ", 24, "Hello world !"), "collapsed, trimmed");
    CHECK(preview_is("a\x01\x7f"
                     "b",
                     4, "a b"),
          "control characters are space");
    CHECK(preview_is("a\xc2\xa0\xe2\x80\x83"
                     "b",
                     7, "a b"),
          "NBSP and em space");
    CHECK(preview_is("a\xff\xc3"
                     "b",
                     4, "ab"),
          "invalid bytes left out");
    CHECK(preview_is("\xc3\xa9t\xc3\xa9", 6, "\xc3\xa9t\xc3\xa9"), "UTF-8 kept");
    {
        static char in[3000];
        struct buf b = {0};
        for (int i = 0; i < 1000; i++)
            memcpy(in + 2 * i, "\xc3\xa9", 2);
        mime_preview(in, 2000, &b);
        CHECK(!b.oom && b.len == 512 && utf8_chars(b.p) == MIME_PREVIEW_CHARS,
              "256 characters, not bytes");
        buf_free(&b);
        memset(in, 'x', sizeof(in));
        for (size_t i = 0; i + 1 < sizeof(in); i += 10)
            in[i] = ' ';
        mime_preview(in, sizeof(in), &b);
        CHECK(!b.oom && b.len == MIME_PREVIEW_CHARS && b.p[0] == 'x', "cut at 256");
        buf_free(&b);
    }
    {
        static const char msg[] = "Subject: x\r\nMIME-Version: 1.0\r\n"
                                  "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
                                  "--b\r\nContent-Type: application/octet-stream\r\n\r\nbinary\r\n"
                                  "--b\r\nContent-Type: text/html; charset=utf-8\r\n"
                                  "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                                  "<style>b{}</style><p>Caf=C3=A9 &amp;   <b>th&eacute;</b></p>\r\n"
                                  "--b\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--b--\r\n";
        struct mime_summary ms;
        CHECK(mime_parse(msg, sizeof(msg) - 1, &ms) == 0 && ms.preview &&
                  strcmp(ms.preview, "Caf\xc3\xa9 & th\xc3\xa9") == 0,
              "the first text part, HTML stripped");
        mime_summary_free(&ms);
        CHECK(mime_parse("Subject: x\r\n\r\n", 14, &ms) == 0 && ms.preview && !*ms.preview,
              "no text: empty");
        mime_summary_free(&ms);
    }
}

static struct storage_user *u;
static char dir[256];

static uint32_t add(int64_t mbox, const char *id, const char *irt, const char *refs,
                    const char *body)
{
    char m[4000];
    uint32_t uid = 0;
    int n = snprintf(m, sizeof(m), "From: a@x\r\nSubject: s\r\n%s%s%s%s%s%s%s%s%s\r\n%s\r\n",
                     id ? "Message-ID: " : "", id ? id : "", id ? "\r\n" : "",
                     irt ? "In-Reply-To: " : "", irt ? irt : "", irt ? "\r\n" : "",
                     refs ? "References: " : "", refs ? refs : "", refs ? "\r\n" : "", body);
    if (storage_append(u, mbox, m, (size_t)n, 0, NULL, 0, 1600000000, &uid) != 0)
        return 0;
    return uid;
}

struct got {
    uint64_t email[8], thread[8];
    char preview[8][64];
    bool has_preview[8];
    unsigned n;
};

static int got_cb(void *arg, const struct storage_msg *m)
{
    struct got *g = arg;
    if (m->uid >= 8)
        return 1;
    g->email[m->uid] = m->emailid;
    g->thread[m->uid] = m->threadid;
    g->has_preview[m->uid] = m->preview != NULL;
    snprintf(g->preview[m->uid], sizeof(g->preview[0]), "%s", m->preview ? m->preview : "");
    g->n++;
    return 0;
}

static bool fetch_all(int64_t mbox, struct got *g)
{
    memset(g, 0, sizeof(*g));
    return storage_fetch(u, mbox, NULL, STORAGE_FETCH_OBJECTID | STORAGE_FETCH_PREVIEW, got_cb,
                         g) == 0;
}

/* Threads as expected for messages 1..6 added in main. */
static bool threads_ok(const struct got *g)
{
    return g->n == 6 && g->thread[1] == g->thread[2] && g->thread[1] == g->thread[4] &&
           g->thread[3] == g->thread[6] && g->thread[1] != g->thread[3] &&
           g->thread[5] != g->thread[1] && g->thread[5] != g->thread[3] && g->thread[5] != 0;
}

static bool distinct(const uint64_t *v, unsigned from, unsigned to)
{
    for (unsigned i = from; i <= to; i++)
        for (unsigned j = i + 1; j <= to; j++)
            if (v[i] == v[j] || v[i] == 0)
                return false;
    return true;
}

static int downgrade(int to)
{
    char sql[600];

    snprintf(sql, sizeof(sql),
             "ALTER TABLE bodies DROP COLUMN oid; ALTER TABLE bodies DROP COLUMN thread;"
             "ALTER TABLE bodies DROP COLUMN preview; ALTER TABLE mailboxes DROP COLUMN oid;"
             "DROP TABLE threads; UPDATE meta SET value = %d WHERE key = "
             "'schema';" INDEX_SQL_HEADERS_BACK "PRAGMA wal_checkpoint(TRUNCATE);",
             to);
    return index_sql_exec(dir, sql);
}

int main(void)
{
    struct storage_mbox in, other;
    struct got g, g2;

    test_preview();

    if (check_mkdtemp(dir, sizeof(dir), "coffre-objectid") != 0)
        return 1;
    CHECK(storage_open(dir, 1, &u) == 0 && storage_mbox_create(u, "Other", 0) == 0 &&
              storage_mbox_get(u, "INBOX", &in) == 0 && storage_mbox_get(u, "Other", &other) == 0,
          "store");
    CHECK(in.oid && other.oid && in.oid != other.oid, "mailbox ids");
    /* a reply before its parent; two threads; a message with no ids */
    CHECK(add(in.id, "<c@x>", "<p@x>", "<p@x>", "reply   one") == 1 &&
              add(in.id, "<p@x>", NULL, NULL, "parent") == 2 &&
              add(in.id, "<q@x>", NULL, NULL, "two") == 3 &&
              add(in.id, "<g@x>", "<c@x>", "<p@x> <c@x>", "grandchild") == 4 &&
              add(in.id, NULL, NULL, NULL, "alone") == 5 &&
              add(in.id, "<r@x>", "<q@x>", NULL, "<b>re</b> two") == 6,
          "six messages");
    CHECK(fetch_all(in.id, &g) && threads_ok(&g), "threads at save");
    CHECK(distinct(g.email, 1, 6), "an email id each");
    CHECK(strcmp(g.preview[1], "reply one") == 0 && strcmp(g.preview[6], "<b>re</b> two") == 0,
          "previews at save (text/plain is not HTML)");
    {
        struct storage_range r = {2, 2};
        struct storage_uidset set = {1, &r};
        struct storage_uidlist src = {0}, dst = {0};
        CHECK(storage_copy(u, in.id, &set, other.id, &src, &dst) == 0 && fetch_all(other.id, &g2) &&
                  g2.email[1] == g.email[2] && g2.thread[1] == g.thread[2],
              "a copy shares its ids");
        storage_uidlist_free(&src);
        storage_uidlist_free(&dst);
    }
    {
        struct storage_search q = {.op = STORAGE_SEARCH_THREADID, .num = (int64_t)g.thread[1]};
        struct storage_uidlist l;
        CHECK(storage_search(u, in.id, &q, &l) == 0 && l.n == 3 && l.uids[0] == 1 &&
                  l.uids[1] == 2 && l.uids[2] == 4,
              "SEARCH THREADID");
        storage_uidlist_free(&l);
        q = (struct storage_search){.op = STORAGE_SEARCH_EMAILID, .num = (int64_t)g.email[5]};
        CHECK(storage_search(u, in.id, &q, &l) == 0 && l.n == 1 && l.uids[0] == 5,
              "SEARCH EMAILID");
        storage_uidlist_free(&l);
    }
    {
        /* deleted and created again: another id */
        CHECK(storage_mbox_create(u, "Gone", 0) == 0, "create");
        struct storage_mbox a, b;
        CHECK(storage_mbox_get(u, "Gone", &a) == 0 && storage_mbox_delete(u, "Gone") == 0 &&
                  storage_mbox_create(u, "Gone", 0) == 0 && storage_mbox_get(u, "Gone", &b) == 0 &&
                  a.oid != b.oid && a.id == b.id,
              "a row id used again, never a mailbox id");
        CHECK(storage_mbox_rename(u, "Gone", "Kept") == 0 && storage_mbox_get(u, "Kept", &a) == 0 &&
                  a.oid == b.oid,
              "RENAME keeps the mailbox id");
    }
    storage_close(u);
    u = NULL;

    /* schema 8: the same messages without ids, threads or previews */
    CHECK(downgrade(8) == 0 &&
              index_sql_int(dir, "SELECT count(*) FROM sqlite_schema WHERE name = 'threads'") == 0,
          "an index of schema 8");
    CHECK(storage_open(dir, 1, &u) == 0, "opened and upgraded");
    CHECK(index_sql_int(dir, "SELECT value FROM meta WHERE key = 'schema'") == 11 &&
              index_sql_int(dir, "SELECT count(*) FROM mailboxes WHERE oid = 0") == 0 &&
              index_sql_int(dir, "SELECT count(DISTINCT oid) FROM mailboxes") ==
                  index_sql_int(dir, "SELECT count(*) FROM mailboxes"),
          "schema 11, every mailbox an id of its own");
    CHECK(fetch_all(in.id, &g) && threads_ok(&g) && distinct(g.email, 1, 6), "ids and threads");
    CHECK(!g.has_preview[1] && !g.has_preview[6], "previews not computed by the upgrade");
    {
        char *p = NULL;
        CHECK(storage_msg_preview(u, in.id, 1, &p) == 0 && p && strcmp(p, "reply one") == 0,
              "a preview computed from the file");
        free(p);
        CHECK(fetch_all(in.id, &g2) && g2.has_preview[1] &&
                  strcmp(g2.preview[1], "reply one") == 0 && !g2.has_preview[2],
              "and kept");
        CHECK(g2.email[1] == g.email[1] && g2.thread[4] == g.thread[4], "ids kept after");
    }
    CHECK(add(in.id, "<h@x>", "<g@x>", NULL, "late") == 7 && fetch_all(in.id, &g2) && g2.n == 7 &&
              g2.thread[7] == g.thread[1] && g2.email[7] && strcmp(g2.preview[7], "late") == 0,
          "a message saved after the upgrade joins its thread");
    storage_close(u);
    u = NULL;

    /* an index marked schema 7 is upgraded too (it used to be left so) */
    CHECK(downgrade(7) == 0, "an index of schema 7");
    CHECK(storage_open(dir, 1, &u) == 0 &&
              index_sql_int(dir, "SELECT value FROM meta WHERE key = 'schema'") == 11 &&
              index_sql_int(dir, "SELECT count(*) FROM bodies WHERE oid = 0 OR thread = 0") == 0,
          "upgraded from 7");
    storage_close(u);
    return check_summary();
}
