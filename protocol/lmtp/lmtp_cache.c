/* Keeps the stores of recently delivered-to accounts open for
 * LMTP_USER_LINGER_MS, so that a stream of deliveries to the same users does
 * not reopen (and re-check) their index for every message. Loop thread. */
#include <stdlib.h>

#include "protocol/lmtp/lmtp_int.h"

struct entry {
    struct mailuser *mu; /* one hold, owned here */
    uint64_t used;       /* uv_now at the last delivery */
};

static struct entry cache[LMTP_CACHE_MAX];
static size_t n_cache;
static uv_timer_t timer;
static bool timer_ready;

static void drop(size_t i)
{
    mailuser_release(cache[i].mu);
    cache[i] = cache[--n_cache];
}

static void on_timer(uv_timer_t *t)
{
    uint64_t now = uv_now(t->loop);
    for (size_t i = 0; i < n_cache;) {
        if (now - cache[i].used >= LMTP_USER_LINGER_MS)
            drop(i);
        else
            i++;
    }
    if (n_cache == 0)
        uv_timer_stop(t);
}

void lmtp_cache_keep(uv_loop_t *loop, struct mailuser *mu)
{
    uint64_t now = uv_now(loop);
    size_t oldest = 0;

    for (size_t i = 0; i < n_cache; i++) {
        if (cache[i].mu == mu) {
            cache[i].used = now;
            mailuser_release(mu); /* one hold is enough */
            return;
        }
        if (cache[i].used < cache[oldest].used)
            oldest = i;
    }
    if (!timer_ready) {
        if (uv_timer_init(loop, &timer) < 0) {
            mailuser_release(mu);
            return;
        }
        uv_unref((uv_handle_t *)&timer); /* never keeps the daemon alive */
        timer_ready = true;
    }
    if (uv_is_closing((uv_handle_t *)&timer)) { /* shutting down */
        mailuser_release(mu);
        return;
    }
    if (n_cache == LMTP_CACHE_MAX)
        drop(oldest);
    cache[n_cache].mu = mu;
    cache[n_cache].used = now;
    n_cache++;
    if (!uv_is_active((uv_handle_t *)&timer))
        uv_timer_start(&timer, on_timer, LMTP_USER_LINGER_MS / 2, LMTP_USER_LINGER_MS / 2);
}
