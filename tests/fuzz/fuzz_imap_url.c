/* libFuzzer target: the IMAP URLs CATENATE takes (RFC 5092, URL-PARTIAL of
 * RFC 5550), parsed without a session. What is accepted names a message
 * (UID not 0) in a mailbox with a name, a section FETCH would take, and
 * parses the same from the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/imap/imap_private.h"
#include "tests/fuzz/fake_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct imap_url u, again;

    if (size < 1) {
        /* never taken; keeps the stand-in connection layer first in the link */
        fake_conn_new(false, false);
        return 0;
    }
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    /* the first byte: whether the session has a user at all */
    const char *user = data[0] & 1 ? "alice@example.org" : NULL;
    if (imap_url_parse(p, n, user, "fuzz.example", &u) != NULL)
        return 0;
    if (u.uid == 0 || !u.mbox[0] || strlen(u.mbox) >= sizeof(u.mbox) ||
        strlen(u.section) >= sizeof(u.section))
        abort();
    if (u.partial && u.partial_len == 0)
        abort();
    for (const char *q = u.section; *q; q++)
        if (*q >= 'a' && *q <= 'z')
            abort(); /* upper-cased */
    if (!u.fields && (strchr(u.section, '/') || strchr(u.section, ';')))
        abort(); /* nothing of the URL's syntax outside a field list */
    if (u.fields &&
        (u.nnames == 0 || u.nnames > IMAP_URL_MAX_NAMES || u.part_len >= strlen(u.section)))
        abort();
    if (imap_url_parse(p, n, user, "fuzz.example", &again) != NULL ||
        memcmp(&u, &again, sizeof(u)) != 0)
        abort();
    return 0;
}
