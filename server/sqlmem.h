#ifndef COFFRE_SQLMEM_H
#define COFFRE_SQLMEM_H

/* SQLite's memory in an arena of its own (jemalloc), apart from sessions
 * and accounts. Call before SQLite initializes. Returns what it set, for
 * the log. */
const char *sqlmem_configure(void);

/* What gives the allocator's free pages back to the system (run on the
 * pool): with jemalloc, a purge of every arena; NULL when glibc's
 * malloc_trim serves. */
typedef void sqlmem_trim_fn(void);
sqlmem_trim_fn *sqlmem_trim(void);

#endif
