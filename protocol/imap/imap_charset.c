/* SEARCH CHARSET (RFC 3501 6.4.4): the strings of a parsed search are
 * converted to UTF-8, which is what the index holds, before the search
 * runs. Shared by SEARCH, SORT and THREAD. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"

/* The charsets named in [BADCHARSET (...)]: the common ones; iconv knows
 * more, and any it knows is taken. */
const char imap_charsets[] = "(UTF-8 US-ASCII ISO-8859-1 ISO-8859-2 ISO-8859-15 WINDOWS-1250 "
                             "WINDOWS-1251 WINDOWS-1252 KOI8-R ISO-2022-JP SHIFT_JIS GB2312 BIG5)";

bool imap_charset_is_utf8(const char *cs)
{
    return !strcasecmp(cs, "UTF-8") || !strcasecmp(cs, "US-ASCII");
}

/* Converts the strings of q and of the criteria after it; -1 on
 * allocation failure. The tree's depth is bounded by the parser. */
static int search_charset(struct storage_search *q, struct imap_arena *ar, const char *cs)
{
    for (; q; q = q->next) {
        if (q->str && (q->op == STORAGE_SEARCH_HEADER || q->op == STORAGE_SEARCH_BODY ||
                       q->op == STORAGE_SEARCH_TEXT)) {
            char *u;
            size_t ul;
            if (storage_charset_to_utf8(cs, q->str, strlen(q->str), &u, &ul) != 0)
                return -1;
            q->str = imap_arena_strndup(ar, u, ul);
            free(u);
            if (!q->str)
                return -1;
        }
        if (q->child && search_charset(q->child, ar, cs) != 0)
            return -1;
    }
    return 0;
}

int imap_search_in_charset(struct storage_search *q, struct imap_arena *ar, const char *cs)
{
    if (!cs[0])
        return 0;
    if (!storage_charset_known(cs))
        return 1;
    return search_charset(q, ar, cs) == 0 ? 0 : -1;
}
