/* Unit test of drafts (storage/message.c): whatever the pieces a message
 * is written in (one byte, odd sizes, one piece of 200 kB, CR and LF of
 * one line end in two pieces), the file saved holds the message with
 * every bare LF made CRLF and every CRLF kept, its size is the file's,
 * and what the index keeps of it (envelope, body structure) is the same
 * whether the message was parsed in memory (small) or read back from its
 * file (past the draft's buffer). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/storage.h"
#include "tests/unit/check.h"

static struct storage_user *u;
static int64_t inbox;

/* A message with body_lines lines of body, each ending in CRLF, or in a
 * bare LF for every third line when mixed. */
static size_t message(char *m, size_t cap, unsigned body_lines, bool mixed)
{
    size_t n = (size_t)snprintf(m, cap,
                                "From: Ann <ann@example.org>\r\nTo: bob@example.org\n"
                                "Subject: draft test\r\nMessage-ID: <d%u@x>\r\n"
                                "Content-Type: text/plain\r\n\r\n",
                                body_lines);
    for (unsigned i = 0; i < body_lines && n + 100 < cap; i++)
        n += (size_t)snprintf(m + n, cap - n, "line %u of the body, with some text after it%s", i,
                              mixed && i % 3 == 0 ? "\n" : "\r\n");
    return n;
}

/* m with every bare LF made CRLF. */
static size_t crlf(const char *m, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r'))
            out[k++] = '\r';
        out[k++] = m[i];
    }
    return k;
}

struct got {
    char *envelope, *bodystructure;
    uint64_t size;
};

static int got_cb(void *arg, const struct storage_msg *m)
{
    struct got *g = arg;
    g->envelope = m->envelope ? strdup(m->envelope) : NULL;
    g->bodystructure = m->bodystructure ? strdup(m->bodystructure) : NULL;
    g->size = m->size;
    return 0;
}

/* Saves m written in pieces of step bytes (0: in one piece); checks the
 * file against want and returns what the index holds of it. */
static bool save_in_pieces(const char *m, size_t n, size_t step, const char *want, size_t wantn,
                           struct got *g)
{
    struct storage_draft *d = NULL;
    uint32_t uid = 0;
    bool ok = storage_draft_new(u, 0, &d) == 0;

    for (size_t i = 0; ok && i < n; i += step ? step : n) {
        size_t k = step && n - i > step ? step : n - i;
        ok = storage_draft_write(d, m + i, k) == 0;
    }
    ok = ok && storage_draft_finish(d) == 0 && storage_draft_size(d) == wantn &&
         storage_save(u, inbox, d, 0, NULL, 0, 0, &uid) == 0;
    storage_draft_free(d);
    if (!ok)
        return false;

    int fd = -1;
    uint64_t size = 0;
    char *buf = malloc(wantn + 1);
    ok = buf && storage_msg_open(u, inbox, uid, &fd, &size) == 0 && size == wantn &&
         pread(fd, buf, wantn + 1, 0) == (ssize_t)wantn && memcmp(buf, want, wantn) == 0;
    if (fd >= 0)
        close(fd);
    free(buf);
    struct storage_range r = {uid, uid};
    struct storage_uidset set = {1, &r};
    memset(g, 0, sizeof(*g));
    return ok &&
           storage_fetch(u, inbox, &set, STORAGE_FETCH_ENVELOPE | STORAGE_FETCH_BODYSTRUCTURE,
                         got_cb, g) == 0 &&
           g->size == wantn && g->envelope && g->bodystructure;
}

static void got_free(struct got *g)
{
    free(g->envelope);
    free(g->bodystructure);
}

int main(void)
{
    char dir[256];
    struct storage_mbox mb;
    bool ok = true;
    static const size_t steps[] = {0, 1, 7, 4096, 65535, 65536, 70001};

    if (check_mkdtemp(dir, sizeof(dir), "coffre-draft") != 0)
        return 1;
    CHECK(storage_open(dir, 1, &u) == 0 && storage_mbox_get(u, "INBOX", &mb) == 0, "store");
    inbox = mb.id;

    /* 3,000 body lines: about 150 kB, past the draft's buffer; 40: 2 kB */
    for (int big = 0; big < 2; big++) {
        for (int mixed = 0; mixed < 2; mixed++) {
            size_t cap = 400000;
            char *m = malloc(cap), *want = malloc(2 * cap);
            size_t n = message(m, cap, big ? 3000 : 40, mixed), wn = crlf(m, n, want);
            struct got first = {0};
            for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
                struct got g;
                char what[160];
                snprintf(what, sizeof(what), "%s message, %s line ends, pieces of %zu bytes",
                         big ? "150 kB" : "2 kB", mixed ? "mixed" : "CRLF", steps[s]);
                char w2[200];
                ok = save_in_pieces(m, n, steps[s], want, wn, &g);
                snprintf(w2, sizeof(w2), "%s: saved as CRLF", what);
                CHECK(ok, w2);
                if (!ok)
                    continue;
                if (s == 0) {
                    first = g;
                    continue;
                }
                snprintf(w2, sizeof(w2), "%s: the same envelope and body structure", what);
                CHECK(first.envelope && strcmp(g.envelope, first.envelope) == 0 &&
                          strcmp(g.bodystructure, first.bodystructure) == 0,
                      w2);
                got_free(&g);
            }
            /* the envelope's subject and the body structure's line count
             * come from the parse, wherever it read the message */
            CHECK(first.envelope && strstr(first.envelope, "\"draft test\""), "subject parsed");
            if (first.bodystructure) {
                char lines[32];
                snprintf(lines, sizeof(lines), " %u", big ? 3000u : 40u);
                CHECK(strstr(first.bodystructure, lines) != NULL, "lines counted");
            }
            got_free(&first);
            free(m);
            free(want);
        }
    }
    storage_close(u);
    check_rmtree(dir);
    return check_summary();
}
