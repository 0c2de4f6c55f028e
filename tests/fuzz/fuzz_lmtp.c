/* libFuzzer target for LMTP: the session (command parser, state machine,
 * BDAT chunk accounting) fed arbitrary client bytes in arbitrary chunks, and
 * the pure parsers of protocol/lmtp/lmtp_parse.c (paths and parameters,
 * BDAT arguments, recipient details, DATA dot-unstuffing) and the audit
 * line's header scanner (lmtp_audit.c) fed the same bytes. Thread-pool
 * jobs are refused here (no loop), so RCPT answers 451 and no transaction
 * reaches the store; the delivery path is covered by
 * tests/integration/test_lmtp_*.py. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/job.h"
#include "protocol/lmtp/lmtp.h"
#include "protocol/lmtp/lmtp_int.h"
#include "tests/fuzz/fake_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stand-ins for protocol/job.c: there is no loop to run jobs on. */
void proto_job_configure(unsigned max_per_account)
{
    (void)max_per_account;
}

struct proto_job *proto_job_start(uv_loop_t *loop, int64_t account, proto_job_fn work,
                                  proto_job_fn done, proto_job_fn free_fn, void *jdata)
{
    (void)loop, (void)account, (void)work, (void)done, (void)free_fn, (void)jdata;
    return NULL;
}

void proto_job_cancel(struct proto_job *j)
{
    if (j)
        abort(); /* never handed out */
}

/* and for its count of an account's jobs and its service jobs, which the
 * store cache uses */
bool mu_jobs_running(int64_t id);
bool mu_jobs_running(int64_t id)
{
    (void)id;
    return false;
}

bool mu_jobs_waking(int64_t id);
bool mu_jobs_waking(int64_t id)
{
    (void)id;
    return false;
}

void mu_jobs_admit(int64_t id);
void mu_jobs_admit(int64_t id)
{
    (void)id;
}

struct proto_job *mu_job_start(uv_loop_t *loop, int64_t account, proto_job_fn work,
                               proto_job_fn done, proto_job_fn free_fn, void *jdata);
struct proto_job *mu_job_start(uv_loop_t *loop, int64_t account, proto_job_fn work,
                               proto_job_fn done, proto_job_fn free_fn, void *jdata)
{
    return proto_job_start(loop, account, work, done, free_fn, jdata);
}

/* Stand-in for auth/service.c (fake_conn.c replaces the login half). */
int auth_service_lookup(struct auth_service *s, const char *address, size_t len,
                        struct auth_account *out)
{
    (void)s, (void)address, (void)len, (void)out;
    return AUTH_E_TEMP;
}

static void parsers(const char *p, size_t n)
{
    char path[LMTP_PATH_MAX + 1], base[LMTP_PATH_MAX + 1], detail[LMTP_PATH_MAX + 1];
    size_t plen;
    struct lmtp_params prm;
    uint64_t sz;
    bool last;

    if (lmtp_parse_path(p, n, "FROM:", true, path, sizeof(path), &plen, &prm) == 0) {
        if (plen > LMTP_PATH_MAX - 2 || strlen(path) != plen)
            abort();
        if (lmtp_split_detail(path, plen, "+-", base, sizeof(base), detail, sizeof(detail)) == 0 &&
            strlen(base) + strlen(detail) > plen)
            abort();
    }
    lmtp_parse_path(p, n, "TO:", false, path, sizeof(path), &plen, &prm);
    lmtp_parse_bdat(p, n, &sz, &last);

    /* unstuffing in two pieces must give what one piece gives */
    struct lmtp_undot u1, u2;
    char *o1 = malloc(n + 1), *o2 = malloc(n + 2);
    size_t used1, len1, used2a, len2a, used2b = 0, len2b = 0, cut = n ? (unsigned char)p[0] % n : 0;
    if (!o1 || !o2)
        abort();
    lmtp_undot_init(&u1);
    lmtp_undot(&u1, p, n, o1, &used1, &len1);
    lmtp_undot_init(&u2);
    lmtp_undot(&u2, p, cut, o2, &used2a, &len2a);
    if (!u2.done)
        lmtp_undot(&u2, p + cut, n - cut, o2 + len2a, &used2b, &len2b);
    if (len1 > used1 || u1.done != u2.done || used1 != used2a + used2b || len1 != len2a + len2b ||
        memcmp(o1, o2, len1))
        abort();
    free(o1);
    free(o2);

    /* the audit line's header scanner: bounded fields, and the same
     * result whether the header comes in one piece or two */
    struct lmtp_hdrscan *h1 = calloc(1, sizeof(*h1)), *h2 = calloc(1, sizeof(*h2));
    if (!h1 || !h2)
        abort();
    lmtp_hdrscan_feed(h1, p, n);
    lmtp_hdrscan_feed(h2, p, cut);
    lmtp_hdrscan_feed(h2, p + cut, n - cut);
    if (strlen(h1->queue_id) > LMTP_QUEUE_ID_MAX || strlen(h1->msgid) > LMTP_MSGID_MAX ||
        h1->cur_len > LMTP_HDR_LINE || strcmp(h1->queue_id, h2->queue_id) ||
        strcmp(h1->msgid, h2->msgid) || h1->done != h2->done)
        abort();
    free(h1);
    free(h2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parsers((const char *)data, size);
    return fake_conn_drive(&lmtp_handler, data, size);
}
