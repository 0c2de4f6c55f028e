/* IMAP URLs (RFC 5092) as APPEND's CATENATE (RFC 4469) takes them: a
 * message or a part of one in the user's own mailboxes, written relative
 * to the server ("/INBOX;UIDVALIDITY=7/;UID=3/;SECTION=1.2") or absolute
 * naming the logged-in user on this server ("imap://user@host/..."),
 * with URL-PARTIAL's ";PARTIAL=offset[.length]" (RFC 5550 section 4).
 * One pass over the text, every field capped; nothing here reads the
 * store: resolving the URL is the pool's work. */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"
#include "server/base/base64.h"

/* What may stand unencoded in a URL field: RFC 3986's unreserved and
 * sub-delims, and ":@/&=~" (RFC 5092 bchar); ';' only separates. */
static bool bchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("-._~!$'()*+,:@/&=", c) != NULL;
}

/* Percent-decodes p[0..n) into out (NUL-terminated). -1: a character
 * that must be encoded, a bad escape, an encoded NUL, or over outcap. */
static int pct_decode(const char *p, size_t n, char *out, size_t outcap, size_t *olen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '%') {
            int h, l;
            if (i + 2 >= n || (h = hex_value((unsigned char)p[i + 1])) < 0 ||
                (l = hex_value((unsigned char)p[i + 2])) < 0)
                return -1;
            c = (unsigned char)(h * 16 + l);
            if (c == 0)
                return -1;
            i += 2;
        } else if (!bchar(c)) {
            return -1;
        }
        if (o + 1 >= outcap)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    if (olen)
        *olen = o;
    return 0;
}

/* A number of at most 32 bits (nz: not 0), all of p[0..n). */
static bool number32(const char *p, size_t n, bool nz, uint32_t *v)
{
    uint64_t x = 0;
    if (n == 0 || n > 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(p[i] - '0');
    }
    if (x > UINT32_MAX || (nz && x == 0))
        return false;
    *v = (uint32_t)x;
    return true;
}

/* Whether p[0..n) starts with the keyword kw (any case). */
static bool has_prefix(const char *p, size_t n, const char *kw)
{
    size_t k = strlen(kw);
    return n >= k && strncasecmp(p, kw, k) == 0;
}

/* The section, as FETCH writes it (RFC 3501 section-spec) without
 * HEADER.FIELDS: "HEADER", "TEXT", "1.2", "1.2.HEADER", "3.TEXT",
 * "1.MIME". Keywords upper-cased in place. */
/* HEADER.FIELDS[.NOT] SP "(" names ")" at p (upper-cased), its names
 * kept NUL-separated in out->names. */
static const char *check_fields(const char *p, struct imap_url *out)
{
    struct imap_args a;
    char name[IMAP_URL_NAME_MAX + 1];
    size_t nl, used = 0;

    p += 13;
    out->fields = 1;
    if (!strncmp(p, ".NOT", 4)) {
        out->fields = 2;
        p += 4;
    }
    imap_args_init(&a, p, strlen(p), 2);
    if (imap_args_sp(&a) != IMAP_ARG_OK || imap_args_open(&a) != IMAP_ARG_OK)
        return "Bad HEADER.FIELDS list.";
    while (!imap_args_eat(&a, ')')) {
        if (out->nnames && imap_args_sp(&a) != IMAP_ARG_OK)
            return "Bad HEADER.FIELDS list.";
        if (out->nnames >= IMAP_URL_MAX_NAMES ||
            imap_args_astring(&a, name, sizeof(name), &nl) != IMAP_ARG_OK || nl == 0 ||
            used + nl + 1 > sizeof(out->names))
            return "Bad HEADER.FIELDS list.";
        for (size_t k = 0; k < nl; k++)
            if ((unsigned char)name[k] <= 0x20 || (unsigned char)name[k] >= 0x7f || name[k] == ':')
                return "Bad header field name.";
        memcpy(out->names + used, name, nl + 1);
        used += nl + 1;
        out->nnames++;
    }
    if (out->nnames == 0 || !imap_args_at_end(&a))
        return "Bad HEADER.FIELDS list.";
    return NULL;
}

/* The section, as FETCH writes it (RFC 3501 section-spec): "HEADER",
 * "TEXT", "1.2", "1.2.HEADER", "3.TEXT", "1.MIME", "2.HEADER.FIELDS
 * (SUBJECT)". Upper-cased in place (field names are compared in any
 * case). */
static const char *check_section(struct imap_url *out)
{
    char *s = out->section, *p = s;
    bool part = false;
    while (*p >= '0' && *p <= '9') {
        if (*p == '0')
            return "Bad part number in SECTION.";
        size_t digits = 0;
        while (*p >= '0' && *p <= '9') {
            if (++digits > 9)
                return "Bad part number in SECTION.";
            p++;
        }
        part = true;
        if (*p == '\0')
            return NULL;
        if (*p != '.')
            return "Bad SECTION.";
        p++;
    }
    for (char *q = p; *q; q++)
        if (*q >= 'a' && *q <= 'z')
            *q = (char)(*q - 'a' + 'A');
    if (!strcmp(p, "HEADER") || !strcmp(p, "TEXT") || (part && !strcmp(p, "MIME")))
        return NULL;
    if (!strncmp(p, "HEADER.FIELDS", 13)) {
        out->part_len = part ? (size_t)(p - 1 - s) : 0;
        return check_fields(p, out);
    }
    return "Bad SECTION.";
}

const char *imap_url_parse(const char *url, size_t len, const char *user, const char *host,
                           struct imap_url *out)
{
    const char *p = url, *end = url + len, *q;
    size_t n;

    memset(out, 0, sizeof(*out));
    if (has_prefix(p, (size_t)(end - p), "imap://")) {
        /* iserver: [enc-user [";AUTH=" ...] "@"] host [":" port] */
        p += 7;
        for (q = p; q < end && *q != '/'; q++)
            ;
        const char *at = NULL;
        for (const char *r = p; r < q; r++)
            if (*r == '@')
                at = r;
        if (!at)
            return "The URL names no user.";
        const char *ue = p;
        while (ue < at && *ue != ';')
            ue++;
        if (ue < at && !has_prefix(ue, (size_t)(at - ue), ";AUTH="))
            return "Bad user in URL.";
        char name[256];
        if (pct_decode(p, (size_t)(ue - p), name, sizeof(name), &n) < 0 || n == 0)
            return "Bad user in URL.";
        if (!user || strcasecmp(name, user) != 0)
            return "The URL names another user.";
        const char *he = at + 1;
        while (he < q && *he != ':')
            he++;
        if (pct_decode(at + 1, (size_t)(he - at - 1), name, sizeof(name), &n) < 0 || n == 0)
            return "Bad host in URL.";
        if (!host || strcasecmp(name, host) != 0)
            return "The URL names another server.";
        if (he < q) {
            uint32_t port;
            if (!number32(he + 1, (size_t)(q - he - 1), true, &port) || port > 65535)
                return "Bad port in URL.";
        }
        p = q;
    }
    if (p >= end || *p != '/')
        return "Not an absolute IMAP URL of a message.";
    p++;
    /* enc-mailbox [";UIDVALIDITY=" nz-number] "/;UID=" nz-number: the
     * mailbox runs up to the first ';' (which it cannot hold unencoded) */
    for (q = p; q < end && *q != ';'; q++)
        ;
    if (q == end)
        return "The URL names no message (;UID=).";
    const char *me = q;
    if (has_prefix(q, (size_t)(end - q), ";UIDVALIDITY=")) {
        q += 13;
        const char *v = q;
        while (q < end && *q != '/')
            q++;
        if (!number32(v, (size_t)(q - v), true, &out->uidvalidity))
            return "Bad UIDVALIDITY in URL.";
        if (q == end)
            return "The URL names no message (;UID=).";
        q++; /* the "/" before ";UID=" */
    } else {
        if (me == p || me[-1] != '/')
            return "Bad URL.";
        me--; /* the "/" before ";UID=" ends the mailbox */
    }
    if (me == p)
        return "The URL names no mailbox.";
    /* the name as %-encoded UTF-8, not modified UTF-7 (RFC 5092 moved
     * to UTF-8 from RFC 2192; Dovecot reads it so too); INBOX in any case
     * is INBOX. Invalid UTF-8 names no mailbox (the lookup says so). */
    if (pct_decode(p, (size_t)(me - p), out->mbox, sizeof(out->mbox), &n) < 0)
        return "Bad mailbox name in URL.";
    if (n >= 5 && !strncasecmp(out->mbox, "INBOX", 5) && (n == 5 || out->mbox[5] == '/'))
        memcpy(out->mbox, "INBOX", 5);
    if (!has_prefix(q, (size_t)(end - q), ";UID="))
        return "The URL names no message (;UID=).";
    q += 5;
    p = q;
    while (q < end && *q != '/')
        q++;
    if (!number32(p, (size_t)(q - p), true, &out->uid))
        return "Bad UID in URL.";
    /* ["/;SECTION=" enc-section] ["/;PARTIAL=" number ["." nz-number]] */
    if (q < end && has_prefix(q, (size_t)(end - q), "/;SECTION=")) {
        q += 10;
        p = q;
        /* the section may hold "/" but not ';' */
        while (q < end && *q != ';')
            q++;
        if (q < end) {
            if (q[-1] != '/')
                return "Bad SECTION.";
            q--;
        }
        if (q == p || pct_decode(p, (size_t)(q - p), out->section, sizeof(out->section), NULL) < 0)
            return "Bad SECTION.";
        const char *why = check_section(out);
        if (why)
            return why;
    }
    if (q < end && has_prefix(q, (size_t)(end - q), "/;PARTIAL=")) {
        q += 10;
        p = q;
        uint64_t off = 0, plen = 0;
        size_t digits = 0;
        while (q < end && *q >= '0' && *q <= '9' && digits++ < 19)
            off = off * 10 + (uint64_t)(*q++ - '0');
        if (q == p)
            return "Bad PARTIAL.";
        out->partial = true;
        out->partial_off = off;
        out->partial_len = UINT64_MAX;
        if (q < end && *q == '.') {
            p = ++q;
            digits = 0;
            while (q < end && *q >= '0' && *q <= '9' && digits++ < 19)
                plen = plen * 10 + (uint64_t)(*q++ - '0');
            if (q == p || plen == 0)
                return "Bad PARTIAL.";
            out->partial_len = plen;
        }
    }
    if (q != end) {
        if (has_prefix(q, (size_t)(end - q), ";EXPIRE=") ||
            has_prefix(q, (size_t)(end - q), ";URLAUTH="))
            return "URLAUTH is not supported here.";
        return "Bad URL.";
    }
    return NULL;
}
