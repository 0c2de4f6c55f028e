/* Unit test: several threads opening, writing and closing the store of one
 * account at once, as sessions of one user do when they come and go. No
 * open may mistake an index that another handle is checkpointing for a
 * damaged one (no index moved aside, no rebuild), and no write is lost. The
 * reopen-while-closing race itself is reproduced by it-pop3-quit-race.
 * And while one account's index is being built (a long open), another
 * account opens and closes without waiting for it. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int main(void)
{
    pthread_t t[THREADS];
    struct storage_user *u;
    struct storage_mbox m;
    struct storage_status st;

    if (check_mkdtemp(data_dir, sizeof(data_dir), "coffre-race") != 0)
        return 1;
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
    check_rmtree(data_dir);
    return check_summary();
}
