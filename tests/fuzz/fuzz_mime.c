/* libFuzzer target for the MIME parser: mime_parse, mime_find_section on a
 * few sections, mime_header_fields and mime_decode_header_value on the
 * input. Crashes, leaks, hangs and malformed IMAP output are findings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/mime.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const sections[] = {"",         "HEADER",   "TEXT",      "1",
                                           "2",        "1.1",      "1.2.3",     "1.MIME",
                                           "2.HEADER", "1.1.TEXT", "3.2.1.MIME"};
    static const char *const names[] = {"subject", "FROM", "content-type"};
    const char *msg = (const char *)data;
    struct mime_summary s;
    size_t i, off, len;
    char *out;
    size_t outlen;

    if (mime_parse(msg, size, &s) == 0) {
        if (!fuzz_balanced(s.envelope, strlen(s.envelope)) ||
            !fuzz_balanced(s.bodystructure, strlen(s.bodystructure)) ||
            !fuzz_balanced(s.body, strlen(s.body)))
            abort();
        mime_summary_free(&s);
    }
    for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
        if (mime_find_section(msg, size, sections[i], &off, &len) == 0 &&
            (off > size || len > size - off))
            abort();
    if (mime_header_fields(msg, size, names, 3, (int)(size & 1), &out, &outlen) == 0)
        free(out);
    out = mime_decode_header_value(msg, size);
    free(out);
    return 0;
}
