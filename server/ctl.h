/* coffrectl: what the command families (user, and later mailbox, ...) share
 * with the dispatcher in coffrectl.c. */
#ifndef COFFRE_CTL_H
#define COFFRE_CTL_H

#include <stdio.h>

#include "server/base/config.h"

/* Exit codes of coffrectl, listed in `coffrectl --help`. */
enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_USAGE = 1,      /* bad command line */
    CTL_EXIT_CONFIG = 2,     /* configuration file unreadable or invalid */
    CTL_EXIT_NOUSER = 3,     /* no such account */
    CTL_EXIT_EXISTS = 4,     /* the account already exists */
    CTL_EXIT_BADADDR = 5,    /* not a valid address */
    CTL_EXIT_WEAKPW = 6,     /* password refused: empty, weak, or entries differ */
    CTL_EXIT_SYSTEM = 7,     /* system or database error */
    CTL_EXIT_PROBLEMS = 8,   /* mailbox check found inconsistencies */
    CTL_EXIT_INCOMPLETE = 9, /* import: messages or mailboxes left out (said why) */
};

/* Creates data_dir when missing and, when run as root, drops to run_user so
 * that everything created under data_dir belongs to it. Call before opening
 * any file under data_dir. Returns CTL_EXIT_OK or an exit code, with the
 * reason printed on stderr. */
int ctl_prepare_data_dir(const struct conf *c);

/* A command family: argv[0] is the family's name ("user"), argv[1] its verb.
 * Returns an exit code. */
int ctl_user_main(const struct conf *c, int argc, char **argv);
void ctl_user_usage(FILE *f);
/* coffrectl mailbox check|repair|reindex ADDRESS (server/ctl_mailbox.c) */
int ctl_mailbox_main(const struct conf *c, int argc, char **argv);
void ctl_mailbox_usage(FILE *f);
/* coffrectl import --from-... (server/ctl_import*.c) */
int ctl_import_main(const struct conf *c, int argc, char **argv);
void ctl_import_usage(FILE *f);

#endif
