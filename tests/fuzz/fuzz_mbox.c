/* libFuzzer target for the mbox reader (server/mbox.c) that coffrectl
 * import --from-mbox runs over files from elsewhere: format detection,
 * the split in each format, each message unquoted with its status
 * headers read, and From_ line dates. Checked: no crash, every message
 * lies inside the input, in order and without overlap, and what
 * mbox_message makes of one is never longer than it. The time the split
 * takes is bounded by libFuzzer's -timeout: the walk is linear. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/mbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ctx {
    const char *base, *end, *last;
    enum mbox_format fmt;
};

static int on_msg(void *arg, const struct mbox_msg *m)
{
    struct ctx *c = arg;
    struct mbox_meta meta;
    char *out;
    size_t n;

    if (m->p < c->base || m->p + m->len > c->end || m->p < c->last)
        abort();
    if (m->from < c->base || m->from + m->from_len > m->p)
        abort();
    c->last = m->p + m->len;
    (void)mbox_from_date(m->from, m->from_len);
    if (mbox_message(m, c->fmt, &out, &n, &meta) != 0)
        return 1;
    if (n > m->len || meta.nkeywords > MBOX_KEYWORDS_MAX)
        abort();
    for (size_t k = 0; k < meta.nkeywords; k++)
        if (!meta.keywords[k][0] || strlen(meta.keywords[k]) > MBOX_KEYWORD_LEN)
            abort();
    free(out);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly size bytes: a read past the end is found */
    char *p = malloc(size ? size : 1);
    static const enum mbox_format fmts[] = {MBOX_RD, MBOX_O, MBOX_CL2};

    if (!p)
        return 0;
    memcpy(p, data, size);
    (void)mbox_detect(p, size);
    for (size_t i = 0; i < 3; i++) {
        struct ctx c = {p, p + size, p, fmts[i]};
        mbox_split(p, size, fmts[i], on_msg, &c);
    }
    (void)mbox_from_date(p, size);
    free(p);
    return 0;
}
