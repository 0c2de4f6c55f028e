/* Unit test: FETCH BODY[HEADER.FIELDS (...)] of the top-level header is
 * answered from the index (Thunderbird asks it for every message of a
 * folder): it works with the message file gone, and a header too long to
 * be kept in the index is still answered, from the file. The blocks are
 * kept in a table of their own (schema 10); those an index of schema 9
 * kept in bodies still answer after its upgrade, and an expunge takes a
 * block with its body. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/base/buf.h"
#include "storage/storage.h"
#include "tests/unit/check.h"
#include "tests/unit/index_sql.h"

static char dir[256];

/* What one pass of storage_fetch (STORAGE_FETCH_HEADER) gave: HEADER.FIELDS
 * (Subject From) of each message, in UID order, "-" for no header. */
struct pass {
    struct buf out;
    unsigned n;
};

static int pass_cb(void *arg, const struct storage_msg *m)
{
    static const char *const want[] = {"Subject", "From"};
    struct pass *p = arg;
    p->n++;
    if (!m->header) {
        buf_str(&p->out, "-");
        return 0;
    }
    storage_header_fields(m->header, m->header_len, want, 2, false, &p->out);
    return 0;
}

/* Removes every file of the INBOX's cur/ and new/. */
static int remove_files(void)
{
    static const char *const sub[] = {"cur", "new"};
    int n = 0;
    for (int i = 0; i < 2; i++) {
        char p[512];
        DIR *d;
        struct dirent *de;
        snprintf(p, sizeof(p), "%s/users/1/Maildir/%s", dir, sub[i]);
        if (!(d = opendir(p)))
            continue;
        while ((de = readdir(d))) {
            char f[1024];
            if (de->d_name[0] == '.')
                continue;
            snprintf(f, sizeof(f), "%s/%s", p, de->d_name);
            if (unlink(f) == 0)
                n++;
        }
        closedir(d);
    }
    return n;
}

/* Turns the (closed) index of user 1 under d into one of schema 9. */
static int to_schema_9(const char *d)
{
    return index_sql_exec(d,
                          INDEX_SQL_HEADERS_BACK "UPDATE meta SET value = 9 WHERE key = 'schema';"
                                                 "PRAGMA wal_checkpoint(TRUNCATE);");
}

/* The header blocks' place, and the upgrade from schema 9. */
static void test_headers_table(void)
{
    static const char m1[] = "From: a@example.org\r\nSubject: one\r\n\r\nbody\r\n";
    static const char m2[] = "From: b@example.org\r\nSubject: two\r\n\r\nbody\r\n";
    static const char both[] = "From: a@example.org\r\nSubject: one\r\n\r\n"
                               "From: b@example.org\r\nSubject: two\r\n\r\n";
    static const unsigned whats[] = {STORAGE_FETCH_HEADER,
                                     STORAGE_FETCH_HEADER | STORAGE_FETCH_ENVELOPE};
    struct storage_user *u;
    struct storage_mbox m;
    uint32_t uid1, uid2;
    char d[256];

    if (check_mkdtemp(d, sizeof(d), "coffre-headers10") != 0)
        return;
    CHECK(storage_open(d, 1, &u) == 0 && storage_mbox_get(u, "INBOX", &m) == 0, "store");
    CHECK(storage_append(u, m.id, m1, sizeof(m1) - 1, 0, NULL, 0, 0, &uid1) == 0, "append");
    storage_close(u);
    CHECK(index_sql_int(d, "SELECT count(*) FROM headers") == 1 &&
              index_sql_int(d, "SELECT count(*) FROM bodies WHERE header NOT NULL") == 0,
          "the header block in its own table");
    CHECK(to_schema_9(d) == 0 &&
              index_sql_int(d, "SELECT count(*) FROM bodies WHERE header NOT NULL") == 1,
          "an index of schema 9, the block in bodies");
    CHECK(storage_open(d, 1, &u) == 0 && storage_mbox_get(u, "INBOX", &m) == 0, "upgraded");
    CHECK(index_sql_int(d, "SELECT value FROM meta WHERE key = 'schema'") == 10 &&
              index_sql_int(d, "SELECT count(*) FROM headers") == 0,
          "schema 10, the old block left where it was");
    CHECK(storage_append(u, m.id, m2, sizeof(m2) - 1, 0, NULL, 0, 0, &uid2) == 0, "append");
    for (size_t i = 0; i < 2; i++) {
        struct pass p = {{0}, 0};
        CHECK(storage_fetch(u, m.id, NULL, whats[i], pass_cb, &p) == 0 && p.n == 2 && p.out.p &&
                  !strcmp(p.out.p, both),
              "the old block and the new one, alone or with the envelope");
        buf_free(&p.out);
    }
    struct storage_range r = {uid2, uid2};
    struct storage_uidset set = {1, &r};
    CHECK(storage_expunge(u, m.id, &set, false, NULL) == 0, "expunge");
    storage_close(u);
    CHECK(index_sql_int(d, "SELECT count(*) FROM headers") == 0, "the block went with its body");
    check_rmtree(d);
}

int main(void)
{
    static const char msg[] = "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n"
                              "Subject: hello\r\nX-Priority: 3\r\n\r\nbody\r\n";
    static const char *const want[] = {"Subject", "From"};
    struct storage_user *u;
    struct storage_mbox m;
    uint32_t uid, big_uid;
    char *out = NULL;
    size_t outlen = 0;
    int fd;
    uint64_t size;

    if (check_mkdtemp(dir, sizeof(dir), "coffre-headers") != 0)
        return 1;
    CHECK(storage_open(dir, 1, &u) == 0 && storage_mbox_get(u, "INBOX", &m) == 0, "store");
    CHECK(storage_append(u, m.id, msg, sizeof(msg) - 1, 0, NULL, 0, 0, &uid) == 0, "append");

    /* a header over the index limit: 80 KiB of X-Filler lines */
    size_t blen = 0, bcap = 90 * 1024;
    char *big = malloc(bcap);
    blen += (size_t)snprintf(big, bcap, "Subject: big\r\n");
    while (blen < 80 * 1024)
        blen += (size_t)snprintf(big + blen, bcap - blen, "X-Filler: %0100d\r\n", 7);
    blen += (size_t)snprintf(big + blen, bcap - blen, "\r\nbody\r\n");
    CHECK(storage_append(u, m.id, big, blen, 0, NULL, 0, 0, &big_uid) == 0, "append big header");

    CHECK(storage_msg_header_fields(u, m.id, big_uid, "", want, 2, false, &out, &outlen) == 0 &&
              outlen == strlen("Subject: big\r\n\r\n") &&
              !memcmp(out, "Subject: big\r\n\r\n", outlen),
          "an over-long header is answered from the file");
    free(out);

    struct pass p = {{0}, 0};
    CHECK(storage_fetch(u, m.id, NULL, STORAGE_FETCH_HEADER, pass_cb, &p) == 0 && p.n == 2 &&
              p.out.p &&
              !strcmp(p.out.p, "From: Alice <alice@example.org>\r\nSubject: hello\r\n\r\n"
                               "Subject: big\r\n\r\n"),
          "one pass gives every header, the over-long one read from its file");
    buf_free(&p.out);

    CHECK(remove_files() == 2, "message files removed behind the store's back");
    memset(&p, 0, sizeof(p));
    CHECK(storage_fetch(u, m.id, NULL, STORAGE_FETCH_HEADER, pass_cb, &p) == 0 && p.n == 2 &&
              p.out.p &&
              !strcmp(p.out.p, "From: Alice <alice@example.org>\r\nSubject: hello\r\n\r\n-"),
          "files gone: the index still answers, the over-long header is NULL");
    buf_free(&p.out);
    CHECK(storage_msg_open(u, m.id, uid, &fd, &size) != 0, "the file is really gone");
    out = NULL;
    CHECK(storage_msg_header_fields(u, m.id, uid, "", want, 2, false, &out, &outlen) == 0 &&
              outlen == strlen("From: Alice <alice@example.org>\r\nSubject: hello\r\n\r\n") &&
              !memcmp(out, "From: Alice <alice@example.org>\r\nSubject: hello\r\n\r\n", outlen),
          "HEADER.FIELDS (Subject From) from the index, in message order");
    free(out);
    out = NULL;
    CHECK(storage_msg_header_fields(u, m.id, uid, "", want, 2, true, &out, &outlen) == 0 &&
              strstr(out, "X-Priority: 3\r\n") && !strstr(out, "Subject"),
          "HEADER.FIELDS.NOT from the index");
    free(out);
    CHECK(storage_msg_header_fields(u, m.id, 999, "", want, 2, false, &out, &outlen) ==
              STORAGE_E_NOMSG,
          "unknown UID");
    storage_close(u);
    free(big);
    check_rmtree(dir);
    test_headers_table();
    return check_summary();
}
