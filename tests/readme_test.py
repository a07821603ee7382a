"""The README's "Add a method" skeleton is complete: the tests run exactly
the code shown there (a method outside hashjax, by its dotted path)."""
import importlib
import re
import sys

import pytest

from hashjax import methods
from hashjax import train
from tests.conftest import REPO


def _block(tag):
  text = (REPO / 'README.md').read_text()
  m = re.search(rf'<!-- skeleton: {tag} -->\s*```python\n(.*?)```', text,
                re.S)
  assert m, f'README has no "{tag}" skeleton block'
  return m.group(1)


@pytest.fixture()
def skeleton(tmp_path, monkeypatch):
  pkg = tmp_path / 'mymethods'
  pkg.mkdir()
  (pkg / '__init__.py').write_text('')
  (pkg / 'pairwise.py').write_text(_block('method'))
  (tmp_path / 'pairwise_config.py').write_text(_block('config'))
  monkeypatch.syspath_prepend(str(tmp_path))
  yield importlib.import_module('pairwise_config')
  for name in ('mymethods', 'mymethods.pairwise', 'pairwise_config'):
    sys.modules.pop(name, None)


def test_skeleton_is_a_network_method(skeleton):
  method = methods.get('mymethods.pairwise')
  assert method.kind == 'network' and method.DATABASE_CODES == 'encoder'
  config = skeleton.get_config('bits=16')
  assert config.bits == 16 and config.loss.eta == 0.1


@pytest.mark.slow
def test_skeleton_trains_end_to_end(skeleton, small_rsscn7, tmp_path):
  config = skeleton.get_config('runlocal,bits=16')
  config.method = 'mymethods.pairwise'
  config.data.update(name='folder', root=str(small_rsscn7))
  config.eval.topk = (10,)
  results = train.run(config, str(tmp_path / 'run'))
  assert 0.0 < results['metrics']['map@all'] <= 1.0
  assert results['steps'] == 8
