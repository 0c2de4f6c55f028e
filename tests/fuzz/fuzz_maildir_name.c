/* libFuzzer target for the storage name handling that outside input
 * reaches: Maildir file names written by other programs (msg_file_parse:
 * unique part, ,U= and :2, flags), mailbox names from clients
 * (storage_name_check, name_to_dir) and folder directory names found on
 * disk (dir_to_name). Checked: no crash, and a checked mailbox name always
 * maps to one directory name without '/' that is not "." or "..", and
 * decodes back to the same mailbox. The first byte picks the parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void file_name(const char *s)
{
    char unique[256];
    uint32_t uid;
    unsigned flags;
    bool info;

    msg_file_parse(s, unique, sizeof(unique), &uid, &flags, &info);
    if (strlen(unique) >= sizeof(unique) || strncmp(unique, s, strlen(unique)) != 0)
        abort();
}

static void mailbox_name(const char *s)
{
    char dir[STORAGE_PATH_MAX], back[STORAGE_MBOX_NAME_MAX + 1], norm[STORAGE_MBOX_NAME_MAX + 1];

    if (storage_name_check(s, NULL, 0) != 0)
        return;
    if (name_normalize(s, norm, sizeof(norm)) != 0)
        abort();
    if (name_to_dir(norm, dir, sizeof(dir)) != 0)
        abort();
    if (strcmp(norm, "INBOX") == 0) {
        if (dir[0])
            abort();
        return;
    }
    if (dir[0] != '.' || strchr(dir, '/') || !strcmp(dir, ".") || !strcmp(dir, ".."))
        abort();
    if (dir_to_name(dir + 1, back, sizeof(back)) != 0 || strcmp(back, norm) != 0)
        abort();
}

static void folder_dir(const char *s)
{
    char name[STORAGE_MBOX_NAME_MAX + 1];

    if (dir_to_name(s, name, sizeof(name)) != 0)
        return;
    if (storage_name_check(name, NULL, 0) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;

    if (size < 1 || size > 4096)
        return 0;
    s = malloc(size);
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    switch (data[0] % 3) {
    case 0: file_name(s); break;
    case 1: mailbox_name(s); break;
    default: folder_dir(s); break;
    }
    free(s);
    return 0;
}
