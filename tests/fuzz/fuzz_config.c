/* libFuzzer target: configuration values, through conf_set for every key
 * of the table (the first byte picks the key), and the size and duration
 * parsers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/base/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
    conf_set(&c, conf_settings[data[0] % conf_n_settings].name, value, err, sizeof(err));
    conf_validate(&c, err, sizeof(err));
    conf_parse_size(value, &sz);
    conf_parse_duration_ms(value, &ms);
    return 0;
}
