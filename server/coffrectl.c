/* coffrectl, the administrator's tool: reads the configuration, then hands
 * the command line to one command family (user, ...). */
#include "auth/auth.h"
#include "server/base/config.h"
#include "server/ctl.h"
#include "server/base/privdrop.h"
#include "storage/storage.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/coffre/coffre.conf"

struct family {
    const char *name;
    int (*main)(const struct conf *c, int argc, char **argv);
    void (*usage)(FILE *f);
};

/* Command families; a new one (mailbox, ...) is one more line here. */
static const struct family families[] = {
    {"user", ctl_user_main, ctl_user_usage},
    {"mailbox", ctl_mailbox_main, ctl_mailbox_usage},
    {"group", ctl_group_main, ctl_group_usage},
    {"log", ctl_log_main, ctl_log_usage},
    /* who, kick, reload, stats: one family, listed once in the usage */
    {"who", ctl_live_main, ctl_live_usage},
    {"kick", ctl_live_main, NULL},
    {"reload", ctl_live_main, NULL},
    {"stats", ctl_live_main, NULL},
    {"backup", ctl_backup_main, ctl_backup_usage},
    {"restore", ctl_backup_main, ctl_restore_usage},
    {"import", ctl_import_main, ctl_import_usage},
    {"slot", ctl_slot_main, ctl_slot_usage},
    {"accounts", ctl_accounts_main, ctl_accounts_usage},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: coffrectl [-c FILE] COMMAND ...\n"
               "\n"
               "options:\n"
               "  -c FILE     configuration file (default " DEFAULT_CONFIG ")\n"
               "  -h, --help  this help\n"
               "\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        if (families[i].usage)
            families[i].usage(f);
    fprintf(f, "\n"
               "exit status:\n"
               "  0  success\n"
               "  1  usage error\n"
               "  2  configuration error\n"
               "  3  unknown user (or group, mailbox, entry)\n"
               "  4  user already exists\n"
               "  5  invalid address\n"
               "  6  password refused (empty, too short or long, bad characters, entries differ)\n"
               "  7  system or database error\n"
               "  8  mailbox check found inconsistencies\n"
               "  9  import left messages or mailboxes out (listed; a rerun finishes)\n"
               "  10 a limit is reached (max_app_passwords)\n");
}

int ctl_prepare_data_dir(const struct conf *c)
{
    char err[512];

    if (server_mkdir_p(c->data_dir, 0700) < 0) {
        fprintf(stderr, "coffrectl: cannot create %s: %s\n", c->data_dir, strerror(errno));
        return CTL_EXIT_SYSTEM;
    }
    if (server_drop_privileges(c->run_user, c->data_dir, err, sizeof(err)) < 0) {
        fprintf(stderr, "coffrectl: %s\n", err);
        return CTL_EXIT_SYSTEM;
    }
    return CTL_EXIT_OK;
}

int main(int argc, char **argv)
{
    static struct conf conf; /* large: not on the stack */
    const char *file = DEFAULT_CONFIG;
    char err[1024];
    int i = 1;

    /* nothing we create (database, directories) is for other users */
    umask(077);
    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return CTL_EXIT_OK;
        }
        if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            file = argv[i + 1];
            i += 2;
            continue;
        }
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        }
        fprintf(stderr, "coffrectl: unknown option %s\n", argv[i]);
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if (i >= argc) {
        usage(stderr);
        return CTL_EXIT_USAGE;
    }

    conf_defaults(&conf);
    if (conf_load(&conf, file, err, sizeof(err)) < 0) {
        fprintf(stderr, "coffrectl: %s\n", err);
        return CTL_EXIT_CONFIG;
    }
    if (auth_db_configure(conf.accounts_backend, conf.accounts_dsn, conf.data_dir, err,
                          sizeof(err)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: %s\n", err);
        return CTL_EXIT_CONFIG;
    }
    auth_db_set_pool_size(conf.accounts_pool_size);
    /* what coffrectl creates counts against the accounts' limits too */
    storage_set_limits(&(struct storage_limits){
        .max_steps = conf.mail_max_query_steps,
        .max_header_scans = conf.mail_max_header_searches,
        .max_mailboxes = conf.mail_max_mailboxes,
        .max_subscriptions = conf.mail_max_subscriptions,
    });

    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        if (strcmp(argv[i], families[f].name))
            continue;
        /* every action but reading the audit log leaves an audit line */
        bool audited = families[f].main != ctl_log_main;
        int rc;
        if (audited && (rc = ctl_audit_open(&conf)) != CTL_EXIT_OK)
            return rc;
        rc = families[f].main(&conf, argc - i, argv + i);
        if (audited)
            ctl_audit_action(argc - i, argv + i, rc);
        return rc;
    }
    fprintf(stderr, "coffrectl: unknown command '%s'\n", argv[i]);
    usage(stderr);
    return CTL_EXIT_USAGE;
}
