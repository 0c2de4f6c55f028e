/* The MIME parser on inputs built to make it quadratic: an RFC 2047 header
 * that is one long run of "=?a?B?x" without white space, and RFC 2231
 * parameter continuations by the thousand. Each must cost time and memory
 * linear in its size: the first takes hours when every '=' rescans to the
 * end (the test's timeout fails it), the second gigabytes when each
 * continuation copies the value built so far (a limit on the address space
 * fails it; not applied under AddressSanitizer, which reserves terabytes of
 * it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "storage/mime.h"

#include "tests/unit/check.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static void test_2047_long_run(void)
{
    static const char unit[] = "=?a?B?x";
    const size_t n = 300000; /* 2.1 MB */
    size_t ulen = sizeof(unit) - 1, len = n * ulen;
    const char tail[] = " =?utf-8?B?w6k=?=";
    char *v = malloc(len + sizeof(tail));
    if (!v) {
        CHECK(0, "allocation");
        return;
    }
    for (size_t i = 0; i < n; i++)
        memcpy(v + i * ulen, unit, ulen);
    char *out = mime_decode_header_value(v, len);
    CHECK(out && strlen(out) == len && memcmp(out, v, len) == 0,
          "a 2 MB run of broken encoded words is kept as it is");
    free(out);
    /* a real word after the run is still decoded */
    memcpy(v + len, tail, sizeof(tail));
    out = mime_decode_header_value(v, len + sizeof(tail) - 1);
    CHECK(out && strlen(out) == len + 3 && strcmp(out + len, " \xc3\xa9") == 0,
          "an encoded word after the run is decoded");
    free(out);
    free(v);
}

static void test_2231_continuations(void)
{
    struct {
        char *p;
        size_t len;
    } m = {NULL, 0};
    const int pieces = 8000;
    size_t cap = 64 + (size_t)pieces * 64;
    m.p = malloc(cap);
    if (!m.p) {
        CHECK(0, "allocation");
        return;
    }
    m.len = (size_t)snprintf(m.p, cap, "Subject: x\r\nContent-Type: application/x-y");
    for (int i = 0; i < pieces; i++)
        m.len += (size_t)snprintf(
            m.p + m.len, cap - m.len,
            ";\r\n name*%d=\"p%04d-abcdefghijklmnopqrstuvwxyz-abcdefghijklm\"", i, i);
    m.len += (size_t)snprintf(m.p + m.len, cap - m.len, "\r\n\r\nbody\r\n");

#ifndef UNDER_ASAN
    struct rlimit rl = {256u << 20, 256u << 20}, old;
    getrlimit(RLIMIT_AS, &old);
    rl.rlim_max = old.rlim_max;
    if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < rl.rlim_cur)
        rl.rlim_cur = old.rlim_cur;
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "address space limited to 256 MB");
#endif
    struct mime_summary s;
    int r = mime_parse(m.p, m.len, &s);
#ifndef UNDER_ASAN
    setrlimit(RLIMIT_AS, &old);
#endif
    CHECK(r == 0, "8,000 continuations (500 kB) parse within 256 MB");
    if (r == 0) {
        /* continuations count against the parameter cap (100): the value
         * is the first 100 pieces, joined in order */
        const char *b = strstr(s.bodystructure, "\"name\" \"p0000-");
        CHECK(b != NULL, "the joined parameter is there");
        CHECK(b && strstr(b, "p0099-") && !strstr(b, "p0100-"),
              "100 pieces kept, the rest dropped");
        mime_summary_free(&s);
    }
    free(m.p);
}

/* A continuation continues the parameter of its own name only: "n*1"
 * does not continue "na" (the one extra character allowed in the kept
 * name is the '*' of an extended value, as in "na*0*" then "na*1"). */
static void test_2231_continuation_names(void)
{
    static const char msg[] = "Content-Type: text/plain; na=x; n*1=y; fn*0*=a; fn*1=b; f*1=c\r\n"
                              "\r\nbody\r\n";
    struct mime_summary s;

    if (mime_parse(msg, sizeof(msg) - 1, &s) != 0) {
        CHECK(0, "parses");
        return;
    }
    CHECK(strstr(s.bodystructure, "(\"na\" \"x\" \"n\" \"y\" \"fn*\" \"ab\" \"f\" \"c\"") != NULL,
          "n*1 is not joined to na, f*1 not to fn*, fn*1 is");
    mime_summary_free(&s);
}

/* An address list of "<@," repeated: each '<' followed by '@' may start an
 * obsolete route ("<@a,@b:user@host>"), whose ':' was searched for to the
 * end of the value from every one of them -- 900 kB took minutes. */
static void test_route_scan(void)
{
    const size_t n = 300000;
    static const char head[] = "From: ", tail[] = "\r\n\r\nbody\r\n";
    static const char want[] = "(NIL NIL ((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")(NIL ";
    size_t len = sizeof(head) - 1 + 3 * n + sizeof(tail) - 1, i;
    char *m = malloc(len + 1);
    struct mime_summary s;

    if (!m) {
        CHECK(0, "allocation");
        return;
    }
    memcpy(m, head, sizeof(head) - 1);
    for (i = 0; i < n; i++)
        memcpy(m + sizeof(head) - 1 + 3 * i, "<@,", 3);
    memcpy(m + len - (sizeof(tail) - 1), tail, sizeof(tail));
    CHECK(mime_parse(m, len, &s) == 0, "a From of 300,000 '<@,' parses");
    CHECK(s.envelope && strncmp(s.envelope, want, sizeof(want) - 1) == 0,
          "each is an address without mailbox or domain");
    mime_summary_free(&s);
    free(m);
}

int main(void)
{
    test_2047_long_run();
    test_2231_continuations();
    test_2231_continuation_names();
    test_route_scan();
    return check_summary();
}
