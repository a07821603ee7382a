"""Shared test setup: offline, quiet TF, one compilation cache for the
session, paths to ../shared and bundled data."""
import os
import pathlib
import shutil
import tempfile
import types

os.environ.setdefault('HASHJAX_OFFLINE', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
# Most tests (and the processes they start) compile the same small programs
# (resnet_tiny's init, train and encode steps): JAX's persistent compilation
# cache lets the second compile of a program load the first one's
# executable. It holds only compiles of 0.3 s or more (not the many quick
# ones of eager ops), starts empty in every session and is removed at its
# end. No size limit: with one, JAX rescans the whole folder at every write
# (the Swin tests ran 3-5x slower). Set JAX_COMPILATION_CACHE_DIR to keep your
# own.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix='hashjax-test-jax-cache-')
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_CACHE,
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0.3',
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='-1')
else:
  _CACHE = None

import pytest  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'
BUNDLED = REPO / 'hashjax' / 'data' / 'bundled' / 'rsscn7_64'


def pytest_unconfigure(config):
  del config
  if _CACHE:
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope='session')
def small_rsscn7(tmp_path_factory):
  """7 classes x 20 real images copied from the bundled RSSCN7 data."""
  root = tmp_path_factory.mktemp('rsscn7_small')
  for cls in sorted(p.name for p in BUNDLED.iterdir() if p.is_dir()):
    (root / cls).mkdir()
    for f in sorted((BUNDLED / cls).iterdir())[:20]:
      shutil.copy(f, root / cls / f.name)
  return root


@pytest.fixture(scope='session')
def toy_tfds(small_rsscn7, tmp_path_factory):
  """A real TFDS dataset ('hashjax_toy_scenes': JPEG image, ClassLabel,
  filename) prepared in a local data_dir from every 10th small_rsscn7
  image."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  files = sorted(small_rsscn7.glob('*/*.jpg'))[::10]
  classes = sorted({f.parent.name for f in files})

  class HashjaxToyScenes(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'image': tfds.features.Image(encoding_format='jpeg'),
          'label': tfds.features.ClassLabel(names=classes),
          'filename': tfds.features.Text()}))

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples()}

    def _generate_examples(self):
      for i, f in enumerate(files):
        yield i, {'image': str(f), 'label': f.parent.name,
                  'filename': f.name}

  data_dir = tmp_path_factory.mktemp('tfds')
  HashjaxToyScenes(data_dir=str(data_dir)).download_and_prepare()
  return types.SimpleNamespace(name='hashjax_toy_scenes',
                               data_dir=str(data_dir), files=files,
                               classes=classes)


@pytest.fixture(scope='session')
def tiny_index(small_rsscn7, tmp_path_factory):
  """A tiny trained AHCL run (16 bits, runlocal) and the index of its
  database: (root folder, index path). Shared by the Retriever and
  service tests; copy the index before changing it."""
  from configs import ahcl as ahcl_config  # pylint: disable=g-import-not-at-top
  from hashjax import search  # pylint: disable=g-import-not-at-top
  from hashjax import train  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('tiny_index')
  c = ahcl_config.get_config('runlocal,bits=16')
  c.data.update(name='folder', root=str(small_rsscn7))
  train.run(c, str(root / 'run'))
  out = str(root / 'a.hjidx')
  search.build(str(root / 'run'), out)
  return root, out
