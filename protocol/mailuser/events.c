/* The event bus of the per-account service: storage notifications, made on
 * whatever thread committed the change, queued and carried to the loop by
 * one uv_async for the process, then handed to the account's listeners (the
 * sessions). The same wake-up answers store requests on the next loop
 * iteration. Everything here runs on the loop thread except
 * mu_storage_event. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/mailuser/mailuser_int.h"
#include "server/base/log.h"

/* An event on its way from a pool thread to the loop. */
struct qev {
    int64_t user;
    struct storage_event ev;
    struct qev *next;
    uint32_t uids[];
};

uv_loop_t *mu_loop;
static uv_async_t wakeup;
static bool wakeup_ready;

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static struct qev *q_head, **q_tail = &q_head;
static bool q_closed;

void mu_storage_event(void *arg, const struct storage_event *ev)
{
    struct qev *q = malloc(sizeof(*q) + ev->n * sizeof(uint32_t));
    if (!q) {
        log_error("mailuser: out of memory; a change notification is lost");
        return;
    }
    q->user = (int64_t)(intptr_t)arg;
    q->ev = *ev;
    if (ev->n)
        memcpy(q->uids, ev->uids, ev->n * sizeof(uint32_t));
    q->ev.uids = q->uids;
    q->next = NULL;
    pthread_mutex_lock(&q_lock);
    if (q_closed) {
        pthread_mutex_unlock(&q_lock);
        free(q);
        return;
    }
    *q_tail = q;
    q_tail = &q->next;
    uv_async_send(&wakeup);
    pthread_mutex_unlock(&q_lock);
}

static void dispatch(struct qev *q)
{
    struct mailuser *mu = mu_find(q->user);
    struct mailuser_listener *l, *next;

    if (!mu)
        return;
    mu_upkeep_note(mu, &q->ev);
    /* a listener may unlisten itself (or close) from its callback */
    for (l = LIST_FIRST(&mu->listeners); l; l = next) {
        next = LIST_NEXT(l, entry);
        l->on_event(l->arg, &q->ev);
    }
}

static void on_wakeup(uv_async_t *a)
{
    struct qev *q;

    (void)a;
    pthread_mutex_lock(&q_lock);
    q = q_head;
    q_head = NULL;
    q_tail = &q_head;
    pthread_mutex_unlock(&q_lock);
    while (q) {
        struct qev *next = q->next;
        dispatch(q);
        free(q);
        q = next;
    }
    mu_answer_ready();
}

int mu_events_init(uv_loop_t *l)
{
    if (wakeup_ready)
        return 0;
    if (uv_async_init(l, &wakeup, on_wakeup) < 0)
        return -1;
    uv_unref((uv_handle_t *)&wakeup);
    mu_loop = l;
    wakeup_ready = true;
    return 0;
}

void mu_wake(void)
{
    uv_async_send(&wakeup);
}

void mu_events_close(void)
{
    pthread_mutex_lock(&q_lock);
    q_closed = true;
    pthread_mutex_unlock(&q_lock);
}

void mailuser_listen(struct mailuser *mu, struct mailuser_listener *l)
{
    l->mu = mu;
    LIST_INSERT_HEAD(&mu->listeners, l, entry);
}

void mailuser_unlisten(struct mailuser_listener *l)
{
    if (!l->mu)
        return;
    LIST_REMOVE(l, entry);
    l->mu = NULL;
}

bool mailuser_in_use(int64_t id)
{
    struct mailuser *mu = mu_find(id);
    return mu && !mu->kept;
}
