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

/* Keys are in their i;unicode-casemap form: valid UTF-8 (an invalid byte
 * became U+FFFD), and no small ASCII letter unless a character decomposed
 * to one (a ligature such as U+FB01, an ordinal indicator), so never from
 * ASCII input. */
static void check_key(const char *k, bool ascii_in)
{
    if (!k)
        return;
    for (size_t i = 0, n = strlen(k); i < n;) {
        uint32_t cp;
        size_t l = mime_utf8_char((const unsigned char *)k + i, n - i, &cp);
        if (l == 0 || (ascii_in && cp >= 'a' && cp <= 'z'))
            abort();
        i += l;
    }
}

static bool is_ascii(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return false;
    return true;
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
        /* a character grows at most elevenfold (U+FDFA: 3 bytes to 33), an
         * invalid byte threefold (U+FFFD) */
        if (bl > 11 * n)
            abort();
        check_key(b, is_ascii(p, n));
        /* a base subject is its own base subject; ASCII only, where a
         * casemapped form maps to itself (U+FB01 maps to "fi", and "fi" to
         * "FI") */
        if (is_ascii(p, n)) {
            char *b2 = mime_base_subject(b, bl, &again_refwd);
            if (b2 && strcmp(b, b2) != 0)
                abort();
            free(b2);
        }
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
            /* an encoded word decodes beyond ASCII */
            bool ascii = is_ascii(env, n) && !memmem(env, n, "=?", 2);
            check_key(k.subject, ascii);
            for (int i = 0; i < 3; i++) {
                check_key(k.addr[i], ascii);
                check_key(k.display[i], ascii);
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
