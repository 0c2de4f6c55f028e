#!/usr/bin/env python3
"""Crash test of the storage engine: 50 times, start storage_driver writing a
stream of appends/deliveries, SIGKILL it at a random moment, then run its
verify mode (which opens the store, so recovery runs) and check that every
message acknowledged so far is present exactly once with the same SHA-256,
that no partial message is visible, and that index and Maildir agree. Some
saves are groups of messages saved together (storage_save_many, as a
MULTIAPPEND); a crash while one is saved may leave part of it, not
acknowledged, in the folder: recovery takes in the files it finds in cur/,
as it does those another program drops there.

Environment: STORAGE_DRIVER (path of the driver), CRASH_ROUNDS (default 50).
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

DRIVER = os.environ.get("STORAGE_DRIVER")
ROUNDS = int(os.environ.get("CRASH_ROUNDS", "50"))


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    if not DRIVER or not os.access(DRIVER, os.X_OK):
        fail("STORAGE_DRIVER not set or not executable")
    rnd = random.Random(int(os.environ.get("CRASH_SEED", str(int(time.time())))))
    data = tempfile.mkdtemp(prefix="coffre-crash-")
    acked = {}  # (user, mailbox, uid) -> sha
    try:
        for rnd_no in range(1, ROUNDS + 1):
            p = subprocess.Popen([DRIVER, "write", data, str(rnd_no)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            first = p.stdout.readline()
            if first.strip() != b"READY":
                p.kill()
                fail("driver did not start: %r %r" % (first, p.stderr.read()))
            # kill at a random moment: sometimes at once, usually mid-stream
            time.sleep(rnd.choice([0.0, 0.01]) + rnd.random() * 0.4)
            p.send_signal(signal.SIGKILL)
            out, err = p.communicate()
            if p.returncode != -signal.SIGKILL:
                fail("round %d: driver exited by itself (%s): %s"
                     % (rnd_no, p.returncode, err.decode(errors="replace")))
            lines = out.split(b"\n")
            if lines and lines[-1] != b"":
                lines = lines[:-1]  # a line cut by the kill is not an ACK
            n_ack = 0
            for ln in lines:
                f = ln.decode().split()
                if len(f) == 5 and f[0] == "ACK":
                    key = (f[1], f[2], int(f[3]))
                    if key in acked:
                        fail("round %d: UID handed out twice: %r" % (rnd_no, key))
                    acked[key] = f[4]
                    n_ack += 1

            v = subprocess.run([DRIVER, "verify", data], capture_output=True, timeout=300)
            vout = v.stdout.decode(errors="replace")
            present = {}
            shas = {}
            for ln in vout.splitlines():
                f = ln.split()
                if f and f[0] == "BAD":
                    fail("round %d: %s" % (rnd_no, ln))
                if len(f) == 5 and f[0] == "MSG":
                    key = (f[1], f[2], int(f[3]))
                    present[key] = f[4]
                    shas.setdefault((f[1], f[4]), []).append(key)
            if v.returncode != 0:
                fail("round %d: verify failed (%d): %s %s"
                     % (rnd_no, v.returncode, vout[-2000:], v.stderr.decode(errors="replace")[-2000:]))
            for key, sha in acked.items():
                if key not in present:
                    fail("round %d: acknowledged message lost: %r" % (rnd_no, key))
                if present[key] != sha:
                    fail("round %d: acknowledged message altered: %r" % (rnd_no, key))
                if len(shas[(key[0], sha)]) != 1:
                    fail("round %d: acknowledged message present %d times: %r"
                         % (rnd_no, len(shas[(key[0], sha)]), key))
            print("round %d: %d acked this round, %d acked in all, %d present"
                  % (rnd_no, n_ack, len(acked), len(present)), flush=True)
        if len(acked) == 0:
            fail("nothing was ever acknowledged")
        print("ok: %d rounds, %d acknowledged messages all present" % (ROUNDS, len(acked)))
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
