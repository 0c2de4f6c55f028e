/* coffrectl user move ADDRESS --to SLOT: moves an account's mail from this
 * configuration's slot (its data_dir) to another slot's data directory and
 * makes the account live there, keeping UIDVALIDITY, UIDs, flags and
 * modseqs. Run where both data directories are reachable.
 *
 *  1. the directory says move_to=SLOT: deliveries get 451 4.2.1 and logins
 *     a temporary failure on every slot;
 *  2. the source coffred lets go of the account (control socket RELEASE:
 *     its sessions end, it answers once it holds nothing of it); not
 *     running, it holds nothing;
 *  3. the store is copied (storage_backup: Maildir and index) into
 *     TARGET/.move-<id>, then renamed to TARGET/users/<id> (the id is the
 *     directory's, the same on every slot);
 *  4. the copy, opened with the storage API, must show the source's
 *     mailboxes, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and each message's
 *     UID, size, flags, keywords and modseq;
 *  5. slot=SLOT and move_to cleared in one update: it lives on SLOT;
 *  6. the source copy is removed (renamed to .moved-<id> first, then
 *     deleted), or with --keep-source renamed to moved-<id>-<time> in the
 *     source data directory.
 *
 * Each step looks at what it finds, so that a rerun after a crash at any
 * point finishes the move: move_to already SLOT, a partial .move-<id>
 * (removed and made again), a copy already in place (verified; moved
 * aside and made again when it differs), slot already SLOT (only move_to
 * to clear and the source to remove). A move can be called off by a move
 * back to the account's slot while move_to is still set.
 *
 * COFFRE_MOVE_STOP_AFTER=N (1, 2, 3tmp, 3, 4, 5), for the tests only,
 * stops after that step as a crash there would. */
#include <errno.h>
#include <ftw.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "server/ctl.h"
#include "storage/storage.h"

#define DIGEST_LEN 32

struct move {
    const struct conf *c;
    char address[AUTH_ADDR_MAX];
    const char *to;
    bool keep_source;
    char src[PATH_MAX], dst[PATH_MAX]; /* data directories */
    struct auth_account a;
    const char *stop;
};

static int usage(const char *why, const char *arg)
{
    fprintf(stderr, "coffrectl: ");
    fprintf(stderr, why, arg);
    fprintf(stderr, "\nusage: coffrectl user move ADDRESS --to SLOT [--keep-source] "
                    "[--target-data-dir DIR]\n");
    return CTL_EXIT_USAGE;
}

static bool stop_after(const struct move *m, const char *step)
{
    if (!m->stop || strcmp(m->stop, step) != 0)
        return false;
    fprintf(stderr, "coffrectl: stopped after step %s (COFFRE_MOVE_STOP_AFTER); rerun to finish\n",
            step);
    return true;
}

/* ---- files ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

static int remove_tree(const char *path)
{
    struct stat sb;

    if (lstat(path, &sb) < 0)
        return errno == ENOENT ? 0 : -1;
    return nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

static int fsync_dir(const char *path)
{
    FILE *f = fopen(path, "re");
    int r;

    if (!f)
        return -1;
    r = fsync(fileno(f));
    fclose(f);
    return r;
}

static bool exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static int pathf2(char *out, const char *dir, const char *fmt, int64_t id)
{
    char name[64];

    snprintf(name, sizeof(name), fmt, id);
    if (snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX) {
        fprintf(stderr, "coffrectl: path too long under %s\n", dir);
        return -1;
    }
    return 0;
}

/* ---- the comparison of two stores ---- */

struct mb_row {
    int64_t id;
    char name[STORAGE_MBOX_NAME_MAX + 1];
    uint32_t uidvalidity, uidnext;
    uint64_t highestmodseq;
};

struct mb_vec {
    struct mb_row *v;
    size_t n, cap;
    bool oom;
};

static int on_mailbox(void *arg, const struct storage_mbox *m)
{
    struct mb_vec *vec = arg;

    if (m->id == 0)
        return 0; /* a subscription to a name that does not exist */
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 16;
        struct mb_row *n = realloc(vec->v, cap * sizeof(*n));
        if (!n) {
            vec->oom = true;
            return 1;
        }
        vec->v = n;
        vec->cap = cap;
    }
    struct mb_row *r = &vec->v[vec->n++];
    r->id = m->id;
    snprintf(r->name, sizeof(r->name), "%s", m->name);
    r->uidvalidity = m->uidvalidity;
    r->uidnext = m->uidnext;
    r->highestmodseq = m->highestmodseq;
    return 0;
}

struct digest {
    gnutls_hash_hd_t h;
    uint64_t messages, bytes;
};

static int on_message(void *arg, const struct storage_msg *m)
{
    struct digest *d = arg;
    char line[96];
    int n = snprintf(line, sizeof(line), "m %" PRIu32 " %" PRIu64 " %u %" PRIu64 " ", m->uid,
                     m->size, m->flags, m->modseq);

    gnutls_hash(d->h, line, (size_t)n);
    gnutls_hash(d->h, m->keywords ? m->keywords : "", m->keywords ? strlen(m->keywords) : 0);
    gnutls_hash(d->h, "\n", 1);
    d->messages++;
    d->bytes += m->size;
    return 0;
}

/* A digest of what a client sees of account id's store in data_dir: every
 * mailbox (name, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ) and every message
 * (UID, size, flags, keywords, modseq). 1 when it has no store, 0, or -1
 * with the reason printed. */
static int store_digest(const char *data_dir, int64_t id, unsigned char out[DIGEST_LEN],
                        size_t *mailboxes, uint64_t *messages, uint64_t *bytes)
{
    struct storage_user *u;
    struct mb_vec vec = {0};
    struct digest d = {0};
    int rc;

    if (!storage_has_index(data_dir, id))
        return 1;
    if ((rc = storage_open(data_dir, id, &u)) != 0) {
        fprintf(stderr, "coffrectl: cannot open the store in %s: %s\n", data_dir,
                storage_strerror(rc));
        return -1;
    }
    if (gnutls_hash_init(&d.h, GNUTLS_DIG_SHA256) < 0) {
        storage_close(u);
        fprintf(stderr, "coffrectl: no SHA-256 from GnuTLS\n");
        return -1;
    }
    rc = storage_mbox_list(u, "*", false, NULL, on_mailbox, &vec);
    if (!rc && vec.oom)
        rc = STORAGE_E_NOMEM;
    for (size_t i = 0; !rc && i < vec.n; i++) {
        const struct mb_row *r = &vec.v[i];
        char line[STORAGE_MBOX_NAME_MAX + 96];
        int n = snprintf(line, sizeof(line), "M %s %" PRIu32 " %" PRIu32 " %" PRIu64 "\n", r->name,
                         r->uidvalidity, r->uidnext, r->highestmodseq);
        gnutls_hash(d.h, line, (size_t)n);
        rc = storage_fetch(u, r->id, NULL, 0, on_message, &d);
    }
    gnutls_hash_deinit(d.h, out);
    storage_close(u);
    *mailboxes = vec.n;
    free(vec.v);
    if (rc) {
        fprintf(stderr, "coffrectl: reading the store in %s: %s\n", data_dir, storage_strerror(rc));
        return -1;
    }
    *messages = d.messages;
    *bytes = d.bytes;
    return 0;
}

/* Step 4: 0 the same, 1 different (said how), -1 an error (printed). */
static int verify(const struct move *m)
{
    unsigned char a[DIGEST_LEN], b[DIGEST_LEN];
    size_t mb_a = 0, mb_b = 0;
    uint64_t msg_a = 0, msg_b = 0, bytes_a = 0, bytes_b = 0;
    int ra, rb;

    ra = store_digest(m->src, m->a.id, a, &mb_a, &msg_a, &bytes_a);
    if (ra < 0)
        return -1;
    rb = store_digest(m->dst, m->a.id, b, &mb_b, &msg_b, &bytes_b);
    if (rb < 0)
        return -1;
    if (ra == 1 && rb == 1) {
        printf("step 4/6: no store on either side (the account never received mail)\n");
        return 0;
    }
    if (ra != rb || memcmp(a, b, DIGEST_LEN) != 0) {
        fprintf(stderr,
                "coffrectl: the copy differs from the source: source %zu mailboxes, %" PRIu64
                " messages, %" PRIu64 " bytes; copy %zu mailboxes, %" PRIu64 " messages, %" PRIu64
                " bytes%s\n",
                mb_a, msg_a, bytes_a, mb_b, msg_b, bytes_b,
                ra == rb ? " (UIDs, flags or modseqs differ)" : "");
        return 1;
    }
    printf("step 4/6: verified: %zu mailboxes, %" PRIu64 " messages, %" PRIu64
           " bytes, the same UIDVALIDITY, UIDs, flags and modseqs\n",
           mb_a, msg_a, bytes_a);
    return 0;
}

/* ---- the steps ---- */

/* Step 3: the store into dst/users/<id>, through dst/.move-<id>. */
static int copy_store(const struct move *m)
{
    char tmp[PATH_MAX], from[PATH_MAX], into[PATH_MAX], users[PATH_MAX];
    struct storage_backup_stats st;
    int rc;

    if (pathf2(tmp, m->dst, ".move-%" PRId64, m->a.id) < 0 ||
        pathf2(into, m->dst, "users/%" PRId64, m->a.id) < 0 ||
        snprintf(from, sizeof(from), "%s/users/%" PRId64, tmp, m->a.id) >= (int)sizeof(from) ||
        snprintf(users, sizeof(users), "%s/users", m->dst) >= (int)sizeof(users))
        return CTL_EXIT_SYSTEM;
    if (exists(tmp)) {
        printf("step 3/6: removing the partial copy %s of an earlier run\n", tmp);
        if (remove_tree(tmp) < 0) {
            fprintf(stderr, "coffrectl: cannot remove %s: %s\n", tmp, strerror(errno));
            return CTL_EXIT_SYSTEM;
        }
    }
    if (mkdir(tmp, 0700) < 0) {
        fprintf(stderr, "coffrectl: cannot create %s: %s\n", tmp, strerror(errno));
        return CTL_EXIT_SYSTEM;
    }
    rc = storage_backup(m->src, m->a.id, tmp, NULL, &st);
    if (rc) {
        fprintf(stderr, "coffrectl: copying the store of %s: %s\n", m->address,
                storage_strerror(rc));
        return CTL_EXIT_SYSTEM;
    }
    if (st.empty) {
        printf("step 3/6: %s has no store yet: nothing to copy\n", m->address);
        remove_tree(tmp);
        return CTL_EXIT_OK;
    }
    /* the backup's mark, meaningless here */
    {
        char sig[PATH_MAX + 32];
        snprintf(sig, sizeof(sig), "%s/backup-signature", from);
        unlink(sig);
    }
    if (stop_after(m, "3tmp"))
        return CTL_EXIT_SYSTEM;
    if ((mkdir(users, 0700) < 0 && errno != EEXIST) || rename(from, into) < 0 ||
        fsync_dir(users) < 0) {
        fprintf(stderr, "coffrectl: cannot put the copy in place at %s: %s\n", into,
                strerror(errno));
        return CTL_EXIT_SYSTEM;
    }
    remove_tree(tmp);
    printf("step 3/6: copied %" PRIu64 " messages in %" PRIu64 " mailboxes to %s (%" PRIu64
           " files linked, %" PRIu64 " copied)\n",
           st.messages, st.mailboxes, into, st.linked, st.copied);
    return CTL_EXIT_OK;
}

/* Step 6: the source copy goes (or is kept aside). */
static int drop_source(const struct move *m)
{
    char here[PATH_MAX], gone[PATH_MAX], kept[PATH_MAX + 64];
    char name[64];

    if (pathf2(here, m->src, "users/%" PRId64, m->a.id) < 0 ||
        pathf2(gone, m->src, ".moved-%" PRId64, m->a.id) < 0)
        return CTL_EXIT_SYSTEM;
    if (exists(here)) {
        if (m->keep_source) {
            snprintf(name, sizeof(name), "moved-%" PRId64 "-%lld", m->a.id, (long long)time(NULL));
            if (snprintf(kept, sizeof(kept), "%s/%s", m->src, name) >= (int)sizeof(kept) ||
                rename(here, kept) < 0) {
                fprintf(stderr, "coffrectl: cannot move %s aside: %s\n", here, strerror(errno));
                return CTL_EXIT_SYSTEM;
            }
            printf("step 6/6: the source copy is kept as %s\n", kept);
        } else if (rename(here, gone) < 0 && errno != ENOENT) {
            fprintf(stderr, "coffrectl: cannot remove %s: %s\n", here, strerror(errno));
            return CTL_EXIT_SYSTEM;
        }
        fsync_dir(m->src);
    }
    if (exists(gone)) {
        if (remove_tree(gone) < 0) {
            fprintf(stderr, "coffrectl: cannot remove %s: %s\n", gone, strerror(errno));
            return CTL_EXIT_SYSTEM;
        }
        printf("step 6/6: the source copy is removed\n");
    }
    return CTL_EXIT_OK;
}

static int db_error(const char *what, const char *address, int r)
{
    if (r == AUTH_E_NOUSER) {
        fprintf(stderr, "coffrectl: no such user: %s\n", address);
        return CTL_EXIT_NOUSER;
    }
    fprintf(stderr, "coffrectl: database error %s %s\n", what, address);
    return CTL_EXIT_SYSTEM;
}

/* Step 5: the account lives on m->to: slot set and move_to cleared in one
 * update of the directory. */
static int flip(struct move *m)
{
    struct auth_db *db;
    int rc, r;

    if ((rc = ctl_open_directory(m->c, &db)) != CTL_EXIT_OK)
        return rc;
    r = auth_user_move_done(db, m->address, m->to);
    auth_db_close(db);
    if (r != AUTH_OK)
        return db_error("flipping the slot of", m->address, r);
    printf("step 5/6: %s now lives on slot %s\n", m->address, m->to);
    return CTL_EXIT_OK;
}

static int run(struct move *m)
{
    char into[PATH_MAX];
    struct auth_db *db;
    int rc, r;

    if ((rc = ctl_open_directory(m->c, &db)) != CTL_EXIT_OK)
        return rc;
    r = auth_user_get(db, m->address, &m->a);
    if (r != AUTH_OK) {
        auth_db_close(db);
        return db_error("reading", m->address, r);
    }
    if (m->a.move_to[0] && strcmp(m->a.move_to, m->to) != 0) {
        if (!strcmp(m->a.slot, m->to)) {
            /* back to where it lives: the move is called off */
            r = auth_user_set_move(db, m->address, "");
            auth_db_close(db);
            if (r != AUTH_OK)
                return db_error("updating", m->address, r);
            printf("the move of %s to slot %s is called off; it stays on slot %s\n", m->address,
                   m->a.move_to, m->to);
            return CTL_EXIT_OK;
        }
        auth_db_close(db);
        fprintf(stderr,
                "coffrectl: %s is being moved to slot %s: rerun with --to %s (or --to %s to call "
                "it off)\n",
                m->address, m->a.move_to, m->a.move_to, m->a.slot[0] ? m->a.slot : "''");
        return CTL_EXIT_USAGE;
    }
    if (!m->dst[0]) {
        struct auth_slot s;
        r = auth_slot_get(db, m->to, &s);
        if (r == AUTH_E_NOUSER) {
            auth_db_close(db);
            fprintf(stderr, "coffrectl: no such slot: %s (coffrectl slot add)\n", m->to);
            return CTL_EXIT_NOUSER;
        }
        if (r != AUTH_OK) {
            auth_db_close(db);
            return db_error("reading the slot of", m->address, r);
        }
        if (!s.data_dir[0]) {
            auth_db_close(db);
            fprintf(stderr,
                    "coffrectl: slot %s has no data directory in the directory: give "
                    "--target-data-dir\n",
                    m->to);
            return CTL_EXIT_USAGE;
        }
        snprintf(m->dst, sizeof(m->dst), "%s", s.data_dir);
    } else if ((r = auth_slot_get(db, m->to, NULL)) != AUTH_OK) {
        auth_db_close(db);
        if (r == AUTH_E_NOUSER) {
            fprintf(stderr, "coffrectl: no such slot: %s (coffrectl slot add)\n", m->to);
            return CTL_EXIT_NOUSER;
        }
        return db_error("reading the slot of", m->address, r);
    }
    {
        char a[PATH_MAX], b[PATH_MAX];
        if (!realpath(m->src, a) || !realpath(m->dst, b)) {
            auth_db_close(db);
            fprintf(stderr, "coffrectl: %s: %s\n", realpath(m->src, a) ? m->dst : m->src,
                    strerror(errno));
            return CTL_EXIT_SYSTEM;
        }
        if (!strcmp(a, b)) {
            auth_db_close(db);
            if (!strcmp(m->a.slot, m->to) && !m->a.move_to[0]) {
                printf("%s already lives on slot %s\n", m->address, m->to);
                return CTL_EXIT_OK;
            }
            fprintf(stderr, "coffrectl: the target data directory is this slot's own (%s)\n", a);
            return CTL_EXIT_USAGE;
        }
    }

    /* what an earlier run left */
    if (!strcmp(m->a.slot, m->to) && !m->a.move_to[0]) {
        auth_db_close(db);
        if (pathf2(into, m->dst, "users/%" PRId64, m->a.id) < 0)
            return CTL_EXIT_SYSTEM;
        printf("%s already lives on slot %s\n", m->address, m->to);
        /* the source copy goes only when the target has one */
        if (exists(into) || !storage_has_index(m->src, m->a.id))
            return drop_source(m);
        return CTL_EXIT_OK;
    }
    if (m->c->slot_name[0] && m->a.slot[0] && strcmp(m->a.slot, m->c->slot_name) != 0 &&
        strcmp(m->a.slot, m->to) != 0) {
        auth_db_close(db);
        fprintf(stderr,
                "coffrectl: %s lives on slot %s, not on this configuration's slot %s: run the "
                "move with slot %s's configuration\n",
                m->address, m->a.slot, m->c->slot_name, m->a.slot);
        return CTL_EXIT_USAGE;
    }

    if (!strcmp(m->a.slot, m->to)) {
        /* slot set by hand (user set-slot) during a move: finish it */
        auth_db_close(db);
        printf("%s: its slot is %s already\n", m->address, m->to);
        if ((rc = flip(m)) != CTL_EXIT_OK)
            return rc;
        return drop_source(m);
    }

    /* 1 */
    r = m->a.move_to[0] ? AUTH_OK : auth_user_set_move(db, m->address, m->to);
    auth_db_close(db);
    if (r != AUTH_OK)
        return db_error("updating", m->address, r);
    printf("step 1/6: %s is moving from slot %s to slot %s: deliveries wait, logins fail "
           "temporarily\n",
           m->address, m->a.slot[0] ? m->a.slot : "(none)", m->to);
    if (stop_after(m, "1"))
        return CTL_EXIT_SYSTEM;

    /* 2 */
    r = ctl_live_release(m->c, m->a.id, m->address);
    if (r < 0) {
        fprintf(stderr, "coffrectl: the move stays in progress (deliveries wait); rerun to "
                        "finish it\n");
        return CTL_EXIT_SYSTEM;
    }
    printf("step 2/6: %s\n", r == 0 ? "the source coffred ended the sessions and let go"
                                    : "the source coffred is not running");
    if (stop_after(m, "2"))
        return CTL_EXIT_SYSTEM;

    /* 3 and 4: a copy in place from an earlier run is checked first */
    if (pathf2(into, m->dst, "users/%" PRId64, m->a.id) < 0)
        return CTL_EXIT_SYSTEM;
    if (exists(into)) {
        printf("step 3/6: a copy is in place already (an earlier run): checking it\n");
        r = verify(m);
        if (r < 0)
            return CTL_EXIT_SYSTEM;
        if (r == 1) {
            char aside[PATH_MAX + 32];
            snprintf(aside, sizeof(aside), "%s/stale-move-%" PRId64 "-%lld", m->dst, m->a.id,
                     (long long)time(NULL));
            if (rename(into, aside) < 0) {
                fprintf(stderr, "coffrectl: cannot move %s aside: %s\n", into, strerror(errno));
                return CTL_EXIT_SYSTEM;
            }
            printf("step 3/6: it differs: moved aside to %s, copying again\n", aside);
        }
    }
    if (!exists(into)) {
        if ((rc = copy_store(m)) != CTL_EXIT_OK)
            return rc;
        if (stop_after(m, "3"))
            return CTL_EXIT_SYSTEM;
        r = verify(m);
        if (r < 0)
            return CTL_EXIT_SYSTEM;
        if (r == 1) {
            fprintf(stderr,
                    "coffrectl: the move stays in progress (deliveries wait); rerun to "
                    "copy again, or move it back to slot %s to call it off\n",
                    m->a.slot);
            return CTL_EXIT_PROBLEMS;
        }
    }
    if (stop_after(m, "4"))
        return CTL_EXIT_SYSTEM;

    /* 5 */
    if ((rc = flip(m)) != CTL_EXIT_OK)
        return rc;
    if (stop_after(m, "5"))
        return CTL_EXIT_SYSTEM;

    /* 6 */
    return drop_source(m);
}

int ctl_user_move(const struct conf *c, int argc, char **argv)
{
    static struct move m; /* paths: not on the stack */
    int rc;

    memset(&m, 0, sizeof(m));
    m.c = c;
    m.stop = getenv("COFFRE_MOVE_STOP_AFTER");
    if (argc < 3 || argv[2][0] == '-')
        return usage("%s", "user move needs an ADDRESS");
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--to") && i + 1 < argc)
            m.to = argv[++i];
        else if (!strcmp(argv[i], "--keep-source"))
            m.keep_source = true;
        else if (!strcmp(argv[i], "--target-data-dir") && i + 1 < argc)
            snprintf(m.dst, sizeof(m.dst), "%s", argv[++i]);
        else
            return usage("unknown or incomplete option %s", argv[i]);
    }
    if (!m.to)
        return usage("%s", "user move needs --to SLOT");
    if (!auth_slot_name_ok(m.to))
        return usage("not a slot name: %s", m.to);
    if (m.dst[0] && m.dst[0] != '/')
        return usage("--target-data-dir must be an absolute path: %s", m.dst);
    if (auth_normalize_address(argv[2], strlen(argv[2]), c->default_domain, m.address,
                               sizeof(m.address)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: not a valid address: %s\n", argv[2]);
        return CTL_EXIT_BADADDR;
    }
    snprintf(m.src, sizeof(m.src), "%s", c->data_dir);
    if ((rc = ctl_prepare_data_dir(c)) != CTL_EXIT_OK)
        return rc;
    rc = run(&m);
    if (rc == CTL_EXIT_OK)
        printf("moved %s to slot %s\n", m.address, m.to);
    return rc;
}
