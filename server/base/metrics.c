/* The OpenMetrics writer. */
#include "server/base/metrics.h"

#include <stdio.h>
#include <unistd.h>

/* Resident and virtual size from /proc/self/statm (a kernel table, not a
 * disk read). 0 when it cannot be read. */
static void process_memory(uint64_t *rss, uint64_t *vsz)
{
    unsigned long long pages_vsz = 0, pages_rss = 0;
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "re");

    *rss = *vsz = 0;
    if (!f)
        return;
    if (fscanf(f, "%llu %llu", &pages_vsz, &pages_rss) == 2 && page > 0) {
        *rss = (uint64_t)pages_rss * (uint64_t)page;
        *vsz = (uint64_t)pages_vsz * (uint64_t)page;
    }
    fclose(f);
}

void metrics_render(struct buf *out)
{
    uint64_t rss, vsz;

    process_memory(&rss, &vsz);
    buf_str(out, "# TYPE process_resident_memory_bytes gauge\n"
                 "# UNIT process_resident_memory_bytes bytes\n"
                 "# HELP process_resident_memory_bytes Resident memory size.\n"
                 "process_resident_memory_bytes ");
    buf_addu(out, rss);
    buf_str(out, "\n# TYPE process_virtual_memory_bytes gauge\n"
                 "# UNIT process_virtual_memory_bytes bytes\n"
                 "# HELP process_virtual_memory_bytes Virtual memory size.\n"
                 "process_virtual_memory_bytes ");
    buf_addu(out, vsz);
    buf_str(out, "\n# EOF\n");
}
