"""The tree's layering, checked on the sources and on the built objects.

Layers, each including only what lies below it:
  server/base/           logging, configuration, privilege drop, buffers,
                         base64, worker threads, the connection interface
                         (conn.h)
  tls/ auth/ storage/    each its own files and server/base/
  protocol/              its own files, server/base/, and the public headers
                         of the modules below (auth/auth.h, storage/storage.h,
                         tls/tls.h)
  server/ (the top)      coffred's main, listeners, connections; coffrectl
and inside protocol/imap/: no two files depend on each other in a circle
(a file depends on another when it uses a symbol defined there), and the
session core (imap_session.c) uses nothing defined in a command file."""
import glob
import os
import re
import subprocess
import sys
import unittest

SRC = os.environ.get('SOURCE_ROOT',
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
BUILD = os.environ.get('BUILD_ROOT', '')

PUBLIC = {'auth/auth.h', 'auth/acl.h', 'storage/storage.h', 'tls/tls.h'}


def allowed(src, inc):
    """Whether the file src (relative path) may include inc."""
    if inc.startswith('server/base/'):
        return True
    if src.startswith('server/base/'):
        return False
    for mod in ('tls/', 'auth/', 'storage/'):
        if src.startswith(mod):
            return inc.startswith(mod)
    if src.startswith('protocol/'):
        return inc.startswith('protocol/') or inc in PUBLIC
    if src.startswith('server/'):
        return True
    return True


class Includes(unittest.TestCase):

    def test_includes_point_downward(self):
        bad = []
        n = 0
        for top in ('server', 'tls', 'auth', 'storage', 'protocol'):
            for path in glob.glob(os.path.join(SRC, top, '**', '*.[ch]'), recursive=True):
                rel = os.path.relpath(path, SRC)
                with open(path, encoding='utf-8') as f:
                    for inc in re.findall(r'^#include "([^"]+)"', f.read(), re.M):
                        n += 1
                        if '/' in inc and not allowed(rel, inc):
                            bad.append('%s includes %s' % (rel, inc))
        self.assertGreater(n, 100, 'the sources were not found')
        self.assertEqual(bad, [])


def symbols(obj):
    """(defined, undefined) global symbols of an object file."""
    out = subprocess.run(['nm', '-g', obj], check=True, capture_output=True,
                         text=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == 'U':
            undefined.add(parts[1])
        elif len(parts) == 3 and parts[1] in 'TDBRCVW':
            defined.add(parts[2])
    return defined, undefined


def imap_graph():
    """{file: set of files it depends on} over protocol/imap/'s objects."""
    objs = glob.glob(os.path.join(BUILD, 'protocol', '*.p', 'imap_*.c.o'))
    names = {o: re.sub(r'^imap_', '', os.path.basename(o))[:-len('.c.o')] + '.c'
             for o in objs}
    syms = {names[o]: symbols(o) for o in objs}
    owner = {}
    for f, (d, _) in syms.items():
        for s in d:
            owner[s] = f
    return {f: {owner[s] for s in u if s in owner and owner[s] != f}
            for f, (_, u) in syms.items()}


def cycles(graph):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


class ImapObjects(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if not BUILD:
            raise unittest.SkipTest('BUILD_ROOT not set (run through meson test)')
        cls.graph = imap_graph()

    def test_objects_found(self):
        self.assertIn('imap_session.c', self.graph)
        self.assertGreater(len(self.graph), 8)

    def test_no_cycle(self):
        self.assertEqual(cycles(self.graph), [])

    def test_session_core_names_no_command(self):
        cmds = sorted(f for f in self.graph['imap_session.c'] if f.startswith('cmd_'))
        self.assertEqual(cmds, [], 'imap_session.c uses symbols of command files')

    def test_cycle_finder_finds_one(self):
        # the check above can fail: a made-up graph with a circle is caught
        self.assertEqual(cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}),
                         [['a', 'b', 'c']])


if __name__ == '__main__':
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
