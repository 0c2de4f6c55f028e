/* coffrectl import ...: brings mail from another server's store into
 * coffre, keeping UIDVALIDITY, UIDs, flags, keywords, internal dates and
 * subscriptions (storage_import_* in storage/storage.h). This file holds
 * the dispatch and what the sources share: accounts, batches, progress
 * and the summary; each source is in its own file (ctl_import_*.c). */
#include "server/ctl_import.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "server/base/mutf7.h"
#include "server/ctl.h"

/* Failures listed one by one before the rest are only counted. */
#define IMP_REASONS_MAX 50

void ctl_import_usage(FILE *f)
{
    fprintf(f, "  import --from-dovecot-maildir PATH ADDRESS\n"
               "  import --from-dovecot-maildir --users-from FILE\n"
               "                                 (FILE: lines \"ADDRESS PATH\")\n"
               "  import --from-dovecot-maildir PATTERN [ADDRESS]\n"
               "                                 (%%u address, %%n local part, %%d domain;\n"
               "                                 without ADDRESS every account)\n"
               "  import --from-mbox FILE... ADDRESS [--folder NAME]\n"
               "                                 [--mbox-format auto|mboxrd|mboxo|mboxcl2]\n"
               "                                 (each import is idempotent and resumable)\n");
    ctl_import_imap_usage(f);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void imp_run_init(struct imp_run *r, const struct conf *c)
{
    struct rlimit rl;

    memset(r, 0, sizeof(*r));
    r->conf = c;
    r->tty = isatty(STDERR_FILENO);
    r->start_ms = now_ms();
    /* a batch holds a descriptor per message until it commits, and two
     * are under way in a pipeline */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max &&
        rl.rlim_cur < IMP_BATCH * 3 + 64) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    r->serial = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                rl.rlim_cur < IMP_BATCH * 3 + 64;
}

int imp_account(struct imp_run *r, const char *address, int64_t *id, char *norm, size_t normlen)
{
    static bool prepared;
    struct auth_account acct;
    struct auth_db *db;
    char err[512];
    int rc;

    if (auth_normalize_address(address, strlen(address), r->conf->default_domain, norm, normlen) !=
        AUTH_OK) {
        fprintf(stderr, "coffrectl: invalid address: %s\n", address);
        return CTL_EXIT_BADADDR;
    }
    if (!prepared) {
        if ((rc = ctl_prepare_data_dir(r->conf)) != CTL_EXIT_OK)
            return rc;
        prepared = true;
    }
    if (auth_db_open(r->conf->data_dir, &db, err, sizeof(err)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: %s\n", err);
        return CTL_EXIT_SYSTEM;
    }
    rc = auth_user_get(db, norm, &acct);
    auth_db_close(db);
    if (rc == AUTH_E_NOUSER) {
        fprintf(stderr, "coffrectl: no such user: %s\n", norm);
        return CTL_EXIT_NOUSER;
    }
    if (rc != AUTH_OK) {
        fprintf(stderr, "coffrectl: account database error\n");
        return CTL_EXIT_SYSTEM;
    }
    *id = acct.id;
    return CTL_EXIT_OK;
}

int imp_mailbox(struct imp_run *r, struct storage_user *u, const char *name, uint32_t uidvalidity,
                unsigned special_use, struct storage_mbox *out)
{
    struct storage_mbox before;
    bool existed = storage_mbox_get(u, name, &before) == 0;
    int rc = storage_import_mailbox(u, name, uidvalidity, special_use, out);

    if (rc == STORAGE_E_CONFLICT) {
        fprintf(stderr,
                "coffrectl: %s: mailbox %s holds messages under UIDVALIDITY %" PRIu32
                ", the source has %" PRIu32 ": left alone\n",
                r->user, name, out->uidvalidity, uidvalidity);
        r->conflicts++;
        return -1;
    }
    if (rc) {
        fprintf(stderr, "coffrectl: %s: mailbox %s: %s\n", r->user, name, storage_strerror(rc));
        r->errors++;
        return -1;
    }
    r->mailboxes++;
    r->mailboxes_created += !existed;
    return 0;
}

static void reason(struct imp_run *r, const char *mailbox, uint32_t uid, const char *what,
                   const char *why)
{
    if (r->reasons_shown++ >= IMP_REASONS_MAX)
        return;
    if (r->tty)
        fputs("\r\033[K", stderr);
    fprintf(stderr, "coffrectl: %s: %s UID %" PRIu32 "%s%s: %s\n", r->user, mailbox, uid,
            what ? " " : "", what ? what : "", why);
}

void imp_fail(struct imp_run *r, const char *mailbox, uint32_t uid, const char *what,
              const char *why)
{
    r->failed++;
    r->done++;
    reason(r, mailbox, uid, what, why);
}

/* Counts the outcome of batch b, which storage_import_messages or
 * storage_import_commit returned rc for, and empties it. */
static int batch_count(struct imp_run *r, struct imp_batch *b, int rc)
{
    if (rc) {
        fprintf(stderr, "coffrectl: %s: %s: a batch of %zu messages failed: %s\n", r->user,
                b->mailbox, b->n, storage_strerror(rc));
        r->errors++;
        r->done += b->n;
        b->n = 0;
        return -1;
    }
    for (size_t i = 0; i < b->n; i++) {
        const struct storage_import_msg *m = &b->m[i];
        r->kw_dropped += m->keywords_dropped;
        switch (m->status) {
        case STORAGE_IMPORT_ADDED:
            r->added++;
            r->bytes += m->size;
            break;
        case STORAGE_IMPORT_PRESENT:
            r->present++;
            r->kw_restored += m->keywords_restored;
            break;
        case STORAGE_IMPORT_UID_USED:
            r->uid_used++;
            reason(r, b->mailbox, m->uid, m->path, "UID used before (expunged here): skipped");
            break;
        default:
            r->failed++;
            reason(r, b->mailbox, m->uid, m->path, storage_strerror(m->rc));
            break;
        }
    }
    r->done += b->n;
    b->n = 0;
    imp_progress(r, false);
    return 0;
}

int imp_batch_flush(struct imp_run *r, struct storage_user *u, int64_t mbox, struct imp_batch *b)
{
    if (b->n == 0)
        return 0;
    return batch_count(r, b, storage_import_messages(u, mbox, b->m, b->n));
}

static void *pipe_commit(void *arg)
{
    struct imp_pipe *p = arg;

    p->rc = storage_import_commit(p->sb);
    p->sb = NULL;
    return NULL;
}

int imp_pipe_wait(struct imp_run *r, struct imp_pipe *p)
{
    if (!p->busy)
        return 0;
    pthread_join(p->th, NULL);
    p->busy = false;
    return batch_count(r, &p->b[p->slot], p->rc);
}

int imp_pipe_flush(struct imp_run *r, struct storage_user *u, int64_t mbox, struct imp_pipe *p)
{
    struct imp_batch *b = &p->b[p->cur];
    struct storage_import_batch *sb;
    int rc, wrc;

    if (b->n == 0)
        return 0;
    /* beside the commit of the batch before */
    wrc = storage_import_write(u, mbox, b->m, b->n, &sb);
    rc = imp_pipe_wait(r, p);
    if (!sb)
        return batch_count(r, b, wrc);
    p->sb = sb;
    p->slot = p->cur;
    p->cur ^= 1;
    if (!r->serial && pthread_create(&p->th, NULL, pipe_commit, p) == 0) {
        p->busy = true;
        return rc;
    }
    pipe_commit(p); /* no thread: committed here */
    return batch_count(r, &p->b[p->slot], p->rc) || rc ? -1 : 0;
}

void imp_progress(struct imp_run *r, bool final)
{
    uint64_t now = now_ms(), el;

    if (!r->tty || (!final && now - r->last_ms < 100))
        return;
    r->last_ms = now;
    el = now - r->start_ms;
    {
        unsigned width = 30, fill = r->total ? (unsigned)(r->done * width / r->total) : 0;
        char bar[32];
        if (fill > width)
            fill = width;
        memset(bar, '#', fill);
        memset(bar + fill, '.', width - fill);
        bar[width] = '\0';
        fprintf(stderr, "\r\033[K%s [%s] %" PRIu64 "/%" PRIu64 " messages, %" PRIu64 " msg/s",
                r->user ? r->user : "", bar, r->done, r->total,
                el ? r->done * 1000 / el : (uint64_t)0);
    }
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

int imp_summary(struct imp_run *r)
{
    uint64_t el = now_ms() - r->start_ms;
    double s = (double)el / 1000.0;

    printf("mailboxes: %" PRIu64 " (%" PRIu64 " created), %" PRIu64 " in conflict\n", r->mailboxes,
           r->mailboxes_created, r->conflicts);
    printf("messages: %" PRIu64 " added (%" PRIu64 " bytes), %" PRIu64 " already present, %" PRIu64
           " failed\n",
           r->added, r->bytes, r->present, r->failed);
    printf("skipped: %" PRIu64 " present, %" PRIu64 " UID used before, %" PRIu64
           " keywords dropped (invalid here), %" PRIu64 " messages got their keywords back\n",
           r->present, r->uid_used, r->kw_dropped, r->kw_restored);
    printf("time: %.2f s, %.0f messages/s, %.1f MB/s\n", s, s > 0 ? (double)r->added / s : 0.0,
           s > 0 ? (double)r->bytes / 1e6 / s : 0.0);
    if (r->reasons_shown > IMP_REASONS_MAX)
        printf("(%u more problems not listed)\n", r->reasons_shown - IMP_REASONS_MAX);
    if (r->errors)
        return CTL_EXIT_SYSTEM;
    if (r->failed || r->conflicts)
        return CTL_EXIT_INCOMPLETE;
    return CTL_EXIT_OK;
}

/* ---- names ---- */

int imp_mutf7_decode(const char *in, size_t len, char *out, size_t outcap)
{
    if (outcap == 0)
        return -1;
    if (mutf7_decode(in, len, out, outcap) == 0)
        return 0;
    snprintf(out, outcap, "%.*s", (int)len, in);
    return -1;
}

unsigned imp_special_use_by_name(const char *name)
{
    static const struct {
        const char *name;
        unsigned use;
    } map[] = {
        {"Sent", STORAGE_SPECIAL_SENT},
        {"Sent Items", STORAGE_SPECIAL_SENT},
        {"Sent Messages", STORAGE_SPECIAL_SENT},
        {"Drafts", STORAGE_SPECIAL_DRAFTS},
        {"Trash", STORAGE_SPECIAL_TRASH},
        {"Deleted Items", STORAGE_SPECIAL_TRASH},
        {"Deleted Messages", STORAGE_SPECIAL_TRASH},
        {"Junk", STORAGE_SPECIAL_JUNK},
        {"Spam", STORAGE_SPECIAL_JUNK},
        {"Archive", STORAGE_SPECIAL_ARCHIVE},
        {"Archives", STORAGE_SPECIAL_ARCHIVE},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcasecmp(name, map[i].name) == 0)
            return map[i].use;
    return 0;
}

/* ---- dispatch ---- */

static const struct {
    const char *option;
    int (*run)(const struct conf *c, int argc, char **argv);
} sources[] = {
    {"--from-dovecot-maildir", ctl_import_dovecot},
    {"--from-mbox", ctl_import_mbox},
    {"--from-imap", ctl_import_imap},
};

int ctl_import_main(const struct conf *c, int argc, char **argv)
{
    if (argc >= 2)
        for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++)
            if (strcmp(argv[1], sources[i].option) == 0)
                return sources[i].run(c, argc - 1, argv + 1);
    fprintf(stderr, "coffrectl: import needs a source\nusage:\n");
    ctl_import_usage(stderr);
    return CTL_EXIT_USAGE;
}
