/* MIME structure of a message: the part tree (multipart nesting with
 * boundaries, message/rfc822 encapsulation), IMAP BODY / BODYSTRUCTURE
 * output, FETCH section lookup, and the decoded text for the full-text
 * index. Bounded: MIME_MAX_DEPTH levels, MIME_MAX_PARTS parts, and each
 * nesting level scans only its own byte range, so work is at most
 * depth x size. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/base/base64.h"
#include "storage/mime.h"
#include "storage/mime_private.h"
#include "storage/storage.h"

/* A token inside a structured header, pointing into the message. */
struct mstr {
    const char *p;
    size_t len;
};

/* A parameter: name and (unquoted) value, as offsets into part->store. */
struct mparam {
    size_t noff, nlen, voff, vlen;
};

struct part {
    size_t hdr_off, hdr_len; /* header incl. its blank line */
    size_t body_off, body_len;
    size_t lines;
    struct mstr type, subtype; /* type.p == NULL: defaulted to text/plain */
    struct mparam *params;
    size_t nparams;
    struct mstr id, desc, enc, md5, lang, loc; /* raw, unfolded on output */
    struct mstr dsp;
    struct mparam *dparams;
    size_t ndparams;
    int multipart, message, text, opaque;
    struct part *child, *next; /* children of multipart; encapsulated message */
    struct part *all_next;     /* every allocated part, for freeing */
    struct buf store;          /* parameter names and values */
};

struct mctx {
    const char *msg;
    size_t len;
    size_t nparts;
    struct part *all;
    int err;
};

#define MIME_MAX_PARAMS 100 /* parameters kept per header field */

/* ---- Content-Type and friends (RFC 2045 5.1, RFC 2183) */

struct tscan {
    const char *p;
    size_t len, i;
};

static void t_skip(struct tscan *s)
{
    s->i = mime_skip_cfws(s->p, s->len, s->i);
}

static int is_tspecial(char c)
{
    return strchr("()<>@,;:\\\"/[]?=", c) != NULL || c == ' ' || c == '\t' || c == '\r' ||
           c == '\n' || (unsigned char)c < 0x20 || c == 0x7f;
}

static struct mstr t_token(struct tscan *s)
{
    struct mstr t;

    t.p = s->p + s->i;
    while (s->i < s->len && !is_tspecial(s->p[s->i]))
        s->i++;
    t.len = (size_t)(s->p + s->i - t.p);
    return t;
}

/* Token or quoted string at s->i, appended (unquoted) to store. */
static void t_value(struct tscan *s, struct buf *store)
{
    struct mstr v;

    if (s->i < s->len && s->p[s->i] == '"') {
        s->i = mime_read_quoted(store, s->p, s->len, s->i);
        return;
    }
    v = t_token(s);
    buf_add(store, v.p, v.len);
}

/* Parameters after "type/subtype" or a disposition type. RFC 2231
 * continuations (name*0, name*1, ...) are joined, in order of appearance,
 * into one parameter; the name loses its "*N" but keeps a final "*" when
 * the value is extended (charset'lang'pct-encoded), which is kept raw, not
 * decoded -- the client sees exactly what RFC 2231 sent. Every value and
 * every continuation counts against MIME_MAX_PARAMS; the pieces are noted
 * as they come and joined once at the end, so the store grows at most by
 * twice the field's length (copying the value built so far at each
 * continuation made it quadratic). */
static void parse_params(struct tscan *s, struct part *pt, struct mparam **out, size_t *nout)
{
    struct buf *st = &pt->store;
    struct mparam *arr = NULL, *na, *pm;
    struct {
        size_t param, voff, vlen;
    } seg[MIME_MAX_PARAMS];
    unsigned nsegs_of[MIME_MAX_PARAMS] = {0};
    size_t n = 0, cap = 0, nseg = 0, k, j, base, noff, voff, old;
    struct mstr name;
    const char *star;
    int extended;

    for (;;) {
        t_skip(s);
        if (s->i >= s->len || st->oom)
            break;
        if (s->p[s->i] != ';') {
            /* junk: skip to the next ';' */
            while (s->i < s->len && s->p[s->i] != ';')
                s->i++;
            continue;
        }
        s->i++;
        t_skip(s);
        name = t_token(s);
        t_skip(s);
        if (name.len == 0 || s->i >= s->len || s->p[s->i] != '=')
            continue;
        s->i++;
        t_skip(s);
        voff = st->len;
        t_value(s, st);
        if (nseg == MIME_MAX_PARAMS) {
            st->len = voff; /* over the cap: dropped, store and all */
            if (st->p)
                st->p[voff] = '\0';
            continue;
        }
        star = memchr(name.p, '*', name.len);
        extended = name.p[name.len - 1] == '*';
        base = star ? (size_t)(star - name.p) : name.len;
        if (star != NULL && star + 1 < name.p + name.len && star[1] >= '0' && star[1] <= '9') {
            /* continuation: find the parameter it continues, of the
             * same name (kept with a '*' when extended) */
            for (k = 0; k < n; k++) {
                pm = &arr[k];
                if ((pm->nlen == base || (pm->nlen == base + 1 && st->p[pm->noff + base] == '*')) &&
                    strncasecmp(st->p + pm->noff, name.p, base) == 0)
                    break;
            }
            if (k < n) {
                seg[nseg].param = k;
                seg[nseg].voff = voff;
                seg[nseg].vlen = st->len - voff;
                nseg++;
                nsegs_of[k]++;
                continue;
            }
        } else
            base = name.len, extended = 0;
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            na = realloc(arr, cap * sizeof(*arr));
            if (na == NULL) {
                st->oom = true;
                break;
            }
            arr = na;
        }
        seg[nseg].param = n;
        seg[nseg].voff = voff;
        seg[nseg].vlen = st->len - voff;
        nseg++;
        nsegs_of[n] = 1;
        arr[n].voff = voff;
        arr[n].vlen = st->len - voff;
        noff = st->len;
        buf_add(st, name.p, base);
        if (extended)
            buf_addc(st, '*');
        arr[n].noff = noff;
        arr[n].nlen = st->len - noff;
        n++;
    }
    /* each continued value, its pieces in order, once */
    for (k = 0; k < n && !st->oom; k++) {
        if (nsegs_of[k] < 2)
            continue;
        old = st->len;
        for (j = 0; j < nseg; j++)
            if (seg[j].param == k)
                buf_addself(st, seg[j].voff, seg[j].vlen);
        arr[k].voff = old;
        arr[k].vlen = st->len - old;
    }
    *out = arr;
    *nout = n;
}

static void parse_content_type(struct part *pt, const char *v, size_t len)
{
    struct tscan s = {v, len, 0};
    struct mstr type, sub;

    t_skip(&s);
    type = t_token(&s);
    t_skip(&s);
    if (type.len == 0 || s.i >= s.len || s.p[s.i] != '/')
        return; /* invalid: keep the default (RFC 2045 5.2) */
    s.i++;
    t_skip(&s);
    sub = t_token(&s);
    if (sub.len == 0)
        return;
    pt->type = type;
    pt->subtype = sub;
    parse_params(&s, pt, &pt->params, &pt->nparams);
}

static void parse_disposition(struct part *pt, const char *v, size_t len)
{
    struct tscan s = {v, len, 0};
    struct mstr type;

    t_skip(&s);
    type = t_token(&s);
    if (type.len == 0)
        return;
    pt->dsp = type;
    parse_params(&s, pt, &pt->dparams, &pt->ndparams);
}

static struct mstr raw_value(const char *v, size_t len)
{
    struct mstr m;

    mime_trim(&v, &len);
    m.p = v;
    m.len = len;
    return m;
}

static const struct mparam *find_param(const struct part *pt, const char *name)
{
    size_t i;

    for (i = 0; i < pt->nparams; i++)
        if (mime_strncaseeq(pt->store.p + pt->params[i].noff, pt->params[i].nlen, name))
            return &pt->params[i];
    return NULL;
}

/* ---- the part tree */

static struct part *new_part(struct mctx *c)
{
    struct part *pt = calloc(1, sizeof(*pt));

    if (pt == NULL) {
        c->err = 1;
        return NULL;
    }
    pt->all_next = c->all;
    c->all = pt;
    c->nparts++;
    return pt;
}

static void free_parts(struct part *all)
{
    struct part *n;

    while (all != NULL) {
        n = all->all_next;
        free(all->params);
        free(all->dparams);
        buf_free(&all->store);
        free(all);
        all = n;
    }
}

/* The LFs of p[0..len): a plain loop over the bytes, which the compiler
 * makes vector compares (lines of a base64 part are 76 bytes: a memchr
 * call per line costs several times more). */
static size_t count_lines(const char *p, size_t len)
{
    size_t n = 0;

    while (len > 0) {
        /* counted in bytes 255 at a time, summed into n */
        size_t chunk = len < 255 ? len : 255;
        unsigned char k = 0;
        for (size_t i = 0; i < chunk; i++)
            k += p[i] == '\n';
        n += k;
        p += chunk;
        len -= chunk;
    }
    return n;
}

static void parse_entity(struct mctx *c, struct part *pt, size_t start, size_t end, int depth,
                         int in_digest);

/* Split a multipart body [start, end) at "--boundary" lines. */
static void parse_multipart(struct mctx *c, struct part *pt, const char *bnd, size_t blen,
                            size_t start, size_t end, int depth)
{
    const char *m = c->msg;
    size_t pos = start, ls, le, part_start = 0, part_end;
    int in_part = 0, digest;
    struct part **tail = &pt->child, *ch;
    const char *nl;

    digest = mime_strncaseeq(pt->subtype.p, pt->subtype.len, "digest");
    while (pos < end && !c->err) {
        /* the next line (start begins one) that starts with "--" and the
         * boundary: found by looking for '-' rather than at every line,
         * which a base64 part (76-byte lines, no '-') passes in one call */
        const char *d = memchr(m + pos, '-', end - pos);
        if (!d)
            break;
        ls = (size_t)(d - m);
        nl = memchr(m + ls, '\n', end - ls);
        le = nl ? (size_t)(nl - m) + 1 : end;
        pos = le; /* the rest of this line holds no other candidate */
        if ((ls > start && m[ls - 1] != '\n') || le - ls < 2 + blen || m[ls + 1] != '-' ||
            memcmp(m + ls + 2, bnd, blen) != 0)
            continue;
        if (in_part && c->nparts >= MIME_MAX_PARTS)
            continue; /* part limit: the last part takes the rest */
        if (in_part) {
            part_end = ls;
            if (part_end > part_start && m[part_end - 1] == '\n')
                part_end--;
            if (part_end > part_start && m[part_end - 1] == '\r')
                part_end--;
            if ((ch = new_part(c)) == NULL)
                return;
            *tail = ch;
            tail = &ch->next;
            parse_entity(c, ch, part_start, part_end, depth + 1, digest);
        }
        if (le - ls >= 4 + blen && m[ls + 2 + blen] == '-' && m[ls + 3 + blen] == '-') {
            in_part = 0;
            break; /* close delimiter: the rest is epilogue */
        }
        in_part = 1;
        part_start = le;
    }
    if (in_part && !c->err) { /* never closed: the last part runs to the end */
        if ((ch = new_part(c)) == NULL)
            return;
        *tail = ch;
        parse_entity(c, ch, part_start, end, depth + 1, digest);
    }
}

static void set_opaque(struct part *pt)
{
    /* depth or part limit reached: an opaque attachment */
    pt->type.p = "application";
    pt->type.len = 11;
    pt->subtype.p = "octet-stream";
    pt->subtype.len = 12;
    pt->nparams = 0;
    pt->multipart = pt->message = pt->text = 0;
    pt->opaque = 1;
}

static void parse_entity(struct mctx *c, struct part *pt, size_t start, size_t end, int depth,
                         int in_digest)
{
    /* fields kept raw (trimmed), the first of each */
    static const char *const raw_names[] = {"content-transfer-encoding", "content-id",
                                            "content-description",       "content-md5",
                                            "content-language",          "content-location"};
    struct mstr *raw_dst[] = {&pt->enc, &pt->id, &pt->desc, &pt->md5, &pt->lang, &pt->loc};
    struct mime_field f;
    size_t pos = 0, hlen, k;
    const char *h = c->msg + start;
    const struct mparam *bp;
    int have_ct = 0;

    hlen = mime_header_len(h, end - start);
    pt->hdr_off = start;
    pt->hdr_len = hlen;
    pt->body_off = start + hlen;
    pt->body_len = end - start - hlen;
    pt->lines = count_lines(c->msg + pt->body_off, pt->body_len);

    while (mime_next_field(h, hlen, &pos, &f)) {
        if (f.value == NULL || f.namelen < 8 || strncasecmp(f.name, "content-", 8) != 0)
            continue;
        if (mime_strncaseeq(f.name, f.namelen, "content-type")) {
            if (!have_ct)
                parse_content_type(pt, f.value, f.valuelen);
            have_ct = 1;
        } else if (mime_strncaseeq(f.name, f.namelen, "content-disposition")) {
            if (pt->dsp.p == NULL)
                parse_disposition(pt, f.value, f.valuelen);
        } else {
            for (k = 0; k < sizeof(raw_names) / sizeof(raw_names[0]); k++) {
                if (!mime_strncaseeq(f.name, f.namelen, raw_names[k]))
                    continue;
                if (raw_dst[k]->p == NULL)
                    *raw_dst[k] = raw_value(f.value, f.valuelen);
                break;
            }
        }
    }
    if (pt->store.oom) {
        c->err = 1;
        return;
    }
    if (pt->type.p == NULL && in_digest) {
        pt->type.p = "message";
        pt->type.len = 7;
        pt->subtype.p = "rfc822";
        pt->subtype.len = 6;
    }
    if (pt->type.p == NULL)
        pt->text = 1;
    else if (mime_strncaseeq(pt->type.p, pt->type.len, "text"))
        pt->text = 1;
    else if (mime_strncaseeq(pt->type.p, pt->type.len, "multipart")) {
        bp = find_param(pt, "boundary");
        if (bp == NULL || bp->vlen == 0 || bp->vlen > MIME_MAX_BOUNDARY) {
            /* no usable boundary: RFC 3501 degrade to text/plain */
            pt->type.p = NULL;
            pt->nparams = 0;
            pt->text = 1;
            return;
        }
        if (depth >= MIME_MAX_DEPTH || c->nparts >= MIME_MAX_PARTS) {
            set_opaque(pt);
            return;
        }
        pt->multipart = 1;
        parse_multipart(c, pt, pt->store.p + bp->voff, bp->vlen, pt->body_off,
                        pt->body_off + pt->body_len, depth);
    } else if (mime_strncaseeq(pt->type.p, pt->type.len, "message") &&
               mime_strncaseeq(pt->subtype.p, pt->subtype.len, "rfc822")) {
        if (depth >= MIME_MAX_DEPTH || c->nparts >= MIME_MAX_PARTS) {
            set_opaque(pt);
            return;
        }
        pt->message = 1;
        if ((pt->child = new_part(c)) == NULL)
            return;
        parse_entity(c, pt->child, pt->body_off, pt->body_off + pt->body_len, depth + 1, 0);
    }
}

static struct part *parse_tree(struct mctx *c, const char *msg, size_t len)
{
    struct part *root;

    memset(c, 0, sizeof(*c));
    c->msg = msg;
    c->len = len;
    root = new_part(c);
    if (root == NULL)
        return NULL;
    parse_entity(c, root, 0, len, 0, 0);
    if (c->err) {
        free_parts(c->all);
        c->all = NULL;
        return NULL;
    }
    return root;
}

/* ---- BODY / BODYSTRUCTURE */

static void put_mstr(struct buf *b, const struct mstr *m)
{
    struct buf u = {0};

    if (m->p == NULL) {
        buf_add(b, "NIL", 3);
        return;
    }
    mime_unfold(&u, m->p, m->len);
    if (u.oom)
        b->oom = true;
    buf_imap_string(b, u.p ? u.p : "", u.len);
    buf_free(&u);
}

static void put_params(struct buf *b, const struct part *pt, const struct mparam *ps, size_t n,
                       int default_charset)
{
    const char *st = pt->store.p;
    size_t i;
    int seen_cs = 0;

    for (i = 0; i < n; i++)
        if (mime_strncaseeq(st + ps[i].noff, ps[i].nlen, "charset"))
            seen_cs = 1;
    if (n == 0 && !(default_charset && !seen_cs)) {
        buf_add(b, "NIL", 3);
        return;
    }
    buf_addc(b, '(');
    for (i = 0; i < n; i++) {
        if (i > 0)
            buf_addc(b, ' ');
        buf_imap_string(b, st + ps[i].noff, ps[i].nlen);
        buf_addc(b, ' ');
        buf_imap_string(b, st + ps[i].voff, ps[i].vlen);
    }
    if (default_charset && !seen_cs) {
        if (n > 0)
            buf_addc(b, ' ');
        buf_add(b, "\"charset\" \"us-ascii\"", 20);
    }
    buf_addc(b, ')');
}

size_t mime_param_list(struct buf *b, const char *v, size_t len, size_t *storelen)
{
    struct part pt = {0};
    struct tscan s = {v, len, 0};
    size_t n;

    parse_params(&s, &pt, &pt.params, &pt.nparams);
    if (pt.store.oom)
        b->oom = true;
    else
        put_params(b, &pt, pt.params, pt.nparams, 0);
    n = pt.nparams;
    *storelen = pt.store.len;
    free(pt.params);
    buf_free(&pt.store);
    return n;
}

/* body-fld-lang: always a list, as Dovecot sends it (RFC 3501 allows a single string too). */
static void put_lang(struct buf *b, const struct mstr *m)
{
    struct tscan s = {m->p, m->len, 0};
    struct mstr t;
    size_t n = 0;

    while (m->p != NULL && s.i < s.len && n < 64) {
        t_skip(&s);
        t = t_token(&s);
        if (t.len > 0) {
            buf_addc(b, n++ ? ' ' : '(');
            buf_imap_string(b, t.p, t.len);
        } else if (s.i < s.len) {
            s.i++; /* ',' or junk */
        }
    }
    if (n == 0)
        buf_add(b, "NIL", 3);
    else
        buf_addc(b, ')');
}

static void put_dsp(struct buf *b, const struct part *pt)
{
    if (pt->dsp.p == NULL) {
        buf_add(b, "NIL", 3);
        return;
    }
    buf_addc(b, '(');
    buf_imap_string(b, pt->dsp.p, pt->dsp.len);
    buf_addc(b, ' ');
    put_params(b, pt, pt->dparams, pt->ndparams, 0);
    buf_addc(b, ')');
}

static void put_ext(struct buf *b, const struct part *pt, int md5)
{
    if (md5) {
        buf_addc(b, ' ');
        put_mstr(b, &pt->md5);
    } else {
        buf_addc(b, ' ');
        put_params(b, pt, pt->params, pt->nparams, 0);
    }
    buf_addc(b, ' ');
    put_dsp(b, pt);
    buf_addc(b, ' ');
    put_lang(b, &pt->lang);
    buf_addc(b, ' ');
    put_mstr(b, &pt->loc);
}

/* Recursion depth is bounded by MIME_MAX_DEPTH (parse_entity stops there). */
static void write_structure(struct buf *b, const struct mctx *c, const struct part *pt,
                            int extended)
{
    const struct part *ch;

    buf_addc(b, '(');
    if (pt->multipart) {
        if (pt->child == NULL) /* no parts at all: one empty text/plain, as Dovecot does */
            buf_str(b, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)");
        for (ch = pt->child; ch != NULL && !b->oom; ch = ch->next)
            write_structure(b, c, ch, extended);
        buf_addc(b, ' ');
        buf_imap_string(b, pt->subtype.p, pt->subtype.len);
        if (extended)
            put_ext(b, pt, 0);
        buf_addc(b, ')');
        return;
    }
    if (pt->type.p == NULL)
        buf_add(b, "\"text\" \"plain\"", 14);
    else {
        buf_imap_string(b, pt->type.p, pt->type.len);
        buf_addc(b, ' ');
        buf_imap_string(b, pt->subtype.p, pt->subtype.len);
    }
    buf_addc(b, ' ');
    put_params(b, pt, pt->params, pt->nparams, pt->text);
    buf_addc(b, ' ');
    put_mstr(b, &pt->id);
    buf_addc(b, ' ');
    put_mstr(b, &pt->desc);
    buf_addc(b, ' ');
    if (pt->enc.p == NULL)
        buf_add(b, "\"7bit\"", 6);
    else
        put_mstr(b, &pt->enc);
    buf_addc(b, ' ');
    buf_addu(b, pt->body_len);
    if (pt->message && pt->child != NULL) {
        buf_addc(b, ' ');
        mime_envelope(b, c->msg + pt->child->hdr_off, pt->child->hdr_len);
        buf_addc(b, ' ');
        write_structure(b, c, pt->child, extended);
        buf_addc(b, ' ');
        buf_addu(b, pt->lines);
    } else if (pt->text) {
        buf_addc(b, ' ');
        buf_addu(b, pt->lines);
    }
    if (extended)
        put_ext(b, pt, 1);
    buf_addc(b, ')');
}

/* ---- text for the full-text index */

static void strip_html(struct buf *out, const char *p, size_t len)
{
    static const struct {
        const char *name;
        const char *utf8;
    } ents[] = {
        {"amp", "&"},        {"lt", "<"},          {"gt", ">"},          {"quot", "\""},
        {"apos", "'"},       {"nbsp", " "},        {"eacute", "\u00e9"}, {"egrave", "\u00e8"},
        {"ecirc", "\u00ea"}, {"agrave", "\u00e0"}, {"acirc", "\u00e2"},  {"ccedil", "\u00e7"},
        {"ocirc", "\u00f4"}, {"icirc", "\u00ee"},  {"ugrave", "\u00f9"}, {"auml", "\u00e4"},
        {"ouml", "\u00f6"},  {"uuml", "\u00fc"},   {"szlig", "\u00df"},  {"copy", "\u00a9"},
        {"reg", "\u00ae"},   {"euro", "\u20ac"},   {"hellip", "\u2026"}, {"mdash", "\u2014"},
        {"ndash", "\u2013"}, {"lsquo", "\u2018"},  {"rsquo", "\u2019"},  {"ldquo", "\u201c"},
        {"rdquo", "\u201d"}, {"laquo", "\u00ab"},  {"raquo", "\u00bb"},
    };
    size_t i = 0, j, k;
    const char *skip_to = NULL;
    size_t skip_len = 0;

    while (i < len) {
        if (p[i] == '<') {
            /* tag: drop it; drop the contents of script and style */
            j = i + 1;
            while (j < len && p[j] != '>')
                j++;
            if (skip_to == NULL) {
                /* "<script>" and "<script ...>", "<style>" and "<style ...>" */
                if (j - i >= 7 && strncasecmp(p + i + 1, "script", 6) == 0 &&
                    (p[i + 7] == '>' || p[i + 7] == ' ' || p[i + 7] == '\t'))
                    skip_to = "</script", skip_len = 8;
                else if (j - i >= 6 && strncasecmp(p + i + 1, "style", 5) == 0 &&
                         (p[i + 6] == '>' || p[i + 6] == ' ' || p[i + 6] == '\t'))
                    skip_to = "</style", skip_len = 7;
                else
                    buf_addc(out, ' ');
            } else if (len - i >= skip_len && strncasecmp(p + i, skip_to, skip_len) == 0)
                skip_to = NULL;
            i = j < len ? j + 1 : len;
            continue;
        }
        if (skip_to != NULL) {
            i++;
            continue;
        }
        if (p[i] == '&') {
            for (j = i + 1; j < len && j - i < 10 && p[j] != ';'; j++)
                ;
            if (j < len && p[j] == ';') {
                for (k = 0; k < sizeof(ents) / sizeof(ents[0]); k++)
                    if (mime_strncaseeq(p + i + 1, j - i - 1, ents[k].name))
                        break;
                if (k < sizeof(ents) / sizeof(ents[0])) {
                    buf_str(out, ents[k].utf8);
                    i = j + 1;
                    continue;
                }
                if (p[i + 1] == '#') {
                    /* &#233; or &#xE9;: the character, or a space */
                    uint32_t cp = 0;
                    bool hex = i + 2 < j && (p[i + 2] == 'x' || p[i + 2] == 'X');
                    for (k = i + (hex ? 3 : 2); k < j && cp <= 0x10ffff; k++) {
                        int d = hex ? (isxdigit((unsigned char)p[k])
                                           ? (isdigit((unsigned char)p[k])
                                                  ? p[k] - '0'
                                                  : (tolower((unsigned char)p[k]) - 'a' + 10))
                                           : -1)
                                    : (isdigit((unsigned char)p[k]) ? p[k] - '0' : -1);
                        if (d < 0)
                            break;
                        cp = cp * (hex ? 16 : 10) + (uint32_t)d;
                    }
                    unsigned char u[4];
                    if (k == j && cp >= 0x20 && cp <= 0x10ffff && !(cp >= 0xd800 && cp < 0xe000))
                        buf_add(out, u, mime_utf8_put(cp, u));
                    else
                        buf_addc(out, ' ');
                    i = j + 1;
                    continue;
                }
            }
        }
        buf_addc(out, p[i]);
        i++;
    }
}

static void add_text(struct buf *text, const char *p, size_t len)
{
    size_t room;

    if (text->len >= MIME_MAX_TEXT)
        return;
    room = MIME_MAX_TEXT - text->len;
    if (len > room) {
        len = room;
        /* cut at a UTF-8 character boundary */
        while (len > 0 && ((unsigned char)p[len] & 0xc0) == 0x80)
            len--;
    }
    buf_add(text, p, len);
}

/* The preview (RFC 8970 3.2): the text's first MIME_PREVIEW_CHARS
 * characters, every run of white space or control characters one space,
 * none at either end, invalid bytes left out. */
void mime_preview(const char *s, size_t len, struct buf *out)
{
    size_t chars = 0, i = 0;
    bool space = false;

    while (i < len && chars < MIME_PREVIEW_CHARS) {
        unsigned char ch = (unsigned char)s[i];
        uint32_t cp = ch;
        size_t k = 1;
        if (ch >= 0x80 && (k = mime_utf8_char((const unsigned char *)s + i, len - i, &cp)) == 0) {
            i++; /* not UTF-8: left out */
            continue;
        }
        if (cp <= ' ' || (cp >= 0x7f && cp <= 0xa0) || (cp >= 0x2000 && cp <= 0x200b) ||
            cp == 0x2028 || cp == 0x2029 || cp == 0x3000 || cp == 0xfeff) {
            space = out->len > 0;
            i += k;
            continue;
        }
        if (space) {
            buf_addc(out, ' ');
            space = false;
            if (++chars == MIME_PREVIEW_CHARS)
                break;
        }
        buf_add(out, s + i, k);
        chars++;
        i += k;
    }
}

/* preview: the preview of the first text part with some text, when
 * not NULL */
static void collect_text(const struct mctx *c, const struct part *pt, struct buf *text,
                         struct buf *preview)
{
    struct buf dec = {0}, utf = {0}, html = {0};
    const char *src = c->msg + pt->body_off, *cs = NULL;
    size_t len = pt->body_len, i, cslen = 0;
    const struct part *ch;

    if (text->oom || text->len >= MIME_MAX_TEXT)
        return;
    if (pt->multipart || pt->message) {
        for (ch = pt->child; ch != NULL; ch = ch->next)
            collect_text(c, ch, text, preview);
        return;
    }
    if (!pt->text || len == 0)
        return;
    /* no point decoding far beyond what the index keeps */
    if (len > 4 * (size_t)MIME_MAX_TEXT)
        len = 4 * (size_t)MIME_MAX_TEXT;
    if (mime_strncaseeq(pt->enc.p, pt->enc.len, "base64")) {
        base64_decode_lenient(&dec, src, len);
        src = dec.p, len = dec.len;
    } else if (mime_strncaseeq(pt->enc.p, pt->enc.len, "quoted-printable")) {
        mime_qp_decode(&dec, src, len, 0);
        src = dec.p, len = dec.len;
    }
    for (i = 0; i < pt->nparams; i++)
        if (mime_strncaseeq(pt->store.p + pt->params[i].noff, pt->params[i].nlen, "charset")) {
            cs = pt->store.p + pt->params[i].voff;
            cslen = pt->params[i].vlen;
        }
    if (src != NULL)
        mime_to_utf8(&utf, cs, cslen, src, len);
    if (pt->type.p != NULL && mime_strncaseeq(pt->subtype.p, pt->subtype.len, "html")) {
        strip_html(&html, utf.p ? utf.p : "", utf.len);
        if (html.oom)
            text->oom = true;
        buf_free(&utf);
        utf = html;
    }
    if (dec.oom || utf.oom)
        text->oom = true;
    if (utf.len > 0 && preview && preview->len == 0)
        mime_preview(utf.p, utf.len, preview);
    if (utf.len > 0) {
        if (text->len > 0)
            add_text(text, "\n", 1);
        add_text(text, utf.p, utf.len);
    }
    buf_free(&dec);
    buf_free(&utf);
}

/* ---- public API */

void mime_summary_free(struct mime_summary *s)
{
    if (s == NULL)
        return;
    free(s->envelope);
    free(s->bodystructure);
    free(s->body);
    free(s->subject);
    free(s->from);
    free(s->to);
    free(s->cc);
    free(s->bcc);
    free(s->message_id);
    free(s->in_reply_to);
    free(s->references);
    free(s->text);
    free(s->preview);
    free(s->header);
    memset(s, 0, sizeof(*s));
}

int mime_parse(const char *msg, size_t len, struct mime_summary *out)
{
    static const char *const names[] = {"subject",    "from",        "to",         "cc",  "bcc",
                                        "message-id", "in-reply-to", "references", "date"};
    char **dst[] = {&out->subject,    &out->from,        &out->to,         &out->cc, &out->bcc,
                    &out->message_id, &out->in_reply_to, &out->references, NULL};
    struct mctx c;
    struct part *root;
    struct buf b = {0};
    struct mime_field f;
    size_t pos = 0, k;
    int err = 0;

    memset(out, 0, sizeof(*out));
    if (msg == NULL)
        msg = "", len = 0;
    root = parse_tree(&c, msg, len);
    if (root == NULL)
        return -1;

    if (root->hdr_len <= MIME_MAX_INDEXED_HEADER) {
        out->header = malloc(root->hdr_len + 1);
        if (out->header == NULL)
            err = 1;
        else {
            memcpy(out->header, msg + root->hdr_off, root->hdr_len);
            out->header[root->hdr_len] = '\0';
            out->header_len = root->hdr_len;
        }
    }
    mime_envelope(&b, msg + root->hdr_off, root->hdr_len);
    out->envelope = buf_take(&b);
    write_structure(&b, &c, root, 1);
    out->bodystructure = buf_take(&b);
    write_structure(&b, &c, root, 0);
    out->body = buf_take(&b);
    if (out->envelope == NULL || out->bodystructure == NULL || out->body == NULL)
        err = 1;

    while (!err && mime_next_field(msg + root->hdr_off, root->hdr_len, &pos, &f)) {
        if (f.value == NULL)
            continue;
        for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
            if (!mime_strncaseeq(f.name, f.namelen, names[k]))
                continue;
            if (dst[k] == NULL) {
                if (out->date == 0)
                    out->date = mime_parse_date(f.value, f.valuelen);
            } else if (*dst[k] == NULL) {
                if (k >= 5) { /* message ids: unfolded, not decoded */
                    mime_unfold(&b, f.value, f.valuelen);
                    *dst[k] = buf_take(&b);
                } else
                    *dst[k] = mime_decode_header_value(f.value, f.valuelen);
                if (*dst[k] == NULL)
                    err = 1;
            }
        }
    }

    if (!err) {
        struct buf pv = {0};
        collect_text(&c, root, &b, &pv);
        if (b.oom || pv.oom)
            err = 1;
        else if (b.len > 0)
            out->text = buf_take(&b);
        if (!err)
            out->preview = buf_take(&pv);
        buf_free(&b);
        buf_free(&pv);
    }
    free_parts(c.all);
    if (err) {
        mime_summary_free(out);
        return -1;
    }
    return 0;
}

/* Parse a decimal section number at s; 0 when none. */
static unsigned long section_num(const char **s)
{
    unsigned long v = 0;

    if (**s < '1' || **s > '9')
        return 0;
    while (**s >= '0' && **s <= '9') {
        if (v > 1000000)
            return 0;
        v = v * 10 + (unsigned long)(**s - '0');
        (*s)++;
    }
    return v;
}

/* Walks the part numbers at the start of *s ("1.2") from root, leaving *s
 * after them (at "", ".MIME", ".HEADER", ...): *cur is the part reached,
 * *nums how many numbers there were. -1 when a number names no part. */
static int walk_parts(struct part *root, const char **s, struct part **cur, int *nums)
{
    struct part *ch;
    unsigned long n, k;
    int is_msg = 1;

    *cur = root;
    *nums = 0;
    while ((n = section_num(s)) != 0) {
        (*nums)++;
        if (!is_msg && (*cur)->message && (*cur)->child != NULL) {
            *cur = (*cur)->child;
            is_msg = 1;
        }
        if ((*cur)->multipart) {
            for (ch = (*cur)->child, k = 1; ch != NULL && k < n; ch = ch->next)
                k++;
            if (ch == NULL)
                return -1;
            *cur = ch;
        } else if (!(is_msg && n == 1))
            return -1;
        is_msg = 0;
        if (**s == '\0')
            break;
        if (**s != '.' || (*s)[1] == '\0')
            return -1;
        (*s)++;
    }
    return 0;
}

int mime_find_section(const char *msg, size_t len, const char *section, size_t *off, size_t *seclen)
{
    struct mctx c;
    struct part *root, *cur;
    const char *s = section;
    int nums = 0, ret = -1;

    if (msg == NULL)
        msg = "", len = 0;
    if (section == NULL || *section == '\0') {
        *off = 0;
        *seclen = len;
        return 0;
    }
    if ((root = parse_tree(&c, msg, len)) == NULL)
        return -1;
    if (walk_parts(root, &s, &cur, &nums) < 0)
        goto out;
    if (*s == '\0' && nums > 0) {
        *off = cur->body_off;
        *seclen = cur->body_len;
        ret = 0;
    } else if (nums > 0 && strcasecmp(s, "MIME") == 0) {
        *off = cur->hdr_off;
        *seclen = cur->hdr_len;
        ret = 0;
    } else if (strcasecmp(s, "HEADER") == 0 || strcasecmp(s, "TEXT") == 0 ||
               strncasecmp(s, "HEADER.FIELDS", 13) == 0) {
        if (nums > 0) {
            if (!cur->message || cur->child == NULL)
                goto out;
            cur = cur->child;
        }
        if (strcasecmp(s, "TEXT") == 0) {
            *off = cur->body_off;
            *seclen = cur->body_len;
        } else {
            *off = cur->hdr_off;
            *seclen = cur->hdr_len;
        }
        ret = 0;
    }
out:
    free_parts(c.all);
    return ret;
}

int mime_find_binary(const char *msg, size_t len, const char *part, size_t *off, size_t *seclen,
                     int *cte)
{
    struct mctx c;
    struct part *root, *cur;
    const char *s = part;
    int nums = 0, ret = -1;

    if (msg == NULL)
        msg = "", len = 0;
    *cte = STORAGE_CTE_IDENTITY;
    if (part == NULL || *part == '\0') {
        *off = 0;
        *seclen = len;
        return 0;
    }
    if ((root = parse_tree(&c, msg, len)) == NULL)
        return -1;
    if (walk_parts(root, &s, &cur, &nums) == 0 && *s == '\0' && nums > 0) {
        const char *e = cur->enc.p;
        size_t el = 0;
        /* the mechanism is one token; a comment or junk after it is not */
        while (e && el < cur->enc.len && e[el] != ' ' && e[el] != '\t' && e[el] != '(' &&
               e[el] != ';')
            el++;
        if (!e || el == 0 || mime_strncaseeq(e, el, "7bit") || mime_strncaseeq(e, el, "8bit") ||
            mime_strncaseeq(e, el, "binary"))
            *cte = STORAGE_CTE_IDENTITY;
        else if (mime_strncaseeq(e, el, "base64"))
            *cte = STORAGE_CTE_BASE64;
        else if (mime_strncaseeq(e, el, "quoted-printable"))
            *cte = STORAGE_CTE_QP;
        else
            *cte = STORAGE_CTE_UNKNOWN;
        *off = cur->body_off;
        *seclen = cur->body_len;
        ret = 0;
    }
    free_parts(c.all);
    return ret;
}
