/* MIME parsing for the storage module: RFC 5322 / 2045-2049 messages in,
 * IMAP ENVELOPE / BODY / BODYSTRUCTURE strings (RFC 3501 7.4.2), decoded
 * header values and body text for SEARCH and the full-text index out.
 * Malformed input degrades (RFC 3501: treat as text/plain), never fails. */
#ifndef COFFRE_MIME_H
#define COFFRE_MIME_H

#include <stddef.h>
#include <stdint.h>

/* Limits: each bounds the work one hostile message can cause. */
#define MIME_MAX_DEPTH 100          /* multipart / message/rfc822 nesting */
#define MIME_MAX_PARTS 10000        /* MIME parts per message, all levels */
#define MIME_MAX_TEXT (1024 * 1024) /* bytes of decoded text for indexing */
#define MIME_MAX_BOUNDARY 200       /* longer boundary parameter: treated as missing */

struct mime_summary {    /* all strings malloc'd NUL-terminated, freed by mime_summary_free */
    char *envelope;      /* IMAP ENVELOPE, RFC 3501 syntax, ready to send after "ENVELOPE " */
    char *bodystructure; /* IMAP BODYSTRUCTURE (extensible form) */
    char *body;          /* IMAP BODY (non-extensible form) */
    char *subject, *from, *to, *cc, *bcc, *message_id, *in_reply_to, *references;
    /* decoded UTF-8 (RFC 2047 decoded, unfolded), for SEARCH and
     * sorting; NULL when absent (message ids: unfolded, not decoded) */
    int64_t date;  /* Date: header as unix time, 0 if missing/invalid */
    char *text;    /* decoded text of text/ parts, UTF-8, HTML tags stripped roughly;
                    * NULL if none; at most MIME_MAX_TEXT bytes */
    char *preview; /* the preview of the first text part (mime_preview), "" when
                    * none has text */
    char *header;  /* the top-level header block as stored (BODY[HEADER]), for the
                    * index; NULL when longer than MIME_MAX_INDEXED_HEADER */
    size_t header_len;
};

/* Longest header block kept in the index (FETCH of header fields is then
 * answered without opening the message file). */
#define MIME_MAX_INDEXED_HEADER (64u * 1024)

/* Length of the valid UTF-8 character at p[0..len), its code point in
 * *cp; 0 when the bytes there are not one (overlong, surrogate, cut). */
size_t mime_utf8_char(const unsigned char *p, size_t len, uint32_t *cp);
/* cp as UTF-8 into out (room for 4 bytes); the bytes written. */
size_t mime_utf8_put(uint32_t cp, unsigned char *out);

/* The i;unicode-casemap form (RFC 5051, mime_casemap.c): SEARCH matches and
 * SORT orders these forms as octets. The most bytes one character maps to. */
#define MIME_CASEMAP_MAX 128
struct buf;
/* The form of the character at p[0..len) into out (MIME_CASEMAP_MAX bytes,
 * *outlen of them written); the bytes read (1 for an invalid byte, which
 * maps to U+FFFD). */
size_t mime_casemap_char(const unsigned char *p, size_t len, unsigned char *out, size_t *outlen);
/* s[0..len) in its form appended to b; a copy, NULL when out of memory. */
void mime_casemap(struct buf *b, const char *s, size_t len);
char *mime_casemap_dup(const char *s, size_t len);

/* The preview of a text (RFC 8970: at most 256 characters), appended to
 * out: white space collapsed. s is UTF-8, HTML already stripped. Pure. */
#define MIME_PREVIEW_CHARS 256
void mime_preview(const char *s, size_t len, struct buf *out);

/* 0, or -1 only on allocation failure (out is then zeroed). */
int mime_parse(const char *msg, size_t len, struct mime_summary *out);
void mime_summary_free(struct mime_summary *s);

/* Locate a FETCH BODY[section]: "" (whole message), "HEADER", "TEXT", "1", "1.2",
 * "1.2.HEADER", "1.2.TEXT", "1.MIME". Section names are case-insensitive.
 * For "HEADER" / "n.HEADER" the range includes the blank line ending the header.
 * "n.HEADER"/"n.TEXT" exist only when part n is message/rfc822.
 * "HEADER.FIELDS ..." is for the caller: ask for "HEADER" (or "n.HEADER") and
 * filter with mime_header_fields(). Returns 0 with *off,*seclen, or -1 when the
 * section does not exist. */
int mime_find_section(const char *msg, size_t len, const char *section, size_t *off,
                      size_t *seclen);

/* Locate a FETCH BINARY[part]: "" (the whole message, as it is), "1",
 * "1.2", ...: the body of that part and, in *cte, the STORAGE_CTE_* its
 * Content-Transfer-Encoding names. Returns 0, or -1 when the part does not
 * exist. */
int mime_find_binary(const char *msg, size_t len, const char *part, size_t *off, size_t *seclen,
                     int *cte);

/* BODY[HEADER.FIELDS (A B)] and .NOT: copies the matching (negate = 0) or the
 * non-matching (negate = 1) header fields of hdr[0..len), with their folded
 * continuation lines as-is, followed by a blank line "\r\n" when hdr ends
 * with one (RFC 3501 6.4.5: not for a message with no body and no blank
 * line), into *out
 * (malloc'd, caller frees; NUL-terminated, *outlen excludes the NUL).
 * Field names are compared case-insensitively. 0, or -1 on allocation failure. */
int mime_header_fields(const char *hdr, size_t len, const char *const *names, size_t n, int negate,
                       char **out, size_t *outlen);
/* The same appended to b (b->oom set on allocation failure). */
struct buf;
/* Reads the nstring of a cached ENVELOPE (or any IMAP response text) at
 * p[*pos..len), after optional spaces: 1 with its bytes in b (a quoted
 * string unescaped, a literal as is), 0 for NIL, -1 when malformed; *pos
 * is moved past it. b is reset first. */
int mime_envelope_nstring(const char *p, size_t len, size_t *pos, struct buf *b);
void mime_header_fields_buf(const char *hdr, size_t len, const char *const *names, size_t n,
                            int negate, struct buf *b);

/* Decode a header value (unfold, RFC 2047 encoded words) to UTF-8.
 * Invalid bytes become U+FFFD. Caller frees; NULL only on allocation failure. */
char *mime_decode_header_value(const char *v, size_t len);

/* Parse an RFC 5322 date-time (obsolete forms accepted) to unix time;
 * 0 when unparseable. */
int64_t mime_parse_date(const char *v, size_t len);
/* The same date-time as written, its zone disregarded (unix time of that
 * wall-clock time in UTC: its day is the day written); 0 when unparseable. */
int64_t mime_parse_date_written(const char *v, size_t len);

/* ---- sort and threading keys (mime_sort.c) ---- */

/* The base subject of a decoded subject (RFC 5256 2.1), casemapped
 * (i;ascii-casemap: ASCII letters upper-cased); *refwd is 1 when the
 * subject had a reply/forward mark (a subj-refwd, a "(fwd)" trailer or a
 * "[fwd: ...]" wrapper). Caller frees; NULL on allocation failure. */
char *mime_base_subject(const char *subj, size_t len, int *refwd);

/* The keys SORT and THREAD compare, each casemapped, "" when absent. */
struct mime_sort_keys {
    char *subject; /* base subject */
    int refwd;
    char *addr[3];    /* From, To, Cc: mailbox (local) part of the first address */
    char *display[3]; /* the same: its decoded display name, else the addr-spec */
};
/* From a decoded subject and an ENVELOPE string as mime_parse makes them
 * (either may be NULL). 0, or -1 on allocation failure (out zeroed). */
int mime_sort_keys(const char *envelope, const char *subject, struct mime_sort_keys *out);
void mime_sort_keys_free(struct mime_sort_keys *k);

/* The first field called name in the header block hdr[0..len), unfolded
 * (not decoded); caller frees; NULL when absent or on allocation failure. */
char *mime_header_value_unfolded(const char *hdr, size_t len, const char *name);

#endif
