/* Unit test: several threads opening, writing and closing the store of one
 * account at once, as sessions of one user do when they come and go. No
 * open may mistake an index that another handle is checkpointing for a
 * damaged one (no index moved aside, no rebuild), and no write is lost. The
 * reopen-while-closing race itself is reproduced by it-pop3-quit-race.
 * And while one account's index is being built (a long open), another
 * account opens and closes without waiting for it.
 *
 * Deliveries through light handles (storage_open_light) from several
 * threads at once, beside appends through a full handle of the same
 * account: they meet in group commits (fewer index commits than
 * messages), every one gets its own UID, and the index agrees with the
 * Maildir afterwards (storage_check finds nothing to repair).
 *
 * Two processes (coffred and coffrectl) creating one account's index at
 * the same moment both open it. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/storage.h"
#include "tests/unit/check.h"

#define THREADS 4
#define ROUNDS 20
#define PER_ROUND 10

static char data_dir[256];
static int errors;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg)
{
    static const char msg[] = "From: a@example.org\r\nSubject: race\r\n\r\nbody\r\n";
    for (int i = 0; i < ROUNDS; i++) {
        struct storage_user *u;
        struct storage_mbox m;
        uint32_t uid;
        int rc = storage_open(data_dir, 1, &u);
        if (rc == 0) {
            rc = storage_mbox_get(u, "INBOX", &m);
            for (int k = 0; rc == 0 && k < PER_ROUND; k++)
                rc = storage_append(u, m.id, msg, sizeof(msg) - 1, 0, NULL, 0, 0, &uid);
            storage_close(u);
        }
        if (rc) {
            pthread_mutex_lock(&mu);
            errors++;
            fprintf(stderr, "thread %ld round %d: %s\n", (long)(intptr_t)arg, i,
                    storage_strerror(rc));
            pthread_mutex_unlock(&mu);
        }
    }
    return NULL;
}

/* ---- one account's long open does not hold up another's ---- */

#define BIG_MSGS 5000
static volatile int big_done;

static void *open_big(void *arg)
{
    struct storage_user *u;
    int rc = storage_open(data_dir, 2, &u);
    (void)arg;
    big_done = 1;
    if (rc == 0)
        storage_close(u);
    else
        fprintf(stderr, "open of the big account: %s\n", storage_strerror(rc));
    return NULL;
}

static void test_opens_do_not_wait_for_other_accounts(void)
{
    char p[600];
    pthread_t t;
    struct storage_user *u;
    struct stat sb;
    int waited = 0, written = 0;

    /* account 2: a Maildir without an index, BIG_MSGS messages to parse */
    snprintf(p, sizeof(p), "%s/users/2", data_dir);
    mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/users/2/Maildir", data_dir);
    mkdir(p, 0700);
    for (const char *sub = "cur\0new\0tmp\0"; *sub; sub += strlen(sub) + 1) {
        snprintf(p, sizeof(p), "%s/users/2/Maildir/%s", data_dir, sub);
        mkdir(p, 0700);
    }
    for (int i = 0; i < BIG_MSGS; i++) {
        char m[256];
        int n = snprintf(m, sizeof(m),
                         "From: s%d@example.org\r\nSubject: message %d\r\n"
                         "Message-ID: <%d@example.org>\r\n\r\nbody %d\r\n",
                         i, i, i, i);
        snprintf(p, sizeof(p), "%s/users/2/Maildir/new/1700000000.M%dP1.host", data_dir, i);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd >= 0) {
            written += write(fd, m, n) == n;
            close(fd);
        }
    }
    CHECK(written == BIG_MSGS, "message files written");
    pthread_create(&t, NULL, open_big, NULL);
    /* the index file appears when the build has begun */
    snprintf(p, sizeof(p), "%s/users/2/index.sqlite", data_dir);
    while (stat(p, &sb) < 0 && waited++ < 60000)
        usleep(1000);
    CHECK(!big_done, "the big account is still being indexed");
    CHECK(storage_open(data_dir, 1, &u) == 0, "another account opens meanwhile");
    storage_close(u);
    CHECK(!big_done, "... and closes, without waiting for the big account's open");
    pthread_join(t, NULL);
    CHECK(big_done, "the big account opened");
}

/* ---- light deliveries and group commit ---- */

#define LIGHT_THREADS 6
#define LIGHT_ROUNDS 15
static pthread_barrier_t light_barrier;
static uint32_t light_uids[LIGHT_THREADS][LIGHT_ROUNDS];
static struct storage_user *light_full;
static int64_t light_inbox;

static void *light_worker(void *arg)
{
    static const char msg[] = "From: a@example.org\r\nSubject: light\r\n\r\nbody\r\n";
    long n = (long)(intptr_t)arg;

    for (int i = 0; i < LIGHT_ROUNDS; i++) {
        struct storage_user *u = NULL;
        struct storage_draft *d = NULL;
        int rc = 0;
        /* the last thread appends through the full handle */
        if (n < LIGHT_THREADS - 1) {
            rc = storage_open_light(data_dir, 3, &u);
            if (rc == 0 && (rc = storage_draft_new(u, 0, &d)) == 0 &&
                (rc = storage_draft_write(d, msg, sizeof(msg) - 1)) == 0)
                rc = storage_draft_finish(d);
        }
        pthread_barrier_wait(&light_barrier); /* all save at the same moment */
        if (rc == 0 && u)
            rc = storage_deliver(u, NULL, d, &light_uids[n][i], NULL);
        else if (rc == 0)
            rc = storage_append(light_full, light_inbox, msg, sizeof(msg) - 1, 0, NULL, 0, 0,
                                &light_uids[n][i]);
        storage_draft_free(d);
        storage_close_light(u);
        if (rc) {
            pthread_mutex_lock(&mu);
            errors++;
            fprintf(stderr, "light thread %ld round %d: %s\n", n, i, storage_strerror(rc));
            pthread_mutex_unlock(&mu);
        }
    }
    return NULL;
}

static void test_light_group_commit(void)
{
    pthread_t t[LIGHT_THREADS];
    struct storage_user *u;
    struct storage_mbox m;
    struct storage_status st;
    uint64_t c0, s0, c1, s1;
    unsigned problems = 99;
    bool distinct = true;

    CHECK(storage_open_light(data_dir, 3, &u) == STORAGE_E_NOMBOX,
          "no light handle for an account without an index");
    CHECK(storage_open(data_dir, 3, &light_full) == 0 &&
              storage_mbox_get(light_full, "INBOX", &m) == 0,
          "store of account 3 created");
    light_inbox = m.id;
    /* kept between rounds: later rounds take up the handle of the earlier */
    storage_set_limits(&(struct storage_limits){.light_keep_max = 2, .light_keep_ms = 60000});
    errors = 0;
    storage_save_stats(&c0, &s0);
    pthread_barrier_init(&light_barrier, NULL, LIGHT_THREADS);
    for (long i = 0; i < LIGHT_THREADS; i++)
        pthread_create(&t[i], NULL, light_worker, (void *)(intptr_t)i);
    for (int i = 0; i < LIGHT_THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&light_barrier);
    storage_save_stats(&c1, &s1);
    CHECK(errors == 0, "every light delivery and full append succeeded");
    CHECK(s1 - s0 == LIGHT_THREADS * LIGHT_ROUNDS, "every message counted once");
    CHECK(c1 - c0 < s1 - s0, "fewer index commits than messages (group commit)");
    printf("# %llu messages in %llu commits\n", (unsigned long long)(s1 - s0),
           (unsigned long long)(c1 - c0));
    for (int a = 0; a < LIGHT_THREADS * LIGHT_ROUNDS; a++)
        for (int b = a + 1; b < LIGHT_THREADS * LIGHT_ROUNDS; b++)
            if (light_uids[a / LIGHT_ROUNDS][a % LIGHT_ROUNDS] ==
                light_uids[b / LIGHT_ROUNDS][b % LIGHT_ROUNDS])
                distinct = false;
    CHECK(distinct, "no UID given twice");
    storage_close(light_full);
    storage_set_limits(&(struct storage_limits){0});
    CHECK(storage_open_light(data_dir, 3, &u) == 0, "a light handle taken up again");
    storage_close_light(u); /* past the (now zero) maximum: closed */
    CHECK(storage_check(data_dir, 3, NULL, NULL, &problems) == 0 && problems == 0,
          "index and Maildir agree after light deliveries");
    CHECK(storage_open(data_dir, 3, &u) == 0 && storage_mbox_status(u, light_inbox, &st) == 0 &&
              st.messages == LIGHT_THREADS * LIGHT_ROUNDS && st.uidnext == st.messages + 1,
          "every message in the index, UIDs 1 to N");
    storage_close(u);
}

/* A light handle opened for each delivery syncs its WAL's directory once,
 * not at every delivery: the second connection finds the WAL noted. */
static int light_deliver_once(int64_t id)
{
    static const char msg[] = "From: a@example.org\r\nSubject: once\r\n\r\nbody\r\n";
    struct storage_user *u;
    struct storage_draft *d;
    uint32_t uid;
    int rc = storage_open_light(data_dir, id, &u);

    if (rc)
        return rc;
    if ((rc = storage_draft_new(u, 0, &d)) == 0) {
        if ((rc = storage_draft_write(d, msg, sizeof(msg) - 1)) == 0 &&
            (rc = storage_draft_finish(d)) == 0)
            rc = storage_deliver(u, NULL, d, &uid, NULL);
        storage_draft_free(d);
    }
    storage_close_light(u); /* keep maximum 0: its connection closes */
    return rc;
}

static void test_light_wal_dir_synced_once(void)
{
    struct storage_user *u;
    struct storage_mbox m;
    struct storage_status st;
    struct statx sx;
    uint64_t k0, k1, k2;
    bool btime;

    btime = statx(AT_FDCWD, data_dir, 0, STATX_BTIME, &sx) == 0 && (sx.stx_mask & STATX_BTIME);
    CHECK(storage_open(data_dir, 5, &u) == 0, "store of account 5 created");
    storage_close(u); /* its WAL goes with the last connection */
    storage_set_limits(&(struct storage_limits){0});
    k0 = storage_wal_dirsyncs_skipped();
    CHECK(light_deliver_once(5) == 0, "first light delivery (a new WAL)");
    k1 = storage_wal_dirsyncs_skipped();
    CHECK(light_deliver_once(5) == 0 && light_deliver_once(5) == 0,
          "two more, each on a connection of its own");
    k2 = storage_wal_dirsyncs_skipped();
    CHECK(k1 == k0, "the WAL made by the first had its directory synced");
    if (btime)
        CHECK(k2 - k1 == 2, "the next connections found it synced already");
    else
        printf("# no birth times on this file system: every connection syncs the directory\n");
    CHECK(storage_open(data_dir, 5, &u) == 0 && storage_mbox_get(u, "INBOX", &m) == 0 &&
              storage_mbox_status(u, m.id, &st) == 0 && st.messages == 3,
          "the three messages are in the index");
    storage_close(u);
}

/* A kept light handle closes past its time without another light open or
 * close coming to close it. */
static void test_light_expire(void)
{
    struct storage_user *u;
    struct timespec pause = {0, 60 * 1000000};

    storage_set_limits(&(struct storage_limits){.light_keep_max = 4, .light_keep_ms = 50});
    CHECK(storage_open_light(data_dir, 5, &u) == 0, "a light handle");
    storage_close_light(u);
    CHECK(storage_light_expire() == 1, "kept after its use");
    nanosleep(&pause, NULL);
    CHECK(storage_light_expire() == 0, "closed once past its time");
    storage_set_limits(&(struct storage_limits){0});
}

static int count_bad(void)
{
    char p[512];
    DIR *d;
    struct dirent *de;
    int n = 0;
    snprintf(p, sizeof(p), "%s/users/1", data_dir);
    if (!(d = opendir(p)))
        return -1;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".bad."))
            n++;
    closedir(d);
    return n;
}

/* ---- two processes create one index ---- */

#define CREATE_ROUNDS 100
#define CREATE_FIRST_ID 1000

/* Run before any thread starts: each round forks a child that opens a new
 * account's store at the moment the parent does (both wait on a pipe). */
static void test_two_processes_create_one_index(void)
{
    int failed = 0;

    for (int i = 0; i < CREATE_ROUNDS; i++) {
        int64_t id = CREATE_FIRST_ID + i;
        int go[2], status = 0;
        char b;
        struct storage_user *u;
        pid_t pid;

        if (pipe(go) != 0)
            break;
        pid = fork();
        if (pid == 0) {
            int rc = 1;
            close(go[1]);
            if (read(go[0], &b, 1) == 1)
                rc = storage_open(data_dir, id, &u);
            if (rc == 0)
                storage_close(u);
            else
                fprintf(stderr, "account %lld, child: %s\n", (long long)id,
                        rc == 1 ? "no start" : storage_strerror(rc));
            _exit(rc == 0 ? 0 : 1);
        }
        close(go[0]);
        if (pid < 0) {
            close(go[1]);
            break;
        }
        int rc = write(go[1], "x", 1) == 1 ? storage_open(data_dir, id, &u) : 1;
        close(go[1]);
        if (rc == 0)
            storage_close(u);
        else
            fprintf(stderr, "account %lld, parent: %s\n", (long long)id,
                    rc == 1 ? "no start" : storage_strerror(rc));
        failed += rc != 0;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    CHECK(failed == 0, "two processes creating one index at once both open it");
}

int main(void)
{
    pthread_t t[THREADS];
    struct storage_user *u;
    struct storage_mbox m;
    struct storage_status st;

    if (check_mkdtemp(data_dir, sizeof(data_dir), "coffre-race") != 0)
        return 1;
    test_two_processes_create_one_index();
    CHECK(storage_open(data_dir, 1, &u) == 0, "store created");
    storage_close(u);
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK(errors == 0, "every open and append succeeded");
    CHECK(count_bad() == 0, "no index moved aside as damaged");
    CHECK(storage_open(data_dir, 1, &u) == 0 && storage_mbox_get(u, "INBOX", &m) == 0 &&
              storage_mbox_status(u, m.id, &st) == 0 && st.messages == THREADS * ROUNDS * PER_ROUND,
          "every appended message is in the index");
    storage_close(u);
    test_opens_do_not_wait_for_other_accounts();
    test_light_group_commit();
    test_light_wal_dir_synced_once();
    test_light_expire();
    check_rmtree(data_dir);
    return check_summary();
}
