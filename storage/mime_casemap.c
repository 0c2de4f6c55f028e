/* The i;unicode-casemap comparator (RFC 5051), which SEARCH and SORT use
 * (I18NLEVEL=1, RFC 5255): each character is replaced by its simple
 * titlecase mapping, then by its full decomposition (canonical and
 * compatibility mappings of UnicodeData.txt, applied until none is left);
 * two strings are then compared as octets. "café", "CAFÉ" and "Café" are
 * equal, "cafe" is a substring of each, and "ﬁle" sorts as "FILE".
 *
 * The Unicode tables are libunistring's (uc_totitle, uc_decomposition).
 * Hangul syllables are left whole: UnicodeData.txt lists no decomposition
 * for them (theirs is algorithmic), and RFC 5051 maps only what it lists.
 * Bytes that are not valid UTF-8 become U+FFFD. ASCII needs no table: its
 * form is its upper case, so an ASCII string keeps the order and the
 * matches of i;ascii-casemap. */
#include <stdint.h>
#include <string.h>
#include <unicase.h>
#include <uninorm.h>

#include "server/base/buf.h"
#include "storage/mime.h"

size_t mime_utf8_put(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

static bool is_hangul_syllable(uint32_t cp)
{
    return cp >= 0xac00 && cp <= 0xd7a3;
}

/* The full decomposition of cp appended to out[*n..max) as UTF-8. Unicode's
 * longest full decomposition is 18 characters, well inside max; a deeper
 * one would be cut, not overrun. */
static void decompose(uint32_t cp, unsigned char *out, size_t *n, size_t max, int depth)
{
    ucs4_t d[UC_DECOMPOSITION_MAX_LENGTH];
    int tag, len = -1;

    if (cp >= 0x80 && !is_hangul_syllable(cp) && depth < 8)
        len = uc_decomposition((ucs4_t)cp, &tag, d);
    if (len <= 0) {
        if (*n + 4 <= max)
            *n += mime_utf8_put(cp, out + *n);
        return;
    }
    for (int i = 0; i < len; i++)
        decompose((uint32_t)d[i], out, n, max, depth + 1);
}

size_t mime_casemap_char(const unsigned char *p, size_t len, unsigned char *out, size_t *outlen)
{
    uint32_t cp;
    size_t n;

    if (p[0] < 0x80) {
        out[0] = p[0] >= 'a' && p[0] <= 'z' ? (unsigned char)(p[0] - 32) : p[0];
        *outlen = 1;
        return 1;
    }
    if ((n = mime_utf8_char(p, len, &cp)) == 0) {
        memcpy(out, "\xef\xbf\xbd", 3);
        *outlen = 3;
        return 1;
    }
    *outlen = 0;
    decompose((uint32_t)uc_totitle((ucs4_t)cp), out, outlen, MIME_CASEMAP_MAX, 0);
    return n;
}

/* Eight ASCII bytes (none with its high bit set) in their form: the
 * lower case letters, and only they, lose 0x20. Adding 0x80 - 'a' sets a
 * byte's high bit from 'a' up, adding 0x80 - 'z' - 1 from past 'z'; no
 * byte below 0x80 carries into the next. */
static uint64_t upper8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t from_a = w + ones * (0x80 - 'a'), past_z = w + ones * (0x80 - 'z' - 1);

    return w ^ ((from_a & ~past_z & high) >> 2);
}

/* ASCII, most of what is mapped, is written straight into b (eight bytes
 * at a time where it can), with room made once for the whole of s; other
 * characters go through mime_casemap_char, room being made again for
 * their form and the rest of s. The output is the concatenation of
 * mime_casemap_char's over s, as the unit test checks. */
void mime_casemap(struct buf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char ch[MIME_CASEMAP_MAX];
    char *o;
    size_t i = 0, cl;

    if (!buf_reserve(b, len))
        return;
    o = b->p + b->len;
    while (i < len) {
        uint64_t w;
        if (len - i >= 8) {
            memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ull) == 0) {
                w = upper8(w);
                memcpy(o, &w, 8);
                o += 8;
                i += 8;
                continue;
            }
        }
        if (p[i] < 0x80) {
            *o++ = (char)(p[i] >= 'a' && p[i] <= 'z' ? p[i] - 32 : p[i]);
            i++;
            continue;
        }
        i += mime_casemap_char(p + i, len - i, ch, &cl);
        b->len = (size_t)(o - b->p);
        if (!buf_reserve(b, cl + (len - i)))
            return;
        o = b->p + b->len;
        memcpy(o, ch, cl);
        o += cl;
    }
    b->len = (size_t)(o - b->p);
    b->p[b->len] = '\0';
}

char *mime_casemap_dup(const char *s, size_t len)
{
    struct buf b = {0};

    mime_casemap(&b, s, len);
    return buf_take(&b);
}
