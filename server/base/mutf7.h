/* Modified UTF-7, the encoding of IMAP4rev1 mailbox names (RFC 3501
 * 5.1.3), decoded to UTF-8: by the IMAP server for the names clients send,
 * and by coffrectl import for the names other servers wrote. */
#ifndef COFFRE_MUTF7_H
#define COFFRE_MUTF7_H

#include <stddef.h>

/* in[0..len) into out as NUL-terminated UTF-8: 0, or -1 when it is not
 * strictly valid (a byte outside printable ASCII, a printable character
 * or NUL encoded, an unterminated or empty shift, half a surrogate pair,
 * stray bits) or out is too small. */
int mutf7_decode(const char *in, size_t len, char *out, size_t outcap);

#endif
