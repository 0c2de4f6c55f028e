"""An account's index stays open after its last session (mail_keep_open,
mail_keep_open_max): a client that logs in again finds it open, and what
other programs did to the Maildir meanwhile is still seen. Whether the
index is open shows on disk: SQLite removes index.sqlite-wal when its last
connection closes."""
import os
import re
import time

import harness
import imap_util
from imap_util import ImapCase, USER, PASS, USER2, PASS2, make_message


def index_wal(server, addr):
    return os.path.join(os.path.dirname(imap_util.user_maildir(server, addr)),
                        'index.sqlite-wal')


wait_for = harness.wait_for


def file_infos(server, addr):
    cur = os.path.join(imap_util.user_maildir(server, addr), 'cur')
    return [n.split(':2,', 1)[1] for n in os.listdir(cur) if ':2,' in n]


class KeptOpen(ImapCase):
    CONF = {'mail_keep_open': '60s'}

    def session(self, user=USER, password=PASS):
        c = self.login(user, password)
        n = c.select('INBOX')['exists']
        return c, n

    def test_index_stays_open_after_logout(self):
        c, _ = self.session()
        c.logout()
        # still open well after the session's store would have been closed
        time.sleep(1.5)
        self.assertTrue(os.path.exists(index_wal(self.server, USER)))

    def test_drop_into_new_seen_by_next_login(self):
        c, n = self.session()
        c.logout()
        time.sleep(0.1)
        imap_util.drop_messages(self.server, USER, [make_message(101), make_message(102)])
        c, m = self.session()
        self.assertEqual(m, n + 2)
        u, t = c.cmd('FETCH %d:%d (BODY.PEEK[HEADER.FIELDS (SUBJECT)])' % (n + 1, n + 2))
        self.assertOK(t)
        self.assertEqual(len(imap_util.untagged_of(u, 'FETCH')), 2)
        c.logout()

    def test_files_removed_meanwhile_are_expunged(self):
        c, n = self.session()
        c.append('INBOX', make_message(201, subject='to vanish'))
        c.logout()
        cur = os.path.join(imap_util.user_maildir(self.server, USER), 'cur')
        new = os.path.join(imap_util.user_maildir(self.server, USER), 'new')
        gone = 0
        for d in (cur, new):
            for name in os.listdir(d):
                with open(os.path.join(d, name), 'rb') as f:
                    if b'Subject: to vanish' in f.read():
                        os.unlink(os.path.join(d, name))
                        gone += 1
        self.assertEqual(gone, 1)
        c, m = self.session()
        self.assertEqual(m, n)
        u, t = c.cmd('SEARCH SUBJECT "to vanish"')
        self.assertOK(t)
        self.assertEqual(imap_util.search_result(u), [])
        c.logout()

    def test_reindex_while_kept(self):
        c, n = self.session()
        c.append('INBOX', make_message(501, subject='before reindex'))
        u, t = c.cmd('SEARCH SUBJECT "before reindex"')
        c.ok('STORE %d +FLAGS (\\Flagged)' % imap_util.search_result(u)[-1])
        c.logout()
        self.assertTrue(os.path.exists(index_wal(self.server, USER)))
        rc, out, err = self.server.ctl('mailbox', 'reindex', USER)
        self.assertEqual(rc, 0, err)
        # the next session works on the new index file, not the one the
        # kept handle had open
        c, m = self.session()
        self.assertEqual(m, n + 1)
        u, t = c.cmd('SEARCH FLAGGED SUBJECT "before reindex"')
        self.assertOK(t)
        self.assertEqual(len(imap_util.search_result(u)), 1)
        c.append('INBOX', make_message(502, subject='after reindex'))
        c.logout()
        rc, out, err = self.server.ctl('mailbox', 'check', USER)
        self.assertEqual(rc, 0, out + err)
        self.assertIn('replaced', self.server.log())

    def test_flags_reach_file_names_while_kept(self):
        c, n = self.session()
        c.append('INBOX', make_message(301, subject='flag me'))
        u, t = c.cmd('SEARCH SUBJECT "flag me"')
        seq = imap_util.search_result(u)[-1]
        c.ok('STORE %d +FLAGS (\\Flagged)' % seq)
        c.logout()
        # the upkeep writes flags into file names without waiting for the
        # store to close
        self.assertTrue(wait_for(lambda: any('F' in i for i in file_infos(self.server, USER)), 5),
                        file_infos(self.server, USER))
        self.assertTrue(os.path.exists(index_wal(self.server, USER)))


class KeptOpenLimit(ImapCase):
    CONF = {'mail_keep_open': '60s', 'mail_keep_open_max': '1'}

    def test_one_kept_the_older_closes(self):
        c = self.login(USER, PASS)
        c.select('INBOX')
        c.logout()
        self.assertTrue(wait_for(lambda: os.path.exists(index_wal(self.server, USER)), 2))
        time.sleep(0.5)
        self.assertTrue(os.path.exists(index_wal(self.server, USER)))
        c = self.login(USER2, PASS2)
        c.select('INBOX')
        c.logout()
        # USER2 takes the only place: USER's index is closed
        self.assertTrue(wait_for(lambda: not os.path.exists(index_wal(self.server, USER)), 5))
        self.assertTrue(os.path.exists(index_wal(self.server, USER2)))
        # and opens again on the next login
        c = self.login(USER, PASS)
        c.select('INBOX')
        self.assertTrue(os.path.exists(index_wal(self.server, USER)))
        c.logout()


class KeptOpenExpiry(ImapCase):
    CONF = {'mail_keep_open': '2s'}

    def test_closes_after_keep_open(self):
        c = self.login()
        c.select('INBOX')
        c.logout()
        t0 = time.monotonic()
        time.sleep(0.5)
        self.assertTrue(os.path.exists(index_wal(self.server, USER)))
        self.assertTrue(wait_for(lambda: not os.path.exists(index_wal(self.server, USER)), 6))
        self.assertGreaterEqual(time.monotonic() - t0, 1.9)


class NotKept(ImapCase):
    CONF = {'mail_keep_open': '0'}

    def test_closes_at_once(self):
        c = self.login()
        c.select('INBOX')
        self.assertTrue(os.path.exists(index_wal(self.server, USER)))
        c.logout()
        self.assertTrue(wait_for(lambda: not os.path.exists(index_wal(self.server, USER)), 3))


class ShutdownClosesKept(ImapCase):
    CONF = {'mail_keep_open': '10m'}

    def test_sigterm_writes_flags_and_closes(self):
        srv = harness.Server(dict(self.CONF), name='keep-open-shutdown')
        self.addCleanup(srv.cleanup)
        srv.start()
        srv.add_user(USER, PASS)
        with srv.raw('imaps', tls=True) as raw:
            c = imap_util.Imap(raw)
            c.login(USER, PASS)
            c.select('INBOX')
            c.append('INBOX', make_message(401, subject='answered before stop'))
            u, t = c.cmd('SEARCH SUBJECT "answered before stop"')
            seq = imap_util.search_result(u)[-1]
            c.ok('STORE %d +FLAGS (\\Answered)' % seq)
            c.logout()
        rc = srv.stop()
        self.assertEqual(rc, 0, srv.log_tail())
        self.assertEqual(srv.sanitizer_reports(), [])
        self.assertFalse(os.path.exists(index_wal(srv, USER)))
        self.assertTrue(any('R' in i for i in file_infos(srv, USER)), file_infos(srv, USER))


if __name__ == '__main__':
    harness.main()
