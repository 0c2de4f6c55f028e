/* IDLE (RFC 2177): the session announces changes as they come, until the
 * client sends DONE. */
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"

void imap_cmd_idle(struct imap_session *s, struct imap_args *a)
{
    if (!imap_args_at_end(a)) {
        imap_bad(s, "IDLE takes no arguments.");
        return;
    }
    s->idling = true;
    s->expunge_ok = true;
    imap_printf(s, "+ idling\r\n");
    imap_idle_kick(s);
}

static void after_update(struct imap_session *s)
{
    imap_resume(s);
}

void imap_idle_kick(struct imap_session *s)
{
    if (!s->idling || s->job || s->state != IMAP_SELECTED || !s->sel)
        return;
    imap_updates(s, true, imap_updates_need_job(s) ? after_update : NULL);
    imap_flush(s);
}

void imap_idle_line(struct imap_session *s, const char *line, size_t len)
{
    s->idling = false;
    if (len == 4 && !strncasecmp(line, "DONE", 4)) {
        imap_finish(s, "OK", "IDLE terminated.");
        return;
    }
    imap_bad(s, "Expected DONE to end IDLE.");
}
