/* coffrectl import: what the sources (server/ctl_import_*.c) share: the
 * accounts named on the command line, batches handed to the storage's
 * import API (storage/storage.h) with their outcome counted, the progress
 * line on a terminal and the summary. */
#ifndef COFFRE_CTL_IMPORT_H
#define COFFRE_CTL_IMPORT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#include "server/base/config.h"
#include "storage/storage.h"

/* Messages handed to storage_import_messages at once: one transaction,
 * one fsync pass. Each holds a file descriptor until the batch commits. */
#define IMP_BATCH 500

/* One run of the command, over one or more accounts. */
struct imp_run {
    const struct conf *conf;
    const char *user; /* the account being imported into (its address) */
    /* counted over the run */
    uint64_t mailboxes, mailboxes_created, conflicts;
    uint64_t added, bytes, present, uid_used, failed, kw_dropped, kw_restored;
    uint64_t errors; /* batches or mailboxes that failed as a whole */
    unsigned reasons_shown;
    /* progress on a terminal: messages seen of total */
    bool tty;
    uint64_t total, done;
    uint64_t start_ms, last_ms;
    bool serial; /* too few descriptors for two batches at once */
};

void imp_run_init(struct imp_run *r, const struct conf *c);

/* The account of address (normalized with the default domain): *id.
 * CTL_EXIT_OK, or an exit code with the reason printed. The data
 * directory is prepared (privileges dropped) on the first call. */
int imp_account(struct imp_run *r, const char *address, int64_t *id, char *norm, size_t normlen);

/* storage_import_mailbox, counted and reported: 0, or -1 when the
 * mailbox cannot take the import (conflict, error; said on stderr). */
int imp_mailbox(struct imp_run *r, struct storage_user *u, const char *name, uint32_t uidvalidity,
                unsigned special_use, struct storage_mbox *out);

/* A batch being filled: imp_batch_flush hands it to the storage. */
struct imp_batch {
    struct storage_import_msg m[IMP_BATCH];
    size_t n;
    const char *mailbox; /* its name, for messages */
};
/* 0, or -1 when the batch failed as a whole (said on stderr). Each
 * message's outcome is counted; the failures are listed (at most a few
 * dozen lines). */
int imp_batch_flush(struct imp_run *r, struct storage_user *u, int64_t mbox, struct imp_batch *b);

/* Two batches in turn: one is committed by a thread while the next one's
 * files are read and written (storage_import_write/_commit). Fill
 * b[cur]; imp_pipe_flush writes it, waits for the commit of the one
 * before (counted), starts its commit and makes the other the one
 * filled. imp_pipe_wait: the commit under way finished and counted
 * (before the batch's memory is reused elsewhere, a mailbox's end, ...).
 * 0, or -1 when a batch failed as a whole (said on stderr). */
struct imp_pipe {
    struct imp_batch b[2];
    size_t cur;  /* the one being filled */
    size_t slot; /* the one being committed, when busy */
    bool busy;
    pthread_t th;
    struct storage_import_batch *sb;
    int rc;
};
int imp_pipe_flush(struct imp_run *r, struct storage_user *u, int64_t mbox, struct imp_pipe *p);
int imp_pipe_wait(struct imp_run *r, struct imp_pipe *p);

/* Message-level trouble the source found before the storage saw it
 * (unreadable entry, unknown compression): counted as failed and said. */
void imp_fail(struct imp_run *r, const char *mailbox, uint32_t uid, const char *what,
              const char *why);

/* The progress line (stderr, only on a terminal), at most ten times a
 * second; final: the last one, with its line ended. */
void imp_progress(struct imp_run *r, bool final);

/* The summary on stdout and the exit code: CTL_EXIT_OK when everything
 * was imported or was there already, CTL_EXIT_INCOMPLETE when messages
 * or mailboxes were left out (a rerun after the cause is fixed finishes
 * the job), CTL_EXIT_SYSTEM when a batch failed as a whole. */
int imp_summary(struct imp_run *r);

/* Modified UTF-7 (RFC 3501 5.1.3) in[0..len) as UTF-8 into out: 0, or -1
 * when it is not valid (out then holds the input as it is). */
int imp_mutf7_decode(const char *in, size_t len, char *out, size_t outcap);

/* Special use of a folder by its name (Sent, Drafts, Trash, Junk, Archive
 * and their usual variants), for sources that do not say; 0 when none. */
unsigned imp_special_use_by_name(const char *name);

/* The sources. argv: what follows "import". */
int ctl_import_dovecot(const struct conf *c, int argc, char **argv);
int ctl_import_mbox(const struct conf *c, int argc, char **argv);
/* --from-imap URL ADDRESS ... (server/ctl_import_imap.c) */
int ctl_import_imap(const struct conf *c, int argc, char **argv);
void ctl_import_imap_usage(FILE *f);

#endif
