"""Every setting in the README's configuration table is accepted by
coffred at its documented default, and every setting coffred's parser
knows is in that table: the documentation and the parser cannot drift
apart (a key the parser silently stopped reaching once passed the build)."""
import os
import re
import subprocess
import tempfile
import unittest

import harness

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')


def readme_rows():
    """(key, default) for each row of the configuration table; default is
    None when the README gives no literal value (descriptions, empty)."""
    rows = []
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        for line in f:
            m = re.match(r'\|\s*((?:`[a-z0-9_]+`(?:,\s*)?)+)\s*\|\s*([^|]*)\|', line)
            if not m:
                continue
            keys = re.findall(r'`([a-z0-9_]+)`', m.group(1))
            defaults = re.findall(r'`([^`]*)`', m.group(2))
            for i, k in enumerate(keys):
                d = defaults[i] if len(defaults) == len(keys) else None
                rows.append((k, d))
    return rows


def parser_keys():
    with open(os.path.join(ROOT, 'server', 'base', 'config.c'), encoding='utf-8') as f:
        return set(re.findall(r'strcmp\(key, "([a-z0-9_]+)"\)', f.read()))


class ConfigKeys(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        harness.require_binaries()
        cls.tmp = tempfile.mkdtemp(prefix='coffre-keys-')
        cls.cert, cls.key = harness.gen_cert(cls.tmp)

    def check(self, lines):
        path = os.path.join(self.tmp, 'c.conf')
        with open(path, 'w') as f:
            f.write('data_dir = %s/data\ntls_cert = %s\ntls_key = %s\n'
                    % (self.tmp, self.cert, self.key))
            f.write(''.join('%s = %s\n' % kv for kv in lines))
        return subprocess.run([harness.COFFRED, '-c', path, '--check-config'],
                              capture_output=True, text=True, timeout=30)

    def test_readme_table_is_complete(self):
        documented = {k for k, _ in readme_rows()}
        self.assertGreater(len(documented), 20)
        missing = parser_keys() - documented
        self.assertEqual(missing, set(), 'settings missing from the README table')

    def test_every_documented_key_accepted_at_its_default(self):
        known = parser_keys()
        for key, default in readme_rows():
            self.assertIn(key, known, 'README documents %s, the parser does not know it' % key)
            if default is None or key in ('data_dir', 'tls_cert', 'tls_key', 'tls_cert_rsa',
                                          'tls_key_rsa', 'run_user'):
                continue
            r = self.check([(key, default)])
            self.assertEqual(r.returncode, 0, '%s = %s: %s' % (key, default, r.stderr))

    def test_unknown_key_refused(self):
        r = self.check([('no_such_setting', '1')])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('c.conf:4:', r.stderr)


if __name__ == '__main__':
    unittest.main()
