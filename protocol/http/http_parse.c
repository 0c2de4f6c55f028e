/* The request head parser (RFC 9112): request line, header fields, and the
 * few fields that frame or steer a request (Host, Content-Length,
 * Transfer-Encoding, Connection, Expect). Every length is checked where it
 * enters; the search for the head's end resumes where the last call
 * stopped, and the head is then read once. */
#include <string.h>
#include <strings.h>

#include "protocol/http/http_int.h"

const char *http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 417:
        return "Expectation Failed";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

/* tchar (RFC 9110 5.6.2) */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool is_token(const char *p, size_t len)
{
    if (!len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)p[i]))
            return false;
    return true;
}

static bool ieq(const char *p, size_t len, const char *lit)
{
    return strlen(lit) == len && !strncasecmp(p, lit, len);
}

/* A request line over the limit: what the client overdid. */
static long too_long_line(const char *p, size_t len, const char **why)
{
    const char *sp = memchr(p, ' ', len);
    if (!sp) {
        *why = "method too long";
        return is_token(p, len) ? -501 : -400;
    }
    const char *sp2 = memchr(sp + 1, ' ', len - (size_t)(sp + 1 - p));
    if (!sp2 || len - (size_t)(sp2 + 1 - p) <= 10) {
        /* the target is what is long: the version is a few bytes */
        *why = "request target too long";
        return -414;
    }
    *why = "request line too long";
    return -400;
}

/* Finds the end of the head, searching on from sc->pos: every byte is
 * looked at once however the head arrives. Returns the head's length, 0
 * for more, or a negative status. */
static long find_end(const char *p, size_t len, struct http_scan *sc, const struct http_limits *lim,
                     const char **why)
{
    while (sc->pos < len) {
        const char *nl = memchr(p + sc->pos, '\n', len - sc->pos);
        if (!nl) {
            sc->pos = len;
            break;
        }
        size_t end = (size_t)(nl - p) + 1;
        if (end > lim->max_header_bytes && sc->line1) {
            *why = "header section too large";
            return -431;
        }
        if (!sc->line1) {
            if (end > lim->max_request_line || end > lim->max_header_bytes)
                return too_long_line(p, end, why);
            if (end == 1 || (end == 2 && p[0] == '\r')) {
                *why = "empty request line";
                return -400;
            }
            /* a request line without version is HTTP/0.9's: no headers
             * follow, so it is answered now */
            const char *sp = memchr(p, ' ', end);
            if (sp && !memchr(sp + 1, ' ', end - (size_t)(sp + 1 - p))) {
                *why = "no HTTP version (HTTP/0.9 is not served)";
                return -400;
            }
            sc->line1 = true;
        } else {
            /* an empty line ends the head: LF or CR LF after a LF */
            size_t k = end - 1;
            if (p[k - 1] == '\n' || (p[k - 1] == '\r' && k >= 2 && p[k - 2] == '\n'))
                return (long)end;
        }
        sc->pos = end;
    }
    if (!sc->line1 && (len > lim->max_request_line || len > lim->max_header_bytes))
        return too_long_line(p, len, why);
    if (len > lim->max_header_bytes) {
        *why = "header section too large";
        return -431;
    }
    return HTTP_PARSE_MORE;
}

static long parse_version(const char *v, size_t len, struct http_request *r, const char **why)
{
    if (len == 8 && !memcmp(v, "HTTP/", 5) && v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
        v[7] >= '0' && v[7] <= '9') {
        if (v[5] == '1' && (v[7] == '0' || v[7] == '1')) {
            r->minor = v[7] - '0';
            return 0;
        }
        *why = "HTTP version not supported";
        return -505;
    }
    *why = "malformed HTTP version";
    return -400;
}

static long parse_method(const char *m, size_t len, struct http_request *r, const char **why)
{
    static const char *const other[] = {"PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"};

    if (len == 3 && !memcmp(m, "GET", 3)) {
        r->method = HTTP_GET;
        return 0;
    }
    if (len == 4 && !memcmp(m, "HEAD", 4)) {
        r->method = HTTP_HEAD;
        return 0;
    }
    if (len == 4 && !memcmp(m, "POST", 4)) {
        r->method = HTTP_POST;
        return 0;
    }
    if (!is_token(m, len)) {
        *why = "malformed method";
        return -400;
    }
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        if (len == strlen(other[i]) && !memcmp(m, other[i], len)) {
            *why = "method not allowed";
            return -405;
        }
    }
    *why = "unknown method";
    return -501;
}

/* The characters of a host (reg-name, IP literal, port). */
static bool valid_host(const char *h, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("-._~%!$&'()*+,;=:[]", ch)))
            return false;
    }
    return true;
}

static long parse_target(const char *t, size_t len, struct http_request *r, const char **why)
{
    const char *path = t, *end = t + len;

    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)t[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '#') {
            *why = "invalid character in the request target";
            return -400;
        }
    }
    if (len && t[0] == '/') {
        /* origin-form */
    } else if ((len > 7 && !strncasecmp(t, "http://", 7)) ||
               (len > 8 && !strncasecmp(t, "https://", 8))) {
        /* absolute-form (RFC 9112 3.2.2): the authority is the host */
        const char *a = t + (t[4] == ':' ? 7 : 8), *ae = a;
        while (ae < end && *ae != '/' && *ae != '?')
            ae++;
        if (ae == a || !valid_host(a, (size_t)(ae - a)) || memchr(a, '@', (size_t)(ae - a))) {
            *why = "invalid authority in the request target";
            return -400;
        }
        r->host = a;
        r->host_len = (size_t)(ae - a);
        path = ae;
    } else {
        *why = "unsupported request target form";
        return -400;
    }
    const char *q = memchr(path, '?', (size_t)(end - path));
    r->path = path;
    r->path_len = (size_t)((q ? q : end) - path);
    if (q) {
        r->query = q + 1;
        r->query_len = (size_t)(end - q - 1);
    }
    if (!r->path_len) {
        r->path = "/";
        r->path_len = 1;
    }
    return 0;
}

/* Connection's options (RFC 9110 7.6.1): a list of tokens. */
static void parse_connection(const char *v, size_t len, bool *close, bool *keep)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ',' || v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (ieq(v + s, i - s, "close"))
            *close = true;
        else if (ieq(v + s, i - s, "keep-alive"))
            *keep = true;
    }
}

static long parse_field(const char *n, size_t nlen, const char *v, size_t vlen,
                        struct http_request *r, unsigned *nhost, bool *keep, bool *close,
                        bool absolute, const char **why)
{
    if (ieq(n, nlen, "host")) {
        if (++*nhost > 1 || !valid_host(v, vlen)) {
            *why = *nhost > 1 ? "more than one Host" : "invalid Host";
            return -400;
        }
        if (!absolute) {
            r->host = v;
            r->host_len = vlen;
        }
    } else if (ieq(n, nlen, "content-length")) {
        uint64_t x = 0;
        if (!vlen || vlen > 15) {
            *why = "invalid Content-Length";
            return -400;
        }
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9') {
                *why = "invalid Content-Length";
                return -400;
            }
            x = x * 10 + (uint64_t)(v[i] - '0');
        }
        if (r->has_length && r->content_length != x) {
            *why = "conflicting Content-Length";
            return -400;
        }
        r->has_length = true;
        r->content_length = x;
    } else if (ieq(n, nlen, "transfer-encoding")) {
        /* a body without Content-Length (RFC 9112 6.1, RFC 9110 15.5.12) */
        bool chunked = vlen >= 7 && !strncasecmp(v + vlen - 7, "chunked", 7);
        *why = chunked ? "chunked request bodies are not accepted" : "unknown transfer coding";
        return chunked ? -411 : -501;
    } else if (ieq(n, nlen, "connection")) {
        parse_connection(v, vlen, close, keep);
    } else if (ieq(n, nlen, "expect")) {
        if (!ieq(v, vlen, "100-continue")) {
            *why = "unsupported expectation";
            return -417;
        }
        r->expect_continue = true;
    }
    return 0;
}

long http_parse_head(const char *p, size_t len, struct http_scan *scan,
                     const struct http_limits *lim, struct http_request *r, const char **why)
{
    long head = find_end(p, len, scan, lim, why);
    if (head <= 0)
        return head;

    memset(r, 0, sizeof(*r));
    const char *end = p + head, *line = p;
    size_t nfields = 0;
    unsigned nhost = 0;
    bool keep = false, close = false, absolute;
    long err;

    /* the request line */
    const char *nl = memchr(line, '\n', (size_t)(end - line));
    const char *le = nl > line && nl[-1] == '\r' ? nl - 1 : nl;
    if (memchr(line, '\r', (size_t)(le - line))) {
        *why = "bare CR";
        return -400;
    }
    const char *sp1 = memchr(line, ' ', (size_t)(le - line));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(le - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || memchr(sp2 + 1, ' ', (size_t)(le - sp2 - 1))) {
        *why = sp1 && !sp2 ? "no HTTP version (HTTP/0.9 is not served)" : "malformed request line";
        return -400;
    }
    if ((err = parse_version(sp2 + 1, (size_t)(le - sp2 - 1), r, why)) < 0)
        return err;
    if ((err = parse_method(line, (size_t)(sp1 - line), r, why)) < 0)
        return err;
    if ((err = parse_target(sp1 + 1, (size_t)(sp2 - sp1 - 1), r, why)) < 0)
        return err;
    absolute = r->host != NULL;

    /* the header fields */
    for (line = nl + 1; line < end; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(end - line));
        le = nl > line && nl[-1] == '\r' ? nl - 1 : nl;
        if (le == line)
            break; /* the empty line */
        if (++nfields > lim->max_headers) {
            *why = "too many header fields";
            return -431;
        }
        if (*line == ' ' || *line == '\t') {
            *why = "obsolete line folding";
            return -400;
        }
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (!colon || !is_token(line, (size_t)(colon - line))) {
            *why = "malformed header field";
            return -400;
        }
        const char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *q = v; q < ve; q++) {
            unsigned char ch = (unsigned char)*q;
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                *why = "control character in a header field";
                return -400;
            }
        }
        if ((err = parse_field(line, (size_t)(colon - line), v, (size_t)(ve - v), r, &nhost, &keep,
                               &close, absolute, why)) < 0)
            return err;
    }
    if (r->minor == 1 && !nhost) {
        *why = "no Host";
        return -400;
    }
    if (!r->host) {
        r->host = "";
        r->host_len = 0;
    }
    r->close = close || (r->minor == 0 && !keep);
    return head;
}
