/* The sort keys of each mailbox and the orders they give, kept in memory
 * by the open store and shared by every session of the account, so that a
 * SORT of a whole mailbox or of a search result is a walk of a cached
 * order (one key) or an integer sort of ranks (several keys), with no
 * string compared and no row of the index read; THREAD takes its rows
 * from the same keys.
 *
 * What a message's keys are never changes (they come from its body, its
 * internal date and its size), and UIDs only grow under one UIDVALIDITY:
 * a mailbox's cache holds the keys of every message it had below a UID,
 * `covered`, stamped with the mailbox's UIDVALIDITY. A use takes the
 * mailbox's current messages from its state (mstate.c, which follows
 * every change, this process's own or another program's, through the
 * stamps of the mailbox row), reads the keys of the messages at or above
 * `covered` (appended since) and merges them into each order, and leaves
 * out the messages no longer there (expunged since: dropped when they
 * make up half of the cache). Orders compare the stored key bytes only.
 *
 * Memory: at most storage_limits.sort_cache_bytes per open store; the
 * mailbox used longest ago goes first, and a mailbox whose keys alone
 * would not fit is sorted from keys read for the one command, then
 * freed. With storage_limits.sort_cache_bytes 0, sort.c reads only the
 * matching rows of the index, as before this cache. Everything is freed when the store closes or
 * its index file is replaced. A use holds the store's sc_lock throughout (the index reads
 * included): two sessions sorting the same mailbox do the work once. */
#include "storage/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NKEYS (STORAGE_SORT_DISPLAYCC + 1)

struct scol {
    bool have;
    uint32_t *off; /* each message's string in pool; 0: empty */
    struct buf pool;
};

struct sorder {
    bool have;
    uint32_t *order; /* message indexes by (key, UID) */
    uint32_t *rank;  /* per message: equal keys, equal ranks; ranks ordered as keys */
};

struct scache {
    int64_t mbox;
    uint32_t uidvalidity;
    uint32_t covered; /* every message below this UID is in uids[] */
    size_t n, cap;
    uint32_t *uids; /* ascending */
    int64_t *arrival, *size;
    bool have_date;
    int64_t *date;
    uint8_t *refwd;
    struct scol col[S_N];
    struct sorder ord[NKEYS];
    size_t bytes;
    uint64_t used;
    struct scache *next;
};

/* the string column of a key, -1 for a number */
static int key_col(int k)
{
    switch (k) {
    case STORAGE_SORT_SUBJECT:
        return S_SUBJECT;
    case STORAGE_SORT_FROM:
        return S_FROM;
    case STORAGE_SORT_TO:
        return S_TO;
    case STORAGE_SORT_CC:
        return S_CC;
    case STORAGE_SORT_DISPLAYFROM:
        return S_DFROM;
    case STORAGE_SORT_DISPLAYTO:
        return S_DTO;
    case STORAGE_SORT_DISPLAYCC:
        return S_DCC;
    default:
        return -1;
    }
}

static const char *const col_name[S_N] = {"subject", "from_", "to_",        "cc",     "dfrom",
                                          "dto",     "dcc",   "message_id", "parents"};

static void scache_free(struct scache *c)
{
    if (!c)
        return;
    free(c->uids);
    free(c->arrival);
    free(c->size);
    free(c->date);
    free(c->refwd);
    for (int k = 0; k < S_N; k++) {
        free(c->col[k].off);
        buf_free(&c->col[k].pool);
    }
    for (int k = 0; k < NKEYS; k++) {
        free(c->ord[k].order);
        free(c->ord[k].rank);
    }
    free(c);
}

static size_t scache_bytes(const struct scache *c)
{
    size_t b = sizeof(*c) + c->cap * (sizeof(uint32_t) + 2 * sizeof(int64_t));
    if (c->have_date)
        b += c->cap * (sizeof(int64_t) + 1);
    for (int k = 0; k < S_N; k++)
        if (c->col[k].have)
            b += c->cap * sizeof(uint32_t) + c->col[k].pool.cap;
    for (int k = 0; k < NKEYS; k++)
        if (c->ord[k].have)
            b += c->cap * 2 * sizeof(uint32_t);
    return b;
}

void sortcache_drop_all(struct storage_user *u)
{
    pthread_mutex_lock(&u->sc_lock);
    struct scache *c = u->sc;
    u->sc = NULL;
    u->sc_bytes = 0;
    pthread_mutex_unlock(&u->sc_lock);
    while (c) {
        struct scache *next = c->next;
        scache_free(c);
        c = next;
    }
}

/* ---- reading keys from the index ---- */

static int grow_to(void *arr, size_t elem, size_t cap)
{
    void **p = arr;
    void *q = realloc(*p, (cap ? cap : 1) * elem);
    if (!q)
        return STORAGE_E_NOMEM;
    *p = q;
    return 0;
}

/* Room for cap messages in every array the cache has. */
static int scache_reserve(struct scache *c, size_t cap)
{
    if (cap <= c->cap)
        return 0;
    if (cap < c->cap * 2)
        cap = c->cap * 2;
    if (grow_to(&c->uids, sizeof(*c->uids), cap) || grow_to(&c->arrival, sizeof(int64_t), cap) ||
        grow_to(&c->size, sizeof(int64_t), cap) ||
        (c->have_date && (grow_to(&c->date, sizeof(int64_t), cap) || grow_to(&c->refwd, 1, cap))))
        return STORAGE_E_NOMEM;
    for (int k = 0; k < S_N; k++)
        if (c->col[k].have && grow_to(&c->col[k].off, sizeof(uint32_t), cap))
            return STORAGE_E_NOMEM;
    for (int k = 0; k < NKEYS; k++)
        if (c->ord[k].have && (grow_to(&c->ord[k].order, sizeof(uint32_t), cap) ||
                               grow_to(&c->ord[k].rank, sizeof(uint32_t), cap)))
            return STORAGE_E_NOMEM;
    c->cap = cap;
    return 0;
}

/* Sets message i's keys of the columns in want from row st (uid,
 * internal_date, size, sent_date, refwd, then the strings of col_name). */
static int take_row(struct scache *c, size_t i, sqlite3_stmt *st, unsigned want)
{
    if (want & KEYS_DATE) {
        int64_t d = sqlite3_column_int64(st, 3);
        c->date[i] = d ? d : c->arrival[i]; /* RFC 5256: no usable Date: the internal date */
        c->refwd[i] = (uint8_t)sqlite3_column_int(st, 4);
    }
    for (int k = 0; k < S_N; k++) {
        if (!(want & (1u << k)))
            continue;
        const char *t = (const char *)sqlite3_column_text(st, 5 + k);
        size_t len = t ? (size_t)sqlite3_column_bytes(st, 5 + k) : 0;
        struct buf *b = &c->col[k].pool;
        if (!len || b->len + len + 1 > UINT32_MAX) {
            c->col[k].off[i] = 0;
            continue;
        }
        c->col[k].off[i] = (uint32_t)b->len;
        buf_add(b, t, len + 1);
        if (b->oom)
            return STORAGE_E_NOMEM;
    }
    return 0;
}

static int select_keys(sqlite3 *db, unsigned want, sqlite3_stmt **st)
{
    char sql[1024];
    size_t o = 0;

    o += (size_t)snprintf(sql, sizeof(sql), "SELECT m.uid, m.internal_date, m.size, %s",
                          want & KEYS_DATE ? "k.sent_date, k.refwd" : "0, 0");
    for (int k = 0; k < S_N; k++)
        o += (size_t)snprintf(sql + o, sizeof(sql) - o, want & (1u << k) ? ", k.%s" : ", NULL",
                              col_name[k]);
    snprintf(sql + o, sizeof(sql) - o, "%s",
             want & KEYS_ANY
                 ? " FROM messages m LEFT JOIN sortkeys k ON k.body_id = m.body_id"
                   " WHERE m.mailbox_id = ? AND m.uid >= ? AND m.uid < ? ORDER BY m.uid"
                 : " FROM messages m"
                   " WHERE m.mailbox_id = ? AND m.uid >= ? AND m.uid < ? ORDER BY m.uid");
    return db_prepare(db, sql, st);
}

/* The columns in want (not yet had) of the messages below covered. */
static int load_cols(sqlite3 *db, struct scache *c, unsigned want)
{
    sqlite3_stmt *st;
    size_t i = 0;
    int rc, s;

    if (want & KEYS_DATE) {
        if (grow_to(&c->date, sizeof(int64_t), c->cap) || grow_to(&c->refwd, 1, c->cap))
            return STORAGE_E_NOMEM;
        for (size_t j = 0; j < c->n; j++) {
            c->date[j] = c->arrival[j];
            c->refwd[j] = 0;
        }
    }
    for (int k = 0; k < S_N; k++) {
        if (!(want & (1u << k)))
            continue;
        if (grow_to(&c->col[k].off, sizeof(uint32_t), c->cap))
            return STORAGE_E_NOMEM;
        memset(c->col[k].off, 0, (c->n ? c->n : 1) * sizeof(uint32_t));
        buf_free(&c->col[k].pool);
        buf_addc(&c->col[k].pool, '\0'); /* offset 0: the empty string */
    }
    if ((rc = select_keys(db, want, &st)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, c->mbox);
    sqlite3_bind_int64(st, 2, 0);
    sqlite3_bind_int64(st, 3, c->covered);
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        uint32_t uid = (uint32_t)sqlite3_column_int64(st, 0);
        /* a message expunged since keeps empty keys; it is never answered */
        while (i < c->n && c->uids[i] < uid)
            i++;
        if (i >= c->n)
            break;
        if (c->uids[i] != uid)
            continue;
        if ((rc = take_row(c, i, st, want)) != 0)
            break;
    }
    if (rc == 0 && s != SQLITE_DONE && s != SQLITE_ROW)
        rc = err_from_sqlite(db, s);
    db_finalize(st);
    if (rc == 0) {
        if (want & KEYS_DATE)
            c->have_date = true;
        for (int k = 0; k < S_N; k++)
            if (want & (1u << k))
                c->col[k].have = true;
    }
    return rc;
}

/* The cache's columns of the messages from covered up to below uidnext
 * (appended since), at the end of the arrays; the orders not yet. */
static int load_new(sqlite3 *db, struct scache *c, uint32_t uidnext)
{
    unsigned want = c->have_date ? KEYS_DATE : 0;
    sqlite3_stmt *st;
    int rc, s;

    for (int k = 0; k < S_N; k++)
        if (c->col[k].have)
            want |= 1u << k;
    if ((rc = select_keys(db, want, &st)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, c->mbox);
    sqlite3_bind_int64(st, 2, c->covered);
    sqlite3_bind_int64(st, 3, uidnext);
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if ((rc = scache_reserve(c, c->n + 1)) != 0)
            break;
        size_t i = c->n;
        c->uids[i] = (uint32_t)sqlite3_column_int64(st, 0);
        c->arrival[i] = sqlite3_column_int64(st, 1);
        c->size[i] = sqlite3_column_int64(st, 2);
        if ((rc = take_row(c, i, st, want)) != 0)
            break;
        c->n++;
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = err_from_sqlite(db, s);
    db_finalize(st);
    if (rc == 0)
        c->covered = uidnext;
    return rc;
}

/* ---- orders ---- */

struct kctx {
    const struct scache *c;
    int key;
};

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

/* Messages i and j by key k alone. */
static int key_cmp(const struct scache *c, int k, uint32_t i, uint32_t j)
{
    int col = key_col(k);
    if (col >= 0)
        return strcmp(c->col[col].pool.p + c->col[col].off[i],
                      c->col[col].pool.p + c->col[col].off[j]);
    switch (k) {
    case STORAGE_SORT_ARRIVAL:
        return cmp_i64(c->arrival[i], c->arrival[j]);
    case STORAGE_SORT_DATE:
        return cmp_i64(c->date[i], c->date[j]);
    default:
        return cmp_i64(c->size[i], c->size[j]);
    }
}

/* The first 8 bytes of a string key, big-endian, or a number key with its
 * sign bit flipped: unsigned order is the key's order. */
static uint64_t key_prefix(const struct scache *c, int k, uint32_t i)
{
    int col = key_col(k);
    if (col >= 0) {
        const unsigned char *s = (const unsigned char *)c->col[col].pool.p + c->col[col].off[i];
        uint64_t v = 0;
        size_t n = 0;
        for (; n < 8 && s[n]; n++)
            v = v << 8 | s[n];
        return n ? v << (8 * (8 - n)) % 64 : 0;
    }
    int64_t x = k == STORAGE_SORT_ARRIVAL ? c->arrival[i]
                : k == STORAGE_SORT_DATE  ? c->date[i]
                                          : c->size[i];
    return (uint64_t)x ^ (1ull << 63);
}

struct pkey {
    uint64_t pre;
    uint32_t i;
};

static int pkey_cmp(const void *x, const void *y, void *arg)
{
    const struct pkey *a = x, *b = y;
    const struct kctx *kc = arg;
    if (a->pre != b->pre)
        return a->pre < b->pre ? -1 : 1;
    int r = key_cmp(kc->c, kc->key, a->i, b->i);
    if (r)
        return r;
    return a->i < b->i ? -1 : a->i > b->i; /* index order is UID order */
}

/* Sorts the messages from..n-1 by (key k, UID) into out. */
static int sort_range(const struct scache *c, int k, size_t from, uint32_t *out)
{
    size_t m = c->n - from;
    struct pkey *p = malloc((m ? m : 1) * sizeof(*p));
    struct kctx kc = {c, k};

    if (!p)
        return STORAGE_E_NOMEM;
    for (size_t j = 0; j < m; j++) {
        p[j].i = (uint32_t)(from + j);
        p[j].pre = key_prefix(c, k, p[j].i);
    }
    qsort_r(p, m, sizeof(*p), pkey_cmp, &kc);
    for (size_t j = 0; j < m; j++)
        out[j] = p[j].i;
    free(p);
    return 0;
}

static void set_ranks(struct scache *c, int k)
{
    struct sorder *o = &c->ord[k];
    uint32_t r = 0;
    for (size_t j = 0; j < c->n; j++) {
        if (j && key_cmp(c, k, o->order[j - 1], o->order[j]) != 0)
            r++;
        o->rank[o->order[j]] = r;
    }
}

/* Order k over every message (its keys loaded). */
static int build_order(struct scache *c, int k)
{
    struct sorder *o = &c->ord[k];
    if (grow_to(&o->order, sizeof(uint32_t), c->cap) || grow_to(&o->rank, sizeof(uint32_t), c->cap))
        return STORAGE_E_NOMEM;
    int rc = sort_range(c, k, 0, o->order);
    if (rc)
        return rc;
    set_ranks(c, k);
    o->have = true;
    return 0;
}

/* The messages from..n-1 (appended, UIDs above all others) merged into
 * every order the cache has. */
static int merge_new(struct scache *c, size_t from)
{
    size_t m = c->n - from;
    uint32_t *add = NULL, *tmp = NULL;
    int rc = 0;

    if (!m)
        return 0;
    if (!(add = malloc(m * sizeof(*add))) || !(tmp = malloc(c->n * sizeof(*tmp)))) {
        rc = STORAGE_E_NOMEM;
        goto out;
    }
    for (int k = 0; k < NKEYS; k++) {
        struct sorder *o = &c->ord[k];
        if (!o->have)
            continue;
        if ((rc = sort_range(c, k, from, add)) != 0)
            goto out;
        size_t a = 0, b = 0, w = 0;
        while (a < from || b < m) {
            /* on equal keys the older message (lower UID) first */
            if (b >= m || (a < from && key_cmp(c, k, o->order[a], add[b]) <= 0))
                tmp[w++] = o->order[a++];
            else
                tmp[w++] = add[b++];
        }
        memcpy(o->order, tmp, c->n * sizeof(*tmp));
        set_ranks(c, k);
    }
out:
    free(add);
    free(tmp);
    return rc;
}

/* ---- a use ---- */

/* What a command asks: the mailbox's messages now (its state) and which
 * of them q matches. */
struct ask {
    struct storage_mbox_info info;
    bool direct; /* q is UID sets only: us; else match */
    struct uidsets us;
    struct storage_uidlist match;
};

static void ask_free(struct ask *a)
{
    storage_mbox_info_free(&a->info);
    for (size_t k = 0; k < a->us.n; k++)
        free(a->us.s[k].r);
    storage_uidlist_free(&a->match);
}

static int ask_read(struct storage_user *u, int64_t mbox, const struct storage_search *q,
                    struct ask *a)
{
    int rc = 0;

    memset(a, 0, sizeof(*a));
    a->direct = sort_only_uidsets(q, &a->us, &rc);
    if (rc)
        return rc;
    /* the search first: every UID it finds is below the UIDNEXT read after */
    if (!a->direct && (rc = storage_search(u, mbox, q, &a->match)) != 0)
        return rc;
    return storage_mbox_info(u, NULL, mbox, a->direct, &a->info);
}

/* Marks in in[] (per cached message) those a asks for. */
static void ask_mark(const struct scache *c, const struct ask *a, uint8_t *in)
{
    memset(in, 0, c->n ? c->n : 1);
    if (!a->direct) {
        size_t j = 0;
        for (size_t i = 0; i < a->match.n; i++) {
            while (j < c->n && c->uids[j] < a->match.uids[i])
                j++;
            if (j < c->n && c->uids[j] == a->match.uids[i])
                in[j] = 1;
        }
        return;
    }
    /* the mailbox's messages now, within every UID set */
    enum { NSETS = sizeof(a->us.s) / sizeof(a->us.s[0]) + 1 };
    size_t pos[NSETS] = {0};
    const struct storage_range *rr[NSETS];
    size_t rn[NSETS], nsets = a->us.n + 1;
    rr[0] = a->info.ranges;
    rn[0] = a->info.nranges;
    for (size_t k = 0; k < a->us.n; k++) {
        rr[k + 1] = a->us.s[k].r;
        rn[k + 1] = a->us.s[k].n;
    }
    for (size_t j = 0; j < c->n; j++) {
        uint32_t uid = c->uids[j];
        bool ok = true;
        for (size_t k = 0; k < nsets && ok; k++) {
            while (pos[k] < rn[k] && rr[k][pos[k]].hi < uid)
                pos[k]++;
            ok = pos[k] < rn[k] && rr[k][pos[k]].lo <= uid;
        }
        in[j] = ok;
    }
}

/* Evicts the mailboxes used longest ago until room more bytes fit; false
 * when they cannot. Under sc_lock; keep is not evicted. */
static bool make_room(struct storage_user *u, size_t more, const struct scache *keep)
{
    uint64_t max = storage_limits.sort_cache_bytes;
    while (u->sc_bytes + more > max) {
        struct scache **victim = NULL;
        for (struct scache **pp = &u->sc; *pp; pp = &(*pp)->next)
            if (*pp != keep && (!victim || (*pp)->used < (*victim)->used))
                victim = pp;
        if (!victim)
            return false;
        struct scache *v = *victim;
        *victim = v->next;
        u->sc_bytes -= v->bytes;
        scache_free(v);
    }
    return true;
}

static void unlink_cache(struct storage_user *u, struct scache *c)
{
    for (struct scache **pp = &u->sc; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            u->sc_bytes -= c->bytes;
            scache_free(c);
            return;
        }
}

/* Under sc_lock: mailbox mbox's cache with the columns of want and the
 * orders of keys (bits 1 << STORAGE_SORT_*), up to date with a->info.
 * One that would not fit is taken out of the list and also put in *tmp,
 * for the caller to free after its use. NULL on error (*rc). */
static struct scache *cache_get(struct storage_user *u, int64_t mbox, const struct ask *a,
                                unsigned want, unsigned keys, struct scache **tmp, int *rc)
{
    struct scache *c = NULL;
    sqlite3 *db = NULL;

    *rc = 0;
    *tmp = NULL;
    for (c = u->sc; c && c->mbox != mbox; c = c->next)
        ;
    /* another mailbox of that id, or half of it expunged: built again */
    if (c && (c->uidvalidity != a->info.mb.uidvalidity ||
              (c->n > 1024 && c->n > 2 * (size_t)a->info.messages))) {
        unlink_cache(u, c);
        c = NULL;
    }
    if (!c) {
        if (!(c = calloc(1, sizeof(*c)))) {
            *rc = STORAGE_E_NOMEM;
            return NULL;
        }
        c->mbox = mbox;
        c->uidvalidity = a->info.mb.uidvalidity;
        c->next = u->sc;
        u->sc = c;
    }
    c->used = ++u->sc_tick;
    for (int k = 0; k < NKEYS; k++)
        if (keys & (1u << k)) {
            int col = key_col(k);
            if (col >= 0)
                want |= 1u << col;
            else if (k == STORAGE_SORT_DATE)
                want |= KEYS_DATE;
        }
    for (int k = 0; k < S_N; k++)
        if (c->col[k].have)
            want &= ~(1u << k);
    if (c->have_date)
        want &= ~KEYS_DATE;
    if (c->covered < a->info.mb.uidnext || want) {
        if (!(db = reader_get(u))) {
            *rc = STORAGE_E_TEMP;
            goto fail;
        }
        if ((*rc = db_exec(db, "BEGIN")) != 0)
            goto fail;
    }
    if (want && (*rc = load_cols(db, c, want)) != 0)
        goto fail;
    if (c->covered < a->info.mb.uidnext) {
        size_t from = c->n;
        if ((*rc = load_new(db, c, a->info.mb.uidnext)) != 0 || (*rc = merge_new(c, from)) != 0)
            goto fail;
    }
    if (db) {
        db_exec(db, "COMMIT");
        reader_put(u, db);
        db = NULL;
    }
    for (int k = 0; k < NKEYS; k++)
        if ((keys & (1u << k)) && !c->ord[k].have && (*rc = build_order(c, k)) != 0)
            goto fail;
    u->sc_bytes -= c->bytes;
    c->bytes = scache_bytes(c);
    u->sc_bytes += c->bytes;
    if (!make_room(u, 0, c)) {
        /* too big to keep: this use only, then freed (*tmp) */
        for (struct scache **pp = &u->sc; *pp; pp = &(*pp)->next)
            if (*pp == c) {
                *pp = c->next;
                break;
            }
        u->sc_bytes -= c->bytes;
        *tmp = c;
    }
    return c;
fail:
    if (db) {
        db_exec(db, "ROLLBACK");
        reader_put(u, db);
    }
    unlink_cache(u, c);
    return NULL;
}

struct rctx {
    const struct scache *c;
    const struct storage_sort_crit *crit;
    size_t n;
};

static int rank_cmp(const void *x, const void *y, void *arg)
{
    uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
    const struct rctx *rx = arg;
    for (size_t k = 0; k < rx->n; k++) {
        const uint32_t *r = rx->c->ord[rx->crit[k].key].rank;
        if (r[i] != r[j])
            return (r[i] < r[j]) != rx->crit[k].reverse ? -1 : 1;
    }
    return i < j ? -1 : i > j; /* index order is UID order */
}

int sortcache_sort(struct storage_user *u, int64_t mbox, const struct storage_search *q,
                   const struct storage_sort_crit *crit, size_t n, struct storage_uidlist *out)
{
    struct ask a;
    unsigned keys = 0;
    uint8_t *in = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!storage_limits.sort_cache_bytes || n == 0)
        return 1;
    for (size_t i = 0; i < n; i++)
        keys |= 1u << crit[i].key;
    if ((rc = ask_read(u, mbox, q, &a)) != 0) {
        ask_free(&a);
        return rc == STORAGE_E_NOMBOX ? 1 : rc; /* gone meanwhile: as the index has it */
    }
    pthread_mutex_lock(&u->sc_lock);
    struct scache *tmp, *c = cache_get(u, mbox, &a, 0, keys, &tmp, &rc);
    if (!c)
        goto out;
    if (!(in = malloc(c->n ? c->n : 1)) ||
        !(out->uids = malloc((c->n ? c->n : 1) * sizeof(*out->uids)))) {
        rc = STORAGE_E_NOMEM;
        goto out;
    }
    ask_mark(c, &a, in);
    const struct sorder *o0 = &c->ord[crit[0].key];
    size_t w = 0;
    if (n == 1 && !crit[0].reverse) {
        for (size_t j = 0; j < c->n; j++)
            if (in[o0->order[j]])
                out->uids[w++] = c->uids[o0->order[j]];
    } else if (n == 1) {
        /* REVERSE: the groups of equal keys from the last, each in UID
         * order (RFC 5256: exact matches in the order of the mailbox) */
        size_t e = c->n;
        while (e > 0) {
            size_t b = e - 1;
            while (b > 0 && o0->rank[o0->order[b - 1]] == o0->rank[o0->order[e - 1]])
                b--;
            for (size_t j = b; j < e; j++)
                if (in[o0->order[j]])
                    out->uids[w++] = c->uids[o0->order[j]];
            e = b;
        }
    } else {
        /* several keys: the chosen messages sorted by their ranks */
        uint32_t *sel = out->uids;
        for (size_t j = 0; j < c->n; j++)
            if (in[j])
                sel[w++] = (uint32_t)j;
        struct rctx rx = {c, crit, n};
        qsort_r(sel, w, sizeof(*sel), rank_cmp, &rx);
        for (size_t j = 0; j < w; j++)
            sel[j] = c->uids[sel[j]];
    }
    out->n = out->cap = w;
out:
    pthread_mutex_unlock(&u->sc_lock);
    scache_free(tmp);
    free(in);
    ask_free(&a);
    if (rc)
        storage_uidlist_free(out);
    return rc;
}

int sortcache_rows(struct storage_user *u, int64_t mbox, const struct storage_search *q,
                   unsigned want, struct rows *rs)
{
    struct ask a;
    uint8_t *in = NULL;
    int rc;

    memset(rs, 0, sizeof(*rs));
    if (!storage_limits.sort_cache_bytes)
        return 1;
    if ((rc = ask_read(u, mbox, q, &a)) != 0) {
        ask_free(&a);
        return rc == STORAGE_E_NOMBOX ? 1 : rc; /* gone meanwhile: as the index has it */
    }
    pthread_mutex_lock(&u->sc_lock);
    struct scache *tmp, *c = cache_get(u, mbox, &a, want | KEYS_DATE, 0, &tmp, &rc);
    if (!c)
        goto out;
    if (!(in = malloc(c->n ? c->n : 1))) {
        rc = STORAGE_E_NOMEM;
        goto out;
    }
    ask_mark(c, &a, in);
    size_t m = 0;
    for (size_t j = 0; j < c->n; j++)
        m += in[j];
    if (!(rs->r = malloc((m ? m : 1) * sizeof(*rs->r)))) {
        rc = STORAGE_E_NOMEM;
        goto out;
    }
    rs->cap = m;
    buf_addc(&rs->pool, '\0'); /* offset 0: the empty string */
    /* the strings copied: the rows outlive the lock */
    for (size_t j = 0; j < c->n; j++) {
        if (!in[j])
            continue;
        struct srow *r = &rs->r[rs->n++];
        memset(r, 0, sizeof(*r));
        r->uid = c->uids[j];
        r->arrival = c->arrival[j];
        r->size = c->size[j];
        r->date = c->date[j];
        r->refwd = c->refwd[j];
        for (int k = 0; k < S_N; k++) {
            if (!(want & (1u << k)) || !c->col[k].off[j])
                continue;
            const char *t = c->col[k].pool.p + c->col[k].off[j];
            rows_add_str(rs, r, k, t, strlen(t));
        }
    }
    if (rs->pool.oom)
        rc = STORAGE_E_NOMEM;
out:
    pthread_mutex_unlock(&u->sc_lock);
    scache_free(tmp);
    free(in);
    ask_free(&a);
    if (rc) {
        free(rs->r);
        buf_free(&rs->pool);
        memset(rs, 0, sizeof(*rs));
        return rc;
    }
    for (size_t i = 0; i < rs->n; i++)
        for (int k = 0; k < S_N; k++)
            rs->r[i].s[k] = rs->pool.p + (uintptr_t)rs->r[i].s[k];
    return 0;
}
