/* libFuzzer target: configuration values, through conf_set for every key,
 * and the size and duration parsers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/base/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const keys[] = {
    "data_dir", "imap_listen", "lmtp_listen", "plaintext_auth_networks", "max_line_length",
    "max_message_size", "login_failure_delay", "auth_cache_ttl", "lmtp_socket_mode",
    "default_domain", "tls_priority", "log_debug", "max_connections", "imap_idle_timeout",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct conf c;
    char value[2048], err[256];
    uint64_t sz;
    unsigned ms;

    if (size < 1 || size > sizeof(value))
        return 0;
    memcpy(value, data + 1, size - 1);
    value[size - 1] = '\0';
    conf_defaults(&c);
    conf_set(&c, keys[data[0] % (sizeof(keys) / sizeof(keys[0]))], value, err, sizeof(err));
    conf_validate(&c, err, sizeof(err));
    conf_parse_size(value, &sz);
    conf_parse_duration_ms(value, &ms);
    return 0;
}
