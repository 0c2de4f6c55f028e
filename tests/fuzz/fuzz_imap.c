/* libFuzzer target: the imap session (command parser, state machine, SASL)
 * fed arbitrary client bytes in arbitrary chunks. */
#include "protocol/imap/imap.h"
#include "server/base/config.h"
#include "tests/fuzz/fake_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* LITERAL+ beside LITERAL-, or LITERAL- alone (non-synchronizing
     * literals over 4096 bytes refused and dropped): every flag bit of the
     * first byte is taken, so the input's length picks */
    fake_conn_conf()->imap_literal_plus = size % 2 == 0;
    return fake_conn_drive(&imap_handler, data, size);
}
