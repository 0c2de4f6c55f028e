/* Logging: one line per event on stderr (journald or the terminal picks it up).
 * Never log a password, a credential or message content. */
#ifndef COFFRE_LOG_H
#define COFFRE_LOG_H

#include <stdbool.h>
#include <stddef.h>

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

#endif
