/* coffrectl import --from-dovecot-maildir: a Maildir++ tree as Dovecot
 * keeps it. INBOX is the root, folder "A/B" the directory ".A.B" (each
 * component in modified UTF-7); in each folder dovecot-uidlist gives
 * UIDVALIDITY, the next UID and the UID of each file (matched by the base
 * of its name, up to the first ',' or ':'), dovecot-keywords the names of
 * the keyword letters a-z of the file names; the letters after ":2," give
 * \Seen (S), \Answered (R), \Flagged (F), \Deleted (T), \Draft (D); the
 * file's mtime is the internal date; files compressed by Dovecot's zlib
 * plugin (gzip or zlib) are inflated. Files the uidlist does not know yet
 * (delivered into new/ since Dovecot last looked) get the next UIDs, in
 * name order (which is arrival order). The subscriptions come from the
 * root's "subscriptions" file (version 2: a "V\t2" line, an empty line,
 * then one name a line with TAB between levels; version 1: one name a
 * line). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"
#include "server/ctl.h"
#include "server/ctl_import.h"

#define DOVECOT_KEYWORDS 26 /* letters a-z */
#define FOLDERS_MAX 100000
#define PATH_MAX_LEN 4096

/* ---- small helpers ---- */

/* snprintf into a path buffer: -1 (and "") when it does not fit, so that
 * a truncated path never names another file. */
__attribute__((format(printf, 3, 4))) static int pathj(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}

/* The whole of a (small) file, NUL-terminated; NULL when unreadable. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;

    if (!f)
        return NULL;
    for (;;) {
        size_t r;
        if (cap - n < 65536) {
            char *nb = realloc(buf, cap + 65536 + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap += 65536;
        }
        r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* The base of a Maildir file name: up to the first ',' or ':'. */
static size_t base_len(const char *name)
{
    return strcspn(name, ",:");
}

static uint64_t hash_base(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* ---- dovecot-uidlist ---- */

struct uident {
    const char *base; /* into the file's text */
    size_t len;
    uint32_t uid;
};

struct uidlist {
    char *text;
    uint32_t uidvalidity, nextuid;
    struct uident *slots; /* open addressing, nslots a power of two */
    size_t nslots, n;
};

static void uidlist_put(struct uidlist *l, const char *base, size_t len, uint32_t uid)
{
    size_t i = (size_t)hash_base(base, len) & (l->nslots - 1);
    while (l->slots[i].base) {
        if (l->slots[i].len == len && !memcmp(l->slots[i].base, base, len))
            return; /* the first record of a base wins */
        i = (i + 1) & (l->nslots - 1);
    }
    l->slots[i] = (struct uident){base, len, uid};
    l->n++;
    if (uid >= l->nextuid && uid < UINT32_MAX)
        l->nextuid = uid + 1;
}

static uint32_t uidlist_get(const struct uidlist *l, const char *base, size_t len)
{
    if (!l->nslots)
        return 0;
    for (size_t i = (size_t)hash_base(base, len) & (l->nslots - 1); l->slots[i].base;
         i = (i + 1) & (l->nslots - 1))
        if (l->slots[i].len == len && !memcmp(l->slots[i].base, base, len))
            return l->slots[i].uid;
    return 0;
}

static uint32_t parse_u32(const char *p, const char **end)
{
    unsigned long long v = 0;
    const char *q = p;
    while (*q >= '0' && *q <= '9' && v <= UINT32_MAX)
        v = v * 10 + (unsigned)(*q++ - '0');
    if (end)
        *end = q;
    return q == p || v > UINT32_MAX ? 0 : (uint32_t)v;
}

/* Reads dir/dovecot-uidlist (versions 1 and 3): 0, 1 when there is none,
 * -1 when it is unreadable. */
static int uidlist_read(const char *dir, struct uidlist *l)
{
    char path[PATH_MAX_LEN];
    size_t len, lines = 0;
    char *p, *nl;
    int version;

    memset(l, 0, sizeof(*l));
    pathj(path, sizeof(path), "%s/dovecot-uidlist", dir);
    if (!(l->text = slurp(path, &len)))
        return errno == ENOENT ? 1 : -1;
    for (p = l->text; (p = memchr(p, '\n', (size_t)(l->text + len - p))) != NULL; p++)
        lines++;
    l->nslots = 16;
    while (l->nslots < 2 * lines + 2)
        l->nslots *= 2;
    if (!(l->slots = calloc(l->nslots, sizeof(*l->slots))))
        return -1;
    p = l->text;
    nl = strchr(p, '\n');
    if (!nl)
        return -1;
    *nl = '\0';
    version = (int)parse_u32(p, (const char **)&p);
    if (version == 1) {
        l->uidvalidity = parse_u32(p + strspn(p, " "), (const char **)&p);
        l->nextuid = parse_u32(p + strspn(p, " "), NULL);
    } else if (version == 3) {
        for (char *t = strtok(p, " "); t; t = strtok(NULL, " ")) {
            if (t[0] == 'V')
                l->uidvalidity = parse_u32(t + 1, NULL);
            else if (t[0] == 'N')
                l->nextuid = parse_u32(t + 1, NULL);
        }
    } else {
        return -1;
    }
    if (!l->nextuid)
        l->nextuid = 1;
    for (char *end = l->text + len, *next; (p = nl + 1) < end; nl = next) {
        const char *q, *name;
        uint32_t uid;
        if (!(next = memchr(p, '\n', (size_t)(end - p))))
            next = end;
        *next = '\0';
        uid = parse_u32(p, &q);
        if (uid) {
            if (version == 3) {
                /* "<uid> [<key><value> ...] :<file name>" */
                name = strstr(q, " :");
                name = name ? name + 2 : NULL;
            } else {
                name = q + strspn(q, " ");
            }
            if (name && *name)
                uidlist_put(l, name, base_len(name), uid);
        }
        if (next == end)
            break;
    }
    return 0;
}

static void uidlist_free(struct uidlist *l)
{
    free(l->text);
    free(l->slots);
}

/* ---- dovecot-keywords ---- */

struct keywords {
    char *text;
    const char *name[DOVECOT_KEYWORDS];
};

static void keywords_read(const char *dir, struct keywords *k)
{
    char path[PATH_MAX_LEN];

    memset(k, 0, sizeof(*k));
    pathj(path, sizeof(path), "%s/dovecot-keywords", dir);
    if (!(k->text = slurp(path, NULL)))
        return;
    for (char *save = NULL, *line = strtok_r(k->text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        const char *q;
        unsigned idx;
        if (*line < '0' || *line > '9')
            continue;
        idx = parse_u32(line, &q);
        if (*line == '0' && q == line + 1)
            idx = 0;
        else if (!idx)
            continue;
        if (idx < DOVECOT_KEYWORDS && *q == ' ' && q[1])
            k->name[idx] = q + 1;
    }
}

/* ---- one folder ---- */

struct dfile {
    char *name; /* cur/... or new/... */
    uint32_t uid;
};

static int dfile_cmp_uid(const void *a, const void *b)
{
    const struct dfile *x = a, *y = b;
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static int dfile_cmp_name(const void *a, const void *b)
{
    const struct dfile *x = a, *y = b;
    /* "new/" or "cur/" first, then the name */
    return strcmp(x->name + 4, y->name + 4);
}

struct folder {
    char name[STORAGE_MBOX_NAME_MAX + 1];
    char dir[PATH_MAX_LEN];
    struct dfile *files;
    size_t n, cap;
};

static int folder_list_files(struct folder *f)
{
    static const char *const subs[] = {"cur", "new"};

    for (size_t s = 0; s < 2; s++) {
        char path[PATH_MAX_LEN];
        struct dirent *de;
        DIR *d;
        pathj(path, sizeof(path), "%s/%s", f->dir, subs[s]);
        if (!(d = opendir(path))) {
            if (errno == ENOENT)
                continue;
            return -1;
        }
        while ((de = readdir(d)) != NULL) {
            char *name;
            if (de->d_name[0] == '.')
                continue;
            if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
                continue;
            if (f->n == f->cap) {
                size_t nc = f->cap ? f->cap * 2 : 256;
                struct dfile *nf = realloc(f->files, nc * sizeof(*nf));
                if (!nf) {
                    closedir(d);
                    return -1;
                }
                f->files = nf;
                f->cap = nc;
            }
            size_t nl = strlen(de->d_name);
            if (!(name = malloc(nl + 5))) {
                closedir(d);
                return -1;
            }
            memcpy(name, subs[s], 3);
            name[3] = '/';
            memcpy(name + 4, de->d_name, nl + 1);
            f->files[f->n++] = (struct dfile){name, 0};
        }
        closedir(d);
    }
    return 0;
}

static void folder_free(struct folder *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->files[i].name);
    free(f->files);
    f->files = NULL;
    f->n = f->cap = 0;
}

/* Flags and keywords of a file name's ":2," part. */
static void name_flags(const char *name, const struct keywords *k, unsigned *flags, const char **kw,
                       size_t *nkw)
{
    const char *info = strstr(name, ":2,");

    *flags = 0;
    *nkw = 0;
    if (!info)
        return;
    for (const char *p = info + 3; *p && *p != ','; p++) {
        switch (*p) {
        case 'S':
            *flags |= STORAGE_FLAG_SEEN;
            break;
        case 'R':
            *flags |= STORAGE_FLAG_ANSWERED;
            break;
        case 'F':
            *flags |= STORAGE_FLAG_FLAGGED;
            break;
        case 'T':
            *flags |= STORAGE_FLAG_DELETED;
            break;
        case 'D':
            *flags |= STORAGE_FLAG_DRAFT;
            break;
        default:
            if (*p >= 'a' && *p <= 'z' && k->name[*p - 'a'] && *nkw < DOVECOT_KEYWORDS)
                kw[(*nkw)++] = k->name[*p - 'a'];
            break;
        }
    }
}

/* Imports one folder: the numbers of the source, then its files in UID
 * order in batches. */
static void import_folder(struct imp_run *r, struct storage_user *u, struct folder *f,
                          struct imp_pipe *p)
{
    /* keywords of each message of the two batches: pointers into k */
    static const char *kwv[2][IMP_BATCH][DOVECOT_KEYWORDS];
    static char paths[2][IMP_BATCH][PATH_MAX_LEN];
    struct imp_batch *b;
    struct storage_mbox mb;
    struct uidlist l;
    struct keywords k;
    size_t known = 0;
    uint32_t next;
    int rc = uidlist_read(f->dir, &l);

    if (rc < 0) {
        fprintf(stderr, "coffrectl: %s: %s: dovecot-uidlist unreadable: folder skipped\n", r->user,
                f->name);
        r->errors++;
        r->done += f->n;
        uidlist_free(&l);
        return;
    }
    keywords_read(f->dir, &k);
    if (imp_mailbox(r, u, f->name, l.uidvalidity, imp_special_use_by_name(f->name), &mb) != 0) {
        r->done += f->n;
        goto out;
    }
    /* known files in UID order, then the others in arrival order */
    for (size_t i = 0; i < f->n; i++) {
        const char *nm = f->files[i].name + 4;
        f->files[i].uid = uidlist_get(&l, nm, base_len(nm));
    }
    for (size_t i = 0; i < f->n; i++) {
        if (f->files[i].uid) {
            struct dfile t = f->files[known];
            f->files[known++] = f->files[i];
            f->files[i] = t;
        }
    }
    qsort(f->files, known, sizeof(*f->files), dfile_cmp_uid);
    qsort(f->files + known, f->n - known, sizeof(*f->files), dfile_cmp_name);
    next = l.nextuid;
    for (size_t i = known; i < f->n; i++) {
        /* the same base in new/ and cur/ (renamed while we listed) */
        const char *nm = f->files[i].name + 4;
        bool dup = false;
        for (size_t j = i; j-- > known && !dup;)
            dup = base_len(f->files[j].name + 4) == base_len(nm) &&
                  !strncmp(f->files[j].name + 4, nm, base_len(nm));
        f->files[i].uid = dup || next == UINT32_MAX ? 0 : next++;
    }
    /* UIDNEXT first: the source's UIDs are kept for the import, mail
     * delivered meanwhile takes UIDs above them */
    if ((rc = storage_import_uidnext(u, mb.id, next)) != 0) {
        fprintf(stderr, "coffrectl: %s: %s: UIDNEXT: %s\n", r->user, f->name, storage_strerror(rc));
        r->errors++;
        r->done += f->n;
        goto out;
    }
    p->b[0].mailbox = p->b[1].mailbox = f->name;
    for (size_t i = 0; i < f->n; i++) {
        struct dfile *df = &f->files[i];
        struct storage_import_msg *m;
        if (!df->uid || (i > 0 && i < known && df->uid == f->files[i - 1].uid)) {
            imp_fail(r, f->name, df->uid, df->name, "the same message twice in the folder");
            continue;
        }
        b = &p->b[p->cur];
        m = &b->m[b->n];
        memset(m, 0, sizeof(*m));
        pathj(paths[p->cur][b->n], sizeof(paths[0][0]), "%s/%s", f->dir, df->name);
        m->uid = df->uid;
        m->path = paths[p->cur][b->n];
        m->decompress = true;
        name_flags(df->name, &k, &m->flags, kwv[p->cur][b->n], &m->nkeywords);
        m->keywords = kwv[p->cur][b->n];
        if (++b->n == IMP_BATCH)
            imp_pipe_flush(r, u, mb.id, p);
    }
    imp_pipe_flush(r, u, mb.id, p);
    /* k and the folder's names are freed below */
    imp_pipe_wait(r, p);
    /* no UID the source handed out is handed out again */
    if ((rc = storage_import_uidnext(u, mb.id, next)) != 0) {
        fprintf(stderr, "coffrectl: %s: %s: UIDNEXT: %s\n", r->user, f->name, storage_strerror(rc));
        r->errors++;
    }
out:
    uidlist_free(&l);
    free(k.text);
}

/* ---- the tree ---- */

/* The mailbox name of a Maildir++ directory ".A.B" (without the dot):
 * each component decoded from modified UTF-7. -1 when it is not one. */
static int dir_name(const char *d, char *out, size_t cap)
{
    size_t o = 0;

    while (*d) {
        size_t n = strcspn(d, ".");
        char comp[STORAGE_MBOX_NAME_MAX + 1];
        if (n == 0 || n >= sizeof(comp))
            return -1;
        (void)imp_mutf7_decode(d, n, comp, sizeof(comp));
        if (o + strlen(comp) + 2 > cap)
            return -1;
        if (o)
            out[o++] = '/';
        memcpy(out + o, comp, strlen(comp));
        o += strlen(comp);
        d += n;
        if (*d == '.')
            d++;
    }
    out[o] = '\0';
    return o ? 0 : -1;
}

static int is_maildir(const char *dir)
{
    char p[PATH_MAX_LEN];
    struct stat sb;
    pathj(p, sizeof(p), "%s/cur", dir);
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Names (a growable list). */
struct namelist {
    char (*v)[STORAGE_MBOX_NAME_MAX + 1];
    size_t n, cap;
};

static int namelist_add(struct namelist *l, const char *name)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        void *nv = realloc(l->v, nc * sizeof(*l->v));
        if (!nv)
            return -1;
        l->v = nv;
        l->cap = nc;
    }
    snprintf(l->v[l->n++], sizeof(l->v[0]), "%s", name);
    return 0;
}

static bool namelist_has(const struct namelist *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], name) || (!strcasecmp(name, "INBOX") && !strcasecmp(l->v[i], name)))
            return true;
    return false;
}

static int on_subscribed(void *arg, const struct storage_mbox *m)
{
    return namelist_add(arg, m->name) ? 1 : 0;
}

/* The subscriptions of the tree at root become u's: the source's names
 * subscribed, the others (coffre's defaults of a new account)
 * unsubscribed. Nothing changes when the source has no subscriptions
 * file. */
static void import_subscriptions(struct imp_run *r, struct storage_user *u, const char *root)
{
    struct namelist src = {0}, cur = {0};
    char path[PATH_MAX_LEN], *text, *p;
    bool v2;
    int rc;

    pathj(path, sizeof(path), "%s/subscriptions", root);
    if (!(text = slurp(path, NULL)))
        return;
    v2 = !strncmp(text, "V\t2\n", 4);
    p = v2 ? text + 4 : text;
    for (char *save = NULL, *line = strtok_r(p, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char name[STORAGE_MBOX_NAME_MAX + 1];
        size_t o = 0;
        bool ok = true;
        if (!*line)
            continue;
        /* levels: TAB (version 2), else the namespace's own separator */
        while (*line && ok) {
            size_t n = strcspn(line, v2 ? "\t" : "");
            char comp[STORAGE_MBOX_NAME_MAX + 1];
            if (n >= sizeof(comp)) {
                ok = false;
                break;
            }
            if (imp_mutf7_decode(line, n, comp, sizeof(comp)) != 0) {
                memcpy(comp, line, n);
                comp[n] = '\0';
            }
            if (o + strlen(comp) + 2 > sizeof(name)) {
                ok = false;
                break;
            }
            if (o)
                name[o++] = '/';
            memcpy(name + o, comp, strlen(comp));
            o += strlen(comp);
            line += n;
            if (*line == '\t')
                line++;
        }
        name[o] = '\0';
        if (!ok || !o || storage_name_check(name, NULL, 0) != 0)
            continue;
        if (namelist_add(&src, name) != 0)
            break;
        if ((rc = storage_subscribe(u, name, true)) != 0)
            fprintf(stderr, "coffrectl: %s: subscription %s: %s\n", r->user, name,
                    storage_strerror(rc));
    }
    free(text);
    if (storage_mbox_list(u, "*", true, NULL, on_subscribed, &cur) == 0)
        for (size_t i = 0; i < cur.n; i++)
            if (!namelist_has(&src, cur.v[i]))
                (void)storage_subscribe(u, cur.v[i], false);
    free(src.v);
    free(cur.v);
}

/* One account: every folder under root. */
static int import_tree(struct imp_run *r, const char *address, const char *root)
{
    struct folder *fs = NULL;
    size_t nf = 0, capf = 0;
    char norm[AUTH_ADDR_MAX];
    struct storage_user *u;
    struct imp_pipe *b;
    struct dirent *de;
    int64_t id;
    DIR *d;
    int rc;

    if ((rc = imp_account(r, address, &id, norm, sizeof(norm))) != CTL_EXIT_OK)
        return rc;
    r->user = address;
    if (!is_maildir(root)) {
        fprintf(stderr, "coffrectl: %s: %s is not a Maildir (no cur/)\n", address, root);
        r->errors++;
        return CTL_EXIT_OK;
    }
    if (!(d = opendir(root))) {
        fprintf(stderr, "coffrectl: %s: %s: %s\n", address, root, strerror(errno));
        r->errors++;
        return CTL_EXIT_OK;
    }
    /* INBOX first, then the folders */
    for (bool inbox = true;; inbox = false) {
        struct folder *f;
        char name[STORAGE_MBOX_NAME_MAX + 1];
        if (!inbox) {
            if (!(de = readdir(d)))
                break;
            if (de->d_name[0] != '.' || !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            if (dir_name(de->d_name + 1, name, sizeof(name)) != 0 ||
                storage_name_check(name, NULL, 0) != 0) {
                fprintf(stderr, "coffrectl: %s: folder %s: name not taken: skipped\n", address,
                        de->d_name);
                r->errors++;
                continue;
            }
        } else {
            snprintf(name, sizeof(name), "INBOX");
        }
        if (nf == capf) {
            size_t nc = capf ? capf * 2 : 16;
            struct folder *nfs = nc > FOLDERS_MAX ? NULL : realloc(fs, nc * sizeof(*fs));
            if (!nfs) {
                fprintf(stderr, "coffrectl: %s: too many folders\n", address);
                r->errors++;
                break;
            }
            fs = nfs;
            capf = nc;
        }
        f = &fs[nf];
        memset(f, 0, sizeof(*f));
        snprintf(f->name, sizeof(f->name), "%s", name);
        if (inbox)
            snprintf(f->dir, sizeof(f->dir), "%s", root);
        else
            pathj(f->dir, sizeof(f->dir), "%s/%s", root, de->d_name);
        if (!is_maildir(f->dir))
            continue;
        if (folder_list_files(f) != 0) {
            fprintf(stderr, "coffrectl: %s: %s: cannot list: %s\n", address, f->dir,
                    strerror(errno));
            folder_free(f);
            r->errors++;
            continue;
        }
        r->total += f->n;
        nf++;
    }
    closedir(d);
    if ((rc = storage_open(r->conf->data_dir, id, &u)) != 0) {
        fprintf(stderr, "coffrectl: %s: cannot open the store: %s\n", address,
                storage_strerror(rc));
        r->errors++;
        for (size_t i = 0; i < nf; i++)
            folder_free(&fs[i]);
        free(fs);
        return CTL_EXIT_OK;
    }
    if (!(b = calloc(1, sizeof(*b)))) {
        storage_close(u);
        return CTL_EXIT_SYSTEM;
    }
    for (size_t i = 0; i < nf; i++) {
        import_folder(r, u, &fs[i], b);
        folder_free(&fs[i]);
    }
    import_subscriptions(r, u, root);
    free(b);
    free(fs);
    storage_close(u);
    imp_progress(r, true);
    return CTL_EXIT_OK;
}

/* PATTERN with %u, %n, %d replaced for address; -1 when too long. */
static int expand(const char *pat, const char *address, char *out, size_t cap)
{
    const char *at = strchr(address, '@');
    size_t o = 0;

    for (const char *p = pat; *p; p++) {
        const char *v = NULL;
        size_t vl = 0;
        if (*p == '%' && (p[1] == 'u' || p[1] == 'n' || p[1] == 'd' || p[1] == '%')) {
            p++;
            if (*p == 'u') {
                v = address;
                vl = strlen(address);
            } else if (*p == 'n') {
                v = address;
                vl = at ? (size_t)(at - address) : strlen(address);
            } else if (*p == 'd') {
                v = at ? at + 1 : "";
                vl = strlen(v);
            } else {
                v = "%";
                vl = 1;
            }
        } else {
            v = p;
            vl = 1;
        }
        /* an address never climbs out of the pattern's directory */
        if (vl > 1 && (memchr(v, '/', vl) || (vl == 2 && !memcmp(v, "..", 2))))
            return -1;
        if (o + vl + 1 > cap)
            return -1;
        memcpy(out + o, v, vl);
        o += vl;
    }
    out[o] = '\0';
    return 0;
}

struct each_ctx {
    struct imp_run *r;
    const char *pattern;
    int rc;
};

static int each_account(const struct auth_account *a, void *arg)
{
    struct each_ctx *c = arg;
    char path[PATH_MAX_LEN];
    struct stat sb;

    if (expand(c->pattern, a->address, path, sizeof(path)) != 0 || stat(path, &sb) != 0)
        return 0; /* no source for this account */
    {
        char *addr = strdup(a->address);
        int rc;
        if (!addr)
            return 1;
        rc = import_tree(c->r, addr, path);
        c->r->user = NULL;
        free(addr);
        if (rc != CTL_EXIT_OK && rc != CTL_EXIT_NOUSER)
            c->rc = rc;
    }
    return 0;
}

struct names {
    char (*v)[AUTH_ADDR_MAX];
    size_t n, cap;
    bool oom;
};

static int collect_account(const struct auth_account *a, void *arg)
{
    struct names *nm = arg;
    if (nm->n == nm->cap) {
        size_t nc = nm->cap ? nm->cap * 2 : 64;
        void *nv = realloc(nm->v, nc * sizeof(*nm->v));
        if (!nv) {
            nm->oom = true;
            return 1;
        }
        nm->v = nv;
        nm->cap = nc;
    }
    snprintf(nm->v[nm->n++], sizeof(nm->v[0]), "%s", a->address);
    return 0;
}

int ctl_import_dovecot(const struct conf *c, int argc, char **argv)
{
    const char *path = NULL, *user = NULL, *users_from = NULL;
    struct imp_run r;
    int rc = CTL_EXIT_OK;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--users-from") && i + 1 < argc)
            users_from = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "coffrectl: unknown option %s\nusage:\n", argv[i]);
            ctl_import_usage(stderr);
            return CTL_EXIT_USAGE;
        } else if (!path)
            path = argv[i];
        else if (!user)
            user = argv[i];
        else {
            fprintf(stderr, "coffrectl: too many arguments\nusage:\n");
            ctl_import_usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }
    if ((!path && !users_from) || (users_from && (path || user)) ||
        (!user && !users_from && !strstr(path, "%u") && !strstr(path, "%n") &&
         !strstr(path, "%d"))) {
        fprintf(stderr, "coffrectl: import --from-dovecot-maildir needs PATH and ADDRESS, "
                        "--users-from FILE, or a pattern\nusage:\n");
        ctl_import_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    imp_run_init(&r, c);
    if (users_from) {
        /* "ADDRESS PATH" lines; PATH may use %u, %n, %d */
        char *text = slurp(users_from, NULL);
        if (!text) {
            fprintf(stderr, "coffrectl: %s: %s\n", users_from, strerror(errno));
            return CTL_EXIT_USAGE;
        }
        for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
            char *addr = line + strspn(line, " \t"), *sp, *p, full[PATH_MAX_LEN];
            if (!*addr || *addr == '#')
                continue;
            sp = addr + strcspn(addr, " \t");
            if (!*sp) {
                fprintf(stderr, "coffrectl: %s: no path for %s\n", users_from, addr);
                rc = CTL_EXIT_USAGE;
                continue;
            }
            *sp = '\0';
            p = sp + 1 + strspn(sp + 1, " \t");
            p[strcspn(p, "\r")] = '\0';
            if (expand(p, addr, full, sizeof(full)) != 0) {
                fprintf(stderr, "coffrectl: %s: path of %s refused\n", users_from, addr);
                rc = CTL_EXIT_USAGE;
                continue;
            }
            int r1 = import_tree(&r, addr, full);
            if (r1 != CTL_EXIT_OK && rc == CTL_EXIT_OK)
                rc = r1;
        }
        free(text);
    } else if (user) {
        char full[PATH_MAX_LEN];
        if (expand(path, user, full, sizeof(full)) != 0) {
            fprintf(stderr, "coffrectl: path refused for %s\n", user);
            return CTL_EXIT_USAGE;
        }
        rc = import_tree(&r, user, full);
    } else {
        /* every account whose expanded path exists */
        struct each_ctx ec = {&r, path, CTL_EXIT_OK};
        struct auth_db *db;
        char err[512];
        if ((rc = ctl_prepare_data_dir(c)) != CTL_EXIT_OK)
            return rc;
        if (auth_db_open(c->data_dir, &db, err, sizeof(err)) != AUTH_OK) {
            fprintf(stderr, "coffrectl: %s\n", err);
            return CTL_EXIT_SYSTEM;
        }
        /* the accounts first, then the imports: the database is not held */
        struct names names = {0};
        int lr = auth_user_list(db, collect_account, &names);
        auth_db_close(db);
        for (size_t i = 0; lr == AUTH_OK && i < names.n; i++) {
            struct auth_account a = {0};
            snprintf(a.address, sizeof(a.address), "%s", names.v[i]);
            each_account(&a, &ec);
        }
        free(names.v);
        rc = lr == AUTH_OK && !names.oom ? ec.rc : CTL_EXIT_SYSTEM;
    }
    if (rc != CTL_EXIT_OK && rc != CTL_EXIT_NOUSER)
        return rc;
    {
        int s = imp_summary(&r);
        return rc == CTL_EXIT_NOUSER ? rc : s;
    }
}
