/* Private to protocol/sasl.c and sasl_scram.c: SCRAM's state machine. */
#ifndef COFFRE_SASL_SCRAM_H
#define COFFRE_SASL_SCRAM_H

#include "protocol/sasl.h"

/* Allocates s->scram (0, or -1 without memory); frees and wipes it. */
int proto_scram_new(struct proto_sasl *s);
void proto_scram_free(struct proto_sasl *s);
/* One decoded client message: SASL_SCRAM_LOOKUP, SASL_SCRAM_CHECK,
 * SASL_SCRAM_DONE or SASL_BAD. */
int proto_scram_step(struct proto_sasl *s, const unsigned char *msg, size_t len);

#endif
