/* The file layer the indexes are opened through: SQLite's own (unix) with
 * one change, to the directory sync of the WAL.
 *
 * SQLite opens a WAL asking to create it, and a connection that asked syncs
 * the WAL's directory at its first sync, whether it created the file or
 * found it there: that makes the file's name durable. A connection opened
 * for one delivery (a light handle, when mail goes to more accounts than
 * stay open) thus made one more sync per message than a kept one. The name
 * needs it once: after a sync of a WAL opened to be created (which synced
 * its directory), the file is noted, by device, inode and birth time; a
 * later connection that finds that same file opens it without asking to
 * create it, so without the directory sync. A WAL removed through this
 * layer is forgotten, a file made again has another birth time, and the
 * notes are this process's: after a restart each WAL's directory is synced
 * again once. Where the file system gives no birth time nothing is noted
 * and SQLite syncs as before. */
#include "storage/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define VFS_NAME "coffre"

/* WAL files whose directory was synced since they exist: a cache of so
 * many places, one file each (a file pushed out costs one more directory
 * sync, at its next open). */
#define NOTED_SLOTS 16384 /* power of two */

struct wal_id {
    uint64_t dev, ino;
    int64_t btime_sec;
    uint32_t btime_nsec;
};

static pthread_mutex_t noted_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wal_id noted[NOTED_SLOTS];
static uint64_t skipped; /* WAL opens without the directory sync */

static sqlite3_vfs vfs, *base;
static sqlite3_io_methods wal_methods;

/* A WAL opened to be created: noted after its first sync. */
struct wal_file {
    sqlite3_file f;
    const char *path; /* SQLite keeps it valid until xClose */
    bool note;
    sqlite3_file *real; /* the base VFS's file, after this struct */
};

static bool wal_id_of(const char *path, struct wal_id *id)
{
    struct statx sx;

    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_INO | STATX_BTIME, &sx) != 0 ||
        !(sx.stx_mask & STATX_BTIME) || !(sx.stx_mask & STATX_INO))
        return false;
    memset(id, 0, sizeof(*id));
    id->dev = ((uint64_t)sx.stx_dev_major << 32) | sx.stx_dev_minor;
    id->ino = sx.stx_ino;
    id->btime_sec = sx.stx_btime.tv_sec;
    id->btime_nsec = sx.stx_btime.tv_nsec;
    return true;
}

static size_t slot_of(const struct wal_id *id)
{
    uint64_t h = id->ino * 0x9E3779B97F4A7C15ull ^ id->dev;
    return (size_t)(h >> 40) & (NOTED_SLOTS - 1);
}

static bool is_noted(const struct wal_id *id)
{
    bool r;

    pthread_mutex_lock(&noted_lock);
    r = memcmp(&noted[slot_of(id)], id, sizeof(*id)) == 0;
    pthread_mutex_unlock(&noted_lock);
    return r;
}

static void note(const struct wal_id *id, bool on)
{
    struct wal_id *s = &noted[slot_of(id)];

    pthread_mutex_lock(&noted_lock);
    if (on)
        *s = *id;
    else if (memcmp(s, id, sizeof(*id)) == 0)
        memset(s, 0, sizeof(*s));
    pthread_mutex_unlock(&noted_lock);
}

/* ---- the WAL opened to be created: the base file's methods, and a note
 * after the first sync ---- */

static struct sqlite3_file *real(sqlite3_file *f)
{
    return ((struct wal_file *)f)->real;
}

static int w_close(sqlite3_file *f)
{
    return real(f)->pMethods->xClose(real(f));
}

static int w_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    return real(f)->pMethods->xRead(real(f), p, n, off);
}

static int w_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    return real(f)->pMethods->xWrite(real(f), p, n, off);
}

static int w_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return real(f)->pMethods->xTruncate(real(f), size);
}

static int w_sync(sqlite3_file *f, int flags)
{
    struct wal_file *w = (struct wal_file *)f;
    struct wal_id id;
    int rc = w->real->pMethods->xSync(w->real, flags);

    /* that sync was the one that synced the directory */
    if (rc == SQLITE_OK && w->note) {
        w->note = false;
        if (wal_id_of(w->path, &id))
            note(&id, true);
    }
    return rc;
}

static int w_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return real(f)->pMethods->xFileSize(real(f), size);
}

static int w_lock(sqlite3_file *f, int l)
{
    return real(f)->pMethods->xLock(real(f), l);
}

static int w_unlock(sqlite3_file *f, int l)
{
    return real(f)->pMethods->xUnlock(real(f), l);
}

static int w_reserved(sqlite3_file *f, int *out)
{
    return real(f)->pMethods->xCheckReservedLock(real(f), out);
}

static int w_control(sqlite3_file *f, int op, void *arg)
{
    return real(f)->pMethods->xFileControl(real(f), op, arg);
}

static int w_sector(sqlite3_file *f)
{
    return real(f)->pMethods->xSectorSize(real(f));
}

static int w_device(sqlite3_file *f)
{
    return real(f)->pMethods->xDeviceCharacteristics(real(f));
}

/* ---- the VFS ---- */

static int v_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out)
{
    struct wal_file *w = (struct wal_file *)f;
    struct wal_id id;
    int rc;

    (void)v;
    if (!name || !(flags & SQLITE_OPEN_WAL) || !(flags & SQLITE_OPEN_CREATE))
        return base->xOpen(base, name, f, flags, out);
    if (wal_id_of(name, &id) && is_noted(&id)) {
        rc = base->xOpen(base, name, f, flags & ~SQLITE_OPEN_CREATE, out);
        if (rc == SQLITE_OK) {
            __atomic_add_fetch(&skipped, 1, __ATOMIC_RELAXED);
            return rc;
        }
        /* gone meanwhile: made again, as SQLite asked */
    }
    memset(w, 0, sizeof(*w));
    w->real = (sqlite3_file *)(w + 1);
    w->path = name;
    rc = base->xOpen(base, name, w->real, flags, out);
    if (rc != SQLITE_OK) {
        f->pMethods = NULL;
        return rc;
    }
    w->note = true;
    f->pMethods = &wal_methods;
    return SQLITE_OK;
}

static int v_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    struct wal_id id;
    bool known = name && wal_id_of(name, &id);
    int rc;

    (void)v;
    rc = base->xDelete(base, name, sync_dir);
    if (known)
        note(&id, false);
    return rc;
}

static void vfs_init(void)
{
    base = sqlite3_vfs_find(NULL);
    if (!base)
        return;
    vfs = *base;
    vfs.pNext = NULL;
    vfs.zName = VFS_NAME;
    vfs.szOsFile = (int)sizeof(struct wal_file) + base->szOsFile;
    vfs.xOpen = v_open;
    vfs.xDelete = v_delete;
    wal_methods = (sqlite3_io_methods){
        .iVersion = 1,
        .xClose = w_close,
        .xRead = w_read,
        .xWrite = w_write,
        .xTruncate = w_truncate,
        .xSync = w_sync,
        .xFileSize = w_size,
        .xLock = w_lock,
        .xUnlock = w_unlock,
        .xCheckReservedLock = w_reserved,
        .xFileControl = w_control,
        .xSectorSize = w_sector,
        .xDeviceCharacteristics = w_device,
    };
    if (sqlite3_vfs_register(&vfs, 0) != SQLITE_OK)
        base = NULL;
}

const char *index_vfs(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, vfs_init);
    return base ? VFS_NAME : NULL;
}

uint64_t storage_wal_dirsyncs_skipped(void)
{
    return __atomic_load_n(&skipped, __ATOMIC_RELAXED);
}
