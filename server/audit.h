/* The audit log: a file of audit lines, each ending with its sequence
 * number and a SHA-256 chained to the line before it, so that a removed,
 * reordered or altered line is found by `coffrectl log verify`. coffred
 * (through the log writer thread) and coffrectl append to the same file;
 * each append holds an flock on it around reading the last line's hash
 * and writing, so the two never fork the chain. */
#ifndef COFFRE_AUDIT_H
#define COFFRE_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define AUDIT_HASH_HEX 64
/* The longest line accepted when reading the log back. */
#define AUDIT_LINE_MAX 16384

struct audit_log;

/* Opens (creating, mode 0640) the audit log at path for appending. The
 * chain's head is read from the file's tail at the first append. anchor_ms:
 * how often the head is written to the normal log (0 = only at open and
 * close). Returns 0, or -1 with the reason in err. */
int audit_open(const char *path, unsigned anchor_ms, struct audit_log **out, char *err,
               size_t errlen);
/* Appends one line (without newline; text "... key=value" or a JSON
 * object) with its seq and chain fields. Blocks on the file's lock and the
 * disk: call it off the loop (the log writer thread, coffrectl). */
void audit_append(struct audit_log *a, const char *line, size_t len);
/* Opens the file again by its path (after logrotate moved it): a new file
 * starts with an audit.continue line naming the previous file's head. */
void audit_reopen(struct audit_log *a);
void audit_close(struct audit_log *a);

/* Checks the chain of the files given, in order (a rotated log's files
 * oldest first). anchor (may be NULL): "SEQ:HASH" of a head kept
 * elsewhere, which the files must contain. Writes "OK ..." or the first
 * bad line and why to out. Returns 0 when it holds, 1 when not, -1 when a
 * file cannot be read. */
int audit_verify(const char *const *paths, size_t n, const char *anchor, FILE *out);

/* The hash of a line: hex SHA-256 of prev (64 hex digits) followed by the
 * line's payload (everything before its chain field). */
void audit_hash(const char prev[AUDIT_HASH_HEX + 1], const char *payload, size_t len,
                char out[AUDIT_HASH_HEX + 1]);

struct conf;
/* From the configuration: the log's format and target (log_configure),
 * then the audit log when audit_log is set, opened now (before a
 * privilege drop) and made the log's audit sink, audit lines then going
 * there only; anchors: whether its head goes to the normal log every
 * audit_anchor_interval (coffred; not coffrectl). *out gets it (NULL when none). Returns 0, or -1
 * with the reason in err. */
int audit_setup(const struct conf *c, const char *ident, bool anchors, struct audit_log **out,
                char *err, size_t errlen);
/* Flushes the log writer, then closes the audit log. */
void audit_teardown(struct audit_log *a);

#endif
