/* SEARCH: turns a criteria tree into one SQL query over the index. The SQL
 * text is made of fixed fragments only; every value is a bound parameter.
 * Also the SQL functions the queries use: coffre_inset (UID sets),
 * coffre_inbodies (the bodies the full-text index found, fts.c),
 * coffre_contains (case-insensitive substring) and coffre_header (a header
 * field not kept in the index, read from the message file). And
 * storage_fts_index, which moves waiting texts into the index. */
#include "storage/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "server/base/buf.h"
#include "storage/mime.h"

#define SEARCH_DEPTH_MAX 64
#define SEARCH_SQL_MAX (256 * 1024)
#define HEADER_READ_MAX (256 * 1024)

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

static inline unsigned char fold_ascii(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* Needles up to this long are compared at each position of the text (at
 * most this many steps per byte); longer ones go through a table of
 * their own (Knuth-Morris-Pratt), so that the work stays linear in the
 * text whatever the needle. */
#define CONTAINS_DIRECT_MAX 16

static bool all_ascii(const unsigned char *p, size_t n)
{
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc < 0x80;
}

static bool contains_ascii(const unsigned char *h, size_t hl, const unsigned char *n, size_t nl)
{
    size_t *next;
    bool found = false;

    if (nl > CONTAINS_DIRECT_MAX && (next = malloc(nl * sizeof(*next)))) {
        /* next[j]: the longest proper border of the needle's first j + 1 bytes */
        next[0] = 0;
        for (size_t j = 1, k = 0; j < nl; j++) {
            while (k > 0 && fold_ascii(n[j]) != fold_ascii(n[k]))
                k = next[k - 1];
            if (fold_ascii(n[j]) == fold_ascii(n[k]))
                k++;
            next[j] = k;
        }
        for (size_t i = 0, k = 0; i < hl && !found; i++) {
            while (k > 0 && fold_ascii(h[i]) != fold_ascii(n[k]))
                k = next[k - 1];
            if (fold_ascii(h[i]) == fold_ascii(n[k]))
                k++;
            found = k == nl;
        }
        free(next);
        return found;
    }
    /* short, or no memory for the table */
    for (size_t i = 0; i + nl <= hl; i++) {
        size_t j = 0;
        while (j < nl && fold_ascii(h[i + j]) == fold_ascii(n[j]))
            j++;
        if (j == nl)
            return true;
    }
    return false;
}

/* Case-insensitive substring over UTF-8, in the i;unicode-casemap
 * comparator (RFC 5051, mime_casemap.c): ASCII text against an ASCII
 * string folds bytes; otherwise the string is mapped once and the text
 * character by character as the matcher (Knuth-Morris-Pratt over the
 * mapped bytes) reads it. Linear in the text and the string. */
bool contains_ci(const char *hay, size_t hl, const char *needle, size_t nl)
{
    const unsigned char *h = (const unsigned char *)hay;
    unsigned char ch[MIME_CASEMAP_MAX], *fn;
    struct buf mapped = {0};
    size_t *next, fl, cl;
    bool found = false;

    if (nl == 0)
        return true;
    if (all_ascii((const unsigned char *)needle, nl) && all_ascii(h, hl))
        return nl <= hl && contains_ascii(h, hl, (const unsigned char *)needle, nl);
    mime_casemap(&mapped, needle, nl);
    fl = mapped.len;
    if (mapped.oom || !(next = malloc(fl * sizeof(*next)))) {
        buf_free(&mapped);
        return nl <= hl && contains_ascii(h, hl, (const unsigned char *)needle, nl);
    }
    fn = (unsigned char *)mapped.p;
    next[0] = 0;
    for (size_t j = 1, k = 0; j < fl; j++) {
        while (k > 0 && fn[j] != fn[k])
            k = next[k - 1];
        if (fn[j] == fn[k])
            k++;
        next[j] = k;
    }
    for (size_t i = 0, k = 0; i < hl && !found;) {
        i += mime_casemap_char(h + i, hl - i, ch, &cl);
        for (size_t c = 0; c < cl && !found; c++) {
            while (k > 0 && ch[c] != fn[k])
                k = next[k - 1];
            if (ch[c] == fn[k])
                k++;
            found = k == fl;
        }
    }
    free(next);
    buf_free(&mapped);
    return found;
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

/* An address field's value (decoded, unfolded) as its addresses read
 * without comments and folding white space (RFC 5322 3.2.2, 3.4): comments
 * dropped, quoted strings kept with their quotes but without their
 * escapes, no white space inside an angle-addr or beside an '@', other
 * runs of white space one space. "Pete(A nice \) chap)
 * <pete(his account)@silly.test(his host)>" reads "Pete <pete@silly.test>".
 * out has room for len bytes; returns the length written. Linear. */
static size_t addr_plain(const char *v, size_t len, char *out)
{
    size_t o = 0;
    bool angle = false, space = false;

    for (size_t i = 0; i < len; i++) {
        char ch = v[i];
        if (ch == '(') {
            /* a comment, nested ones inside; a comment separates words */
            int depth = 1;
            for (i++; i < len && depth > 0; i++) {
                if (v[i] == '\\')
                    i++;
                else if (v[i] == '(')
                    depth++;
                else if (v[i] == ')')
                    depth--;
            }
            i--;
            space = true;
            continue;
        }
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
            space = true;
            continue;
        }
        if (space && !angle && o > 0 && ch != '@' && out[o - 1] != '@' && out[o - 1] != ' ' &&
            ch != ',' && ch != '>')
            out[o++] = ' ';
        space = false;
        if (ch == '"') {
            /* as many bytes out as in: the quotes replace the escapes */
            out[o++] = '"';
            for (i++; i < len && v[i] != '"'; i++) {
                if (v[i] == '\\' && i + 1 < len)
                    i++;
                out[o++] = v[i];
            }
            if (i < len)
                out[o++] = '"';
            continue;
        }
        if (ch == '<')
            angle = true;
        else if (ch == '>')
            angle = false;
        else if (ch == ',' || ch == ';' || ch == ':')
            angle = false; /* an unclosed '<' ends with its address */
        if (ch == '@' && o > 0 && out[o - 1] == ' ')
            o--;
        out[o++] = ch;
    }
    return o;
}

/* Whether one of the addresses of plain (addr_plain's output) contains the
 * string: FROM, TO, CC and BCC look at "the envelope structure's" field
 * (RFC 3501 6.4.4), a list of addresses, so a string reaching over the
 * comma between two addresses, or into a comment, matches nothing. Group
 * names are pieces of their own. Linear: a piece shorter than the string
 * is not searched. */
static bool addr_list_contains(const char *plain, size_t len, const char *n, size_t nl)
{
    size_t start = 0;
    bool quoted = false, angle = false;

    for (size_t i = 0; i <= len; i++) {
        char ch = i < len ? plain[i] : ',';
        if (quoted) {
            quoted = ch != '"';
            if (i < len)
                continue;
        } else if (ch == '"') {
            quoted = true;
            continue;
        } else if (ch == '<') {
            angle = true;
            continue;
        } else if (ch == '>') {
            angle = false;
            continue;
        }
        if (i < len && (angle || (ch != ',' && ch != ';' && ch != ':')))
            continue;
        size_t a = start, b = i;
        while (a < b && plain[a] == ' ')
            a++;
        if (b - a >= nl && contains_ci(plain + a, b - a, n, nl))
            return true;
        start = i + 1;
        angle = false;
    }
    return false;
}

/* coffre_addr_contains(value, string): one of the addresses of an address
 * field, read without comments and folding, contains the string (FROM, TO,
 * CC, BCC; RFC 3501 6.4.4). */
static void fn_addr_contains(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const char *h = (const char *)sqlite3_value_text(argv[0]);
    const char *n = (const char *)sqlite3_value_text(argv[1]);
    size_t hl = (size_t)sqlite3_value_bytes(argv[0]), nl = (size_t)sqlite3_value_bytes(argv[1]);
    char small[512], *plain = small;
    bool found;

    (void)argc;
    if (!h || !n) {
        sqlite3_result_int(ctx, 0);
        return;
    }
    if (hl > sizeof(small) && !(plain = malloc(hl))) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    found = addr_list_contains(plain, addr_plain(h, hl, plain), n, nl);
    if (plain != small)
        free(plain);
    sqlite3_result_int(ctx, found);
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
    /* the file the index names, or its new name when a flag sync renamed it
     * and has not committed yet */
    if ((fd = msg_file_open_rel(c->mdir, rel)) < 0)
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

/* coffre_sentday(envelope): the Date: header as written, its zone
 * disregarded (mime_parse_date_written), from the first string of the
 * cached ENVELOPE, quoted or a literal; NULL when it has none or it cannot
 * be read (the caller falls back to the date in UTC). */
static void fn_sentday(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const char *e = (const char *)sqlite3_value_text(argv[0]);
    size_t n = (size_t)sqlite3_value_bytes(argv[0]), pos = 1;
    struct buf date = {0};
    int64_t t;

    (void)argc;
    if (!e || n < 2 || e[0] != '(')
        return;
    if (mime_envelope_nstring(e, n, &pos, &date) == 1 && !date.oom &&
        (t = mime_parse_date_written(date.p ? date.p : "", date.len)) != 0)
        sqlite3_result_int64(ctx, t);
    buf_free(&date);
}

/* coffre_inbodies(set, body_id): body_id is in the set fts_search gave. */
static void fn_inbodies(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const struct fts_ids *s = sqlite3_value_pointer(argv[0], "coffre_bodyset");

    (void)argc;
    sqlite3_result_int(ctx, s && fts_ids_has(s, sqlite3_value_int64(argv[1])));
}

void register_sql_functions(sqlite3 *db, struct storage_user *u)
{
    sqlite3_create_function(db, "coffre_inset", 2, SQLITE_UTF8 | SQLITE_DIRECTONLY, u, fn_inset,
                            NULL, NULL);
    sqlite3_create_function(db, "coffre_inbodies", 2, SQLITE_UTF8 | SQLITE_DIRECTONLY, u,
                            fn_inbodies, NULL, NULL);
    sqlite3_create_function(db, "coffre_contains", 2,
                            SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, u, fn_contains,
                            NULL, NULL);
    sqlite3_create_function(db, "coffre_header", 4, SQLITE_UTF8 | SQLITE_DIRECTONLY, u, fn_header,
                            NULL, NULL);
    sqlite3_create_function(db, "coffre_addr_contains", 2,
                            SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, u,
                            fn_addr_contains, NULL, NULL);
    sqlite3_create_function(db, "coffre_sentday", 1,
                            SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, u, fn_sentday,
                            NULL, NULL);
}

/* ---- query building ---- */

enum bind_type { B_INT, B_TEXT, B_SET, B_HEADERS, B_BODIES, B_SEEN };
struct bind {
    enum bind_type type;
    int64_t i;
    char *s;
    struct rangeset *set;
    struct fts_ids *bodies;
};

struct qb {
    sqlite3 *db; /* for the full-text criteria, answered while building */
    char *sql;
    size_t len, cap;
    struct bind *b;
    size_t nb, capb;
    int err;
    unsigned header_scans; /* criteria reading the message files */
    bool viewer;           /* \Seen is the viewer's set, seen */
    struct rangeset seen;
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
    [STORAGE_SEARCH_BEFORE] = "m.internal_date < ",
    [STORAGE_SEARCH_SINCE] = "m.internal_date >= ",
    [STORAGE_SEARCH_LARGER] = "m.size > ",
    [STORAGE_SEARCH_SMALLER] = "m.size < ",
    [STORAGE_SEARCH_MODSEQ] = "m.modseq >= ",
    [STORAGE_SEARCH_SAVEDBEFORE] = "m.save_date < ",
    [STORAGE_SEARCH_SAVEDSINCE] = "m.save_date >= ",
    [STORAGE_SEARCH_EMAILID] = "b.oid = ",
    [STORAGE_SEARCH_THREADID] = "b.thread = ",
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
        if (rs->n == 0) {
            free(rs->r);
            free(rs);
            put(q, "0");
            break;
        }
        /* the set's bounds first: where the set is a condition of the
         * whole search, the scan covers only the rows between them (the
         * key is (mailbox_id, uid)), not the whole mailbox */
        put(q, "(m.uid >= ");
        bind_int(q, rs->r[0].lo);
        put(q, " AND m.uid <= ");
        bind_int(q, rs->r[rs->n - 1].hi);
        put(q, " AND coffre_inset(");
        b = add_bind(q);
        if (!b) {
            free(rs->r);
            free(rs);
            break;
        }
        b->type = B_SET;
        b->set = rs;
        put(q, ", m.uid))");
        break;
    }
    case STORAGE_SEARCH_FLAGS:
    case STORAGE_SEARCH_UNFLAGS: {
        bool set = n->op == STORAGE_SEARCH_FLAGS;
        unsigned f = n->flags & STORAGE_FLAGS_ALL;
        /* a viewer's own \Seen: its set; the rows' for the other flags */
        bool own_seen = q->viewer && (f & STORAGE_FLAG_SEEN);
        struct bind *b;
        if (own_seen)
            f &= ~(unsigned)STORAGE_FLAG_SEEN;
        put(q, "((m.flags & ");
        bind_int(q, f);
        put(q, ") = ");
        if (set)
            bind_int(q, f);
        else
            put(q, "0");
        if (own_seen) {
            put(q, " AND coffre_inset(");
            if ((b = add_bind(q)) != NULL)
                b->type = B_SEEN;
            put(q, set ? ", m.uid) = 1" : ", m.uid) = 0");
        }
        put(q, ")");
        break;
    }
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
    case STORAGE_SEARCH_SAVEDBEFORE:
    case STORAGE_SEARCH_SAVEDSINCE:
    case STORAGE_SEARCH_EMAILID:
    case STORAGE_SEARCH_THREADID:
        put(q, compare_sql[n->op]);
        bind_int(q, n->num);
        break;
    case STORAGE_SEARCH_SENTBEFORE:
    case STORAGE_SEARCH_SENTSINCE:
        /* the Date: header's day as written, its time and zone disregarded
         * (RFC 3501 6.4.4); no usable Date: header: the internal date
         * stands in */
        put(q, "(CASE WHEN b.sent_date != 0 THEN coalesce(coffre_sentday(b.envelope), b.sent_date)"
               " ELSE m.internal_date END)");
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
            bool addr = !strcmp(col, "b.from_") || !strcmp(col, "b.to_") || !strcmp(col, "b.cc") ||
                        !strcmp(col, "b.bcc");
            put(q, addr ? "coffre_addr_contains(" : "coffre_contains(");
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
        {
            /* the full-text index answers with the set of bodies */
            struct bind *b;
            struct fts_ids *ids = calloc(1, sizeof(*ids));
            int rc = ids ? fts_search(q->db, n->str, n->op == STORAGE_SEARCH_BODY, ids)
                         : STORAGE_E_NOMEM;
            if (rc) {
                free(ids);
                q->err = rc;
                break;
            }
            put(q, "coffre_inbodies(");
            if (!(b = add_bind(q))) {
                fts_ids_free(ids);
                free(ids);
                break;
            }
            b->type = B_BODIES;
            b->bodies = ids;
            put(q, ", m.body_id)");
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
        if (q->b[i].bodies) {
            fts_ids_free(q->b[i].bodies);
            free(q->b[i].bodies);
        }
    }
    free(q->b);
    free(q->sql);
    free(q->seen.r);
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
    q.db = db;
    if (crit->viewer > 0) {
        /* per-user \Seen: the viewer's set, read in the same transaction */
        struct storage_seen seen;
        if ((rc = pseen_read(db, mbox, m.uidvalidity, crit->viewer, &seen)) != 0)
            goto out;
        q.viewer = true;
        q.seen.r = seen.r;
        q.seen.n = seen.n;
    }
    /* a LEFT JOIN on the bodies' key, which SQLite leaves out when no
     * criterion reads a column of them: searches on flags, dates, sizes
     * and sets then read the messages' rows alone */
    put(&q, "SELECT m.uid FROM messages m LEFT JOIN bodies b ON b.id = m.body_id"
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
        case B_BODIES:
            sqlite3_bind_pointer(st, k, q.b[i].bodies, "coffre_bodyset", NULL);
            break;
        case B_SEEN:
            sqlite3_bind_pointer(st, k, &q.seen, "coffre_rangeset", NULL);
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
    db_finalize(st);
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
    unsigned ms;
    int64_t more;
};

static int fts_work(struct txn *t, void *ctx)
{
    struct fts_ctx *c = ctx;
    int64_t last = 0;
    int rc;

    /* a save or any other writer waiting for the index ends the
     * transaction early: indexing never holds up a command */
    if ((rc = fts_index_batch(t->db, c->max ? (int64_t)c->max : -1, c->ms ? mono_ms() + c->ms : 0,
                              c->ms ? &t->u->wwaiting : NULL, &last)) != 0)
        return rc;
    if (last == 0)
        return TXN_NOTHING;
    /* whether more wait, not how many: a count here would read the whole
     * table (its rows hold the texts) under the writer lock, in every
     * transaction of a backlog */
    return db_int_binds(t->db, &c->more, "SELECT EXISTS (SELECT 1 FROM fts_pending)", NULL, NULL,
                        0);
}

int storage_fts_index_for(struct storage_user *u, size_t max, unsigned ms, bool *more)
{
    /* texts moved into the index and lost at a crash are waiting again in
     * fts_pending: the moves cost no sync of their own (one every few tens
     * of milliseconds while a burst is indexed, beside the saves' own) */
    static const struct txn_path path = {.before = txn_unsynced_before,
                                         .work = fts_work,
                                         .undo = txn_unsynced_after,
                                         .committed = txn_unsynced_after};
    struct fts_ctx c = {.max = max, .ms = ms};
    int rc;

    if (more)
        *more = false;
    rc = write_txn_path(u, &path, &c);
    if (rc == 0 && more)
        *more = c.more != 0;
    return rc;
}

int storage_fts_waiting(struct storage_user *u, size_t *n)
{
    sqlite3 *db = reader_get(u);
    int64_t v = 0;
    int rc;

    *n = 0;
    if (!db)
        return STORAGE_E_NOMEM;
    /* counted on fts_pending_ids, a few bytes a row, not on the texts */
    rc = db_int_binds(db, &v, "SELECT count(*) FROM fts_pending INDEXED BY fts_pending_ids", NULL,
                      NULL, 0);
    reader_put(u, db);
    if (rc == 0)
        *n = (size_t)v;
    return rc;
}

int storage_fts_index(struct storage_user *u, size_t max, size_t *left)
{
    bool more = false;
    int rc = storage_fts_index_for(u, max, 0, left ? &more : NULL);

    if (rc == 0 && left) {
        *left = 0;
        if (more)
            rc = storage_fts_waiting(u, left);
    }
    return rc;
}
