/* coffrectl import --from-mbox FILE... ADDRESS [--folder NAME]
 * [--mbox-format F]: each file into the folder NAME, or the folder named
 * after the file ("inbox" and "mbox": INBOX). The format is detected
 * (mboxcl2 when Content-Length frames every message, else mboxrd) or
 * given. The mailer's Status, X-Status and X-Keywords headers become
 * flags and keywords and are removed from the stored message, with X-UID,
 * X-IMAP, X-IMAPbase (and Content-Length in mboxcl2): they are the mbox's
 * bookkeeping, not part of the message as it was received, and the
 * servers that kept the mbox (UW-IMAP, Dovecot) hid them from IMAP
 * clients, so the message keeps the bytes and size clients saw. The From_
 * line's date is the internal date. A file's messages take the UIDs base
 * + position, base fixed at its first import (storage_import_base), so a
 * rerun skips every message already imported and adds those appended to
 * the file since. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"
#include "server/ctl.h"
#include "server/ctl_import.h"
#include "server/mbox.h"

#define MBOX_FILES_MAX 1024

struct mfile_ctx {
    struct imp_run *r;
    struct storage_user *u;
    struct storage_mbox mb;
    enum mbox_format fmt;
    uint32_t base, pos;
    struct imp_batch *b;
    /* the batch's messages and their keywords */
    char *data[IMP_BATCH];
    struct mbox_meta meta[IMP_BATCH];
    const char *kwp[IMP_BATCH][MBOX_KEYWORDS_MAX];
    int stop;
};

static void flush(struct mfile_ctx *c)
{
    imp_batch_flush(c->r, c->u, c->mb.id, c->b);
    for (size_t i = 0; i < IMP_BATCH; i++) {
        free(c->data[i]);
        c->data[i] = NULL;
    }
}

static int on_message(void *arg, const struct mbox_msg *msg)
{
    struct mfile_ctx *c = arg;
    struct imp_batch *b = c->b;
    struct storage_import_msg *m;
    size_t i = b->n, len;
    uint64_t uid = (uint64_t)c->base + c->pos++;

    if (uid >= UINT32_MAX) {
        imp_fail(c->r, b->mailbox, 0, NULL, "no UID left in the mailbox");
        return 0;
    }
    m = &b->m[i];
    memset(m, 0, sizeof(*m));
    if (mbox_message(msg, c->fmt, &c->data[i], &len, &c->meta[i]) != 0) {
        fprintf(stderr, "coffrectl: out of memory\n");
        c->stop = 1;
        return 1;
    }
    m->uid = (uint32_t)uid;
    m->flags = c->meta[i].flags;
    for (size_t k = 0; k < c->meta[i].nkeywords; k++)
        c->kwp[i][k] = c->meta[i].keywords[k];
    m->keywords = c->kwp[i];
    m->nkeywords = c->meta[i].nkeywords;
    m->internal_date = mbox_from_date(msg->from, msg->from_len);
    m->data = c->data[i];
    m->len = len;
    c->r->total++;
    if (++b->n == IMP_BATCH)
        flush(c);
    return 0;
}

static int count_one(void *arg, const struct mbox_msg *m)
{
    (void)m;
    ++*(size_t *)arg;
    return 0;
}

/* The folder of a file when --folder is not given: its name less an
 * .mbox/.mbx ending; "inbox" and "mbox" are INBOX. */
static void folder_of(const char *file, char *out, size_t cap)
{
    char tmp[4096], *base, *dot;

    snprintf(tmp, sizeof(tmp), "%s", file);
    base = basename(tmp);
    dot = strrchr(base, '.');
    if (dot && (!strcasecmp(dot, ".mbox") || !strcasecmp(dot, ".mbx")))
        *dot = '\0';
    if (!strcasecmp(base, "inbox") || !strcasecmp(base, "mbox") || !*base)
        snprintf(out, cap, "INBOX");
    else
        snprintf(out, cap, "%s", base);
}

static int import_file(struct imp_run *r, struct storage_user *u, const char *file,
                       const char *folder, enum mbox_format fmt, struct mfile_ctx *c)
{
    char name[STORAGE_MBOX_NAME_MAX + 1], real[4096], source[4200];
    struct stat sb;
    void *map = NULL;
    int fd, rc;

    if (folder)
        snprintf(name, sizeof(name), "%s", folder);
    else
        folder_of(file, name, sizeof(name));
    if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "coffrectl: %s: %s\n", file, fd < 0 ? strerror(errno) : "not a file");
        if (fd >= 0)
            close(fd);
        r->errors++;
        return 0;
    }
    if (sb.st_size > 0 &&
        (map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
        fprintf(stderr, "coffrectl: %s: %s\n", file, strerror(errno));
        close(fd);
        r->errors++;
        return 0;
    }
    close(fd);
    if (imp_mailbox(r, u, name, 0, imp_special_use_by_name(name), &c->mb) != 0)
        goto out;
    c->r = r;
    c->u = u;
    c->pos = 0;
    c->fmt = fmt == MBOX_AUTO && map ? mbox_detect(map, (size_t)sb.st_size) : fmt;
    /* the file is known by its real path; its messages' UIDs are kept for
     * them first (mail delivered meanwhile takes UIDs above) */
    if (!realpath(file, real))
        snprintf(real, sizeof(real), "%s", file);
    snprintf(source, sizeof(source), "mbox:%s", real);
    {
        size_t count = 0;
        if (map)
            mbox_split(map, (size_t)sb.st_size, c->fmt, count_one, &count);
        if ((rc = storage_import_base(u, c->mb.id, source, count, &c->base)) != 0) {
            fprintf(stderr, "coffrectl: %s: %s: %s\n", r->user, name, storage_strerror(rc));
            r->errors++;
            goto out;
        }
    }
    c->b->mailbox = name;
    c->b->n = 0;
    if (map)
        mbox_split(map, (size_t)sb.st_size, c->fmt, on_message, c);
    flush(c);
    imp_progress(r, false);
out:
    if (map)
        munmap(map, (size_t)sb.st_size);
    return c->stop ? -1 : 0;
}

int ctl_import_mbox(const struct conf *conf, int argc, char **argv)
{
    const char *files[MBOX_FILES_MAX], *folder = NULL, *address;
    enum mbox_format fmt = MBOX_AUTO;
    char norm[AUTH_ADDR_MAX];
    struct storage_user *u;
    struct mfile_ctx *c;
    struct imp_run r;
    size_t nfiles = 0;
    int64_t id;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--folder") && i + 1 < argc) {
            folder = argv[++i];
        } else if (!strcmp(argv[i], "--mbox-format") && i + 1 < argc) {
            const char *f = argv[++i];
            if (!strcmp(f, "auto"))
                fmt = MBOX_AUTO;
            else if (!strcmp(f, "mboxrd"))
                fmt = MBOX_RD;
            else if (!strcmp(f, "mboxo"))
                fmt = MBOX_O;
            else if (!strcmp(f, "mboxcl2"))
                fmt = MBOX_CL2;
            else {
                fprintf(stderr, "coffrectl: unknown mbox format %s\n", f);
                return CTL_EXIT_USAGE;
            }
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "coffrectl: unknown option %s\nusage:\n", argv[i]);
            ctl_import_usage(stderr);
            return CTL_EXIT_USAGE;
        } else if (nfiles < MBOX_FILES_MAX) {
            files[nfiles++] = argv[i];
        } else {
            fprintf(stderr, "coffrectl: more than %d files\n", MBOX_FILES_MAX);
            return CTL_EXIT_USAGE;
        }
    }
    if (nfiles < 2) {
        fprintf(stderr, "coffrectl: import --from-mbox needs FILE... and ADDRESS\nusage:\n");
        ctl_import_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    address = files[--nfiles];
    if (folder && storage_name_check(folder, NULL, 0) != 0) {
        fprintf(stderr, "coffrectl: folder name refused: %s\n", folder);
        return CTL_EXIT_USAGE;
    }
    imp_run_init(&r, conf);
    if ((rc = imp_account(&r, address, &id, norm, sizeof(norm))) != CTL_EXIT_OK)
        return rc;
    r.user = address;
    if ((rc = storage_open(conf->data_dir, id, &u)) != 0) {
        fprintf(stderr, "coffrectl: %s: cannot open the store: %s\n", address,
                storage_strerror(rc));
        return CTL_EXIT_SYSTEM;
    }
    if (!(c = calloc(1, sizeof(*c))) || !(c->b = calloc(1, sizeof(*c->b)))) {
        free(c);
        storage_close(u);
        return CTL_EXIT_SYSTEM;
    }
    for (size_t i = 0; i < nfiles; i++)
        if (import_file(&r, u, files[i], folder, fmt, c) != 0)
            break;
    free(c->b);
    free(c);
    storage_close(u);
    imp_progress(&r, true);
    return imp_summary(&r);
}
