/* coffrectl import --from-imap URL USER: copies every folder of an account
 * on a live IMAP server into a coffre account, keeping what lets clients
 * keep their caches: each folder's UIDVALIDITY and UIDs, flags and
 * keywords, internal dates, subscriptions and special-use attributes.
 *
 * Folders are spread over --jobs connections; each folder is read with
 * EXAMINE (nothing changes on the source), one UID FETCH of the metadata
 * and UID FETCH BODY.PEEK[] in batches, written through the storage import
 * API (storage_import_*), so a run can be interrupted and run again: what
 * is there is skipped. A second run copies the messages above what the
 * target has, applies flag changes (only those since the last run's
 * HIGHESTMODSEQ when the source has CONDSTORE, kept in a state file beside
 * the account's index) and reports the messages expunged on the source
 * without removing them here (see report()). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "server/base/buf.h"
#include "server/base/config.h"
#include "server/ctl.h"
#include "server/ctl_import.h"
#include "server/imapc.h"
#include "storage/storage.h"

#define STATE_FILE "import-imap.state"
#define JOBS_MAX 16
#define SRC_NAME_MAX 1024

void ctl_import_imap_usage(FILE *f)
{
    fprintf(f,
            "  import --from-imap imaps://HOST[:PORT] ADDRESS --source-user USER --password-stdin\n"
            "         [--ca-file FILE] [--jobs N]\n"
            "                                 (copy every folder of an IMAP account, keeping\n"
            "                                  UIDVALIDITY, UIDs, flags, dates; imap:// uses "
            "STARTTLS)\n");
}

/* ---- what is read from the source ---- */

struct folder {
    char *src;                            /* name as the source spells it (modified UTF-7) */
    char name[STORAGE_MBOX_NAME_MAX + 1]; /* coffre's name */
    unsigned special;
    bool selectable;
    const char *skip; /* reason not to import it, static text */
    /* state of the last run: UIDVALIDITY and HIGHESTMODSEQ seen then */
    uint32_t last_uidvalidity;
    uint64_t last_modseq;
    /* this run */
    uint32_t uidvalidity, uidnext;
    uint64_t modseq;
    bool done;
};

struct msgmeta {
    uint32_t uid;
    unsigned flags;
    char *keywords; /* space-separated, NULL when none */
    int64_t date;
    uint64_t size;
    bool have_flags, have_date, have_size;
};

struct metalist {
    struct msgmeta *v;
    size_t n, cap;
    bool oom;
};

/* totals of the run, under stats_lock */
struct stats {
    unsigned folders, folders_failed, by_changedsince, flags_in_full;
    uint64_t added, bytes, present, flag_updates, expunged_source, skipped_big, skipped_gone,
        skipped_failed, keywords_dropped;
};

struct run {
    const struct conf *conf;
    struct imapc_opts opts;
    char sep;
    char prefix[SRC_NAME_MAX]; /* personal namespace prefix, stripped */
    struct folder *folders;
    size_t nfolders, capfolders, next;
    struct storage_user *u;
    pthread_mutex_t lock; /* folders[].next, the storage handle, stats, output */
    struct stats st;
    bool tty;
    bool condstore;
    int rc;
};

static void progress(struct run *r, const char *name)
{
    if (!r->tty)
        return;
    fprintf(stderr, "\r\033[K%zu/%zu folders, %" PRIu64 " messages, %" PRIu64 " MB  %s", r->next,
            r->nfolders, r->st.added, r->st.bytes >> 20, name);
    fflush(stderr);
}

static void say(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct run *r, const char *fmt, ...)
{
    va_list ap;

    if (r->tty)
        fprintf(stderr, "\r\033[K");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Room for element n of a growable array *vp of *cap elements: 0, or -1
 * on no memory (the array is left as it was). */
static int grow(void *vp, size_t *cap, size_t n, size_t elem)
{
    void **v = vp, *nv;
    size_t nc;

    if (n < *cap)
        return 0;
    nc = *cap ? *cap * 2 : 64;
    if (nc > SIZE_MAX / elem || !(nv = realloc(*v, nc * elem)))
        return -1;
    *v = nv;
    *cap = nc;
    return 0;
}

/* ---- parsing of FETCH items ---- */

static int month_of(const char *m)
{
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (int i = 0; i < 12; i++)
        if (!strncasecmp(m, mon[i], 3))
            return i;
    return -1;
}

/* "dd-Mon-yyyy hh:mm:ss +zzzz" (day may start with a space) */
static int parse_date(const char *s, int64_t *out)
{
    struct tm tm = {0};
    int d, y, hh, mm, ss, zone, mon;
    char ms[4], sign;

    while (*s == ' ')
        s++;
    if (sscanf(s, "%2d-%3c-%4d %2d:%2d:%2d %c%4d", &d, ms, &y, &hh, &mm, &ss, &sign, &zone) != 8)
        return -1;
    ms[3] = '\0';
    if ((mon = month_of(ms)) < 0 || d < 1 || d > 31 || y < 1900 || y > 9999 || hh > 23 || mm > 59 ||
        ss > 60 || (sign != '+' && sign != '-') || zone < 0 || zone > 9959)
        return -1;
    tm.tm_mday = d;
    tm.tm_mon = mon;
    tm.tm_year = y - 1900;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    *out =
        (int64_t)timegm(&tm) - (sign == '+' ? 1 : -1) * ((zone / 100) * 3600 + (zone % 100) * 60);
    return 0;
}

/* FLAGS (...) at list token i: standard flags to bits, keywords to a
 * space-separated string (caller frees; NULL when none). */
static int parse_flags(const struct imapc_reader *rd, size_t i, unsigned *flags, char **kw)
{
    static const struct {
        const char *name;
        unsigned bit;
    } std[] = {{"\\Seen", STORAGE_FLAG_SEEN},
               {"\\Answered", STORAGE_FLAG_ANSWERED},
               {"\\Flagged", STORAGE_FLAG_FLAGGED},
               {"\\Deleted", STORAGE_FLAG_DELETED},
               {"\\Draft", STORAGE_FLAG_DRAFT}};
    size_t end = imapc_tok_skip(rd, i);
    struct buf b = {0};

    *flags = 0;
    *kw = NULL;
    if (rd->toks[i].type != IMAPC_OPEN)
        return -1;
    for (i++; i + 1 < end; i++) {
        const char *f = imapc_tok_str(rd, i);
        bool found = false;
        if (!f || rd->toks[i].type != IMAPC_ATOM) {
            buf_free(&b);
            return -1;
        }
        for (size_t k = 0; k < sizeof(std) / sizeof(std[0]); k++)
            if (!strcasecmp(f, std[k].name)) {
                *flags |= std[k].bit;
                found = true;
            }
        if (found || f[0] == '\\')
            continue; /* \Recent and unknown system flags are not kept */
        if (b.len)
            buf_addc(&b, ' ');
        buf_str(&b, f);
    }
    if (b.len) {
        if (!(*kw = buf_take(&b)))
            return -1;
    }
    buf_free(&b);
    return 0;
}

/* "* n FETCH (...)": the index of the list's first item, or 0. */
static size_t fetch_items(const struct imapc_reader *rd)
{
    if (!imapc_tok_is(rd, 0, "*") || !imapc_tok_is(rd, 2, "FETCH") || rd->ntoks < 4 ||
        rd->toks[3].type != IMAPC_OPEN)
        return 0;
    return 4;
}

static void meta_free(struct metalist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].keywords);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int on_meta(void *arg, const struct imapc_reader *rd)
{
    struct metalist *l = arg;
    struct msgmeta m = {0};
    size_t i = fetch_items(rd), end;
    uint64_t v;

    if (!i)
        return 0; /* EXISTS, EXPUNGE, FLAGS, ...: not needed */
    end = imapc_tok_skip(rd, 3) - 1;
    while (i < end) {
        size_t val = i + 1;
        if (val >= end)
            break;
        if (imapc_tok_is(rd, i, "UID") && imapc_tok_u64(rd, val, UINT32_MAX - 1, &v) == 0) {
            m.uid = (uint32_t)v;
        } else if (imapc_tok_is(rd, i, "FLAGS") && rd->toks[val].type == IMAPC_OPEN) {
            free(m.keywords);
            if (parse_flags(rd, val, &m.flags, &m.keywords) < 0)
                goto bad;
            m.have_flags = true;
        } else if (imapc_tok_is(rd, i, "INTERNALDATE") && imapc_tok_str(rd, val)) {
            if (parse_date(imapc_tok_str(rd, val), &m.date) < 0)
                goto bad;
            m.have_date = true;
        } else if (imapc_tok_is(rd, i, "RFC822.SIZE") &&
                   imapc_tok_u64(rd, val, UINT64_MAX, &m.size) == 0) {
            m.have_size = true;
        }
        i = imapc_tok_skip(rd, val);
    }
    if (m.uid == 0)
        goto bad;
    if (grow(&l->v, &l->cap, l->n, sizeof(*l->v)) < 0) {
        l->oom = true;
        free(m.keywords);
        return -1;
    }
    l->v[l->n++] = m;
    return 0;
bad:
    free(m.keywords);
    return 0; /* a response we cannot use is left out: the message is reported missing */
}

static int cmp_meta(const void *a, const void *b)
{
    uint32_t x = ((const struct msgmeta *)a)->uid, y = ((const struct msgmeta *)b)->uid;
    return x < y ? -1 : x > y;
}

/* Sorts by UID and keeps the last response of each UID (servers may send
 * unsolicited FETCH responses for the same message). */
static void meta_sort(struct metalist *l)
{
    size_t o = 0;

    if (l->n == 0)
        return;
    /* stable order is not needed: duplicates carry the same UID's data */
    qsort(l->v, l->n, sizeof(*l->v), cmp_meta);
    for (size_t i = 1; i < l->n; i++) {
        if (l->v[i].uid == l->v[o].uid) {
            struct msgmeta *d = &l->v[o];
            if (l->v[i].have_flags) {
                free(d->keywords);
                d->flags = l->v[i].flags;
                d->keywords = l->v[i].keywords;
                d->have_flags = true;
            } else {
                free(l->v[i].keywords);
            }
            if (l->v[i].have_date) {
                d->date = l->v[i].date;
                d->have_date = true;
            }
            if (l->v[i].have_size) {
                d->size = l->v[i].size;
                d->have_size = true;
            }
        } else {
            l->v[++o] = l->v[i];
        }
    }
    l->n = o + 1;
}

static struct msgmeta *meta_find(struct metalist *l, uint32_t uid)
{
    size_t lo = 0, hi = l->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->v[mid].uid == uid)
            return &l->v[mid];
        if (l->v[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- names ---- */

static unsigned special_of(const char *attr)
{
    static const struct {
        const char *name;
        unsigned bit;
    } attrs[] = {
        {"\\Drafts", STORAGE_SPECIAL_DRAFTS},   {"\\Sent", STORAGE_SPECIAL_SENT},
        {"\\Trash", STORAGE_SPECIAL_TRASH},     {"\\Junk", STORAGE_SPECIAL_JUNK},
        {"\\Spam", STORAGE_SPECIAL_JUNK},       {"\\Archive", STORAGE_SPECIAL_ARCHIVE},
        {"\\All", STORAGE_SPECIAL_ALL},         {"\\AllMail", STORAGE_SPECIAL_ALL},
        {"\\Flagged", STORAGE_SPECIAL_FLAGGED}, {"\\Starred", STORAGE_SPECIAL_FLAGGED},
    };
    for (size_t k = 0; k < sizeof(attrs) / sizeof(attrs[0]); k++)
        if (!strcasecmp(attr, attrs[k].name))
            return attrs[k].bit;
    return 0;
}

/* The source's name (modified UTF-7, its separator) as coffre's: UTF-8
 * with '/' between levels, the personal namespace prefix left out, INBOX
 * in any case as INBOX. NULL, or the reason it cannot be mapped. */
static const char *map_name(const struct run *r, const char *src, char *out, size_t cap)
{
    char dec[STORAGE_MBOX_NAME_MAX * 2 + 1];
    size_t pl = strlen(r->prefix), n;

    if (pl && !strncasecmp(src, r->prefix, pl) && src[pl])
        src += pl;
    if (!strcasecmp(src, "INBOX")) {
        snprintf(out, cap, "INBOX");
        return NULL;
    }
    if (imp_mutf7_decode(src, strlen(src), dec, sizeof(dec)) < 0)
        return "name is not valid modified UTF-7 or too long";
    n = strlen(dec);
    if (n >= cap)
        return "name too long";
    for (size_t i = 0; i <= n; i++) {
        if (r->sep && dec[i] == r->sep)
            out[i] = '/';
        else if (dec[i] == '/' && r->sep != '/')
            return "name holds '/', coffre's hierarchy separator";
        else
            out[i] = dec[i];
    }
    /* INBOX's children keep the name INBOX in upper case */
    if (!strncasecmp(out, "INBOX/", 6))
        memcpy(out, "INBOX", 5);
    if (storage_name_check(out, NULL, 0) != 0)
        return "name refused by coffre (see mailbox names in the README)";
    return NULL;
}

/* ---- the folder list ---- */

struct listing {
    struct run *r;
    bool lsub;
    char **subs;
    size_t nsubs, capsubs;
    bool oom;
};

static int on_list(void *arg, const struct imapc_reader *rd)
{
    struct listing *L = arg;
    struct run *r = L->r;
    size_t i = 2, end;
    unsigned special = 0;
    bool noselect = false;
    const char *sep, *name;

    if (!imapc_tok_is(rd, 1, L->lsub ? "LSUB" : "LIST") || rd->ntoks < 5 ||
        rd->toks[2].type != IMAPC_OPEN)
        return 0;
    end = imapc_tok_skip(rd, 2);
    for (i = 3; i + 1 < end; i++) {
        const char *a = imapc_tok_str(rd, i);
        if (!a)
            continue;
        if (!strcasecmp(a, "\\Noselect") || !strcasecmp(a, "\\NonExistent"))
            noselect = true;
        special |= special_of(a);
    }
    if (end + 1 >= rd->ntoks)
        return 0;
    sep = imapc_tok_is(rd, end, "NIL") ? "" : imapc_tok_str(rd, end);
    name = imapc_tok_str(rd, end + 1);
    if (!sep || !name || strlen(name) >= SRC_NAME_MAX)
        return 0;
    if (L->lsub) {
        if (grow(&L->subs, &L->capsubs, L->nsubs, sizeof(*L->subs)) < 0 ||
            !(L->subs[L->nsubs] = strdup(name)))
            goto oom;
        L->nsubs++;
        return 0;
    }
    if (r->sep == '\0' && sep[0])
        r->sep = sep[0];
    if (grow(&r->folders, &r->capfolders, r->nfolders, sizeof(*r->folders)) < 0)
        goto oom;
    {
        struct folder *f = &r->folders[r->nfolders];
        memset(f, 0, sizeof(*f));
        if (!(f->src = strdup(name)))
            goto oom;
        f->special = special;
        f->selectable = !noselect;
        r->nfolders++;
    }
    return 0;
oom:
    L->oom = true;
    return -1;
}

static int on_namespace(void *arg, const struct imapc_reader *rd)
{
    struct run *r = arg;
    const char *p;

    /* * NAMESPACE (("INBOX." ".")) NIL NIL: the personal prefix */
    if (!imapc_tok_is(rd, 1, "NAMESPACE") || rd->ntoks < 6 || rd->toks[2].type != IMAPC_OPEN ||
        rd->toks[3].type != IMAPC_OPEN)
        return 0;
    if ((p = imapc_tok_str(rd, 4)) && rd->toks[4].type == IMAPC_STRING && strlen(p) < SRC_NAME_MAX)
        snprintf(r->prefix, sizeof(r->prefix), "%s", p);
    return 0;
}

/* ---- the state file: "uidvalidity highestmodseq name" per folder ---- */

static void state_path(const struct run *r, int64_t id, char *p, size_t cap)
{
    snprintf(p, cap, "%s/users/%" PRId64 "/" STATE_FILE, r->conf->data_dir, id);
}

static void state_load(struct run *r, int64_t id)
{
    char path[4096], line[SRC_NAME_MAX + 64];
    FILE *f;

    state_path(r, id, path, sizeof(path));
    if (!(f = fopen(path, "r")))
        return;
    while (fgets(line, sizeof(line), f)) {
        unsigned long uv;
        unsigned long long ms;
        int off = 0;
        line[strcspn(line, "\n")] = '\0';
        if (sscanf(line, "%lu %llu %n", &uv, &ms, &off) != 2 || off == 0)
            continue;
        for (size_t i = 0; i < r->nfolders; i++)
            if (!strcmp(r->folders[i].src, line + off)) {
                r->folders[i].last_uidvalidity = (uint32_t)uv;
                r->folders[i].last_modseq = ms;
            }
    }
    fclose(f);
}

static void state_save(struct run *r, int64_t id)
{
    char path[4096], tmp[4200];
    FILE *f;

    state_path(r, id, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (!(f = fopen(tmp, "w")))
        goto fail;
    for (size_t i = 0; i < r->nfolders; i++) {
        const struct folder *fo = &r->folders[i];
        uint32_t uv = fo->done ? fo->uidvalidity : fo->last_uidvalidity;
        uint64_t ms = fo->done ? fo->modseq : fo->last_modseq;
        if (uv && !strchr(fo->src, '\n'))
            fprintf(f, "%" PRIu32 " %" PRIu64 " %s\n", uv, ms, fo->src);
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        goto fail;
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        goto fail;
    return;
fail:
    /* only the next run's speed depends on it: it then compares all flags */
    say(r, "coffrectl: cannot write %s: %s", path, strerror(errno));
}

/* ---- one folder ---- */

struct selinfo {
    uint32_t uidvalidity, uidnext, exists;
    uint64_t modseq;
    bool nomodseq;
};

static int on_select(void *arg, const struct imapc_reader *rd)
{
    struct selinfo *s = arg;
    uint64_t v;

    if (imapc_tok_is(rd, 2, "EXISTS") && imapc_tok_u64(rd, 1, UINT32_MAX, &v) == 0)
        s->exists = (uint32_t)v;
    if (imapc_tok_is(rd, 1, "OK") && rd->ntoks > 3 && rd->toks[2].type == IMAPC_CODE_OPEN) {
        if (imapc_tok_is(rd, 3, "UIDVALIDITY") && imapc_tok_u64(rd, 4, UINT32_MAX, &v) == 0)
            s->uidvalidity = (uint32_t)v;
        else if (imapc_tok_is(rd, 3, "UIDNEXT") && imapc_tok_u64(rd, 4, UINT32_MAX, &v) == 0)
            s->uidnext = (uint32_t)v;
        else if (imapc_tok_is(rd, 3, "HIGHESTMODSEQ") && imapc_tok_u64(rd, 4, UINT64_MAX, &v) == 0)
            s->modseq = v;
        else if (imapc_tok_is(rd, 3, "NOMODSEQ"))
            s->nomodseq = true;
    }
    return 0;
}

/* messages fetched in one batch */
struct body {
    uint32_t uid;
    char *data;
    size_t len;
};

struct bodies {
    struct body *v;
    size_t n, cap;
    struct buf cur; /* the literal being received */
    bool cur_ok;    /* it is a BODY[] within the size limit */
    uint64_t max;
    bool oom;
};

static int body_sink(void *arg, size_t tok, const char *p, uint64_t n)
{
    struct bodies *b = arg;

    (void)tok;
    if (!p) {
        buf_reset(&b->cur);
        b->cur_ok = n <= b->max && !b->cur.oom;
        return 0;
    }
    if (b->cur_ok) {
        buf_add(&b->cur, p, (size_t)n);
        if (b->cur.oom) {
            b->oom = true;
            return -1;
        }
    }
    return 0;
}

static int on_body(void *arg, const struct imapc_reader *rd)
{
    struct bodies *b = arg;
    size_t i = fetch_items(rd), end;
    uint32_t uid = 0;
    int have = 0; /* 1: streamed into cur, 2: inline string at sidx */
    size_t sidx = 0;
    uint64_t v;

    if (!i)
        return 0;
    end = imapc_tok_skip(rd, 3) - 1;
    while (i + 1 < end) {
        size_t val = i + 1;
        if (imapc_tok_is(rd, i, "UID") && imapc_tok_u64(rd, val, UINT32_MAX - 1, &v) == 0) {
            uid = (uint32_t)v;
        } else if (rd->toks[i].type == IMAPC_ATOM &&
                   !strncasecmp(imapc_tok_str(rd, i), "BODY[]", 6)) {
            if (rd->toks[val].type == IMAPC_STREAMED && b->cur_ok)
                have = 1;
            else if (rd->toks[val].type == IMAPC_STRING) {
                have = 2;
                sidx = val;
            }
        }
        i = imapc_tok_skip(rd, val);
    }
    if (!uid || !have)
        return 0;
    if (grow(&b->v, &b->cap, b->n, sizeof(*b->v)) < 0) {
        b->oom = true;
        return -1;
    }
    if (have == 1) {
        b->v[b->n].len = b->cur.len;
        b->v[b->n].data = buf_take(&b->cur);
        b->cur_ok = false;
    } else {
        b->v[b->n].len = rd->toks[sidx].len;
        b->v[b->n].data = malloc(rd->toks[sidx].len + 1);
        if (b->v[b->n].data)
            memcpy(b->v[b->n].data, rd->arena + rd->toks[sidx].off, rd->toks[sidx].len);
    }
    if (!b->v[b->n].data) {
        b->oom = true;
        return -1;
    }
    b->v[b->n++].uid = uid;
    return 0;
}

static void bodies_reset(struct bodies *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->v[i].data);
    b->n = 0;
}

static int cmp_body(const void *a, const void *b)
{
    uint32_t x = ((const struct body *)a)->uid, y = ((const struct body *)b)->uid;
    return x < y ? -1 : x > y;
}

/* "a:b,c" for the UIDs of v[from..to) */
static void uid_set(struct buf *b, const struct msgmeta *const *v, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && v[j + 1]->uid == v[j]->uid + 1)
            j++;
        if (b->len && b->p[b->len - 1] != ' ')
            buf_addc(b, ',');
        buf_addu(b, v[i]->uid);
        if (j > i) {
            buf_addc(b, ':');
            buf_addu(b, v[j]->uid);
        }
        i = j + 1;
    }
}

/* Splits a keyword string in place into at most STORAGE_KEYWORDS_MAX + 1
 * pointers (one more than coffre keeps, so that the storage counts it as
 * dropped). */
static size_t split_keywords(char *s, const char **kw, size_t cap)
{
    size_t n = 0;
    char *save = NULL;

    for (char *t = s ? strtok_r(s, " ", &save) : NULL; t && n < cap; t = strtok_r(NULL, " ", &save))
        kw[n++] = t;
    return n;
}

struct job {
    struct run *r;
    struct imapc *c;
    char err[512];
};

/* Writes one batch of fetched bodies, in UID order. */
static int write_batch(struct job *j, struct folder *f, int64_t mbox, struct metalist *meta,
                       struct bodies *b, size_t asked)
{
    struct run *r = j->r;
    struct storage_import_msg *m;
    const char *(*kws)[STORAGE_KEYWORDS_MAX + 1];
    char **kwcopy;
    int rc = 0;

    if (b->n < asked) {
        pthread_mutex_lock(&r->lock);
        r->st.skipped_gone += asked - b->n;
        pthread_mutex_unlock(&r->lock);
    }
    if (b->n == 0)
        return 0;
    qsort(b->v, b->n, sizeof(*b->v), cmp_body);
    m = calloc(b->n, sizeof(*m));
    kws = calloc(b->n, sizeof(*kws));
    kwcopy = calloc(b->n, sizeof(*kwcopy));
    if (!m || !kws || !kwcopy) {
        rc = STORAGE_E_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < b->n; i++) {
        struct msgmeta *mm = meta_find(meta, b->v[i].uid);
        m[i].uid = b->v[i].uid;
        m[i].data = b->v[i].data;
        m[i].len = b->v[i].len;
        if (mm) {
            m[i].flags = mm->flags;
            m[i].internal_date = mm->have_date ? mm->date : 0;
            if (mm->keywords && !(kwcopy[i] = strdup(mm->keywords))) {
                rc = STORAGE_E_NOMEM;
                goto out;
            }
            m[i].nkeywords = split_keywords(kwcopy[i], kws[i], STORAGE_KEYWORDS_MAX + 1);
            m[i].keywords = kws[i];
        }
    }
    pthread_mutex_lock(&r->lock);
    rc = storage_import_messages(r->u, mbox, m, b->n);
    if (rc == 0) {
        for (size_t i = 0; i < b->n; i++) {
            switch (m[i].status) {
            case STORAGE_IMPORT_ADDED:
                r->st.added++;
                r->st.bytes += m[i].size;
                break;
            case STORAGE_IMPORT_PRESENT:
            case STORAGE_IMPORT_UID_USED:
                r->st.present++;
                break;
            default:
                r->st.skipped_failed++;
                say(r, "%s: UID %" PRIu32 " not imported: %s", f->name, m[i].uid,
                    storage_strerror(m[i].rc));
                break;
            }
            r->st.keywords_dropped += m[i].keywords_dropped;
        }
    }
    progress(r, f->name);
    pthread_mutex_unlock(&r->lock);
out:
    if (kwcopy)
        for (size_t i = 0; i < b->n; i++)
            free(kwcopy[i]);
    free(kwcopy);
    free(kws);
    free(m);
    bodies_reset(b);
    return rc;
}

/* Target's flags of the messages below UIDNEXT, for comparing. */
struct target_msg {
    uint32_t uid;
    unsigned flags;
    char *keywords;
};
struct targetlist {
    struct target_msg *v;
    size_t n, cap;
    bool oom;
};

static int on_target(void *arg, const struct storage_msg *m)
{
    struct targetlist *t = arg;

    if (grow(&t->v, &t->cap, t->n, sizeof(*t->v)) < 0) {
        t->oom = true;
        return 1;
    }
    t->v[t->n].uid = m->uid;
    t->v[t->n].flags = m->flags;
    if (!(t->v[t->n].keywords = strdup(m->keywords ? m->keywords : ""))) {
        t->oom = true;
        return 1;
    }
    t->n++;
    return 0;
}

static int target_cmp(const void *a, const void *b)
{
    uint32_t x = ((const struct target_msg *)a)->uid, y = ((const struct target_msg *)b)->uid;
    return x < y ? -1 : x > y;
}

/* Whether the target has UID uid (t sorted by UID). */
static bool target_has(const struct targetlist *t, uint32_t uid)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->v[mid].uid == uid)
            return true;
        if (t->v[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* The lowest UID of the source (meta, sorted) that the target lacks;
 * UINT32_MAX when it has them all. */
static uint32_t first_missing(const struct metalist *meta, const struct targetlist *t)
{
    for (size_t i = 0; i < meta->n; i++)
        if (!target_has(t, meta->v[i].uid))
            return meta->v[i].uid;
    return UINT32_MAX;
}

static void target_free(struct targetlist *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].keywords);
    free(t->v);
}

/* Whether two space-separated keyword lists hold the same set (any case,
 * any order): small lists, compared pairwise. */
static bool same_keywords(const char *a, const char *b)
{
    char x[4096], y[4096];
    const char *ka[STORAGE_KEYWORDS_MAX + 1], *kb[STORAGE_KEYWORDS_MAX + 1];
    size_t na, nb;

    snprintf(x, sizeof(x), "%s", a ? a : "");
    snprintf(y, sizeof(y), "%s", b ? b : "");
    na = split_keywords(x, ka, STORAGE_KEYWORDS_MAX + 1);
    nb = split_keywords(y, kb, STORAGE_KEYWORDS_MAX + 1);
    for (int pass = 0; pass < 2; pass++) {
        const char **p = pass ? kb : ka, **q = pass ? ka : kb;
        size_t np = pass ? nb : na, nq = pass ? na : nb;
        for (size_t i = 0; i < np; i++) {
            bool found = false;
            for (size_t k = 0; k < nq && !found; k++)
                found = !strcasecmp(p[i], q[k]);
            if (!found)
                return false;
        }
    }
    return true;
}

/* Applies the source's flags to the messages both sides have. */
static int apply_flags(struct job *j, struct folder *f, int64_t mbox, struct metalist *meta,
                       struct targetlist *t)
{
    struct run *r = j->r;
    uint64_t changed = 0;
    int rc = 0;

    for (size_t i = 0; i < t->n && rc == 0; i++) {
        struct msgmeta *mm = meta_find(meta, t->v[i].uid);
        const char *kw[STORAGE_KEYWORDS_MAX + 1];
        char copy[4096];
        size_t nkw;
        struct storage_range one = {t->v[i].uid, t->v[i].uid};
        struct storage_uidset set = {1, &one};

        if (!mm || !mm->have_flags)
            continue;
        if (mm->flags == t->v[i].flags && same_keywords(mm->keywords, t->v[i].keywords))
            continue;
        snprintf(copy, sizeof(copy), "%s", mm->keywords ? mm->keywords : "");
        nkw = split_keywords(copy, kw, STORAGE_KEYWORDS_MAX);
        pthread_mutex_lock(&r->lock);
        rc = storage_store(r->u, mbox, &set, STORAGE_STORE_SET, mm->flags, kw, nkw, 0, NULL, NULL,
                           NULL);
        pthread_mutex_unlock(&r->lock);
        if (rc == STORAGE_E_INVAL) /* a keyword coffre cannot hold: the flags alone */
            rc = 0;
        if (rc == 0)
            changed++;
    }
    pthread_mutex_lock(&r->lock);
    r->st.flag_updates += changed;
    pthread_mutex_unlock(&r->lock);
    if (rc)
        snprintf(j->err, sizeof(j->err), "flag update failed: %s", storage_strerror(rc));
    (void)f;
    return rc;
}

static int fetch_meta(struct job *j, const char *cmd, struct metalist *l)
{
    int rc = imapc_cmd(j->c, cmd, on_meta, l, NULL, NULL, j->err, sizeof(j->err));

    if (l->oom) {
        snprintf(j->err, sizeof(j->err), "out of memory");
        return -1;
    }
    if (rc != IMAPC_OK) {
        char why[256];
        snprintf(why, sizeof(why), "%.250s", j->err);
        snprintf(j->err, sizeof(j->err), "%.200s: %s", cmd, why);
        return -1;
    }
    meta_sort(l);
    return 0;
}

static int import_folder(struct job *j, struct folder *f)
{
    struct run *r = j->r;
    struct selinfo s = {0};
    struct storage_mbox mb;
    struct metalist meta = {0}, changed = {0};
    struct targetlist target = {0};
    struct bodies b = {.max = r->conf->max_message_size};
    const struct msgmeta **fresh_msgs = NULL;
    size_t nnew = 0;
    uint32_t first_new;
    bool incremental;
    char cmd[160];
    int rc;

    rc = imapc_cmd_mbox(j->c, r->condstore ? "EXAMINE %s (CONDSTORE)" : "EXAMINE %s", f->src,
                        on_select, &s, j->err, sizeof(j->err));
    if (rc != IMAPC_OK)
        return -1;
    if (s.uidvalidity == 0) {
        snprintf(j->err, sizeof(j->err), "the source gave no UIDVALIDITY");
        return -1;
    }
    f->uidvalidity = s.uidvalidity;
    f->uidnext = s.uidnext;
    f->modseq = s.nomodseq ? 0 : s.modseq;

    pthread_mutex_lock(&r->lock);
    rc = storage_import_mailbox(r->u, f->name, s.uidvalidity, f->special, &mb);
    pthread_mutex_unlock(&r->lock);
    if (rc == STORAGE_E_CONFLICT) {
        if (f->last_uidvalidity && f->last_uidvalidity != s.uidvalidity)
            snprintf(j->err, sizeof(j->err),
                     "UIDVALIDITY changed on the source since the last run (%" PRIu32
                     ", now %" PRIu32 "): its UIDs name other messages now; folder left alone"
                     " (delete it here, or import it under another name, to start over)",
                     f->last_uidvalidity, s.uidvalidity);
        else
            snprintf(j->err, sizeof(j->err),
                     "holds messages under UIDVALIDITY %" PRIu32 ", the source has %" PRIu32
                     "; folder left alone",
                     mb.uidvalidity, s.uidvalidity);
        return -1;
    }
    if (rc) {
        snprintf(j->err, sizeof(j->err), "%s", storage_strerror(rc));
        return -1;
    }
    /* The source's UIDs are kept for the import before any message is
     * copied, so that mail delivered here meanwhile takes UIDs above them
     * (a run cut short keeps them: the next one fills them in). */
    if (s.uidnext) {
        pthread_mutex_lock(&r->lock);
        rc = storage_import_uidnext(r->u, mb.id, s.uidnext);
        pthread_mutex_unlock(&r->lock);
        if (rc) {
            snprintf(j->err, sizeof(j->err), "raising UIDNEXT: %s", storage_strerror(rc));
            goto fail;
        }
    }
    /* what the target has: those messages are compared for flags; the
     * source's others are new (the storage skips a UID expunged here) */
    first_new = mb.uidnext ? mb.uidnext : 1;
    pthread_mutex_lock(&r->lock);
    rc = storage_fetch(r->u, mb.id, NULL, 0, on_target, &target);
    pthread_mutex_unlock(&r->lock);
    if (rc || target.oom) {
        snprintf(j->err, sizeof(j->err), "reading the target: %s",
                 storage_strerror(rc ? rc : STORAGE_E_NOMEM));
        goto fail;
    }
    if (target.n)
        qsort(target.v, target.n, sizeof(*target.v), target_cmp);

    incremental = r->condstore && f->last_modseq && f->last_uidvalidity == s.uidvalidity &&
                  s.modseq && !s.nomodseq && target.n > 0;
    pthread_mutex_lock(&r->lock);
    if (incremental && first_new > 1)
        r->st.by_changedsince++;
    else if (target.n)
        r->st.flags_in_full++;
    pthread_mutex_unlock(&r->lock);
    if (s.exists == 0) {
        /* nothing on the source: what is here was expunged there */
    } else if (!incremental || first_new <= 1) {
        if (fetch_meta(j, "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)", &meta) < 0)
            goto fail;
    } else {
        /* every UID (for expunges), what changed since the last run, and the
         * new messages in full */
        if (fetch_meta(j, "UID FETCH 1:* (UID)", &meta) < 0)
            goto fail;
        /* new: from the first the target lacks (below its UIDNEXT too,
         * after a run cut short) */
        if ((first_new = first_missing(&meta, &target)) > s.uidnext && s.uidnext)
            first_new = s.uidnext;
        snprintf(cmd, sizeof(cmd), "UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE %" PRIu64 ")",
                 f->last_modseq);
        if (fetch_meta(j, cmd, &changed) < 0)
            goto fail;
        snprintf(cmd, sizeof(cmd), "UID FETCH %" PRIu32 ":* (UID FLAGS INTERNALDATE RFC822.SIZE)",
                 first_new);
        {
            struct metalist fresh = {0};
            if (fetch_meta(j, cmd, &fresh) < 0) {
                meta_free(&fresh);
                goto fail;
            }
            /* merge: fresh and changed over the bare UIDs */
            for (int pass = 0; pass < 2; pass++) {
                struct metalist *src = pass ? &fresh : &changed;
                for (size_t i = 0; i < src->n; i++) {
                    struct msgmeta *d = meta_find(&meta, src->v[i].uid);
                    if (!d)
                        continue;
                    free(d->keywords);
                    *d = src->v[i];
                    src->v[i].keywords = NULL;
                }
            }
            meta_free(&fresh);
        }
    }

    /* expunged on the source: reported, not applied */
    {
        uint64_t gone = 0;
        for (size_t i = 0; i < target.n; i++)
            if (!meta_find(&meta, target.v[i].uid))
                gone++;
        if (gone) {
            pthread_mutex_lock(&r->lock);
            r->st.expunged_source += gone;
            say(r, "%s: %" PRIu64 " message%s expunged on the source, kept here", f->name, gone,
                gone == 1 ? "" : "s");
            pthread_mutex_unlock(&r->lock);
        }
    }

    /* new messages, in batches bounded in count and bytes */
    if (!(fresh_msgs = calloc(meta.n ? meta.n : 1, sizeof(*fresh_msgs)))) {
        snprintf(j->err, sizeof(j->err), "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < meta.n; i++) {
        if (target_has(&target, meta.v[i].uid))
            continue;
        if (meta.v[i].have_size && meta.v[i].size > r->conf->max_message_size) {
            pthread_mutex_lock(&r->lock);
            r->st.skipped_big++;
            say(r, "%s: UID %" PRIu32 " skipped: %" PRIu64 " bytes, over max_message_size", f->name,
                meta.v[i].uid, meta.v[i].size);
            pthread_mutex_unlock(&r->lock);
            continue;
        }
        fresh_msgs[nnew++] = &meta.v[i];
    }
    for (size_t i = 0; i < nnew;) {
        struct buf set = {0};
        uint64_t bytes = 0;
        size_t k = i;
        int frc;

        while (k < nnew && k - i < r->conf->import_imap_batch &&
               (k == i || bytes + fresh_msgs[k]->size <= r->conf->import_imap_batch_size)) {
            bytes += fresh_msgs[k]->size;
            k++;
        }
        buf_str(&set, "UID FETCH ");
        uid_set(&set, fresh_msgs + i, k - i);
        buf_str(&set, " (UID BODY.PEEK[])");
        if (set.oom) {
            buf_free(&set);
            snprintf(j->err, sizeof(j->err), "out of memory");
            goto fail;
        }
        frc = imapc_cmd(j->c, set.p, on_body, &b, body_sink, &b, j->err, sizeof(j->err));
        buf_free(&set);
        if (b.oom) {
            snprintf(j->err, sizeof(j->err), "out of memory");
            goto fail;
        }
        if (frc == IMAPC_EIO)
            goto fail;
        /* NO: some messages could not be read; what came is written */
        if ((rc = write_batch(j, f, mb.id, &meta, &b, k - i)) != 0) {
            snprintf(j->err, sizeof(j->err), "writing: %s", storage_strerror(rc));
            goto fail;
        }
        i = k;
    }

    /* flags of the messages both have */
    if (target.n && apply_flags(j, f, mb.id, &meta, &target) != 0)
        goto fail;

    f->done = true;
    free(fresh_msgs);
    meta_free(&meta);
    meta_free(&changed);
    target_free(&target);
    bodies_reset(&b);
    free(b.v);
    buf_free(&b.cur);
    return 0;
fail:
    free(fresh_msgs);
    meta_free(&meta);
    meta_free(&changed);
    target_free(&target);
    bodies_reset(&b);
    free(b.v);
    buf_free(&b.cur);
    return -1;
}

static void *job_main(void *arg)
{
    struct job *j = arg;
    struct run *r = j->r;

    for (;;) {
        struct folder *f = NULL;
        pthread_mutex_lock(&r->lock);
        while (r->next < r->nfolders) {
            f = &r->folders[r->next++];
            if (!f->skip && f->selectable)
                break;
            f = NULL;
        }
        if (f)
            progress(r, f->name);
        pthread_mutex_unlock(&r->lock);
        if (!f)
            break;
        if (!j->c) {
            /* reconnect after a lost connection */
            if (!(j->c = imapc_connect(&r->opts, j->err, sizeof(j->err)))) {
                pthread_mutex_lock(&r->lock);
                say(r, "%s: not imported: %s", f->name, j->err);
                r->st.folders_failed++;
                pthread_mutex_unlock(&r->lock);
                continue;
            }
        }
        j->err[0] = '\0';
        if (import_folder(j, f) < 0) {
            pthread_mutex_lock(&r->lock);
            say(r, "%s: not imported: %s", f->name, j->err);
            r->st.folders_failed++;
            pthread_mutex_unlock(&r->lock);
            if (j->c && imapc_cmd(j->c, "NOOP", NULL, NULL, NULL, NULL, j->err, sizeof(j->err)) ==
                            IMAPC_EIO) {
                imapc_close(j->c);
                j->c = NULL;
            }
        } else {
            pthread_mutex_lock(&r->lock);
            r->st.folders++;
            pthread_mutex_unlock(&r->lock);
        }
    }
    return NULL;
}

/* ---- command line ---- */

static int read_password(char *pw, size_t cap)
{
    size_t n;

    if (!fgets(pw, (int)cap, stdin))
        return -1;
    n = strcspn(pw, "\r\n");
    if (pw[n] == '\0' && n + 1 >= cap)
        return -1; /* too long */
    pw[n] = '\0';
    return n ? 0 : -1;
}

struct names {
    char **v;
    size_t n, cap;
    bool oom;
};

static int on_subscribed(void *arg, const struct storage_mbox *m)
{
    struct names *s = arg;

    if (grow(&s->v, &s->cap, s->n, sizeof(*s->v)) < 0) {
        s->oom = true;
        return 1;
    }
    if (!(s->v[s->n] = strdup(m->name))) {
        s->oom = true;
        return 1;
    }
    s->n++;
    return 0;
}

/* The subscriptions become the source's: a client then shows the same
 * folders (coffre's own default subscriptions go when the source has
 * none of them). Returns how many were removed. */
static unsigned subscribe_all(struct run *r, struct listing *L)
{
    struct names had = {0}, want = {0};
    unsigned removed = 0;

    for (size_t i = 0; i < L->nsubs; i++) {
        char name[STORAGE_MBOX_NAME_MAX + 1];
        const char *why = map_name(r, L->subs[i], name, sizeof(name));
        int rc;
        if (why) {
            say(r, "subscription %s not kept: %s", L->subs[i], why);
            continue;
        }
        if ((rc = storage_subscribe(r->u, name, true)) != 0) {
            say(r, "subscription %s not kept: %s", name, storage_strerror(rc));
            continue;
        }
        on_subscribed(&want, &(struct storage_mbox){0});
        if (!want.oom) {
            free(want.v[want.n - 1]);
            want.v[want.n - 1] = strdup(name);
            if (!want.v[want.n - 1])
                want.oom = true;
        }
    }
    if (!want.oom && storage_mbox_list(r->u, "*", true, NULL, on_subscribed, &had) == 0 &&
        !had.oom) {
        for (size_t i = 0; i < had.n; i++) {
            bool keep = false;
            for (size_t k = 0; k < want.n && !keep; k++)
                keep = !strcmp(had.v[i], want.v[k]);
            if (!keep && storage_subscribe(r->u, had.v[i], false) == 0)
                removed++;
        }
    }
    for (size_t i = 0; i < had.n; i++)
        free(had.v[i]);
    for (size_t i = 0; i < want.n; i++)
        free(want.v[i]);
    free(had.v);
    free(want.v);
    return removed;
}

int ctl_import_imap(const struct conf *c, int argc, char **argv)
{
    const char *url = NULL, *addr = NULL, *src_user = NULL, *ca = NULL;
    bool pw_stdin = false;
    unsigned jobs = c->import_imap_jobs;
    struct imp_run ir; /* the account lookup shared by the import sources */
    char acct_addr[AUTH_ADDR_MAX];
    int64_t acct_id;
    struct job js[JOBS_MAX] = {0};
    pthread_t th[JOBS_MAX];
    struct listing L = {0};
    struct run r = {.conf = c};
    char pw[600], err[512];
    unsigned unsubscribed = 0;
    int rc = CTL_EXIT_OK;

    /* argv[0] is "--from-imap", argv[1] the URL */
    if (argc >= 2)
        url = argv[1];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--source-user") && i + 1 < argc)
            src_user = argv[++i];
        else if (!strcmp(argv[i], "--ca-file") && i + 1 < argc)
            ca = argv[++i];
        else if (!strcmp(argv[i], "--jobs") && i + 1 < argc) {
            char *end;
            unsigned long v = strtoul(argv[++i], &end, 10);
            if (*end || v < 1 || v > JOBS_MAX) {
                fprintf(stderr, "coffrectl: --jobs takes 1 to %d\n", JOBS_MAX);
                return CTL_EXIT_USAGE;
            }
            jobs = (unsigned)v;
        } else if (!strcmp(argv[i], "--password-stdin"))
            pw_stdin = true;
        else if (argv[i][0] != '-' && !addr)
            addr = argv[i];
        else {
            fprintf(stderr, "coffrectl: import: unexpected argument %s\nusage:\n", argv[i]);
            ctl_import_imap_usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }
    if (!url || !addr || !src_user || !pw_stdin) {
        fprintf(stderr, "coffrectl: import --from-imap needs URL, ADDRESS, --source-user and "
                        "--password-stdin\nusage:\n");
        ctl_import_imap_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if (jobs > JOBS_MAX)
        jobs = JOBS_MAX;
    if (read_password(pw, sizeof(pw)) < 0) {
        fprintf(stderr, "coffrectl: no password (or one too long) on standard input\n");
        return CTL_EXIT_USAGE;
    }
    imp_run_init(&ir, c);
    if ((rc = imp_account(&ir, addr, &acct_id, acct_addr, sizeof(acct_addr))) != CTL_EXIT_OK)
        goto out_pw;

    r.opts = (struct imapc_opts){
        .url = url,
        .user = src_user,
        .password = pw,
        .ca_file = ca,
        .timeout_ms = c->import_imap_timeout_ms,
        .arena_max = c->max_line_length,
        .inline_max = c->max_literal_size,
        .depth_max = c->imap_max_nesting,
    };
    r.tty = isatty(STDERR_FILENO);
    pthread_mutex_init(&r.lock, NULL);

    if (!(js[0].c = imapc_connect(&r.opts, err, sizeof(err)))) {
        fprintf(stderr, "coffrectl: %s\n", err);
        rc = CTL_EXIT_SYSTEM;
        goto out;
    }
    r.condstore = imapc_has(js[0].c, "CONDSTORE") || imapc_has(js[0].c, "QRESYNC");
    if (imapc_has(js[0].c, "NAMESPACE"))
        imapc_cmd(js[0].c, "NAMESPACE", on_namespace, &r, NULL, NULL, err, sizeof(err));
    L.r = &r;
    if (imapc_cmd(js[0].c,
                  imapc_has(js[0].c, "SPECIAL-USE") && imapc_has(js[0].c, "LIST-EXTENDED")
                      ? "LIST \"\" \"*\" RETURN (SPECIAL-USE)"
                      : "LIST \"\" \"*\"",
                  on_list, &L, NULL, NULL, err, sizeof(err)) != IMAPC_OK ||
        L.oom) {
        fprintf(stderr, "coffrectl: LIST failed: %s\n", L.oom ? "out of memory" : err);
        rc = CTL_EXIT_SYSTEM;
        goto out;
    }
    L.lsub = true;
    if (imapc_cmd(js[0].c, "LSUB \"\" \"*\"", on_list, &L, NULL, NULL, err, sizeof(err)) !=
            IMAPC_OK ||
        L.oom) {
        fprintf(stderr, "coffrectl: LSUB failed: %s\n", L.oom ? "out of memory" : err);
        rc = CTL_EXIT_SYSTEM;
        goto out;
    }
    {
        bool su = imapc_has(js[0].c, "SPECIAL-USE");
        for (size_t i = 0; i < r.nfolders; i++) {
            struct folder *f = &r.folders[i];
            if ((f->skip = map_name(&r, f->src, f->name, sizeof(f->name))) != NULL) {
                snprintf(f->name, sizeof(f->name), "%s", f->src);
                continue;
            }
            if (!su && !strchr(f->name, '/'))
                f->special = imp_special_use_by_name(f->name);
            /* one special use per folder in coffre: the first one named */
            f->special &= -f->special;
            for (size_t k = 0; k < i; k++)
                if (!r.folders[k].skip && !strcmp(r.folders[k].name, f->name))
                    f->skip = "two source folders map to this name";
        }
    }

    if ((rc = storage_open(c->data_dir, acct_id, &r.u)) != 0) {
        fprintf(stderr, "coffrectl: cannot open the mail store of %s: %s\n", acct_addr,
                storage_strerror(rc));
        rc = CTL_EXIT_SYSTEM;
        goto out;
    }
    state_load(&r, acct_id);
    for (size_t i = 0; i < r.nfolders; i++)
        if (r.folders[i].skip)
            say(&r, "%s: not imported: %s", r.folders[i].src, r.folders[i].skip);

    /* further connections, at most one per folder */
    if (jobs > r.nfolders)
        jobs = r.nfolders ? (unsigned)r.nfolders : 1;
    for (unsigned k = 0; k < jobs; k++) {
        js[k].r = &r;
        if (k > 0 && !(js[k].c = imapc_connect(&r.opts, err, sizeof(err)))) {
            say(&r, "coffrectl: connection %u: %s; going on with %u", k + 1, err, k);
            jobs = k;
            break;
        }
    }
    for (unsigned k = 1; k < jobs; k++)
        if (pthread_create(&th[k], NULL, job_main, &js[k]) != 0) {
            imapc_close(js[k].c);
            js[k].c = NULL;
            jobs = k;
            break;
        }
    job_main(&js[0]);
    for (unsigned k = 1; k < jobs; k++)
        pthread_join(th[k], NULL);

    unsubscribed = subscribe_all(&r, &L);
    state_save(&r, acct_id);
    storage_close(r.u);

    if (r.tty)
        fprintf(stderr, "\r\033[K");
    {
        unsigned skipped_folders = 0;
        for (size_t i = 0; i < r.nfolders; i++)
            if (r.folders[i].skip && r.folders[i].selectable)
                skipped_folders++;
        printf("imported %u folder%s", r.st.folders, r.st.folders == 1 ? "" : "s");
        if (r.st.folders_failed || skipped_folders)
            printf(" (%u failed, %u skipped)", r.st.folders_failed, skipped_folders);
        printf(": %" PRIu64 " new messages, %" PRIu64 " bytes; %" PRIu64
               " already present; %" PRIu64 " flag updates; %" PRIu64
               " expunged on the source (kept here)\n",
               r.st.added, r.st.bytes, r.st.present, r.st.flag_updates, r.st.expunged_source);
        if (r.st.skipped_big || r.st.skipped_gone || r.st.skipped_failed || r.st.keywords_dropped)
            printf("skipped: %" PRIu64 " over max_message_size, %" PRIu64
                   " gone from the source during the run, %" PRIu64
                   " refused by the storage; %" PRIu64 " keywords coffre cannot hold\n",
                   r.st.skipped_big, r.st.skipped_gone, r.st.skipped_failed, r.st.keywords_dropped);
        printf("flags of %u folder%s by CHANGEDSINCE, %u compared in full\n", r.st.by_changedsince,
               r.st.by_changedsince == 1 ? "" : "s", r.st.flags_in_full);
        printf("subscriptions: %zu as on the source, %u others removed\n", L.nsubs, unsubscribed);
        if (r.st.folders_failed || r.st.skipped_failed || skipped_folders || r.st.skipped_big)
            rc = CTL_EXIT_INCOMPLETE;
    }
out:
    for (unsigned k = 0; k < JOBS_MAX; k++)
        imapc_close(js[k].c);
    for (size_t i = 0; i < L.nsubs; i++)
        free(L.subs[i]);
    free(L.subs);
    for (size_t i = 0; i < r.nfolders; i++)
        free(r.folders[i].src);
    free(r.folders);
    pthread_mutex_destroy(&r.lock);
out_pw:
    explicit_bzero(pw, sizeof(pw));
    return rc;
}
