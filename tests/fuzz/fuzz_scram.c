/* libFuzzer target: SCRAM-SHA-256 and -PLUS messages on the server's side
 * (protocol/sasl_scram.c). The first byte picks the mechanism and whether
 * the connection has channel bindings; the rest is the client-first and
 * the client-final message, raw, separated by '\n' (base64-encoded here,
 * as they come on the wire). A parsed exchange's AuthMessage is checked
 * against a fixed secret: it must fail, never crash. */
#include <stdint.h>
#include <string.h>

#include "auth/auth.h"
#include "protocol/sasl.h"
#include "server/base/base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int cb_data(void *arg, const char *name, unsigned char *out, size_t cap)
{
    (void)arg;
    if (cap < 32 || (strcmp(name, "tls-exporter") && strcmp(name, "tls-server-end-point")))
        return -1;
    memset(out, name[4] == 'e' ? 0x11 : 0x22, 32);
    return 32;
}

/* One message, base64-encoded, through proto_sasl_step. */
static int step(struct proto_sasl *s, const uint8_t *p, size_t len)
{
    char enc[8192];
    const char *ch;
    long n = base64_encode(p, len, enc, sizeof(enc));

    if (n < 0)
        return SASL_BAD;
    return proto_sasl_step(s, len ? enc : "=", len ? (size_t)n : 1, &ch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct auth_scram_secret sec = {.iter = 4096, .salt_len = 4, .salt = "salt"};
    static const struct auth_scram_params params = {.salt = "salt", .salt_len = 4, .iter = 4096};
    struct proto_sasl s;
    const struct auth_scram_params *p;
    const unsigned char *proof;
    const char *ch, *msg, *refuse;
    unsigned char sig[AUTH_SCRAM_KEY_LEN];
    size_t len;

    if (size < 1)
        return 0;
    const char *mech = (data[0] & 1) ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256";
    if (proto_sasl_start_cb(&s, mech, strlen(mech), (data[0] & 2) ? cb_data : NULL, NULL) < 0)
        return 0;
    const uint8_t *q = data + 1, *end = data + size;
    const uint8_t *nl = memchr(q, '\n', (size_t)(end - q));
    int r = step(&s, q, nl ? (size_t)(nl - q) : (size_t)(end - q));
    if (r == SASL_SCRAM_LOOKUP && proto_sasl_scram_first(&s, &params, NULL, &ch) == SASL_CONTINUE &&
        nl) {
        q = nl + 1;
        r = step(&s, q, (size_t)(end - q));
        if (r == SASL_SCRAM_CHECK) {
            proto_sasl_scram_check(&s, &p, &msg, &len, &proof, &refuse);
            /* a random nonce was drawn: no input can know the proof */
            if (auth_scram_verify(&sec, msg, len, proof, sig))
                __builtin_trap();
            if (proto_sasl_scram_final(&s, sig, &ch) != SASL_CONTINUE)
                __builtin_trap();
        }
    }
    proto_sasl_clear(&s);
    return 0;
}
