/* libFuzzer target: the lmtp session (command parser, state machine, SASL)
 * fed arbitrary client bytes in arbitrary chunks. */
#include "protocol/lmtp/lmtp.h"
#include "tests/fuzz/fake_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fake_conn_drive(&lmtp_handler, data, size);
}
