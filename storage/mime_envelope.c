/* IMAP ENVELOPE (RFC 3501 7.4.2) from a message header: raw unfolded
 * header values, and RFC 5322 address lists (with obsolete forms: routes,
 * comments, missing domains) turned into (name adl mailbox host) lists.
 * Parsing is lenient and linear: every step consumes input. */
#include <string.h>

#include "storage/mime_private.h"

enum { F_DATE, F_SUBJECT, F_FROM, F_SENDER, F_REPLY_TO, F_TO, F_CC, F_BCC, F_IRT, F_MSGID, F_N };

static const char *const env_names[F_N] = {"date", "subject", "from", "sender",      "reply-to",
                                           "to",   "cc",      "bcc",  "in-reply-to", "message-id"};

/* An address under construction: each piece is a buffer, has_* says present. */
struct addr {
    struct buf name, adl, mbox, host;
    int has_name, has_adl, has_mbox, has_host;
};

struct aparse {
    const char *p;
    size_t len, i;
    struct buf *out;
    int count;
    /* no obsolete route's ':' in [no_route_from, no_route_before): the
     * last search for one went over it and stopped at a '>' or the end */
    size_t no_route_from, no_route_before;
};

/* Empties a work buffer for reuse; an allocation failure it saw is
 * carried to the output first, which then fails as a whole. */
static void clear(struct aparse *a, struct buf *b)
{
    if (b->oom)
        a->out->oom = true;
    buf_reset(b);
}

static int is_special(char c)
{
    return c == '(' || c == ')' || c == '<' || c == '>' || c == '@' || c == ',' || c == ';' ||
           c == ':' || c == '\\' || c == '"' || c == '[' || c == ']';
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skip whitespace and comments; if cbuf is set, the text of the last
 * comment seen is kept there (for "user@host (Name)"). 1 if anything skipped. */
static int skip_cfws(struct aparse *a, struct buf *cbuf)
{
    size_t st = a->i, cs;
    int depth;

    for (;;) {
        while (a->i < a->len && is_ws(a->p[a->i]))
            a->i++;
        if (a->i >= a->len || a->p[a->i] != '(')
            break;
        depth = 0;
        cs = a->i + 1;
        while (a->i < a->len) {
            char c = a->p[a->i++];
            if (c == '\\' && a->i < a->len)
                a->i++;
            else if (c == '(')
                depth++;
            else if (c == ')' && --depth == 0)
                break;
        }
        if (cbuf != NULL && a->i > cs) {
            clear(a, cbuf);
            buf_add(cbuf, a->p + cs, a->i - cs - (a->p[a->i - 1] == ')'));
        }
    }
    return a->i != st;
}

/* Read a quoted string's contents (unescaped) into b; a->i at the quote. */
static void read_quoted(struct aparse *a, struct buf *b)
{
    a->i = mime_read_quoted(b, a->p, a->len, a->i);
}

/* Read one word (atom with dots, or quoted string) into b. 0 if none. */
static int read_word(struct aparse *a, struct buf *b)
{
    size_t st;

    if (a->i >= a->len)
        return 0;
    if (a->p[a->i] == '"') {
        read_quoted(a, b);
        return 1;
    }
    st = a->i;
    while (a->i < a->len && !is_ws(a->p[a->i]) && !is_special(a->p[a->i]))
        a->i++;
    buf_add(b, a->p + st, a->i - st);
    return a->i > st;
}

/* Phrase: words up to a special; words separated by whitespace in the input
 * get one space. Returns the number of words. */
static int read_phrase(struct aparse *a, struct buf *b, struct buf *cbuf)
{
    int n = 0, ws = 0;

    for (;;) {
        ws = skip_cfws(a, cbuf);
        if (a->i >= a->len)
            break;
        if (is_special(a->p[a->i]) && a->p[a->i] != '"')
            break;
        if (n > 0 && ws)
            buf_addc(b, ' ');
        if (!read_word(a, b))
            break;
        n++;
    }
    return n;
}

/* Domain after '@': atoms, dots and domain literals, whitespace dropped. */
static void read_domain(struct aparse *a, struct buf *b, struct buf *cbuf)
{
    size_t st;

    for (;;) {
        skip_cfws(a, cbuf);
        if (a->i >= a->len)
            return;
        if (a->p[a->i] == '[') {
            st = a->i;
            while (a->i < a->len && a->p[a->i] != ']')
                a->i++;
            if (a->i < a->len)
                a->i++;
            buf_add(b, a->p + st, a->i - st);
            continue;
        }
        if (is_special(a->p[a->i]) || a->p[a->i] == '"')
            return;
        st = a->i;
        while (a->i < a->len && !is_ws(a->p[a->i]) && !is_special(a->p[a->i]) && a->p[a->i] != '(')
            a->i++;
        buf_add(b, a->p + st, a->i - st);
    }
}

/* One piece of an address, then sep: the piece when present and not
 * empty, else the string missing when given, else NIL. */
static void put_piece(struct buf *o, int has, const struct buf *v, const char *missing, char sep)
{
    if (has && v->len > 0)
        buf_imap_string(o, v->p, v->len);
    else if (missing)
        buf_imap_string(o, missing, strlen(missing));
    else
        buf_add(o, "NIL", 3);
    buf_addc(o, sep);
}

static void emit_addr(struct aparse *a, struct addr *ad)
{
    /* an address with a mailbox or a host has both: NIL would mean group syntax */
    int some = ad->has_host || ad->has_mbox;

    if (a->count++ == 0)
        buf_addc(a->out, '(');
    buf_addc(a->out, '(');
    put_piece(a->out, ad->has_name, &ad->name, NULL, ' ');
    put_piece(a->out, ad->has_adl, &ad->adl, NULL, ' ');
    put_piece(a->out, ad->has_mbox, &ad->mbox, some ? "MISSING_MAILBOX" : NULL, ' ');
    put_piece(a->out, ad->has_host, &ad->host, some ? "MISSING_DOMAIN" : NULL, ')');
}

static void addr_reset(struct aparse *a, struct addr *ad)
{
    clear(a, &ad->name);
    clear(a, &ad->adl);
    clear(a, &ad->mbox);
    clear(a, &ad->host);
    ad->has_name = ad->has_adl = ad->has_mbox = ad->has_host = 0;
}

static void addr_free(struct addr *ad)
{
    buf_free(&ad->name);
    buf_free(&ad->adl);
    buf_free(&ad->mbox);
    buf_free(&ad->host);
}

/* After '<': [route ":"] local "@" domain ">" */
static void read_angle(struct aparse *a, struct addr *ad)
{
    size_t save;

    a->i++; /* '<' */
    skip_cfws(a, NULL);
    if (a->i < a->len && a->p[a->i] == '@' &&
        (a->i < a->no_route_from || a->i >= a->no_route_before)) {
        /* obs-route: "@a,@b:". A search that finds no ':' would find none
         * from any later '@' before where it stopped either: noted, so that
         * "<@,<@,..." is not searched to the end from each (quadratic). */
        save = a->i;
        while (a->i < a->len && a->p[a->i] != ':' && a->p[a->i] != '>')
            a->i++;
        if (a->i >= a->len || a->p[a->i] != ':') {
            a->no_route_from = save;
            a->no_route_before = a->i;
        }
        if (a->i < a->len && a->p[a->i] == ':') {
            size_t k;
            for (k = save; k < a->i; k++)
                if (!is_ws(a->p[k]))
                    buf_addc(&ad->adl, a->p[k]);
            ad->has_adl = 1;
            a->i++;
        } else
            a->i = save;
    }
    skip_cfws(a, NULL);
    /* local part: words and dots */
    while (a->i < a->len && a->p[a->i] != '@' && a->p[a->i] != '>') {
        if (skip_cfws(a, NULL))
            continue;
        if (a->i >= a->len)
            break;
        if (a->p[a->i] == '"') {
            read_quoted(a, &ad->mbox);
        } else if (is_special(a->p[a->i])) {
            if (a->p[a->i] == ',' || a->p[a->i] == ';')
                break; /* unclosed '<' */
            a->i++;    /* junk */
        } else
            read_word(a, &ad->mbox);
        ad->has_mbox = 1;
    }
    if (a->i < a->len && a->p[a->i] == '@') {
        a->i++;
        ad->has_host = 1;
        read_domain(a, &ad->host, NULL);
    }
    ad->has_mbox = 1;
    while (a->i < a->len && a->p[a->i] != '>' && a->p[a->i] != ',' && a->p[a->i] != ';')
        a->i++;
    if (a->i < a->len && a->p[a->i] == '>')
        a->i++;
}

/* One mailbox (or, with allow_group, a group) at a->i. */
static void read_address(struct aparse *a, struct addr *ad, struct buf *cbuf, int allow_group)
{
    size_t save;

    addr_reset(a, ad);
    clear(a, cbuf);
    save = a->i;
    read_phrase(a, &ad->name, NULL);
    if (a->i < a->len && a->p[a->i] == '<') {
        ad->has_name = ad->name.len > 0;
        read_angle(a, ad);
        emit_addr(a, ad);
        return;
    }
    if (a->i < a->len && a->p[a->i] == ':' && allow_group) {
        struct addr m = {0};
        /* group: (NIL NIL "name" NIL) members (NIL NIL NIL NIL) */
        buf_add(&ad->mbox, ad->name.p ? ad->name.p : "", ad->name.len);
        if (a->count++ == 0)
            buf_addc(a->out, '(');
        buf_add(a->out, "(NIL NIL ", 9);
        buf_imap_string(a->out, ad->mbox.p ? ad->mbox.p : "", ad->mbox.len);
        buf_add(a->out, " NIL)", 5);
        a->i++;
        for (;;) {
            skip_cfws(a, NULL);
            if (a->i >= a->len)
                break;
            if (a->p[a->i] == ';') {
                a->i++;
                break;
            }
            if (a->p[a->i] == ',') {
                a->i++;
                continue;
            }
            save = a->i;
            read_address(a, &m, cbuf, 0);
            if (a->i == save)
                a->i++; /* junk: make progress */
        }
        addr_reset(a, &m);
        addr_free(&m);
        buf_add(a->out, "(NIL NIL NIL NIL)", 17);
        return;
    }
    /* addr-spec: local "@" domain, the phrase words were the local part */
    a->i = save;
    addr_reset(a, ad);
    for (;;) {
        skip_cfws(a, cbuf);
        if (a->i >= a->len || (is_special(a->p[a->i]) && a->p[a->i] != '"'))
            break;
        if (!read_word(a, &ad->mbox))
            break;
        ad->has_mbox = 1;
    }
    if (a->i < a->len && a->p[a->i] == '@') {
        a->i++;
        ad->has_host = 1;
        read_domain(a, &ad->host, cbuf);
    } else
        skip_cfws(a, cbuf);
    if (!ad->has_mbox && !ad->has_host)
        return;
    if (cbuf->len > 0) { /* "user@host (Real Name)" */
        buf_add(&ad->name, cbuf->p, cbuf->len);
        ad->has_name = 1;
    }
    emit_addr(a, ad);
}

static void address_list(struct buf *out, const char *v, size_t len)
{
    struct aparse a = {v, len, 0, out, 0, 0, 0};
    struct addr ad = {0};
    struct buf cbuf = {0};
    size_t save;

    while (a.i < a.len && !out->oom) {
        skip_cfws(&a, NULL);
        if (a.i >= a.len)
            break;
        if (v[a.i] == ',' || v[a.i] == ';' || v[a.i] == '>' || v[a.i] == ')') {
            a.i++;
            continue;
        }
        save = a.i;
        read_address(&a, &ad, &cbuf, 1);
        if (a.i == save)
            a.i++;
    }
    if (ad.name.oom || ad.adl.oom || ad.mbox.oom || ad.host.oom || cbuf.oom)
        out->oom = true;
    addr_free(&ad);
    buf_free(&cbuf);
    if (a.count == 0)
        buf_add(out, "NIL", 3);
    else
        buf_addc(out, ')');
}

static int has_nonblank(const char *v, size_t len)
{
    size_t i;

    for (i = 0; v != NULL && i < len; i++)
        if (!is_ws(v[i]))
            return 1;
    return 0;
}

void mime_envelope(struct buf *b, const char *hdr, size_t len)
{
    struct mime_field f;
    const char *val[F_N] = {0};
    size_t vlen[F_N] = {0};
    size_t pos = 0;
    struct buf u = {0};
    int k, src;

    while (mime_next_field(hdr, len, &pos, &f)) {
        if (f.value == NULL)
            continue;
        for (k = 0; k < F_N; k++) {
            if (val[k] == NULL && mime_strncaseeq(f.name, f.namelen, env_names[k])) {
                val[k] = f.value;
                vlen[k] = f.valuelen;
            }
        }
    }
    buf_addc(b, '(');
    for (k = 0; k < F_N; k++) {
        if (k > 0)
            buf_addc(b, ' ');
        src = k;
        /* sender and reply-to default to from (RFC 3501) */
        if ((k == F_SENDER || k == F_REPLY_TO) && !has_nonblank(val[k], vlen[k]))
            src = F_FROM;
        if (val[src] == NULL) {
            buf_add(b, "NIL", 3);
            continue;
        }
        buf_reset(&u);
        mime_unfold(&u, val[src], vlen[src]);
        if (u.oom) {
            b->oom = true;
            break;
        }
        switch (k) {
        case F_DATE:
        case F_SUBJECT:
        case F_IRT:
        case F_MSGID: /* present but empty: "" (as Dovecot) */
            buf_imap_string(b, u.p ? u.p : "", u.len);
            break;
        default:
            address_list(b, u.p ? u.p : "", u.len);
        }
    }
    buf_addc(b, ')');
    buf_free(&u);
}
