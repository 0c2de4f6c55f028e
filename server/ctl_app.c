/* coffrectl user app-password add|list|del: extra passwords of an account
 * for IMAP and POP3 (auth/app_password.c), each with a label. A generated
 * one is printed once and never again: only its hash is kept. Removing one
 * ends the account's live sessions, as the sessions do not record which
 * password they logged in with. */
#include "auth/auth.h"
#include "server/base/config.h"
#include "server/ctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int usage(const char *why)
{
    fprintf(stderr,
            "coffrectl: %s\nusage:\n"
            "  user app-password add ADDRESS --label LABEL [--password-stdin]\n"
            "  user app-password list ADDRESS\n"
            "  user app-password del ADDRESS LABEL|ID\n",
            why);
    return CTL_EXIT_USAGE;
}

static int error(int rc, const struct conf *c, const char *address, const char *what)
{
    switch (rc) {
    case AUTH_E_NOUSER:
        fprintf(stderr, "coffrectl: no such user: %s\n", address);
        return CTL_EXIT_NOUSER;
    case AUTH_E_NOAPP:
        fprintf(stderr, "coffrectl: %s has no app password %s\n", address, what);
        return CTL_EXIT_NOUSER;
    case AUTH_E_EXISTS:
        fprintf(stderr, "coffrectl: %s already has an app password labelled %s\n", address, what);
        return CTL_EXIT_EXISTS;
    case AUTH_E_SELECTOR:
        fprintf(stderr, "coffrectl: %s already has an app password starting with \"%.*s-\"\n",
                address, AUTH_APP_SELECTOR_LEN, what);
        return CTL_EXIT_EXISTS;
    case AUTH_E_LIMIT:
        fprintf(stderr,
                "coffrectl: %s already has %u app passwords (max_app_passwords); "
                "delete one first\n",
                address, c->max_app_passwords);
        return CTL_EXIT_LIMIT;
    case AUTH_E_BADLABEL:
        fprintf(stderr,
                "coffrectl: invalid label %s: 1 to %d of A-Z a-z 0-9 . _ + @ -, not all "
                "digits\n",
                what, AUTH_APP_LABEL_MAX - 1);
        return CTL_EXIT_USAGE;
    case AUTH_E_WEAKPW:
        fprintf(stderr,
                "coffrectl: an app password reads \"SSSS-SECRET\": SSSS four lower case "
                "letters or digits, SECRET at least %d characters\n",
                AUTH_PASSWORD_MIN);
        return CTL_EXIT_WEAKPW;
    default:
        fprintf(stderr, "coffrectl: database error on %s\n", address);
        return CTL_EXIT_SYSTEM;
    }
}

static void format_time(int64_t t, char *out, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (t == 0)
        snprintf(out, len, "never");
    else if (!gmtime_r(&tt, &tm) || !strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, len, "%" PRId64, t);
}

static int print_app(const struct auth_app_password *a, void *arg)
{
    char created[32], used[32];

    (void)arg;
    format_time(a->created, created, sizeof(created));
    format_time(a->last_used, used, sizeof(used));
    printf("%" PRId64 "\t%s\t%s-\t%s\t%s\t%s\n", a->id, a->label, a->selector, a->services, created,
           used);
    return 0;
}

int ctl_user_app_password(const struct conf *c, int argc, char **argv)
{
    char address[AUTH_ADDR_MAX], pw[AUTH_PASSWORD_MAX + 2], err[1024];
    const char *verb, *label = NULL, *pos[2] = {NULL, NULL};
    struct auth_app_password app;
    struct auth_db *db = NULL;
    bool from_stdin = false;
    int npos = 0, rc = CTL_EXIT_OK, r;

    if (argc < 3)
        return usage("user app-password: missing subcommand");
    verb = argv[2];
    if (strcmp(verb, "add") && strcmp(verb, "list") && strcmp(verb, "del"))
        return usage("user app-password: unknown subcommand");
    for (int i = 3; i < argc; i++) {
        const char *s = argv[i];

        if (!strcmp(verb, "add") && !strcmp(s, "--password-stdin")) {
            from_stdin = true;
        } else if (!strcmp(verb, "add") && !strcmp(s, "--label")) {
            if (i + 1 >= argc)
                return usage("--label needs a LABEL");
            label = argv[++i];
        } else if (!strcmp(verb, "add") && !strncmp(s, "--label=", 8)) {
            label = s + 8;
        } else if (s[0] == '-' && s[1] != '\0') {
            return usage("unknown option");
        } else if (npos < (!strcmp(verb, "del") ? 2 : 1)) {
            pos[npos++] = s;
        } else {
            return usage("unexpected argument");
        }
    }
    if (npos < (!strcmp(verb, "del") ? 2 : 1))
        return usage("user app-password: missing argument");
    if (!strcmp(verb, "add") && !label)
        return usage("user app-password add: --label LABEL is required");
    if (auth_normalize_address(pos[0], strlen(pos[0]), c->default_domain, address,
                               sizeof(address)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: not a valid address: %s\n", pos[0]);
        return CTL_EXIT_BADADDR;
    }
    pw[0] = '\0';
    if (!strcmp(verb, "add")) {
        if (!auth_app_label_ok(label))
            return error(AUTH_E_BADLABEL, c, address, label);
        if (from_stdin) {
            rc = ctl_read_password(true, pw, sizeof(pw));
            if (rc == CTL_EXIT_OK && auth_app_check(pw, strlen(pw)) != AUTH_OK)
                rc = error(AUTH_E_WEAKPW, c, address, "");
            if (rc != CTL_EXIT_OK)
                goto out;
        }
    }
    rc = ctl_prepare_data_dir(c);
    if (rc != CTL_EXIT_OK)
        goto out;
    if (auth_db_open(c->data_dir, &db, err, sizeof(err)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: %s\n", err);
        rc = CTL_EXIT_SYSTEM;
        goto out;
    }
    if (!strcmp(verb, "add")) {
        r = auth_app_add(db, address, label, pw, sizeof(pw), c->max_app_passwords, &app);
        if (r != AUTH_OK) {
            rc = error(r, c, address, r == AUTH_E_SELECTOR ? pw : label);
            goto out;
        }
        printf("added app password %" PRId64 " \"%s\" for %s (%s)\n", app.id, app.label, address,
               app.services);
        if (!from_stdin)
            printf("%s\n", pw); /* shown this once */
    } else if (!strcmp(verb, "list")) {
        /* the selector is the public start of the password, not its secret */
        printf("ID\tLABEL\tSTARTS\tSERVICES\tCREATED\tLAST_USED\n");
        r = auth_app_list(db, address, print_app, NULL);
        if (r != AUTH_OK)
            rc = error(r, c, address, "");
    } else {
        r = auth_app_del(db, address, pos[1], &app);
        if (r != AUTH_OK) {
            rc = error(r, c, address, pos[1]);
            goto out;
        }
        printf("deleted app password %" PRId64 " \"%s\" of %s\n", app.id, app.label, address);
        /* sessions do not know which password they used: all of the
         * account's end, and clients with a valid password log in again */
        ctl_live_user_gone(c, address, NULL);
    }
out:
    explicit_bzero(pw, sizeof(pw));
    auth_db_close(db);
    return rc;
}
