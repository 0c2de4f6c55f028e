/* Drafts opened ahead: empty files in an account's tmp/, created by a
 * thread of their own while a burst of messages is being written.
 *
 * Creating a file costs this filesystem far more than its CPU: the new
 * inode's block of the inode table may have to be read first, so that an
 * open with O_CREAT takes from 50 µs to a fraction of a millisecond. A
 * MULTIAPPEND of a few hundred small messages, written one after another
 * on one pool thread while the client waits, paid that for each of them.
 * When a draft is opened as one of several (storage_draft_next: the
 * second message of a MULTIAPPEND on), this thread creates up to
 * AHEAD_MAX more for the account, and the drafts that follow take those
 * first: the creations overlap the writes instead of coming between them.
 *
 * The files are kept only while the store is open and awake:
 * storage_sleep and the store's end close and remove them (ahead_drop).
 * A crash leaves them as empty files in tmp/, which the removal of stale
 * tmp/ files takes like any other. At most AHEAD_TOTAL_MAX files are held
 * for all accounts together (descriptors are budgeted: server/main.c).
 *
 * One mutex guards every account's files and the queue; the thread holds
 * it only to take work and to hand over what it created, never across a
 * system call. An account's store is not freed while the thread creates
 * for it: ahead_drop waits for that to end. */
#include "storage/internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/base/log.h"

#define AHEAD_MAX 32        /* files held for one account */
#define AHEAD_LOW 8         /* fewer left: more are made */
#define AHEAD_TOTAL_MAX 256 /* files held for all accounts */

struct ahead {
    unsigned n;
    bool queued, running, closing;
    struct storage_user *qnext;
    int fd[AHEAD_MAX];
    char *path[AHEAD_MAX];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cond = PTHREAD_COND_INITIALIZER; /* the queue has an account */
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER; /* a creation ended */
static struct storage_user *qhead, *qtail;
static unsigned total; /* files held, and being made, for all accounts */
static bool started, failed;

static void *ahead_thread(void *arg)
{
    (void)arg;
    for (;;) {
        int fds[AHEAD_MAX];
        char *paths[AHEAD_MAX];
        unsigned want, made = 0;
        struct storage_user *u;

        pthread_mutex_lock(&mu);
        while (!qhead)
            pthread_cond_wait(&work_cond, &mu);
        u = qhead;
        qhead = u->ahead->qnext;
        if (!qhead)
            qtail = NULL;
        u->ahead->queued = false;
        want = AHEAD_MAX - u->ahead->n;
        if (want > AHEAD_TOTAL_MAX - total)
            want = AHEAD_TOTAL_MAX - total;
        total += want;
        u->ahead->running = true;
        pthread_mutex_unlock(&mu);

        /* u stays: ahead_drop waits for running to end */
        char tmpdir[STORAGE_PATH_MAX];
        bool named = pathf(tmpdir, sizeof(tmpdir), "%s/tmp", u->maildir) >= 0;
        for (; named && made < want; made++) {
            char path[STORAGE_PATH_MAX];
            if (tmp_file_open(tmpdir, path, sizeof(path), &fds[made]) != 0)
                break;
            if (!(paths[made] = strdup(path))) {
                close(fds[made]);
                unlink(path);
                break;
            }
        }

        pthread_mutex_lock(&mu);
        struct ahead *a = u->ahead;
        unsigned kept = 0;
        total -= want;
        if (!a->closing) {
            for (; kept < made && a->n < AHEAD_MAX; kept++, a->n++) {
                a->fd[a->n] = fds[kept];
                a->path[a->n] = paths[kept];
            }
            total += kept;
        }
        a->running = false;
        pthread_cond_broadcast(&done_cond);
        pthread_mutex_unlock(&mu);
        for (unsigned i = kept; i < made; i++) {
            close(fds[i]);
            unlink(paths[i]);
            free(paths[i]);
        }
    }
    return NULL;
}

/* Under mu: u's files made now unless they are being made or are plenty. */
static void want_more(struct storage_user *u)
{
    struct ahead *a = u->ahead;

    if (!a && !(a = u->ahead = calloc(1, sizeof(*a))))
        return;
    if (a->queued || a->running || a->closing || a->n >= AHEAD_LOW || total >= AHEAD_TOTAL_MAX)
        return;
    if (!started) {
        pthread_t t;
        pthread_attr_t at;
        started = true;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, ahead_thread, NULL) != 0) {
            failed = true;
            log_warn("storage: no thread to open drafts ahead; each is opened when needed");
        }
        pthread_attr_destroy(&at);
    }
    if (failed)
        return;
    a->queued = true;
    a->qnext = NULL;
    if (qtail)
        qtail->ahead->qnext = u;
    else
        qhead = u;
    qtail = u;
    pthread_cond_signal(&work_cond);
}

int ahead_take(struct storage_user *u, char *path, size_t len, bool more)
{
    int fd = -1;

    pthread_mutex_lock(&mu);
    struct ahead *a = u->ahead;
    if (a && a->n > 0 && !a->closing) {
        char *p = a->path[--a->n];
        fd = a->fd[a->n];
        total--;
        if (pathf(path, len, "%s", p) < 0) {
            close(fd);
            unlink(p);
            fd = -1;
        }
        free(p);
    }
    if (more)
        want_more(u);
    pthread_mutex_unlock(&mu);
    return fd;
}

void ahead_drop(struct storage_user *u, bool final)
{
    struct ahead *a;
    unsigned n;
    int fds[AHEAD_MAX];
    char *paths[AHEAD_MAX];

    pthread_mutex_lock(&mu);
    if (!(a = u->ahead)) {
        pthread_mutex_unlock(&mu);
        return;
    }
    if (a->queued) {
        struct storage_user **pp = &qhead, *prev = NULL;
        while (*pp != u) {
            prev = *pp;
            pp = &(*pp)->ahead->qnext;
        }
        *pp = a->qnext;
        if (qtail == u)
            qtail = prev;
        a->queued = false;
    }
    a->closing = true; /* what is being made now is removed by the thread */
    while (a->running)
        pthread_cond_wait(&done_cond, &mu);
    n = a->n;
    memcpy(fds, a->fd, n * sizeof(*fds));
    memcpy(paths, a->path, n * sizeof(*paths));
    a->n = 0;
    total -= n;
    if (final) {
        u->ahead = NULL;
    } else {
        a->closing = false;
        a = NULL;
    }
    pthread_mutex_unlock(&mu);
    for (unsigned i = 0; i < n; i++) {
        close(fds[i]);
        unlink(paths[i]);
        free(paths[i]);
    }
    free(a);
}

unsigned ahead_ready(struct storage_user *u)
{
    unsigned n = 0;

    pthread_mutex_lock(&mu);
    while (u->ahead && (u->ahead->queued || u->ahead->running))
        pthread_cond_wait(&done_cond, &mu);
    if (u->ahead)
        n = u->ahead->n;
    pthread_mutex_unlock(&mu);
    return n;
}
