/* Unit tests of the configuration parser: every kind of value, the errors
 * with file and line, and the network matcher. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/base/config.h"

#include "tests/unit/check.h"

static char tmpdir[] = "/tmp/coffre-test-config-XXXXXX";

/* Writes text to a file in tmpdir and loads it over the defaults. */
static int load(const char *text, struct conf *c, char *err, size_t errlen)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/c.conf", tmpdir);
    f = fopen(path, "w");
    if (!f)
        return -2;
    fputs(text, f);
    fclose(f);
    conf_defaults(c);
    return conf_load(c, path, err, errlen);
}

static int set(struct conf *c, const char *k, const char *v)
{
    char err[256];
    return conf_set(c, k, v, err, sizeof(err));
}

/* The field of a row is of the size its type writes. */
static bool field_fits(const struct conf_setting *s)
{
    switch (s->type) {
    case CONF_BOOL:
        return s->size == sizeof(bool);
    case CONF_UINT:
    case CONF_DURATION:
    case CONF_SECONDS:
        return s->size == sizeof(unsigned);
    case CONF_SIZE:
        return s->size == sizeof(uint64_t) || s->size == sizeof(size_t);
    case CONF_ADDRS:
        return s->size == sizeof(struct conf_addr_list);
    case CONF_CUSTOM:
        return s->parse != NULL;
    default:
        return s->size > 1;
    }
}

static bool match(const struct conf *c, const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    return conf_net_match(c->plaintext_auth_networks, c->n_plaintext_nets, (struct sockaddr *)&ss);
}

/* conf_client_group of a textual address, written back as text ("" when
 * the family is unknown). */
static const char *group(const char *ip, unsigned v4, unsigned v6)
{
    static char out[INET6_ADDRSTRLEN];
    struct sockaddr_storage ss;
    uint8_t key[16];
    int fam;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    fam = conf_client_group((struct sockaddr *)&ss, v4, v6, key);
    out[0] = '\0';
    if (fam == AF_INET)
        inet_ntop(AF_INET, key + 12, out, sizeof(out));
    else if (fam == AF_INET6)
        inet_ntop(AF_INET6, key, out, sizeof(out));
    return out;
}

static void test_client_group(void)
{
    CHECK(!strcmp(group("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 32, 64), "2001:db8:1:2::"),
          "IPv6 /64: the interface identifier is dropped");
    char first[INET6_ADDRSTRLEN];
    snprintf(first, sizeof(first), "%s", group("2001:db8:1:2::1", 32, 64));
    CHECK(!strcmp(first, group("2001:db8:1:2:ffff::9", 32, 64)),
          "two hosts of one /64 are one client");
    CHECK(strcmp(first, group("2001:db8:1:3::1", 32, 64)) != 0,
          "neighbouring /64s are two clients");
    CHECK(!strcmp(group("2001:db8:1:2::1", 32, 48), "2001:db8:1::"), "IPv6 /48");
    CHECK(!strcmp(group("2001:db8:1:ffff::1", 32, 52), "2001:db8:1:f000::"),
          "a prefix inside a byte keeps its high bits");
    CHECK(!strcmp(group("2001:db8::7", 32, 128), "2001:db8::7"), "IPv6 /128: each address");
    CHECK(!strcmp(group("192.0.2.77", 32, 64), "192.0.2.77"), "IPv4 /32: each address");
    CHECK(!strcmp(group("192.0.2.77", 24, 64), "192.0.2.0"), "IPv4 /24");
    CHECK(!strcmp(group("192.0.2.77", 20, 64), "192.0.0.0"), "IPv4 /20");
    CHECK(!strcmp(group("::ffff:192.0.2.77", 24, 64), "192.0.2.0"),
          "a v4-mapped address groups with its IPv4 network, not as IPv6");
    snprintf(first, sizeof(first), "%s", group("::1", 32, 64));
    CHECK(first[0] && !strcmp(first, group("::2", 32, 64)),
          "loopback IPv6 addresses share the /64 ::");
    CHECK(conf_client_group(NULL, 32, 64, (uint8_t[16]){0}) < 0, "no address: no group");
}

int main(void)
{
    struct conf c;
    char err[512];
    uint64_t sz;
    unsigned ms;

    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }

    /* defaults */
    conf_defaults(&c);
    CHECK(c.imap_listen.n == 2 && c.imaps_listen.n == 2, "default IMAP listeners on v4 and v6");
    CHECK(c.lmtp_listen.n == 1 && !c.lmtp_listen.a[0].is_unix, "default LMTP on loopback TCP");
    CHECK(c.n_plaintext_nets == 0, "no plaintext network by default");
    CHECK(strstr(c.tls_priority, "-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2") != NULL,
          "default priority allows TLS 1.2 and 1.3 only");
    CHECK(c.imap_idle_timeout_ms >= 30 * 60 * 1000, "IMAP autologout at least 30 minutes");
    CHECK(c.pop3_idle_timeout_ms >= 10 * 60 * 1000, "POP3 timeout at least 10 minutes");

    /* the table: each default parses, each key once, each field inside struct conf */
    for (size_t i = 0; i < conf_n_settings; i++) {
        const struct conf_setting *s = &conf_settings[i];
        char what[128];
        snprintf(what, sizeof(what),
                 "row %s: default parses, key unique, field inside and of its type", s->name);
        CHECK(set(&c, s->name, s->def) == 0 && conf_find(s->name) == s &&
                  s->off + s->size <= sizeof(struct conf) && field_fits(s) && s->doc && s->group,
              what);
    }
    {
        struct conf d;
        conf_defaults(&d);
        CHECK(memcmp(&c, &d, sizeof(c)) == 0, "the defaults set again change nothing");
    }

    /* sizes and durations */
    CHECK(conf_parse_size("64k", &sz) == 0 && sz == 65536, "size 64k");
    CHECK(conf_parse_size("50M", &sz) == 0 && sz == 50u << 20, "size 50M");
    CHECK(conf_parse_size("2GB", &sz) == 0 && sz == 2ull << 30, "size 2GB");
    CHECK(conf_parse_size("12", &sz) == 0 && sz == 12, "size plain number");
    CHECK(conf_parse_size("-1", &sz) < 0, "negative size refused");
    CHECK(conf_parse_size("12q", &sz) < 0, "unknown size suffix refused");
    CHECK(conf_parse_size("99999999999999999999", &sz) < 0, "overflowing size refused");
    CHECK(conf_parse_size("18446744073709551615k", &sz) < 0, "overflow by suffix refused");
    CHECK(conf_parse_duration_ms("300ms", &ms) == 0 && ms == 300, "duration 300ms");
    CHECK(conf_parse_duration_ms("2s", &ms) == 0 && ms == 2000, "duration 2s");
    CHECK(conf_parse_duration_ms("30", &ms) == 0 && ms == 30000, "duration plain seconds");
    CHECK(conf_parse_duration_ms("10m", &ms) == 0 && ms == 600000, "duration 10m");
    CHECK(conf_parse_duration_ms("1h", &ms) == 0 && ms == 3600000, "duration 1h");
    CHECK(conf_parse_duration_ms("5d", &ms) < 0, "unknown duration unit refused");
    CHECK(conf_parse_duration_ms("9999999h", &ms) < 0, "overflowing duration refused");

    /* the line limit before login: its own setting, never above max_line_length */
    conf_defaults(&c);
    CHECK(conf_prelogin_line(&c) == 8192, "max_line_length_prelogin defaults to 8k");
    CHECK(set(&c, "max_line_length", "4k") == 0 && conf_prelogin_line(&c) == 4096,
          "max_line_length_prelogin is capped by max_line_length");
    CHECK(set(&c, "max_line_length_prelogin", "2k") == 0 && conf_prelogin_line(&c) == 2048,
          "max_line_length_prelogin set");

    /* addresses */
    conf_defaults(&c);
    CHECK(set(&c, "imap_listen", "127.0.0.1:1143, [::1]:1143") == 0 && c.imap_listen.n == 2 &&
              c.imap_listen.a[1].ss.ss_family == AF_INET6,
          "v4 and v6 listen addresses");
    CHECK(set(&c, "imaps_listen", "*:993") == 0 && c.imaps_listen.n == 2, "* means v4 and v6");
    CHECK(set(&c, "pop3_listen", "") == 0 && c.pop3_listen.n == 0, "empty disables a service");
    CHECK(set(&c, "lmtp_listen", "unix:/run/coffre/lmtp, 127.0.0.1:24") == 0 &&
              c.lmtp_listen.n == 2 && c.lmtp_listen.a[0].is_unix &&
              !strcmp(c.lmtp_listen.a[0].path, "/run/coffre/lmtp"),
          "LMTP on a unix socket and TCP");
    CHECK(set(&c, "imap_listen", "unix:/tmp/x") < 0, "unix socket refused for IMAP");
    CHECK(set(&c, "lmtp_listen", "unix:relative") < 0, "relative unix path refused");
    CHECK(set(&c, "imap_listen", "127.0.0.1") < 0, "missing port refused");
    CHECK(set(&c, "imap_listen", "127.0.0.1:0") < 0, "port 0 refused");
    CHECK(set(&c, "imap_listen", "127.0.0.1:70000") < 0, "port over 65535 refused");
    CHECK(set(&c, "imap_listen", "::1:143") < 0, "bare v6 without brackets refused");
    CHECK(set(&c, "imap_listen", "example.org:143") < 0, "host names refused");

    /* networks */
    conf_defaults(&c);
    CHECK(set(&c, "plaintext_auth_networks", "127.0.0.0/8, ::1, 10.1.0.0/16") == 0 &&
              c.n_plaintext_nets == 3,
          "network list parsed");
    CHECK(match(&c, "127.1.2.3"), "127.1.2.3 inside 127.0.0.0/8");
    CHECK(match(&c, "::1"), "::1 matches");
    CHECK(match(&c, "::ffff:127.0.0.1"), "v4-mapped v6 matches its v4 network");
    CHECK(match(&c, "10.1.255.1") && !match(&c, "10.2.0.1"), "/16 boundary");
    CHECK(!match(&c, "192.0.2.1") && !match(&c, "2001:db8::1"), "outside addresses do not match");
    CHECK(set(&c, "plaintext_auth_networks", "10.0.0.0/33") < 0, "v4 prefix over 32 refused");
    CHECK(set(&c, "plaintext_auth_networks", "nonsense") < 0, "non-address refused");
    CHECK(set(&c, "plaintext_auth_networks", "10.0.0.0/12x") < 0, "bad prefix refused");

    /* other values */
    conf_defaults(&c);
    CHECK(set(&c, "data_dir", "relative/path") < 0, "relative data_dir refused");
    CHECK(set(&c, "max_line_length", "100") < 0, "max_line_length below 1k refused");
    CHECK(set(&c, "max_line_length", "8k") == 0 && c.max_line_length == 8192, "max_line_length 8k");
    CHECK(set(&c, "imap_idle_timeout", "10m") < 0, "IMAP autologout under 30 minutes refused");
    CHECK(set(&c, "pop3_idle_timeout", "5m") < 0, "POP3 timeout under 10 minutes refused");
    CHECK(set(&c, "log_debug", "maybe") < 0 && set(&c, "log_debug", "yes") == 0 && c.log_debug,
          "booleans");
    CHECK(set(&c, "lmtp_socket_mode", "0666") == 0 && c.lmtp_socket_mode == 0666 &&
              set(&c, "lmtp_socket_mode", "999") < 0,
          "octal socket mode");
    CHECK(set(&c, "default_domain", "exa mple.org") < 0, "domain with a space refused");
    CHECK(set(&c, "tls_priority", "") < 0, "empty priority refused");
    CHECK(set(&c, "no_such_key", "1") < 0, "unknown key refused");
    CHECK(set(&c, "max_connections", "0") < 0, "zero connections refused");

    /* whole files: errors carry file and line */
    CHECK(load("# comment\n\ndata_dir = /tmp/x\nimap_listen = 127.0.0.1:1143\n", &c, err,
               sizeof(err)) == 0 &&
              !strcmp(c.data_dir, "/tmp/x"),
          "file with comments and blank lines");
    CHECK(load("data_dir = /tmp/x\n\nbogus = 1\n", &c, err, sizeof(err)) < 0 &&
              strstr(err, "c.conf:3:") && strstr(err, "bogus"),
          "unknown key reported as FILE:3:");
    CHECK(load("data_dir /tmp/x\n", &c, err, sizeof(err)) < 0 && strstr(err, "c.conf:1:"),
          "missing '=' reported with its line");
    CHECK(load("max_message_size = lots\n", &c, err, sizeof(err)) < 0 &&
              strstr(err, "c.conf:1: max_message_size"),
          "bad value names the key");
    CHECK(load("tls_cert_rsa = /x.pem\n", &c, err, sizeof(err)) < 0 && strstr(err, "tls_key_rsa"),
          "RSA cert without key refused by validation");
    CHECK(load("login_failure_delay = 5s\nlogin_failure_delay_max = 1s\n", &c, err, sizeof(err)) <
              0,
          "delay cap below delay refused");
    CHECK(load("thread_pool_size = 4\nmax_jobs_per_account = 4\n", &c, err, sizeof(err)) < 0 &&
              strstr(err, "max_jobs_per_account") && strstr(err, "thread_pool_size"),
          "one account allowed every pool thread: refused");
    CHECK(load("thread_pool_size = 4\nmax_jobs_per_account = 3\n", &c, err, sizeof(err)) == 0 &&
              load("thread_pool_size = 1\nmax_jobs_per_account = 1\n", &c, err, sizeof(err)) == 0,
          "fewer jobs per account than threads, or a pool of one");
    {
        char big[5000];
        memset(big, 'a', sizeof(big) - 2);
        big[sizeof(big) - 2] = '\n';
        big[sizeof(big) - 1] = '\0';
        CHECK(load(big, &c, err, sizeof(err)) < 0 && strstr(err, ":1: line too long"),
              "over-long line refused");
    }
    test_client_group();
    conf_defaults(&c);
    CHECK(c.client_prefix_v4 == 32 && c.client_prefix_v6 == 64,
          "addresses grouped by /32 (IPv4) and /64 (IPv6) by default");
    CHECK(set(&c, "client_prefix_v6", "129") < 0 && set(&c, "client_prefix_v4", "33") < 0,
          "a prefix longer than the address refused");
    CHECK(conf_load(&c, "/nonexistent/coffre.conf", err, sizeof(err)) < 0 &&
              strstr(err, "/nonexistent/coffre.conf"),
          "missing file named in the error");

    {
        char path[256];
        snprintf(path, sizeof(path), "%s/c.conf", tmpdir);
        unlink(path);
        rmdir(tmpdir);
    }
    return check_summary();
}
