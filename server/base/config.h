/* Configuration of coffred and coffrectl: the struct every module reads,
 * the table of settings it is filled from (name, type, bounds, default,
 * description and group of each), and the parser of the `key = value`
 * file. */
#ifndef COFFRE_CONFIG_H
#define COFFRE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

#define CONF_MAX_ADDRS 16
#define CONF_MAX_NETS 32
#define CONF_PATH_MAX 1024

/* One listening address: TCP (v4 or v6) or, for LMTP, a unix socket. */
struct conf_addr {
    bool is_unix;
    char path[108];             /* unix socket path when is_unix */
    struct sockaddr_storage ss; /* TCP address when !is_unix */
    char text[80];              /* as written, for logs */
};

struct conf_addr_list {
    size_t n;
    struct conf_addr a[CONF_MAX_ADDRS];
};

/* An IPv4 or IPv6 network, address/prefix. */
struct conf_net {
    int family;
    uint8_t addr[16];
    unsigned prefix;
};

/* The settings, in the groups of the table in config.c and of the README's
 * configuration table. Defaults, bounds and meanings are in that table. */
struct conf {
    char path[CONF_PATH_MAX]; /* the file this was read from, "" for defaults */

    /* General */
    char data_dir[CONF_PATH_MAX];
    char run_user[64];
    unsigned thread_pool_size;
    unsigned max_jobs_per_account;
    unsigned auth_threads;
    unsigned shutdown_timeout_ms;
    bool log_debug;
    bool metrics;                      /* counters kept (server/base/metrics.h) */
    char log_format[8];                /* "text" or "json" */
    char log_target[CONF_PATH_MAX];    /* "stderr", "syslog" or an absolute file path */
    uint64_t log_queue_size;           /* bytes of lines waiting for the log writer */
    char audit_log[CONF_PATH_MAX];     /* the hash-chained audit log, "" = none */
    unsigned audit_anchor_interval_ms; /* how often its head goes to the normal log */

    /* TLS */
    char tls_cert[CONF_PATH_MAX];
    char tls_key[CONF_PATH_MAX];
    char tls_cert_rsa[CONF_PATH_MAX];
    char tls_key_rsa[CONF_PATH_MAX];
    char tls_priority[512];
    unsigned tls_handshake_timeout_ms;
    char tls_client_ca[CONF_PATH_MAX];  /* CAs of client certificates, "" = none asked */
    char tls_client_crl[CONF_PATH_MAX]; /* their CRL, "" = none */
    /* none|optional|required, per listener kind (STARTTLS for imap/pop3) */
    char imap_client_cert[16], imaps_client_cert[16], pop3_client_cert[16], pop3s_client_cert[16];

    /* Connections (every protocol) */
    unsigned max_connections;
    unsigned max_connections_per_ip;
    unsigned client_prefix_v4; /* addresses grouped as one client, for every per-address */
    unsigned client_prefix_v6; /* limit and the login throttle (conf_client_group) */
    unsigned max_bad_commands;
    size_t max_line_length;
    size_t max_line_length_prelogin; /* see conf_prelogin_line() */
    uint64_t max_message_size;       /* APPEND and LMTP */
    unsigned login_timeout_ms;

    /* Authentication */
    char default_domain[256];
    size_t n_plaintext_nets;
    struct conf_net plaintext_auth_networks[CONF_MAX_NETS];
    size_t n_proxy_nets;
    struct conf_net proxy_networks[CONF_MAX_NETS]; /* may send PROXY headers */
    unsigned proxy_header_wait_ms;
    unsigned login_failure_delay_ms;
    unsigned login_failure_delay_max_ms;
    unsigned login_max_pending_per_ip;   /* logins waiting or checked per address group */
    unsigned login_max_pending_per_user; /* logins waiting or checked per account */
    unsigned auth_cache_ttl_s;
    unsigned scram_iterations;           /* PBKDF2 rounds of new SCRAM secrets */
    unsigned max_app_passwords;          /* app passwords per account */
    char ticket_key_file[CONF_PATH_MAX]; /* login tickets' key, "" = no tickets */
    unsigned ticket_lifetime_s;

    /* Account directory */
    char accounts_backend[16];        /* "sqlite" or "postgresql" */
    char accounts_dsn[CONF_PATH_MAX]; /* sqlite: file path, "" = <data_dir>/accounts.sqlite;
                                       * postgresql: libpq connection string */
    char slot_name[64];               /* this coffred's slot, "" = not sharded */
    unsigned accounts_pool_size;      /* connections to PostgreSQL at most */

    /* Mail storage */
    unsigned mail_keep_open_ms;        /* a store stays open this long after its last session */
    unsigned mail_keep_open_max;       /* stores kept open so */
    unsigned mail_delivery_keep_max;   /* light delivery handles kept open so */
    bool mail_delivery_journal;        /* deliveries to closed accounts journaled */
    unsigned mail_delivery_journal_max; /* of one account at most */
    unsigned mail_idle_close_ms;       /* a store unused so long closes its index files */
    unsigned mail_quiet_trim_ms;       /* a store unused so long frees its caches and readers */
    unsigned mail_max_open;            /* stores with open index files; 0: from the fd limit */
    unsigned mail_open_wait_ms;        /* an open past mail_max_open waits so long */
    unsigned mail_max_query_steps;     /* SQLite VM steps of one index read */
    uint64_t mail_sort_cache;          /* bytes of sort keys kept per open store */
    unsigned mail_max_header_searches; /* SEARCH HEADER keys that read message files */
    unsigned mail_max_mailboxes;       /* mailboxes per account */
    unsigned mail_max_subscriptions;   /* subscriptions per account */
    unsigned acl_max_entries;          /* entries of one mailbox's ACL */

    /* IMAP (protocol/imap) */
    struct conf_addr_list imap_listen;
    struct conf_addr_list imaps_listen;
    unsigned imap_idle_timeout_ms;
    unsigned imap_output_timeout_ms;           /* a client not reading its responses */
    uint64_t max_literal_size;                 /* literals other than APPEND's message */
    bool imap_literal_plus;                    /* LITERAL+ (else LITERAL- alone, RFC 7888) */
    unsigned imap_max_nesting;                 /* parenthesized list / search key depth */
    unsigned imap_catenate_max_parts;          /* TEXT and URL parts of one CATENATE */
    unsigned imap_url_max_length;              /* bytes of one CATENATE URL */
    unsigned imap_max_connections_per_user_ip; /* sessions of one account from one address */
    unsigned imap_max_commands_per_second;     /* beyond it the session is slowed down */
    unsigned imap_max_search_updates;          /* live RETURN (UPDATE) contexts per session */
    unsigned imap_max_pending_updates;         /* queued EXISTS/EXPUNGE UIDs before a full resync */
    unsigned imap_max_fetch_items;             /* fetch attributes in one FETCH */
    unsigned imap_notify_interval_ms;          /* NOTIFY: one STATUS per mailbox per interval */
    unsigned imap_vanished_keep_days;          /* expunged UIDs kept so many days at least */
    unsigned imap_vanished_keep_count;         /* and the so many newest per mailbox */
    unsigned quota_warning_percent;            /* login ALERT at this quota use; 0 = never */
    char shared_prefix[64]; /* the shared namespace ("Shared/"), "" = none (RFC 2342) */

    /* POP3 (protocol/pop3) */
    struct conf_addr_list pop3_listen;
    struct conf_addr_list pop3s_listen;
    unsigned pop3_idle_timeout_ms;
    unsigned pop3_max_command_length; /* command line, CRLF included (not AUTH) */

    /* LMTP (protocol/lmtp) */
    struct conf_addr_list lmtp_listen;
    unsigned lmtp_socket_mode;
    char lmtp_socket_user[64];    /* owner of an LMTP unix socket, "" = leave */
    char lmtp_socket_group[64];   /* group of an LMTP unix socket, "" = leave */
    unsigned lmtp_max_recipients; /* RCPTs accepted per transaction */
    char recipient_delimiter[8];  /* chars separating user and detail, "" = off */
    bool lmtp_save_to_detail_mailbox;
    bool lmtp_quota_temporary; /* over quota: 452 4.2.2 instead of 552 5.2.2 */
    unsigned lmtp_idle_timeout_ms;
    unsigned lmtp_moved_grace_ms; /* an account moved away this recently: 451, else 550 */

    /* HTTP: metrics, health, autoconfig (protocol/http) */
    struct conf_addr_list http_listen;
    struct conf_addr_list http_tls_listen;
    unsigned http_max_request_line;     /* request line, CRLF included */
    unsigned http_max_header_bytes;     /* request line and header fields */
    unsigned http_max_headers;          /* header fields of one request */
    unsigned http_max_body;             /* Content-Length accepted (autodiscover's POST) */
    unsigned http_header_timeout_ms;    /* a request's head and body, from its first byte */
    unsigned http_idle_timeout_ms;      /* between requests */
    unsigned http_max_pipeline;         /* requests sent ahead of their answers */
    unsigned http_health_interval_ms;   /* a data-directory probe is reused so long */
    char auth_http_path[256];           /* nginx's auth_http endpoint */
    char auth_http_default_slot[64];    /* slot of accounts without one, "" = none */
    unsigned auth_http_max_attempts;    /* Auth-Wait left out from this attempt on */
    /* auth_http's connect probe of a slot (0 = none), its result reused */
    unsigned auth_http_slot_check_timeout_ms;
    unsigned auth_http_slot_check_ttl_ms;
    char autoconfig_hostname[256];      /* "" = the host name */
    char autoconfig_domains[1024];      /* "" = any domain */
    char autoconfig_smtp_hostname[256]; /* the MTA's submission server; "" = autoconfig_hostname */
    unsigned autoconfig_smtp_port;      /* its implicit-TLS submission port; 0 = none given */
    /* Administration: the control socket of coffrectl (server/control.c) */
    char control_socket[108]; /* a unix socket path (sun_path), "" = none */
    unsigned control_max_connections;
    unsigned control_timeout_ms;
    unsigned control_release_hold_ms; /* RELEASE: the store may not open here again so long */
    size_t control_max_reply;
    /* coffrectl import --from-imap */
    unsigned import_imap_jobs;
    unsigned import_imap_timeout_ms;
    unsigned import_imap_batch;
    uint64_t import_imap_batch_size;
};

/* What the value of a setting is, and so how it is parsed. */
enum conf_type {
    CONF_BOOL,     /* yes/no, true/false, on/off, 1/0 */
    CONF_UINT,     /* unsigned in [min, max] (k, M, G suffixes taken) */
    CONF_SIZE,     /* bytes in [min, max], with k, M, G suffixes */
    CONF_DURATION, /* milliseconds, at least min; ms, s, m, h suffixes, bare = seconds */
    CONF_SECONDS,  /* a duration kept in whole seconds */
    CONF_STRING,   /* text shorter than the field */
    CONF_PATH,     /* a file name, shorter than the field */
    CONF_ADDRS,    /* a list of listening addresses (struct conf_addr_list) */
    CONF_CUSTOM,   /* parsed by the row's parse function */
};

struct conf_setting;
typedef int (*conf_parse_fn)(struct conf *c, const struct conf_setting *s, const char *v, char *err,
                             size_t errlen);

/* One row of the table of settings. */
struct conf_setting {
    const char *name;  /* the key in the file */
    const char *def;   /* the default, as written in the file and the README */
    const char *group; /* the README's heading it stands under: "IMAP", "LMTP", ... */
    enum conf_type type;
    size_t off, size;             /* of the field in struct conf */
    uint64_t min, max;            /* CONF_UINT, CONF_SIZE: bounds; CONF_DURATION: least ms */
    bool unix_ok;                 /* CONF_ADDRS: unix:/path allowed */
    bool (*valid)(const char *v); /* CONF_STRING, CONF_PATH: checks the value, else errmsg */
    const char *errmsg;           /* the whole error message, in place of the type's */
    bool errmsg_value;            /* the value follows errmsg */
    conf_parse_fn parse;          /* CONF_CUSTOM */
    const char *doc;              /* one line */
};

/* The table, in README order; conf_n_settings rows. */
extern const struct conf_setting conf_settings[];
extern const size_t conf_n_settings;

/* The row of a key, or NULL. */
const struct conf_setting *conf_find(const char *key);

/* Fills c with the built-in defaults (each row's default, parsed). */
void conf_defaults(struct conf *c);

/* Reads FILE over the defaults already in c. On error returns -1 and writes
 * "FILE:LINE: reason" into err. */
int conf_load(struct conf *c, const char *file, char *err, size_t errlen);

/* Parses one `key = value` setting; used by conf_load and by tests.
 * Returns 0, or -1 with a reason (without file and line) in err. */
int conf_set(struct conf *c, const char *key, const char *value, char *err, size_t errlen);

/* Checks relations between settings (cert and key given together, at least
 * one listener, ...). Returns 0, or -1 with a reason in err. */
int conf_validate(const struct conf *c, char *err, size_t errlen);

/* True when IMAP or POP3 listens, and so a certificate is needed (STARTTLS
 * and STLS as much as the implicit-TLS ports). */
bool conf_needs_tls(const struct conf *c);

/* The longest line a client may send before it is logged in:
 * max_line_length_prelogin, but never more than max_line_length. */
size_t conf_prelogin_line(const struct conf *c);

/* True when addr (struct sockaddr_in/in6) is inside one of the nets. */
bool conf_net_match(const struct conf_net *nets, size_t n, const struct sockaddr *addr);

/* The one key under which a client address is counted by every per-address
 * limit and by the login throttle: the address cut to v4_prefix (IPv4, and
 * v4-mapped IPv6, written as v4-mapped) or v6_prefix bits (IPv6), the rest
 * zeroed. Returns AF_INET or AF_INET6, or -1 (key all zeros) for another
 * family or NULL. */
int conf_client_group(const struct sockaddr *addr, unsigned v4_prefix, unsigned v6_prefix,
                      uint8_t key[16]);

/* Parsers shared with tests. */
int conf_parse_size(const char *s, uint64_t *out);
int conf_parse_duration_ms(const char *s, unsigned *out);

#endif
