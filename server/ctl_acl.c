/* coffrectl group ... and coffrectl mailbox acl|seen ...: the groups that
 * access control lists may name, and the lists themselves (auth/acl.c),
 * written in the account database. Each change is then announced to the
 * running coffred, if any, through its control socket (`ACL`), so that
 * its sessions see it at once. */
#include "auth/acl.h"
#include "auth/auth.h"
#include "server/base/config.h"
#include "server/ctl.h"
#include "storage/storage.h"

#include <stdio.h>
#include <string.h>

void ctl_group_usage(FILE *f)
{
    fprintf(f,
            "  group add|del NAME             (a group that access control lists name as $NAME)\n"
            "  group members NAME [add|del ADDRESS]\n"
            "  group list\n");
}

void ctl_mailbox_acl_usage(FILE *f)
{
    fprintf(f, "  mailbox acl get OWNER MAILBOX  (its access control list)\n"
               "  mailbox acl set OWNER MAILBOX IDENT [+|-]RIGHTS\n"
               "                                 (IDENT: ADDRESS, anyone, $GROUP, -IDENT to take\n"
               "                                 rights away; RIGHTS: letters of lrswipkxtea)\n"
               "  mailbox acl delete OWNER MAILBOX IDENT\n"
               "  mailbox seen OWNER MAILBOX shared|per-user\n"
               "                                 (\\Seen of the other users: their own, or the "
               "owner's)\n");
}

/* An exit code for an auth or acl error, said on stderr. */
static int error(int rc, const char *what)
{
    switch (rc) {
    case AUTH_E_NOUSER:
        fprintf(stderr, "coffrectl: no such user: %s\n", what);
        return CTL_EXIT_NOUSER;
    case ACL_E_NOGROUP:
        fprintf(stderr, "coffrectl: no such group: %s\n", what);
        return CTL_EXIT_NOUSER;
    case AUTH_E_EXISTS:
        fprintf(stderr, "coffrectl: %s exists already\n", what);
        return CTL_EXIT_EXISTS;
    case ACL_E_BADIDENT:
        fprintf(stderr,
                "coffrectl: not an identifier: %s (an address, anyone or $GROUP, with '-' in "
                "front for a negative entry; group names: 1 to %d of a-z 0-9 . _ -)\n",
                what, ACL_GROUP_MAX);
        return CTL_EXIT_BADADDR;
    case ACL_E_BADRIGHTS:
        fprintf(stderr,
                "coffrectl: not a rights string: %s (letters of %s, c and d, after an "
                "optional + or -)\n",
                what, ACL_RIGHTS_CHARS);
        return CTL_EXIT_USAGE;
    case ACL_E_BADNAME:
        fprintf(stderr, "coffrectl: not a mailbox name: %s\n", what);
        return CTL_EXIT_USAGE;
    case ACL_E_OWNER:
        fprintf(stderr, "coffrectl: %s owns the mailbox and has every right on it\n", what);
        return CTL_EXIT_USAGE;
    case ACL_E_LIMIT:
        fprintf(stderr, "coffrectl: the mailbox has acl_max_entries entries already\n");
        return CTL_EXIT_LIMIT;
    default:
        fprintf(stderr, "coffrectl: account database error\n");
        return CTL_EXIT_SYSTEM;
    }
}

static int open_db(const struct conf *c, struct auth_db **db)
{
    char err[512];
    int rc;

    if ((rc = ctl_prepare_data_dir(c)) != CTL_EXIT_OK)
        return rc;
    if (auth_db_open(c->data_dir, db, err, sizeof(err)) != AUTH_OK) {
        fprintf(stderr, "coffrectl: %s\n", err);
        return CTL_EXIT_SYSTEM;
    }
    acl_db_set_max_entries(*db, c->acl_max_entries);
    return CTL_EXIT_OK;
}

/* ---- groups ---- */

struct group_list {
    char last[ACL_GROUP_MAX + 1];
    unsigned members;
    bool any;
    bool addresses; /* print the members, one a line */
};

static void group_flush(struct group_list *g)
{
    if (g->any && !g->addresses)
        printf("%s\t%u\n", g->last, g->members);
}

static int on_group(void *arg, const char *group, const char *address)
{
    struct group_list *g = arg;

    if (g->addresses) {
        if (*address)
            printf("%s\n", address);
        return 0;
    }
    if (!g->any || strcmp(g->last, group) != 0) {
        group_flush(g);
        snprintf(g->last, sizeof(g->last), "%s", group);
        g->members = 0;
        g->any = true;
    }
    g->members += *address != '\0';
    return 0;
}

int ctl_group_main(const struct conf *c, int argc, char **argv)
{
    const char *verb = argc > 1 ? argv[1] : "";
    char addr[AUTH_ADDR_MAX];
    struct auth_db *db = NULL;
    bool changed = false;
    int rc, r;

    bool ok = (!strcmp(verb, "add") && argc == 3) || (!strcmp(verb, "del") && argc == 3) ||
              (!strcmp(verb, "list") && argc == 2) ||
              (!strcmp(verb, "members") &&
               (argc == 3 || (argc == 5 && (!strcmp(argv[3], "add") || !strcmp(argv[3], "del")))));
    if (!ok) {
        fprintf(stderr, "usage:\n");
        ctl_group_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if ((rc = open_db(c, &db)) != CTL_EXIT_OK)
        return rc;
    if (!strcmp(verb, "add")) {
        r = acl_group_add(db, argv[2]);
        rc = r == AUTH_OK ? CTL_EXIT_OK : error(r, argv[2]);
        if (r == AUTH_OK)
            printf("added group %s\n", argv[2]);
    } else if (!strcmp(verb, "del")) {
        r = acl_group_del(db, argv[2]);
        rc = r == AUTH_OK ? CTL_EXIT_OK : error(r, argv[2]);
        if (r == AUTH_OK) {
            printf("deleted group %s and the entries naming it\n", argv[2]);
            changed = true;
        }
    } else if (!strcmp(verb, "list")) {
        struct group_list g = {0};
        r = acl_group_list(db, NULL, on_group, &g);
        group_flush(&g);
        rc = r == AUTH_OK ? CTL_EXIT_OK : error(r, "");
    } else if (argc == 3) { /* members NAME */
        struct group_list g = {.addresses = true};
        r = acl_group_list(db, argv[2], on_group, &g);
        rc = r == AUTH_OK ? CTL_EXIT_OK : error(r, argv[2]);
    } else {
        bool add = !strcmp(argv[3], "add");
        if (auth_normalize_address(argv[4], strlen(argv[4]), c->default_domain, addr,
                                   sizeof(addr)) != AUTH_OK) {
            fprintf(stderr, "coffrectl: not a valid address: %s\n", argv[4]);
            rc = CTL_EXIT_BADADDR;
            goto out;
        }
        r = acl_group_member(db, argv[2], addr, add);
        if (r == AUTH_OK) {
            printf("%s %s %s group %s\n", add ? "added" : "removed", addr, add ? "to" : "from",
                   argv[2]);
            changed = true;
            rc = CTL_EXIT_OK;
        } else if (r == AUTH_E_EXISTS) {
            fprintf(stderr, "coffrectl: %s is in %s already\n", addr, argv[2]);
            rc = CTL_EXIT_EXISTS;
        } else if (r == AUTH_E_NOUSER && !add) {
            /* the account may exist and just not be a member */
            struct auth_account a;
            if (auth_user_get(db, addr, &a) == AUTH_OK) {
                fprintf(stderr, "coffrectl: %s is not in %s\n", addr, argv[2]);
                rc = CTL_EXIT_NOUSER;
            } else {
                rc = error(r, addr);
            }
        } else {
            rc = error(r, r == ACL_E_NOGROUP || r == ACL_E_BADIDENT ? argv[2] : addr);
        }
    }
out:
    auth_db_close(db);
    if (changed)
        ctl_live_acl_changed(c);
    return rc;
}

/* ---- mailbox acl / seen ---- */

/* Whether owner's store has mailbox (read, nothing created). */
static int mailbox_exists(const struct conf *c, const struct auth_account *owner,
                          const char *mailbox)
{
    struct storage_user *u;
    struct storage_mbox mb;
    int rc;

    if (!storage_has_index(c->data_dir, owner->id)) {
        fprintf(stderr, "coffrectl: %s has no mailbox %s (no mail store yet)\n", owner->address,
                mailbox);
        return CTL_EXIT_NOUSER;
    }
    if ((rc = storage_open(c->data_dir, owner->id, &u)) != 0) {
        fprintf(stderr, "coffrectl: cannot open the mail store of %s: %s\n", owner->address,
                storage_strerror(rc));
        return CTL_EXIT_SYSTEM;
    }
    rc = storage_mbox_get(u, mailbox, &mb);
    storage_close(u);
    if (rc == STORAGE_E_NOMBOX || rc == STORAGE_E_BADNAME) {
        fprintf(stderr, "coffrectl: %s has no mailbox %s\n", owner->address, mailbox);
        return CTL_EXIT_NOUSER;
    }
    if (rc) {
        fprintf(stderr, "coffrectl: reading the mailboxes of %s: %s\n", owner->address,
                storage_strerror(rc));
        return CTL_EXIT_SYSTEM;
    }
    return CTL_EXIT_OK;
}

static void print_entry(void *arg, const char *ident, unsigned rights)
{
    char r[ACL_RIGHTS_MAX];

    (void)arg;
    acl_rights_format(rights, r);
    printf("%s\t%s\n", ident, r);
}

struct one_entry {
    const char *ident;
    unsigned rights;
    bool found;
};

static void find_entry(void *arg, const char *ident, unsigned rights)
{
    struct one_entry *e = arg;

    if (!strcmp(ident, e->ident)) {
        e->rights = rights;
        e->found = true;
    }
}

/* The entry of ident on the mailbox now, from the tables. */
static int entry_now(struct auth_db *db, int64_t owner, const char *mailbox, const char *ident,
                     struct one_entry *e)
{
    struct acl_snap *s;

    *e = (struct one_entry){.ident = ident};
    if (acl_snap_load(db, &s) != AUTH_OK)
        return AUTH_E_TEMP;
    acl_snap_entries(s, owner, mailbox, find_entry, e);
    acl_snap_unref(s);
    return AUTH_OK;
}

int ctl_mailbox_acl(const struct conf *c, int argc, char **argv)
{
    const char *what = argv[1], *verb = argc > 2 ? argv[2] : "";
    struct auth_account owner;
    struct auth_db *db = NULL;
    char ident[ACL_IDENT_MAX];
    bool changed = false;
    int rc, r;

    bool ok = !strcmp(what, "acl")
                  ? ((!strcmp(verb, "get") && argc == 5) || (!strcmp(verb, "set") && argc == 7) ||
                     (!strcmp(verb, "delete") && argc == 6))
                  : argc == 5 && (!strcmp(argv[4], "shared") || !strcmp(argv[4], "per-user"));
    if (!ok) {
        fprintf(stderr, "usage:\n");
        ctl_mailbox_acl_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    /* mailbox seen OWNER MAILBOX ...: the owner is argv[2] */
    const char *who = !strcmp(what, "acl") ? argv[3] : argv[2];
    const char *mailbox = !strcmp(what, "acl") ? argv[4] : argv[3];
    if ((rc = ctl_account_lookup(c, who, &owner)) != CTL_EXIT_OK)
        return rc;
    if ((rc = open_db(c, &db)) != CTL_EXIT_OK)
        return rc;

    if (!strcmp(what, "seen")) {
        bool shared = !strcmp(argv[4], "shared");
        if ((rc = mailbox_exists(c, &owner, mailbox)) != CTL_EXIT_OK)
            goto out;
        r = acl_db_set_seen_shared(db, owner.id, mailbox, shared);
        rc = r == AUTH_OK ? CTL_EXIT_OK : error(r, mailbox);
        if (r == AUTH_OK) {
            printf("%s %s: \\Seen %s\n", owner.address, mailbox,
                   shared ? "shared (the owner's, for everyone)" : "kept per user");
            changed = true;
        }
    } else if (!strcmp(verb, "get")) {
        struct acl_snap *s;
        if (acl_snap_load(db, &s) != AUTH_OK) {
            rc = error(AUTH_E_TEMP, "");
            goto out;
        }
        acl_snap_entries(s, owner.id, mailbox, print_entry, NULL);
        acl_snap_unref(s);
        rc = CTL_EXIT_OK;
    } else {
        const char *in = argv[5];
        if (acl_ident_normalize(in, strlen(in), c->default_domain, ident) != 0) {
            rc = error(ACL_E_BADIDENT, in);
            goto out;
        }
        if (!strcmp(verb, "delete")) {
            struct one_entry e;
            if (entry_now(db, owner.id, mailbox, ident, &e) != AUTH_OK) {
                rc = error(AUTH_E_TEMP, "");
                goto out;
            }
            r = acl_db_delete(db, owner.id, mailbox, ident);
            if (r != AUTH_OK) {
                rc = error(r, r == ACL_E_BADNAME ? mailbox : in);
                goto out;
            }
            if (!e.found) {
                fprintf(stderr, "coffrectl: %s %s has no entry for %s\n", owner.address, mailbox,
                        ident);
                rc = CTL_EXIT_NOUSER;
                goto out;
            }
            printf("deleted %s from %s %s\n", ident, owner.address, mailbox);
            changed = true;
            rc = CTL_EXIT_OK;
            goto out;
        }
        unsigned rights;
        char mode, text[ACL_RIGHTS_MAX];
        if (acl_rights_parse(argv[6], strlen(argv[6]), &rights, &mode) != 0) {
            rc = error(ACL_E_BADRIGHTS, argv[6]);
            goto out;
        }
        if ((rc = mailbox_exists(c, &owner, mailbox)) != CTL_EXIT_OK)
            goto out;
        r = acl_db_set(db, owner.id, mailbox, ident, rights, mode);
        if (r != AUTH_OK) {
            rc = error(r, r == ACL_E_BADNAME                         ? mailbox
                          : r == ACL_E_NOGROUP || r == AUTH_E_NOUSER ? ident + (ident[0] == '-')
                                                                     : ident);
            goto out;
        }
        struct one_entry e;
        changed = true;
        rc = CTL_EXIT_OK;
        if (entry_now(db, owner.id, mailbox, ident, &e) == AUTH_OK) {
            acl_rights_format(e.found ? e.rights : 0, text);
            if (e.found)
                printf("%s %s: %s\t%s\n", owner.address, mailbox, ident, text);
            else
                printf("%s %s: %s has no rights left (entry removed)\n", owner.address, mailbox,
                       ident);
        }
    }
out:
    auth_db_close(db);
    if (changed)
        ctl_live_acl_changed(c);
    return rc;
}
