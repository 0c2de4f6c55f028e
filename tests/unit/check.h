/* The check macro the unit tests share, and their scratch directory.
 *
 * CHECK(cond, what) prints "ok" or "FAIL" with what for each check;
 * CHECK(cond) names the check by its expression and prints only when it
 * fails (for files with hundreds of checks). Both count; check_summary()
 * prints the totals and gives the exit status. */
#ifndef COFFRE_CHECK_H
#define COFFRE_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int checks, failures;

#define CHECK_NAMED(cond, what)                                                                    \
    do {                                                                                           \
        checks++;                                                                                  \
        if (cond) {                                                                                \
            printf("ok   %s\n", what);                                                             \
        } else {                                                                                   \
            printf("FAIL %s (%s:%d)\n", what, __FILE__, __LINE__);                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define CHECK_EXPR(cond)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* CHECK with one argument is CHECK_EXPR, with two CHECK_NAMED. */
#define CHECK_PICK(a1, a2, name, ...) name
#define CHECK(...) CHECK_PICK(__VA_ARGS__, CHECK_NAMED, CHECK_EXPR, unused)(__VA_ARGS__)

static inline int check_summary(void)
{
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

/* Creates the directory $TMPDIR/<name>-XXXXXX (/tmp without TMPDIR) and
 * puts its path in dir; -1 (said on stderr) when it cannot. */
static inline int check_mkdtemp(char *dir, size_t len, const char *name)
{
    const char *base = getenv("TMPDIR");

    snprintf(dir, len, "%s/%s-XXXXXX", base && *base ? base : "/tmp", name);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

/* Removes dir with all it holds when every check passed; after a failure
 * it is left for a look, and said so. */
static inline void check_rmtree(const char *dir)
{
    char cmd[4200];

    if (failures) {
        fprintf(stderr, "%d failure(s); data left in %s\n", failures, dir);
        return;
    }
    if ((size_t)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir) >= sizeof(cmd) || system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

#endif
