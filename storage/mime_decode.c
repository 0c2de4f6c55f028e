/* Transfer decoding a slice at a time (FETCH BINARY, RFC 3516): base64 and
 * quoted-printable as RFC 2045 6.7 and 6.8 read them, with a state of a
 * few bytes carried from one slice to the next, so that an attachment of
 * any size is decoded in one pass without being held. */
#include <string.h>

#include "server/base/base64.h"
#include "storage/storage.h"

enum { Q_NORMAL, Q_CR, Q_EQ, Q_HEX1, Q_EQWS, Q_EQCR };

void storage_decoder_init(struct storage_decoder *d, enum storage_cte cte)
{
    memset(d, 0, sizeof(*d));
    d->cte = cte;
}

static size_t b64(struct storage_decoder *d, const char *in, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len && !d->ended; i++) {
        if (in[i] == '=') {
            d->ended = true;
            break;
        }
        int v = base64_value((unsigned char)in[i], BASE64_STD_63);
        if (v < 0)
            continue;
        d->acc = (d->acc << 6) | (unsigned)v;
        d->bits += 6;
        if (d->bits >= 8) {
            d->bits -= 8;
            out[o++] = (char)((d->acc >> d->bits) & 0xff);
        }
    }
    return o;
}

static size_t flush(struct storage_decoder *d, char *out)
{
    size_t n = d->npend;
    memcpy(out, d->pend, n);
    d->npend = 0;
    return n;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* One character of quoted-printable in the NORMAL state. */
static size_t qp_plain(struct storage_decoder *d, char c, char *out)
{
    size_t o = 0;

    if (is_ws(c) || c == '\r') {
        /* white space may end the line (then it goes): held until known */
        if (d->npend == sizeof(d->pend))
            o += flush(d, out);
        d->pend[d->npend++] = c;
        if (c == '\r')
            d->state = Q_CR;
        return o;
    }
    if (c == '\n') {
        d->npend = 0; /* white space at the end of a line */
        out[o++] = '\n';
        return o;
    }
    o += flush(d, out);
    if (c == '=') {
        d->pend[d->npend++] = '=';
        d->state = Q_EQ;
        return o;
    }
    out[o++] = c;
    return o;
}

/* A '=' that starts no escape: it stays, and what followed it is read
 * again as plain text. */
static size_t qp_stray(struct storage_decoder *d, char *out)
{
    char again[sizeof(d->pend)];
    size_t n = d->npend, o = 0;

    memcpy(again, d->pend, n);
    d->npend = 0;
    d->state = Q_NORMAL;
    out[o++] = '=';
    for (size_t i = 1; i < n; i++)
        o += qp_plain(d, again[i], out + o);
    return o;
}

/* One character of quoted-printable, in any state. */
static size_t qp_char(struct storage_decoder *d, char c, char *out)
{
    size_t o = 0;
    int h;

    switch (d->state) {
    case Q_NORMAL:
        return qp_plain(d, c, out);
    case Q_CR:
        d->state = Q_NORMAL;
        if (c == '\n') {
            d->npend = 0; /* white space before the line break goes */
            out[o++] = '\r';
            out[o++] = '\n';
            return o;
        }
        o += flush(d, out);
        return o + qp_plain(d, c, out + o);
    case Q_EQ:
        if (hex_value((unsigned char)c) >= 0) {
            d->pend[d->npend++] = c;
            d->state = Q_HEX1;
            return 0;
        }
        if ((is_ws(c) || c == '\r') && d->npend < sizeof(d->pend)) {
            d->pend[d->npend++] = c;
            d->state = c == '\r' ? Q_EQCR : Q_EQWS;
            return 0;
        }
        break;
    case Q_HEX1:
        if ((h = hex_value((unsigned char)c)) >= 0) {
            out[o++] = (char)(hex_value((unsigned char)d->pend[1]) * 16 + h);
            d->npend = 0;
            d->state = Q_NORMAL;
            return o;
        }
        o += qp_stray(d, out);
        return o + qp_char(d, c, out + o);
    case Q_EQWS:
        if ((is_ws(c) || c == '\r') && d->npend < sizeof(d->pend)) {
            d->pend[d->npend++] = c;
            if (c == '\r')
                d->state = Q_EQCR;
            return 0;
        }
        break;
    case Q_EQCR:
        break;
    }
    /* after "=", "= ", "=\r": a line break makes it a soft one */
    if (c == '\n') {
        d->npend = 0;
        d->state = Q_NORMAL;
        return 0;
    }
    o += qp_stray(d, out);
    return o + qp_char(d, c, out + o);
}

static size_t qp(struct storage_decoder *d, const char *in, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++)
        o += qp_char(d, in[i], out + o);
    return o;
}

size_t storage_decode(struct storage_decoder *d, const char *in, size_t len, char *out)
{
    switch (d->cte) {
    case STORAGE_CTE_BASE64:
        return b64(d, in, len, out);
    case STORAGE_CTE_QP:
        return qp(d, in, len, out);
    case STORAGE_CTE_IDENTITY:
    case STORAGE_CTE_UNKNOWN:
        break;
    }
    memcpy(out, in, len);
    return len;
}

size_t storage_decode_end(struct storage_decoder *d, char *out)
{
    size_t o = 0;

    if (d->cte != STORAGE_CTE_QP)
        return 0;
    switch (d->state) {
    case Q_NORMAL:
        break; /* white space at the end of the last line goes */
    case Q_CR:
        out[o++] = '\r';
        break;
    case Q_HEX1:
        /* "=X" at the very end: no escape */
        out[o++] = '=';
        out[o++] = d->pend[1];
        break;
    default:
        break; /* a '=' at the end: a soft line break */
    }
    d->npend = 0;
    d->state = Q_NORMAL;
    return o;
}
