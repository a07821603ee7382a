"""hashjax.search end to end on a tiny trained run: build an index from the
run, query by image / folder / list, reports, append, and the errors."""
import shutil

import numpy as np
import pytest

from configs import ahcl as ahcl_config
from hashjax import index
from hashjax import search
from hashjax import train


@pytest.fixture(scope='module')
def trained(small_rsscn7, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('run')
  c = ahcl_config.get_config('runlocal,bits=16')
  c.data.update(name='folder', root=str(small_rsscn7))
  train.run(c, str(workdir))
  return workdir


def test_build_search_report_append(trained, small_rsscn7, tmp_path):
  out = str(tmp_path / 'a.hjidx')
  idx = search.build(str(trained), out)
  run = train.load_trained(str(trained))
  db = run.splits['database']
  assert len(idx) == len(db) and idx.bits == 16
  # AHCL's index holds its learned database codes V, as evaluation uses.
  v = np.where(np.asarray(run.state.method_state['V']) >= 0, 1, -1)
  np.testing.assert_array_equal(idx.codes(), v)
  assert idx.ids == list(run.image_set.paths[db])

  # A held-back query image: its class folder gives relevance.
  q = run.image_set.paths[run.splits['query'][0]]
  got, paths, q_labels, dist, ids = search.search(out, q, k=5)
  assert paths == [q] and q_labels[0] == run.image_set.primary_labels[
      run.splits['query'][0]]
  assert dist.shape == (1, 5) and (np.diff(dist[0]) >= 0).all()
  # The same ranking as a stable sort of the query's Hamming distances.
  from hashjax.data import sources  # pylint: disable=g-import-not-at-top
  q_code = search._encode(run, sources.ImageSet(  # pylint: disable=protected-access
      np.array([q]), [q], np.zeros((1, 1), np.float32), ['?']))
  d = np.bitwise_count(index.pack(q_code) ^ np.asarray(got.packed)).sum(-1)
  np.testing.assert_array_equal(ids[0], np.argsort(d, kind='stable')[:5])
  np.testing.assert_array_equal(dist[0], np.sort(d)[:5])

  html = search.write_report(str(tmp_path / 'r.html'), got, paths, q_labels,
                             dist, ids)
  text = open(html).read()
  assert text.count('<img') == 6 and 'data:image/png;base64' in text
  png = search.write_report(str(tmp_path / 'r.png'), got, paths, q_labels,
                            dist, ids)
  assert open(png, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'

  # A folder and a .txt list of queries.
  folder = tmp_path / 'q' / run.image_set.class_names[2]
  folder.mkdir(parents=True)
  for p in run.image_set.paths[run.splits['query'][:3]]:
    shutil.copy(p, folder)
  _, paths, q_labels, dist, _ = search.search(out, str(tmp_path / 'q'), k=3)
  assert len(paths) == 3 and (q_labels == 2).all() and dist.shape == (3, 3)
  lst = tmp_path / 'list.txt'
  lst.write_text('\n'.join(paths) + '\n')
  assert search.search(out, str(lst), k=3)[1] == paths

  # Append a new folder: old codes untouched, new ones encoded.
  new = tmp_path / 'new'
  shutil.copytree(small_rsscn7, new)
  before = idx.codes()
  grown = search.build(str(trained), out, images=str(new), append=True)
  assert len(grown) == len(before) + len(run.image_set)
  np.testing.assert_array_equal(grown.codes()[:len(before)], before)
  assert grown.source['appended'][0]['images'] == str(new)


def test_errors(trained, tmp_path):
  out = str(tmp_path / 'a.hjidx')
  search.build(str(trained), out)
  with pytest.raises(FileNotFoundError, match='No query'):
    search.search(out, str(tmp_path / 'nope.jpg'))
  bad = tmp_path / 'bad.jpg'
  bad.write_bytes(b'\xff\xd8\xff not really a jpeg')
  with pytest.raises(ValueError, match='unreadable'):
    search.search(out, str(bad))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='No images'):
    search.search(out, str(tmp_path / 'empty'))
  with pytest.raises(FileNotFoundError, match='not a hashjax run'):
    search.build(str(tmp_path), str(tmp_path / 'b.hjidx'))


def test_index_from_a_tfds_split(trained, toy_tfds, tmp_path):
  """--images=tfds:NAME: a TFDS dataset prepared locally is encoded into
  an index, labels from its ClassLabel."""
  import os  # pylint: disable=g-import-not-at-top
  os.environ['HASHJAX_DATA_DIR'] = str(tmp_path / 'export')
  try:
    idx = search.build(str(trained), str(tmp_path / 't.hjidx'),
                       images=f'tfds:{toy_tfds.name}:train',
                       tfds_data_dir=toy_tfds.data_dir)
  finally:
    del os.environ['HASHJAX_DATA_DIR']
  assert len(idx) == len(toy_tfds.files)
  assert idx.class_names == toy_tfds.classes
  assert idx.source['images'] == f'tfds:{toy_tfds.name}:train'
  assert idx.labels.sum() == len(toy_tfds.files)
