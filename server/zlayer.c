/* COMPRESS=DEFLATE streams: see zlayer.h. */
#include "server/zlayer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* The compressor: an 8 KiB window (windowBits 13) and memLevel 5 hold
 * about 54 KiB while a burst of output is compressed, instead of the
 * ~270 KiB of zlib's defaults; IMAP responses repeat within a few KiB. */
#define ZOUT_WBITS 13
#define ZOUT_MEMLEVEL 5
#define ZOUT_LEVEL 6
#define ZOUT_CHUNK 16384

struct zlayer {
    z_stream in, out;
    bool in_on, out_on;
    bool unflushed;
    size_t bytes, peak;
    char *dict; /* a parked decompressor's window: what the client sent last */
    size_t dict_len;
};

/* zlib's allocations, counted: a size header before each block */
struct zhdr {
    size_t n;
    max_align_t align[];
};

static void *z_alloc(void *opaque, unsigned items, unsigned size)
{
    struct zlayer *z = opaque;
    size_t n = (size_t)items * size;
    struct zhdr *h = malloc(sizeof(*h) + n);
    if (!h)
        return NULL;
    h->n = n;
    z->bytes += n;
    if (z->bytes > z->peak)
        z->peak = z->bytes;
    return h->align;
}

static void z_free(void *opaque, void *p)
{
    struct zlayer *z = opaque;
    if (!p)
        return;
    struct zhdr *h = (struct zhdr *)((char *)p - offsetof(struct zhdr, align));
    z->bytes -= h->n;
    free(h);
}

struct zlayer *zlayer_new(void)
{
    return calloc(1, sizeof(struct zlayer));
}

static void drop_dict(struct zlayer *z)
{
    z->bytes -= z->dict_len;
    free(z->dict);
    z->dict = NULL;
    z->dict_len = 0;
}

/* (Re)starts the decompressor, with the window a parked one left. */
static int in_start(struct zlayer *z)
{
    memset(&z->in, 0, sizeof(z->in));
    z->in.zalloc = z_alloc;
    z->in.zfree = z_free;
    z->in.opaque = z;
    if (inflateInit2(&z->in, -15) != Z_OK)
        return -1;
    if (z->dict_len &&
        inflateSetDictionary(&z->in, (const Bytef *)z->dict, (uInt)z->dict_len) != Z_OK) {
        inflateEnd(&z->in);
        return -1;
    }
    drop_dict(z);
    z->in_on = true;
    return 0;
}

void zlayer_park_input(struct zlayer *z)
{
    uInt n = 0;

    /* data_type: bits left in the last byte (0..7), 64 in the last block,
     * 128 waiting for a block header, 256 inside a literal or match. Only
     * byte-aligned between blocks (where a client's sync flush leaves it)
     * is a new decompressor with the same window the same stream. */
    if (!z->in_on || z->in.avail_in || z->in.data_type != 128)
        return;
    if (inflateGetDictionary(&z->in, NULL, &n) != Z_OK)
        return;
    char *d = n ? malloc(n) : NULL;
    if (n && !d)
        return;
    if (n && inflateGetDictionary(&z->in, (Bytef *)d, &n) != Z_OK) {
        free(d);
        return;
    }
    inflateEnd(&z->in);
    z->in_on = false;
    z->dict = d;
    z->dict_len = n;
    z->bytes += n;
    if (z->bytes > z->peak)
        z->peak = z->bytes;
}

void zlayer_free(struct zlayer *z)
{
    if (!z)
        return;
    if (z->in_on)
        inflateEnd(&z->in);
    drop_dict(z);
    zlayer_release_output(z);
    free(z);
}

size_t zlayer_bytes(const struct zlayer *z)
{
    return z ? z->bytes : 0;
}

size_t zlayer_peak(const struct zlayer *z)
{
    return z ? z->peak : 0;
}

bool zlayer_unflushed(const struct zlayer *z)
{
    return z->out_on && z->unflushed;
}

void zlayer_release_output(struct zlayer *z)
{
    if (!z->out_on)
        return;
    deflateEnd(&z->out);
    z->out_on = false;
    z->unflushed = false;
}

int zlayer_deflate(struct zlayer *z, const void *buf, size_t len, bool sync, zlayer_out_fn out,
                   void *arg)
{
    if (!z->out_on) {
        if (len == 0)
            return 0; /* nothing sent since the last flush */
        memset(&z->out, 0, sizeof(z->out));
        z->out.zalloc = z_alloc;
        z->out.zfree = z_free;
        z->out.opaque = z;
        if (deflateInit2(&z->out, ZOUT_LEVEL, Z_DEFLATED, -ZOUT_WBITS, ZOUT_MEMLEVEL,
                         Z_DEFAULT_STRATEGY) != Z_OK)
            return -1;
        z->out_on = true;
    }
    if (len == 0 && !(sync && z->unflushed))
        return 0;
    z->out.next_in = (Bytef *)(uintptr_t)buf;
    z->out.avail_in = (uInt)len;
    for (;;) {
        char *chunk = malloc(ZOUT_CHUNK);
        if (!chunk)
            return -1;
        z->out.next_out = (Bytef *)chunk;
        z->out.avail_out = ZOUT_CHUNK;
        int r = deflate(&z->out, sync ? Z_SYNC_FLUSH : Z_NO_FLUSH);
        size_t n = ZOUT_CHUNK - z->out.avail_out;
        if (r != Z_OK && r != Z_BUF_ERROR) {
            free(chunk);
            return -1;
        }
        if (n)
            out(arg, chunk, n);
        else
            free(chunk);
        /* done once the input is taken and, for a flush, zlib had room
         * left (a full buffer may hide more) */
        if (z->out.avail_in == 0 && (!sync || n < ZOUT_CHUNK))
            break;
    }
    z->unflushed = !sync && (len > 0 || z->unflushed);
    return 0;
}

long zlayer_inflate(struct zlayer *z, const char **in, size_t *inlen, char *out, size_t cap,
                    bool *more)
{
    if (!z->in_on && in_start(z) < 0)
        return -1;
    z->in.next_in = (Bytef *)(uintptr_t)*in;
    z->in.avail_in = (uInt)*inlen;
    z->in.next_out = (Bytef *)out;
    z->in.avail_out = (uInt)cap;
    int r = inflate(&z->in, Z_SYNC_FLUSH);
    size_t used = *inlen - z->in.avail_in;
    *in += used;
    *inlen -= used;
    size_t n = cap - z->in.avail_out;
    *more = z->in.avail_out == 0;
    if (r == Z_OK || (r == Z_BUF_ERROR && (n || used || *inlen == 0)))
        return (long)n;
    return -1; /* Z_STREAM_END, Z_DATA_ERROR, Z_MEM_ERROR, Z_NEED_DICT */
}
