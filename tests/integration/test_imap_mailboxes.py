"""IMAP mailbox commands: CREATE (with USE, RFC 6154), DELETE, RENAME,
SUBSCRIBE, UNSUBSCRIBE, LIST with % and * and the LIST-EXTENDED selection
and return options (RFC 5258: SUBSCRIBED, SPECIAL-USE, CHILDREN), XLIST,
LSUB, STATUS, NAMESPACE (RFC 2342), APPEND with MULTIAPPEND and LITERAL+,
modified UTF-7 names, response codes ALREADYEXISTS, NONEXISTENT, TRYCREATE,
and the default special-use folders."""
import re

import harness
import imap_util
from imap_util import ImapCase, Imap, Parser, Atom, USER, PASS, make_message, quote


def parse_list(line):
    """'* LIST (\\A \\B) "/" name' -> (set of attributes, delimiter,
    name as str, extended data list or None)."""
    m = re.match(rb'\* (LIST|LSUB|XLIST) ', line, re.I)
    if not m:
        raise AssertionError('not a LIST response: %r' % line)
    p = Parser(line)
    p.i = m.end()
    attrs = p.value()
    p.sp()
    delim = p.value()
    p.sp()
    name = p.value()
    ext = None
    if not p.at_end():
        p.sp()
        ext = p.value()
    if isinstance(name, bytes):
        name = name.decode()
    return set(a.lower() for a in attrs), delim, str(name), ext


def listing(untagged, kind='LIST'):
    out = {}
    for r in untagged:
        if r.upper().startswith(b'* ' + kind.encode() + b' '):
            attrs, delim, name, ext = parse_list(r)
            out[name] = attrs
    return out


class Mailboxes(ImapCase):

    def c(self):
        return self.login()

    def test_default_special_use_folders(self):
        c = self.c()
        u = c.ok('LIST "" "*" RETURN (SPECIAL-USE)')
        lst = listing(u)
        want = {'Drafts': '\\drafts', 'Sent': '\\sent', 'Trash': '\\trash', 'Junk': '\\junk',
                'Archive': '\\archive'}
        for name, use in want.items():
            self.assertIn(name, lst)
            self.assertIn(use, lst[name], (name, lst[name]))
        self.assertIn('INBOX', lst)

    def test_list_special_use_selection(self):
        c = self.c()
        u = c.ok('LIST (SPECIAL-USE) "" "*"')
        lst = listing(u)
        self.assertTrue({'Drafts', 'Sent', 'Trash', 'Junk', 'Archive'} <= set(lst), u)
        uses = {'\\all', '\\archive', '\\drafts', '\\flagged', '\\junk', '\\sent', '\\trash'}
        for name, attrs in lst.items():
            self.assertTrue(attrs & uses, (name, attrs))   # only special-use mailboxes
        self.assertNotIn('INBOX', lst)

    def test_xlist(self):
        c = self.c()
        u = c.ok('XLIST "" "*"')
        lst = listing(u, 'XLIST')
        self.assertIn('\\sent', lst.get('Sent', set()), u)
        self.assertIn('\\trash', lst.get('Trash', set()), u)
        self.assertIn('\\drafts', lst.get('Drafts', set()), u)
        self.assertIn('\\inbox', lst.get('INBOX', set()) | lst.get('Inbox', set()), u)

    def test_delimiter_and_namespace(self):
        c = self.c()
        u = c.ok('LIST "" ""')
        self.assertEqual(len(u), 1, u)
        attrs, delim, name, _ = parse_list(u[0])
        self.assertIn('\\noselect', attrs)
        self.assertEqual(name, '')
        self.assertEqual(delim, b'/')
        u = c.ok('NAMESPACE')
        self.assertEqual(len(u), 1)
        # the shared namespace of shared_prefix (default "Shared/"); Dovecot
        # as the harness configures it has none
        self.assertEqual(u[0], b'* NAMESPACE (("" "/")) NIL NIL' if imap_util.AGAINST_DOVECOT
                         else b'* NAMESPACE (("" "/")) NIL (("Shared/" "/"))')

    def test_create_hierarchy_children_percent_star(self):
        c = self.c()
        c.ok('CREATE Projects/Alpha/Docs')
        c.ok('CREATE Projects/Beta')
        u = c.ok('LIST "" "Projects/%"')
        lst = listing(u)
        self.assertEqual(set(lst), {'Projects/Alpha', 'Projects/Beta'})
        self.assertIn('\\haschildren', lst['Projects/Alpha'])
        self.assertIn('\\hasnochildren', lst['Projects/Beta'])
        u = c.ok('LIST "" "Projects/*"')
        self.assertEqual(set(listing(u)), {'Projects/Alpha', 'Projects/Alpha/Docs',
                                           'Projects/Beta'})
        u = c.ok('LIST "Projects/" "%"')
        self.assertEqual(set(listing(u)), {'Projects/Alpha', 'Projects/Beta'})
        u = c.ok('LIST "" "%"')
        lst = listing(u)
        self.assertIn('Projects', lst)
        self.assertIn('\\haschildren', lst['Projects'])
        self.assertNotIn('Projects/Beta', lst)

    def test_create_existing_and_inbox(self):
        c = self.c()
        c.ok('CREATE Dup')
        u, t = c.cmd('CREATE Dup')
        self.assertNO(t, 'ALREADYEXISTS')
        u, t = c.cmd('CREATE INBOX')
        self.assertNO(t)
        u, t = c.cmd('CREATE inbox')
        self.assertNO(t)
        c.ok('CREATE "Trailing/"')     # RFC 3501: trailing delimiter is ignored
        lst = listing(c.ok('LIST "" "Trailing*"'))
        self.assertEqual(set(lst), {'Trailing'})

    def test_create_use(self):
        c = self.c()
        c.ok('CREATE MyFlagged (USE (\\Flagged))')
        lst = listing(c.ok('LIST "" "MyFlagged" RETURN (SPECIAL-USE)'))
        self.assertIn('\\flagged', lst['MyFlagged'])
        u, t = c.cmd('CREATE Bogus (USE (\\NotAUse))')
        self.assertNO(t, 'USEATTR')
        lst = listing(c.ok('LIST "" "Bogus"'))
        self.assertEqual(lst, {})

    def test_delete(self):
        c = self.c()
        c.ok('CREATE Gone')
        c.append('Gone', make_message(1))
        c.ok('DELETE Gone')
        self.assertEqual(listing(c.ok('LIST "" "Gone"')), {})
        u, t = c.cmd('DELETE Gone')
        self.assertNO(t, 'NONEXISTENT')
        u, t = c.cmd('DELETE INBOX')
        self.assertNO(t)
        # a mailbox with children: RFC 3501 6.3.4 -> it becomes \Noselect
        # (or NO [HASCHILDREN]); the child stays
        c.ok('CREATE Par/Kid')
        s, t, _ = c.status_of('DELETE Par')
        lst = listing(c.ok('LIST "" "Par*"'))
        self.assertIn('Par/Kid', lst)
        if s == 'OK':
            self.assertIn('\\noselect', lst.get('Par', {'\\noselect'}))
        else:
            self.assertEqual(s, 'NO')

    def test_delete_selected_elsewhere(self):
        c = self.c()
        c.ok('CREATE Busy')
        c.append('Busy', make_message(1))
        o = self.login()
        o.select('Busy')
        c.ok('DELETE Busy')
        # the other session is told (BYE and a close, NO on the next command,
        # or the messages expunged)
        try:
            st, t, u = o.status_of('NOOP')
        except EOFError:
            self.assertTrue(any(r.startswith(b'* BYE') for d, r in o.log if d == 'S'),
                            o.transcript())
        o2 = self.login()
        o2.ok('NOOP')

    def test_rename(self):
        c = self.c()
        c.ok('CREATE Old')
        c.ok('CREATE Old/Sub')
        c.append('Old', make_message(1))
        c.append('Old/Sub', make_message(2))
        info = c.select('Old')
        uv = info['uidvalidity']
        c.ok('UNSELECT')
        c.ok('RENAME Old New')
        lst = listing(c.ok('LIST "" "*"'))
        self.assertIn('New', lst)
        self.assertIn('New/Sub', lst)
        self.assertNotIn('Old', lst)
        self.assertNotIn('Old/Sub', lst)
        info = c.select('New')
        self.assertEqual(info['exists'], 1)
        c.ok('UNSELECT')
        c.ok('CREATE Dest')
        u, t = c.cmd('RENAME New Dest')
        self.assertNO(t, 'ALREADYEXISTS')
        u, t = c.cmd('RENAME Nope Other')
        self.assertNO(t, 'NONEXISTENT')

    def test_rename_inbox_moves_messages(self):
        u2, p2 = imap_util.USER2, imap_util.PASS2
        c = self.login(u2, p2)
        for i in range(3):
            c.append('INBOX', make_message(i))
        # RFC 3501 6.3.5: permitted, moves the messages, INBOX stays;
        # a server that does not do it says NO [CANNOT]
        st, t, u = c.status_of('RENAME INBOX OldMail')
        if st == 'NO':
            self.assertIn(b'[CANNOT]', t)
            return
        self.assertEqual(st, 'OK', t)
        info = c.select('OldMail')
        self.assertEqual(info['exists'], 3)
        info = c.select('INBOX')
        self.assertEqual(info['exists'], 0)

    def test_subscribe_lsub_list_subscribed(self):
        c = self.c()
        c.ok('CREATE Sub1')
        c.ok('CREATE Sub2/Deep')
        c.ok('SUBSCRIBE Sub1')
        c.ok('SUBSCRIBE Sub2/Deep')
        lsub = listing(c.ok('LSUB "" "Sub*"'), 'LSUB')
        self.assertEqual(set(lsub), {'Sub1', 'Sub2/Deep'})
        lsub = listing(c.ok('LSUB "" "Sub%"'), 'LSUB')
        # RFC 3501 6.3.9: Sub2 is not subscribed but has a subscribed child:
        # \Noselect
        self.assertIn('Sub1', lsub)
        self.assertIn('\\noselect', lsub.get('Sub2', {'\\noselect'}))
        lst = listing(c.ok('LIST (SUBSCRIBED) "" "Sub*"'))
        self.assertEqual(set(lst), {'Sub1', 'Sub2/Deep'})
        for v in lst.values():
            self.assertIn('\\subscribed', v)
        lst = listing(c.ok('LIST "" "Sub*" RETURN (SUBSCRIBED CHILDREN)'))
        self.assertIn('\\subscribed', lst['Sub1'])
        self.assertNotIn('\\subscribed', lst['Sub2'])
        self.assertIn('\\haschildren', lst['Sub2'])
        # RECURSIVEMATCH: Sub2 has a subscribed child
        u = c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "Sub%"')
        found = {}
        for r in u:
            attrs, delim, name, ext = parse_list(r)
            found[name] = ext
        self.assertIn('Sub2', found)
        self.assertIn(b'CHILDINFO', repr(found['Sub2']).upper().encode())
        c.ok('UNSUBSCRIBE Sub1')
        self.assertEqual(set(listing(c.ok('LSUB "" "Sub*"'), 'LSUB')), {'Sub2/Deep'})
        # subscribing a name that does not exist is allowed or NO; never BAD
        s, t, _ = c.status_of('SUBSCRIBE NotThere')
        self.assertIn(s, ('OK', 'NO'))

    def test_list_multiple_patterns_and_remote(self):
        c = self.c()
        c.ok('CREATE MP1')
        c.ok('CREATE MP2')
        lst = listing(c.ok('LIST "" ("MP1" "MP2" "Sent")'))
        self.assertEqual(set(lst), {'MP1', 'MP2', 'Sent'})
        lst = listing(c.ok('LIST (REMOTE) "" "MP1"'))
        self.assertEqual(set(lst), {'MP1'})

    def test_list_nonexistent_pattern_empty(self):
        c = self.c()
        self.assertEqual(c.ok('LIST "" "NoSuchThing*"'), [])

    def test_status_items(self):
        c = self.c()
        c.ok('CREATE Stat')
        c.append('Stat', make_message(1), flags=['\\Seen'])
        c.append('Stat', make_message(2))
        u = c.ok('STATUS Stat (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)')
        self.assertEqual(len(u), 1)
        m = re.match(rb'^\* STATUS "?Stat"? \((.*)\)$', u[0])
        self.assertIsNotNone(m, u)
        kv = m.group(1).split()
        d = dict(zip((k.decode() for k in kv[::2]), (int(x) for x in kv[1::2])))
        self.assertEqual(set(d), {'MESSAGES', 'RECENT', 'UIDNEXT', 'UIDVALIDITY', 'UNSEEN'})
        self.assertEqual(d['MESSAGES'], 2)
        self.assertEqual(d['UNSEEN'], 1)
        self.assertEqual(d['RECENT'], 2)
        u, t = c.cmd('STATUS NoBox (MESSAGES)')
        self.assertNO(t)

    def test_multiappend_and_literal_plus(self):
        c = self.c()
        c.ok('CREATE Multi')
        m1, m2, m3 = make_message(1), make_message(2), make_message(3)
        u = c.ok('APPEND Multi (\\Seen) {} (\\Flagged $K) "01-Feb-2020 10:00:00 +0000" {} {}',
                 m1, m2, m3)
        m = re.search(rb'\[APPENDUID (\d+) ([\d:,]+)\]', c.last_tagged)
        self.assertIsNotNone(m, c.last_tagged)
        self.assertEqual(len(imap_util.parse_seqset(m.group(2).decode())), 3)
        c.ok('APPEND Multi {}', make_message(4), plus=True)
        info = c.select('Multi')
        self.assertEqual(info['exists'], 4)
        res = c.fetch('1:4', '(FLAGS BODY.PEEK[])')
        self.assertEqual(res[1][0]['BODY[]'], m1)
        self.assertEqual(res[3][0]['BODY[]'], m3)
        self.assertIn('\\Seen', res[1][0]['FLAGS'])
        self.assertEqual({'\\Flagged', '$K'} - set(res[2][0]['FLAGS']), set())
        self.assertEqual(info['flags'] >= {'$K'}, True, info['flags'])

    def test_multiappend_is_atomic(self):
        # the second message's literal is refused (too large): nothing of the
        # command is kept (RFC 3502)
        c = self.c()
        c.ok('CREATE Atomic')
        tag = c.tag()
        m1 = make_message(1)
        c.send('%s APPEND Atomic {%d}\r\n' % (tag, len(m1)))
        self.assertTrue(c.line().startswith(b'+'))
        c.send(m1 + b' {99999999999}\r\n')
        r = c.line()
        while not r.startswith(tag.encode()):
            self.assertFalse(r.startswith(b'+'), r)
            r = c.line()
        self.assertRegex(r, rb' (NO|BAD)')
        u = c.ok('STATUS Atomic (MESSAGES)')
        self.assertIn(b'MESSAGES 0', u[0])

    def test_modified_utf7_names_round_trip(self):
        c = self.c()
        name = '&ZeVnLIqe-/Gr&APwA3w-e'     # 日本語/Grüße
        c.ok('CREATE %s' % quote(name))
        lst = listing(c.ok('LIST "" "&ZeVnLIqe-*"'))
        self.assertIn(name, lst)
        c.append(name, make_message(1))
        info = c.select(name)
        self.assertEqual(info['exists'], 1)
        c.ok('UNSELECT')
        c.ok('RENAME %s %s' % (quote(name), quote('&ZeVnLIqe-/Stra&AN8-e')))
        lst = listing(c.ok('LIST "" "*"'))
        self.assertIn('&ZeVnLIqe-/Stra&AN8-e', lst)
        # the ampersand itself
        c.ok('CREATE "Tom &- Jerry"')
        self.assertIn('Tom &- Jerry', listing(c.ok('LIST "" "Tom*"')))

    def test_inbox_case_insensitive(self):
        c = self.c()
        info = c.select('inbox')
        self.assertIsNotNone(info['exists'])
        lst = listing(c.ok('LIST "" "iNbOx"'))
        self.assertEqual(set(lst), {'INBOX'})

    def test_select_examine_codes(self):
        c = self.c()
        info = c.select('INBOX')
        for k in ('exists', 'recent', 'uidvalidity', 'uidnext', 'flags', 'permanentflags'):
            self.assertIsNotNone(info[k], (k, info['untagged']))
        self.assertIn(b'[READ-WRITE]', info['tagged'])
        self.assertIn('\\*', info['permanentflags'])
        info = c.select('INBOX', examine=True)
        self.assertIn(b'[READ-ONLY]', info['tagged'])
        u, t = c.cmd('SELECT NoSuchBox')
        self.assertNO(t)
        # after a failed SELECT the session is in the authenticated state
        u, t = c.cmd('FETCH 1 (FLAGS)')
        self.assertBAD(t)


if __name__ == '__main__':
    harness.main()
