/* Unit tests of the MIME parser (storage/mime.h).
 * usage: test_mime CORPUS_DIR MALFORMED_DIR
 *        test_mime --dump FILE...   (print the summary, for inspection)
 * CORPUS_DIR holds NN-name.eml and NN-name.expected; each line of an
 * .expected file is "key: value" (envelope, bodystructure, body, subject,
 * from, to, cc, bcc, message_id, in_reply_to, date, text, section:SPEC);
 * in values CR and LF are written as \r and \n. Every .eml in
 * MALFORMED_DIR must parse without crashing into well-formed IMAP syntax. */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/mime.h"
#include "storage/storage.h"
#include "tests/unit/check.h"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL, *np;
    size_t cap = 0, n = 0, r;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = (cap + 4096) * 2;
            if ((np = realloc(p, cap)) == NULL) {
                free(p);
                fclose(f);
                return NULL;
            }
            p = np;
        }
        r = fread(p + n, 1, cap - n - 1, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    p[n] = '\0';
    *len = n;
    return p;
}

/* CR and LF as \r and \n, for one-line comparisons. Caller frees. */
static char *escape(const char *s, size_t len)
{
    char *o = malloc(2 * len + 1), *q = o;
    size_t i;

    if (o == NULL)
        abort();
    for (i = 0; i < len; i++) {
        if (s[i] == '\r')
            *q++ = '\\', *q++ = 'r';
        else if (s[i] == '\n')
            *q++ = '\\', *q++ = 'n';
        else
            *q++ = s[i];
    }
    *q = '\0';
    return o;
}

/* Check IMAP syntax: one parenthesized list of NIL, numbers, quoted strings
 * and literals, balanced. */
static int imap_wellformed(const char *s)
{
    size_t i = 0, len = strlen(s), n;
    int depth = 0, seen = 0;

    while (i < len) {
        char c = s[i];
        if (c == '(') {
            depth++;
            seen = 1;
            i++;
        } else if (c == ')') {
            if (--depth < 0)
                return 0;
            i++;
            if (depth == 0 && i != len)
                return 0;
        } else if (c == ' ')
            i++;
        else if (c == '"') {
            for (i++; i < len && s[i] != '"'; i++) {
                if (s[i] == '\\')
                    i++;
                else if (s[i] == '\r' || s[i] == '\n' || (unsigned char)s[i] >= 0x80)
                    return 0;
            }
            if (i >= len)
                return 0;
            i++;
        } else if (c == '{') {
            n = strtoul(s + i + 1, NULL, 10);
            while (i < len && s[i] != '}')
                i++;
            if (len - i < 3 || s[i + 1] != '\r' || s[i + 2] != '\n' || len - i - 3 < n)
                return 0;
            i += 3 + n;
        } else if (strncmp(s + i, "NIL", 3) == 0)
            i += 3;
        else if (c >= '0' && c <= '9') {
            while (i < len && s[i] >= '0' && s[i] <= '9')
                i++;
        } else
            return 0;
        if (depth == 0 && seen && i != len)
            return 0;
    }
    return depth == 0 && seen;
}

static const char *nz(const char *s)
{
    return s ? s : "NULL";
}

static void dump(const char *path)
{
    struct mime_summary s;
    size_t len;
    char *m = read_file(path, &len), *e;

    if (m == NULL || mime_parse(m, len, &s) != 0) {
        fprintf(stderr, "%s: cannot read or parse\n", path);
        free(m);
        return;
    }
    printf("== %s\n", path);
#define D(k, v)                                                                                    \
    do {                                                                                           \
        e = (v) ? escape((v), strlen(v)) : NULL;                                                   \
        printf("%s: %s\n", k, nz(e));                                                              \
        free(e);                                                                                   \
    } while (0)
    D("envelope", s.envelope);
    D("bodystructure", s.bodystructure);
    D("body", s.body);
    D("subject", s.subject);
    D("from", s.from);
    D("to", s.to);
    D("cc", s.cc);
    D("message_id", s.message_id);
    D("in_reply_to", s.in_reply_to);
    printf("date: %" PRId64 "\n", s.date);
    D("text", s.text);
    mime_summary_free(&s);
    free(m);
}

static int compare(const char *file, const char *key, const char *want, const char *got)
{
    char *e = got ? escape(got, strlen(got)) : NULL;
    int ok = strcmp(want, nz(e)) == 0;

    if (!ok) {
        fprintf(stderr, "%s: %s differs\n  want: %s\n  got:  %s\n", file, key, want, nz(e));
        failures++;
    }
    free(e);
    return ok;
}

/* The summary's string an .expected key names (key "envelope" gives
 * s->envelope, ...); 0, or -1 when the key names none. */
static int summary_string(const struct mime_summary *s, const char *key, const char **val)
{
    const struct {
        const char *key, *val;
    } fields[] = {
        {"envelope", s->envelope},
        {"bodystructure", s->bodystructure},
        {"body", s->body},
        {"subject", s->subject},
        {"from", s->from},
        {"to", s->to},
        {"cc", s->cc},
        {"bcc", s->bcc},
        {"message_id", s->message_id},
        {"in_reply_to", s->in_reply_to},
        {"text", s->text},
    };

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (strcmp(key, fields[i].key) == 0) {
            *val = fields[i].val;
            return 0;
        }
    }
    return -1;
}

static void run_corpus(const char *dir, int *count)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[4096], epath[4096];
    char *msg, *exp, *line, *next, *val, *got;
    const char *field;
    size_t mlen, elen, off, slen;
    struct mime_summary s;
    char num[32];

    if (d == NULL) {
        fprintf(stderr, "cannot open %s\n", dir);
        failures++;
        return;
    }
    while ((de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        if (nl < 5 || strcmp(de->d_name + nl - 4, ".eml") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        snprintf(epath, sizeof(epath), "%s/%.*s.expected", dir, (int)(nl - 4), de->d_name);
        msg = read_file(path, &mlen);
        exp = read_file(epath, &elen);
        if (msg == NULL || exp == NULL) {
            fprintf(stderr, "%s: missing .eml or .expected\n", path);
            failures++;
            free(msg);
            free(exp);
            continue;
        }
        if (mime_parse(msg, mlen, &s) != 0) {
            fprintf(stderr, "%s: mime_parse failed\n", path);
            failures++;
            free(msg);
            free(exp);
            continue;
        }
        (*count)++;
        CHECK(imap_wellformed(s.envelope));
        CHECK(imap_wellformed(s.bodystructure));
        CHECK(imap_wellformed(s.body));
        for (line = exp; line != NULL && *line; line = next) {
            next = strchr(line, '\n');
            if (next)
                *next++ = '\0';
            if (*line == '#' || *line == '\0')
                continue;
            val = strstr(line, ": ");
            if (val == NULL) {
                fprintf(stderr, "%s: bad line %s\n", epath, line);
                failures++;
                continue;
            }
            *val = '\0';
            val += 2;
            if (summary_string(&s, line, &field) == 0)
                compare(path, line, val, field);
            else if (strcmp(line, "date") == 0) {
                snprintf(num, sizeof(num), "%" PRId64, s.date);
                compare(path, line, val, num);
            } else if (strncmp(line, "section:", 8) == 0) {
                /* "section:1.2: <content>" or "section:3: NONE" */
                if (mime_find_section(msg, mlen, line + 8, &off, &slen) != 0)
                    compare(path, line, val, "NONE");
                else {
                    got = malloc(slen + 1);
                    if (got == NULL)
                        abort();
                    memcpy(got, msg + off, slen);
                    got[slen] = '\0';
                    compare(path, line, val, got);
                    free(got);
                }
            } else {
                fprintf(stderr, "%s: unknown key %s\n", epath, line);
                failures++;
            }
        }
        mime_summary_free(&s);
        free(msg);
        free(exp);
    }
    closedir(d);
}

/* Parse and check only that the output is sane IMAP syntax. */
static void parse_sane(const char *what, const char *msg, size_t len)
{
    struct mime_summary s;
    size_t off, slen;
    clock_t t0 = clock();

    if (mime_parse(msg, len, &s) != 0) {
        fprintf(stderr, "%s: mime_parse failed\n", what);
        failures++;
        return;
    }
    if (!imap_wellformed(s.envelope) || !imap_wellformed(s.bodystructure) ||
        !imap_wellformed(s.body)) {
        fprintf(stderr, "%s: malformed IMAP output\n", what);
        failures++;
    }
    CHECK(s.text == NULL || strlen(s.text) <= MIME_MAX_TEXT);
    mime_find_section(msg, len, "1.1.1.1", &off, &slen);
    mime_find_section(msg, len, "2.HEADER", &off, &slen);
    mime_summary_free(&s);
    if (clock() - t0 > 10 * CLOCKS_PER_SEC) /* not a timed assert: report only */
        fprintf(stderr, "%s: slow (%.1fs)\n", what, (double)(clock() - t0) / CLOCKS_PER_SEC);
}

static void run_malformed(const char *dir, int *count)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[4096];
    char *msg;
    size_t len;

    if (d == NULL) {
        fprintf(stderr, "cannot open %s\n", dir);
        failures++;
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if ((msg = read_file(path, &len)) == NULL)
            continue;
        parse_sane(path, msg, len);
        (*count)++;
        free(msg);
    }
    closedir(d);
}

/* Pathological inputs too big to keep as files. */
static void test_generated(void)
{
    size_t cap = 16 * 1024 * 1024, n, i;
    char *m = malloc(cap);

    if (m == NULL)
        abort();
    /* 10,000 nested multiparts */
    n = 0;
    for (i = 0; i < 10000; i++)
        n += (size_t)snprintf(
            m + n, cap - n, "Content-Type: multipart/mixed; boundary=b%zu\r\n\r\n--b%zu\r\n", i, i);
    n += (size_t)snprintf(m + n, cap - n, "\r\ntext\r\n");
    parse_sane("generated: deep multipart", m, n);
    /* 10,000 nested message/rfc822 */
    n = 0;
    for (i = 0; i < 10000; i++)
        n += (size_t)snprintf(m + n, cap - n,
                              "Subject: %zu\r\nContent-Type: message/rfc822\r\n\r\n", i);
    parse_sane("generated: deep rfc822", m, n);
    /* 100,000 header lines */
    n = 0;
    for (i = 0; i < 100000; i++)
        n += (size_t)snprintf(m + n, cap - n, "X-H%zu: v\r\n", i);
    n += (size_t)snprintf(m + n, cap - n, "\r\nbody\r\n");
    parse_sane("generated: 100k header lines", m, n);
    /* one 1 MB folded header */
    n = (size_t)snprintf(m, cap, "Subject: a");
    for (i = 0; i < 100000; i++)
        n += (size_t)snprintf(m + n, cap - n, "\r\n =?utf-8?q?x?=");
    n += (size_t)snprintf(m + n, cap - n, "\r\nTo: ");
    for (i = 0; i < 50000; i++)
        n += (size_t)snprintf(m + n, cap - n, "a%zu@b, g%zu:;", i, i);
    n += (size_t)snprintf(m + n, cap - n, "\r\n\r\n");
    parse_sane("generated: huge headers", m, n);
    /* 1 MB single line body */
    n = (size_t)snprintf(m, cap, "Content-Type: text/html\r\n\r\n");
    memset(m + n, '<', 1024 * 1024);
    n += 1024 * 1024;
    parse_sane("generated: 1MB line", m, n);
    /* many boundaries: 200,000 empty parts */
    n = (size_t)snprintf(m, cap, "Content-Type: multipart/mixed; boundary=x\r\n\r\n");
    for (i = 0; i < 200000; i++)
        n += (size_t)snprintf(m + n, cap - n, "--x\r\n");
    parse_sane("generated: many boundaries", m, n);
    /* 4 MB of base64 text: the index text stays capped */
    n = (size_t)snprintf(m, cap, "Content-Transfer-Encoding: base64\r\n\r\n");
    for (i = 0; i < 4 * 1024 * 1024 / 76; i++)
        n += (size_t)snprintf(
            m + n, cap - n, "%.76s\r\n",
            "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29y"
            "bGQg");
    parse_sane("generated: big base64", m, n);
    free(m);
}

static void test_decode(void)
{
    char *v;
#define DEC(in, want)                                                                              \
    do {                                                                                           \
        v = mime_decode_header_value(in, strlen(in));                                              \
        if (v == NULL || strcmp(v, want) != 0) {                                                   \
            fprintf(stderr, "decode(%s): got [%s] want [%s]\n", in, v ? v : "NULL", want);         \
            failures++;                                                                            \
        }                                                                                          \
        free(v);                                                                                   \
    } while (0)
    DEC("plain", "plain");
    DEC(" folded\r\n line ", "folded line");
    DEC("=?UTF-8?B?w6l0w6k=?=", "\xc3\xa9t\xc3\xa9");
    DEC("=?iso-8859-1?q?caf=E9_cr=E8me?=", "caf\xc3\xa9 cr\xc3\xa8me");
    /* whitespace between adjacent encoded words is dropped */
    DEC("=?utf-8?q?a?= =?utf-8?q?b?=", "ab");
    DEC("=?utf-8?q?a?=\r\n =?utf-8?q?b?=", "ab");
    /* but kept between a word and text */
    DEC("=?utf-8?q?a?= b", "a b");
    DEC("x =?utf-8?q?a?=", "x a");
    /* a UTF-8 character split over two words */
    DEC("=?utf-8?q?=C3?= =?utf-8?q?=A9?=", "\xc3\xa9");
    /* unknown charset: bytes kept, invalid UTF-8 replaced */
    DEC("=?x-unknown?q?a=E9b?=", "a\xef\xbf\xbd"
                                 "b");
    /* RFC 2231 language suffix */
    DEC("=?US-ASCII*EN?Q?Keith_Moore?=", "Keith Moore");
    /* not encoded words */
    DEC("=?utf-8?x?abc?=", "=?utf-8?x?abc?=");
    DEC("=?utf-8?q?unterminated", "=?utf-8?q?unterminated");
    DEC("=??q?a?=", "=??q?a?=");
    /* raw 8-bit: valid UTF-8 kept, invalid replaced */
    DEC("caf\xc3\xa9", "caf\xc3\xa9");
    DEC("caf\xe9", "caf\xef\xbf\xbd");
    /* invalid sequence in a known charset */
    DEC("=?utf-8?q?a=FFb?=", "a\xef\xbf\xbd"
                             "b");
    DEC("=?koi8-r?b?8NLJ18XU?=", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
}

static void test_dates(void)
{
#define DATE(in, want) CHECK(mime_parse_date(in, strlen(in)) == (int64_t)(want))
    DATE("Thu, 13 Feb 1969 23:32:54 -0330", -27723426);
    DATE("Fri, 21 Nov 1997 09:55:06 -0600", 880127706);
    DATE("Tue, 1 Jul 2003 10:52:37 +0200", 1057049557);
    DATE("1 Jan 2000 00:00:00 +0000", 946684800);
    DATE("1 Jan 2000 00:00 GMT", 946684800);
    DATE("Sat, 1 Jan 00 00:00:00 EST", 946702800); /* 2-digit year, obsolete zone */
    DATE("1 Jan 99 00:00:00 +0000", 915148800);    /* 99 -> 1999 */
    DATE("1 Jan 100 00:00:00 +0000", 946684800);   /* 3-digit: + 1900 */
    DATE("Mon (Monday), 2 Jan 2006 15:04:05 (x) -0700 (MST)", 1136239445);
    DATE("2-Jan-2006 15:04:05 -0700", 1136239445);
    DATE("1 Jan 2000 00:00:00 XYZ", 946684800); /* unknown zone: -0000 */
    DATE("", 0);
    DATE("garbage", 0);
    DATE("32 Jan 2000 00:00:00 +0000", 0);
    DATE("1 Foo 2000 00:00:00 +0000", 0);
    DATE("1 Jan 2000", 0);
    DATE("1 Jan 2000 25:00:00 +0000", 0);
}

static void test_header_fields(void)
{
    const char hdr[] = "From: a@b\r\nSubject: hi\r\n there\r\nTo: c@d\r\nsubject: again\r\n\r\n";
    const char *n1[] = {"SUBJECT"};
    const char *n2[] = {"from", "to"};
    char *out;
    size_t olen;

    CHECK(mime_header_fields(hdr, sizeof(hdr) - 1, n1, 1, 0, &out, &olen) == 0);
    CHECK(strcmp(out, "Subject: hi\r\n there\r\nsubject: again\r\n\r\n") == 0);
    CHECK(olen == strlen(out));
    free(out);
    CHECK(mime_header_fields(hdr, sizeof(hdr) - 1, n2, 2, 1, &out, &olen) == 0);
    CHECK(strcmp(out, "Subject: hi\r\n there\r\nsubject: again\r\n\r\n") == 0);
    free(out);
    CHECK(mime_header_fields(hdr, sizeof(hdr) - 1, n2, 2, 0, &out, &olen) == 0);
    CHECK(strcmp(out, "From: a@b\r\nTo: c@d\r\n\r\n") == 0);
    free(out);
    CHECK(mime_header_fields(hdr, sizeof(hdr) - 1, NULL, 0, 0, &out, &olen) == 0);
    CHECK(strcmp(out, "\r\n") == 0 && olen == 2);
    free(out);
    /* last field without line end gets one; a header without its blank
     * line (a message with no body) gets none (RFC 3501 6.4.5) */
    CHECK(mime_header_fields("X-A: 1", 6, (const char *[]){"x-a"}, 1, 0, &out, &olen) == 0);
    CHECK(strcmp(out, "X-A: 1\r\n") == 0);
    free(out);
    CHECK(mime_header_fields("X-A: 1\r\nB: 2\r\n", 14, (const char *[]){"b"}, 1, 0, &out, &olen) ==
          0);
    CHECK(strcmp(out, "B: 2\r\n") == 0);
    free(out);
    CHECK(mime_header_fields("X-A: 1\n\n", 8, (const char *[]){"x-a"}, 1, 0, &out, &olen) == 0);
    CHECK(strcmp(out, "X-A: 1\n\r\n") == 0);
    free(out);
    CHECK(mime_header_fields("\r\n", 2, (const char *[]){"x-a"}, 1, 0, &out, &olen) == 0);
    CHECK(strcmp(out, "\r\n") == 0);
    free(out);
    /* a long list: names past the ones whose lengths are taken first */
    char many[40][8];
    const char *np[40];
    for (int i = 0; i < 40; i++) {
        snprintf(many[i], sizeof(many[i]), "x-%d", i);
        np[i] = many[i];
    }
    CHECK(mime_header_fields("X-39: a\r\nX-3: b\r\nX-40: c\r\nx-0: d\r\n\r\n", 36, np, 40, 0, &out,
                             &olen) == 0);
    CHECK(strcmp(out, "X-39: a\r\nX-3: b\r\nx-0: d\r\n\r\n") == 0);
    free(out);
    CHECK(mime_header_fields("X-39: a\r\nX-3: b\r\nX-40: c\r\nx-0: d\r\n\r\n", 36, np, 40, 1, &out,
                             &olen) == 0);
    CHECK(strcmp(out, "X-40: c\r\n\r\n") == 0);
    free(out);
}

static void expect_section(const char *msg, const char *sec, const char *want)
{
    size_t off, len;
    int r = mime_find_section(msg, strlen(msg), sec, &off, &len);

    if (want == NULL) {
        if (r != -1) {
            fprintf(stderr, "section %s: exists, should not\n", sec);
            failures++;
        }
        return;
    }
    if (r != 0 || len != strlen(want) || memcmp(msg + off, want, len) != 0) {
        fprintf(stderr, "section %s: got [%.*s] want [%s]\n", sec, r == 0 ? (int)len : 4,
                r == 0 ? msg + off : "NONE", want);
        failures++;
    }
}

/* i;unicode-casemap (RFC 5051): titlecase, then full decomposition. */
static void test_casemap(void)
{
    static const struct {
        const char *in, *out, *what;
    } cases[] = {
        {"abc XYZ 09!", "ABC XYZ 09!", "ASCII: upper case"},
        {"caf\xc3\xa9", "CAFE\xcc\x81", "e acute: E and U+0301"},
        {"\xc3\x89", "E\xcc\x81", "E acute likewise"},
        {"\xc7\x86", "D\x7a\xcc\x8c", "dz caron: titlecase Dz caron, decomposed"},
        {"\xe1\xba\x9b", "S\xcc\x87", "long s dot: titlecase S dot, decomposed"},
        {"\xef\xac\x81", "fi", "fi ligature: no titlecase, small letters"},
        {"\xc3\x9f", "\xc3\x9f", "sharp s: no simple titlecase"},
        {"\xce\xb1\xcf\x82", "\xce\x91\xce\xa3", "alpha, final sigma"},
        {"\xea\xb0\x80", "\xea\xb0\x80", "Hangul syllable kept whole"},
        {"a\xff"
         "b",
         "A\xef\xbf\xbd"
         "B",
         "invalid byte: U+FFFD"},
        {"\xe2\x84\xaa", "K", "Kelvin sign: K"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = mime_casemap_dup(cases[i].in, strlen(cases[i].in));
        CHECK(got && strcmp(got, cases[i].out) == 0, cases[i].what);
        free(got);
    }
    /* the longest decomposition (U+FDFA, 18 characters) fits one step */
    unsigned char out[MIME_CASEMAP_MAX];
    size_t ol = 0;
    CHECK(mime_casemap_char((const unsigned char *)"\xef\xb7\xba", 3, out, &ol) == 3 && ol == 33,
          "U+FDFA: 18 characters, 33 bytes");
}

static void test_sections(void)
{
    const char *m = "Subject: s\r\n"
                    "Content-Type: multipart/mixed; boundary=\"o\"\r\n"
                    "\r\n"
                    "pre\r\n"
                    "--o\r\n"
                    "\r\n"
                    "part one\r\n"
                    "--o\r\n"
                    "Content-Type: message/rfc822\r\n"
                    "\r\n"
                    "Subject: inner\r\n"
                    "Content-Type: multipart/alternative; boundary=i\r\n"
                    "\r\n"
                    "--i\r\n"
                    "Content-Type: text/plain\r\n"
                    "\r\n"
                    "alt 1\r\n"
                    "--i\r\n"
                    "Content-Type: text/html\r\n"
                    "\r\n"
                    "<p>alt 2</p>\r\n"
                    "--i--\r\n"
                    "--o\r\n"
                    "Content-Type: message/rfc822\r\n"
                    "\r\n"
                    "Subject: plain inner\r\n"
                    "\r\n"
                    "inner body\r\n"
                    "--o--\r\n"
                    "epi\r\n";
    const char *simple = "Subject: x\r\n\r\nbody\r\n";

    expect_section(m, "", m);
    expect_section(m, "HEADER",
                   "Subject: s\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n");
    expect_section(m, "1", "part one");
    expect_section(m, "1.MIME", "\r\n");
    expect_section(m, "2.MIME", "Content-Type: message/rfc822\r\n\r\n");
    expect_section(m, "2.HEADER",
                   "Subject: inner\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n");
    expect_section(m, "2.header", /* case-insensitive */
                   "Subject: inner\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n");
    expect_section(m, "2.1", "alt 1");
    expect_section(m, "2.2", "<p>alt 2</p>");
    expect_section(m, "2.2.MIME", "Content-Type: text/html\r\n\r\n");
    expect_section(m, "2.3", NULL);
    expect_section(m, "3.TEXT", "inner body"); /* CRLF before "--o--" is the delimiter's */
    expect_section(m, "3.1", "inner body");
    expect_section(m, "3.2", NULL);
    expect_section(m, "1.HEADER", NULL); /* part 1 is not message/rfc822 */
    expect_section(m, "1.1", NULL);
    expect_section(m, "4", NULL);
    expect_section(m, "0", NULL);
    expect_section(m, "1.", NULL);
    expect_section(m, "x", NULL);
    expect_section(m, "MIME", NULL);
    expect_section(simple, "1", "body\r\n");
    expect_section(simple, "TEXT", "body\r\n");
    expect_section(simple, "2", NULL);
    expect_section(simple, "1.1", NULL);
    expect_section(simple, "HEADER.FIELDS (SUBJECT)", "Subject: x\r\n\r\n");
}

/* Decodes in[0..len) with the streaming decoder, in slices of `step`
 * bytes; the result is NUL-terminated in out. */
static size_t decode_in_steps(enum storage_cte cte, const char *in, size_t len, size_t step,
                              char *out)
{
    struct storage_decoder d;
    size_t o = 0;

    storage_decoder_init(&d, cte);
    for (size_t i = 0; i < len; i += step)
        o += storage_decode(&d, in + i, len - i < step ? len - i : step, out + o);
    o += storage_decode_end(&d, out + o);
    out[o] = '\0';
    return o;
}

static void check_decode(enum storage_cte cte, const char *in, const char *want, size_t wantlen)
{
    char out[1024];
    size_t len = strlen(in);

    /* any slicing gives the same bytes */
    for (size_t step = 1; step <= len + 1; step++) {
        size_t n = decode_in_steps(cte, in, len, step, out);
        if (n != wantlen || memcmp(out, want, wantlen) != 0) {
            fprintf(stderr, "decode %d of \"%s\" in steps of %zu: got %zu bytes \"%s\"\n", (int)cte,
                    in, step, n, out);
            failures++;
            return;
        }
    }
}

static void test_stream_decode(void)
{
#define SDEC(cte, in, want) check_decode(cte, in, want, sizeof(want) - 1)
    SDEC(STORAGE_CTE_BASE64, "SGVsbG8sIHdvcmxkIQ==", "Hello, world!");
    SDEC(STORAGE_CTE_BASE64, "SGVs\r\nbG8s\r\nIHdv\r\ncmxk\r\nIQ==\r\n", "Hello, world!");
    /* outside the alphabet: ignored (RFC 2045 6.8); the data ends at '=' */
    SDEC(STORAGE_CTE_BASE64, "SG!V*sbG8=SGVsbG8=", "Hello");
    SDEC(STORAGE_CTE_BASE64, "AAEC", "\0\1\2");
    SDEC(STORAGE_CTE_BASE64, "", "");
    SDEC(STORAGE_CTE_QP, "caf=C3=A9 =3D x", "caf\xc3\xa9 = x");
    SDEC(STORAGE_CTE_QP, "soft=\r\nbreak=  \r\nhere=\nand", "softbreakhereand");
    /* white space at the end of a line goes, inside stays */
    SDEC(STORAGE_CTE_QP, "a b  \r\nc\t\nd  ", "a b\r\nc\nd");
    /* a '=' that starts no escape stays */
    SDEC(STORAGE_CTE_QP, "1=2 =G0 =4x =", "1=2 =G0 =4x ");
    SDEC(STORAGE_CTE_QP, "=4", "=4");
    SDEC(STORAGE_CTE_QP, "=00=0D=0A", "\0\r\n");
    SDEC(STORAGE_CTE_QP, "x= y", "x= y");
    SDEC(STORAGE_CTE_QP, "x= \ry", "x= \ry");
    SDEC(STORAGE_CTE_QP, "a\rb\r", "a\rb\r");
    SDEC(STORAGE_CTE_IDENTITY, "as =3D it is\r\n", "as =3D it is\r\n");
#undef SDEC

    static const char msg[] = "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
                              "--b\r\nContent-Transfer-Encoding: BASE64 (comment)\r\n\r\n"
                              "QUJD\r\n"
                              "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nx=3D\r\n"
                              "--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n"
                              "--b\r\n\r\nplain\r\n"
                              "--b--\r\n";
    size_t off, len;
    int cte;
    CHECK(mime_find_binary(msg, sizeof(msg) - 1, "1", &off, &len, &cte) == 0);
    CHECK(cte == STORAGE_CTE_BASE64 && len == 4 && !memcmp(msg + off, "QUJD", 4));
    CHECK(mime_find_binary(msg, sizeof(msg) - 1, "2", &off, &len, &cte) == 0);
    CHECK(cte == STORAGE_CTE_QP);
    CHECK(mime_find_binary(msg, sizeof(msg) - 1, "3", &off, &len, &cte) == 0);
    CHECK(cte == STORAGE_CTE_UNKNOWN);
    CHECK(mime_find_binary(msg, sizeof(msg) - 1, "4", &off, &len, &cte) == 0);
    CHECK(cte == STORAGE_CTE_IDENTITY);
    CHECK(mime_find_binary(msg, sizeof(msg) - 1, "5", &off, &len, &cte) == -1);
    CHECK(mime_find_binary(msg, sizeof(msg) - 1, "1.1", &off, &len, &cte) == -1);
    CHECK(mime_find_binary(msg, sizeof(msg) - 1, "", &off, &len, &cte) == 0);
    CHECK(off == 0 && len == sizeof(msg) - 1 && cte == STORAGE_CTE_IDENTITY);
}

/* Delimiter lines are found only where a line starts with "--" and the
 * boundary: not after other text on the line, not after a third '-'. */
static void test_boundary_lines(void)
{
    static const char msg[] = "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
                              "-\r\npre--b\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
                              "one-\r\n x --b\r\n---b\r\n-- b\r\n--b\r\n\r\n"
                              "two\r\n-\r\n--b--\r\nafter\r\n";
    struct mime_summary s;

    CHECK(mime_parse(msg, sizeof(msg) - 1, &s) == 0);
    CHECK(s.body && strcmp(s.body, "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
                                   "\"7bit\" 24 3)(\"text\" \"plain\" (\"charset\" "
                                   "\"us-ascii\") NIL NIL \"7bit\" 6 1) \"mixed\")") == 0);
    mime_summary_free(&s);
}

int main(int argc, char **argv)
{
    int ncorpus = 0, nmal = 0, i;

    if (argc >= 2 && strcmp(argv[1], "--dump") == 0) {
        for (i = 2; i < argc; i++)
            dump(argv[i]);
        return 0;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: test_mime CORPUS_DIR MALFORMED_DIR\n");
        return 2;
    }
    test_decode();
    test_stream_decode();
    test_dates();
    test_header_fields();
    test_sections();
    test_casemap();
    test_boundary_lines();
    run_corpus(argv[1], &ncorpus);
    run_malformed(argv[2], &nmal);
    test_generated();
    CHECK(ncorpus >= 20);
    printf("corpus: %d messages, malformed: %d files\n", ncorpus, nmal);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("all MIME tests passed\n");
    return 0;
}
