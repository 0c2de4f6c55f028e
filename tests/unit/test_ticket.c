/* Login tickets (auth/ticket.c): a good ticket, each bound field altered,
 * expiry, the wrong key, truncated and overlong tickets, other spellings
 * of a good one, and the key file's checks. */
#include "check.h"
#include "auth/auth.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned char key[32], key2[32];

#define ADDR "alice@example.org"
#define IP "192.0.2.7"
#define NOW 1700000000

static int check(const char *t, const char *addr, const char *ip, int64_t now)
{
    return auth_ticket_check(key, sizeof(key), t, strlen(t), addr, ip, now);
}

static void test_fields(void)
{
    char t[AUTH_TICKET_MAX], bad[AUTH_TICKET_MAX * 2];

    CHECK(auth_ticket_make(key, sizeof(key), ADDR, IP, NOW + 30, t, sizeof(t)) == AUTH_OK,
          "a ticket is made");
    CHECK(!strncmp(t, "coffre-t1:1700000030:", 21) && strlen(t) == 21 + 43,
          "its form: tag, expiry, 43 characters of base64url");
    CHECK(auth_ticket_shape(t, strlen(t)), "it has a ticket's shape");
    CHECK(!auth_ticket_shape("coffre-t1", 9) && !auth_ticket_shape("hunter2hunter2", 14),
          "passwords do not");
    CHECK(check(t, ADDR, IP, NOW) == AUTH_OK, "good ticket accepted");
    CHECK(check(t, ADDR, IP, NOW + 30) == AUTH_OK, "accepted up to its expiry");
    CHECK(check(t, ADDR, IP, NOW + 31) == AUTH_E_FAIL, "expired ticket refused");
    CHECK(check(t, "bob@example.org", IP, NOW) == AUTH_E_FAIL, "another address refused");
    CHECK(check(t, "alice@example.orh", IP, NOW) == AUTH_E_FAIL, "a near address refused");
    CHECK(check(t, ADDR, "192.0.2.8", NOW) == AUTH_E_FAIL, "another client address refused");
    CHECK(auth_ticket_check(key2, sizeof(key2), t, strlen(t), ADDR, IP, NOW) == AUTH_E_FAIL,
          "another key refused");
    CHECK(auth_ticket_check(key, 0, t, strlen(t), ADDR, IP, NOW) == AUTH_E_FAIL,
          "no key: every ticket refused");

    /* the expiry moved later: the MAC no longer fits */
    snprintf(bad, sizeof(bad), "%s", t);
    bad[19] = '9'; /* 1700000039 */
    CHECK(check(bad, ADDR, IP, NOW) == AUTH_E_FAIL, "altered expiry refused");
    /* each character of the MAC altered */
    bool all = true;
    for (size_t i = 21; i < strlen(t); i++) {
        snprintf(bad, sizeof(bad), "%s", t);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        if (check(bad, ADDR, IP, NOW) != AUTH_E_FAIL)
            all = false;
    }
    CHECK(all, "every altered MAC character refused");
    /* the last character carries 2 pad bits: another spelling of the same
     * bytes is refused too */
    snprintf(bad, sizeof(bad), "%s", t);
    bad[strlen(bad) - 1] ^= 1;
    CHECK(check(bad, ADDR, IP, NOW) == AUTH_E_FAIL, "non-canonical last character refused");
    snprintf(bad, sizeof(bad), "%.*s", (int)strlen(t) - 1, t);
    CHECK(check(bad, ADDR, IP, NOW) == AUTH_E_FAIL, "truncated ticket refused");
    snprintf(bad, sizeof(bad), "%.20s", t);
    CHECK(check(bad, ADDR, IP, NOW) == AUTH_E_FAIL, "ticket without MAC refused");
    snprintf(bad, sizeof(bad), "%sA", t);
    CHECK(check(bad, ADDR, IP, NOW) == AUTH_E_FAIL, "overlong ticket refused");
    snprintf(bad, sizeof(bad), "coffre-t1:01700000030:%s", t + 21);
    CHECK(check(bad, ADDR, IP, NOW) == AUTH_E_FAIL, "expiry with a leading zero refused");
    snprintf(bad, sizeof(bad), "coffre-t2:%s", t + 10);
    CHECK(check(bad, ADDR, IP, NOW) == AUTH_E_FAIL, "another version tag refused");
    snprintf(bad, sizeof(bad), "coffre-t1:99999999999999999999:%s", t + 21);
    CHECK(check(bad, ADDR, IP, NOW) == AUTH_E_FAIL, "expiry beyond 64 bits refused");
    CHECK(check("coffre-t1::", ADDR, IP, NOW) == AUTH_E_FAIL, "empty fields refused");
}

static void test_ip(void)
{
    struct sockaddr_in6 m = {.sin6_family = AF_INET6};
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    char a[AUTH_TICKET_IP_MAX], b[AUTH_TICKET_IP_MAX];

    inet_pton(AF_INET6, "::ffff:192.0.2.7", &m.sin6_addr);
    inet_pton(AF_INET, "192.0.2.7", &v4.sin_addr);
    CHECK(auth_ticket_ip((struct sockaddr *)&m, a, sizeof(a)) == AUTH_OK &&
              auth_ticket_ip((struct sockaddr *)&v4, b, sizeof(b)) == AUTH_OK && !strcmp(a, b) &&
              !strcmp(a, "192.0.2.7"),
          "a v4-mapped address binds as IPv4");
    inet_pton(AF_INET6, "2001:db8::1", &m.sin6_addr);
    CHECK(auth_ticket_ip((struct sockaddr *)&m, a, sizeof(a)) == AUTH_OK &&
              !strcmp(a, "2001:db8::1"),
          "an IPv6 address binds as written by inet_ntop");
}

static void test_key_file(void)
{
    char dir[512], path[600], err[1200];
    unsigned char k[AUTH_TICKET_KEY_MAX];
    size_t len = 99;
    int fd;

    if (check_mkdtemp(dir, sizeof(dir), "coffre-ticket") < 0) {
        CHECK(0, "temporary directory");
        return;
    }
    snprintf(path, sizeof(path), "%s/key", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && write(fd, key, 31) == 31, "a 31-byte key written");
    close(fd);
    CHECK(auth_ticket_key_load(path, k, sizeof(k), &len, err, sizeof(err)) == AUTH_E_FAIL &&
              len == 0 && strstr(err, "31 bytes"),
          "a key shorter than 32 bytes is refused");
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0 && write(fd, key, 32) == 32, "a 32-byte key written");
    close(fd);
    CHECK(auth_ticket_key_load(path, k, sizeof(k), &len, err, sizeof(err)) == AUTH_OK &&
              len == 32 && !memcmp(k, key, 32),
          "a 32-byte key of mode 0600 is read");
    chmod(path, 0640);
    CHECK(auth_ticket_key_load(path, k, sizeof(k), &len, err, sizeof(err)) == AUTH_OK,
          "mode 0640 (the group of run_user) is accepted");
    chmod(path, 0644);
    CHECK(auth_ticket_key_load(path, k, sizeof(k), &len, err, sizeof(err)) == AUTH_E_FAIL &&
              strstr(err, "other users"),
          "a key readable by others is refused");
    chmod(path, 0602);
    CHECK(auth_ticket_key_load(path, k, sizeof(k), &len, err, sizeof(err)) == AUTH_E_FAIL,
          "a key writable by others is refused");
    unlink(path);
    CHECK(auth_ticket_key_load(path, k, sizeof(k), &len, err, sizeof(err)) == AUTH_E_TEMP,
          "a missing key file is an error");
    CHECK(auth_ticket_key_load(dir, k, sizeof(k), &len, err, sizeof(err)) != AUTH_OK,
          "a directory is not a key file");
    rmdir(dir);
}

int main(void)
{
    for (size_t i = 0; i < sizeof(key); i++) {
        key[i] = (unsigned char)(i * 7 + 1);
        key2[i] = key[i];
    }
    key2[31] ^= 0x80;
    test_fields();
    test_ip();
    test_key_file();
    return check_summary();
}
