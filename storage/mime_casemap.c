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

void mime_casemap(struct buf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char ch[MIME_CASEMAP_MAX];
    size_t start = 0, cl;

    for (size_t i = 0; i < len;) {
        /* runs of ASCII other than lower case letters are copied whole */
        if (p[i] < 0x80 && !(p[i] >= 'a' && p[i] <= 'z')) {
            i++;
            continue;
        }
        buf_add(b, s + start, i - start);
        i += mime_casemap_char(p + i, len - i, ch, &cl);
        buf_add(b, ch, cl);
        start = i;
    }
    buf_add(b, s + start, len - start);
}

char *mime_casemap_dup(const char *s, size_t len)
{
    struct buf b = {0};

    mime_casemap(&b, s, len);
    return buf_take(&b);
}
