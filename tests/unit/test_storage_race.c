/* Unit test: several threads opening, writing and closing the store of one
 * account at once, as sessions of one user do when they come and go. No
 * open may mistake an index that another handle is checkpointing for a
 * damaged one (no index moved aside, no rebuild), and no write is lost. The
 * reopen-while-closing race itself is reproduced by it-pop3-quit-race. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    const char *base = getenv("TMPDIR");

    snprintf(data_dir, sizeof(data_dir), "%s/coffre-race-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(data_dir)) {
        perror("mkdtemp");
        return 1;
    }
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
    {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", data_dir);
        if (failures == 0 && system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", data_dir);
    }
    return check_summary();
}
