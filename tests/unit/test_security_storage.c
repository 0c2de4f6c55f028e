/* Attacks on the storage layer by someone who can write into their own
 * Maildir (shell access, or another program): symlinks and FIFOs planted
 * under message names, a symlink planted where coffre writes its
 * UIDVALIDITY file, an index replaced by a symlink, and file names claiming
 * huge UIDs. Each check failed before its fix. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/storage.h"
#include "tests/unit/check.h"

static char data_dir[512];
static const char msg[] = "From: a@example.org\r\nSubject: hello\r\n\r\nbody\r\n";
static const char secret[] = "SECRET of another user\n";

static void user_path(char *out, size_t len, int64_t id, const char *rest)
{
    snprintf(out, len, "%s/users/%" PRId64 "/%s", data_dir, id, rest);
}

static int write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(s, f);
    return fclose(f);
}

static int file_equals(const char *path, const char *s)
{
    char buf[4096];
    FILE *f = fopen(path, "r");
    size_t n;
    if (!f)
        return 0;
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return n == strlen(s) && memcmp(buf, s, n) == 0;
}

/* The path of the file holding uid in INBOX's cur/ or new/. */
static int msg_file(int64_t id, uint32_t uid, char out[1024], size_t len)
{
    static const char *const sub[] = {"Maildir/cur", "Maildir/new"};
    char want[32];
    snprintf(want, sizeof(want), ",U=%" PRIu32 ",", uid);
    for (int i = 0; i < 2; i++) {
        char dir[700];
        struct dirent *de;
        DIR *d;
        user_path(dir, sizeof(dir), id, sub[i]);
        if (!(d = opendir(dir)))
            continue;
        while ((de = readdir(d)) != NULL) {
            if (strstr(de->d_name, want)) {
                snprintf(out, len, "%s/%s", dir, de->d_name);
                closedir(d);
                return 0;
            }
        }
        closedir(d);
    }
    return -1;
}

static int64_t inbox_id(struct storage_user *u)
{
    struct storage_mbox m;
    return storage_mbox_get(u, "INBOX", &m) == 0 ? m.id : -1;
}

/* A message file replaced by a symlink to a file outside the Maildir (as
 * another user's message) must not be served; nor may a FIFO block. */
static void test_planted_message_files(void)
{
    struct storage_user *u;
    char path[1024], victim[1024];
    uint32_t uid1 = 0, uid2 = 0;
    uint64_t size = 0;
    int fd = -1, rc;

    CHECK(storage_open(data_dir, 1, &u) == 0, "open user 1");
    int64_t inbox = inbox_id(u);
    CHECK(storage_append(u, inbox, msg, sizeof(msg) - 1, 0, NULL, 0, 0, &uid1) == 0, "append 1");
    CHECK(storage_append(u, inbox, msg, sizeof(msg) - 1, 0, NULL, 0, 0, &uid2) == 0, "append 2");

    snprintf(victim, sizeof(victim), "%s/victim.eml", data_dir);
    CHECK(write_file(victim, secret) == 0, "victim file written");
    CHECK(msg_file(1, uid1, path, sizeof(path)) == 0, "message file found");
    CHECK(unlink(path) == 0 && symlink(victim, path) == 0, "message replaced by a symlink");
    rc = storage_msg_open(u, inbox, uid1, &fd, &size);
    if (rc == 0) {
        char buf[64] = "";
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        close(fd);
        CHECK(n < 0 || strstr(buf, "SECRET") == NULL, "symlinked message: other file not served");
    }
    CHECK(rc != 0, "symlinked message: open refused");

    CHECK(msg_file(1, uid2, path, sizeof(path)) == 0, "second message file found");
    CHECK(unlink(path) == 0 && mkfifo(path, 0600) == 0, "message replaced by a FIFO");
    alarm(20); /* before the fix, open() blocked here for ever */
    rc = storage_msg_open(u, inbox, uid2, &fd, &size);
    alarm(0);
    if (rc == 0)
        close(fd);
    CHECK(rc != 0, "FIFO message: open refused without blocking");
    storage_close(u);
}

/* The UIDVALIDITY file is written through tmp/coffre-uidvalidity.<pid>: a
 * symlink planted there must not make coffre truncate its target. */
static void test_planted_uidvalidity_tmp(void)
{
    struct storage_user *u;
    char dir[1024], link_path[1100], victim[1024];

    CHECK(storage_open(data_dir, 2, &u) == 0, "open user 2");
    snprintf(victim, sizeof(victim), "%s/victim2.sqlite", data_dir);
    CHECK(write_file(victim, secret) == 0, "victim file written");
    /* the folder's directories exist before the mailbox does */
    user_path(dir, sizeof(dir), 2, "Maildir/.Planted");
    CHECK(mkdir(dir, 0700) == 0, "folder made by the user");
    user_path(dir, sizeof(dir), 2, "Maildir/.Planted/tmp");
    CHECK(mkdir(dir, 0700) == 0, "folder tmp made by the user");
    snprintf(link_path, sizeof(link_path), "%s/coffre-uidvalidity.%d", dir, (int)getpid());
    CHECK(symlink(victim, link_path) == 0, "symlink planted in tmp/");
    storage_mbox_create(u, "Planted", 0);
    CHECK(file_equals(victim, secret), "symlink target not truncated or written");
    storage_close(u);
}

/* index.sqlite replaced by a symlink to another user's index: never opened
 * (and so never written) through the link. */
static void test_index_symlink(void)
{
    struct storage_user *u;
    char idx[1024], other[1024];
    struct stat before, after;
    int rc;

    CHECK(storage_open(data_dir, 3, &u) == 0, "open user 3");
    storage_close(u);
    CHECK(storage_open(data_dir, 4, &u) == 0, "open user 4");
    storage_close(u);
    user_path(idx, sizeof(idx), 3, "index.sqlite");
    user_path(other, sizeof(other), 4, "index.sqlite");
    CHECK(unlink(idx) == 0 && symlink(other, idx) == 0, "index of 3 -> index of 4");
    CHECK(stat(other, &before) == 0, "stat other index");
    rc = storage_open(data_dir, 3, &u);
    if (rc == 0) {
        storage_mbox_create(u, "Written-through-the-link", 0);
        storage_close(u);
    }
    CHECK(stat(other, &after) == 0, "stat other index again");
    CHECK(rc != 0, "index behind a symlink refused");
    CHECK(before.st_mtim.tv_sec == after.st_mtim.tv_sec &&
              before.st_mtim.tv_nsec == after.st_mtim.tv_nsec && before.st_size == after.st_size,
          "other user's index untouched");
    CHECK(storage_open(data_dir, 4, &u) == 0, "user 4 still opens");
    if (u) {
        struct storage_mbox m;
        CHECK(storage_mbox_get(u, "Written-through-the-link", &m) != 0,
              "no mailbox created in user 4");
        storage_close(u);
    }
}

/* Files dropped into new/ with names claiming UID 4294967295 or a UID far
 * above UIDNEXT: every UID stays below UIDNEXT, and UIDNEXT is not pushed
 * to the end of the UID space. */
static void test_huge_uid_claims(void)
{
    static const char *const names[] = {
        "1700000000.M1P1.evil,U=4294967295,S=5",
        "1700000000.M2P1.evil,U=4000000000:2,S",
        "1700000000.M3P1.evil,U=99999999999999999999999:2,",
        "1700000000.M4P1.evil,S=999999999999999999999,U=0:2,:2,:2,",
    };
    struct storage_user *u;
    struct storage_status st;
    struct storage_uidlist l = {0};
    uint32_t uid = 0;
    char path[1200], dir[1024];

    CHECK(storage_open(data_dir, 5, &u) == 0, "open user 5");
    int64_t inbox = inbox_id(u);
    CHECK(storage_append(u, inbox, msg, sizeof(msg) - 1, 0, NULL, 0, 0, &uid) == 0, "append");
    user_path(dir, sizeof(dir), 5, "Maildir/new");
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        CHECK(write_file(path, "Subject: dropped\r\n\r\nx\r\n") == 0, "file dropped in new/");
    }
    storage_rescan(u, inbox);
    CHECK(storage_append(u, inbox, msg, sizeof(msg) - 1, 0, NULL, 0, 0, &uid) == 0,
          "append after the drops");
    CHECK(storage_mbox_status(u, inbox, &st) == 0, "status");
    CHECK(st.messages == 6, "all six messages indexed");
    CHECK(storage_uids(u, inbox, &l) == 0, "uids");
    uint32_t max = 0;
    for (size_t i = 0; i < l.n; i++)
        if (l.uids[i] > max)
            max = l.uids[i];
    CHECK(max < st.uidnext, "every UID below UIDNEXT");
    CHECK(st.uidnext < 1000000, "UIDNEXT not pushed to the end of the UID space");
    CHECK(uid == max, "the last append got the highest UID");
    storage_uidlist_free(&l);
    storage_close(u);
}

/* new/ of one user replaced by a symlink to another user's cur/: a rescan
 * must not take (and move) the other user's messages. */
static void test_planted_dir_symlink(void)
{
    struct storage_user *a, *b;
    struct storage_status st;
    char newdir[1024], victim_cur[1024];
    uint32_t uid = 0;
    uint64_t size;
    int fd;

    CHECK(storage_open(data_dir, 6, &a) == 0, "open attacker");
    CHECK(storage_open(data_dir, 7, &b) == 0, "open victim");
    int64_t ia = inbox_id(a), ib = inbox_id(b);
    CHECK(storage_append(b, ib, msg, sizeof(msg) - 1, 0, NULL, 0, 0, &uid) == 0, "victim mail");
    user_path(newdir, sizeof(newdir), 6, "Maildir/new");
    user_path(victim_cur, sizeof(victim_cur), 7, "Maildir/cur");
    CHECK(rmdir(newdir) == 0 && symlink(victim_cur, newdir) == 0, "new/ -> victim's cur/");
    storage_rescan(a, ia);
    CHECK(storage_mbox_status(a, ia, &st) == 0 && st.messages == 0,
          "attacker's INBOX took nothing through the symlink");
    CHECK(storage_msg_open(b, ib, uid, &fd, &size) == 0, "victim's message still in place");
    if (fd >= 0)
        close(fd);
    storage_close(a);
    storage_close(b);
}

int main(void)
{
    if (check_mkdtemp(data_dir, sizeof(data_dir), "coffre-secstore") != 0)
        return 1;
    test_planted_message_files();
    test_planted_uidvalidity_tmp();
    test_index_symlink();
    test_huge_uid_claims();
    test_planted_dir_symlink();
    check_rmtree(data_dir);
    return check_summary();
}
