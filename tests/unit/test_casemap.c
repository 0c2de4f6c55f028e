/* mime_casemap against its definition: the concatenation of
 * mime_casemap_char's forms, character by character, appended one at a
 * time (the way it was written before ASCII went in runs). The two must
 * give byte-identical output over ASCII around every 8-byte alignment,
 * mixed UTF-8, invalid and cut sequences, characters whose form is longer
 * than they are, onto an empty buffer and onto one already holding text;
 * then over random inputs (a fixed seed, printed with the first input that
 * differs). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/base/buf.h"
#include "storage/mime.h"
#include "tests/unit/check.h"

/* One buf_add per character's form. */
static void casemap_slow(struct buf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char ch[MIME_CASEMAP_MAX];
    size_t cl;

    buf_add(b, "", 0);
    for (size_t i = 0; i < len;) {
        i += mime_casemap_char(p + i, len - i, ch, &cl);
        buf_add(b, ch, cl);
    }
}

/* 1 when both give the same bytes for s, onto an empty buffer and after
 * prefix (pre bytes). */
static int same(const char *s, size_t len, const char *prefix, size_t pre)
{
    struct buf fast = {0}, slow = {0};
    int ok;

    buf_add(&fast, prefix, pre);
    buf_add(&slow, prefix, pre);
    mime_casemap(&fast, s, len);
    casemap_slow(&slow, s, len);
    ok = !fast.oom && !slow.oom && fast.len == slow.len && fast.p && slow.p &&
         memcmp(fast.p, slow.p, fast.len) == 0 && fast.p[fast.len] == '\0';
    buf_free(&fast);
    buf_free(&slow);
    return ok;
}

static int same_both(const char *s, size_t len)
{
    return same(s, len, "", 0) && same(s, len, "prefix \xc3\xa9 ", 10);
}

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

/* pieces random inputs are made of */
static const char *const pieces[] = {"a",
                                     "z",
                                     "A",
                                     "Z",
                                     "@",
                                     "[",
                                     "`",
                                     "{",
                                     "~",
                                     "\x7f",
                                     "\n",
                                     " ",
                                     "0",
                                     "hello world ",
                                     "The Quick Brown fox",
                                     "\xc3\xa9",
                                     "\xc3\x89",
                                     "\xc7\x86",
                                     "\xe1\xba\x9b",
                                     "\xef\xac\x81",
                                     "\xc3\x9f",
                                     "\xce\xb1\xcf\x82",
                                     "\xea\xb0\x80",
                                     "\xe2\x84\xaa",
                                     "\xef\xb7\xba",
                                     "\xf0\x9f\x98\x80",
                                     "\xd0\xbf\xd1\x80\xd0\xb8",
                                     "\xe6\x97\xa5\xe6\x9c\xac",
                                     "\xff",
                                     "\xc3",
                                     "\xe2\x84",
                                     "\xf0\x9f\x98",
                                     "\x80",
                                     "\xc0\xaf",
                                     "\xed\xa0\x80",
                                     "\xf4\x90\x80\x80",
                                     "\xe0\x80\x80"};

int main(void)
{
    char s[512];
    int bad = 0;

    /* every byte value at every offset of a 24-byte ASCII run, so that
     * it falls inside, before and after 8-byte words */
    for (int c = 0; c < 256; c++)
        for (size_t at = 0; at < 24; at++) {
            memcpy(s, "abcdefghijklmnopqrstuvwxyzABCDEFGH", 24);
            s[at] = (char)c;
            for (size_t len = at + 1; len <= 24; len += 7)
                if (!same_both(s, len))
                    bad++;
        }
    CHECK_NAMED(bad == 0, "every byte at every offset of ASCII runs");

    /* all 128 ASCII bytes in every alignment */
    bad = 0;
    for (int c = 0; c < 128; c++)
        s[c] = (char)c;
    for (size_t off = 0; off < 16; off++)
        if (!same_both(s + off, 128 - off))
            bad++;
    CHECK_NAMED(bad == 0, "all of ASCII, every alignment");

    /* mixed text, cut at every length (sequences cut at the end) */
    {
        const char *mixed = "Caf\xc3\xa9 au lait, \xef\xac\x81"
                            "le \xce\xb1\xcf\x82 and na\xc3\xafve CAFE\xcc\x81 \xff\xfe "
                            "\xea\xb0\x80\xe2\x84\xaa \xf0\x9f\x98\x80 long ascii tail here";
        bad = 0;
        for (size_t len = 0; len <= strlen(mixed); len++)
            if (!same_both(mixed, len))
                bad++;
        CHECK_NAMED(bad == 0, "mixed ASCII, UTF-8 and invalid bytes, every cut");
    }

    /* forms longer than the input: U+FDFA (3 bytes, 33 out) many times,
     * ASCII between, so room is made again and again */
    {
        size_t n = 0;
        for (int i = 0; i < 100; i++) {
            memcpy(s + n, i % 3 ? "\xef\xb7\xba" : "ab", i % 3 ? 3 : 2);
            n += i % 3 ? 3 : 2;
        }
        CHECK_NAMED(same_both(s, n), "forms much longer than the input");
    }

    /* a zero-length input still leaves a terminated buffer */
    CHECK_NAMED(same_both("", 0), "empty input");

    /* random inputs: pieces, or raw random bytes */
    bad = 0;
    for (int iter = 0; iter < 200000 && !bad; iter++) {
        size_t n = 0, want = rnd() % 200;
        if (iter % 4 == 0) {
            for (; n < want; n++)
                s[n] = (char)(rnd() % 8 == 0 ? rnd() : 0x20 + rnd() % 0x60);
        } else {
            while (n < want) {
                const char *p = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
                size_t l = strlen(p);
                if (n + l > sizeof(s))
                    break;
                memcpy(s + n, p, l);
                n += l;
            }
        }
        if (!same_both(s, n)) {
            bad++;
            fprintf(stderr, "differs at iteration %d:", iter);
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, " %02x", (unsigned char)s[i]);
            fprintf(stderr, "\n");
        }
    }
    CHECK_NAMED(bad == 0, "200,000 random inputs");
    return check_summary();
}
