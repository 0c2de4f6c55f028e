/* Commands whose answer is produced in steps on the thread pool (FETCH,
 * LIST): each step writes about IMAP_STEP_BYTES, and the next one starts
 * only when the client has taken most of what is queued. Above the session
 * core (it ends the command), below the command files. */
#include <string.h>

#include "protocol/imap/imap_private.h"

static void steps_continue(struct imap_session *s);

static void steps_free_fn(struct imap_job *j)
{
    struct imap_steps *st = (struct imap_steps *)j;
    if (!st->session_owned)
        st->destroy(st);
}

static void steps_done(struct imap_session *s, struct imap_job *j)
{
    struct imap_steps *st = (struct imap_steps *)j;

    if (st->out.len) {
        imap_flush(s);
        conn_write(s->c, st->out.p, st->out.len);
    }
    if (st->err || st->finished) {
        imap_cont_end(s);
        st->session_owned = false; /* freed after this call */
        st->end(s, st);
        return;
    }
    if (conn_write_queued(s->c) < CONN_WRITE_HIGH)
        steps_continue(s);
    else
        imap_stall(s); /* resumed once the client has read */
}

/* The next step, on the pool. */
static void steps_continue(struct imap_session *s)
{
    struct imap_steps *st = s->cont_data;
    if (!st || s->job)
        return;
    memset(&st->j, 0, sizeof(st->j));
    st->j.free_fn = steps_free_fn;
    if (imap_job_start(s, &st->j, st->work, steps_done) < 0) {
        /* job_free left it to us (session_owned) */
        imap_cont_end(s);
        st->destroy(st);
        imap_finish(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
    }
}

/* The output drained: the next step, unless the client is still behind. */
static void steps_resume(struct imap_session *s)
{
    if (imap_out_pending(s) < CONN_WRITE_HIGH)
        steps_continue(s);
}

static void steps_abort(struct imap_session *s)
{
    struct imap_steps *st = s->cont_data;
    if (s->job == &st->j)
        st->session_owned = false; /* the running job frees it when done */
    else
        st->destroy(st);
}

static const struct imap_cont steps_cont = {
    .resume = steps_resume,
    .abort = steps_abort,
};

void imap_steps_start(struct imap_session *s, struct imap_steps *st)
{
    st->session_owned = true;
    imap_cont_start(s, &steps_cont, st);
    steps_continue(s);
}
