/* Unit tests of the pieces every protocol shares: the line reader (limits,
 * CRLF and LF, literals, clearing after STARTTLS) and the SASL exchanges. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/linebuf.h"
#include "protocol/sasl.h"

#include "tests/unit/check.h"

static bool line_is(struct linebuf *lb, const char *want)
{
    const char *l;
    size_t n;
    return linebuf_line(lb, &l, &n) == LINEBUF_LINE && n == strlen(want) && !memcmp(l, want, n);
}

static void test_linebuf(void)
{
    struct linebuf lb;
    const char *l, *p;
    size_t n;

    linebuf_init(&lb, 1024);
    linebuf_append(&lb, "a NOOP\r\nb CAPA", 14);
    CHECK(line_is(&lb, "a NOOP"), "CRLF line");
    CHECK(linebuf_line(&lb, &l, &n) == LINEBUF_MORE, "partial line waits");
    linebuf_append(&lb, "BILITY\nc", 8);
    CHECK(line_is(&lb, "b CAPABILITY"), "line completed across appends, bare LF accepted");
    linebuf_append(&lb, "\r\n", 2);
    CHECK(line_is(&lb, "c"), "single-character line");
    CHECK(linebuf_line(&lb, &l, &n) == LINEBUF_MORE && lb.p == NULL,
          "drained buffer is released (idle sessions hold no memory)");

    /* literal bytes are taken raw, CR and LF included */
    linebuf_append(&lb, "x\r\ny\r\nrest\r\n", 12);
    CHECK(linebuf_take(&lb, 6, &p) == 6 && !memcmp(p, "x\r\ny\r\n", 6), "literal taken raw");
    CHECK(line_is(&lb, "rest"), "line after literal");
    linebuf_append(&lb, "abc", 3);
    CHECK(linebuf_take(&lb, 10, &p) == 3, "partial literal");

    /* limits */
    char *big = malloc(5000);
    memset(big, 'A', 5000);
    linebuf_append(&lb, big, 2000);
    CHECK(linebuf_line(&lb, &l, &n) == LINEBUF_TOOLONG, "line over the limit refused");
    CHECK(lb.len == 0, "over-long line is not kept");
    linebuf_append(&lb, big, 5000);
    CHECK(linebuf_line(&lb, &l, &n) == LINEBUF_MORE && lb.len == 0,
          "rest of the over-long line is skipped, not buffered");
    linebuf_append(&lb, "AAA\r\nnext\r\n", 11);
    CHECK(line_is(&lb, "next"), "reading resumes after the over-long line ends");
    big[1022] = '\r';
    big[1023] = '\n';
    linebuf_append(&lb, big, 1024);
    CHECK(linebuf_line(&lb, &l, &n) == LINEBUF_LINE && n == 1022, "line of exactly the limit");
    big[1023] = 'A';
    big[1024] = '\n';
    linebuf_append(&lb, big, 1025);
    CHECK(linebuf_line(&lb, &l, &n) == LINEBUF_TOOLONG, "one byte over the limit refused");
    linebuf_append(&lb, "ok\r\n", 4);
    CHECK(line_is(&lb, "ok"), "next line after it is fine");

    /* a second limit on what is skipped of an over-long line */
    linebuf_limits(&lb, 1024, 4096);
    memset(big, 'A', 5000);
    linebuf_append(&lb, big, 1500);
    CHECK(linebuf_line(&lb, &l, &n) == LINEBUF_TOOLONG && lb.skipping,
          "over the limit: said before the end of the line");
    linebuf_append(&lb, big, 2000);
    CHECK(linebuf_line(&lb, &l, &n) == LINEBUF_MORE, "skipped, still under the skip limit");
    linebuf_append(&lb, big, 1000);
    CHECK(linebuf_line(&lb, &l, &n) == LINEBUF_ENDLESS, "past the skip limit: said once");
    linebuf_append(&lb, big, 5000);
    CHECK(linebuf_line(&lb, &l, &n) == LINEBUF_MORE && lb.len == 0, "and still skipped");
    linebuf_append(&lb, "A\nnext\n", 8);
    CHECK(line_is(&lb, "next"), "reading resumes after it");
    linebuf_append(&lb, big, 2000);
    CHECK(linebuf_line(&lb, &l, &n) == LINEBUF_TOOLONG, "the next over-long line");
    linebuf_append(&lb, "\nafter\n", 7);
    CHECK(line_is(&lb, "after"), "ends under the skip limit: no ENDLESS");
    big[4999] = '\n';
    linebuf_append(&lb, big, 5000);
    CHECK(linebuf_line(&lb, &l, &n) == LINEBUF_ENDLESS,
          "a whole line past the skip limit at once is ENDLESS too");
    linebuf_append(&lb, "x\n", 2);
    CHECK(line_is(&lb, "x"), "and reading goes on after it");
    linebuf_limits(&lb, 1024, 0);
    free(big);

    /* STARTTLS: pipelined input is dropped */
    linebuf_append(&lb, "b NOOP\r\nc LOGIN x y\r\n", 21);
    linebuf_clear(&lb);
    CHECK(linebuf_line(&lb, &l, &n) == LINEBUF_MORE && linebuf_pending(&lb) == 0,
          "clear drops pipelined commands");
    linebuf_free(&lb);
}

static void test_sasl(void)
{
    struct proto_sasl s;
    const char *ch;

    CHECK(proto_sasl_start(&s, "plain", 5) == 0 && proto_sasl_start(&s, "LOGIN", 5) == 0,
          "PLAIN and LOGIN known, any case");
    CHECK(proto_sasl_start(&s, "CRAM-MD5", 8) < 0, "other mechanisms refused");

    /* PLAIN with an initial response: "\0alice\0secret" */
    proto_sasl_start(&s, "PLAIN", 5);
    CHECK(proto_sasl_step(&s, "AGFsaWNlAHNlY3JldA==", 20, &ch) == SASL_DONE && s.user_len == 5 &&
              !memcmp(s.user, "alice", 5) && s.pass_len == 6 && !memcmp(s.pass, "secret", 6),
          "PLAIN initial response decoded");
    proto_sasl_clear(&s);
    CHECK(s.pass[0] == 0 && s.pass_len == 0, "credentials wiped");

    /* PLAIN without initial response asks with an empty challenge */
    proto_sasl_start(&s, "PLAIN", 5);
    CHECK(proto_sasl_step(&s, "", 0, &ch) == SASL_CONTINUE && !strcmp(ch, ""),
          "PLAIN asks for the response");
    CHECK(proto_sasl_step(&s, "AGFsaWNlAHNlY3JldA==", 20, &ch) == SASL_DONE,
          "PLAIN response after continuation");

    proto_sasl_start(&s, "PLAIN", 5);
    CHECK(proto_sasl_step(&s, "AGFsaWNlAHNlY3JldA", 18, &ch) == SASL_BAD, "missing padding: BAD");
    proto_sasl_start(&s, "PLAIN", 5);
    CHECK(proto_sasl_step(&s, "!!!!", 4, &ch) == SASL_BAD, "non-base64: BAD");
    proto_sasl_start(&s, "PLAIN", 5);
    CHECK(proto_sasl_step(&s, "YWxpY2U=", 8, &ch) == SASL_BAD, "PLAIN without NULs: BAD");
    proto_sasl_start(&s, "PLAIN", 5);
    CHECK(proto_sasl_step(&s, "*", 1, &ch) == SASL_CANCEL, "* cancels");

    /* EXTERNAL: the message is the authorization identity, maybe empty */
    proto_sasl_start(&s, "external", 8);
    CHECK(s.mech == SASL_MECH_EXTERNAL && proto_sasl_step(&s, "=", 1, &ch) == SASL_DONE &&
              s.user_len == 0 && proto_sasl_metric(&s) == METRICS_MECH_EXTERNAL,
          "EXTERNAL with an empty initial response");
    proto_sasl_start(&s, "EXTERNAL", 8);
    CHECK(proto_sasl_step(&s, "", 0, &ch) == SASL_CONTINUE && !strcmp(ch, "") &&
              proto_sasl_step(&s, "", 0, &ch) == SASL_DONE && s.user_len == 0,
          "EXTERNAL without initial response: empty challenge, empty answer");
    proto_sasl_start(&s, "EXTERNAL", 8);
    CHECK(proto_sasl_step(&s, "Ym9i", 4, &ch) == SASL_DONE && s.user_len == 3 &&
              !memcmp(s.user, "bob", 3),
          "EXTERNAL authorization identity decoded");
    proto_sasl_start(&s, "EXTERNAL", 8);
    CHECK(proto_sasl_step(&s, "AGJvYg==", 8, &ch) == SASL_BAD, "EXTERNAL identity with NUL: BAD");

    /* LOGIN: Username:, Password: */
    proto_sasl_start(&s, "LOGIN", 5);
    CHECK(proto_sasl_step(&s, "", 0, &ch) == SASL_CONTINUE && !strcmp(ch, "VXNlcm5hbWU6"),
          "LOGIN asks Username:");
    CHECK(proto_sasl_step(&s, "YWxpY2U=", 8, &ch) == SASL_CONTINUE && !strcmp(ch, "UGFzc3dvcmQ6"),
          "LOGIN asks Password:");
    CHECK(proto_sasl_step(&s, "c2VjcmV0", 8, &ch) == SASL_DONE && s.user_len == 5 &&
              s.pass_len == 6 && !memcmp(s.pass, "secret", 6),
          "LOGIN done");
    proto_sasl_start(&s, "LOGIN", 5);
    CHECK(proto_sasl_step(&s, "YWxpY2U=", 8, &ch) == SASL_CONTINUE && !strcmp(ch, "UGFzc3dvcmQ6"),
          "LOGIN initial response is the user name");
    CHECK(proto_sasl_step(&s, "c2Vj\x01cmV0", 9, &ch) == SASL_BAD, "LOGIN bad base64: BAD");
    proto_sasl_start(&s, "LOGIN", 5);
    CHECK(proto_sasl_step(&s, "AGFsaWNl", 8, &ch) == SASL_BAD, "LOGIN user with NUL: BAD");
    proto_sasl_clear(&s);
}

int main(void)
{
    test_linebuf();
    test_sasl();
    return check_summary();
}
