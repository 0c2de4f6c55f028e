/* Unit tests of auth's SASL helpers: strict base64 (RFC 4648 vectors and
 * malformed inputs) and SASL PLAIN parsing (RFC 4616). */
#include "auth/auth.h"
#include "server/base/base64.h"

#include <stdio.h>
#include <string.h>

#include "tests/unit/check.h"

static void test_vectors(void)
{
    static const struct {
        const char *plain, *b64;
    } v[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    char enc[64], what[96];
    unsigned char dec[64];

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t pl = strlen(v[i].plain), bl = strlen(v[i].b64);
        long n;

        n = base64_encode((const unsigned char *)v[i].plain, pl, enc, sizeof(enc));
        snprintf(what, sizeof(what), "encode \"%s\" -> \"%s\"", v[i].plain, v[i].b64);
        CHECK(n == (long)bl && strcmp(enc, v[i].b64) == 0, what);
        n = base64_decode_strict(v[i].b64, bl, dec, sizeof(dec));
        snprintf(what, sizeof(what), "decode \"%s\" -> \"%s\"", v[i].b64, v[i].plain);
        CHECK(n == (long)pl && memcmp(dec, v[i].plain, pl) == 0, what);
    }

    /* every byte value survives a round trip */
    unsigned char all[256], back[256];
    char big[400];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    long n = base64_encode(all, sizeof(all), big, sizeof(big));
    CHECK(n == 344, "encode 256 bytes gives 344 chars");
    CHECK(base64_decode_strict(big, (size_t)n, back, sizeof(back)) == 256 &&
              memcmp(all, back, 256) == 0,
          "round trip of all byte values");
}

static void test_malformed(void)
{
    static const char *bad[] = {
        "Zg=",                           /* wrong length */
        "Zg",                            /* no padding */
        "Zm9",                           /* no padding */
        "Zm9vY",                         /* wrong length */
        "Zg===",                         /* too much padding */
        "====",                          /* only padding */
        "Z===",                          /* three pad chars */
        "Zg==Zg==",                      /* padding in the middle */
        "Zm=v",                          /* data after padding */
        "Zm9v\n",                        /* trailing newline */
        "Zm 9v",                         /* embedded space */
        "Zm9v Zm9v", "Zm\r\n9v", "Zm9*", /* bad character */
        "Zm9-",                          /* base64url is not base64 */
        "Zm9_",      "Zh==",             /* non-zero pad bits */
        "Zm9=",                          /* non-zero pad bits */
    };
    unsigned char out[64];
    char what[96];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(what, sizeof(what), "reject malformed base64 #%zu", i);
        CHECK(base64_decode_strict(bad[i], strlen(bad[i]), out, sizeof(out)) == -1, what);
    }
    CHECK(base64_decode_strict("Zm9v\0Zm9v", 9, out, sizeof(out)) == -1, "reject embedded NUL");
    CHECK(base64_decode_strict("Zm9vYmFy", 8, out, 5) == -1, "decode into a short buffer fails");
    CHECK(base64_decode_strict("Zm9vYmFy", 8, out, 6) == 6, "decode into an exact buffer works");

    char enc[8];
    CHECK(base64_encode((const unsigned char *)"foobar", 6, enc, 7) == -1,
          "encode into a short buffer fails");
    CHECK(base64_encode((const unsigned char *)"foobar", 6, enc, 8) == 8,
          "encode without room for NUL still reports the length");
}

static void test_plain(void)
{
    struct auth_sasl_plain p;
    int r;

    r = auth_sasl_plain_parse((const unsigned char *)"\0tim\0tanstaaftanstaaf", 21, &p);
    CHECK(r == AUTH_OK && p.authcid_len == 3 && memcmp(p.authcid, "tim", 3) == 0 &&
              p.passwd_len == 16 && memcmp(p.passwd, "tanstaaftanstaaf", 16) == 0,
          "PLAIN without authzid");
    r = auth_sasl_plain_parse((const unsigned char *)"tim\0tim\0secret99", 16, &p);
    CHECK(r == AUTH_OK && p.authcid_len == 3 && p.passwd_len == 8, "PLAIN authzid == authcid");
    r = auth_sasl_plain_parse((const unsigned char *)"Tim\0tim\0secret99", 16, &p);
    CHECK(r == AUTH_OK, "PLAIN authzid equal ignoring case");
    static const struct {
        const char *msg; /* with NULs: the length is given */
        size_t len;
        const char *what;
    } refused[] = {
        {"Ursel\0Kurt\0xipj3plmq", 20, "PLAIN refuses a different authzid"},
        {"tim\0timx\0secret99", 17, "PLAIN refuses a prefix authzid"},
        {"\0\0secret", 8, "PLAIN refuses an empty authcid"},
        {"\0tim\0", 5, "PLAIN refuses an empty password"},
        {"\0tim\0pass\0word", 14, "PLAIN refuses a NUL in the password"},
        {"\0timsecret", 10, "PLAIN refuses one separator"},
        {"timsecret", 9, "PLAIN refuses no separator"},
        {"", 0, "PLAIN refuses an empty message"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        r = auth_sasl_plain_parse((const unsigned char *)refused[i].msg, refused[i].len, &p);
        CHECK(r != AUTH_OK, refused[i].what);
    }

    /* PLAIN inside base64, as a client sends it */
    const char *b64 = "AHRpbQB0YW5zdGFhZnRhbnN0YWFm";
    unsigned char msg[64];
    long n = base64_decode_strict(b64, strlen(b64), msg, sizeof(msg));
    CHECK(n == 21 && auth_sasl_plain_parse(msg, (size_t)n, &p) == AUTH_OK && p.authcid_len == 3 &&
              p.passwd_len == 16,
          "PLAIN from base64 (RFC 4616 example)");
}

int main(void)
{
    test_vectors();
    test_malformed();
    test_plain();
    return check_summary();
}
