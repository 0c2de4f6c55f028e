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
 * closed by the next open or close of any light handle), so that a stream
 * of mail to the same accounts neither opens a connection per message nor
 * reads its WAL again. They are not in the registry of full handles, and a
 * full handle of the same account may be open beside one: SQLite's lock
 * serializes their writes. */
#include "storage/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static pthread_mutex_t light_lock = PTHREAD_MUTEX_INITIALIZER;
static struct storage_user *lights; /* in use or kept */
static unsigned n_kept;             /* of them, kept: no reference */

static void light_end(struct storage_user *u);

/* Under light_lock: takes the kept handles to close out of the list (past
 * their time, or the ones idle longest past the maximum) into *out. */
static void take_expired(struct storage_user **out)
{
    uint64_t now = mono_ms();
    struct storage_user **p, **oldest, *u;

    for (p = &lights; *p;) {
        u = *p;
        if (u->refs == 0 && now - u->light_idle_since >= storage_limits.light_keep_ms) {
            *p = u->next;
            n_kept--;
            u->next = *out;
            *out = u;
        } else {
            p = &u->next;
        }
    }
    while (n_kept > storage_limits.light_keep_max) {
        oldest = NULL;
        for (p = &lights; *p; p = &(*p)->next)
            if ((*p)->refs == 0 &&
                (!oldest || (*p)->light_idle_since < (*oldest)->light_idle_since))
                oldest = p;
        if (!oldest)
            return;
        u = *oldest;
        *oldest = u->next;
        n_kept--;
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
    for (u = lights; u; u = u->next) {
        if (u->id == id && !__atomic_load_n(&u->light_stale, __ATOMIC_RELAXED) &&
            strcmp(u->data_dir, data_dir) == 0) {
            if (u->refs++ == 0)
                n_kept--;
            pthread_mutex_unlock(&light_lock);
            close_list(expired);
            *out = u;
            return 0;
        }
    }
    pthread_mutex_unlock(&light_lock);
    close_list(expired);

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
    for (u = lights; u; u = u->next) {
        if (u->id == id && !__atomic_load_n(&u->light_stale, __ATOMIC_RELAXED) &&
            strcmp(u->data_dir, data_dir) == 0)
            break;
    }
    if (u) {
        if (u->refs++ == 0) /* opened meanwhile by another delivery */
            n_kept--;
    } else {
        nu->next = lights;
        lights = nu;
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
        n_kept++;
        take_expired(&expired);
        pthread_mutex_unlock(&light_lock);
        close_list(expired);
        return;
    }
    for (struct storage_user **p = &lights; *p; p = &(*p)->next) {
        if (*p == u) {
            *p = u->next;
            break;
        }
    }
    pthread_mutex_unlock(&light_lock);
    light_end(u);
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
