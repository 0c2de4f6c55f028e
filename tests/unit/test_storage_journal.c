/* Unit tests of the delivery journal (storage/journal.c): a delivery through
 * a light handle into INBOX waits in the journal and <data_dir>/pending/, the
 * next write on the index takes it in with its UID (in delivery order, with
 * what its parse found), a repeated drain after a crash at any point adds
 * nothing twice, the quota counts journaled mail, an account with an open
 * store, no usage known or enough waiting is delivered through its index,
 * and a process that journals removes the pending/ files no row names when
 * it opens the journal. The journal's WAL is checkpointed by
 * storage_journal_checkpoint once it has grown, and by its writer only
 * past a bound, so that it stays bounded without one. */
#include <dirent.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/storage.h"
#include "tests/unit/check.h"

static char data_dir[512];

#define CHECK_RC(e, want)                                                                          \
    do {                                                                                           \
        int rc_ = (e);                                                                             \
        if (rc_ != (want)) {                                                                       \
            fprintf(stderr, "%s:%d: %s = %d (%s), want %d\n", __FILE__, __LINE__, #e, rc_,         \
                    storage_strerror(rc_), want);                                                  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void user_path(char *out, size_t len, int64_t id, const char *rel)
{
    snprintf(out, len, "%s/users/%" PRId64 "/%s", data_dir, id, rel);
}

/* Files in dir whose name contains part (NULL: all). */
static int count_files(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.' && (!part || strstr(de->d_name, part)))
            n++;
    closedir(d);
    return n;
}

/* The account's files waiting in <data_dir>/pending; the name (after
 * "<id>.") of the first into first (may be NULL). */
static int pending_files(int64_t id, char *first, size_t len)
{
    char dir[600], pre[32];
    DIR *d;
    struct dirent *de;
    int n = 0;
    snprintf(dir, sizeof(dir), "%s/pending", data_dir);
    snprintf(pre, sizeof(pre), "%" PRId64 ".", id);
    if (!(d = opendir(dir)))
        return 0;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, pre, strlen(pre)) != 0)
            continue;
        if (n++ == 0 && first)
            snprintf(first, len, "%s", de->d_name + strlen(pre));
    }
    closedir(d);
    return n;
}

/* The journal's rows for account id (sql: "SELECT count(*) FROM pending
 * WHERE account = ?" and more). */
static int64_t journal_count(int64_t id, const char *sql)
{
    char p[600];
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t n = -1;
    snprintf(p, sizeof(p), "%s/deliveries.sqlite", data_dir);
    if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_int64(st, 1, id) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static int64_t journal_rows(int64_t id)
{
    return journal_count(id, "SELECT count(*) FROM pending WHERE account = ?");
}

/* Those that hold a search text. */
static int64_t journal_texts(int64_t id)
{
    return journal_count(id, "SELECT count(*) FROM pending WHERE account = ? AND text NOT NULL");
}

/* The UIDs of INBOX whose body text holds str, in one string ("2 5"). */
static void body_search(int64_t id, const char *str, char *out, size_t len)
{
    struct storage_user *u;
    struct storage_mbox mb;
    struct storage_search q = {.op = STORAGE_SEARCH_BODY, .str = str};
    struct storage_uidlist r = {0};
    size_t o = 0;

    out[0] = '\0';
    CHECK_RC(storage_open(data_dir, id, &u), 0);
    if (!u)
        return;
    CHECK_RC(storage_mbox_get(u, "INBOX", &mb), 0);
    CHECK_RC(storage_search(u, mb.id, &q, &r), 0);
    for (size_t i = 0; i < r.n && o < len; i++)
        o += (size_t)snprintf(out + o, len - o, "%s%u", i ? " " : "", r.uids[i]);
    storage_uidlist_free(&r);
    storage_close(u);
}

/* Message i, with pad bytes of body text after its first line; with
 * pad_header, pad bytes of header fields instead (X-Pad:, 70 bytes a
 * line): what the journal keeps of a message is its header block, not its
 * text. */
static bool pad_header;

static char *message(int i, size_t pad)
{
    size_t len = 400 + pad;
    char *m = malloc(len);
    int n = snprintf(m, len,
                     "From: Sender <s@example.org>\r\nTo: r@example.org\r\n"
                     "Subject: journal note %d\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
                     "Message-ID: <j%d@example.org>\r\n",
                     i, i);
    for (size_t k = 0; pad_header && k + 70 <= pad; k += 70)
        n += snprintf(m + n, len - (size_t)n, "X-Pad: %061d\r\n", 0);
    n += snprintf(m + n, len - (size_t)n, "\r\nword%d body text\r\n", i);
    for (size_t k = 0; !pad_header && k < pad; k++)
        m[n++] = (k % 70 == 69) ? '\n' : 'x';
    m[n] = '\0';
    return m;
}

/* A delivery through a light handle, as LMTP makes it. */
static int deliver_light(int64_t id, int i, size_t pad, uint64_t qbytes, uint64_t qmsgs,
                         uint32_t *uid)
{
    struct storage_user *u;
    struct storage_draft *d;
    int64_t mbox;
    char *m = message(i, pad);
    int rc = storage_open_light(data_dir, id, &u);
    if (rc) {
        free(m);
        return rc;
    }
    storage_set_quota(u, qbytes, qmsgs);
    if ((rc = storage_draft_new(u, 0, &d)) == 0) {
        if ((rc = storage_draft_write(d, m, strlen(m))) == 0)
            rc = storage_draft_finish(d);
        if (rc == 0)
            rc = storage_deliver(u, NULL, d, uid, &mbox);
        storage_draft_free(d);
    }
    storage_close_light(u);
    free(m);
    return rc;
}

struct seen {
    int n;
    uint32_t uid[64];
    char subject[64][64];
    int64_t sent[64];
};

static int on_msg(void *arg, const struct storage_msg *m)
{
    struct seen *s = arg;
    if (s->n < 64) {
        const char *p = m->envelope ? strstr(m->envelope, "journal note ") : NULL;
        s->uid[s->n] = m->uid;
        s->sent[s->n] = m->sent_date;
        snprintf(s->subject[s->n], sizeof(s->subject[0]), "%.*s", p ? 16 : 0, p ? p : "");
        s->n++;
    }
    return 0;
}

static void inbox_messages(int64_t id, struct seen *s)
{
    struct storage_user *u;
    struct storage_mbox mb;
    memset(s, 0, sizeof(*s));
    CHECK_RC(storage_open(data_dir, id, &u), 0);
    if (!u)
        return;
    CHECK_RC(storage_mbox_get(u, "INBOX", &mb), 0);
    CHECK_RC(storage_fetch(u, mb.id, NULL, STORAGE_FETCH_ENVELOPE, on_msg, s), 0);
    storage_close(u);
}

/* An account with an index (its first open) and its usage recorded. */
static void account(int64_t id)
{
    struct storage_user *u;
    CHECK_RC(storage_open(data_dir, id, &u), 0);
    storage_close(u);
}

static void test_deliver_and_take_in(void)
{
    char dir[600], name[1024];
    struct seen s;
    uint32_t uid = 99;

    account(1);
    for (int i = 0; i < 3; i++) {
        CHECK_RC(deliver_light(1, i, 0, 0, 0, &uid), 0);
        CHECK(uid == 0); /* given later */
    }
    CHECK(pending_files(1, NULL, 0) == 3);
    user_path(dir, sizeof(dir), 1, "Maildir/new");
    CHECK(count_files(dir, NULL) == 0);
    CHECK(journal_rows(1) == 3);
    /* no search text in the journal: the take-in reads it from the file */
    CHECK(journal_texts(1) == 0);

    /* the open takes them in, in order, with their parse */
    inbox_messages(1, &s);
    CHECK(s.n == 3);
    for (int i = 0; i < 3 && i < s.n; i++) {
        char want[64];
        snprintf(want, sizeof(want), "journal note %d", i);
        CHECK(s.uid[i] == (uint32_t)i + 1);
        CHECK(strncmp(s.subject[i], want, strlen(want)) == 0);
        CHECK(s.sent[i] == 760686745);
    }
    CHECK(count_files(dir, ",U=1,") == 1 && count_files(dir, ",U=3,") == 1);
    CHECK(pending_files(1, NULL, 0) == 0);
    CHECK(journal_rows(1) == 0);
    /* each body's text was taken in, read again from its file */
    {
        char got[64];
        body_search(1, "word1", got, sizeof(got));
        CHECK(strcmp(got, "2") == 0);
        body_search(1, "body text", got, sizeof(got));
        CHECK(strcmp(got, "1 2 3") == 0);
    }
    /* and once only */
    inbox_messages(1, &s);
    CHECK(s.n == 3);
    /* a later delivery through the index follows them */
    {
        struct storage_user *u;
        CHECK_RC(storage_open(data_dir, 1, &u), 0);
        CHECK_RC(deliver_light(1, 3, 0, 0, 0, &uid), 0);
        CHECK(uid == 4); /* the store is open: straight into the index */
        storage_close(u);
    }
    /* the file's name says its UID, its content is the message */
    {
        char *m = message(0, 0);
        FILE *f;
        char buf[1024];
        size_t n = 0;
        user_path(dir, sizeof(dir), 1, "Maildir/new");
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            if (strstr(de->d_name, ",U=1,")) {
                snprintf(name, sizeof(name), "%s/%s", dir, de->d_name);
                if ((f = fopen(name, "rb")) != NULL) {
                    n = fread(buf, 1, sizeof(buf), f);
                    fclose(f);
                }
            }
        }
        if (d)
            closedir(d);
        CHECK(n == strlen(m) && memcmp(buf, m, n) == 0);
        free(m);
    }
}

/* The index took the rows in, then the process died before the journal
 * forgot them: the next drain only forgets them. */
static void test_crash_after_index_commit(void)
{
    char dir[600], p[600], file[300];
    struct seen s;
    uint32_t uid;
    sqlite3 *db;

    account(2);
    CHECK_RC(deliver_light(2, 0, 0, 0, 0, &uid), 0);
    snprintf(dir, sizeof(dir), "%s/pending", data_dir);
    CHECK(pending_files(2, file, sizeof(file)) == 1);
    /* a copy of the journal as it was before the drain */
    snprintf(p, sizeof(p), "%s/deliveries.sqlite", data_dir);
    CHECK(sqlite3_open(p, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "CREATE TABLE keep AS SELECT * FROM pending", NULL, NULL, NULL) ==
          SQLITE_OK);
    sqlite3_close(db);
    inbox_messages(2, &s);
    CHECK(s.n == 1 && s.uid[0] == 1);
    /* the rows and the file back, as if never forgotten */
    CHECK(sqlite3_open(p, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "INSERT INTO pending SELECT * FROM keep; DROP TABLE keep", NULL, NULL,
                       NULL) == SQLITE_OK);
    sqlite3_close(db);
    {
        char nd[600], src[1600], dst[1600] = "";
        user_path(nd, sizeof(nd), 2, "Maildir/new");
        DIR *d = opendir(nd);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL)
            if (strstr(de->d_name, file))
                snprintf(dst, sizeof(dst), "%s/%s", nd, de->d_name);
        if (d)
            closedir(d);
        snprintf(src, sizeof(src), "%s/2.%s", dir, file);
        CHECK(link(dst, src) == 0);
    }
    /* this process learns of them again as a new one would */
    storage_journal_close_all();
    CHECK(journal_rows(2) == 1);
    inbox_messages(2, &s);
    CHECK(s.n == 1 && s.uid[0] == 1);
    CHECK(journal_rows(2) == 0);
    CHECK(pending_files(2, NULL, 0) == 0);
}

/* The drain linked the file into new/ and died before the index
 * committed: the same name is made again, and it is one message. */
static void test_crash_before_index_commit(void)
{
    char dir[600], src[1600], dst[1600], file[300];
    struct seen s;
    uint32_t uid;
    struct stat sb;

    account(3);
    CHECK_RC(deliver_light(3, 0, 0, 0, 0, &uid), 0);
    CHECK(pending_files(3, file, sizeof(file)) == 1);
    snprintf(src, sizeof(src), "%s/pending/3.%s", data_dir, file);
    CHECK(stat(src, &sb) == 0);
    user_path(dir, sizeof(dir), 3, "Maildir/new");
    snprintf(dst, sizeof(dst), "%s/%s,U=1,S=%lld", dir, file, (long long)sb.st_size);
    CHECK(link(src, dst) == 0);
    inbox_messages(3, &s);
    CHECK(s.n == 1 && s.uid[0] == 1);
    CHECK(count_files(dir, NULL) == 1);
    inbox_messages(3, &s);
    CHECK(s.n == 1);
}

static void test_quota(void)
{
    struct storage_user *u;
    uint64_t room_b, room_m;
    uint32_t uid;
    char *m = message(0, 0);
    uint64_t one = strlen(m);

    free(m);
    account(4);
    /* two messages' room: the third is refused, counted from the journal */
    CHECK_RC(deliver_light(4, 0, 0, 2 * one + 10, 0, &uid), 0);
    CHECK(uid == 0);
    CHECK_RC(storage_open_light(data_dir, 4, &u), 0);
    storage_set_quota(u, 2 * one + 10, 5);
    CHECK_RC(storage_quota_room(u, &room_b, &room_m), 0);
    CHECK(room_b == one + 10 && room_m == 4);
    storage_close_light(u);
    CHECK_RC(deliver_light(4, 1, 0, 2 * one + 10, 0, &uid), 0);
    CHECK_RC(deliver_light(4, 2, 0, 2 * one + 10, 0, &uid), STORAGE_E_QUOTA);
    CHECK_RC(deliver_light(4, 2, 0, 0, 2, &uid), STORAGE_E_QUOTA);
    CHECK(journal_rows(4) == 2);
    struct seen s;
    inbox_messages(4, &s);
    CHECK(s.n == 2);
    /* counted by the index now, the same */
    CHECK_RC(deliver_light(4, 2, 0, 2 * one + 10, 0, &uid), STORAGE_E_QUOTA);
    CHECK_RC(deliver_light(4, 2, 0, 3 * one + 10, 0, &uid), 0);
    CHECK(journal_rows(4) == 1);
}

/* With a quota and no usage known, a delivery goes through the index. */
static void test_unknown_usage(void)
{
    char p[600];
    sqlite3 *db;
    uint32_t uid;

    account(5);
    snprintf(p, sizeof(p), "%s/deliveries.sqlite", data_dir);
    CHECK(sqlite3_open(p, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "DELETE FROM usage WHERE account = 5", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    storage_journal_close_all(); /* forget what was noted */
    CHECK_RC(deliver_light(5, 0, 0, 1000000, 0, &uid), 0);
    CHECK(uid == 1);
    /* without a quota the journal needs no usage */
    CHECK_RC(deliver_light(5, 1, 0, 0, 0, &uid), 0);
    CHECK(uid == 0);
    struct seen s;
    inbox_messages(5, &s);
    CHECK(s.n == 2 && s.uid[1] == 2);
    CHECK(journal_rows(5) == 0);
}

/* Big bodies, more rows than one drain transaction takes. */
static void test_many(void)
{
    struct seen s;
    uint32_t uid;
    int n = 300;
    account(6);
    for (int i = 0; i < n; i++)
        CHECK_RC(deliver_light(6, i, i == 7 ? 200000 : 0, 0, 0, &uid), 0);
    CHECK(journal_rows(6) == n);
    {
        struct storage_user *u;
        struct storage_status st;
        struct storage_mbox mb;
        CHECK_RC(storage_open(data_dir, 6, &u), 0);
        CHECK_RC(storage_mbox_get(u, "INBOX", &mb), 0);
        CHECK_RC(storage_mbox_status(u, mb.id, &st), 0);
        CHECK(st.messages == (uint32_t)n && st.uidnext == (uint32_t)n + 1);
        storage_close(u);
    }
    inbox_messages(6, &s);
    CHECK(s.n == 64 && s.uid[63] == 64);
    CHECK(journal_rows(6) == 0);
}

/* A file in pending/ that no row names (the journal never committed it)
 * goes when a process that journals opens the journal; one a row names
 * stays, and is taken in. */
static void test_sweep(void)
{
    char p[600];
    struct seen s;
    uint32_t uid;
    FILE *f;
    account(7);
    CHECK_RC(deliver_light(7, 0, 0, 0, 0, &uid), 0);
    snprintf(p, sizeof(p), "%s/pending/7.1.M1P1Q1.orphan", data_dir);
    if ((f = fopen(p, "w")) != NULL) {
        fputs("Subject: never committed\r\n\r\n", f);
        fclose(f);
    }
    CHECK(pending_files(7, NULL, 0) == 2);
    storage_journal_close_all();
    inbox_messages(7, &s);
    CHECK(access(p, F_OK) != 0);
    CHECK(s.n == 1 && strncmp(s.subject[0], "journal note 0", 14) == 0);
    CHECK(pending_files(7, NULL, 0) == 0);
}

/* Past journal_per_account waiting, a delivery goes through the index,
 * which takes them in first; the next waits again, also when the light
 * handle stayed open with its connection (light_keep_*). */
static void test_per_account_cap(void)
{
    struct seen s;
    uint32_t uids[8];
    account(8);
    storage_set_limits(
        &(struct storage_limits){.delivery_journal = true, .journal_per_account = 4});
    for (int i = 0; i < 6; i++)
        CHECK_RC(deliver_light(8, i, 0, 0, 0, &uids[i]), 0);
    CHECK(uids[0] == 0 && uids[3] == 0 && uids[4] == 5 && uids[5] == 0);
    CHECK(journal_rows(8) == 1);
    storage_set_limits(&(struct storage_limits){.delivery_journal = true,
                                                .journal_per_account = 1,
                                                .light_keep_max = 4,
                                                .light_keep_ms = 600000});
    CHECK_RC(deliver_light(8, 6, 0, 0, 0, &uids[6]), 0); /* takes one in, stays open */
    CHECK_RC(deliver_light(8, 7, 0, 0, 0, &uids[7]), 0); /* the journal again */
    CHECK(uids[6] == 7 && uids[7] == 0);
    CHECK(journal_rows(8) == 1);
    storage_set_limits(
        &(struct storage_limits){.delivery_journal = true, .journal_per_account = 1000});
    storage_light_expire(); /* past light_keep_max 0 now: closed */
    inbox_messages(8, &s);
    CHECK(s.n == 8);
    for (int i = 0; i < 8 && i < s.n; i++) {
        char want[64];
        snprintf(want, sizeof(want), "journal note %d", i);
        CHECK(s.uid[i] == (uint32_t)i + 1 && strncmp(s.subject[i], want, strlen(want)) == 0);
    }
}

/* The journal's WAL, in bytes; 0 when there is none. */
static long long wal_size(void)
{
    char p[600];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/pending/../deliveries.sqlite-wal", data_dir);
    return stat(p, &sb) == 0 ? (long long)sb.st_size : 0;
}

/* journal.c's JOURNAL_CKPT_PAGES and JOURNAL_CKPT_INLINE; a WAL page is
 * its 4,096 bytes and a 24-byte frame header. */
#define CKPT_PAGES 1000
#define CKPT_INLINE 8000
#define WAL_FRAME 4120LL

static void test_checkpoint(void)
{
    uint32_t uid;
    int i = 0, n;
    long long before, most = 0;

    account(9);
    account(10);
    storage_journal_checkpoint(); /* what the tests before left due */
    CHECK(!storage_journal_checkpoint_due());
    /* rows of about 20 kB (their header blocks): the WAL grows past
     * CKPT_PAGES and a checkpoint is due; the writer did not run one */
    pad_header = true;
    while (!storage_journal_checkpoint_due() && i < 1000)
        CHECK_RC(deliver_light(9, i++, 20000, 0, 0, &uid), 0);
    CHECK(storage_journal_checkpoint_due(), "a checkpoint is due once the WAL has grown");
    CHECK(wal_size() >= CKPT_PAGES * WAL_FRAME, "the writer left the WAL as it grew");
    before = wal_size();
    storage_journal_checkpoint();
    CHECK(!storage_journal_checkpoint_due(), "none is due after storage_journal_checkpoint");
    for (n = 0; n < 5; n++)
        CHECK_RC(deliver_light(9, i++, 20000, 0, 0, &uid), 0);
    CHECK(wal_size() == before, "the next commits write the WAL again from its start");
    /* no checkpoint job: rows of about 60 kB, the WAL bounded all along */
    storage_journal_checkpoint();
    for (n = 0; n < 800; n++) {
        CHECK_RC(deliver_light(10, n, 60000, 0, 0, &uid), 0);
        if (wal_size() > most)
            most = wal_size();
    }
    CHECK(most >= (CKPT_INLINE - 100) * WAL_FRAME, "the WAL reached the writer's own bound");
    CHECK(most <= (CKPT_INLINE + 1000) * WAL_FRAME, "the WAL stayed within it");
    storage_journal_checkpoint();
    pad_header = false;
}

int main(void)
{
    if (check_mkdtemp(data_dir, sizeof(data_dir), "coffre-journal") != 0)
        return 1;
    storage_set_limits(
        &(struct storage_limits){.delivery_journal = true, .journal_per_account = 1000});
    test_deliver_and_take_in();
    test_crash_after_index_commit();
    test_crash_before_index_commit();
    test_quota();
    test_unknown_usage();
    test_many();
    test_sweep();
    test_per_account_cap();
    test_checkpoint();
    storage_journal_close_all();
    check_rmtree(data_dir);
    printf("%s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
