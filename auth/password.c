/* Password hashing and verification with libxcrypt (yescrypt, its
 * strongest default), and the policy coffrectl applies to new passwords. */
#include "auth/auth.h"
#include "auth/auth_priv.h"

#include <crypt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_ulong crypt_calls;

unsigned long auth_crypt_calls(void)
{
    return atomic_load(&crypt_calls);
}

/* crypt_rn into a heap crypt_data (it is about 32 KiB, too big for some
 * thread stacks); the result is copied to out. Returns 0 or -1. */
static int run_crypt(const char *pw, const char *setting, char *out, size_t outlen)
{
    struct crypt_data *cd;
    size_t n;
    int rc = -1;

    cd = calloc(1, sizeof(*cd));
    if (!cd)
        return -1;
    atomic_fetch_add(&crypt_calls, 1);
    if (crypt_rn(pw, setting, cd, (int)sizeof(*cd)) != NULL && cd->output[0] != '*') {
        n = strnlen(cd->output, sizeof(cd->output));
        if (n < sizeof(cd->output) && n < outlen) {
            memcpy(out, cd->output, n + 1);
            rc = 0;
        }
    }
    /* the structure held the password during the computation */
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return rc;
}

int auth_password_hash(const char *pw, char *out, size_t outlen)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];

    /* NULL prefix and count 0: libxcrypt's default, the strongest method */
    if (!crypt_gensalt_rn(NULL, 0, NULL, 0, setting, (int)sizeof(setting)))
        return AUTH_E_TEMP;
    if (run_crypt(pw, setting, out, outlen) < 0)
        return AUTH_E_TEMP;
    return AUTH_OK;
}

bool auth_password_verify(const char *pw, const char *hash)
{
    char out[CRYPT_OUTPUT_SIZE];
    size_t hlen, olen;
    volatile unsigned char diff = 0;

    if (!hash || !*hash || *hash == '*' || *hash == '!')
        return false;
    hlen = strnlen(hash, CRYPT_OUTPUT_SIZE);
    if (hlen >= CRYPT_OUTPUT_SIZE)
        return false;
    if (run_crypt(pw, hash, out, sizeof(out)) < 0)
        return false;
    olen = strlen(out);
    /* every byte of the full output is compared, whatever differs first */
    diff = (unsigned char)(olen != hlen);
    for (size_t i = 0; i < hlen; i++)
        diff |= (unsigned char)(out[i < olen ? i : 0] ^ hash[i]);
    explicit_bzero(out, sizeof(out));
    return diff == 0;
}

int auth_password_check(const char *pw, size_t len, char *err, size_t errlen)
{
    char why[128];

    if (!pw || len == 0)
        snprintf(why, sizeof(why), "the password is empty");
    else if (memchr(pw, '\0', len) || memchr(pw, '\r', len) || memchr(pw, '\n', len))
        snprintf(why, sizeof(why), "the password contains a NUL, CR or LF character");
    else if (len < AUTH_PASSWORD_MIN)
        snprintf(why, sizeof(why), "the password is too short (at least %d characters)",
                 AUTH_PASSWORD_MIN);
    else if (len > AUTH_PASSWORD_MAX)
        snprintf(why, sizeof(why), "the password is too long (at most %d bytes)",
                 AUTH_PASSWORD_MAX);
    else
        return AUTH_OK;
    if (err && errlen)
        snprintf(err, errlen, "%s", why);
    return AUTH_E_WEAKPW;
}
