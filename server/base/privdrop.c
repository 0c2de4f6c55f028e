/* Privilege drop and data directory creation. */
#include "server/base/privdrop.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int server_mkdir_p(const char *dir, mode_t mode)
{
    char buf[4096];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, dir, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

int server_drop_privileges(const char *user, const char *dir, char *err, size_t errlen)
{
    struct passwd *pw;

    if (geteuid() != 0)
        return 0;
    pw = getpwnam(user);
    if (!pw) {
        snprintf(err, errlen, "run_user '%s' does not exist", user);
        return -1;
    }
    if (pw->pw_uid == 0) {
        snprintf(err, errlen, "run_user must not be root");
        return -1;
    }
    if (dir && chown(dir, pw->pw_uid, pw->pw_gid) < 0) {
        snprintf(err, errlen, "chown %s: %s", dir, strerror(errno));
        return -1;
    }
    if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        snprintf(err, errlen, "cannot become %s: %s", user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) {
        snprintf(err, errlen, "privilege drop did not stick");
        return -1;
    }
    return 0;
}
