/* The PROXY protocol reader (see proxyproto.h): signature, then a version 1
 * line or a version 2 binary header, each checked where it enters. */
#include "server/base/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const uint8_t sig_v1[6] = {'P', 'R', 'O', 'X', 'Y', ' '};
static const uint8_t sig_v2[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                   '\n', 'Q',  'U',  'I',  'T',  '\n'};

void proxyproto_init(struct proxyproto *p, bool parse)
{
    memset(p, 0, offsetof(struct proxyproto, buf));
    p->parse = parse;
    p->state = PROXYPROTO_MORE;
}

static enum proxyproto_state bad(struct proxyproto *p, const char *why)
{
    p->why = why;
    return p->state = PROXYPROTO_BAD;
}

/* A decimal port, 0..65535, without leading zeros. */
static bool port_ok(const uint8_t *s, size_t n, uint16_t *out)
{
    unsigned v = 0;

    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

/* One address of a v1 line into ss, of the family the line named. */
static bool addr_ok(const uint8_t *s, size_t n, int family, struct sockaddr_storage *ss)
{
    char text[INET6_ADDRSTRLEN];

    if (n == 0 || n >= sizeof(text))
        return false;
    memcpy(text, s, n);
    text[n] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        return inet_pton(AF_INET, text, &a->sin_addr) == 1;
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    return inet_pton(AF_INET6, text, &a->sin6_addr) == 1;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* "PROXY " then the line in buf[6..n), CRLF excluded. */
static enum proxyproto_state parse_v1(struct proxyproto *p, size_t n)
{
    const uint8_t *s = p->buf + 6, *end = p->buf + n;
    const uint8_t *f[6];
    size_t fl[6], nf = 0;
    int family;

    p->hdr.version = 1;
    /* fields separated by single spaces: one pass */
    while (s <= end && nf < 6) {
        const uint8_t *e = s;
        while (e < end && *e != ' ')
            e++;
        f[nf] = s;
        fl[nf++] = (size_t)(e - s);
        s = e + 1;
        if (nf == 1 && fl[0] == 7 && !memcmp(f[0], "UNKNOWN", 7)) {
            /* whatever follows UNKNOWN is to be ignored */
            p->hdr.local = true;
            return p->state = PROXYPROTO_DONE;
        }
    }
    if (s <= end)
        return bad(p, "v1 header with too many fields");
    if (nf < 1 || fl[0] != 4)
        return bad(p, "v1 header with an unknown protocol");
    if (!memcmp(f[0], "TCP4", 4))
        family = AF_INET;
    else if (!memcmp(f[0], "TCP6", 4))
        family = AF_INET6;
    else
        return bad(p, "v1 header with an unknown protocol");
    if (nf != 5)
        return bad(p, "v1 header without its four fields");
    uint16_t sport, dport;
    if (!addr_ok(f[1], fl[1], family, &p->hdr.src) || !addr_ok(f[2], fl[2], family, &p->hdr.dst))
        return bad(p, "v1 header with a bad address");
    if (!port_ok(f[3], fl[3], &sport) || !port_ok(f[4], fl[4], &dport))
        return bad(p, "v1 header with a bad port");
    set_port(&p->hdr.src, sport);
    set_port(&p->hdr.dst, dport);
    return p->state = PROXYPROTO_DONE;
}

/* The whole v2 header is in buf[0..need). */
static enum proxyproto_state parse_v2(struct proxyproto *p)
{
    const uint8_t *b = p->buf;
    size_t alen = p->need - 16;

    p->hdr.version = 2;
    if ((b[12] & 0x0f) == 0x0) { /* LOCAL: the proxy's own connection */
        p->hdr.local = true;
        return p->state = PROXYPROTO_DONE;
    }
    switch (b[13]) {
    case 0x00: /* UNSPEC: nothing to take */
        p->hdr.local = true;
        return p->state = PROXYPROTO_DONE;
    case 0x11: { /* TCP over IPv4 */
        struct sockaddr_in *s4 = (struct sockaddr_in *)&p->hdr.src;
        struct sockaddr_in *d4 = (struct sockaddr_in *)&p->hdr.dst;
        if (alen < 12)
            return bad(p, "v2 header too short for its IPv4 addresses");
        s4->sin_family = d4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, b + 16, 4);
        memcpy(&d4->sin_addr, b + 20, 4);
        memcpy(&s4->sin_port, b + 24, 2);
        memcpy(&d4->sin_port, b + 26, 2);
        break;
    }
    case 0x21: { /* TCP over IPv6 */
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&p->hdr.src;
        struct sockaddr_in6 *d6 = (struct sockaddr_in6 *)&p->hdr.dst;
        if (alen < 36)
            return bad(p, "v2 header too short for its IPv6 addresses");
        s6->sin6_family = d6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, b + 16, 16);
        memcpy(&d6->sin6_addr, b + 32, 16);
        memcpy(&s6->sin6_port, b + 48, 2);
        memcpy(&d6->sin6_port, b + 50, 2);
        break;
    }
    default:
        return bad(p, "v2 header of an unsupported family or transport");
    }
    /* TLVs after the addresses are skipped */
    return p->state = PROXYPROTO_DONE;
}

enum proxyproto_state proxyproto_feed(struct proxyproto *p, const uint8_t *in, size_t len,
                                      size_t *used)
{
    size_t i = 0;

    *used = 0;
    if (p->state != PROXYPROTO_MORE)
        return p->state;

    /* the signature: held until it matches or a byte tells it apart */
    while (!p->version && i < len) {
        const uint8_t *sig = p->len == 0              ? (in[i] == sig_v1[0] ? sig_v1 : sig_v2)
                             : p->buf[0] == sig_v1[0] ? sig_v1
                                                      : sig_v2;
        size_t siglen = sig == sig_v1 ? sizeof(sig_v1) : sizeof(sig_v2);

        if (in[i] != sig[p->len]) {
            *used = i;
            return p->state = PROXYPROTO_NONE;
        }
        p->buf[p->len++] = in[i++];
        if (p->len == siglen) {
            p->version = sig == sig_v1 ? 1 : 2;
            if (!p->parse) {
                *used = i;
                return p->state = PROXYPROTO_HEADER;
            }
        }
    }

    if (p->version == 1) {
        /* up to the LF, at most PROXYPROTO_V1_MAX bytes in all */
        while (i < len) {
            uint8_t c = in[i++];
            if (p->len == PROXYPROTO_V1_MAX) {
                *used = i;
                return bad(p, "v1 header longer than 107 bytes");
            }
            p->buf[p->len++] = c;
            if (c == '\n') {
                *used = i;
                if (p->buf[p->len - 2] != '\r')
                    return bad(p, "v1 header not ended by CRLF");
                return parse_v1(p, p->len - 2);
            }
            if (c == '\r' || c == '\0') {
                /* a CR only right before the LF; no NUL at all */
                if (c == '\0' || p->crlf) {
                    *used = i;
                    return bad(p, "v1 header with a control character");
                }
                p->crlf = p->len;
            } else if (p->crlf) {
                *used = i;
                return bad(p, "v1 header with a CR inside");
            }
        }
    } else if (p->version == 2) {
        while (i < len) {
            size_t want = p->need ? p->need : 16;
            size_t take = want - p->len < len - i ? want - p->len : len - i;

            memcpy(p->buf + p->len, in + i, take);
            p->len += take;
            i += take;
            if (p->len < want)
                break;
            if (p->need) {
                *used = i;
                return parse_v2(p);
            }
            /* the head is in: version, command, length */
            if ((p->buf[12] & 0xf0) != 0x20) {
                *used = i;
                return bad(p, "v2 header of another version");
            }
            if ((p->buf[12] & 0x0f) > 1) {
                *used = i;
                return bad(p, "v2 header with an unknown command");
            }
            p->need = 16 + ((size_t)p->buf[14] << 8 | p->buf[15]);
            if (p->need > PROXYPROTO_V2_MAX) {
                *used = i;
                return bad(p, "v2 header longer than coffre takes");
            }
            if (p->need == 16) {
                *used = i;
                return parse_v2(p);
            }
        }
    }
    *used = i;
    return p->state;
}
