"""The layers import downwards only: attacks (plain PyTorch and mmdag's
registry) <- targets <- engine/evaluation <- apis <- benchmark and tools;
``mmdag/registry.py`` imports nothing of mmdag, and no module imports itself
back through others. Checked on the source's import statements (module level
and inside functions alike)."""
import ast
import os
import os.path as osp

import pytest

from conftest import ROOT

PKG = osp.join(ROOT, 'mmdag')

#: room -> the mmdag rooms (and OpenMMLab packages) it must not import
FORBIDDEN = {
    'attacks': ('mmdag.targets', 'mmdag.engine', 'mmdag.evaluation', 'mmdag.apis',
                'mmdag.benchmark', 'mmengine', 'mmdet', 'mmseg', 'mmcv'),
    'targets': ('mmdag.engine', 'mmdag.evaluation', 'mmdag.apis', 'mmdag.benchmark'),
    'engine': ('mmdag.apis', 'mmdag.benchmark'),
    'evaluation': ('mmdag.apis', 'mmdag.benchmark'),
    'apis': ('mmdag.benchmark', ),
    # loaded by file by their tools, without torch or the rest of mmdag
    'datasets': ('mmdag', 'torch', 'mmengine', 'mmdet', 'mmseg', 'mmcv'),
    'devtools': ('mmdag', 'torch', 'mmengine', 'mmdet', 'mmseg', 'mmcv', 'numpy'),
}


def imports(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def modules():
    """mmdag's module name -> its file."""
    out = {}
    for dirpath, _, names in os.walk(PKG):
        for n in names:
            if n.endswith('.py'):
                path = osp.join(dirpath, n)
                name = osp.relpath(path, ROOT)[:-3].replace(os.sep, '.')
                out[name[:-len('.__init__')] if name.endswith('.__init__') else name] = path
    return out


def import_graph():
    """module -> the mmdag modules it imports (relative imports resolved;
    ``from a import b`` is ``a.b`` where that is a module)."""
    mods = modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.endswith('__init__.py') else name.rsplit('.', 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    parts = package.split('.')
                    parts = parts[:len(parts) - node.level + 1]
                    base = '.'.join(parts + ([node.module] if node.module else []))
                found = [f'{base}.{a.name}' if f'{base}.{a.name}' in mods else base
                         for a in node.names]
            else:
                continue
            for mod in found:
                while mod and mod not in mods:
                    mod = mod.rsplit('.', 1)[0] if '.' in mod else None
                if mod and mod != name:
                    edges.add(mod)
        graph[name] = edges
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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


def test_no_import_cycle():
    graph = import_graph()
    assert 'mmdag.attacks.dag' in graph['mmdag.attacks']    # the graph sees relative imports
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    graph = import_graph()
    graph['mmdag.registry'] = graph['mmdag.registry'] | {'mmdag.attacks'}   # the old registry
    assert ['mmdag.attacks', 'mmdag.attacks.dag', 'mmdag.registry'] in [
        [m for m in c if m in ('mmdag.attacks', 'mmdag.attacks.dag', 'mmdag.registry')]
        for c in cycles(graph)]


def test_the_registry_imports_nothing_of_mmdag():
    assert import_graph()['mmdag.registry'] == set()


@pytest.mark.parametrize('room', sorted(FORBIDDEN))
def test_no_import_goes_back_up_the_layers(room):
    bad = []
    for dirpath, _, names in os.walk(osp.join(PKG, room)):
        for n in names:
            if not n.endswith('.py'):
                continue
            path = osp.join(dirpath, n)
            rel = osp.relpath(path, PKG)
            for mod in imports(path):
                if any(mod == f or mod.startswith(f + '.') for f in FORBIDDEN[room]):
                    bad.append(f'{rel}: {mod}')
    assert not bad
