/* Logging: one line per event on stderr (journald or the terminal picks it up).
 * Never log a password, a credential or message content. */
#ifndef COFFRE_LOG_H
#define COFFRE_LOG_H

#include <stdbool.h>

void log_set_debug(bool on);
bool log_debug_enabled(void);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
