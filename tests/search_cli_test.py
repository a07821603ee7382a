"""hashjax.search end to end on a tiny trained run: build an index from the
run, query by image / folder / list, reports, append, and the errors."""
import shutil

import numpy as np
import pytest

from configs import ahcl as ahcl_config
from hashjax import restore
from hashjax import search
from hashjax import train
from hashjax.archive import index
from hashjax.archive import report
from hashjax.data import image_set as image_set_lib
from hashjax.data import protocols
from hashjax.data import sources

# Each test trains or starts processes: the full suite only.
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def trained(tiny_index):
  """The shared tiny AHCL run (tests/conftest.py); not changed here."""
  return tiny_index[0] / 'run'


def _data(small_rsscn7):
  """The training data of `trained` and its splits."""
  image_set = sources.from_folder(small_rsscn7)
  splits = protocols.split(image_set.names, image_set.primary_labels,
                           image_set.class_names, 'default')
  return image_set, splits


def test_build_search_report_append(trained, small_rsscn7, tmp_path):
  out = str(tmp_path / 'a.hjidx')
  idx = search.build(str(trained), out)
  run = restore.load(str(trained))
  image_set, splits = _data(small_rsscn7)
  db = splits['database']
  assert len(idx) == len(db) and idx.bits == 16
  # AHCL's index holds its learned database codes V, as evaluation uses.
  v = np.where(np.asarray(run.method_state['V']) >= 0, 1, -1)
  np.testing.assert_array_equal(idx.codes(), v)
  assert idx.ids == list(image_set.paths[db])

  # A held-back query image: its class folder gives relevance.
  q = image_set.paths[splits['query'][0]]
  got, paths, q_labels, dist, ids = search.search(out, q, k=5)
  assert paths == [q] and q_labels[0] == image_set.primary_labels[
      splits['query'][0]]
  assert dist.shape == (1, 5) and (np.diff(dist[0]) >= 0).all()
  # The same ranking as a stable sort of the query's Hamming distances.
  q_code = search._encode(run, image_set_lib.ImageSet(  # pylint: disable=protected-access
      np.array([q]), [q], np.zeros((1, 1), np.float32), ['?']))
  d = np.bitwise_count(index.pack(q_code) ^ np.asarray(got.packed)).sum(-1)
  np.testing.assert_array_equal(ids[0], np.argsort(d, kind='stable')[:5])
  np.testing.assert_array_equal(dist[0], np.sort(d)[:5])

  html = report.write_report(str(tmp_path / 'r.html'), got, paths, q_labels,
                             dist, ids)
  text = open(html).read()
  assert text.count('<img') == 6 and 'data:image/png;base64' in text
  png = report.write_report(str(tmp_path / 'r.png'), got, paths, q_labels,
                            dist, ids)
  assert open(png, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'

  # A folder and a .txt list of queries.
  folder = tmp_path / 'q' / image_set.class_names[2]
  folder.mkdir(parents=True)
  for p in image_set.paths[splits['query'][:3]]:
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
  assert len(grown) == len(before) + len(image_set)
  np.testing.assert_array_equal(grown.codes()[:len(before)], before)
  assert grown.source['appended'][0]['images'] == str(new)


@pytest.mark.parametrize('config_arg', ['runlocal,bits=16', 'runlocal'])
def test_search_with_the_training_data_moved_away(config_arg, small_rsscn7,
                                                  tmp_path, monkeypatch):
  """A finished run loads from its workdir alone: train a tiny run, build
  its index, move the data folder away, then load the run, encode a query
  and search; no training image is read, no stage reruns."""
  from configs import mrhash as mrhash_config  # pylint: disable=g-import-not-at-top
  data = tmp_path / 'data'
  shutil.copytree(small_rsscn7, data)
  get_config = (ahcl_config if config_arg.endswith('16')
                else mrhash_config).get_config
  c = get_config(config_arg)
  c.data.update(name='folder', root=str(data))
  workdir = tmp_path / 'run'
  train.run(c, str(workdir))
  out = str(tmp_path / 'a.hjidx')
  search.build(str(workdir), out)
  query = tmp_path / 'query' / 'aGrass' / 'q.jpg'
  query.parent.mkdir(parents=True)
  shutil.copy(sorted((data / 'aGrass').iterdir())[-1], query)
  shutil.move(str(data), str(tmp_path / 'moved'))
  opened = []
  real_open = image_set_lib.validate
  monkeypatch.setattr(image_set_lib, 'validate',
                      lambda paths, *a, **kw: opened.extend(paths) or
                      real_open(paths, *a, **kw))
  import hashjax.data.sources as sources_mod  # pylint: disable=g-import-not-at-top
  def no_load(*unused):
    raise AssertionError('the training data was loaded')
  monkeypatch.setattr(sources_mod, 'load', no_load)
  timing = {}
  got, paths, q_labels, dist, ids = search.search(out, str(query), k=5,
                                                  timing=timing)
  assert opened == [str(query)]          # only the query image is read.
  assert dist.shape == (1, 5) and q_labels[0] == 0
  assert set(timing) == {'import', 'restore', 'compile', 'encode', 'search'}
  run = restore.load(str(workdir))
  assert run.info['class_names'][0] == 'aGrass'
  assert len(run.info['database']['ids']) == len(got)
  # The index names the step its codes came from; another step is refused.
  assert got.source['step'] == run.step
  with pytest.raises(FileNotFoundError, match='no checkpoint at step 999'):
    restore.load(str(workdir), step=999)


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
