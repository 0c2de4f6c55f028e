/* Mailbox names: validation, the mapping to Maildir++ directory names (with
 * the '.'/'%' escape), and IMAP LIST pattern matching. Pure functions except
 * mbox_path. */
#include "storage/internal.h"
#include "server/base/base64.h"
#include "storage/mime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PATTERN_MAX 1024

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        pathf(err, errlen, "%s", msg);
}

int storage_name_check(const char *name, char *err, size_t errlen)
{
    const unsigned char *p, *end, *comp;
    size_t len, depth = 1;
    char dir[STORAGE_PATH_MAX];

    if (!name || !*name) {
        set_err(err, errlen, "empty mailbox name");
        return STORAGE_E_BADNAME;
    }
    len = strlen(name);
    if (len > STORAGE_MBOX_NAME_MAX) {
        set_err(err, errlen, "mailbox name too long");
        return STORAGE_E_BADNAME;
    }
    if (name[0] == '/' || name[len - 1] == '/') {
        set_err(err, errlen, "mailbox name starts or ends with the hierarchy delimiter");
        return STORAGE_E_BADNAME;
    }
    p = (const unsigned char *)name;
    end = p + len;
    comp = p;
    while (p < end) {
        uint32_t cp;
        size_t n = mime_utf8_char(p, (size_t)(end - p), &cp);
        if (n == 0) {
            set_err(err, errlen, "mailbox name is not valid UTF-8");
            return STORAGE_E_BADNAME;
        }
        if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) {
            set_err(err, errlen, "control character in mailbox name");
            return STORAGE_E_BADNAME;
        }
        if (cp == '*' || cp == '%') {
            set_err(err, errlen, "wildcard character in mailbox name");
            return STORAGE_E_BADNAME;
        }
        if (cp == '/' || p + n == end) {
            const unsigned char *ce = cp == '/' ? p : p + n;
            size_t cl = (size_t)(ce - comp);
            if (cl == 0) {
                set_err(err, errlen, "empty component in mailbox name");
                return STORAGE_E_BADNAME;
            }
            if ((cl == 1 && comp[0] == '.') || (cl == 2 && comp[0] == '.' && comp[1] == '.')) {
                set_err(err, errlen, "\".\" or \"..\" component in mailbox name");
                return STORAGE_E_BADNAME;
            }
            if (cp == '/') {
                comp = p + 1;
                if (++depth > STORAGE_MBOX_DEPTH_MAX) {
                    set_err(err, errlen, "mailbox name nested too deep");
                    return STORAGE_E_BADNAME;
                }
            }
        }
        p += n;
    }
    if (name_to_dir(name, dir, sizeof(dir)) != 0 || strlen(dir) > 250) {
        set_err(err, errlen, "mailbox name too long once stored");
        return STORAGE_E_BADNAME;
    }
    return 0;
}

static bool is_inbox(const char *s, size_t len)
{
    return len == 5 && strncasecmp(s, "INBOX", 5) == 0;
}

int name_normalize(const char *name, char *out, size_t outlen)
{
    size_t len;
    int rc = storage_name_check(name, NULL, 0);

    if (rc)
        return rc;
    len = strlen(name);
    if (len + 1 > outlen)
        return STORAGE_E_BADNAME;
    memcpy(out, name, len + 1);
    {
        const char *slash = strchr(out, '/');
        size_t first = slash ? (size_t)(slash - out) : len;
        if (is_inbox(out, first))
            memcpy(out, "INBOX", 5);
    }
    return 0;
}

/* Does not check the name (callers did); only escapes and joins. */
int name_to_dir(const char *name, char *out, size_t outlen)
{
    size_t o = 0;

    if (strcmp(name, "INBOX") == 0) {
        if (outlen < 1)
            return STORAGE_E_BADNAME;
        out[0] = '\0';
        return 0;
    }
    if (outlen < 2)
        return STORAGE_E_BADNAME;
    out[o++] = '.';
    for (const char *p = name; *p; p++) {
        const char *rep = NULL;
        char one[2] = {*p, 0};
        size_t rl;
        if (*p == '/')
            rep = ".";
        else if (*p == '.')
            rep = "%2E";
        else if (*p == '%')
            rep = "%25";
        else
            rep = one;
        rl = strlen(rep);
        if (o + rl + 1 > outlen)
            return STORAGE_E_BADNAME;
        memcpy(out + o, rep, rl);
        o += rl;
    }
    out[o] = '\0';
    return 0;
}

int dir_to_name(const char *dir, char *out, size_t outlen)
{
    size_t o = 0;
    char tmp[STORAGE_MBOX_NAME_MAX + 1];

    for (const char *p = dir; *p; p++) {
        char c = *p;
        if (c == '.') {
            c = '/';
        } else if (c == '%') {
            int h, l;
            if ((h = hex_value((unsigned char)p[1])) < 0 ||
                (l = hex_value((unsigned char)p[2])) < 0)
                return -1;
            c = (char)(h << 4 | l);
            if (c == '/' || c == '\0')
                return -1;
            p += 2;
        }
        if (o + 2 > outlen)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    if (name_normalize(out, tmp, sizeof(tmp)) != 0)
        return -1;
    if (strcmp(tmp, "INBOX") == 0) /* ".INBOX" would shadow the root */
        return -1;
    memcpy(out, tmp, strlen(tmp) + 1);
    return 0;
}

int mbox_path(struct storage_user *u, const char *name, char *out, size_t outlen)
{
    char dir[STORAGE_PATH_MAX];
    int n;

    if (name_to_dir(name, dir, sizeof(dir)) != 0)
        return STORAGE_E_BADNAME;
    n = pathf(out, outlen, "%s%s%s", u->maildir, dir[0] ? "/" : "", dir);
    if (n < 0 || (size_t)n >= outlen)
        return STORAGE_E_BADNAME;
    return 0;
}

bool storage_pattern_match(const char *pattern, const char *name)
{
    char pat[PATTERN_MAX + 1], nm[STORAGE_MBOX_NAME_MAX + 1];
    size_t pl = strlen(pattern), nl = strlen(name);
    unsigned char *row, *prev;
    bool ok;

    if (pl > PATTERN_MAX || nl > STORAGE_MBOX_NAME_MAX)
        return false;
    memcpy(pat, pattern, pl + 1);
    memcpy(nm, name, nl + 1);
    /* INBOX is case-insensitive, as first component of both; a pattern
     * that starts with its five letters in any case ("Inbox*", "inbox/%")
     * reaches INBOX and its children, and still nothing but its own case
     * of other names ("Inboxes") */
    if ((pl == 5 || (pl > 5 && pat[5] == '/')) && strncasecmp(pat, "INBOX", 5) == 0)
        memcpy(pat, "INBOX", 5);
    if ((nl == 5 || (nl > 5 && nm[5] == '/')) && strncasecmp(nm, "INBOX", 5) == 0) {
        memcpy(nm, "INBOX", 5);
        if (pl >= 5 && strncasecmp(pat, "INBOX", 5) == 0)
            memcpy(pat, "INBOX", 5);
    }

    /* dynamic programming over (pattern prefix, name prefix): linear memory,
     * no backtracking blow-up with many wildcards */
    prev = calloc(nl + 1, 1);
    row = calloc(nl + 1, 1);
    if (!prev || !row) {
        free(prev);
        free(row);
        return false;
    }
    prev[0] = 1;
    for (size_t i = 1; i <= pl; i++) {
        char c = pat[i - 1];
        memset(row, 0, nl + 1);
        if (c == '*' || c == '%') {
            row[0] = prev[0];
            for (size_t j = 1; j <= nl; j++)
                row[j] = prev[j] || (row[j - 1] && (c == '*' || nm[j - 1] != '/'));
        } else {
            for (size_t j = 1; j <= nl; j++)
                row[j] = prev[j - 1] && nm[j - 1] == c;
        }
        unsigned char *t = prev;
        prev = row;
        row = t;
    }
    ok = prev[nl] != 0;
    free(prev);
    free(row);
    return ok;
}
