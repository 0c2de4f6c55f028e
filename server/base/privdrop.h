/* Dropping root: coffred after binding its ports, coffrectl before it opens
 * any file, so that everything under data_dir belongs to run_user. */
#ifndef COFFRE_PRIVDROP_H
#define COFFRE_PRIVDROP_H

#include <stddef.h>
#include <sys/types.h>

/* When running as root: look up user, chown dir (if not NULL) to it, then
 * setgroups/setgid/setuid to it, irrevocably. When not root: does nothing.
 * Returns 0, or -1 with a reason in err. */
int server_drop_privileges(const char *user, const char *dir, char *err, size_t errlen);

/* Creates dir (and missing parents) with mode 0700. Returns 0 or -1 (errno). */
int server_mkdir_p(const char *dir, mode_t mode);

#endif
