/* Private to protocol/http: the request parser's result, the session, the
 * routes and the data directory's health probe. */
#ifndef COFFRE_HTTP_INT_H
#define COFFRE_HTTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/linebuf.h"
#include "server/base/buf.h"
#include "server/base/conn.h"

struct conf;

enum http_method { HTTP_GET, HTTP_HEAD, HTTP_POST };

/* A request head, parsed in place: every pointer points into the
 * session's input buffer and is valid until the request is answered. */
struct http_request {
    enum http_method method;
    int minor;        /* HTTP/1.minor: 0 or 1 */
    const char *path; /* the target's path, from '/' */
    size_t path_len;
    const char *query; /* after '?', NULL when there is none */
    size_t query_len;
    const char *host; /* Host, or the absolute-form's authority */
    size_t host_len;
    bool has_length;
    uint64_t content_length;
    bool close; /* Connection: close, or HTTP/1.0 without keep-alive */
    bool expect_continue;
    const char *body; /* the body once read, content_length bytes */
};

/* The head's limits, from the configuration. */
struct http_limits {
    size_t max_request_line;
    size_t max_header_bytes;
    size_t max_headers;
};

/* How far the search for a head's end went; zeroed at each request. */
struct http_scan {
    size_t pos; /* bytes searched, none of them the head's end */
    bool line1; /* the request line is whole (and was checked) */
};

/* Where the parser is: nothing found yet, or more bytes needed. */
#define HTTP_PARSE_MORE 0

/* Looks for a whole request head at the start of p[0..len). Returns
 * HTTP_PARSE_MORE when more bytes are needed (the head so far is within
 * the limits), the head's length (> 0) with *r filled, or minus an HTTP
 * status code (-400, -414, -431, -501, -505, ...) for a request to refuse;
 * *why is then a short reason. *scan keeps how far the search for the
 * head's end got (0 at the start of a request), so that each call goes on
 * from there: the whole search stays linear in the head's length. */
long http_parse_head(const char *p, size_t len, struct http_scan *scan,
                     const struct http_limits *lim, struct http_request *r, const char **why);

/* The text of a status code ("Not Found"). */
const char *http_reason(int status);

/* ---- the session (http_session.c) */

enum http_phase {
    HTTP_PH_HEAD, /* reading a request head (or waiting for one) */
    HTTP_PH_BODY, /* reading its Content-Length body */
    HTTP_PH_WAIT, /* its answer waits for the health probe or the login service */
    HTTP_PH_DONE, /* closing */
};

struct http_session {
    struct conn *c;
    enum http_phase phase;
    struct linebuf in;     /* input not yet answered, from the current request on */
    struct http_scan scan; /* the head parser's place (http_parse_head) */
    long head_len;         /* the current request's head, once parsed */
    struct http_request req;
    uint64_t deadline;  /* ms (uv_hrtime) by which the current request must be in; 0 = none */
    unsigned pipelined; /* requests found waiting behind the one answered, in a row */
    bool stalled;       /* output above CONN_WRITE_HIGH: not reading until it drains */
    bool force_close;   /* answer with Connection: close, then close */
    /* on the health probe's list of waiting sessions */
    struct http_session *probe_prev, *probe_next;
    bool probe_waiting;
    struct authhttp *authhttp; /* the auth_http request waiting for its login, or NULL */
};

/* ---- responses (http_session.c) */

/* Writes the status line, Date, Content-Length, Content-Type (when not
 * NULL), the extra header lines (each ending in CRLF, may be NULL) and
 * the body (left out for HEAD). */
void http_respond(struct http_session *s, int status, const char *type, const char *extra,
                  const char *body, size_t len);
/* A short text/plain answer. */
void http_respond_text(struct http_session *s, int status, const char *text);

/* Routing (http_routes.c): answers the request now, or returns false when
 * the answer waits (GET /health while the probe runs);
 * http_health_answer then answers. */
bool http_route(struct http_session *s, const struct http_request *r);
/* GET /health's answer once the probe is in: problem NULL = healthy. */
void http_health_answer(struct http_session *s, const char *problem);
/* Back on the input once a waiting answer is written. */
void http_session_resume(struct http_session *s);

/* ---- nginx's auth_http (http_authhttp.c) */

/* Answers GET auth_http_path now (returns true), or starts the login and
 * returns false: the answer then comes on its own and the session resumes. */
bool http_authhttp(struct http_session *s, const struct http_request *r);
/* The session ends (answer_now false) or waited too long (true: a
 * temporary failure is answered) while an auth_http request waits. */
void http_authhttp_abort(struct http_session *s, bool answer_now);

/* ---- whether a slot's port accepts connections (http_slotcheck.c) */

typedef void (*http_slotcheck_cb)(void *arg, bool up, const char *why);
/* A login waiting for a slot's probe; owned by the caller. */
struct http_slotcheck_wait {
    struct http_slotcheck_wait *next, **pprev;
    http_slotcheck_cb cb;
    void *arg;
};
/* 1: host:port accepts connections (or the check is off, or host is not
 * an address); 0: it did not (why says how, borrowed); -1: a probe runs,
 * cb(arg, up, why) comes later unless http_slotcheck_cancel(w) first. */
int http_slotcheck(struct uv_loop_s *loop, const struct conf *cf, const char *host, unsigned port,
                   struct http_slotcheck_wait *w, http_slotcheck_cb cb, void *arg,
                   const char **why);
void http_slotcheck_cancel(struct http_slotcheck_wait *w);

/* ---- the data directory's probe (http_health.c) */

/* start: answers from a recent probe (returns 1, *problem NULL when the
 * directory is writable, else the reason), or starts a write probe on the
 * pool and returns 0: http_session_probe_done(s, problem) follows, unless
 * cancel(s) comes first. -1 when no probe can start. */
struct http_probe_ops {
    int (*start)(struct http_session *s, struct conn *c, const char **problem);
    void (*cancel)(struct http_session *s);
};
extern const struct http_probe_ops *http_probe;
void http_session_probe_done(struct http_session *s, const char *problem);

/* ---- autoconfig and autodiscover (http_autoconfig.c) */

/* The Thunderbird config-v1.1 document for the address or domain in the
 * query (emailaddress=) or Host. Returns the status, and the body in out. */
int http_autoconfig(const struct conf *cf, const char *hostname, const struct http_request *r,
                    struct buf *out);
/* The POX autodiscover answer to the request body. */
int http_autodiscover(const struct conf *cf, const char *hostname, const char *body, size_t len,
                      struct buf *out);

#endif
