/* Unit tests of the PROXY protocol reader (server/base/proxyproto.c):
 * version 1 lines (TCP4, TCP6, UNKNOWN), version 2 headers (PROXY, LOCAL,
 * TLVs), input split anywhere, truncated, oversized and malformed headers,
 * and what is not a header at all. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "server/base/proxyproto.h"

#include "tests/unit/check.h"

/* Feeds s[0..n) in pieces of step bytes; *used_total: bytes taken. */
static enum proxyproto_state feed(struct proxyproto *p, const void *s, size_t n, size_t step,
                                  size_t *used_total)
{
    const uint8_t *b = s;
    size_t off = 0, used;
    enum proxyproto_state st = PROXYPROTO_MORE;

    *used_total = 0;
    while (off < n) {
        size_t k = n - off < step ? n - off : step;
        st = proxyproto_feed(p, b + off, k, &used);
        *used_total += used;
        off += k;
        if (st != PROXYPROTO_MORE)
            break;
    }
    return st;
}

static enum proxyproto_state parse(struct proxyproto *p, const void *s, size_t n,
                                   size_t *used_total)
{
    enum proxyproto_state first = PROXYPROTO_MORE;
    size_t first_used = 0;

    /* every split gives the same answer */
    for (size_t step = 1; step <= n + 1; step++) {
        size_t u;
        proxyproto_init(p, true);
        enum proxyproto_state st = feed(p, s, n, step, &u);
        if (step == 1) {
            first = st;
            first_used = u;
        } else if (st != first || (st != PROXYPROTO_NONE && u != first_used)) {
            CHECK(0, "the same answer whatever the pieces");
            break;
        }
    }
    proxyproto_init(p, true);
    return feed(p, s, n, n ? n : 1, used_total);
}

static bool is4(const struct sockaddr_storage *ss, const char *ip, unsigned port)
{
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    struct in_addr want;
    inet_pton(AF_INET, ip, &want);
    return a->sin_family == AF_INET && a->sin_addr.s_addr == want.s_addr &&
           ntohs(a->sin_port) == port;
}

static bool is6(const struct sockaddr_storage *ss, const char *ip, unsigned port)
{
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    struct in6_addr want;
    inet_pton(AF_INET6, ip, &want);
    return a->sin6_family == AF_INET6 && !memcmp(&a->sin6_addr, &want, 16) &&
           ntohs(a->sin6_port) == port;
}

static struct proxyproto p;

static void test_v1(void)
{
    size_t used;
    const char *h = "PROXY TCP4 192.0.2.10 198.51.100.1 56324 143\r\na1 CAPABILITY\r\n";
    size_t hl = strlen("PROXY TCP4 192.0.2.10 198.51.100.1 56324 143\r\n");

    CHECK(parse(&p, h, strlen(h), &used) == PROXYPROTO_DONE && used == hl, "v1 TCP4");
    CHECK(p.hdr.version == 1 && !p.hdr.local && is4(&p.hdr.src, "192.0.2.10", 56324) &&
              is4(&p.hdr.dst, "198.51.100.1", 143),
          "v1 TCP4 addresses and ports");

    h = "PROXY TCP6 2001:db8::7 2001:db8::1 65535 993\r\n";
    CHECK(parse(&p, h, strlen(h), &used) == PROXYPROTO_DONE && used == strlen(h), "v1 TCP6");
    CHECK(is6(&p.hdr.src, "2001:db8::7", 65535) && is6(&p.hdr.dst, "2001:db8::1", 993),
          "v1 TCP6 addresses and ports");

    h = "PROXY UNKNOWN\r\n";
    CHECK(parse(&p, h, strlen(h), &used) == PROXYPROTO_DONE && p.hdr.local, "v1 UNKNOWN");
    h = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
    CHECK(parse(&p, h, strlen(h), &used) == PROXYPROTO_DONE && p.hdr.local && used == strlen(h),
          "v1 UNKNOWN with addresses, ignored");

    /* the longest line allowed: 107 bytes */
    h = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "65535 65535\r\n";
    CHECK(strlen(h) == 104 && parse(&p, h, strlen(h), &used) == PROXYPROTO_DONE,
          "v1 longest TCP6 line");
    char big[200];
    memset(big, 'x', sizeof(big));
    memcpy(big, "PROXY UNKNOWN ", 14);
    memcpy(big + 105, "\r\n", 2); /* 107 bytes */
    CHECK(parse(&p, big, 107, &used) == PROXYPROTO_DONE, "v1 line of 107 bytes");
    memcpy(big + 105, "xx\r\n", 4); /* 109 bytes */
    CHECK(parse(&p, big, 109, &used) == PROXYPROTO_BAD && used <= 108, "v1 line over 107 bytes");
    CHECK(parse(&p, big, 150, &used) == PROXYPROTO_BAD, "v1 line without an end");

    static const char *const bads[] = {
        "PROXY TCP4 192.0.2.10 198.51.100.1 56324\r\n",
        "PROXY TCP4 192.0.2.10 198.51.100.1 56324 143 7\r\n",
        "PROXY TCP4 192.0.2.10 198.51.100.1 65536 143\r\n",
        "PROXY TCP4 192.0.2.10 198.51.100.1 -1 143\r\n",
        "PROXY TCP4 192.0.2.10 198.51.100.1 0143 143\r\n",
        "PROXY TCP4 192.0.2.10 198.51.100.1 1a 143\r\n",
        "PROXY TCP4 192.0.2.10  198.51.100.1 1 143\r\n",
        "PROXY TCP4 192.0.2.256 198.51.100.1 1 143\r\n",
        "PROXY TCP4 2001:db8::7 198.51.100.1 1 143\r\n",
        "PROXY TCP6 192.0.2.10 2001:db8::1 1 143\r\n",
        "PROXY TCP6 2001:db8::7::1 2001:db8::1 1 143\r\n",
        "PROXY TCP5 192.0.2.10 198.51.100.1 1 143\r\n",
        "PROXY tcp4 192.0.2.10 198.51.100.1 1 143\r\n",
        "PROXY TCP4 192.0.2.10 198.51.100.1 1 143 \r\n",
        "PROXY TCP4 192.0.2.10 198.51.100.1 1 143\n",
        "PROXY TCP4 192.0.2.10 198.51.100.1 1 1\r43\r\n",
        "PROXY \r\n",
        "PROXY UNKNOWNX\r\n",
    };
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        enum proxyproto_state st = parse(&p, bads[i], strlen(bads[i]), &used);
        if (st != PROXYPROTO_BAD)
            printf("accepted: %s", bads[i]);
        CHECK(st == PROXYPROTO_BAD && p.why);
    }
    CHECK(parse(&p, "PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33, &used) == PROXYPROTO_BAD,
          "v1 with a NUL");

    /* truncated: waits for more */
    h = "PROXY TCP4 192.0.2.10 198.51.1";
    CHECK(parse(&p, h, strlen(h), &used) == PROXYPROTO_MORE && used == strlen(h),
          "v1 truncated: more wanted");
}

static size_t v2(uint8_t *b, uint8_t vercmd, uint8_t fam, const uint8_t *addr, size_t alen,
                 size_t tlv)
{
    static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
    memcpy(b, sig, 12);
    b[12] = vercmd;
    b[13] = fam;
    b[14] = (uint8_t)((alen + tlv) >> 8);
    b[15] = (uint8_t)(alen + tlv);
    memcpy(b + 16, addr, alen);
    for (size_t i = 0; i < tlv; i++)
        b[16 + alen + i] = (uint8_t)(i * 7);
    return 16 + alen + tlv;
}

static void test_v2(void)
{
    uint8_t b[2048];
    size_t used, n;
    const uint8_t a4[12] = {192, 0, 2, 10, 198, 51, 100, 1, 0xdc, 0x04, 0, 143};
    uint8_t a6[36] = {0};

    n = v2(b, 0x21, 0x11, a4, 12, 0);
    memcpy(b + n, "\x16\x03\x01", 3); /* a ClientHello follows */
    CHECK(parse(&p, b, n + 3, &used) == PROXYPROTO_DONE && used == n, "v2 PROXY TCP4");
    CHECK(p.hdr.version == 2 && !p.hdr.local && is4(&p.hdr.src, "192.0.2.10", 56324) &&
              is4(&p.hdr.dst, "198.51.100.1", 143),
          "v2 TCP4 addresses and ports");

    inet_pton(AF_INET6, "2001:db8::7", a6);
    inet_pton(AF_INET6, "2001:db8::1", a6 + 16);
    a6[32] = 0x01, a6[33] = 0x02, a6[34] = 0x03, a6[35] = 0xe1;
    n = v2(b, 0x21, 0x21, a6, 36, 0);
    CHECK(parse(&p, b, n, &used) == PROXYPROTO_DONE && used == n &&
              is6(&p.hdr.src, "2001:db8::7", 258) && is6(&p.hdr.dst, "2001:db8::1", 993),
          "v2 PROXY TCP6");

    n = v2(b, 0x21, 0x11, a4, 12, 300);
    CHECK(parse(&p, b, n, &used) == PROXYPROTO_DONE && used == n &&
              is4(&p.hdr.src, "192.0.2.10", 56324),
          "v2 with TLVs skipped");

    n = v2(b, 0x20, 0x00, a4, 0, 0);
    CHECK(parse(&p, b, n, &used) == PROXYPROTO_DONE && used == 16 && p.hdr.local, "v2 LOCAL");
    n = v2(b, 0x20, 0x11, a4, 12, 5);
    CHECK(parse(&p, b, n, &used) == PROXYPROTO_DONE && used == n && p.hdr.local,
          "v2 LOCAL with addresses: skipped, not taken");
    n = v2(b, 0x21, 0x00, a4, 0, 0);
    CHECK(parse(&p, b, n, &used) == PROXYPROTO_DONE && p.hdr.local, "v2 PROXY UNSPEC");

    n = v2(b, 0x21, 0x11, a4, 11, 0);
    CHECK(parse(&p, b, n, &used) == PROXYPROTO_BAD, "v2 TCP4 too short");
    n = v2(b, 0x21, 0x21, a6, 35, 0);
    CHECK(parse(&p, b, n, &used) == PROXYPROTO_BAD, "v2 TCP6 too short");
    n = v2(b, 0x11, 0x11, a4, 12, 0);
    CHECK(parse(&p, b, n, &used) == PROXYPROTO_BAD, "v2 signature, version 1 byte");
    n = v2(b, 0x22, 0x11, a4, 12, 0);
    CHECK(parse(&p, b, n, &used) == PROXYPROTO_BAD, "v2 unknown command");
    n = v2(b, 0x21, 0x12, a4, 12, 0);
    CHECK(parse(&p, b, n, &used) == PROXYPROTO_BAD, "v2 UDP refused");
    n = v2(b, 0x21, 0x31, a6, 36, 200);
    CHECK(parse(&p, b, n, &used) == PROXYPROTO_BAD, "v2 unix socket refused");
    n = v2(b, 0x21, 0x41, a4, 12, 0);
    CHECK(parse(&p, b, n, &used) == PROXYPROTO_BAD, "v2 unknown family refused");

    n = v2(b, 0x21, 0x11, a4, 12, PROXYPROTO_V2_MAX - 28);
    CHECK(n == PROXYPROTO_V2_MAX && parse(&p, b, n, &used) == PROXYPROTO_DONE,
          "v2 of the largest length taken");
    n = v2(b, 0x21, 0x11, a4, 12, PROXYPROTO_V2_MAX - 27);
    CHECK(parse(&p, b, 16, &used) == PROXYPROTO_BAD && used == 16,
          "v2 over the largest length refused from its head alone");
    b[14] = 0xff, b[15] = 0xff;
    CHECK(parse(&p, b, 16, &used) == PROXYPROTO_BAD, "v2 of 64 KiB refused");

    n = v2(b, 0x21, 0x11, a4, 12, 0);
    CHECK(parse(&p, b, n - 1, &used) == PROXYPROTO_MORE, "v2 truncated: more wanted");
    CHECK(parse(&p, b, 11, &used) == PROXYPROTO_MORE, "v2 signature begun: more wanted");
}

static void test_not_a_header(void)
{
    size_t used;
    const char *s = "a1 LOGIN x y\r\n";

    CHECK(parse(&p, s, strlen(s), &used) == PROXYPROTO_NONE && p.len == 0 && used == 0,
          "an IMAP command is not a header");
    s = "PROXZ\r\n";
    CHECK(parse(&p, s, strlen(s), &used) == PROXYPROTO_NONE && p.len == 4 && used == 4 &&
              !memcmp(p.buf, "PROX", 4),
          "a near miss: the bytes held are given back");
    s = "PROXY";
    CHECK(parse(&p, s, strlen(s), &used) == PROXYPROTO_MORE, "PROXY without its space: undecided");
    s = "PROXYTCP4";
    CHECK(parse(&p, s, strlen(s), &used) == PROXYPROTO_NONE, "PROXY without a space: not one");
    s = "\r\n\r\n\0\r\nQUIX";
    CHECK(parse(&p, s, 11, &used) == PROXYPROTO_NONE && p.len == 10, "a near v2 signature");
    CHECK(parse(&p, "\x16\x03\x01\x02", 4, &used) == PROXYPROTO_NONE, "a ClientHello");
    CHECK(parse(&p, "", 0, &used) == PROXYPROTO_MORE, "nothing yet");

    /* sniffing decides on the signature and parses nothing */
    proxyproto_init(&p, false);
    s = "PROXY garbage";
    CHECK(proxyproto_feed(&p, (const uint8_t *)s, strlen(s), &used) == PROXYPROTO_HEADER &&
              used == 6,
          "sniffing: v1 signature");
    proxyproto_init(&p, false);
    CHECK(proxyproto_feed(&p, (const uint8_t *)"\r\n\r\n\0\r\nQUIT\nzz", 14, &used) ==
                  PROXYPROTO_HEADER &&
              used == 12,
          "sniffing: v2 signature");
    proxyproto_init(&p, false);
    CHECK(proxyproto_feed(&p, (const uint8_t *)"USER a\r\n", 8, &used) == PROXYPROTO_NONE,
          "sniffing: a POP3 command");
    CHECK(proxyproto_feed(&p, (const uint8_t *)"PROXY ", 6, &used) == PROXYPROTO_NONE && used == 0,
          "decided once: later bytes are not looked at");
}

int main(void)
{
    test_v1();
    test_v2();
    test_not_a_header();
    return check_summary();
}
