/* The full-text index: what SEARCH BODY and TEXT read, and how new texts
 * get into it.
 *
 * A body's searchable text (the decoded text parts, storage/mime.c; for
 * TEXT also the Subject, From, To, Cc and Bcc decoded and the whole header
 * block as stored in bodies.header, RFC 3501 6.4.4) is either waiting in
 * fts_pending (a delivery leaves it there) or indexed (storage_fts_index
 * moves it):
 *   fts        the text, deflated, for checking a candidate and for taking
 *              the body out of the word index again;
 *   fts_words  a word index (FTS5, unicode61 tokenizer without diacritics
 *              removal, contentless, detail=column): which bodies have
 *              which word, in the headers or the body;
 *   fts_terms  every word the index has ever held, and fts_grams, a trigram
 *              index of those words: the words containing a string.
 * IMAP SEARCH is a case-insensitive substring match. A string that is one
 * word (letters and digits only) is found inside a word: the words that
 * contain it (fts_grams) give exactly the bodies that contain it
 * (fts_words), with no text read. Any other string narrows the candidates
 * by its words (inner words whole, the first one anywhere inside a word,
 * the last one as a word's beginning), and the candidates' texts are
 * checked. A string with nothing to narrow by (one or two characters, only
 * punctuation) scans every text. Texts still waiting are always scanned.
 * Matching is the i;unicode-casemap comparator's (RFC 5051, mime_casemap.c:
 * titlecase, then full decomposition): the word index holds the words of
 * the texts' casemapped forms, the string's words are looked up in its
 * casemapped form, and the checks compare the two forms (contains_ci).
 * "cafe" is inside the casemapped "café", so finds it; "café" does not
 * find "cafe". */
#include "storage/internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "server/base/buf.h"
#include "storage/mime.h"

/* Words of a search string used to narrow the candidates. */
#define FTS_QUERY_WORDS 32
/* Shortest string looked up inside the words (the trigram index's unit). */
#define FTS_INFIX_MIN 3
/* A word of a search string longer than this (bytes) is looked up by its
 * beginning: the index then gives a superset that the texts' check
 * narrows, and a lookup costs what a word of this length costs, whatever
 * the client sends (a phrase of as many trigrams as the word is long makes
 * FTS5 use memory that grows much faster than the word). */
#define FTS_QUERY_WORD_MAX 64

/* ---- tokenizers of the connection's FTS5 ---- */

struct tok {
    fts5_tokenizer api;
    Fts5Tokenizer *t;
};

static int tok_open(sqlite3 *db, const char *name, const char **args, int nargs, struct tok *out)
{
    fts5_api *api = NULL;
    sqlite3_stmt *st;
    void *ud = NULL;

    out->t = NULL;
    if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
        sqlite3_step(st);
        db_finalize(st);
    }
    if (!api || api->xFindTokenizer(api, name, &ud, &out->api) != SQLITE_OK ||
        out->api.xCreate(ud, args, nargs, &out->t) != SQLITE_OK) {
        out->t = NULL;
        return STORAGE_E_FAIL;
    }
    return 0;
}

static void tok_close(struct tok *t)
{
    if (t->t)
        t->api.xDelete(t->t);
    t->t = NULL;
}

/* The word index's tokenizer, as in its CREATE. */
static int words_open(sqlite3 *db, struct tok *t)
{
    static const char *args[] = {"remove_diacritics", "0"};
    return tok_open(db, "unicode61", args, 2, t);
}

/* ---- case folding, as the index folds ---- */

struct sbuf {
    char *p;
    size_t len, cap;
};

static int sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        char *np;
        while (nc < b->len + n + 1)
            nc *= 2;
        if (!(np = realloc(b->p, nc)))
            return SQLITE_NOMEM;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return SQLITE_OK;
}

/* What a search needs for checking texts: the string, and scratch room. */
struct matcher {
    const char *str; /* as the client sent it (UTF-8) */
    size_t len;
    unsigned char *raw; /* an inflated text */
    size_t rawcap;
    bool body_only; /* BODY: not the headers */
};

/* 1 when text (n bytes) contains the string, in the i;unicode-casemap
 * comparator (contains_ci), 0 when not. */
static int text_has(struct matcher *m, const char *text, size_t n)
{
    return text && contains_ci(text, n, m->str, m->len);
}

/* The text of an indexed body, inflated: *text NULL when it has none. */
static int inflate_text(struct matcher *m, sqlite3_stmt *st, int col_len, int col_z,
                        const char **text, size_t *n)
{
    int64_t len = sqlite3_column_int64(st, col_len);
    const void *z = sqlite3_column_blob(st, col_z);
    uLongf out;

    *text = NULL;
    *n = 0;
    if (sqlite3_column_type(st, col_z) == SQLITE_NULL)
        return 0;
    if (len < 0 || len > 4 * (int64_t)MIME_MAX_TEXT)
        return STORAGE_E_CORRUPT;
    if ((size_t)len + 1 > m->rawcap) {
        unsigned char *p = realloc(m->raw, (size_t)len + 1);
        if (!p)
            return STORAGE_E_NOMEM;
        m->raw = p;
        m->rawcap = (size_t)len + 1;
    }
    out = (uLongf)len;
    if (uncompress(m->raw, &out, z, (uLong)sqlite3_column_bytes(st, col_z)) != Z_OK ||
        out != (uLongf)len)
        return STORAGE_E_CORRUPT;
    m->raw[len] = '\0';
    *text = (const char *)m->raw;
    *n = (size_t)len;
    return 0;
}

/* Checks the row of st: body text (inflated when z, else plain) in column
 * `text`, the headers (subject, from_, to_, cc, bcc) in the five columns
 * from `head`, and the header block in the one after them. 1 when it
 * contains the string. */
static int row_has(struct matcher *m, sqlite3_stmt *st, int text, bool z, int head)
{
    const char *t;
    size_t n;
    int rc;

    if (z) {
        if ((rc = inflate_text(m, st, text, text + 1, &t, &n)) != 0)
            return rc;
    } else {
        t = (const char *)sqlite3_column_text(st, text);
        n = (size_t)sqlite3_column_bytes(st, text);
    }
    if ((rc = text_has(m, t, n)) != 0 || m->body_only)
        return rc;
    for (int i = head; i < head + 5; i++) {
        t = (const char *)sqlite3_column_text(st, i);
        if ((rc = text_has(m, t, (size_t)sqlite3_column_bytes(st, i))) != 0)
            return rc;
    }
    t = (const char *)sqlite3_column_blob(st, head + 5);
    return text_has(m, t, (size_t)sqlite3_column_bytes(st, head + 5));
}

static void matcher_free(struct matcher *m)
{
    free(m->raw);
}

/* ---- sets of body ids ---- */

static int ids_add(struct fts_ids *s, int64_t id)
{
    if (array_grow(&s->v, &s->cap, s->n, sizeof(s->v[0]), 64) != 0)
        return STORAGE_E_NOMEM;
    s->v[s->n++] = id;
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void ids_sort(struct fts_ids *s)
{
    size_t o = 0;

    if (s->n == 0)
        return; /* v may be NULL, which qsort must not get */
    qsort(s->v, s->n, sizeof(s->v[0]), cmp_id);
    for (size_t i = 0; i < s->n; i++)
        if (o == 0 || s->v[i] != s->v[o - 1])
            s->v[o++] = s->v[i];
    s->n = o;
}

/* a &= b, both sorted */
static void ids_and(struct fts_ids *a, const struct fts_ids *b)
{
    size_t i = 0, j = 0, o = 0;

    while (i < a->n && j < b->n) {
        if (a->v[i] < b->v[j])
            i++;
        else if (a->v[i] > b->v[j])
            j++;
        else {
            a->v[o++] = a->v[i++];
            j++;
        }
    }
    a->n = o;
}

bool fts_ids_has(const struct fts_ids *s, int64_t id)
{
    size_t lo = 0, hi = s->n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->v[mid] < id)
            lo = mid + 1;
        else if (s->v[mid] > id)
            hi = mid;
        else
            return true;
    }
    return false;
}

void fts_ids_free(struct fts_ids *s)
{
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* ---- the words of a search string ---- */

enum word_kind {
    W_WHOLE,  /* between two separators of the string: a word of the text */
    W_INSIDE, /* the string begins with it: the end of a word, or inside one */
    W_BEGIN,  /* the string ends with it: the beginning of a word */
};

struct qword {
    char *term; /* folded */
    size_t chars;
    enum word_kind kind;
};

struct qwords {
    struct qword w[FTS_QUERY_WORDS];
    size_t n;
    int len;    /* of the string */
    bool exact; /* one word, touching both ends: the index answers alone */
};

static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            c++;
    return c;
}

static int on_qword(void *ctx, int tflags, const char *t, int tlen, int start, int end)
{
    struct qwords *q = ctx;
    struct qword *w;

    (void)tflags;
    if (tlen <= 0 || q->n == FTS_QUERY_WORDS)
        return SQLITE_OK; /* words past the first ones narrow nothing more */
    w = &q->w[q->n];
    bool cut = tlen > FTS_QUERY_WORD_MAX;
    if (cut) {
        tlen = FTS_QUERY_WORD_MAX;
        while (tlen > 0 && ((unsigned char)t[tlen] & 0xc0) == 0x80)
            tlen--; /* not inside a UTF-8 sequence */
    }
    if (!(w->term = malloc((size_t)tlen + 1)))
        return SQLITE_NOMEM;
    memcpy(w->term, t, (size_t)tlen);
    w->term[tlen] = '\0';
    w->chars = utf8_chars(t, (size_t)tlen);
    /* cut short, a whole word is only the beginning of one */
    w->kind = start == 0 ? W_INSIDE : end == q->len || cut ? W_BEGIN : W_WHOLE;
    q->exact = q->n == 0 && start == 0 && end == q->len && !cut;
    q->n++;
    return SQLITE_OK;
}

static void qwords_free(struct qwords *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->w[i].term);
}

/* An FTS5 query for term (as a phrase, quotes doubled), in the body column
 * only when body_only, as a word's beginning when prefix. */
static char *match_expr(const char *term, bool body_only, bool prefix)
{
    size_t l = strlen(term), o = 0;
    char *p = malloc(2 * l + 16);

    if (!p)
        return NULL;
    if (body_only) {
        memcpy(p, "{body} : ", 9);
        o = 9;
    }
    p[o++] = '"';
    for (size_t i = 0; i < l; i++) {
        if (term[i] == '"')
            p[o++] = '"';
        p[o++] = term[i];
    }
    p[o++] = '"';
    if (prefix) {
        memcpy(p + o, " *", 2);
        o += 2;
    }
    p[o] = '\0';
    return p;
}

/* Adds to out the bodies the FTS5 query expr finds in table. */
static int match_into(sqlite3 *db, const char *sql, const char *expr, struct fts_ids *out,
                      sqlite3_stmt **st)
{
    int rc, s;

    if (!*st && (rc = db_prepare(db, sql, st)) != 0)
        return rc;
    sqlite3_reset(*st);
    sqlite3_bind_text(*st, 1, expr, -1, SQLITE_TRANSIENT);
    while ((s = sqlite3_step(*st)) == SQLITE_ROW)
        if (ids_add(out, sqlite3_column_int64(*st, 0)) != 0)
            return STORAGE_E_NOMEM;
    return s == SQLITE_DONE ? 0 : err_from_sqlite(db, s);
}

/* The bodies with a word containing w (its trigrams find the words). */
static int inside_word(sqlite3 *db, const struct qword *w, bool body_only, struct fts_ids *out)
{
    sqlite3_stmt *terms = NULL, *bodies = NULL;
    char *expr = match_expr(w->term, false, false);
    int rc, s;

    if (!expr)
        return STORAGE_E_NOMEM;
    rc = db_prepare(db, "SELECT term FROM fts_grams WHERE fts_grams MATCH ?", &terms);
    if (rc == 0) {
        sqlite3_bind_text(terms, 1, expr, -1, SQLITE_STATIC);
        while (rc == 0 && (s = sqlite3_step(terms)) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(terms, 0);
            char *e = t ? match_expr(t, body_only, false) : NULL;
            if (!t)
                continue;
            rc = e ? match_into(db, "SELECT rowid FROM fts_words WHERE fts_words MATCH ?", e, out,
                                &bodies)
                   : STORAGE_E_NOMEM;
            free(e);
        }
        if (rc == 0 && s != SQLITE_DONE)
            rc = err_from_sqlite(db, s);
    }
    db_finalize(terms);
    db_finalize(bodies);
    free(expr);
    return rc;
}

/* The bodies the word index gives for w; *narrows false when w narrows
 * nothing (too short to be looked up inside words). */
static int word_bodies(sqlite3 *db, const struct qword *w, bool body_only, struct fts_ids *out,
                       bool *narrows)
{
    sqlite3_stmt *st = NULL;
    char *expr;
    int rc;

    *narrows = true;
    if (w->kind == W_INSIDE) {
        if (w->chars < FTS_INFIX_MIN) {
            *narrows = false;
            return 0;
        }
        rc = inside_word(db, w, body_only, out);
    } else {
        if (w->kind == W_BEGIN && w->chars < 2) {
            *narrows = false; /* every word with that letter first: little gain */
            return 0;
        }
        if (!(expr = match_expr(w->term, body_only, w->kind == W_BEGIN)))
            return STORAGE_E_NOMEM;
        rc = match_into(db, "SELECT rowid FROM fts_words WHERE fts_words MATCH ?", expr, out, &st);
        db_finalize(st);
        free(expr);
    }
    if (rc == 0)
        ids_sort(out);
    return rc;
}

/* ---- SEARCH BODY / TEXT ---- */

/* Checks the texts st gives (body_id, then what row_has reads), adding the
 * bodies that contain the string to out. */
static int scan(sqlite3 *db, sqlite3_stmt *st, struct matcher *m, bool z, struct fts_ids *out)
{
    int s, rc = 0;

    while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
        rc = row_has(m, st, 1, z, z ? 3 : 2);
        if (rc == 1)
            rc = ids_add(out, sqlite3_column_int64(st, 0));
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = err_from_sqlite(db, s);
    return rc;
}

#define INDEXED_COLS                                                                               \
    "t.body_id, t.len, t.z, b.subject, b.from_, b.to_, b.cc, b.bcc, " HEADER_OF("h", "b")
#define INDEXED_FROM                                                                               \
    " FROM fts t JOIN bodies b ON b.id = t.body_id LEFT JOIN headers h ON h.body_id = t.body_id"
/* the waiting texts, with their bodies' header blocks */
#define PENDING_HEADER HEADER_OF("h", "b")
#define PENDING_FROM                                                                               \
    " FROM fts_pending p LEFT JOIN bodies b ON b.id = p.body_id"                                   \
    " LEFT JOIN headers h ON h.body_id = p.body_id"

int fts_search(sqlite3 *db, const char *str, bool body_only, struct fts_ids *result)
{
    struct matcher m = {.str = str, .len = strlen(str), .body_only = body_only};
    struct qwords q = {0};
    struct fts_ids cand = {0}, out = {0};
    struct buf mapped = {0};
    sqlite3_stmt *st = NULL;
    struct tok words;
    bool narrowed = false;
    int rc;

    memset(result, 0, sizeof(*result));
    /* the words of the string's casemapped form, as the index holds the
     * words of the texts' */
    mime_casemap(&mapped, str, m.len);
    if (mapped.oom || mapped.len > INT_MAX) {
        rc = STORAGE_E_NOMEM;
        goto out;
    }
    q.len = (int)mapped.len;
    if ((rc = words_open(db, &words)) != 0)
        goto out;
    if (words.api.xTokenize(words.t, &q, FTS5_TOKENIZE_QUERY, mapped.p ? mapped.p : "", q.len,
                            on_qword) != SQLITE_OK)
        rc = STORAGE_E_NOMEM;
    tok_close(&words);
    if (rc)
        goto out;

    /* indexed texts: the candidates of each word, intersected */
    for (size_t i = 0; i < q.n; i++) {
        struct fts_ids w = {0};
        bool narrows;
        if ((rc = word_bodies(db, &q.w[i], body_only, &w, &narrows)) != 0) {
            free(w.v);
            goto out;
        }
        if (!narrows)
            continue;
        if (!narrowed) {
            cand = w;
            narrowed = true;
        } else {
            ids_and(&cand, &w);
            free(w.v);
        }
        if (cand.n == 0)
            break;
    }
    if (narrowed && q.exact && q.n == 1) {
        out = cand; /* a word inside words: the index's answer is exact */
        cand = (struct fts_ids){0};
    } else if (narrowed) {
        /* the candidates' texts are checked */
        rc = db_prepare(db, "SELECT " INDEXED_COLS INDEXED_FROM " WHERE t.body_id = ?", &st);
        for (size_t i = 0; rc == 0 && i < cand.n; i++) {
            sqlite3_reset(st);
            sqlite3_bind_int64(st, 1, cand.v[i]);
            rc = scan(db, st, &m, true, &out);
        }
    } else {
        /* nothing to narrow by: every text */
        if ((rc = db_prepare(db, "SELECT " INDEXED_COLS INDEXED_FROM, &st)) == 0)
            rc = scan(db, st, &m, true, &out);
    }
    db_finalize(st);
    st = NULL;
    if (rc)
        goto out;

    /* texts waiting for the index: scanned */
    if ((rc = db_prepare(
             db,
             "SELECT p.body_id, p.text, p.subject, p.from_, p.to_, p.cc, p.bcc, " PENDING_HEADER
                 PENDING_FROM,
             &st)) == 0)
        rc = scan(db, st, &m, false, &out);
    db_finalize(st);
    if (rc)
        goto out;
    ids_sort(&out);
    result->v = out.v;
    result->n = out.n;
    out.v = NULL;
out:
    free(out.v);
    free(cand.v);
    qwords_free(&q);
    matcher_free(&m);
    buf_free(&mapped);
    return rc;
}

/* ---- indexing ---- */

/* The distinct words of a batch of texts (an open-addressing hash set);
 * each slot keeps its word's hash and length, so that a probe compares
 * words only when their hashes are equal. */
struct term {
    char *s;
    size_t len;
    uint64_t h;
};

struct termset {
    struct term *slot;
    size_t cap, n;
};

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int termset_grow(struct termset *ts)
{
    size_t nc = ts->cap ? ts->cap * 2 : 1024;
    struct term *ns = calloc(nc, sizeof(*ns));

    if (!ns)
        return SQLITE_NOMEM;
    for (size_t i = 0; i < ts->cap; i++) {
        size_t k;
        if (!ts->slot[i].s)
            continue;
        k = ts->slot[i].h & (nc - 1);
        while (ns[k].s)
            k = (k + 1) & (nc - 1);
        ns[k] = ts->slot[i];
    }
    free(ts->slot);
    ts->slot = ns;
    ts->cap = nc;
    return SQLITE_OK;
}

static int on_term(void *ctx, int tflags, const char *t, int tlen, int start, int end)
{
    struct termset *ts = ctx;
    size_t k, l = (size_t)tlen;
    uint64_t h;

    (void)tflags;
    (void)start;
    (void)end;
    if (tlen <= 0)
        return SQLITE_OK;
    if (2 * (ts->n + 1) > ts->cap && termset_grow(ts) != SQLITE_OK)
        return SQLITE_NOMEM;
    h = hash(t, l);
    k = h & (ts->cap - 1);
    while (ts->slot[k].s) {
        if (ts->slot[k].h == h && ts->slot[k].len == l && memcmp(ts->slot[k].s, t, l) == 0)
            return SQLITE_OK;
        k = (k + 1) & (ts->cap - 1);
    }
    if (!(ts->slot[k].s = malloc(l + 1)))
        return SQLITE_NOMEM;
    memcpy(ts->slot[k].s, t, l);
    ts->slot[k].s[l] = '\0';
    ts->slot[k].len = l;
    ts->slot[k].h = h;
    ts->n++;
    return SQLITE_OK;
}

static void termset_free(struct termset *ts)
{
    for (size_t i = 0; i < ts->cap; i++)
        free(ts->slot[i].s);
    free(ts->slot);
}

/* The header column of the word index: the five decoded fields from
 * column `first`, one a line, then the header block (column first + 5) as
 * stored, in their casemapped form (mime_casemap) as every text the word
 * index holds. Indexing and forgetting a body must give the same text. */
static int head_text(sqlite3_stmt *st, int first, struct sbuf *out)
{
    struct buf raw = {0}, mapped = {0};
    int rc = 0;

    for (int i = first; i < first + 6; i++) {
        const char *s = i < first + 5 ? (const char *)sqlite3_column_text(st, i)
                                      : (const char *)sqlite3_column_blob(st, i);
        if (!s)
            continue;
        if (raw.len)
            buf_addc(&raw, '\n');
        buf_add(&raw, s, (size_t)sqlite3_column_bytes(st, i));
    }
    mime_casemap(&mapped, raw.p ? raw.p : "", raw.len);
    out->len = 0;
    if (raw.oom || mapped.oom || sbuf_add(out, mapped.p ? mapped.p : "", mapped.len) != SQLITE_OK)
        rc = STORAGE_E_NOMEM;
    buf_free(&raw);
    buf_free(&mapped);
    return rc;
}

/* A body text in its casemapped form, for the word index; NULL for none. */
static int body_words(const char *text, size_t n, struct buf *out)
{
    buf_reset(out);
    if (!text)
        return 0;
    mime_casemap(out, text, n);
    return out->oom || out->len > INT_MAX ? STORAGE_E_NOMEM : 0;
}

/* The words new to the index go into fts_terms and fts_grams. */
static int add_terms(sqlite3 *db, struct termset *ts)
{
    sqlite3_stmt *ins = NULL, *gram = NULL;
    int rc;

    if ((rc = db_prepare(db, "INSERT OR IGNORE INTO fts_terms(term) VALUES (?)", &ins)) != 0 ||
        (rc = db_prepare(db, "INSERT INTO fts_grams(rowid, term) VALUES (?, ?)", &gram)) != 0)
        goto out;
    for (size_t i = 0; rc == 0 && i < ts->cap; i++) {
        int s;
        if (!ts->slot[i].s)
            continue;
        sqlite3_reset(ins);
        sqlite3_bind_text(ins, 1, ts->slot[i].s, -1, SQLITE_STATIC);
        if ((s = sqlite3_step(ins)) != SQLITE_DONE) {
            rc = err_from_sqlite(db, s);
            break;
        }
        if (sqlite3_changes(db) == 0)
            continue;
        sqlite3_reset(gram);
        sqlite3_bind_int64(gram, 1, sqlite3_last_insert_rowid(db));
        sqlite3_bind_text(gram, 2, ts->slot[i].s, -1, SQLITE_STATIC);
        if ((s = sqlite3_step(gram)) != SQLITE_DONE)
            rc = err_from_sqlite(db, s);
    }
out:
    db_finalize(ins);
    db_finalize(gram);
    return rc;
}

/* zlib's level for the stored texts: they are read back only to check a
 * candidate, and written once; 6 (the default) costs about twice level 1
 * for a few percent less. */
#define FTS_ZLEVEL 1

/* Indexes one waiting text (the row of st: body_id, subject, from_, to_,
 * cc, bcc, header, text). */
static int index_one(sqlite3 *db, sqlite3_stmt *st, sqlite3_stmt *words, sqlite3_stmt *text,
                     struct tok *tok, struct termset *ts, struct sbuf *head, struct buf *bw,
                     struct sbuf *z)
{
    int64_t id = sqlite3_column_int64(st, 0);
    const char *body = (const char *)sqlite3_column_text(st, 7);
    size_t blen = (size_t)sqlite3_column_bytes(st, 7);
    int rc, s;

    if ((rc = head_text(st, 1, head)) != 0 || (rc = body_words(body, blen, bw)) != 0)
        return rc;
    sqlite3_reset(words);
    sqlite3_bind_int64(words, 1, id);
    sqlite3_bind_text(words, 2, head->p, (int)head->len, SQLITE_STATIC);
    if (body)
        sqlite3_bind_text(words, 3, bw->p, (int)bw->len, SQLITE_STATIC);
    else
        sqlite3_bind_null(words, 3);
    if ((s = sqlite3_step(words)) != SQLITE_DONE)
        return err_from_sqlite(db, s);

    sqlite3_reset(text);
    sqlite3_bind_int64(text, 1, id);
    sqlite3_bind_int64(text, 2, body ? (int64_t)blen : 0);
    if (body) {
        uLongf zl = compressBound((uLong)blen);
        if (zl > z->cap) {
            char *p = realloc(z->p, zl);
            if (!p)
                return STORAGE_E_NOMEM;
            z->p = p;
            z->cap = zl;
        }
        if (compress2((Bytef *)z->p, &zl, (const Bytef *)body, (uLong)blen, FTS_ZLEVEL) != Z_OK)
            return STORAGE_E_NOMEM;
        sqlite3_bind_blob(text, 3, z->p, (int)zl, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(text, 3);
    }
    if ((s = sqlite3_step(text)) != SQLITE_DONE)
        return err_from_sqlite(db, s);

    /* its words, for the words' index */
    if (tok->api.xTokenize(tok->t, ts, FTS5_TOKENIZE_DOCUMENT, head->p, (int)head->len, on_term) !=
            SQLITE_OK ||
        (body && tok->api.xTokenize(tok->t, ts, FTS5_TOKENIZE_DOCUMENT, bw->p, (int)bw->len,
                                    on_term) != SQLITE_OK))
        return STORAGE_E_NOMEM;
    return 0;
}

int fts_index_batch(sqlite3 *db, int64_t max, uint64_t until_ms, const int *yield, int64_t *last)
{
    sqlite3_stmt *st = NULL, *words = NULL, *text = NULL;
    struct sbuf head = {0}, z = {0};
    struct buf bw = {0};
    struct termset ts = {0};
    struct tok tok = {0};
    int rc, s = SQLITE_DONE;

    *last = 0;
    if ((rc = words_open(db, &tok)) != 0 ||
        (rc = db_prepare(db,
                         "SELECT p.body_id, p.subject, p.from_, p.to_, p.cc, p.bcc, " PENDING_HEADER
                         ", p.text" PENDING_FROM " ORDER BY p.body_id LIMIT ?",
                         &st)) != 0 ||
        (rc = db_prepare(db, "INSERT INTO fts_words(rowid, head, body) VALUES (?, ?, ?)",
                         &words)) != 0 ||
        (rc = db_prepare(db, "INSERT INTO fts(body_id, len, z) VALUES (?, ?, ?)", &text)) != 0)
        goto out;
    sqlite3_bind_int64(st, 1, max);
    while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
        rc = index_one(db, st, words, text, &tok, &ts, &head, &bw, &z);
        *last = sqlite3_column_int64(st, 0);
        if ((until_ms && mono_ms() >= until_ms) ||
            (yield && __atomic_load_n(yield, __ATOMIC_RELAXED)))
            break;
    }
    if (rc == 0 && s != SQLITE_DONE && s != SQLITE_ROW)
        rc = err_from_sqlite(db, s);
    sqlite3_reset(st); /* done reading fts_pending, whose rows go below */
    if (rc == 0 && *last)
        rc = add_terms(db, &ts);
    if (rc == 0 && *last)
        rc = db_run(db, "DELETE FROM fts_pending WHERE body_id <= ?", *last);
out:
    db_finalize(st);
    db_finalize(words);
    db_finalize(text);
    tok_close(&tok);
    termset_free(&ts);
    free(head.p);
    buf_free(&bw);
    free(z.p);
    return rc;
}

/* A contentless index forgets a row only when told what it held: the same
 * header line and text as when it was indexed. */
int fts_forget(sqlite3 *db, int64_t body_id)
{
    struct matcher m = {0};
    struct sbuf head = {0};
    struct buf bw = {0};
    sqlite3_stmt *st = NULL, *del = NULL;
    const char *text;
    size_t n;
    int rc, s;

    if ((rc = db_run(db, "DELETE FROM fts_pending WHERE body_id = ?", body_id)) != 0 ||
        sqlite3_changes(db) > 0)
        return rc;
    if ((rc = db_prepare(db, "SELECT " INDEXED_COLS INDEXED_FROM " WHERE t.body_id = ?", &st)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, body_id);
    if ((s = sqlite3_step(st)) != SQLITE_ROW) {
        /* in neither: nothing to forget */
        rc = s == SQLITE_DONE ? 0 : err_from_sqlite(db, s);
        goto out;
    }
    if ((rc = inflate_text(&m, st, 1, 2, &text, &n)) != 0 || (rc = head_text(st, 3, &head)) != 0 ||
        (rc = body_words(text, n, &bw)) != 0 ||
        (rc = db_prepare(db,
                         "INSERT INTO fts_words(fts_words, rowid, head, body)"
                         " VALUES ('delete', ?, ?, ?)",
                         &del)) != 0)
        goto out;
    sqlite3_bind_int64(del, 1, body_id);
    sqlite3_bind_text(del, 2, head.p, (int)head.len, SQLITE_STATIC);
    if (text)
        sqlite3_bind_text(del, 3, bw.p, (int)bw.len, SQLITE_STATIC);
    else
        sqlite3_bind_null(del, 3);
    if ((rc = db_step_done(db, del)) == 0)
        rc = db_run(db, "DELETE FROM fts WHERE body_id = ?", body_id);
    del = NULL;
out:
    db_finalize(st);
    db_finalize(del);
    free(head.p);
    buf_free(&bw);
    matcher_free(&m);
    return rc;
}

/* Schema 4 had a trigram index of every text, with its content (fts): its
 * texts wait again, searchable by a scan until the upkeep has indexed them
 * anew, and the old index goes. */
int fts_migrate_4(sqlite3 *db)
{
    return db_exec(db, "INSERT OR IGNORE INTO fts_pending(body_id, subject, from_, to_, cc, bcc,"
                       " text) SELECT rowid, subject, from_, to_, cc, bcc, text FROM fts;"
                       "DROP TABLE fts;");
}

/* Schema 5 indexed only the five decoded header fields, not the header
 * block, and schemas 5 to 7 indexed the words as FTS5 folds them, not in
 * their casemapped form: the texts (inflated here, SQL cannot) wait again, searchable by a
 * scan until the upkeep has indexed them anew, and the word index starts
 * empty (the words it had stay in fts_terms, which may hold more words than
 * the index). */
int fts_reindex_all(sqlite3 *db)
{
    struct matcher m = {0};
    sqlite3_stmt *st = NULL, *ins = NULL;
    const char *text;
    size_t n;
    int rc, s = SQLITE_DONE;

    if ((rc = db_prepare(db, "SELECT " INDEXED_COLS INDEXED_FROM, &st)) != 0 ||
        (rc = db_prepare(db,
                         "INSERT OR IGNORE INTO fts_pending(body_id, subject, from_, to_, cc, bcc,"
                         " text) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         &ins)) != 0)
        goto out;
    while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if ((rc = inflate_text(&m, st, 1, 2, &text, &n)) != 0)
            break;
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, sqlite3_column_int64(st, 0));
        for (int i = 0; i < 5; i++)
            sqlite3_bind_value(ins, 2 + i, sqlite3_column_value(st, 3 + i));
        if (text)
            sqlite3_bind_text(ins, 7, text, (int)n, SQLITE_STATIC);
        else
            sqlite3_bind_null(ins, 7);
        if ((s = sqlite3_step(ins)) != SQLITE_DONE)
            rc = err_from_sqlite(db, s);
    }
    if (rc == 0 && s != SQLITE_DONE && s != SQLITE_ROW)
        rc = err_from_sqlite(db, s);
    if (rc == 0)
        rc = db_exec(db, "DELETE FROM fts;"
                         "INSERT INTO fts_words(fts_words) VALUES ('delete-all');");
out:
    db_finalize(st);
    db_finalize(ins);
    matcher_free(&m);
    return rc;
}
