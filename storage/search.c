/* SEARCH: turns a criteria tree into one SQL query over the index. The SQL
 * text is made of fixed fragments only; every value is a bound parameter.
 * Also the SQL functions the queries use: coffre_inset (UID sets),
 * coffre_contains (case-insensitive substring), coffre_header (a header
 * field not kept in the index, read from the message file) and
 * coffre_fts_has (the trigram index's matching applied to a text not yet in
 * it). And storage_fts_index, which moves waiting texts into the index. */
#include "storage/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "storage/mime.h"

#define SEARCH_DEPTH_MAX 64
#define SEARCH_SQL_MAX (256 * 1024)
#define HEADER_READ_MAX (256 * 1024)

int uidset_normalize(const struct storage_uidset *set, struct storage_range **out, size_t *n);

struct rangeset {
    struct storage_range *r;
    size_t n;
};

/* ---- SQL functions ---- */

static void fn_inset(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const struct rangeset *rs = sqlite3_value_pointer(argv[0], "coffre_rangeset");
    uint32_t uid = (uint32_t)sqlite3_value_int64(argv[1]);
    size_t lo = 0, hi;

    if (!rs) {
        sqlite3_result_int(ctx, 0);
        return;
    }
    hi = rs->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uid < rs->r[mid].lo)
            hi = mid;
        else if (uid > rs->r[mid].hi)
            lo = mid + 1;
        else {
            sqlite3_result_int(ctx, 1);
            return;
        }
    }
    sqlite3_result_int(ctx, 0);
}

/* ASCII case-insensitive substring search (UTF-8 safe: only ASCII folds). */
static bool contains_ci(const char *hay, size_t hl, const char *needle, size_t nl)
{
    if (nl == 0)
        return true;
    if (nl > hl)
        return false;
    for (size_t i = 0; i + nl <= hl; i++) {
        size_t j = 0;
        while (j < nl) {
            unsigned char a = (unsigned char)hay[i + j], b = (unsigned char)needle[j];
            if (a >= 'A' && a <= 'Z')
                a = (unsigned char)(a + 32);
            if (b >= 'A' && b <= 'Z')
                b = (unsigned char)(b + 32);
            if (a != b)
                break;
            j++;
        }
        if (j == nl)
            return true;
    }
    return false;
}

static void fn_contains(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const char *h = (const char *)sqlite3_value_text(argv[0]);
    const char *n = (const char *)sqlite3_value_text(argv[1]);

    if (!h || !n) {
        sqlite3_result_int(ctx, 0);
        return;
    }
    sqlite3_result_int(ctx, contains_ci(h, (size_t)sqlite3_value_bytes(argv[0]), n,
                                        (size_t)sqlite3_value_bytes(argv[1])));
}

/* The header block of the message file a search looked at last: every
 * HEADER criterion on a field outside the index reads it, and SQLite
 * evaluates all of a row's criteria before the next row, so a file is
 * opened and read once per message whatever the number of criteria. One
 * per storage_search, bound to each coffre_header call as a pointer. */
struct header_cache {
    const char *mdir;
    char path[STORAGE_PATH_MAX]; /* "" when buf holds nothing */
    char *buf;                   /* HEADER_READ_MAX + 1 bytes */
    size_t hend;                 /* header block length in buf */
};

/* The header block of mdir/rel into c; false when the file cannot be read. */
static bool header_load(struct header_cache *c, const char *rel)
{
    char path[STORAGE_PATH_MAX];
    size_t len = 0;
    int fd;

    if (pathf(path, sizeof(path), "%s/%s", c->mdir, rel) < 0)
        return false;
    if (c->path[0] && strcmp(c->path, path) == 0)
        return true;
    c->path[0] = '\0';
    if (!c->buf && !(c->buf = malloc(HEADER_READ_MAX + 1)))
        return false;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    while (len < HEADER_READ_MAX) {
        ssize_t n = read(fd, c->buf + len, HEADER_READ_MAX - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        c->buf[len] = '\0';
        if (strstr(c->buf, "\r\n\r\n"))
            break;
    }
    close(fd);
    c->buf[len] = '\0';
    {
        char *e = strstr(c->buf, "\r\n\r\n");
        c->hend = e ? (size_t)(e - c->buf) + 2 : len;
    }
    memcpy(c->path, path, sizeof(path));
    return true;
}

/* coffre_header(cache, rel_path, field, value) */
static void fn_header(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    struct header_cache *c = sqlite3_value_pointer(argv[0], "coffre_header_cache");
    const char *rel = (const char *)sqlite3_value_text(argv[1]);
    const char *field = (const char *)sqlite3_value_text(argv[2]);
    const char *value = (const char *)sqlite3_value_text(argv[3]);
    const char *buf;
    size_t fl, hend;
    int found = 0;

    if (!c || !rel || !field || !value || !header_load(c, rel)) {
        sqlite3_result_int(ctx, 0);
        return;
    }
    fl = strlen(field);
    buf = c->buf;
    hend = c->hend;
    for (size_t i = 0; i < hend && !found;) {
        size_t ls = i, le;
        /* a field: its first line and its continuation lines */
        le = ls;
        for (;;) {
            while (le < hend && buf[le] != '\n')
                le++;
            if (le < hend)
                le++;
            if (le >= hend || (buf[le] != ' ' && buf[le] != '\t'))
                break;
        }
        if (le - ls > fl && strncasecmp(buf + ls, field, fl) == 0 && buf[ls + fl] == ':') {
            char *v = mime_decode_header_value(buf + ls + fl + 1, le - ls - fl - 1);
            if (v) {
                found = contains_ci(v, strlen(v), value, strlen(value));
                free(v);
            }
        }
        i = le > ls ? le : ls + 1;
    }
    sqlite3_result_int(ctx, found);
}

/* Texts waiting in fts_pending must match exactly as they will once in
 * the trigram index. The index folds case with the trigram tokenizer's own
 * Unicode folding (LIKE folds ASCII only), so the text and the string are
 * run through that very tokenizer: it gives the folded characters i..i+2 at
 * each position i; joined back, the two folded strings compare as the
 * index's phrase query does (consecutive trigrams = a substring of at least
 * three characters). */
struct fold_tok {
    fts5_tokenizer api;
    Fts5Tokenizer *tok;
    char *buf; /* the folded text of the current row, reused */
    size_t cap;
};

struct fold {
    char *p;
    size_t len, cap;
    size_t n; /* trigrams seen */
};

static int on_trigram(void *ctx, int tflags, const char *t, int tlen, int start, int end)
{
    struct fold *f = ctx;
    size_t i = 0, l = (size_t)tlen;

    (void)tflags;
    (void)start;
    (void)end;
    if (tlen <= 0)
        return SQLITE_OK;
    if (f->n++ > 0) {
        /* the first two characters came with the previous trigram */
        for (int k = 0; k < 2 && i < l; k++) {
            i++;
            while (i < l && ((unsigned char)t[i] & 0xc0) == 0x80)
                i++;
        }
    }
    if (f->len + (l - i) + 1 > f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 256;
        char *np;
        while (nc < f->len + (l - i) + 1)
            nc *= 2;
        if (!(np = realloc(f->p, nc)))
            return SQLITE_NOMEM;
        f->p = np;
        f->cap = nc;
    }
    memcpy(f->p + f->len, t + i, l - i);
    f->len += l - i;
    f->p[f->len] = '\0';
    return SQLITE_OK;
}

static int fold_text(struct fold_tok *ft, const char *s, int len, struct fold *f)
{
    return ft->api.xTokenize(ft->tok, f, FTS5_TOKENIZE_DOCUMENT, s, len, on_trigram);
}

static void fold_free(void *p)
{
    struct fold *f = p;
    free(f->p);
    free(f);
}

/* coffre_fts_has(string, column...): 1 if a column contains string as the
 * full-text index would find it (string of three characters or more). */
static void fn_fts_has(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    struct fold_tok *ft = sqlite3_user_data(ctx);
    struct fold *needle = sqlite3_get_auxdata(ctx, 0);
    bool fresh = false;
    int found = 0;

    if (!ft->tok) {
        sqlite3_result_error(ctx, "no trigram tokenizer", -1);
        return;
    }
    if (!needle) {
        const char *n = (const char *)sqlite3_value_text(argv[0]);
        if (!(needle = calloc(1, sizeof(*needle)))) {
            sqlite3_result_error_nomem(ctx);
            return;
        }
        if (n && fold_text(ft, n, sqlite3_value_bytes(argv[0]), needle) != SQLITE_OK) {
            free(needle->p);
            free(needle);
            sqlite3_result_error_nomem(ctx);
            return;
        }
        fresh = true;
    }
    /* a string without a trigram finds nothing, as its phrase query */
    for (int i = 1; i < argc && needle->n > 0 && !found; i++) {
        const char *h = (const char *)sqlite3_value_text(argv[i]);
        struct fold f = {.p = ft->buf, .cap = ft->cap};
        int rc;
        if (!h)
            continue;
        rc = fold_text(ft, h, sqlite3_value_bytes(argv[i]), &f);
        ft->buf = f.p;
        ft->cap = f.cap;
        if (rc != SQLITE_OK) {
            sqlite3_result_error_nomem(ctx);
            goto out;
        }
        found = f.n > 0 && memmem(f.p, f.len, needle->p, needle->len) != NULL;
    }
    sqlite3_result_int(ctx, found);
out:
    if (fresh)
        sqlite3_set_auxdata(ctx, 0, needle, fold_free);
}

static void fold_tok_free(void *p)
{
    struct fold_tok *ft = p;
    if (ft->tok)
        ft->api.xDelete(ft->tok);
    free(ft->buf);
    free(ft);
}

/* The trigram tokenizer, configured as the fts table's ("trigram", no
 * options), for coffre_fts_has. NULL if FTS5 is not there. */
static struct fold_tok *fold_tok_new(sqlite3 *db)
{
    struct fold_tok *ft = calloc(1, sizeof(*ft));
    fts5_api *api = NULL;
    sqlite3_stmt *st;
    void *ud = NULL;

    if (!ft)
        return NULL;
    if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    if (!api || api->xFindTokenizer(api, "trigram", &ud, &ft->api) != SQLITE_OK ||
        ft->api.xCreate(ud, NULL, 0, &ft->tok) != SQLITE_OK) {
        ft->tok = NULL;
        fold_tok_free(ft);
        return NULL;
    }
    return ft;
}

void register_sql_functions(sqlite3 *db, struct storage_user *u)
{
    struct fold_tok *ft = fold_tok_new(db);

    sqlite3_create_function(db, "coffre_inset", 2, SQLITE_UTF8 | SQLITE_DIRECTONLY, u, fn_inset,
                            NULL, NULL);
    sqlite3_create_function(db, "coffre_contains", 2,
                            SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, u, fn_contains,
                            NULL, NULL);
    sqlite3_create_function(db, "coffre_header", 4, SQLITE_UTF8 | SQLITE_DIRECTONLY, u, fn_header,
                            NULL, NULL);
    /* without the tokenizer the function is not there and a search of a
     * waiting text fails rather than answering differently */
    if (ft)
        sqlite3_create_function_v2(db, "coffre_fts_has", -1,
                                   SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, ft,
                                   fn_fts_has, NULL, NULL, fold_tok_free);
}

/* ---- query building ---- */

enum bind_type { B_INT, B_TEXT, B_SET, B_HEADERS };
struct bind {
    enum bind_type type;
    int64_t i;
    char *s;
    struct rangeset *set;
};

struct qb {
    char *sql;
    size_t len, cap;
    struct bind *b;
    size_t nb, capb;
    int err;
    unsigned header_scans; /* criteria reading the message files */
};

static void put(struct qb *q, const char *s)
{
    size_t l = strlen(s);
    if (q->err)
        return;
    if (q->len + l + 1 > SEARCH_SQL_MAX) {
        q->err = STORAGE_E_INVAL;
        return;
    }
    if (q->len + l + 1 > q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 1024;
        while (nc < q->len + l + 1)
            nc *= 2;
        char *p = realloc(q->sql, nc);
        if (!p) {
            q->err = STORAGE_E_NOMEM;
            return;
        }
        q->sql = p;
        q->cap = nc;
    }
    memcpy(q->sql + q->len, s, l + 1);
    q->len += l;
}

static struct bind *add_bind(struct qb *q)
{
    if (q->err)
        return NULL;
    if (q->nb == q->capb) {
        size_t nc = q->capb ? q->capb * 2 : 16;
        struct bind *p = realloc(q->b, nc * sizeof(*p));
        if (!p) {
            q->err = STORAGE_E_NOMEM;
            return NULL;
        }
        q->b = p;
        q->capb = nc;
    }
    memset(&q->b[q->nb], 0, sizeof(q->b[0]));
    put(q, "?");
    return q->err ? NULL : &q->b[q->nb++];
}

static void bind_int(struct qb *q, int64_t v)
{
    struct bind *b = add_bind(q);
    if (b) {
        b->type = B_INT;
        b->i = v;
    }
}

static void bind_text(struct qb *q, const char *s)
{
    struct bind *b = add_bind(q);
    if (!b)
        return;
    b->type = B_TEXT;
    b->s = strdup(s);
    if (!b->s) {
        b->type = B_INT;
        q->err = STORAGE_E_NOMEM;
    }
}

/* Binds s as text: prefix, then `quote`, s with each of the characters in
 * `special` preceded by `esc`, and `quote` again. */
static void bind_quoted(struct qb *q, const char *prefix, char quote, const char *s,
                        const char *special, char esc)
{
    size_t l = strlen(s), pl = strlen(prefix), o = pl;
    char *p = malloc(pl + 2 * l + 3);
    struct bind *b;

    if (!p) {
        q->err = STORAGE_E_NOMEM;
        return;
    }
    memcpy(p, prefix, pl);
    p[o++] = quote;
    for (size_t i = 0; i < l; i++) {
        if (strchr(special, s[i]))
            p[o++] = esc;
        p[o++] = s[i];
    }
    p[o++] = quote;
    p[o] = '\0';
    b = add_bind(q);
    if (!b) {
        free(p);
        return;
    }
    b->type = B_TEXT;
    b->s = p;
}

/* FTS5 query over the trigram index: the string as one phrase, which
 * matches exactly the texts containing it (RFC 3501 SEARCH is a substring
 * match: "izz" finds "pizza"). */
static void bind_fts(struct qb *q, const char *column, const char *s)
{
    char prefix[32] = "";

    if (column)
        pathf(prefix, sizeof(prefix), "{%s} : ", column);
    bind_quoted(q, prefix, '"', s, "\"", '"');
}

/* A LIKE pattern matching s anywhere, with % _ and \ escaped. */
static void bind_like(struct qb *q, const char *s)
{
    bind_quoted(q, "", '%', s, "%_\\", '\\');
}

/* Characters (not bytes) of a UTF-8 string. */
static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

static const char *header_column(const char *field)
{
    static const struct {
        const char *name, *col;
    } map[] = {{"subject", "b.subject"},
               {"from", "b.from_"},
               {"to", "b.to_"},
               {"cc", "b.cc"},
               {"bcc", "b.bcc"},
               {"message-id", "b.message_id"},
               {"in-reply-to", "b.in_reply_to"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcasecmp(field, map[i].name) == 0)
            return map[i].col;
    return NULL;
}

static bool has_text(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s > ' ')
            return true;
    return false;
}

/* The criteria that compare a column with the number given. */
static const char *const compare_sql[] = {
    [STORAGE_SEARCH_BEFORE] = "m.internal_date < ", [STORAGE_SEARCH_SINCE] = "m.internal_date >= ",
    [STORAGE_SEARCH_LARGER] = "m.size > ",          [STORAGE_SEARCH_SMALLER] = "m.size < ",
    [STORAGE_SEARCH_MODSEQ] = "m.modseq >= ",
};

static void build(struct qb *q, const struct storage_search *n, int depth)
{
    if (q->err)
        return;
    if (depth > SEARCH_DEPTH_MAX) {
        q->err = STORAGE_E_INVAL;
        return;
    }
    switch (n->op) {
    case STORAGE_SEARCH_ALL:
        put(q, "1");
        break;
    case STORAGE_SEARCH_AND:
    case STORAGE_SEARCH_OR: {
        const char *sep = n->op == STORAGE_SEARCH_AND ? " AND " : " OR ";
        if (!n->child) {
            put(q, n->op == STORAGE_SEARCH_AND ? "1" : "0");
            break;
        }
        put(q, "(");
        for (const struct storage_search *c = n->child; c; c = c->next) {
            if (c != n->child)
                put(q, sep);
            build(q, c, depth + 1);
        }
        put(q, ")");
        break;
    }
    case STORAGE_SEARCH_NOT:
        if (!n->child) {
            q->err = STORAGE_E_INVAL;
            break;
        }
        put(q, "NOT (");
        build(q, n->child, depth + 1);
        put(q, ")");
        break;
    case STORAGE_SEARCH_UID: {
        struct rangeset *rs = calloc(1, sizeof(*rs));
        struct bind *b;
        if (!rs || uidset_normalize(&n->set, &rs->r, &rs->n) != 0) {
            free(rs);
            q->err = STORAGE_E_NOMEM;
            break;
        }
        put(q, "coffre_inset(");
        b = add_bind(q);
        if (!b) {
            free(rs->r);
            free(rs);
            break;
        }
        b->type = B_SET;
        b->set = rs;
        put(q, ", m.uid)");
        break;
    }
    case STORAGE_SEARCH_FLAGS:
        put(q, "(m.flags & ");
        bind_int(q, n->flags & STORAGE_FLAGS_ALL);
        put(q, ") = ");
        bind_int(q, n->flags & STORAGE_FLAGS_ALL);
        break;
    case STORAGE_SEARCH_UNFLAGS:
        put(q, "(m.flags & ");
        bind_int(q, n->flags & STORAGE_FLAGS_ALL);
        put(q, ") = 0");
        break;
    case STORAGE_SEARCH_KEYWORD:
    case STORAGE_SEARCH_UNKEYWORD:
        if (!n->str) {
            q->err = STORAGE_E_INVAL;
            break;
        }
        put(q, "instr(' ' || lower(m.keywords) || ' ', ' ' || lower(");
        bind_text(q, n->str);
        put(q, n->op == STORAGE_SEARCH_KEYWORD ? ") || ' ') > 0" : ") || ' ') = 0");
        break;
    case STORAGE_SEARCH_BEFORE:
    case STORAGE_SEARCH_SINCE:
    case STORAGE_SEARCH_LARGER:
    case STORAGE_SEARCH_SMALLER:
    case STORAGE_SEARCH_MODSEQ:
        put(q, compare_sql[n->op]);
        bind_int(q, n->num);
        break;
    case STORAGE_SEARCH_SENTBEFORE:
    case STORAGE_SEARCH_SENTSINCE:
        /* no usable Date: header: the internal date stands in */
        put(q, "(CASE WHEN b.sent_date != 0 THEN b.sent_date ELSE m.internal_date END)");
        put(q, n->op == STORAGE_SEARCH_SENTBEFORE ? " < " : " >= ");
        bind_int(q, n->num);
        break;
    case STORAGE_SEARCH_HEADER: {
        const char *col;
        if (!n->field || !n->str || !*n->field) {
            q->err = STORAGE_E_INVAL;
            break;
        }
        for (const char *p = n->field; *p; p++)
            if ((unsigned char)*p <= ' ' || *p == ':' || (unsigned char)*p >= 0x7f) {
                q->err = STORAGE_E_INVAL;
                return;
            }
        col = header_column(n->field);
        if (col) {
            put(q, "coffre_contains(");
            put(q, col);
            put(q, ", ");
            bind_text(q, n->str);
            put(q, ")");
        } else {
            struct bind *b;
            q->header_scans++;
            put(q, "coffre_header(");
            if ((b = add_bind(q)) != NULL)
                b->type = B_HEADERS;
            put(q, ", m.path, ");
            bind_text(q, n->field);
            put(q, ", ");
            bind_text(q, n->str);
            put(q, ")");
        }
        break;
    }
    case STORAGE_SEARCH_BODY:
    case STORAGE_SEARCH_TEXT:
        if (!n->str) {
            q->err = STORAGE_E_INVAL;
            break;
        }
        if (!has_text(n->str)) {
            put(q, "1");
            break;
        }
        /* Each body's text is either in the index (fts) or waiting
         * (fts_pending); both are looked at and match the same way. */
        if (utf8_len(n->str) >= 3) {
            /* the trigram index answers without a scan; the few waiting
             * texts are scanned with the index's own folding */
            put(q, "(m.body_id IN (SELECT rowid FROM fts WHERE fts MATCH ");
            bind_fts(q, n->op == STORAGE_SEARCH_BODY ? "text" : NULL, n->str);
            put(q, ") OR m.body_id IN (SELECT body_id FROM fts_pending WHERE coffre_fts_has(");
            bind_text(q, n->str);
            put(q, n->op == STORAGE_SEARCH_BODY ? ", text))"
                                                : ", subject, from_, to_, cc, bcc, text))");
            put(q, ")");
        } else {
            /* one or two characters: no trigram; scan the texts */
            static const char *const tables[] = {"SELECT rowid FROM fts",
                                                 "SELECT body_id FROM fts_pending"};
            static const char *const cols[] = {"text", "subject", "from_", "to_", "cc", "bcc"};
            size_t ncols = n->op == STORAGE_SEARCH_BODY ? 1 : sizeof(cols) / sizeof(cols[0]);
            put(q, "(");
            for (size_t t = 0; t < 2; t++) {
                put(q, t ? " OR m.body_id IN (" : "m.body_id IN (");
                put(q, tables[t]);
                put(q, " WHERE ");
                for (size_t i = 0; i < ncols; i++) {
                    put(q, i ? " OR " : "");
                    put(q, cols[i]);
                    put(q, " LIKE ");
                    bind_like(q, n->str);
                    put(q, " ESCAPE '\\'");
                }
                put(q, ")");
            }
            put(q, ")");
        }
        break;
    default:
        q->err = STORAGE_E_INVAL;
    }
}

static void free_binds(struct qb *q)
{
    for (size_t i = 0; i < q->nb; i++) {
        free(q->b[i].s);
        if (q->b[i].set) {
            free(q->b[i].set->r);
            free(q->b[i].set);
        }
    }
    free(q->b);
    free(q->sql);
}

int storage_search(struct storage_user *u, int64_t mbox, const struct storage_search *crit,
                   struct storage_uidlist *out)
{
    char mdir[STORAGE_PATH_MAX];
    struct header_cache headers = {.mdir = mdir};
    struct qb q = {0};
    struct mbox_row m;
    sqlite3_stmt *st = NULL;
    sqlite3 *db;
    int rc, s;

    memset(out, 0, sizeof(*out));
    if (!crit)
        return STORAGE_E_INVAL;
    if (!(db = reader_get(u)))
        return STORAGE_E_TEMP;
    if ((rc = db_exec(db, "BEGIN")) != 0 || (rc = mbox_by_id(db, mbox, &m)) != 0 ||
        (rc = mbox_path(u, m.name, mdir, sizeof(mdir))) != 0)
        goto out;
    put(&q, "SELECT m.uid FROM messages m JOIN bodies b ON b.id = m.body_id"
            " WHERE m.mailbox_id = ");
    bind_int(&q, mbox);
    put(&q, " AND (");
    build(&q, crit, 0);
    put(&q, ") ORDER BY m.uid");
    if ((rc = q.err) != 0)
        goto out;
    if (storage_limits.max_header_scans && q.header_scans > storage_limits.max_header_scans) {
        rc = STORAGE_E_LIMIT;
        goto out;
    }
    if ((rc = db_prepare(db, q.sql, &st)) != 0)
        goto out;
    for (size_t i = 0; i < q.nb; i++) {
        int k = (int)i + 1;
        switch (q.b[i].type) {
        case B_INT:
            sqlite3_bind_int64(st, k, q.b[i].i);
            break;
        case B_TEXT:
            sqlite3_bind_text(st, k, q.b[i].s, -1, SQLITE_STATIC);
            break;
        case B_SET:
            sqlite3_bind_pointer(st, k, q.b[i].set, "coffre_rangeset", NULL);
            break;
        case B_HEADERS:
            sqlite3_bind_pointer(st, k, &headers, "coffre_header_cache", NULL);
            break;
        }
    }
    while ((s = sqlite3_step(st)) == SQLITE_ROW)
        if (uidlist_add(out, (uint32_t)sqlite3_column_int64(st, 0)) != 0) {
            rc = STORAGE_E_NOMEM;
            goto out;
        }
    if (s != SQLITE_DONE) {
        /* a malformed FTS query string is the caller's input, not a failure */
        rc = (s & 0xff) == SQLITE_ERROR ? STORAGE_E_INVAL : err_from_sqlite(db, s);
    }
out:
    sqlite3_finalize(st);
    reader_put(u, db);
    free_binds(&q);
    free(headers.buf);
    if (rc)
        storage_uidlist_free(out);
    return rc;
}

/* ---- indexing of waiting texts ---- */

struct fts_ctx {
    size_t max;
    int64_t waiting;
};

static int fts_work(struct txn *t, void *ctx)
{
    struct fts_ctx *c = ctx;
    int64_t batch = c->max ? (int64_t)c->max : -1, last = 0;
    int rc;

    /* the batch: the oldest max bodies waiting; 0 (NULL) when none waits */
    if ((rc = db_int_binds(t->db, &last,
                           "SELECT max(body_id) FROM (SELECT body_id FROM fts_pending"
                           " ORDER BY body_id LIMIT ?)",
                           NULL, &batch, 1)) != 0)
        return rc;
    if (last == 0)
        return TXN_NOTHING;
    if ((rc = db_run(t->db,
                     "INSERT INTO fts(rowid, subject, from_, to_, cc, bcc, text)"
                     " SELECT body_id, subject, from_, to_, cc, bcc, text FROM fts_pending"
                     " WHERE body_id <= ? ORDER BY body_id",
                     last)) != 0 ||
        (rc = db_run(t->db, "DELETE FROM fts_pending WHERE body_id <= ?", last)) != 0)
        return rc;
    return db_int_binds(t->db, &c->waiting, "SELECT count(*) FROM fts_pending", NULL, NULL, 0);
}

int storage_fts_index(struct storage_user *u, size_t max, size_t *left)
{
    struct fts_ctx c = {.max = max};
    int rc;

    if (left)
        *left = 0;
    rc = write_txn(u, fts_work, &c);
    if (rc == 0 && left)
        *left = (size_t)c.waiting;
    return rc;
}
