/* Benchmark client for scripts/bench/lmtp: plain-TCP LMTP load generator,
 * so that coffred and Dovecot get the same load from a client that costs
 * little CPU.
 *
 *   lmtp_client PORT CONNS SPOOL
 *
 * SPOOL holds the transactions, each as a line "ADDRESS LENGTH\n" followed
 * by LENGTH bytes of message already in wire form (CRLF, dot-stuffed,
 * ending with ".\r\n"). Transaction i goes over connection i % CONNS. Each
 * connection (one thread, blocking I/O on 127.0.0.1): greeting, LHLO, then
 * per message MAIL, RCPT and DATA pipelined in one write, the three
 * replies, the body, its reply; QUIT at the end. Any reply other than the
 * expected 250/354 counts as an error.
 * Prints "delivered D errors E seconds T cpu U" (U: this process's CPU
 * seconds, user + system). Not a test. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct txn {
    char addr[256];
    const char *data;
    size_t len;
};

struct worker {
    pthread_t th;
    int idx;
    unsigned long delivered, errors;
    char rbuf[8192];
    size_t rlen, roff;
};

static int port, conns;
static struct txn *txns;
static size_t ntxns;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads one reply (all lines of a multi-line one); returns its code or -1. */
static int read_reply(struct worker *w, int fd)
{
    char line[1024];
    size_t ll = 0;

    for (;;) {
        if (w->roff == w->rlen) {
            ssize_t k = recv(fd, w->rbuf, sizeof(w->rbuf), 0);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                return -1;
            w->rlen = (size_t)k;
            w->roff = 0;
        }
        char c = w->rbuf[w->roff++];
        if (ll < sizeof(line) - 1)
            line[ll++] = c;
        if (c != '\n')
            continue;
        line[ll] = '\0';
        if (ll < 4)
            return -1;
        if (line[3] == '-') {
            ll = 0;
            continue;
        }
        return atoi(line);
    }
}

static void *run(void *arg)
{
    struct worker *w = arg;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char cmd[1024];
    int fd, one = 1;

    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        w->errors++;
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (read_reply(w, fd) != 220 || send_all(fd, "LHLO bench.example\r\n", 20) < 0 ||
        read_reply(w, fd) != 250) {
        w->errors++;
        close(fd);
        return NULL;
    }
    for (size_t i = (size_t)w->idx; i < ntxns; i += (size_t)conns) {
        const struct txn *t = &txns[i];
        int n = snprintf(cmd, sizeof(cmd),
                         "MAIL FROM:<sender@remote.example>\r\nRCPT TO:<%s>\r\nDATA\r\n", t->addr);
        if (n < 0 || (size_t)n >= sizeof(cmd) || send_all(fd, cmd, (size_t)n) < 0)
            goto broken;
        int a = read_reply(w, fd), b = read_reply(w, fd), c = read_reply(w, fd);
        if (a < 0 || b < 0 || c < 0)
            goto broken;
        if (a != 250 || b != 250 || c != 354) {
            w->errors++;
            if (c == 354 && send_all(fd, ".\r\n", 3) < 0)
                goto broken;
            if (c == 354 && read_reply(w, fd) < 0)
                goto broken;
            if (send_all(fd, "RSET\r\n", 6) < 0 || read_reply(w, fd) < 0)
                goto broken;
            continue;
        }
        if (send_all(fd, t->data, t->len) < 0)
            goto broken;
        int d = read_reply(w, fd);
        if (d < 0)
            goto broken;
        if (d == 250)
            w->delivered++;
        else
            w->errors++;
    }
    if (send_all(fd, "QUIT\r\n", 6) == 0)
        read_reply(w, fd);
    close(fd);
    return NULL;
broken:
    w->errors++;
    close(fd);
    return NULL;
}

static int load_spool(const char *path)
{
    struct stat sb;
    const char *p, *end;
    size_t cap = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &sb) < 0 || sb.st_size == 0)
        return -1;
    p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return -1;
    end = p + sb.st_size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *sp = nl ? memchr(p, ' ', (size_t)(nl - p)) : NULL;
        struct txn *t;
        char *e;
        if (!sp || (size_t)(sp - p) >= sizeof(t->addr))
            return -1;
        if (ntxns == cap) {
            cap = cap ? 2 * cap : 1024;
            t = realloc(txns, cap * sizeof(*txns));
            if (!t)
                return -1;
            txns = t;
        }
        t = &txns[ntxns++];
        memcpy(t->addr, p, (size_t)(sp - p));
        t->addr[sp - p] = '\0';
        t->len = strtoul(sp + 1, &e, 10);
        if (e != nl || t->len > (size_t)(end - nl - 1))
            return -1;
        t->data = nl + 1;
        p = nl + 1 + t->len;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct worker *w;
    struct rusage ru;
    unsigned long delivered = 0, errors = 0;
    double t0, dt;

    if (argc != 4) {
        fprintf(stderr, "usage: lmtp_client PORT CONNS SPOOL\n");
        return 2;
    }
    port = atoi(argv[1]);
    conns = atoi(argv[2]);
    if (port <= 0 || port > 65535 || conns <= 0 || conns > 1024 || load_spool(argv[3]) < 0) {
        fprintf(stderr, "lmtp_client: bad arguments or spool\n");
        return 2;
    }
    w = calloc((size_t)conns, sizeof(*w));
    if (!w)
        return 1;
    t0 = now();
    for (int i = 0; i < conns; i++) {
        w[i].idx = i;
        if (pthread_create(&w[i].th, NULL, run, &w[i]) != 0) {
            fprintf(stderr, "lmtp_client: pthread_create failed\n");
            return 1;
        }
    }
    for (int i = 0; i < conns; i++) {
        pthread_join(w[i].th, NULL);
        delivered += w[i].delivered;
        errors += w[i].errors;
    }
    dt = now() - t0;
    getrusage(RUSAGE_SELF, &ru);
    printf("delivered %lu errors %lu seconds %.3f cpu %.3f\n", delivered, errors, dt,
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    free(w);
    return errors ? 1 : 0;
}
