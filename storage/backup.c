/* Online backup and restore of one account's store: its index and its
 * Maildir, copied while coffred serves (coffrectl backup / restore).
 *
 * What a backup of an account is: DEST/users/<id>/ laid out exactly as in a
 * data directory, an index that is a snapshot of the live one, and in the
 * Maildir exactly the files of the messages that snapshot holds, under the
 * names the snapshot gives them (so that `coffrectl mailbox check` passes on
 * the backup itself and restore is a plain copy).
 *
 * Consistency. While we copy, deliveries add files (tmp/ -> new/, linked
 * before the index commits, acknowledged after), the flag sync renames files
 * (the unique part of the name stays, the ":2,<flags>" part moves, and the
 * file may go from new/ to cur/), and expunges and MOVEs unlink them after
 * their commit. The order is:
 *
 *  1. files first: every message file of every folder is hard-linked (or
 *     copied, on another file system) into DEST. A link keeps the file
 *     alive whatever the server does to its name afterwards.
 *  2. then the index: a snapshot with SQLite's online backup API, copied in
 *     one step (sqlite3_backup_step(-1)). In WAL mode that is one read
 *     transaction: writers go on committing beside it, nothing waits on us
 *     but a checkpoint, which cannot pass the snapshot until it ends. (A
 *     copy in small steps would restart at every commit of a delivery and
 *     might never end on a busy account; VACUUM INTO also reads in one
 *     transaction but rebuilds every table and index, which costs far more
 *     CPU for the same snapshot.)
 *  3. then the two are matched by the files' unique names, per folder: a
 *     row of the snapshot whose file was not linked in 1 (delivered between
 *     1 and 2, or renamed while 1 listed the folder, so that readdir saw
 *     neither name) is linked now from the live folder; a file linked in 1
 *     that no row of the snapshot names (a delivery not yet committed, an
 *     expunge committed before the snapshot, the second name of a rename
 *     seen twice) is removed from DEST; a file linked under another name
 *     than the snapshot's (the flag sync renamed it between 1 and 2) takes
 *     the snapshot's name in DEST, so that its flags are the snapshot's.
 *  4. the backup's index is then reconciled with its files as `coffrectl
 *     mailbox repair` does (storage_repair on DEST): a row whose file could not
 *     be found in 3 (expunged after the snapshot *and* not seen in 1: a
 *     message delivered and expunged during the backup) is dropped and
 *     recorded as expunged, so that a QRESYNC client learns of it. Then
 *     storage_check must find nothing.
 *
 * Hence every message committed (acknowledged) before the backup started is
 * in it unless its expunge committed before the snapshot: the backup is the
 * index as it was at the snapshot, every file there, flags as at the
 * snapshot; UIDVALIDITY and UIDs are the index's own.
 *
 * Incremental (into a DEST holding a previous backup): a signature of the
 * live index's visible state (every mailbox's name, UIDVALIDITY, UIDNEXT,
 * HIGHESTMODSEQ and special use, and the subscriptions: every delivery,
 * flag change and expunge moves one of them) is compared with the one kept
 * beside the previous copy; when equal, the account is left as it is.
 * Otherwise step 1 links only the files whose unique name the previous
 * backup's folder lacks, and the index is copied anew.
 *
 * Restore is a copy of the tree back (links where possible: message files
 * are never written in place, only created, renamed and unlinked), then
 * storage_check, and storage_repair should it find anything. */
#include "storage/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIG_FILE "backup-signature"
#define SNAPSHOT_TRIES 50 /* a busy source (a checkpoint resetting the WAL) */

/* A message file of a folder: its name in new/ or cur/ and its unique part. */
struct bfile {
    char *name;
    char *unique;
    int sub; /* 0 new/, 1 cur/ */
    bool keep;
};

struct blist {
    struct bfile *v;
    size_t n, cap;
};

static const char *const subs[] = {"new", "cur"};

static void blist_free(struct blist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].unique);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int bfile_cmp(const void *a, const void *b)
{
    const struct bfile *x = a, *y = b;
    return strcmp(x->unique, y->unique);
}

static int ucmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct bfile *)elem)->unique);
}

static struct bfile *blist_find(const struct blist *l, const char *unique)
{
    return l->n ? bsearch(unique, l->v, l->n, sizeof(*l->v), ucmp) : NULL;
}

/* The message files of folder dir (new/ and cur/), sorted by unique name. A
 * missing folder lists nothing. */
static int blist_read(const char *dir, struct blist *l)
{
    char p[STORAGE_PATH_MAX];

    memset(l, 0, sizeof(*l));
    for (int s = 0; s < 2; s++) {
        struct dirent *de;
        DIR *d;
        pathf(p, sizeof(p), "%s/%s", dir, subs[s]);
        if (!(d = opendir(p))) {
            if (errno == ENOENT || errno == ENOTDIR)
                continue;
            blist_free(l);
            return err_from_errno(errno);
        }
        while ((de = readdir(d)) != NULL) {
            char unique[256];
            uint32_t uid;
            unsigned flags;
            bool hi;
            if (de->d_name[0] == '.')
                continue;
            if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
                continue;
            if (array_grow(&l->v, &l->cap, l->n, sizeof(*l->v), 64) != 0)
                goto nomem;
            msg_file_parse(de->d_name, unique, sizeof(unique), &uid, &flags, &hi);
            l->v[l->n].sub = s;
            l->v[l->n].keep = false;
            l->v[l->n].name = strdup(de->d_name);
            l->v[l->n].unique = strdup(unique);
            if (!l->v[l->n].name || !l->v[l->n].unique) {
                free(l->v[l->n].name);
                free(l->v[l->n].unique);
                goto nomem;
            }
            l->n++;
        }
        closedir(d);
        continue;
    nomem:
        closedir(d);
        blist_free(l);
        return STORAGE_E_NOMEM;
    }
    if (l->n)
        qsort(l->v, l->n, sizeof(*l->v), bfile_cmp);
    return 0;
}

/* ---- copying files ---- */

struct bctx {
    struct storage_backup_stats *st;
    bool no_link; /* a link failed with EXDEV: copy from now on */
};

static int copy_bytes(const char *src, const char *dst, struct bctx *b)
{
    char buf[65536];
    struct stat sb;
    int in = open(src, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC), out, rc = 0;
    ssize_t r;

    if (in < 0)
        return -1;
    if (fstat(in, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(in);
        errno = EINVAL;
        return -1;
    }
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        int e = errno;
        close(in);
        errno = e;
        return -1;
    }
    while ((r = read(in, buf, sizeof(buf))) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -1;
            break;
        }
        for (ssize_t o = 0; o < r;) {
            ssize_t w = write(out, buf + o, (size_t)(r - o));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = -1;
                break;
            }
            o += w;
        }
        if (rc)
            break;
        b->st->bytes_copied += (uint64_t)r;
    }
    /* the file's time is its internal date for a rebuild of the index */
    if (rc == 0)
        futimens(out, (const struct timespec[]){sb.st_atim, sb.st_mtim});
    if (rc == 0 && fsync(out) < 0)
        rc = -1;
    if (close(out) < 0)
        rc = -1;
    close(in);
    if (rc) {
        int e = errno;
        unlink(dst);
        errno = e;
    }
    return rc;
}

/* src to dst: a hard link while the two share a file system, else a copy
 * (fsync'd). 0, or -1 with errno (ENOENT: src went meanwhile). */
static int put_file(const char *src, const char *dst, struct bctx *b)
{
    if (!b->no_link) {
        if (link(src, dst) == 0) {
            b->st->linked++;
            return 0;
        }
        if (errno != EXDEV && errno != EPERM && errno != EMLINK)
            return -1;
        b->no_link = true;
    }
    if (copy_bytes(src, dst, b) < 0)
        return -1;
    b->st->copied++;
    return 0;
}

static int mkdirs(const char *dir)
{
    char p[STORAGE_PATH_MAX];
    static const char *const all[] = {"new", "cur", "tmp"};

    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return err_from_errno(errno);
    for (int i = 0; i < 3; i++) {
        pathf(p, sizeof(p), "%s/%s", dir, all[i]);
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return err_from_errno(errno);
    }
    return 0;
}

static int sync_folder(const char *dir)
{
    char p[STORAGE_PATH_MAX];
    int rc = 0;

    for (int s = 0; s < 2; s++) {
        pathf(p, sizeof(p), "%s/%s", dir, subs[s]);
        if (fsync_dir(p) != 0)
            rc = STORAGE_E_TEMP;
    }
    if (fsync_dir(dir) != 0)
        rc = STORAGE_E_TEMP;
    return rc;
}

/* Step 1 for one folder: its message files not yet in dst (by unique name),
 * and its small files (coffre-uidvalidity) copied anew. */
static int link_folder(const char *src, const char *dst, struct bctx *b)
{
    struct blist have, live;
    char a[STORAGE_PATH_MAX], d[STORAGE_PATH_MAX];
    DIR *dir;
    struct dirent *de;
    int rc;

    if ((rc = mkdirs(dst)) != 0)
        return rc;
    if ((rc = blist_read(dst, &have)) != 0)
        return rc;
    if ((rc = blist_read(src, &live)) != 0) {
        blist_free(&have);
        return rc;
    }
    for (size_t i = 0; i < live.n && rc == 0; i++) {
        const struct bfile *f = &live.v[i];
        if (blist_find(&have, f->unique)) {
            b->st->kept++;
            continue;
        }
        pathf(a, sizeof(a), "%s/%s/%s", src, subs[f->sub], f->name);
        pathf(d, sizeof(d), "%s/%s/%s", dst, subs[f->sub], f->name);
        /* gone meanwhile (renamed, expunged): step 3 looks again */
        if (put_file(a, d, b) < 0 && errno != ENOENT && errno != EEXIST)
            rc = err_from_errno(errno);
    }
    blist_free(&have);
    blist_free(&live);
    if (rc)
        return rc;
    /* the folder's own small files, copied over what an earlier backup left */
    if ((dir = opendir(src)) != NULL) {
        struct bctx copy = {.st = b->st, .no_link = true};
        while ((de = readdir(dir)) != NULL) {
            struct stat sb;
            pathf(a, sizeof(a), "%s/%s", src, de->d_name);
            if (de->d_name[0] == '.' || lstat(a, &sb) < 0 || !S_ISREG(sb.st_mode))
                continue;
            pathf(d, sizeof(d), "%s/%s", dst, de->d_name);
            unlink(d);
            if (copy_bytes(a, d, &copy) < 0 && errno != ENOENT)
                rc = err_from_errno(errno);
        }
        closedir(dir);
    }
    if (rc == 0)
        rc = sync_folder(dst);
    return rc;
}

/* Step 1: INBOX (the Maildir itself) and every ".Folder" in it. */
static int link_all(const char *src_md, const char *dst_md, struct bctx *b)
{
    char a[STORAGE_PATH_MAX], d[STORAGE_PATH_MAX];
    struct dirent *de;
    DIR *dir;
    int rc;

    if ((rc = link_folder(src_md, dst_md, b)) != 0)
        return rc;
    if (!(dir = opendir(src_md)))
        return errno == ENOENT ? 0 : err_from_errno(errno);
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        struct stat sb;
        if (de->d_name[0] != '.' || !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        pathf(a, sizeof(a), "%s/%s", src_md, de->d_name);
        if (lstat(a, &sb) < 0 || !S_ISDIR(sb.st_mode))
            continue;
        pathf(d, sizeof(d), "%s/%s", dst_md, de->d_name);
        rc = link_folder(a, d, b);
    }
    closedir(dir);
    if (rc == 0 && fsync_dir(dst_md) != 0)
        rc = STORAGE_E_TEMP;
    return rc;
}

/* The tests' pause between the steps (storage_backup_opts.pause). */
static void pause_at(const struct storage_backup_opts *o, const char *step)
{
    char p[STORAGE_PATH_MAX];
    int fd;

    if (!o || !o->pause)
        return;
    pathf(p, sizeof(p), "%s.%s", o->pause, step);
    if ((fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) < 0)
        return;
    close(fd);
    for (int i = 0; i < 6000 && access(p, F_OK) == 0; i++)
        usleep(10000);
}

/* ---- the index ---- */

static void fnv(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        *h ^= c[i];
        *h *= 1099511628211ULL;
    }
}

/* The signature of what clients see of an index (see the top). */
static int signature(sqlite3 *db, char *out, size_t outlen)
{
    static const char *const q[] = {
        "SELECT id, name, uidvalidity, uidnext, highestmodseq, special_use FROM mailboxes"
        " ORDER BY id",
        "SELECT name FROM subscriptions ORDER BY name",
    };
    uint64_t h = 14695981039346656037ULL;
    int rc = db_exec(db, "BEGIN");

    if (rc)
        return rc;
    for (size_t i = 0; i < 2 && rc == 0; i++) {
        sqlite3_stmt *st;
        if ((rc = db_prepare(db, q[i], &st)) != 0)
            break;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const void *t = sqlite3_column_text(st, c);
                size_t n = (size_t)sqlite3_column_bytes(st, c);
                fnv(&h, t ? t : "", n);
                fnv(&h, "\0", 1);
            }
            fnv(&h, "\n", 1);
        }
        rc = rc == SQLITE_DONE ? 0 : err_from_sqlite(db, rc);
        db_finalize(st);
        fnv(&h, "|", 1);
    }
    db_rollback(db);
    if (rc == 0)
        pathf(out, outlen, "%016" PRIx64, h);
    return rc;
}

static int read_text_file(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "re");
    size_t n;

    out[0] = '\0';
    if (!f)
        return -1;
    n = fread(out, 1, outlen - 1, f);
    fclose(f);
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    return 0;
}

static int write_text_file(const char *path, const char *text)
{
    char tmp[STORAGE_PATH_MAX];
    size_t n = strlen(text);
    int fd, rc = 0;

    pathf(tmp, sizeof(tmp), "%s.tmp", path);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
        return err_from_errno(errno);
    if (write(fd, text, n) != (ssize_t)n || write(fd, "\n", 1) != 1 || fsync(fd) < 0)
        rc = err_from_errno(errno);
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = err_from_errno(errno);
    if (rc)
        unlink(tmp);
    return rc;
}

static void unlink_db(const char *path)
{
    char p[STORAGE_PATH_MAX];
    static const char *const ext[] = {"", "-wal", "-shm", "-journal"};

    for (int i = 0; i < 4; i++) {
        pathf(p, sizeof(p), "%s%s", path, ext[i]);
        unlink(p);
    }
}

/* Step 2: the live index src copied into the file dst, in one read
 * transaction of src. */
static int snapshot(sqlite3 *src, const char *dst)
{
    sqlite3 *out = NULL;
    sqlite3_backup *bk;
    int rc;

    unlink_db(dst);
    rc = sqlite3_open_v2(dst, &out,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW, NULL);
    if (rc != SQLITE_OK) {
        db_close(out);
        return STORAGE_E_TEMP;
    }
    for (int attempt = 0;; attempt++) {
        if (!(bk = sqlite3_backup_init(out, "main", src, "main"))) {
            rc = err_from_sqlite(out, sqlite3_errcode(out));
            break;
        }
        do
            rc = sqlite3_backup_step(bk, -1);
        while (rc == SQLITE_OK);
        sqlite3_backup_finish(bk);
        if (rc == SQLITE_DONE) {
            rc = 0;
            break;
        }
        if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && attempt < SNAPSHOT_TRIES) {
            sqlite3_sleep(20);
            continue;
        }
        rc = STORAGE_E_TEMP;
        break;
    }
    /* the copy is an index of its own: out of WAL mode, one file */
    if (rc == 0)
        rc = db_exec(out, "PRAGMA journal_mode = DELETE");
    if (db_close(out) != SQLITE_OK && rc == 0)
        rc = STORAGE_E_TEMP;
    if (rc)
        unlink_db(dst);
    return rc;
}

/* A message row of the snapshot: its file's unique name and its path
 * ("cur/<name>" or "new/<name>"). */
struct brow {
    char *unique;
    char *path;
};

static int brow_cmp(const void *a, const void *b)
{
    const struct brow *x = a, *y = b;
    return strcmp(x->unique, y->unique);
}

static void brows_free(struct brow *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].unique);
        free(r[i].path);
    }
}

/* Step 3 for one mailbox of the snapshot, rows its n messages sorted by
 * unique name: each file in dst under the name the snapshot gives it (a
 * file linked under another name of the same message is renamed, in the
 * backup only, so that its flags are the snapshot's), missing ones linked
 * from the live folder src, the rest removed. */
static int match_folder(const char *src, const char *dst, const struct brow *rows, size_t n,
                        struct bctx *b)
{
    struct blist have, live = {0};
    bool live_read = false;
    char a[STORAGE_PATH_MAX], d[STORAGE_PATH_MAX];
    int rc;

    if ((rc = mkdirs(dst)) != 0)
        return rc;
    if ((rc = blist_read(dst, &have)) != 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct bfile *f = blist_find(&have, rows[i].unique);
        pathf(d, sizeof(d), "%s/%s", dst, rows[i].path);
        if (f) {
            /* a rename seen twice in step 1 links two names: the one the
             * row gives stays, else the first, renamed to it */
            size_t k = (size_t)(f - have.v), keep;
            while (k > 0 && !strcmp(have.v[k - 1].unique, rows[i].unique))
                k--;
            keep = k;
            for (size_t j = k; j < have.n && !strcmp(have.v[j].unique, rows[i].unique); j++) {
                pathf(a, sizeof(a), "%s/%s/%s", dst, subs[have.v[j].sub], have.v[j].name);
                if (!strcmp(a, d))
                    keep = j;
            }
            pathf(a, sizeof(a), "%s/%s/%s", dst, subs[have.v[keep].sub], have.v[keep].name);
            if (strcmp(a, d) != 0) {
                if (rename(a, d) < 0)
                    rc = err_from_errno(errno);
                else
                    b->st->renamed++;
            }
            have.v[keep].keep = true;
            continue;
        }
        if (!live_read) {
            if ((rc = blist_read(src, &live)) != 0)
                break;
            live_read = true;
        }
        f = blist_find(&live, rows[i].unique);
        if (!f) {
            b->st->lost++; /* expunged since the snapshot: step 4 drops the row */
            continue;
        }
        pathf(a, sizeof(a), "%s/%s/%s", src, subs[f->sub], f->name);
        if (put_file(a, d, b) < 0) {
            if (errno == ENOENT)
                b->st->lost++;
            else if (errno != EEXIST)
                rc = err_from_errno(errno);
        }
    }
    for (size_t i = 0; i < have.n && rc == 0; i++) {
        if (have.v[i].keep)
            continue;
        pathf(d, sizeof(d), "%s/%s/%s", dst, subs[have.v[i].sub], have.v[i].name);
        if (unlink(d) == 0)
            b->st->removed++;
    }
    blist_free(&have);
    blist_free(&live);
    if (rc == 0)
        rc = sync_folder(dst);
    return rc;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Step 3: every mailbox of the snapshot (the index file idx) against the
 * folders linked in step 1; folders no mailbox names go. */
static int match_all(const char *idx, const char *src_md, const char *dst_md, struct bctx *b)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char **dirs = NULL;
    struct brow *rows = NULL;
    size_t nd = 0, capd = 0, nr = 0, capr = 0;
    int64_t cur = -1;
    char cur_dir[STORAGE_PATH_MAX] = "";
    int rc;

    if (sqlite3_open_v2(idx, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK) {
        db_close(db);
        return STORAGE_E_CORRUPT;
    }
    rc = db_prepare(db,
                    "SELECT b.id, b.name, m.path FROM mailboxes b"
                    " LEFT JOIN messages m ON m.mailbox_id = b.id ORDER BY b.id",
                    &st);
    while (rc == 0) {
        int s = sqlite3_step(st);
        int64_t id = s == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -2;
        if (s != SQLITE_ROW && s != SQLITE_DONE) {
            rc = err_from_sqlite(db, s);
            break;
        }
        if (id != cur && cur >= 0) {
            char a[STORAGE_PATH_MAX], d[STORAGE_PATH_MAX];
            if (nr)
                qsort(rows, nr, sizeof(*rows), brow_cmp);
            pathf(a, sizeof(a), "%s%s%s", src_md, cur_dir[0] ? "/" : "", cur_dir);
            pathf(d, sizeof(d), "%s%s%s", dst_md, cur_dir[0] ? "/" : "", cur_dir);
            rc = match_folder(a, d, rows, nr, b);
            brows_free(rows, nr);
            nr = 0;
            if (rc)
                break;
        }
        if (s == SQLITE_DONE)
            break;
        if (id != cur) {
            const char *name = (const char *)sqlite3_column_text(st, 1);
            cur = id;
            if (!name || name_to_dir(name, cur_dir, sizeof(cur_dir)) != 0) {
                rc = STORAGE_E_CORRUPT;
                break;
            }
            if (cur_dir[0]) {
                if (array_grow(&dirs, &capd, nd, sizeof(*dirs), 16) != 0 ||
                    !(dirs[nd] = strdup(cur_dir))) {
                    rc = STORAGE_E_NOMEM;
                    break;
                }
                nd++;
            }
        }
        if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
            const char *path = (const char *)sqlite3_column_text(st, 2);
            const char *slash = path ? strchr(path, '/') : NULL;
            char unique[256];
            uint32_t uid;
            unsigned flags;
            bool hi;
            /* only "new/<name>" or "cur/<name>" names a file of the folder */
            if (!path || !slash || strchr(slash + 1, '/') ||
                (strncmp(path, "new/", 4) != 0 && strncmp(path, "cur/", 4) != 0)) {
                rc = STORAGE_E_CORRUPT;
                break;
            }
            msg_file_parse(slash + 1, unique, sizeof(unique), &uid, &flags, &hi);
            if (array_grow(&rows, &capr, nr, sizeof(*rows), 256) != 0) {
                rc = STORAGE_E_NOMEM;
                break;
            }
            rows[nr].unique = strdup(unique);
            rows[nr].path = strdup(path);
            nr++;
            if (!rows[nr - 1].unique || !rows[nr - 1].path) {
                rc = STORAGE_E_NOMEM;
                break;
            }
        }
    }
    db_finalize(st);
    db_close(db);
    brows_free(rows, nr);
    free(rows);

    /* folders of the backup that no mailbox of the snapshot names */
    if (rc == 0) {
        DIR *dir = opendir(dst_md);
        struct dirent *de;
        if (nd)
            qsort(dirs, nd, sizeof(*dirs), str_cmp);
        while (dir && (de = readdir(dir)) != NULL) {
            char p[STORAGE_PATH_MAX];
            const char *key = de->d_name;
            struct stat sb;
            if (de->d_name[0] != '.' || !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            pathf(p, sizeof(p), "%s/%s", dst_md, de->d_name);
            if (lstat(p, &sb) < 0 || !S_ISDIR(sb.st_mode))
                continue;
            if (nd && bsearch(&key, dirs, nd, sizeof(*dirs), str_cmp))
                continue;
            remove_tree(p);
        }
        if (dir)
            closedir(dir);
    }
    for (size_t i = 0; i < nd; i++)
        free(dirs[i]);
    free(dirs);
    return rc;
}

/* What the manifest says of the backup's index. */
static int report_mailboxes(const char *idx, const struct storage_backup_opts *o,
                            struct storage_backup_stats *st)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int rc;

    if (sqlite3_open_v2(idx, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK) {
        db_close(db);
        return STORAGE_E_CORRUPT;
    }
    rc = db_prepare(db,
                    "SELECT b.name, b.uidvalidity, b.uidnext, b.highestmodseq,"
                    " (SELECT count(*) FROM messages m WHERE m.mailbox_id = b.id),"
                    " (SELECT coalesce(sum(size), 0) FROM messages m WHERE m.mailbox_id = b.id)"
                    " FROM mailboxes b ORDER BY b.name",
                    &q);
    while (rc == 0) {
        int s = sqlite3_step(q);
        if (s == SQLITE_DONE)
            break;
        if (s != SQLITE_ROW) {
            rc = err_from_sqlite(db, s);
            break;
        }
        st->messages += (uint64_t)sqlite3_column_int64(q, 4);
        st->bytes += (uint64_t)sqlite3_column_int64(q, 5);
        st->mailboxes++;
        if (o && o->mailbox)
            o->mailbox(o->arg, (const char *)sqlite3_column_text(q, 0),
                       (uint32_t)sqlite3_column_int64(q, 1), (uint32_t)sqlite3_column_int64(q, 2),
                       (uint64_t)sqlite3_column_int64(q, 3), (uint64_t)sqlite3_column_int64(q, 4));
    }
    db_finalize(q);
    db_close(db);
    return rc;
}

int storage_backup(const char *data_dir, int64_t id, const char *dest_dir,
                   const struct storage_backup_opts *o, struct storage_backup_stats *st)
{
    char src_root[STORAGE_PATH_MAX], dst_root[STORAGE_PATH_MAX], p[STORAGE_PATH_MAX];
    char src_md[STORAGE_PATH_MAX], dst_md[STORAGE_PATH_MAX], idx[STORAGE_PATH_MAX];
    char tmp_idx[STORAGE_PATH_MAX], sig[64] = "", old_sig[64] = "";
    struct bctx b = {.st = st};
    struct stat sb;
    sqlite3 *src = NULL;
    unsigned problems = 0;
    int rc;

    memset(st, 0, sizeof(*st));
    /* the copy is of the index: the journal's deliveries go into it first */
    if ((rc = storage_journal_flush(data_dir, id)) != 0)
        return rc;
    pathf(src_root, sizeof(src_root), "%s/users/%" PRId64, data_dir, id);
    pathf(dst_root, sizeof(dst_root), "%s/users/%" PRId64, dest_dir, id);
    pathf(src_md, sizeof(src_md), "%s/Maildir", src_root);
    pathf(dst_md, sizeof(dst_md), "%s/Maildir", dst_root);
    pathf(idx, sizeof(idx), "%s/index.sqlite", src_root);
    if (stat(idx, &sb) < 0 || sb.st_size == 0) {
        /* never used: no store yet, nothing to copy */
        pathf(p, sizeof(p), "%s", dst_root);
        remove_tree(p);
        st->empty = true;
        return 0;
    }
    pathf(p, sizeof(p), "%s/users", dest_dir);
    if ((mkdir(p, 0700) < 0 && errno != EEXIST) || (mkdir(dst_root, 0700) < 0 && errno != EEXIST))
        return err_from_errno(errno);
    if ((rc = db_open_conn(idx, false, &src)) != 0)
        return rc;
    sqlite3_busy_timeout(src, 5000);

    /* unchanged since the backup in dest: nothing to do */
    pathf(p, sizeof(p), "%s/" SIG_FILE, dst_root);
    if (o && o->incremental && read_text_file(p, old_sig, sizeof(old_sig)) == 0 &&
        signature(src, sig, sizeof(sig)) == 0 && strcmp(sig, old_sig) == 0) {
        char copy[STORAGE_PATH_MAX];
        pathf(copy, sizeof(copy), "%s/index.sqlite", dst_root);
        if (stat(copy, &sb) == 0) {
            db_close(src);
            memcpy(st->signature, sig, sizeof(st->signature));
            return report_mailboxes(copy, o, st);
        }
    }
    /* a copy half made is no backup: the signature goes until it is whole */
    unlink(p);
    if (!(o && o->incremental))
        remove_tree(dst_md);
    if ((mkdir(dst_md, 0700) < 0 && errno != EEXIST)) {
        db_close(src);
        return err_from_errno(errno);
    }

    /* 1. files, 2. index, 3. match, 4. reconcile (see the top) */
    rc = link_all(src_md, dst_md, &b);
    pathf(tmp_idx, sizeof(tmp_idx), "%s/index.sqlite.new", dst_root);
    if (rc == 0) {
        pause_at(o, "files");
        rc = snapshot(src, tmp_idx);
    }
    db_close(src);
    if (rc == 0)
        pause_at(o, "index");
    if (rc == 0)
        rc = match_all(tmp_idx, src_md, dst_md, &b);
    pathf(idx, sizeof(idx), "%s/index.sqlite", dst_root);
    if (rc == 0) {
        unlink_db(idx);
        if (rename(tmp_idx, idx) < 0)
            rc = err_from_errno(errno);
    }
    if (rc) {
        unlink_db(tmp_idx);
        return rc;
    }
    st->index_copied = true;
    if ((rc = storage_repair(dest_dir, id)) != 0)
        return rc;
    if ((rc = storage_check(dest_dir, id, NULL, NULL, &problems)) != 0)
        return rc;
    st->problems = problems;
    if (fsync_dir(dst_root) != 0)
        return STORAGE_E_TEMP;
    /* the signature of the copy as repaired: what the next run compares */
    if ((rc = db_open_conn(idx, false, &src)) != 0)
        return rc;
    rc = signature(src, sig, sizeof(sig));
    db_close(src);
    if (rc == 0 && (rc = report_mailboxes(idx, o, st)) == 0) {
        memcpy(st->signature, sig, sizeof(st->signature));
        pathf(p, sizeof(p), "%s/" SIG_FILE, dst_root);
        rc = write_text_file(p, sig);
    }
    return rc;
}

/* ---- restore ---- */

/* Copies the tree src into dst (which must not exist): directories made,
 * files linked or copied; tmp/ left empty, no SQLite shared memory. */
static int copy_tree(const char *src, const char *dst, struct bctx *b, int depth)
{
    char a[STORAGE_PATH_MAX], d[STORAGE_PATH_MAX];
    struct dirent *de;
    DIR *dir;
    int rc = 0;

    if (depth > 8)
        return STORAGE_E_INVAL;
    if (mkdir(dst, 0700) < 0 && errno != EEXIST)
        return err_from_errno(errno);
    if (!(dir = opendir(src)))
        return err_from_errno(errno);
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        struct stat sb;
        size_t nl = strlen(de->d_name);
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        pathf(a, sizeof(a), "%s/%s", src, de->d_name);
        pathf(d, sizeof(d), "%s/%s", dst, de->d_name);
        if (lstat(a, &sb) < 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            if (!strcmp(de->d_name, "tmp")) {
                if (mkdir(d, 0700) < 0 && errno != EEXIST)
                    rc = err_from_errno(errno);
                continue;
            }
            rc = copy_tree(a, d, b, depth + 1);
            continue;
        }
        if (!S_ISREG(sb.st_mode) || (nl > 4 && !strcmp(de->d_name + nl - 4, "-shm")) ||
            !strcmp(de->d_name, SIG_FILE))
            continue;
        /* the index is written to in place: always a copy of its own */
        if (!strncmp(de->d_name, "index.sqlite", 12)) {
            struct bctx copy = {.st = b->st, .no_link = true};
            if (copy_bytes(a, d, &copy) < 0)
                rc = err_from_errno(errno);
            else
                b->st->copied++;
            continue;
        }
        if (put_file(a, d, b) < 0)
            rc = err_from_errno(errno);
    }
    closedir(dir);
    if (rc == 0 && fsync_dir(dst) != 0)
        rc = STORAGE_E_TEMP;
    return rc;
}

int storage_restore(const char *src_dir, int64_t src_id, const char *data_dir, int64_t id,
                    struct storage_backup_stats *st)
{
    char src[STORAGE_PATH_MAX], dst[STORAGE_PATH_MAX], p[STORAGE_PATH_MAX];
    struct bctx b = {.st = st};
    struct stat sb;
    unsigned problems = 0;
    int rc;

    memset(st, 0, sizeof(*st));
    pathf(src, sizeof(src), "%s/users/%" PRId64, src_dir, src_id);
    pathf(dst, sizeof(dst), "%s/users/%" PRId64, data_dir, id);
    if (lstat(src, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
        st->empty = true;
        return 0;
    }
    if (lstat(dst, &sb) == 0)
        return STORAGE_E_EXISTS;
    pathf(p, sizeof(p), "%s/users", data_dir);
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
        return err_from_errno(errno);
    if ((rc = copy_tree(src, dst, &b, 0)) != 0)
        return rc;
    fsync_dir(p);
    if ((rc = storage_check(data_dir, id, NULL, NULL, &problems)) != 0)
        return rc;
    if (problems) {
        st->repaired = true;
        if ((rc = storage_repair(data_dir, id)) != 0 ||
            (rc = storage_check(data_dir, id, NULL, NULL, &problems)) != 0)
            return rc;
    }
    st->problems = problems;
    pathf(p, sizeof(p), "%s/index.sqlite", dst);
    return report_mailboxes(p, NULL, st);
}

int storage_index_summary(const char *data_dir, int64_t id, uint64_t *modseq_sum,
                          uint64_t *messages)
{
    char p[STORAGE_PATH_MAX];
    sqlite3 *db = NULL;
    int rc;
    int64_t v = 0;

    *modseq_sum = 0;
    *messages = 0;
    pathf(p, sizeof(p), "%s/users/%" PRId64 "/index.sqlite", data_dir, id);
    if (access(p, F_OK) < 0)
        return STORAGE_E_NOMBOX;
    /* read-only: the copy may be on a medium that cannot be written */
    if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK) {
        db_close(db);
        return STORAGE_E_TEMP;
    }
    sqlite3_busy_timeout(db, 5000);
    if ((rc = db_int_binds(db, &v, "SELECT coalesce(sum(highestmodseq), 0) FROM mailboxes", NULL,
                           NULL, 0)) == 0) {
        *modseq_sum = (uint64_t)v;
        if ((rc = db_int_binds(db, &v, "SELECT count(*) FROM messages", NULL, NULL, 0)) == 0)
            *messages = (uint64_t)v;
    }
    db_close(db);
    return rc;
}
