/* coffrectl user ...: add, change, disable and remove accounts in
 * <data_dir>/accounts.sqlite, reading passwords from the terminal (echo
 * off) or from stdin, never from the command line. */
#include "auth/auth.h"
#include "server/base/config.h"
#include "server/ctl.h"
#include "storage/storage.h"

#include <crypt.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PURGE_DEPTH_MAX 64 /* Maildir++ trees are shallow */

void ctl_user_usage(FILE *f)
{
    fprintf(f, "  user add ADDRESS [--password-stdin] [--quota SIZE] [--max-messages N]\n"
               "           [--slot NAME]         (default: slot_name when set)\n"
               "  user set-slot ADDRESS NAME     (the slot that holds the account)\n"
               "  user move ADDRESS --to SLOT [--keep-source] [--target-data-dir DIR]\n"
               "                                 (copy its mail to the slot's data directory\n"
               "                                 and make it live there; rerun after a crash)\n"
               "  user passwd ADDRESS [--password-stdin]\n"
               "  user del ADDRESS [--purge]     (--purge also removes the mail)\n"
               "  user list\n"
               "  user show ADDRESS\n"
               "  user disable ADDRESS\n"
               "  user enable ADDRESS\n"
               "  user quota ADDRESS [SIZE] [--max-messages N]\n"
               "                                 (SIZE like 500M or 2G; 0 = unlimited)\n"
               "  user export ADDRESS --mbox FILE [--folder NAME]\n"
               "                                 (every folder, or one, as an mboxrd file)\n"
               "  user cert add ADDRESS FILE|--fingerprint HEX\n"
               "  user cert del ADDRESS FILE|--fingerprint HEX\n"
               "                                 (pin a client certificate to the account)\n"
               "  user cert list [ADDRESS]\n"
               "  user cert require ADDRESS yes|no\n"
               "                                 (password logins need the certificate too)\n"
               "  user app-password add ADDRESS --label LABEL [--password-stdin]\n"
               "  user app-password list ADDRESS\n"
               "  user app-password del ADDRESS LABEL|ID\n"
               "                                 (extra passwords for IMAP and POP3)\n");
}

/* Command line of one verb: positional arguments and the known options. */
struct args {
    const char *pos[4];
    int npos;
    bool password_stdin;
    bool purge;
    const char *quota;
    const char *max_messages;
    const char *slot;
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "coffrectl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nusage:\n");
    ctl_user_usage(stderr);
    return CTL_EXIT_USAGE;
}

/* Exit code and message for an auth error code. */
static int auth_error(int rc, const char *address)
{
    switch (rc) {
    case AUTH_E_NOUSER:
        fprintf(stderr, "coffrectl: no such user: %s\n", address);
        return CTL_EXIT_NOUSER;
    case AUTH_E_EXISTS:
        fprintf(stderr, "coffrectl: user already exists: %s\n", address);
        return CTL_EXIT_EXISTS;
    case AUTH_E_BADADDR:
        fprintf(stderr, "coffrectl: not a valid address: %s\n", address);
        return CTL_EXIT_BADADDR;
    case AUTH_E_WEAKPW:
        fprintf(stderr, "coffrectl: password refused\n");
        return CTL_EXIT_WEAKPW;
    default:
        fprintf(stderr, "coffrectl: database error on %s\n", address);
        return CTL_EXIT_SYSTEM;
    }
}

/* ---- reading passwords ---- */

static int tty_fd = -1;
static struct termios tty_saved;
static volatile sig_atomic_t tty_echo_off;

static void restore_tty(void)
{
    if (tty_echo_off) {
        tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
        tty_echo_off = 0;
    }
}

/* A signal while echo is off: give the terminal back, then die of it. */
static void on_signal(int sig)
{
    restore_tty();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Reads one line from fd into buf (NUL-terminated, CR/LF stripped).
 * Returns its length, -1 on a read error, -2 when it did not fit. */
static long read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    bool toolong = false;
    ssize_t r;
    char c;

    for (;;) {
        r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0 || c == '\n')
            break;
        if (n + 1 < cap)
            buf[n++] = c;
        else
            toolong = true;
    }
    c = 0;
    while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == '\n'))
        n--;
    buf[n] = '\0';
    if (toolong) {
        explicit_bzero(buf, cap);
        return -2;
    }
    return (long)n;
}

static long prompt(const char *text, char *buf, size_t cap)
{
    struct termios t;
    long n;

    if (write(tty_fd, text, strlen(text)) < 0)
        return -1;
    if (tcgetattr(tty_fd, &tty_saved) < 0)
        return -1;
    t = tty_saved;
    t.c_lflag &= ~(tcflag_t)ECHO;
    t.c_lflag |= ECHONL;
    tty_echo_off = 1;
    if (tcsetattr(tty_fd, TCSAFLUSH, &t) < 0) {
        tty_echo_off = 0;
        return -1;
    }
    n = read_line(tty_fd, buf, cap);
    restore_tty();
    return n;
}

/* Gets a new password into pw (cap bytes), from stdin or twice from the
 * terminal, and applies the password policy. Returns an exit code. */
static int get_password(bool from_stdin, char *pw, size_t cap)
{
    char again[AUTH_PASSWORD_MAX + 2], err[160];
    struct sigaction sa, old_int, old_term, old_hup, old_quit;
    long n, m;
    int rc = CTL_EXIT_OK;

    if (from_stdin) {
        n = read_line(STDIN_FILENO, pw, cap);
        if (n == -1) {
            fprintf(stderr, "coffrectl: reading the password from stdin: %s\n", strerror(errno));
            return CTL_EXIT_SYSTEM;
        }
    } else {
        tty_fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (tty_fd < 0) {
            fprintf(stderr, "coffrectl: no terminal to ask for the password; "
                            "use --password-stdin\n");
            return CTL_EXIT_USAGE;
        }
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        sigaction(SIGHUP, &sa, &old_hup);
        sigaction(SIGQUIT, &sa, &old_quit);
        n = prompt("New password: ", pw, cap);
        m = n >= 0 ? prompt("Retype new password: ", again, sizeof(again)) : 0;
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGHUP, &old_hup, NULL);
        sigaction(SIGQUIT, &old_quit, NULL);
        close(tty_fd);
        tty_fd = -1;
        if (n == -1 || m == -1) {
            fprintf(stderr, "coffrectl: reading the password from the terminal failed\n");
            rc = CTL_EXIT_SYSTEM;
        } else if (n >= 0 && (m != n || strcmp(pw, again) != 0)) {
            fprintf(stderr, "coffrectl: the two passwords differ\n");
            rc = CTL_EXIT_WEAKPW;
        }
        explicit_bzero(again, sizeof(again));
        if (rc != CTL_EXIT_OK)
            return rc;
    }
    if (n == -2) {
        fprintf(stderr, "coffrectl: the password is too long (at most %d bytes)\n",
                AUTH_PASSWORD_MAX);
        return CTL_EXIT_WEAKPW;
    }
    if (auth_password_check(pw, (size_t)n, err, sizeof(err)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: %s\n", err);
        return CTL_EXIT_WEAKPW;
    }
    return CTL_EXIT_OK;
}

int ctl_read_password(bool from_stdin, char *pw, size_t cap)
{
    return get_password(from_stdin, pw, cap);
}

/* ---- removing a user's mail ---- */

/* Removes name (relative to dirfd) and, for a directory, all it holds,
 * never following a symbolic link and never leaving the file system. */
static int remove_tree(int dirfd, const char *name, dev_t dev, int depth)
{
    struct dirent *de;
    struct stat st;
    DIR *d;
    int fd, rc = 0;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;
    if (st.st_dev != dev || depth > PURGE_DEPTH_MAX) {
        errno = st.st_dev != dev ? EXDEV : ELOOP;
        return -1;
    }
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    while ((errno = 0, de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (remove_tree(fd, de->d_name, dev, depth + 1) < 0) {
            rc = -1;
            break;
        }
    }
    if (!de && errno)
        rc = -1;
    closedir(d);
    if (rc == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0)
        rc = -1;
    return rc;
}

/* Removes <data_dir>/users/<id>. Returns 0, 1 when there was nothing, -1. */
static int purge_mail(const struct conf *c, int64_t id, char *path, size_t pathlen)
{
    char users[CONF_PATH_MAX + 16], name[32];
    struct stat st;
    int fd, r;

    snprintf(path, pathlen, "%s/users/%" PRId64, c->data_dir, id);
    r = snprintf(users, sizeof(users), "%s/users", c->data_dir);
    if (r < 0 || (size_t)r >= sizeof(users)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = open(users, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 1 : -1;
    snprintf(name, sizeof(name), "%" PRId64, id);
    if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        r = errno == ENOENT ? 1 : -1;
        close(fd);
        return r;
    }
    r = remove_tree(fd, name, st.st_dev, 0);
    close(fd);
    return r;
}

/* ---- verbs ---- */

static void format_quota(uint64_t q, char *buf, size_t len)
{
    if (q == 0)
        snprintf(buf, len, "unlimited");
    else if (q % (1ull << 30) == 0)
        snprintf(buf, len, "%" PRIu64 "G", q >> 30);
    else if (q % (1ull << 20) == 0)
        snprintf(buf, len, "%" PRIu64 "M", q >> 20);
    else if (q % (1ull << 10) == 0)
        snprintf(buf, len, "%" PRIu64 "K", q >> 10);
    else
        snprintf(buf, len, "%" PRIu64, q);
}

static int parse_quota(const char *s, uint64_t *q)
{
    if (conf_parse_size(s, q) < 0 || *q > INT64_MAX)
        return usage_error("not a size: %s (use e.g. 500M, 2G, 0 for unlimited)", s);
    return CTL_EXIT_OK;
}

static int parse_count(const char *s, uint64_t *n)
{
    char *end;

    errno = 0;
    *n = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end || errno || *n > INT64_MAX)
        return usage_error("not a number of messages: %s (0 for unlimited)", s);
    return CTL_EXIT_OK;
}

static int print_account(const struct auth_account *a, void *arg)
{
    char q[32];

    format_quota(a->quota_bytes, q, sizeof(q));
    printf("%s\t%" PRId64 "\t%s\t%s\t%s%s%s\n", a->address, a->id, q,
           a->disabled ? "disabled" : "enabled", a->slot[0] ? a->slot : "-",
           a->move_to[0] ? "->" : "", a->move_to);
    return 0;
}

int ctl_open_directory(const struct conf *c, struct auth_db **db)
{
    char err[1024];
    int rc;

    rc = ctl_prepare_data_dir(c);
    if (rc != CTL_EXIT_OK)
        return rc;
    if (auth_db_open(c->data_dir, db, err, sizeof(err)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: %s\n", err);
        return CTL_EXIT_SYSTEM;
    }
    auth_db_set_scram_iterations(*db, c->scram_iterations);
    return CTL_EXIT_OK;
}

static int run_verb(const struct conf *c, const char *verb, const struct args *a,
                    const char *address)
{
    char pw[AUTH_PASSWORD_MAX + 2], path[CONF_PATH_MAX + 48], q[32], n[32], when[32];
    struct auth_account acct;
    struct auth_db *db = NULL;
    uint64_t quota = 0, max_messages = 0;
    struct tm tm;
    time_t t;
    int rc, r;

    /* everything from the command line is checked before any file is opened */
    if (a->quota && (rc = parse_quota(a->quota, &quota)) != CTL_EXIT_OK)
        return rc;
    if (!strcmp(verb, "quota") && a->npos > 1 &&
        (rc = parse_quota(a->pos[1], &quota)) != CTL_EXIT_OK)
        return rc;
    if (!strcmp(verb, "quota") && a->npos < 2 && !a->max_messages)
        return usage_error("user quota: %s", "give a SIZE, --max-messages N or both");
    if (a->max_messages && (rc = parse_count(a->max_messages, &max_messages)) != CTL_EXIT_OK)
        return rc;
    if (!strcmp(verb, "add") || !strcmp(verb, "passwd")) {
        rc = get_password(a->password_stdin, pw, sizeof(pw));
        if (rc != CTL_EXIT_OK) {
            explicit_bzero(pw, sizeof(pw));
            return rc;
        }
    }
    rc = ctl_open_directory(c, &db);
    if (rc != CTL_EXIT_OK)
        goto out;

    if (!strcmp(verb, "add")) {
        /* an explicit --slot must be known; the configured slot_name need not */
        const char *slot = a->slot ? a->slot : c->slot_name;

        if (a->slot && (r = auth_slot_get(db, a->slot, NULL)) != AUTH_OK) {
            if (r == AUTH_E_NOUSER)
                fprintf(stderr, "coffrectl: no such slot: %s (coffrectl slot add)\n", a->slot);
            else
                fprintf(stderr, "coffrectl: database error reading slot %s\n", a->slot);
            rc = r == AUTH_E_NOUSER ? CTL_EXIT_NOUSER : CTL_EXIT_SYSTEM;
            goto out;
        }
        r = auth_user_add(db, address, pw, quota, max_messages, &acct);
        if (r == AUTH_OK && slot[0]) {
            r = auth_user_set_slot(db, address, slot);
            snprintf(acct.slot, sizeof(acct.slot), "%s", slot);
        }
        if (r != AUTH_OK) {
            rc = auth_error(r, address);
            goto out;
        }
        if (acct.slot[0])
            printf("added %s (id %" PRId64 ") on slot %s\n", acct.address, acct.id, acct.slot);
        else
            printf("added %s (id %" PRId64 ")\n", acct.address, acct.id);
    } else if (!strcmp(verb, "passwd")) {
        r = auth_user_passwd(db, address, pw);
        if (r != AUTH_OK) {
            rc = auth_error(r, address);
            goto out;
        }
        printf("password changed for %s\n", address);
    } else if (!strcmp(verb, "del")) {
        r = auth_user_del(db, address, &acct);
        if (r != AUTH_OK) {
            rc = auth_error(r, address);
            goto out;
        }
        ctl_live_acl_changed(c); /* its entries went with it */
        snprintf(path, sizeof(path), "%s/users/%" PRId64, c->data_dir, acct.id);
        ctl_live_user_gone(c, acct.address, "deleted"); /* before its mail goes */
        /* what the delivery journal holds for it joins its mail (and leaves
         * the journal) */
        int jr = storage_journal_flush(c->data_dir, acct.id);
        if (jr != 0)
            fprintf(stderr, "coffrectl: %s: its deliveries in the delivery journal: %s\n",
                    acct.address, storage_strerror(jr));
        if (!a->purge) {
            printf("deleted %s (id %" PRId64 "); mail kept in %s\n", acct.address, acct.id, path);
            goto out;
        }
        r = purge_mail(c, acct.id, path, sizeof(path));
        if (r < 0) {
            fprintf(stderr, "coffrectl: deleted %s, but removing %s failed: %s\n", acct.address,
                    path, strerror(errno));
            rc = CTL_EXIT_SYSTEM;
            goto out;
        }
        printf("deleted %s (id %" PRId64 ")%s %s\n", acct.address, acct.id,
               r == 1 ? "; no mail directory at" : "; removed", path);
    } else if (!strcmp(verb, "list")) {
        if (auth_user_list(db, print_account, NULL) != AUTH_OK) {
            fprintf(stderr, "coffrectl: database error while listing\n");
            rc = CTL_EXIT_SYSTEM;
        }
    } else if (!strcmp(verb, "show")) {
        r = auth_user_get(db, address, &acct);
        if (r != AUTH_OK) {
            rc = auth_error(r, address);
            goto out;
        }
        format_quota(acct.quota_bytes, q, sizeof(q));
        if (acct.quota_messages)
            snprintf(n, sizeof(n), "%" PRIu64, acct.quota_messages);
        else
            snprintf(n, sizeof(n), "unlimited");
        t = (time_t)acct.created;
        if (!gmtime_r(&t, &tm) || !strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm))
            snprintf(when, sizeof(when), "%" PRId64, acct.created);
        printf("address: %s\n"
               "id:      %" PRId64 "\n"
               "status:  %s\n"
               "quota:   %s\n"
               "max messages: %s\n"
               "created: %s\n"
               "mail:    %s/users/%" PRId64 "\n"
               "require client certificate: %s\n"
               "slot:    %s\n",
               acct.address, acct.id, acct.disabled ? "disabled" : "enabled", q, n, when,
               c->data_dir, acct.id, acct.require_client_cert ? "yes" : "no",
               acct.slot[0] ? acct.slot : "(none)");
        if (acct.move_to[0])
            printf("moving to: %s\n", acct.move_to);
    } else if (!strcmp(verb, "disable") || !strcmp(verb, "enable")) {
        bool off = !strcmp(verb, "disable");

        r = auth_user_set_disabled(db, address, off);
        if (r != AUTH_OK) {
            rc = auth_error(r, address);
            goto out;
        }
        printf("%s %s\n", off ? "disabled" : "enabled", address);
        if (off)
            ctl_live_user_gone(c, address, "disabled");
    } else if (!strcmp(verb, "quota")) {
        r = a->npos > 1 ? auth_user_set_quota(db, address, quota) : AUTH_OK;
        if (r == AUTH_OK && a->max_messages)
            r = auth_user_set_max_messages(db, address, max_messages);
        if (r != AUTH_OK) {
            rc = auth_error(r, address);
            goto out;
        }
        if (a->npos > 1) {
            format_quota(quota, q, sizeof(q));
            printf("quota of %s: %s\n", address, q);
        }
        if (a->max_messages && max_messages)
            printf("max messages of %s: %" PRIu64 "\n", address, max_messages);
        else if (a->max_messages)
            printf("max messages of %s: unlimited\n", address);
    }
out:
    explicit_bzero(pw, sizeof(pw));
    auth_db_close(db);
    return rc;
}

/* Verbs: name, positional arguments wanted, options allowed. */
static const struct verb {
    const char *name;
    int npos;
    bool password_stdin, purge, quota, max_messages;
    int nopt; /* optional positional arguments after the npos wanted */
} verbs[] = {
    {"add", 1, true, false, true, true, 0},       {"passwd", 1, true, false, false, false, 0},
    {"del", 1, false, true, false, false, 0},     {"list", 0, false, false, false, false, 0},
    {"show", 1, false, false, false, false, 0},   {"disable", 1, false, false, false, false, 0},
    {"enable", 1, false, false, false, false, 0}, {"quota", 1, false, false, false, true, 1},
};

int ctl_user_main(const struct conf *c, int argc, char **argv)
{
    const struct verb *v = NULL;
    char address[AUTH_ADDR_MAX];
    struct args a;

    if (argc < 2)
        return usage_error("%s: missing subcommand", "user");
    if (!strcmp(argv[1], "export"))
        return ctl_user_export(c, argc, argv);
    if (!strcmp(argv[1], "cert"))
        return ctl_user_cert(c, argc, argv);
    if (!strcmp(argv[1], "app-password"))
        return ctl_user_app_password(c, argc, argv);
    if (!strcmp(argv[1], "set-slot"))
        return ctl_user_set_slot(c, argc, argv);
    if (!strcmp(argv[1], "move"))
        return ctl_user_move(c, argc, argv);
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (!strcmp(argv[1], verbs[i].name))
            v = &verbs[i];
    if (!v)
        return usage_error("unknown command: user %s", argv[1]);

    memset(&a, 0, sizeof(a));
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];

        if (v->password_stdin && !strcmp(s, "--password-stdin")) {
            a.password_stdin = true;
        } else if (v->purge && !strcmp(s, "--purge")) {
            a.purge = true;
        } else if (v->quota && !strcmp(s, "--quota")) {
            if (i + 1 >= argc)
                return usage_error("%s needs a SIZE", s);
            a.quota = argv[++i];
        } else if (v->quota && !strncmp(s, "--quota=", 8)) {
            a.quota = s + 8;
        } else if (v->max_messages && !strcmp(s, "--max-messages")) {
            if (i + 1 >= argc)
                return usage_error("%s needs a number", s);
            a.max_messages = argv[++i];
        } else if (v->max_messages && !strncmp(s, "--max-messages=", 15)) {
            a.max_messages = s + 15;
        } else if (v->quota && !strcmp(s, "--slot")) { /* add only */
            if (i + 1 >= argc)
                return usage_error("%s needs a slot name", s);
            a.slot = argv[++i];
        } else if (s[0] == '-' && s[1] != '\0') {
            return usage_error("unknown option: %s", s);
        } else if (a.npos < v->npos + v->nopt) {
            a.pos[a.npos++] = s;
        } else {
            return usage_error("unexpected argument: %s", s);
        }
    }
    if (a.npos < v->npos)
        return usage_error("user %s: missing argument", v->name);

    address[0] = '\0';
    if (v->npos >= 1 && auth_normalize_address(a.pos[0], strlen(a.pos[0]), c->default_domain,
                                               address, sizeof(address)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: not a valid address: %s%s\n", a.pos[0],
                strchr(a.pos[0], '@') || c->default_domain[0]
                    ? ""
                    : " (no '@' and no default_domain configured)");
        return CTL_EXIT_BADADDR;
    }
    return run_verb(c, v->name, &a, address);
}
