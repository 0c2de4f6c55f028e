/* coffrectl user export ADDRESS --mbox FILE [--folder NAME]: a user's mail
 * as one mboxrd file, for their own archive or another program.
 *
 * Format (mboxrd): each message starts with a From_ line, "From SENDER
 * DATE" where SENDER is the envelope sender as delivery recorded it (the
 * message's first Return-Path header; MAILER-DAEMON when it is empty or
 * absent) and DATE the internal date in asctime form (UTC); lines end in
 * LF (the CR of each CRLF dropped); every line of the message matching
 * ^>*From  gets one more '>' (mboxrd, reversible: a reader removes one);
 * a blank line ends each message. The flags are written as headers, added
 * at the end of the header block, in the forms mutt, Dovecot and
 * Thunderbird read: Status: (R for \Seen, O always), X-Status: (A
 * \Answered, F \Flagged, T \Draft, D \Deleted) and X-Keywords: (the
 * keywords, space separated); headers of those names already in the
 * message are left out, so that the flags read back are the index's. When
 * every folder is exported, each message also carries X-Folder: NAME. The
 * file is written beside FILE and renamed over it once complete and
 * fsync'd; an existing FILE is refused. */
#include "auth/auth.h"
#include "server/base/config.h"
#include "server/ctl.h"
#include "storage/storage.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SENDER_MAX 512

struct names {
    char **v;
    size_t n, cap;
};

static int on_mbox(void *arg, const struct storage_mbox *m)
{
    struct names *l = arg;

    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        char **p = realloc(l->v, nc * sizeof(*p));
        if (!p)
            return -1;
        l->v = p;
        l->cap = nc;
    }
    if (!(l->v[l->n] = strdup(m->name)))
        return -1;
    l->n++;
    return 0;
}

struct emsg {
    uint32_t uid;
    unsigned flags;
    int64_t internal_date;
    char *keywords;
};

struct emsgs {
    struct emsg *v;
    size_t n, cap;
};

static int on_msg(void *arg, const struct storage_msg *m)
{
    struct emsgs *l = arg;

    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 256;
        struct emsg *p = realloc(l->v, nc * sizeof(*p));
        if (!p)
            return -1;
        l->v = p;
        l->cap = nc;
    }
    l->v[l->n].uid = m->uid;
    l->v[l->n].flags = m->flags;
    l->v[l->n].internal_date = m->internal_date;
    if (!(l->v[l->n].keywords = strdup(m->keywords ? m->keywords : "")))
        return -1;
    l->n++;
    return 0;
}

static bool header_is(const char *line, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n && line[n] == ':' && !strncasecmp(line, name, n);
}

/* The envelope sender from the message's first Return-Path header. */
static void sender_of(const char *msg, size_t len, char *out, size_t cap)
{
    size_t i = 0;

    snprintf(out, cap, "MAILER-DAEMON");
    while (i < len) {
        const char *line = msg + i, *eol = memchr(line, '\n', len - i);
        size_t ll = eol ? (size_t)(eol - line) : len - i;
        if (ll == 0 || (ll == 1 && line[0] == '\r'))
            return; /* end of the header */
        if (header_is(line, ll, "Return-Path")) {
            const char *lt = memchr(line, '<', ll), *gt;
            size_t n;
            if (!lt || !(gt = memchr(lt, '>', ll - (size_t)(lt - line))))
                return;
            n = (size_t)(gt - lt - 1);
            if (n == 0 || n >= cap)
                return;
            for (size_t k = 0; k < n; k++)
                if ((unsigned char)lt[1 + k] <= ' ' || lt[1 + k] == 0x7f)
                    return;
            memcpy(out, lt + 1, n);
            out[n] = '\0';
            return;
        }
        i += ll + 1;
    }
}

/* Writes one message (msg, len bytes as stored) with its From_ line, flag
 * headers and mboxrd quoting. */
static int write_msg(FILE *f, const char *msg, size_t len, const struct emsg *m, const char *folder)
{
    char sender[SENDER_MAX], date[64], status[4], xstatus[8];
    time_t t = (time_t)m->internal_date;
    struct tm tm;
    bool in_header = true, skipping = false;
    size_t i = 0, k = 0;

    sender_of(msg, len, sender, sizeof(sender));
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
    fprintf(f, "From %s %s\n", sender, date);

    if (m->flags & STORAGE_FLAG_SEEN)
        status[k++] = 'R';
    status[k++] = 'O';
    status[k] = '\0';
    k = 0;
    if (m->flags & STORAGE_FLAG_ANSWERED)
        xstatus[k++] = 'A';
    if (m->flags & STORAGE_FLAG_FLAGGED)
        xstatus[k++] = 'F';
    if (m->flags & STORAGE_FLAG_DRAFT)
        xstatus[k++] = 'T';
    if (m->flags & STORAGE_FLAG_DELETED)
        xstatus[k++] = 'D';
    xstatus[k] = '\0';

    while (i < len || in_header) {
        const char *line = msg + i, *eol = i < len ? memchr(line, '\n', len - i) : NULL;
        size_t ll = i < len ? (eol ? (size_t)(eol - line) : len - i) : 0;
        size_t next = eol ? i + ll + 1 : len;
        size_t q;

        if (ll && line[ll - 1] == '\r')
            ll--;
        if (in_header && (ll == 0 || i >= len)) {
            /* the end of the header: the flags, then the blank line */
            fprintf(f, "Status: %s\n", status);
            if (xstatus[0])
                fprintf(f, "X-Status: %s\n", xstatus);
            if (m->keywords[0])
                fprintf(f, "X-Keywords: %s\n", m->keywords);
            if (folder)
                fprintf(f, "X-Folder: %s\n", folder);
            fputc('\n', f);
            in_header = false;
            if (i >= len)
                break;
            i = next;
            continue;
        }
        if (in_header) {
            if (line[0] == ' ' || line[0] == '\t') {
                if (skipping) {
                    i = next;
                    continue;
                }
            } else {
                skipping = header_is(line, ll, "Status") || header_is(line, ll, "X-Status") ||
                           header_is(line, ll, "X-Keywords") ||
                           (folder && header_is(line, ll, "X-Folder"));
                if (skipping) {
                    i = next;
                    continue;
                }
            }
        }
        for (q = 0; q < ll && line[q] == '>'; q++)
            ;
        if (ll - q >= 5 && !memcmp(line + q, "From ", 5))
            fputc('>', f);
        fwrite(line, 1, ll, f);
        fputc('\n', f);
        i = next;
    }
    fputc('\n', f);
    return ferror(f) ? -1 : 0;
}

static int export_mailbox(struct storage_user *u, const char *name, bool tag, FILE *f,
                          uint64_t *count)
{
    struct storage_mbox mb;
    struct emsgs l = {0};
    char *buf = NULL;
    size_t cap = 0;
    int rc;

    if ((rc = storage_mbox_get(u, name, &mb)) != 0)
        return rc;
    if ((rc = storage_fetch(u, mb.id, NULL, 0, on_msg, &l)) != 0)
        goto out;
    for (size_t i = 0; i < l.n && rc == 0; i++) {
        uint64_t size, got = 0;
        int fd;
        rc = storage_msg_open(u, mb.id, l.v[i].uid, &fd, &size);
        if (rc == STORAGE_E_NOMSG) { /* expunged meanwhile */
            rc = 0;
            continue;
        }
        if (rc)
            break;
        if (size + 1 > cap) {
            char *p = realloc(buf, size + 1);
            if (!p) {
                close(fd);
                rc = STORAGE_E_NOMEM;
                break;
            }
            buf = p;
            cap = size + 1;
        }
        while (got < size) {
            ssize_t r = pread(fd, buf + got, size - got, (off_t)got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (uint64_t)r;
        }
        close(fd);
        if (got != size) {
            rc = STORAGE_E_TEMP;
            break;
        }
        if (write_msg(f, buf, size, &l.v[i], tag ? name : NULL) < 0) {
            rc = STORAGE_E_TEMP;
            break;
        }
        (*count)++;
    }
out:
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i].keywords);
    free(l.v);
    free(buf);
    return rc;
}

int ctl_user_export(const struct conf *c, int argc, char **argv)
{
    const char *addr = NULL, *file = NULL, *folder = NULL;
    char tmp[4096];
    struct auth_account acct;
    struct storage_user *u;
    struct names names = {0};
    struct stat sb;
    uint64_t count = 0;
    FILE *f;
    int rc, fd;

    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--mbox") && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(argv[i], "--folder") && i + 1 < argc)
            folder = argv[++i];
        else if (argv[i][0] != '-' && !addr)
            addr = argv[i];
        else {
            fprintf(stderr, "coffrectl: usage: user export ADDRESS --mbox FILE [--folder NAME]\n");
            return CTL_EXIT_USAGE;
        }
    }
    if (!addr || !file) {
        fprintf(stderr, "coffrectl: usage: user export ADDRESS --mbox FILE [--folder NAME]\n");
        return CTL_EXIT_USAGE;
    }
    if (stat(file, &sb) == 0) {
        fprintf(stderr, "coffrectl: %s exists; not overwritten\n", file);
        return CTL_EXIT_USAGE;
    }
    if ((rc = ctl_account_lookup(c, addr, &acct)) != CTL_EXIT_OK)
        return rc;
    if ((rc = storage_open(c->data_dir, acct.id, &u)) != 0) {
        fprintf(stderr, "coffrectl: %s: %s\n", acct.address,
                rc == STORAGE_E_NOMBOX ? "no mail yet" : storage_strerror(rc));
        return rc == STORAGE_E_NOMBOX ? CTL_EXIT_NOUSER : CTL_EXIT_SYSTEM;
    }
    if (folder)
        rc = on_mbox(&names, &(struct storage_mbox){0}) ? STORAGE_E_NOMEM : 0;
    else
        rc = storage_mbox_list(u, "*", false, NULL, on_mbox, &names);
    if (rc == 0 && folder) {
        free(names.v[0]);
        if (!(names.v[0] = strdup(folder)))
            rc = STORAGE_E_NOMEM;
    }
    if (rc) {
        fprintf(stderr, "coffrectl: %s: %s\n", acct.address, storage_strerror(rc));
        storage_close(u);
        return CTL_EXIT_SYSTEM;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp-%d", file, (int)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || !(f = fdopen(fd, "w"))) {
        fprintf(stderr, "coffrectl: cannot write %s: %s\n", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        rc = STORAGE_E_TEMP;
        goto out;
    }
    for (size_t i = 0; i < names.n && rc == 0; i++) {
        rc = export_mailbox(u, names.v[i], folder == NULL, f, &count);
        if (rc == STORAGE_E_NOMBOX && folder)
            fprintf(stderr, "coffrectl: %s: no folder %s\n", acct.address, folder);
        else if (rc)
            fprintf(stderr, "coffrectl: %s: %s: %s\n", acct.address, names.v[i],
                    storage_strerror(rc));
    }
    if (rc == 0 && (fflush(f) != 0 || fsync(fileno(f)) < 0)) {
        fprintf(stderr, "coffrectl: cannot write %s: %s\n", tmp, strerror(errno));
        rc = STORAGE_E_TEMP;
    }
    if (fclose(f) != 0 && rc == 0)
        rc = STORAGE_E_TEMP;
    if (rc == 0 && rename(tmp, file) < 0) {
        fprintf(stderr, "coffrectl: cannot rename %s: %s\n", tmp, strerror(errno));
        rc = STORAGE_E_TEMP;
    }
    if (rc)
        unlink(tmp);
    else
        printf("%s: %" PRIu64 " message(s) from %zu folder(s) written to %s\n", acct.address, count,
               names.n, file);
out:
    for (size_t i = 0; i < names.n; i++)
        free(names.v[i]);
    free(names.v);
    storage_close(u);
    if (rc == STORAGE_E_NOMBOX)
        return CTL_EXIT_NOUSER;
    return rc ? CTL_EXIT_SYSTEM : CTL_EXIT_OK;
}
