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
 * deliveries join one group commit) and closed by their last user; they
 * are not in the registry of full handles, and a full handle of the same
 * account may be open beside one: SQLite's lock serializes their writes. */
#include "storage/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static pthread_mutex_t light_lock = PTHREAD_MUTEX_INITIALIZER;
static struct storage_user *lights;

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
    /* a missing, empty or cut index, or a missing Maildir, is for the full
     * open to create or repair */
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
    struct storage_user *u, *nu;
    int rc;

    *out = NULL;
    if (id < 0 || !data_dir || !*data_dir)
        return STORAGE_E_INVAL;
    pthread_mutex_lock(&light_lock);
    for (u = lights; u; u = u->next) {
        if (u->id == id && strcmp(u->data_dir, data_dir) == 0) {
            u->refs++;
            pthread_mutex_unlock(&light_lock);
            *out = u;
            return 0;
        }
    }
    pthread_mutex_unlock(&light_lock);

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
        if (u->id == id && strcmp(u->data_dir, data_dir) == 0)
            break;
    }
    if (u) {
        u->refs++; /* opened meanwhile by another delivery */
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
 * takes it up, SQLite checkpoints it as it grows, and the last close of a
 * full handle removes it. */
static void no_checkpoint(sqlite3 *db)
{
    if (db)
        sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
}

void storage_close_light(struct storage_user *u)
{
    if (!u)
        return;
    pthread_mutex_lock(&light_lock);
    if (--u->refs > 0) {
        pthread_mutex_unlock(&light_lock);
        return;
    }
    for (struct storage_user **p = &lights; *p; p = &(*p)->next) {
        if (*p == u) {
            *p = u->next;
            break;
        }
    }
    pthread_mutex_unlock(&light_lock);
    no_checkpoint(u->wdb);
    for (int i = 0; i < STORAGE_READERS; i++)
        no_checkpoint(u->rdb[i]);
    user_free(u);
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
