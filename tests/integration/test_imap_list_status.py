"""LIST-STATUS (RFC 5819), STATUS=SIZE (RFC 8438) and APPENDLIMIT (RFC
7889): `LIST ... RETURN (STATUS (items))` answers, right after the LIST
line of each selectable mailbox, the STATUS that STATUS itself gives, and
none for a \\Noselect or \\NonExistent name; it goes with the LIST-EXTENDED
selection options (SUBSCRIBED, RECURSIVEMATCH, SPECIAL-USE) and with
answers long enough to take several steps. STATUS SIZE is the sum of the
messages' RFC822.SIZE (0 for an empty mailbox); APPENDLIMIT is
max_message_size, in CAPABILITY and as a STATUS item.

Against Dovecot (IMAP_TESTS_AGAINST=dovecot) what Dovecot 2.3 does not
advertise is skipped."""
import re
import unittest

from imap_util import AGAINST_DOVECOT, ImapCase, make_message, quote

LIST_RE = re.compile(rb'^\* LIST \(([^)]*)\) (?:"/"|NIL) ("(?:[^"\\]|\\.)*"|[^ ]+)')
STATUS_RE = re.compile(rb'^\* STATUS ("(?:[^"\\]|\\.)*"|[^ ]+) \(([^)]*)\)$')


def name_of(raw):
    raw = raw.strip()
    return raw[1:-1].replace(b'\\"', b'"').replace(b'\\\\', b'\\') if raw.startswith(b'"') else raw


def items_of(s):
    w = s.split()
    return {w[i].decode().upper(): int(w[i + 1]) for i in range(0, len(w), 2)}


def list_status(untagged):
    """[(name, attributes, status items or None)] in answer order; fails
    on a STATUS that does not follow its own LIST line."""
    out = []
    for r in untagged:
        m = LIST_RE.match(r)
        if m:
            out.append((name_of(m.group(2)), m.group(1).decode().lower().split(), None))
            continue
        m = STATUS_RE.match(r)
        if m:
            name = name_of(m.group(1))
            if not out or out[-1][0] != name or out[-1][2] is not None:
                raise AssertionError('STATUS of %r not right after its LIST line: %r'
                                     % (name, untagged))
            out[-1] = (name, out[-1][1], items_of(m.group(2)))
    return out


class ListStatus(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        from imap_util import Imap
        c = Imap(cls.server.raw('imaps', tls=True))
        c.login()
        c.ok('CREATE LS/a/b/c')
        c.ok('CREATE LS/full')
        for i in range(3):
            c.append('LS/full', make_message(i))
        c.append('LS/a/b/c', make_message(7))
        c.ok('SELECT LS/full')
        c.ok('STORE 1 +FLAGS (\\Seen)')
        c.ok('LOGOUT')

    def caps(self, c):
        return c.ok('CAPABILITY')[0].decode().split()

    def assert_matches_status(self, c, rows, items):
        """Each selectable row has the STATUS that STATUS gives; the others none."""
        for name, attrs, st in rows:
            if '\\noselect' in attrs or '\\nonexistent' in attrs:
                self.assertIsNone(st, (name, attrs))
                continue
            self.assertIsNotNone(st, (name, attrs, rows))
            u = c.ok('STATUS %s (%s)' % (quote(name.decode()), items))
            m = STATUS_RE.match(u[0])
            self.assertEqual(st, items_of(m.group(2)), name)

    def test_advertised(self):
        c = self.login()
        caps = self.caps(c)
        self.assertIn('LIST-STATUS', caps)
        if not AGAINST_DOVECOT:
            self.assertIn('STATUS=SIZE', caps)

    def test_rfc5819_example(self):
        # RFC 5819 section 5: LIST "" % RETURN (STATUS (MESSAGES UNSEEN))
        c = self.login()
        rows = list_status(c.ok('LIST "" "LS/%" RETURN (STATUS (MESSAGES UNSEEN))'))
        self.assertEqual(sorted(r[0] for r in rows), [b'LS/a', b'LS/full'])
        self.assert_matches_status(c, rows, 'MESSAGES UNSEEN')
        full = dict((r[0], r[2]) for r in rows)[b'LS/full']
        self.assertEqual(full, {'MESSAGES': 3, 'UNSEEN': 2})

    def test_tree_with_noselect_levels(self):
        # Dovecot leaves LS/a and LS/a/b \Noselect; coffre creates them
        c = self.login()
        rows = list_status(c.ok('LIST "" "LS/*" RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY))'))
        self.assertEqual(sorted(r[0] for r in rows),
                         [b'LS/a', b'LS/a/b', b'LS/a/b/c', b'LS/full'])
        self.assert_matches_status(c, rows, 'MESSAGES UIDNEXT UIDVALIDITY')
        self.assertEqual(dict((r[0], r[2]) for r in rows)[b'LS/a/b/c']['MESSAGES'], 1)

    def test_subscribed_recursivematch_nonexistent(self):
        c = self.login()
        if AGAINST_DOVECOT:
            # Dovecot subscribes only to a mailbox that exists (then keeps
            # the subscription when it goes)
            c.ok('CREATE LS/gone/child')
            c.ok('SUBSCRIBE LS/gone/child')
            c.ok('DELETE LS/gone/child')
        else:
            c.ok('SUBSCRIBE LS/gone/child')
        c.ok('SUBSCRIBE LS/full')
        c.ok('SUBSCRIBE LS/a/b/c')
        try:
            rows = list_status(c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "LS/%" '
                                    'RETURN (STATUS (MESSAGES))'))
            names = dict((r[0], r) for r in rows)
            # LS/a: listed for its subscribed descendant (CHILDINFO), not
            # subscribed itself; a STATUS if it is a mailbox (coffre), none
            # if it is not (Dovecot)
            self.assertIn(b'LS/a', names)
            self.assertNotIn('\\subscribed', names[b'LS/a'][1])
            self.assert_matches_status(c, rows, 'MESSAGES')
            self.assertIn(b'LS/full', names)
            self.assertEqual(names[b'LS/full'][2], {'MESSAGES': 3})
            # the parent of a subscription to nothing: listed, no STATUS
            self.assertIn(b'LS/gone', names)
            self.assertIsNone(names[b'LS/gone'][2])
            rows = list_status(c.ok('LIST (SUBSCRIBED) "" "LS/*" RETURN (STATUS (MESSAGES))'))
            names = dict((r[0], r) for r in rows)
            self.assertIn('\\nonexistent', names[b'LS/gone/child'][1])
            self.assertIsNone(names[b'LS/gone/child'][2])
            self.assertEqual(names[b'LS/full'][2], {'MESSAGES': 3})
        finally:
            c.ok('UNSUBSCRIBE LS/gone/child')
            c.ok('UNSUBSCRIBE LS/full')
            c.ok('UNSUBSCRIBE LS/a/b/c')

    def test_special_use_selection(self):
        c = self.login()
        c.append('Sent', make_message(1))
        rows = list_status(c.ok('LIST (SPECIAL-USE) "" "*" RETURN (STATUS (MESSAGES))'))
        self.assertTrue(rows)
        for name, attrs, st in rows:
            self.assertTrue(set(attrs) & {'\\sent', '\\drafts', '\\trash', '\\junk',
                                          '\\archive', '\\all', '\\flagged'}, (name, attrs))
        self.assert_matches_status(c, rows, 'MESSAGES')
        self.assertGreaterEqual(dict((r[0], r[2]) for r in rows)[b'Sent']['MESSAGES'], 1)

    def test_with_other_return_options(self):
        c = self.login()
        rows = list_status(c.ok('LIST "" "LS/*" RETURN (CHILDREN STATUS (MESSAGES) SUBSCRIBED)'))
        self.assertEqual(len(rows), 4)
        self.assert_matches_status(c, rows, 'MESSAGES')

    def test_many_mailboxes(self):
        # more than one step of the answer (64 mailboxes with their STATUS
        # a step in coffre): every LIST line still has its STATUS after it
        c = self.login()
        for i in range(70):
            c.ok('CREATE Many/m%02d' % i)
        c.append('Many/m42', make_message(42))
        rows = list_status(c.ok('LIST "" "Many/*" RETURN (STATUS (MESSAGES))'))
        self.assertEqual(len(rows), 70)
        self.assertTrue(all(r[2] is not None for r in rows), rows)
        self.assertEqual(sum(r[2]['MESSAGES'] for r in rows), 1)
        self.assertEqual(dict((r[0], r[2]) for r in rows)[b'Many/m42'], {'MESSAGES': 1})

    def test_status_return_option_syntax(self):
        c = self.login()
        # the items in any case, with the other return options on either side
        rows = list_status(c.ok('LIST "" LS/full RETURN (SUBSCRIBED status (messages))'))
        self.assertEqual(rows[0][2], {'MESSAGES': 3})
        for bad in ('LIST "" "*" RETURN (STATUS ())', 'LIST "" "*" RETURN (STATUS (BOGUS))',
                    'LIST "" "*" RETURN (STATUS)', 'LIST "" "*" RETURN (STATUS MESSAGES)'):
            self.assertBAD(c.cmd(bad)[1], bad)
        c.ok('NOOP')

    # ---- STATUS SIZE

    def status(self, c, box, items):
        u = c.ok('STATUS %s (%s)' % (quote(box), items))
        return items_of(STATUS_RE.match(u[0]).group(2))

    def need(self, c, cap):
        if AGAINST_DOVECOT and cap not in self.caps(c):
            self.skipTest('Dovecot 2.3 does not offer %s' % cap)

    def test_status_size(self):
        c = self.login()
        self.need(c, 'STATUS=SIZE')
        c.ok('CREATE SizeBox')
        self.assertEqual(self.status(c, 'SizeBox', 'SIZE MESSAGES'), {'SIZE': 0, 'MESSAGES': 0})
        msgs = [make_message(i, body=b'x' * (100 * i)) for i in range(4)]
        for m in msgs:
            c.append('SizeBox', m)
        self.assertEqual(self.status(c, 'SizeBox', 'SIZE')['SIZE'], sum(len(m) for m in msgs))
        c.ok('SELECT SizeBox')
        sizes = [int(x) for x in re.findall(rb'RFC822\.SIZE (\d+)', b' '.join(
            c.ok('FETCH 1:* RFC822.SIZE')))]
        self.assertEqual(sum(sizes), sum(len(m) for m in msgs))
        c.ok('STORE 2 +FLAGS.SILENT (\\Deleted)')
        c.ok('EXPUNGE')
        self.assertEqual(self.status(c, 'SizeBox', 'SIZE')['SIZE'],
                         sum(len(m) for m in msgs) - len(msgs[1]))
        rows = list_status(c.ok('LIST "" SizeBox RETURN (STATUS (SIZE))'))
        self.assertEqual(rows[0][2], {'SIZE': sum(len(m) for m in msgs) - len(msgs[1])})

    @unittest.skipIf(AGAINST_DOVECOT, 'Dovecot 2.3 has no STATUS DELETED')
    def test_status_deleted_of_empty_mailbox(self):
        c = self.login()
        c.ok('CREATE EmptyBox')
        self.assertEqual(self.status(c, 'EmptyBox', 'MESSAGES UNSEEN DELETED SIZE DELETED-STORAGE'),
                         {'MESSAGES': 0, 'UNSEEN': 0, 'DELETED': 0, 'SIZE': 0,
                          'DELETED-STORAGE': 0})

    # ---- APPENDLIMIT

    def test_appendlimit(self):
        c = self.login()
        self.need(c, 'APPENDLIMIT')
        caps = [w for w in self.caps(c) if w.startswith('APPENDLIMIT')]
        self.assertEqual(len(caps), 1, caps)
        if AGAINST_DOVECOT:
            return
        self.assertEqual(caps[0], 'APPENDLIMIT=%d' % (50 << 20))   # max_message_size
        self.assertEqual(self.status(c, 'INBOX', 'APPENDLIMIT'), {'APPENDLIMIT': 50 << 20})
        rows = list_status(c.ok('LIST "" INBOX RETURN (STATUS (APPENDLIMIT MESSAGES))'))
        self.assertEqual(rows[0][2]['APPENDLIMIT'], 50 << 20)


@unittest.skipIf(AGAINST_DOVECOT, 'coffre\'s max_message_size')
class AppendLimitSetting(ImapCase):
    CONF = {'max_message_size': '200k'}

    def test_appendlimit_follows_max_message_size(self):
        c = self.login()
        caps = c.ok('CAPABILITY')[0].decode().split()
        self.assertIn('APPENDLIMIT=%d' % (200 << 10), caps)
        u = c.ok('STATUS INBOX (APPENDLIMIT)')
        self.assertEqual(u, [b'* STATUS "INBOX" (APPENDLIMIT %d)' % (200 << 10)])
        # over it: refused, as announced
        st, t, _ = c.status_of('APPEND INBOX {%d}' % ((200 << 10) + 1))
        self.assertEqual(st, 'NO', t)


if __name__ == '__main__':
    unittest.main()
