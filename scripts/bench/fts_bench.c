/* Benchmark driver for the full-text indexer: "fts_bench DATA_DIR N"
 * reads N messages from stdin as `imap_client genstream 1 N` prints them
 * (a line with the length, then the bytes) and appends them to INBOX of
 * account 1 under DATA_DIR; "fts_bench DATA_DIR 0" appends none. Then
 * (not measured above) it moves the waiting texts into the full-text index
 * (storage_fts_index) and prints the CPU time (user + system, getrusage)
 * of that step, in all and per message indexed. With FTS_BENCH_NOINDEX
 * set it stops before indexing, so that a copy of DATA_DIR can be indexed
 * again and again. Not a test. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "storage/storage.h"

static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

int main(int argc, char **argv)
{
    struct storage_user *u;
    struct storage_mbox m;
    struct storage_status st;
    unsigned long n, len;
    char *buf = NULL;
    size_t cap = 0;
    uint32_t uid;
    double t;
    int rc;

    if (argc != 3) {
        fprintf(stderr, "usage: %s DATA_DIR N < genstream\n", argv[0]);
        return 2;
    }
    n = strtoul(argv[2], NULL, 10);
    if ((rc = storage_open(argv[1], 1, &u)) != 0 || (rc = storage_mbox_get(u, "INBOX", &m)) != 0) {
        fprintf(stderr, "open: %s\n", storage_strerror(rc));
        return 1;
    }
    for (unsigned long i = 0; i < n; i++) {
        if (scanf("%lu", &len) != 1 || getchar() != '\n') {
            fprintf(stderr, "short input at message %lu\n", i + 1);
            return 1;
        }
        if (len > cap && !(buf = realloc(buf, cap = len)))
            return 1;
        if (fread(buf, 1, len, stdin) != len) {
            fprintf(stderr, "short message %lu\n", i + 1);
            return 1;
        }
        if ((rc = storage_append(u, m.id, buf, len, 0, NULL, 0, 0, &uid)) != 0) {
            fprintf(stderr, "append: %s\n", storage_strerror(rc));
            return 1;
        }
    }
    free(buf);
    if (getenv("FTS_BENCH_NOINDEX")) {
        storage_close(u);
        return 0;
    }
    if ((rc = storage_mbox_status(u, m.id, &st)) != 0) {
        fprintf(stderr, "status: %s\n", storage_strerror(rc));
        return 1;
    }
    n = st.messages;
    t = cpu_ms();
    if ((rc = storage_fts_index(u, 0, NULL)) != 0) {
        fprintf(stderr, "fts index: %s\n", storage_strerror(rc));
        return 1;
    }
    t = cpu_ms() - t;
    printf("fts_index_cpu_ms %.1f per_message_ms %.3f messages %lu\n", t, t / (double)n, n);
    storage_close(u);
    return 0;
}
