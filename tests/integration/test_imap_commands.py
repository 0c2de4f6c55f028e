"""IMAP4rev1 commands through Python's imaplib, over IMAPS (993) and over
STARTTLS (143): capabilities, ENABLE, ID, NAMESPACE, SELECT/EXAMINE with
their response codes, APPEND (flags, date, APPENDUID), STORE and UID STORE
(FLAGS, +FLAGS, -FLAGS, .SILENT, keywords), COPY/UID COPY (COPYUID),
MOVE/UID MOVE, EXPUNGE, UID EXPUNGE, CHECK, CLOSE, UNSELECT, SEARCH and
UID SEARCH, STATUS, IDLE, LOGOUT. Exact responses are checked where the
RFCs fix them."""
import imaplib
import re
import socket
import time

import harness
import imap_util
from imap_util import ImapCase, USER, PASS, USER2, PASS2, make_message

imaplib.Commands.setdefault('ID', ('NONAUTH', 'AUTH', 'SELECTED'))
imaplib.Commands.setdefault('IDLE', ('SELECTED',))

REQUIRED_CAPS = {'IMAP4REV1', 'LITERAL+', 'SASL-IR', 'ID', 'ENABLE', 'IDLE', 'NAMESPACE',
                 'UIDPLUS', 'MULTIAPPEND', 'MOVE', 'UNSELECT', 'CHILDREN', 'SPECIAL-USE',
                 'CREATE-SPECIAL-USE', 'LIST-EXTENDED', 'XLIST'}
DATE = '17-Jul-1996 02:44:25 -0700'


def ok(res, what=''):
    typ, data = res
    if typ != 'OK':
        raise AssertionError('%s: %s %r' % (what, typ, data))
    return data


class Commands(ImapCase):
    TLS = True

    def imap(self, user=USER, password=PASS):
        c = self.server.imap_ssl() if self.TLS else self.server.imap_starttls()
        self.addCleanup(harness.close_quietly, c)
        if user:
            ok(c.login(user, password), 'LOGIN')
        return c

    def fresh_mailbox(self, c, name):
        c.delete(name)
        ok(c.create(name), 'CREATE ' + name)
        return name

    def filled(self, name, n, flags=lambda i: None, select=False):
        """A session, with the mailbox name created afresh holding
        make_message(0 .. n-1), each appended with flags(i); selected when
        select."""
        c = self.imap()
        self.fresh_mailbox(c, name)
        for i in range(n):
            ok(c.append(name, flags(i), None, make_message(i)))
        if select:
            c.select(name)
        return c

    def assertRefused(self, res, code):
        """An imaplib (type, data) result: NO with the response code."""
        typ, data = res
        self.assertEqual(typ, 'NO')
        self.assertIn(code, data[0])

    def assertMessages(self, c, name, n):
        """STATUS says the mailbox holds n messages."""
        typ, data = c.status(name, '(MESSAGES)')
        self.assertIn(b'MESSAGES %d' % n, data[0])

    # -- any state ------------------------------------------------------

    def test_capabilities_after_login(self):
        c = self.imap()
        typ, data = c.capability()
        self.assertEqual(typ, 'OK')
        caps = set(data[0].decode().upper().split())
        self.assertEqual(REQUIRED_CAPS - caps, set(), caps)
        self.assertNotIn('LOGINDISABLED', caps)
        self.assertNotIn('STARTTLS', caps)

    def test_capabilities_before_login_over_tls(self):
        c = self.imap(user=None)
        caps = set(x.upper() for x in c.capabilities)
        self.assertTrue({'IMAP4REV1', 'AUTH=PLAIN', 'AUTH=LOGIN', 'SASL-IR', 'LITERAL+', 'ID',
                         'ENABLE'} <= caps, caps)
        self.assertNotIn('LOGINDISABLED', caps)

    def test_id(self):
        c = self.imap(user=None)
        typ, data = c.xatom('ID', '("name" "imaplib-test" "version" "1")')
        self.assertEqual(typ, 'OK', data)
        typ, data = c._untagged_response(typ, data, 'ID')
        self.assertTrue(data and data[0] is not None, data)
        self.assertTrue(data[0] == b'NIL' or data[0].startswith(b'('), data)
        # NIL is valid too
        typ, data = c.xatom('ID', 'NIL')
        self.assertEqual(typ, 'OK', data)

    def test_noop_logout(self):
        c = self.imap()
        self.assertEqual(c.noop()[0], 'OK')
        typ, data = c.logout()
        self.assertEqual(typ, 'BYE')

    # -- authenticated --------------------------------------------------

    def test_enable(self):
        c = self.imap()
        typ, data = c._simple_command('ENABLE', 'X-NONE')
        self.assertEqual(typ, 'OK', data)
        # an unknown capability is ignored: an empty (or absent) ENABLED
        en = c.untagged_responses.pop('ENABLED', [b''])
        self.assertNotIn(b'X-NONE', en[0] or b'')

    def test_enable_not_authenticated_is_bad(self):
        c = self.imap(user=None)
        c.state = 'AUTH'   # let imaplib send it; BAD raises
        try:
            typ, data = c._simple_command('ENABLE', 'UTF8=ACCEPT')
        except imaplib.IMAP4.error:
            typ = 'BAD'
        self.assertIn(typ, ('NO', 'BAD'))
        c.state = 'NONAUTH'
        self.assertEqual(c.noop()[0], 'OK')

    def test_namespace(self):
        c = self.imap()
        typ, data = c.namespace()
        self.assertEqual(typ, 'OK')
        ns = data[0]
        self.assertRegex(ns, rb'^\(\("[^"]*" "[./]"\)\) (NIL|\(.*\)) (NIL|\(.*\))$')

    def test_select_response_codes(self):
        c = self.filled('Sel', 3, lambda i: '(\\Seen)' if i == 0 else None)
        typ, data = c.select('Sel')
        self.assertEqual(typ, 'OK')
        self.assertEqual(data, [b'3'])
        self.assertEqual(c.untagged_responses.get('RECENT'), [b'3'])
        self.assertNotIn('READ-ONLY', c.untagged_responses)
        uv = c.response('UIDVALIDITY')[1]
        self.assertTrue(uv[0] and int(uv[0]) > 0, uv)
        un = c.response('UIDNEXT')[1]
        self.assertTrue(un[0] and int(un[0]) >= 4, un)
        self.assertEqual(c.response('UNSEEN')[1], [b'2'])
        flags = c.response('FLAGS')[1][0]
        for f in (b'\\Answered', b'\\Flagged', b'\\Deleted', b'\\Seen', b'\\Draft'):
            self.assertIn(f, flags)
        perm = c.response('PERMANENTFLAGS')[1][0]
        self.assertIn(b'\\*', perm)

    def test_examine_is_read_only(self):
        c = self.imap()
        self.fresh_mailbox(c, 'Ro')
        ok(c.append('Ro', None, None, make_message(1)))
        typ, data = c.select('Ro', readonly=True)
        self.assertEqual(typ, 'OK')
        # STORE in an EXAMINEd mailbox changes nothing (RFC 3501 6.3.2:
        # no permanent changes; NO, BAD or an OK that stores nothing)
        try:
            c.store('1', '+FLAGS', '\\Deleted')
        except imaplib.IMAP4.error:
            pass
        typ, data = c.fetch('1', '(FLAGS)')
        self.assertNotIn(b'Deleted', data[0])
        c.close()
        self.assertMessages(c, 'Ro', 1)

    def test_select_nonexistent(self):
        c = self.imap()
        typ, data = c.select('No/Such/Box')
        self.assertEqual(typ, 'NO', data)
        # a failed SELECT leaves the authenticated state
        self.assertEqual(c.state, 'AUTH')
        typ, data = c._simple_command('NOOP')
        self.assertEqual(typ, 'OK')

    def test_append_flags_date_appenduid(self):
        c = self.imap()
        self.fresh_mailbox(c, 'App')
        msg = make_message(7)
        typ, data = c.append('App', '(\\Flagged $Work)', imaplib.Time2Internaldate(
            837596665), msg)
        self.assertEqual(typ, 'OK', data)
        m = re.search(rb'\[APPENDUID (\d+) (\d+)\]', data[0])
        self.assertIsNotNone(m, data)
        uid = int(m.group(2))
        c.select('App')
        uv = int(c.response('UIDVALIDITY')[1][0])
        self.assertEqual(int(m.group(1)), uv)
        typ, data = c.uid('FETCH', str(uid), '(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])')
        self.assertEqual(typ, 'OK')
        meta, body = data[0]
        self.assertEqual(body, msg)
        self.assertIn(b'\\Flagged', meta)
        self.assertIn(b'$Work', meta)
        self.assertIn(b'RFC822.SIZE %d' % len(msg), meta)
        self.assertEqual(time.mktime(imaplib.Internaldate2tuple(meta)), 837596665)

    def test_append_to_missing_mailbox_trycreate(self):
        c = self.imap()
        self.assertRefused(c.append('Missing-Box', None, None, make_message(1)), b'[TRYCREATE]')

    def test_status(self):
        c = self.filled('St', 4, lambda i: '(\\Seen)' if i < 1 else None)
        typ, data = c.status('St', '(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)')
        self.assertEqual(typ, 'OK')
        m = re.match(rb'^"?St"? \((.*)\)$', data[0])
        self.assertIsNotNone(m, data)
        kv = m.group(1).split()
        d = dict(zip(kv[::2], (int(x) for x in kv[1::2])))
        self.assertEqual(d[b'MESSAGES'], 4)
        self.assertEqual(d[b'RECENT'], 4)
        self.assertEqual(d[b'UNSEEN'], 3)
        self.assertGreaterEqual(d[b'UIDNEXT'], 5)
        self.assertGreater(d[b'UIDVALIDITY'], 0)

    def test_mailbox_commands(self):
        c = self.imap()
        c.delete('Fam/Kid')
        c.delete('Fam')
        c.delete('Fam2')
        self.assertEqual(c.create('Fam')[0], 'OK')
        self.assertEqual(c.create('Fam/Kid')[0], 'OK')
        self.assertRefused(c.create('Fam'), b'[ALREADYEXISTS]')
        typ, data = c.list('""', 'Fam*')
        self.assertEqual(typ, 'OK')
        self.assertEqual(len(data), 2, data)
        self.assertTrue(any(b'\\HasChildren' in x and x.endswith(b'Fam') or
                            x.endswith(b'"Fam"') for x in data), data)
        self.assertEqual(c.subscribe('Fam/Kid')[0], 'OK')
        typ, data = c.lsub('""', 'Fam*')
        self.assertEqual(len(data), 1, data)
        self.assertIn(b'Fam/Kid', data[0])
        self.assertEqual(c.unsubscribe('Fam/Kid')[0], 'OK')
        typ, data = c.lsub('""', 'Fam*')
        self.assertEqual(data, [None])
        self.assertEqual(c.rename('Fam', 'Fam2')[0], 'OK')
        typ, data = c.list('""', 'Fam*')
        self.assertEqual(sorted(x.rsplit(b' ', 1)[1].strip(b'"') for x in data),
                         [b'Fam2', b'Fam2/Kid'])
        self.assertEqual(c.delete('Fam2/Kid')[0], 'OK')
        self.assertEqual(c.delete('Fam2')[0], 'OK')
        self.assertRefused(c.delete('Fam2'), b'[NONEXISTENT]')
        typ, data = c.list('""', '%')
        self.assertTrue(any(x.endswith(b'INBOX') or x.endswith(b'"INBOX"') for x in data), data)

    # -- selected -------------------------------------------------------

    def test_store_variants(self):
        c = self.filled('Sto', 3, select=True)
        typ, data = c.store('1', 'FLAGS', '(\\Seen $Key1)')
        self.assertEqual(typ, 'OK')
        self.assertEqual(len(data), 1)
        self.assertRegex(data[0], rb'^1 \(FLAGS \((?=.*\\Seen)(?=.*\$Key1)[^)]*\)\)$')
        typ, data = c.store('1:2', '+FLAGS', '(\\Flagged)')
        self.assertEqual(typ, 'OK')
        self.assertEqual(len(data), 2, data)
        typ, data = c.store('1', '-FLAGS', '(\\Seen)')
        self.assertEqual(typ, 'OK')
        self.assertNotIn(b'\\Seen', data[0])
        self.assertIn(b'\\Flagged', data[0])
        typ, data = c.store('2', '+FLAGS.SILENT', '(\\Answered)')
        self.assertEqual(typ, 'OK')
        self.assertEqual(data, [None])
        typ, data = c.fetch('1:3', '(FLAGS)')
        got = {int(x.split()[0]): set(re.search(rb'FLAGS \(([^)]*)\)', x).group(1).split())
               - {b'\\Recent'} for x in data}
        self.assertEqual(got, {1: {b'\\Flagged', b'$Key1'},
                               2: {b'\\Flagged', b'\\Answered'}, 3: set()})

    def test_uid_store(self):
        c = self.filled('UStore', 3, select=True)
        typ, data = c.uid('SEARCH', 'ALL')
        uids = [int(x) for x in data[0].split()]
        self.assertEqual(len(uids), 3)
        typ, data = c.uid('STORE', str(uids[2]), '+FLAGS', '(\\Deleted)')
        self.assertEqual(typ, 'OK')
        self.assertRegex(data[0], rb'^3 \((?=.*UID %d)(?=.*FLAGS \([^)]*\\Deleted).*\)$' % uids[2])

    def test_copy_copyuid(self):
        c = self.filled('CpSrc', 3, lambda i: '(\\Flagged)', select=True)
        self.fresh_mailbox(c, 'CpDst')
        typ, data = c.copy('1:2', 'CpDst')
        self.assertEqual(typ, 'OK')
        m = re.search(rb'\[COPYUID (\d+) ([\d:,]+) ([\d:,]+)\]', data[0])
        self.assertIsNotNone(m, data)
        src = imap_util.parse_seqset(m.group(2).decode())
        dst = imap_util.parse_seqset(m.group(3).decode())
        self.assertEqual(len(src), 2)
        self.assertEqual(len(dst), 2)
        typ, data = c.uid('COPY', '%d' % src[0], 'CpDst')
        self.assertEqual(typ, 'OK')     # (imaplib drops the tagged text of UID)
        self.assertMessages(c, 'CpDst', 3)
        self.assertRefused(c.copy('1', 'No-Such'), b'[TRYCREATE]')
        # flags travel with the copy
        c.select('CpDst')
        typ, data = c.fetch('1:*', '(FLAGS)')
        self.assertTrue(all(b'\\Flagged' in x for x in data), data)

    def test_move_and_uid_move(self):
        c = self.filled('MvSrc', 4, select=True)
        self.fresh_mailbox(c, 'MvDst')
        typ, data = c._simple_command('MOVE', '2:3', 'MvDst')
        self.assertEqual(typ, 'OK', data)
        exp = c.untagged_responses.pop('EXPUNGE', [])
        self.assertIn(exp, ([b'2', b'2'], [b'3', b'2']))
        cu = c.untagged_responses.pop('COPYUID', None)
        self.assertTrue(cu or b'COPYUID' in data[0], (cu, data))
        typ, data = c.uid('SEARCH', 'ALL')
        uids = [int(x) for x in data[0].split()]
        self.assertEqual(len(uids), 2)
        typ, data = c.uid('MOVE', str(uids[1]), 'MvDst')
        self.assertEqual(typ, 'OK', data)
        self.assertEqual(c.untagged_responses.pop('EXPUNGE', []), [b'2'])
        self.assertMessages(c, 'MvDst', 3)
        self.assertMessages(c, 'MvSrc', 1)

    def test_expunge_sequence_numbers(self):
        c = self.filled('Exp', 5, select=True)
        c.store('2,4,5', '+FLAGS.SILENT', '(\\Deleted)')
        typ, data = c.expunge()
        self.assertEqual(typ, 'OK')
        # RFC 3501 7.4.1: each EXPUNGE renumbers the following messages
        self.assertTrue(data in ([b'2', b'3', b'3'], [b'5', b'4', b'2']), data)
        typ, data = c.search(None, 'ALL')
        self.assertEqual(data, [b'1 2'])

    def test_uid_expunge(self):
        c = self.filled('UExp', 3, select=True)
        typ, data = c.uid('SEARCH', 'ALL')
        uids = [int(x) for x in data[0].split()]
        c.store('1:3', '+FLAGS.SILENT', '(\\Deleted)')
        typ, data = c.uid('EXPUNGE', str(uids[1]))
        self.assertEqual(typ, 'OK', data)
        self.assertEqual(c.untagged_responses.pop('EXPUNGE', []), [b'2'])
        typ, data = c.uid('SEARCH', 'ALL')
        self.assertEqual([int(x) for x in data[0].split()], [uids[0], uids[2]])

    def test_close_expunges_silently_unselect_does_not(self):
        c = self.filled('Cl', 3, select=True)
        c.store('1', '+FLAGS.SILENT', '(\\Deleted)')
        typ, data = c.unselect()
        self.assertEqual(typ, 'OK')
        self.assertNotIn('EXPUNGE', c.untagged_responses)
        self.assertMessages(c, 'Cl', 3)
        c.select('Cl')
        typ, data = c.close()
        self.assertEqual(typ, 'OK')
        self.assertNotIn('EXPUNGE', c.untagged_responses)
        self.assertMessages(c, 'Cl', 2)

    def test_close_on_examine_does_not_expunge(self):
        c = self.imap()
        self.fresh_mailbox(c, 'ClRo')
        ok(c.append('ClRo', '(\\Deleted)', None, make_message(1)))
        c.select('ClRo', readonly=True)
        self.assertEqual(c.close()[0], 'OK')
        self.assertMessages(c, 'ClRo', 1)

    def test_check(self):
        c = self.imap()
        c.select('INBOX')
        self.assertEqual(c.check()[0], 'OK')

    def test_search_and_uid_search(self):
        c = self.imap()
        self.fresh_mailbox(c, 'Se')
        ok(c.append('Se', '(\\Seen)', None, make_message(1, subject='apple pie')))
        ok(c.append('Se', None, None, make_message(2, subject='banana split')))
        ok(c.append('Se', '(\\Flagged)', None, make_message(3, subject='cherry apple')))
        c.select('Se')
        self.assertEqual(c.search(None, 'SUBJECT', 'apple'), ('OK', [b'1 3']))
        self.assertEqual(c.search(None, 'UNSEEN'), ('OK', [b'2 3']))
        self.assertEqual(c.search(None, 'FLAGGED NOT SEEN'), ('OK', [b'3']))
        self.assertEqual(c.search('UTF-8', 'BODY', 'message 2'), ('OK', [b'2']))
        typ, data = c.uid('SEARCH', 'ALL')
        uids = data[0].split()
        typ, data = c.uid('SEARCH', 'SUBJECT', 'banana')
        self.assertEqual(data, [uids[1]])

    def test_idle_sees_append_from_other_session(self):
        c = self.imap()
        self.fresh_mailbox(c, 'Idle')
        c.select('Idle')
        tag = c._new_tag()
        c.send(tag + b' IDLE\r\n')
        c.sock.settimeout(5)
        self.assertTrue(c.readline().startswith(b'+'))
        o = self.imap()
        ok(o.append('Idle', None, None, make_message(1)))
        c.sock.settimeout(1.0)
        line = c.readline()
        self.assertIn(line.rstrip(), (b'* 1 EXISTS', b'* 1 RECENT'))
        c.sock.settimeout(5)
        c.send(b'DONE\r\n')
        rest = []
        while True:
            line = c.readline()
            if line.startswith(tag):
                break
            rest.append(line)
        self.assertTrue(line.startswith(tag + b' OK'), line)

    def test_wrong_state(self):
        c = self.imap()
        c.state = 'SELECTED'   # imaplib would refuse to send these
        for cmd in (('FETCH', '1', '(FLAGS)'), ('EXPUNGE',), ('CLOSE',)):
            with self.subTest(cmd=cmd[0]):
                with self.assertRaises(imaplib.IMAP4.error):   # BAD
                    c._simple_command(*cmd)
        c.state = 'NONAUTH'
        with self.assertRaises(imaplib.IMAP4.error):
            c._simple_command('LOGIN', USER, PASS)
        c.state = 'AUTH'
        self.assertEqual(c.noop()[0], 'OK')


class CommandsStartTLS(Commands):
    TLS = False


if __name__ == '__main__':
    harness.main()
