/* Benchmark driver for scripts/bench/mime: "mime_bench FAMILY BYTES"
 * builds one message of about BYTES bytes of an input family made to cost
 * the MIME parser more than its size, parses it the way delivery and
 * FETCH do (mime_parse, then mime_find_section of "1" and "TEXT"), three
 * times, and prints one line "BYTES CPU_MS PEAK_KB": the input's exact
 * size, the least CPU time of the three, and how much the process's peak
 * resident size grew during the parses (the input is built before the
 * first measure). Families:
 *   continuations  one Content-Type with RFC 2231 "name*N=" pieces of 64 bytes
 *   ctype100k      a multipart whose parts each have a 100 KB Content-Type of
 *                  continuations
 *   subject        a Subject of "=?a?B?x" repeated, without white space
 *   nesting        multiparts nested 1,000 deep (ten times the parser's limit),
 *                  each with a text part and an epilogue sharing the size
 *   parts          a multipart of parts of about 200 bytes each
 *   routes         a Sender of "<@," repeated: each '<@' may start an obsolete
 *                  route, whose ':' ENVELOPE looks for
 * Not a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "storage/mime.h"

struct out {
    char *p;
    size_t len, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        fprintf(stderr, "generator overflow\n");
        exit(1);
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void putf(struct out *o, const char *fmt, int a, int b)
{
    char tmp[256];
    int n = snprintf(tmp, sizeof(tmp), fmt, a, b);

    put(o, tmp, (size_t)n);
}

/* Continuation pieces up to about `upto` bytes in all, numbered from 0. */
static void continuations(struct out *o, size_t upto)
{
    int i;

    for (i = 0; o->len + 80 < upto; i++)
        putf(o, ";\r\n name*%d=\"p%07d-abcdefghijklmnopqrstuvwxyz-abcdefghijk\"", i, i);
}

static const char filler[] = "lorem ipsum dolor sit amet consectetur adipiscing elit\r\n";

/* Exactly n bytes of text. */
static void fill(struct out *o, size_t n)
{
    size_t k;

    for (; n > 0; n -= k) {
        k = n < sizeof(filler) - 1 ? n : sizeof(filler) - 1;
        put(o, filler, k);
    }
}

/* Multiparts nested `levels` deep, each a text part of `per` bytes, then
 * the next level as its second part, then an epilogue of `per` bytes. */
static void nesting(struct out *o, int levels, size_t per)
{
    int i;

    for (i = 0; i < levels; i++) {
        putf(o, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i);
        puts_(o, "Content-Type: text/plain\r\n\r\n");
        fill(o, per);
        putf(o, "\r\n--b%d\r\n", i, 0);
    }
    puts_(o, "Content-Type: text/plain\r\n\r\ninnermost\r\n");
    for (i = levels - 1; i >= 0; i--) {
        putf(o, "\r\n--b%d--\r\n", i, 0);
        fill(o, per);
    }
}

static void gen(struct out *o, const char *family, size_t bytes)
{
    size_t start, per;
    int i;

    puts_(o,
          "From: a@example.org\r\nTo: b@example.org\r\nDate: Thu, 3 Dec 2026 12:00:00 +0000\r\n");
    if (strcmp(family, "continuations") == 0) {
        puts_(o, "Subject: x\r\nContent-Type: application/x-y");
        continuations(o, bytes);
        puts_(o, "\r\n\r\nbody\r\n");
    } else if (strcmp(family, "ctype100k") == 0) {
        puts_(o, "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n");
        while (o->len + 100 * 1024 + 200 < bytes) {
            puts_(o, "--b\r\nContent-Type: application/x-y");
            start = o->len;
            continuations(o, start + 100 * 1024);
            puts_(o, "\r\n\r\nbody\r\n");
        }
        puts_(o, "--b--\r\n");
    } else if (strcmp(family, "subject") == 0) {
        puts_(o, "Subject: ");
        while (o->len + 7 + 20 < bytes)
            put(o, "=?a?B?x", 7);
        puts_(o, "\r\n\r\nbody\r\n");
    } else if (strcmp(family, "nesting") == 0) {
        puts_(o, "Subject: x\r\n");
        start = o->len;
        nesting(o, 1000, 0); /* the structure alone, to size the text */
        per = o->len - start < bytes - start ? (bytes - o->len) / 2000 : 0;
        o->len = start;
        nesting(o, 1000, per);
    } else if (strcmp(family, "routes") == 0) {
        puts_(o, "Subject: x\r\nSender: ");
        while (o->len + 3 + 20 < bytes)
            put(o, "<@,", 3);
        puts_(o, "\r\n\r\nbody\r\n");
    } else if (strcmp(family, "parts") == 0) {
        puts_(o, "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n");
        for (i = 0; o->len + 300 < bytes; i++) {
            putf(o, "--b\r\nContent-Type: text/plain; name=\"part%d\"\r\n\r\n", i, 0);
            put(o, filler, sizeof(filler) - 1);
            put(o, filler, sizeof(filler) - 1);
        }
        puts_(o, "--b--\r\n");
    } else {
        fprintf(stderr, "unknown family %s\n", family);
        exit(2);
    }
}

static double cpu_ms(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static long maxrss_kb(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int main(int argc, char **argv)
{
    struct out o;
    struct mime_summary s;
    size_t bytes, off, len;
    double best = -1, t;
    long rss0;
    int run;

    if (argc != 3) {
        fprintf(stderr, "usage: mime_bench FAMILY BYTES\n");
        return 2;
    }
    bytes = strtoul(argv[2], NULL, 10);
    o.cap = bytes + bytes / 4 + (1 << 20); /* the generators overshoot a little */
    o.len = 0;
    o.p = malloc(o.cap);
    if (o.p == NULL)
        return 1;
    memset(o.p, 0, o.cap); /* resident before the first measure */
    gen(&o, argv[1], bytes);
    rss0 = maxrss_kb();
    for (run = 0; run < 3; run++) {
        t = cpu_ms();
        if (mime_parse(o.p, o.len, &s) != 0) {
            fprintf(stderr, "mime_parse failed\n");
            return 1;
        }
        mime_summary_free(&s);
        (void)mime_find_section(o.p, o.len, "1", &off, &len);
        (void)mime_find_section(o.p, o.len, "TEXT", &off, &len);
        t = cpu_ms() - t;
        if (best < 0 || t < best)
            best = t;
    }
    printf("%zu %.1f %ld\n", o.len, best, maxrss_kb() - rss0);
    free(o.p);
    return 0;
}
