/* libFuzzer target for coffrectl's IMAP client response reader
 * (server/imapc_parse.c): what a source server that is not trusted sends
 * to `coffrectl import --from-imap`. The input is fed in chunks whose sizes
 * come from its first byte, with small limits so that every cap is
 * reached; half of the runs stream big literals to a sink. Checked: no
 * crash, every token lies inside the arena, nesting and counts stay under
 * their caps, a streamed literal delivers exactly its announced size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "server/imapc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct src {
    const uint8_t *p;
    size_t left, chunk;
};

static ssize_t src_read(void *arg, char *buf, size_t cap)
{
    struct src *s = arg;
    size_t n = s->left < s->chunk ? s->left : s->chunk;

    if (n > cap)
        n = cap;
    memcpy(buf, s->p, n);
    s->p += n;
    s->left -= n;
    return (ssize_t)n;
}

struct sink {
    uint64_t want, got;
    bool open;
};

static int on_sink(void *arg, size_t tok, const char *p, uint64_t n)
{
    struct sink *k = arg;

    (void)tok;
    if (!p) {
        if (k->open && k->got != k->want)
            abort(); /* the previous literal was cut short */
        k->want = n;
        k->got = 0;
        k->open = true;
        return 0;
    }
    k->got += n;
    if (k->got > k->want)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct imapc_reader r;
    struct src s;
    struct sink k = {0};

    if (size < 1)
        return 0;
    s.chunk = (size_t)(data[0] & 0x3f) + 1;
    s.p = data + 1;
    s.left = size - 1;
    if (imapc_reader_init(&r, 512, 64, 8) < 0)
        return 0;
    r.read = src_read;
    r.rarg = &s;
    if (data[0] & 0x40) {
        r.sink = on_sink;
        r.sarg = &k;
    }
    for (int n = 0; n < 1000 && imapc_read_response(&r) == 0; n++) {
        if (r.ntoks == 0 || r.ntoks > r.toks_max || r.alen > r.arena_max)
            abort();
        if (k.open && k.got != k.want)
            abort();
        for (size_t i = 0; i < r.ntoks; i++) {
            const struct imapc_tok *t = &r.toks[i];
            if (t->depth > r.depth_max)
                abort();
            if (t->type == IMAPC_STREAMED)
                continue;
            if (t->off > r.alen || t->len > r.alen - t->off)
                abort();
            if ((t->type == IMAPC_ATOM || t->type == IMAPC_STRING || t->type == IMAPC_TEXT) &&
                r.arena[t->off + t->len] != '\0')
                abort();
            (void)imapc_tok_skip(&r, i);
        }
        k.open = false;
    }
    imapc_reader_free(&r);
    return 0;
}
