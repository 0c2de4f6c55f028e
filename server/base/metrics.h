/* Process-wide metrics, written in the OpenMetrics text format
 * (https://openmetrics.io, the exposition format Prometheus reads) for the
 * HTTP listener's GET /metrics and for `coffrectl stats`.
 *
 * A fixed registry (metrics.c): counters, gauges and histograms whose
 * label values come from small fixed sets (a protocol, a command of a
 * command table, a mechanism, a reply code); never a user name or a string
 * a client chose. Updates are relaxed atomic additions to static cells,
 * from any thread, with no allocation and no lock. With `metrics = no`
 * every update is one predictable branch on metrics_on and nothing else. */
#ifndef COFFRE_METRICS_H
#define COFFRE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/base/buf.h"

/* The `metrics` setting; set once at start, before any thread runs. */
extern bool metrics_on;
void metrics_enable(bool on);

/* Appends every metric family coffred keeps, then the closing "# EOF"
 * line. Loop thread. */
void metrics_render(struct buf *out);

/* The families updated by index (the others have helpers below). */
enum metrics_id {
    METRICS_LOGIN_THROTTLED, /* counter: logins held by the failure throttle */
    METRICS_FSYNC_SECONDS,   /* histogram {what}: enum metrics_fsync */
    METRICS_COMMIT_SECONDS,  /* histogram: an index transaction's COMMIT */
    METRICS_ID_N
};
enum metrics_fsync { METRICS_FSYNC_MESSAGE, METRICS_FSYNC_DIRECTORY };

void metrics_add_(enum metrics_id id, unsigned idx, uint64_t n);
void metrics_observe_(enum metrics_id id, unsigned idx, uint64_t ns);
uint64_t metrics_clock_(void);

static inline void metrics_count(enum metrics_id id, unsigned idx)
{
    if (metrics_on)
        metrics_add_(id, idx, 1);
}

/* A start time for metrics_since (0 when metrics are off). */
static inline uint64_t metrics_now(void)
{
    return metrics_on ? metrics_clock_() : 0;
}

/* Observes the time since t0 (from metrics_now) in a histogram. */
static inline void metrics_since(enum metrics_id id, unsigned idx, uint64_t t0)
{
    if (t0)
        metrics_observe_(id, idx, metrics_clock_() - t0);
}

/* ---- connections (server/conn.c) ---- */

/* A connection's place in the open-connections gauge; zeroed with the
 * connection (not counted). */
struct metrics_conn {
    bool counted;
    uint8_t proto, tls;
};
/* Accepted on the listener of service ("imap", "imaps", "pop3", "pop3s",
 * "lmtp", "http", "https"; another is not counted). */
void metrics_conn_open(struct metrics_conn *m, const char *service);
/* Its TLS handshake succeeded with version ("TLS1.3", as GnuTLS names it). */
void metrics_conn_tls(struct metrics_conn *m, const char *version);
void metrics_conn_close(struct metrics_conn *m);

/* ---- logins (protocol/imap, protocol/pop3) ---- */

enum metrics_login_proto { METRICS_LOGIN_IMAP, METRICS_LOGIN_POP3 };
enum metrics_mech {
    METRICS_MECH_PLAIN,         /* SASL PLAIN */
    METRICS_MECH_LOGIN,         /* SASL LOGIN */
    METRICS_MECH_LOGIN_COMMAND, /* IMAP LOGIN */
    METRICS_MECH_USER_PASS,     /* POP3 USER and PASS */
    METRICS_MECH_SCRAM,         /* SASL SCRAM-SHA-256 and -PLUS */
    METRICS_MECH_EXTERNAL,      /* SASL EXTERNAL (client certificate) */
};
enum metrics_login_result {
    METRICS_LOGIN_OK,
    METRICS_LOGIN_FAILED,   /* wrong password or unknown user */
    METRICS_LOGIN_DISABLED, /* right password, account disabled */
    METRICS_LOGIN_TEMPFAIL, /* database or system error */
    METRICS_LOGIN_REFUSED,  /* too many logins in progress: not checked */
};
void metrics_login(enum metrics_login_proto p, enum metrics_mech m, enum metrics_login_result r);

/* ---- commands ---- */

enum metrics_cmdset { METRICS_CMD_IMAP, METRICS_CMD_POP3 };
/* At most this many commands per table; past it, and for a name not in
 * the table, "unknown". */
#define METRICS_CMD_MAX 128
#define METRICS_CMD_UNKNOWN 0xffffu
/* The command names, from a table of n rows whose first row's name is at
 * first and the next ones stride bytes apart. The strings are borrowed
 * for the life of the process. Loop thread; cheap when already known. */
void metrics_command_names(enum metrics_cmdset set, const char *const *first, size_t n,
                           size_t stride);
/* Command cmd (its row in the table, or METRICS_CMD_UNKNOWN) answered:
 * IMAP with status "OK", "NO" or "BAD"; t0 from metrics_now() when it
 * was complete. */
void metrics_imap_command(unsigned cmd, const char *status, uint64_t t0);
void metrics_pop3_command(unsigned cmd, uint64_t t0);

/* ---- LMTP (protocol/lmtp) ---- */

/* A recipient answered at RCPT with code ("550 5.1.1"): a refusal is
 * counted, an acceptance is not (its delivery is). */
void metrics_lmtp_rcpt(const char *code);
/* A recipient's delivery answered at the end of DATA or BDAT: "250 ..."
 * counts a delivery of bytes, any other code a refusal. */
void metrics_lmtp_delivery(const char *code, uint64_t bytes);

/* ---- the thread pool (protocol/mailuser/job.c) ---- */

/* A job was started; returns its start time (0 when metrics are off). */
uint64_t metrics_job_started(void);
/* It was handed to libuv's pool (left its account's queue). */
void metrics_job_pooled(void);
/* On a pool thread: it begins to run (its wait ends), then ends. */
void metrics_job_begin(uint64_t t0);
void metrics_job_end(void);

/* ---- sampled at render (loop thread) ---- */

struct metrics_stores {
    uint64_t open;     /* index files open (or opening, closing) */
    uint64_t asleep;   /* held, index closed (storage_sleep) */
    uint64_t kept;     /* nobody holds them: kept open for a while */
    uint64_t waiting;  /* opens waiting for room (mail_max_open) */
    uint64_t fts_left; /* texts waiting for the full-text index */
};
/* fn fills in the stores' figures when the metrics are written. */
void metrics_stores_sampler(void (*fn)(struct metrics_stores *out));

#endif
