/* libFuzzer target for the RFC 2231 parameter decoder alone
 * (mime_param_list: the parameters after "type/subtype", continuations
 * "name*0=...; name*1=..." joined). Besides crashes, leaks and hangs, these
 * are findings (abort):
 *  - an answer that is not NIL or a balanced IMAP list;
 *  - more than 100 parameters;
 *  - kept names and values over twice the input (plus one byte per
 *    parameter) or an answer over 16 bytes per input byte: both linear
 *    (copying the value built so far at each continuation was quadratic);
 *  - a value split into two continuations, taken from the input and placed
 *    before it, that does not come out joined, as the first parameter. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/mime.h"
#include "storage/mime_private.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int token_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

/* "; zq*0=A; zq*1=B;" + input, A and B the token characters of the
 * input's halves: the answer starts with ("zq" "AB") unless the input
 * continues zq itself. */
static void check_join(const char *v, size_t len)
{
    struct buf in = {0}, out = {0}, want = {0};
    size_t i, half = len / 2, n, st;
    int part;

    for (i = 0; i + 2 < len; i++)
        if ((v[i] | 0x20) == 'z' && (v[i + 1] | 0x20) == 'q' && v[i + 2] == '*')
            return;

    buf_str(&in, "; zq*0=");
    for (part = 0; part < 2; part++) {
        if (part == 1)
            buf_str(&in, "; zq*1=");
        for (i = part ? half : 0; i < (part ? len : half); i++)
            if (token_char((unsigned char)v[i]))
                buf_addc(&want, v[i]), buf_addc(&in, v[i]);
    }
    if (want.len == 0)
        goto out;
    buf_addc(&in, ';');
    buf_add(&in, v, len);
    n = mime_param_list(&out, in.p, in.len, &st);
    if (in.oom || want.oom || out.oom)
        goto out;
    buf_reset(&in);
    buf_str(&in, "(\"zq\" ");
    buf_imap_string(&in, want.p, want.len);
    if (n == 0 || in.oom || out.len < in.len || memcmp(out.p, in.p, in.len) != 0)
        abort();
out:
    buf_free(&in);
    buf_free(&out);
    buf_free(&want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *v = (const char *)data;
    struct buf b = {0};
    size_t n, st;

    n = mime_param_list(&b, v, size, &st);
    if (!b.oom) {
        if (n > 100 || st > 2 * size + n || b.len > 16 * size + 16)
            abort();
        if (n == 0 ? b.len != 3 || memcmp(b.p, "NIL", 3) != 0
                   : b.len < 2 || b.p[0] != '(' || !fuzz_balanced(b.p, b.len))
            abort();
    }
    buf_free(&b);
    check_join(v, size);
    return 0;
}
