/* coffrectl user cert ...: client certificates pinned to accounts by their
 * SHA-256 fingerprint (for SASL EXTERNAL when the certificate names no
 * address), and the per-account require_client_cert switch. coffred reads
 * both at every login: nothing needs a reload. */
#include "auth/auth.h"
#include "server/base/config.h"
#include "server/ctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int usage(const char *what)
{
    fprintf(stderr,
            "coffrectl: %s\nusage:\n"
            "  user cert add ADDRESS FILE|--fingerprint HEX\n"
            "  user cert del ADDRESS FILE|--fingerprint HEX\n"
            "  user cert list [ADDRESS]\n"
            "  user cert require ADDRESS yes|no\n",
            what);
    return CTL_EXIT_USAGE;
}

static int print_pin(const char *address, const char *fp, int64_t added, void *arg)
{
    char when[32];
    time_t t = (time_t)added;
    struct tm tm;

    (void)arg;
    if (!gmtime_r(&t, &tm) || !strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(when, sizeof(when), "%" PRId64, added);
    printf("%s\t%s\t%s\n", address, fp, when);
    return 0;
}

static int db_error(int r, const char *address)
{
    switch (r) {
    case AUTH_E_NOUSER:
        fprintf(stderr, "coffrectl: no such user or pin: %s\n", address);
        return CTL_EXIT_NOUSER;
    case AUTH_E_EXISTS:
        fprintf(stderr, "coffrectl: that certificate is pinned to %s already\n", address);
        return CTL_EXIT_EXISTS;
    case AUTH_E_BADADDR:
        fprintf(stderr, "coffrectl: not a SHA-256 fingerprint (64 hex digits)\n");
        return CTL_EXIT_USAGE;
    default:
        fprintf(stderr, "coffrectl: database error on %s\n", address);
        return CTL_EXIT_SYSTEM;
    }
}

int ctl_user_cert(const struct conf *c, int argc, char **argv)
{
    char address[AUTH_ADDR_MAX], fp[AUTH_FINGERPRINT_LEN + 1], err[1024];
    const char *verb = argc > 2 ? argv[2] : "";
    const char *fparg = NULL;
    struct auth_db *db = NULL;
    int rc, r;

    if (strcmp(verb, "add") && strcmp(verb, "del") && strcmp(verb, "list") &&
        strcmp(verb, "require"))
        return usage("user cert: add, del, list or require");
    if (!strcmp(verb, "list") ? argc > 4 : argc < 4)
        return usage("user cert: wrong number of arguments");
    address[0] = '\0';
    if (argc > 3 && auth_normalize_address(argv[3], strlen(argv[3]), c->default_domain, address,
                                           sizeof(address)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: not a valid address: %s\n", argv[3]);
        return CTL_EXIT_BADADDR;
    }
    if (!strcmp(verb, "add") || !strcmp(verb, "del")) {
        if (argc == 6 && !strcmp(argv[4], "--fingerprint"))
            fparg = argv[5];
        else if (argc == 5 && argv[4][0] != '-') {
            if (auth_cert_file_fingerprint(argv[4], fp, err, sizeof(err)) < 0) {
                fprintf(stderr, "coffrectl: %s\n", err);
                return CTL_EXIT_USAGE;
            }
            fparg = fp;
        } else {
            return usage("user cert add|del: give FILE or --fingerprint HEX");
        }
    }
    if (!strcmp(verb, "require") &&
        (argc != 5 || (strcmp(argv[4], "yes") && strcmp(argv[4], "no"))))
        return usage("user cert require: yes or no");

    rc = ctl_prepare_data_dir(c);
    if (rc != CTL_EXIT_OK)
        return rc;
    if (auth_db_open(c->data_dir, &db, err, sizeof(err)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: %s\n", err);
        return CTL_EXIT_SYSTEM;
    }
    if (!strcmp(verb, "add")) {
        r = auth_cert_pin_add(db, address, fparg);
        if (r == AUTH_OK)
            printf("pinned certificate to %s\n", address);
    } else if (!strcmp(verb, "del")) {
        r = auth_cert_pin_del(db, address, fparg);
        if (r == AUTH_OK)
            printf("unpinned certificate from %s\n", address);
    } else if (!strcmp(verb, "list")) {
        r = auth_cert_pin_list(db, address[0] ? address : NULL, print_pin, NULL);
    } else {
        bool on = !strcmp(argv[4], "yes");
        r = auth_user_set_require_cert(db, address, on);
        if (r == AUTH_OK)
            printf("%s: client certificate %s for password logins\n", address,
                   on ? "required" : "not required");
    }
    rc = r == AUTH_OK ? CTL_EXIT_OK : db_error(r, address[0] ? address : "(all)");
    auth_db_close(db);
    return rc;
}
