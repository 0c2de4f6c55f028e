/* Unit tests of the storage API (storage/storage.h): mailboxes, names and
 * path safety, append/deliver/read, flags and modseq, flag sync to file
 * names, search (incl. full text), copy/move, expunge and UID reuse, quota,
 * rename, notifications, rebuild of a lost/damaged index, external drops. */
#include <sqlite3.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "storage/internal.h"
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

static const char msg_a[] = "From: Alice <alice@example.org>\n"
                            "To: Bob <bob@example.org>\n"
                            "Subject: Quarterly report\n"
                            "Date: Mon, 7 Feb 1994 21:52:25 -0800\n"
                            "Message-ID: <a1@example.org>\n"
                            "X-Color: turquoise\n"
                            "\n"
                            "The pineapple harvest was excellent this year.\n";
static const char msg_b[] = "From: Carol <carol@example.net>\r\n"
                            "To: Bob <bob@example.org>\r\n"
                            "Cc: Dave <dave@example.com>\r\n"
                            "Subject: Lunch?\r\n"
                            "Date: Tue, 8 Feb 1994 12:00:00 +0000\r\n"
                            "MIME-Version: 1.0\r\n"
                            "Content-Type: multipart/mixed; boundary=XX\r\n"
                            "\r\n"
                            "--XX\r\n"
                            "Content-Type: text/plain\r\n"
                            "\r\n"
                            "Shall we meet at the noodle bar?\r\n"
                            "--XX\r\n"
                            "Content-Type: text/plain; name=a.txt\r\n"
                            "\r\n"
                            "attachment body\r\n"
                            "--XX--\r\n";
static const char msg_c[] =
    "From: Eve <eve@example.com>\r\n"
    "Subject: =?UTF-8?Q?caf=C3=A9_menu?=\r\n"
    "\r\n"
    "Nothing about fruit here, only a big body: "
    "0123456789012345678901234567890123456789012345678901234567890123456789\r\n";

static struct storage_range all_r = {1, UINT32_MAX};
static const struct storage_uidset all_set = {1, &all_r};

static int64_t mbox_id(struct storage_user *u, const char *name)
{
    struct storage_mbox m;
    if (storage_mbox_get(u, name, &m) != 0)
        return -1;
    return m.id;
}

static char *read_fd(int fd, uint64_t off, uint64_t len)
{
    char *p = malloc(len + 1);
    if (!p)
        return NULL;
    if (pread(fd, p, len, (off_t)off) != (ssize_t)len) {
        free(p);
        return NULL;
    }
    p[len] = '\0';
    return p;
}

static char *read_msg(struct storage_user *u, int64_t mbox, uint32_t uid, uint64_t *size)
{
    int fd;
    char *p;
    if (storage_msg_open(u, mbox, uid, &fd, size) != 0)
        return NULL;
    p = read_fd(fd, 0, *size);
    close(fd);
    return p;
}

/* Whether the message reads, and (needle not NULL) holds needle. */
static bool msg_has(struct storage_user *u, int64_t mbox, uint32_t uid, const char *needle)
{
    uint64_t size;
    char *p = read_msg(u, mbox, uid, &size);
    bool ok = p != NULL && (needle == NULL || strstr(p, needle) != NULL);

    free(p);
    return ok;
}

static int count_files(const char *dir, const char *must_contain)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.' && (!must_contain || strstr(de->d_name, must_contain)))
            n++;
    closedir(d);
    return n;
}

static void user_path(char *out, size_t len, int64_t id, const char *rest)
{
    snprintf(out, len, "%s/users/%" PRId64 "/%s", data_dir, id, rest);
}

/* Writes msg into the new file rest of account id, as another program
 * (an MDA, a mail client) would: 0, or -1 when it cannot. */
static int drop_file(int64_t id, const char *rest, const char *msg)
{
    char p[1024];
    ssize_t n;
    int fd;

    user_path(p, sizeof(p), id, rest);
    fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return -1;
    n = write(fd, msg, strlen(msg));
    close(fd);
    return n == (ssize_t)strlen(msg) ? 0 : -1;
}

/* ---- names ---- */

static void test_names(void)
{
    static const char *const bad[] = {
        "",        "/",          "/abs",    "trailing/", "a//b",  ".",         "..",
        "a/../b",  "../x",       "a/..",    "./a",       "a/.",   "with\ttab", "nl\nx",
        "del\x7f", "c1\xc2\x85", "bad\xff", "\xc0\xaf",  "star*", "pct%",      "over\xe0\x80\xaf",
    };
    char longname[STORAGE_MBOX_NAME_MAX + 2], deep[128];
    struct storage_user *u;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[128] = "";
        if (storage_name_check(bad[i], err, sizeof(err)) != STORAGE_E_BADNAME) {
            fprintf(stderr, "name accepted: \"%s\"\n", bad[i]);
            failures++;
        }
        CHECK(err[0] != '\0');
    }
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    CHECK_RC(storage_name_check(longname, NULL, 0), STORAGE_E_BADNAME);
    deep[0] = '\0';
    for (int i = 0; i < STORAGE_MBOX_DEPTH_MAX + 1; i++)
        strcat(deep, i ? "/d" : "d");
    CHECK_RC(storage_name_check(deep, NULL, 0), STORAGE_E_BADNAME);

    CHECK_RC(storage_name_check("INBOX", NULL, 0), 0);
    CHECK_RC(storage_name_check("Archive/2024", NULL, 0), 0);
    CHECK_RC(storage_name_check("a.b/c..d/.hidden", NULL, 0), 0);
    CHECK_RC(storage_name_check("Entw\xc3\xbcrfe", NULL, 0), 0);

    CHECK(storage_pattern_match("*", "a/b/c"));
    CHECK(storage_pattern_match("%", "a"));
    CHECK(!storage_pattern_match("%", "a/b"));
    CHECK(storage_pattern_match("a/%", "a/b"));
    CHECK(!storage_pattern_match("a/%", "a/b/c"));
    CHECK(storage_pattern_match("a/*", "a/b/c"));
    CHECK(storage_pattern_match("inbox", "INBOX"));
    CHECK(storage_pattern_match("Inbox*", "INBOX"));
    CHECK(storage_pattern_match("inbox%", "INBOX"));
    CHECK(storage_pattern_match("iNbOx/%", "INBOX/Sub"));
    CHECK(!storage_pattern_match("Inbox*", "INBOXES"));
    CHECK(storage_pattern_match("Inbox*", "Inboxes"));
    CHECK(!storage_pattern_match("inbox*", "Inboxes"));
    CHECK(storage_pattern_match("*o*", "Foo"));
    CHECK(!storage_pattern_match("*x*", "Foo"));
    CHECK(storage_pattern_match("%/%", "a/b"));
    CHECK(storage_pattern_match("%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%x",
                                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaax"));

    /* path safety: every refused name is refused by create/rename/get, and
     * nothing appears outside the Maildir */
    CHECK_RC(storage_open(data_dir, 90, &u), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_RC(storage_mbox_create(u, bad[i], 0), STORAGE_E_BADNAME);
        CHECK_RC(storage_mbox_rename(u, "Archive", bad[i]), STORAGE_E_BADNAME);
        CHECK_RC(storage_subscribe(u, bad[i], true), STORAGE_E_BADNAME);
    }
    CHECK_RC(storage_mbox_create(u, longname, 0), STORAGE_E_BADNAME);
    {
        char p[1024];
        struct stat sb;
        snprintf(p, sizeof(p), "%s/users/x", data_dir);
        CHECK(stat(p, &sb) < 0);
        snprintf(p, sizeof(p), "%s/x", data_dir);
        CHECK(stat(p, &sb) < 0);
        snprintf(p, sizeof(p), "%s/users/90/x", data_dir);
        CHECK(stat(p, &sb) < 0);
    }
    /* dots are escaped on disk */
    CHECK_RC(storage_mbox_create(u, "a.b/c", 0), 0);
    {
        char p[1024];
        struct stat sb;
        user_path(p, sizeof(p), 90, "Maildir/.a%2Eb.c/cur");
        CHECK(stat(p, &sb) == 0);
        user_path(p, sizeof(p), 90, "Maildir/.a%2Eb/cur");
        CHECK(stat(p, &sb) == 0);
    }
    storage_close(u);
}

/* ---- mailboxes ---- */

struct listacc {
    char names[64][STORAGE_MBOX_NAME_MAX + 1];
    unsigned special[64];
    bool sub[64];
    int n;
};

static int on_list(void *arg, const struct storage_mbox *m)
{
    struct listacc *a = arg;
    if (a->n < 64) {
        snprintf(a->names[a->n], sizeof(a->names[0]), "%s", m->name);
        a->special[a->n] = m->special_use;
        a->sub[a->n] = m->subscribed;
        a->n++;
    }
    return 0;
}

static int list_has(const struct listacc *a, const char *name)
{
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->names[i], name) == 0)
            return i;
    return -1;
}

static void test_mailboxes(void)
{
    struct storage_user *u, *u2;
    struct listacc a = {0};
    int i;

    CHECK_RC(storage_open(data_dir, 1, &u), 0);
    CHECK_RC(storage_open(data_dir, 1, &u2), 0);
    CHECK(u == u2); /* shared handle */
    storage_close(u2);

    CHECK_RC(storage_mbox_list(u, "*", false, NULL, on_list, &a), 0);
    CHECK(a.n == 6);
    CHECK((i = list_has(&a, "INBOX")) >= 0);
    CHECK((i = list_has(&a, "Drafts")) >= 0 && a.special[i] == STORAGE_SPECIAL_DRAFTS);
    CHECK((i = list_has(&a, "Sent")) >= 0 && a.special[i] == STORAGE_SPECIAL_SENT);
    CHECK((i = list_has(&a, "Trash")) >= 0 && a.special[i] == STORAGE_SPECIAL_TRASH);
    CHECK((i = list_has(&a, "Junk")) >= 0 && a.special[i] == STORAGE_SPECIAL_JUNK);
    CHECK((i = list_has(&a, "Archive")) >= 0 && a.special[i] == STORAGE_SPECIAL_ARCHIVE);

    CHECK_RC(storage_mbox_create(u, "Archive/2024", 0), 0);
    CHECK_RC(storage_mbox_create(u, "Archive/2024", 0), STORAGE_E_EXISTS);
    CHECK_RC(storage_mbox_create(u, "inbox", 0), STORAGE_E_EXISTS);
    CHECK_RC(storage_mbox_create(u, "Projects/x/y", 0), 0); /* parents created */
    CHECK(mbox_id(u, "Projects") > 0);
    CHECK(mbox_id(u, "Projects/x") > 0);
    CHECK(mbox_id(u, "inbox") == mbox_id(u, "INBOX"));

    memset(&a, 0, sizeof(a));
    CHECK_RC(storage_mbox_list(u, "%", false, NULL, on_list, &a), 0);
    CHECK(a.n == 7 && list_has(&a, "Projects") >= 0 && list_has(&a, "Archive/2024") < 0);
    memset(&a, 0, sizeof(a));
    CHECK_RC(storage_mbox_list(u, "Archive/%", false, NULL, on_list, &a), 0);
    CHECK(a.n == 1 && list_has(&a, "Archive/2024") == 0);
    memset(&a, 0, sizeof(a));
    CHECK_RC(storage_mbox_list(u, "Projects/*", false, NULL, on_list, &a), 0);
    CHECK(a.n == 2);
    {
        struct storage_mbox m;
        CHECK_RC(storage_mbox_get(u, "Projects", &m), 0);
        CHECK(m.has_children);
        CHECK_RC(storage_mbox_get(u, "Projects/x/y", &m), 0);
        CHECK(!m.has_children);
        CHECK_RC(storage_mbox_get(u, "Nope", &m), STORAGE_E_NOMBOX);
    }

    /* subscriptions, also of names that do not exist */
    CHECK_RC(storage_subscribe(u, "Archive/2024", true), 0);
    CHECK_RC(storage_subscribe(u, "Ghost", true), 0);
    memset(&a, 0, sizeof(a));
    CHECK_RC(storage_mbox_list(u, "*", true, NULL, on_list, &a), 0);
    CHECK(list_has(&a, "Archive/2024") >= 0 && list_has(&a, "Ghost") >= 0);
    CHECK(list_has(&a, "Projects") < 0);
    CHECK_RC(storage_subscribe(u, "Ghost", false), 0);
    memset(&a, 0, sizeof(a));
    CHECK_RC(storage_mbox_list(u, "*", true, NULL, on_list, &a), 0);
    CHECK(list_has(&a, "Ghost") < 0);

    /* delete */
    CHECK_RC(storage_mbox_delete(u, "INBOX"), STORAGE_E_NOPERM);
    CHECK_RC(storage_mbox_delete(u, "Projects"), STORAGE_E_CHILDREN);
    CHECK_RC(storage_mbox_delete(u, "Nope"), STORAGE_E_NOMBOX);
    CHECK_RC(storage_mbox_delete(u, "Projects/x/y"), 0);
    CHECK(mbox_id(u, "Projects/x/y") < 0);
    {
        char p[1024];
        struct stat sb;
        user_path(p, sizeof(p), 1, "Maildir/.Projects.x.y");
        CHECK(stat(p, &sb) < 0);
    }
    storage_close(u);
}

/* ---- append / read / fetch ---- */

struct fetchacc {
    int n;
    uint32_t uids[64];
    unsigned flags[64];
    uint64_t modseq[64];
    char kw[64][128];
    bool have_env;
};

static int on_fetch(void *arg, const struct storage_msg *m)
{
    struct fetchacc *a = arg;
    if (a->n < 64) {
        a->uids[a->n] = m->uid;
        a->flags[a->n] = m->flags;
        a->modseq[a->n] = m->modseq;
        snprintf(a->kw[a->n], sizeof(a->kw[0]), "%s", m->keywords);
        if (m->envelope && strstr(m->envelope, "Quarterly report"))
            a->have_env = true;
        a->n++;
    }
    return 0;
}

static void test_append_read(void)
{
    struct storage_user *u;
    struct storage_status st;
    uint32_t uid = 0;
    uint64_t size;
    int64_t inbox;
    char *p;

    CHECK_RC(storage_open(data_dir, 2, &u), 0);
    inbox = mbox_id(u, "INBOX");
    CHECK(inbox > 0);
    CHECK_RC(
        storage_append(u, inbox, msg_a, strlen(msg_a), STORAGE_FLAG_SEEN, NULL, 0, 1000000, &uid),
        0);
    CHECK(uid == 1);
    p = read_msg(u, inbox, 1, &size);
    CHECK(p != NULL);
    if (p) {
        /* LF became CRLF: size is the RFC 822 size */
        size_t lines = 0;
        for (const char *q = msg_a; *q; q++)
            lines += *q == '\n';
        CHECK(size == strlen(msg_a) + lines);
        CHECK(strstr(p, "Subject: Quarterly report\r\n") != NULL);
        CHECK(strstr(p, "\n\n") == NULL);
        free(p);
    }
    {
        const char *kw[] = {"$Important", "work"};
        CHECK_RC(storage_append(u, inbox, msg_b, strlen(msg_b), 0, kw, 2, 0, &uid), 0);
        CHECK(uid == 2);
        const char *badkw[] = {"bad word"};
        CHECK_RC(storage_append(u, inbox, msg_b, strlen(msg_b), 0, badkw, 1, 0, &uid),
                 STORAGE_E_INVAL);
    }
    /* streamed in odd chunks, CR and LF split across chunks */
    {
        struct storage_draft *d;
        CHECK_RC(storage_draft_new(u, 0, &d), 0);
        for (size_t i = 0; i < strlen(msg_c); i += 7) {
            size_t n = strlen(msg_c) - i < 7 ? strlen(msg_c) - i : 7;
            CHECK_RC(storage_draft_write(d, msg_c + i, n), 0);
        }
        CHECK_RC(storage_draft_finish(d), 0);
        CHECK(storage_draft_size(d) == strlen(msg_c));
        CHECK_RC(storage_save(u, inbox, d, STORAGE_FLAG_FLAGGED, NULL, 0, 0, &uid), 0);
        CHECK(uid == 3);
        storage_draft_free(d);
        p = read_msg(u, inbox, 3, &size);
        CHECK(p && size == strlen(msg_c) && memcmp(p, msg_c, size) == 0);
        free(p);
    }
    /* size limit */
    {
        struct storage_draft *d;
        CHECK_RC(storage_draft_new(u, 10, &d), 0);
        CHECK_RC(storage_draft_write(d, msg_a, strlen(msg_a)), STORAGE_E_TOOBIG);
        storage_draft_free(d);
    }
    {
        char tmp[1024];
        user_path(tmp, sizeof(tmp), 2, "Maildir/tmp");
        CHECK(count_files(tmp, NULL) == 0); /* drafts cleaned up */
    }

    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.messages == 3 && st.unseen == 2 && st.uidnext == 4 && st.uidvalidity > 0);

    /* metadata from the index */
    {
        struct fetchacc a = {0};
        CHECK_RC(storage_fetch(u, inbox, NULL, STORAGE_FETCH_ENVELOPE, on_fetch, &a), 0);
        CHECK(a.n == 3 && a.uids[0] == 1 && a.uids[2] == 3 && a.have_env);
        CHECK(a.flags[0] == STORAGE_FLAG_SEEN && a.flags[2] == STORAGE_FLAG_FLAGGED);
        CHECK(strcmp(a.kw[1], "$Important work") == 0);
        struct storage_range r = {2, 2};
        struct storage_uidset s = {1, &r};
        memset(&a, 0, sizeof(a));
        CHECK_RC(storage_fetch(u, inbox, &s, 0, on_fetch, &a), 0);
        CHECK(a.n == 1 && a.uids[0] == 2);
        CHECK_RC(storage_fetch(u, 9999, &s, 0, on_fetch, &a), STORAGE_E_NOMBOX);
    }
    {
        struct storage_uidlist l;
        CHECK_RC(storage_uids(u, inbox, &l), 0);
        CHECK(l.n == 3 && l.uids[0] == 1 && l.uids[2] == 3);
        storage_uidlist_free(&l);
    }
    /* sections */
    {
        int fd;
        uint64_t off, len;
        CHECK_RC(storage_msg_section(u, inbox, 2, "1", &fd, &off, &len), 0);
        if (fd >= 0) {
            p = read_fd(fd, off, len);
            CHECK(p && strcmp(p, "Shall we meet at the noodle bar?") == 0);
            free(p);
            close(fd);
        }
        CHECK_RC(storage_msg_section(u, inbox, 2, "HEADER", &fd, &off, &len), 0);
        if (fd >= 0) {
            p = read_fd(fd, off, len);
            CHECK(p && strncmp(p, "From: Carol", 11) == 0 && strstr(p, "\r\n\r\n"));
            free(p);
            close(fd);
        }
        CHECK_RC(storage_msg_section(u, inbox, 2, "7", &fd, &off, &len), STORAGE_E_INVAL);
        CHECK_RC(storage_msg_section(u, inbox, 77, "", &fd, &off, &len), STORAGE_E_NOMSG);
        const char *names[] = {"subject", "cc"};
        char *out;
        size_t outlen;
        CHECK_RC(storage_msg_header_fields(u, inbox, 2, "", names, 2, false, &out, &outlen), 0);
        CHECK(out && strcmp(out, "Cc: Dave <dave@example.com>\r\nSubject: Lunch?\r\n\r\n") == 0);
        free(out);
    }
    storage_close(u);
}

/* ---- flags, modseq, sync to files ---- */

static int on_changed(void *arg, const struct storage_msg *m)
{
    (*(int *)arg)++;
    return 0;
}

static void test_flags(void)
{
    struct storage_user *u;
    int64_t inbox;
    uint32_t uid;
    struct storage_status st;
    uint64_t m0, m1, m2;

    CHECK_RC(storage_open(data_dir, 3, &u), 0);
    inbox = mbox_id(u, "INBOX");
    for (int i = 0; i < 5; i++)
        CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    m0 = st.highestmodseq;

    struct storage_range r = {2, 4};
    struct storage_uidset s = {1, &r};
    int changed = 0;
    CHECK_RC(storage_store(u, inbox, &s, STORAGE_STORE_ADD, STORAGE_FLAG_SEEN, NULL, 0, 0, NULL,
                           on_changed, &changed),
             0);
    CHECK(changed == 3);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    m1 = st.highestmodseq;
    CHECK(m1 > m0 && st.unseen == 2);
    /* no-op store: nothing changes, modseq stays */
    changed = 0;
    CHECK_RC(storage_store(u, inbox, &s, STORAGE_STORE_ADD, STORAGE_FLAG_SEEN, NULL, 0, 0, NULL,
                           on_changed, &changed),
             0);
    CHECK(changed == 0);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.highestmodseq == m1);

    const char *kw[] = {"Work", "$Label1"};
    CHECK_RC(storage_store(u, inbox, NULL, STORAGE_STORE_ADD, STORAGE_FLAG_FLAGGED, kw, 2, 0, NULL,
                           NULL, NULL),
             0);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    m2 = st.highestmodseq;
    CHECK(m2 > m1);
    {
        struct fetchacc a = {0};
        CHECK_RC(storage_fetch(u, inbox, NULL, 0, on_fetch, &a), 0);
        CHECK(a.n == 5);
        CHECK(a.flags[0] == STORAGE_FLAG_FLAGGED);
        CHECK(a.flags[2] == (STORAGE_FLAG_FLAGGED | STORAGE_FLAG_SEEN));
        CHECK(strcmp(a.kw[0], "$Label1 Work") == 0);
        CHECK(a.modseq[0] == m2);
    }
    const char *kwr[] = {"work"};
    CHECK_RC(storage_store(u, inbox, NULL, STORAGE_STORE_REMOVE, 0, kwr, 1, 0, NULL, NULL, NULL),
             0);
    /* SET replaces flags and keywords */
    struct storage_range r5 = {5, 5};
    struct storage_uidset s5 = {1, &r5};
    CHECK_RC(storage_store(u, inbox, &s5, STORAGE_STORE_SET, STORAGE_FLAG_ANSWERED, NULL, 0, 0,
                           NULL, NULL, NULL),
             0);
    {
        struct fetchacc a = {0};
        CHECK_RC(storage_fetch(u, inbox, NULL, 0, on_fetch, &a), 0);
        CHECK(strcmp(a.kw[0], "$Label1") == 0);
        CHECK(a.flags[4] == STORAGE_FLAG_ANSWERED && a.kw[4][0] == '\0');
    }
    /* CONDSTORE: UNCHANGEDSINCE */
    {
        struct storage_uidlist failed = {0};
        struct fetchacc a = {0};
        CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
        CHECK_RC(storage_store(u, inbox, &s5, STORAGE_STORE_ADD, STORAGE_FLAG_DRAFT, NULL, 0, 1,
                               &failed, NULL, NULL),
                 0);
        CHECK(failed.n == 1 && failed.uids[0] == 5);
        storage_uidlist_free(&failed);
        /* changes since */
        struct storage_uidlist van = {0};
        changed = 0;
        CHECK_RC(storage_changes(u, inbox, m2, on_changed, &changed, &van), 0);
        CHECK(changed == 5 && van.n == 0);
        storage_uidlist_free(&van);
        CHECK_RC(storage_fetch(u, inbox, &s5, 0, on_fetch, &a), 0);
        CHECK(a.flags[0] == STORAGE_FLAG_ANSWERED);
    }

    /* file names catch up in a batch */
    {
        char cur[1024];
        size_t done = 0, left = 99;
        user_path(cur, sizeof(cur), 3, "Maildir/cur");
        CHECK(count_files(cur, ":2,FS") == 0);
        CHECK_RC(storage_sync_flags(u, 2, &done, &left), 0);
        CHECK(done == 2 && left == 3);
        CHECK_RC(storage_sync_flags(u, 0, &done, &left), 0);
        CHECK(done == 3 && left == 0);
        CHECK(count_files(cur, ":2,FS") == 3);
        CHECK(count_files(cur, ":2,F") == 4); /* ":2,F" and ":2,FS" */
        CHECK(count_files(cur, ":2,R") == 1);
        /* readable after the renames */
        CHECK(msg_has(u, inbox, 3, NULL));
    }
    storage_close(u);

    /* modseq never goes back after reopen */
    CHECK_RC(storage_open(data_dir, 3, &u), 0);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.highestmodseq >= m2);
    storage_close(u);
}

/* The name of the file of uid in dir (of account id) into out: 0, or -1
 * when there is none. */
static int uid_file(int64_t id, const char *dir, uint32_t uid, char *out, size_t len)
{
    char p[1024], tag[32];
    struct dirent *de;
    DIR *d;
    int rc = -1;

    user_path(p, sizeof(p), id, dir);
    snprintf(tag, sizeof(tag), ",U=%u,", (unsigned)uid);
    if (!(d = opendir(p)))
        return -1;
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, tag)) {
            snprintf(out, len, "%s", de->d_name);
            rc = 0;
            break;
        }
    closedir(d);
    return rc;
}

/* uid's file name in cur/ with the Maildir flags letters, as the flag
 * sync writes it. */
static void uid_name_with(int64_t id, uint32_t uid, const char *letters, char *out, size_t len)
{
    char name[400], *info;

    out[0] = '\0';
    if (uid_file(id, "Maildir/cur", uid, name, sizeof(name)) != 0 &&
        uid_file(id, "Maildir/new", uid, name, sizeof(name)) != 0)
        return;
    if ((info = strstr(name, ":2,")) != NULL)
        *info = '\0';
    snprintf(out, len, "%s:2,%s", name, letters);
}

/* A flag sync that fails after some of its renames leaves the files with
 * the names the index holds; a rescan then finds nothing renamed, and the
 * flags stored since stay. A name with the flags the index holds (a sync
 * whose commit a crash lost) is taken without a change of the message. */
static void test_sync_rollback(void)
{
    struct storage_user *u;
    struct storage_range r1 = {1, 1}, r12 = {1, 2};
    struct storage_uidset s1 = {1, &r1}, s12 = {1, &r12};
    struct storage_status st;
    char name[600], cur[600], planted[700], from[2048], to[2048];
    int64_t inbox;
    uint32_t uid;
    uint64_t ms;

    CHECK_RC(storage_open(data_dir, 23, &u), 0);
    inbox = mbox_id(u, "INBOX");
    for (int i = 0; i < 2; i++)
        CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    CHECK_RC(storage_sync_flags(u, 0, NULL, NULL), 0);
    CHECK_RC(storage_store(u, inbox, &s12, STORAGE_STORE_ADD, STORAGE_FLAG_SEEN, NULL, 0, 0, NULL,
                           NULL, NULL),
             0);
    /* uid 2's new name taken by a directory: its rename fails, after uid
     * 1's */
    uid_name_with(23, 2, "S", name, sizeof(name));
    snprintf(planted, sizeof(planted), "Maildir/cur/%s", name);
    user_path(to, sizeof(to), 23, planted);
    CHECK(name[0] && mkdir(to, 0700) == 0);
    CHECK(storage_sync_flags(u, 0, NULL, NULL) != 0);
    uid_name_with(23, 1, "S", name, sizeof(name));
    CHECK(uid_file(23, "Maildir/cur", 1, cur, sizeof(cur)) == 0 && strcmp(cur, name) != 0);
    rmdir(to);
    /* stored since: a rescan must not take uid 1's flags from a name */
    CHECK_RC(storage_store(u, inbox, &s1, STORAGE_STORE_SET, STORAGE_FLAG_FLAGGED, NULL, 0, 0, NULL,
                           NULL, NULL),
             0);
    CHECK_RC(storage_rescan(u, 0), 0);
    {
        struct fetchacc a = {0};
        CHECK_RC(storage_fetch(u, inbox, &s12, 0, on_fetch, &a), 0);
        CHECK(a.n == 2 && a.flags[0] == STORAGE_FLAG_FLAGGED && a.flags[1] == STORAGE_FLAG_SEEN);
    }

    /* the sync's rename of uid 1 done, its commit lost: the same flags */
    uid_name_with(23, 1, "F", name, sizeof(name));
    CHECK(uid_file(23, "Maildir/cur", 1, cur, sizeof(cur)) == 0);
    snprintf(planted, sizeof(planted), "Maildir/cur/%s", cur);
    user_path(from, sizeof(from), 23, planted);
    snprintf(planted, sizeof(planted), "Maildir/cur/%s", name);
    user_path(to, sizeof(to), 23, planted);
    CHECK(rename(from, to) == 0);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    ms = st.highestmodseq;
    CHECK_RC(storage_rescan(u, 0), 0);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.highestmodseq == ms);
    {
        struct fetchacc a = {0};
        CHECK_RC(storage_fetch(u, inbox, &s1, 0, on_fetch, &a), 0);
        CHECK(a.n == 1 && a.flags[0] == STORAGE_FLAG_FLAGGED && a.modseq[0] < ms + 1);
        CHECK(msg_has(u, inbox, 1, NULL));
    }
    storage_close(u);
}

/* ---- search ---- */

static size_t search(struct storage_user *u, int64_t mbox, const struct storage_search *q,
                     uint32_t *first)
{
    struct storage_uidlist l;
    size_t n;
    if (storage_search(u, mbox, q, &l) != 0)
        return (size_t)-1;
    n = l.n;
    if (first)
        *first = n ? l.uids[0] : 0;
    storage_uidlist_free(&l);
    return n;
}

static void test_search(void)
{
    struct storage_user *u;
    int64_t inbox;
    uint32_t uid, first;

    CHECK_RC(storage_open(data_dir, 4, &u), 0);
    inbox = mbox_id(u, "INBOX");
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), STORAGE_FLAG_SEEN, NULL, 0, 1000, &uid),
             0);
    const char *kw[] = {"Work"};
    CHECK_RC(storage_append(u, inbox, msg_b, strlen(msg_b), 0, kw, 1, 2000, &uid), 0);
    CHECK_RC(
        storage_append(u, inbox, msg_c, strlen(msg_c), STORAGE_FLAG_FLAGGED, NULL, 0, 3000, &uid),
        0);

    struct storage_search q = {.op = STORAGE_SEARCH_ALL};
    CHECK(search(u, inbox, &q, NULL) == 3);
    q = (struct storage_search){.op = STORAGE_SEARCH_FLAGS, .flags = STORAGE_FLAG_SEEN};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 1);
    q = (struct storage_search){.op = STORAGE_SEARCH_UNFLAGS, .flags = STORAGE_FLAG_SEEN};
    CHECK(search(u, inbox, &q, &first) == 2 && first == 2);
    q = (struct storage_search){.op = STORAGE_SEARCH_KEYWORD, .str = "work"};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 2);
    q = (struct storage_search){.op = STORAGE_SEARCH_UNKEYWORD, .str = "Work"};
    CHECK(search(u, inbox, &q, NULL) == 2);
    q = (struct storage_search){.op = STORAGE_SEARCH_BEFORE, .num = 2000};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 1);
    q = (struct storage_search){.op = STORAGE_SEARCH_SINCE, .num = 2000};
    CHECK(search(u, inbox, &q, NULL) == 2);
    /* msg_a was sent at 760686745 (Feb 8 05:52 UTC), msg_b at 760708800 */
    q = (struct storage_search){.op = STORAGE_SEARCH_SENTBEFORE, .num = 760700000};
    CHECK(search(u, inbox, &q, NULL) == 2); /* msg_a and msg_c (no Date: internal date) */
    q = (struct storage_search){.op = STORAGE_SEARCH_SENTSINCE, .num = 760700000};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 2);
    q = (struct storage_search){.op = STORAGE_SEARCH_LARGER, .num = 300};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 2);
    q = (struct storage_search){.op = STORAGE_SEARCH_SMALLER, .num = 300};
    CHECK(search(u, inbox, &q, NULL) == 2);
    struct storage_range r[2] = {{3, 3}, {1, 1}};
    q = (struct storage_search){.op = STORAGE_SEARCH_UID, .set = {2, r}};
    CHECK(search(u, inbox, &q, &first) == 2 && first == 1);
    q = (struct storage_search){
        .op = STORAGE_SEARCH_HEADER, .field = "Subject", .str = "QUARTERLY"};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 1);
    q = (struct storage_search){
        .op = STORAGE_SEARCH_HEADER, .field = "subject", .str = "caf\xc3\xa9"};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 3);
    q = (struct storage_search){.op = STORAGE_SEARCH_HEADER, .field = "From", .str = "carol@"};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 2);
    q = (struct storage_search){.op = STORAGE_SEARCH_HEADER, .field = "Cc", .str = "dave"};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 2);
    q = (struct storage_search){.op = STORAGE_SEARCH_HEADER, .field = "X-Color", .str = "QUOISE"};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 1); /* read from the file */
    q = (struct storage_search){.op = STORAGE_SEARCH_HEADER, .field = "bad field", .str = "x"};
    CHECK(search(u, inbox, &q, NULL) == (size_t)-1);
    /* full text */
    q = (struct storage_search){.op = STORAGE_SEARCH_BODY, .str = "pineapple"};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 1);
    q = (struct storage_search){.op = STORAGE_SEARCH_BODY, .str = "noodle bar"};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 2);
    q = (struct storage_search){.op = STORAGE_SEARCH_BODY, .str = "Quarterly"};
    CHECK(search(u, inbox, &q, NULL) == 0); /* a header word, not in the body */
    q = (struct storage_search){.op = STORAGE_SEARCH_TEXT, .str = "quarterly"};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 1);
    q = (struct storage_search){.op = STORAGE_SEARCH_TEXT, .str = "pine"}; /* prefix */
    CHECK(search(u, inbox, &q, &first) == 1 && first == 1);
    q = (struct storage_search){.op = STORAGE_SEARCH_TEXT, .str = "\"quoted\" OR NEAR("};
    CHECK(search(u, inbox, &q, NULL) == 0); /* FTS syntax in input is only text */
    /* tree */
    struct storage_search c2 = {.op = STORAGE_SEARCH_FLAGS, .flags = STORAGE_FLAG_FLAGGED};
    struct storage_search c1 = {.op = STORAGE_SEARCH_BODY, .str = "pineapple", .next = &c2};
    q = (struct storage_search){.op = STORAGE_SEARCH_OR, .child = &c1};
    CHECK(search(u, inbox, &q, NULL) == 2);
    struct storage_search n1 = {.op = STORAGE_SEARCH_OR, .child = &c1};
    q = (struct storage_search){.op = STORAGE_SEARCH_NOT, .child = &n1};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 2);
    struct storage_search a2 = {.op = STORAGE_SEARCH_SMALLER, .num = 300};
    struct storage_search a1 = {
        .op = STORAGE_SEARCH_UNFLAGS, .flags = STORAGE_FLAG_SEEN, .next = &a2};
    q = (struct storage_search){.op = STORAGE_SEARCH_AND, .child = &a1};
    CHECK(search(u, inbox, &q, &first) == 1 && first == 3);
    q = (struct storage_search){.op = STORAGE_SEARCH_MODSEQ, .num = 1};
    CHECK(search(u, inbox, &q, NULL) == 3);
    storage_close(u);
}

/* ---- copy / move / expunge / quota / UID reuse ---- */

static void test_copy_move_expunge(void)
{
    struct storage_user *u;
    int64_t inbox, arch;
    uint32_t uid;
    uint64_t qb0, qm0, qb, qm;
    struct storage_status st;

    CHECK_RC(storage_open(data_dir, 5, &u), 0);
    inbox = mbox_id(u, "INBOX");
    arch = mbox_id(u, "Archive");
    for (int i = 0; i < 4; i++)
        CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    CHECK_RC(storage_quota_usage(u, &qb0, &qm0), 0);
    CHECK(qm0 == 4 && qb0 > 0);

    struct storage_range r[2] = {{1, 2}, {4, 4}};
    struct storage_uidset s = {2, r};
    struct storage_uidlist su = {0}, du = {0};
    CHECK_RC(storage_copy(u, inbox, &s, arch, &su, &du), 0);
    CHECK(su.n == 3 && su.uids[0] == 1 && su.uids[1] == 2 && su.uids[2] == 4);
    CHECK(du.n == 3 && du.uids[0] == 1 && du.uids[2] == 3);
    storage_uidlist_free(&su);
    storage_uidlist_free(&du);
    CHECK_RC(storage_quota_usage(u, &qb, &qm), 0);
    CHECK(qm == 7 && qb == qb0 / 4 * 7);
    {
        CHECK(msg_has(u, arch, 3, "pineapple"));
        /* full text of the copies */
        struct storage_search q = {.op = STORAGE_SEARCH_BODY, .str = "pineapple"};
        CHECK(search(u, arch, &q, NULL) == 3);
    }
    /* move */
    struct storage_range r3 = {3, 3};
    struct storage_uidset s3 = {1, &r3};
    CHECK_RC(storage_move(u, inbox, &s3, arch, &su, &du), 0);
    CHECK(su.n == 1 && su.uids[0] == 3 && du.n == 1 && du.uids[0] == 4);
    storage_uidlist_free(&su);
    storage_uidlist_free(&du);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.messages == 3);
    CHECK_RC(storage_quota_usage(u, &qb, &qm), 0);
    CHECK(qm == 7);
    {
        struct storage_uidlist van = {0};
        CHECK_RC(storage_changes(u, inbox, 1, NULL, NULL, &van), 0);
        CHECK(van.n == 1 && van.uids[0] == 3);
        storage_uidlist_free(&van);
    }

    /* expunge: only \Deleted, or a set */
    struct storage_range r4 = {4, 4};
    struct storage_uidset s4 = {1, &r4};
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.deleted == 0 && st.deleted_size == 0 && st.size > 0);
    CHECK_RC(storage_store(u, inbox, &s4, STORAGE_STORE_ADD, STORAGE_FLAG_DELETED, NULL, 0, 0, NULL,
                           NULL, NULL),
             0);
    {
        /* STATUS DELETED-STORAGE: the bytes of the \Deleted messages alone */
        struct storage_status before = st;
        CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
        CHECK(st.deleted == 1 && st.deleted_size > 0 && st.deleted_size < st.size &&
              st.size == before.size);
    }
    uint64_t deleted_size = st.deleted_size, size_before = st.size;
    struct storage_uidlist ex = {0};
    CHECK_RC(storage_expunge(u, inbox, NULL, true, &ex), 0);
    CHECK(ex.n == 1 && ex.uids[0] == 4);
    storage_uidlist_free(&ex);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.messages == 2 && st.uidnext == 5);
    CHECK(st.deleted_size == 0 && st.size == size_before - deleted_size);
    /* the copy in Archive still reads (hard link) */
    CHECK(msg_has(u, arch, 3, NULL));
    CHECK_RC(storage_expunge(u, arch, NULL, false, &ex), 0);
    CHECK(ex.n == 4);
    storage_uidlist_free(&ex);
    CHECK_RC(storage_quota_usage(u, &qb, &qm), 0);
    CHECK(qm == 2 && qb == qb0 / 2);

    /* quota enforcement */
    storage_set_quota(u, qb + 10, 0);
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), STORAGE_E_QUOTA);
    storage_set_quota(u, 0, 3);
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    CHECK(uid == 5);
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), STORAGE_E_QUOTA);
    storage_set_quota(u, 0, 0);

    /* several messages all or none (MULTIAPPEND): the third passes the
     * message quota, so none of them is kept; without a quota all three
     * are, with their UIDs in order */
    {
        struct storage_save_req req[3];
        struct storage_mbox gm;
        uint32_t n0, next0;
        CHECK_RC(storage_mbox_create(u, "Group", 0), 0);
        CHECK_RC(storage_mbox_get(u, "Group", &gm), 0);
        CHECK_RC(storage_mbox_status(u, gm.id, &st), 0);
        n0 = st.messages;
        next0 = st.uidnext;
        for (int i = 0; i < 3; i++) {
            memset(&req[i], 0, sizeof(req[i]));
            CHECK_RC(storage_draft_new(u, 0, &req[i].d), 0);
            CHECK_RC(storage_draft_write(req[i].d, msg_a, strlen(msg_a)), 0);
            CHECK_RC(storage_draft_end(req[i].d), 0);
            req[i].flags = i == 1 ? STORAGE_FLAG_SEEN : 0;
        }
        CHECK_RC(storage_quota_usage(u, &qb, &qm), 0);
        storage_set_quota(u, 0, qm + 2);
        CHECK_RC(storage_save_many(u, gm.id, req, 3), STORAGE_E_QUOTA);
        CHECK_RC(storage_mbox_status(u, gm.id, &st), 0);
        CHECK(st.messages == n0 && st.uidnext == next0);
        storage_set_quota(u, 0, 0);
        CHECK_RC(storage_save_many(u, gm.id, req, 3), 0);
        CHECK(req[0].uid == next0 && req[1].uid == next0 + 1 && req[2].uid == next0 + 2);
        CHECK_RC(storage_mbox_status(u, gm.id, &st), 0);
        CHECK(st.messages == n0 + 3 && st.uidnext == next0 + 3);
        CHECK(msg_has(u, gm.id, next0 + 2, NULL));
        struct storage_range rr = {next0, next0 + 2};
        struct storage_uidset set = {1, &rr};
        struct storage_uidlist gone = {0};
        CHECK_RC(storage_expunge(u, gm.id, &set, false, &gone), 0);
        CHECK(gone.n == 3);
        storage_uidlist_free(&gone);
        CHECK_RC(storage_mbox_delete(u, "Group"), 0);
        for (int i = 0; i < 3; i++)
            storage_draft_free(req[i].d);
    }

    /* a group big enough for its fsyncs to be shared among threads, of
     * small drafts and big ones (whose writeback starts as they end):
     * every one saved, in order, whole */
    {
        enum { NG = 70, BIG = 70000 };
        struct storage_save_req req[NG];
        struct storage_mbox gm;
        char *big = malloc(BIG + 64);
        uint32_t next0;
        CHECK(big != NULL);
        int hl = snprintf(big, 64, "Subject: big\r\n\r\n");
        memset(big + hl, 'b', BIG - (size_t)hl);
        CHECK_RC(storage_mbox_create(u, "Many", 0), 0);
        CHECK_RC(storage_mbox_get(u, "Many", &gm), 0);
        CHECK_RC(storage_mbox_status(u, gm.id, &st), 0);
        next0 = st.uidnext;
        for (int i = 0; i < NG; i++) {
            memset(&req[i], 0, sizeof(req[i]));
            CHECK_RC(storage_draft_new(u, 0, &req[i].d), 0);
            if (i % 7 == 3)
                CHECK_RC(storage_draft_write(req[i].d, big, BIG), 0);
            else
                CHECK_RC(storage_draft_write(req[i].d, msg_a, strlen(msg_a)), 0);
            CHECK_RC(storage_draft_end(req[i].d), 0);
        }
        CHECK_RC(storage_save_many(u, gm.id, req, NG), 0);
        for (int i = 0; i < NG; i++) {
            uint64_t size = 0;
            char *p;
            CHECK(req[i].uid == next0 + (uint32_t)i);
            p = read_msg(u, gm.id, req[i].uid, &size);
            CHECK(p != NULL && size == storage_draft_size(req[i].d));
            CHECK(p != NULL && (i % 7 == 3) == (strstr(p, "Subject: big") != NULL));
            free(p);
            storage_draft_free(req[i].d);
        }
        CHECK_RC(storage_mbox_status(u, gm.id, &st), 0);
        CHECK(st.messages == NG);
        CHECK_RC(storage_mbox_delete(u, "Many"), 0);
        free(big);
    }

    /* the room left, and a draft capped at it while it is written */
    {
        uint64_t rb, rm;
        struct storage_draft *d;
        CHECK_RC(storage_quota_room(u, &rb, &rm), 0);
        CHECK(rb == UINT64_MAX && rm == UINT64_MAX);
        CHECK_RC(storage_quota_usage(u, &qb, &qm), 0);
        storage_set_quota(u, qb + 100, qm + 2);
        CHECK_RC(storage_quota_room(u, &rb, &rm), 0);
        CHECK(rb == 100 && rm == 2);
        storage_set_quota(u, qb > 0 ? qb - 1 : 1, 0);
        CHECK_RC(storage_quota_room(u, &rb, &rm), 0);
        CHECK(rb == 0 && rm == UINT64_MAX);
        storage_set_quota(u, 0, 0);

        CHECK_RC(storage_draft_new(u, 0, &d), 0);
        storage_draft_set_room(d, 12);
        CHECK_RC(storage_draft_write(d, "0123456789", 10), 0);
        /* a bare LF becomes CRLF: 10 + 2 fits exactly */
        CHECK_RC(storage_draft_write(d, "\n", 1), 0);
        CHECK(storage_draft_size(d) == 12);
        CHECK_RC(storage_draft_write(d, "x", 1), STORAGE_E_QUOTA);
        CHECK_RC(storage_draft_write(d, "x", 1), STORAGE_E_INVAL); /* failed for good */
        CHECK(storage_draft_size(d) == 12);
        storage_draft_free(d);

        CHECK_RC(storage_draft_new(u, 0, &d), 0);
        storage_draft_set_room(d, 11);
        CHECK_RC(storage_draft_write(d, "0123456789\n", 11), STORAGE_E_QUOTA);
        CHECK(storage_draft_size(d) == 10);
        storage_draft_free(d);
    }

    /* UID never reused: expunge the highest, reopen, append */
    struct storage_range r5 = {5, 5};
    struct storage_uidset s5 = {1, &r5};
    CHECK_RC(storage_expunge(u, inbox, &s5, false, NULL), 0);
    storage_close(u);
    CHECK_RC(storage_open(data_dir, 5, &u), 0);
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    CHECK(uid == 6);
    /* and not after a rebuild either */
    storage_close(u);
    {
        char p[1024];
        user_path(p, sizeof(p), 5, "index.sqlite");
        CHECK(unlink(p) == 0);
    }
    CHECK_RC(storage_open(data_dir, 5, &u), 0);
    CHECK_RC(storage_expunge(u, inbox, &all_set, false, NULL), 0);
    storage_close(u);
    {
        char p[1024];
        user_path(p, sizeof(p), 5, "index.sqlite");
        CHECK(unlink(p) == 0);
    }
    CHECK_RC(storage_open(data_dir, 5, &u), 0);
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    CHECK(uid == 7);
    storage_close(u);
}

/* ---- rename ---- */

static void test_rename(void)
{
    struct storage_user *u;
    int64_t inbox, id;
    uint32_t uid;
    struct storage_status st, st2;

    CHECK_RC(storage_open(data_dir, 6, &u), 0);
    inbox = mbox_id(u, "INBOX");
    CHECK_RC(storage_mbox_create(u, "P/a/b", 0), 0);
    CHECK_RC(storage_mbox_create(u, "P/c", 0), 0);
    CHECK_RC(storage_mbox_create(u, "PX", 0), 0); /* a prefix that is not a child */
    CHECK_RC(storage_subscribe(u, "P/a", true), 0);
    id = mbox_id(u, "P/a/b");
    CHECK_RC(storage_append(u, id, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    CHECK_RC(storage_mbox_status(u, id, &st), 0);

    CHECK_RC(storage_mbox_rename(u, "P", "P"), STORAGE_E_EXISTS);
    CHECK_RC(storage_mbox_rename(u, "P", "P/inner"), STORAGE_E_NOPERM);
    CHECK_RC(storage_mbox_rename(u, "P", "Archive"), STORAGE_E_EXISTS);
    CHECK_RC(storage_mbox_rename(u, "P", "INBOX"), STORAGE_E_NOPERM);
    CHECK_RC(storage_mbox_rename(u, "Nope", "Q"), STORAGE_E_NOMBOX);
    CHECK_RC(storage_mbox_rename(u, "P", "New/Q"), 0);
    CHECK(mbox_id(u, "P") < 0 && mbox_id(u, "P/a") < 0 && mbox_id(u, "P/a/b") < 0);
    CHECK(mbox_id(u, "New") > 0 && mbox_id(u, "New/Q/a") > 0 && mbox_id(u, "New/Q/c") > 0);
    CHECK(mbox_id(u, "New/Q/a/b") == id);
    CHECK(mbox_id(u, "PX") > 0);
    CHECK_RC(storage_mbox_status(u, id, &st2), 0);
    CHECK(st2.messages == 1 && st2.uidvalidity == st.uidvalidity);
    {
        CHECK(msg_has(u, id, uid, NULL));
        struct storage_mbox m;
        CHECK_RC(storage_mbox_get(u, "New/Q/a", &m), 0);
        CHECK(m.subscribed);
        char path[1024];
        struct stat sb;
        user_path(path, sizeof(path), 6, "Maildir/.New.Q.a.b/cur");
        CHECK(stat(path, &sb) == 0);
        user_path(path, sizeof(path), 6, "Maildir/.P.a.b");
        CHECK(stat(path, &sb) < 0);
    }

    /* INBOX: messages move to the new mailbox, INBOX stays, empty */
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), STORAGE_FLAG_SEEN, NULL, 0, 0, &uid),
             0);
    CHECK_RC(storage_append(u, inbox, msg_b, strlen(msg_b), 0, NULL, 0, 0, &uid), 0);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK_RC(storage_mbox_rename(u, "INBOX", "Old/Inbox"), 0);
    CHECK(mbox_id(u, "INBOX") == inbox);
    id = mbox_id(u, "Old/Inbox");
    CHECK(id > 0 && id != inbox);
    CHECK_RC(storage_mbox_status(u, inbox, &st2), 0);
    CHECK(st2.messages == 0 && st2.uidnext == st.uidnext && st2.uidvalidity == st.uidvalidity);
    CHECK_RC(storage_mbox_status(u, id, &st2), 0);
    CHECK(st2.messages == 2 && st2.unseen == 1);
    {
        CHECK(msg_has(u, id, 2, "noodle"));
        char path[1024];
        user_path(path, sizeof(path), 6, "Maildir/cur");
        CHECK(count_files(path, NULL) == 0);
        user_path(path, sizeof(path), 6, "Maildir/new");
        CHECK(count_files(path, NULL) == 0);
    }
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    CHECK(uid == st.uidnext); /* no UID reused in INBOX */
    storage_close(u);
}

/* ---- notifications ---- */

struct evacc {
    int n[5];
    uint32_t last_uid;
    uint64_t last_modseq;
};

static void on_event(void *arg, const struct storage_event *ev)
{
    struct evacc *a = arg;
    a->n[ev->type]++;
    if (ev->n)
        a->last_uid = ev->uids[ev->n - 1];
    a->last_modseq = ev->modseq;
}

static void test_notify(void)
{
    struct storage_user *u;
    struct storage_watch *w;
    struct evacc a = {0};
    int64_t inbox;
    uint32_t uid;

    CHECK_RC(storage_open(data_dir, 7, &u), 0);
    inbox = mbox_id(u, "INBOX");
    w = storage_watch(u, on_event, &a);
    CHECK(w != NULL);
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    CHECK(a.n[STORAGE_EV_NEW] == 1 && a.last_uid == uid);
    struct storage_draft *d;
    CHECK_RC(storage_draft_new(u, 0, &d), 0);
    CHECK_RC(storage_draft_write(d, msg_b, strlen(msg_b)), 0);
    CHECK_RC(storage_draft_finish(d), 0);
    int64_t got = 0;
    CHECK_RC(storage_deliver(u, NULL, d, &uid, &got), 0);
    CHECK(got == inbox && a.n[STORAGE_EV_NEW] == 2 && a.last_uid == 2);
    /* the same file delivered to another user too (hard link) */
    {
        struct storage_user *u2;
        uint32_t uid2;
        CHECK_RC(storage_open(data_dir, 8, &u2), 0);
        CHECK_RC(storage_deliver(u2, "Archive", d, &uid2, &got), 0);
        CHECK(uid2 == 1 && got == mbox_id(u2, "Archive"));
        CHECK_RC(storage_deliver(u2, "No/Such", d, &uid2, &got), 0); /* falls back to INBOX */
        CHECK(got == mbox_id(u2, "INBOX"));
        uint64_t size;
        char *p = read_msg(u2, got, uid2, &size);
        CHECK(p && size == strlen(msg_b));
        free(p);
        char path[1024];
        user_path(path, sizeof(path), 8, "Maildir/new");
        CHECK(count_files(path, ",U=1,") == 1);
        storage_close(u2);
    }
    storage_draft_free(d);
    CHECK_RC(storage_store(u, inbox, NULL, STORAGE_STORE_ADD, STORAGE_FLAG_DELETED, NULL, 0, 0,
                           NULL, NULL, NULL),
             0);
    CHECK(a.n[STORAGE_EV_FLAGS] == 1 && a.last_uid == 2);
    CHECK_RC(storage_expunge(u, inbox, NULL, true, NULL), 0);
    CHECK(a.n[STORAGE_EV_EXPUNGE] == 1);
    CHECK_RC(storage_mbox_create(u, "Z", 0), 0);
    CHECK(a.n[STORAGE_EV_MAILBOX] == 1);
    CHECK_RC(storage_poll(u), 0);
    CHECK_RC(storage_poll(u), 0);
    CHECK(a.n[STORAGE_EV_EXTERNAL] == 0); /* our own changes are not external */
    storage_unwatch(w);
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    CHECK(a.n[STORAGE_EV_NEW] == 2);
    storage_close(u);
}

/* ---- recovery ---- */

static void fill(int64_t id, int n, uint32_t *uidvalidity)
{
    struct storage_user *u;
    struct storage_status st;
    int64_t inbox, arch;
    uint32_t uid;

    CHECK_RC(storage_open(data_dir, id, &u), 0);
    inbox = mbox_id(u, "INBOX");
    CHECK_RC(storage_mbox_create(u, "Work/2024", 0), 0);
    arch = mbox_id(u, "Work/2024");
    for (int i = 0; i < n; i++)
        CHECK_RC(storage_append(u, i % 2 ? inbox : arch, msg_a, strlen(msg_a),
                                i % 3 ? STORAGE_FLAG_SEEN : 0, NULL, 0, 0, &uid),
                 0);
    /* a hole in the UIDs, and the highest UID expunged */
    struct storage_range r[2] = {{2, 2}, {(uint32_t)n / 2, (uint32_t)n / 2}};
    struct storage_uidset s = {2, r};
    CHECK_RC(storage_expunge(u, inbox, &s, false, NULL), 0);
    CHECK_RC(storage_sync_flags(u, 0, NULL, NULL), 0);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    *uidvalidity = st.uidvalidity;
    storage_close(u);
}

static void verify_rebuilt(int64_t id, int n, uint32_t uidvalidity)
{
    struct storage_user *u;
    struct storage_status st;
    struct storage_uidlist l;
    int64_t inbox, arch;
    uint32_t uid;

    CHECK_RC(storage_open(data_dir, id, &u), 0);
    inbox = mbox_id(u, "INBOX");
    arch = mbox_id(u, "Work/2024");
    CHECK(inbox > 0 && arch > 0);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.uidvalidity == uidvalidity);
    CHECK(st.messages == (uint32_t)(n / 2 - 2));
    CHECK(st.uidnext == (uint32_t)n / 2 + 1);
    CHECK_RC(storage_uids(u, inbox, &l), 0);
    CHECK(l.n >= 1 && l.uids[0] == 1);
    if (l.n >= 2)
        CHECK(l.uids[1] == 3); /* the hole is kept */
    storage_uidlist_free(&l);
    CHECK_RC(storage_mbox_status(u, arch, &st), 0);
    CHECK(st.messages == (uint32_t)(n / 2));
    /* flags synced to the names survived */
    CHECK(st.unseen == (uint32_t)((n / 2 + 2) / 3));
    {
        struct storage_search q = {.op = STORAGE_SEARCH_TEXT, .str = "pineapple"};
        CHECK(search(u, arch, &q, NULL) == (size_t)n / 2);
        struct storage_mbox m;
        CHECK_RC(storage_mbox_get(u, "Trash", &m), 0);
        CHECK(m.special_use == STORAGE_SPECIAL_TRASH);
    }
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    CHECK(uid == (uint32_t)n / 2 + 1);
    storage_close(u);
}

static void test_rebuild(void)
{
    char p[1024];
    uint32_t uv;
    int fd;

    /* deleted */
    fill(10, 20, &uv);
    user_path(p, sizeof(p), 10, "index.sqlite");
    CHECK(unlink(p) == 0);
    verify_rebuilt(10, 20, uv);

    /* truncated */
    fill(11, 20, &uv);
    user_path(p, sizeof(p), 11, "index.sqlite");
    {
        struct stat sb;
        CHECK(stat(p, &sb) == 0);
        CHECK(truncate(p, sb.st_size / 2) == 0);
    }
    verify_rebuilt(11, 20, uv);

    /* truncated to nothing */
    fill(12, 20, &uv);
    user_path(p, sizeof(p), 12, "index.sqlite");
    CHECK(truncate(p, 0) == 0);
    verify_rebuilt(12, 20, uv);

    /* garbage */
    fill(13, 20, &uv);
    user_path(p, sizeof(p), 13, "index.sqlite");
    fd = open(p, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0);
    for (int i = 0; i < 4096; i++)
        CHECK(write(fd, "garbage!", 8) == 8);
    close(fd);
    verify_rebuilt(13, 20, uv);

    /* garbage over the middle of a valid database */
    fill(14, 20, &uv);
    user_path(p, sizeof(p), 14, "index.sqlite");
    {
        struct storage_user *u;
        int64_t inbox;
        unsigned problems = 0;
        fd = open(p, O_WRONLY);
        CHECK(fd >= 0);
        char junk[8192];
        memset(junk, 0xA5, sizeof(junk));
        CHECK(pwrite(fd, junk, sizeof(junk), 4096) == (ssize_t)sizeof(junk));
        close(fd);
        CHECK_RC(storage_check(data_dir, 14, NULL, NULL, &problems), 0);
        CHECK(problems > 0);
        /* whatever open makes of it, no message is lost */
        CHECK_RC(storage_open(data_dir, 14, &u), 0);
        inbox = mbox_id(u, "INBOX");
        if (inbox < 0) {
            storage_close(u);
        } else {
            storage_close(u);
        }
        CHECK_RC(storage_reindex(data_dir, 14), 0);
        verify_rebuilt(14, 20, uv);
    }
}

static void test_external_drop(void)
{
    struct storage_user *u;
    struct storage_status st;
    char p[1024];
    int64_t inbox, sent;
    uint32_t uid;
    unsigned problems = 99;
    int fd;

    CHECK_RC(storage_open(data_dir, 20, &u), 0);
    inbox = mbox_id(u, "INBOX");
    sent = mbox_id(u, "Sent");
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    storage_close(u);
    CHECK_RC(storage_check(data_dir, 20, NULL, NULL, &problems), 0);
    CHECK(problems == 0);

    /* an MDA drops a file with LF line ends into new/ while we are closed */
    CHECK(drop_file(20, "Maildir/new/1700000000.external.host", msg_a) == 0);
    /* and a mail client marks a file read in Sent (cur/ with flags) */
    CHECK(drop_file(20, "Maildir/.Sent/cur/1700000001.other.host:2,S", msg_b) == 0);
    CHECK_RC(storage_check(data_dir, 20, NULL, NULL, &problems), 0);
    CHECK(problems == 2);

    CHECK_RC(storage_open(data_dir, 20, &u), 0);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.messages == 2 && st.uidnext == 3);
    {
        uint64_t size;
        char *m = read_msg(u, inbox, 2, &size);
        size_t lines = 0;
        for (const char *q = msg_a; *q; q++)
            lines += *q == '\n';
        CHECK(m && size == strlen(msg_a) + lines && strstr(m, "\r\n\r\n"));
        free(m);
    }
    CHECK_RC(storage_mbox_status(u, sent, &st), 0);
    CHECK(st.messages == 1 && st.unseen == 0);

    /* while open: a drop shows up with storage_rescan */
    CHECK(drop_file(20, "Maildir/new/1700000002.external.host", msg_c) == 0);
    {
        struct evacc a = {0};
        struct storage_watch *w = storage_watch(u, on_event, &a);
        CHECK_RC(storage_rescan(u, 0), 0);
        CHECK(a.n[STORAGE_EV_EXTERNAL] == 1);
        storage_unwatch(w);
    }
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.messages == 3);
    /* and a file removed behind our back disappears from the index */
    {
        int mfd;
        uint64_t size;
        CHECK_RC(storage_msg_open(u, inbox, 1, &mfd, &size), 0);
        close(mfd);
        user_path(p, sizeof(p), 20, "Maildir/cur");
        DIR *d = opendir(p);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            if (strstr(de->d_name, ",U=1,")) {
                char f[2048];
                snprintf(f, sizeof(f), "%s/%s", p, de->d_name);
                CHECK(unlink(f) == 0);
            }
        }
        if (d)
            closedir(d);
        CHECK_RC(storage_rescan(u, inbox), 0);
        CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
        CHECK(st.messages == 2);
    }
    /* stale tmp/ files go on open */
    {
        struct timeval tv[2] = {{1000000, 0}, {1000000, 0}};
        user_path(p, sizeof(p), 20, "Maildir/tmp/stale.file");
        fd = open(p, O_WRONLY | O_CREAT, 0600);
        close(fd);
        CHECK(utimes(p, tv) == 0);
        user_path(p, sizeof(p), 20, "Maildir/tmp/fresh.file");
        fd = open(p, O_WRONLY | O_CREAT, 0600);
        close(fd);
        /* the boundary is one day: 25 hours old goes, 23 hours old stays */
        struct timeval day[2] = {{time(NULL) - 25 * 3600, 0}, {time(NULL) - 25 * 3600, 0}};
        user_path(p, sizeof(p), 20, "Maildir/tmp/stale-25h.file");
        fd = open(p, O_WRONLY | O_CREAT, 0600);
        close(fd);
        CHECK(utimes(p, day) == 0);
        struct timeval young[2] = {{time(NULL) - 23 * 3600, 0}, {time(NULL) - 23 * 3600, 0}};
        user_path(p, sizeof(p), 20, "Maildir/tmp/fresh-23h.file");
        fd = open(p, O_WRONLY | O_CREAT, 0600);
        close(fd);
        CHECK(utimes(p, young) == 0);
    }
    storage_close(u);
    CHECK_RC(storage_check(data_dir, 20, NULL, NULL, &problems), 0);
    CHECK(problems == 0);
    CHECK_RC(storage_open(data_dir, 20, &u), 0);
    user_path(p, sizeof(p), 20, "Maildir/tmp");
    CHECK(count_files(p, "stale") == 0);
    CHECK(count_files(p, "fresh") == 2);
    CHECK(count_files(p, "stale-25h") == 0);
    CHECK(count_files(p, "fresh-23h") == 1);
    storage_close(u);
    CHECK_RC(storage_repair(data_dir, 20), 0);
}

/* storage_refresh; returns how many mailboxes it reported changed. */
static int refresh_externals(struct storage_user *u)
{
    struct evacc a = {0};
    struct storage_watch *w = storage_watch(u, on_event, &a);
    CHECK_RC(storage_refresh(u), 0);
    storage_unwatch(w);
    return a.n[STORAGE_EV_EXTERNAL];
}

/* A handle kept open by the daemon between sessions: storage_trim leaves it
 * working, storage_refresh picks up only what changed on disk. */
static void test_kept_handle(void)
{
    struct storage_user *u;
    struct storage_status st;
    int64_t inbox;
    uint32_t uid;

    CHECK_RC(storage_open(data_dir, 21, &u), 0);
    inbox = mbox_id(u, "INBOX");
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.messages == 1);
    /* nothing changed on disk: a refresh reports nothing */
    CHECK(refresh_externals(u) == 0);
    storage_trim(u);
    storage_trim(u);
    CHECK(drop_file(21, "Maildir/new/1700000003.external.host", msg_b) == 0);
    /* before the refresh, the index does not know the file */
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.messages == 1);
    CHECK(refresh_externals(u) == 1);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.messages == 2 && st.uidnext == 3);
    /* reads and writes after a trim */
    CHECK(msg_has(u, inbox, 2, "\r\n\r\n"));
    CHECK_RC(storage_append(u, inbox, msg_c, strlen(msg_c), 0, NULL, 0, 0, &uid), 0);
    CHECK(uid == 3);
    storage_close(u);
}

/* coffred's descriptors on the index files of account id */
static int index_fds(int64_t id)
{
    char want[1024], link[1024], target[1024];
    struct dirent *e;
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    snprintf(want, sizeof(want), "%s/users/%" PRId64 "/index.sqlite", data_dir, id);
    if (!d)
        return -1;
    while ((e = readdir(d))) {
        ssize_t len;
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (strncmp(target, want, strlen(want)) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void count_event(void *arg, const struct storage_event *ev)
{
    if (ev->type == STORAGE_EV_NEW)
        ++*(int *)arg;
}

/* storage_sleep: an unused handle closes every connection to its index and
 * holds no descriptor on its files; a poll does not open them again when
 * nothing changed; reads and writes open them again, and the watchers of
 * the handle still get its events. Prints what the first read after a
 * sleep costs beside the same read with the index open. */
static void test_asleep_handle(void)
{
    struct storage_user *u;
    struct storage_status st;
    struct storage_watch *w;
    int64_t inbox;
    uint32_t uid;
    int news = 0;
    double cold = 0, warm = 0;
    enum { ROUNDS = 50 };

    CHECK_RC(storage_open(data_dir, 22, &u), 0);
    w = storage_watch(u, count_event, &news);
    CHECK(w != NULL);
    inbox = mbox_id(u, "INBOX");
    CHECK_RC(storage_append(u, inbox, msg_a, strlen(msg_a), 0, NULL, 0, 0, &uid), 0);
    CHECK(index_fds(22) > 0);
    CHECK(!storage_sleep(u, 3600 * 1000)); /* just used */
    CHECK(storage_sleep(u, 0));
    CHECK(storage_asleep(u));
    CHECK(index_fds(22) == 0);
    /* nothing written: a poll leaves it closed */
    CHECK_RC(storage_poll(u), 0);
    CHECK(storage_asleep(u) && index_fds(22) == 0);
    /* a read opens it again */
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.messages == 1);
    CHECK(!storage_asleep(u));
    CHECK(storage_sleep(u, 0) && index_fds(22) == 0);
    /* a write too, and it is announced */
    CHECK_RC(storage_append(u, inbox, msg_b, strlen(msg_b), 0, NULL, 0, 0, &uid), 0);
    CHECK(uid == 2 && news == 2);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.messages == 2);
    /* another program's write while asleep: the poll sees the files moved */
    CHECK(storage_sleep(u, 0));
    {
        struct storage_user *p;
        CHECK_RC(storage_open(data_dir, 22, &p), 0); /* the same shared handle */
        CHECK(p == u);
        storage_close(p);
    }
    CHECK(drop_file(22, "Maildir/new/1700000009.external.host", msg_c) == 0);
    CHECK_RC(storage_rescan(u, 0), 0);
    CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
    CHECK(st.messages == 3);

    for (int i = 0; i < ROUNDS; i++) {
        double t0;
        CHECK(storage_sleep(u, 0));
        t0 = now_ms();
        CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
        cold += now_ms() - t0;
        t0 = now_ms();
        CHECK_RC(storage_mbox_status(u, inbox, &st), 0);
        warm += now_ms() - t0;
    }
    printf("storage_sleep: a mailbox status %.3f ms after the index closed, %.3f ms with it "
           "open (mean of %d)\n",
           cold / ROUNDS, warm / ROUNDS, ROUNDS);
    storage_unwatch(w);
    storage_close(u);
}

/* storage_set_limits: past a cap on mailboxes, subscriptions or header
 * searches a call answers STORAGE_E_LIMIT and changes nothing; a listing
 * read in steps (after) goes on where the last one stopped. */
static void test_limits(void)
{
    static const char msg[] = "From: a@example.org\r\nX-Tag: blue\r\nSubject: s\r\n\r\nbody\r\n";
    struct storage_user *u;
    struct storage_mbox m;
    struct listacc a = {0};
    int64_t inbox;
    uint32_t uid;

    CHECK_RC(storage_open(data_dir, 30, &u), 0);
    storage_set_limits(&(struct storage_limits){
        .max_mailboxes = 8, .max_subscriptions = 7, .max_header_scans = 2});
    CHECK_RC(storage_mbox_create(u, "a", 0), 0);                 /* 7 of 8 */
    CHECK_RC(storage_mbox_create(u, "b/c", 0), STORAGE_E_LIMIT); /* b and b/c: 9 */
    CHECK_RC(storage_mbox_get(u, "b", &m), STORAGE_E_NOMBOX);
    CHECK_RC(storage_mbox_create(u, "b", 0), 0);
    CHECK_RC(storage_mbox_create(u, "c", 0), STORAGE_E_LIMIT);
    CHECK_RC(storage_mbox_rename(u, "a", "x/a"), STORAGE_E_LIMIT); /* x is missing */
    CHECK_RC(storage_mbox_get(u, "a", &m), 0);
    CHECK_RC(storage_mbox_rename(u, "a", "b/a"), 0);
    CHECK_RC(storage_mbox_rename(u, "INBOX", "old"), STORAGE_E_LIMIT);
    CHECK_RC(storage_subscribe(u, "s1", true), 0); /* 7 of 7 */
    CHECK_RC(storage_subscribe(u, "s2", true), STORAGE_E_LIMIT);
    CHECK_RC(storage_subscribe(u, "s1", true), 0);
    CHECK_RC(storage_subscribe(u, "s1", false), 0);
    CHECK_RC(storage_subscribe(u, "s2", true), 0);

    inbox = mbox_id(u, "INBOX");
    CHECK_RC(storage_append(u, inbox, msg, strlen(msg), 0, NULL, 0, 1000, &uid), 0);
    struct storage_search k[3] = {
        {.op = STORAGE_SEARCH_HEADER, .field = "X-Tag", .str = "BLU"},
        {.op = STORAGE_SEARCH_HEADER, .field = "X-Other", .str = ""},
        {.op = STORAGE_SEARCH_HEADER, .field = "X-Tag", .str = "lue"},
    };
    struct storage_search q = {.op = STORAGE_SEARCH_AND, .child = &k[0]};
    struct storage_uidlist l;
    k[0].next = &k[1];
    k[1].op = STORAGE_SEARCH_NOT;
    k[1].child = &k[2];
    /* two file reads, and Subject is in the index */
    CHECK(search(u, inbox, &q, NULL) == 0);
    k[1].op = STORAGE_SEARCH_HEADER;
    k[1].child = NULL;
    k[1].next = &k[2];
    CHECK_RC(storage_search(u, inbox, &q, &l), STORAGE_E_LIMIT);
    CHECK(l.n == 0);
    k[1].field = "Subject";
    k[1].str = "S";
    CHECK(search(u, inbox, &q, NULL) == 1);

    /* in steps: after "Drafts", then after the last one */
    CHECK_RC(storage_mbox_list(u, "*", false, "Drafts", on_list, &a), 0);
    CHECK(a.n == 6 && !strcmp(a.names[0], "INBOX") && !strcmp(a.names[5], "b/a"));
    a.n = 0;
    CHECK_RC(storage_mbox_list(u, "*", false, "b/a", on_list, &a), 0);
    CHECK(a.n == 0);
    CHECK_RC(storage_mbox_list(u, "*", true, "Trash", on_list, &a), 0);
    CHECK(a.n == 1 && !strcmp(a.names[0], "s2"));

    storage_set_limits(&(struct storage_limits){0});
    storage_close(u);
}

/* Drafts opened ahead (storage/ahead.c): a draft alone has none; from the
 * second of a group on, files are made for the next ones; drafts taken
 * from them are saved whole; the files go when the store sleeps and when
 * it closes. */
/* Whether the file name of dir/ is one of names[0..n) */
static bool among(char names[][256], int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name))
            return true;
    return false;
}

/* The empty files of dir (up to max), their names into names unless it is
 * NULL: their count */
static int empty_names(const char *dir, char names[][256], int max)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL && n < max) {
        char p[2048];
        struct stat sb;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || stat(p, &sb) != 0 || sb.st_size != 0)
            continue;
        if (names)
            snprintf(names[n], 256, "%s", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static int empty_files(const char *dir)
{
    return empty_names(dir, NULL, INT_MAX);
}

/* Pages of path in the page cache, or -1 when that cannot be told here
 * (a filesystem that keeps its files in memory: tmpfs) */
static long resident_pages(const char *path)
{
    struct statfs sf;
    struct stat sb;
    long n = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &sb) != 0 || fstatfs(fd, &sf) != 0 || sf.f_type == TMPFS_MAGIC ||
        sb.st_size == 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), np = ((size_t)sb.st_size + pg - 1) / pg;
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    unsigned char *v = malloc(np);
    if (m == MAP_FAILED || !v || mincore(m, (size_t)sb.st_size, v) != 0) {
        n = -1;
    } else {
        for (size_t i = 0; i < np; i++)
            n += v[i] & 1;
    }
    free(v);
    if (m != MAP_FAILED)
        munmap(m, (size_t)sb.st_size);
    close(fd);
    return n;
}

static void test_ahead(void)
{
    enum { NG = 100 };
    struct storage_user *u;
    struct storage_save_req req[NG];
    struct storage_draft *d;
    struct storage_mbox m;
    char tmp[1024], body[NG][80];

    CHECK_RC(storage_open(data_dir, 95, &u), 0);
    CHECK_RC(storage_mbox_get(u, "INBOX", &m), 0);
    user_path(tmp, sizeof(tmp), 95, "Maildir/tmp");

    /* one APPEND: its draft and nothing else */
    CHECK_RC(storage_draft_new(u, 0, &d), 0);
    CHECK(count_files(tmp, NULL) == 1);
    storage_draft_free(d);
    CHECK(count_files(tmp, NULL) == 0);

    /* a group: every draft from the second on asks for more; the files
     * waiting are empty, the drafts written are not */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < NG; i++) {
            memset(&req[i], 0, sizeof(req[i]));
            snprintf(body[i], sizeof(body[i]), "Subject: ahead %d %d\r\n\r\nbody %d\r\n", round, i,
                     i);
            CHECK_RC((i ? storage_draft_next : storage_draft_new)(u, 0, &req[i].d), 0);
            CHECK_RC(storage_draft_write(req[i].d, body[i], strlen(body[i])), 0);
            CHECK_RC(storage_draft_end(req[i].d), 0);
        }
        /* at least 8 wait once the thread is done (it tops up to 32
         * whenever fewer than 8 are left), and they are tmp/'s empty files */
        unsigned ready = ahead_ready(u);
        CHECK(ready >= 8 && ready <= 32 && empty_files(tmp) == (int)ready &&
              count_files(tmp, NULL) == NG + (int)ready);
        CHECK_RC(storage_save_many(u, m.id, req, NG), 0);
        for (int i = 0; i < NG; i++) {
            uint64_t size = 0;
            char *p = read_msg(u, m.id, req[i].uid, &size);
            CHECK(p && size == strlen(body[i]) && memcmp(p, body[i], size) == 0);
            free(p);
            storage_draft_free(req[i].d);
        }
        CHECK(count_files(tmp, NULL) == empty_files(tmp) && empty_files(tmp) >= 8);
        {
            /* the next draft is one of the files made ahead */
            char names[32][256];
            int n = empty_names(tmp, names, 32);
            struct storage_draft *x;
            CHECK_RC(storage_draft_next(u, 0, &x), 0);
            CHECK_RC(storage_draft_write(x, msg_a, strlen(msg_a)), 0);
            CHECK_RC(storage_draft_end(x), 0);
            char after[32][256];
            int k = empty_names(tmp, after, 32), taken = 0;
            for (int i = 0; i < n; i++)
                taken += !among(after, k, names[i]);
            CHECK(n >= 8 && taken == 1);
            storage_draft_free(x);
            ahead_ready(u);
        }
        if (round == 0) {
            /* asleep: they go */
            CHECK(storage_sleep(u, 0));
            CHECK(count_files(tmp, NULL) == 0);
        }
    }
    /* a message of 256 kB or more leaves the page cache once it is on
     * disk (storage/message.c, DRAFT_UNCACHE) */
    {
        enum { BIG = 300000 };
        char *big = malloc(BIG), name[512], path[2048], cur[1024];
        struct storage_save_req r[2] = {{0}, {0}};
        CHECK(big != NULL);
        int hl = snprintf(big, 64, "Subject: cache\r\n\r\n");
        memset(big + hl, 'c', BIG - (size_t)hl);
        CHECK_RC(storage_draft_new(u, 0, &r[0].d), 0);
        CHECK_RC(storage_draft_write(r[0].d, big, BIG), 0);
        CHECK_RC(storage_draft_end(r[0].d), 0);
        CHECK_RC(storage_draft_next(u, 0, &r[1].d), 0);
        CHECK_RC(storage_draft_write(r[1].d, msg_a, strlen(msg_a)), 0);
        CHECK_RC(storage_draft_end(r[1].d), 0);
        CHECK_RC(storage_save_many(u, m.id, r, 2), 0);
        user_path(cur, sizeof(cur), 95, "Maildir/cur");
        CHECK(uid_file(95, "Maildir/cur", r[0].uid, name, sizeof(name)) == 0);
        snprintf(path, sizeof(path), "%s/%s", cur, name);
        long res = resident_pages(path);
        CHECK(res == 0 || res == -1);
        uint64_t size = 0;
        char *p = read_msg(u, m.id, r[0].uid, &size);
        CHECK(p && size == BIG && memcmp(p, big, BIG) == 0);
        free(p);
        storage_draft_free(r[0].d);
        storage_draft_free(r[1].d);
        free(big);
    }
    /* closed: they go */
    storage_close(u);
    CHECK(count_files(tmp, NULL) == 0);
}

/* A connection to an index of 16 MB or more reads it through a mapping;
 * a smaller one does not (an idle account holds no mapped pages). */
static long long mmap_size_of(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;

    if (db_open_conn(path, false, &db) != 0)
        return -1;
    if (sqlite3_prepare_v2(db, "PRAGMA mmap_size", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    db_close(db);
    return v;
}

static int copy_header(void *arg, const struct storage_msg *m)
{
    char *out = arg;
    if (m->header && m->header_len < 64) {
        memcpy(out, m->header, m->header_len);
        out[m->header_len] = '\0';
    }
    return 0;
}

static void test_index_mapping(void)
{
    struct storage_user *u;
    struct storage_mbox m;
    char idx[1024];
    uint32_t uid = 0;
    static const char msg[] = "Subject: mapped\r\n\r\nbody\r\n";

    CHECK_RC(storage_open(data_dir, 96, &u), 0);
    CHECK_RC(storage_mbox_get(u, "INBOX", &m), 0);
    CHECK_RC(storage_append(u, m.id, msg, sizeof(msg) - 1, 0, NULL, 0, 0, &uid), 0);
    storage_close(u);
    user_path(idx, sizeof(idx), 96, "index.sqlite");
    CHECK(mmap_size_of(idx) == 0);
    /* past the pages the header counts: free space to SQLite */
    CHECK(truncate(idx, 16 * 1024 * 1024) == 0);
    CHECK(mmap_size_of(idx) >= 16 * 1024 * 1024);
    CHECK_RC(storage_open(data_dir, 96, &u), 0);
    /* the header block from the index, read through the mapping */
    struct storage_range r = {uid, uid};
    struct storage_uidset set = {1, &r};
    char hdr[64] = "";
    CHECK_RC(storage_fetch(u, m.id, &set, STORAGE_FETCH_HEADER, copy_header, hdr), 0);
    CHECK(strcmp(hdr, "Subject: mapped\r\n\r\n") == 0);
    storage_close(u);
}

struct lean_seen {
    uint32_t uid;
    unsigned flags;
    uint64_t size, modseq;
    int64_t idate;
};

static int lean_cb(void *arg, const struct storage_msg *m)
{
    struct lean_seen *s = arg;
    s->uid = m->uid;
    s->flags = m->flags;
    s->size = m->size;
    s->modseq = m->modseq;
    s->idate = m->internal_date;
    return 0;
}

/* STORAGE_FETCH_NO_SIZES: the flags, UID and modseq as without it, the
 * sizes and dates left out; STORAGE_FETCH_NO_DATES: the size too. The
 * narrow indexes they read (messages_flags, messages_list) are made again
 * at an open that finds them gone. */
static void test_fetch_no_sizes(void)
{
    struct storage_user *u;
    struct storage_mbox m;
    uint32_t uid = 0;
    static const char msg[] = "Subject: lean\r\n\r\nbody\r\n";
    struct lean_seen full = {0}, lean = {0};

    CHECK_RC(storage_open(data_dir, 97, &u), 0);
    CHECK_RC(storage_mbox_get(u, "INBOX", &m), 0);
    CHECK_RC(storage_append(u, m.id, msg, sizeof(msg) - 1, STORAGE_FLAG_FLAGGED, NULL, 0, 0, &uid),
             0);
    struct storage_range r = {uid, uid};
    struct storage_uidset set = {1, &r};
    CHECK_RC(storage_fetch(u, m.id, &set, 0, lean_cb, &full), 0);
    CHECK_RC(storage_fetch(u, m.id, &set, STORAGE_FETCH_NO_SIZES, lean_cb, &lean), 0);
    CHECK(full.uid == uid && full.size == sizeof(msg) - 1 && full.idate > 0);
    CHECK(lean.uid == uid && lean.flags == full.flags && (lean.flags & STORAGE_FLAG_FLAGGED));
    CHECK(lean.modseq == full.modseq && lean.size == 0 && lean.idate == 0);
    memset(&lean, 0, sizeof(lean));
    CHECK_RC(storage_fetch(u, m.id, &set, STORAGE_FETCH_NO_DATES, lean_cb, &lean), 0);
    CHECK(lean.uid == uid && lean.flags == full.flags && lean.size == full.size && lean.idate == 0);
    storage_close(u);
    /* the narrow index it reads is made again at the next open */
    char idx[1024];
    sqlite3 *db = NULL;
    user_path(idx, sizeof(idx), 97, "index.sqlite");
    CHECK(sqlite3_open(idx, &db) == SQLITE_OK &&
          sqlite3_exec(db, "DROP INDEX messages_flags; DROP INDEX messages_list", NULL, NULL,
                       NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK_RC(storage_open(data_dir, 97, &u), 0);
    memset(&lean, 0, sizeof(lean));
    CHECK_RC(storage_fetch(u, m.id, &set, STORAGE_FETCH_NO_SIZES, lean_cb, &lean), 0);
    CHECK(lean.uid == uid && lean.flags == full.flags);
    storage_close(u);
    db = NULL;
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_open(idx, &db) == SQLITE_OK &&
          sqlite3_prepare_v2(db,
                             "SELECT count(*) = 2 FROM sqlite_schema"
                             " WHERE name IN ('messages_list', 'messages_flags')",
                             -1, &st, NULL) == SQLITE_OK &&
          sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

int main(int argc, char **argv)
{
    if (check_mkdtemp(data_dir, sizeof(data_dir), "coffre-storage") != 0)
        return 1;
    test_names();
    test_mailboxes();
    test_append_read();
    test_flags();
    test_sync_rollback();
    test_search();
    test_copy_move_expunge();
    test_rename();
    test_notify();
    test_rebuild();
    test_external_drop();
    test_kept_handle();
    test_asleep_handle();
    test_limits();
    test_ahead();
    test_index_mapping();
    test_fetch_no_sizes();
    check_rmtree(data_dir);
    printf("%s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
