/* Process-wide metrics, written in the OpenMetrics text format
 * (https://openmetrics.io, the exposition format Prometheus reads) for the
 * HTTP listener's GET /metrics and for `coffrectl stats`. */
#ifndef COFFRE_METRICS_H
#define COFFRE_METRICS_H

#include "server/base/buf.h"

/* Appends every metric family coffred keeps, then the closing "# EOF"
 * line. Loop thread. */
void metrics_render(struct buf *out);

#endif
