/* coffrectl backup DEST [--incremental] and coffrectl restore SRC [--user
 * ADDRESS] [--force]: a whole site copied while coffred serves, and put
 * back into a data directory (whole, or one account).
 *
 * A backup is a directory laid out as a data directory: accounts.sqlite (an
 * online copy), users/<id>/index.sqlite and users/<id>/Maildir/ (see
 * storage/backup.c for how an account is copied and what it guarantees),
 * and `manifest` (JSON: format, coffre version, start and end times, and per
 * account its address, id, signature, counts, and each mailbox's
 * UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and message count). The manifest is
 * removed when a run starts and written, fsync'd, when it ends: a directory
 * without one holds no usable backup, and restore refuses it. No checksum of
 * the messages: it would read every byte the hard links avoid reading; the
 * restore's check compares every file with the index instead.
 *
 * Restore never runs beside coffred: coffred holds a shared lock on the
 * data directory (flock) while it runs, restore takes it exclusive or
 * refuses, and a coffred started during a restore refuses to start. This
 * also covers restoring one account: no session can hold the store being
 * replaced, and no delivery can write into it half restored. */
#include "auth/auth.h"
#include "server/base/config.h"
#include "server/ctl.h"
#include "storage/storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MANIFEST "manifest"
#define MANIFEST_FORMAT 1
#define COFFRE_VERSION "0.1.0"

void ctl_backup_usage(FILE *f)
{
    fprintf(f, "  backup DEST [--incremental]    (online copy of every account; --incremental:\n"
               "                                  only what changed since the backup in DEST)\n");
}

void ctl_restore_usage(FILE *f)
{
    fprintf(f, "  restore SRC [--user ADDRESS] [--force]\n"
               "                                 (into an empty data directory, or one account;\n"
               "                                  coffred must be stopped)\n");
}

/* ---- the manifest ---- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

struct mb_out {
    FILE *f;
    bool first;
};

static void on_mailbox(void *arg, const char *name, uint32_t uidvalidity, uint32_t uidnext,
                       uint64_t highestmodseq, uint64_t messages)
{
    struct mb_out *m = arg;

    fprintf(m->f, "%s\n      {\"name\": ", m->first ? "" : ",");
    json_str(m->f, name);
    fprintf(m->f,
            ", \"uidvalidity\": %" PRIu32 ", \"uidnext\": %" PRIu32 ", \"highestmodseq\": %" PRIu64
            ", \"messages\": %" PRIu64 "}",
            uidvalidity, uidnext, highestmodseq, messages);
    m->first = false;
}

struct acct_list {
    struct auth_account *v;
    size_t n, cap;
};

static int on_account(const struct auth_account *a, void *arg)
{
    struct acct_list *l = arg;

    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        struct auth_account *p = realloc(l->v, nc * sizeof(*p));
        if (!p)
            return -1;
        l->v = p;
        l->cap = nc;
    }
    l->v[l->n++] = *a;
    return 0;
}

/* The accounts of the data directory dir. */
static int list_accounts(const char *dir, struct acct_list *l)
{
    struct auth_db *db;
    char err[512];
    int rc;

    memset(l, 0, sizeof(*l));
    if (auth_db_open(dir, &db, err, sizeof(err)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: %s\n", err);
        return CTL_EXIT_SYSTEM;
    }
    rc = auth_user_list(db, on_account, l);
    auth_db_close(db);
    if (rc != AUTH_OK) {
        fprintf(stderr, "coffrectl: cannot list the accounts of %s\n", dir);
        free(l->v);
        return CTL_EXIT_SYSTEM;
    }
    return CTL_EXIT_OK;
}

static int path_join2(char *out, size_t len, const char *a, const char *b)
{
    int n = snprintf(out, len, "%s/%s", a, b);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static bool dir_has_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    bool any = false;

    if (!d)
        return false;
    while (!any && (de = readdir(d)) != NULL)
        any = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return any;
}

/* ---- backup ---- */

static int do_backup(const struct conf *c, const char *dest, bool incremental)
{
    char p[4096], tmp[4096], err[512];
    struct acct_list accts;
    struct stat sb;
    FILE *f;
    time_t started = time(NULL);
    uint64_t linked = 0, copied = 0, kept = 0, removed = 0, lost = 0, msgs = 0;
    unsigned problems = 0;
    int rc;

    if ((rc = ctl_prepare_data_dir(c)) != CTL_EXIT_OK)
        return rc;
    if (mkdir(dest, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "coffrectl: cannot create %s: %s\n", dest, strerror(errno));
        return CTL_EXIT_SYSTEM;
    }
    if (path_join2(p, sizeof(p), dest, MANIFEST) < 0)
        return CTL_EXIT_USAGE;
    /* a backup is made into an empty directory, or over an earlier one
     * with --incremental; never mixed into something else */
    if (!incremental && dir_has_entries(dest)) {
        fprintf(stderr,
                "coffrectl: %s is not empty (--incremental updates an earlier backup there)\n",
                dest);
        return CTL_EXIT_USAGE;
    }
    if (incremental && dir_has_entries(dest) && stat(p, &sb) < 0) {
        fprintf(stderr, "coffrectl: %s holds no complete backup (no %s); use an empty directory\n",
                dest, MANIFEST);
        return CTL_EXIT_USAGE;
    }
    unlink(p); /* until this run ends, no backup there */

    if (path_join2(p, sizeof(p), dest, "accounts.sqlite") < 0)
        return CTL_EXIT_USAGE;
    if (auth_db_backup(c->data_dir, p, err, sizeof(err)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: accounts database: %s\n", err);
        return CTL_EXIT_SYSTEM;
    }
    /* the accounts as the copy has them (read-only: it stays as copied) */
    memset(&accts, 0, sizeof(accts));
    if (auth_backup_list(dest, on_account, &accts) != AUTH_OK) {
        fprintf(stderr, "coffrectl: cannot read the accounts of %s\n", p);
        free(accts.v);
        return CTL_EXIT_SYSTEM;
    }

    if (path_join2(tmp, sizeof(tmp), dest, MANIFEST ".tmp") < 0 || !(f = fopen(tmp, "we"))) {
        fprintf(stderr, "coffrectl: cannot write the manifest in %s\n", dest);
        free(accts.v);
        return CTL_EXIT_SYSTEM;
    }
    fprintf(f,
            "{\n  \"format\": %d,\n  \"coffre\": \"%s\",\n  \"started\": %lld,\n"
            "  \"incremental\": %s,\n  \"accounts\": [",
            MANIFEST_FORMAT, COFFRE_VERSION, (long long)started, incremental ? "true" : "false");
    for (size_t i = 0; i < accts.n; i++) {
        const struct auth_account *a = &accts.v[i];
        /* COFFRE_BACKUP_PAUSE: the tests' pause between the steps */
        struct storage_backup_opts o = {.incremental = incremental,
                                        .mailbox = on_mailbox,
                                        .pause = getenv("COFFRE_BACKUP_PAUSE")};
        struct storage_backup_stats st;
        struct mb_out mb = {.f = f, .first = true};

        fprintf(f, "%s\n    {\"id\": %" PRId64 ", \"address\": ", i ? "," : "", a->id);
        json_str(f, a->address);
        fprintf(f, ", \"mailboxes\": [");
        o.arg = &mb;
        rc = storage_backup(c->data_dir, a->id, dest, &o, &st);
        if (rc) {
            fprintf(stderr, "coffrectl: backup of %s failed: %s\n", a->address,
                    storage_strerror(rc));
            fclose(f);
            unlink(tmp);
            free(accts.v);
            return CTL_EXIT_SYSTEM;
        }
        fprintf(f,
                "],\n     \"store\": %s, \"index_copied\": %s, \"signature\": \"%s\","
                " \"messages\": %" PRIu64 ", \"bytes\": %" PRIu64
                ",\n     \"files_linked\": %" PRIu64 ", \"files_copied\": %" PRIu64
                ", \"files_kept\": %" PRIu64 ", \"files_removed\": %" PRIu64
                ", \"files_renamed\": %" PRIu64 ", \"lost_during_backup\": %" PRIu64
                ", \"problems\": %u}",
                st.empty ? "false" : "true", st.index_copied ? "true" : "false", st.signature,
                st.messages, st.bytes, st.linked, st.copied, st.kept, st.removed, st.renamed,
                st.lost, st.problems);
        linked += st.linked;
        copied += st.copied;
        kept += st.kept;
        removed += st.removed;
        lost += st.lost;
        msgs += st.messages;
        problems += st.problems;
        printf("%s: %s%" PRIu64 " messages, %" PRIu64 " files linked, %" PRIu64 " copied, %" PRIu64
               " kept\n",
               a->address, st.empty ? "no store yet, " : (st.index_copied ? "" : "unchanged, "),
               st.messages, st.linked, st.copied, st.kept);
    }
    fprintf(f,
            "\n  ],\n  \"finished\": %lld,\n  \"messages\": %" PRIu64
            ",\n  \"files_linked\": %" PRIu64 ",\n  \"files_copied\": %" PRIu64
            ",\n  \"files_kept\": %" PRIu64 ",\n  \"files_removed\": %" PRIu64
            ",\n  \"lost_during_backup\": %" PRIu64 "\n}\n",
            (long long)time(NULL), msgs, linked, copied, kept, removed, lost);
    free(accts.v);
    if (fflush(f) != 0 || fsync(fileno(f)) < 0) {
        fclose(f);
        unlink(tmp);
        fprintf(stderr, "coffrectl: cannot write the manifest: %s\n", strerror(errno));
        return CTL_EXIT_SYSTEM;
    }
    fclose(f);
    path_join2(p, sizeof(p), dest, MANIFEST);
    if (rename(tmp, p) < 0 || fsync_path(dest) < 0) {
        fprintf(stderr, "coffrectl: cannot write the manifest: %s\n", strerror(errno));
        return CTL_EXIT_SYSTEM;
    }
    printf("backup in %s: %zu account(s), %" PRIu64 " messages; files: %" PRIu64 " linked, %" PRIu64
           " copied, %" PRIu64 " kept, %" PRIu64 " removed%s\n",
           dest, accts.n, msgs, linked, copied, kept, removed,
           problems ? "; PROBLEMS found by the check (see the manifest)" : "");
    return problems ? CTL_EXIT_PROBLEMS : CTL_EXIT_OK;
}

/* ---- restore ---- */

/* The data directory locked against coffred (see the top): the descriptor,
 * kept until the end of the process, or -1 with the reason printed. */
static int lock_data_dir(const char *data_dir)
{
    int fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) {
        fprintf(stderr, "coffrectl: %s: %s\n", data_dir, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        fprintf(stderr,
                "coffrectl: coffred is running on %s (or another restore is): stop it first\n",
                data_dir);
        close(fd);
        return -1;
    }
    return fd;
}

/* Moves an existing path aside into data_dir/replaced-<time>/ (kept, for
 * the administrator to remove). */
static int move_aside(const char *data_dir, const char *path, const char *name, time_t now)
{
    char dir[4096], to[4096];

    struct stat sb;

    if (lstat(path, &sb) < 0)
        return errno == ENOENT ? 0 : -1;
    snprintf(dir, sizeof(dir), "%s/replaced-%lld", data_dir, (long long)now);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -1;
    if (snprintf(to, sizeof(to), "%s/%s", dir, name) >= (int)sizeof(to))
        return -1;
    if (rename(path, to) < 0)
        return -1;
    printf("moved %s to %s\n", path, to);
    return 0;
}

static int copy_file(const char *src, const char *dst)
{
    char buf[65536];
    int in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), out, rc = 0;
    ssize_t r;

    if (in < 0)
        return -1;
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return -1;
    }
    while ((r = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)r) != r) {
            rc = -1;
            break;
        }
    if (r < 0 || fsync(out) < 0)
        rc = -1;
    close(out);
    close(in);
    if (rc)
        unlink(dst);
    return rc;
}

static int restore_one(const char *src, int64_t src_id, const char *data_dir, int64_t id,
                       const char *address)
{
    struct storage_backup_stats st;
    int rc = storage_restore(src, src_id, data_dir, id, &st);

    if (rc) {
        fprintf(stderr, "coffrectl: restore of %s failed: %s\n", address, storage_strerror(rc));
        return CTL_EXIT_SYSTEM;
    }
    if (st.empty) {
        printf("%s: no store in the backup\n", address);
        return CTL_EXIT_OK;
    }
    printf("%s: %" PRIu64 " mailboxes, %" PRIu64 " messages restored (%" PRIu64
           " files linked, %" PRIu64 " copied)%s\n",
           address, st.mailboxes, st.messages, st.linked, st.copied,
           st.problems ? "; the check still finds problems"
                       : (st.repaired ? "; repaired" : "; check ok"));
    return st.problems ? CTL_EXIT_PROBLEMS : CTL_EXIT_OK;
}

static int do_restore(const struct conf *c, const char *src, const char *user, bool force)
{
    char p[4096], q[4096];
    struct stat sb;
    struct acct_list accts;
    time_t now = time(NULL);
    int rc, lock, worst = CTL_EXIT_OK;

    if (path_join2(p, sizeof(p), src, MANIFEST) < 0 || stat(p, &sb) < 0) {
        fprintf(stderr, "coffrectl: %s holds no complete backup (no %s)\n", src, MANIFEST);
        return CTL_EXIT_USAGE;
    }
    if ((rc = ctl_prepare_data_dir(c)) != CTL_EXIT_OK)
        return rc;
    if ((lock = lock_data_dir(c->data_dir)) < 0)
        return CTL_EXIT_SYSTEM;

    if (user) {
        char addr[AUTH_ADDR_MAX], err[512];
        struct auth_account live, bak;
        struct auth_db *db;
        uint64_t live_ms, bak_ms, live_n, bak_n;

        if (auth_normalize_address(user, strlen(user), c->default_domain, addr, sizeof(addr)) !=
            AUTH_OK) {
            fprintf(stderr, "coffrectl: invalid address: %s\n", user);
            return CTL_EXIT_BADADDR;
        }
        rc = auth_backup_lookup(src, addr, &bak);
        if (rc == AUTH_E_NOUSER) {
            fprintf(stderr, "coffrectl: %s is not in the backup\n", addr);
            return CTL_EXIT_NOUSER;
        }
        if (rc != AUTH_OK) {
            fprintf(stderr, "coffrectl: cannot read the accounts of %s\n", src);
            return CTL_EXIT_SYSTEM;
        }
        if (auth_db_open(c->data_dir, &db, err, sizeof(err)) != AUTH_OK) {
            fprintf(stderr, "coffrectl: %s\n", err);
            return CTL_EXIT_SYSTEM;
        }
        rc = auth_user_get(db, addr, &live);
        auth_db_close(db);
        if (rc == AUTH_OK) {
            /* the account exists: its store must be empty, or --force */
            snprintf(q, sizeof(q), "%s/users/%" PRId64, c->data_dir, live.id);
            if (lstat(q, &sb) == 0) {
                bool newer = storage_index_summary(c->data_dir, live.id, &live_ms, &live_n) == 0 &&
                             storage_index_summary(src, bak.id, &bak_ms, &bak_n) == 0 &&
                             live_ms > bak_ms;
                if (!force) {
                    fprintf(stderr,
                            "coffrectl: %s already has mail%s; --force replaces it (the "
                            "present store is kept in %s/replaced-*)\n",
                            addr, newer ? ", newer than the backup's" : "", c->data_dir);
                    return CTL_EXIT_EXISTS;
                }
                snprintf(p, sizeof(p), "user-%" PRId64, live.id);
                if (move_aside(c->data_dir, q, p, now) < 0) {
                    fprintf(stderr, "coffrectl: cannot move %s aside: %s\n", q, strerror(errno));
                    return CTL_EXIT_SYSTEM;
                }
            }
        } else if (rc == AUTH_E_NOUSER) {
            rc = auth_user_copy(src, c->data_dir, addr, &live, err, sizeof(err));
            if (rc != AUTH_OK) {
                fprintf(stderr, "coffrectl: %s\n", err);
                return CTL_EXIT_SYSTEM;
            }
            printf("%s: account added (id %" PRId64 ")\n", addr, live.id);
            ctl_live_acl_changed(c); /* its access control lists came along */
            snprintf(q, sizeof(q), "%s/users/%" PRId64, c->data_dir, live.id);
            if (lstat(q, &sb) == 0 && move_aside(c->data_dir, q, "orphan", now) < 0)
                return CTL_EXIT_SYSTEM;
        } else {
            fprintf(stderr, "coffrectl: account database error\n");
            return CTL_EXIT_SYSTEM;
        }
        rc = restore_one(src, bak.id, c->data_dir, live.id, addr);
        close(lock);
        return rc;
    }

    /* the whole site: into a data directory with no accounts and no mail,
     * whose accounts file is <data_dir>/accounts.sqlite */
    if (auth_db_backend(c->data_dir) != AUTH_BACKEND_SQLITE || c->accounts_dsn[0]) {
        fprintf(stderr, "coffrectl: a whole-site restore needs the accounts in "
                        "<data_dir>/accounts.sqlite (accounts_backend = sqlite, no accounts_dsn); "
                        "restore accounts one by one with --user, or load the directory with "
                        "coffrectl accounts import\n");
        return CTL_EXIT_USAGE;
    }
    {
        struct acct_list live;
        bool has_users, has_accts = false;
        snprintf(q, sizeof(q), "%s/users", c->data_dir);
        has_users = dir_has_entries(q);
        snprintf(p, sizeof(p), "%s/accounts.sqlite", c->data_dir);
        if (stat(p, &sb) == 0) {
            if ((rc = list_accounts(c->data_dir, &live)) != CTL_EXIT_OK)
                return rc;
            has_accts = live.n > 0;
            free(live.v);
        }
        if ((has_users || has_accts) && !force) {
            fprintf(stderr,
                    "coffrectl: %s is not empty (accounts or mail); restore into an empty data "
                    "directory, or --force to move what is there aside\n",
                    c->data_dir);
            return CTL_EXIT_EXISTS;
        }
        if (has_users && move_aside(c->data_dir, q, "users", now) < 0) {
            fprintf(stderr, "coffrectl: cannot move %s aside: %s\n", q, strerror(errno));
            return CTL_EXIT_SYSTEM;
        }
        for (int i = 0; i < 4; i++) {
            static const char *const ext[] = {"", "-wal", "-shm", "-journal"};
            char n[64];
            snprintf(n, sizeof(n), "accounts.sqlite%s", ext[i]);
            snprintf(p, sizeof(p), "%s/%s", c->data_dir, n);
            if (move_aside(c->data_dir, p, n, now) < 0) {
                fprintf(stderr, "coffrectl: cannot move %s aside: %s\n", p, strerror(errno));
                return CTL_EXIT_SYSTEM;
            }
        }
    }
    /* the accounts first, then each store: an interrupted run leaves
     * accounts whose store is missing or partial, and is run again with
     * --force */
    snprintf(p, sizeof(p), "%s/accounts.sqlite", src);
    snprintf(q, sizeof(q), "%s/accounts.sqlite", c->data_dir);
    if (copy_file(p, q) < 0) {
        fprintf(stderr, "coffrectl: cannot copy %s: %s\n", p, strerror(errno));
        return CTL_EXIT_SYSTEM;
    }
    if ((rc = list_accounts(c->data_dir, &accts)) != CTL_EXIT_OK)
        return rc;
    for (size_t i = 0; i < accts.n; i++) {
        rc = restore_one(src, accts.v[i].id, c->data_dir, accts.v[i].id, accts.v[i].address);
        if (rc == CTL_EXIT_SYSTEM) {
            free(accts.v);
            return rc;
        }
        if (rc != CTL_EXIT_OK)
            worst = rc;
    }
    fsync_path(c->data_dir);
    printf("restored %zu account(s) from %s\n", accts.n, src);
    free(accts.v);
    close(lock);
    return worst;
}

int ctl_backup_main(const struct conf *c, int argc, char **argv)
{
    const char *path = NULL, *user = NULL;
    bool incremental = false, force = false;
    bool restore = strcmp(argv[0], "restore") == 0;

    for (int i = 1; i < argc; i++) {
        if (!restore && !strcmp(argv[i], "--incremental"))
            incremental = true;
        else if (restore && !strcmp(argv[i], "--force"))
            force = true;
        else if (restore && !strcmp(argv[i], "--user") && i + 1 < argc)
            user = argv[++i];
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else {
            fprintf(stderr, "coffrectl: unexpected argument %s\nusage:\n", argv[i]);
            ctl_backup_usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "usage:\n");
        ctl_backup_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    return restore ? do_restore(c, path, user, force) : do_backup(c, path, incremental);
}
