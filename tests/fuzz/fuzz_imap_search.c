/* libFuzzer target: the IMAP argument parsers that need no session, fed
 * arbitrary bytes: SEARCH keys (the first byte picks the parser: search
 * keys, FETCH attributes, a sequence set, a mailbox name in modified
 * UTF-7 and back, flags, dates, SEARCH's RETURN options and the keys
 * after them). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/imap/imap_private.h"
#include "tests/fuzz/fake_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct imap_arena ar = {0};
    struct imap_args a;
    const char *err;

    if (size < 1) {
        /* never taken; keeps the stand-in connection layer (which the
         * parsers' neighbours in the library refer to) first in the link */
        fake_conn_new(false, false);
        return 0;
    }
    uint8_t which = data[0];
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    imap_args_init(&a, p, n, 64);
    switch (which % 7) {
    case 0: {
        struct storage_search *q;
        if (imap_search_parse(&a, &ar, &q, &err) == 0 && !q)
            abort();
        break;
    }
    case 1: {
        struct imap_fetch_spec sp;
        if (imap_fetch_parse(&a, &ar, &sp, &err) == 0) {
            for (struct imap_fetch_item *it = sp.items; it; it = it->next)
                if ((it->type == FI_SECTION || it->type == FI_BINARY ||
                     it->type == FI_BINARY_SIZE) &&
                    (!it->label || strlen(it->part) >= sizeof(it->part) ||
                     (it->type != FI_SECTION &&
                      (it->kind != SEC_WHOLE || (it->type == FI_BINARY_SIZE && it->partial)))))
                    abort();
        }
        break;
    }
    case 2: {
        struct imap_seqset set;
        if (imap_parse_seqset(p, n, &ar, &set) == 0) {
            /* "$" alone is the saved result, with no ranges */
            if (set.saved != (n == 1 && *p == '$') || (set.saved && set.n))
                abort();
            for (size_t i = 0; i < set.n; i++)
                if ((set.r[i].lo == IMAP_STAR && set.r[i].hi != IMAP_STAR) ||
                    (set.r[i].hi != IMAP_STAR && set.r[i].lo > set.r[i].hi))
                    abort();
        }
        break;
    }
    case 3: {
        char utf8[512], back[1024], again[512];
        if (mutf7_decode(p, n, utf8, sizeof(utf8)) == 0) {
            /* what decodes must encode back to the same (canonical) bytes
             * and decode again to the same text */
            if (imap_mutf7_encode(utf8, strlen(utf8), back, sizeof(back)) != 0)
                abort();
            if (mutf7_decode(back, strlen(back), again, sizeof(again)) != 0 ||
                strcmp(again, utf8))
                abort();
        }
        break;
    }
    case 4: {
        struct imap_flags f;
        imap_args_flags(&a, &ar, which & 8, &f);
        break;
    }
    case 5: {
        int64_t t;
        imap_args_datetime(&a, &t);
        imap_parse_date(p, n, &t);
        break;
    }
    case 6: {
        unsigned opts;
        struct imap_partial part;
        struct storage_search *q;
        if (imap_search_return(&a, &opts, &part) != 0)
            break;
        /* a PARTIAL range is ordered, of nz-numbers, never with ALL */
        if ((opts & IMAP_SR_PARTIAL) && (!part.lo || part.lo > part.hi || (opts & IMAP_SR_ALL)))
            abort();
        /* an option named is an ESEARCH answer; nothing outside the bits */
        if ((opts && !(opts & IMAP_SR_RETURN)) ||
            (opts &
             ~(unsigned)(IMAP_SR_MIN | IMAP_SR_MAX | IMAP_SR_ALL | IMAP_SR_COUNT | IMAP_SR_SAVE |
                         IMAP_SR_RETURN | IMAP_SR_PARTIAL | IMAP_SR_UPDATE | IMAP_SR_CONTEXT)))
            abort();
        if (imap_search_parse(&a, &ar, &q, &err) == 0 && !q)
            abort();
        break;
    }
    }
    imap_arena_free(&ar);
    return 0;
}
