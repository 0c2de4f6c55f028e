"""Slots: what a coffred with slot_name does with accounts that live on
another slot or are being moved (issue 18). Two coffred (s1, s2) share one
account directory (accounts_dsn, SQLite): a login of an s2 account at s1 is
a temporary failure, logged with the slot it lives on, whatever the
mechanism and even when the authentication cache knows the password; LMTP
at s1 answers 550 5.1.1 for it, except for lmtp_moved_grace after a move
took it away from s1: then 451 4.2.1 (the MTA looked the slot up just
before the move, or caches the route, and must try again rather than
bounce), as for an account being moved.
With slot_name empty nothing of this applies."""
import os
import sqlite3
import time
import unittest

import harness
import lmtp_util
import slot_util

PW = 'correct horse battery'
MSG = b'From: a@example.org\r\nSubject: routed\r\n\r\nhello\r\n'


class SlotRouting(slot_util.SlotTestCase):

    @classmethod
    def setUpSlots(cls):
        cls.pair.add_user('one@example.org', PW, 's1')
        cls.pair.add_user('two@example.org', PW, 's2')
        cls.pair.add_user('mover@example.org', PW, 's1')
        cls.pair.add_user('cached@example.org', PW, 's1')
        cls.pair.add_user('moved@example.org', PW, 's1')

    def s(self, n):
        return self.pair[n]

    def wait_log(self, server, text, timeout=5):
        ok = harness.wait_for(lambda: text in server.log(), timeout)
        self.assertTrue(ok, 'no %r in the log\n%s' % (text, server.log_tail()))

    def rcpt(self, server, addr):
        c = lmtp_util.lmtp(server)
        try:
            code, _ = c.mail('sender@example.net')
            self.assertEqual(code, 250)
            code, text = c.rcpt(addr)
            return code, text.decode()
        finally:
            c.quit()

    def test_login_elsewhere_is_temporary(self):
        ok, text = slot_util.imap_login(self.s('s1'), 'two@example.org', PW)
        self.assertFalse(ok)
        self.assertIn('[UNAVAILABLE]', text)
        self.wait_log(self.s('s1'), 'two@example.org refused: the account lives on slot s2')
        ok, text = slot_util.imap_login(self.s('s2'), 'two@example.org', PW)
        self.assertTrue(ok, text)
        # its own accounts log in as ever
        ok, text = slot_util.imap_login(self.s('s1'), 'one@example.org', PW)
        self.assertTrue(ok, text)

    def test_pop3_elsewhere_is_temporary(self):
        p = self.s('s1').pop3_ssl()
        try:
            p.user('two@example.org')
            with self.assertRaises(Exception) as e:
                p.pass_(PW)
            self.assertIn('[SYS/TEMP]', str(e.exception))
        finally:
            p.close()
        p = self.s('s2').pop3_ssl()
        try:
            p.user('two@example.org')
            self.assertTrue(p.pass_(PW).startswith(b'+OK'))
            p.quit()
        finally:
            p.close()

    def test_authenticate_plain_elsewhere(self):
        c = self.s('s1').imap_ssl()
        try:
            with self.assertRaises(c.error) as e:
                c.authenticate('PLAIN', lambda _: b'\0two@example.org\0' + PW.encode())
            self.assertIn('UNAVAILABLE', str(e.exception))
        finally:
            c.shutdown()

    def test_cache_hit_refused_after_slot_change(self):
        # the authentication cache knows the password after this login
        ok, text = slot_util.imap_login(self.s('s1'), 'cached@example.org', PW)
        self.assertTrue(ok, text)
        rc, out, err = self.s('s1').ctl('user', 'set-slot', 'cached@example.org', 's2')
        self.assertEqual(rc, 0, err)
        ok, text = slot_util.imap_login(self.s('s1'), 'cached@example.org', PW)
        self.assertFalse(ok)
        self.assertIn('[UNAVAILABLE]', text)
        self.wait_log(self.s('s1'), 'cached@example.org refused: the account lives on slot s2')

    def test_lmtp_elsewhere_550(self):
        code, text = self.rcpt(self.s('s1'), 'two@example.org')
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith('5.1.1'), text)
        code, text = self.rcpt(self.s('s2'), 'two@example.org')
        self.assertEqual(code, 250, text)
        code, text = self.rcpt(self.s('s1'), 'one@example.org')
        self.assertEqual(code, 250, text)
        # a detail does not hide where the account lives
        code, text = self.rcpt(self.s('s1'), 'two+box@example.org')
        self.assertEqual(code, 550, text)

    def test_lmtp_moved_away_451_then_550(self):
        s1, s2 = self.s('s1'), self.s('s2')
        rc, out, err = s1.ctl('user', 'move', 'moved@example.org', '--to', 's2')
        self.assertEqual(rc, 0, out + err)
        code, text = self.rcpt(s2, 'moved@example.org')
        self.assertEqual(code, 250, text)
        # within lmtp_moved_grace the old slot defers: the MTA asks again
        code, text = self.rcpt(s1, 'moved@example.org')
        self.assertEqual(code, 451, text)
        self.assertTrue(text.startswith('4.2.1'), text)
        # the move noted longer ago than the grace: the old slot refuses
        db = sqlite3.connect(self.pair.dsn, timeout=10)
        try:
            with db:
                db.execute("UPDATE accounts SET moved_at = moved_at - 601 WHERE address = ?",
                           ('moved@example.org',))
        finally:
            db.close()
        code, text = self.rcpt(s1, 'moved@example.org')
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith('5.1.1'), text)

    def test_moving_451_and_temporary_login(self):
        s1, s2 = self.s('s1'), self.s('s2')
        env = dict(os.environ, COFFRE_MOVE_STOP_AFTER='1')
        import subprocess
        r = subprocess.run([harness.COFFRECTL, '-c', s1.conf_path, 'user', 'move',
                            'mover@example.org', '--to', 's2'], env=env,
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('stopped after step 1', r.stderr)
        try:
            for srv in (s1, s2):
                code, text = self.rcpt(srv, 'mover@example.org')
                self.assertEqual(code, 451, text)
                self.assertTrue(text.startswith('4.2.1'), text)
                ok, text = slot_util.imap_login(srv, 'mover@example.org', PW)
                self.assertFalse(ok)
                self.assertIn('[UNAVAILABLE]', text)
            self.wait_log(s1, 'mover@example.org refused: the account is moving to slot s2')
        finally:
            # called off: a move back to the slot it lives on
            rc, out, err = s1.ctl('user', 'move', 'mover@example.org', '--to', 's1')
            self.assertEqual(rc, 0, out + err)
            self.assertIn('called off', out)
        code, text = self.rcpt(s1, 'mover@example.org')
        self.assertEqual(code, 250, text)
        ok, text = slot_util.imap_login(s1, 'mover@example.org', PW)
        self.assertTrue(ok, text)


class NotSharded(harness.ServerTestCase):
    """slot_name empty: every account is served, whatever its slot column."""

    @classmethod
    def setUpServer(cls):
        srv = cls.server
        cls.server.add_user('any@example.org', PW)
        rc, out, err = srv.ctl('slot', 'add', 'elsewhere', '--host', '127.0.0.9',
                               '--imap-port', '1143', '--pop3-port', '1110',
                               '--lmtp-port', '1024')
        assert rc == 0, err
        rc, out, err = srv.ctl('user', 'set-slot', 'any@example.org', 'elsewhere')
        assert rc == 0, err

    def test_served_whatever_the_slot(self):
        ok, text = slot_util.imap_login(self.server, 'any@example.org', PW)
        self.assertTrue(ok, text)
        c = lmtp_util.lmtp(self.server)
        try:
            rcpt, replies = lmtp_util.send(c, 's@example.net', ['any@example.org'], MSG)
            self.assertEqual(rcpt[0][0], 250)
            self.assertEqual(replies[0][0], 250)
        finally:
            c.quit()
        self.assertNotIn('lives on slot', self.server.log())


if __name__ == '__main__':
    harness.main()
