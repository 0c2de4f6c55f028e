/* Recovery: reconciling the index with the Maildir. Rebuild of a lost or
 * corrupt index (UIDs kept from the ",U=" in file names, UIDVALIDITY from
 * "coffre-uidvalidity"), pick-up of files other programs dropped into new/ or
 * cur/ (fresh UIDs, rewritten with CRLF line ends when needed), completion of
 * interrupted expunges, removal of stale tmp/ files, and coffrectl's
 * check / repair / reindex. */
#include "storage/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/base/log.h"
#include "storage/mime.h"

static void rep_line(struct rescan_report *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void rep_line(struct rescan_report *rep, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    rep->problems++;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (rep->report)
        rep->report(rep->arg, buf);
}

static void rep_changed(struct rescan_report *rep, int64_t id)
{
    for (size_t i = 0; i < rep->nchanged; i++)
        if (rep->changed[i] == id)
            return;
    if (array_grow(&rep->changed, &rep->capchanged, rep->nchanged, sizeof(*rep->changed), 8) != 0)
        return;
    rep->changed[rep->nchanged++] = id;
}

static int64_t mtime_ns(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) < 0)
        return -1;
    return (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
}

int dir_mtime_changed(struct storage_user *u, int64_t mbox, const char *mdir, bool update)
{
    char p[STORAGE_PATH_MAX];
    int64_t nm, cm;
    sqlite3_stmt *st;
    int rc;

    pathf(p, sizeof(p), "%s/new", mdir);
    nm = mtime_ns(p);
    pathf(p, sizeof(p), "%s/cur", mdir);
    cm = mtime_ns(p);
    if (update)
        return db_run(u->wdb, "UPDATE mailboxes SET new_mtime = ?, cur_mtime = ? WHERE id = ?", nm,
                      cm, mbox);
    if ((rc = db_prepare(u->wdb, "SELECT new_mtime, cur_mtime FROM mailboxes WHERE id = ?", &st)))
        return rc;
    sqlite3_bind_int64(st, 1, mbox);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = (sqlite3_column_int64(st, 0) != nm || sqlite3_column_int64(st, 1) != cm) ? 1 : 0;
    else
        rc = err_from_sqlite(u->wdb, rc);
    db_finalize(st);
    return rc;
}

static void clean_tmp_dir(const char *tmpdir, time_t cutoff)
{
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    char p[STORAGE_PATH_MAX];

    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        struct stat sb;
        if (de->d_name[0] == '.')
            continue;
        pathf(p, sizeof(p), "%s/%s", tmpdir, de->d_name);
        if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_mtime < cutoff) {
            if (unlink(p) == 0)
                log_info("storage: removed stale %s", p);
        }
    }
    closedir(d);
}

void clean_tmp(const char *mdir)
{
    time_t cutoff = time(NULL) - STORAGE_TMP_MAX_AGE;
    char p[STORAGE_PATH_MAX];
    struct dirent *de;
    DIR *d;

    pathf(p, sizeof(p), "%s/tmp", mdir);
    clean_tmp_dir(p, cutoff);
    if (!(d = opendir(mdir)))
        return;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.' || de->d_name[1] == '.' || de->d_name[1] == '\0')
            continue;
        pathf(p, sizeof(p), "%s/%s/tmp", mdir, de->d_name);
        clean_tmp_dir(p, cutoff);
    }
    closedir(d);
}

/* ---- one mailbox ---- */

struct fent {
    char *name;
    char *unique;
    int sub; /* 0 new, 1 cur */
    uint32_t uid;
    unsigned flags;
    bool has_info;
    bool matched;
};

struct ient {
    uint32_t uid;
    char *path;
    char *unique;
    unsigned flags, file_flags;
    int64_t body_id;
    int64_t size;
    bool matched;
};

static int fent_cmp(const void *a, const void *b)
{
    const struct fent *x = a, *y = b;
    int c = strcmp(x->unique, y->unique);
    return c ? c : y->sub - x->sub; /* cur/ before new/ */
}

static int ient_cmp(const void *a, const void *b)
{
    const struct ient *x = a, *y = b;
    return strcmp(x->unique, y->unique);
}

static int read_files(const char *mdir, struct fent **out, size_t *n)
{
    static const char *const sub[] = {"new", "cur"};
    struct fent *v = NULL;
    size_t cnt = 0, cap = 0;
    /* Neither the folder nor its new/ and cur/ may be a symlink: one planted
     * by the user (pointing into another user's Maildir) would have the
     * other user's messages taken into this index. Such a folder lists no
     * files. */
    int mfd = open(mdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (mfd < 0) {
        if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR) {
            *out = NULL;
            *n = 0;
            return 0;
        }
        return err_from_errno(errno);
    }
    for (int s = 0; s < 2; s++) {
        struct dirent *de;
        DIR *d = NULL;
        int dfd = openat(mfd, sub[s], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd >= 0 && !(d = fdopendir(dfd)))
            close(dfd);
        if (!d) {
            if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR)
                continue;
            goto fail;
        }
        while ((de = readdir(d)) != NULL) {
            char unique[256];
            if (de->d_name[0] == '.')
                continue;
            if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
                continue;
            if (array_grow(&v, &cap, cnt, sizeof(*v), 256) != 0) {
                closedir(d);
                goto fail;
            }
            memset(&v[cnt], 0, sizeof(v[cnt]));
            v[cnt].sub = s;
            msg_file_parse(de->d_name, unique, sizeof(unique), &v[cnt].uid, &v[cnt].flags,
                           &v[cnt].has_info);
            v[cnt].name = strdup(de->d_name);
            v[cnt].unique = strdup(unique);
            if (!v[cnt].name || !v[cnt].unique) {
                free(v[cnt].name);
                free(v[cnt].unique);
                closedir(d);
                goto fail;
            }
            cnt++;
        }
        closedir(d);
    }
    close(mfd);
    if (cnt)
        qsort(v, cnt, sizeof(*v), fent_cmp);
    *out = v;
    *n = cnt;
    return 0;
fail:
    close(mfd);
    for (size_t i = 0; i < cnt; i++) {
        free(v[i].name);
        free(v[i].unique);
    }
    free(v);
    return STORAGE_E_NOMEM;
}

static int read_rows(sqlite3 *db, int64_t mbox, struct ient **out, size_t *n)
{
    sqlite3_stmt *st;
    struct ient *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = db_prepare(db,
                        "SELECT uid, path, file_flags, body_id, size, flags FROM messages"
                        " WHERE mailbox_id = ?",
                        &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, mbox);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *path = (const char *)sqlite3_column_text(st, 1);
        const char *slash = path ? strchr(path, '/') : NULL;
        char unique[256];
        uint32_t fu;
        unsigned ff;
        bool hi;
        if (array_grow(&v, &cap, cnt, sizeof(*v), 256) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        memset(&v[cnt], 0, sizeof(v[cnt]));
        v[cnt].uid = (uint32_t)sqlite3_column_int64(st, 0);
        v[cnt].file_flags = (unsigned)sqlite3_column_int(st, 2);
        v[cnt].body_id = sqlite3_column_int64(st, 3);
        v[cnt].size = sqlite3_column_int64(st, 4);
        v[cnt].flags = (unsigned)sqlite3_column_int(st, 5);
        msg_file_parse(slash ? slash + 1 : (path ? path : ""), unique, sizeof(unique), &fu, &ff,
                       &hi);
        v[cnt].path = strdup(path ? path : "");
        v[cnt].unique = strdup(unique);
        if (!v[cnt].path || !v[cnt].unique) {
            free(v[cnt].path);
            free(v[cnt].unique);
            rc = SQLITE_NOMEM;
            break;
        }
        cnt++;
    }
    db_finalize(st);
    if (rc != SQLITE_DONE) {
        for (size_t i = 0; i < cnt; i++) {
            free(v[i].path);
            free(v[i].unique);
        }
        free(v);
        return rc == SQLITE_NOMEM ? STORAGE_E_NOMEM : err_from_sqlite(db, rc);
    }
    if (cnt)
        qsort(v, cnt, sizeof(*v), ient_cmp);
    *out = v;
    *n = cnt;
    return 0;
}

static bool uid_used(sqlite3 *db, const char *table, int64_t mbox, uint32_t uid)
{
    sqlite3_stmt *st;
    bool used = false;
    char sql[128];

    /* table is one of two constants, never input */
    pathf(sql, sizeof(sql), "SELECT 1 FROM %s WHERE mailbox_id = ? AND uid = ?", table);
    if (db_prepare(db, sql, &st) != 0)
        return true;
    sqlite3_bind_int64(st, 1, mbox);
    sqlite3_bind_int64(st, 2, uid);
    used = sqlite3_step(st) == SQLITE_ROW;
    db_finalize(st);
    return used;
}

/* Rewrites src with CRLF line ends into mdir/tmp; *out gets the new path. */
static int normalize_crlf(const char *mdir, const char *src, const char *data, size_t len,
                          char *out, size_t outlen, uint64_t *newsize)
{
    char tmpdir[STORAGE_PATH_MAX], buf[65536];
    size_t o = 0;
    uint64_t total = 0;
    int fd, rc;

    (void)src;
    pathf(tmpdir, sizeof(tmpdir), "%s/tmp", mdir);
    if ((rc = tmp_file_open(tmpdir, out, outlen, &fd)) != 0)
        return rc;
    for (size_t i = 0; i < len && rc == 0; i++) {
        if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
            buf[o++] = '\r';
        buf[o++] = data[i];
        if (o >= sizeof(buf) - 2) {
            if (write(fd, buf, o) != (ssize_t)o)
                rc = err_from_errno(errno ? errno : ENOSPC);
            total += o;
            o = 0;
        }
    }
    if (rc == 0 && o && write(fd, buf, o) != (ssize_t)o)
        rc = err_from_errno(errno ? errno : ENOSPC);
    total += o;
    *newsize = total;
    return tmp_file_close(fd, out, rc);
}

static bool has_bare_lf(const char *p, size_t len)
{
    const char *q = p, *end = p + len;
    while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
        if (q == p || q[-1] != '\r')
            return true;
        q++;
    }
    return false;
}

/* How far above UIDNEXT a file's ,U= claim is still taken outside a rebuild. */
#define ADOPT_UID_WINDOW 1000000u

/* Takes a file not in the index into it. */
static int adopt_file(struct storage_user *u, const struct mbox_row *m, const char *mdir,
                      struct fent *f, bool rebuild, uint32_t *uidnext, uint64_t modseq,
                      bool *dup_unique)
{
    static const char *const sub[] = {"new", "cur"};
    char path[STORAGE_PATH_MAX], target[STORAGE_PATH_MAX], tmp[STORAGE_PATH_MAX];
    char unique[256], fname[512], rel[600];
    struct mime_summary ms;
    struct stat sb;
    uint64_t size;
    uint32_t uid;
    bool normalized = false;
    void *map = NULL;
    int fd, rc;

    pathf(path, sizeof(path), "%s/%s/%s", mdir, sub[f->sub], f->name);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0)
        return errno == ENOENT || errno == ELOOP ? 0 : err_from_errno(errno);
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return 0;
    }
    size = (uint64_t)sb.st_size;
    if (size > 0) {
        map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            rc = err_from_errno(errno);
            close(fd);
            return rc;
        }
        if (has_bare_lf(map, (size_t)size)) {
            uint64_t ns = 0;
            rc = normalize_crlf(mdir, path, map, (size_t)size, tmp, sizeof(tmp), &ns);
            munmap(map, (size_t)size);
            close(fd);
            if (rc)
                return rc;
            fd = open(tmp, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                rc = err_from_errno(errno);
                unlink(tmp);
                return rc;
            }
            size = ns;
            normalized = true;
            map = NULL;
        } else {
            munmap(map, (size_t)size);
        }
    }
    /* the UID: kept from the name when it cannot clash with one handed out */
    uid = f->uid;
    /* a name's claim is only a hint: UID 4294967295 would leave no UIDNEXT,
     * and a claim far above UIDNEXT (a file planted or named by another
     * program) would use up the UID space of the mailbox */
    if (uid == UINT32_MAX || (!rebuild && uid >= *uidnext && uid - *uidnext >= ADOPT_UID_WINDOW))
        uid = 0;
    if (uid && !rebuild && uid < m->uidnext && !import_reserved(u->wdb, m->id, m->uidvalidity, uid))
        uid = 0; /* unless an import keeps it (a batch cut short: import.c) */
    if (uid && (uid_used(u->wdb, "messages", m->id, uid) ||
                (!rebuild && uid_used(u->wdb, "expunged", m->id, uid))))
        uid = 0;
    if (!uid) {
        uid = *uidnext;
        if (uid == UINT32_MAX) {
            close(fd);
            if (normalized)
                unlink(tmp);
            return STORAGE_E_FAIL;
        }
    }
    if (uid >= *uidnext)
        *uidnext = uid + 1;

    pathf(unique, sizeof(unique), "%s", f->unique);
    if (*dup_unique || !unique[0] || strlen(unique) > 200)
        make_unique(unique, sizeof(unique));
    if ((rc = msg_file_name(fname, sizeof(fname), unique, uid, size, f->flags)) != 0)
        goto out;
    pathf(rel, sizeof(rel), "cur/%s", fname);
    pathf(target, sizeof(target), "%s/%s", mdir, rel);
    if (normalized) {
        if (rename(tmp, target) < 0) {
            rc = err_from_errno(errno);
            unlink(tmp);
            goto out;
        }
        unlink(path);
    } else if (strcmp(path, target) != 0 && rename(path, target) < 0) {
        rc = err_from_errno(errno);
        goto out;
    }
    if ((rc = summarize_fd(fd, size, &ms)) != 0)
        goto out;
    rc = msg_insert(u->wdb, m->id, uid, rel, size, (int64_t)sb.st_mtime, f->flags, f->flags, "",
                    &ms, 0, NULL, modseq);
    mime_summary_free(&ms);
out:
    close(fd);
    return rc;
}

static int drop_row(sqlite3 *db, int64_t mbox, const struct ient *r, uint64_t modseq)
{
    int rc;

    if ((rc = db_run(db, "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", mbox, r->uid)) !=
            0 ||
        (rc =
             db_run(db, "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                    mbox, r->uid, modseq)) != 0)
        return rc;
    if ((rc = body_release(db, r->body_id)) != 0)
        return rc;
    if ((rc = db_meta_add(db, "quota_bytes", -r->size)) != 0)
        return rc;
    return db_meta_add(db, "quota_messages", -1);
}

static int rescan_mailbox(struct storage_user *u, struct mbox_row *m, enum rescan_mode mode,
                          struct rescan_report *rep)
{
    static const char *const sub[] = {"new", "cur"};
    char mdir[STORAGE_PATH_MAX], a[STORAGE_PATH_MAX];
    struct fent *f = NULL;
    struct ient *r = NULL;
    size_t nf = 0, nr = 0, i, j;
    bool dry = mode == RESCAN_CHECK, rebuild = mode == RESCAN_REBUILD;
    uint64_t modseq = 0;
    uint32_t uidnext = m->uidnext ? m->uidnext : 1;
    bool changed = false;
    unsigned adopted = 0;
    int rc;

    if ((rc = mbox_path(u, m->name, mdir, sizeof(mdir))) != 0)
        return rc;
    if ((rc = read_files(mdir, &f, &nf)) != 0)
        return rc;
    if ((rc = read_rows(u->wdb, m->id, &r, &nr)) != 0)
        goto out;
    if (!dry) {
        /* one modseq for everything this rescan changes */
        modseq = m->highestmodseq + 1;
    }

    /* merge the two lists sorted by unique name */
    for (i = 0, j = 0; i < nr; i++) {
        int c = 1;
        while (j < nf && (c = strcmp(f[j].unique, r[i].unique)) < 0)
            j++;
        if (j < nf && c == 0 && !f[j].matched) {
            char rel[600];
            f[j].matched = r[i].matched = true;
            pathf(rel, sizeof(rel), "%s/%s", sub[f[j].sub], f[j].name);
            if (strcmp(rel, r[i].path) != 0) {
                /* A name whose flags are those the index holds is the one
                 * the flag sync writes for them (its commit lost in a crash
                 * after the rename) or agrees with it: taken as the file's
                 * name, and no change of the message. Other flags are a
                 * rename by another program, taken in with a new modseq. */
                bool flags_moved =
                    f[j].has_info && f[j].flags != r[i].file_flags && f[j].flags != r[i].flags;
                unsigned file_flags = f[j].has_info ? f[j].flags : r[i].file_flags;
                if (dry) {
                    rep_line(rep, "%s: uid %" PRIu32 ": file renamed outside coffre (%s)", m->name,
                             r[i].uid, rel);
                    continue;
                }
                if (flags_moved)
                    rc = db_run_text(u->wdb,
                                     "UPDATE messages SET path = ?, flags = ?, file_flags = ?,"
                                     " modseq = ? WHERE mailbox_id = ? AND uid = ?",
                                     rel, f[j].flags, f[j].flags, modseq, m->id, r[i].uid);
                else
                    rc = db_run_text(u->wdb,
                                     "UPDATE messages SET path = ?, file_flags = ?"
                                     " WHERE mailbox_id = ? AND uid = ?",
                                     rel, file_flags, m->id, r[i].uid);
                if (rc)
                    goto out;
                if (flags_moved)
                    changed = true;
            }
        }
    }
    /* rows without a file: the message is gone */
    for (i = 0; i < nr; i++) {
        if (r[i].matched)
            continue;
        if (dry) {
            rep_line(rep, "%s: uid %" PRIu32 ": in the index, file missing (%s)", m->name, r[i].uid,
                     r[i].path);
            continue;
        }
        if ((rc = drop_row(u->wdb, m->id, &r[i], modseq)) != 0)
            goto out;
        log_warn("storage: user %" PRId64 ": %s: uid %" PRIu32 " lost its file, removed", u->id,
                 m->name, r[i].uid);
        changed = true;
    }
    /* files without a row */
    for (i = 0; i < nf; i++) {
        bool dup;
        if (f[i].matched)
            continue;
        pathf(a, sizeof(a), "%s/%s/%s", mdir, sub[f[i].sub], f[i].name);
        if (!rebuild && f[i].uid && f[i].uid < uidnext &&
            uid_used(u->wdb, "expunged", m->id, f[i].uid)) {
            /* an expunge that was interrupted before its unlink */
            if (dry) {
                rep_line(rep, "%s: uid %" PRIu32 ": expunged, file still there", m->name, f[i].uid);
                continue;
            }
            unlink(a);
            continue;
        }
        if (dry) {
            rep_line(rep, "%s: file not in the index: %s", m->name, a);
            continue;
        }
        dup = i > 0 && strcmp(f[i].unique, f[i - 1].unique) == 0;
        for (size_t k = 0; k < nr && !dup; k++)
            dup = strcmp(r[k].unique, f[i].unique) == 0;
        if ((rc = adopt_file(u, m, mdir, &f[i], rebuild, &uidnext, modseq, &dup)) != 0)
            goto out;
        adopted++;
        changed = true;
    }
    if (dry)
        goto out;
    if (adopted) {
        pathf(a, sizeof(a), "%s/cur", mdir);
        fsync_dir(a);
        if (!rebuild)
            log_info("storage: user %" PRId64 ": %s: %u new file(s) picked up", u->id, m->name,
                     adopted);
    }
    if (changed) {
        rc = db_run(u->wdb,
                    "UPDATE mailboxes SET highestmodseq = max(highestmodseq, ?),"
                    " uidnext = max(uidnext, ?) WHERE id = ?",
                    modseq, uidnext, m->id);
        if (rc)
            goto out;
        m->uidnext = uidnext;
        rep_changed(rep, m->id);
        if (uidnext > 1)
            uidvalidity_file_write(mdir, m->uidvalidity, uidnext);
    }
    rc = dir_mtime_changed(u, m->id, mdir, true);
out:
    for (i = 0; i < nf; i++) {
        free(f[i].name);
        free(f[i].unique);
    }
    for (i = 0; i < nr; i++) {
        free(r[i].path);
        free(r[i].unique);
    }
    free(f);
    free(r);
    return rc;
}

/* ---- every mailbox ---- */

static const struct {
    const char *name;
    unsigned special;
} defaults[] = {
    {"INBOX", 0},
    {"Drafts", STORAGE_SPECIAL_DRAFTS},
    {"Sent", STORAGE_SPECIAL_SENT},
    {"Trash", STORAGE_SPECIAL_TRASH},
    {"Junk", STORAGE_SPECIAL_JUNK},
    {"Archive", STORAGE_SPECIAL_ARCHIVE},
};

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Folders on disk that the index does not know. */
static int scan_folders(struct storage_user *u, enum rescan_mode mode, struct rescan_report *rep)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d = opendir(u->maildir);
    int rc = 0;

    if (!d)
        return err_from_errno(errno);
    while ((de = readdir(d)) != NULL) {
        char name[STORAGE_MBOX_NAME_MAX + 1], p[STORAGE_PATH_MAX];
        struct mbox_row m;
        struct stat sb;
        if (de->d_name[0] != '.' || de->d_name[1] == '\0')
            continue;
        pathf(p, sizeof(p), "%s/%s", u->maildir, de->d_name);
        if (de->d_name[1] == '.') {
            if (strncmp(de->d_name, "..deleted.", 10) == 0 && mode != RESCAN_CHECK)
                remove_tree(p); /* a DELETE interrupted after its commit */
            continue;
        }
        if (lstat(p, &sb) < 0 || !S_ISDIR(sb.st_mode))
            continue;
        if (dir_to_name(de->d_name + 1, name, sizeof(name)) != 0) {
            if (mode == RESCAN_CHECK)
                rep_line(rep, "folder with an invalid name ignored: %s", de->d_name);
            continue;
        }
        if (mbox_by_name(u->wdb, name, &m) == 0)
            continue;
        if (mode == RESCAN_CHECK) {
            rep_line(rep, "folder not in the index: %s", name);
            continue;
        }
        if (array_grow(&names, &cap, n, sizeof(*names), 16) != 0) {
            rc = STORAGE_E_NOMEM;
            break;
        }
        if (!(names[n] = strdup(name))) {
            rc = STORAGE_E_NOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n && rc == 0; i++) {
        int64_t id;
        rc = mbox_create_locked(u, names[i], 0, 0, 0, &id);
        if (rc == STORAGE_E_EXISTS)
            rc = 0;
        else if (rc == 0) {
            if (mode != RESCAN_REBUILD)
                log_warn("storage: user %" PRId64 ": folder %s added to the index", u->id,
                         names[i]);
            rc = subscription_set(u->wdb, names[i], true);
            rep_changed(rep, id);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int quota_recount(struct storage_user *u, enum rescan_mode mode, struct rescan_report *rep)
{
    sqlite3_stmt *st;
    int64_t bytes = 0, count = 0, qb = 0, qm = 0;
    int rc = db_prepare(u->wdb, "SELECT count(*), total(size) FROM messages", &st);

    if (rc)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW) {
        count = sqlite3_column_int64(st, 0);
        bytes = (int64_t)sqlite3_column_double(st, 1);
    }
    db_finalize(st);
    if ((rc = db_meta_get(u->wdb, "quota_bytes", &qb)) != 0 ||
        (rc = db_meta_get(u->wdb, "quota_messages", &qm)) != 0)
        return rc;
    if (qb == bytes && qm == count)
        return 0;
    if (mode == RESCAN_CHECK) {
        rep_line(rep,
                 "quota usage %" PRId64 " bytes / %" PRId64 " messages, actual %" PRId64
                 " / %" PRId64,
                 qb, qm, bytes, count);
        return 0;
    }
    if ((rc = db_meta_set(u->wdb, "quota_bytes", bytes)) != 0)
        return rc;
    return db_meta_set(u->wdb, "quota_messages", count);
}

/* Every mailbox, inside a transaction the caller holds on the writer
 * connection. */
static int rescan_all(struct storage_user *u, enum rescan_mode mode, struct rescan_report *rep)
{
    struct mbox_row *list = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st;
    int rc;

    if (mode == RESCAN_REBUILD) {
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
            int64_t id;
            rc = mbox_create_locked(u, defaults[i].name, defaults[i].special, 0, 0, &id);
            if (rc && rc != STORAGE_E_EXISTS)
                goto fail;
            if ((rc = subscription_set(u->wdb, defaults[i].name, true)) != 0)
                goto fail;
        }
    }
    if ((rc = scan_folders(u, mode, rep)) != 0)
        goto fail;
    if ((rc = db_prepare(u->wdb, "SELECT " MBOX_COLS " FROM mailboxes ORDER BY name", &st)) != 0)
        goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (array_grow(&list, &cap, n, sizeof(*list), 16) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (mbox_row_decode(st, &list[n]) == 0) /* a name too long is skipped */
            n++;
    }
    db_finalize(st);
    if (rc != SQLITE_DONE) {
        rc = rc == SQLITE_NOMEM ? STORAGE_E_NOMEM : err_from_sqlite(u->wdb, rc);
        goto fail;
    }
    rc = 0;
    for (size_t i = 0; i < n; i++) {
        char mdir[STORAGE_PATH_MAX];
        struct stat sb;
        if ((rc = mbox_path(u, list[i].name, mdir, sizeof(mdir))) != 0)
            goto fail;
        if (stat(mdir, &sb) < 0) {
            if (mode == RESCAN_CHECK) {
                rep_line(rep, "%s: folder directory missing", list[i].name);
                continue;
            }
            log_warn("storage: user %" PRId64 ": folder %s missing on disk, recreated", u->id,
                     list[i].name);
        }
        if (mode != RESCAN_CHECK && (rc = ensure_maildir_dirs(mdir)) != 0)
            goto fail;
        if (mode == RESCAN_OPEN) {
            int ch = dir_mtime_changed(u, list[i].id, mdir, false);
            if (ch < 0) {
                rc = ch;
                goto fail;
            }
            if (ch == 0)
                continue;
        }
        if ((rc = rescan_mailbox(u, &list[i], mode, rep)) != 0)
            goto fail;
    }
    if (mode != RESCAN_OPEN && (rc = quota_recount(u, mode, rep)) != 0)
        goto fail;
    free(list);
    if (mode == RESCAN_REBUILD) {
        int64_t msgs = 0;
        quota_recount(u, mode, rep);
        db_meta_get(u->wdb, "quota_messages", &msgs);
        if (msgs > 0)
            log_warn("storage: user %" PRId64 ": index rebuilt from Maildir, %" PRId64
                     " message(s)",
                     u->id, msgs);
    }
    return 0;
fail:
    free(list);
    return rc;
}

struct rescan_ctx {
    int64_t mbox;
    enum rescan_mode mode;
    bool reopen;
    void (*committed)(struct txn *t, void *ctx);
    struct rescan_report rep;
};

/* First makes sure the index file open is still the one on disk; a new
 * one is filled from the Maildir. */
static int rescan_before(struct storage_user *u, void *ctx)
{
    struct rescan_ctx *c = ctx;
    bool fresh = false;
    int rc;

    if (!c->reopen)
        return 0;
    /* an error: no index open, nothing to rescan into */
    if ((rc = reopen_if_replaced(u, &fresh)) == 0 && fresh)
        c->mode = RESCAN_REBUILD;
    return rc;
}

static int rescan_work(struct txn *t, void *ctx)
{
    struct rescan_ctx *c = ctx;
    struct mbox_row m;
    int rc;

    if (c->mbox <= 0)
        rc = rescan_all(t->u, c->mode, &c->rep);
    else if ((rc = mbox_by_id(t->db, c->mbox, &m)) == 0)
        rc = rescan_mailbox(t->u, &m, c->mode, &c->rep);
    if (rc)
        return rc;
    /* an event that finds no memory is lost, as a mailbox that could not be
     * added to rep.changed */
    for (size_t i = 0; i < c->rep.nchanged; i++)
        txn_event(t, STORAGE_EV_EXTERNAL, c->rep.changed[i]);
    return 0;
}

static void rescan_committed(struct txn *t, void *ctx)
{
    struct rescan_ctx *c = ctx;

    if (c->committed)
        c->committed(t, NULL);
}

int rescan_write(struct storage_user *u, int64_t mbox, enum rescan_mode mode, bool reopen,
                 void (*committed)(struct txn *t, void *ctx))
{
    static const struct txn_path path = {
        .before = rescan_before, .work = rescan_work, .committed = rescan_committed};
    struct rescan_ctx c = {.mbox = mbox, .mode = mode, .reopen = reopen, .committed = committed};
    int rc = write_txn_path(u, &path, &c);

    free(c.rep.changed);
    return rc;
}

int storage_rescan(struct storage_user *u, int64_t mbox)
{
    return rescan_write(u, mbox, RESCAN_FORCE, false, NULL);
}

int storage_refresh(struct storage_user *u)
{
    return rescan_write(u, 0, RESCAN_OPEN, true, NULL);
}

/* ---- coffrectl ---- */

int storage_check(const char *data_dir, int64_t id, void (*report)(void *arg, const char *line),
                  void *arg, unsigned *problems)
{
    struct rescan_report rep = {.report = report, .arg = arg};
    struct storage_user *u;
    sqlite3_stmt *st;
    int rc;

    *problems = 0;
    rc = user_open_private(data_dir, id, &u);
    if (rc == STORAGE_E_NOMBOX) {
        char p[STORAGE_PATH_MAX];
        struct stat sb;
        pathf(p, sizeof(p), "%s/users/%" PRId64 "/Maildir", data_dir, id);
        if (stat(p, &sb) < 0)
            return 0; /* no mail store yet: created on first use */
    }
    if (rc == STORAGE_E_CORRUPT || rc == STORAGE_E_NOMBOX) {
        rep_line(&rep, rc == STORAGE_E_CORRUPT ? "index unreadable or corrupt" : "index missing");
        *problems = rep.problems;
        return 0;
    }
    if (rc)
        return rc;
    if (db_prepare(u->wdb, "PRAGMA quick_check", &st) == 0) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            if (t && strcmp(t, "ok") != 0)
                rep_line(&rep, "index: %s", t);
        }
        db_finalize(st);
    }
    if (db_exec(u->wdb, "INSERT INTO fts_words(fts_words) VALUES ('integrity-check');"
                        "INSERT INTO fts_grams(fts_grams) VALUES ('integrity-check')") != 0)
        rep_line(&rep, "full-text index damaged");
    /* a read: the comparison changes nothing */
    if ((rc = writer_lock(u)) == 0) {
        if ((rc = db_exec(u->wdb, "BEGIN")) == 0) {
            rc = rescan_all(u, RESCAN_CHECK, &rep);
            db_rollback(u->wdb);
        }
        writer_unlock(u);
    }
    if (rc == STORAGE_E_CORRUPT) {
        rep_line(&rep, "index corrupt: cannot compare it with the Maildir");
        rc = 0;
    }
    user_close_private(u);
    free(rep.changed);
    *problems = rep.problems;
    return rc;
}

int storage_repair(const char *data_dir, int64_t id)
{
    struct storage_user *u;
    int rc = storage_open(data_dir, id, &u);

    if (rc)
        return rc;
    rc = storage_rescan(u, 0);
    storage_close(u);
    return rc;
}

/* What the rebuilt index takes from a copy of the old one: keywords,
 * special-use attributes, subscriptions, the viewers' own \Seen (pseen.c:
 * kept only where the mailbox kept its UIDVALIDITY, so its UIDs). The copy is attached (outside the
 * transaction, as SQLite wants) for the time of the write. */
static int restore_attach(struct storage_user *u, void *ctx)
{
    return db_run_binds(u->wdb, "ATTACH ? AS old", ctx, NULL, 0);
}

static int restore_work(struct txn *t, void *ctx)
{
    return db_exec(t->db, "UPDATE messages SET keywords = coalesce((SELECT om.keywords"
                          " FROM old.messages om JOIN old.mailboxes ob ON ob.id = om.mailbox_id"
                          " JOIN main.mailboxes nb ON nb.name = ob.name"
                          " WHERE nb.id = messages.mailbox_id AND om.uid = messages.uid), '');"
                          "UPDATE mailboxes SET special_use = coalesce((SELECT ob.special_use"
                          " FROM old.mailboxes ob WHERE ob.name = mailboxes.name), special_use);"
                          "INSERT OR IGNORE INTO main.subscriptions SELECT name FROM"
                          " old.subscriptions;"
                          "INSERT OR REPLACE INTO main.pseen(mailbox_id, viewer, lo, hi,"
                          " uidvalidity) SELECT nb.id, p.viewer, p.lo, p.hi, nb.uidvalidity"
                          " FROM old.pseen p JOIN old.mailboxes ob ON ob.id = p.mailbox_id"
                          " JOIN main.mailboxes nb ON nb.name = ob.name"
                          " WHERE p.uidvalidity = ob.uidvalidity"
                          " AND nb.uidvalidity = ob.uidvalidity;"
                          /* QRESYNC clients hold the old index's modseqs, and
                           * its expunges are gone: each mailbox goes on above
                           * its old HIGHESTMODSEQ, every message changed at
                           * that modseq, the expunges before it forgotten (its
                           * floor, vanished.c), so that such a client resyncs
                           * in full (RFC 7162 3.2.5.2) */
                          "UPDATE mailboxes SET highestmodseq = max(highestmodseq,"
                          " coalesce((SELECT ob.highestmodseq FROM old.mailboxes ob"
                          " WHERE ob.name = mailboxes.name), 0) + 1);"
                          "UPDATE messages SET modseq = (SELECT highestmodseq FROM mailboxes"
                          " WHERE id = messages.mailbox_id);"
                          "INSERT OR REPLACE INTO meta(key, value) SELECT 'vanished_floor:'"
                          " || id || ':' || uidvalidity, highestmodseq FROM mailboxes;");
}

static void restore_detach(struct txn *t, void *ctx)
{
    db_exec(t->db, "DETACH old");
}

/* Texts moved into the full-text index per transaction after a rebuild. */
#define REINDEX_FTS_BATCH 500

int storage_reindex(const char *data_dir, int64_t id)
{
    char path[STORAGE_PATH_MAX], old[STORAGE_PATH_MAX];
    struct storage_user *u;
    int rc = storage_open(data_dir, id, &u);
    bool have_old = false;

    if (rc)
        return rc;
    /* flags go to the file names first: they survive the rebuild */
    rc = storage_sync_flags(u, 0, NULL, NULL);
    pathf(path, sizeof(path), "%s/index.sqlite", u->root);
    pathf(old, sizeof(old), "%s/index.sqlite.old", u->root);
    if (rc == 0 && (rc = writer_lock(u)) == 0) {
        /* a consistent copy of the old index, for the keywords */
        unlink(old);
        {
            sqlite3_stmt *st;
            if (db_prepare(u->wdb, "VACUUM INTO ?", &st) == 0) {
                sqlite3_bind_text(st, 1, old, -1, SQLITE_STATIC);
                have_old = sqlite3_step(st) == SQLITE_DONE;
                db_finalize(st);
            }
        }
        writer_unlock(u);
    }
    storage_close(u);
    if (rc)
        return rc;
    unlink(path);
    {
        char p[STORAGE_PATH_MAX];
        pathf(p, sizeof(p), "%s/users/%" PRId64 "/index.sqlite-wal", data_dir, id);
        unlink(p);
        pathf(p, sizeof(p), "%s/users/%" PRId64 "/index.sqlite-shm", data_dir, id);
        unlink(p);
    }
    if ((rc = storage_open(data_dir, id, &u)) != 0)
        return rc;
    if (have_old) {
        static const struct txn_path restore = {.before = restore_attach,
                                                .work = restore_work,
                                                .undo = restore_detach,
                                                .committed = restore_detach};
        write_txn_path(u, &restore, old); /* what it cannot restore is lost */
        unlink(old);
    }
    {
        /* The rebuilt texts wait for the full-text index (searchable, by a
         * scan); index them now, in batches, so that a running coffred gets
         * the index between two of them. */
        size_t left = 0;
        do {
            if (storage_fts_index(u, REINDEX_FTS_BATCH, &left) != 0)
                break; /* the daemon does the rest later */
        } while (left > 0);
    }
    storage_close(u);
    return 0;
}
