/* Internals shared by the MIME parser files (mime.c, mime_util.c,
 * mime_envelope.c): header field iteration and decoders. They write into
 * the one byte buffer (server/base/buf.h). Not for use outside
 * storage/mime*.c. */
#ifndef COFFRE_MIME_PRIVATE_H
#define COFFRE_MIME_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "server/base/buf.h"

/* One header field: name[0..namelen), raw value (after the colon, folding
 * kept), and the whole field including its line end(s). */
struct mime_field {
    const char *name;
    size_t namelen;
    const char *value;
    size_t valuelen;
    const char *raw;
    size_t rawlen;
};

/* Iterate the fields of hdr[*pos..len): 1 with *f filled, 0 at the end of
 * the header (blank line or end of input). Lines without a colon are
 * returned with namelen = the line, valuelen = 0 and value = NULL. */
int mime_next_field(const char *hdr, size_t len, size_t *pos, struct mime_field *f);

/* Header block length starting at msg[0..len), including the blank line
 * that ends it (if any); the body starts there. */
size_t mime_header_len(const char *msg, size_t len);
/* Appends the contents of the quoted string at p[i] (its opening quote)
 * to b, unescaped and without CR and LF; the index after its closing quote. */
size_t mime_read_quoted(struct buf *b, const char *p, size_t len, size_t i);
/* Skips white space and (nested) comments from p[i]; the index after. */
size_t mime_skip_cfws(const char *p, size_t len, size_t i);

/* Trims white space (CR and LF included) from both ends of v[0..len). */
void mime_trim(const char **v, size_t *len);
/* Unfold (drop CR and LF) and trim surrounding whitespace into b. */
void mime_unfold(struct buf *b, const char *v, size_t len);

/* Convert bytes in charset to UTF-8, appending to b. Unknown charsets and
 * invalid sequences produce U+FFFD for bytes that are not valid UTF-8. */
void mime_to_utf8(struct buf *b, const char *charset, size_t cslen, const char *p, size_t len);
/* Append p as UTF-8, replacing invalid sequences with U+FFFD. */
void mime_utf8_sanitize(struct buf *b, const char *p, size_t len);

/* Quoted-printable (and, with header_q, RFC 2047's Q) decoding, appending
 * to b. Never fails on bad input. Base64 is base64_decode_lenient
 * (server/base/base64.h). */
void mime_qp_decode(struct buf *b, const char *p, size_t len, int header_q);

/* RFC 2047 decoding of an unfolded-or-not header value into b. */
void mime_decode_2047(struct buf *b, const char *v, size_t len);

/* The parameters of a structured field value v[0..len) (what follows
 * "type/subtype" in a Content-Type: "; name=value ..."), RFC 2231
 * continuations joined, appended to b as an IMAP body-fld-param (NIL or a
 * list); the number of parameters, at most 100. *storelen is the bytes the
 * parser kept for names and values (at most twice len, plus one per
 * parameter). The decoder mime_parse uses for every part, alone: for the
 * fuzz target tests/fuzz/fuzz_mime_2231.c. */
size_t mime_param_list(struct buf *b, const char *v, size_t len, size_t *storelen);

int mime_strncaseeq(const char *a, size_t alen, const char *b);

/* ENVELOPE from a header block hdr[0..len), appended to b. */
void mime_envelope(struct buf *b, const char *hdr, size_t len);

#endif
