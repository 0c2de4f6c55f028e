/* Access control lists (RFC 4314) on mailboxes, and the groups they may
 * name. Kept in the account database beside the accounts (tables `acl`,
 * `acl_group`, `acl_member`, `mailbox_share`), so that every process and
 * every user's view reads one place. coffred works from an immutable
 * snapshot of those tables held in memory (loaded on the login service's
 * threads, swapped on the loop thread), so that a rights check, the
 * shared part of LIST and NAMESPACE cost no I/O on the loop.
 *
 * Mailboxes are named as their owner names them (UTF-8, '/' between
 * levels, "INBOX"). Identifiers are an account address (normalized),
 * "anyone", or "$group"; a leading '-' makes the entry negative (rights
 * taken away, RFC 4314 section 2). The owner of a mailbox always has every
 * right on it; entries naming the owner are refused. */
#ifndef COFFRE_AUTH_ACL_H
#define COFFRE_AUTH_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"

/* The rights of RFC 4314 section 2.1, as bits. */
enum {
    ACL_LOOKUP = 1u << 0,  /* l: LIST, visible */
    ACL_READ = 1u << 1,    /* r: SELECT, EXAMINE, FETCH, SEARCH, COPY from, STATUS */
    ACL_SEEN = 1u << 2,    /* s: keep \Seen */
    ACL_WRITE = 1u << 3,   /* w: flags and keywords other than \Seen and \Deleted */
    ACL_INSERT = 1u << 4,  /* i: APPEND, COPY/MOVE into */
    ACL_POST = 1u << 5,    /* p: delivery (LMTP +detail) */
    ACL_CREATE = 1u << 6,  /* k: CREATE children, RENAME into */
    ACL_DELETE = 1u << 7,  /* x: DELETE, RENAME away */
    ACL_DELMSG = 1u << 8,  /* t: \Deleted */
    ACL_EXPUNGE = 1u << 9, /* e: EXPUNGE, MOVE from */
    ACL_ADMIN = 1u << 10,  /* a: SETACL, DELETEACL, GETACL, LISTRIGHTS */
};
#define ACL_ALL 0x7ffu
#define ACL_RIGHTS_CHARS "lrswipkxtea" /* in bit order */
#define ACL_RIGHTS_MAX 16              /* a rights string's room, NUL included */
#define ACL_GROUP_MAX 64               /* longest group name, '$' and NUL excluded */
#define ACL_IDENT_MAX (AUTH_ADDR_MAX + 1)
#define ACL_MAILBOX_MAX 256 /* room for a mailbox name (storage: 200 bytes), NUL included */

/* Error codes beside AUTH_E_* (negative). */
enum {
    ACL_E_BADRIGHTS = -30, /* a letter outside RFC 4314's */
    ACL_E_BADIDENT = -31,  /* not an address, "anyone" or "$group" */
    ACL_E_OWNER = -32,     /* an entry naming the mailbox's owner */
    ACL_E_NOGROUP = -33,   /* a group that does not exist */
    ACL_E_LIMIT = -34,     /* acl_max_entries reached for the mailbox */
    ACL_E_BADNAME = -35,   /* not a mailbox name (empty, long, control characters, "a//b") */
};

#define ACL_MAX_ENTRIES_DEFAULT 100 /* acl_max_entries until set */

/* ---- rights strings (pure) ---- */

/* Parses RFC 4314 rights ("lrs", the obsolete "c" and "d" mapped as its
 * section 2.1.1 says). *mode is '+', '-' (a leading sign: add or remove)
 * or '=' (replace). 0 or ACL_E_BADRIGHTS. */
int acl_rights_parse(const char *text, size_t len, unsigned *rights, char *mode);
/* The letters of rights in ACL_RIGHTS_CHARS order; out has ACL_RIGHTS_MAX. */
void acl_rights_format(unsigned rights, char *out);
/* The same followed by the virtual rights of RFC 4314 section 2.1.1, for
 * MYRIGHTS and ACL responses: "c" when k or x is there, "d" when t or e is
 * (the "create" right is k and x, "delete" is t and e, as the RFC's
 * examples have it; acl_rights_parse maps them back the same way). */
void acl_rights_format_virtual(unsigned rights, char *out);
/* Checks an identifier and gives its stored form in out (ACL_IDENT_MAX):
 * addresses normalized with default_domain, "anyone", "$group", each
 * optionally '-'-prefixed. 0 or ACL_E_BADIDENT. */
int acl_ident_normalize(const char *in, size_t len, const char *default_domain, char *out);

/* ---- the database (blocking: coffrectl, or coffred's worker threads) ---- */

/* Creates the tables when missing; auth_db_open calls it. */
int acl_db_init(struct auth_db *db);
/* Entries one mailbox may have (acl_max_entries); ACL_MAX_ENTRIES_DEFAULT
 * until set. acl_db_set past it: ACL_E_LIMIT. */
void acl_db_set_max_entries(struct auth_db *db, unsigned max);
/* Sets (mode '=') or changes ('+', '-') an entry of owner's mailbox; an
 * entry left with no rights is removed. ident is in its stored form
 * (acl_ident_normalize); an address must be an account (AUTH_E_NOUSER
 * otherwise: rights are never granted ahead to an address someone may
 * take later), a group must exist (ACL_E_NOGROUP). Mailbox names: "INBOX"
 * (first level) in any case is "INBOX". */
int acl_db_set(struct auth_db *db, int64_t owner, const char *mailbox, const char *ident,
               unsigned rights, char mode);
int acl_db_delete(struct auth_db *db, int64_t owner, const char *mailbox, const char *ident);
/* The mailbox and its children were renamed or deleted by their owner:
 * their entries and share settings follow (renamed) or go (deleted).
 * Children are the names under "from/" ("a" never takes "ab" along). A
 * rename of INBOX (which stays, empty) gives the new mailbox a copy of
 * INBOX's entries and leaves INBOX's children alone. */
int acl_db_rename(struct auth_db *db, int64_t owner, const char *from, const char *to);
int acl_db_drop(struct auth_db *db, int64_t owner, const char *mailbox);
/* A new mailbox takes a copy of its parent's entries (as Cyrus does). */
int acl_db_inherit(struct auth_db *db, int64_t owner, const char *parent, const char *child);
/* \Seen of others on owner's mailbox: kept per user (default) or shared. */
int acl_db_set_seen_shared(struct auth_db *db, int64_t owner, const char *mailbox, bool shared);
/* Groups: name without '$', 1 to ACL_GROUP_MAX of [a-z0-9._-] (upper
 * case taken as lower). add: AUTH_E_EXISTS when there; del, member:
 * ACL_E_NOGROUP when missing; member: AUTH_E_NOUSER for an unknown
 * address, and for del of a non-member; AUTH_E_EXISTS for add of a
 * member. list: each (group, member address) in that order, a group
 * without members once with address ""; name NULL for every group. */
int acl_group_add(struct auth_db *db, const char *name);
int acl_group_del(struct auth_db *db, const char *name);
int acl_group_member(struct auth_db *db, const char *name, const char *address, bool add);
int acl_group_list(struct auth_db *db, const char *name,
                   int (*cb)(void *arg, const char *group, const char *address), void *arg);
/* An account goes (auth_user_del): its mailboxes' entries, the entries
 * naming it and its group memberships go too. Runs inside the caller's
 * transaction when there is one. */
int acl_db_forget_account(struct auth_db *db, int64_t account, const char *address);

/* ---- the snapshot (immutable; any thread once made) ---- */

struct acl_snap;

int acl_snap_load(struct auth_db *db, struct acl_snap **out);
struct acl_snap *acl_snap_ref(struct acl_snap *s);
void acl_snap_unref(struct acl_snap *s);
/* Its entries, and in *mailboxes (may be NULL) the mailboxes they are on
 * (for the log). */
size_t acl_snap_count(const struct acl_snap *s, size_t *mailboxes);

/* The rights of user (id and address) on owner's mailbox: ACL_ALL for the
 * owner; otherwise the union of the entries naming the user, "anyone" and
 * the user's groups, minus the union of the negative ones. */
unsigned acl_snap_rights(const struct acl_snap *s, int64_t owner, const char *mailbox, int64_t user,
                         const char *address);
/* The entries of a mailbox (GETACL), cb(ident, rights) in ident order. */
void acl_snap_entries(const struct acl_snap *s, int64_t owner, const char *mailbox,
                      void (*cb)(void *arg, const char *ident, unsigned rights), void *arg);
/* Owners with at least one mailbox on which user has ACL_LOOKUP, in
 * address order (the levels of the shared namespace). */
void acl_snap_owners(const struct acl_snap *s, int64_t user, const char *address,
                     void (*cb)(void *arg, int64_t owner, const char *owner_address), void *arg);
/* owner's mailboxes on which user has any right, in name order, with the
 * rights (LIST of the shared namespace: those with ACL_LOOKUP). */
void acl_snap_mailboxes(const struct acl_snap *s, int64_t owner, int64_t user, const char *address,
                        void (*cb)(void *arg, const char *mailbox, unsigned rights), void *arg);
/* The owner's id for an address that owns a mailbox with entries, or 0. */
int64_t acl_snap_owner_id(const struct acl_snap *s, const char *owner_address);
bool acl_snap_seen_shared(const struct acl_snap *s, int64_t owner, const char *mailbox);

/* ---- in coffred (loop thread) ---- */

/* The current snapshot (never NULL once the service runs); borrowed until
 * the loop next runs: take a reference to keep it longer. */
const struct acl_snap *auth_service_acl(struct auth_service *s);
/* One change, run on the service's threads (write, then a new snapshot
 * swapped in before cb runs). */
struct acl_change {
    enum {
        ACL_CH_SET,
        ACL_CH_DELETE,
        ACL_CH_RENAME,
        ACL_CH_DROP,
        ACL_CH_INHERIT,
    } op;
    int64_t owner;
    char mailbox[ACL_MAILBOX_MAX]; /* ACL_CH_RENAME: from; ACL_CH_INHERIT: parent */
    char other[ACL_MAILBOX_MAX];   /* ACL_CH_RENAME: to; ACL_CH_INHERIT: child */
    char ident[ACL_IDENT_MAX];
    unsigned rights;
    char mode;
};
/* cb's result is 0 or an AUTH_E_* / ACL_E_* code. Returns 0, or -1 when
 * out of memory (cb not called). */
int auth_service_acl_change(struct auth_service *s, const struct acl_change *ch,
                            void (*cb)(void *arg, int result), void *arg);
/* Reads the tables again (coffrectl changed them: control socket `ACL`).
 * cb, when not NULL, runs once the new snapshot is in place (AUTH_OK) or
 * could not be read (an error code), and also when the service ends first
 * (AUTH_E_TEMP), so that its arg can always be freed. Returns 0, or -1 when
 * out of memory (cb not called). */
int auth_service_acl_reload(struct auth_service *s, void (*cb)(void *arg, int result), void *arg);

#endif
