/* Import (coffrectl import): mailboxes created or found with the source's
 * UIDVALIDITY, and messages added in batches under the source's UIDs with
 * their flags, keywords and internal dates. How to call it is in
 * storage.h. A batch is written like a group of deliveries: every file
 * into tmp/ (its source read ahead by the kernel for the whole batch, line
 * ends made CRLF, MIME summary computed from memory),
 * their writeback started together then each fsync'd, and in one write
 * transaction each linked into cur/ under its UID, the folder fsync'd
 * once, the rows inserted and committed once. */
#include "storage/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "storage/mime.h"

/* ---- mailboxes ---- */

struct imbox_ctx {
    char name[STORAGE_MBOX_NAME_MAX + 1];
    uint32_t uidvalidity;
    unsigned special_use;
    bool conflict;
    struct storage_mbox out;
};

/* The mailbox takes UIDVALIDITY uv: its UIDs start again from 1 and what
 * it remembered of the old ones (expunges for QRESYNC) goes. */
static int set_uidvalidity(struct txn *t, const struct mbox_row *m, uint32_t uv)
{
    char mdir[STORAGE_PATH_MAX];
    int rc;

    if ((rc = db_run(t->db, "UPDATE mailboxes SET uidvalidity = ?, uidnext = 1 WHERE id = ?", uv,
                     m->id)) != 0 ||
        (rc = db_run(t->db, "DELETE FROM expunged WHERE mailbox_id = ?", m->id)) != 0 ||
        (rc = pseen_forget_mailbox(t->db, m->id)) != 0 ||
        (rc = vanished_forget_mailbox(t->db, m->id)) != 0)
        return rc;
    if ((rc = mbox_path(t->u, m->name, mdir, sizeof(mdir))) != 0)
        return rc;
    return uidvalidity_file_write(mdir, uv, 1);
}

static int imbox_work(struct txn *t, void *ctx)
{
    struct imbox_ctx *c = ctx;
    struct mbox_row m;
    bool changed = false;
    int64_t id = 0;
    int rc = mbox_by_name(t->db, c->name, &m);

    if (rc == STORAGE_E_NOMBOX) {
        if ((rc = mailbox_room(t->db, c->name)) != 0 ||
            (rc = mbox_create_locked(t->u, c->name, c->special_use, c->uidvalidity, 1, &id)) != 0)
            return rc;
        changed = true;
    } else if (rc) {
        return rc;
    } else {
        id = m.id;
        if (c->uidvalidity && m.uidvalidity != c->uidvalidity) {
            int64_t count = 0;
            if ((rc = db_int_binds(t->db, &count,
                                   "SELECT count(*) FROM messages WHERE mailbox_id = ?", NULL,
                                   DB_INTS(m.id))) != 0)
                return rc;
            if (count) {
                c->conflict = true;
            } else {
                if ((rc = set_uidvalidity(t, &m, c->uidvalidity)) != 0)
                    return rc;
                changed = true;
            }
        }
        if (!c->conflict && c->special_use) {
            int64_t cur = 0;
            if ((rc = db_int_binds(t->db, &cur, "SELECT special_use FROM mailboxes WHERE id = ?",
                                   NULL, DB_INTS(m.id))) != 0)
                return rc;
            if ((unsigned)cur != c->special_use) {
                if ((rc = db_run(t->db, "UPDATE mailboxes SET special_use = ? WHERE id = ?",
                                 c->special_use, m.id)) != 0)
                    return rc;
                changed = true;
            }
        }
    }
    if ((rc = mbox_info_read(t->db, NULL, id, &c->out)) != 0)
        return rc;
    if (!changed)
        return TXN_NOTHING;
    return txn_event(t, STORAGE_EV_MAILBOX, id) ? 0 : STORAGE_E_NOMEM;
}

int storage_import_mailbox(struct storage_user *u, const char *name, uint32_t uidvalidity,
                           unsigned special_use, struct storage_mbox *out)
{
    struct imbox_ctx c = {.uidvalidity = uidvalidity, .special_use = special_use};
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = name_normalize(name, c.name, sizeof(c.name))) != 0)
        return rc;
    if ((rc = write_txn(u, imbox_work, &c)) != 0)
        return rc;
    *out = c.out;
    return c.conflict ? STORAGE_E_CONFLICT : 0;
}

/* ---- UIDNEXT ---- */

struct iuidnext_ctx {
    int64_t mbox;
    uint32_t uidnext;
};

/* The UIDs reserved for imports in a mailbox (its incarnation uv):
 * [lo, hi), 0 0 when none. Raising UIDNEXT for an import reserves the
 * UIDs between the old UIDNEXT and the new: deliveries meanwhile take
 * UIDs above, and the import fills the range below. */
static void resv_key(char *out, size_t cap, char which, int64_t mbox, uint32_t uv)
{
    pathf(out, cap, "import_%cuid:%" PRId64 ":%" PRIu32, which, mbox, uv);
}

static int resv_get(sqlite3 *db, int64_t mbox, uint32_t uv, uint32_t *lo, uint32_t *hi)
{
    char k[96];
    int64_t l = 0, h = 0;
    int rc;

    resv_key(k, sizeof(k), 'l', mbox, uv);
    if ((rc = db_meta_get(db, k, &l)) != 0)
        return rc;
    resv_key(k, sizeof(k), 'h', mbox, uv);
    if ((rc = db_meta_get(db, k, &h)) != 0)
        return rc;
    *lo = (uint32_t)l;
    *hi = (uint32_t)h;
    return 0;
}

bool import_reserved(sqlite3 *db, int64_t mbox, uint32_t uidvalidity, uint32_t uid)
{
    uint32_t lo, hi;
    return resv_get(db, mbox, uidvalidity, &lo, &hi) == 0 && uid >= lo && uid < hi;
}

/* Raises m's UIDNEXT to uidnext, the UIDs between kept for the import:
 * TXN_NOTHING when it is there already. */
static int raise_uidnext(struct txn *t, const struct mbox_row *m, uint32_t uidnext)
{
    char mdir[STORAGE_PATH_MAX], k[96];
    uint32_t lo, hi;
    int rc;

    if (m->uidnext >= uidnext)
        return TXN_NOTHING;
    if ((rc = resv_get(t->db, m->id, m->uidvalidity, &lo, &hi)) != 0)
        return rc;
    if (!hi)
        lo = m->uidnext;
    resv_key(k, sizeof(k), 'l', m->id, m->uidvalidity);
    if ((rc = db_meta_set(t->db, k, lo)) != 0)
        return rc;
    resv_key(k, sizeof(k), 'h', m->id, m->uidvalidity);
    if ((rc = db_meta_set(t->db, k, uidnext)) != 0)
        return rc;
    if ((rc = mbox_set_uidnext(t->db, m->id, uidnext)) != 0 ||
        (rc = mbox_path(t->u, m->name, mdir, sizeof(mdir))) != 0)
        return rc;
    /* what a rebuild of the index goes by */
    if ((rc = uidvalidity_file_write(mdir, m->uidvalidity, uidnext)) != 0)
        return rc;
    return txn_event(t, STORAGE_EV_MAILBOX, m->id) ? 0 : STORAGE_E_NOMEM;
}

static int iuidnext_work(struct txn *t, void *ctx)
{
    struct iuidnext_ctx *c = ctx;
    struct mbox_row m;
    int rc = mbox_by_id(t->db, c->mbox, &m);

    return rc ? rc : raise_uidnext(t, &m, c->uidnext);
}

int storage_import_uidnext(struct storage_user *u, int64_t mbox, uint32_t uidnext)
{
    struct iuidnext_ctx c = {mbox, uidnext};

    if (uidnext == 0)
        return STORAGE_E_INVAL;
    return write_txn(u, iuidnext_work, &c);
}

/* ---- the first UID of a source without UIDs ---- */

struct ibase_ctx {
    int64_t mbox;
    const char *source;
    size_t count;
    char key[STORAGE_PATH_MAX + 64];
    uint32_t base;
};

static int ibase_work(struct txn *t, void *ctx)
{
    struct ibase_ctx *c = ctx;
    struct mbox_row m;
    int64_t v = 0;
    int rc = mbox_by_id(t->db, c->mbox, &m);

    if (rc)
        return rc;
    /* per incarnation of the mailbox: a new UIDVALIDITY starts afresh */
    pathf(c->key, sizeof(c->key), "import_base:%" PRId64 ":%" PRIu32 ":%s", m.id, m.uidvalidity,
          c->source);
    if (!c->key[0])
        return STORAGE_E_INVAL;
    if ((rc = db_meta_get(t->db, c->key, &v)) != 0)
        return rc;
    if (v > 0) {
        c->base = (uint32_t)v;
    } else {
        c->base = m.uidnext;
        if ((rc = db_meta_set(t->db, c->key, m.uidnext)) != 0)
            return rc;
    }
    if ((uint64_t)c->base + c->count >= UINT32_MAX)
        return STORAGE_E_LIMIT;
    /* in the same transaction: no delivery takes one of them first */
    rc = raise_uidnext(t, &m, c->base + (uint32_t)c->count);
    return rc == TXN_NOTHING && v <= 0 ? 0 : rc;
}

int storage_import_base(struct storage_user *u, int64_t mbox, const char *source, size_t count,
                        uint32_t *base)
{
    struct ibase_ctx c = {.mbox = mbox, .source = source, .count = count};
    int rc = write_txn(u, ibase_work, &c);

    *base = rc == 0 ? c.base : 0;
    return rc;
}

/* ---- messages ---- */

/* One message of a batch while it is written. */
struct imsg {
    struct storage_import_msg *m;
    char kw[(STORAGE_KEYWORD_MAX + 1) * (STORAGE_KEYWORDS_MAX + 1) + 1];
    char tmp[STORAGE_PATH_MAX]; /* the file in tmp/, "" once gone */
    char dst[STORAGE_PATH_MAX]; /* linked there (in the transaction) */
    int fd;
    bool written; /* tmp holds it, summary made */
    bool restore; /* present without keywords: gets kw */
    bool linked;
    struct mime_summary ms;
};

struct ibatch {
    int64_t mbox;
    struct imsg *v;
    size_t n;
    char mdir[STORAGE_PATH_MAX];
};

/* The keywords of m coffre can hold, merged into out; the others counted. */
static int keywords_take(struct imsg *im)
{
    const struct storage_import_msg *m = im->m;
    const char *ok[STORAGE_KEYWORDS_MAX];
    size_t n = 0;

    im->m->keywords_dropped = 0;
    for (size_t i = 0; i < m->nkeywords; i++) {
        if (n < STORAGE_KEYWORDS_MAX && keywords_check(&m->keywords[i], 1) == 0)
            ok[n++] = m->keywords[i];
        else
            im->m->keywords_dropped++;
    }
    return keywords_merge("", STORAGE_STORE_SET, ok, n, im->kw, sizeof(im->kw));
}

/* Whether p[0..len) starts as gzip (RFC 1952) or zlib (RFC 1950, deflate
 * with a window of at most 32 KiB) data does. */
static bool compressed(const unsigned char *p, size_t len)
{
    if (len >= 2 && p[0] == 0x1f && p[1] == 0x8b)
        return true;
    return len >= 2 && (p[0] & 0x0f) == 8 && (p[0] >> 4) <= 7 && !(p[1] & 0x20) &&
           (p[0] * 256 + p[1]) % 31 == 0;
}

/* Inflates in[0..len) (gzip or zlib, told apart by its header) into *out
 * (malloc'd, caller frees). STORAGE_E_INVAL when it is not valid. */
static int inflate_all(const char *in, size_t len, char **out, size_t *outlen)
{
    z_stream z = {0};
    size_t cap = len * 4 + 4096, o = 0;
    char *buf = malloc(cap);
    int zr = Z_OK;

    *out = NULL;
    if (!buf)
        return STORAGE_E_NOMEM;
    if (inflateInit2(&z, 15 + 32) != Z_OK) {
        free(buf);
        return STORAGE_E_NOMEM;
    }
    z.next_in = (Bytef *)in;
    /* uInt: a message file is far below 4 GiB */
    z.avail_in = (uInt)len;
    while (zr != Z_STREAM_END) {
        if (o == cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                zr = Z_MEM_ERROR;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        z.next_out = (Bytef *)buf + o;
        z.avail_out = (uInt)(cap - o > UINT32_MAX ? UINT32_MAX : cap - o);
        zr = inflate(&z, Z_NO_FLUSH);
        o = (size_t)((char *)z.next_out - buf);
        if (zr != Z_OK && zr != Z_STREAM_END)
            break;
        if (zr == Z_OK && z.avail_in == 0 && z.avail_out != 0) {
            zr = Z_DATA_ERROR; /* truncated */
            break;
        }
    }
    inflateEnd(&z);
    if (zr != Z_STREAM_END) {
        free(buf);
        return zr == Z_MEM_ERROR ? STORAGE_E_NOMEM : STORAGE_E_INVAL;
    }
    *out = buf;
    *outlen = o;
    return 0;
}

/* The files of a batch are written by up to IMPORT_WRITERS threads at
 * once (one per processor): reading, converting and parsing a message
 * takes a processor while another one waits for the disk. */
#define IMPORT_WRITERS 4

/* A buffer a writer thread keeps from one message to the next: a message
 * read or converted into fresh memory each time costs page faults (and
 * for a big one, a mapping made and unmapped) more than the copy. */
struct rbuf {
    char *p;
    size_t cap;
};

/* The buffers writers leave for the next batch's: fresh ones each batch
 * would be mapped again and fault page by page. Those above
 * RBUF_KEEP_MAX (a rare big message) are let go. */
#define RBUF_POOL (IMPORT_WRITERS * 2)
#define RBUF_KEEP_MAX (32 * 1024 * 1024)

static pthread_mutex_t rbuf_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rbuf rbuf_pool[RBUF_POOL];
static size_t rbuf_npool;

static struct rbuf rbuf_get(void)
{
    struct rbuf b = {0};

    pthread_mutex_lock(&rbuf_lock);
    if (rbuf_npool)
        b = rbuf_pool[--rbuf_npool];
    pthread_mutex_unlock(&rbuf_lock);
    return b;
}

static void rbuf_put(struct rbuf *b)
{
    pthread_mutex_lock(&rbuf_lock);
    if (b->cap <= RBUF_KEEP_MAX && rbuf_npool < RBUF_POOL) {
        rbuf_pool[rbuf_npool++] = *b;
        b->p = NULL;
    }
    pthread_mutex_unlock(&rbuf_lock);
    free(b->p);
    b->p = NULL;
    b->cap = 0;
}

static int rbuf_fit(struct rbuf *b, size_t need)
{
    char *np;
    size_t cap;

    if (need <= b->cap)
        return 0;
    cap = need < 256 * 1024 ? 256 * 1024 : need + need / 4;
    if (!(np = malloc(cap)))
        return STORAGE_E_NOMEM;
    free(b->p);
    b->p = np;
    b->cap = cap;
    return 0;
}

/* Reads the whole file at path into b, its mtime into *mtime; *out is
 * b's text, or when decompress is set and the file is compressed, the
 * inflated text, malloc'd (*inflated set: caller frees). */
static int read_file(const char *path, bool decompress, struct rbuf *b, char **out, size_t *len,
                     bool *inflated, int64_t *mtime)
{
    struct stat sb;
    size_t off = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), rc = 0;

    *out = NULL;
    *inflated = false;
    if (fd < 0)
        return err_from_errno(errno);
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return STORAGE_E_INVAL;
    }
    if ((rc = rbuf_fit(b, (size_t)sb.st_size + 1)) != 0) {
        close(fd);
        return rc;
    }
    while (off < (size_t)sb.st_size) {
        ssize_t r = read(fd, b->p + off, (size_t)sb.st_size - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? err_from_errno(errno) : STORAGE_E_FAIL; /* shrunk under us */
            break;
        }
        off += (size_t)r;
    }
    close(fd);
    if (rc)
        return rc;
    *mtime = (int64_t)sb.st_mtime;
    if (decompress && compressed((const unsigned char *)b->p, off)) {
        rc = inflate_all(b->p, off, out, len);
        /* a text that only looks like a zlib header (two bytes, 1 in 31
         * of some texts) is taken as it is */
        if (rc != STORAGE_E_INVAL || (unsigned char)b->p[0] == 0x1f) {
            *inflated = rc == 0;
            return rc;
        }
    }
    *out = b->p;
    *len = off;
    return 0;
}

/* p[0..len) with each bare LF made CRLF, as a draft stores it: *out is p
 * itself when nothing changes, else the text in b, which is made room
 * for the worst (every byte an LF; pages never written to cost nothing)
 * so that it is gone through once: copied 16 bytes at a time where no LF
 * is (SSE2), a line at a time elsewhere. */
static int to_crlf(const char *p, size_t len, struct rbuf *b, const char **out, size_t *outlen)
{
    const char *e = p + len, *s = p, *nl;
    size_t o = 0;
    char *q;
    int rc;

    /* the text before the first bare LF is taken as it is */
    for (nl = memchr(p, '\n', len); nl && nl > p && nl[-1] == '\r';
         nl = memchr(nl + 1, '\n', (size_t)(e - nl - 1)))
        ;
    if (!nl) {
        *out = p;
        *outlen = len;
        return 0;
    }
    if (len > SIZE_MAX / 2 || (rc = rbuf_fit(b, len * 2)) != 0)
        return len > SIZE_MAX / 2 ? STORAGE_E_NOMEM : rc;
    q = b->p;
    memcpy(q, p, (size_t)(nl - p));
    o = (size_t)(nl - p);
    s = nl;
#ifdef __SSE2__
    {
        const __m128i lf = _mm_set1_epi8('\n');
        while (e - s >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
            unsigned mask = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, lf));
            if (!mask) {
                _mm_storeu_si128((__m128i *)(void *)(q + o), v);
                o += 16;
                s += 16;
                continue;
            }
            /* up to the first LF of the 16, then that LF */
            unsigned k = (unsigned)__builtin_ctz(mask);
            memcpy(q + o, s, k);
            o += k;
            s += k;
            if (s == p || s[-1] != '\r')
                q[o++] = '\r';
            q[o++] = '\n';
            s++;
        }
    }
#endif
    while (s < e) {
        nl = memchr(s, '\n', (size_t)(e - s));
        size_t run = nl ? (size_t)(nl - s) : (size_t)(e - s);
        memcpy(q + o, s, run);
        o += run;
        if (!nl)
            break;
        if (nl == p || nl[-1] != '\r')
            q[o++] = '\r';
        q[o++] = '\n';
        s = nl + 1;
    }
    *out = q;
    *outlen = o;
    return 0;
}

/* Writes message im into tmp/ (not synced yet; its writeback started),
 * with its summary; the text passes through the writer's buffers in and
 * conv. A failure is the message's own. */
static int write_one(struct ibatch *b, struct imsg *im, struct rbuf *in, struct rbuf *conv)
{
    struct storage_import_msg *m = im->m;
    char tmpdir[STORAGE_PATH_MAX], *src = NULL;
    const char *data = NULL;
    size_t len = 0, dlen = 0;
    int64_t mtime = 0;
    bool inflated = false;
    int rc;

    if ((rc = keywords_take(im)) != 0)
        return rc;
    if (m->path) {
        if ((rc = read_file(m->path, m->decompress, in, &src, &len, &inflated, &mtime)) != 0)
            return rc;
    } else {
        if (!m->data && m->len)
            return STORAGE_E_INVAL;
        src = (char *)m->data;
        len = m->len;
    }
    if (m->internal_date <= 0)
        m->internal_date = m->path ? mtime : now_unix();
    rc = to_crlf(src ? src : "", len, conv, &data, &dlen);
    if (rc == 0 && mime_parse(data, dlen, &im->ms) != 0)
        rc = STORAGE_E_NOMEM;
    pathf(tmpdir, sizeof(tmpdir), "%s/tmp", b->mdir);
    if (rc == 0 && (rc = tmp_file_open(tmpdir, im->tmp, sizeof(im->tmp), &im->fd)) == 0) {
        size_t off = 0;
        while (off < dlen) {
            ssize_t w = write(im->fd, data + off, dlen - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = err_from_errno(w < 0 ? errno : ENOSPC);
                break;
            }
            off += (size_t)w;
        }
        if (rc == 0)
            (void)sync_file_range(im->fd, 0, 0, SYNC_FILE_RANGE_WRITE); /* a hint only */
        if (rc) {
            close(im->fd);
            im->fd = -1;
            unlink(im->tmp);
            im->tmp[0] = '\0';
        }
    }
    if (inflated)
        free(src);
    if (rc == 0) {
        m->size = dlen;
        im->written = true;
    }
    return rc;
}

struct writer {
    struct ibatch *b;
    size_t first, step;
    int rc; /* an fsync that failed: the batch fails */
    pthread_t th;
};

/* Writes the messages first, first + step, ... then makes them durable:
 * each file's writeback was started as it was written, so each fsync
 * mostly finds its data on the disk already. */
static void *writer_run(void *arg)
{
    struct writer *w = arg;
    struct ibatch *b = w->b;

    struct rbuf in = rbuf_get(), conv = rbuf_get();

    for (size_t i = w->first; i < b->n; i += w->step) {
        struct storage_import_msg *m = b->v[i].m;
        int r;
        if (m->status != 0)
            continue;
        if ((r = write_one(b, &b->v[i], &in, &conv)) != 0) {
            m->status = STORAGE_IMPORT_FAILED;
            m->rc = r;
        }
    }
    rbuf_put(&in);
    rbuf_put(&conv);
    for (size_t i = w->first; i < b->n && !w->rc; i += w->step)
        if (b->v[i].fd >= 0 && fsync(b->v[i].fd) < 0)
            w->rc = err_from_errno(errno);
    return NULL;
}

/* Asks the kernel to read the batch's source files ahead, in the order
 * the writers take them, beside them: each writer reads one file at a
 * time, and a source not in memory would otherwise come from the disk one
 * read after another. At most IMPORT_READAHEAD_MAX bytes a batch, so that
 * a batch of big messages does not push out of memory what it read ahead
 * before the writers get to it. A hint only: a file that cannot be opened
 * here is the writer's to report. */
#define IMPORT_READAHEAD_MAX (128u * 1024 * 1024)

struct prefetch {
    const char **paths; /* taken before the writers start */
    size_t n;
    pthread_t th;
};

static void *prefetch_run(void *arg)
{
    struct prefetch *p = arg;
    uint64_t asked = 0;

    for (size_t i = 0; i < p->n && asked < IMPORT_READAHEAD_MAX; i++) {
        int fd = open(p->paths[i], O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        struct stat sb;
        if (fd < 0)
            continue;
        if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
            (void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
            asked += (uint64_t)sb.st_size;
        }
        close(fd);
    }
    return NULL;
}

/* Starts the read-ahead of the files of b still to write; false when it
 * did not start (nothing to read, or no memory or thread for it). */
static bool prefetch_start(struct ibatch *b, struct prefetch *p)
{
    p->n = 0;
    if (b->n < 2 || !(p->paths = malloc(b->n * sizeof(*p->paths))))
        return false;
    for (size_t i = 0; i < b->n; i++)
        if (b->v[i].m->status == 0 && b->v[i].m->path)
            p->paths[p->n++] = b->v[i].m->path;
    if (p->n > 1 && pthread_create(&p->th, NULL, prefetch_run, p) == 0)
        return true;
    free(p->paths);
    return false;
}

static void prefetch_end(struct prefetch *p)
{
    pthread_join(p->th, NULL);
    free(p->paths);
}

static int write_all(struct ibatch *b)
{
    struct writer w[IMPORT_WRITERS];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t nw = cpus < 1 ? 1 : cpus > IMPORT_WRITERS ? IMPORT_WRITERS : (size_t)cpus, started;
    struct prefetch pf;
    bool prefetching = prefetch_start(b, &pf);
    int rc = 0;

    if (nw > b->n)
        nw = b->n;
    for (size_t t = 0; t < nw; t++)
        w[t] = (struct writer){.b = b, .first = t, .step = nw};
    /* this thread is the first writer, the others run beside it */
    for (started = 1; started < nw; started++)
        if (pthread_create(&w[started].th, NULL, writer_run, &w[started]) != 0)
            break;
    if (started < nw) { /* no thread: this one writes their share too */
        for (size_t t = started; t < nw; t++)
            w[t].step = nw;
    }
    writer_run(&w[0]);
    for (size_t t = 1; t < started; t++)
        pthread_join(w[t].th, NULL);
    for (size_t t = started; t < nw; t++)
        writer_run(&w[t]);
    if (prefetching)
        prefetch_end(&pf);
    for (size_t t = 0; t < nw; t++)
        if (w[t].rc && !rc)
            rc = w[t].rc;
    return rc;
}

/* The two look-ups classify makes for each message, prepared once a
 * batch. */
struct uid_lookup {
    sqlite3 *db;
    sqlite3_stmt *present, *expunged;
};

static int uid_lookup_open(sqlite3 *db, struct uid_lookup *q)
{
    int rc;

    q->db = db;
    q->present = q->expunged = NULL;
    if ((rc = db_prepare(db, "SELECT keywords = '' FROM messages WHERE mailbox_id = ? AND uid = ?",
                         &q->present)) != 0 ||
        (rc = db_prepare(db, "SELECT 1 FROM expunged WHERE mailbox_id = ? AND uid = ? LIMIT 1",
                         &q->expunged)) != 0)
        db_finalize(q->present);
    return rc;
}

static void uid_lookup_close(struct uid_lookup *q)
{
    db_finalize(q->present);
    db_finalize(q->expunged);
}

/* Runs st for (mbox, uid): *row, it returned one; *col0, the first
 * column of that row is not 0. */
static int uid_lookup_run(struct uid_lookup *q, sqlite3_stmt *st, int64_t mbox, uint32_t uid,
                          bool *row, bool *col0)
{
    int rc;

    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, mbox);
    sqlite3_bind_int64(st, 2, uid);
    rc = sqlite3_step(st);
    *row = rc == SQLITE_ROW;
    *col0 = *row && sqlite3_column_int(st, 0);
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : err_from_sqlite(q->db, rc);
    sqlite3_reset(st);
    return rc;
}

/* Sorts out, from what the index holds now, the messages of the batch
 * that are skipped (present or UID used) and those whose keywords come
 * back. */
static int classify(sqlite3 *db, struct ibatch *b, const struct mbox_row *mb, bool *any)
{
    struct uid_lookup q;
    uint32_t lo, hi;
    int rc = resv_get(db, mb->id, mb->uidvalidity, &lo, &hi);

    *any = false;
    if (rc || (rc = uid_lookup_open(db, &q)) != 0)
        return rc;
    for (size_t i = 0; i < b->n; i++) {
        struct imsg *im = &b->v[i];
        struct storage_import_msg *m = im->m;
        bool present, kw_empty, gone = false, one;
        if (m->status == STORAGE_IMPORT_FAILED)
            continue;
        if (m->uid >= mb->uidnext) {
            m->status = 0;
            *any = true;
            continue;
        }
        if ((rc = uid_lookup_run(&q, q.present, b->mbox, m->uid, &present, &kw_empty)) != 0)
            break;
        /* reserved for the import, and not used since (expunged) */
        if (!present && m->uid >= lo && m->uid < hi &&
            (rc = uid_lookup_run(&q, q.expunged, b->mbox, m->uid, &gone, &one)) == 0 && !gone) {
            m->status = 0;
            *any = true;
            continue;
        }
        if (rc)
            break;
        m->status = present ? STORAGE_IMPORT_PRESENT : STORAGE_IMPORT_UID_USED;
        im->restore = present && kw_empty && m->nkeywords > 0;
        *any |= im->restore;
    }
    uid_lookup_close(&q);
    return rc;
}

static int ibatch_work(struct txn *t, void *ctx)
{
    struct ibatch *b = ctx;
    struct pending_event *pe_new = NULL, *pe_kw = NULL;
    char cur[STORAGE_PATH_MAX];
    struct mbox_row mb;
    uint64_t modseq = 0;
    uint32_t uidnext, last = 0;
    size_t linked = 0;
    bool any;
    int rc;

    if ((rc = mbox_by_id(t->db, b->mbox, &mb)) != 0)
        return rc;
    /* again, under the lock: another import may have run meanwhile */
    if ((rc = classify(t->db, b, &mb, &any)) != 0)
        return rc;
    if (!any)
        return TXN_NOTHING;
    if ((rc = mbox_bump_modseq(t->db, mb.id, &modseq)) != 0)
        return rc;
    pathf(cur, sizeof(cur), "%s/cur", b->mdir);
    uidnext = mb.uidnext;
    for (size_t i = 0; i < b->n; i++) {
        struct imsg *im = &b->v[i];
        struct storage_import_msg *m = im->m;
        char unique[256], fname[512], rel[600];
        if (im->restore && m->status == STORAGE_IMPORT_PRESENT) {
            char kw[sizeof(im->kw)];
            if (keywords_take(im) != 0 || !im->kw[0])
                continue;
            memcpy(kw, im->kw, sizeof(kw));
            if ((rc = db_run_text(t->db,
                                  "UPDATE messages SET keywords = ?, modseq = ?"
                                  " WHERE mailbox_id = ? AND uid = ? AND keywords = ''",
                                  kw, (int64_t)modseq, mb.id, m->uid)) != 0)
                return rc;
            m->keywords_restored = sqlite3_changes(t->db) > 0;
            if (m->keywords_restored) {
                if (!pe_kw && !(pe_kw = txn_event(t, STORAGE_EV_FLAGS, mb.id)))
                    return STORAGE_E_NOMEM;
                if (uidlist_add(&pe_kw->uids, m->uid) != 0)
                    return STORAGE_E_NOMEM;
                pe_kw->modseq = modseq;
            }
            continue;
        }
        if (m->status != 0 || !im->written)
            continue;
        if (m->uid <= last) { /* not ascending: its place was taken */
            m->status = STORAGE_IMPORT_UID_USED;
            continue;
        }
        for (int attempt = 0;; attempt++) {
            if ((rc = make_unique(unique, sizeof(unique))) != 0 ||
                (rc = msg_file_name(fname, sizeof(fname), unique, m->uid, m->size, m->flags)) != 0)
                return rc;
            pathf(im->dst, sizeof(im->dst), "%s/%s", cur, fname);
            if (link(im->tmp, im->dst) == 0)
                break;
            /* a file that cannot be linked fails the batch: the UIDs after
             * it must not pass it by */
            if (errno != EEXIST || attempt >= 5)
                return err_from_errno(errno);
        }
        im->linked = true;
        linked++;
        /* the internal date is the file's time, as a rebuild reads it; made
         * durable with the folder's fsync below (the same journal commit) */
        (void)futimens(im->fd, (const struct timespec[2]){{.tv_sec = m->internal_date},
                                                          {.tv_sec = m->internal_date}});
        pathf(rel, sizeof(rel), "cur/%s", fname);
        rc = msg_insert(t->db, mb.id, m->uid, rel, m->size, m->internal_date,
                        m->flags & STORAGE_FLAGS_ALL, m->flags & STORAGE_FLAGS_ALL, im->kw, &im->ms,
                        0, NULL, modseq);
        if (rc)
            return rc;
        last = m->uid;
        if (m->uid >= uidnext)
            uidnext = m->uid + 1;
        if (!pe_new && !(pe_new = txn_event(t, STORAGE_EV_NEW, mb.id)))
            return STORAGE_E_NOMEM;
        if (uidlist_add(&pe_new->uids, m->uid) != 0)
            return STORAGE_E_NOMEM;
        pe_new->modseq = modseq;
    }
    if (linked) {
        if ((rc = mbox_set_uidnext(t->db, mb.id, uidnext)) != 0 || (rc = fsync_dir(cur)) != 0)
            return rc;
        /* the folder's times as of the last link, which the next open compares */
        if ((rc = dir_mtime_changed(t->u, mb.id, b->mdir, true)) != 0)
            return rc;
    }
    return 0;
}

static void ibatch_undo(struct txn *t, void *ctx)
{
    struct ibatch *b = ctx;

    (void)t;
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i].linked)
            unlink(b->v[i].dst);
        b->v[i].linked = false;
    }
}

static void ibatch_committed(struct txn *t, void *ctx)
{
    struct ibatch *b = ctx;

    (void)t;
    for (size_t i = 0; i < b->n; i++)
        if (b->v[i].linked && b->v[i].m->status == 0)
            b->v[i].m->status = STORAGE_IMPORT_ADDED;
}

/* A batch whose files are written (storage_import_write), its commit to
 * come (storage_import_commit). */
struct storage_import_batch {
    struct storage_user *u;
    struct storage_import_msg *m;
    struct ibatch b;
    int rc;   /* the write's outcome: not 0, nothing is committed */
    bool any; /* something to commit */
};

int storage_import_write(struct storage_user *u, int64_t mbox, struct storage_import_msg *m,
                         size_t n, struct storage_import_batch **out)
{
    struct storage_import_batch *ib;
    struct ibatch *b;
    struct mbox_row mb;
    sqlite3 *db;
    int rc;

    *out = NULL;
    if (!(ib = calloc(1, sizeof(*ib))))
        return STORAGE_E_NOMEM;
    ib->u = u;
    ib->m = m;
    b = &ib->b;
    b->mbox = mbox;
    b->n = n;
    if (n && !(b->v = calloc(n, sizeof(*b->v)))) {
        free(ib);
        return STORAGE_E_NOMEM;
    }
    *out = ib;
    for (size_t i = 0; i < n; i++) {
        b->v[i].m = &m[i];
        b->v[i].fd = -1;
        m[i].status = 0;
        m[i].rc = 0;
        m[i].size = 0;
        m[i].keywords_dropped = 0;
        m[i].keywords_restored = false;
        if (m[i].uid == 0 || m[i].uid == UINT32_MAX) {
            m[i].status = STORAGE_IMPORT_FAILED;
            m[i].rc = STORAGE_E_INVAL;
        }
    }
    if (n == 0)
        return 0;
    /* what the index holds already is not written again (a rerun) */
    if (!(db = reader_get(u)))
        return ib->rc = STORAGE_E_TEMP;
    rc = mbox_by_id(db, mbox, &mb);
    if (rc == 0)
        rc = classify(db, b, &mb, &ib->any);
    reader_put(u, db);
    if (rc == 0 && ib->any && (rc = mbox_path(u, mb.name, b->mdir, sizeof(b->mdir))) == 0)
        rc = write_all(b);
    return ib->rc = rc;
}

int storage_import_commit(struct storage_import_batch *ib)
{
    static const struct txn_path path = {
        .work = ibatch_work, .undo = ibatch_undo, .committed = ibatch_committed};
    struct ibatch *b;
    int rc;

    if (!ib)
        return STORAGE_E_NOMEM;
    b = &ib->b;
    rc = ib->rc;
    if (rc == 0 && ib->any)
        rc = write_txn_path(ib->u, &path, b);
    for (size_t i = 0; i < b->n; i++) {
        struct imsg *im = &b->v[i];
        if (im->fd >= 0)
            close(im->fd);
        if (im->tmp[0])
            unlink(im->tmp);
        mime_summary_free(&im->ms);
        if (rc == 0 && ib->m[i].status == 0) { /* its UIDVALIDITY changed meanwhile */
            ib->m[i].status = STORAGE_IMPORT_FAILED;
            ib->m[i].rc = STORAGE_E_TEMP;
        }
    }
    free(b->v);
    free(ib);
    return rc;
}

int storage_import_messages(struct storage_user *u, int64_t mbox, struct storage_import_msg *m,
                            size_t n)
{
    struct storage_import_batch *ib;
    int rc = storage_import_write(u, mbox, m, n, &ib);

    return ib ? storage_import_commit(ib) : rc;
}
