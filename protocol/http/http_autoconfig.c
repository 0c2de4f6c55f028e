/* Mail-client set-up from the configuration: Thunderbird's autoconfig
 * (clientConfig version 1.1) and Outlook's POX autodiscover (request schema
 * outlook/requestschema/2006, response schema outlook/responseschema/2006a).
 * Both offer only IMAP and POP3 over implicit TLS (imaps_listen,
 * pop3s_listen), never a plaintext or STARTTLS option. The autodiscover
 * request is read by a small, strict XML reader: no DTD, no CDATA, no
 * processing instructions beyond the declaration, bounded depth, names and
 * texts; everything written back is escaped. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "protocol/http/http_int.h"
#include "server/base/config.h"

#define MAX_ADDRESS 254
#define MAX_DOMAIN 253

#define AD_RESPONSE_SCHEMA                                                                         \
    "://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"

/* ---- addresses and domains */

/* A domain name: LDH labels of 1 to 63 characters, neither starting nor
 * ending with '-', 1 to 253 in all, the last one not all digits (an IPv4
 * address is no mail domain); written lower-case into out (MAX_DOMAIN + 1
 * bytes). */
static bool domain_ok(const char *d, size_t len, char *out)
{
    size_t label = 0;
    bool alpha = false; /* in the current label */

    if (!len || len > MAX_DOMAIN)
        return false;
    for (size_t i = 0; i <= len; i++) {
        unsigned char ch = i < len ? (unsigned char)d[i] : '.';
        if (ch == '.') {
            if (!label || d[i - 1] == '-')
                return false;
            if (i == len)
                return alpha;
            label = 0;
            alpha = false;
            out[i] = '.';
            continue;
        }
        if (!isalnum(ch) && ch != '-')
            return false;
        if ((ch == '-' && !label) || ++label > 63)
            return false;
        alpha |= isalpha(ch) != 0;
        out[i] = (char)tolower(ch);
        out[i + 1] = '\0';
    }
    return false;
}

/* local@domain: a local part of printable characters without the ones
 * that would need quoting (or UTF-8), and a domain name. */
static bool address_ok(const char *a, size_t len, char *domain)
{
    const char *at = memchr(a, '@', len);

    if (!at || at == a || at - a > 64 || len > MAX_ADDRESS)
        return false;
    for (const char *p = a; p < at; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch == 0x7f || strchr("\"(),:;<>@[\\]", ch))
            return false;
    }
    return domain_ok(at + 1, len - (size_t)(at + 1 - a), domain);
}

/* Whether autoconfig_domains (empty: any) holds the domain. */
static bool domain_served(const struct conf *cf, const char *domain)
{
    const char *p = cf->autoconfig_domains;
    size_t dlen = strlen(domain);

    if (!*p)
        return true;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        const char *s = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if ((size_t)(p - s) == dlen && !strncasecmp(s, domain, dlen))
            return true;
    }
    return false;
}

static unsigned first_port(const struct conf_addr_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct sockaddr_storage *ss = &l->a[i].ss;
        if (ss->ss_family == AF_INET)
            return ntohs(((const struct sockaddr_in *)ss)->sin_port);
        if (ss->ss_family == AF_INET6)
            return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    }
    return 0;
}

static void xml_escape(struct buf *b, const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        switch (p[i]) {
        case '<':
            buf_str(b, "&lt;");
            break;
        case '>':
            buf_str(b, "&gt;");
            break;
        case '&':
            buf_str(b, "&amp;");
            break;
        case '"':
            buf_str(b, "&quot;");
            break;
        case '\'':
            buf_str(b, "&apos;");
            break;
        default:
            buf_addc(b, p[i]);
        }
    }
}

static void xml_elem(struct buf *b, const char *indent, const char *name, const char *text)
{
    buf_printf(b, "%s<%s>", indent, name);
    xml_escape(b, text, strlen(text));
    buf_printf(b, "</%s>\n", name);
}

static const char *server_name(const struct conf *cf, const char *hostname)
{
    return cf->autoconfig_hostname[0] ? cf->autoconfig_hostname : hostname;
}

/* The MTA's submission server (Thunderbird wants an outgoing server). */
static const char *smtp_name(const struct conf *cf, const char *hostname)
{
    return cf->autoconfig_smtp_hostname[0] ? cf->autoconfig_smtp_hostname
                                           : server_name(cf, hostname);
}

static int hex(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* The value of emailaddress= in the query, percent-decoded ('+' is kept:
 * it is a character of addresses, and clients encode it). 1 found, 0
 * absent, -1 malformed or too long. */
static int query_address(const char *q, size_t len, char *out, size_t *outlen)
{
    size_t i = 0;

    while (i < len) {
        size_t s = i;
        while (i < len && q[i] != '&')
            i++;
        const char *eq = memchr(q + s, '=', i - s);
        if (eq && (size_t)(eq - (q + s)) == 12 && !memcmp(q + s, "emailaddress", 12)) {
            size_t n = 0;
            for (const char *p = eq + 1; p < q + i; p++) {
                int ch = (unsigned char)*p;
                if (ch == '%') {
                    if (q + i - p < 3 || hex(p[1]) < 0 || hex(p[2]) < 0)
                        return -1;
                    ch = hex(p[1]) * 16 + hex(p[2]);
                    p += 2;
                }
                if (n >= MAX_ADDRESS || !ch)
                    return -1;
                out[n++] = (char)ch;
            }
            out[n] = '\0';
            *outlen = n;
            return 1;
        }
        i++;
    }
    return 0;
}

int http_autoconfig(const struct conf *cf, const char *hostname, const struct http_request *r,
                    struct buf *out)
{
    char addr[MAX_ADDRESS + 1], domain[MAX_DOMAIN + 1];
    size_t alen = 0;
    unsigned imaps = first_port(&cf->imaps_listen), pop3s = first_port(&cf->pop3s_listen);
    int found = r->query ? query_address(r->query, r->query_len, addr, &alen) : 0;

    if (found < 0 || (found && !address_ok(addr, alen, domain))) {
        buf_str(out, "invalid emailaddress\n");
        return 400;
    }
    if (!found) {
        /* the domain the client asked: autoconfig.DOMAIN or DOMAIN */
        const char *h = r->host;
        size_t hl = r->host_len;
        const char *colon = memchr(h, ':', hl);
        if (colon && !memchr(h, ']', hl))
            hl = (size_t)(colon - h);
        if (hl > 11 && !strncasecmp(h, "autoconfig.", 11)) {
            h += 11;
            hl -= 11;
        }
        if (!domain_ok(h, hl, domain) || !strchr(domain, '.')) {
            if (!cf->default_domain[0] ||
                !domain_ok(cf->default_domain, strlen(cf->default_domain), domain)) {
                buf_str(out, "no emailaddress and no domain\n");
                return 400;
            }
        }
    }
    if (!domain_served(cf, domain) || (!imaps && !pop3s)) {
        buf_str(out, "no configuration for this domain\n");
        return 404;
    }
    const char *host = server_name(cf, hostname);
    buf_str(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n");
    buf_str(out, "  <emailProvider id=\"");
    xml_escape(out, domain, strlen(domain));
    buf_str(out, "\">\n");
    xml_elem(out, "    ", "domain", domain);
    xml_elem(out, "    ", "displayName", domain);
    xml_elem(out, "    ", "displayShortName", domain);
    for (int i = 0; i < 2; i++) {
        unsigned port = i == 0 ? imaps : pop3s;
        char p[16];
        if (!port)
            continue;
        snprintf(p, sizeof(p), "%u", port);
        buf_printf(out, "    <incomingServer type=\"%s\">\n", i == 0 ? "imap" : "pop3");
        xml_elem(out, "      ", "hostname", host);
        xml_elem(out, "      ", "port", p);
        xml_elem(out, "      ", "socketType", "SSL");
        xml_elem(out, "      ", "authentication", "password-cleartext");
        xml_elem(out, "      ", "username", "%EMAILADDRESS%");
        buf_str(out, "    </incomingServer>\n");
    }
    if (cf->autoconfig_smtp_port) {
        char p[16];
        snprintf(p, sizeof(p), "%u", cf->autoconfig_smtp_port);
        buf_str(out, "    <outgoingServer type=\"smtp\">\n");
        xml_elem(out, "      ", "hostname", smtp_name(cf, hostname));
        xml_elem(out, "      ", "port", p);
        xml_elem(out, "      ", "socketType", "SSL");
        xml_elem(out, "      ", "authentication", "password-cleartext");
        xml_elem(out, "      ", "username", "%EMAILADDRESS%");
        buf_str(out, "    </outgoingServer>\n");
    }
    buf_str(out, "  </emailProvider>\n</clientConfig>\n");
    return 200;
}

/* ---- the POX request */

#define XML_MAX_DEPTH 8
#define XML_MAX_NAME 64
#define XML_MAX_ATTRS 16
#define XML_MAX_TEXT 512

struct pox {
    char email[XML_MAX_TEXT + 1];
    size_t email_len;
    bool have_email;
    char schema[XML_MAX_TEXT + 1];
    size_t schema_len;
    bool have_schema;
};

static bool name_start(unsigned char ch)
{
    return isalpha(ch) || ch == '_' || ch == ':';
}

static bool name_char(unsigned char ch)
{
    return isalnum(ch) || ch == '_' || ch == ':' || ch == '-' || ch == '.';
}

static bool xml_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* A name at p[*i]; its length, 0 when there is none or it is too long. */
static size_t read_name(const char *p, size_t len, size_t *i)
{
    size_t s = *i;
    if (s >= len || !name_start((unsigned char)p[s]))
        return 0;
    while (*i < len && name_char((unsigned char)p[*i]))
        if (++*i - s > XML_MAX_NAME)
            return 0;
    return *i - s;
}

static const char *local_name(const char *n, size_t *len)
{
    const char *c = memchr(n, ':', *len);
    if (c) {
        *len -= (size_t)(c + 1 - n);
        return c + 1;
    }
    return n;
}

/* An entity at p[*i] ('&'): its character, -1 when malformed or not
 * printable ASCII. */
static int read_entity(const char *p, size_t len, size_t *i)
{
    static const struct {
        const char *name;
        char ch;
    } named[] = {{"lt;", '<'}, {"gt;", '>'}, {"amp;", '&'}, {"quot;", '"'}, {"apos;", '\''}};
    size_t s = *i + 1;

    for (size_t k = 0; k < sizeof(named) / sizeof(named[0]); k++) {
        size_t n = strlen(named[k].name);
        if (len - s >= n && !memcmp(p + s, named[k].name, n)) {
            *i = s + n;
            return named[k].ch;
        }
    }
    if (s < len && p[s] == '#') {
        bool hx = s + 1 < len && p[s + 1] == 'x';
        size_t j = s + 1 + hx;
        long v = 0;
        size_t digits = 0;
        while (j < len && digits < 6) {
            int d = hx ? hex((unsigned char)p[j]) : (p[j] >= '0' && p[j] <= '9' ? p[j] - '0' : -1);
            if (d < 0)
                break;
            v = v * (hx ? 16 : 10) + d;
            digits++;
            j++;
        }
        if (digits && j < len && p[j] == ';' && v >= 0x20 && v < 0x7f) {
            *i = j + 1;
            return (int)v;
        }
    }
    return -1;
}

/* Reads the request. 0, or -1 when it is not well-formed or not an
 * Autodiscover request. */
static int pox_parse(const char *p, size_t len, struct pox *out)
{
    struct {
        const char *name, *local; /* as written (for the end tag), without prefix */
        size_t len, llen;
    } stack[XML_MAX_DEPTH];
    size_t depth = 0, i = 0;
    bool root_done = false, root_seen = false;
    /* 1: EMailAddress, 2: AcceptableResponseSchema, 0: other */
    int field = 0;

    memset(out, 0, sizeof(*out));
    if (len >= 5 && !memcmp(p, "<?xml", 5)) {
        const char *e = NULL;
        for (size_t j = 5; j + 1 < len; j++)
            if (p[j] == '?' && p[j + 1] == '>') {
                e = p + j;
                break;
            }
        if (!e)
            return -1;
        i = (size_t)(e - p) + 2;
    }
    while (i < len) {
        char ch = p[i];
        if (ch != '<') {
            int c = (unsigned char)ch;
            if (ch == '&' && (c = read_entity(p, len, &i)) < 0)
                return -1;
            if (ch != '&')
                i++;
            if ((unsigned char)c < 0x20 && !xml_space((char)c))
                return -1;
            if (!depth && !xml_space((char)c))
                return -1; /* text outside the root */
            if (field == 1 || field == 2) {
                char *t = field == 1 ? out->email : out->schema;
                size_t *tl = field == 1 ? &out->email_len : &out->schema_len;
                if (*tl >= XML_MAX_TEXT)
                    return -1;
                t[(*tl)++] = (char)c;
            }
            continue;
        }
        if (len - i >= 4 && !memcmp(p + i, "<!--", 4)) {
            size_t j = i + 4;
            while (j + 2 < len && memcmp(p + j, "-->", 3))
                j++;
            if (j + 2 >= len)
                return -1;
            i = j + 3;
            continue;
        }
        if (i + 1 < len && (p[i + 1] == '!' || p[i + 1] == '?'))
            return -1; /* DOCTYPE, CDATA, processing instructions */
        if (i + 1 < len && p[i + 1] == '/') {
            i += 2;
            size_t s = i, n = read_name(p, len, &i);
            if (!n || !depth || n != stack[depth - 1].len ||
                memcmp(p + s, stack[depth - 1].name, n))
                return -1;
            while (i < len && xml_space(p[i]))
                i++;
            if (i >= len || p[i] != '>')
                return -1;
            i++;
            depth--;
            field = 0;
            if (!depth)
                root_done = true;
            continue;
        }
        /* a start tag */
        i++;
        size_t s = i, n = read_name(p, len, &i);
        if (!n || root_done || depth >= XML_MAX_DEPTH)
            return -1;
        unsigned nattrs = 0;
        bool empty = false;
        for (;;) {
            bool sp = false;
            while (i < len && xml_space(p[i])) {
                i++;
                sp = true;
            }
            if (i >= len)
                return -1;
            if (p[i] == '>') {
                i++;
                break;
            }
            if (p[i] == '/') {
                if (i + 1 >= len || p[i + 1] != '>')
                    return -1;
                i += 2;
                empty = true;
                break;
            }
            if (!sp || ++nattrs > XML_MAX_ATTRS || !read_name(p, len, &i))
                return -1;
            while (i < len && xml_space(p[i]))
                i++;
            if (i >= len || p[i] != '=')
                return -1;
            i++;
            while (i < len && xml_space(p[i]))
                i++;
            if (i >= len || (p[i] != '"' && p[i] != '\''))
                return -1;
            char q = p[i++];
            while (i < len && p[i] != q) {
                if (p[i] == '<')
                    return -1;
                i++;
            }
            if (i >= len)
                return -1;
            i++;
        }
        size_t ln = n;
        const char *l = local_name(p + s, &ln);
        if (!depth) {
            if (ln != 12 || memcmp(l, "Autodiscover", 12))
                return -1;
            root_seen = true;
        }
        field = 0;
        if (depth == 2 && stack[1].llen == 7 && !memcmp(stack[1].local, "Request", 7)) {
            if (ln == 12 && !memcmp(l, "EMailAddress", 12)) {
                if (out->have_email)
                    return -1;
                out->have_email = true;
                field = 1;
            } else if (ln == 24 && !memcmp(l, "AcceptableResponseSchema", 24)) {
                if (out->have_schema)
                    return -1;
                out->have_schema = true;
                field = 2;
            }
        }
        if (empty) {
            field = 0;
            if (!depth)
                root_done = true;
            continue;
        }
        stack[depth].name = p + s;
        stack[depth].len = n;
        stack[depth].local = l;
        stack[depth].llen = ln;
        depth++;
    }
    if (!root_seen || depth)
        return -1;
    return 0;
}

static void trim(char *t, size_t *len)
{
    size_t s = 0;
    while (s < *len && xml_space(t[s]))
        s++;
    while (*len > s && xml_space(t[*len - 1]))
        (*len)--;
    memmove(t, t + s, *len - s);
    *len -= s;
    t[*len] = '\0';
}

static void ad_error(struct buf *out, int code, const char *msg)
{
    buf_str(out, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                 "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/"
                 "responseschema/2006\">\n  <Response>\n    <Error>\n");
    buf_printf(out, "      <ErrorCode>%d</ErrorCode>\n", code);
    xml_elem(out, "      ", "Message", msg);
    buf_str(out, "      <DebugData />\n    </Error>\n  </Response>\n</Autodiscover>\n");
}

int http_autodiscover(const struct conf *cf, const char *hostname, const char *body, size_t len,
                      struct buf *out)
{
    struct pox req;
    char domain[MAX_DOMAIN + 1];
    unsigned imaps = first_port(&cf->imaps_listen), pop3s = first_port(&cf->pop3s_listen);

    if (!body || pox_parse(body, len, &req) < 0 || !req.have_email) {
        buf_str(out, "not an Autodiscover request\n");
        return 400;
    }
    trim(req.email, &req.email_len);
    trim(req.schema, &req.schema_len);
    /* the schema, over http or https (Microsoft's pages show both) */
    size_t sl = strlen(AD_RESPONSE_SCHEMA);
    bool schema_ok =
        req.have_schema && ((req.schema_len == sl + 4 && !memcmp(req.schema, "http", 4) &&
                             !memcmp(req.schema + 4, AD_RESPONSE_SCHEMA, sl)) ||
                            (req.schema_len == sl + 5 && !memcmp(req.schema, "https", 5) &&
                             !memcmp(req.schema + 5, AD_RESPONSE_SCHEMA, sl)));
    if (!schema_ok) {
        ad_error(out, 601, "Provider is not available");
        return 200;
    }
    if (!address_ok(req.email, req.email_len, domain)) {
        ad_error(out, 600, "Invalid Request");
        return 200;
    }
    if (!domain_served(cf, domain) || (!imaps && !pop3s)) {
        ad_error(out, 603, "No configuration for this address");
        return 200;
    }
    const char *host = server_name(cf, hostname);
    buf_str(out, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                 "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/"
                 "responseschema/2006\">\n"
                 "  <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/"
                 "outlook/responseschema/2006a\">\n"
                 "    <Account>\n"
                 "      <AccountType>email</AccountType>\n"
                 "      <Action>settings</Action>\n");
    for (int i = 0; i < 3; i++) {
        static const char *const types[] = {"IMAP", "POP3", "SMTP"};
        unsigned port = i == 0 ? imaps : i == 1 ? pop3s : cf->autoconfig_smtp_port;
        char pt[16];
        if (!port)
            continue;
        snprintf(pt, sizeof(pt), "%u", port);
        buf_str(out, "      <Protocol>\n");
        xml_elem(out, "        ", "Type", types[i]);
        xml_elem(out, "        ", "Server", i == 2 ? smtp_name(cf, hostname) : host);
        xml_elem(out, "        ", "Port", pt);
        xml_elem(out, "        ", "DomainRequired", "off");
        buf_str(out, "        <LoginName>");
        xml_escape(out, req.email, req.email_len);
        buf_str(out, "</LoginName>\n");
        xml_elem(out, "        ", "SPA", "off");
        xml_elem(out, "        ", "SSL", "on");
        xml_elem(out, "        ", "AuthRequired", "on");
        buf_str(out, "      </Protocol>\n");
    }
    buf_str(out, "    </Account>\n  </Response>\n</Autodiscover>\n");
    return 200;
}
