/* An ACL snapshot for the tests that drive IMAP sessions through the
 * stand-in connection (fake_conn.c, whose login is account 7,
 * fuzz@example.org): made once from a temporary account database, which
 * is removed at once. alice (1) shares INBOX with anyone (lr), support
 * with fuzz (every right), hidden with bob (l), a/b with $team (lak, fuzz
 * a member), neg with anyone (lr) but -fuzz (l); bob (2) has Lists/x
 * (-anyone r) and Lists/y (fuzz r). NULL on failure (reason on stderr). */
#ifndef COFFRE_ACL_FIXTURE_H
#define COFFRE_ACL_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "auth/acl.h"
#include "auth/auth.h"

static inline struct acl_snap *acl_fixture_snapshot(void)
{
    char dir[] = "/tmp/coffre-acl-fixture-XXXXXX", err[256], path[96];
    struct auth_db *db;
    struct auth_account a, b, f;
    struct acl_snap *snap = NULL;
    int r = -1;

    if (!mkdtemp(dir) || auth_db_open(dir, &db, err, sizeof(err)) != 0) {
        fprintf(stderr, "acl fixture: no database in %s\n", dir);
        rmdir(dir);
        return NULL;
    }
    if (auth_user_add(db, "alice@example.org", "pw-alice-123", 0, 0, &a) ||
        auth_user_add(db, "bob@example.org", "pw-bob-123456", 0, 0, &b))
        goto out;
    for (int i = 3; i < 7; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "user%d@example.org", i);
        if (auth_user_add(db, addr, "pw-dummy-12345", 0, 0, &f))
            goto out;
    }
    if (auth_user_add(db, "fuzz@example.org", "pw-fuzz-12345", 0, 0, &f) || f.id != 7)
        goto out;
    if (acl_group_add(db, "team") || acl_group_member(db, "team", "fuzz@example.org", true) ||
        acl_db_set(db, a.id, "INBOX", "anyone", ACL_LOOKUP | ACL_READ, '=') ||
        acl_db_set(db, a.id, "support", "fuzz@example.org", ACL_ALL, '=') ||
        acl_db_set(db, a.id, "hidden", "bob@example.org", ACL_LOOKUP, '=') ||
        acl_db_set(db, a.id, "a/b", "$team", ACL_LOOKUP | ACL_ADMIN | ACL_CREATE, '=') ||
        acl_db_set(db, a.id, "neg", "anyone", ACL_LOOKUP | ACL_READ, '=') ||
        acl_db_set(db, a.id, "neg", "-fuzz@example.org", ACL_LOOKUP, '=') ||
        acl_db_set(db, b.id, "Lists/x", "-anyone", ACL_READ, '=') ||
        acl_db_set(db, b.id, "Lists/y", "fuzz@example.org", ACL_READ, '='))
        goto out;
    r = acl_snap_load(db, &snap);
out:
    if (r != 0)
        fprintf(stderr, "acl fixture: the database could not be filled\n");
    auth_db_close(db);
    static const char *const files[] = {"accounts.sqlite", "accounts.sqlite-wal",
                                        "accounts.sqlite-shm"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    return r == 0 ? snap : NULL;
}

#endif
