/* libFuzzer target: strict base64 both ways, SASL PLAIN parsing, and the
 * PLAIN/LOGIN exchanges step by step. */
#include <stdint.h>
#include <string.h>

#include "auth/auth.h"
#include "protocol/sasl.h"
#include "server/base/base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char out[4096];
    char enc[8192];
    struct auth_sasl_plain p;
    struct proto_sasl s;
    const char *ch;

    long n = base64_decode_strict((const char *)data, size, out, sizeof(out));
    if (n >= 0) {
        /* what decodes must encode back to the same text */
        long e = base64_encode(out, (size_t)n, enc, sizeof(enc));
        if (e < 0 || (size_t)e != size || memcmp(enc, data, size))
            __builtin_trap();
        auth_sasl_plain_parse(out, (size_t)n, &p);
    }
    if (size > 0) {
        proto_sasl_start(&s, (data[0] & 1) ? "LOGIN" : "PLAIN", 5);
        /* split the input into response lines at '\n' */
        const char *q = (const char *)data + 1, *end = (const char *)data + size;
        while (q <= end) {
            const char *nl = memchr(q, '\n', (size_t)(end - q));
            size_t len = nl ? (size_t)(nl - q) : (size_t)(end - q);
            int r = proto_sasl_step(&s, q, len, &ch);
            if (r != SASL_CONTINUE)
                break;
            if (!nl)
                break;
            q = nl + 1;
        }
        proto_sasl_clear(&s);
    }
    return 0;
}
