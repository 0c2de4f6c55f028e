/* Light handles: what a delivery to an account whose store is not open
 * needs, and nothing more. A full open (storage_open) checks the index,
 * looks at every folder of the Maildir for files other programs dropped
 * there, removes stale tmp/ files, and its last close checkpoints the index
 * and removes its WAL: several milliseconds, fsyncs and dozens of system
 * calls, repeated for every message when deliveries are spread over more
 * accounts than stay open. A light handle only knows the account's paths;
 * its one connection opens at the first write (as an asleep handle's does),
 * the delivery checks the schema and the folder's times in its
 * transaction (storage_save's group commit, message.c), and the close
 * leaves the WAL for the next connection instead of checkpointing. The
 * next full open still rescans what changed, as after any other process.
 *
 * Light handles of one account are shared while in use (concurrent
 * deliveries join one group commit); the last user keeps the handle open
 * for the next delivery (storage_limits.light_keep_max handles at most,
 * light_keep_ms each, the one idle longest closed first; expired ones are
 * closed by the next open or close of any light handle, or by
 * storage_light_expire, which the service calls while some are kept), so that a stream
 * of mail to the same accounts neither opens a connection per message nor
 * reads its WAL again. Finding one and letting the oldest go take the same
 * time with 5,000 accounts as with 20 (a table by account, and the kept
 * ones listed in the order of their last use). They are not in the
 * registry of full handles, and a
 * full handle of the same account may be open beside one: SQLite's lock
 * serializes their writes. */
#include "storage/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The handles in use or kept, found by account in a table of buckets;
 * the kept ones (no reference) also in a list, idle longest first, so that
 * both finding a handle and letting the oldest go cost the same whatever
 * the number of accounts mail goes to. */
#define LIGHT_BUCKETS 1024 /* power of two */

static pthread_mutex_t light_lock = PTHREAD_MUTEX_INITIALIZER;
static struct storage_user *buckets[LIGHT_BUCKETS];
static struct storage_user *kept_head, *kept_tail;
static unsigned n_kept;

static void light_end(struct storage_user *u);

static struct storage_user **bucket_of(int64_t id)
{
    return &buckets[(uint64_t)id & (LIGHT_BUCKETS - 1)];
}

/* Under light_lock: the usable handle of the account, NULL. */
static struct storage_user *light_find(const char *data_dir, int64_t id)
{
    for (struct storage_user *u = *bucket_of(id); u; u = u->next)
        if (u->id == id && !__atomic_load_n(&u->light_stale, __ATOMIC_RELAXED) &&
            strcmp(u->data_dir, data_dir) == 0)
            return u;
    return NULL;
}

static void bucket_remove(struct storage_user *u)
{
    for (struct storage_user **p = bucket_of(u->id); *p; p = &(*p)->next) {
        if (*p == u) {
            *p = u->next;
            u->next = NULL;
            return;
        }
    }
}

static void kept_add(struct storage_user *u)
{
    u->kept_next = NULL;
    u->kept_prev = kept_tail;
    if (kept_tail)
        kept_tail->kept_next = u;
    else
        kept_head = u;
    kept_tail = u;
    n_kept++;
}

static void kept_remove(struct storage_user *u)
{
    if (u->kept_prev)
        u->kept_prev->kept_next = u->kept_next;
    else
        kept_head = u->kept_next;
    if (u->kept_next)
        u->kept_next->kept_prev = u->kept_prev;
    else
        kept_tail = u->kept_prev;
    u->kept_prev = u->kept_next = NULL;
    n_kept--;
}

/* Under light_lock: takes a reference to u, kept or in use. */
static void light_ref(struct storage_user *u)
{
    if (u->refs++ == 0)
        kept_remove(u);
}

/* Under light_lock: takes the kept handles to close (past their time, or
 * the ones idle longest past the maximum) out of the table into *out. The
 * kept list is in the order of their last use: they are at its head. */
static void take_expired(struct storage_user **out)
{
    uint64_t now = mono_ms();
    struct storage_user *u;

    while ((u = kept_head) && (n_kept > storage_limits.light_keep_max ||
                               now - u->light_idle_since >= storage_limits.light_keep_ms)) {
        kept_remove(u);
        bucket_remove(u);
        u->next = *out;
        *out = u;
    }
}

static void close_list(struct storage_user *list)
{
    while (list) {
        struct storage_user *next = list->next;
        light_end(list);
        list = next;
    }
}

/* The account's store exists with an index to write into. */
static int light_paths(struct storage_user *u)
{
    char path[STORAGE_PATH_MAX];
    struct stat sb;
    size_t n = strlen(u->data_dir) + 64;

    if (!(u->root = malloc(n)) || !(u->maildir = malloc(n + 8)))
        return STORAGE_E_NOMEM;
    if (pathf(u->root, n, "%s/users/%" PRId64, u->data_dir, u->id) < 0 ||
        pathf(u->maildir, n + 8, "%s/Maildir", u->root) < 0)
        return STORAGE_E_FAIL;
    /* a missing or empty index, or a missing Maildir, is for the full open
     * to create (a damaged index fails the delivery's transaction, and the
     * full open repairs it) */
    pathf(path, sizeof(path), "%s/index.sqlite", u->root);
    if (stat(path, &sb) < 0 || sb.st_size == 0)
        return STORAGE_E_NOMBOX;
    u->index_dev = sb.st_dev;
    u->index_ino = sb.st_ino;
    pathf(path, sizeof(path), "%s/tmp", u->maildir);
    if (stat(path, &sb) < 0 || !S_ISDIR(sb.st_mode))
        return STORAGE_E_NOMBOX;
    return 0;
}

int storage_open_light(const char *data_dir, int64_t id, struct storage_user **out)
{
    struct storage_user *u, *nu, *expired = NULL;
    int rc;

    *out = NULL;
    if (id < 0 || !data_dir || !*data_dir)
        return STORAGE_E_INVAL;
    pthread_mutex_lock(&light_lock);
    take_expired(&expired);
    if ((u = light_find(data_dir, id)) != NULL)
        light_ref(u);
    pthread_mutex_unlock(&light_lock);
    close_list(expired);
    if (u) {
        *out = u;
        return 0;
    }

    if (!(nu = user_new(id, data_dir)))
        return STORAGE_E_NOMEM;
    if ((rc = light_paths(nu)) != 0) {
        user_free(nu);
        return rc;
    }
    nu->light = true;
    nu->asleep = true; /* the writer opens at the first write */
    nu->refs = 1;
    pthread_mutex_lock(&light_lock);
    if ((u = light_find(data_dir, id)) != NULL) {
        light_ref(u); /* opened meanwhile by another delivery */
    } else {
        nu->next = *bucket_of(id);
        *bucket_of(id) = nu;
    }
    pthread_mutex_unlock(&light_lock);
    if (u)
        user_free(nu);
    *out = u ? u : nu;
    return 0;
}

/* The connection leaves the WAL as it is: the next one (light or full)
 * takes it up, and the last close of a full handle removes it. */
static void no_checkpoint(sqlite3 *db)
{
    if (db)
        sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
}

/* The first connection to an index reads its whole WAL again (the shared
 * memory of the last one is gone), and each light delivery is such a first
 * connection when the account is otherwise closed: past LIGHT_WAL_MAX, the
 * light handle that ends moves the WAL into the index and truncates it (a
 * write and an fsync of the index every few deliveries, instead of a read
 * of a WAL growing up to SQLite's own checkpoint at 4 MB at each one).
 * It never waits: a full handle's reader or writer in the way makes it
 * give up (busy), harmlessly, and the WAL stays for another time. */
#define LIGHT_WAL_MAX (512 * 1024)

static void bound_wal(struct storage_user *u)
{
    char path[STORAGE_PATH_MAX];
    struct stat sb;

    if (!u->wdb)
        return;
    pathf(path, sizeof(path), "%s/index.sqlite-wal", u->root);
    if (stat(path, &sb) < 0 || sb.st_size <= LIGHT_WAL_MAX)
        return;
    sqlite3_busy_timeout(u->wdb, 0);
    sqlite3_wal_checkpoint_v2(u->wdb, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
}

static void light_end(struct storage_user *u)
{
    bound_wal(u);
    no_checkpoint(u->wdb);
    for (int i = 0; i < STORAGE_READERS; i++)
        no_checkpoint(u->rdb[i]);
    user_free(u);
}

void storage_close_light(struct storage_user *u)
{
    struct storage_user *expired = NULL;

    if (!u)
        return;
    pthread_mutex_lock(&light_lock);
    if (--u->refs > 0) {
        pthread_mutex_unlock(&light_lock);
        return;
    }
    if (storage_limits.light_keep_max && storage_limits.light_keep_ms &&
        !__atomic_load_n(&u->light_stale, __ATOMIC_RELAXED)) {
        u->light_idle_since = mono_ms();
        kept_add(u);
        take_expired(&expired);
        pthread_mutex_unlock(&light_lock);
        close_list(expired);
        return;
    }
    bucket_remove(u);
    pthread_mutex_unlock(&light_lock);
    light_end(u);
}

unsigned storage_light_expire(void)
{
    struct storage_user *expired = NULL;
    unsigned left;

    pthread_mutex_lock(&light_lock);
    take_expired(&expired);
    left = n_kept;
    pthread_mutex_unlock(&light_lock);
    close_list(expired);
    return left;
}

unsigned storage_light_forget(int64_t id)
{
    struct storage_user *list = NULL, *u, *next;
    unsigned busy = 0;

    pthread_mutex_lock(&light_lock);
    for (u = *bucket_of(id); u; u = next) {
        next = u->next;
        if (u->id != id)
            continue;
        __atomic_store_n(&u->light_stale, true, __ATOMIC_RELAXED);
        if (u->refs) {
            busy++;
            continue;
        }
        kept_remove(u);
        bucket_remove(u);
        u->next = list;
        list = u;
    }
    pthread_mutex_unlock(&light_lock);
    close_list(list);
    return busy;
}

int light_check_index(struct storage_user *u)
{
    char path[STORAGE_PATH_MAX];
    struct stat sb;

    /* coffrectl mailbox reindex put another file in its place since the
     * handle looked: the connection may be on the old one */
    pathf(path, sizeof(path), "%s/index.sqlite", u->root);
    if (stat(path, &sb) < 0 || sb.st_dev != u->index_dev || sb.st_ino != u->index_ino)
        return STORAGE_E_TEMP;
    return 0;
}

bool storage_has_index(const char *data_dir, int64_t id)
{
    char path[STORAGE_PATH_MAX];
    struct stat sb;

    return pathf(path, sizeof(path), "%s/users/%" PRId64 "/index.sqlite", data_dir, id) > 0 &&
           stat(path, &sb) == 0 && sb.st_size > 0;
}
