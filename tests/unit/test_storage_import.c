/* Unit test: the import API (storage/import.c). Mailboxes take the
 * source's UIDVALIDITY when new or empty and report a conflict when they
 * hold messages under another; messages keep their UIDs, flags, keywords,
 * internal dates, are stored with CRLF line ends and indexed as deliveries
 * are (headers, preview, object ids, full-text texts waiting); a rerun
 * adds nothing; a UID used before is never used again; UIDNEXT is raised;
 * a message present without keywords gets the source's back; a rebuild of
 * the index from the Maildir keeps UIDs and internal dates. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "storage/storage.h"
#include "tests/unit/check.h"
#include "tests/unit/index_sql.h"

static char dir[256];

struct seen {
    uint32_t uid[16];
    unsigned flags[16];
    char kw[16][128];
    int64_t idate[16];
    uint64_t size[16], emailid[16];
    bool preview[16];
    size_t n;
};

static int collect(void *arg, const struct storage_msg *m)
{
    struct seen *s = arg;
    if (s->n < 16) {
        s->uid[s->n] = m->uid;
        s->flags[s->n] = m->flags;
        snprintf(s->kw[s->n], sizeof(s->kw[0]), "%s", m->keywords);
        s->idate[s->n] = m->internal_date;
        s->size[s->n] = m->size;
        s->emailid[s->n] = m->emailid;
        s->preview[s->n] = m->preview && m->preview[0];
        s->n++;
    }
    return 0;
}

static void fetch_all(struct storage_user *u, int64_t mbox, struct seen *s)
{
    memset(s, 0, sizeof(*s));
    CHECK(storage_fetch(u, mbox, NULL, STORAGE_FETCH_OBJECTID | STORAGE_FETCH_PREVIEW, collect,
                        s) == 0);
}

/* The bytes of message uid, NUL-terminated, in buf. */
static size_t body_of(struct storage_user *u, int64_t mbox, uint32_t uid, char *buf, size_t cap)
{
    int fd;
    uint64_t size;
    ssize_t n;
    if (storage_msg_open(u, mbox, uid, &fd, &size) != 0)
        return 0;
    n = read(fd, buf, cap - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return n > 0 ? (size_t)n : 0;
}

/* p[0..len) with each LF not after a CR made CRLF, byte by byte: what
 * an import stores. */
static size_t ref_crlf(const char *p, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            out[o++] = '\r';
        out[o++] = p[i];
    }
    return o;
}

int main(void)
{
    static const char msg_lf[] = "From: a@example.org\nSubject: first\n\nhello zanzibar\n";
    static const char msg_crlf[] = "From: b@example.org\r\nSubject: second\r\n\r\nbody two\r\n";
    const char *kw1[] = {"$Forwarded", "Work"};
    const char *kw_bad[] = {"ok", "bad(one", "\\Seen"};
    struct storage_user *u;
    struct storage_mbox mb, sent, a;
    struct seen s;
    char path[512], buf[4096];
    uint64_t hms;
    FILE *f;

    if (check_mkdtemp(dir, sizeof(dir), "coffre-import") != 0)
        return 1;
    CHECK(storage_open(dir, 1, &u) == 0, "store");

    /* a new mailbox with the source's UIDVALIDITY */
    CHECK(storage_import_mailbox(u, "Box", 12345, 0, &mb) == 0, "import_mailbox creates");
    CHECK(mb.id > 0 && mb.uidvalidity == 12345 && mb.uidnext == 1, "with the UIDVALIDITY given");
    /* an existing empty one (created with the store) takes it */
    CHECK(storage_import_mailbox(u, "Sent", 777, STORAGE_SPECIAL_SENT, &sent) == 0);
    CHECK(sent.uidvalidity == 777 && (sent.special_use & STORAGE_SPECIAL_SENT),
          "an empty mailbox takes the UIDVALIDITY");
    /* a child first: its parent is made, then takes its own number */
    CHECK(storage_import_mailbox(u, "A/B", 55, 0, &a) == 0 && a.uidvalidity == 55);
    CHECK(storage_import_mailbox(u, "A", 54, 0, &a) == 0 && a.uidvalidity == 54,
          "a parent made for a child takes its UIDVALIDITY later");

    /* a batch: from a file with LF line ends, and from memory */
    snprintf(path, sizeof(path), "%s/src-msg", dir);
    CHECK((f = fopen(path, "w")) != NULL);
    fputs(msg_lf, f);
    fclose(f);
    struct storage_import_msg m[4] = {
        {.uid = 3,
         .flags = STORAGE_FLAG_SEEN | STORAGE_FLAG_ANSWERED,
         .keywords = kw1,
         .nkeywords = 2,
         .internal_date = 1000000000,
         .path = path},
        {.uid = 5,
         .flags = STORAGE_FLAG_DELETED,
         .internal_date = 1100000000,
         .data = msg_crlf,
         .len = sizeof(msg_crlf) - 1},
        {.uid = 9,
         .keywords = kw_bad,
         .nkeywords = 3,
         .data = msg_crlf,
         .len = sizeof(msg_crlf) - 1,
         .internal_date = 1200000000},
        {.uid = 0, .data = msg_crlf, .len = sizeof(msg_crlf) - 1},
    };
    CHECK(storage_import_messages(u, mb.id, m, 4) == 0, "batch imported");
    CHECK(m[0].status == STORAGE_IMPORT_ADDED && m[1].status == STORAGE_IMPORT_ADDED &&
              m[2].status == STORAGE_IMPORT_ADDED,
          "three added");
    CHECK(m[3].status == STORAGE_IMPORT_FAILED && m[3].rc == STORAGE_E_INVAL, "UID 0 refused");
    CHECK(m[2].keywords_dropped == 2, "keywords coffre cannot hold dropped and counted");
    fetch_all(u, mb.id, &s);
    CHECK(s.n == 3 && s.uid[0] == 3 && s.uid[1] == 5 && s.uid[2] == 9, "UIDs kept");
    CHECK(s.flags[0] == (STORAGE_FLAG_SEEN | STORAGE_FLAG_ANSWERED) &&
              s.flags[1] == STORAGE_FLAG_DELETED && s.flags[2] == 0,
          "flags kept");
    CHECK(!strcmp(s.kw[0], "$Forwarded Work") && !strcmp(s.kw[2], "ok"), "keywords kept");
    CHECK(s.idate[0] == 1000000000 && s.idate[1] == 1100000000 && s.idate[2] == 1200000000,
          "internal dates kept");
    CHECK(s.size[0] == sizeof(msg_lf) - 1 + 4 && m[0].size == s.size[0],
          "size is the CRLF size of an LF file");
    CHECK(s.emailid[0] && s.emailid[1] && s.emailid[0] != s.emailid[1], "EMAILIDs given");
    CHECK(s.preview[0], "preview computed");
    CHECK(body_of(u, mb.id, 3, buf, sizeof(buf)) == s.size[0] &&
              !strcmp(buf, "From: a@example.org\r\nSubject: first\r\n\r\nhello zanzibar\r\n"),
          "bytes stored with CRLF");
    CHECK(storage_mbox_get(u, "Box", &mb) == 0 && mb.uidnext == 10, "UIDNEXT past the last");
    {
        struct storage_search q = {.op = STORAGE_SEARCH_BODY, .str = "zanzibar"};
        struct storage_uidlist l = {0};
        size_t left = 99;
        CHECK(storage_search(u, mb.id, &q, &l) == 0 && l.n == 1 && l.uids[0] == 3,
              "body text found before the full-text indexer ran");
        storage_uidlist_free(&l);
        CHECK(index_sql_int(dir, "SELECT count(*) FROM fts_pending") >= 3,
              "texts wait for the background indexer");
        CHECK(storage_fts_index(u, 0, &left) == 0 && left == 0);
        CHECK(storage_search(u, mb.id, &q, &l) == 0 && l.n == 1 && l.uids[0] == 3, "and after it");
        storage_uidlist_free(&l);
    }
    {
        struct stat sb;
        snprintf(path, sizeof(path), "%s/users/1/Maildir/.Box/cur", dir);
        CHECK(stat(path, &sb) == 0);
    }

    /* the same batch again: nothing added, nothing changed */
    hms = mb.highestmodseq;
    snprintf(path, sizeof(path), "%s/src-msg", dir);
    CHECK(storage_import_messages(u, mb.id, m, 3) == 0);
    CHECK(m[0].status == STORAGE_IMPORT_PRESENT && m[1].status == STORAGE_IMPORT_PRESENT &&
              m[2].status == STORAGE_IMPORT_PRESENT,
          "a rerun skips every message as present");
    CHECK(storage_mbox_get(u, "Box", &mb) == 0 && mb.highestmodseq == hms && mb.uidnext == 10,
          "a rerun changes nothing");
    fetch_all(u, mb.id, &s);
    CHECK(s.n == 3, "no duplicate");

    /* UIDNEXT raised to the source's: the UIDs up to it are kept for the
     * import, a delivery meanwhile takes one above */
    CHECK(storage_import_uidnext(u, mb.id, 20) == 0);
    CHECK(storage_import_uidnext(u, mb.id, 15) == 0, "lowering is a no-op");
    CHECK(storage_mbox_get(u, "Box", &mb) == 0 && mb.uidnext == 20, "UIDNEXT raised, not lowered");
    {
        uint32_t delivered = 0;
        CHECK(storage_append(u, mb.id, msg_crlf, sizeof(msg_crlf) - 1, 0, NULL, 0, 0, &delivered) ==
                      0 &&
                  delivered == 20,
              "a message saved during the import goes above the source's UIDs");
        struct storage_import_msg late[3] = {
            {.uid = 4, .data = msg_crlf, .len = sizeof(msg_crlf) - 1},
            {.uid = 12, .data = msg_crlf, .len = sizeof(msg_crlf) - 1},
            {.uid = 20, .data = msg_crlf, .len = sizeof(msg_crlf) - 1},
        };
        CHECK(storage_import_messages(u, mb.id, late, 3) == 0);
        CHECK(late[0].status == STORAGE_IMPORT_UID_USED,
              "a UID below UIDNEXT, not kept for the import and gone: skipped");
        CHECK(late[1].status == STORAGE_IMPORT_ADDED, "a UID kept for the import: added");
        CHECK(late[2].status == STORAGE_IMPORT_PRESENT, "the delivered one is not overwritten");
        CHECK(storage_mbox_get(u, "Box", &mb) == 0 && mb.uidnext == 21, "UIDNEXT unchanged");
        struct storage_range r = {12, 12};
        struct storage_uidset set = {1, &r};
        CHECK(storage_expunge(u, mb.id, &set, false, NULL) == 0);
        CHECK(storage_import_messages(u, mb.id, &late[1], 1) == 0 &&
                  late[1].status == STORAGE_IMPORT_UID_USED,
              "a kept UID expunged since is not imported again");
        r = (struct storage_range){20, 20};
        CHECK(storage_expunge(u, mb.id, &set, false, NULL) == 0);
    }
    /* expunged here: skipped too, not brought back */
    {
        struct storage_range r = {5, 5};
        struct storage_uidset set = {1, &r};
        CHECK(storage_expunge(u, mb.id, &set, false, NULL) == 0);
        CHECK(storage_import_messages(u, mb.id, &m[1], 1) == 0 &&
                  m[1].status == STORAGE_IMPORT_UID_USED,
              "an expunged UID is not imported again");
    }

    /* messages with UIDNEXT 20: another UIDVALIDITY is a conflict */
    CHECK(storage_import_mailbox(u, "Box", 999, 0, &mb) == STORAGE_E_CONFLICT &&
              mb.uidvalidity == 12345,
          "a mailbox with messages keeps its UIDVALIDITY: conflict");
    CHECK(storage_import_mailbox(u, "Box", 12345, 0, &mb) == 0, "the same one is fine");

    /* keywords come back to a message present without any (adopted from
     * the Maildir after an interrupted import) */
    {
        struct storage_import_msg bare = {
            .uid = 25, .data = msg_crlf, .len = sizeof(msg_crlf) - 1, .internal_date = 1300000000};
        struct storage_import_msg full = bare;
        full.keywords = kw1;
        full.nkeywords = 2;
        CHECK(storage_import_messages(u, mb.id, &bare, 1) == 0 &&
              bare.status == STORAGE_IMPORT_ADDED);
        CHECK(storage_import_messages(u, mb.id, &full, 1) == 0 &&
                  full.status == STORAGE_IMPORT_PRESENT && full.keywords_restored,
              "keywords restored on a present message that had none");
        CHECK(storage_import_messages(u, mb.id, &full, 1) == 0 && !full.keywords_restored,
              "only once");
        fetch_all(u, mb.id, &s);
        CHECK(s.n == 3 && s.uid[2] == 25 && !strcmp(s.kw[2], "$Forwarded Work"));
    }

    /* not ascending within a batch: the later, lower UID is skipped */
    {
        struct storage_import_msg two[2] = {
            {.uid = 40, .data = msg_crlf, .len = sizeof(msg_crlf) - 1},
            {.uid = 30, .data = msg_crlf, .len = sizeof(msg_crlf) - 1},
        };
        CHECK(storage_import_messages(u, mb.id, two, 2) == 0 &&
                  two[0].status == STORAGE_IMPORT_ADDED && two[1].status == STORAGE_IMPORT_UID_USED,
              "a UID below one added in the same batch is skipped");
    }
    {
        struct storage_import_msg gone = {.uid = 50, .path = "/nonexistent/file"};
        CHECK(storage_import_messages(u, mb.id, &gone, 1) == 0 &&
                  gone.status == STORAGE_IMPORT_FAILED && gone.rc != 0,
              "an unreadable file fails alone");
    }

    /* compressed files (gzip, zlib) inflated when asked */
    {
        char gz[512], zl[512], raw[512];
        unsigned char z[512];
        uLongf zlen = sizeof(z);
        gzFile g;
        snprintf(gz, sizeof(gz), "%s/src-gz", dir);
        snprintf(zl, sizeof(zl), "%s/src-zlib", dir);
        snprintf(raw, sizeof(raw), "%s/src-h", dir);
        CHECK((g = gzopen(gz, "wb")) != NULL);
        gzputs(g, msg_lf);
        gzclose(g);
        CHECK(compress2(z, &zlen, (const Bytef *)msg_crlf, sizeof(msg_crlf) - 1, 6) == Z_OK);
        CHECK((f = fopen(zl, "w")) != NULL);
        fwrite(z, 1, zlen, f);
        fclose(f);
        /* text whose first two bytes pass for a zlib header: "HK" */
        CHECK((f = fopen(raw, "w")) != NULL);
        fputs("HK: x\n\nplain\n", f);
        fclose(f);
        struct storage_import_msg c[3] = {
            {.uid = 60, .path = gz, .decompress = true},
            {.uid = 61, .path = zl, .decompress = true},
            {.uid = 62, .path = raw, .decompress = true},
        };
        CHECK(storage_import_messages(u, mb.id, c, 3) == 0 && c[0].status == STORAGE_IMPORT_ADDED &&
                  c[1].status == STORAGE_IMPORT_ADDED && c[2].status == STORAGE_IMPORT_ADDED,
              "compressed files imported");
        CHECK(body_of(u, mb.id, 60, buf, sizeof(buf)) == sizeof(msg_lf) - 1 + 4 &&
                  !strncmp(buf, "From: a@example.org\r\n", 21),
              "gzip inflated");
        CHECK(body_of(u, mb.id, 61, buf, sizeof(buf)) == sizeof(msg_crlf) - 1 &&
                  !strcmp(buf, msg_crlf),
              "zlib inflated");
        CHECK(body_of(u, mb.id, 62, buf, sizeof(buf)) && !strcmp(buf, "HK: x\r\n\r\nplain\r\n"),
              "text that looks like a zlib header taken as it is");
    }

    /* line ends of every kind, an LF at each place in a run of 16 bytes
     * and on either side: each text stored as a byte-by-byte conversion
     * makes it */
    {
        enum { NENDS = 96 };
        static char src[NENDS][320];
        static struct storage_import_msg em[NENDS];
        struct storage_mbox ends;
        char want[700];
        unsigned seed = 12345, same = 0;
        CHECK(storage_import_mailbox(u, "Ends", 4242, 0, &ends) == 0);
        for (int i = 0; i < NENDS; i++) {
            size_t len = (size_t)snprintf(src[i], sizeof(src[i]), "Subject: e%d\n\n", i);
            size_t body = (size_t)(i * 3) % 300;
            for (size_t k = 0; k < body; k++) {
                seed = seed * 1103515245u + 12345u;
                unsigned r = (seed >> 16) % (i % 3 == 0 ? 40 : 8);
                src[i][len++] = r == 0 ? '\n' : r == 1 ? '\r' : r == 2 ? '-' : (char)('a' + r);
            }
            em[i] = (struct storage_import_msg){.uid = (uint32_t)i + 1, .data = src[i], .len = len};
        }
        CHECK(storage_import_messages(u, ends.id, em, NENDS) == 0, "line-end batch imported");
        for (int i = 0; i < NENDS; i++) {
            size_t wl = ref_crlf(src[i], em[i].len, want);
            same += em[i].status == STORAGE_IMPORT_ADDED && em[i].size == wl &&
                    body_of(u, ends.id, (uint32_t)i + 1, buf, sizeof(buf)) == wl &&
                    memcmp(buf, want, wl) == 0;
        }
        CHECK(same == NENDS, "bare LFs made CRLF wherever they fall, the rest kept");
    }

    /* the index agrees with the Maildir, and a rebuild keeps UIDs, flags
     * and internal dates (file names and times) */
    {
        unsigned problems = 99;
        CHECK(storage_check(dir, 1, NULL, NULL, &problems) == 0 && problems == 0,
              "check finds nothing to fix");
    }
    storage_close(u);
    CHECK(storage_reindex(dir, 1) == 0, "reindex");
    CHECK(storage_open(dir, 1, &u) == 0);
    CHECK(storage_mbox_get(u, "Box", &mb) == 0 && mb.uidvalidity == 12345 && mb.uidnext >= 41,
          "UIDVALIDITY and UIDNEXT survive a rebuild");
    fetch_all(u, mb.id, &s);
    CHECK(s.n == 7 && s.uid[0] == 3 && s.idate[0] == 1000000000 &&
              s.flags[0] == (STORAGE_FLAG_SEEN | STORAGE_FLAG_ANSWERED) && s.uid[1] == 9 &&
              s.idate[1] == 1200000000,
          "UIDs, flags, internal dates survive a rebuild");
    storage_close(u);
    check_rmtree(dir);
    return check_summary();
}
