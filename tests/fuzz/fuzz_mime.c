/* libFuzzer target for the MIME parser: mime_parse, mime_find_section and
 * mime_find_binary on a few sections, mime_header_fields and
 * mime_decode_header_value on the input, the listing block of the input
 * (which must answer HEADER.FIELDS of listed names as the input does, and
 * be that answer when it holds no other field),
 * and the streaming transfer decoders, which must give the same bytes
 * whatever the slicing. Crashes, leaks, hangs, malformed IMAP output and
 * differing decodings or header fields are findings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/base/buf.h"
#include "storage/mime.h"
#include "storage/storage.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decodes msg with cte in slices of step bytes into out (room for size +
 * STORAGE_DECODE_SLACK * (size / step + 2)). */
static size_t decode_sliced(enum storage_cte cte, const char *msg, size_t size, size_t step,
                            char *out)
{
    struct storage_decoder d;
    size_t o = 0;

    storage_decoder_init(&d, cte);
    for (size_t i = 0; i < size; i += step)
        o += storage_decode(&d, msg + i, size - i < step ? size - i : step, out + o);
    return o + storage_decode_end(&d, out + o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const sections[] = {"",         "HEADER",   "TEXT",      "1",
                                           "2",        "1.1",      "1.2.3",     "1.MIME",
                                           "2.HEADER", "1.1.TEXT", "3.2.1.MIME"};
    static const char *const names[] = {"subject", "FROM", "content-type"};
    const char *msg = (const char *)data;
    struct mime_summary s;
    size_t i, off, len;
    char *out;
    size_t outlen;

    if (mime_parse(msg, size, &s) == 0) {
        if (!fuzz_balanced(s.envelope, strlen(s.envelope)) ||
            !fuzz_balanced(s.bodystructure, strlen(s.bodystructure)) ||
            !fuzz_balanced(s.body, strlen(s.body)))
            abort();
        mime_summary_free(&s);
    }
    for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
        if (mime_find_section(msg, size, sections[i], &off, &len) == 0 &&
            (off > size || len > size - off))
            abort();
    if (mime_header_fields(msg, size, names, 3, (int)(size & 1), &out, &outlen) == 0)
        free(out);
    {
        static const char *const listed[] = {"subject", "From", "REFERENCES"};
        struct buf l = {0}, whole = {0}, part = {0};
        unsigned mask = 0, fields = storage_listing_block(msg, size, &l);
        storage_header_fields(msg, size, listed, 3, false, &whole);
        storage_header_fields(l.p ? l.p : "", l.len, listed, 3, false, &part);
        if (!l.oom && !whole.oom && !part.oom &&
            (whole.len != part.len || (whole.len && memcmp(whole.p, part.p, whole.len))))
            abort();
        /* the block as it is, when its fields are all asked for */
        if (!storage_listing_fields(listed, 3, &mask) ||
            (!l.oom && !whole.oom && fields && !(fields & ~mask) &&
             (whole.len != l.len || memcmp(whole.p, l.p, l.len))))
            abort();
        buf_free(&l);
        buf_free(&whole);
        buf_free(&part);
    }
    out = mime_decode_header_value(msg, size);
    free(out);
    for (i = 0; i < 4; i++) {
        int cte;
        if (mime_find_binary(msg, size, sections[i], &off, &len, &cte) == 0 &&
            (off > size || len > size - off || cte < 0 || cte > STORAGE_CTE_UNKNOWN))
            abort();
    }
    /* whole versus one byte at a time versus the input's first byte + 1 */
    char *a = malloc(size + 2 * STORAGE_DECODE_SLACK);
    char *b = malloc(size + STORAGE_DECODE_SLACK * (size + 2));
    if (a && b) {
        for (int cte = STORAGE_CTE_BASE64; cte <= STORAGE_CTE_QP; cte++) {
            size_t na = decode_sliced((enum storage_cte)cte, msg, size, size ? size : 1, a);
            size_t step = size ? (size_t)data[0] % 64 + 1 : 1;
            size_t nb = decode_sliced((enum storage_cte)cte, msg, size, step, b);
            if (na != nb || memcmp(a, b, na) != 0 || na > size + STORAGE_DECODE_SLACK)
                abort();
            nb = decode_sliced((enum storage_cte)cte, msg, size, 1, b);
            if (na != nb || memcmp(a, b, na) != 0)
                abort();
        }
    }
    free(a);
    free(b);
    return 0;
}
