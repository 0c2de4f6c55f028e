/* Base64 (RFC 4648 section 4) in the forms coffre meets it: strict for SASL
 * exchanges, lenient for MIME bodies and encoded words, and the alphabet
 * with ',' for '/' that IMAP's modified UTF-7 uses (RFC 3501 5.1.3); and
 * the hex digits of quoted-printable and of escaped file names. */
#ifndef COFFRE_BASE64_H
#define COFFRE_BASE64_H

#include <stddef.h>

struct buf;

/* The character that stands for 63: '/' in base64, ',' in modified UTF-7. */
#define BASE64_STD_63 '/'
#define BASE64_IMAP_63 ','

/* The value (0..63) of one character of the alphabet whose 63 is c63, or -1. */
int base64_value(unsigned char c, char c63);
/* The character of value v (0..63). */
char base64_char(unsigned v, char c63);

/* Strict decoding: padding required, no white space, nothing outside the
 * alphabet, no non-zero pad bits. Returns the decoded length, or -1 (bad
 * input or outcap too small). */
long base64_decode_strict(const char *in, size_t len, unsigned char *out, size_t outcap);
/* Lenient decoding as mail needs it: characters outside the alphabet are
 * skipped, decoding stops at the first '='. Appends to b. */
void base64_decode_lenient(struct buf *b, const char *in, size_t len);
/* Padded encoding; NUL-terminated when there is room. Returns the encoded
 * length, or -1 when outcap is too small. */
long base64_encode(const unsigned char *in, size_t len, char *out, size_t outcap);

/* The value (0..15) of a hex digit in either case, or -1. */
int hex_value(unsigned char c);

#endif
