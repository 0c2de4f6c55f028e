/* SASL mechanism messages: PLAIN (RFC 4616). The protocols decode the
 * base64 themselves and pass the raw message here. */
#include "auth/auth.h"

#include <string.h>
#include <strings.h>

int auth_sasl_plain_parse(const unsigned char *msg, size_t len, struct auth_sasl_plain *out)
{
    const unsigned char *nul1, *nul2;
    size_t zlen, clen, plen;

    if (!msg || len == 0)
        return AUTH_E_FAIL;
    nul1 = memchr(msg, '\0', len);
    if (!nul1)
        return AUTH_E_FAIL;
    zlen = (size_t)(nul1 - msg);
    nul2 = memchr(nul1 + 1, '\0', len - zlen - 1);
    if (!nul2)
        return AUTH_E_FAIL;
    clen = (size_t)(nul2 - (nul1 + 1));
    plen = len - zlen - 1 - clen - 1;
    /* exactly two separators: the password holds no NUL */
    if (memchr(nul2 + 1, '\0', plen))
        return AUTH_E_FAIL;
    if (clen == 0 || plen == 0)
        return AUTH_E_FAIL;
    if (clen >= AUTH_ADDR_MAX || plen > AUTH_PASSWORD_MAX)
        return AUTH_E_FAIL;
    /* we do not let one user act as another; addresses ignore case */
    if (zlen != 0 &&
        (zlen != clen || strncasecmp((const char *)msg, (const char *)(nul1 + 1), clen) != 0))
        return AUTH_E_FAIL;
    out->authcid = (const char *)(nul1 + 1);
    out->authcid_len = clen;
    out->passwd = (const char *)(nul2 + 1);
    out->passwd_len = plen;
    return AUTH_OK;
}
