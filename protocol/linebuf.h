/* The line reader every protocol uses: buffers input, hands out complete
 * lines (CRLF or bare LF stripped), hands out raw bytes for literals, and
 * refuses lines longer than a limit without buffering them. */
#ifndef COFFRE_LINEBUF_H
#define COFFRE_LINEBUF_H

#include <stddef.h>

struct linebuf {
    char *p;
    size_t off, len, cap; /* unread bytes: p[off .. off+len) */
    size_t scanned;       /* bytes of the unread part known to hold no LF */
    size_t max;           /* longest line, terminator included */
    int skipping;         /* discarding the rest of an over-long line */
};

void linebuf_init(struct linebuf *lb, size_t max_line);
void linebuf_free(struct linebuf *lb);
/* Appends input. Returns 0, or -1 on allocation failure. */
int linebuf_append(struct linebuf *lb, const char *data, size_t len);

enum { LINEBUF_MORE = 0, LINEBUF_LINE = 1, LINEBUF_TOOLONG = -1 };
/* LINEBUF_LINE: line and len hold the next line without its terminator, valid
 * until the next call. LINEBUF_TOOLONG: a line exceeded the limit; its bytes
 * are dropped up to and including its LF (later calls go on after it). */
int linebuf_line(struct linebuf *lb, const char **line, size_t *len);

/* Takes up to want raw bytes (for a literal). Returns how many; *p valid
 * until the next call. */
size_t linebuf_take(struct linebuf *lb, size_t want, const char **p);

size_t linebuf_pending(const struct linebuf *lb);
/* Drops everything buffered (after STARTTLS). */
void linebuf_clear(struct linebuf *lb);

#endif
