/* Logging to stderr with a timestamp and a level; one write per line so
 * lines from the loop and the thread pool never interleave. */
#include "server/base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static bool debug_on;

void log_set_debug(bool on)
{
    debug_on = on;
}

bool log_debug_enabled(void)
{
    return debug_on;
}

static void emit(const char *level, const char *fmt, va_list ap)
{
    char buf[2048];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int r;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(buf + n, sizeof(buf) - n, ".%03dZ %s: ", (int)(tv.tv_usec / 1000), level);
    if (r > 0)
        n += (size_t)r;
    r = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
    if (r > 0)
        n += (size_t)r;
    if (n > sizeof(buf) - 2)
        n = sizeof(buf) - 2;
    /* control characters from remote input never reach the terminal raw */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            buf[i] = '?';
    buf[n++] = '\n';
    if (write(STDERR_FILENO, buf, n) < 0) {
        /* nowhere left to report it */
    }
}

#define LOG_FN(name, level, cond)                                                                  \
    void name(const char *fmt, ...)                                                                \
    {                                                                                              \
        va_list ap;                                                                                \
        if (!(cond))                                                                               \
            return;                                                                                \
        va_start(ap, fmt);                                                                         \
        emit(level, fmt, ap);                                                                      \
        va_end(ap);                                                                                \
    }

LOG_FN(log_error, "error", 1)
LOG_FN(log_warn, "warning", 1)
LOG_FN(log_info, "info", 1)
LOG_FN(log_debug, "debug", debug_on)

const char *log_quote(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    bool plain = *s != '\0';
    size_t o = 0;

    if (cap < 8) {
        if (cap)
            out[0] = '\0';
        return out;
    }
    for (const char *p = s; *p && plain; p++) {
        unsigned char c = (unsigned char)*p;
        plain = c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=';
    }
    if (plain && strlen(s) < cap) {
        memcpy(out, s, strlen(s) + 1);
        return out;
    }
    out[o++] = '"';
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (o + 4 + 5 > cap) { /* room for this byte, '..."' and the NUL */
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c > 0x7e) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}
