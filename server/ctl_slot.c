/* coffrectl slot add|list|del and user set-slot: the slots of a sharded
 * installation in the account directory (where nginx's auth_http answers
 * and Postfix's transport maps send each account) and the slot of each
 * account. */
#include "auth/auth.h"
#include "server/base/config.h"
#include "server/ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ctl_slot_usage(FILE *f)
{
    fprintf(f, "  slot add NAME --host IP --imap-port N --pop3-port N --lmtp-port N\n"
               "           [--data-dir DIR]      (add or change a slot of the directory)\n"
               "  slot list\n"
               "  slot del NAME                  (refused while accounts live on it)\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "coffrectl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nusage:\n");
    ctl_slot_usage(stderr);
    return CTL_EXIT_USAGE;
}

static int parse_port(const char *opt, const char *s, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end || errno || v < 1 || v > 65535)
        return usage_error("%s needs a port from 1 to 65535", opt);
    *out = (unsigned)v;
    return CTL_EXIT_OK;
}

static int print_slot(const struct auth_slot *s, void *arg)
{
    (void)arg;
    printf("%s\t%s\timap=%u\tpop3=%u\tlmtp=%u\t%s\n", s->name, s->host, s->imap_port, s->pop3_port,
           s->lmtp_port, s->data_dir[0] ? s->data_dir : "-");
    return 0;
}

static int slot_add(const struct conf *c, int argc, char **argv)
{
    struct auth_slot s;
    struct auth_db *db;
    bool have_imap = false, have_pop3 = false, have_lmtp = false;
    int rc, r;

    memset(&s, 0, sizeof(s));
    if (argc < 3 || argv[2][0] == '-')
        return usage_error("%s: missing NAME", "slot add");
    if (!auth_slot_name_ok(argv[2]))
        return usage_error("not a slot name: %s (letters, digits, '.', '_', '-')", argv[2]);
    snprintf(s.name, sizeof(s.name), "%s", argv[2]);
    for (int i = 3; i < argc; i++) {
        const char *o = argv[i];

        if (i + 1 >= argc)
            return usage_error("%s needs a value", o);
        if (!strcmp(o, "--host")) {
            if (snprintf(s.host, sizeof(s.host), "%s", argv[++i]) >= (int)sizeof(s.host))
                return usage_error("not an IP address: %s", argv[i]);
        } else if (!strcmp(o, "--imap-port")) {
            if ((rc = parse_port(o, argv[++i], &s.imap_port)) != CTL_EXIT_OK)
                return rc;
            have_imap = true;
        } else if (!strcmp(o, "--pop3-port")) {
            if ((rc = parse_port(o, argv[++i], &s.pop3_port)) != CTL_EXIT_OK)
                return rc;
            have_pop3 = true;
        } else if (!strcmp(o, "--lmtp-port")) {
            if ((rc = parse_port(o, argv[++i], &s.lmtp_port)) != CTL_EXIT_OK)
                return rc;
            have_lmtp = true;
        } else if (!strcmp(o, "--data-dir")) {
            if (argv[i + 1][0] != '/' || snprintf(s.data_dir, sizeof(s.data_dir), "%s",
                                                  argv[i + 1]) >= (int)sizeof(s.data_dir))
                return usage_error("--data-dir needs an absolute path: %s", argv[i + 1]);
            i++;
        } else {
            return usage_error("unknown option: %s", o);
        }
    }
    if (!s.host[0] || !have_imap || !have_pop3 || !have_lmtp)
        return usage_error("slot add %s: give --host, --imap-port, --pop3-port and --lmtp-port",
                           s.name);
    if ((rc = ctl_open_directory(c, &db)) != CTL_EXIT_OK)
        return rc;
    r = auth_slot_set(db, &s);
    auth_db_close(db);
    if (r == AUTH_E_BADADDR)
        return usage_error("not an IP address: %s (nginx needs an address)", s.host);
    if (r != AUTH_OK) {
        fprintf(stderr, "coffrectl: database error adding slot %s\n", s.name);
        return CTL_EXIT_SYSTEM;
    }
    print_slot(&s, NULL);
    return CTL_EXIT_OK;
}

int ctl_slot_main(const struct conf *c, int argc, char **argv)
{
    struct auth_db *db;
    int rc, r;

    if (argc < 2)
        return usage_error("%s: missing subcommand", "slot");
    if (!strcmp(argv[1], "add"))
        return slot_add(c, argc, argv);
    if (!strcmp(argv[1], "list")) {
        if (argc != 2)
            return usage_error("unexpected argument: %s", argv[2]);
        if ((rc = ctl_open_directory(c, &db)) != CTL_EXIT_OK)
            return rc;
        r = auth_slot_list(db, print_slot, NULL);
        auth_db_close(db);
        if (r != AUTH_OK) {
            fprintf(stderr, "coffrectl: database error while listing the slots\n");
            return CTL_EXIT_SYSTEM;
        }
        return CTL_EXIT_OK;
    }
    if (!strcmp(argv[1], "del")) {
        if (argc != 3)
            return usage_error("%s: give one NAME", "slot del");
        if ((rc = ctl_open_directory(c, &db)) != CTL_EXIT_OK)
            return rc;
        r = auth_slot_del(db, argv[2]);
        auth_db_close(db);
        switch (r) {
        case AUTH_OK:
            printf("deleted slot %s\n", argv[2]);
            return CTL_EXIT_OK;
        case AUTH_E_NOUSER:
            fprintf(stderr, "coffrectl: no such slot: %s\n", argv[2]);
            return CTL_EXIT_NOUSER;
        case AUTH_E_EXISTS:
            fprintf(stderr, "coffrectl: accounts live on slot %s (or move to it)\n", argv[2]);
            return CTL_EXIT_EXISTS;
        default:
            fprintf(stderr, "coffrectl: database error deleting slot %s\n", argv[2]);
            return CTL_EXIT_SYSTEM;
        }
    }
    return usage_error("unknown command: slot %s", argv[1]);
}

int ctl_user_set_slot(const struct conf *c, int argc, char **argv)
{
    char address[AUTH_ADDR_MAX];
    struct auth_db *db;
    int rc, r;

    if (argc != 4) {
        fprintf(stderr, "coffrectl: usage: user set-slot ADDRESS NAME\n");
        return CTL_EXIT_USAGE;
    }
    if (auth_normalize_address(argv[2], strlen(argv[2]), c->default_domain, address,
                               sizeof(address)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: not a valid address: %s\n", argv[2]);
        return CTL_EXIT_BADADDR;
    }
    if (!auth_slot_name_ok(argv[3]))
        return usage_error("not a slot name: %s", argv[3]);
    if ((rc = ctl_open_directory(c, &db)) != CTL_EXIT_OK)
        return rc;
    r = auth_slot_get(db, argv[3], NULL);
    if (r == AUTH_E_NOUSER) {
        auth_db_close(db);
        fprintf(stderr, "coffrectl: no such slot: %s (coffrectl slot add)\n", argv[3]);
        return CTL_EXIT_NOUSER;
    }
    if (r == AUTH_OK)
        r = auth_user_set_slot(db, address, argv[3]);
    auth_db_close(db);
    switch (r) {
    case AUTH_OK:
        printf("%s now lives on slot %s\n", address, argv[3]);
        return CTL_EXIT_OK;
    case AUTH_E_NOUSER:
        fprintf(stderr, "coffrectl: no such user: %s\n", address);
        return CTL_EXIT_NOUSER;
    default:
        fprintf(stderr, "coffrectl: database error on %s\n", address);
        return CTL_EXIT_SYSTEM;
    }
}
