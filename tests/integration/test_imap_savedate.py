"""IMAP SAVEDATE (RFC 8514): the SAVEDATE fetch item (the time the
message was saved in its mailbox, not its internal date) and the search
keys SAVEDBEFORE, SAVEDON, SAVEDSINCE and SAVEDATESUPPORTED, with the
RFC's examples."""
import datetime
import re

import harness
import imap_util
from imap_util import ImapCase, make_message

BOX = 'SaveDate'
OLD = '05-Mar-2001 10:00:00 +0000'   # an internal date long before the save


def day(d):
    return '%d-%s-%d' % (d.day, ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug',
                                 'Sep', 'Oct', 'Nov', 'Dec'][d.month - 1], d.year)


def parse_dt(s):
    return datetime.datetime.strptime(s.decode(), '%d-%b-%Y %H:%M:%S %z')


class SaveDate(ImapCase):

    @classmethod
    def setUpServer(cls):
        super().setUpServer()
        c = cls.client()
        c.login()
        c.ok('CREATE %s' % BOX)
        for i in range(3):
            c.append(BOX, make_message(i), date=OLD)
        c.logout()

    @classmethod
    def client(cls):
        from imap_util import Imap
        return Imap(cls.server.raw('imaps', tls=True))

    def test_capability(self):
        c = self.login()
        u = c.ok('CAPABILITY')
        self.assertIn(b'SAVEDATE', u[0].split())

    def test_fetch_savedate(self):
        c = self.login()
        c.select(BOX)
        now = datetime.datetime.now(datetime.timezone.utc)
        f = c.fetch('1:*', '(INTERNALDATE SAVEDATE)')
        self.assertEqual(sorted(f), [1, 2, 3])
        for n, (it, raw) in f.items():
            self.assertEqual(parse_dt(it['INTERNALDATE']), parse_dt(OLD.encode()))
            saved = parse_dt(it['SAVEDATE'])
            # saved by setUpServer, moments ago: not the internal date
            self.assertLess(abs((now - saved).total_seconds()), 3600, it)
        # the UID form, the item alone
        u = c.ok('UID FETCH 1:* SAVEDATE')
        self.assertEqual(len(u), 3)
        for r in u:
            self.assertRegex(r, rb'^\* \d+ FETCH \((UID \d+ SAVEDATE "[^"]+"|'
                                rb'SAVEDATE "[^"]+" UID \d+)\)$')

    def test_search_keys(self):
        c = self.login()
        c.select(BOX)
        f = c.fetch('1', 'SAVEDATE')
        saved = parse_dt(f[1][0]['SAVEDATE']).astimezone().date()
        today, before, after = day(saved), day(saved - datetime.timedelta(days=1)), \
            day(saved + datetime.timedelta(days=1))
        self.assertEqual(c.search('SAVEDSINCE %s' % today), [1, 2, 3])
        self.assertEqual(c.search('SAVEDON %s' % today), [1, 2, 3])
        self.assertEqual(c.search('SAVEDBEFORE %s' % today), [])
        self.assertEqual(c.search('SAVEDBEFORE %s' % after), [1, 2, 3])
        self.assertEqual(c.search('SAVEDSINCE %s' % after), [])
        self.assertEqual(c.search('SAVEDON %s' % before), [])
        # the internal date is not the save date
        self.assertEqual(c.search('ON 5-Mar-2001'), [1, 2, 3])
        self.assertEqual(c.search('SAVEDON 5-Mar-2001'), [])
        self.assertEqual(c.search('SAVEDSINCE %s SINCE 1-Mar-2001 BEFORE 6-Mar-2001' % today),
                         [1, 2, 3])
        self.assertEqual(c.search('NOT SAVEDSINCE %s' % today), [])
        # RFC 8514 4.2: every mailbox here keeps save dates
        self.assertEqual(c.search('SAVEDATESUPPORTED'), [1, 2, 3])
        self.assertEqual(c.search('UID 2 SAVEDATESUPPORTED'), [2])

    def test_rfc_example(self):
        # RFC 8514 4.1/4.3: UID SEARCH SAVEDATESUPPORTED, then SAVEDSINCE
        c = self.login()
        c.select(BOX)
        u = c.ok('UID SEARCH RETURN (MIN MAX) SAVEDATESUPPORTED')
        self.assertTrue(any(re.match(rb'\* ESEARCH \(TAG "T\d+"\) UID MIN 1 MAX 3$', r)
                            for r in u), u)

    def test_bad(self):
        c = self.login()
        c.select(BOX)
        keys = ['SAVEDBEFORE', 'SAVEDSINCE yesterday']
        if not imap_util.AGAINST_DOVECOT:
            keys.append('SAVEDON 32-Jan-2020')   # Dovecot takes it
        for k in keys:
            u, t = c.cmd('SEARCH %s' % k)
            self.assertBAD(t, k)
        self.assertAlive()


if __name__ == '__main__':
    harness.main()
