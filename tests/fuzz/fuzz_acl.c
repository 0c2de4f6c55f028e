/* libFuzzer target: the ACL commands of RFC 4314 (SETACL, DELETEACL,
 * GETACL, LISTRIGHTS, MYRIGHTS) and the shared namespace's names they
 * resolve, driven through an IMAP session logged in as fuzz@example.org
 * with an ACL snapshot of a few accounts, groups and entries (made once
 * in a temporary account database); and the rights strings and
 * identifiers alone (auth/acl.h), with their round trips checked.
 *
 * The first byte picks: 0 rights strings, 1 identifiers, else a session
 * whose commands are the rest (each line the arguments of the command the
 * line's first byte picks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/acl.h"
#include "protocol/imap/imap.h"
#include "server/base/config.h"
#include "tests/fuzz/fake_conn.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct acl_snap *snap;

static void must(int r, const char *what)
{
    if (r != 0) {
        fprintf(stderr, "fuzz-acl setup: %s: %d\n", what, r);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char dir[] = "/tmp/fuzz-acl-XXXXXX", err[256], path[64];
    struct auth_db *db;
    struct auth_account a, b, f;

    (void)argc;
    (void)argv;
    if (!mkdtemp(dir))
        abort();
    must(auth_db_open(dir, &db, err, sizeof(err)), "open");
    must(auth_user_add(db, "alice@example.org", "pw-alice-123", 0, 0, &a), "alice");
    must(auth_user_add(db, "bob@example.org", "pw-bob-123456", 0, 0, &b), "bob");
    /* the stand-in login is account 7, fuzz@example.org */
    for (int i = 3; i < 7; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "user%d@example.org", i);
        must(auth_user_add(db, addr, "pw-dummy-12345", 0, 0, &f), "dummy");
    }
    must(auth_user_add(db, "fuzz@example.org", "pw-fuzz-12345", 0, 0, &f), "fuzz");
    must(f.id == 7 ? 0 : -1, "fuzz@example.org is not account 7");
    must(acl_group_add(db, "team"), "group");
    must(acl_group_member(db, "team", "fuzz@example.org", true), "member");
    must(acl_db_set(db, a.id, "INBOX", "anyone", ACL_LOOKUP | ACL_READ, '='), "a1");
    must(acl_db_set(db, a.id, "support", "fuzz@example.org", ACL_ALL, '='), "a2");
    must(acl_db_set(db, a.id, "hidden", "bob@example.org", ACL_LOOKUP, '='), "a3");
    must(acl_db_set(db, a.id, "a/b", "$team", ACL_LOOKUP | ACL_ADMIN | ACL_CREATE, '='), "a4");
    must(acl_db_set(db, a.id, "neg", "anyone", ACL_LOOKUP | ACL_READ, '='), "a5");
    must(acl_db_set(db, a.id, "neg", "-fuzz@example.org", ACL_LOOKUP, '='), "a6");
    must(acl_db_set(db, b.id, "Lists/x", "-anyone", ACL_READ, '='), "b1");
    must(acl_db_set(db, b.id, "Lists/y", "fuzz@example.org", ACL_READ, '='), "b2");
    must(acl_snap_load(db, &snap), "snapshot");
    auth_db_close(db);
    /* the database is read once: nothing of it is needed any more */
    snprintf(path, sizeof(path), "%s/accounts.sqlite", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/accounts.sqlite-wal", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/accounts.sqlite-shm", dir);
    unlink(path);
    rmdir(dir);
    fake_conn_set_acl(snap);
    return 0;
}

static void rights(const uint8_t *data, size_t size)
{
    unsigned r, r2;
    char mode, mode2, text[ACL_RIGHTS_MAX];

    if (acl_rights_parse((const char *)data, size, &r, &mode) != 0)
        return;
    if ((r & ~(unsigned)ACL_ALL) || (mode != '=' && mode != '+' && mode != '-'))
        abort();
    /* what is written reads back as the same rights */
    acl_rights_format(r, text);
    if (strlen(text) >= ACL_RIGHTS_MAX || acl_rights_parse(text, strlen(text), &r2, &mode2) ||
        r2 != r || mode2 != '=')
        abort();
    /* with the virtual c and d (RFC 4314 2.1.1), which read back as every
     * right of their group: at least the same rights */
    acl_rights_format_virtual(r, text);
    if (strlen(text) >= ACL_RIGHTS_MAX || acl_rights_parse(text, strlen(text), &r2, &mode2) ||
        (r2 & r) != r)
        abort();
}

static void ident(const uint8_t *data, size_t size)
{
    char out[ACL_IDENT_MAX], again[ACL_IDENT_MAX];

    if (acl_ident_normalize((const char *)data, size, "example.org", out) != 0)
        return;
    size_t n = strnlen(out, sizeof(out));
    if (n == 0 || n == sizeof(out))
        abort();
    /* the stored form is its own stored form */
    if (acl_ident_normalize(out, n, NULL, again) != 0 || strcmp(out, again))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const cmds[] = {"SETACL",   "DELETEACL", "GETACL",    "LISTRIGHTS",
                                       "MYRIGHTS", "LIST",      "CREATE",    "DELETE",
                                       "RENAME",   "STATUS",    "NAMESPACE", "LSUB"};
    static const char login[] = "a LOGIN fuzz x\r\n";

    if (size < 1)
        return 0;
    if (data[0] == 0) {
        rights(data + 1, size - 1);
        return 0;
    }
    if (data[0] == 1) {
        ident(data + 1, size - 1);
        return 0;
    }
    /* flags: TLS, login accepted, chunks of 442 bytes; then the login and
     * a command per line */
    /* each line: "tNNN ", a command name, a space, its bytes, CRLF */
    size_t cap = 1 + sizeof(login) + size * 24 + 64;
    uint8_t *in = malloc(cap);
    if (!in)
        return 0;
    size_t n = 0;
    in[n++] = 0x80 | (0x3f << 2) | 1;
    memcpy(in + n, login, sizeof(login) - 1);
    n += sizeof(login) - 1;
    const uint8_t *p = data + 1, *end = data + size;
    unsigned t = 0;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        const uint8_t *le = nl ? nl : end;
        const char *cmd = cmds[*p % (sizeof(cmds) / sizeof(cmds[0]))];
        int k = snprintf((char *)in + n, cap - n, "t%u %s", t++ % 1000, cmd);
        if (k < 0 || (size_t)k >= cap - n)
            break;
        n += (size_t)k;
        if (le > p + 1) {
            in[n++] = ' ';
            memcpy(in + n, p + 1, (size_t)(le - p - 1));
            n += (size_t)(le - p - 1);
        }
        in[n++] = '\r';
        in[n++] = '\n';
        p = nl ? nl + 1 : end;
    }
    fake_conn_drive(&imap_handler, in, n);
    free(in);
    return 0;
}
