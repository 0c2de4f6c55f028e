/* The IMAP command table: every command as the client spells it, the
 * states it is valid in and its flags, and the connection handler that
 * serves sessions with it.
 *
 * How to add a command: write its handler, `void imap_cmd_<name>(struct
 * imap_session *s, struct imap_args *a)`, in the cmd_<family>.c file of
 * its family (a new file for a new family, listed in protocol/meson.build),
 * declare it in imap_private.h and add a row here: its name as sent
 * ("UID FETCH" is a row of its own; a two-word name makes its first word a
 * family the session resolves with the next atom), the states, and
 * IMAP_CMD_NO_EXPUNGE when no EXPUNGE response may be sent while
 * answering it, IMAP_CMD_UID for a UID command, IMAP_CMD_SEQ for one that
 * names messages by sequence number (refused after ENABLE UIDONLY), IMAP_CMD_NO_ARGS when it
 * takes no arguments (the session answers BAD to any). The handler parses its
 * arguments from a (imap_args_*), answers imap_bad() for a syntax error
 * and ends with imap_finish() (which announces pending mailbox changes
 * first). Work that may block goes to the pool: imap_job_start() with a
 * work and a done function; the session waits meanwhile. A command that
 * reads input of its own or takes several steps fills in a struct
 * imap_cont (line or bytes, resume, abort), starts it with
 * imap_cont_start() and ends it with imap_cont_end(); one that wants a
 * literal of its command line before it is read sets the row's literal
 * hook (as APPEND does). The session core never names a command. */
#include "protocol/imap/imap.h"
#include "protocol/imap/imap_private.h"

static const struct imap_command commands[] = {
    {"CAPABILITY", imap_cmd_capability, IMAP_ANY, IMAP_CMD_NO_ARGS, NULL},
    {"NOOP", imap_cmd_noop, IMAP_ANY, IMAP_CMD_NO_ARGS, NULL},
    {"LOGOUT", imap_cmd_logout, IMAP_ANY, IMAP_CMD_NO_ARGS, NULL},
    {"ID", imap_cmd_id, IMAP_ANY, 0, NULL},
    {"STARTTLS", imap_cmd_starttls, IMAP_NOTAUTH, IMAP_CMD_NO_ARGS, NULL},
    {"LOGIN", imap_cmd_login, IMAP_NOTAUTH, 0, NULL},
    {"UNAUTHENTICATE", imap_cmd_unauthenticate, IMAP_AUTHED, IMAP_CMD_NO_ARGS, NULL},
    {"AUTHENTICATE", imap_cmd_authenticate, IMAP_NOTAUTH, 0, NULL},
    {"COMPRESS", imap_cmd_compress, IMAP_AUTHED, 0, NULL},
    {"ENABLE", imap_cmd_enable, IMAP_AUTHED, 0, NULL},
    {"NAMESPACE", imap_cmd_namespace, IMAP_AUTHED, IMAP_CMD_NO_ARGS, NULL},
    {"SELECT", imap_cmd_select, IMAP_AUTHED, 0, NULL},
    {"EXAMINE", imap_cmd_examine, IMAP_AUTHED, 0, NULL},
    {"CREATE", imap_cmd_create, IMAP_AUTHED, 0, NULL},
    {"DELETE", imap_cmd_delete, IMAP_AUTHED, 0, NULL},
    {"RENAME", imap_cmd_rename, IMAP_AUTHED, 0, NULL},
    {"SUBSCRIBE", imap_cmd_subscribe, IMAP_AUTHED, 0, NULL},
    {"UNSUBSCRIBE", imap_cmd_unsubscribe, IMAP_AUTHED, 0, NULL},
    {"LIST", imap_cmd_list, IMAP_AUTHED, 0, NULL},
    {"LSUB", imap_cmd_lsub, IMAP_AUTHED, 0, NULL},
    {"XLIST", imap_cmd_xlist, IMAP_AUTHED, 0, NULL},
    {"STATUS", imap_cmd_status, IMAP_AUTHED, 0, NULL},
    {"GETQUOTA", imap_cmd_getquota, IMAP_AUTHED, 0, NULL},
    {"GETQUOTAROOT", imap_cmd_getquotaroot, IMAP_AUTHED, 0, NULL},
    {"SETQUOTA", imap_cmd_setquota, IMAP_AUTHED, 0, NULL},
    {"SETACL", imap_cmd_setacl, IMAP_AUTHED, 0, NULL},
    {"DELETEACL", imap_cmd_deleteacl, IMAP_AUTHED, 0, NULL},
    {"GETACL", imap_cmd_getacl, IMAP_AUTHED, 0, NULL},
    {"LISTRIGHTS", imap_cmd_listrights, IMAP_AUTHED, 0, NULL},
    {"MYRIGHTS", imap_cmd_myrights, IMAP_AUTHED, 0, NULL},
    {"APPEND", imap_cmd_append, IMAP_AUTHED, 0, imap_append_literal},
    {"IDLE", imap_cmd_idle, IMAP_AUTHED, IMAP_CMD_NO_ARGS, NULL},
    {"NOTIFY", imap_cmd_notify, IMAP_AUTHED, 0, NULL},
    {"CHECK", imap_cmd_check, IMAP_SELECTED, IMAP_CMD_NO_ARGS, NULL},
    {"CLOSE", imap_cmd_close, IMAP_SELECTED, IMAP_CMD_NO_ARGS | IMAP_CMD_LEAVE, NULL},
    {"UNSELECT", imap_cmd_unselect, IMAP_SELECTED, IMAP_CMD_NO_ARGS | IMAP_CMD_LEAVE, NULL},
    {"EXPUNGE", imap_cmd_expunge, IMAP_SELECTED, 0, NULL},
    {"SEARCH", imap_cmd_search, IMAP_SELECTED, IMAP_CMD_NO_EXPUNGE | IMAP_CMD_SEQ, NULL},
    {"SORT", imap_cmd_sort, IMAP_SELECTED, IMAP_CMD_NO_EXPUNGE | IMAP_CMD_SEQ, NULL},
    {"THREAD", imap_cmd_thread, IMAP_SELECTED, IMAP_CMD_NO_EXPUNGE | IMAP_CMD_SEQ, NULL},
    {"FETCH", imap_cmd_fetch, IMAP_SELECTED, IMAP_CMD_NO_EXPUNGE | IMAP_CMD_SEQ, NULL},
    {"STORE", imap_cmd_store, IMAP_SELECTED, IMAP_CMD_NO_EXPUNGE | IMAP_CMD_SEQ, NULL},
    {"COPY", imap_cmd_copy, IMAP_SELECTED, IMAP_CMD_SEQ, NULL},
    {"MOVE", imap_cmd_move, IMAP_SELECTED, IMAP_CMD_SEQ, NULL},
    {"CANCELUPDATE", imap_cmd_cancelupdate, IMAP_SELECTED, 0, NULL},
    /* RFC 3501 7.4.1: EXPUNGE responses are allowed during UID commands */
    {"UID FETCH", imap_cmd_fetch, IMAP_SELECTED, IMAP_CMD_UID, NULL},
    {"UID STORE", imap_cmd_store, IMAP_SELECTED, IMAP_CMD_UID, NULL},
    {"UID SEARCH", imap_cmd_search, IMAP_SELECTED, IMAP_CMD_UID, NULL},
    {"UID SORT", imap_cmd_sort, IMAP_SELECTED, IMAP_CMD_UID, NULL},
    {"UID THREAD", imap_cmd_thread, IMAP_SELECTED, IMAP_CMD_UID, NULL},
    {"UID COPY", imap_cmd_copy, IMAP_SELECTED, IMAP_CMD_UID, NULL},
    {"UID MOVE", imap_cmd_move, IMAP_SELECTED, IMAP_CMD_UID, NULL},
    {"REPLACE", imap_cmd_replace, IMAP_SELECTED, IMAP_CMD_SEQ, imap_append_literal},
    {"UID REPLACE", imap_cmd_replace, IMAP_SELECTED, IMAP_CMD_UID, imap_append_literal},
    {"UID EXPUNGE", imap_cmd_expunge, IMAP_SELECTED, IMAP_CMD_UID, NULL},
};

static int on_open(struct conn *c)
{
    metrics_command_names(METRICS_CMD_IMAP, &commands[0].name,
                          sizeof(commands) / sizeof(commands[0]), sizeof(commands[0]));
    return imap_session_open(c, commands, sizeof(commands) / sizeof(commands[0]));
}

const struct conn_handler imap_handler = {
    .name = "imap",
    .on_open = on_open,
    .on_input = imap_session_input,
    .on_tls_ready = NULL,
    .on_drain = imap_session_drain,
    .on_timeout = imap_session_timeout,
    .on_shutdown = imap_session_shutdown,
    .on_close = imap_session_close,
    .describe = imap_session_describe,
    .on_kick = imap_session_kick,
    .busy_reply = "* BYE Too many connections; try again later.\r\n",
    .proxy_refused_reply = "* BYE PROXY header refused from this address.\r\n",
};
