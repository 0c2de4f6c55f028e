/* The sort and threading keys of a message (RFC 5256, RFC 5957), computed
 * once when its summary goes into the index: the base subject (RFC 5256
 * 2.1) and whether the subject marked a reply or forward, the mailbox
 * part and the display name of the first From/To/Cc address (read back
 * from the ENVELOPE string, whose address lists are already parsed), and
 * the References field. Keys are stored in their i;unicode-casemap form
 * (RFC 5051, mime_casemap.c), so that a SORT compares them as bytes. */
#include <stdlib.h>
#include <string.h>

#include "storage/mime.h"
#include "storage/mime_private.h"

static char upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool ieq(const char *p, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    if (len < n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (upper(p[i]) != upper(lit[i]))
            return false;
    return true;
}

/* subj-blob = "[" *BLOBCHAR "]" *WSP at s[i]: the index after it, or 0. */
static size_t blob_end(const char *s, size_t len, size_t i)
{
    if (i >= len || s[i] != '[')
        return 0;
    for (i++; i < len && s[i] != ']'; i++)
        if (s[i] == '[')
            return 0;
    if (i >= len)
        return 0;
    for (i++; i < len && s[i] == ' '; i++)
        ;
    return i;
}

/* subj-leader = (*subj-blob subj-refwd) / WSP at s[i]; the index after it,
 * or 0 when none. subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" */
static size_t leader_end(const char *s, size_t len, size_t i)
{
    size_t e;

    if (i < len && s[i] == ' ')
        return i + 1;
    while ((e = blob_end(s, len, i)) != 0)
        i = e;
    if (ieq(s + i, len - i, "re"))
        i += 2;
    else if (ieq(s + i, len - i, "fwd"))
        i += 3;
    else if (ieq(s + i, len - i, "fw"))
        i += 2;
    else
        return 0;
    while (i < len && s[i] == ' ')
        i++;
    if ((e = blob_end(s, len, i)) != 0)
        i = e;
    return i < len && s[i] == ':' ? i + 1 : 0;
}

char *mime_base_subject(const char *subj, size_t len, int *refwd)
{
    char *s = malloc(len + 1);
    size_t n = 0, b = 0, e;
    bool changed;

    *refwd = 0;
    if (!s)
        return NULL;
    /* (1) the subject is decoded already; white space runs become one space */
    for (size_t i = 0; i < len; i++) {
        if (is_wsp(subj[i])) {
            if (n == 0 || s[n - 1] != ' ')
                s[n++] = ' ';
        } else {
            s[n++] = subj[i];
        }
    }
    for (;;) {
        /* (2) subj-trailer: "(fwd)" / WSP, repeatedly */
        for (;;) {
            if (n > b && s[n - 1] == ' ')
                n--;
            else if (n - b >= 5 && ieq(s + n - 5, 5, "(fwd)")) {
                n -= 5;
                *refwd = 1;
            } else
                break;
        }
        /* (3) subj-leader and (4) a subj-blob leaving a non-empty base, until
         * neither removes anything (5) */
        do {
            changed = false;
            while ((e = leader_end(s, n, b)) != 0) {
                if (s[b] != ' ')
                    *refwd = 1;
                b = e;
                changed = true;
            }
            if ((e = blob_end(s, n, b)) != 0 && e < n) {
                b = e;
                changed = true;
            }
        } while (changed);
        /* (6) subj-fwd-hdr "[fwd:" ... subj-fwd-trl "]" */
        if (n - b >= 6 && ieq(s + b, n - b, "[fwd:") && s[n - 1] == ']') {
            b += 5;
            n--;
            *refwd = 1;
            continue;
        }
        break;
    }
    char *key = mime_casemap_dup(s + b, n - b);
    free(s);
    return key;
}

/* ---- the first address of an ENVELOPE address list ---- */

struct ep {
    const char *p;
    size_t len, i;
};

static void ep_sp(struct ep *e)
{
    while (e->i < e->len && e->p[e->i] == ' ')
        e->i++;
}

/* Reads an nstring at e->i: 1 with its bytes in b (quoted unescaped), 0
 * for NIL, -1 when malformed. b is reset first. */
static int ep_nstring(struct ep *e, struct buf *b)
{
    buf_reset(b);
    ep_sp(e);
    if (e->i >= e->len)
        return -1;
    if (e->p[e->i] == '"') {
        size_t i = e->i + 1;
        while (i < e->len && e->p[i] != '"') {
            if (e->p[i] == '\\' && i + 1 < e->len)
                i++;
            buf_addc(b, e->p[i]);
            i++;
        }
        if (i >= e->len)
            return -1;
        e->i = i + 1;
        return 1;
    }
    if (e->p[e->i] == '{') {
        size_t n = 0, i = e->i + 1;
        while (i < e->len && e->p[i] >= '0' && e->p[i] <= '9' && n < e->len)
            n = n * 10 + (size_t)(e->p[i++] - '0');
        if (i + 3 > e->len || e->p[i] != '}' || e->p[i + 1] != '\r' || e->p[i + 2] != '\n' ||
            n > e->len - (i + 3))
            return -1;
        buf_add(b, e->p + i + 3, n);
        e->i = i + 3 + n;
        return 1;
    }
    if (e->len - e->i >= 3 && ieq(e->p + e->i, 3, "NIL")) {
        e->i += 3;
        return 0;
    }
    return -1;
}

int mime_envelope_nstring(const char *p, size_t len, size_t *pos, struct buf *b)
{
    struct ep e = {p, len, *pos};
    int r = ep_nstring(&e, b);
    *pos = e.i;
    return r;
}

/* Skips one nstring or parenthesized list at e->i; -1 when malformed. */
static int ep_skip(struct ep *e)
{
    struct buf tmp = {0};
    int depth = 0, r = 0;

    ep_sp(e);
    do {
        ep_sp(e);
        if (e->i >= e->len) {
            r = -1;
            break;
        }
        if (e->p[e->i] == '(') {
            depth++;
            e->i++;
        } else if (e->p[e->i] == ')') {
            if (depth == 0) {
                r = -1;
                break;
            }
            depth--;
            e->i++;
        } else if (ep_nstring(e, &tmp) < 0) {
            r = -1;
            break;
        }
    } while (depth > 0);
    buf_free(&tmp);
    return r;
}

static char *take_casemapped(struct buf *b)
{
    char *s = b->oom ? NULL : mime_casemap_dup(b->p ? b->p : "", b->len);
    buf_free(b);
    return s;
}

/* The keys of the first address (a group's start included) of the address
 * list at e->i, which is then past the list. */
static int first_address(struct ep *e, char **mbox, char **disp)
{
    struct buf f[4] = {{0}};
    int got[4], rc = 0;
    bool found = false;

    *mbox = *disp = NULL;
    ep_sp(e);
    if (e->i < e->len && e->p[e->i] != '(') {
        rc = ep_nstring(e, &f[0]) == 0 ? 0 : -1; /* NIL */
        buf_free(&f[0]);
        return rc;
    }
    e->i++;
    for (;;) {
        ep_sp(e);
        if (e->i >= e->len) {
            rc = -1;
            break;
        }
        if (e->p[e->i] == ')') {
            e->i++;
            break;
        }
        if (found) {
            if (ep_skip(e) < 0) {
                rc = -1;
                break;
            }
            continue;
        }
        if (e->p[e->i] != '(') {
            rc = -1;
            break;
        }
        e->i++;
        for (int k = 0; k < 4; k++)
            if ((got[k] = ep_nstring(e, &f[k])) < 0)
                rc = -1;
        ep_sp(e);
        if (rc || e->i >= e->len || e->p[e->i] != ')') {
            rc = -1;
            break;
        }
        e->i++;
        if (got[0] == 0 && got[1] == 0 && got[2] == 0 && got[3] == 0)
            continue; /* a group's end (NIL NIL NIL NIL) */
        /* a group's start (NIL NIL "name" NIL) is the first address, its
         * addr-mailbox the group's name (RFC 5256 3, as Dovecot reads it) */
        found = true;
        struct buf m = {0}, d = {0};
        buf_add(&m, f[2].p ? f[2].p : "", f[2].len);
        /* RFC 5957: the display name, decoded; else the addr-spec */
        if (got[0] == 1) {
            char *dec = mime_decode_header_value(f[0].p ? f[0].p : "", f[0].len);
            if (!dec)
                d.oom = true;
            else
                buf_str(&d, dec);
            free(dec);
        }
        if (d.len == 0 && !d.oom) {
            buf_add(&d, f[2].p ? f[2].p : "", f[2].len);
            if (got[3] == 1) {
                buf_addc(&d, '@');
                buf_add(&d, f[3].p ? f[3].p : "", f[3].len);
            }
        }
        *mbox = take_casemapped(&m);
        *disp = take_casemapped(&d);
        if (!*mbox || !*disp)
            rc = -2;
    }
    for (int k = 0; k < 4; k++)
        buf_free(&f[k]);
    return rc;
}

void mime_sort_keys_free(struct mime_sort_keys *k)
{
    free(k->subject);
    for (int i = 0; i < 3; i++) {
        free(k->addr[i]);
        free(k->display[i]);
    }
    memset(k, 0, sizeof(*k));
}

int mime_sort_keys(const char *envelope, const char *subject, struct mime_sort_keys *out)
{
    struct ep e = {envelope ? envelope : "", envelope ? strlen(envelope) : 0, 0};
    /* ENVELOPE fields: date subject from sender reply-to to cc ... */
    static const int slot[] = {-1, -1, 0, -1, -1, 1, 2};
    int rc = 0;

    memset(out, 0, sizeof(*out));
    out->subject =
        mime_base_subject(subject ? subject : "", subject ? strlen(subject) : 0, &out->refwd);
    if (!out->subject)
        return -1;
    if (e.len == 0 || e.p[0] != '(')
        return 0;
    e.i = 1;
    for (int f = 0; f < 7 && rc == 0; f++) {
        if (slot[f] < 0)
            rc = ep_skip(&e);
        else
            rc = first_address(&e, &out->addr[slot[f]], &out->display[slot[f]]);
    }
    if (rc == -2) {
        mime_sort_keys_free(out);
        return -1;
    }
    return 0; /* a malformed envelope (not one of ours) leaves empty keys */
}

char *mime_header_value_unfolded(const char *hdr, size_t len, const char *name)
{
    struct mime_field f;
    size_t pos = 0;

    while (mime_next_field(hdr, len, &pos, &f)) {
        if (f.value && mime_strncaseeq(f.name, f.namelen, name)) {
            struct buf b = {0};
            mime_unfold(&b, f.value, f.valuelen);
            return buf_take(&b);
        }
    }
    return NULL;
}
