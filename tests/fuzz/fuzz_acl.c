/* libFuzzer target: the ACL commands of RFC 4314 (SETACL, DELETEACL,
 * GETACL, LISTRIGHTS, MYRIGHTS) and the shared namespace's names they
 * resolve, driven through an IMAP session logged in as fuzz@example.org
 * with an ACL snapshot of a few accounts, groups and entries
 * (acl_fixture.h); and the rights strings and
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
#include "tests/fuzz/acl_fixture.h"
#include "tests/fuzz/fake_conn.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct acl_snap *snap = acl_fixture_snapshot();

    (void)argc;
    (void)argv;
    if (!snap)
        abort();
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
