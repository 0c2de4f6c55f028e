"""coffrectl user move (issue 18): an account moved from slot s1 to slot s2
(two coffred sharing one account directory, each with its own data
directory) while an LMTP client keeps delivering to it and an IMAP client
flags its messages. Afterwards, at s2: every accepted message exactly once,
nothing lost, UIDVALIDITY and UIDs unchanged, flags kept (those set before
and those the client set during the move); logins at s1 refused, at s2
accepted; the source copy gone. And a move stopped after each of its steps
(as a crash there would) finishes when run again."""
import email
import imaplib
import os
import re
import smtplib
import subprocess
import threading
import time
import unittest

import harness
import lmtp_util
import slot_util

PW = 'correct horse battery'


def msg(subject):
    return ('From: sender@example.net\r\nTo: someone@example.org\r\n'
            'Message-ID: <%s@test>\r\nSubject: %s\r\n\r\nbody of %s\r\n'
            % (subject, subject, subject)).encode()


def deliver(server, addr, subject):
    """One LMTP delivery: the reply code of RCPT when not 250, else DATA's;
    None when the connection failed or closed (not accepted)."""
    try:
        c = lmtp_util.lmtp(server)
    except (OSError, smtplib.SMTPException, AssertionError):
        return None
    try:
        rcpt, replies = lmtp_util.send(c, 'sender@example.net', [addr], msg(subject))
        if rcpt is None:
            return replies[0][0]
        if rcpt[0][0] != 250:
            return rcpt[0][0]
        return replies[0][0]
    except (OSError, smtplib.SMTPException):
        return None
    finally:
        try:
            c.close()
        except Exception:
            pass


def snapshot(server, addr):
    """{folder: (uidvalidity, {uid: (subject, frozenset(flags))})}"""
    c = server.imap_ssl()
    c.login(addr, PW)
    out = {}
    typ, data = c.list()
    names = []
    for line in data:
        m = re.match(rb'\(.*?\) (?:"."|NIL) "?([^"]*)"?$', line)
        names.append(m.group(1).decode())
    for name in names:
        typ, _ = c.select('"%s"' % name, readonly=True)
        assert typ == 'OK'
        typ, data = c.response('UIDVALIDITY')
        uidvalidity = int(data[0])
        msgs = {}
        typ, data = c.uid('FETCH', '1:*', '(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
        for item in data:
            if not isinstance(item, tuple):
                continue
            head = item[0].decode()
            uid = int(re.search(r'UID (\d+)', head).group(1))
            flags = frozenset(re.search(r'FLAGS \(([^)]*)\)', head).group(1).split())
            subject = email.message_from_bytes(item[1])['Subject']
            msgs[uid] = (subject, flags)
        out[name] = (uidvalidity, msgs)
    c.logout()
    return out


def without_recent(snap):
    return {n: (v, {u: (s, f - {'\\Recent'}) for u, (s, f) in m.items()})
            for n, (v, m) in snap.items()}


def move(server, addr, to, stop=None):
    env = dict(os.environ)
    env.pop('COFFRE_MOVE_STOP_AFTER', None)
    if stop:
        env['COFFRE_MOVE_STOP_AFTER'] = stop
    r = subprocess.run([harness.COFFRECTL, '-c', server.conf_path, 'user', 'move', addr,
                        '--to', to], env=env, capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


class MoveBase(slot_util.SlotTestCase):

    def populate(self, server, addr, n_inbox):
        for i in range(n_inbox):
            self.assertEqual(deliver(server, addr, 'pre-%d' % i), 250)
        c = server.imap_ssl()
        c.login(addr, PW)
        for folder in ('Work', 'Archive/2025'):
            self.assertEqual(c.create(folder)[0], 'OK')
            for i in range(3):
                typ, _ = c.append(folder, r'(\Seen $Label%d)' % i, None,
                                  msg('%s-%d' % (folder, i)))
                self.assertEqual(typ, 'OK')
        c.select('INBOX')
        c.uid('STORE', '1:3', '+FLAGS', r'(\Seen)')
        c.uid('STORE', '2', '+FLAGS', r'(\Answered $Important)')
        c.uid('STORE', '4', '+FLAGS', r'(\Deleted)')
        c.logout()

    def user_dir(self, server, addr):
        return os.path.join(server.data_dir, 'users', str(lmtp_util.user_id(server, addr)))


class MoveUnderLoad(MoveBase):

    def test_move_while_delivering_and_flagging(self):
        s1, s2 = self.pair['s1'], self.pair['s2']
        addr = 'mover@example.org'
        self.pair.add_user(addr, PW, 's1')
        self.populate(s1, addr, 12)
        before = without_recent(snapshot(s1, addr))
        src_dir = self.user_dir(s1, addr)
        self.assertTrue(os.path.isdir(src_dir))
        inbox_uids = sorted(before['INBOX'][1])

        # a session left open at s1: the move ends it
        idle = s1.imap_ssl()
        idle.login(addr, PW)
        idle.select('INBOX')

        # a transaction at s1 with the account as recipient, its body not
        # sent yet: the move must not leave it to deliver there afterwards
        stalled = lmtp_util.lmtp(s1)
        self.assertEqual(stalled.mail('sender@example.net')[0], 250)
        self.assertEqual(stalled.rcpt(addr)[0], 250)

        stop = threading.Event()
        accepted, codes = set(), []
        flagged, flag_errors = set(), []

        def deliverer():
            servers = [s1, s2]
            i = 0
            while not stop.is_set():
                subject = 'live-%d' % i
                while not stop.is_set():
                    code = deliver(servers[0], addr, subject)
                    codes.append(code)
                    if code == 250:
                        accepted.add(subject)
                        break
                    if code == 451:   # moving or moved: the MTA looks the slot up again
                        servers.reverse()
                    time.sleep(0.05)  # 451, 421, a closed connection: later
                i += 1

        def flagger():
            servers = [s1, s2]
            unflagged = list(inbox_uids)   # every message is flagged, however long the move
            c = None
            while unflagged:
                if time.monotonic() > deadline:
                    flag_errors.append('gave up with %r left' % unflagged)
                    return
                try:
                    if c is None:
                        c = servers[0].imap_ssl()
                        try:
                            c.login(addr, PW)
                        except imaplib.IMAP4.error as e:
                            if 'UNAVAILABLE' not in str(e):
                                flag_errors.append(str(e))
                                return
                            c.shutdown()
                            c = None
                            servers.reverse()    # the client tries the other server
                            time.sleep(0.05)
                            continue
                        typ, _ = c.select('INBOX')
                        if typ != 'OK':
                            raise imaplib.IMAP4.abort('select failed')
                    typ, _ = c.uid('STORE', str(unflagged[0]), '+FLAGS', r'(\Flagged)')
                    if typ == 'OK':
                        flagged.add(unflagged.pop(0))
                    time.sleep(0.1)
                except (imaplib.IMAP4.abort, OSError):
                    if c is not None:
                        try:
                            c.shutdown()
                        except Exception:
                            pass
                    c = None
            if c is not None:
                c.logout()

        deadline = time.monotonic() + 60
        threads = [threading.Thread(target=deliverer), threading.Thread(target=flagger)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.6)
            rc, out, err = move(s1, addr, 's2')
            self.assertEqual(rc, 0, out + err)
            self.assertIn('step 4/6: verified', out)
            time.sleep(1.0)   # the clients go on, now at s2
        finally:
            stop.set()
            for t in threads:
                t.join(90)
        self.assertFalse(flag_errors, flag_errors)
        self.assertEqual(flagged, set(inbox_uids))
        self.assertGreater(len(accepted), 3)
        # deliveries waited (451) or were refused at s1 (550) during the move
        self.assertTrue(any(c in (451, 550) for c in codes), codes)

        # the stalled transaction was ended (421) rather than delivered at s1
        try:
            code, _ = stalled.data(msg('stalled'))
        except (OSError, smtplib.SMTPException):
            code = None
        if code == 250:
            accepted.add('stalled')
        else:
            self.assertIn(code, (None, 421))

        # the session open at s1 was ended
        with self.assertRaises((imaplib.IMAP4.abort, OSError)):
            idle.noop()
            idle.noop()

        after = without_recent(snapshot(s2, addr))
        self.assertEqual(set(after), set(before))
        for name, (uidvalidity, msgs) in before.items():
            self.assertEqual(after[name][0], uidvalidity, name)
            for uid, (subject, flags) in msgs.items():
                self.assertIn(uid, after[name][1], (name, uid, subject))
                got_subject, got_flags = after[name][1][uid]
                self.assertEqual(got_subject, subject)
                want = set(flags) | ({'\\Flagged'} if name == 'INBOX' else set())
                self.assertEqual(set(got_flags), want, (name, uid))
        # every accepted message exactly once, nothing else
        live = [s for s, _ in after['INBOX'][1].values()
                if s.startswith('live-') or s == 'stalled']
        self.assertEqual(sorted(live), sorted(accepted))
        self.assertEqual(len(live), len(set(live)))
        new_uids = [u for u, (s, _) in after['INBOX'][1].items()
                    if s.startswith('live-') or s == 'stalled']
        self.assertTrue(all(u > max(inbox_uids) for u in new_uids))

        # the account lives on s2 now
        ok, text = slot_util.imap_login(s1, addr, PW)
        self.assertFalse(ok)
        self.assertIn('[UNAVAILABLE]', text)
        ok, text = slot_util.imap_login(s2, addr, PW)
        self.assertTrue(ok, text)
        self.assertFalse(os.path.exists(src_dir))
        self.assertIn('released account', s1.log())


class MoveInterrupted(MoveBase):

    def test_rerun_after_each_step(self):
        addr = 'crashy@example.org'
        self.pair.add_user(addr, PW, 's1')
        self.populate(self.pair['s1'], addr, 5)
        here, there = 's1', 's2'
        want = without_recent(snapshot(self.pair[here], addr))
        uid = lmtp_util.user_id(self.pair['s1'], addr)
        for step in ('1', '2', '3tmp', '3', '4', '5'):
            src, dst = self.pair[here], self.pair[there]
            rc, out, err = move(src, addr, there, stop=step)
            self.assertEqual(rc, 7, out + err)
            self.assertIn('stopped after step %s' % step, err)
            if step == '3tmp':
                self.assertTrue(os.path.isdir(os.path.join(dst.data_dir, '.move-%d' % uid)))
            code = deliver(src, addr, 'during-%s' % step)
            if step == '5':
                # flipped: it lives on the target (the source defers: an MTA
                # may have read the old slot), the source copy still there
                self.assertEqual(code, 451)
                self.assertEqual(deliver(dst, addr, 'during-%s' % step), 250)
                self.assertTrue(os.path.isdir(self.user_dir(src, addr)))
            else:
                self.assertEqual(code, 451)
                self.assertEqual(deliver(dst, addr, 'during-%s' % step), 451)
                ok, text = slot_util.imap_login(src, addr, PW)
                self.assertFalse(ok)
            rc, out, err = move(src, addr, there)
            self.assertEqual(rc, 0, out + err)
            got = without_recent(snapshot(dst, addr))
            if step == '5':
                uid_new = [u for u, (s, _) in got['INBOX'][1].items() if s == 'during-5']
                self.assertEqual(len(uid_new), 1)
                del got['INBOX'][1][uid_new[0]]
            self.assertEqual(got, want, 'after a stop at step %s' % step)
            self.assertFalse(os.path.exists(os.path.join(src.data_dir, 'users', str(uid))))
            self.assertFalse(os.path.exists(os.path.join(dst.data_dir, '.move-%d' % uid)))
            ok, text = slot_util.imap_login(src, addr, PW)
            self.assertFalse(ok)
            ok, text = slot_util.imap_login(dst, addr, PW)
            self.assertTrue(ok, text)
            # a rerun of a finished move changes nothing
            rc, out, err = move(src, addr, there)
            self.assertEqual(rc, 0, out + err)
            self.assertIn('already lives on slot %s' % there, out)
            if step == '5':
                want = without_recent(snapshot(dst, addr))
            here, there = there, here

    def test_source_not_running(self):
        s1, s2 = self.pair['s1'], self.pair['s2']
        addr = 'offline@example.org'
        self.pair.add_user(addr, PW, 's1')
        self.populate(s1, addr, 3)
        want = without_recent(snapshot(s1, addr))
        s1.stop()
        try:
            rc, out, err = move(s1, addr, 's2')
            self.assertEqual(rc, 0, out + err)
            self.assertIn('the source coffred is not running', out)
        finally:
            s1.start()
        self.assertEqual(without_recent(snapshot(s2, addr)), want)
        ok, text = slot_util.imap_login(s1, addr, PW)
        self.assertFalse(ok)


if __name__ == '__main__':
    harness.main()
