/* The IMAP client's response reader: one pass over the bytes, every count
 * capped where it enters (tokens, nesting, bytes kept, digits of a literal
 * size), big literals streamed to the caller's sink. Knows just enough of
 * the grammar to tokenize any response: a status response (OK, NO, BAD,
 * BYE, PREAUTH) has an optional [code] and then free text, "+" has free
 * text, everything else is atoms, strings, literals and lists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/imapc.h"

int imapc_reader_init(struct imapc_reader *r, size_t arena_max, size_t inline_max,
                      unsigned depth_max)
{
    memset(r, 0, sizeof(*r));
    if (arena_max < 64)
        arena_max = 64;
    r->arena_max = arena_max;
    r->inline_max = inline_max < arena_max ? inline_max : arena_max;
    r->depth_max = depth_max;
    /* a token costs at least one byte of input and one NUL of arena */
    r->toks_max = arena_max / 2;
    r->arena = malloc(arena_max + 1);
    r->toks = calloc(r->toks_max, sizeof(*r->toks));
    if (!r->arena || !r->toks) {
        imapc_reader_free(r);
        return -1;
    }
    return 0;
}

void imapc_reader_free(struct imapc_reader *r)
{
    free(r->arena);
    free(r->toks);
    r->arena = NULL;
    r->toks = NULL;
}

size_t imapc_reader_pending(const struct imapc_reader *r)
{
    return r->ilen - r->ipos;
}

static int fail(struct imapc_reader *r, const char *why)
{
    if (!r->failed)
        snprintf(r->err, sizeof(r->err), "%s", why);
    r->failed = true;
    return -1;
}

static int fill(struct imapc_reader *r)
{
    ssize_t n;

    if (r->ipos < r->ilen)
        return 0;
    n = r->read(r->rarg, r->in, sizeof(r->in));
    if (n <= 0)
        return fail(r, n == 0 ? "connection closed by the server" : "read error");
    r->ipos = 0;
    r->ilen = (size_t)n;
    return 0;
}

static int peekc(struct imapc_reader *r)
{
    if (fill(r) < 0)
        return -1;
    return (unsigned char)r->in[r->ipos];
}

/* ---- tokens ---- */

static struct imapc_tok *tok_new(struct imapc_reader *r, int type, unsigned depth)
{
    struct imapc_tok *t;

    if (r->ntoks >= r->toks_max) {
        fail(r, "response has too many tokens");
        return NULL;
    }
    t = &r->toks[r->ntoks++];
    t->type = (uint8_t)type;
    t->depth = depth;
    t->off = r->alen;
    t->len = 0;
    return t;
}

static int arena_addc(struct imapc_reader *r, char c)
{
    if (r->alen >= r->arena_max)
        return fail(r, "response too long");
    r->arena[r->alen++] = c;
    return 0;
}

/* Ends the token being written into the arena. */
static int tok_end(struct imapc_reader *r, struct imapc_tok *t)
{
    t->len = r->alen - t->off;
    return arena_addc(r, '\0');
}

static bool atom_char(int c, bool in_code)
{
    if (c <= 0x20 || c >= 0x7f)
        return false;
    if (c == '(' || c == ')' || c == '"' || c == '{')
        return false;
    return !(in_code && c == ']');
}

/* An atom; outside a response code a "[...]" inside it (BODY[], BODY[1.2])
 * may hold spaces and parentheses. */
static int read_atom(struct imapc_reader *r, unsigned depth, bool in_code)
{
    struct imapc_tok *t = tok_new(r, IMAPC_ATOM, depth);
    bool bracket = false;
    int c;

    if (!t)
        return -1;
    for (;;) {
        if ((c = peekc(r)) < 0)
            return -1;
        if (bracket) {
            if (c == '\r' || c == '\n')
                return fail(r, "unterminated [ in an atom");
            if (c == ']')
                bracket = false;
        } else if (!atom_char(c, in_code)) {
            break;
        } else if (c == '[' && !in_code) {
            bracket = true;
        }
        if (arena_addc(r, (char)c) < 0)
            return -1;
        r->ipos++;
    }
    if (r->alen == t->off)
        return fail(r, "unexpected character in a response");
    return tok_end(r, t);
}

static int read_quoted(struct imapc_reader *r, unsigned depth)
{
    struct imapc_tok *t = tok_new(r, IMAPC_STRING, depth);
    int c;

    if (!t)
        return -1;
    r->ipos++; /* the opening quote */
    for (;;) {
        if ((c = peekc(r)) < 0)
            return -1;
        r->ipos++;
        if (c == '"')
            break;
        if (c == '\r' || c == '\n')
            return fail(r, "unterminated quoted string");
        if (c == '\\') {
            if ((c = peekc(r)) < 0)
                return -1;
            r->ipos++;
            if (c != '\\' && c != '"')
                return fail(r, "bad escape in a quoted string");
        }
        if (arena_addc(r, (char)c) < 0)
            return -1;
    }
    return tok_end(r, t);
}

static int read_eol(struct imapc_reader *r);

static int read_literal(struct imapc_reader *r, unsigned depth)
{
    uint64_t size = 0;
    unsigned digits = 0;
    size_t idx;
    int c;

    r->ipos++; /* { */
    for (;;) {
        if ((c = peekc(r)) < 0)
            return -1;
        if (c < '0' || c > '9')
            break;
        if (++digits > 15)
            return fail(r, "literal size too large");
        size = size * 10 + (uint64_t)(c - '0');
        r->ipos++;
    }
    if (digits == 0)
        return fail(r, "bad literal size");
    if (c == '+') { /* a server has no use for it, but it is harmless */
        r->ipos++;
        if ((c = peekc(r)) < 0)
            return -1;
    }
    if (c != '}')
        return fail(r, "bad literal size");
    r->ipos++;
    if (read_eol(r) < 0)
        return -1;

    idx = r->ntoks;
    if (!r->sink && size <= r->inline_max) {
        struct imapc_tok *t = tok_new(r, IMAPC_STRING, depth);
        if (!t)
            return -1;
        if (r->alen + size >= r->arena_max)
            return fail(r, "response too long");
        while (size > 0) {
            size_t n;
            if (fill(r) < 0)
                return -1;
            n = r->ilen - r->ipos;
            if (n > size)
                n = (size_t)size;
            memcpy(r->arena + r->alen, r->in + r->ipos, n);
            r->alen += n;
            r->ipos += n;
            size -= n;
        }
        return tok_end(r, t);
    }
    if (!r->sink)
        return fail(r, "literal too large");
    {
        struct imapc_tok *t = tok_new(r, IMAPC_STREAMED, depth);
        if (!t)
            return -1;
        t->len = (size_t)size;
        if (r->sink(r->sarg, idx, NULL, size) != 0)
            return fail(r, "literal refused");
    }
    while (size > 0) {
        size_t n;
        if (fill(r) < 0)
            return -1;
        n = r->ilen - r->ipos;
        if (n > size)
            n = (size_t)size;
        if (r->sink(r->sarg, idx, r->in + r->ipos, n) != 0)
            return fail(r, "literal refused");
        r->ipos += n;
        size -= n;
    }
    return 0;
}

/* The end of the line: CRLF (a bare LF is taken too). */
static int read_eol(struct imapc_reader *r)
{
    int c = peekc(r);

    if (c < 0)
        return -1;
    if (c == '\r') {
        r->ipos++;
        if ((c = peekc(r)) < 0)
            return -1;
    }
    if (c != '\n')
        return fail(r, "expected end of line");
    r->ipos++;
    return 0;
}

/* Atoms, strings, literals and lists up to the end of the line, or up to
 * the ']' closing a response code when in_code. */
static int read_tokens(struct imapc_reader *r, bool in_code)
{
    unsigned depth = 0;
    int c;

    for (;;) {
        if ((c = peekc(r)) < 0)
            return -1;
        if (c == ' ') {
            r->ipos++;
        } else if (c == '\r' || c == '\n') {
            if (depth > 0 || in_code)
                return fail(r, "unbalanced parentheses or brackets");
            return read_eol(r);
        } else if (c == '(') {
            if (depth >= r->depth_max)
                return fail(r, "lists nested too deeply");
            if (!tok_new(r, IMAPC_OPEN, depth))
                return -1;
            depth++;
            r->ipos++;
        } else if (c == ')') {
            if (depth == 0)
                return fail(r, "unbalanced parentheses");
            depth--;
            if (!tok_new(r, IMAPC_CLOSE, depth))
                return -1;
            r->ipos++;
        } else if (in_code && c == ']') {
            if (depth > 0)
                return fail(r, "unbalanced parentheses in a response code");
            r->ipos++;
            return tok_new(r, IMAPC_CODE_CLOSE, 0) ? 0 : -1;
        } else if (c == '"') {
            if (read_quoted(r, depth) < 0)
                return -1;
        } else if (c == '{') {
            if (read_literal(r, depth) < 0)
                return -1;
        } else if (read_atom(r, depth, in_code) < 0) {
            return -1;
        }
    }
}

/* Free text to the end of the line. */
static int read_text(struct imapc_reader *r)
{
    struct imapc_tok *t = tok_new(r, IMAPC_TEXT, 0);
    int c;

    if (!t)
        return -1;
    for (;;) {
        if ((c = peekc(r)) < 0)
            return -1;
        if (c == '\r' || c == '\n')
            break;
        if (arena_addc(r, (char)c) < 0)
            return -1;
        r->ipos++;
    }
    if (tok_end(r, t) < 0)
        return -1;
    return read_eol(r);
}

static void skip_spaces(struct imapc_reader *r)
{
    while (peekc(r) == ' ')
        r->ipos++;
}

static bool is_status(const char *s)
{
    return !strcasecmp(s, "OK") || !strcasecmp(s, "NO") || !strcasecmp(s, "BAD") ||
           !strcasecmp(s, "BYE") || !strcasecmp(s, "PREAUTH");
}

int imapc_read_response(struct imapc_reader *r)
{
    size_t first;
    int c;

    if (r->failed)
        return -1;
    r->ntoks = 0;
    r->alen = 0;

    /* the tag, "*" or "+" */
    if ((c = peekc(r)) < 0)
        return -1;
    if (c == '+') {
        r->ipos++;
        if (!tok_new(r, IMAPC_ATOM, 0) || arena_addc(r, '+') < 0 || tok_end(r, &r->toks[0]) < 0)
            return -1;
        skip_spaces(r);
        return read_text(r);
    }
    if (!atom_char(c, true) || read_atom(r, 0, true) < 0)
        return fail(r, "bad response tag");
    if ((c = peekc(r)) < 0)
        return -1;
    if (c != ' ')
        return fail(r, "bad response");
    skip_spaces(r);

    /* "* 12 FETCH ..." and "* 3 EXISTS": a number before the name */
    first = r->ntoks;
    if ((c = peekc(r)) < 0)
        return -1;
    if (!atom_char(c, true) || read_atom(r, 0, true) < 0)
        return fail(r, "bad response");
    if (!is_status(r->arena + r->toks[first].off))
        return read_tokens(r, false);

    /* status response: [code] and text */
    if ((c = peekc(r)) < 0)
        return -1;
    if (c == ' ') {
        skip_spaces(r);
        if ((c = peekc(r)) < 0)
            return -1;
        if (c == '[') {
            r->ipos++;
            if (!tok_new(r, IMAPC_CODE_OPEN, 0) || read_tokens(r, true) < 0)
                return -1;
            skip_spaces(r);
        }
    }
    return read_text(r);
}

/* ---- helpers for the callers ---- */

const char *imapc_tok_str(const struct imapc_reader *r, size_t i)
{
    if (i >= r->ntoks)
        return NULL;
    if (r->toks[i].type != IMAPC_ATOM && r->toks[i].type != IMAPC_STRING &&
        r->toks[i].type != IMAPC_TEXT)
        return NULL;
    return r->arena + r->toks[i].off;
}

bool imapc_tok_is(const struct imapc_reader *r, size_t i, const char *atom)
{
    return i < r->ntoks && r->toks[i].type == IMAPC_ATOM &&
           !strcasecmp(r->arena + r->toks[i].off, atom);
}

size_t imapc_tok_skip(const struct imapc_reader *r, size_t i)
{
    uint32_t d;

    if (i >= r->ntoks)
        return r->ntoks;
    if (r->toks[i].type != IMAPC_OPEN)
        return i + 1;
    d = r->toks[i].depth;
    for (i++; i < r->ntoks; i++)
        if (r->toks[i].type == IMAPC_CLOSE && r->toks[i].depth == d)
            return i + 1;
    return r->ntoks;
}

int imapc_tok_u64(const struct imapc_reader *r, size_t i, uint64_t max, uint64_t *out)
{
    const char *s;
    uint64_t v = 0;

    if (i >= r->ntoks || r->toks[i].type != IMAPC_ATOM)
        return -1;
    s = r->arena + r->toks[i].off;
    if (!*s || r->toks[i].len > 20)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > (max - (uint64_t)(*s - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}
