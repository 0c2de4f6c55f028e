/* The one growable byte buffer, for any thread (each buffer has one user at
 * a time), and what is written into one often enough to belong with it:
 * decimal numbers and IMAP strings (the protocol's responses and the
 * ENVELOPE/BODYSTRUCTURE strings that storage caches). */
#ifndef COFFRE_BUF_H
#define COFFRE_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Zero-initialized is empty. Appends after an allocation failure are no-ops
 * and leave oom set, so callers check once at the end. p is NUL-terminated
 * whenever it is not NULL (the NUL is not counted in len). */
struct buf {
    char *p;
    size_t len, cap;
    bool oom;
};

/* Room for more bytes after len; false (and oom) on failure. */
bool buf_reserve(struct buf *b, size_t more);
void buf_add(struct buf *b, const void *p, size_t len);
void buf_addc(struct buf *b, char c);
void buf_str(struct buf *b, const char *s);
void buf_addu(struct buf *b, uint64_t v);
/* Appends a copy of b's own bytes [off, off+len). */
void buf_addself(struct buf *b, size_t off, size_t len);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* The contents, NUL-terminated, caller frees ("" when empty); b is left
 * empty. NULL (and b freed) when an append failed. */
char *buf_take(struct buf *b);
/* Empties b, keeping its memory. */
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

/* An IMAP string (RFC 3501 4.3): a quoted string, or a literal when the
 * bytes hold CR, LF or 8-bit characters. IMAP strings cannot carry NUL:
 * each is sent as a space. */
void buf_imap_string(struct buf *b, const char *p, size_t len);
/* nstring: NIL when p is NULL. */
void buf_imap_nstring(struct buf *b, const char *p, size_t len);

#endif
