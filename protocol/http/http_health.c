/* GET /health's data-directory probe: a file created, written, synced and
 * removed in data_dir, on the pool (never on the loop). One probe runs at
 * a time; its result serves every request for http_health_interval, and
 * the requests that come while it runs wait for it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "protocol/http/http_int.h"
#include "protocol/job.h"
#include "server/base/config.h"

struct probe {
    char path[CONF_PATH_MAX + 32];
    int err;          /* errno, 0 = writable */
    const char *step; /* what failed */
};

static struct {
    uv_loop_t *loop;
    bool running, have;
    uint64_t at; /* uv_now of the last result */
    char problem[CONF_PATH_MAX + 128];
    bool ok;
    struct http_session *first, *last; /* waiting */
} st;

static void probe_work(void *data)
{
    struct probe *p = data;
    int fd = open(p->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);

    if (fd < 0) {
        p->err = errno;
        p->step = "cannot create a file in";
        return;
    }
    if (write(fd, "ok\n", 3) != 3) {
        p->err = errno ? errno : ENOSPC;
        p->step = "cannot write a file in";
    } else if (fsync(fd) < 0) {
        p->err = errno;
        p->step = "cannot sync a file in";
    }
    close(fd);
    if (unlink(p->path) < 0 && !p->err) {
        p->err = errno;
        p->step = "cannot remove a file from";
    }
}

static void probe_done(void *data)
{
    struct probe *p = data;
    struct http_session *w;

    st.running = false;
    st.have = true;
    st.at = uv_now(st.loop);
    st.ok = !p->err;
    if (p->err) {
        /* the path without the probe's name: the data directory */
        char *slash = strrchr(p->path, '/');
        if (slash)
            *slash = '\0';
        snprintf(st.problem, sizeof(st.problem), "data directory %s: %s it: %s", p->path, p->step,
                 strerror(p->err));
    }
    while ((w = st.first)) {
        st.first = w->probe_next;
        if (st.first)
            st.first->probe_prev = NULL;
        else
            st.last = NULL;
        w->probe_next = w->probe_prev = NULL;
        w->probe_waiting = false;
        http_session_probe_done(w, st.ok ? NULL : st.problem);
    }
}

static void probe_free(void *data)
{
    free(data);
}

static int start(struct http_session *s, struct conn *c, const char **problem)
{
    const struct conf *cf = conn_conf(c);

    st.loop = conn_loop(c);
    if (st.have && !st.running && uv_now(st.loop) - st.at < cf->http_health_interval_ms) {
        *problem = st.ok ? NULL : st.problem;
        return 1;
    }
    if (!st.running) {
        struct probe *p = calloc(1, sizeof(*p));
        if (!p)
            return -1;
        snprintf(p->path, sizeof(p->path), "%s/.health-probe", cf->data_dir);
        if (!proto_job_start(st.loop, PROTO_JOB_NO_ACCOUNT, probe_work, probe_done, probe_free,
                             p)) {
            free(p);
            return -1;
        }
        st.running = true;
    }
    s->probe_waiting = true;
    s->probe_next = NULL;
    s->probe_prev = st.last;
    if (st.last)
        st.last->probe_next = s;
    else
        st.first = s;
    st.last = s;
    return 0;
}

static void cancel(struct http_session *s)
{
    if (!s->probe_waiting)
        return;
    if (s->probe_prev)
        s->probe_prev->probe_next = s->probe_next;
    else
        st.first = s->probe_next;
    if (s->probe_next)
        s->probe_next->probe_prev = s->probe_prev;
    else
        st.last = s->probe_prev;
    s->probe_next = s->probe_prev = NULL;
    s->probe_waiting = false;
}

static const struct http_probe_ops pool_probe = {.start = start, .cancel = cancel};
const struct http_probe_ops *http_probe = &pool_probe;
