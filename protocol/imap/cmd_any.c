/* Commands valid in any state (CAPABILITY, NOOP, LOGOUT) and STARTTLS. */
#include "protocol/imap/imap_private.h"

void imap_cmd_capability(struct imap_session *s, struct imap_args *a)
{
    if (!imap_args_at_end(a)) {
        imap_bad(s, "CAPABILITY takes no arguments.");
        return;
    }
    conn_printf(s->c, "* CAPABILITY %s\r\n", imap_capabilities(s));
    imap_tagged(s, "OK", "Capability completed.");
}

void imap_cmd_noop(struct imap_session *s, struct imap_args *a)
{
    if (!imap_args_at_end(a)) {
        imap_bad(s, "NOOP takes no arguments.");
        return;
    }
    imap_tagged(s, "OK", "NOOP completed.");
}

void imap_cmd_logout(struct imap_session *s, struct imap_args *a)
{
    if (!imap_args_at_end(a)) {
        imap_bad(s, "LOGOUT takes no arguments.");
        return;
    }
    conn_printf(s->c, "* BYE Logging out.\r\n");
    imap_tagged(s, "OK", "Logout completed.");
    s->state = IMAP_LOGOUT;
    conn_close(s->c);
}

void imap_cmd_starttls(struct imap_session *s, struct imap_args *a)
{
    if (!imap_args_at_end(a)) {
        imap_bad(s, "STARTTLS takes no arguments.");
        return;
    }
    if (conn_is_tls(s->c)) {
        imap_bad(s, "TLS is already active.");
        return;
    }
    imap_tagged(s, "OK", "Begin TLS negotiation now.");
    /* Whatever the client pipelined after STARTTLS was sent in clear and
     * may have been injected on the way: it is discarded, never run. */
    linebuf_clear(&s->in);
    if (conn_starttls(s->c) < 0)
        conn_close(s->c);
}
