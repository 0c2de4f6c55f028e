/* SORT and THREAD (RFC 5256, RFC 5957) from the index. The keys of every
 * body are computed once, when it is inserted (mime_sort.c), into the
 * narrow table sortkeys: casemapped strings compared as bytes, the sent
 * date, and the message ids threading needs. A SORT or THREAD reads the
 * matching rows once and orders them in memory, O(n log n), without
 * decoding anything per comparison and without opening a message file. */
#include "storage/internal.h"

#include <stdlib.h>
#include <string.h>

#include "server/base/buf.h"
#include "storage/mime.h"

/* ---- keys at insert time ---- */

/* The message ids of v ("<id>" tokens, no white space inside), appended
 * to b separated by spaces; at most max of them (0: all). The count. */
size_t msgid_list(struct buf *b, const char *v, size_t max)
{
    size_t n = 0;

    for (const char *p = v; p && *p && (max == 0 || n < max);) {
        const char *lt = strchr(p, '<'), *q;
        if (!lt)
            break;
        for (q = lt + 1; *q && *q != '>' && *q != '<' && *q != ' ' && *q != '\t'; q++)
            ;
        if (*q == '>' && q > lt + 1) {
            if (n++)
                buf_addc(b, ' ');
            buf_add(b, lt, (size_t)(q - lt + 1));
            p = q + 1;
        } else {
            p = *q ? q : q; /* a broken id: resume at what stopped it */
            if (*p == '>')
                p++;
        }
    }
    return n;
}

static void bind_key(sqlite3_stmt *st, int i, const char *s)
{
    if (s && *s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

int sortkeys_insert(sqlite3 *db, int64_t body_id, int64_t sent_date, const char *envelope,
                    const char *subject, const char *message_id, const char *in_reply_to,
                    const char *references)
{
    struct mime_sort_keys k;
    struct buf id = {0}, par = {0};
    sqlite3_stmt *st;
    int rc;

    if (mime_sort_keys(envelope, subject, &k) != 0)
        return STORAGE_E_NOMEM;
    msgid_list(&id, message_id, 1);
    /* RFC 5256 3: References, else the first id of In-Reply-To */
    if (msgid_list(&par, references, 0) == 0)
        msgid_list(&par, in_reply_to, 1);
    rc = id.oom || par.oom ? STORAGE_E_NOMEM : 0;
    if (rc == 0)
        rc = db_prepare(db,
                        "INSERT OR REPLACE INTO sortkeys(body_id, sent_date, subject, refwd,"
                        " from_, to_, cc, dfrom, dto, dcc, message_id, parents)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        &st);
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, body_id);
        sqlite3_bind_int64(st, 2, sent_date);
        bind_key(st, 3, k.subject);
        sqlite3_bind_int(st, 4, k.refwd);
        for (int i = 0; i < 3; i++) {
            bind_key(st, 5 + i, k.addr[i]);
            bind_key(st, 8 + i, k.display[i]);
        }
        bind_key(st, 11, id.p);
        bind_key(st, 12, par.p);
        rc = db_step_done(db, st);
    }
    buf_free(&id);
    buf_free(&par);
    mime_sort_keys_free(&k);
    return rc;
}

/* Schema 6 to 7, inside a write transaction: the keys of every body, from
 * what the index holds (the ENVELOPE, the decoded subject, the message ids
 * and, for References, the header block; a body whose header block was
 * too long to keep threads by In-Reply-To alone). */
int sortkeys_migrate_6(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int64_t last = 0;
    int rc = db_exec(db, "CREATE TABLE IF NOT EXISTS sortkeys(" SORTKEYS_COLUMNS ");");

    for (bool more = rc == 0; more && rc == 0;) {
        int s;
        more = false;
        rc = db_prepare(
            db,
            "SELECT b.id, b.sent_date, b.envelope, b.subject, b.message_id,"
            " b.in_reply_to, " HEADER_OF(
                "h", "b") " FROM bodies b"
                          " LEFT JOIN headers h ON h.body_id = b.id WHERE b.id > ? ORDER BY b.id"
                          " LIMIT 1000",
            &st);
        if (rc)
            break;
        sqlite3_bind_int64(st, 1, last);
        /* the batch is read whole before its rows are written */
        struct row {
            int64_t id, date;
            char *env, *subj, *mid, *irt, *refs;
        } *rows = calloc(1000, sizeof(*rows));
        size_t n = 0;
        if (!rows)
            rc = STORAGE_E_NOMEM;
        while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
            struct row *r = &rows[n++];
            const char *h = (const char *)sqlite3_column_blob(st, 6);
            size_t hl = (size_t)sqlite3_column_bytes(st, 6);
            const char *t;
            r->id = sqlite3_column_int64(st, 0);
            r->date = sqlite3_column_int64(st, 1);
            r->env = (t = (const char *)sqlite3_column_text(st, 2)) ? strdup(t) : NULL;
            r->subj = (t = (const char *)sqlite3_column_text(st, 3)) ? strdup(t) : NULL;
            r->mid = (t = (const char *)sqlite3_column_text(st, 4)) ? strdup(t) : NULL;
            r->irt = (t = (const char *)sqlite3_column_text(st, 5)) ? strdup(t) : NULL;
            r->refs = h ? mime_header_value_unfolded(h, hl, "references") : NULL;
            more = true;
        }
        if (rc == 0 && s != SQLITE_DONE)
            rc = err_from_sqlite(db, s);
        db_finalize(st);
        for (size_t i = 0; i < n; i++) {
            if (rc == 0)
                rc = sortkeys_insert(db, rows[i].id, rows[i].date, rows[i].env, rows[i].subj,
                                     rows[i].mid, rows[i].irt, rows[i].refs);
            last = rows[i].id;
            free(rows[i].env);
            free(rows[i].subj);
            free(rows[i].mid);
            free(rows[i].irt);
            free(rows[i].refs);
        }
        free(rows);
    }
    return rc;
}

/* ---- loading the matching rows ---- */

void rows_add_str(struct rows *rs, struct srow *r, int k, const char *t, size_t len)
{
    size_t at = rs->pool.len;

    r->s[k] = (const char *)(uintptr_t)at;
    buf_add(&rs->pool, t, len + 1);
    if (k == S_PARENTS && !rs->pool.oom) {
        /* "<a> <b>" becomes "<a>\0<b>\0\0" for the threading */
        for (size_t j = at; j < at + len; j++)
            if (rs->pool.p[j] == ' ')
                rs->pool.p[j] = '\0';
        buf_addc(&rs->pool, '\0');
    }
}

static void rows_free(struct rows *rs)
{
    free(rs->r);
    buf_free(&rs->pool);
}

bool sort_only_uidsets(const struct storage_search *q, struct uidsets *us, int *rc)
{
    for (; q; q = q->next) {
        if (q->op == STORAGE_SEARCH_ALL)
            continue;
        if (q->op == STORAGE_SEARCH_AND) {
            if (!sort_only_uidsets(q->child, us, rc))
                return false;
            continue;
        }
        if (q->op != STORAGE_SEARCH_UID || us->n == sizeof(us->s) / sizeof(us->s[0]))
            return false;
        if (storage_uidset_normalize(&q->set, &us->s[us->n].r, &us->s[us->n].n) != 0) {
            *rc = STORAGE_E_NOMEM;
            return false;
        }
        us->n++;
    }
    return true;
}

static bool in_uidsets(const struct uidsets *us, uint32_t uid)
{
    for (size_t k = 0; k < us->n; k++) {
        size_t lo = 0, hi = us->s[k].n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (uid < us->s[k].r[mid].lo)
                hi = mid;
            else if (uid > us->s[k].r[mid].hi)
                lo = mid + 1;
            else
                break;
        }
        if (lo >= hi)
            return false;
    }
    return true;
}

/* The rows of the messages q matches, in UID order, with the string
 * columns in want (bits of 1 << S_*). */
static int load_rows(struct storage_user *u, int64_t mbox, const struct storage_search *q,
                     unsigned want, struct rows *rs)
{
    struct storage_uidlist match = {0};
    struct uidsets us = {0};
    sqlite3_stmt *st = NULL;
    sqlite3 *db;
    size_t mi = 0;
    int rc = 0, s;
    bool direct;

    memset(rs, 0, sizeof(*rs));
    direct = sort_only_uidsets(q, &us, &rc);
    if (rc == 0 && !direct) {
        for (size_t k = 0; k < us.n; k++)
            free(us.s[k].r);
        us.n = 0;
        rc = storage_search(u, mbox, q, &match);
        if (rc == 0 && match.n == 0)
            return 0;
    }
    if (rc) {
        for (size_t k = 0; k < us.n; k++)
            free(us.s[k].r);
        return rc;
    }
    if (!(db = reader_get(u))) {
        rc = STORAGE_E_TEMP;
        goto out;
    }
    /* ARRIVAL and SIZE alone need no key of sortkeys */
    rc = db_prepare(db,
                    want & KEYS_ANY
                        ? "SELECT m.uid, m.internal_date, m.size, k.sent_date, k.refwd, k.subject,"
                          " k.from_, k.to_, k.cc, k.dfrom, k.dto, k.dcc, k.message_id, k.parents"
                          " FROM messages m LEFT JOIN sortkeys k ON k.body_id = m.body_id"
                          " WHERE m.mailbox_id = ? AND m.uid >= ? AND m.uid <= ? ORDER BY m.uid"
                        : "SELECT m.uid, m.internal_date, m.size, 0, 0"
                          " FROM messages m"
                          " WHERE m.mailbox_id = ? AND m.uid >= ? AND m.uid <= ? ORDER BY m.uid",
                    &st);
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, mbox);
        sqlite3_bind_int64(st, 2, direct ? 0 : match.uids[0]);
        sqlite3_bind_int64(st, 3, direct ? UINT32_MAX : match.uids[match.n - 1]);
        buf_addc(&rs->pool, '\0'); /* offset 0: the empty string */
    }
    while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
        uint32_t uid = (uint32_t)sqlite3_column_int64(st, 0);
        if (direct) {
            if (!in_uidsets(&us, uid))
                continue;
        } else {
            while (mi < match.n && match.uids[mi] < uid)
                mi++;
            if (mi >= match.n)
                break;
            if (match.uids[mi] != uid)
                continue;
        }
        if ((rc = array_grow(&rs->r, &rs->cap, rs->n, sizeof(*rs->r), 1024)) != 0)
            break;
        struct srow *r = &rs->r[rs->n++];
        memset(r, 0, sizeof(*r));
        r->uid = uid;
        r->arrival = sqlite3_column_int64(st, 1);
        r->size = sqlite3_column_int64(st, 2);
        r->date = sqlite3_column_int64(st, 3);
        if (r->date == 0) /* RFC 5256: no usable Date: the internal date */
            r->date = r->arrival;
        r->refwd = sqlite3_column_int(st, 4);
        for (int k = 0; k < S_N; k++) {
            const char *t;
            if (!(want & (1u << k)) || !(t = (const char *)sqlite3_column_text(st, 5 + k)))
                continue;
            rows_add_str(rs, r, k, t, (size_t)sqlite3_column_bytes(st, 5 + k));
        }
    }
    if (rc == 0 && s != SQLITE_DONE && s != SQLITE_ROW)
        rc = err_from_sqlite(db, s);
    if (rc == 0 && rs->pool.oom)
        rc = STORAGE_E_NOMEM;
    db_finalize(st);
    reader_put(u, db);
out:
    storage_uidlist_free(&match);
    for (size_t k = 0; k < us.n; k++)
        free(us.s[k].r);
    if (rc) {
        rows_free(rs);
        return rc;
    }
    for (size_t i = 0; i < rs->n; i++)
        for (int k = 0; k < S_N; k++)
            rs->r[i].s[k] = rs->pool.p + (uintptr_t)rs->r[i].s[k];
    return 0;
}

/* ---- SORT ---- */

struct sort_ctx {
    const struct storage_sort_crit *c;
    size_t n;
};

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

static int sort_cmp(const void *x, const void *y, void *arg)
{
    const struct srow *a = *(const struct srow *const *)x, *b = *(const struct srow *const *)y;
    const struct sort_ctx *sc = arg;

    for (size_t i = 0; i < sc->n; i++) {
        int c = 0;
        switch (sc->c[i].key) {
        case STORAGE_SORT_ARRIVAL:
            c = cmp_i64(a->arrival, b->arrival);
            break;
        case STORAGE_SORT_DATE:
            c = cmp_i64(a->date, b->date);
            break;
        case STORAGE_SORT_SIZE:
            c = cmp_i64(a->size, b->size);
            break;
        case STORAGE_SORT_SUBJECT:
            c = strcmp(a->s[S_SUBJECT], b->s[S_SUBJECT]);
            break;
        case STORAGE_SORT_FROM:
            c = strcmp(a->s[S_FROM], b->s[S_FROM]);
            break;
        case STORAGE_SORT_TO:
            c = strcmp(a->s[S_TO], b->s[S_TO]);
            break;
        case STORAGE_SORT_CC:
            c = strcmp(a->s[S_CC], b->s[S_CC]);
            break;
        case STORAGE_SORT_DISPLAYFROM:
            c = strcmp(a->s[S_DFROM], b->s[S_DFROM]);
            break;
        case STORAGE_SORT_DISPLAYTO:
            c = strcmp(a->s[S_DTO], b->s[S_DTO]);
            break;
        case STORAGE_SORT_DISPLAYCC:
            c = strcmp(a->s[S_DCC], b->s[S_DCC]);
            break;
        }
        if (c)
            return sc->c[i].reverse ? -c : c;
    }
    /* RFC 5256: exact matches in the order of the mailbox */
    return a->uid < b->uid ? -1 : a->uid > b->uid;
}

struct skey {
    uint64_t pre; /* ordered as the first criterion orders (REVERSE included) */
    const struct srow *r;
};

static const char *str_key(const struct srow *r, enum storage_sort_key k)
{
    switch (k) {
    case STORAGE_SORT_SUBJECT:
        return r->s[S_SUBJECT];
    case STORAGE_SORT_FROM:
        return r->s[S_FROM];
    case STORAGE_SORT_TO:
        return r->s[S_TO];
    case STORAGE_SORT_CC:
        return r->s[S_CC];
    case STORAGE_SORT_DISPLAYFROM:
        return r->s[S_DFROM];
    case STORAGE_SORT_DISPLAYTO:
        return r->s[S_DTO];
    case STORAGE_SORT_DISPLAYCC:
        return r->s[S_DCC];
    default:
        return NULL;
    }
}

/* The first 8 bytes of a string key, big-endian (a shorter key padded
 * with NULs sorts first, as strcmp has it), or a number key with its sign
 * bit flipped: unsigned order is the key's order. */
static uint64_t key_prefix(const struct srow *r, const struct storage_sort_crit *c)
{
    const char *str = str_key(r, c->key);
    uint64_t v = 0;

    if (str) {
        size_t i = 0;
        for (; i < 8 && str[i]; i++)
            v = v << 8 | (unsigned char)str[i];
        v <<= 8 * (8 - i) % 64;
        if (i == 0)
            v = 0;
    } else {
        int64_t x = c->key == STORAGE_SORT_ARRIVAL ? r->arrival
                    : c->key == STORAGE_SORT_DATE  ? r->date
                                                   : r->size;
        v = (uint64_t)x ^ (1ull << 63);
    }
    return c->reverse ? ~v : v;
}

static int skey_cmp(const void *x, const void *y, void *arg)
{
    const struct skey *a = x, *b = y;
    if (a->pre != b->pre)
        return a->pre < b->pre ? -1 : 1;
    return sort_cmp(&a->r, &b->r, arg);
}

static unsigned sort_wants(const struct storage_sort_crit *c, size_t n)
{
    static const int col[] = {
        [STORAGE_SORT_SUBJECT] = S_SUBJECT,
        [STORAGE_SORT_FROM] = S_FROM,
        [STORAGE_SORT_TO] = S_TO,
        [STORAGE_SORT_CC] = S_CC,
        [STORAGE_SORT_DISPLAYFROM] = S_DFROM,
        [STORAGE_SORT_DISPLAYTO] = S_DTO,
        [STORAGE_SORT_DISPLAYCC] = S_DCC,
        [STORAGE_SORT_ARRIVAL] = -1,
        [STORAGE_SORT_DATE] = -1,
        [STORAGE_SORT_SIZE] = -1,
    };
    unsigned w = 0;
    for (size_t i = 0; i < n; i++) {
        if (col[c[i].key] >= 0)
            w |= 1u << col[c[i].key];
        if (c[i].key == STORAGE_SORT_DATE)
            w |= KEYS_DATE;
    }
    return w;
}

int storage_sort(struct storage_user *u, int64_t mbox, const struct storage_search *q,
                 const struct storage_sort_crit *crit, size_t n, struct storage_uidlist *out)
{
    struct sort_ctx sc = {crit, n};
    struct rows rs;
    int rc;

    /* from the keys and orders kept in memory, else from the index */
    if ((rc = sortcache_sort(u, mbox, q, crit, n, out)) != 1)
        return rc;
    memset(out, 0, sizeof(*out));
    if ((rc = load_rows(u, mbox, q, sort_wants(crit, n), &rs)) != 0)
        return rc;
    /* the rows are large and their strings elsewhere: what is sorted is
     * the first key's first 8 bytes as a number beside a pointer to the
     * row, which decides most comparisons without leaving the array */
    struct skey *p = malloc((rs.n ? rs.n : 1) * sizeof(*p));
    if (!p) {
        rows_free(&rs);
        return STORAGE_E_NOMEM;
    }
    for (size_t i = 0; i < rs.n; i++) {
        p[i].pre = n ? key_prefix(&rs.r[i], &crit[0]) : 0;
        p[i].r = &rs.r[i];
    }
    qsort_r(p, rs.n, sizeof(*p), skey_cmp, &sc);
    out->uids = malloc((rs.n ? rs.n : 1) * sizeof(*out->uids));
    if (!out->uids)
        rc = STORAGE_E_NOMEM;
    for (size_t i = 0; i < rs.n && rc == 0; i++)
        out->uids[i] = p[i].r->uid;
    if (rc == 0)
        out->n = out->cap = rs.n;
    free(p);
    rows_free(&rs);
    if (rc)
        storage_uidlist_free(out);
    return rc;
}

/* ---- THREAD ---- */

/* A container of RFC 5256 3 (REFERENCES): a message (row index, -1 for a
 * dummy) and its place in the tree, links as indexes (-1: none). */
struct cont {
    int32_t msg;
    int32_t parent, child, next, prev;
};

struct forest {
    struct cont *c;
    size_t n, cap;
    const struct srow *rows;
};

static int32_t cont_new(struct forest *f, int32_t msg)
{
    if (array_grow(&f->c, &f->cap, f->n, sizeof(*f->c), 1024) != 0)
        return -1;
    f->c[f->n] = (struct cont){msg, -1, -1, -1, -1};
    return (int32_t)f->n++;
}

static void unlink_cont(struct forest *f, int32_t x)
{
    struct cont *c = &f->c[x];
    if (c->parent < 0)
        return;
    if (c->prev >= 0)
        f->c[c->prev].next = c->next;
    else
        f->c[c->parent].child = c->next;
    if (c->next >= 0)
        f->c[c->next].prev = c->prev;
    c->parent = c->next = c->prev = -1;
}

/* x becomes the first child of p (sibling order is set by sorting later) */
static void link_cont(struct forest *f, int32_t p, int32_t x)
{
    struct cont *c = &f->c[x];
    c->parent = p;
    c->prev = -1;
    c->next = f->c[p].child;
    if (c->next >= 0)
        f->c[c->next].prev = x;
    f->c[p].child = x;
}

/* Would x becoming a child of p make a loop (x is p or above it)? */
static bool would_loop(const struct forest *f, int32_t p, int32_t x)
{
    if (p == x)
        return true;
    if (f->c[x].child < 0)
        return false; /* nothing below x: p cannot be */
    for (int32_t a = f->c[p].parent; a >= 0; a = f->c[a].parent)
        if (a == x)
            return true;
    return false;
}

/* message ids to containers: open addressing over (hash, container) */
struct idmap {
    struct idmap_e {
        const char *id;
        int32_t c;
    } * e;
    size_t mask, used;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Twice the room, when half is used: References may name many more ids
 * than there are messages. */
static int idmap_grow(struct idmap *m)
{
    size_t cap = (m->mask + 1) * 2;
    struct idmap_e *e = calloc(cap, sizeof(*e));
    if (!e)
        return STORAGE_E_NOMEM;
    for (size_t i = 0; i <= m->mask; i++) {
        if (!m->e[i].id)
            continue;
        size_t j = hash_str(m->e[i].id) & (cap - 1);
        while (e[j].id)
            j = (j + 1) & (cap - 1);
        e[j] = m->e[i];
    }
    free(m->e);
    m->e = e;
    m->mask = cap - 1;
    return 0;
}

/* The container of id, created (a dummy) when new; -1 on allocation failure. */
static int32_t id_cont(struct idmap *m, struct forest *f, const char *id, bool *created)
{
    size_t i;
    *created = false;
    if (m->used * 2 >= m->mask + 1 && idmap_grow(m) != 0)
        return -1;
    i = hash_str(id) & m->mask;
    while (m->e[i].id) {
        if (strcmp(m->e[i].id, id) == 0)
            return m->e[i].c;
        i = (i + 1) & m->mask;
    }
    int32_t c = cont_new(f, -1);
    if (c >= 0) {
        m->e[i].id = id;
        m->e[i].c = c;
        m->used++;
        *created = true;
    }
    return c;
}

static int64_t cont_date(const struct forest *f, int32_t x, uint32_t *uid)
{
    const struct cont *c = &f->c[x];
    if (c->msg < 0 && c->child >= 0)
        c = &f->c[c->child]; /* a dummy: its first child's */
    if (c->msg < 0) {
        *uid = 0;
        return 0;
    }
    *uid = f->rows[c->msg].uid;
    return f->rows[c->msg].date;
}

struct dsort {
    int64_t date;
    uint32_t uid;
    int32_t c;
};

static int dsort_cmp(const void *x, const void *y)
{
    const struct dsort *a = x, *b = y;
    if (a->date != b->date)
        return a->date < b->date ? -1 : 1;
    return a->uid < b->uid ? -1 : a->uid > b->uid;
}

/* Sorts the list starting at *first (siblings under parent p, -1 for the
 * roots) by sent date, ties in mailbox order. */
static int sort_siblings(struct forest *f, int32_t *first, int32_t p, struct dsort **tmp,
                         size_t *tcap)
{
    size_t n = 0;
    for (int32_t x = *first; x >= 0; x = f->c[x].next) {
        if (array_grow(tmp, tcap, n, sizeof(**tmp), 64) != 0)
            return STORAGE_E_NOMEM;
        (*tmp)[n].c = x;
        (*tmp)[n].date = cont_date(f, x, &(*tmp)[n].uid);
        n++;
    }
    if (n < 2)
        return 0;
    qsort(*tmp, n, sizeof(**tmp), dsort_cmp);
    for (size_t i = 0; i < n; i++) {
        struct cont *c = &f->c[(*tmp)[i].c];
        c->prev = i ? (*tmp)[i - 1].c : -1;
        c->next = i + 1 < n ? (*tmp)[i + 1].c : -1;
        c->parent = p;
    }
    *first = (*tmp)[0].c;
    return 0;
}

/* Every container reachable from the roots, each after its parent. */
static int breadth_first(const struct forest *f, int32_t roots, int32_t **order, size_t *n)
{
    size_t cap = 0, len = 0;
    *order = NULL;
    for (int32_t x = roots; x >= 0; x = f->c[x].next) {
        if (array_grow(order, &cap, len, sizeof(**order), 1024) != 0)
            return STORAGE_E_NOMEM;
        (*order)[len++] = x;
    }
    for (size_t i = 0; i < len; i++)
        for (int32_t x = f->c[(*order)[i]].child; x >= 0; x = f->c[x].next) {
            if (array_grow(order, &cap, len, sizeof(**order), 1024) != 0)
                return STORAGE_E_NOMEM;
            (*order)[len++] = x;
        }
    *n = len;
    return 0;
}

/* Sorts every set of siblings, the deepest first (a dummy is dated by its
 * first child), then the roots. */
static int sort_all(struct forest *f, int32_t *roots)
{
    struct dsort *tmp = NULL;
    size_t tcap = 0, n = 0;
    int32_t *order;
    int rc = breadth_first(f, *roots, &order, &n);

    for (size_t i = n; rc == 0 && i-- > 0;)
        if (f->c[order[i]].child >= 0)
            rc = sort_siblings(f, &f->c[order[i]].child, order[i], &tmp, &tcap);
    if (rc == 0)
        rc = sort_siblings(f, roots, -1, &tmp, &tcap);
    free(order);
    free(tmp);
    return rc;
}

static const char *cont_subject(const struct forest *f, int32_t x)
{
    const struct cont *c = &f->c[x];
    if (c->msg < 0 && c->child >= 0)
        c = &f->c[c->child];
    return c->msg < 0 ? "" : f->rows[c->msg].s[S_SUBJECT];
}

static bool cont_refwd(const struct forest *f, int32_t x)
{
    return f->c[x].msg >= 0 && f->rows[f->c[x].msg].refwd;
}

static void unlink_root(struct forest *f, int32_t *roots, int32_t x)
{
    struct cont *c = &f->c[x];
    if (c->prev >= 0)
        f->c[c->prev].next = c->next;
    else
        *roots = c->next;
    if (c->next >= 0)
        f->c[c->next].prev = c->prev;
    c->next = c->prev = -1;
}

static void push_root(struct forest *f, int32_t *roots, int32_t x)
{
    struct cont *c = &f->c[x];
    c->parent = -1;
    c->prev = -1;
    c->next = *roots;
    if (*roots >= 0)
        f->c[*roots].prev = x;
    *roots = x;
}

static int refs_order(struct forest *f, int32_t *roots);

/* RFC 5256 3, REFERENCES: steps 1 to 6; *roots gets the first root. With
 * refs, REFS (draft-ietf-morg-inthread): steps 1 to 3, no gathering by
 * subject, and the threads in the order of their latest message. */
static int references(struct forest *f, size_t nrows, int32_t *roots, bool refs)
{
    struct idmap m = {0};
    size_t cap = 1024;
    int32_t *order = NULL;
    size_t n = 0;
    int rc = 0;

    while (cap < nrows * 4)
        cap *= 2;
    m.mask = cap - 1;
    if (!(m.e = calloc(cap, sizeof(*m.e))))
        return STORAGE_E_NOMEM;
    /* every message has a container, in mailbox order; dummies follow */
    for (size_t i = 0; i < nrows; i++)
        if (cont_new(f, (int32_t)i) < 0) {
            free(m.e);
            return STORAGE_E_NOMEM;
        }
    for (size_t i = 0; i < nrows && rc == 0; i++) {
        const struct srow *r = &f->rows[i];
        int32_t me = (int32_t)i, prev = -1;
        bool created;

        if (*r->s[S_MSGID]) {
            int32_t c = id_cont(&m, f, r->s[S_MSGID], &created);
            if (c < 0) {
                rc = STORAGE_E_NOMEM;
                break;
            }
            if (f->c[c].msg < 0) {
                /* the dummy made for it by earlier references: this message
                 * takes its place */
                f->c[c].msg = (int32_t)i;
                f->c[me].msg = -2; /* unused */
                me = c;
            }
            /* else a duplicate id: this message keeps a container of its own */
        }
        /* (1.A) link the references in a chain, parent before child (the
         * ids are NUL-separated, load_rows) */
        for (const char *p = r->s[S_PARENTS]; *p && rc == 0; p += strlen(p) + 1) {
            int32_t c = id_cont(&m, f, p, &created);
            if (c < 0) {
                rc = STORAGE_E_NOMEM;
                break;
            }
            if (prev >= 0 && c != prev && f->c[c].parent < 0 && !would_loop(f, prev, c))
                link_cont(f, prev, c);
            prev = c;
        }
        if (rc)
            break;
        /* (1.B) the last reference is the parent, whatever was there: the
         * message leaves its parent first, and is then linked unless that
         * would make a loop (a References naming the message itself before
         * one of its own replies leaves it a root) */
        if (prev >= 0 && f->c[me].parent == prev)
            continue;
        unlink_cont(f, me);
        if (prev >= 0 && !would_loop(f, prev, me))
            link_cont(f, prev, me);
    }
    free(m.e);
    if (rc)
        return rc;
    /* (2) the root set */
    *roots = -1;
    for (size_t x = f->n; x-- > 0;) {
        struct cont *c = &f->c[x];
        if (c->parent >= 0 || c->msg == -2)
            continue;
        c->next = *roots;
        c->prev = -1;
        if (*roots >= 0)
            f->c[*roots].prev = (int32_t)x;
        *roots = (int32_t)x;
    }
    /* (3) prune dummies, children before parents */
    if ((rc = breadth_first(f, *roots, &order, &n)) != 0)
        return rc;
    for (size_t k = 0; k <= n; k++) {
        bool top = k == n;
        int32_t parent = top ? -1 : order[n - 1 - k];
        int32_t *first = top ? roots : &f->c[parent].child;
        for (int32_t x = *first, nx; x >= 0; x = nx) {
            struct cont *c = &f->c[x];
            nx = c->next;
            if (c->msg >= 0)
                continue;
            int kids = 0;
            for (int32_t ch = c->child; ch >= 0 && kids < 2; ch = f->c[ch].next)
                kids++;
            if (top && kids > 1)
                continue; /* promoting would put several children at the root */
            /* splice the dummy's children in its place */
            int32_t last = -1;
            for (int32_t ch = c->child; ch >= 0; ch = f->c[ch].next) {
                f->c[ch].parent = parent;
                last = ch;
            }
            if (last >= 0) {
                f->c[c->child].prev = c->prev;
                f->c[last].next = c->next;
                if (c->next >= 0)
                    f->c[c->next].prev = last;
                if (c->prev >= 0)
                    f->c[c->prev].next = c->child;
                else
                    *first = c->child;
            } else {
                if (c->next >= 0)
                    f->c[c->next].prev = c->prev;
                if (c->prev >= 0)
                    f->c[c->prev].next = c->next;
                else
                    *first = c->next;
            }
            c->msg = -2;
            c->child = -1;
        }
    }
    free(order);
    /* (4) sort by sent date */
    if ((rc = sort_all(f, roots)) != 0)
        return rc;
    if (refs)
        return refs_order(f, roots);
    /* (5) gather the roots of the same base subject */
    {
        struct {
            const char *subj;
            int32_t c;
        } * tab;
        size_t nroots = 0, tcap = 1024, tmask;
        int32_t *rl = NULL;
        size_t rlcap = 0;
        for (int32_t x = *roots; x >= 0; x = f->c[x].next) {
            if (array_grow(&rl, &rlcap, nroots, sizeof(*rl), 1024) != 0) {
                free(rl);
                return STORAGE_E_NOMEM;
            }
            rl[nroots++] = x;
        }
        while (tcap < nroots * 2)
            tcap *= 2;
        tmask = tcap - 1;
        if (!(tab = calloc(tcap, sizeof(*tab)))) {
            free(rl);
            return STORAGE_E_NOMEM;
        }
#define SLOT(s)                                                                                    \
    ({                                                                                             \
        size_t i_ = hash_str(s) & tmask;                                                           \
        while (tab[i_].subj && strcmp(tab[i_].subj, s) != 0)                                       \
            i_ = (i_ + 1) & tmask;                                                                 \
        i_;                                                                                        \
    })
        /* (5.B) one container per subject */
        for (size_t i = 0; i < nroots; i++) {
            int32_t x = rl[i];
            const char *s = cont_subject(f, x);
            if (!*s)
                continue;
            size_t k = SLOT(s);
            if (!tab[k].subj) {
                tab[k].subj = s;
                tab[k].c = x;
            } else if (f->c[tab[k].c].msg >= 0 &&
                       (f->c[x].msg < 0 || (cont_refwd(f, tab[k].c) && !cont_refwd(f, x)))) {
                tab[k].c = x;
            }
        }
        /* (5.C) merge */
        for (size_t i = 0; i < nroots; i++) {
            int32_t x = rl[i];
            struct cont *c = &f->c[x];
            if (c->parent >= 0 || c->msg == -2)
                continue; /* merged already */
            const char *s = cont_subject(f, x);
            if (!*s)
                continue;
            size_t k = SLOT(s);
            int32_t t = tab[k].c;
            if (t == x)
                continue;
            unlink_root(f, roots, x);
            if (f->c[t].msg < 0 && c->msg < 0) {
                /* both dummies: the children become siblings */
                for (int32_t ch = c->child, nx; ch >= 0; ch = nx) {
                    nx = f->c[ch].next;
                    link_cont(f, t, ch);
                }
                c->child = -1;
                c->msg = -2;
            } else if (f->c[t].msg < 0 || (cont_refwd(f, x) && !cont_refwd(f, t))) {
                link_cont(f, t, x);
            } else {
                int32_t d = cont_new(f, -1);
                if (d < 0) {
                    rc = STORAGE_E_NOMEM;
                    break;
                }
                unlink_root(f, roots, t);
                link_cont(f, d, t);
                link_cont(f, d, x);
                push_root(f, roots, d);
                tab[k].c = d;
                tab[k].subj = s; /* still valid: rows outlive the table */
            }
        }
#undef SLOT
        free(tab);
        free(rl);
    }
    /* (6) sort every set of siblings again */
    return rc ? rc : sort_all(f, roots);
}

/* REFS: the roots by the sent date of the latest message of their thread,
 * ties by the root's UID (a dummy's counts as 0), siblings sorted already. */
static int refs_order(struct forest *f, int32_t *roots)
{
    int64_t *latest = calloc(f->n ? f->n : 1, sizeof(*latest));
    struct dsort *t = NULL;
    size_t tcap = 0, n = 0, nr = 0;
    int32_t *order = NULL;
    int rc = latest ? breadth_first(f, *roots, &order, &n) : STORAGE_E_NOMEM;

    for (size_t i = 0; rc == 0 && i < f->n; i++)
        latest[i] = INT64_MIN;
    for (size_t i = n; rc == 0 && i-- > 0;) {
        const struct cont *c = &f->c[order[i]];
        int64_t d = c->msg >= 0 ? f->rows[c->msg].date : INT64_MIN;
        if (latest[order[i]] < d)
            latest[order[i]] = d;
        if (c->parent >= 0 && latest[c->parent] < latest[order[i]])
            latest[c->parent] = latest[order[i]];
    }
    for (int32_t x = *roots; rc == 0 && x >= 0; x = f->c[x].next) {
        if ((rc = array_grow(&t, &tcap, nr, sizeof(*t), 64)) != 0)
            break;
        t[nr].c = x;
        t[nr].date = latest[x];
        t[nr].uid = f->c[x].msg >= 0 ? f->rows[f->c[x].msg].uid : 0;
        nr++;
    }
    if (rc == 0 && nr > 1) {
        qsort(t, nr, sizeof(*t), dsort_cmp);
        for (size_t i = 0; i < nr; i++) {
            struct cont *c = &f->c[t[i].c];
            c->prev = i ? t[i - 1].c : -1;
            c->next = i + 1 < nr ? t[i + 1].c : -1;
        }
        *roots = t[0].c;
    }
    free(t);
    free(order);
    free(latest);
    return rc;
}

/* RFC 5256 3, ORDEREDSUBJECT: by base subject then sent date; the first of
 * each subject is the root and the others its children. */
static int ordered_subject(struct forest *f, size_t nrows, int32_t *roots)
{
    static const struct storage_sort_crit by[] = {{STORAGE_SORT_SUBJECT, false},
                                                  {STORAGE_SORT_DATE, false}};
    struct sort_ctx sc = {by, 2};
    int32_t *idx = malloc((nrows ? nrows : 1) * sizeof(*idx));
    const struct srow **tmp = malloc((nrows ? nrows : 1) * sizeof(*tmp));
    int32_t root = -1, last = -1;

    if (!idx || !tmp) {
        free(idx);
        free(tmp);
        return STORAGE_E_NOMEM;
    }
    for (size_t i = 0; i < nrows; i++)
        tmp[i] = &f->rows[i];
    qsort_r(tmp, nrows, sizeof(*tmp), sort_cmp, &sc);
    for (size_t i = 0; i < nrows; i++)
        idx[i] = (int32_t)(tmp[i] - f->rows);
    free(tmp);
    *roots = -1;
    for (size_t i = 0; i < nrows; i++) {
        int32_t c = cont_new(f, idx[i]);
        if (c < 0) {
            free(idx);
            return STORAGE_E_NOMEM;
        }
        if (root >= 0 &&
            strcmp(f->rows[idx[i]].s[S_SUBJECT], f->rows[f->c[root].msg].s[S_SUBJECT]) == 0) {
            f->c[c].parent = root;
            f->c[c].prev = last;
            if (last == root)
                f->c[root].child = c;
            else
                f->c[last].next = c;
            last = c;
            continue;
        }
        push_root(f, roots, c);
        root = last = c;
    }
    free(idx);
    /* the threads by the sent date of their first message; children are
     * in order already */
    struct dsort *t = NULL;
    size_t tcap = 0;
    int rc = sort_siblings(f, roots, -1, &t, &tcap);
    free(t);
    return rc;
}

void storage_thread_free(struct storage_thread *t)
{
    free(t->nodes);
    memset(t, 0, sizeof(*t));
}

int storage_thread(struct storage_user *u, int64_t mbox, const struct storage_search *q,
                   enum storage_thread_algo algo, struct storage_thread *out)
{
    struct forest f = {0};
    struct rows rs;
    int32_t roots = -1;
    int32_t *map = NULL;
    int rc;

    unsigned want = 1u << S_SUBJECT | 1u << S_MSGID | 1u << S_PARENTS | KEYS_DATE;

    memset(out, 0, sizeof(*out));
    if ((rc = sortcache_rows(u, mbox, q, want, &rs)) == 1)
        rc = load_rows(u, mbox, q, want, &rs);
    if (rc != 0)
        return rc;
    f.rows = rs.r;
    rc = algo == STORAGE_THREAD_ORDEREDSUBJECT
             ? ordered_subject(&f, rs.n, &roots)
             : references(&f, rs.n, &roots, algo == STORAGE_THREAD_REFS);
    /* the containers in the tree, numbered in the order of a walk */
    if (rc == 0 && f.n && !(map = calloc(f.n, sizeof(*map))))
        rc = STORAGE_E_NOMEM;
    if (rc == 0 && f.n && !(out->nodes = calloc(f.n, sizeof(*out->nodes))))
        rc = STORAGE_E_NOMEM;
    if (rc == 0) {
        int32_t *order;
        size_t n;
        if ((rc = breadth_first(&f, roots, &order, &n)) == 0) {
            for (size_t i = 0; i < n; i++)
                map[order[i]] = (int32_t)i + 1;
            for (size_t i = 0; i < n; i++) {
                const struct cont *c = &f.c[order[i]];
                out->nodes[i].uid = c->msg >= 0 ? rs.r[c->msg].uid : 0;
                out->nodes[i].child = c->child >= 0 ? (uint32_t)map[c->child] : 0;
                out->nodes[i].next = c->next >= 0 ? (uint32_t)map[c->next] : 0;
            }
            out->n = n;
            out->root = roots >= 0 ? (uint32_t)map[roots] : 0;
            free(order);
        }
    }
    free(map);
    free(f.c);
    rows_free(&rs);
    if (rc)
        storage_thread_free(out);
    return rc;
}
