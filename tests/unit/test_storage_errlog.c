/* Unit test of how the storage layer logs temporary index failures: when
 * the process runs out of descriptors, every account's next index open
 * fails at once, over and over; the log gets at most one line a second,
 * the next one saying how many were left out. */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "server/base/log.h"
#include "storage/internal.h"
#include "tests/unit/check.h"

/* The lines of path that contain what. */
static int count_lines(const char *path, const char *what, char *last, size_t lastlen)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int n = 0;

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, what)) {
            n++;
            snprintf(last, lastlen, "%s", line);
        }
    fclose(f);
    return n;
}

int main(void)
{
    char dir[512], logpath[600], dbpath[600], err[256], last[1024] = "";
    sqlite3 *db = NULL;
    int rc;

    if (check_mkdtemp(dir, sizeof(dir), "coffre-errlog") < 0)
        return 1;
    snprintf(logpath, sizeof(logpath), "%s/log", dir);
    snprintf(dbpath, sizeof(dbpath), "%s/no/such/index.sqlite", dir);
    if (log_configure(LOG_FORMAT_TEXT, logpath, "test", 1 << 20, err, sizeof(err)) < 0) {
        fprintf(stderr, "log_configure: %s\n", err);
        return 1;
    }
    /* an index that cannot be opened: SQLITE_CANTOPEN, as with EMFILE */
    rc = sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL);
    CHECK((rc & 0xff) == SQLITE_CANTOPEN, "opening a missing index fails with SQLITE_CANTOPEN");

    int temp = 0;
    for (int i = 0; i < 1000; i++)
        temp += err_from_sqlite(db, rc) == STORAGE_E_TEMP;
    CHECK(temp == 1000, "every one is a temporary failure");
    log_flush();
    CHECK(count_lines(logpath, "storage: index:", last, sizeof(last)) == 1,
          "1,000 failures in a row: one log line");

    /* past the interval, the next failure is logged with the count */
    if (log_configure(LOG_FORMAT_TEXT, logpath, "test", 1 << 20, err, sizeof(err)) < 0)
        return 1;
    sleep(2);
    err_from_sqlite(db, rc);
    log_flush();
    CHECK(count_lines(logpath, "storage: index:", last, sizeof(last)) == 2,
          "a second later: a second line");
    CHECK(strstr(last, "unable to open database file (999 more temporary index failures") != NULL,
          "which says how many were left out");

    sqlite3_close(db);
    check_rmtree(dir);
    return check_summary();
}
