/* COMPRESS=DEFLATE (RFC 4978) for a connection: raw deflate streams in
 * both directions, sized for IMAP, with zlib's allocations counted. The
 * connection layer (server/conn.c) puts it between TLS and the protocol. */
#ifndef COFFRE_ZLAYER_H
#define COFFRE_ZLAYER_H

#include <stdbool.h>
#include <stddef.h>

struct zlayer;

/* The decompressor accepts any window the client uses (RFC 4978 names no
 * size, so up to 32 KiB); the compressor uses a smaller one and exists
 * only while output is being sent. NULL when out of memory. */
struct zlayer *zlayer_new(void);
void zlayer_free(struct zlayer *z);

/* Bytes zlib holds for this stream pair now, and the most it ever held. */
size_t zlayer_bytes(const struct zlayer *z);
size_t zlayer_peak(const struct zlayer *z);

/* Compresses len bytes (sync: then a sync flush, so the peer can decode
 * everything so far). out receives malloc'd chunks it owns. Returns 0, or
 * -1 (out of memory, zlib error). */
typedef void (*zlayer_out_fn)(void *arg, char *data, size_t len);
int zlayer_deflate(struct zlayer *z, const void *buf, size_t len, bool sync, zlayer_out_fn out,
                   void *arg);
/* True when bytes were compressed since the last sync flush. */
bool zlayer_unflushed(const struct zlayer *z);
/* Frees the compressor (only after a sync flush: the next output starts a
 * new raw deflate stream on the byte boundary the flush left, which the
 * peer's decompressor reads as more blocks of the same stream; a new
 * compressor never refers to what came before it). */
void zlayer_release_output(struct zlayer *z);

/* While the client is silent: when the decompressor stands between two
 * blocks on a byte boundary (as a client's sync flush leaves it), keeps
 * only the window it has filled (at most 32 KiB, often a few hundred
 * bytes) and frees the rest; the next input starts a new decompressor
 * with that window as its dictionary, which raw inflate allows. */
void zlayer_park_input(struct zlayer *z);

/* Decompresses from *in (*inlen bytes) into out (up to cap bytes): advances *in and
 * *inlen, returns the bytes produced, or -1 for a corrupt stream or the end
 * of the stream (a client may not end it). *more: the decompressor may have
 * more output without more input. */
long zlayer_inflate(struct zlayer *z, const char **in, size_t *inlen, char *out, size_t cap,
                    bool *more);

#endif
