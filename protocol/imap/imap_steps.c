/* Commands whose answer is produced in steps on the thread pool (FETCH,
 * LIST): each step writes about IMAP_STEP_BYTES, and the next one starts
 * only when the client has taken most of what is queued; while the loop
 * sends one step, the pool makes the next. Above the session
 * core (it ends the command), below the command files. */
#include <string.h>

#include "protocol/imap/imap_private.h"

static int steps_continue(struct imap_session *s);

static void steps_free_fn(struct imap_job *j)
{
    struct imap_steps *st = (struct imap_steps *)j;
    if (!st->session_owned)
        st->destroy(st);
}

static void steps_done(struct imap_session *s, struct imap_job *j)
{
    struct imap_steps *st = (struct imap_steps *)j;
    bool ended = st->err || st->finished;
    bool more = !ended && conn_write_queued(s->c) < CONN_WRITE_HIGH;
    struct buf sent = st->out;

    /* the next step writes into the other buffer, on the pool, while the
     * loop encrypts and sends this one: at most one step being made, and
     * queued at most CONN_WRITE_HIGH plus two steps (this one, and the
     * one started while less than CONN_WRITE_HIGH was queued) */
    st->out = st->spare;
    memset(&st->spare, 0, sizeof(st->spare));
    buf_reset(&st->out);
    if (more && steps_continue(s) < 0) {
        buf_free(&sent); /* st is gone, the command ended */
        return;
    }
    if (sent.len) {
        imap_flush(s);
        conn_write(s->c, sent.p, sent.len);
    }
    buf_reset(&sent);
    st->spare = sent; /* the step now running (if any) touches only out */
    if (ended) {
        imap_cont_end(s);
        st->session_owned = false; /* freed after this call */
        st->end(s, st);
        return;
    }
    if (!more)
        imap_stall(s); /* resumed once the client has read */
}

/* The next step, on the pool. Returns -1 when it could not start: st is
 * destroyed and the command ended. */
static int steps_continue(struct imap_session *s)
{
    struct imap_steps *st = s->cont_data;
    if (!st || s->job)
        return 0;
    memset(&st->j, 0, sizeof(st->j));
    st->j.free_fn = steps_free_fn;
    st->j.store = st->store;
    if (imap_job_start(s, &st->j, st->work, steps_done) < 0) {
        /* job_free left it to us (session_owned) */
        imap_cont_end(s);
        st->destroy(st);
        imap_finish(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
        return -1;
    }
    return 0;
}

/* The output drained: the next step, unless the client is still behind. */
static void steps_resume(struct imap_session *s)
{
    if (imap_out_pending(s) < CONN_WRITE_HIGH)
        (void)steps_continue(s);
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
    (void)steps_continue(s);
}
