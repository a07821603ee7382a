"""The Python API (hashjax.Retriever): the README's snippet runs, and the
API agrees with the search command's exact ranking."""
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from hashjax import Retriever
from hashjax import search
from hashjax.archive import index as index_lib
from tests.conftest import REPO

pytestmark = pytest.mark.slow   # trains a tiny run


@pytest.fixture(scope='module')
def built(tiny_index):
  return tiny_index


def test_readme_snippet_runs(built, monkeypatch, capsys):
  root, out = built
  text = (REPO / 'README.md').read_text()
  code = re.search(r'<!-- snippet: retriever -->\s*```python\n(.*?)```',
                   text, re.S).group(1)
  monkeypatch.chdir(REPO)
  exec(code.replace("'runs/rsscn7.hjidx'", repr(out)), {})  # pylint: disable=exec-used
  printed = capsys.readouterr().out
  assert '.jpg' in printed


def test_api_matches_the_command_and_grows_the_index(built, small_rsscn7,
                                                     tmp_path):
  root, out = built
  path = str(tmp_path / 'a.hjidx')
  shutil.copy(out, path)
  r = Retriever.load(index=path)
  query = sorted((small_rsscn7 / 'bField').iterdir())[-1]
  hits = r.search([str(query)], k=5)
  _, _, _, dist, rows = search.search(path, str(query), k=5)
  np.testing.assert_array_equal(hits.distances, dist)
  np.testing.assert_array_equal(hits.rows, rows)
  # A path and the array the training decoder makes of it: the same code;
  # a PIL image (Pillow's own JPEG decoder) is encoded too.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from hashjax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  array = input_pipeline.decode(tf.constant(str(query))).numpy()
  with Image.open(query) as im:
    pil = im.convert('RGB')
  c = r.encode([str(query), array, pil])
  assert c.shape == (3, 16) and (c[0] == c[1]).all()
  assert set(np.unique(c[2])) <= {-1, 1}
  np.testing.assert_array_equal(r.search(c[:1], k=5).rows, hits.rows)
  with pytest.raises(ValueError, match=r'\[Q, 16\]'):
    r.search(np.ones((1, 8), np.int8))
  with pytest.raises(ValueError, match='k must be'):
    r.search(c[:1], k=0)
  before = len(r.index)
  new = tmp_path / 'new.jpg'
  shutil.copy(query, new)
  assert r.add([str(new)], labels=np.eye(7)[[1]]) == before + 1
  assert index_lib.load(path).ids[-1] == str(new)
  top = r.search([str(new)], k=1)
  assert top.distances[0, 0] == 0
