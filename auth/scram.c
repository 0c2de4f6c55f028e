/* SCRAM-SHA-256 (RFC 5802, RFC 7677) on the server's side: the secrets
 * kept beside the yescrypt hash (salt, iteration count, StoredKey,
 * ServerKey; never the password), their text form in the accounts
 * database, and the check of a client's proof. Hashes, HMAC and PBKDF2
 * come from GnuTLS. RFC 5802's Normalize() of the password (and of the
 * user name) is the PRECIS OpaqueString profile (RFC 8265, which replaces
 * SASLprep), as GnuTLS implements it: non-ASCII spaces become U+0020, then
 * NFC. A string the profile refuses (control characters, default
 * ignorable code points such as U+00AD, invalid UTF-8) is used as it is,
 * so that such a password keeps working with a client that sends it
 * unchanged. ASCII passwords are left as they are. */
#include "auth/auth.h"
#include "server/base/base64.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hmac(const unsigned char *key, size_t klen, const void *msg, size_t len,
                unsigned char out[AUTH_SCRAM_KEY_LEN])
{
    return gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, klen, msg, len, out) < 0 ? -1 : 0;
}

static int sha256(const void *msg, size_t len, unsigned char out[AUTH_SCRAM_KEY_LEN])
{
    return gnutls_hash_fast(GNUTLS_DIG_SHA256, msg, len, out) < 0 ? -1 : 0;
}

int auth_scram_keys(const unsigned char salted[AUTH_SCRAM_KEY_LEN],
                    unsigned char client_key[AUTH_SCRAM_KEY_LEN],
                    unsigned char stored_key[AUTH_SCRAM_KEY_LEN],
                    unsigned char server_key[AUTH_SCRAM_KEY_LEN])
{
    if (hmac(salted, AUTH_SCRAM_KEY_LEN, "Client Key", 10, client_key) < 0 ||
        sha256(client_key, AUTH_SCRAM_KEY_LEN, stored_key) < 0 ||
        hmac(salted, AUTH_SCRAM_KEY_LEN, "Server Key", 10, server_key) < 0)
        return AUTH_E_TEMP;
    return AUTH_OK;
}

long auth_scram_prepare(const char *in, size_t len, char *out, size_t cap)
{
    gnutls_datum_t n = {NULL, 0};
    long rc = -1;

    if (len > UINT_MAX)
        return -1;
    /* IGNORE_ERRS: a string the profile refuses comes back as it is */
    if (gnutls_utf8_password_normalize((const unsigned char *)in, (unsigned)len, &n,
                                       GNUTLS_UTF8_IGNORE_ERRS) < 0)
        return -1;
    if (n.size < cap) {
        if (n.size)
            memcpy(out, n.data, n.size);
        out[n.size] = '\0';
        rc = (long)n.size;
    }
    if (n.data) {
        explicit_bzero(n.data, n.size);
        gnutls_free(n.data);
    }
    return rc;
}

int auth_scram_derive(const char *pw, size_t pwlen, const unsigned char *salt, size_t salt_len,
                      unsigned iter, struct auth_scram_secret *out)
{
    unsigned char salted[AUTH_SCRAM_KEY_LEN], client_key[AUTH_SCRAM_KEY_LEN];
    char prepared[AUTH_SCRAM_PREPARED_MAX];
    gnutls_datum_t sd = {(unsigned char *)salt, (unsigned)salt_len};
    gnutls_datum_t key;
    long plen;
    int rc = AUTH_E_TEMP;

    memset(out, 0, sizeof(*out));
    if (salt_len == 0 || salt_len > AUTH_SCRAM_SALT_MAX || iter < AUTH_SCRAM_ITER_MIN ||
        iter > AUTH_SCRAM_ITER_MAX || pwlen > AUTH_PASSWORD_MAX)
        return AUTH_E_TEMP;
    plen = auth_scram_prepare(pw, pwlen, prepared, sizeof(prepared));
    if (plen < 0)
        goto out;
    key.data = (unsigned char *)prepared;
    key.size = (unsigned)plen;
    if (gnutls_pbkdf2(GNUTLS_MAC_SHA256, &key, &sd, iter, salted, sizeof(salted)) < 0)
        goto out;
    if (auth_scram_keys(salted, client_key, out->stored_key, out->server_key) < 0)
        goto out;
    memcpy(out->salt, salt, salt_len);
    out->salt_len = salt_len;
    out->iter = iter;
    rc = AUTH_OK;
out:
    explicit_bzero(prepared, sizeof(prepared));
    explicit_bzero(salted, sizeof(salted));
    explicit_bzero(client_key, sizeof(client_key));
    return rc;
}

int auth_scram_new_secret(const char *pw, size_t pwlen, unsigned iter,
                          struct auth_scram_secret *out)
{
    unsigned char salt[AUTH_SCRAM_SALT_LEN];

    if (gnutls_rnd(GNUTLS_RND_NONCE, salt, sizeof(salt)) < 0)
        return AUTH_E_TEMP;
    return auth_scram_derive(pw, pwlen, salt, sizeof(salt), iter, out);
}

/* "SCRAM-SHA-256:<iter>:<salt>:<StoredKey>:<ServerKey>", base64. */
int auth_scram_secret_format(const struct auth_scram_secret *sec, char *out, size_t cap)
{
    char salt[AUTH_SCRAM_SALT_MAX * 2], stored[64], server[64];
    int n;

    if (base64_encode(sec->salt, sec->salt_len, salt, sizeof(salt)) < 0 ||
        base64_encode(sec->stored_key, AUTH_SCRAM_KEY_LEN, stored, sizeof(stored)) < 0 ||
        base64_encode(sec->server_key, AUTH_SCRAM_KEY_LEN, server, sizeof(server)) < 0)
        return AUTH_E_TEMP;
    n = snprintf(out, cap, "SCRAM-SHA-256:%u:%s:%s:%s", sec->iter, salt, stored, server);
    explicit_bzero(stored, sizeof(stored));
    explicit_bzero(server, sizeof(server));
    return n < 0 || (size_t)n >= cap ? AUTH_E_TEMP : AUTH_OK;
}

/* The field of text up to the next ':' (or its end); advances *p. */
static const char *field(const char **p, size_t *len)
{
    const char *start = *p, *colon = strchr(start, ':');

    *len = colon ? (size_t)(colon - start) : strlen(start);
    *p = colon ? colon + 1 : start + *len;
    return colon || *len ? start : NULL;
}

int auth_scram_secret_parse(const char *text, struct auth_scram_secret *out)
{
    const char *p = text, *f;
    size_t len;
    unsigned long iter = 0;
    long n;

    memset(out, 0, sizeof(*out));
    if (!text || strncmp(text, "SCRAM-SHA-256:", 14) != 0)
        return AUTH_E_FAIL;
    p += 14;
    f = field(&p, &len);
    if (!f || len == 0 || len > 9)
        return AUTH_E_FAIL;
    for (size_t i = 0; i < len; i++) {
        if (f[i] < '0' || f[i] > '9')
            return AUTH_E_FAIL;
        iter = iter * 10 + (unsigned long)(f[i] - '0');
    }
    if (iter < AUTH_SCRAM_ITER_MIN || iter > AUTH_SCRAM_ITER_MAX)
        return AUTH_E_FAIL;
    out->iter = (unsigned)iter;
    f = field(&p, &len);
    if (!f || (n = base64_decode_strict(f, len, out->salt, sizeof(out->salt))) <= 0)
        goto bad;
    out->salt_len = (size_t)n;
    f = field(&p, &len);
    if (!f ||
        base64_decode_strict(f, len, out->stored_key, AUTH_SCRAM_KEY_LEN) != AUTH_SCRAM_KEY_LEN)
        goto bad;
    f = field(&p, &len);
    if (!f || *p ||
        base64_decode_strict(f, len, out->server_key, AUTH_SCRAM_KEY_LEN) != AUTH_SCRAM_KEY_LEN)
        goto bad;
    /* the text ends with the ServerKey: anything after it is refused */
    if (f + len != p)
        goto bad;
    return AUTH_OK;
bad:
    explicit_bzero(out, sizeof(*out));
    return AUTH_E_FAIL;
}

bool auth_scram_verify(const struct auth_scram_secret *sec, const void *auth_msg, size_t len,
                       const unsigned char proof[AUTH_SCRAM_KEY_LEN],
                       unsigned char server_sig[AUTH_SCRAM_KEY_LEN])
{
    unsigned char sig[AUTH_SCRAM_KEY_LEN], client_key[AUTH_SCRAM_KEY_LEN];
    unsigned char stored[AUTH_SCRAM_KEY_LEN];
    bool ok = false;

    /* ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage), and
     * H(ClientKey) must be StoredKey: compared in constant time */
    if (hmac(sec->stored_key, AUTH_SCRAM_KEY_LEN, auth_msg, len, sig) == 0) {
        for (size_t i = 0; i < AUTH_SCRAM_KEY_LEN; i++)
            client_key[i] = proof[i] ^ sig[i];
        ok = sha256(client_key, AUTH_SCRAM_KEY_LEN, stored) == 0 &&
             gnutls_memcmp(stored, sec->stored_key, AUTH_SCRAM_KEY_LEN) == 0;
    }
    if (ok && hmac(sec->server_key, AUTH_SCRAM_KEY_LEN, auth_msg, len, server_sig) < 0)
        ok = false;
    explicit_bzero(sig, sizeof(sig));
    explicit_bzero(client_key, sizeof(client_key));
    explicit_bzero(stored, sizeof(stored));
    return ok;
}
