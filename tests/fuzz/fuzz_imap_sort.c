/* libFuzzer target: what SORT and THREAD parse, fed arbitrary bytes (the
 * first byte picks): the arguments of SORT (with the RETURN options of
 * ESORT) and of THREAD, the base subject
 * of RFC 5256 2.1, and the sort keys read back from an ENVELOPE string. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/imap/imap_private.h"
#include "storage/mime.h"
#include "tests/fuzz/fake_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_key(const char *k)
{
    if (!k)
        return;
    for (; *k; k++)
        if (*k >= 'a' && *k <= 'z')
            abort(); /* keys are casemapped */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct imap_arena ar = {0};
    struct imap_args a;
    const char *err;

    if (size < 1) {
        /* never taken; keeps the stand-in connection layer first in the link */
        fake_conn_new(false, false);
        return 0;
    }
    uint8_t which = data[0];
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    imap_args_init(&a, p, n, 64);
    switch (which % 4) {
    case 0:
    case 1: {
        struct imap_sort_spec sp;
        if (imap_sort_parse(&a, &ar, which % 4 == 1, &sp, &err) == IMAP_ARG_OK) {
            if (!sp.q || sp.n > IMAP_SORT_MAX_KEYS || (which % 4 == 0 && sp.n == 0))
                abort();
            /* RETURN (ESORT) only for SORT, an option named only with it */
            if ((sp.opts && !(sp.opts & IMAP_SR_RETURN)) || (which % 4 == 1 && sp.opts))
                abort();
        }
        break;
    }
    case 2: {
        int refwd, again_refwd;
        if (memchr(p, '\0', n))
            break; /* decoded subjects have none; a NUL would cut the key */
        char *b = mime_base_subject(p, n, &refwd);
        if (!b)
            break;
        size_t bl = strlen(b);
        if (bl > n)
            abort();
        check_key(b);
        /* a base subject is its own base subject */
        char *b2 = mime_base_subject(b, bl, &again_refwd);
        if (b2 && strcmp(b, b2) != 0)
            abort();
        free(b2);
        free(b);
        break;
    }
    case 3: {
        /* an ENVELOPE string and a subject, split at the first NUL */
        char *env = malloc(n + 1);
        struct mime_sort_keys k;
        if (!env)
            break;
        memcpy(env, p, n);
        env[n] = '\0';
        size_t el = strlen(env);
        const char *subj = el < n ? env + el + 1 : NULL;
        if (mime_sort_keys(env, subj, &k) == 0) {
            check_key(k.subject);
            for (int i = 0; i < 3; i++) {
                check_key(k.addr[i]);
                check_key(k.display[i]);
            }
            mime_sort_keys_free(&k);
        }
        free(env);
        break;
    }
    }
    imap_arena_free(&ar);
    return 0;
}
