/* Logging: one line per event, as text or JSON (log_format), to stderr, to
 * syslog or to a file (log_target). Audit lines (log_rec_*) carry
 * structured fields and may also go to an audit sink (the hash-chained
 * audit log, server/audit.c). Never log a password, a credential or
 * message content. */
#ifndef COFFRE_LOG_H
#define COFFRE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void log_set_debug(bool on);
bool log_debug_enabled(void);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A value a client chose (a user name, an address) as one field of a log
 * line, so that it cannot pass for other fields: as it is when it is plain
 * printable ASCII without space, '"', '\\' or '=', otherwise in double
 * quotes with '"' and '\\' escaped and every byte outside 0x20..0x7e as
 * \xHH. Written into out (LOG_QUOTE_MAX is room for any user name), cut
 * with "..." when it does not fit; returns out. */
#define LOG_QUOTE_MAX 1100
const char *log_quote(char *out, size_t cap, const char *s);

/* s as the inside of a JSON string (no quotes around it): '"', '\\' and
 * control characters escaped, valid UTF-8 kept, each byte of invalid
 * UTF-8 as U+FFFD. Cut (at a character boundary) when it does not fit;
 * returns the bytes written, out NUL-terminated (cap > 0). */
size_t log_json_escape(char *out, size_t cap, const char *s, size_t len);

/* ---- where lines go ---- */

enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

/* Sets the format and the target: "stderr", "syslog" (libc syslog(),
 * facility mail, ident), or an absolute file path (opened for append,
 * created 0640). Lines for syslog and a file are handed to a writer
 * thread through a queue of at most queue_max bytes (past it, lines are
 * dropped and counted, and the count is logged once the writer catches
 * up), so that a slow disk or a full syslog socket never stalls the
 * caller; lines for stderr are written at once, one write each. Returns
 * 0, or -1 with the reason in err. */
int log_configure(enum log_format format, const char *target, const char *ident, size_t queue_max,
                  char *err, size_t errlen);
enum log_format log_get_format(void);
/* Reopens a file target (and asks the audit sink to reopen its file):
 * after logrotate moved it, from SIGHUP. Done by the writer thread. */
void log_reopen(void);
/* Writes what is queued and stops the writer thread. */
void log_flush(void);

/* ---- audit lines ---- */

/* Where audit lines go besides the normal log: append runs on the writer
 * thread, one line at a time in the order they were made (line without
 * its newline, in the configured format). reopen runs there too. */
struct log_audit_sink {
    void *ctx;
    void (*append)(void *ctx, const char *line, size_t len);
    void (*reopen)(void *ctx);
};
/* Registers the sink (NULL: none). The writer thread starts with it. */
void log_set_audit_sink(const struct log_audit_sink *sink);
/* Whether audit lines go only to the sink (audit_log set) rather than
 * also to the normal log. */
void log_set_audit_only_sink(bool only);

/* An audit line under construction: the fields are kept in both formats
 * at once. Values are copied; a field that does not fit is cut. */
#define LOG_REC_MAX 4096
struct log_rec {
    char text[LOG_REC_MAX];
    char json[LOG_REC_MAX];
    size_t tlen, jlen;
};
void log_rec_begin(struct log_rec *r, const char *event);
/* A string field (NULL: left out; "" written as ""). */
void log_rec_str(struct log_rec *r, const char *key, const char *val);
void log_rec_strn(struct log_rec *r, const char *key, const char *val, size_t len);
void log_rec_num(struct log_rec *r, const char *key, uint64_t val);
/* A duration in milliseconds with three decimals. */
void log_rec_ms(struct log_rec *r, const char *key, uint64_t ns);
/* The line: to the normal log (level "audit") and to the sink. */
void log_rec_emit(struct log_rec *r);
/* The line as it would be written (time first), for the sink-only path of
 * a program without a writer thread (coffrectl). Returns its length. */
size_t log_rec_format(const struct log_rec *r, enum log_format f, char *out, size_t cap);

#endif
