"""The package's layers, kept by a test: imports are parsed (not run), and
the test fails on an import cycle or an import that runs upward.

Layers, bottom to top (a module may import its own layer or lower ones):
  0 core       codes, state, parallel, locking
  1 blocks     losses/, solvers/, data/, models/, optim, checkpoint, workdir
  2 shared     inference, features, evaluation/, archive/
  3 methods    methods/
  4 drivers    train, fit, restore, retriever
  5 CLI        main, search, convert
and, inside layer 1, losses/ imports nothing but codes and losses/.
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'hashjax'

LAYERS = {
    'codes': 0, 'state': 0, 'parallel': 0, 'locking': 0,
    'losses': 1, 'solvers': 1, 'data': 1, 'models': 1, 'optim': 1,
    'checkpoint': 1, 'workdir': 1,
    'inference': 2, 'features': 2, 'evaluation': 2, 'archive': 2,
    'methods': 3,
    'train': 4, 'fit': 4, 'restore': 4, 'retriever': 4, 'serving': 4,
    'main': 5, 'search': 5, 'convert': 5, 'serve': 5, 'compare': 5,
}


def module_name(path, package=PACKAGE):
  rel = path.relative_to(package.parent).with_suffix('')
  parts = rel.parts[:-1] if rel.name == '__init__' else rel.parts
  return '.'.join(parts)


def imports(path, package=PACKAGE):
  """hashjax modules imported anywhere in `path` (functions included)."""
  tree = ast.parse(path.read_text())
  me = module_name(path, package)
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names if a.name.startswith('hashjax'))
    elif isinstance(node, ast.ImportFrom) and node.module:
      base = node.module
      if node.level:   # relative import
        base = '.'.join(me.split('.')[:-node.level] + [node.module])
      if not base.startswith('hashjax'):
        continue
      for a in node.names:   # `from hashjax.x import y`: y may be a module.
        sub = f'{base}.{a.name}'
        out.add(sub if _exists(sub, package) else base)
  out.discard(me)
  return out


def _exists(name, package):
  rel = pathlib.Path(*name.split('.')[1:])
  return ((package / rel).with_suffix('.py').exists() or
          (package / rel / '__init__.py').exists())


def graph(package=PACKAGE):
  return {module_name(p, package): imports(p, package)
          for p in sorted(package.rglob('*.py'))}


def unit(name):
  """'hashjax.data.sources' -> 'data'; 'hashjax.train' -> 'train'."""
  parts = name.split('.')
  return parts[1] if len(parts) > 1 else ''


def find_cycle(g):
  """A list of modules forming an import cycle, or None."""
  state = {}
  stack = []

  def visit(m):
    state[m] = 1
    stack.append(m)
    for n in sorted(g.get(m, ())):
      if state.get(n) == 1:
        return stack[stack.index(n):] + [n]
      if n in g and not state.get(n):
        found = visit(n)
        if found:
          return found
    stack.pop()
    state[m] = 2
    return None

  for m in sorted(g):
    if not state.get(m):
      found = visit(m)
      if found:
        return found
  return None


def violations(g):
  """Imports that run upward, or out of losses/ into anything but codes."""
  bad = []
  for m, deps in g.items():
    src = unit(m)
    if src not in LAYERS:
      continue
    for d in deps:
      dst = unit(d)
      if dst not in LAYERS:
        continue
      if LAYERS[dst] > LAYERS[src]:
        bad.append(f'{m} imports {d} (layer {LAYERS[src]} -> {LAYERS[dst]})')
      elif src == 'losses' and dst not in ('losses', 'codes'):
        bad.append(f'{m} imports {d} (losses/ imports only codes, losses/)')
  return sorted(bad)


def test_every_top_level_unit_has_a_layer():
  units = {unit(m) for m in graph()} - {''}
  assert units <= set(LAYERS), sorted(units - set(LAYERS))


def test_no_import_cycle():
  assert find_cycle(graph()) is None


def test_no_upward_import():
  assert violations(graph()) == []


def _plant(tmp_path, files):
  pkg = tmp_path / 'hashjax'
  for name, text in files.items():
    path = pkg / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  return pkg


def test_every_module_imports():
  """Each module imports on its own (no hidden order dependence). The web
  app needs the `serve` extra; without it, it is the one module skipped."""
  import importlib  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  web = importlib.util.find_spec('fastapi') is not None
  for name in sorted(graph()):
    if name == 'hashjax.serving.app' and not web:
      continue
    importlib.import_module(name)


def test_a_planted_cycle_and_upward_imports_are_found(tmp_path):
  pkg = _plant(tmp_path, {
      '__init__.py': '',
      'train.py': 'from hashjax import fit\n',
      'fit.py': 'def f():\n  from hashjax import train\n',
      'losses/__init__.py': '',
      'losses/pairwise.py': 'from hashjax.models import heads\n',
      'models/__init__.py': '', 'models/heads.py': '',
      'methods/__init__.py': '',
      'methods/x.py': 'import hashjax.train\n',
      'evaluation/__init__.py': '',
      'evaluation/evaluator.py': 'from hashjax import search\n',
      'search.py': '',
  })
  g = graph(pkg)
  assert find_cycle(g) in (['hashjax.fit', 'hashjax.train', 'hashjax.fit'],
                           ['hashjax.train', 'hashjax.fit', 'hashjax.train'])
  bad = violations(g)
  assert any('losses.pairwise imports hashjax.models.heads' in b for b in bad)
  assert any('methods.x imports hashjax.train' in b for b in bad)
  assert any('evaluator imports hashjax.search' in b for b in bad)


if __name__ == '__main__':
  pytest.main([__file__])
