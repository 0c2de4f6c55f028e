"""The README's configuration tables and the table of settings in
server/base/config.c agree: every setting of the table is in the README,
under the heading of its group, with the same default; nothing in the
README is unknown to the table; and coffred accepts every documented
default (the documentation and the parser cannot drift apart: a key the
parser silently stopped reaching once passed the build)."""
import os
import re
import subprocess
import tempfile
import unittest

import harness

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')

C_STRING = r'"(?:[^"\\]|\\.)*"'


def c_strings(text):
    """The value of adjacent C string literals ("a" "b" -> ab)."""
    return ''.join(bytes(s[1:-1], 'utf-8').decode('unicode_escape')
                   for s in re.findall(C_STRING, text))


def table_rows():
    """{key: (default, group)} for each row of conf_settings[]. A default
    written as a macro name is resolved from its #define."""
    with open(os.path.join(ROOT, 'server', 'base', 'config.c'), encoding='utf-8') as f:
        src = f.read()
    macros = {m.group(1): c_strings(m.group(2)) for m in
              re.finditer(r'#define\s+([A-Z_][A-Z0-9_]*)((?:\s|\\|%s)+)\n' % C_STRING, src)}
    table = src[src.index('const struct conf_setting conf_settings[]'):]
    table = table[:table.index('\n};')]
    rows = {}
    for m in re.finditer(r'ROW\(\s*"([a-z0-9_]+)",\s*(%s|[A-Z_][A-Z0-9_]*),\s*(%s)\s*\)'
                         % (C_STRING, C_STRING), table):
        key, default, group = m.group(1), m.group(2), c_strings(m.group(3))
        default = c_strings(default) if default.startswith('"') else macros[default]
        if key in rows:
            raise AssertionError('%s stands twice in the table' % key)
        rows[key] = (default, group)
    return rows


def readme_rows():
    """[(key, default, heading)] for each row of the configuration tables;
    default is '' for *(empty)*, None when the README gives no literal
    value for each key of the row."""
    rows = []
    heading = None
    in_section = False
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        for line in f:
            if line.startswith('## '):
                in_section = line.strip() == '## Configuration'
                continue
            if not in_section:
                continue
            if line.startswith('### '):
                heading = line[4:].strip()
                continue
            m = re.match(r'\|\s*((?:`[a-z0-9_]+`(?:,\s*)?)+)\s*\|\s*([^|]*)\|', line)
            if not m:
                continue
            keys = re.findall(r'`([a-z0-9_]+)`', m.group(1))
            cell = m.group(2).strip()
            defaults = re.findall(r'`([^`]*)`', cell)
            for i, k in enumerate(keys):
                if cell == '*(empty)*':
                    d = ''
                elif len(defaults) == len(keys):
                    d = defaults[i]
                else:
                    d = None
                rows.append((k, d, heading))
    return rows


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

    def test_table_read(self):
        rows = table_rows()
        self.assertGreater(len(rows), 40)
        self.assertEqual(rows['max_line_length'], ('64k', 'Connections'))
        self.assertTrue(rows['tls_priority'][0].startswith('NORMAL:'))

    def test_readme_table_is_complete(self):
        documented = {k for k, _, _ in readme_rows()}
        self.assertGreater(len(documented), 20)
        missing = set(table_rows()) - documented
        self.assertEqual(missing, set(), 'settings missing from the README table')

    def test_readme_agrees_with_the_table(self):
        table = table_rows()
        seen = set()
        for key, default, heading in readme_rows():
            self.assertIn(key, table, 'README documents %s, the table does not know it' % key)
            self.assertNotIn(key, seen, 'README documents %s twice' % key)
            seen.add(key)
            tdefault, group = table[key]
            self.assertEqual(default, tdefault, 'default of %s' % key)
            self.assertEqual(heading, group, 'README heading of %s' % key)

    def test_every_documented_key_accepted_at_its_default(self):
        for key, default, _ in readme_rows():
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
