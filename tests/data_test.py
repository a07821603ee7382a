"""Sources, split protocols and tf.data pipelines on real bundled images."""
import collections
import shutil

import numpy as np
import pytest
import tensorflow as tf

from hashjax.data import input_pipeline
from hashjax.data import protocols
from hashjax.data import image_set as image_set_lib
from hashjax.data import pairing
from hashjax.data import sources
from hashjax.data import tfds_export
from tests.conftest import REPO


def _copy(small_rsscn7, tmp_path, classes=None):
  root = tmp_path / 'data'
  shutil.copytree(small_rsscn7, root)
  if classes is not None:
    for d in root.iterdir():
      if d.name not in classes:
        shutil.rmtree(d)
  return root


def test_folder_source_reads_classes_and_labels(small_rsscn7):
  s = sources.from_folder(small_rsscn7)
  assert len(s) == 140 and len(s.class_names) == 7
  assert s.class_names[0] == 'aGrass' and s.names[0] == 'aGrass/a001.jpg'
  np.testing.assert_array_equal(s.labels.sum(1), 1)
  assert collections.Counter(s.primary_labels.tolist()) == {
      c: 20 for c in range(7)}


def test_corrupt_and_truncated_images_named(small_rsscn7, tmp_path):
  root = _copy(small_rsscn7, tmp_path)
  (root / 'aGrass' / 'broken.jpg').write_bytes(b'not an image at all')
  good = (root / 'bField' / 'b001.jpg').read_bytes()
  (root / 'bField' / 'b001.jpg').write_bytes(good[:len(good) // 3])
  with pytest.raises(ValueError) as e:
    sources.from_folder(root)
  assert 'broken.jpg' in str(e.value) and 'b001.jpg' in str(e.value)
  assert 'skip_bad_images' in str(e.value)
  s = sources.from_folder(root, skip_bad_images=True)
  assert len(s) == 139 and len(s.skipped) == 2
  assert not any(n.endswith(('broken.jpg', 'b001.jpg')) for n in s.names)


def test_a_jpeg_pillow_reads_but_tensorflow_rejects_is_found(small_rsscn7,
                                                             tmp_path):
  """tests/data/pil_ok_tf_bad.jpg (a fuzzed bundled scene: a marker in the
  scan data) decodes in Pillow, not in TensorFlow, which training uses: the
  up-front check must use the training decoder."""
  import shutil  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  bad = REPO / 'tests' / 'data' / 'pil_ok_tf_bad.jpg'
  with Image.open(bad) as im:
    im.load()                                 # Pillow: fine
  root = _copy(small_rsscn7, tmp_path)
  shutil.copy(bad, root / 'cIndustry' / 'fuzzed.jpg')
  with pytest.raises(ValueError, match=r'fuzzed\.jpg: jpeg::Uncompress'):
    sources.from_folder(root)
  s = sources.from_folder(root, skip_bad_images=True)
  assert len(s) == 140 and s.skipped == [
      s.skipped[0]] and 'cIndustry/fuzzed.jpg' in s.skipped[0]
  with pytest.raises(ValueError, match='Fix or remove them.$'):
    image_set_lib.check_decodable([str(root / 'cIndustry' / 'fuzzed.jpg')])


def test_any_folder_of_images_can_be_indexed(small_rsscn7, tmp_path):
  """hashjax.search --images: class folders, one class folder, or a flat
  folder (no labels)."""
  flat = tmp_path / 'flat'
  shutil.copytree(small_rsscn7 / 'aGrass', flat)
  s = sources.for_indexing(flat)
  assert len(s) == 20 and s.class_names == [] and s.labels.shape == (20, 0)
  one = tmp_path / 'one'
  shutil.copytree(small_rsscn7 / 'aGrass', one / 'aGrass')
  s = sources.for_indexing(one)
  assert s.class_names == ['aGrass'] and s.labels.sum() == 20
  assert len(sources.for_indexing(small_rsscn7).class_names) == 7
  (tmp_path / 'none').mkdir()
  with pytest.raises(ValueError, match='No images'):
    sources.for_indexing(tmp_path / 'none')


@pytest.mark.parametrize('case', ['missing', 'empty_class', 'one_class',
                                  'no_classes'])
def test_bad_roots(small_rsscn7, tmp_path, case):
  if case == 'missing':
    root, match = tmp_path / 'nope', 'does not exist'
  elif case == 'empty_class':
    root = _copy(small_rsscn7, tmp_path)
    (root / 'zEmpty').mkdir()
    match = 'zEmpty'
  elif case == 'one_class':
    root = _copy(small_rsscn7, tmp_path, classes={'aGrass'})
    match = 'one class'
  else:
    root = tmp_path / 'flat'
    root.mkdir()
    match = 'No class folders'
  with pytest.raises((ValueError, FileNotFoundError), match=match):
    sources.from_folder(root)


def test_default_protocol_is_80_20_by_sorted_name(small_rsscn7):
  s = sources.from_folder(small_rsscn7)
  sp = protocols.split(s.names, s.primary_labels, s.class_names)
  assert len(sp['train']) == 112 and len(sp['query']) == 28
  assert not set(sp['train']) & set(sp['query'])
  # Last 20 % by name in each class are queries: a017..a020.
  assert [s.names[i] for i in sp['query'][:4]] == [
      f'aGrass/a0{k}.jpg' for k in (17, 18, 19, 20)]
  assert sp['database'] is sp['train']


def test_ucmd_protocol_uses_appendix_numbers():
  classes = sorted(protocols._UCMD_QUERY_NUMBERS)
  names = [f'{c}/{c}{k:02d}.tif' for c in classes for k in range(100)]
  labels = np.repeat(np.arange(21), 100)
  sp = protocols.split(names, labels, classes, 'ucmd_dgssh')
  assert len(sp['query']) == 420 and len(sp['train']) == 1680
  assert names[sp['query'][0]] == 'agricultural/agricultural01.tif'
  assert 'tenniscourt/tenniscourt96.tif' in [names[i] for i in sp['query']]


def test_whurs19_protocol_sizes():
  sizes = [55, 56, 50, 50, 51, 50, 53, 50, 53, 51, 55, 53, 50, 56, 50, 53,
           54, 60, 55]
  assert sum(sizes) == 1005
  classes = [f'c{i:02d}' for i in range(19)]
  names = [f'{c}/{k}.jpg' for c, n in zip(classes, sizes) for k in range(n)]
  labels = np.repeat(np.arange(19), sizes)
  sp = protocols.split(names, labels, classes, 'whurs19_ahcl')
  assert len(sp['train']) == 505 and len(sp['query']) == 500


def test_eurosat_mrhash_protocol_sizes():
  sizes = [3000, 3000, 3000, 2500, 2500, 2000, 2500, 3000, 2500, 3000]
  classes = [f'c{i}' for i in range(10)]
  names = [f'{c}/{c}_{k}.jpg' for c, n in zip(classes, sizes)
           for k in range(n)]
  labels = np.repeat(np.arange(10), sizes)
  sp = protocols.split(names, labels, classes, 'eurosat_mrhash')
  assert len(sp['query']) == 1000 and len(sp['train']) == 26000
  np.testing.assert_array_equal(np.bincount(labels[sp['query']]), [100] * 10)
  with pytest.raises(ValueError, match='has only 100 images'):
    protocols.split(names[:100] + names[3000:], np.r_[labels[:100],
                    labels[3000:]], classes, 'eurosat_mrhash')


def test_protocol_errors():
  with pytest.raises(ValueError, match='Unknown split protocol'):
    protocols.split(['a/1.jpg'], [0], ['a'], 'nope')
  with pytest.raises(ValueError, match='expects 21 classes'):
    protocols.split(['a/1.jpg', 'b/1.jpg'], [0, 1], ['a', 'b'], 'ucmd_dgssh')


def test_inference_pads_and_counts_every_image_once(small_rsscn7):
  s = sources.from_folder(small_rsscn7)
  ids = np.arange(0, 140, 3)                       # 47 images
  seen = []
  for b in input_pipeline.inference(s, ids, global_batch=16,
                                    image_size=32).as_numpy_iterator():
    assert b['image'].shape == (16, 32, 32, 3) and b['image'].dtype == np.uint8
    seen += b['index'][b['mask'] > 0].tolist()
    assert (b['index'][b['mask'] == 0] == -1).all()
  assert sorted(seen) == list(range(47))


def test_train_rounds_order_epochs_and_skip(small_rsscn7):
  s = sources.from_folder(small_rsscn7)
  ids = np.array([5, 3, 9, 100, 7, 60, 61, 2, 1, 0])
  rows = np.arange(10)
  rounds = [(0, ids, rows), (1, ids[::-1], rows[::-1])]
  kw = dict(epochs=2, global_batch=4, image_size=32, augment_kind='flip_rot',
            seed=3)
  full = list(input_pipeline.train(s, rounds, **kw).as_numpy_iterator())
  assert len(full) == 12                # 2 rounds x 2 epochs x ceil(10/4)
  order = np.concatenate([b['index'] for b in full])
  one_epoch = list(range(10)) + [-1, -1]
  np.testing.assert_array_equal(order[:24], one_epoch * 2)
  np.testing.assert_array_equal(order[24:36], one_epoch[9::-1] + [-1, -1])
  # Resume 4 batches into round 1: the same images, augmentation included.
  tail = list(input_pipeline.train(s, rounds[1:], skip_batches=4, **kw)
              .as_numpy_iterator())
  assert len(tail) == 2
  for a, b in zip(full[10:], tail):
    np.testing.assert_array_equal(a['image'], b['image'])
  # The second epoch sees the same images with fresh augmentation.
  np.testing.assert_array_equal(full[0]['index'], full[3]['index'])
  assert not np.array_equal(full[0]['image'], full[3]['image'])


def test_random_resized_crop_train(small_rsscn7):
  """'rrc_flip' (MrHash's released Resize 256 + RandomResizedCrop 224 +
  flip, here 40 -> 32): right size, reproducible, different each epoch,
  and a real crop (not the resized whole image)."""
  s = sources.from_folder(small_rsscn7)
  rounds = [(0, np.arange(8), np.arange(8))]
  kw = dict(epochs=2, global_batch=8, image_size=32, resize_size=40,
            augment_kind='rrc_flip', seed=1)
  a = list(input_pipeline.train(s, rounds, **kw).as_numpy_iterator())
  b = list(input_pipeline.train(s, rounds, **kw).as_numpy_iterator())
  assert a[0]['image'].shape == (8, 32, 32, 3)
  np.testing.assert_array_equal(a[0]['image'], b[0]['image'])
  assert not np.array_equal(a[0]['image'], a[1]['image'])
  whole = next(input_pipeline.inference(s, np.arange(8), global_batch=8,
                                        image_size=32).as_numpy_iterator())
  diff = np.abs(a[0]['image'].astype(float) - whole['image']).mean((1, 2, 3))
  flipped = np.abs(a[0]['image'].astype(float)
                   - whole['image'][:, :, ::-1]).mean((1, 2, 3))
  assert (np.minimum(diff, flipped) > 1.0).sum() >= 6


def test_tiff_and_png_decode(tmp_path):
  from PIL import Image
  rng = np.random.default_rng(0)
  for cls, ext in (('a', '.tif'), ('b', '.png')):
    (tmp_path / cls).mkdir()
    for k in range(3):
      Image.fromarray(rng.integers(0, 255, (20, 24, 3), np.uint8)).save(
          tmp_path / cls / f'{k}{ext}')
  s = sources.from_folder(tmp_path)
  img = input_pipeline.decode(tf.constant(s.paths[0])).numpy()
  want = np.asarray(Image.open(s.paths[0]))
  np.testing.assert_array_equal(img, want)
  img = input_pipeline.decode(tf.constant(s.paths[-1])).numpy()
  np.testing.assert_array_equal(img, np.asarray(Image.open(s.paths[-1])))


def test_tfds_dataset_from_local_data_dir(tmp_path, toy_tfds):
  """A real TFDS builder prepared in a local data_dir, loaded by name."""
  files, classes, data_dir = toy_tfds.files, toy_tfds.classes, \
      toy_tfds.data_dir
  s = tfds_export.from_tfds('hashjax_toy_scenes', data_dir=data_dir,
                        cache_dir=str(tmp_path / 'cache'))
  assert len(s) == len(files) and s.class_names == classes
  # TFDS stores examples in its own order; the export keeps the original
  # encoded bytes, so each file maps back to its source and class by content.
  source = {f.read_bytes(): classes.index(f.parent.name) for f in files}
  got = [source[open(p, 'rb').read()] for p in s.paths]
  np.testing.assert_array_equal(s.primary_labels, got)
  assert sorted(got) == sorted(source.values())
  # The dataset's own file names survive the export (protocols use them).
  by_content = {f.read_bytes(): f.stem for f in files}
  for path, name in zip(s.paths, s.names):
    assert name.endswith('_' + by_content[open(path, 'rb').read()] + '.jpg')
  with pytest.raises(FileNotFoundError, match='not prepared'):
    tfds_export.from_tfds('hashjax_toy_scenes', data_dir=str(tmp_path / 'empty'),
                      cache_dir=str(tmp_path / 'cache2'))


def _tree(root, files):
  from PIL import Image as _Image  # pylint: disable=g-import-not-at-top
  for rel in files:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    _Image.new('RGB', (8, 8), (len(rel), 0, 0)).save(path)
  return root


def test_pair_sources_aligns_by_relative_path(tmp_path):
  a = _tree(tmp_path / 'a', ['x/1.jpg', 'x/2.jpg', 'y/3.jpg'])
  b = _tree(tmp_path / 'b', ['y/3.png', 'x/2.png', 'x/1.png'])
  sa, sb = sources.from_folder(a), sources.from_folder(b)
  paired = pairing.pair_sources([sa, sb], ['a', 'b'])
  assert [p.split('/')[-1] for p in paired[1].paths] == ['1.png', '2.png',
                                                         '3.png']
  np.testing.assert_array_equal(paired[1].labels, sa.labels)


def test_pair_sources_lists_mismatches(tmp_path):
  a = _tree(tmp_path / 'a', ['x/1.jpg', 'x/2.jpg', 'y/3.jpg'])
  b = _tree(tmp_path / 'b', ['x/1.jpg', 'y/3.jpg', 'y/4.jpg'])
  with pytest.raises(ValueError) as e:
    pairing.pair_sources([sources.from_folder(a), sources.from_folder(b)],
                         ['src1', 'src2'])
  msg = str(e.value)
  assert "1 image(s) only in 'src1' (x/2)" in msg
  assert "1 image(s) only in 'src2' (y/4)" in msg


def test_decoding_an_upload(small_rsscn7, tmp_path):
  """An upload's bytes decode to what the file's path decodes to (JPEG,
  PNG, TIFF), and bad bytes are a ValueError saying why."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path = sorted(small_rsscn7.glob('*/*.jpg'))[0]
  want = input_pipeline.decode(tf.constant(str(path))).numpy()
  np.testing.assert_array_equal(
      input_pipeline.decode_bytes(path.read_bytes()), want)
  for suffix in ('.png', '.tif'):
    other = tmp_path / ('x' + suffix)
    Image.fromarray(want).save(other)
    np.testing.assert_array_equal(
        input_pipeline.decode_bytes(other.read_bytes()), want)
  data = path.read_bytes()
  for bad, why in [(b'', 'empty'), (b'hello', 'Unknown image file format'),
                   (data[:len(data) // 2], 'Invalid JPEG'),
                   (b'II*\x00broken', 'Error')]:
    with pytest.raises(ValueError, match=why):
      input_pipeline.decode_bytes(bad)


def test_multi_label_mosaics_and_lists(tmp_path):
  """The bundled multi-label demo: 2x2 mosaics of RSSCN7 tiles labelled
  with the union of their classes, the same bytes on every build; lists
  with several labels per line train (data.name=list) and index."""
  from hashjax.data import mosaic  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  a = mosaic.ensure(str(tmp_path / 'a'), count=30)
  b = mosaic.ensure(str(tmp_path / 'b'), count=30)
  assert open(a).read() == open(b).read()
  assert (tmp_path / 'a/images/m0007.jpg').read_bytes() == (
      tmp_path / 'b/images/m0007.jpg').read_bytes()
  s = sources.from_list(a)
  assert len(s) == 30 and s.names[0] == 'images/m0000.jpg'
  counts = s.labels.sum(1)
  assert counts.min() >= 1 and counts.max() <= 3 and (counts > 1).any()
  assert set(s.class_names) <= {p.name for p in sources.BUNDLED[
      'rsscn7_64'].iterdir()}
  with Image.open(s.paths[3]) as im:
    assert im.size == (64, 64)
  # A list of paths and labels, with an unreadable image and a bad line.
  lines = open(a).read().splitlines()
  (tmp_path / 'a/images/bad.jpg').write_text('not an image')
  (tmp_path / 'a/with_bad.csv').write_text(
      '\n'.join(lines[:5] + ['images/bad.jpg,aGrass']) + '\n')
  with pytest.raises(ValueError, match='bad.jpg'):
    sources.from_list(str(tmp_path / 'a/with_bad.csv'))
  s = sources.from_list(str(tmp_path / 'a/with_bad.csv'),
                        skip_bad_images=True)
  assert len(s) == 5 and 'bad.jpg' in s.skipped[0]
  (tmp_path / 'a/no_labels.csv').write_text('images/m0000.jpg\n')
  with pytest.raises(ValueError, match='no labels'):
    sources.from_list(str(tmp_path / 'a/no_labels.csv'))
  (tmp_path / 'a/typo.csv').write_text('images/m0000.jgp,aGrass\n')
  with pytest.raises(ValueError, match='line 1.*not an image'):
    sources.from_list(str(tmp_path / 'a/typo.csv'))
  with pytest.raises(FileNotFoundError, match='No image list'):
    sources.from_list(str(tmp_path / 'missing.csv'))
  # archive listing of the same list: ids are the full paths
  listed = sources.for_archive(a)
  assert listed.names[0].endswith('a/images/m0000.jpg')
  np.testing.assert_array_equal(listed.labels, sources.from_list(a).labels)


def test_bigearthnet_19_class_nomenclature(tmp_path, small_rsscn7):
  """A TFDS dataset with BigEarthNet's 43 CORINE labels (a `labels`
  sequence, alphabetical as in TFDS's bigearthnet) read as 19 classes:
  merged by name, dropped classes removed, a patch left with no label
  listed and left out; `original` keeps the 43."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from configs import common  # pylint: disable=g-import-not-at-top
  from hashjax.data import nomenclatures  # pylint: disable=g-import-not-at-top
  names43 = sorted(nomenclatures.BIGEARTHNET43)   # TFDS's order
  assert len(names43) == 43
  files = sorted(small_rsscn7.glob('*/*.jpg'))[:5]
  patch_labels = [
      ['Continuous urban fabric', 'Discontinuous urban fabric'],  # -> 1
      ['Sea and ocean', 'Estuaries', 'Rice fields'],   # marine + arable
      ['Airports', 'Road and rail networks and associated land'],  # none
      ['Peatbogs', 'Burnt areas'],                     # inland wetlands
      ['Transitional woodland/shrub', 'Sclerophyllous vegetation']]

  class HashjaxToyBen(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'image': tfds.features.Image(encoding_format='jpeg'),
          'labels': tfds.features.Sequence(
              tfds.features.ClassLabel(names=names43)),
          'filename': tfds.features.Text()}))

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples()}

    def _generate_examples(self):
      for i, (f, labels) in enumerate(zip(files, patch_labels)):
        yield i, {'image': str(f), 'labels': labels, 'filename': f'p{i}'}

  data_dir = tmp_path / 'tfds'
  HashjaxToyBen(data_dir=str(data_dir)).download_and_prepare()
  c = common.data_config('hashjax_toy_ben')
  c.update(data_dir=str(data_dir), cache_dir=str(tmp_path / 'cache'))
  original = sources.load(c)         # not bigearthnet: its own 43 labels
  assert len(original) == 5 and original.class_names == names43
  c.nomenclature = 'bigearthnet19'
  s = sources.load(c)
  assert len(s.class_names) == 19 and s.class_names[0] == 'Urban fabric'
  by_file = {n.split('_')[-1].split('.')[0]: s.labels[i]
             for i, n in enumerate(s.names)}
  named = {k: sorted(s.class_names[j] for j in np.flatnonzero(v))
           for k, v in by_file.items()}
  assert named == {
      'p0': ['Urban fabric'],
      'p1': ['Arable land', 'Marine waters'],
      'p3': ['Inland wetlands'],
      'p4': ['Moors, heathland and sclerophyllous vegetation',
             'Transitional woodland, shrub']}
  assert len(s.unlabelled) == 1 and s.unlabelled[0]['file'].endswith(
      '_p2.jpg') and s.unlabelled[0]['labels'] == [
          'Airports', 'Road and rail networks and associated land']
  # `default` is 19 classes for TFDS bigearthnet (any config/version).
  for name in ('bigearthnet', 'bigearthnet/rgb', 'bigearthnet/all:1.0.0'):
    assert nomenclatures.resolve(name).name == 'bigearthnet19'
  assert nomenclatures.resolve('bigearthnet', 'original') is None
  assert nomenclatures.resolve('uc_merced') is None
  with pytest.raises(ValueError, match='Unknown data.nomenclature'):
    nomenclatures.resolve('bigearthnet', 'bigearthnet_19')
  # A dataset without the CORINE names: a clear error.
  c2 = ml_collections.ConfigDict(common.data_config('rsscn7_64'))
  c2.nomenclature = 'bigearthnet19'
  with pytest.raises(ValueError, match='nomenclature=original'):
    sources.load(c2)
