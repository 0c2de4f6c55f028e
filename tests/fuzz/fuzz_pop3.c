/* libFuzzer target: the pop3 session (command parser, state machine, SASL)
 * fed arbitrary client bytes in arbitrary chunks. */
#include "protocol/pop3/pop3.h"
#include "tests/fuzz/fake_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fake_conn_drive(&pop3_handler, data, size);
}
