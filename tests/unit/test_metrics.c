/* Unit tests of the metrics registry and its OpenMetrics text: exact
 * counts after known updates, histogram buckets cumulative with _count the
 * number of observations, label values escaped, unknown commands folded
 * into "unknown", nothing counted with metrics off, and no update lost when
 * several threads count at once. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "server/base/metrics.h"

/* The rendered text, owned by the caller. */
static char *render(void)
{
    struct buf b = {0};
    metrics_render(&b);
    buf_add(&b, "", 1);
    if (b.oom)
        return NULL;
    return b.p;
}

/* The value of the sample line starting with name (name includes the
 * labels), -1 when it is not there. */
static long long value(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (!strncmp(p, name, n) && p[n] == ' ')
            return strtoll(p + n + 1, NULL, 10);
    }
    return -1;
}

static void test_empty(void)
{
    char *t = render();
    CHECK(t != NULL, "renders");
    size_t len = strlen(t);
    CHECK(len > 6 && !strcmp(t + len - 6, "# EOF\n"), "ends with # EOF");
    CHECK(strstr(t, "# TYPE coffre_connections counter\n") != NULL, "TYPE line of a counter");
    CHECK(strstr(t, "# TYPE coffre_imap_command_seconds histogram\n"
                    "# UNIT coffre_imap_command_seconds seconds\n") != NULL,
          "TYPE then UNIT of a histogram");
    CHECK(value(t, "coffre_connections_total{protocol=\"imaps\"}") == 0,
          "a dense family lists its zero counts");
    CHECK(strstr(t, "coffre_imap_commands_total{") == NULL, "a sparse family lists nothing yet");
    CHECK(value(t, "coffre_storage_commit_seconds_count") == 0, "an unlabelled histogram at 0");
    CHECK(value(t, "process_open_fds") > 2, "open descriptors counted");
    CHECK(value(t, "process_max_fds") > 0, "the open-file limit");
    free(t);
}

static const struct {
    const char *name;
    int x;
} table[] = {{"NOOP", 1}, {"FETCH", 2}, {"UID FETCH", 3}, {"ODD\"NAME\\", 4}};

static void test_counts(void)
{
    metrics_command_names(METRICS_CMD_IMAP, &table[0].name, 4, sizeof(table[0]));

    uint64_t t0 = metrics_now();
    CHECK(t0 != 0, "metrics_now gives a time");
    metrics_imap_command(1, "OK", t0);
    metrics_imap_command(1, "OK", t0);
    metrics_imap_command(1, "NO", t0);
    metrics_imap_command(2, "BAD", t0);
    metrics_imap_command(METRICS_CMD_UNKNOWN, "BAD", t0);
    metrics_imap_command(40, "BAD", t0); /* past the table */
    metrics_imap_command(3, "OK", t0);

    struct metrics_conn a = {0}, b = {0}, c = {0};
    metrics_conn_open(&a, "imaps");
    metrics_conn_tls(&a, "TLS1.3");
    metrics_conn_open(&b, "imaps");
    metrics_conn_open(&c, "lmtp");
    metrics_conn_close(&c);
    metrics_conn_close(&c); /* a second close changes nothing */
    struct metrics_conn d = {0};
    metrics_conn_open(&d, "gopher");
    metrics_conn_tls(&d, "TLS1.2");
    metrics_conn_close(&d);

    metrics_login(METRICS_LOGIN_IMAP, METRICS_MECH_LOGIN_COMMAND, METRICS_LOGIN_OK);
    metrics_login(METRICS_LOGIN_IMAP, METRICS_MECH_LOGIN_COMMAND, METRICS_LOGIN_FAILED);
    metrics_login(METRICS_LOGIN_IMAP, METRICS_MECH_LOGIN_COMMAND, METRICS_LOGIN_FAILED);
    metrics_login(METRICS_LOGIN_POP3, METRICS_MECH_USER_PASS, METRICS_LOGIN_REFUSED);
    metrics_count(METRICS_LOGIN_THROTTLED, 0);

    metrics_lmtp_rcpt("250 2.1.5");
    metrics_lmtp_rcpt("550 5.1.1");
    metrics_lmtp_rcpt("599 9.9.9");
    metrics_lmtp_delivery("250 2.0.0", 1000);
    metrics_lmtp_delivery("250 2.0.0", 234);
    metrics_lmtp_delivery("552 5.2.2", 99);

    /* one observation per bucket edge: 100 us is in le=0.0001, just over
     * it in le=0.00025, 20 s only in +Inf */
    metrics_observe_(METRICS_COMMIT_SECONDS, 0, 100000);
    metrics_observe_(METRICS_COMMIT_SECONDS, 0, 100001);
    metrics_observe_(METRICS_COMMIT_SECONDS, 0, 20000000000ull);
    metrics_observe_(METRICS_FSYNC_SECONDS, METRICS_FSYNC_DIRECTORY, 3000000);

    uint64_t j1 = metrics_job_started();
    metrics_job_started();
    uint64_t j3 = metrics_job_started();
    metrics_job_pooled();
    metrics_job_pooled();
    metrics_job_begin(j1);
    metrics_job_begin(j3);
    metrics_job_end();

    char *t = render();
    CHECK(value(t, "coffre_imap_commands_total{command=\"FETCH\",result=\"ok\"}") == 2, "FETCH ok");
    CHECK(value(t, "coffre_imap_commands_total{command=\"FETCH\",result=\"no\"}") == 1, "FETCH no");
    CHECK(value(t, "coffre_imap_commands_total{command=\"UID FETCH\",result=\"bad\"}") == 1,
          "two-word command");
    CHECK(value(t, "coffre_imap_commands_total{command=\"unknown\",result=\"bad\"}") == 2,
          "unknown and out-of-table commands are \"unknown\"");
    CHECK(value(t, "coffre_imap_commands_total{command=\"ODD\\\"NAME\\\\\",result=\"ok\"}") == 1,
          "label value escaped");
    CHECK(value(t, "coffre_imap_commands_total{command=\"NOOP\",result=\"ok\"}") == -1,
          "a command never sent is left out");
    CHECK(value(t, "coffre_imap_command_seconds_count{command=\"FETCH\"}") == 3,
          "histogram _count is the command count");
    CHECK(value(t, "coffre_imap_command_seconds_bucket{command=\"FETCH\",le=\"+Inf\"}") == 3,
          "+Inf bucket is the count");

    CHECK(value(t, "coffre_connections_total{protocol=\"imaps\"}") == 2, "imaps accepted");
    CHECK(value(t, "coffre_connections_total{protocol=\"lmtp\"}") == 1, "lmtp accepted");
    CHECK(value(t, "coffre_connections_open{protocol=\"imaps\",tls=\"TLS1.3\"}") == 1,
          "open with TLS 1.3");
    CHECK(value(t, "coffre_connections_open{protocol=\"imaps\",tls=\"none\"}") == 1,
          "open before any handshake");
    CHECK(value(t, "coffre_connections_open{protocol=\"lmtp\",tls=\"none\"}") == 0,
          "closed once, counted once");
    CHECK(value(t, "coffre_tls_handshakes_total{protocol=\"imaps\",version=\"TLS1.3\"}") == 1,
          "handshake counted");

    CHECK(value(t, "coffre_logins_total{protocol=\"imap\",mechanism=\"login_command\","
                   "result=\"failed\"}") == 2,
          "failed logins");
    CHECK(value(t, "coffre_logins_total{protocol=\"pop3\",mechanism=\"user_pass\","
                   "result=\"refused\"}") == 1,
          "refused login");
    CHECK(value(t, "coffre_login_throttled_total") == 1, "throttled");

    CHECK(value(t, "coffre_lmtp_deliveries_total") == 2, "deliveries");
    CHECK(value(t, "coffre_lmtp_delivered_bytes_total") == 1234, "bytes of the deliveries");
    CHECK(value(t, "coffre_lmtp_rejections_total{code=\"550 5.1.1\"}") == 1, "550 5.1.1");
    CHECK(value(t, "coffre_lmtp_rejections_total{code=\"552 5.2.2\"}") == 1, "552 5.2.2");
    CHECK(value(t, "coffre_lmtp_rejections_total{code=\"other\"}") == 1, "another code");
    CHECK(strstr(t, "# UNIT coffre_lmtp_delivered_bytes bytes\n") != NULL, "bytes unit");

    CHECK(value(t, "coffre_storage_commit_seconds_bucket{le=\"0.0001\"}") == 1, "le is inclusive");
    CHECK(value(t, "coffre_storage_commit_seconds_bucket{le=\"0.00025\"}") == 2, "cumulative");
    CHECK(value(t, "coffre_storage_commit_seconds_bucket{le=\"10.0\"}") == 2, "20 s past 10");
    CHECK(value(t, "coffre_storage_commit_seconds_bucket{le=\"+Inf\"}") == 3, "+Inf");
    CHECK(value(t, "coffre_storage_commit_seconds_count") == 3, "_count");
    CHECK(strstr(t, "\ncoffre_storage_commit_seconds_sum 20.000200001\n") != NULL,
          "_sum in seconds");
    CHECK(value(t, "coffre_storage_fsync_seconds_bucket{what=\"directory\",le=\"0.005\"}") == 1,
          "labelled histogram bucket");
    CHECK(value(t, "coffre_storage_fsync_seconds_bucket{what=\"directory\",le=\"0.0025\"}") == 0,
          "below the observation");

    CHECK(value(t, "coffre_pool_jobs{state=\"waiting\"}") == 1, "jobs waiting");
    CHECK(value(t, "coffre_pool_jobs{state=\"queued\"}") == 0, "jobs queued");
    CHECK(value(t, "coffre_pool_jobs{state=\"running\"}") == 1, "jobs running");
    CHECK(value(t, "coffre_pool_wait_seconds_count") == 2, "pool waits observed");
    free(t);
}

static void sample_stores(struct metrics_stores *out)
{
    out->open = 3;
    out->asleep = 2;
    out->kept = 1;
    out->fts_left = 17;
}

static void test_sampler(void)
{
    metrics_stores_sampler(sample_stores);
    char *t = render();
    CHECK(value(t, "coffre_stores{state=\"open\"}") == 3, "stores open");
    CHECK(value(t, "coffre_stores{state=\"asleep\"}") == 2, "stores asleep");
    CHECK(value(t, "coffre_stores{state=\"kept\"}") == 1, "stores kept");
    CHECK(value(t, "coffre_stores{state=\"waiting\"}") == 0, "opens waiting");
    CHECK(value(t, "coffre_fts_waiting_texts") == 17, "full-text texts waiting");
    free(t);
}

static void test_off(void)
{
    char *before = render();
    metrics_enable(false);
    CHECK(metrics_now() == 0, "no time taken when off");
    metrics_imap_command(1, "OK", metrics_now());
    metrics_pop3_command(0, metrics_now());
    struct metrics_conn m = {0};
    metrics_conn_open(&m, "pop3");
    metrics_conn_tls(&m, "TLS1.2");
    metrics_conn_close(&m);
    metrics_login(METRICS_LOGIN_IMAP, METRICS_MECH_PLAIN, METRICS_LOGIN_OK);
    metrics_count(METRICS_LOGIN_THROTTLED, 0);
    metrics_since(METRICS_COMMIT_SECONDS, 0, metrics_now());
    metrics_lmtp_rcpt("550 5.1.1");
    metrics_lmtp_delivery("250 2.0.0", 5);
    metrics_job_begin(metrics_job_started());
    metrics_job_pooled();
    metrics_job_end();
    char *after = render();
    /* the process's own figures move; cut the text before them */
    char *pb = strstr(before, "# TYPE process_"), *pa = strstr(after, "# TYPE process_");
    CHECK(pb && pa && pb - before == pa - after && !memcmp(before, after, (size_t)(pb - before)),
          "nothing counted with metrics off");
    metrics_enable(true);
    free(before);
    free(after);
}

#define THREADS 4
#define PER_THREAD 200000

static void *counter(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_count(METRICS_LOGIN_THROTTLED, 0);
        metrics_observe_(METRICS_FSYNC_SECONDS, METRICS_FSYNC_MESSAGE, 1000);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t th[THREADS];
    char *t = render();
    long long before = value(t, "coffre_login_throttled_total");
    free(t);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, counter, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    t = render();
    CHECK(value(t, "coffre_login_throttled_total") - before == (long long)THREADS * PER_THREAD,
          "no update lost between threads");
    CHECK(value(t, "coffre_storage_fsync_seconds_count{what=\"message\"}") ==
              (long long)THREADS * PER_THREAD,
          "no observation lost between threads");
    free(t);
}

int main(void)
{
    test_empty();
    test_counts();
    test_sampler();
    test_off();
    test_threads();
    return check_summary();
}
