/* The line reader every protocol uses: buffers input, hands out complete
 * lines (CRLF or bare LF stripped), hands out raw bytes for literals, and
 * refuses lines longer than a limit without buffering them: as soon as a
 * line passes the limit (so that the client is answered at once, not at
 * the end of a line that may never end), then again when what it dropped
 * of the line passes a second, larger limit (the caller hangs up). */
#ifndef COFFRE_LINEBUF_H
#define COFFRE_LINEBUF_H

#include <stddef.h>
#include <stdint.h>

struct linebuf {
    char *p;
    size_t off, len, cap; /* unread bytes: p[off .. off+len) */
    size_t scanned;       /* bytes of the unread part known to hold no LF */
    size_t max;           /* longest line, terminator included */
    uint64_t skip_max;    /* longest over-long line dropped, 0 = any */
    uint64_t skipped;     /* bytes of the over-long line dropped so far */
    int skipping;         /* discarding the rest of an over-long line */
    int endless;          /* LINEBUF_ENDLESS said for this line */
};

/* skip_max starts at 0 (an over-long line is dropped whatever its length). */
void linebuf_init(struct linebuf *lb, size_t max_line);
/* Sets the limits for the lines from here on (they may change with the
 * session's state: shorter before login). */
void linebuf_limits(struct linebuf *lb, size_t max_line, uint64_t skip_max);
void linebuf_free(struct linebuf *lb);
/* Appends input. Returns 0, or -1 on allocation failure. */
int linebuf_append(struct linebuf *lb, const char *data, size_t len);

enum { LINEBUF_MORE = 0, LINEBUF_LINE = 1, LINEBUF_TOOLONG = -1, LINEBUF_ENDLESS = -2 };
/* LINEBUF_LINE: line and len hold the next line without its terminator, valid
 * until the next call. LINEBUF_TOOLONG: a line exceeded the limit, returned
 * as soon as that is known, before its end is seen; its bytes are dropped
 * up to and including its LF (later calls go on after it; lb->skipping
 * says whether its end is still to come). LINEBUF_ENDLESS: an over-long
 * line grew past skip_max (once per line; later calls keep dropping it). */
int linebuf_line(struct linebuf *lb, const char **line, size_t *len);

/* Takes up to want raw bytes (for a literal). Returns how many; *p valid
 * until the next call. */
size_t linebuf_take(struct linebuf *lb, size_t want, const char **p);

size_t linebuf_pending(const struct linebuf *lb);
/* The linebuf_pending() bytes not yet taken. */
const char *linebuf_data(const struct linebuf *lb);
/* Drops everything buffered (after STARTTLS). */
void linebuf_clear(struct linebuf *lb);

#endif
