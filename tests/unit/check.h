/* The check macro the unit tests share: prints "ok" or "FAIL" per check and
 * counts; check_summary() prints the totals and gives the exit status. */
#ifndef COFFRE_CHECK_H
#define COFFRE_CHECK_H

#include <stdio.h>

static int checks, failures;

#define CHECK(cond, what)                                                                          \
    do {                                                                                           \
        checks++;                                                                                  \
        if (cond) {                                                                                \
            printf("ok   %s\n", what);                                                             \
        } else {                                                                                   \
            printf("FAIL %s (%s:%d)\n", what, __FILE__, __LINE__);                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static inline int check_summary(void)
{
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

#endif
