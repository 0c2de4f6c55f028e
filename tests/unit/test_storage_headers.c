/* Unit test: FETCH BODY[HEADER.FIELDS (...)] of the top-level header is
 * answered from the index (Thunderbird asks it for every message of a
 * folder): it works with the message file gone, and a header too long to
 * be kept in the index is still answered, from the file. The blocks are
 * kept in a table of their own (schema 10); those an index of schema 9
 * kept in bodies still answer after its upgrade, and an expunge takes a
 * block with its body. The listing blocks (schema 11: the fields clients
 * list folders with) answer such requests byte for byte as the whole
 * blocks do, for headers of every shape, and an index without them (of
 * schema 10, or a header with none of the fields) falls back to the
 * whole block. */
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
    CHECK(index_sql_int(d, "SELECT value FROM meta WHERE key = 'schema'") == 11 &&
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

/* The listing fields as storage.h names them. */
static const char *const listed[] = {
    "From",        "Sender",     "Reply-To",
    "To",          "Cc",         "Bcc",
    "Subject",     "Date",       "Message-ID",
    "In-Reply-To", "References", "Content-Type",
    "Priority",    "X-Priority", "Importance",
    "Newsgroups",  "List-Post",  "Disposition-Notification-To",
};
#define NLISTED (sizeof(listed) / sizeof(listed[0]))

static unsigned rnd_state = 12345;
static unsigned rnd(unsigned n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 16) % n;
}

/* A header of a random shape: listed and other fields in any case,
 * folded values, bare LF and CR line ends, lines without a colon, a
 * leading continuation line, with or without the blank line. */
static void random_header(struct buf *b)
{
    static const char *const others[] = {"Received", "DKIM-Signature", "X-Spam", "subject2",
                                         "X-Mailer"};
    static const char *const ends[] = {"\r\n", "\n", "\r\n", "\r\n", "\r"};
    unsigned n = rnd(12);

    buf_reset(b);
    if (rnd(20) == 0)
        buf_str(b, " leading continuation\r\n");
    for (unsigned i = 0; i < n; i++) {
        char name[64];
        const char *base = rnd(2) ? listed[rnd(NLISTED)] : others[rnd(5)];
        size_t k;
        for (k = 0; base[k] && k < sizeof(name) - 1; k++)
            name[k] = rnd(3) == 0 ? (char)(base[k] ^ 0x20 * (base[k] >= 'A')) : base[k];
        name[k] = 0;
        switch (rnd(10)) {
        case 0:
            buf_str(b, "no colon on this line");
            break;
        case 1:
            buf_str(b, name);
            buf_str(b, " : spaced name");
            break;
        default:
            buf_str(b, name);
            buf_str(b, ": value ");
            buf_addu(b, rnd(1000));
        }
        if (rnd(4) == 0) {
            buf_str(b, ends[rnd(5)]);
            buf_str(b, rnd(2) ? "\tfolded" : "  folded: with colon");
        }
        if (i + 1 < n || rnd(4))
            buf_str(b, ends[rnd(5)]);
    }
    if (rnd(3))
        buf_str(b, rnd(2) ? "\r\n" : "\n");
}

/* Thunderbird's listing fields. */
static const char *const tb[] = {"From",        "To",         "Cc",         "Bcc",
                                 "Subject",     "Date",       "Message-ID", "Priority",
                                 "X-Priority",  "References", "Newsgroups", "In-Reply-To",
                                 "Content-Type"};

/* For headers of every shape: the listing block, filtered by names it
 * covers, gives what the whole block gives; and when the names cover
 * every field it holds, it is that answer itself. */
static void test_listing_shapes(void)
{
    static const char *const s1[] = {"From", "Subject"}, *const s2[] = {"subject", "DATE", "to"},
                             *const s3[] = {"References", "In-Reply-To", "Message-ID"},
                             *const s4[] = {"Content-Type", "x-priority", "Bcc", "List-Post"};
    static const struct {
        const char *const *names;
        size_t n;
    } sets[] = {{s1, 2}, {s2, 3}, {s3, 3}, {s4, 4}, {tb, 13}, {listed, NLISTED}};
    struct buf h = {0}, l = {0}, a = {0}, z = {0};
    unsigned mask = 0, fields;
    int bad = 0, verbatim = 0;

    CHECK(storage_listing_fields(listed, NLISTED, &mask) && mask == (1u << NLISTED) - 1,
          "every listed name is covered, a bit each");
    {
        static const char *const some[] = {"FROM", "message-id", "Received"};
        unsigned m2 = 0;
        CHECK(storage_listing_fields(some, 2, &mask) && storage_listing_fields(some, 1, &m2) &&
                  m2 && (mask & m2) == m2 && mask != m2 && !storage_listing_fields(some, 3, &m2) &&
                  !storage_listing_fields(some + 2, 1, &m2),
              "any case covered, Received not");
    }
    for (int i = 0; i < 5000 && !bad; i++) {
        random_header(&h);
        buf_reset(&l);
        fields = storage_listing_block(h.p ? h.p : "", h.len, &l);
        for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
            buf_reset(&a);
            buf_reset(&z);
            storage_header_fields(h.p ? h.p : "", h.len, sets[s].names, sets[s].n, false, &a);
            storage_header_fields(l.p ? l.p : "", l.len, sets[s].names, sets[s].n, false, &z);
            if (a.len != z.len || (a.len && memcmp(a.p, z.p, a.len)))
                bad = 1;
            if (!storage_listing_fields(sets[s].names, sets[s].n, &mask))
                bad = 1;
            else if (fields && !(fields & ~mask)) {
                verbatim++;
                if (a.len != l.len || memcmp(a.p, l.p, l.len))
                    bad = 1;
            }
            if (bad)
                fprintf(stderr, "header %d, set %zu: %.*s\n", i, s, (int)h.len, h.p);
        }
        if (!fields && l.len > 2)
            bad = 1;
    }
    CHECK(!bad && verbatim > 5000,
          "5000 headers: the listing block answers as the whole block, as it is when covered");
    buf_free(&h);
    buf_free(&l);
    buf_free(&a);
    buf_free(&z);
}

/* One pass of storage_fetch with `what`: HEADER.FIELDS (names) of every
 * message, "-" for none. */
struct names_pass {
    const char *const *names;
    size_t n;
    struct buf out;
    unsigned listing; /* messages given a listing block */
};

static int names_cb(void *arg, const struct storage_msg *m)
{
    struct names_pass *np = arg;
    if (m->listing_fields)
        np->listing++;
    if (!m->header)
        buf_str(&np->out, "-");
    else
        storage_header_fields(m->header, m->header_len, np->names, np->n, false, &np->out);
    return 0;
}

/* Messages the last listing_same had listing blocks for. */
static unsigned listing_given;

/* Whether a fetch of names from the listing blocks gives what one from
 * the whole blocks gives, over every message. */
static bool listing_same(struct storage_user *u, int64_t mbox, const char *const *names, size_t n)
{
    struct names_pass a = {names, n, {0}, 0}, b = {names, n, {0}, 0};
    bool same = storage_fetch(u, mbox, NULL, STORAGE_FETCH_HEADER, names_cb, &a) == 0 &&
                storage_fetch(u, mbox, NULL, STORAGE_FETCH_HEADER | STORAGE_FETCH_LISTING, names_cb,
                              &b) == 0 &&
                a.out.len > 0 && a.out.len == b.out.len && !memcmp(a.out.p, b.out.p, a.out.len);
    buf_free(&a.out);
    buf_free(&b.out);
    listing_given = a.listing == 0 ? b.listing : ~0u;
    return same;
}

/* Listing blocks kept beside the whole ones, answering alike; an index of
 * schema 10 upgraded, its bodies answered from the whole blocks. */
static void test_listings(void)
{
    static const char real[] =
        "Received: from mx.example.net (mx.example.net [192.0.2.1])\r\n"
        "\tby mail.example.org with ESMTPS id 4Xy; Mon, 3 Mar 2025 10:00:00 +0000\r\n"
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.net; s=s1; h=from:to:subject;\r\n"
        "\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA==\r\n"
        "From: Carol <carol@example.net>\r\nTo: bob@example.org\r\n"
        "Subject: =?utf-8?q?caf=C3=A9?=\r\nDate: Mon, 3 Mar 2025 10:00:00 +0000\r\n"
        "Message-ID: <1@example.net>\r\nContent-Type: text/plain\r\n\r\nbody\r\n";
    static const char none[] = "X-Only: other fields\r\nReceived: by x\r\n\r\nbody\r\n";
    static const char nobody[] = "Subject: no body, no blank line\r\nFrom: d@example.org";
    static const char *const msgs[] = {real, none, nobody};
    struct storage_user *u;
    struct storage_mbox m;
    uint32_t uid = 0;
    char d[256];

    if (check_mkdtemp(d, sizeof(d), "coffre-listings") != 0)
        return;
    CHECK(storage_open(d, 1, &u) == 0 && storage_mbox_get(u, "INBOX", &m) == 0, "store");
    for (size_t i = 0; i < 3; i++)
        CHECK(storage_append(u, m.id, msgs[i], strlen(msgs[i]), 0, NULL, 0, 0, &uid) == 0,
              "append");
    CHECK(listing_same(u, m.id, tb, 13) && listing_given == 2 && listing_same(u, m.id, tb + 4, 1),
          "Thunderbird's listing from the listing blocks, as from the whole blocks");
    storage_close(u);
    CHECK(index_sql_int(d, "SELECT count(*) FROM listings") == 2 &&
              index_sql_int(d, "SELECT count(*) FROM listings WHERE instr(header, 'Received')"
                               " OR instr(header, 'DKIM')") == 0 &&
              index_sql_int(d, "SELECT sum(length(h.header)) - sum(length(l.header))"
                               " FROM listings l JOIN headers h ON h.body_id = l.body_id") > 200,
          "a listing block for the two headers with listed fields, without the rest");

    /* the listing fetch reads them: a changed block shows */
    CHECK(index_sql_exec(d, "UPDATE listings SET header = CAST('Subject: changed' || char(13, 10)"
                            " || char(13, 10) AS BLOB) WHERE body_id = (SELECT min(body_id)"
                            " FROM listings)") == 0,
          "a listing block changed behind the store's back");
    CHECK(storage_open(d, 1, &u) == 0 && storage_mbox_get(u, "INBOX", &m) == 0, "reopened");
    CHECK(!listing_same(u, m.id, tb, 13) && listing_same(u, m.id, tb + 11, 1),
          "the changed block answers the listing fetch");
    storage_close(u);

    /* schema 10: no listing blocks */
    CHECK(index_sql_exec(d,
                         INDEX_SQL_LISTINGS_GONE "UPDATE meta SET value = 10 WHERE key = "
                                                 "'schema'; PRAGMA wal_checkpoint(TRUNCATE);") == 0,
          "an index of schema 10");
    CHECK(storage_open(d, 1, &u) == 0 && storage_mbox_get(u, "INBOX", &m) == 0, "upgraded");
    CHECK(index_sql_int(d, "SELECT value FROM meta WHERE key = 'schema'") == 11 &&
              index_sql_int(d, "SELECT count(*) FROM listings") == 0,
          "schema 11, the bodies there before without listing blocks");
    CHECK(storage_append(u, m.id, real, strlen(real), 0, NULL, 0, 0, &uid) == 0, "append");
    CHECK(listing_same(u, m.id, tb, 13) && listing_given == 1,
          "old bodies from the whole block, the new one not");
    struct storage_range r = {uid, uid};
    struct storage_uidset set = {1, &r};
    CHECK(storage_expunge(u, m.id, &set, false, NULL) == 0, "expunge");
    storage_close(u);
    CHECK(index_sql_int(d, "SELECT count(*) FROM listings") == 0,
          "the listing block went with its body");
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
    test_listing_shapes();
    test_listings();
    return check_summary();
}
