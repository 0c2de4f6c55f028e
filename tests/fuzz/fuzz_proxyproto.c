/* libFuzzer target: the PROXY protocol reader (server/base/proxyproto.c).
 * The first byte chooses where the input is cut; the reader must give the
 * same answer whatever the pieces, never take more than the header, give
 * back every byte that is not one, and sniff a signature exactly when a
 * parse got past it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/base/proxyproto.h"

static struct proxyproto whole, cut, sniff;

static enum proxyproto_state feed(struct proxyproto *p, const uint8_t *d, size_t n, size_t step,
                                  size_t *taken, size_t *rest_at)
{
    size_t off = 0, used;
    enum proxyproto_state st = PROXYPROTO_MORE;

    *taken = 0;
    while (off < n) {
        size_t k = n - off < step ? n - off : step;
        st = proxyproto_feed(p, d + off, k, &used);
        if (used > k)
            abort();
        *taken += used;
        if (st != PROXYPROTO_MORE) {
            *rest_at = off + used;
            return st;
        }
        off += k;
    }
    *rest_at = n;
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t step, t1, t2, r1, r2, r3;
    enum proxyproto_state a, b, s;

    if (size < 1)
        return 0;
    step = (size_t)data[0] % 17 + 1;
    data++;
    size--;

    proxyproto_init(&whole, true);
    proxyproto_init(&cut, true);
    proxyproto_init(&sniff, false);
    a = feed(&whole, data, size, size ? size : 1, &t1, &r1);
    b = feed(&cut, data, size, step, &t2, &r3);
    if (b != PROXYPROTO_MORE) {
        /* decided once: later bytes are not taken */
        size_t used;
        if (proxyproto_feed(&cut, data, size, &used) != b || used)
            abort();
    }
    s = feed(&sniff, data, size, step, &r1, &r2);

    if (a != b || t1 != t2)
        abort();
    if (a == PROXYPROTO_HEADER || s == PROXYPROTO_DONE || s == PROXYPROTO_BAD)
        abort();
    /* a signature seen by the parse is seen by the sniff, and only then */
    if ((a == PROXYPROTO_DONE || a == PROXYPROTO_BAD || (a == PROXYPROTO_MORE && whole.version)) !=
        (s == PROXYPROTO_HEADER))
        abort();
    switch (a) {
    case PROXYPROTO_NONE:
        /* held bytes + the rest are the input, unchanged */
        if (whole.len > size || memcmp(whole.buf, data, whole.len) || cut.len != whole.len)
            abort();
        if (whole.len > 11)
            abort();
        break;
    case PROXYPROTO_DONE:
        if (t1 != whole.len || memcmp(whole.buf, data, t1))
            abort();
        if (whole.hdr.version == 1 && t1 > PROXYPROTO_V1_MAX)
            abort();
        if (!whole.hdr.local && whole.hdr.src.ss_family != AF_INET &&
            whole.hdr.src.ss_family != AF_INET6)
            abort();
        if (memcmp(&whole.hdr, &cut.hdr, sizeof(whole.hdr)))
            abort();
        break;
    case PROXYPROTO_BAD:
        if (!whole.why)
            abort();
        break;
    default:
        if (t1 != size)
            abort();
        break;
    }
    return 0;
}
