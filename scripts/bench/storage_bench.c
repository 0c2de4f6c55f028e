/* Benchmark driver for scripts/bench/storage: "gen DIR N" writes N generated
 * messages (CRLF, a few KB, 1% of them containing the word "zeppelin") into
 * DIR as Maildir files; "run DATA_DIR SRC100K" times the storage API:
 * append 10,000 messages, index an existing 100,000-message Maildir, open
 * it, fetch all flags, set a flag on all, full-text search a word (before
 * and after the texts are moved into the full-text index, which is timed).
 * Prints "name milliseconds" lines. Not a test. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "storage/storage.h"

static const char *const words[] = {
    "alpha",  "bravo",   "charlie",  "delta",   "echo",     "foxtrot", "golf",
    "hotel",  "india",   "juliet",   "kilo",    "lima",     "mike",    "november",
    "oscar",  "papa",    "quebec",   "romeo",   "sierra",   "tango",   "uniform",
    "victor", "whiskey", "xray",     "yankee",  "zulu",     "meeting", "report",
    "budget", "invoice", "schedule", "project", "deadline", "review",  "draft"};

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static size_t gen(char *buf, size_t cap, unsigned i)
{
    size_t n = (size_t)snprintf(buf, cap,
                                "From: Sender %u <s%u@example.org>\r\n"
                                "To: bench@example.org\r\n"
                                "Subject: %s %s number %u\r\n"
                                "Date: Mon, 7 Feb 2022 21:52:25 +0000\r\n"
                                "Message-ID: <%u@bench.example.org>\r\n"
                                "\r\n",
                                i, i, words[rnd() % 35], words[rnd() % 35], i, i);
    size_t target = 1500 + rnd() % 3000;
    while (n < target && n + 100 < cap) {
        for (int w = 0; w < 10; w++)
            n += (size_t)snprintf(buf + n, cap - n, "%s ", words[rnd() % 35]);
        if (i % 100 == 7 && rnd() % 4 == 0)
            n += (size_t)snprintf(buf + n, cap - n, "zeppelin ");
        buf[n++] = '\r';
        buf[n++] = '\n';
    }
    if (i % 100 == 7)
        n += (size_t)snprintf(buf + n, cap - n, "the zeppelin landed\r\n");
    return n;
}

static int do_gen(const char *dir, unsigned count)
{
    char buf[8192], path[4096];
    for (unsigned i = 1; i <= count; i++) {
        size_t n = gen(buf, sizeof(buf), i);
        snprintf(path, sizeof(path), "%s/%u.bench%u.host:2,", dir, 1600000000u + i, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, buf, n) != (ssize_t)n) {
            perror(path);
            return 1;
        }
        close(fd);
    }
    return 0;
}

static int count_cb(void *arg, const struct storage_msg *m)
{
    (*(size_t *)arg) += m->flags + 1;
    return 0;
}

static int link_all(const char *src, const char *dst)
{
    DIR *d = opendir(src);
    struct dirent *de;
    char a[4096], b[4096];
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(a, sizeof(a), "%s/%s", src, de->d_name);
        snprintf(b, sizeof(b), "%s/%s", dst, de->d_name);
        if (link(a, b) < 0) {
            perror(b);
            closedir(d);
            return -1;
        }
    }
    closedir(d);
    return 0;
}

/* Runs q in mbox and prints "<label> <ms>" and "<hits_label> <hits>"; -1
 * after an error. */
static int search_timed(struct storage_user *u, int64_t mbox, const struct storage_search *q,
                        const char *label, const char *hits_label)
{
    struct storage_uidlist l;
    double t = now_ms();
    int rc = storage_search(u, mbox, q, &l);

    if (rc != 0) {
        fprintf(stderr, "search: %s\n", storage_strerror(rc));
        return -1;
    }
    printf("%s %.1f\n", label, now_ms() - t);
    printf("%s %zu\n", hits_label, l.n);
    storage_uidlist_free(&l);
    return 0;
}

static int do_run(const char *data, const char *src100k)
{
    struct storage_user *u;
    struct storage_mbox m;
    struct storage_status st;
    struct storage_uidlist l;
    char buf[8192], path[4096];
    double t;
    uint32_t uid;
    int rc;

    /* 1. append 10,000 messages, each durable before the next */
    if ((rc = storage_open(data, 1, &u)) != 0 || (rc = storage_mbox_get(u, "INBOX", &m)) != 0) {
        fprintf(stderr, "open: %s\n", storage_strerror(rc));
        return 1;
    }
    t = now_ms();
    for (unsigned i = 1; i <= 10000; i++) {
        size_t n = gen(buf, sizeof(buf), i);
        if ((rc = storage_append(u, m.id, buf, n, 0, NULL, 0, 0, &uid)) != 0) {
            fprintf(stderr, "append: %s\n", storage_strerror(rc));
            return 1;
        }
    }
    printf("append_10k %.1f\n", now_ms() - t);
    storage_close(u);

    /* 2. a 100,000-message Maildir without an index: the first open indexes it */
    snprintf(path, sizeof(path), "%s/users/2", data);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/users/2/Maildir", data);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/users/2/Maildir/cur", data);
    mkdir(path, 0700);
    if (link_all(src100k, path) != 0)
        return 1;
    t = now_ms();
    if ((rc = storage_open(data, 2, &u)) != 0) {
        fprintf(stderr, "open 100k: %s\n", storage_strerror(rc));
        return 1;
    }
    printf("index_100k %.1f\n", now_ms() - t);
    storage_close(u);

    /* 3. open the 100,000-message mailbox: what SELECT needs */
    t = now_ms();
    if ((rc = storage_open(data, 2, &u)) != 0 || (rc = storage_mbox_get(u, "INBOX", &m)) != 0 ||
        (rc = storage_mbox_status(u, m.id, &st)) != 0 || (rc = storage_uids(u, m.id, &l)) != 0) {
        fprintf(stderr, "open: %s\n", storage_strerror(rc));
        return 1;
    }
    printf("open_100k %.1f\n", now_ms() - t);
    if (st.messages != 100000)
        fprintf(stderr, "warning: %u messages\n", st.messages);
    storage_uidlist_free(&l);

    /* 4. fetch the flags of all */
    {
        size_t acc = 0;
        t = now_ms();
        if ((rc = storage_fetch(u, m.id, NULL, 0, count_cb, &acc)) != 0) {
            fprintf(stderr, "fetch: %s\n", storage_strerror(rc));
            return 1;
        }
        printf("fetch_flags_100k %.1f\n", now_ms() - t);
    }

    /* 5. set a flag on all (one transaction); file names catch up after */
    t = now_ms();
    if ((rc = storage_store(u, m.id, NULL, STORAGE_STORE_ADD, STORAGE_FLAG_FLAGGED, NULL, 0, 0,
                            NULL, NULL, NULL)) != 0) {
        fprintf(stderr, "store: %s\n", storage_strerror(rc));
        return 1;
    }
    printf("store_flag_100k %.1f\n", now_ms() - t);
    t = now_ms();
    if ((rc = storage_sync_flags(u, 0, NULL, NULL)) != 0) {
        fprintf(stderr, "sync: %s\n", storage_strerror(rc));
        return 1;
    }
    printf("sync_flag_names_100k %.1f\n", now_ms() - t);

    /* 6. full-text search of a word: first with the texts still waiting
     * outside the full-text index (as the rebuild leaves them: a scan),
     * then with all of them indexed, which coffred does in the background */
    {
        struct storage_search q = {.op = STORAGE_SEARCH_TEXT, .str = "zeppelin"};
        if (search_timed(u, m.id, &q, "search_text_waiting_100k", "search_hits_waiting") != 0)
            return 1;
        t = now_ms();
        if ((rc = storage_fts_index(u, 0, NULL)) != 0) {
            fprintf(stderr, "fts index: %s\n", storage_strerror(rc));
            return 1;
        }
        printf("fts_index_100k %.1f\n", now_ms() - t);
        if (search_timed(u, m.id, &q, "search_text_100k", "search_hits") != 0)
            return 1;
    }
    storage_close(u);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "gen") == 0)
        return do_gen(argv[2], (unsigned)strtoul(argv[3], NULL, 10));
    if (argc == 4 && strcmp(argv[1], "run") == 0)
        return do_run(argv[2], argv[3]);
    fprintf(stderr, "usage: storage_bench gen DIR N | run DATA_DIR SRC100K\n");
    return 2;
}
