/* libFuzzer target for the RFC 2047 encoded-word decoder alone
 * (mime_decode_2047 and mime_decode_header_value). Besides crashes, leaks
 * and hangs, these are findings (abort):
 *  - output that is not well-formed UTF-8 (the decoder replaces what it
 *    cannot convert with U+FFFD);
 *  - output longer than 16 bytes per input byte (plus 16): decoding is
 *    linear, whatever the charset (a byte of the widest legacy charsets
 *    becomes at most three characters, each at most four bytes);
 *  - valid UTF-8 without CR, LF or "=?" that does not come out unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/mime.h"
#include "storage/mime_private.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_decoded(const char *in, size_t inlen, const char *out, size_t outlen)
{
    if (!fuzz_valid_utf8(out, outlen) || outlen > 16 * inlen + 16)
        abort();
    if (fuzz_valid_utf8(in, inlen) && memchr(in, '\r', inlen) == NULL &&
        memchr(in, '\n', inlen) == NULL && memmem(in, inlen, "=?", 2) == NULL &&
        (outlen != inlen || memcmp(in, out, inlen) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *v = (const char *)data;
    struct buf b = {0};
    char *s;

    mime_decode_2047(&b, v, size);
    if (!b.oom)
        check_decoded(v, size, b.p ? b.p : "", b.len);
    buf_free(&b);
    /* the header value path: unfolded and trimmed first */
    s = mime_decode_header_value(v, size);
    if (s != NULL) {
        if (!fuzz_valid_utf8(s, strlen(s)) || strlen(s) > 16 * size + 16)
            abort();
        free(s);
    }
    return 0;
}
