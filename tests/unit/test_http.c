/* protocol/http without sockets: the request head parser on whole heads and
 * on heads fed a byte at a time (the same answer, the search never going
 * back), its limits and fields; the autoconfig and autodiscover writers and
 * the POX reader. */
#include <string.h>

#include "protocol/http/http_int.h"
#include "server/base/config.h"
#include "tests/unit/check.h"

static const struct http_limits lim = {
    .max_request_line = 64, .max_header_bytes = 256, .max_headers = 4};

static long parse(const char *p, struct http_request *r, const char **why)
{
    struct http_scan sc = {0};
    memset(r, 0, sizeof(*r));
    return http_parse_head(p, strlen(p), &sc, &lim, r, why);
}

/* The same head fed one byte more at each call: the answer comes at the
 * same place as for the whole, and while more is wanted the search has
 * looked at every byte given (it never starts over). */
static long parse_bytewise(const char *p, bool *went_back)
{
    struct http_scan sc = {0};
    struct http_request r;
    const char *why;
    size_t len = strlen(p);

    *went_back = false;
    for (size_t n = 1; n <= len; n++) {
        long got = http_parse_head(p, n, &sc, &lim, &r, &why);
        if (got)
            return got;
        if (sc.pos != n)
            *went_back = true;
    }
    return 0;
}

static void test_statuses(void)
{
    static const struct {
        const char *in;
        long want;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27},
        {"GET / HTTP/1.1\nHost: a\n\n", 24},
        {"GET / HTTP/1.0\r\n\r\n", 18},
        {"GET / HTTP/1.1\r\n\r\n", -400}, /* no Host */
        {"GET /\r\n", -400},              /* HTTP/0.9 */
        {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", -505},
        {"GET / HTTP/1.10\r\nHost: a\r\n\r\n", -400},
        {"GET / http/1.1\r\nHost: a\r\n\r\n", -400},
        {"PUT / HTTP/1.1\r\nHost: a\r\n\r\n", -405},
        {"BREW / HTTP/1.1\r\nHost: a\r\n\r\n", -501},
        {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", -400},
        {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", -400},
        {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", -400},
        {"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", -400},
        {"GET * HTTP/1.1\r\nHost: a\r\n\r\n", -400},
        {"GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", -400},
        {"GET http:// HTTP/1.1\r\nHost: a\r\n\r\n", -400},
        {"GET http://u@h/ HTTP/1.1\r\nHost: a\r\n\r\n", -400},
        {"GET http://h HTTP/1.1\r\nHost: a\r\n\r\n", 34},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\n x\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", -411},
        {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", -501},
        {"GET / HTTP/1.1\r\nHost: a\r\nExpect: tea\r\n\r\n", -417},
        {"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", -431},
        {"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n",
         -414},
        {"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", -414},
        {"GETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGETGET", -501},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_request r;
        const char *why = NULL;
        bool back;
        long got = parse(cases[i].in, &r, &why);
        char name[160];
        snprintf(name, sizeof(name), "case %zu: %.*s -> %ld (got %ld)", i,
                 (int)strcspn(cases[i].in, "\r\n"), cases[i].in, cases[i].want, got);
        CHECK(got == cases[i].want, name);
        CHECK(got >= 0 || (why && *why));
        long bw = parse_bytewise(cases[i].in, &back);
        CHECK(bw == got);
        CHECK(!back);
    }
    /* header bytes: a long field, and a head that never ends */
    char big[400];
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\nX: %0300d\r\n\r\n", 0);
    struct http_request r;
    const char *why;
    CHECK(parse(big, &r, &why) == -431, "a head over max_header_bytes: 431");
    bool back;
    CHECK(parse_bytewise(big, &back) == -431 && !back, "the same, a byte at a time");
}

static bool span_is(const char *p, size_t len, const char *want)
{
    return p && len == strlen(want) && !memcmp(p, want, len);
}

static void test_fields(void)
{
    struct http_request r;
    const char *why;

    CHECK(parse("POST /x/y?a=1&b HTTP/1.1\r\nhost:  h:80 \r\ncontent-length: 12\r\n"
                "Connection: foo, Close\r\nExpect: 100-continue\r\n\r\n",
                &r, &why) > 0,
          "a POST head");
    CHECK(r.method == HTTP_POST && r.minor == 1);
    CHECK(span_is(r.path, r.path_len, "/x/y"), "path");
    CHECK(span_is(r.query, r.query_len, "a=1&b"), "query");
    CHECK(span_is(r.host, r.host_len, "h:80"), "Host without its spaces");
    CHECK(r.has_length && r.content_length == 12, "Content-Length");
    CHECK(r.close && r.expect_continue, "Connection: close and Expect");

    CHECK(parse("GET http://Auto.Example:8/p?q HTTP/1.1\r\nHost: other\r\n\r\n", &r, &why) > 0);
    CHECK(span_is(r.host, r.host_len, "Auto.Example:8"),
          "absolute-form: the authority is the host");
    CHECK(span_is(r.path, r.path_len, "/p") && span_is(r.query, r.query_len, "q"));
    CHECK(parse("GET https://h?x HTTP/1.1\r\nHost: h\r\n\r\n", &r, &why) > 0);
    CHECK(span_is(r.path, r.path_len, "/"), "absolute-form without path: /");

    CHECK(parse("HEAD / HTTP/1.0\r\n\r\n", &r, &why) > 0 && r.close, "HTTP/1.0 closes");
    CHECK(parse("HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r, &why) > 0 && !r.close,
          "HTTP/1.0 with keep-alive stays");
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n", &r, &why) > 0 && !r.close, "HTTP/1.1 stays");
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", &r,
                &why) > 0 &&
              r.content_length == 5,
          "the same Content-Length twice");
}

static const char *AD_REQ =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/"
    "requestschema/2006\">\n <Request>\n  <EMailAddress> %s </EMailAddress>\n"
    "  <AcceptableResponseSchema>%s</AcceptableResponseSchema>\n </Request>\n</Autodiscover>\n";
static const char *SCHEMA =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";

static int autodiscover(const struct conf *cf, const char *xml, struct buf *out)
{
    buf_reset(out);
    return http_autodiscover(cf, "host.example", xml, strlen(xml), out);
}

static void test_autodiscover(void)
{
    struct conf cf;
    struct buf out = {0};
    char xml[1024];
    char err[128];

    conf_defaults(&cf);
    conf_set(&cf, "imaps_listen", "127.0.0.1:1993", err, sizeof(err));
    conf_set(&cf, "pop3s_listen", "", err, sizeof(err));

    snprintf(xml, sizeof(xml), AD_REQ, "o&amp;b@Example.ORG", SCHEMA);
    CHECK(autodiscover(&cf, xml, &out) == 200, "a POX request");
    CHECK(strstr(out.p, "<LoginName>o&amp;b@Example.ORG</LoginName>") != NULL,
          "the address escaped again");
    CHECK(strstr(out.p, "<Type>IMAP</Type>") && strstr(out.p, "<Port>1993</Port>") &&
              !strstr(out.p, "<Type>POP3</Type>") && strstr(out.p, "<Type>SMTP</Type>") &&
              strstr(out.p, "<Port>465</Port>"),
          "IMAPS, no POP3 without pop3s_listen, and the MTA's submission port");
    CHECK(strstr(out.p, "<Server>host.example</Server>") && !strstr(out.p, "<SSL>off"),
          "the host name, SSL on");

    snprintf(xml, sizeof(xml), AD_REQ, "a@example.org",
             "https://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a");
    CHECK(autodiscover(&cf, xml, &out) == 200 && strstr(out.p, "<Action>settings"),
          "the schema over https");
    snprintf(xml, sizeof(xml), AD_REQ, "a@example.org", "urn:other");
    CHECK(autodiscover(&cf, xml, &out) == 200 && strstr(out.p, "<ErrorCode>601"),
          "another schema: 601");
    snprintf(xml, sizeof(xml), AD_REQ, "a&lt;b@example.org", SCHEMA);
    CHECK(autodiscover(&cf, xml, &out) == 200 && strstr(out.p, "<ErrorCode>600"),
          "an address with <: 600");
    conf_set(&cf, "autoconfig_domains", "example.net", err, sizeof(err));
    snprintf(xml, sizeof(xml), AD_REQ, "a@example.org", SCHEMA);
    CHECK(autodiscover(&cf, xml, &out) == 200 && strstr(out.p, "<ErrorCode>603"),
          "a domain not served: 603");
    conf_set(&cf, "autoconfig_domains", "", err, sizeof(err));

    static const char *const bad[] = {
        "",
        "<Autodiscover/><Autodiscover/>",
        "<!DOCTYPE x><Autodiscover/>",
        "<Autodiscover><![CDATA[x]]></Autodiscover>",
        "<?pi x?><Autodiscover/>",
        "<Autodiscover><Request><EMailAddress>a@b.c</EMailAddress></Request>",
        "<Autodiscover><Request></Autodiscover></Request>",
        "<Other><Request><EMailAddress>a@b.c</EMailAddress></Request></Other>",
        "<Autodiscover><Request><EMailAddress>&ent;</EMailAddress></Request></Autodiscover>",
        "<Autodiscover><Request><EMailAddress>&#0;</EMailAddress></Request></Autodiscover>",
        "<Autodiscover a='<'/>",
        "<Autodiscover a=b/>",
        "<Autodiscover><a><a><a><a><a><a><a><a><a></a></a></a></a></a></a></a></a></a>"
        "</Autodiscover>",
        "text<Autodiscover/>",
        "<Autodiscover><Request><EMailAddress>a</EMailAddress><EMailAddress>b"
        "</EMailAddress></Request></Autodiscover>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char name[160];
        snprintf(name, sizeof(name), "refused: %.70s", bad[i]);
        CHECK(autodiscover(&cf, bad[i], &out) == 400, name);
    }
    CHECK(autodiscover(&cf,
                       "<!-- c --><a:Autodiscover xmlns:a='x'><a:Request>"
                       "<a:EMailAddress>a@b.example</a:EMailAddress><a:AcceptableResponseSchema>"
                       "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/"
                       "2006a</a:AcceptableResponseSchema></a:Request></a:Autodiscover>\n",
                       &out) == 200 &&
              strstr(out.p, "<LoginName>a@b.example<"),
          "prefixed names and a comment");
    buf_free(&out);
}

static int autoconfig(const struct conf *cf, const char *head, struct buf *out)
{
    struct http_request r;
    const char *why;
    buf_reset(out);
    if (parse(head, &r, &why) <= 0)
        return -1;
    return http_autoconfig(cf, "host.example", &r, out);
}

static void test_autoconfig(void)
{
    struct conf cf;
    struct buf out = {0};
    char err[128];

    conf_defaults(&cf);
    conf_set(&cf, "imaps_listen", "[::1]:1993", err, sizeof(err));
    conf_set(&cf, "pop3s_listen", "*:1995", err, sizeof(err));
    conf_set(&cf, "autoconfig_hostname", "m&m.example", err, sizeof(err));
    CHECK(autoconfig(&cf, "GET /m?emailaddress=a%2Bb%40Ex.ORG HTTP/1.1\r\nHost: h\r\n\r\n", &out) ==
              200,
          "an address, percent-encoded");
    CHECK(strstr(out.p, "<emailProvider id=\"ex.org\">") && strstr(out.p, "<port>1993<") &&
              strstr(out.p, "<port>1995<") && strstr(out.p, "<hostname>m&amp;m.example<") &&
              !strstr(out.p, "plain") && !strstr(out.p, "STARTTLS"),
          "the domain lower-cased, both ports, the host name escaped, SSL only");
    CHECK(autoconfig(&cf, "GET /m HTTP/1.1\r\nHost: AutoConfig.Example.NET:443\r\n\r\n", &out) ==
                  200 &&
              strstr(out.p, "<domain>example.net<"),
          "no address: the domain of autoconfig.DOMAIN");
    CHECK(autoconfig(&cf, "GET /m HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", &out) == 400,
          "no address, no domain, no default_domain: 400");
    conf_set(&cf, "default_domain", "d.example", err, sizeof(err));
    CHECK(autoconfig(&cf, "GET /m HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", &out) == 200 &&
              strstr(out.p, "<domain>d.example<"),
          "then default_domain");
    static const char *const bad[] = {"a",         "a@",     "@b.c",  "a@b..c",   "a@-",
                                      "a%3c@b.c",  "%",      "%4",    "a@b.c%00", "a%20b@c.d",
                                      "a@1.2.3.4", "a@b-.c", "a@b.c."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char head[128], name[64];
        snprintf(head, sizeof(head), "GET /m?x=1&emailaddress=%s HTTP/1.1\r\nHost: h\r\n\r\n",
                 bad[i]);
        snprintf(name, sizeof(name), "refused address %s", bad[i]);
        CHECK(autoconfig(&cf, head, &out) == 400, name);
    }
    conf_set(&cf, "autoconfig_domains", "a.example,b.example", err, sizeof(err));
    CHECK(autoconfig(&cf, "GET /m?emailaddress=x@B.example HTTP/1.1\r\nHost: h\r\n\r\n", &out) ==
              200,
          "a domain in autoconfig_domains");
    CHECK(autoconfig(&cf, "GET /m?emailaddress=x@c.example HTTP/1.1\r\nHost: h\r\n\r\n", &out) ==
              404,
          "a domain not in it: 404");
    conf_set(&cf, "imaps_listen", "", err, sizeof(err));
    conf_set(&cf, "pop3s_listen", "", err, sizeof(err));
    CHECK(autoconfig(&cf, "GET /m?emailaddress=x@a.example HTTP/1.1\r\nHost: h\r\n\r\n", &out) ==
              404,
          "no implicit-TLS listener: nothing to offer");
    buf_free(&out);
}

int main(void)
{
    test_statuses();
    test_fields();
    test_autodiscover();
    test_autoconfig();
    return check_summary();
}
