/* coffrectl: what the command families (user, and later mailbox, ...) share
 * with the dispatcher in coffrectl.c. */
#ifndef COFFRE_CTL_H
#define COFFRE_CTL_H

#include <stdint.h>
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
    CTL_EXIT_LIMIT = 10,     /* a configured limit is reached (max_app_passwords) */
};

/* Creates data_dir when missing and, when run as root, drops to run_user so
 * that everything created under data_dir belongs to it. Call before opening
 * any file under data_dir. Returns CTL_EXIT_OK or an exit code, with the
 * reason printed on stderr. */
int ctl_prepare_data_dir(const struct conf *c);

/* Resolves ADDRESS to its account (its id names the directory users/<id>),
 * after ctl_prepare_data_dir. Returns CTL_EXIT_OK or an exit code, with the
 * reason printed (server/ctl_mailbox.c). */
struct auth_account;
int ctl_account_lookup(const struct conf *c, const char *in, struct auth_account *acct);

/* A command family: argv[0] is the family's name ("user"), argv[1] its verb.
 * Returns an exit code. */
int ctl_user_main(const struct conf *c, int argc, char **argv);
void ctl_user_usage(FILE *f);
/* coffrectl mailbox check|repair|reindex ADDRESS (server/ctl_mailbox.c) */
int ctl_mailbox_main(const struct conf *c, int argc, char **argv);
void ctl_mailbox_usage(FILE *f);
/* coffrectl who|kick|reload|stats, through coffred's control socket
 * (server/ctl_live.c) */
int ctl_live_main(const struct conf *c, int argc, char **argv);
void ctl_live_usage(FILE *f);
/* After `user disable` or `user del` (why: "disabled", "deleted"), or an
 * app password's removal (why NULL: the account stays): asks the running
 * coffred, if any, to end the account's live sessions. */
void ctl_live_user_gone(const struct conf *c, const char *address, const char *why);

/* Asks the running coffred to let go of account id (control socket
 * RELEASE): its sessions end, and the answer comes once it holds nothing of
 * the account. 0 released, 1 coffred is not running, -1 refused or failed
 * (printed). */
int ctl_live_release(const struct conf *c, int64_t id, const char *address);
/* coffrectl user move ADDRESS --to SLOT (server/ctl_move.c); argv[0] is
 * "user" */
int ctl_user_move(const struct conf *c, int argc, char **argv);

/* After a change of the access control lists or groups: asks the running
 * coffred, if any, to read them again (control socket `ACL`); nothing
 * when it is not running (server/ctl_live.c). */
void ctl_live_acl_changed(const struct conf *c);
/* coffrectl group ... and mailbox acl|seen ... (server/ctl_acl.c); for the
 * latter argv[0] is "mailbox" */
int ctl_group_main(const struct conf *c, int argc, char **argv);
void ctl_group_usage(FILE *f);
int ctl_mailbox_acl(const struct conf *c, int argc, char **argv);
void ctl_mailbox_acl_usage(FILE *f);

/* coffrectl log verify FILE... (server/ctl_log.c) */
int ctl_log_main(const struct conf *c, int argc, char **argv);
void ctl_log_usage(FILE *f);
/* The audit line of an administrator action: the audit log (or the log
 * target) opened before the privilege drop, then one line once the
 * command ran, with who ran it (real uid, SUDO_USER) and its exit code. */
int ctl_audit_open(const struct conf *c);
void ctl_audit_action(int argc, char **argv, int rc);

/* coffrectl backup|restore (server/ctl_backup.c); argv[0] tells which */
int ctl_backup_main(const struct conf *c, int argc, char **argv);
void ctl_backup_usage(FILE *f);
void ctl_restore_usage(FILE *f);
/* coffrectl user export (server/ctl_export.c); argv[0] is "user" */
int ctl_user_export(const struct conf *c, int argc, char **argv);
/* coffrectl user cert add|del|list|require (server/ctl_cert.c); argv[0] is "user" */
int ctl_user_cert(const struct conf *c, int argc, char **argv);
/* coffrectl user app-password add|list|del (server/ctl_app.c); argv[0] is
 * "user" */
int ctl_user_app_password(const struct conf *c, int argc, char **argv);
/* A new password from stdin (one line) or twice from the terminal, checked
 * by the password policy (server/ctl_user.c). Returns an exit code. */
int ctl_read_password(bool from_stdin, char *pw, size_t cap);

/* coffrectl slot add|list|del (server/ctl_slot.c) */
int ctl_slot_main(const struct conf *c, int argc, char **argv);
void ctl_slot_usage(FILE *f);
/* coffrectl accounts export|import (server/ctl_accounts.c) */
int ctl_accounts_main(const struct conf *c, int argc, char **argv);
void ctl_accounts_usage(FILE *f);
/* coffrectl user set-slot ADDRESS NAME (server/ctl_slot.c); argv[0] is "user" */
int ctl_user_set_slot(const struct conf *c, int argc, char **argv);
/* Opens the account directory after ctl_prepare_data_dir, with the
 * configured SCRAM iterations. Returns an exit code, the reason printed. */
struct auth_db;
int ctl_open_directory(const struct conf *c, struct auth_db **db);

/* coffrectl import --from-... (server/ctl_import*.c) */
int ctl_import_main(const struct conf *c, int argc, char **argv);
void ctl_import_usage(FILE *f);

#endif
