"""LSUB (RFC 3501 6.3.9) and LIST-EXTENDED's RECURSIVEMATCH (RFC 5258
3.5): which parents of subscribed names are answered, with which
attributes and CHILDINFO, for one pattern and for several. The mailbox
trees are those of the RFCs' examples (RFC 3501 6.3.9, RFC 5258 section
5, examples 8 to 10); each test keeps to names of its own, and the
answers are compared on those names only, since the account also holds
INBOX and the default folders."""
import re

from imap_util import AGAINST_DOVECOT, ImapCase, Parser


def entries(untagged, kind='LIST', keep=None):
    """{name: (set of lower-case attributes, extended data or None)} of the
    LIST/LSUB responses, restricted to the names whose first level is in
    `keep` (a set) when given. A name answered twice fails the test."""
    out = {}
    for r in untagged:
        m = re.match(rb'\* (LIST|LSUB) ', r, re.I)
        if not m or m.group(1).upper().decode() != kind:
            continue
        p = Parser(r)
        p.i = m.end()
        attrs = p.value()
        p.sp()
        p.value()
        p.sp()
        name = p.value()
        name = name.decode() if isinstance(name, bytes) else str(name)
        ext = None
        if not p.at_end():
            p.sp()
            ext = p.value()
        if keep is not None and name.split('/')[0] not in keep:
            continue
        if name in out:
            raise AssertionError('%s listed twice: %r' % (name, untagged))
        out[name] = ({str(a).lower() for a in attrs}, ext)
    return out


def childinfo(ext):
    """The CHILDINFO tags of an extended data item, upper case, or None."""
    if not ext:
        return None
    for k, v in zip(ext[::2], ext[1::2]):
        key = k.decode() if isinstance(k, bytes) else str(k)
        if key.upper() == 'CHILDINFO':
            return sorted((x.decode() if isinstance(x, bytes) else str(x)).upper() for x in v)
    return None


class ListExtended(ImapCase):

    def lst(self, c, cmd, keep, kind='LIST'):
        return entries(c.ok(cmd), kind, keep)

    def subscribe_missing(self, c, name):
        """Subscribes a name that is no mailbox. RFC 3501 6.3.6 lets a
        server refuse that (Dovecot does); coffre takes it, as RFC 5258's
        examples do."""
        s, t, _ = c.status_of('SUBSCRIBE %s' % name)
        if AGAINST_DOVECOT and s == 'NO':
            self.skipTest('the server refuses subscriptions to missing names')
        self.assertEqual(s, 'OK', t)

    def test_lsub_percent_stops_at_unsubscribed_parent(self):
        """RFC 3501 6.3.9's example, with "/" for "."."""
        c = self.login()
        for n in ('news/comp/mail/misc', 'news/comp/mail/mime', 'news/comp/mail/sanity'):
            c.ok('CREATE %s' % n)
        c.ok('SUBSCRIBE news/comp/mail/misc')
        c.ok('SUBSCRIBE news/comp/mail/mime')
        keep = {'news'}
        got = self.lst(c, 'LSUB "news/" "comp/mail/*"', keep, 'LSUB')
        self.assertEqual(set(got), {'news/comp/mail/mime', 'news/comp/mail/misc'})
        for attrs, _ in got.values():
            self.assertNotIn('\\noselect', attrs)
        got = self.lst(c, 'LSUB "news/" "comp/%"', keep, 'LSUB')
        self.assertEqual(set(got), {'news/comp/mail'})
        self.assertIn('\\noselect', got['news/comp/mail'][0])
        # at every level "%" stops at, and only there
        got = self.lst(c, 'LSUB "" "%"', keep, 'LSUB')
        self.assertEqual(set(got), {'news'})
        self.assertIn('\\noselect', got['news'][0])
        # a "%" inside the pattern stops there too (Dovecot answers only
        # for a "%" at the end; tests/data/imap-differences.md)
        if not AGAINST_DOVECOT:
            got = self.lst(c, 'LSUB "" "news/%/mail"', keep, 'LSUB')
            self.assertEqual(set(got), {'news/comp/mail'})
            self.assertIn('\\noselect', got['news/comp/mail'][0])
        # without "%", a name that is not subscribed is not answered: the
        # rule is for "the % wildcard"
        for pat in ('news', 'news/comp', 'news/comp/mail'):
            with self.subTest(pattern=pat):
                self.assertEqual(self.lst(c, 'LSUB "" "%s"' % pat, keep, 'LSUB'), {})
        # "*" matches the subscribed names themselves: no parent is added
        got = self.lst(c, 'LSUB "" "news*"', keep, 'LSUB')
        self.assertEqual(set(got), {'news/comp/mail/mime', 'news/comp/mail/misc'})
        # a subscribed parent is answered as subscribed, without \Noselect
        c.status_of('CREATE news/comp')   # coffre made it with its children
        c.ok('SUBSCRIBE news/comp')
        got = self.lst(c, 'LSUB "news/" "%"', keep, 'LSUB')
        self.assertEqual(set(got), {'news/comp'})
        self.assertNotIn('\\noselect', got['news/comp'][0])
        # and a parent whose subscribed children match no pattern is not
        got = self.lst(c, 'LSUB "" "news/comp/mail/s%"', keep, 'LSUB')
        self.assertEqual(got, {})

    def test_lsub_parent_of_subscription_to_missing_name(self):
        c = self.login()
        c.ok('CREATE Ghost')
        self.subscribe_missing(c, 'Ghost/Town/Hall')
        got = self.lst(c, 'LSUB "" "Ghost/%"', {'Ghost'}, 'LSUB')
        self.assertEqual(set(got), {'Ghost/Town'})
        self.assertIn('\\noselect', got['Ghost/Town'][0])
        got = self.lst(c, 'LSUB "" "%"', {'Ghost'}, 'LSUB')
        self.assertEqual(set(got), {'Ghost'})
        self.assertIn('\\noselect', got['Ghost'][0])

    def test_rfc5258_example_8(self):
        """Foo, Foo/Bar, Foo/Baz, Moo: RECURSIVEMATCH and "%"."""
        c = self.login()
        for n in ('Foo', 'Foo/Bar', 'Foo/Baz', 'Moo'):
            c.ok('CREATE %s' % n)
        keep = {'Foo', 'Moo', 'Xyzzy'}
        c.ok('SUBSCRIBE Foo/Baz')
        got = self.lst(c, 'LIST (SUBSCRIBED) "" "*"', keep)
        self.assertEqual(set(got), {'Foo/Baz'})
        self.assertIn('\\subscribed', got['Foo/Baz'][0])
        self.assertEqual(self.lst(c, 'LIST (SUBSCRIBED) "" "%"', keep), {})
        # 8A: Foo is not subscribed but has a subscribed child that "%"
        # does not match
        got = self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', keep)
        self.assertEqual(set(got), {'Foo'})
        self.assertNotIn('\\subscribed', got['Foo'][0])
        self.assertEqual(childinfo(got['Foo'][1]), ['SUBSCRIBED'])
        # 8A1: Foo subscribed as well: listed as subscribed, and CHILDINFO
        # still tells of Foo/Baz
        c.ok('SUBSCRIBE Foo')
        got = self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', keep)
        self.assertEqual(set(got), {'Foo'})
        self.assertIn('\\subscribed', got['Foo'][0])
        self.assertEqual(childinfo(got['Foo'][1]), ['SUBSCRIBED'])
        # 8A2: the parent is no mailbox
        c.ok('UNSUBSCRIBE Foo')
        c.ok('UNSUBSCRIBE Foo/Baz')
        self.subscribe_missing(c, 'Xyzzy/Plugh')
        got = self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', keep)
        self.assertEqual(set(got), {'Xyzzy'})
        self.assertIn('\\nonexistent', got['Xyzzy'][0])
        self.assertEqual(childinfo(got['Xyzzy'][1]), ['SUBSCRIBED'])
        c.ok('UNSUBSCRIBE Xyzzy/Plugh')
        # 8B: nothing subscribed, nothing listed
        self.assertEqual(self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', keep), {})
        # 8C: Foo and Moo subscribed, no subscribed child: no CHILDINFO
        c.ok('SUBSCRIBE Foo')
        c.ok('SUBSCRIBE Moo')
        got = self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)', keep)
        self.assertEqual(set(got), {'Foo', 'Moo'})
        self.assertEqual(got['Foo'][0], {'\\subscribed', '\\haschildren'})
        self.assertEqual(got['Moo'][0], {'\\subscribed', '\\hasnochildren'})
        self.assertIsNone(childinfo(got['Foo'][1]))
        self.assertIsNone(childinfo(got['Moo'][1]))

    def test_rfc5258_example_9(self):
        """CHILDINFO only where a subscribed descendant is not itself
        answered: "*2" matches baz2's children, not foo2/bar1 or
        eps2/mamba."""
        c = self.login()
        for n in ('foo2', 'foo2/bar1', 'foo2/bar2', 'baz2', 'baz2/bar2', 'baz2/bar22',
                  'baz2/bar222', 'eps2', 'eps2/mamba', 'qux2/bar2'):
            c.ok('CREATE %s' % n)
        for n in ('foo2/bar1', 'foo2/bar2', 'baz2/bar2', 'baz2/bar22', 'baz2/bar222', 'eps2',
                  'eps2/mamba', 'qux2/bar2'):
            c.ok('SUBSCRIBE %s' % n)
        keep = {'foo2', 'baz2', 'eps2', 'qux2'}
        got = self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "*2"', keep)
        self.assertEqual(set(got), {'foo2', 'foo2/bar2', 'baz2/bar2', 'baz2/bar22',
                                    'baz2/bar222', 'eps2', 'qux2/bar2'})
        self.assertNotIn('\\subscribed', got['foo2'][0])
        self.assertEqual(childinfo(got['foo2'][1]), ['SUBSCRIBED'])
        self.assertIn('\\subscribed', got['eps2'][0])
        self.assertEqual(childinfo(got['eps2'][1]), ['SUBSCRIBED'])
        for n in ('foo2/bar2', 'baz2/bar2', 'baz2/bar22', 'baz2/bar222', 'qux2/bar2'):
            self.assertIn('\\subscribed', got[n][0], n)
            self.assertIsNone(childinfo(got[n][1]), n)
        # "*" answers every subscribed name itself: no parent is added,
        # and CHILDINFO stays where a subscribed name lies below
        got = self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"', keep)
        self.assertEqual(set(got), {'foo2/bar1', 'foo2/bar2', 'baz2/bar2', 'baz2/bar22',
                                    'baz2/bar222', 'eps2', 'eps2/mamba', 'qux2/bar2'})
        for n, (attrs, ext) in got.items():
            self.assertEqual(childinfo(ext), ['SUBSCRIBED'] if n == 'eps2' else None, n)

    def test_rfc5258_example_10_and_several_patterns(self):
        """foo exists, foo/bar is only a subscription: CHILDINFO does not
        imply \\HasChildren. With several patterns, a descendant matched by
        any of them is answered itself."""
        c = self.login()
        c.ok('CREATE foo')
        self.subscribe_missing(c, 'foo/bar')
        keep = {'foo'}
        got = self.lst(c, 'LIST "" ("foo")', keep)
        self.assertEqual(set(got), {'foo'})
        got = self.lst(c, 'LIST (SUBSCRIBED) "" "foo/*"', keep)
        self.assertEqual(set(got), {'foo/bar'})
        self.assertEqual(got['foo/bar'][0], {'\\subscribed', '\\nonexistent'})
        got = self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" foo RETURN (CHILDREN)', keep)
        self.assertEqual(set(got), {'foo'})
        self.assertEqual(got['foo'][0], {'\\hasnochildren'})
        self.assertEqual(childinfo(got['foo'][1]), ['SUBSCRIBED'])
        # foo/bar matches the second pattern: it is answered, foo is not
        got = self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" ("foo" "foo/%")', keep)
        self.assertEqual(set(got), {'foo/bar'})
        self.assertIsNone(childinfo(got['foo/bar'][1]))
        # with another pattern that does not match it, foo is
        got = self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" ("nothing-here" "foo")', keep)
        self.assertEqual(set(got), {'foo'})
        self.assertEqual(childinfo(got['foo'][1]), ['SUBSCRIBED'])
        # LSUB answers the same parent as \Noselect where a "%" stops at
        # it, and not for a pattern without "%" (RFC 3501 6.3.9)
        got = self.lst(c, 'LSUB "" "%"', keep, 'LSUB')
        self.assertEqual(set(got), {'foo'})
        self.assertIn('\\noselect', got['foo'][0])
        self.assertEqual(self.lst(c, 'LSUB "" "foo"', keep, 'LSUB'), {})

    def test_rfc5258_example_fruit_several_patterns(self):
        """RFC 5258's tree of examples 1 to 7, asked with several patterns
        at once: each parent once, CHILDINFO where a subscribed descendant
        matches no pattern."""
        c = self.login()
        for n in ('Fruit', 'Fruit/Apple', 'Fruit/Banana', 'Tofu', 'Vegetable',
                  'Vegetable/Broccoli', 'Vegetable/Corn'):
            c.ok('CREATE %s' % n)
        for n in ('Fruit/Banana', 'Vegetable', 'Vegetable/Broccoli'):
            c.ok('SUBSCRIBE %s' % n)
        self.subscribe_missing(c, 'Fruit/Peach')
        keep = {'Fruit', 'Tofu', 'Vegetable'}
        got = self.lst(c, 'LIST (SUBSCRIBED) "" "*"', keep)
        self.assertEqual(set(got), {'Fruit/Banana', 'Fruit/Peach', 'Vegetable',
                                    'Vegetable/Broccoli'})
        self.assertEqual(got['Fruit/Peach'][0], {'\\subscribed', '\\nonexistent'})
        got = self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" ("Fruit" "Tofu" "Vegetable")',
                       keep)
        self.assertEqual(set(got), {'Fruit', 'Vegetable'})
        self.assertNotIn('\\subscribed', got['Fruit'][0])
        self.assertEqual(childinfo(got['Fruit'][1]), ['SUBSCRIBED'])
        self.assertIn('\\subscribed', got['Vegetable'][0])
        self.assertEqual(childinfo(got['Vegetable'][1]), ['SUBSCRIBED'])
        got = self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" ("%" "Fruit/Banana")', keep)
        self.assertEqual(set(got), {'Fruit', 'Fruit/Banana', 'Vegetable'})
        # Fruit/Peach is not answered: Fruit still tells of it
        self.assertEqual(childinfo(got['Fruit'][1]), ['SUBSCRIBED'])
        self.assertIsNone(childinfo(got['Fruit/Banana'][1]))
        got = self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" ("%" "Fruit/%" "Vegetable/%")',
                       keep)
        self.assertEqual(set(got), {'Fruit/Banana', 'Fruit/Peach', 'Vegetable',
                                    'Vegetable/Broccoli'})
        for n, (attrs, ext) in got.items():
            self.assertEqual(childinfo(ext), ['SUBSCRIBED'] if n == 'Vegetable' else None, n)
        # a subscribed name matched by two patterns is answered once
        got = self.lst(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" ("Veg*" "*table")', keep)
        self.assertEqual(set(got), {'Vegetable', 'Vegetable/Broccoli'})
        got = self.lst(c, 'LSUB "" "%"', keep, 'LSUB')
        self.assertEqual(set(got), {'Fruit', 'Vegetable'})
        self.assertIn('\\noselect', got['Fruit'][0])
        self.assertNotIn('\\noselect', got['Vegetable'][0])

    def test_inbox_any_case_in_wildcard_patterns(self):
        """INBOX is case-insensitive (RFC 3501 5.1), with wildcards too."""
        c = self.login()
        c.ok('CREATE Inboxes')
        for pat in ('inbox', 'Inbox*', 'INBOX%', 'iNbOx*'):
            got = self.lst(c, 'LIST "" "%s"' % pat, {'INBOX', 'Inboxes'})
            self.assertIn('INBOX', got, pat)
        # other names keep their case
        self.assertEqual(set(self.lst(c, 'LIST "" "inbox*"', {'INBOX', 'Inboxes'})), {'INBOX'})
        self.assertEqual(set(self.lst(c, 'LIST "" "Inbox%"', {'INBOX', 'Inboxes'})),
                         {'INBOX', 'Inboxes'})


if __name__ == '__main__':
    import unittest
    unittest.main()
