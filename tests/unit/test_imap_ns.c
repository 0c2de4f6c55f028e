/* Unit tests for the shared namespace's names (protocol/imap/imap_ns.c):
 * own names, the levels, another account's mailbox and the user's rights
 * on it from an ACL snapshot (tests/fuzz/acl_fixture.h), and the names
 * that must name nothing: other cases of the owner, climbs with "..",
 * empty levels, the user's own address, over-long names; the client's
 * name given back; the names CREATE refuses among one's own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"
#include "server/base/config.h"
#include "tests/fuzz/acl_fixture.h"
#include "tests/fuzz/fake_conn.h"
#include "tests/unit/check.h"

static struct imap_session sess;

static struct imap_mref resolve(const char *name)
{
    struct imap_mref r;
    memset(&r, 0xa5, sizeof(r));
    if (imap_ns_resolve(&sess, name, &r) != 0)
        r.rights = 0xdead;
    return r;
}

/* names nothing: in the shared namespace, no rights, no owner's name */
static bool nothing(const char *name)
{
    struct imap_mref r = resolve(name);
    return r.shared && r.rights == 0 && !imap_ns_visible(&r);
}

static bool gives_back(const char *name)
{
    struct imap_mref r = resolve(name);
    char out[IMAP_NAME_MAX + 1];
    return imap_ns_name(&r, out, sizeof(out)) == 0 && !strcmp(out, name);
}

static void test_own(void)
{
    struct imap_mref r = resolve("INBOX");
    CHECK_NAMED(!r.shared && r.owner == 7 && r.rights == ACL_ALL && !strcmp(r.name, "INBOX") &&
                    !strcmp(r.owner_address, "fuzz@example.org"),
                "INBOX is one's own, every right");
    r = resolve("Sharedx/y");
    CHECK_NAMED(!r.shared && !strcmp(r.name, "Sharedx/y"), "Sharedx is an own name");
    r = resolve("shared/y");
    CHECK_NAMED(!r.shared, "shared/y (another case) is an own name");
    CHECK_NAMED(gives_back("a/b"), "an own name given back as is");
    char longname[STORAGE_MBOX_NAME_MAX + 10];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    CHECK_NAMED(resolve(longname).rights == 0xdead, "an own name too long is refused");
}

static void test_levels(void)
{
    struct imap_mref r = resolve("Shared");
    CHECK_NAMED(r.shared && r.level && r.rights == 0, "Shared is a level");
    CHECK_NAMED(gives_back("Shared"), "Shared given back");
    r = resolve("Shared/alice@example.org");
    CHECK_NAMED(r.shared && r.level && r.owner == 1, "Shared/alice@example.org is her level");
    CHECK_NAMED(gives_back("Shared/alice@example.org"), "the owner's level given back");
    r = resolve("Shared/nobody@example.org");
    CHECK_NAMED(r.shared && !r.level && r.owner == 0, "an owner of nothing names nothing");
}

static void test_shared(void)
{
    struct imap_mref r = resolve("Shared/alice@example.org/support");
    CHECK_NAMED(r.shared && !r.level && r.owner == 1 && r.rights == ACL_ALL &&
                    !strcmp(r.name, "support") && imap_ns_visible(&r),
                "alice's support: fuzz has every right");
    CHECK_NAMED(gives_back("Shared/alice@example.org/support"), "a shared name given back");
    r = resolve("Shared/alice@example.org/inbox");
    CHECK_NAMED(r.rights == (ACL_LOOKUP | ACL_READ) && !strcmp(r.name, "INBOX"),
                "the owner's inbox in any case is INBOX (anyone lr)");
    r = resolve("Shared/alice@example.org/neg");
    CHECK_NAMED(r.rights == ACL_READ && imap_ns_visible(&r), "anyone lr minus -fuzz l: r");
    r = resolve("Shared/alice@example.org/a/b");
    CHECK_NAMED(r.rights == (ACL_LOOKUP | ACL_ADMIN | ACL_CREATE), "a group's rights");
    CHECK_NAMED(nothing("Shared/alice@example.org/hidden"), "bob's entry gives fuzz nothing");
    CHECK_NAMED(nothing("Shared/alice@example.org/missing"), "a missing mailbox: nothing");
    CHECK_NAMED(nothing("Shared/bob@example.org/Lists/x"), "a negative entry gives nothing");
    r = resolve("Shared/bob@example.org/Lists/y");
    CHECK_NAMED(r.rights == ACL_READ && r.owner == 2, "bob's Lists/y: r");
    CHECK_NAMED(resolve("Shared/bob@example.org/Lists").rights == 0,
                "the level above a shared mailbox: no rights");
}

static void test_attacks(void)
{
    static const char *const names[] = {
        "Shared/..",
        "Shared/../..",
        "Shared/../alice@example.org/support",
        "Shared/alice@example.org/../bob@example.org/Lists/y",
        "Shared/alice@example.org/support/..",
        "Shared/alice@example.org/./support",
        "Shared/alice@example.org/hidden/../support",
        "Shared/ALICE@example.org/support",
        "Shared/Alice@Example.org/support",
        "Shared//alice@example.org/support",
        "Shared/alice@example.org//support",
        "Shared/alice@example.org/support/",
        "Shared/alice@example.org/",
        "Shared/ alice@example.org/support",
        "Shared/fuzz@example.org/INBOX",
        "Shared/alice@example.org/sup*",
        "Shared/alice@example.org/sup%",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char what[160];
        snprintf(what, sizeof(what), "%s names nothing", names[i]);
        CHECK_NAMED(nothing(names[i]), what);
    }
    char big[IMAP_NAME_MAX];
    int n = snprintf(big, sizeof(big), "Shared/alice@example.org/");
    memset(big + n, 's', sizeof(big) - (size_t)n - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK_NAMED(nothing(big), "an owner's name over the length names nothing");
    char addr[AUTH_ADDR_MAX + 40];
    n = snprintf(addr, sizeof(addr), "Shared/");
    memset(addr + n, 'a', sizeof(addr) - (size_t)n - 1);
    addr[sizeof(addr) - 1] = '\0';
    CHECK_NAMED(nothing(addr), "an owner part over an address's length names nothing");
}

static void test_reserved(void)
{
    CHECK_NAMED(imap_ns_reserved(&sess, "Shared"), "Shared is reserved");
    CHECK_NAMED(imap_ns_reserved(&sess, "shared/x"), "shared/x is reserved (any case)");
    CHECK_NAMED(imap_ns_reserved(&sess, "SHARED"), "SHARED is reserved");
    CHECK_NAMED(!imap_ns_reserved(&sess, "Sharedx"), "Sharedx is not");
    CHECK_NAMED(!imap_ns_reserved(&sess, "INBOX/Shared"), "INBOX/Shared is not");
}

static void test_prefixes(void)
{
    struct conf *cf = fake_conn_conf();
    char saved[sizeof(cf->shared_prefix)];

    memcpy(saved, cf->shared_prefix, sizeof(saved));
    snprintf(cf->shared_prefix, sizeof(cf->shared_prefix), "%s", "");
    struct imap_mref r = resolve("Shared/alice@example.org/support");
    CHECK_NAMED(!r.shared && r.rights == ACL_ALL, "no prefix: every name is one's own");
    CHECK_NAMED(!imap_ns_reserved(&sess, "Shared"), "no prefix: nothing reserved");
    snprintf(cf->shared_prefix, sizeof(cf->shared_prefix), "%s", "Other/Users/");
    r = resolve("Other");
    CHECK_NAMED(r.shared && r.level, "Other of Other/Users/ is a level");
    r = resolve("Other/Users");
    CHECK_NAMED(r.shared && r.level, "Other/Users is the root");
    r = resolve("Other/Users/alice@example.org/support");
    CHECK_NAMED(r.rights == ACL_ALL && r.owner == 1, "a prefix of two levels");
    CHECK_NAMED(gives_back("Other/Users/alice@example.org/support"), "given back under it");
    CHECK_NAMED(!resolve("Shared/alice@example.org/support").shared, "Shared/ is own then");
    CHECK_NAMED(imap_ns_reserved(&sess, "other"), "other is reserved then");
    memcpy(cf->shared_prefix, saved, sizeof(saved));
}

int main(void)
{
    struct acl_snap *snap = acl_fixture_snapshot();
    struct conf *cf = fake_conn_conf();

    if (!snap)
        return 1;
    snprintf(cf->shared_prefix, sizeof(cf->shared_prefix), "%s", "Shared/");
    fake_conn_set_acl(snap);
    sess.c = fake_conn_new(true, false);
    sess.account_id = 7;
    sess.user = (char *)"fuzz@example.org";
    test_own();
    test_levels();
    test_shared();
    test_attacks();
    test_reserved();
    test_prefixes();
    fake_conn_set_acl(NULL);
    acl_snap_unref(snap);
    return check_summary();
}
