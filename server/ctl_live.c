/* coffrectl who|kick|reload|stats: requests to the running coffred over
 * its control socket (control_socket; the protocol is described in
 * server/control.c), and the note `user disable` and `user del` send so
 * that the account's live sessions end at once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "auth/auth.h"
#include "server/base/buf.h"
#include "server/ctl.h"

void ctl_live_usage(FILE *f)
{
    fprintf(f, "  who [ADDRESS]                  (sessions of the running coffred)\n"
               "  kick ADDRESS|SESSION-ID        (end an account's sessions, or one)\n"
               "  reload                         (re-read the certificate and key, as SIGHUP)\n"
               "  stats                          (the metrics, OpenMetrics text)\n");
}

/* Sends one request line and reads the whole reply into out. Returns 0;
 * -1 when coffred is not there (no socket, nobody listening: errno says
 * which); -2 on any other failure, printed. */
static int request(const struct conf *c, const char *line, struct buf *out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(c->control_socket), max = c->control_max_reply + 1024;
    struct timeval tv = {.tv_sec = c->control_timeout_ms / 1000 + 1};
    char chunk[16384];
    int fd;

    if (!len) {
        errno = ENOENT;
        return -1;
    }
    if (len >= sizeof(sa.sun_path)) {
        fprintf(stderr, "coffrectl: control_socket is too long\n");
        return -2;
    }
    memcpy(sa.sun_path, c->control_socket, len + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "coffrectl: socket: %s\n", strerror(errno));
        return -2;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        if (e == ENOENT || e == ECONNREFUSED)
            return -1;
        fprintf(stderr, "coffrectl: cannot reach coffred on %s: %s\n", c->control_socket,
                strerror(e));
        return -2;
    }
    size_t n = strlen(line), off = 0;
    while (off < n) {
        ssize_t w = send(fd, line + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            break; /* the reply may still say why (a refusal) */
        off += (size_t)w;
    }
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == ECONNRESET && out->len)
            break; /* refused before our request was read: the reply is in */
        if (r < 0) {
            fprintf(stderr, "coffrectl: reading coffred's reply: %s\n", strerror(errno));
            close(fd);
            return -2;
        }
        if (r == 0)
            break;
        if (out->len + (size_t)r > max) {
            fprintf(stderr, "coffrectl: coffred's reply is too long\n");
            close(fd);
            return -2;
        }
        buf_add(out, chunk, (size_t)r);
    }
    close(fd);
    if (out->oom) {
        fprintf(stderr, "coffrectl: out of memory\n");
        return -2;
    }
    buf_addc(out, '\0');
    out->len--;
    return 0;
}

/* Runs a request; on OK, *body points after the status line. Returns an
 * exit code, the failure printed. */
static int ask(const struct conf *c, const char *line, struct buf *out, const char **body)
{
    int r = request(c, line, out);

    if (r == -1) {
        fprintf(stderr, "coffrectl: coffred is not running (no control socket at %s)\n",
                c->control_socket[0] ? c->control_socket : "(control_socket is empty)");
        return CTL_EXIT_SYSTEM;
    }
    if (r < 0)
        return CTL_EXIT_SYSTEM;
    if (out->len >= 3 && !memcmp(out->p, "OK", 2) && (out->p[2] == '\n' || out->p[2] == ' ')) {
        const char *nl = memchr(out->p, '\n', out->len);
        *body = nl ? nl + 1 : out->p + out->len;
        return CTL_EXIT_OK;
    }
    if (out->len >= 4 && !memcmp(out->p, "ERR ", 4)) {
        fprintf(stderr, "coffrectl: coffred: %.*s\n", (int)strcspn(out->p + 4, "\n"), out->p + 4);
        return CTL_EXIT_SYSTEM;
    }
    fprintf(stderr, "coffrectl: no valid reply from coffred\n");
    return CTL_EXIT_SYSTEM;
}

static int normalize(const struct conf *c, const char *in, char *out, size_t outlen)
{
    if (auth_normalize_address(in, strlen(in), c->default_domain, out, outlen) != AUTH_OK) {
        fprintf(stderr, "coffrectl: not a valid address: %s\n", in);
        return CTL_EXIT_BADADDR;
    }
    return CTL_EXIT_OK;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

int ctl_live_main(const struct conf *c, int argc, char **argv)
{
    char addr[AUTH_ADDR_MAX], line[AUTH_ADDR_MAX + 64];
    const char *cmd = argv[0], *body = NULL;
    struct buf out = {0};
    int rc;

    if (!strcmp(cmd, "who") && argc <= 2) {
        if (argc == 2 && (rc = normalize(c, argv[1], addr, sizeof(addr))) != CTL_EXIT_OK)
            return rc;
        snprintf(line, sizeof(line), "WHO%s%s\n", argc == 2 ? " " : "", argc == 2 ? addr : "");
        rc = ask(c, line, &out, &body);
        if (rc == CTL_EXIT_OK)
            printf("ID\tUSER\tPROTO\tADDRESS\tTLS\tMAILBOX\tSTATE\tIDLE\tLOGIN\n%s", body);
    } else if (!strcmp(cmd, "kick") && argc == 2) {
        if (all_digits(argv[1])) {
            snprintf(line, sizeof(line), "KICK ID %s\n", argv[1]);
        } else {
            if ((rc = normalize(c, argv[1], addr, sizeof(addr))) != CTL_EXIT_OK)
                return rc;
            snprintf(line, sizeof(line), "KICK USER %s\n", addr);
        }
        rc = ask(c, line, &out, &body);
        if (rc == CTL_EXIT_OK) {
            unsigned long n = strtoul(out.p + 2, NULL, 10);
            printf("ended %lu session%s\n", n, n == 1 ? "" : "s");
            if (n == 0)
                rc = CTL_EXIT_NOUSER; /* nothing matched */
        }
    } else if (!strcmp(cmd, "reload") && argc == 1) {
        rc = ask(c, "RELOAD\n", &out, &body);
        if (rc == CTL_EXIT_OK)
            printf("reloaded\n");
    } else if (!strcmp(cmd, "stats") && argc == 1) {
        rc = ask(c, "STATS\n", &out, &body);
        if (rc == CTL_EXIT_OK)
            fputs(body, stdout);
    } else {
        fprintf(stderr, "coffrectl: usage: who [ADDRESS] | kick ADDRESS|SESSION-ID | reload | "
                        "stats\n");
        return CTL_EXIT_USAGE;
    }
    buf_free(&out);
    return rc;
}

void ctl_live_user_gone(const struct conf *c, const char *address, const char *why)
{
    char line[AUTH_ADDR_MAX + 64];
    struct buf out = {0};

    snprintf(line, sizeof(line), "KICK USER %s%s%s\n", address, why ? " " : "", why ? why : "");
    int r = request(c, line, &out);
    if (r == -1) {
        buf_free(&out);
        return; /* coffred is not running: no session to end */
    }
    if (r == 0 && out.len >= 3 && !memcmp(out.p, "OK ", 3)) {
        unsigned long n = strtoul(out.p + 3, NULL, 10);
        if (n)
            printf("ended %lu live session%s\n", n, n == 1 ? "" : "s");
    } else {
        fprintf(stderr,
                "coffrectl: warning: could not ask coffred to end the live sessions of %s%s%.*s\n",
                address, r == 0 ? ": " : "", r == 0 ? (int)strcspn(out.p ? out.p : "", "\n") : 0,
                out.p ? out.p : "");
    }
    buf_free(&out);
}

void ctl_live_acl_changed(const struct conf *c)
{
    struct buf out = {0};
    int r = request(c, "ACL\n", &out);

    if (r != -1 && !(r == 0 && out.len >= 2 && !memcmp(out.p, "OK", 2)))
        fprintf(stderr,
                "coffrectl: warning: could not ask coffred to read the access control lists "
                "again%s%.*s; they apply at its next start\n",
                r == 0 ? ": " : "", r == 0 ? (int)strcspn(out.p ? out.p : "", "\n") : 0,
                out.p ? out.p : "");
    buf_free(&out);
}

int ctl_live_release(const struct conf *c, int64_t id, const char *address)
{
    char line[AUTH_ADDR_MAX + 64];
    struct buf out = {0};
    int r;

    snprintf(line, sizeof(line), "RELEASE %lld %s\n", (long long)id, address);
    r = request(c, line, &out);
    if (r == -1) {
        buf_free(&out);
        return 1; /* coffred is not running: it holds nothing */
    }
    if (r == 0 && out.len >= 2 && !memcmp(out.p, "OK", 2)) {
        buf_free(&out);
        return 0;
    }
    if (r == 0)
        fprintf(stderr, "coffrectl: coffred did not release %s: %.*s\n", address,
                (int)strcspn(out.p ? out.p : "", "\n"), out.p ? out.p : "");
    buf_free(&out);
    return -1;
}
