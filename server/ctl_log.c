/* coffrectl log verify: checks the audit log's hash chain. And the audit
 * line of every administrator action coffrectl runs, appended to the same
 * chain as coffred's lines (server/audit.c locks the file around each
 * append) or to the configured log. */
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/audit.h"
#include "server/base/log.h"
#include "server/ctl.h"

void ctl_log_usage(FILE *f)
{
    fprintf(
        f, "  log verify FILE... [--anchor SEQ:HASH]\n"
           "                                 (checks the audit log's chain; rotated files\n"
           "                                 oldest first; the anchor is a head kept elsewhere)\n");
}

int ctl_log_main(const struct conf *c, int argc, char **argv)
{
    const char *files[64], *anchor = NULL;
    size_t n = 0;
    (void)c;

    if (argc < 2 || strcmp(argv[1], "verify")) {
        fprintf(stderr, "usage:\n");
        ctl_log_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--anchor") && i + 1 < argc)
            anchor = argv[++i];
        else if (!strncmp(argv[i], "--anchor=", 9))
            anchor = argv[i] + 9;
        else if (n < sizeof(files) / sizeof(files[0]))
            files[n++] = argv[i];
        else {
            fprintf(stderr, "coffrectl: at most %zu files\n", n);
            return CTL_EXIT_USAGE;
        }
    }
    if (!n) {
        ctl_log_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    int rc = audit_verify(files, n, anchor, stdout);
    return rc == 0 ? CTL_EXIT_OK : rc > 0 ? CTL_EXIT_PROBLEMS : CTL_EXIT_SYSTEM;
}

static struct audit_log *ctl_audit;
static bool ctl_audit_on;
static uid_t ctl_uid;
static char ctl_user[64];

int ctl_audit_open(const struct conf *c)
{
    char err[1024];
    struct passwd *pw;

    /* who runs it, before the privilege drop */
    ctl_uid = getuid();
    pw = getpwuid(ctl_uid);
    snprintf(ctl_user, sizeof(ctl_user), "%s", pw ? pw->pw_name : "?");
    /* coffrectl's own messages stay on its stderr; only the action line
     * goes to a syslog or file target, or to the audit log */
    if (!c->audit_log[0] && (!strcmp(c->log_target, "stderr") || !c->log_target[0]))
        return CTL_EXIT_OK;
    if (audit_setup(c, "coffrectl", false, &ctl_audit, err, sizeof(err)) < 0) {
        fprintf(stderr, "coffrectl: %s\n", err);
        return CTL_EXIT_CONFIG;
    }
    if (ctl_audit && !strcmp(c->log_target, "stderr"))
        log_set_audit_only_sink(true);
    ctl_audit_on = true;
    return CTL_EXIT_OK;
}

void ctl_audit_action(int argc, char **argv, int rc)
{
    struct log_rec r;
    char args[1024];
    size_t n = 0;
    const char *sudo = getenv("SUDO_USER");

    if (!ctl_audit_on)
        return;
    args[0] = '\0';
    for (int i = 2; i < argc && n + 2 < sizeof(args); i++) {
        int k = snprintf(args + n, sizeof(args) - n, "%s%s", n ? " " : "", argv[i]);
        if (k < 0)
            break;
        n += (size_t)k < sizeof(args) - n ? (size_t)k : sizeof(args) - n - 1;
    }
    log_rec_begin(&r, "admin");
    log_rec_num(&r, "uid", ctl_uid);
    log_rec_str(&r, "by", ctl_user);
    if (sudo && *sudo)
        log_rec_str(&r, "sudo_user", sudo);
    log_rec_str(&r, "family", argv[0]);
    log_rec_str(&r, "action", argc > 1 ? argv[1] : "");
    log_rec_str(&r, "args", args);
    log_rec_str(&r, "result", rc == CTL_EXIT_OK ? "ok" : "failed");
    log_rec_num(&r, "exit", (uint64_t)rc);
    log_rec_emit(&r);
    audit_teardown(ctl_audit);
    ctl_audit = NULL;
}
