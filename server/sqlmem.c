/* SQLite's memory apart from coffred's own.
 *
 * An account's open store holds SQLite connections (schema, statements,
 * pages read), tens of kB each, for as long as its sessions work; its
 * upkeep closes them once they all wait (mail_idle_close). Between those
 * allocations the same pool threads make small ones that live as long as
 * the account or the session (its store, its mailbox state). In one heap,
 * each of those keeps the page it sits on, so the memory of thousands of
 * connections closed long ago stays resident: measured with 10,000 IDLE
 * sessions over 5,000 accounts, the pool threads' heaps held 130 MB for
 * 12 MB in use. With jemalloc, SQLite allocates from an arena nothing else
 * uses (and without thread caches, since a connection moves between pool
 * threads), which jemalloc gives back to the system as it empties. */
#include <stddef.h>
#include <sqlite3.h>

#include "server/sqlmem.h"

#ifdef HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>

#define STR_(x) #x
#define STR(x) STR_(x)
#define ARENAS_ALL STR(MALLCTL_ARENAS_ALL)

static int flags;

static void *sq_malloc(int n)
{
    return n > 0 ? mallocx((size_t)n, flags) : NULL;
}

static void sq_free(void *p)
{
    if (p)
        dallocx(p, flags);
}

static void *sq_realloc(void *p, int n)
{
    if (!p)
        return sq_malloc(n);
    return n > 0 ? rallocx(p, (size_t)n, flags) : NULL;
}

static int sq_size(void *p)
{
    return p ? (int)sallocx(p, flags) : 0;
}

static int sq_roundup(int n)
{
    return n > 0 ? (int)nallocx((size_t)n, flags) : n;
}

static int sq_init(void *unused)
{
    return SQLITE_OK;
}

static void sq_shutdown(void *unused)
{
}

const char *sqlmem_configure(void)
{
    static const sqlite3_mem_methods methods = {
        sq_malloc, sq_free, sq_realloc, sq_size, sq_roundup, sq_init, sq_shutdown, NULL,
    };
    unsigned arena;
    size_t len = sizeof(arena);

    if (mallctl("arenas.create", &arena, &len, NULL, 0) != 0)
        return "the system allocator (no jemalloc arena could be made)";
    flags = (int)(MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE);
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &methods) != SQLITE_OK)
        return "the system allocator (SQLite refused the arena)";
    return "a jemalloc arena of its own";
}

static void purge_all(void)
{
    /* every arena, SQLite's and the threads' */
    mallctl("arena." ARENAS_ALL ".purge", NULL, NULL, NULL, 0);
}

sqlmem_trim_fn *sqlmem_trim(void)
{
    return purge_all;
}

#else

const char *sqlmem_configure(void)
{
    return "the process's allocator (built without jemalloc)";
}

sqlmem_trim_fn *sqlmem_trim(void)
{
    return NULL;
}

#endif
