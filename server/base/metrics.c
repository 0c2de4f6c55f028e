/* The metrics registry and its OpenMetrics writer.
 *
 * Each family is a row of families[]: name, type, unit, help, up to three
 * label dimensions (each a fixed list of values) and its cells, one per
 * combination of label values (a histogram's: its buckets, then its sum in
 * nanoseconds). Cells are 64-bit atomics added to with relaxed order from
 * any thread: the loop thread makes most updates (connections, commands),
 * the pool threads the storage and pool ones, a few times per job, so a
 * shared cell is not worth striping. A render reads each cell once;
 * figures of one family may be a few updates apart, never torn. */
#include "server/base/metrics.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

bool metrics_on = true;

void metrics_enable(bool on)
{
    metrics_on = on;
}

uint64_t metrics_clock_(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* never 0: 0 means "not timed" to metrics_since */
    return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) | 1;
}

/* ---- label dimensions ---- */

struct dim {
    const char *name;
    const char **values;
    unsigned used; /* values in use, at most cap */
    unsigned cap;  /* cells set aside per value of the dimensions before */
};

static const char *protocols[] = {"imap", "imaps", "pop3", "pop3s", "lmtp", "http", "https"};
#define NPROTO 7
static struct dim d_protocol = {"protocol", protocols, NPROTO, NPROTO};

static const char *tls_versions[] = {"none", "TLS1.2", "TLS1.3", "other"};
#define NTLS 4
static struct dim d_tls = {"tls", tls_versions, NTLS, NTLS};
static struct dim d_version = {"version", tls_versions, NTLS, NTLS};

static const char *login_protocols[] = {"imap", "pop3"};
static struct dim d_login_proto = {"protocol", login_protocols, 2, 2};
static const char *mechs[] = {"PLAIN",     "LOGIN",         "login_command",
                              "user_pass", "SCRAM-SHA-256", "EXTERNAL"};
static struct dim d_mech = {"mechanism", mechs, 6, 6};
static const char *login_results[] = {"ok", "failed", "disabled", "tempfail", "refused"};
static struct dim d_login_result = {"result", login_results, 5, 5};

/* command names: the table's, then "unknown" */
static const char *imap_names[METRICS_CMD_MAX + 1] = {"unknown"};
static const char *pop3_names[METRICS_CMD_MAX + 1] = {"unknown"};
static struct dim d_imap_cmd = {"command", imap_names, 1, METRICS_CMD_MAX + 1};
static struct dim d_pop3_cmd = {"command", pop3_names, 1, METRICS_CMD_MAX + 1};
static const char *imap_results[] = {"ok", "no", "bad"};
static struct dim d_imap_result = {"result", imap_results, 3, 3};

/* the refusals LMTP answers to a recipient, the last for any other */
static const char *lmtp_codes[] = {"550 5.1.1", "550 5.2.1", "501 5.1.3", "452 4.5.3", "451 4.3.0",
                                   "552 5.3.4", "552 5.2.2", "452 4.2.2", "other"};
#define NCODES (sizeof(lmtp_codes) / sizeof(lmtp_codes[0]))
static struct dim d_code = {"code", lmtp_codes, NCODES, NCODES};

static const char *fsync_whats[] = {"message", "directory"};
static struct dim d_fsync = {"what", fsync_whats, 2, 2};

static const char *job_states[] = {"waiting", "queued", "running"};
static struct dim d_job_state = {"state", job_states, 3, 3};

static const char *store_states[] = {"open", "asleep", "kept", "waiting"};
static struct dim d_store_state = {"state", store_states, 4, 4};

/* ---- histograms ---- */

/* Bucket bounds in nanoseconds, and as "le" writes them; then +Inf. */
static const uint64_t bounds_ns[] = {
    100000,   250000,    500000,    1000000,   2500000,    5000000,    10000000,   25000000,
    50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};
static const char *const bounds_le[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                        "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
                                        "1.0",    "2.5",     "5.0",    "10.0"};
#define NBOUNDS (sizeof(bounds_ns) / sizeof(bounds_ns[0]))
#define HCELLS (NBOUNDS + 2) /* the buckets, +Inf, the sum */

/* ---- the cells ---- */

typedef _Atomic uint64_t cell;

static cell c_conn[NPROTO];
static cell c_conn_open[NPROTO * NTLS]; /* a gauge: may be read as negative a moment */
static cell c_tls[NPROTO * NTLS];
static cell c_logins[2 * 6 * 5];
static cell c_throttled[1];
static cell c_imap[(METRICS_CMD_MAX + 1) * 3];
static cell c_imap_h[(METRICS_CMD_MAX + 1) * HCELLS];
static cell c_pop3[METRICS_CMD_MAX + 1];
static cell c_pop3_h[(METRICS_CMD_MAX + 1) * HCELLS];
static cell c_deliveries[1];
static cell c_delivered_bytes[1];
static cell c_rejections[NCODES];
static cell c_fsync_h[2 * HCELLS];
static cell c_commit_h[HCELLS];
static cell c_pool_wait_h[HCELLS];
/* jobs started, handed to the pool, begun, ended: the gauges are their
 * differences */
static cell c_jobs[4];

static void (*stores_fn)(struct metrics_stores *out);

/* ---- the families ---- */

enum type { COUNTER, GAUGE, HISTOGRAM };

struct family {
    const char *name, *unit, *help;
    enum type type;
    struct dim *dims[3];
    cell *cells;
    bool sparse;              /* label sets never updated are left out */
    void (*fill)(int64_t *v); /* a gauge computed when written */
};

static void fill_jobs(int64_t *v);
static void fill_stores(int64_t *v);
static void fill_fts(int64_t *v);

static const struct family families[] = {
    {.name = "coffre_connections",
     .type = COUNTER,
     .dims = {&d_protocol},
     .cells = c_conn,
     .help = "Connections accepted (past the connection limits)."},
    {.name = "coffre_connections_open",
     .type = GAUGE,
     .dims = {&d_protocol, &d_tls},
     .cells = c_conn_open,
     .help = "Connections open, by TLS version once its handshake ended."},
    {.name = "coffre_tls_handshakes",
     .type = COUNTER,
     .dims = {&d_protocol, &d_version},
     .cells = c_tls,
     .sparse = true,
     .help = "TLS handshakes completed (implicit TLS and STARTTLS)."},
    {.name = "coffre_logins",
     .type = COUNTER,
     .dims = {&d_login_proto, &d_mech, &d_login_result},
     .cells = c_logins,
     .sparse = true,
     .help = "Login attempts answered, by mechanism and result."},
    {.name = "coffre_login_throttled",
     .type = COUNTER,
     .cells = c_throttled,
     .help = "Login attempts held back by the failure throttle before their check."},
    {.name = "coffre_imap_commands",
     .type = COUNTER,
     .dims = {&d_imap_cmd, &d_imap_result},
     .cells = c_imap,
     .sparse = true,
     .help = "IMAP commands answered, by tagged status."},
    {.name = "coffre_imap_command_seconds",
     .unit = "seconds",
     .type = HISTOGRAM,
     .dims = {&d_imap_cmd},
     .cells = c_imap_h,
     .sparse = true,
     .help = "Time from a complete IMAP command to its tagged answer."},
    {.name = "coffre_pop3_commands",
     .type = COUNTER,
     .dims = {&d_pop3_cmd},
     .cells = c_pop3,
     .sparse = true,
     .help = "POP3 commands answered."},
    {.name = "coffre_pop3_command_seconds",
     .unit = "seconds",
     .type = HISTOGRAM,
     .dims = {&d_pop3_cmd},
     .cells = c_pop3_h,
     .sparse = true,
     .help = "Time from a POP3 command line to the end of its answer."},
    {.name = "coffre_lmtp_deliveries",
     .type = COUNTER,
     .cells = c_deliveries,
     .help = "LMTP recipients delivered."},
    {.name = "coffre_lmtp_delivered_bytes",
     .unit = "bytes",
     .type = COUNTER,
     .cells = c_delivered_bytes,
     .help = "Message bytes delivered, once per recipient."},
    {.name = "coffre_lmtp_rejections",
     .type = COUNTER,
     .dims = {&d_code},
     .cells = c_rejections,
     .sparse = true,
     .help = "LMTP recipients refused, at RCPT or after the data."},
    {.name = "coffre_storage_fsync_seconds",
     .unit = "seconds",
     .type = HISTOGRAM,
     .dims = {&d_fsync},
     .cells = c_fsync_h,
     .help = "fsync of a message file or of a Maildir directory."},
    {.name = "coffre_storage_commit_seconds",
     .unit = "seconds",
     .type = HISTOGRAM,
     .cells = c_commit_h,
     .help = "COMMIT of an index transaction."},
    {.name = "coffre_pool_jobs",
     .type = GAUGE,
     .dims = {&d_job_state},
     .fill = fill_jobs,
     .help = "Storage jobs waiting in their account's queue, queued on the pool, running."},
    {.name = "coffre_pool_wait_seconds",
     .unit = "seconds",
     .type = HISTOGRAM,
     .cells = c_pool_wait_h,
     .help = "Time from a storage job's start to its run on a pool thread."},
    {.name = "coffre_stores",
     .type = GAUGE,
     .dims = {&d_store_state},
     .fill = fill_stores,
     .help = "Account stores: index open, asleep, kept with no holder, opens waiting for room."},
    {.name = "coffre_fts_waiting_texts",
     .type = GAUGE,
     .fill = fill_fts,
     .help = "Message texts waiting for the full-text index (as its last run found)."}};
#define NFAMILIES (sizeof(families) / sizeof(families[0]))

/* the cells of the families updated by id */
static cell *const id_cells[METRICS_ID_N] = {
    [METRICS_LOGIN_THROTTLED] = c_throttled,
    [METRICS_FSYNC_SECONDS] = c_fsync_h,
    [METRICS_COMMIT_SECONDS] = c_commit_h,
};

/* ---- updates ---- */

static void add(cell *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static void observe(cell *h, uint64_t ns)
{
    size_t b = 0;
    while (b < NBOUNDS && ns > bounds_ns[b])
        b++;
    add(&h[b], 1);
    add(&h[NBOUNDS + 1], ns);
}

void metrics_add_(enum metrics_id id, unsigned idx, uint64_t n)
{
    add(&id_cells[id][idx], n);
}

void metrics_observe_(enum metrics_id id, unsigned idx, uint64_t ns)
{
    observe(&id_cells[id][(size_t)idx * HCELLS], ns);
}

void metrics_conn_open(struct metrics_conn *m, const char *service)
{
    unsigned p = 0;

    while (p < NPROTO && strcmp(service, protocols[p]))
        p++;
    if (!metrics_on || p == NPROTO)
        return;
    m->counted = true;
    m->proto = (uint8_t)p;
    m->tls = 0;
    add(&c_conn[m->proto], 1);
    add(&c_conn_open[m->proto * NTLS], 1);
}

void metrics_conn_tls(struct metrics_conn *m, const char *version)
{
    if (!m->counted)
        return;
    unsigned v = NTLS - 1;
    for (unsigned i = 1; i < NTLS - 1; i++)
        if (!strcmp(version, tls_versions[i]))
            v = i;
    add(&c_conn_open[m->proto * NTLS + m->tls], (uint64_t)-1);
    add(&c_conn_open[m->proto * NTLS + v], 1);
    add(&c_tls[m->proto * NTLS + v], 1);
    m->tls = (uint8_t)v;
}

void metrics_conn_close(struct metrics_conn *m)
{
    if (m->counted)
        add(&c_conn_open[m->proto * NTLS + m->tls], (uint64_t)-1);
    m->counted = false;
}

void metrics_login(enum metrics_login_proto p, enum metrics_mech m, enum metrics_login_result r)
{
    if (metrics_on)
        add(&c_logins[((unsigned)p * 6 + (unsigned)m) * 5 + (unsigned)r], 1);
}

void metrics_command_names(enum metrics_cmdset set, const char *const *first, size_t n,
                           size_t stride)
{
    struct dim *d = set == METRICS_CMD_IMAP ? &d_imap_cmd : &d_pop3_cmd;

    if (n > METRICS_CMD_MAX)
        n = METRICS_CMD_MAX;
    if (d->used == n + 1)
        return;
    for (size_t i = 0; i < n; i++)
        d->values[i] = *(const char *const *)((const char *)first + i * stride);
    d->values[n] = "unknown";
    d->used = (unsigned)n + 1;
}

/* A command's row, past the table "unknown". */
static unsigned cmd_index(const struct dim *d, unsigned cmd)
{
    return cmd < d->used - 1 ? cmd : d->used - 1;
}

void metrics_imap_command(unsigned cmd, const char *status, uint64_t t0)
{
    if (!t0)
        return;
    uint64_t ns = metrics_clock_() - t0;
    unsigned i = cmd_index(&d_imap_cmd, cmd);
    unsigned r = status[0] == 'O' ? 0 : status[0] == 'N' ? 1 : 2;
    add(&c_imap[i * 3 + r], 1);
    observe(&c_imap_h[(size_t)i * HCELLS], ns);
}

void metrics_pop3_command(unsigned cmd, uint64_t t0)
{
    if (!t0)
        return;
    uint64_t ns = metrics_clock_() - t0;
    unsigned i = cmd_index(&d_pop3_cmd, cmd);
    add(&c_pop3[i], 1);
    observe(&c_pop3_h[(size_t)i * HCELLS], ns);
}

static void lmtp_refused(const char *code)
{
    size_t i;
    for (i = 0; i < NCODES - 1; i++)
        if (!strncmp(code, lmtp_codes[i], 9))
            break;
    add(&c_rejections[i], 1);
}

void metrics_lmtp_rcpt(const char *code)
{
    if (metrics_on && code[0] != '2')
        lmtp_refused(code);
}

void metrics_lmtp_delivery(const char *code, uint64_t bytes)
{
    if (!metrics_on)
        return;
    if (code[0] != '2') {
        lmtp_refused(code);
        return;
    }
    add(c_deliveries, 1);
    add(c_delivered_bytes, bytes);
}

uint64_t metrics_job_started(void)
{
    if (!metrics_on)
        return 0;
    add(&c_jobs[0], 1);
    return metrics_clock_();
}

void metrics_job_pooled(void)
{
    if (metrics_on)
        add(&c_jobs[1], 1);
}

void metrics_job_begin(uint64_t t0)
{
    if (!t0)
        return;
    add(&c_jobs[2], 1);
    observe(c_pool_wait_h, metrics_clock_() - t0);
}

void metrics_job_end(void)
{
    if (metrics_on)
        add(&c_jobs[3], 1);
}

void metrics_stores_sampler(void (*fn)(struct metrics_stores *out))
{
    stores_fn = fn;
}

/* ---- computed gauges ---- */

static uint64_t load(const cell *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void fill_jobs(int64_t *v)
{
    /* read from the last stage back: each count read later is at least
     * the one after it, so no difference is negative */
    uint64_t ended = load(&c_jobs[3]), begun = load(&c_jobs[2]);
    uint64_t pooled = load(&c_jobs[1]), started = load(&c_jobs[0]);
    v[0] = (int64_t)(started - pooled);
    v[1] = (int64_t)(pooled - begun);
    v[2] = (int64_t)(begun - ended);
}

static void fill_stores(int64_t *v)
{
    struct metrics_stores st = {0};
    if (stores_fn)
        stores_fn(&st);
    v[0] = (int64_t)st.open;
    v[1] = (int64_t)st.asleep;
    v[2] = (int64_t)st.kept;
    v[3] = (int64_t)st.waiting;
}

static void fill_fts(int64_t *v)
{
    struct metrics_stores st = {0};
    if (stores_fn)
        stores_fn(&st);
    v[0] = (int64_t)st.fts_left;
}

/* ---- the writer ---- */

/* A label value with \, " and newline escaped (OpenMetrics ABNF). */
static void label_value(struct buf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_printf(out, "\\%c", *v);
        else if (*v == '\n')
            buf_str(out, "\\n");
        else
            buf_add(out, v, 1);
    }
}

/* name{a="x",b="y"[,extra]} with the label values of set index idx. */
static void sample_name(struct buf *out, const struct family *f, const char *suffix, size_t idx,
                        const char *extra)
{
    unsigned ndims = 0, at[3] = {0};
    size_t rest = idx;

    while (ndims < 3 && f->dims[ndims])
        ndims++;
    for (unsigned d = ndims; d-- > 0;) {
        at[d] = (unsigned)(rest % f->dims[d]->cap);
        rest /= f->dims[d]->cap;
    }
    buf_str(out, f->name);
    buf_str(out, suffix);
    if (!ndims && !extra)
        return;
    buf_str(out, "{");
    for (unsigned d = 0; d < ndims; d++) {
        buf_printf(out, "%s%s=\"", d ? "," : "", f->dims[d]->name);
        label_value(out, f->dims[d]->values[at[d]]);
        buf_str(out, "\"");
    }
    if (extra)
        buf_printf(out, "%s%s", ndims ? "," : "", extra);
    buf_str(out, "}");
}

/* Whether every label value of set idx is in use. */
static bool in_use(const struct family *f, size_t idx)
{
    for (unsigned d = 3; d-- > 0;) {
        if (!f->dims[d])
            continue;
        if (idx % f->dims[d]->cap >= f->dims[d]->used)
            return false;
        idx /= f->dims[d]->cap;
    }
    return true;
}

static size_t nsets(const struct family *f)
{
    size_t n = 1;
    for (unsigned d = 0; d < 3 && f->dims[d]; d++)
        n *= f->dims[d]->cap;
    return n;
}

static void write_histogram(struct buf *out, const struct family *f, size_t idx)
{
    const cell *h = &f->cells[idx * HCELLS];
    uint64_t cum = 0, b[NBOUNDS + 1];
    char le[32];

    for (size_t i = 0; i <= NBOUNDS; i++)
        cum += b[i] = load(&h[i]);
    if (f->sparse && cum == 0)
        return;
    uint64_t sum = load(&h[NBOUNDS + 1]);
    cum = 0;
    for (size_t i = 0; i <= NBOUNDS; i++) {
        cum += b[i];
        snprintf(le, sizeof(le), "le=\"%s\"", i < NBOUNDS ? bounds_le[i] : "+Inf");
        sample_name(out, f, "_bucket", idx, le);
        buf_printf(out, " %llu\n", (unsigned long long)cum);
    }
    sample_name(out, f, "_count", idx, NULL);
    buf_printf(out, " %llu\n", (unsigned long long)cum);
    sample_name(out, f, "_sum", idx, NULL);
    buf_printf(out, " %llu.%09llu\n", (unsigned long long)(sum / 1000000000u),
               (unsigned long long)(sum % 1000000000u));
}

static void write_family(struct buf *out, const struct family *f)
{
    static const char *types[] = {"counter", "gauge", "histogram"};
    size_t n = nsets(f);
    int64_t filled[8];

    buf_printf(out, "# TYPE %s %s\n", f->name, types[f->type]);
    if (f->unit)
        buf_printf(out, "# UNIT %s %s\n", f->name, f->unit);
    buf_printf(out, "# HELP %s %s\n", f->name, f->help);
    if (f->fill)
        f->fill(filled);
    for (size_t i = 0; i < n; i++) {
        if (!in_use(f, i))
            continue;
        if (f->type == HISTOGRAM) {
            write_histogram(out, f, i);
            continue;
        }
        int64_t v = f->fill ? filled[i] : (int64_t)load(&f->cells[i]);
        if (f->sparse && v == 0)
            continue;
        sample_name(out, f, f->type == COUNTER ? "_total" : "", i, NULL);
        buf_printf(out, " %lld\n", (long long)v);
    }
}

/* Resident and virtual size from /proc/self/statm (a kernel table, not a
 * disk read). 0 when it cannot be read. */
static void process_memory(uint64_t *rss, uint64_t *vsz)
{
    unsigned long long pages_vsz = 0, pages_rss = 0;
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "re");

    *rss = *vsz = 0;
    if (!f)
        return;
    if (fscanf(f, "%llu %llu", &pages_vsz, &pages_rss) == 2 && page > 0) {
        *rss = (uint64_t)pages_rss * (uint64_t)page;
        *vsz = (uint64_t)pages_vsz * (uint64_t)page;
    }
    fclose(f);
}

/* Descriptors open, from /proc/self/fd (a kernel table); 0 when it cannot
 * be read. */
static uint64_t open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    uint64_t n = 0;

    if (!d)
        return 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n ? n - 1 : 0; /* not the directory's own */
}

static void process_gauge(struct buf *out, const char *name, const char *unit, const char *help,
                          uint64_t v)
{
    buf_printf(out, "# TYPE %s gauge\n", name);
    if (unit)
        buf_printf(out, "# UNIT %s %s\n", name, unit);
    buf_printf(out, "# HELP %s %s\n%s %llu\n", name, help, name, (unsigned long long)v);
}

void metrics_render(struct buf *out)
{
    uint64_t rss, vsz;
    struct rlimit rl;

    for (size_t i = 0; i < NFAMILIES; i++)
        write_family(out, &families[i]);
    process_memory(&rss, &vsz);
    process_gauge(out, "process_resident_memory_bytes", "bytes", "Resident memory size.", rss);
    process_gauge(out, "process_virtual_memory_bytes", "bytes", "Virtual memory size.", vsz);
    process_gauge(out, "process_open_fds", NULL, "Open file descriptors.", open_fds());
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        process_gauge(out, "process_max_fds", NULL, "The open-file limit.",
                      rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur);
    buf_str(out, "# EOF\n");
}
