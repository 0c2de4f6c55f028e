/* Unit tests of the hash-chained audit log (server/audit.c) and of the
 * audit line's escaping (server/base/log.c): a chain written in text and
 * in JSON verifies; a removed, swapped, altered, inserted or cut line is
 * reported at its line number; a rotated file goes on from the old one's
 * head; two handles on one file (coffred and coffrectl) keep one chain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/audit.h"
#include "server/base/log.h"

#include "tests/unit/check.h"

static char dir[200];

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p;
    long n;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = malloc((size_t)n + 1);
    if (fread(p, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    p[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void spit(const char *path, const char *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, len, f);
    fclose(f);
}

/* The lines of a file, split in place. */
static size_t split(char *p, char **lines, size_t max)
{
    size_t n = 0;
    while (*p && n < max) {
        char *nl = strchr(p, '\n');
        lines[n++] = p;
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    return n;
}

static void join(const char *path, char **lines, size_t n, bool last_nl)
{
    FILE *f = fopen(path, "wb");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%s", lines[i], i + 1 < n || last_nl ? "\n" : "");
    fclose(f);
}

/* audit_verify on one file: its return code, and its report in out. */
static int verify(const char *path, const char *anchor, char *out, size_t cap)
{
    FILE *m = fmemopen(out, cap, "w");
    const char *paths[1] = {path};
    int rc = audit_verify(paths, 1, anchor, m);
    fclose(m);
    return rc;
}

static void write_lines(const char *path, enum log_format f, int n)
{
    struct audit_log *a;
    char err[256], line[512];
    CHECK(audit_open(path, 0, &a, err, sizeof(err)) == 0);
    for (int i = 0; i < n; i++) {
        struct log_rec r;
        log_rec_begin(&r, "test");
        log_rec_num(&r, "i", (uint64_t)i);
        log_rec_str(&r, "user", i == 2 ? "we\"ird\\ \x01 name" : "alice@example.org");
        size_t len = log_rec_format(&r, f, line, sizeof(line));
        audit_append(a, line, len);
    }
    audit_close(a);
}

static void tamper(enum log_format f)
{
    char path[300], bad[300], out[1024];
    char *text, *copy, *lines[32];
    size_t len, n;
    const char *fmt = f == LOG_FORMAT_JSON ? "json" : "text";
    char what[128];

    snprintf(path, sizeof(path), "%s/%s.log", dir, fmt);
    snprintf(bad, sizeof(bad), "%s/%s.bad", dir, fmt);
    write_lines(path, f, 6);
    snprintf(what, sizeof(what), "%s: an untouched chain verifies", fmt);
    CHECK(verify(path, NULL, out, sizeof(out)) == 0 && strstr(out, "OK: 6 line(s)"), what);
    text = slurp(path, &len);
    copy = malloc(len + 1);

    /* line 3 removed: the 4th line, now 3rd, is reported */
    memcpy(copy, text, len + 1);
    n = split(copy, lines, 32);
    CHECK(n == 6);
    memmove(&lines[2], &lines[3], 3 * sizeof(char *));
    join(bad, lines, 5, true);
    snprintf(what, sizeof(what), "%s: a removed line is found at line 3", fmt);
    CHECK(verify(bad, NULL, out, sizeof(out)) == 1 && strstr(out, ":3: 1 line(s) removed"), what);

    /* lines 4 and 5 swapped */
    memcpy(copy, text, len + 1);
    split(copy, lines, 32);
    char *t = lines[3];
    lines[3] = lines[4];
    lines[4] = t;
    join(bad, lines, 6, true);
    snprintf(what, sizeof(what), "%s: swapped lines are found at line 4", fmt);
    CHECK(verify(bad, NULL, out, sizeof(out)) == 1 && strstr(out, ":4: line out of order"), what);

    /* one byte of line 2 altered */
    memcpy(copy, text, len + 1);
    split(copy, lines, 32);
    char *u = strstr(lines[1], "alice");
    u[0] = 'A';
    join(bad, lines, 6, true);
    snprintf(what, sizeof(what), "%s: an altered byte is found at line 2", fmt);
    CHECK(verify(bad, NULL, out, sizeof(out)) == 1 && strstr(out, ":2: altered line"), what);

    /* the file cut in the middle of its last line */
    spit(bad, text, len - 10);
    snprintf(what, sizeof(what), "%s: a file cut short is found at line 6", fmt);
    CHECK(verify(bad, NULL, out, sizeof(out)) == 1 && strstr(out, ":6: line cut short"), what);

    /* the last line cut at its end: only an anchor finds it */
    memcpy(copy, text, len + 1);
    split(copy, lines, 32);
    join(bad, lines, 5, true);
    CHECK(verify(bad, NULL, out, sizeof(out)) == 0);
    char anchor[128], *h = strstr(lines[5], "chain") + (f == LOG_FORMAT_JSON ? 8 : 6);
    snprintf(anchor, sizeof(anchor), "6:%.64s", h);
    snprintf(what, sizeof(what), "%s: lines cut at the end are found with an anchor", fmt);
    CHECK(verify(bad, anchor, out, sizeof(out)) == 1 && strstr(out, "not in the log"), what);
    CHECK(verify(path, anchor, out, sizeof(out)) == 0);

    /* a line inserted, with a seq and chain of its own making */
    memcpy(copy, text, len + 1);
    split(copy, lines, 32);
    lines[6] = lines[5];
    lines[5] = f == LOG_FORMAT_JSON
                   ? "{\"event\":\"forged\",\"seq\":6,\"chain\":\"00000000000000000000"
                     "00000000000000000000000000000000000000000000\"}"
                   : "forged seq=6 chain=000000000000000000000000000000000000000"
                     "0000000000000000000000000";
    join(bad, lines, 7, true);
    snprintf(what, sizeof(what), "%s: an inserted line is found at line 6", fmt);
    CHECK(verify(bad, NULL, out, sizeof(out)) == 1 && strstr(out, ":6: altered line"), what);
    free(copy);
    free(text);
}

static void rotation_and_two_writers(void)
{
    char path[300], old[300], out[1024], err[256];
    struct audit_log *a, *b;
    struct log_rec r;
    char line[512];
    size_t len;

    snprintf(path, sizeof(path), "%s/rot.log", dir);
    snprintf(old, sizeof(old), "%s/rot.log.1", dir);
    CHECK(audit_open(path, 0, &a, err, sizeof(err)) == 0);
    CHECK(audit_open(path, 0, &b, err, sizeof(err)) == 0);
    for (int i = 0; i < 6; i++) {
        log_rec_begin(&r, i % 2 ? "from-b" : "from-a");
        len = log_rec_format(&r, LOG_FORMAT_TEXT, line, sizeof(line));
        audit_append(i % 2 ? b : a, line, len);
    }
    CHECK(verify(path, NULL, out, sizeof(out)) == 0 && strstr(out, "OK: 6 line(s)"),
          "two handles on one file append to one chain");
    /* logrotate: moved, then the handle reopens and writes on */
    CHECK(rename(path, old) == 0);
    audit_reopen(a);
    log_rec_begin(&r, "after");
    len = log_rec_format(&r, LOG_FORMAT_TEXT, line, sizeof(line));
    audit_append(a, line, len);
    audit_close(a);
    audit_close(b);
    const char *both[2] = {old, path};
    FILE *m = fmemopen(out, sizeof(out), "w");
    int rc = audit_verify(both, 2, NULL, m);
    fclose(m);
    CHECK(rc == 0 && strstr(out, "head seq=8"), "a rotated log goes on from the old file's head");
    if (rc)
        fprintf(stderr, "%s", out);
    /* the new file alone: its first line names where it goes on from */
    CHECK(verify(path, NULL, out, sizeof(out)) == 0);
    /* the old file missing its last line: the new one does not go on from it */
    char *text = slurp(old, &len), *lines[16];
    size_t n = split(text, lines, 16);
    join(old, lines, n - 1, true);
    m = fmemopen(out, sizeof(out), "w");
    rc = audit_verify(both, 2, NULL, m);
    fclose(m);
    CHECK(rc == 1 && strstr(out, "rot.log:1: goes on from seq 6"),
          "a rotated file that does not follow the one before is found");
    free(text);
}

static void json_escape(void)
{
    char out[64];
    size_t n = log_json_escape(out, sizeof(out), "a\"b\\c\x01\xc3\xa9\xff", 9);
    CHECK(n == strlen("a\\\"b\\\\c\\u0001\xc3\xa9\xef\xbf\xbd") &&
              !strcmp(out, "a\\\"b\\\\c\\u0001\xc3\xa9\xef\xbf\xbd"),
          "JSON escaping: quotes, backslashes, controls, UTF-8 kept, bad bytes as U+FFFD");
    n = log_json_escape(out, 8, "\x01\x02\x03", 3);
    CHECK(n == 6 && !strcmp(out, "\\u0001"), "JSON escaping cuts at a whole escape");
}

int main(void)
{
    if (check_mkdtemp(dir, sizeof(dir), "coffre-audit") < 0)
        return 1;
    tamper(LOG_FORMAT_TEXT);
    tamper(LOG_FORMAT_JSON);
    rotation_and_two_writers();
    json_escape();
    check_rmtree(dir);
    return check_summary();
}
