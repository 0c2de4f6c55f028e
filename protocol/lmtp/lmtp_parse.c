/* LMTP parsing without side effects: MAIL/RCPT paths and parameters, BDAT
 * arguments, recipient detail, and the DATA dot-unstuffing state machine.
 * Everything here takes a length and never reads past it; fuzzed directly by
 * tests/fuzz/fuzz_lmtp.c. */
#include <string.h>
#include <strings.h>

#include "protocol/lmtp/lmtp_int.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Decimal, at most 20 digits, no overflow. */
static int parse_u64(const char *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(p[i]))
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static bool key_is(const char *k, size_t klen, const char *name)
{
    return klen == strlen(name) && !strncasecmp(k, name, klen);
}

static int parse_param(const char *k, size_t klen, const char *v, size_t vlen, bool has_value,
                       struct lmtp_params *p)
{
    if (key_is(k, klen, "SIZE")) {
        if (!has_value || parse_u64(v, vlen, &p->size) < 0)
            return LMTP_PARSE_BADVALUE;
        p->has_size = true;
        return LMTP_PARSE_OK;
    }
    if (key_is(k, klen, "BODY")) {
        if (has_value && key_is(v, vlen, "7BIT"))
            p->body = LMTP_BODY_7BIT;
        else if (has_value && key_is(v, vlen, "8BITMIME"))
            p->body = LMTP_BODY_8BITMIME;
        else
            return LMTP_PARSE_BADVALUE;
        return LMTP_PARSE_OK;
    }
    if (key_is(k, klen, "SMTPUTF8")) {
        if (has_value)
            return LMTP_PARSE_BADVALUE;
        p->smtputf8 = true;
        return LMTP_PARSE_OK;
    }
    return LMTP_PARSE_UNKNOWN;
}

int lmtp_parse_path(const char *arg, size_t len, const char *keyword, bool allow_params, char *path,
                    size_t pathcap, size_t *pathlen, struct lmtp_params *p)
{
    size_t kl = strlen(keyword), i, start, end;
    bool quoted = false;

    memset(p, 0, sizeof(*p));
    if (len < kl || strncasecmp(arg, keyword, kl))
        return LMTP_PARSE_SYNTAX;
    i = kl;
    while (i < len && arg[i] == ' ') /* "MAIL FROM: <a>" is common */
        i++;
    if (i >= len || arg[i] != '<')
        return LMTP_PARSE_SYNTAX;
    start = ++i;
    for (; i < len; i++) {
        unsigned char ch = (unsigned char)arg[i];
        if (ch < 0x20 || ch == 0x7f)
            return LMTP_PARSE_SYNTAX;
        if (quoted) {
            if (ch == '\\') {
                if (++i >= len)
                    return LMTP_PARSE_SYNTAX;
                ch = (unsigned char)arg[i];
                if (ch < 0x20 || ch == 0x7f)
                    return LMTP_PARSE_SYNTAX;
            } else if (ch == '"') {
                quoted = false;
            }
            continue;
        }
        if (ch == '"')
            quoted = true;
        else if (ch == '<')
            return LMTP_PARSE_SYNTAX;
        else if (ch == '>')
            break;
        else if (ch == ' ')
            return LMTP_PARSE_SYNTAX;
    }
    if (i >= len)
        return LMTP_PARSE_SYNTAX;
    end = i++;
    /* a source route "@a,@b:user@d" is ignored (RFC 5321 4.1.2) */
    if (end > start && arg[start] == '@') {
        const char *colon = memchr(arg + start, ':', end - start);
        if (!colon)
            return LMTP_PARSE_SYNTAX;
        start = (size_t)(colon - arg) + 1;
    }
    if (end - start > LMTP_PATH_MAX - 2 || end - start >= pathcap)
        return LMTP_PARSE_SYNTAX;
    memcpy(path, arg + start, end - start);
    path[end - start] = '\0';
    *pathlen = end - start;

    /* parameters: SP key[=value] ... */
    while (i < len) {
        size_t k, klen, v = 0, vlen = 0;
        bool has_value = false;
        int r;
        if (arg[i] != ' ')
            return LMTP_PARSE_SYNTAX;
        while (i < len && arg[i] == ' ')
            i++;
        if (i >= len)
            break;
        k = i;
        while (i < len && arg[i] != ' ' && arg[i] != '=')
            i++;
        klen = i - k;
        if (klen == 0)
            return LMTP_PARSE_SYNTAX;
        for (size_t j = k; j < k + klen; j++)
            if (!(arg[j] >= 'A' && arg[j] <= 'Z') && !(arg[j] >= 'a' && arg[j] <= 'z') &&
                !is_digit(arg[j]) && arg[j] != '-')
                return LMTP_PARSE_SYNTAX;
        if (i < len && arg[i] == '=') {
            has_value = true;
            v = ++i;
            while (i < len && arg[i] != ' ') {
                unsigned char ch = (unsigned char)arg[i];
                if (ch < 33 || ch > 126 || ch == '=')
                    return LMTP_PARSE_BADVALUE;
                i++;
            }
            vlen = i - v;
        }
        if (!allow_params)
            return LMTP_PARSE_UNKNOWN;
        r = parse_param(arg + k, klen, arg + v, vlen, has_value, p);
        if (r != LMTP_PARSE_OK)
            return r;
    }
    return LMTP_PARSE_OK;
}

int lmtp_split_detail(const char *addr, size_t len, const char *delims, char *base, size_t basecap,
                      char *detail, size_t detailcap)
{
    const char *at = NULL;
    size_t local_len, cut = (size_t)-1;

    for (size_t i = len; i > 0; i--) {
        if (addr[i - 1] == '@') {
            at = addr + i - 1;
            break;
        }
    }
    local_len = at ? (size_t)(at - addr) : len;
    if (delims && *delims) {
        for (size_t i = 0; i < local_len; i++) {
            if (addr[i] && strchr(delims, addr[i])) {
                cut = i;
                break;
            }
        }
    }
    if (cut == (size_t)-1) {
        if (len >= basecap || detailcap < 1)
            return -1;
        memcpy(base, addr, len);
        base[len] = '\0';
        detail[0] = '\0';
        return 0;
    }
    size_t dlen = local_len - cut - 1, domlen = len - local_len;
    if (cut + domlen >= basecap || dlen >= detailcap)
        return -1;
    memcpy(base, addr, cut);
    memcpy(base + cut, addr + local_len, domlen);
    base[cut + domlen] = '\0';
    memcpy(detail, addr + cut + 1, dlen);
    detail[dlen] = '\0';
    return 0;
}

int lmtp_parse_bdat(const char *arg, size_t len, uint64_t *size, bool *last)
{
    size_t i = 0;
    while (i < len && is_digit(arg[i]))
        i++;
    if (parse_u64(arg, i, size) < 0)
        return -1;
    *last = false;
    if (i == len)
        return 0;
    if (arg[i] != ' ')
        return -1;
    while (i < len && arg[i] == ' ')
        i++;
    if (len - i == 4 && !strncasecmp(arg + i, "LAST", 4)) {
        *last = true;
        return 0;
    }
    return i == len ? 0 : -1;
}

/* ---- DATA: dot-unstuffing ---- */

enum { U_BOL, U_MID, U_CR, U_DOT, U_DOTCR };

void lmtp_undot_init(struct lmtp_undot *u)
{
    u->state = U_BOL;
    u->done = false;
}

static int after(char c)
{
    return c == '\n' ? U_BOL : c == '\r' ? U_CR : U_MID;
}

void lmtp_undot(struct lmtp_undot *u, const char *in, size_t inlen, char *out, size_t *used,
                size_t *outlen)
{
    size_t i = 0, o = 0;
    int st = u->state;

    while (i < inlen && !u->done) {
        char c;
        if (st == U_MID || st == U_CR) {
            /* inside a line every byte is content up to its LF: copied
             * as a run, not byte by byte */
            const char *lf = memchr(in + i, '\n', inlen - i);
            size_t n = lf ? (size_t)(lf - (in + i)) + 1 : inlen - i;
            memcpy(out + o, in + i, n);
            i += n;
            o += n;
            st = after(in[i - 1]);
            continue;
        }
        c = in[i++];
        switch (st) {
        case U_BOL:
            if (c == '.') {
                st = U_DOT;
                break;
            }
            out[o++] = c;
            st = after(c);
            break;
        case U_MID:
        case U_CR:
            out[o++] = c;
            st = after(c);
            break;
        case U_DOT:
            if (c == '\r') {
                st = U_DOTCR;
            } else if (c == '\n') {
                u->done = true; /* ".\n": a client with bare LF line ends */
            } else {
                out[o++] = c; /* the stuffing dot is dropped */
                st = c == '\n' ? U_BOL : c == '\r' ? U_CR : U_MID;
            }
            break;
        case U_DOTCR:
            if (c == '\n') {
                u->done = true;
            } else {
                /* "." CR <c>: not the end; the CR is content */
                out[o++] = '\r';
                out[o++] = c;
                st = after(c);
            }
            break;
        }
    }
    u->state = st;
    *used = i;
    *outlen = o;
}
