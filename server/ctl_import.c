/* coffrectl import: picks the importer from the source option. */
#include <stdio.h>
#include <string.h>

#include "server/ctl.h"

void ctl_import_usage(FILE *f)
{
    ctl_import_imap_usage(f);
}

int ctl_import_main(const struct conf *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--from-imap"))
            return ctl_import_imap_main(c, argc, argv);
    fprintf(stderr, "coffrectl: import needs a source (--from-imap)\nusage:\n");
    ctl_import_usage(stderr);
    return CTL_EXIT_USAGE;
}
