/* SCRAM-SHA-256: RFC 7677 section 3's exchange through the server's parser
 * and the auth module's checks, the secrets' text form, and the messages
 * the parser refuses or remembers as a reason to fail. */
#include "check.h"
#include "protocol/sasl.h"
#include "server/base/base64.h"

#include <stdio.h>
#include <string.h>

/* RFC 7677 section 3 */
#define C_FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define S_FIRST "r=rOprNGfwEbeRWgbNEkqO" SNONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define C_FINAL                                                                                    \
    "c=biws,r=rOprNGfwEbeRWgbNEkqO" SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define S_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static struct auth_scram_secret vector_secret;
static struct auth_scram_params vector_params;

/* base64 of text into out (static per call site) */
static const char *b64(const char *text, char *out, size_t cap)
{
    if (base64_encode((const unsigned char *)text, strlen(text), out, cap) < 0)
        abort();
    return out;
}

/* One client message, base64-encoded as on the wire. */
static int step_b64(struct proto_sasl *s, const char *text, const char **ch)
{
    char b[2048];

    b64(text, b, sizeof(b));
    return proto_sasl_step(s, b, strlen(b), ch);
}

static bool decodes_to(const char *b, const char *text)
{
    unsigned char out[1024];
    long n = base64_decode_strict(b, strlen(b), out, sizeof(out));
    return n == (long)strlen(text) && memcmp(out, text, (size_t)n) == 0;
}

static unsigned char fake_cb[32];

static int cb_both(void *arg, const char *name, unsigned char *out, size_t cap)
{
    (void)arg;
    if (strcmp(name, "tls-exporter") && strcmp(name, "tls-server-end-point"))
        return -1;
    memcpy(out, fake_cb, sizeof(fake_cb));
    return (int)sizeof(fake_cb);
}

/* Runs an exchange up to the client-final; returns the step's result and
 * the refusal reason. */
static int run(const char *mech, proto_sasl_cb_fn cb, const char *first, const char *final,
               const char **refuse)
{
    struct proto_sasl s;
    const char *ch, *msg;
    const struct auth_scram_params *p;
    const unsigned char *proof;
    size_t len;
    int r;

    *refuse = NULL;
    if (proto_sasl_start_cb(&s, mech, strlen(mech), cb, NULL) < 0)
        return -100;
    r = step_b64(&s, first, &ch);
    if (r != SASL_SCRAM_LOOKUP)
        goto out;
    r = proto_sasl_scram_first(&s, &vector_params, SNONCE, &ch);
    if (r != SASL_CONTINUE || !final)
        goto out;
    r = step_b64(&s, final, &ch);
    if (r == SASL_SCRAM_CHECK)
        proto_sasl_scram_check(&s, &p, &msg, &len, &proof, refuse);
out:
    proto_sasl_clear(&s);
    return r;
}

static void test_vector(void)
{
    unsigned char salt[16], sig[AUTH_SCRAM_KEY_LEN], want[AUTH_SCRAM_KEY_LEN];
    struct proto_sasl s;
    const char *ch, *msg, *refuse;
    const struct auth_scram_params *p;
    const unsigned char *proof;
    size_t len;

    CHECK(base64_decode_strict("W22ZaJ0SNY7soEsUEjb6gQ==", 24, salt, sizeof(salt)) == 16,
          "vector salt");
    CHECK(auth_scram_derive("pencil", 6, salt, 16, 4096, &vector_secret) == AUTH_OK,
          "PBKDF2 of the vector's password");
    memcpy(vector_params.salt, salt, 16);
    vector_params.salt_len = 16;
    vector_params.iter = 4096;

    CHECK(proto_sasl_start(&s, "scram-sha-256", 13) == 0 && s.mech == SASL_MECH_SCRAM,
          "SCRAM-SHA-256 known (any case)");
    CHECK(step_b64(&s, C_FIRST, &ch) == SASL_SCRAM_LOOKUP && s.user_len == 4 &&
              !memcmp(s.user, "user", 4),
          "client-first read: user");
    CHECK(proto_sasl_scram_first(&s, &vector_params, SNONCE, &ch) == SASL_CONTINUE &&
              decodes_to(ch, S_FIRST),
          "server-first is the RFC's");
    CHECK(step_b64(&s, C_FINAL, &ch) == SASL_SCRAM_CHECK, "client-final read");
    proto_sasl_scram_check(&s, &p, &msg, &len, &proof, &refuse);
    CHECK(refuse == NULL, "nothing to refuse");
    CHECK(len == strlen("n=user,r=rOprNGfwEbeRWgbNEkqO," S_FIRST
                        ",c=biws,r=rOprNGfwEbeRWgbNEkqO" SNONCE) &&
              !memcmp(msg, "n=user,r=rOprNGfwEbeRWgbNEkqO," S_FIRST ",c=biws,r=", 30),
          "AuthMessage");
    CHECK(auth_scram_verify(&vector_secret, msg, len, proof, sig), "the vector's proof verifies");
    CHECK(base64_decode_strict(&S_FINAL[2], strlen(S_FINAL) - 2, want, sizeof(want)) == 32 &&
              !memcmp(sig, want, 32),
          "ServerSignature is the RFC's");
    CHECK(proto_sasl_scram_final(&s, sig, &ch) == SASL_CONTINUE && decodes_to(ch, S_FINAL),
          "server-final is the RFC's");
    CHECK(proto_sasl_step(&s, "x", 1, &ch) == SASL_BAD, "only an empty answer to server-final");

    /* the AuthMessage and proof outlive the exchange's state */
    char msg_copy[1024];
    unsigned char proof_copy[AUTH_SCRAM_KEY_LEN];
    memcpy(msg_copy, msg, len < sizeof(msg_copy) ? len : sizeof(msg_copy));
    memcpy(proof_copy, proof, sizeof(proof_copy));
    msg = msg_copy;
    proof = proof_copy;
    proto_sasl_clear(&s);

    /* a wrong password: the same exchange, another proof */
    struct auth_scram_secret other;
    unsigned char bad[AUTH_SCRAM_KEY_LEN];
    CHECK(auth_scram_derive("pencils", 7, salt, 16, 4096, &other) == AUTH_OK &&
              !auth_scram_verify(&other, msg, len, proof, sig),
          "another password's secret refuses the proof");
    memcpy(bad, proof, sizeof(bad));
    bad[0] ^= 1;
    CHECK(!auth_scram_verify(&vector_secret, msg, len, bad, sig), "a changed proof is refused");
}

static void test_done_step(void)
{
    struct proto_sasl s;
    const char *ch;
    unsigned char sig[32] = {0};

    proto_sasl_start(&s, "SCRAM-SHA-256", 13);
    CHECK(proto_sasl_step(&s, "", 0, &ch) == SASL_CONTINUE && !strcmp(ch, ""),
          "no initial response: empty challenge");
    step_b64(&s, C_FIRST, &ch);
    proto_sasl_scram_first(&s, &vector_params, SNONCE, &ch);
    step_b64(&s, C_FINAL, &ch);
    proto_sasl_scram_final(&s, sig, &ch);
    CHECK(proto_sasl_step(&s, "", 0, &ch) == SASL_SCRAM_DONE, "empty answer: done");
    proto_sasl_clear(&s);
    proto_sasl_start(&s, "SCRAM-SHA-256", 13);
    CHECK(proto_sasl_step(&s, "*", 1, &ch) == SASL_CANCEL, "* cancels");
    proto_sasl_clear(&s);
}

static void test_refusals(void)
{
    const char *why;
    char final[512], cb[256], cbb[256];
    unsigned char raw[128];

    for (size_t i = 0; i < sizeof(fake_cb); i++)
        fake_cb[i] = (unsigned char)(i * 7 + 1);

    CHECK(run("SCRAM-SHA-256", NULL, "m=x,n=user,r=abc", NULL, &why) == SASL_BAD,
          "m= (mandatory extension, no gs2 header): BAD");
    CHECK(run("SCRAM-SHA-256", NULL, "n,,m=x,n=user,r=abc", NULL, &why) == SASL_BAD,
          "reserved m= extension: BAD");
    CHECK(run("SCRAM-SHA-256", NULL, "n,,n=user", NULL, &why) == SASL_BAD, "no nonce: BAD");
    CHECK(run("SCRAM-SHA-256", NULL, "n,,n=user,r=a\x7f", NULL, &why) == SASL_BAD,
          "unprintable nonce: BAD");
    CHECK(run("SCRAM-SHA-256", NULL, "n,,n=us=41er,r=abc", NULL, &why) == SASL_BAD,
          "bad saslname escape: BAD");
    CHECK(run("SCRAM-SHA-256", NULL, "n,,n=user,r=abc,x", NULL, &why) == SASL_BAD,
          "malformed extension: BAD");
    CHECK(run("SCRAM-SHA-256", NULL, "x,,n=user,r=abc", NULL, &why) == SASL_BAD,
          "unknown gs2 flag: BAD");
    CHECK(run("SCRAM-SHA-256", NULL, "n,,n=user,r=abc,e=ext", NULL, &why) == SASL_CONTINUE,
          "optional extension ignored");
    CHECK(run("SCRAM-SHA-256-PLUS", NULL, C_FIRST, NULL, &why) == -100,
          "-PLUS without TLS: unknown mechanism");

    CHECK(run("SCRAM-SHA-256", NULL, C_FIRST, C_FINAL, &why) == SASL_SCRAM_CHECK && !why,
          "the vector: nothing refused");
    CHECK(run("SCRAM-SHA-256", NULL, "n,a=user,n=user,r=rOprNGfwEbeRWgbNEkqO",
              "c=bixhPXVzZXIs,r=rOprNGfwEbeRWgbNEkqO" SNONCE
              ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
              &why) == SASL_SCRAM_CHECK &&
              !why,
          "authzid equal to the user accepted");
    CHECK(run("SCRAM-SHA-256", NULL, "n,a=admin,n=user,r=rOprNGfwEbeRWgbNEkqO",
              "c=bixhPWFkbWluLA==,r=rOprNGfwEbeRWgbNEkqO" SNONCE
              ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
              &why) == SASL_SCRAM_CHECK &&
              why && strstr(why, "authorization"),
          "authzid of another user refused");
    CHECK(run("SCRAM-SHA-256", NULL, C_FIRST,
              "c=biws,r=rOprNGfwEbeRWgbNEkqOOTHERNONCE,p=dHzbZapWIk4jUhN+"
              "Ute9ytag9zjfMHgsqmmiz7AndVQ=",
              &why) == SASL_SCRAM_CHECK &&
              why && strstr(why, "nonce"),
          "another exchange's nonce refused (replay)");
    CHECK(run("SCRAM-SHA-256", NULL, C_FIRST,
              "c=eSws,r=rOprNGfwEbeRWgbNEkqO" SNONCE
              ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
              &why) == SASL_SCRAM_CHECK &&
              why && strstr(why, "header"),
          "c= not the gs2 header refused");
    CHECK(run("SCRAM-SHA-256", NULL, C_FIRST, "c=biws,r=rOprNGfwEbeRWgbNEkqO" SNONCE ",p=AAAA",
              &why) == SASL_BAD,
          "short proof: BAD");
    CHECK(run("SCRAM-SHA-256", NULL, C_FIRST, "r=rOprNGfwEbeRWgbNEkqO" SNONCE, &why) == SASL_BAD,
          "final without c=: BAD");

    /* channel binding */
    CHECK(run("SCRAM-SHA-256", cb_both, "y,,n=user,r=rOprNGfwEbeRWgbNEkqO",
              "c=eSws,r=rOprNGfwEbeRWgbNEkqO" SNONCE
              ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
              &why) == SASL_SCRAM_CHECK &&
              why && strstr(why, "downgrade"),
          "'y' while -PLUS is offered refused");
    CHECK(run("SCRAM-SHA-256", NULL, "y,,n=user,r=rOprNGfwEbeRWgbNEkqO",
              "c=eSws,r=rOprNGfwEbeRWgbNEkqO" SNONCE
              ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
              &why) == SASL_SCRAM_CHECK &&
              !why,
          "'y' without -PLUS offered accepted");
    CHECK(run("SCRAM-SHA-256-PLUS", cb_both, C_FIRST, C_FINAL, &why) == SASL_SCRAM_CHECK && why &&
              strstr(why, "without channel binding"),
          "-PLUS with 'n' refused");
    CHECK(run("SCRAM-SHA-256", cb_both, "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO", NULL,
              &why) == SASL_CONTINUE,
          "p= with SCRAM-SHA-256 goes on (refused at the end)");

    /* -PLUS with the right and a wrong binding */
    memcpy(raw, "p=tls-exporter,,", 16);
    memcpy(raw + 16, fake_cb, 32);
    base64_encode(raw, 48, cbb, sizeof(cbb));
    snprintf(final, sizeof(final),
             "c=%s,r=rOprNGfwEbeRWgbNEkqO%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", cbb,
             SNONCE);
    CHECK(run("SCRAM-SHA-256-PLUS", cb_both, "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO", final,
              &why) == SASL_SCRAM_CHECK &&
              !why,
          "-PLUS tls-exporter with this connection's binding accepted");
    raw[20] ^= 1;
    base64_encode(raw, 48, cb, sizeof(cb));
    snprintf(final, sizeof(final),
             "c=%s,r=rOprNGfwEbeRWgbNEkqO%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", cb,
             SNONCE);
    CHECK(run("SCRAM-SHA-256-PLUS", cb_both, "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO", final,
              &why) == SASL_SCRAM_CHECK &&
              why && strstr(why, "mismatch"),
          "-PLUS with another connection's binding refused (man in the middle)");
    CHECK(run("SCRAM-SHA-256-PLUS", cb_both, "p=tls-unique,,n=user,r=rOprNGfwEbeRWgbNEkqO", NULL,
              &why) == SASL_CONTINUE,
          "tls-unique goes on (refused at the end)");
}

static void test_secret_text(void)
{
    char text[AUTH_SCRAM_TEXT_MAX];
    struct auth_scram_secret back;

    CHECK(auth_scram_secret_format(&vector_secret, text, sizeof(text)) == AUTH_OK &&
              !strncmp(text, "SCRAM-SHA-256:4096:W22ZaJ0SNY7soEsUEjb6gQ==:", 44),
          "secret text form");
    CHECK(auth_scram_secret_parse(text, &back) == AUTH_OK && back.iter == 4096 &&
              back.salt_len == 16 && !memcmp(&back.stored_key, vector_secret.stored_key, 32) &&
              !memcmp(&back.server_key, vector_secret.server_key, 32),
          "secret text read back");
    strcat(text, ":x");
    CHECK(auth_scram_secret_parse(text, &back) == AUTH_E_FAIL, "trailing field refused");
    CHECK(auth_scram_secret_parse("SCRAM-SHA-256:100:AAAA:AAAA:AAAA", &back) == AUTH_E_FAIL,
          "iteration count under 4096 refused");
    CHECK(auth_scram_secret_parse("", &back) == AUTH_E_FAIL, "empty refused");
    CHECK(auth_scram_new_secret("pencil", 6, 4096, &back) == AUTH_OK && back.salt_len == 16 &&
              memcmp(back.stored_key, vector_secret.stored_key, 32) != 0,
          "a new secret has its own salt");
}

/* RFC 5802's Normalize() as this server applies it: the PRECIS
 * OpaqueString profile (RFC 8265), the successor of SASLprep. RFC 4013's
 * examples where they apply to that profile, and what it does otherwise. */
static bool prepares_to(const char *in, const char *want)
{
    char out[AUTH_SCRAM_PREPARED_MAX];
    long n = auth_scram_prepare(in, strlen(in), out, sizeof(out));

    return n == (long)strlen(want) && memcmp(out, want, (size_t)n) == 0;
}

static bool same_secret(const char *a, const char *b)
{
    static const unsigned char salt[16] = "sixteen byte slt";
    struct auth_scram_secret x, y;

    return auth_scram_derive(a, strlen(a), salt, 16, 4096, &x) == AUTH_OK &&
           auth_scram_derive(b, strlen(b), salt, 16, 4096, &y) == AUTH_OK &&
           !memcmp(x.stored_key, y.stored_key, 32) && !memcmp(x.server_key, y.server_key, 32);
}

static void test_prepare(void)
{
    char small[4];

    /* RFC 4013 section 3, examples 2 and 3: no case mapping */
    CHECK(prepares_to("user", "user") && prepares_to("USER", "USER"), "ASCII kept as it is");
    /* non-ASCII spaces (RFC 4013 C.1.2; OpaqueString's additional mapping) */
    CHECK(prepares_to("pass\u00a0word", "pass word"), "U+00A0 becomes a space");
    CHECK(prepares_to("a\u3000b\u2003c", "a b c"), "U+3000 and U+2003 become spaces");
    /* NFC: a decomposed accent is composed */
    CHECK(prepares_to("e\u0301te\u0301", "\u00e9t\u00e9"), "NFC: e + U+0301 is U+00E9");
    CHECK(prepares_to("\u00e9t\u00e9", "\u00e9t\u00e9"), "NFC: composed text kept");
    /* examples 4 and 5: SASLprep's NFKC gives "a" and "IX"; OpaqueString
     * normalizes with NFC, which keeps compatibility characters */
    CHECK(prepares_to("\u00aa", "\u00aa"), "U+00AA kept (NFC, not NFKC)");
    CHECK(prepares_to("\u2168", "\u2168"), "U+2168 kept (NFC, not NFKC)");
    /* example 1: SASLprep maps U+00AD to nothing ("IX"); OpaqueString
     * disallows default ignorable code points, and a string the profile
     * refuses is used as sent, as is example 6's control character */
    CHECK(prepares_to("I\u00adX", "I\u00adX"), "I U+00AD X: refused by the profile, kept");
    CHECK(prepares_to("a\x07"
                      "b",
                      "a\x07"
                      "b"),
          "U+0007: refused by the profile, kept");
    CHECK(prepares_to("a\xff"
                      "b",
                      "a\xff"
                      "b"),
          "invalid UTF-8 kept as sent");
    /* example 7 (bidirectional check): OpaqueString has no bidi rule */
    CHECK(prepares_to("\u0627"
                      "1",
                      "\u0627"
                      "1"),
          "U+0627 1 allowed");
    CHECK(auth_scram_prepare("abcd", 4, small, sizeof(small)) == -1, "too small a buffer");

    /* the secrets are made of the prepared password */
    CHECK(same_secret("pass\u00a0word", "pass word"), "secret: U+00A0 is a space");
    CHECK(same_secret("e\u0301t\u00e9 \u00e0 Gen\u00e8ve", "\u00e9t\u00e9 \u00e0 Gen\u00e8ve"),
          "secret: decomposed and composed accents agree");
    CHECK(!same_secret("\u2168", "IX"), "secret: U+2168 is not IX");
    CHECK(!same_secret("pass word", "password"), "secret: a space still counts");
}

/* The user name of client-first is prepared the same way before it is
 * looked up; the AuthMessage keeps the bytes as sent. */
static void test_prepared_name(void)
{
    struct proto_sasl s;
    const char *ch, *msg, *refuse;
    const struct auth_scram_params *p;
    const unsigned char *proof;
    size_t len;
    const char *first = "n,,n=jose\u0301@example.org,r=abcdefgh";
    const char *want = "jos\u00e9@example.org";

    CHECK(proto_sasl_start(&s, "SCRAM-SHA-256", 13) == 0 &&
              step_b64(&s, first, &ch) == SASL_SCRAM_LOOKUP && s.user_len == strlen(want) &&
              !memcmp(s.user, want, s.user_len),
          "client-first: the user name is prepared (NFC)");
    CHECK(proto_sasl_scram_first(&s, &vector_params, SNONCE, &ch) == SASL_CONTINUE,
          "server-first after a prepared name");
    char final[256];
    snprintf(final, sizeof(final), "c=biws,r=abcdefgh%s,p=%s", SNONCE,
             "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    CHECK(step_b64(&s, final, &ch) == SASL_SCRAM_CHECK, "client-final read");
    proto_sasl_scram_check(&s, &p, &msg, &len, &proof, &refuse);
    CHECK(refuse == NULL && len > strlen(first) - 3 && !memcmp(msg, first + 3, strlen(first) - 3),
          "the AuthMessage has the name as sent");
    proto_sasl_clear(&s);

    CHECK(proto_sasl_start(&s, "SCRAM-SHA-256", 13) == 0, "start");
    CHECK(step_b64(&s, "n,a=jos\u00e9@example.org,n=jose\u0301@example.org,r=abcdefgh", &ch) ==
              SASL_SCRAM_LOOKUP,
          "authzid in NFC, user name decomposed");
    CHECK(proto_sasl_scram_first(&s, &vector_params, SNONCE, &ch) == SASL_CONTINUE, "first");
    snprintf(final, sizeof(final), "c=%s,r=abcdefgh%s,p=%s",
             "bixhPWpvc8OpQGV4YW1wbGUub3JnLA==", SNONCE,
             "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    CHECK(step_b64(&s, final, &ch) == SASL_SCRAM_CHECK, "final");
    proto_sasl_scram_check(&s, &p, &msg, &len, &proof, &refuse);
    CHECK(refuse == NULL, "the prepared authzid is the prepared user");
    proto_sasl_clear(&s);
}

int main(void)
{
    test_vector();
    test_prepare();
    test_prepared_name();
    test_done_step();
    test_refusals();
    test_secret_text();
    return check_summary();
}
