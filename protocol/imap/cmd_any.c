/* The small commands that need no storage: those valid in any state
 * (CAPABILITY, NOOP, LOGOUT, ID) and, once authenticated, ENABLE and
 * NAMESPACE. */
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"
#include "server/base/log.h"

void imap_cmd_capability(struct imap_session *s, struct imap_args *a)
{
    imap_printf(s, "* CAPABILITY %s\r\n", imap_capabilities(s));
    imap_finish(s, "OK", "Capability completed.");
}

void imap_cmd_noop(struct imap_session *s, struct imap_args *a)
{
    imap_finish(s, "OK", "NOOP completed.");
}

void imap_cmd_logout(struct imap_session *s, struct imap_args *a)
{
    imap_printf(s, "* BYE Logging out.\r\n");
    imap_tagged(s, "OK", "Logout completed.");
    imap_close(s);
}

/* ID (RFC 2971): the client's list is checked and logged, ours sent. */
void imap_cmd_id(struct imap_session *s, struct imap_args *a)
{
    struct imap_arena ar = {0};
    char logline[512], name[130] = "", version[130] = "";
    size_t ll = 0;
    int r = IMAP_ARG_OK;

    logline[0] = '\0';
    if (imap_args_sp(a) != IMAP_ARG_OK) {
        imap_bad(s, "Usage: ID (\"name\" \"value\" ...) or ID NIL");
        return;
    }
    if (imap_args_peek(a, '(')) {
        unsigned pairs = 0;
        r = imap_args_open(a);
        while (r == IMAP_ARG_OK && !imap_args_peek(a, ')')) {
            char *k, *v;
            size_t kl, vl;
            if (pairs && imap_args_sp(a) != IMAP_ARG_OK) {
                r = IMAP_ARG_BAD;
                break;
            }
            if ((r = imap_args_string_dup(a, &ar, &k, &kl)) != IMAP_ARG_OK ||
                (r = imap_args_sp(a)) != IMAP_ARG_OK ||
                (r = imap_args_nstring_dup(a, &ar, &v, &vl)) != IMAP_ARG_OK)
                break;
            if (kl > 30 || vl > 1024 || ++pairs > 30) {
                r = IMAP_ARG_BAD; /* RFC 2971 limits */
                break;
            }
            if (v && !strcasecmp(k, "name"))
                snprintf(name, sizeof(name), "%s", v);
            else if (v && !strcasecmp(k, "version"))
                snprintf(version, sizeof(version), "%s", v);
            if (ll < sizeof(logline) - 1) {
                int n = snprintf(logline + ll, sizeof(logline) - ll, "%s%s=%s", ll ? " " : "", k,
                                 v ? v : "NIL");
                if (n > 0)
                    ll += (size_t)n < sizeof(logline) - ll ? (size_t)n : sizeof(logline) - ll - 1;
            }
        }
        if (r == IMAP_ARG_OK)
            r = imap_args_close(a);
    } else {
        const char *w;
        size_t n;
        if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK || n != 3 || strncasecmp(w, "NIL", 3))
            r = IMAP_ARG_BAD;
    }
    imap_arena_free(&ar);
    if (r != IMAP_ARG_OK || !imap_args_at_end(a)) {
        imap_bad(s, "Invalid ID parameter list.");
        return;
    }
    if (ll)
        log_info("conn=%llu imap client id: %s", (unsigned long long)conn_info(s->c)->id, logline);
    if (name[0] || version[0])
        conn_set_client_id(s->c, name[0] ? name : NULL, version[0] ? version : NULL);
    imap_printf(s, "* ID (\"name\" \"coffre\" \"version\" \"0.1.0\")\r\n");
    imap_finish(s, "OK", "ID completed.");
}

/* ENABLE (RFC 5161): CONDSTORE (RFC 7162 3.1), QRESYNC (3.2.3, which
 * turns CONDSTORE on too), IMAP4rev2 (RFC 9051), UTF8=ACCEPT (RFC 6855
 * 3) and UIDONLY (RFC 9586); others are ignored. ENABLED names what
 * this command turned on, each once. */
void imap_cmd_enable(struct imap_session *s, struct imap_args *a)
{
    const char *w;
    size_t n;
    unsigned count = 0;
    bool condstore = false, qresync = false, rev2 = false, utf8 = false, uidonly = false;

    while (imap_args_sp(a) == IMAP_ARG_OK) {
        if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK) {
            imap_bad(s, "Invalid capability name.");
            return;
        }
        if (imap_word_is(w, n, "CONDSTORE"))
            condstore = true;
        else if (imap_word_is(w, n, "QRESYNC"))
            qresync = true;
        else if (imap_word_is(w, n, "IMAP4rev2"))
            rev2 = true;
        else if (imap_word_is(w, n, "UTF8=ACCEPT"))
            utf8 = true;
        else if (imap_word_is(w, n, "UIDONLY"))
            uidonly = true;
        count++;
    }
    if (!count || !imap_args_at_end(a)) {
        imap_bad(s, "Usage: ENABLE capability ...");
        return;
    }
    imap_printf(s, "* ENABLED%s%s%s%s%s\r\n", condstore && !s->condstore ? " CONDSTORE" : "",
                qresync && !s->qresync ? " QRESYNC" : "", rev2 && !s->rev2 ? " IMAP4rev2" : "",
                utf8 && !s->utf8_accept ? " UTF8=ACCEPT" : "",
                uidonly && !s->uidonly ? " UIDONLY" : "");
    if (condstore || qresync)
        imap_condstore_enable(s);
    if (qresync)
        s->qresync = true;
    if (rev2)
        s->rev2 = s->utf8 = true;
    if (utf8)
        s->utf8_accept = s->utf8 = true;
    if (uidonly)
        s->uidonly = true;
    imap_finish(s, "OK", "Enabled.");
}

/* NAMESPACE (RFC 2342): the personal one, no other users' as such, and
 * the shared one when shared_prefix is set. */
void imap_cmd_namespace(struct imap_session *s, struct imap_args *a)
{
    const char *pfx = imap_ns_prefix(s);
    struct buf *b = imap_outbuf(s);

    buf_str(b, "* NAMESPACE ((\"\" \"/\")) NIL ");
    if (pfx[0]) {
        buf_str(b, "((");
        buf_imap_string(b, pfx, strlen(pfx));
        buf_str(b, " \"/\"))\r\n");
    } else {
        buf_str(b, "NIL\r\n");
    }
    imap_finish(s, "OK", "Namespace completed.");
}
