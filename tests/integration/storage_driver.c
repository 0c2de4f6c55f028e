/* Test driver for tests/integration/storage_crash.py: "write" mode appends
 * and delivers a stream of generated messages (with flag stores and flag
 * syncs in between) and prints "ACK <user> <mailbox> <uid> <sha256>" only
 * after the storage API returned success; the script SIGKILLs it at a random
 * moment. Some appends are groups saved together (storage_save_many, as
 * MULTIAPPEND does). "verify" mode opens the stores (recovery runs), checks that index
 * and Maildir agree, that every message is one of the generated messages,
 * whole, and prints "MSG <user> <mailbox> <uid> <sha256>" for each. */
#include <gnutls/crypto.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/storage.h"

#define USERS 2

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Message (seed, serial), CRLF line ends; caller frees. */
static char *gen_message(uint64_t seed, uint64_t serial, size_t *len)
{
    uint64_t saved = rng_state;
    size_t target, cap, n = 0;
    char *p;
    int k;

    rng_state = (seed * 1000003u + serial) * 2654435761u + 1;
    for (int i = 0; i < 4; i++)
        rnd();
    target = rnd() % 16 == 0 ? 100000 + rnd() % 200000 : 200 + rnd() % 20000;
    cap = target + 1024;
    p = malloc(cap);
    if (!p)
        abort();
    k = snprintf(p, cap,
                 "From: Driver <driver@example.org>\r\n"
                 "To: user@example.org\r\n"
                 "Subject: crash test %" PRIu64 "-%" PRIu64 "\r\n"
                 "X-Serial: %" PRIu64 "-%" PRIu64 "\r\n"
                 "X-Length: %zu\r\n"
                 "\r\n",
                 seed, serial, seed, serial, target);
    n = (size_t)k;
    while (n < target) {
        size_t line = 10 + rnd() % 70;
        for (size_t i = 0; i < line && n < target; i++)
            p[n++] = (char)('a' + rnd() % 26);
        p[n++] = '\r';
        p[n++] = '\n';
    }
    k = snprintf(p + n, cap - n, "END %" PRIu64 "-%" PRIu64 "\r\n", seed, serial);
    n += (size_t)k;
    *len = n;
    rng_state = saved;
    return p;
}

static void sha256_hex(const void *p, size_t len, char out[65])
{
    unsigned char d[32];
    gnutls_hash_fast(GNUTLS_DIG_SHA256, p, len, d);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int write_draft(struct storage_user *u, const char *msg, size_t len, bool lf_only, bool sync,
                       struct storage_draft **out)
{
    struct storage_draft *d;
    int rc = storage_draft_new(u, 0, &d);
    size_t i = 0;

    if (rc)
        return rc;
    while (i < len && rc == 0) {
        size_t chunk = 1 + rnd() % 8192, o = 0;
        char buf[8192];
        if (chunk > len - i)
            chunk = len - i;
        for (size_t j = 0; j < chunk; j++)
            if (!(lf_only && msg[i + j] == '\r'))
                buf[o++] = msg[i + j];
        rc = storage_draft_write(d, buf, o);
        i += chunk;
    }
    if (rc == 0)
        rc = sync ? storage_draft_finish(d) : storage_draft_end(d);
    if (rc) {
        storage_draft_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

static int run_write(const char *dir, uint64_t seed)
{
    struct storage_user *u[USERS];
    int64_t inbox[USERS], arch[USERS];

    setvbuf(stdout, NULL, _IOLBF, 0);
    rng_state = seed * 7919 + 17;
    for (int i = 0; i < USERS; i++) {
        struct storage_mbox m;
        if (storage_open(dir, i + 1, &u[i]) != 0)
            return 2;
        if (storage_mbox_get(u[i], "INBOX", &m) != 0)
            return 2;
        inbox[i] = m.id;
        if (storage_mbox_get(u[i], "Archive", &m) != 0)
            return 2;
        arch[i] = m.id;
    }
    printf("READY\n");
    for (uint64_t serial = 1;; serial++) {
        size_t len;
        char *msg = gen_message(seed, serial, &len);
        char sha[65];
        struct storage_draft *d;
        uint32_t uid;
        int op = (int)(rnd() % 10), rc;

        if (op == 9) {
            /* a MULTIAPPEND to Archive of user 1, all or none: 2 to 8
             * messages, or (one in four) 20 to 70, whose fsyncs are
             * shared among threads */
            struct storage_save_req req[70];
            char shas[70][65];
            size_t n = rnd() % 4 ? 2 + (size_t)(rnd() % 7) : 20 + (size_t)(rnd() % 51), k;
            free(msg);
            for (k = 0; k < n; k++) {
                msg = gen_message(seed, serial + k, &len);
                sha256_hex(msg, len, shas[k]);
                memset(&req[k], 0, sizeof(req[k]));
                rc = write_draft(u[0], msg, len, (serial + k) % 2 == 1, false, &req[k].d);
                free(msg);
                if (rc) {
                    fprintf(stderr, "draft: %s\n", storage_strerror(rc));
                    return 3;
                }
                req[k].flags = rnd() % 2 ? STORAGE_FLAG_SEEN : 0;
            }
            serial += n - 1;
            rc = storage_save_many(u[0], arch[0], req, n);
            for (k = 0; k < n; k++) {
                if (rc == 0)
                    printf("ACK 1 Archive %" PRIu32 " %s\n", req[k].uid, shas[k]);
                storage_draft_free(req[k].d);
            }
            if (rc) {
                fprintf(stderr, "save: %s\n", storage_strerror(rc));
                return 3;
            }
            continue;
        }
        sha256_hex(msg, len, sha);
        if ((rc = write_draft(u[0], msg, len, serial % 2 == 1, true, &d)) != 0) {
            fprintf(stderr, "draft: %s\n", storage_strerror(rc));
            return 3;
        }
        if (op < 5) {
            /* APPEND to INBOX or Archive of user 1 */
            int64_t mb = op < 3 ? inbox[0] : arch[0];
            rc = storage_save(u[0], mb, d, rnd() % 2 ? STORAGE_FLAG_SEEN : 0, NULL, 0, 0, &uid);
            if (rc == 0)
                printf("ACK 1 %s %" PRIu32 " %s\n", op < 3 ? "INBOX" : "Archive", uid, sha);
        } else if (op < 9) {
            /* LMTP-style delivery of one file to both users */
            for (int i = 0; i < USERS && rc == 0; i++) {
                int64_t got;
                rc = storage_deliver(u[i], NULL, d, &uid, &got);
                if (rc == 0)
                    printf("ACK %d INBOX %" PRIu32 " %s\n", i + 1, uid, sha);
            }
        }
        storage_draft_free(d);
        free(msg);
        if (rc) {
            fprintf(stderr, "save: %s\n", storage_strerror(rc));
            return 3;
        }
        /* flag churn: renames in cur/ racing with the kill */
        if (serial % 3 == 0) {
            struct storage_range r = {1, UINT32_MAX};
            struct storage_uidset s = {1, &r};
            storage_store(u[0], inbox[0], &s, serial % 2 ? STORAGE_STORE_ADD : STORAGE_STORE_REMOVE,
                          STORAGE_FLAG_FLAGGED, NULL, 0, 0, NULL, NULL, NULL);
        }
        if (serial % 4 == 0)
            storage_sync_flags(u[0], 50, NULL, NULL);
    }
}

struct dump {
    struct storage_user *u;
    int user;
    const char *mbox;
    int64_t id;
    int bad;
};

static int on_msg(void *arg, const struct storage_msg *m)
{
    struct dump *dp = arg;
    uint64_t size, seed, serial;
    char *p, sha[65];
    const char *x;
    int fd;

    if (storage_msg_open(dp->u, dp->id, m->uid, &fd, &size) != 0) {
        printf("BAD %d %s %" PRIu32 " cannot open\n", dp->user, dp->mbox, m->uid);
        dp->bad++;
        return 0;
    }
    p = malloc(size + 1);
    if (!p || pread(fd, p, size, 0) != (ssize_t)size) {
        printf("BAD %d %s %" PRIu32 " cannot read\n", dp->user, dp->mbox, m->uid);
        dp->bad++;
        free(p);
        close(fd);
        return 0;
    }
    close(fd);
    p[size] = '\0';
    if (size != m->size)
        printf("BAD %d %s %" PRIu32 " size %" PRIu64 " index %" PRIu64 "\n", dp->user, dp->mbox,
               m->uid, size, m->size),
            dp->bad++;
    /* whole: it must be exactly the message its serial names */
    x = strstr(p, "X-Serial: ");
    if (!x || sscanf(x, "X-Serial: %" SCNu64 "-%" SCNu64, &seed, &serial) != 2) {
        printf("BAD %d %s %" PRIu32 " no serial\n", dp->user, dp->mbox, m->uid);
        dp->bad++;
    } else {
        size_t len;
        char *want = gen_message(seed, serial, &len);
        if (len != size || memcmp(want, p, len) != 0) {
            printf("BAD %d %s %" PRIu32 " partial or altered\n", dp->user, dp->mbox, m->uid);
            dp->bad++;
        }
        free(want);
    }
    sha256_hex(p, size, sha);
    printf("MSG %d %s %" PRIu32 " %s\n", dp->user, dp->mbox, m->uid, sha);
    free(p);
    return 0;
}

static void on_report(void *arg, const char *line)
{
    printf("PROBLEM %s\n", line);
}

static int run_verify(const char *dir)
{
    int bad = 0;

    for (int i = 0; i < USERS; i++) {
        static const char *const boxes[] = {"INBOX", "Archive"};
        struct storage_user *u;
        unsigned problems = 0;
        int rc;

        /* before recovery: informative only */
        storage_check(dir, i + 1, NULL, NULL, &problems);
        printf("BEFORE %d %u\n", i + 1, problems);
        if ((rc = storage_open(dir, i + 1, &u)) != 0) {
            printf("BAD open %s\n", storage_strerror(rc));
            return 1;
        }
        for (size_t b = 0; b < 2; b++) {
            struct storage_mbox m;
            struct dump dp = {.u = u, .user = i + 1, .mbox = boxes[b]};
            if (storage_mbox_get(u, boxes[b], &m) != 0) {
                printf("BAD %d no mailbox %s\n", i + 1, boxes[b]);
                bad++;
                continue;
            }
            dp.id = m.id;
            if (storage_fetch(u, m.id, NULL, 0, on_msg, &dp) != 0)
                bad++;
            bad += dp.bad;
        }
        storage_close(u);
        /* after recovery, index and Maildir agree */
        problems = 0;
        if (storage_check(dir, i + 1, on_report, NULL, &problems) != 0 || problems != 0) {
            printf("BAD %d %u problem(s) after recovery\n", i + 1, problems);
            bad++;
        }
    }
    printf("DONE %d\n", bad);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "write") == 0)
        return run_write(argv[2], strtoull(argv[3], NULL, 10));
    if (argc == 3 && strcmp(argv[1], "verify") == 0)
        return run_verify(argv[2]);
    fprintf(stderr, "usage: storage_driver write DIR SEED | verify DIR\n");
    return 2;
}
