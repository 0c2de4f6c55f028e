/* The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): the
 * header a proxy sends before its client's bytes to say whom it relays. A
 * reader takes the first bytes of a connection in whatever pieces they come,
 * looks at each byte once, copies it at most once, and never takes more
 * than the header from its input. It knows nothing of sockets or of whom
 * to believe: server/conn.c decides that (proxy_networks). */
#ifndef COFFRE_PROXYPROTO_H
#define COFFRE_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A version 1 header is one line of at most 107 bytes, CRLF included (the
 * specification's bound). A version 2 header is its 16-byte head and the
 * length that head announces (addresses and TLVs); coffre takes at most
 * this much in all, which leaves room for the TLVs proxies send in
 * practice (unique ids, ALPN, SNI, TLS details). */
#define PROXYPROTO_V1_MAX 107
#define PROXYPROTO_V2_MAX 1024

enum proxyproto_state {
    PROXYPROTO_MORE,   /* nothing decided yet: feed more bytes */
    PROXYPROTO_NONE,   /* not a header: buf[0..len) and the input from *used on
                        * are the client's own bytes, in that order */
    PROXYPROTO_HEADER, /* sniffing: the bytes start with a signature */
    PROXYPROTO_DONE,   /* parsing: a valid header, in hdr; *used of the input was it */
    PROXYPROTO_BAD,    /* parsing: a malformed header; why says what */
};

struct proxyproto_hdr {
    int version; /* 1 or 2 */
    /* No address to take (v2 LOCAL or family UNSPEC, v1 UNKNOWN): the
     * connection's own endpoints stand. */
    bool local;
    struct sockaddr_storage src, dst; /* AF_INET or AF_INET6, when !local */
};

struct proxyproto {
    bool parse;  /* false: only tell whether a header starts here */
    int version; /* 0 until the signature decides */
    size_t len;  /* bytes held in buf */
    size_t need; /* v2: the whole header's length once its head is in */
    size_t crlf; /* v1: where the scan for the line's end stopped */
    enum proxyproto_state state;
    const char *why; /* PROXYPROTO_BAD: static text */
    struct proxyproto_hdr hdr;
    uint8_t buf[PROXYPROTO_V2_MAX];
};

/* Starts a reader; parse false: sniff only (PROXYPROTO_HEADER as soon as a
 * signature is seen, never parsed). */
void proxyproto_init(struct proxyproto *p, bool parse);

/* Feeds in[0..len). *used: how many of these bytes the reader took (the
 * rest follow the header, or are the client's after NONE). Once the state
 * is other than MORE, further calls return it again and take nothing. */
enum proxyproto_state proxyproto_feed(struct proxyproto *p, const uint8_t *in, size_t len,
                                      size_t *used);

#endif
