/* coffrectl mailbox ...: check, repair and rebuild a user's mail store
 * (Maildir + index.sqlite) through the storage API. */
#include "auth/auth.h"
#include "server/base/config.h"
#include "server/ctl.h"
#include "storage/storage.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void ctl_mailbox_usage(FILE *f)
{
    fprintf(f, "  mailbox check ADDRESS          (report index/Maildir inconsistencies)\n"
               "  mailbox repair ADDRESS         (fix what check reports)\n"
               "  mailbox reindex ADDRESS        (rebuild the index from the Maildir)\n");
    ctl_mailbox_acl_usage(f);
}

static void on_problem(void *arg, const char *line)
{
    const char *addr = arg;
    printf("%s: %s\n", addr, line);
}

int ctl_account_lookup(const struct conf *c, const char *in, struct auth_account *acct)
{
    char addr[AUTH_ADDR_MAX], err[512];
    struct auth_db *db;
    int rc;

    if (auth_normalize_address(in, strlen(in), c->default_domain, addr, sizeof(addr)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: invalid address: %s\n", in);
        return CTL_EXIT_BADADDR;
    }
    if ((rc = ctl_prepare_data_dir(c)) != CTL_EXIT_OK)
        return rc;
    if (auth_db_open(c->data_dir, &db, err, sizeof(err)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: %s\n", err);
        return CTL_EXIT_SYSTEM;
    }
    rc = auth_user_get(db, addr, acct);
    auth_db_close(db);
    if (rc == AUTH_E_NOUSER) {
        fprintf(stderr, "coffrectl: no such user: %s\n", addr);
        return CTL_EXIT_NOUSER;
    }
    if (rc != AUTH_OK) {
        fprintf(stderr, "coffrectl: account database error\n");
        return CTL_EXIT_SYSTEM;
    }
    return CTL_EXIT_OK;
}

int ctl_mailbox_main(const struct conf *c, int argc, char **argv)
{
    struct auth_account acct;
    const char *verb;
    int rc;

    if (argc >= 2 && (!strcmp(argv[1], "acl") || !strcmp(argv[1], "seen")))
        return ctl_mailbox_acl(c, argc, argv);
    if (argc != 3) {
        fprintf(stderr, "usage:\n");
        ctl_mailbox_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    verb = argv[1];
    if (strcmp(verb, "check") != 0 && strcmp(verb, "repair") != 0 && strcmp(verb, "reindex") != 0) {
        fprintf(stderr, "coffrectl: unknown mailbox command '%s'\nusage:\n", verb);
        ctl_mailbox_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if ((rc = ctl_account_lookup(c, argv[2], &acct)) != CTL_EXIT_OK)
        return rc;

    if (strcmp(verb, "check") == 0) {
        unsigned problems = 0;
        rc = storage_check(c->data_dir, acct.id, on_problem, acct.address, &problems);
        if (rc) {
            fprintf(stderr, "coffrectl: check failed: %s\n", storage_strerror(rc));
            return CTL_EXIT_SYSTEM;
        }
        if (problems) {
            printf("%s: %u problem(s); `coffrectl mailbox repair %s` fixes them\n", acct.address,
                   problems, acct.address);
            return CTL_EXIT_PROBLEMS;
        }
        printf("%s: ok\n", acct.address);
        return CTL_EXIT_OK;
    }
    rc = strcmp(verb, "repair") == 0 ? storage_repair(c->data_dir, acct.id)
                                     : storage_reindex(c->data_dir, acct.id);
    if (rc) {
        fprintf(stderr, "coffrectl: %s failed: %s\n", verb, storage_strerror(rc));
        return CTL_EXIT_SYSTEM;
    }
    printf("%s: %s done\n", acct.address, verb);
    return CTL_EXIT_OK;
}
