/* libFuzzer target: the pop3 session (command parser, state machine, SASL,
 * TRANSACTION commands, dot-stuffing, UPDATE) fed arbitrary client bytes in
 * arbitrary chunks. Logins complete through tests/fuzz/fake_conn.c; the
 * maildrop is a stand-in back end holding a few messages in memory whose
 * answers arrive between input chunks, as pool jobs would. Input: byte 0
 * as in fake_conn.h (TLS, plaintext networks, chunk size, login result),
 * byte 1 bit 0 makes the maildrop fail to open, the rest is the client. */
#include <stdlib.h>
#include <string.h>

#include "protocol/pop3/pop3.h"
#include "protocol/pop3/pop3_int.h"
#include "tests/fuzz/fake_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const msgs[] = {
    "From: a@example.org\r\nSubject: one\r\n\r\n.line one\r\n.\r\n..two\r\nthree\r\n",
    "Subject: header only\r\n",
    "X: y\r\n\r\n\r\n.\r\nbody\r\n\r\nmore\r\n.end\r\n",
    "",
    "A: b\n\nbare LF body\n.dot\nlast line without end",
};
#define NMSGS (sizeof(msgs) / sizeof(msgs[0]))

enum op { OP_NONE, OP_OPEN, OP_READ, OP_UPDATE };

static struct pop3_session *op_s;
static enum op op;
static uint32_t op_uid;
static size_t read_off;
static bool fail_open;

static int fake_open(struct pop3_session *s, const struct auth_account *acct)
{
    if (op != OP_NONE)
        abort(); /* one back-end call at a time */
    op = OP_OPEN;
    op_s = s;
    return 0;
}

static int fake_read(struct pop3_session *s, uint32_t uid, bool first)
{
    if (op != OP_NONE || uid == 0 || uid > NMSGS)
        abort();
    op = OP_READ;
    op_s = s;
    if (first || uid != op_uid)
        read_off = 0;
    op_uid = uid;
    return 0;
}

static int fake_update(struct pop3_session *s, const uint32_t *seen, size_t nseen,
                       const uint32_t *deleted, size_t ndeleted)
{
    if (op != OP_NONE)
        abort();
    for (size_t i = 0; i < nseen; i++)
        if (seen[i] == 0 || seen[i] > NMSGS)
            abort();
    for (size_t i = 0; i < ndeleted; i++)
        if (deleted[i] == 0 || deleted[i] > NMSGS)
            abort();
    op = OP_UPDATE;
    op_s = s;
    return 0;
}

static void fake_cancel(struct pop3_session *s)
{
    op = OP_NONE;
}

static void fake_release(struct pop3_session *s)
{
    op = OP_NONE;
}

static const struct pop3_store fake_store = {
    .open = fake_open,
    .read = fake_read,
    .update = fake_update,
    .cancel = fake_cancel,
    .release = fake_release,
};

/* Answers the pending call, as the loop would after the job. */
static void run_op(void)
{
    enum op o = op;
    struct pop3_session *s = op_s;

    op = OP_NONE;
    switch (o) {
    case OP_NONE:
        return;
    case OP_OPEN: {
        if (fail_open) {
            pop3_open_done(s, -2, NULL, 0, 0);
            return;
        }
        struct pop3_msg *m = calloc(NMSGS, sizeof(*m));
        if (!m) {
            pop3_open_done(s, -3, NULL, 0, 0);
            return;
        }
        for (size_t i = 0; i < NMSGS; i++) {
            m[i].uid = (uint32_t)i + 1;
            m[i].size = strlen(msgs[i]);
        }
        pop3_open_done(s, 0, m, NMSGS, 1234);
        return;
    }
    case OP_READ: {
        /* up to two lines per chunk, so that chunks end at line ends (the
         * stand-in connection checks that writes are whole lines) */
        const char *msg = msgs[op_uid - 1];
        size_t len = strlen(msg), end = read_off;
        for (int lines = 0; lines < 2 && end < len; lines++) {
            const char *nl = memchr(msg + end, '\n', len - end);
            end = nl ? (size_t)(nl - msg) + 1 : len;
        }
        size_t off = read_off;
        read_off = end;
        pop3_read_done(s, 0, msg + off, end - off, end == len);
        return;
    }
    case OP_UPDATE:
        pop3_update_done(s, 0, 0);
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct conn_handler *h = &pop3_handler;

    if (size < 2)
        return 0;
    pop3_store = &fake_store;
    op = OP_NONE;
    uint8_t flags = data[0];
    fail_open = data[1] & 1;
    struct conn *c = fake_conn_new(flags & 1, flags & 2);
    data += 2;
    size -= 2;
    if (h->on_open(c) < 0)
        return 0;
    size_t chunk = 1 + ((flags >> 2) & 0x3f) * 7;
    bool ok = flags & 0x80;
    while (size && !conn_closing(c)) {
        size_t n = size < chunk ? size : chunk;
        h->on_input(c, (const char *)data, n);
        data += n;
        size -= n;
        fake_conn_finish_login(ok);
        for (int i = 0; i < 10000 && op != OP_NONE; i++)
            run_op();
        if (h->on_drain)
            h->on_drain(c);
    }
    if (!conn_closing(c) && h->on_timeout)
        h->on_timeout(c);
    h->on_close(c);
    if (op != OP_NONE)
        abort(); /* on_close must cancel the pending call */
    return 0;
}
