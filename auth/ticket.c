/* Login tickets: what the nginx auth_http answer (protocol/http/
 * http_authhttp.c) gives nginx to log in to the account's slot in place of
 * the password, so that the slot does not hash the password again.
 *
 *   coffre-t1:<expiry, unix seconds>:<base64url of HMAC-SHA256(key,
 *       "coffre-t1" NUL address NUL client-ip NUL expiry)>
 *
 * The key is ticket_key_file's bytes, the same file on the routing service
 * and on every slot. A ticket names no secret: it is good for one address,
 * from one client address, until its expiry. Checks compare in constant
 * time and refuse any other spelling of the same ticket. */
#include "auth/auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TICKET_TAG "coffre-t1"
#define MAC_LEN 32
#define MAC_TEXT_LEN 43 /* base64url of 32 bytes, unpadded */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64url of MAC_LEN bytes into out (MAC_TEXT_LEN + 1). */
static void mac_text(const unsigned char mac[MAC_LEN], char out[MAC_TEXT_LEN + 1])
{
    size_t o = 0, i = 0;

    for (; i + 3 <= MAC_LEN; i += 3) {
        uint32_t v = (uint32_t)mac[i] << 16 | (uint32_t)mac[i + 1] << 8 | mac[i + 2];
        out[o++] = b64url[v >> 18 & 63];
        out[o++] = b64url[v >> 12 & 63];
        out[o++] = b64url[v >> 6 & 63];
        out[o++] = b64url[v & 63];
    }
    /* 32 = 3 * 10 + 2: two bytes left, three characters */
    uint32_t v = (uint32_t)mac[i] << 16 | (uint32_t)mac[i + 1] << 8;
    out[o++] = b64url[v >> 18 & 63];
    out[o++] = b64url[v >> 12 & 63];
    out[o++] = b64url[v >> 6 & 63];
    out[o] = '\0';
}

/* The MAC of (address, client_ip, expiry as written), as text. */
static int ticket_mac(const unsigned char *key, size_t keylen, const char *address,
                      const char *client_ip, const char *expiry, size_t elen,
                      char out[MAC_TEXT_LEN + 1])
{
    unsigned char msg[sizeof(TICKET_TAG) + AUTH_ADDR_MAX + AUTH_TICKET_IP_MAX + 24];
    unsigned char mac[MAC_LEN];
    size_t alen = strlen(address), ilen = strlen(client_ip), n = 0;

    if (!keylen || alen >= AUTH_ADDR_MAX || ilen >= AUTH_TICKET_IP_MAX || elen > 20)
        return AUTH_E_FAIL;
    memcpy(msg, TICKET_TAG, sizeof(TICKET_TAG)); /* with its NUL */
    n = sizeof(TICKET_TAG);
    memcpy(msg + n, address, alen + 1);
    n += alen + 1;
    memcpy(msg + n, client_ip, ilen + 1);
    n += ilen + 1;
    memcpy(msg + n, expiry, elen);
    n += elen;
    if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, keylen, msg, n, mac) < 0)
        return AUTH_E_TEMP;
    mac_text(mac, out);
    explicit_bzero(mac, sizeof(mac));
    return AUTH_OK;
}

int auth_ticket_make(const unsigned char *key, size_t keylen, const char *address,
                     const char *client_ip, int64_t expiry, char *out, size_t cap)
{
    char exp[24], mac[MAC_TEXT_LEN + 1];
    int n, r;

    if (expiry < 0)
        return AUTH_E_FAIL;
    n = snprintf(exp, sizeof(exp), "%" PRId64, expiry);
    r = ticket_mac(key, keylen, address, client_ip, exp, (size_t)n, mac);
    if (r != AUTH_OK)
        return r;
    n = snprintf(out, cap, TICKET_TAG ":%s:%s", exp, mac);
    return n < 0 || (size_t)n >= cap ? AUTH_E_FAIL : AUTH_OK;
}

bool auth_ticket_shape(const char *pw, size_t len)
{
    return len > sizeof(TICKET_TAG) && len < AUTH_TICKET_MAX &&
           !memcmp(pw, TICKET_TAG ":", sizeof(TICKET_TAG));
}

int auth_ticket_check(const unsigned char *key, size_t keylen, const char *ticket, size_t len,
                      const char *address, const char *client_ip, int64_t now)
{
    const char *p, *end = ticket + len, *colon;
    char mac[MAC_TEXT_LEN + 1];
    int64_t expiry = 0;
    bool ok;

    if (!keylen || !auth_ticket_shape(ticket, len))
        return AUTH_E_FAIL;
    p = ticket + sizeof(TICKET_TAG);
    colon = memchr(p, ':', (size_t)(end - p));
    /* the expiry: decimal digits as auth_ticket_make writes them */
    if (!colon || colon == p || colon - p > 19 || (*p == '0' && colon - p > 1))
        return AUTH_E_FAIL;
    for (const char *q = p; q < colon; q++) {
        if (*q < '0' || *q > '9')
            return AUTH_E_FAIL;
        if (expiry > (INT64_MAX - (*q - '0')) / 10)
            return AUTH_E_FAIL;
        expiry = expiry * 10 + (*q - '0');
    }
    if ((size_t)(end - colon - 1) != MAC_TEXT_LEN)
        return AUTH_E_FAIL;
    if (ticket_mac(key, keylen, address, client_ip, p, (size_t)(colon - p), mac) != AUTH_OK)
        return AUTH_E_FAIL;
    ok = gnutls_memcmp(mac, colon + 1, MAC_TEXT_LEN) == 0;
    explicit_bzero(mac, sizeof(mac));
    /* the MAC first: the time alone says nothing of a forged ticket */
    return ok && now <= expiry ? AUTH_OK : AUTH_E_FAIL;
}

int auth_ticket_ip(const struct sockaddr *sa, char *out, size_t cap)
{
    const void *a;
    int fam;

    if (!sa)
        return AUTH_E_FAIL;
    if (sa->sa_family == AF_INET) {
        fam = AF_INET;
        a = &((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            fam = AF_INET;
            a = &s6->sin6_addr.s6_addr[12];
        } else {
            fam = AF_INET6;
            a = &s6->sin6_addr;
        }
    } else {
        return AUTH_E_FAIL;
    }
    return inet_ntop(fam, a, out, (socklen_t)cap) ? AUTH_OK : AUTH_E_FAIL;
}

int auth_ticket_key_load(const char *path, unsigned char *key, size_t cap, size_t *len, char *err,
                         size_t errlen)
{
    struct stat st;
    ssize_t n;
    size_t have = 0;
    int fd;

    *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "ticket_key_file %s: %s", path, strerror(errno));
        return AUTH_E_TEMP;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "ticket_key_file %s: not a regular file", path);
        close(fd);
        return AUTH_E_FAIL;
    }
    if (st.st_mode & S_IRWXO) {
        snprintf(err, errlen,
                 "ticket_key_file %s: open to other users (mode %04o); make it 0600 or 0640", path,
                 (unsigned)(st.st_mode & 07777));
        close(fd);
        return AUTH_E_FAIL;
    }
    if (st.st_size < AUTH_TICKET_KEY_MIN || (uint64_t)st.st_size > cap) {
        snprintf(err, errlen, "ticket_key_file %s: %lld bytes; it must hold %d to %zu", path,
                 (long long)st.st_size, AUTH_TICKET_KEY_MIN, cap);
        close(fd);
        return AUTH_E_FAIL;
    }
    while (have < (size_t)st.st_size &&
           (n = read(fd, key + have, (size_t)st.st_size - have)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errlen, "ticket_key_file %s: %s", path, strerror(errno));
            explicit_bzero(key, have);
            close(fd);
            return AUTH_E_TEMP;
        }
        have += (size_t)n;
    }
    close(fd);
    if (have < AUTH_TICKET_KEY_MIN) {
        snprintf(err, errlen, "ticket_key_file %s: shorter than %d bytes", path,
                 AUTH_TICKET_KEY_MIN);
        explicit_bzero(key, have);
        return AUTH_E_FAIL;
    }
    *len = have;
    return AUTH_OK;
}
