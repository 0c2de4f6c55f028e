/* coffrectl accounts export|import: the whole account directory as text
 * (auth/dump.c), to move it from one backend to the other, e.g. from the
 * SQLite file to a PostgreSQL directory shared by several slots. */
#include "auth/auth.h"
#include "server/base/config.h"
#include "server/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void ctl_accounts_usage(FILE *f)
{
    fprintf(f,
            "  accounts export FILE|-         (every account, hash included, as text; mode 0600)\n"
            "  accounts import FILE|-         (accounts whose address or id is taken are "
            "refused)\n");
}

static void on_refused(void *arg, const char *address, const char *why)
{
    (void)arg;
    fprintf(stderr, "coffrectl: %s: refused, %s\n", address, why);
}

static int do_export(const struct conf *c, const char *file)
{
    struct auth_db *db;
    unsigned long n = 0;
    FILE *f = stdout;
    int fd, rc, r;

    if (strcmp(file, "-") != 0) {
        /* password hashes: private from its creation, opened before the
         * privilege drop so that the administrator's own paths work */
        fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || !(f = fdopen(fd, "w"))) {
            fprintf(stderr, "coffrectl: %s: %s\n", file, strerror(errno));
            if (fd >= 0)
                close(fd);
            return CTL_EXIT_SYSTEM;
        }
    }
    if ((rc = ctl_open_directory(c, &db)) != CTL_EXIT_OK) {
        if (f != stdout)
            fclose(f);
        return rc;
    }
    r = auth_dump(db, f, &n);
    auth_db_close(db);
    if (fflush(f) != 0 || ferror(f))
        r = AUTH_E_TEMP;
    if (f != stdout && fclose(f) != 0)
        r = AUTH_E_TEMP;
    if (r != AUTH_OK) {
        fprintf(stderr, "coffrectl: export failed (database or write error)\n");
        return CTL_EXIT_SYSTEM;
    }
    fprintf(stderr, "exported %lu accounts\n", n);
    return CTL_EXIT_OK;
}

static int do_import(const struct conf *c, const char *file)
{
    struct auth_load_report rep;
    struct auth_db *db;
    char err[512];
    FILE *f = stdin;
    int rc, r;

    if (strcmp(file, "-") != 0 && !(f = fopen(file, "re"))) {
        fprintf(stderr, "coffrectl: %s: %s\n", file, strerror(errno));
        return CTL_EXIT_SYSTEM;
    }
    if ((rc = ctl_open_directory(c, &db)) != CTL_EXIT_OK) {
        if (f != stdin)
            fclose(f);
        return rc;
    }
    r = auth_load(db, f, on_refused, NULL, &rep, err, sizeof(err));
    auth_db_close(db);
    if (f != stdin)
        fclose(f);
    if (r != AUTH_OK) {
        fprintf(stderr, "coffrectl: import failed, nothing imported: %s\n", err);
        return r == AUTH_E_BADADDR ? CTL_EXIT_USAGE : CTL_EXIT_SYSTEM;
    }
    printf("imported %lu accounts (%lu refused), %lu app passwords, %lu certificates, "
           "%lu new groups, %lu memberships, %lu ACL entries, %lu share settings, %lu new slots\n",
           rep.accounts, rep.refused, rep.apps, rep.certs, rep.groups, rep.members, rep.acls,
           rep.shares, rep.slots);
    if (rep.accounts)
        ctl_live_acl_changed(c);
    return rep.refused ? CTL_EXIT_EXISTS : CTL_EXIT_OK;
}

int ctl_accounts_main(const struct conf *c, int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "export"))
        return do_export(c, argv[2]);
    if (argc == 3 && !strcmp(argv[1], "import"))
        return do_import(c, argv[2]);
    fprintf(stderr, "coffrectl: usage:\n");
    ctl_accounts_usage(stderr);
    return CTL_EXIT_USAGE;
}
