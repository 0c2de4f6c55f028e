/* coffred: reads the configuration, loads TLS credentials, binds every
 * listener, drops root, and runs the event loop until SIGTERM/SIGINT. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sqlite3.h>
#include <unistd.h>

#include "auth/auth.h"
#include "protocol/job.h"
#include "protocol/mailuser.h"
#include "server/audit.h"
#include "server/base/log.h"
#include "server/base/metrics.h"
#include "server/base/privdrop.h"
#include "server/sdnotify.h"
#include "server/sqlmem.h"
#include "server/server.h"
#include "storage/storage.h"
#include "tls/tls.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: coffred [-c FILE] [--foreground] [--check-config]\n"
               "  -c, --config FILE   configuration file (default /etc/coffre/coffre.conf)\n"
               "  -f, --foreground    stay in the foreground (for systemd and tests)\n"
               "  -t, --check-config  check the configuration and exit\n");
}

static void on_stop_timer(uv_timer_t *t)
{
    struct server *s = t->data;
    log_warn("shutdown: closing %u connection(s) that did not finish in time", s->nconns);
    conn_abort_all(s);
}

static void begin_stop(struct server *s, const char *why)
{
    if (s->stopping)
        return;
    s->stopping = true;
    sdnotify_stopping(s);
    log_info("%s: shutting down (%u connection(s))", why, s->nconns);
    server_close_listeners(s);
    conn_shutdown_all(s);
    if (!s->conns) {
        uv_stop(s->loop);
        return;
    }
    uv_timer_init(s->loop, &s->stop_timer);
    s->stop_timer.data = s;
    uv_timer_start(&s->stop_timer, on_stop_timer, s->conf.shutdown_timeout_ms, 0);
    uv_unref((uv_handle_t *)&s->stop_timer);
}

int server_reload(struct server *s, char *err, size_t errlen)
{
    int rc = 0;

    sdnotify_reloading();
    log_reopen(); /* a log file or the audit log moved by logrotate */
    if (!s->tls)
        log_info("reload: no TLS configured, nothing to reload");
    else if (tls_server_reload(s->tls, err, errlen) < 0) {
        log_error("reload: certificate reload failed, keeping the old one: %s "
                  "(after the privilege drop the files are read as run_user '%s': "
                  "make the key readable by its group)",
                  err, s->conf.run_user);
        rc = -1;
    } else
        log_info("reload: certificate and key reloaded%s",
                 s->conf.tls_client_ca[0] ? ", with the client CA and CRL" : "");
    if (s->conf.ticket_key_file[0] && s->auth) {
        unsigned char key[AUTH_TICKET_KEY_MAX];
        char why[CONF_PATH_MAX + 128];
        size_t len;
        if (auth_ticket_key_load(s->conf.ticket_key_file, key, sizeof(key), &len, why,
                                 sizeof(why)) != AUTH_OK) {
            log_error("reload: %s; keeping the ticket key read before", why);
            rc = -1;
        } else {
            auth_service_set_ticket_key(s->auth, key, len, s->conf.ticket_lifetime_s);
            log_info("reload: ticket key read again");
        }
        explicit_bzero(key, sizeof(key));
    }
    sdnotify_ready(s);
    return rc;
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct server *s = h->data;
    char err[512];

    if (signum == SIGHUP) {
        (void)server_reload(s, err, sizeof(err));
        return;
    }
    begin_stop(s, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0)
        _exit(0);
    if (setsid() < 0)
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0)
        _exit(0);
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
    }
    return chdir("/");
}

/* Every session, open index and listener takes descriptors: the soft
 * open-file limit (often 1024) is raised to the hard one, which the
 * administrator chose. Returns the limit coffred runs with. */
static uint64_t raise_open_file_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        log_warn("cannot read the open-file limit: %s", strerror(errno));
        return 0;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
            rl.rlim_cur = rl.rlim_max;
        } else {
            /* an unlimited hard limit: the kernel's nr_open is the ceiling */
            want.rlim_cur = 1048576;
            if (want.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &want) == 0)
                rl.rlim_cur = want.rlim_cur;
            else
                log_warn("cannot raise the open-file limit to %llu: %s",
                         (unsigned long long)rl.rlim_max, strerror(errno));
        }
    }
    if (rl.rlim_max == RLIM_INFINITY)
        log_info("open-file limit: %llu (hard limit: unlimited)", (unsigned long long)rl.rlim_cur);
    else
        log_info("open-file limit: %llu (hard limit %llu)", (unsigned long long)rl.rlim_cur,
                 (unsigned long long)rl.rlim_max);
    return rl.rlim_cur;
}

/* Accounts with their index open at most when mail_max_open is 0 and the
 * open-file limit would allow more: the descriptors beyond serve
 * connections. */
#define MAIL_OPEN_MAX 1000

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"foreground", no_argument, NULL, 'f'},
        {"check-config", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *conf_path = "/etc/coffre/coffre.conf";
    bool foreground = false, check_only = false;
    static struct server srv;
    struct server *s = &srv;
    char err[1024];
    int ch;

    while ((ch = getopt_long(argc, argv, "c:fth", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            conf_path = optarg;
            break;
        case 'f':
            foreground = true;
            break;
        case 't':
            check_only = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 1;
    }

    /* Before SQLite initializes: no global counters of its memory use,
     * whose mutex every allocation on every pool thread would take. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    /* No page cache allocated ahead per connection (20 pages, 85 kB, by
     * default): an account's index holds only the pages it read. */
    sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
    const char *sqlmem = sqlmem_configure();

    conf_defaults(&s->conf);
    if (conf_load(&s->conf, conf_path, err, sizeof(err)) < 0) {
        fprintf(stderr, "coffred: %s\n", err);
        return 2;
    }
    if (auth_db_configure(s->conf.accounts_backend, s->conf.accounts_dsn, s->conf.data_dir, err,
                          sizeof(err)) != AUTH_OK) {
        fprintf(stderr, "coffred: %s\n", err);
        return 2;
    }
    auth_db_set_pool_size(s->conf.accounts_pool_size);
    log_set_debug(s->conf.log_debug);
    metrics_enable(s->conf.metrics);
    if (!check_only && audit_setup(&s->conf, "coffred", true, &s->audit, err, sizeof(err)) < 0) {
        fprintf(stderr, "coffred: %s\n", err);
        return 2;
    }

    struct tls_server_opts topts = {
        .cert = s->conf.tls_cert,
        .key = s->conf.tls_key,
        .cert_rsa = s->conf.tls_cert_rsa,
        .key_rsa = s->conf.tls_key_rsa,
        .priority = s->conf.tls_priority,
        .client_ca = s->conf.tls_client_ca,
        .client_crl = s->conf.tls_client_crl,
    };
    if (conf_needs_tls(&s->conf) && tls_server_new(&topts, &s->tls, err, sizeof(err)) < 0) {
        fprintf(stderr, "coffred: %s\n", err);
        return 2;
    }
    /* read as root, before the privilege drop; a reload reads it again as
     * run_user, as it does the certificates */
    static unsigned char tkey[AUTH_TICKET_KEY_MAX];
    size_t tkey_len = 0;
    if (s->conf.ticket_key_file[0] &&
        auth_ticket_key_load(s->conf.ticket_key_file, tkey, sizeof(tkey), &tkey_len, err,
                             sizeof(err)) != AUTH_OK) {
        fprintf(stderr, "coffred: %s\n", err);
        tls_server_free(s->tls);
        return 2;
    }
    if (check_only) {
        explicit_bzero(tkey, sizeof(tkey));
        printf("%s: configuration ok\n", conf_path);
        tls_server_free(s->tls);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    {
        char n[16];
        snprintf(n, sizeof(n), "%u", s->conf.thread_pool_size);
        setenv("UV_THREADPOOL_SIZE", n, 1);
    }
    if (gethostname(s->hostname, sizeof(s->hostname) - 1) < 0 || !s->hostname[0])
        snprintf(s->hostname, sizeof(s->hostname), "localhost");

    if (server_mkdir_p(s->conf.data_dir, 0700) < 0) {
        fprintf(stderr, "coffred: cannot create %s: %s\n", s->conf.data_dir, strerror(errno));
        return 1;
    }
    chmod(s->conf.data_dir, 0700);
    /* held (shared) while coffred runs: `coffrectl restore` takes it
     * exclusive, so that the two never run on one data directory */
    {
        int lfd = open(s->conf.data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (lfd < 0 || flock(lfd, LOCK_SH | LOCK_NB) < 0) {
            fprintf(stderr, "coffred: %s: %s\n", s->conf.data_dir,
                    lfd < 0 ? strerror(errno) : "a restore is running there");
            return 1;
        }
    }

    sdnotify_open();
    s->nofile = raise_open_file_limit();
    s->loop = uv_default_loop();
    /* The handlers are in place before the ports open: a SIGTERM sent as
     * soon as coffred listens (a service manager, a test) is answered by a
     * clean stop once the loop runs, not by the default action. */
    uv_signal_init(s->loop, &s->sig_term);
    uv_signal_init(s->loop, &s->sig_int);
    uv_signal_init(s->loop, &s->sig_hup);
    s->sig_term.data = s->sig_int.data = s->sig_hup.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_signal_start(&s->sig_hup, on_signal, SIGHUP);

    if (server_listen_all(s, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return 1;
    }
    if (control_open(s, err, sizeof(err)) < 0)
        log_error("%s; live administration (coffrectl who, kick, ...) is off", err);
    if (server_drop_privileges(s->conf.run_user, s->conf.data_dir, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return 1;
    }
    if (geteuid() != 0 && getuid() != 0)
        log_debug("running as uid %u", (unsigned)getuid());
    if (s->conf.n_plaintext_nets)
        log_warn("plaintext_auth_networks is set: clients from those networks may log in "
                 "without TLS, sending passwords in clear");
    if (s->conf.n_proxy_nets)
        log_info("proxy_networks is set: connections from those networks may start with a "
                 "PROXY header and log in without TLS (the proxy's hop must be a private "
                 "network)");

    struct auth_service_opts aopts = {
        .data_dir = s->conf.data_dir,
        .default_domain = s->conf.default_domain,
        .cache_ttl_s = s->conf.auth_cache_ttl_s,
        .failure_delay_ms = s->conf.login_failure_delay_ms,
        .failure_delay_max_ms = s->conf.login_failure_delay_max_ms,
        .client_prefix_v4 = s->conf.client_prefix_v4,
        .client_prefix_v6 = s->conf.client_prefix_v6,
        .max_pending_per_ip = s->conf.login_max_pending_per_ip,
        .max_pending_per_user = s->conf.login_max_pending_per_user,
        .threads = s->conf.auth_threads,
        .scram_iterations = s->conf.scram_iterations,
        .acl_max_entries = s->conf.acl_max_entries,
    };
    if (auth_service_new(s->loop, &aopts, &s->auth, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return 1;
    }
    auth_service_set_ticket_key(s->auth, tkey, tkey_len, s->conf.ticket_lifetime_s);
    explicit_bzero(tkey, sizeof(tkey));

    mailuser_configure(s->conf.mail_keep_open_ms, s->conf.mail_keep_open_max,
                       s->conf.mail_idle_close_ms, s->conf.mail_quiet_trim_ms);
    mailuser_configure_vanished(s->conf.imap_vanished_keep_days, s->conf.imap_vanished_keep_count);
    {
        /* At most half of the descriptors for stores, the rest for
         * connections. Of the stores' half, first the light delivery
         * handles kept after a delivery (3 each: index, WAL, shared
         * memory), at most a quarter of it; then 8 for each open store: the
         * index, WAL and shared memory of the writer and of a reader or
         * two, and a message file read; MAIL_OPEN_MAX stores at most
         * unless mail_max_open says more. (A light handle in use beyond
         * those is one per pool thread at most; an open short of
         * descriptors waits for room as any other.) The connections get
         * what is left: a connection past it is refused at once, rather
         * than taken in to find no descriptor for its account's index. */
        unsigned max_open = s->conf.mail_max_open;
        uint64_t half = s->nofile > 64 ? (s->nofile - 64) / 2 : 0;
        if (3 * (uint64_t)s->conf.mail_delivery_keep_max > half / 4) {
            unsigned keep = (unsigned)(half / 4 / 3);
            log_warn("mail_delivery_keep_max %u is more than the open-file limit %llu leaves room "
                     "for: %u",
                     s->conf.mail_delivery_keep_max, (unsigned long long)s->nofile, keep);
            s->conf.mail_delivery_keep_max = keep;
        }
        if (!max_open) {
            uint64_t stores = half - 3 * (uint64_t)s->conf.mail_delivery_keep_max;
            max_open = stores >= 8 ? (unsigned)(stores / 8) : 1;
            if (max_open > MAIL_OPEN_MAX)
                max_open = MAIL_OPEN_MAX;
        }
        mailuser_configure_open(max_open, s->conf.mail_open_wait_ms);
        log_info("accounts with their index open: at most %u (mail_max_open%s)", max_open,
                 s->conf.mail_max_open ? "" : ", from the open-file limit");
        uint64_t held = 64 + 8 * (uint64_t)max_open + 3 * (uint64_t)s->conf.mail_delivery_keep_max;
        s->max_conns = s->conf.max_connections;
        if (s->nofile > held && s->nofile - held < s->max_conns)
            s->max_conns = (unsigned)(s->nofile - held);
        log_info("connections: at most %u (max_connections%s)", s->max_conns,
                 s->max_conns < s->conf.max_connections ? ", lowered to what the open-file limit "
                                                          "leaves beside the stores"
                                                        : "");
    }
    storage_set_limits(&(struct storage_limits){
        .max_steps = s->conf.mail_max_query_steps,
        .max_header_scans = s->conf.mail_max_header_searches,
        .max_mailboxes = s->conf.mail_max_mailboxes,
        .max_subscriptions = s->conf.mail_max_subscriptions,
        .light_keep_max = s->conf.mail_delivery_keep_max,
        .light_keep_ms = s->conf.mail_keep_open_ms,
        .delivery_journal = s->conf.mail_delivery_journal,
        .journal_per_account = s->conf.mail_delivery_journal_max,
        .sort_cache_bytes = s->conf.mail_sort_cache,
    });
    proto_job_configure(s->conf.max_jobs_per_account);
    mailuser_configure_trim(sqlmem_trim());

    if (!foreground && daemonize() < 0) {
        log_error("cannot detach: %s", strerror(errno));
        return 1;
    }
    log_info("coffred %s started (pid %d)", "0.1.0", (int)getpid());
    log_info("SQLite allocates from %s", sqlmem);
    sdnotify_ready(s);

    uv_run(s->loop, UV_RUN_DEFAULT);

    /* Stopped. First let every session close for real (sessions release
     * their mail stores, which flushes flags to file names on the pool);
     * only then close what is left and let pending pool work finish. */
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->sig_hup, NULL);
    if (s->stopping && uv_is_active((uv_handle_t *)&s->stop_timer))
        uv_timer_stop(&s->stop_timer);
    control_close(s);
    conn_abort_all(s);
    uv_run(s->loop, UV_RUN_DEFAULT);
    mailuser_shutdown();
    uv_walk(s->loop, close_walk, NULL);
    uv_run(s->loop, UV_RUN_DEFAULT);
    auth_service_free(s->auth);
    tls_server_free(s->tls);
    if (s->reserve_fd >= 0)
        close(s->reserve_fd);
    uv_loop_close(s->loop);
    log_info("coffred stopped");
    audit_teardown(s->audit);
    return 0;
}
