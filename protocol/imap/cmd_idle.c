/* IDLE (RFC 2177): the session announces changes as they come, until the
 * client sends DONE. IDLE runs as a continuation: it reads lines (DONE)
 * and is resumed whenever the selected mailbox changes. A session in IDLE
 * tells the account's store (mailuser_idling), which closes its index
 * files once every session holding it waits so. */
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"

static void after_update(struct imap_session *s)
{
    imap_resume(s);
}

/* Something to announce while idling. */
static void idle_kick(struct imap_session *s)
{
    if (s->job || s->state != IMAP_SELECTED || !s->sel)
        return;
    imap_updates(s, true, imap_updates_need_job(s) ? after_update : NULL);
    imap_flush(s);
}

/* A line while idling ("DONE"). */
static void idle_line(struct imap_session *s, const char *line, size_t len)
{
    imap_cont_end(s);
    imap_idle_leave(s);
    if (len == 4 && !strncasecmp(line, "DONE", 4)) {
        imap_finish(s, "OK", "IDLE terminated.");
        return;
    }
    imap_bad(s, "Expected DONE to end IDLE.");
}

static const struct imap_cont idle_cont = {
    .line = idle_line,
    .resume = idle_kick,
};

void imap_cmd_idle(struct imap_session *s, struct imap_args *a)
{
    imap_cont_start(s, &idle_cont, NULL);
    s->idling = true;
    /* the account's store may close its index while the session waits
     * (another account's store, selected shared, waits mail_idle_close) */
    if (s->mu) {
        mailuser_idling(s->mu, true);
        s->idle_counted = true;
    }
    s->expunge_ok = true;
    imap_printf(s, "+ idling\r\n");
    idle_kick(s);
}
