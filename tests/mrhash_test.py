"""MrHash end to end (smoke size) with two sources and with one."""
import json

import numpy as np
import pytest

from configs import mrhash as mrhash_config
from hashjax import train


@pytest.mark.slow
@pytest.mark.parametrize('arg, sources', [('runlocal', 2),
                                          ('runlocal,single', 1)])
def test_mrhash_end_to_end(arg, sources, small_rsscn7, tmp_path):
  c = mrhash_config.get_config(arg + ',bits=16')
  c.data.update(name='folder', root=str(small_rsscn7))
  c.eval.topk = (10,)
  results = train.run(c, str(tmp_path))
  m = results['metrics']
  assert results['steps'] == 8 and m['R'] == 16
  assert 0.0 < m['map@R'] <= 1.0 and 0.0 < m['map@all'] <= 1.0
  assert len(list(tmp_path.glob('features*.npz'))) == sources
  history = json.loads((tmp_path / 'mrhash_ae_loss.json').read_text())
  assert len(history) == 3 and np.isfinite(history).all()
  # The cached stages are reused: a second run trains nothing new and
  # resumes at the end with the same metrics.
  again = train.run(c, str(tmp_path))
  assert again['metrics']['map@R'] == m['map@R']


@pytest.mark.slow
def test_each_stage_resumes_from_its_own_cache(small_rsscn7, tmp_path):
  """Deleting one stage's cache re-runs that stage only, to the same result;
  the stages' wall times and cache hits are in results.json."""
  c = mrhash_config.get_config('runlocal,bits=16')
  c.data.update(name='folder', root=str(small_rsscn7))
  first = train.run(c, str(tmp_path))
  names = ['features_s0', 'features_s1', 'autoencoder', 'kmeans']
  assert list(first['stages']) == names
  assert not any(v['cached'] for v in first['stages'].values())
  assert all(v['seconds'] >= 0 for v in first['stages'].values())
  files = {'features_s0': 'features.npz', 'features_s1': 'features_s1.npz',
           'autoencoder': 'mrhash_autoencoder.npz',
           'kmeans': 'mrhash_kmeans.npz'}
  for stage, fname in files.items():
    path = tmp_path / fname
    with np.load(path) as f:
      before = {k: f[k] for k in f.files}
    path.unlink()
    again = train.run(c, str(tmp_path))
    assert {k: v['cached'] for k, v in again['stages'].items()} == {
        k: k != stage for k in names}, stage
    with np.load(path) as f:
      for k, v in before.items():
        if v.dtype.kind == 'f':
          np.testing.assert_allclose(f[k], v, rtol=1e-5, atol=1e-6,
                                     err_msg=f'{stage}: {k}')
        else:
          np.testing.assert_array_equal(f[k], v, err_msg=f'{stage}: {k}')
    assert again['metrics']['map@R'] == first['metrics']['map@R']


def test_released_config_matches_the_code():
  """docs/methods/mrhash.md §1.4-1.6, §2: what `released` must set."""
  c = mrhash_config.get_config('released,bits=32')
  assert c.bits == 32 and c.train.rounds == 51 and c.input.batch_size == 128
  assert (c.input.image_size, c.input.resize_size) == (224, 256)
  assert c.input.augment == 'rrc_flip' and c.eval.map_at_r == 1900
  assert c.data.protocol == 'eurosat_mrhash'
  assert (c.optim.name, c.optim.weight_decay) == ('adamw', 0.0)   # = Adam
  assert c.loss.lambda0 == 5.0 and c.loss.kl_reduction == 'mean'
  from hashjax import optim   # pylint: disable=g-import-not-at-top
  lr = optim.learning_rate(c.optim, 51 * 204, 204)
  for epoch, want in ((0, 1e-3), (9, 1e-3), (10, 7e-4), (25, 4.9e-4),
                      (50, 1e-3 * 0.7 ** 5)):
    np.testing.assert_allclose(float(lr(epoch * 204 + 3)), want, rtol=1e-5)
  assert c.optim.encoder_lr_mult == 0.01      # backbone at 1e-5


@pytest.mark.slow
def test_released_variant_runs(small_rsscn7, tmp_path):
  """The released recipe end to end at smoke size (RandomResizedCrop from
  a resized image, two learning rates, step decay)."""
  c = mrhash_config.get_config('released,runlocal,bits=16')
  c.data.update(name='folder', root=str(small_rsscn7), protocol='default')
  c.input.update(image_size=32, resize_size=40)
  c.eval.map_at_r = 0
  results = train.run(c, str(tmp_path))
  assert results['steps'] == 8 and 0.0 < results['metrics']['map@R'] <= 1.0


def _toy_multisource_tfds(data_dir, n_per_class=12):
  """A TFDS dataset with two co-registered array sources, so2sat/all-like:
  'sentinel1' (4 bands) and 'sentinel2' (5 bands), class-dependent."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  classes = ['a', 'b', 'c']

  class HashjaxToyMultisource(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'sentinel1': tfds.features.Tensor(shape=(16, 16, 4),
                                            dtype=np.float32),
          'sentinel2': tfds.features.Tensor(shape=(16, 16, 5),
                                            dtype=np.float32),
          'label': tfds.features.ClassLabel(names=classes)}))

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples()}

    def _generate_examples(self):
      rng = np.random.default_rng(0)
      for i in range(n_per_class * len(classes)):
        c = i % len(classes)
        base = rng.normal(size=(16, 16, 1)) + 3.0 * c
        yield i, {'sentinel1': (-base * np.arange(1, 5) + rng.normal(
                      size=(16, 16, 4))).astype(np.float32),
                  'sentinel2': (base * 1000 + 10 * rng.normal(
                      size=(16, 16, 5))).astype(np.float32),
                  'label': c}

  HashjaxToyMultisource(data_dir=str(data_dir)).download_and_prepare()
  return 'hashjax_toy_multisource'


@pytest.mark.slow
def test_tfds_multiband_sources(tmp_path):
  """so2sat/all-style array features become 8-bit images of the chosen
  bands, stretched 2-98 %, and pair as two sources of MrHash."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from hashjax.data import pairing, tfds_export  # pylint: disable=g-import-not-at-top
  name = _toy_multisource_tfds(tmp_path / 'tfds')
  kw = dict(data_dir=str(tmp_path / 'tfds'), cache_dir=str(tmp_path / 'c'))
  s2 = tfds_export.from_tfds(name, image_key='sentinel2:2,1,0', **kw)
  s1 = tfds_export.from_tfds(name, image_key='sentinel1', **kw)
  assert len(s2) == len(s1) == 36
  ds = tfds.load(name, split='train', data_dir=str(tmp_path / 'tfds'),
                 shuffle_files=False)
  exs = list(tfds.as_numpy(ds))
  x = np.stack([e['sentinel2'][..., [2, 1, 0]] for e in exs]).astype(float)
  lo = np.percentile(x.reshape(-1, 3), 2, axis=0)
  hi = np.percentile(x.reshape(-1, 3), 98, axis=0)
  want = np.clip(np.round((x[5] - lo) / (hi - lo) * 255), 0, 255)
  got = np.asarray(Image.open(s2.paths[5]))
  assert got.shape == (16, 16, 3)
  assert np.abs(got.astype(float) - want).max() <= 1
  np.testing.assert_array_equal(s1.primary_labels,
                                [e['label'] for e in exs])
  paired = pairing.pair_sources([s2, s1], ['s2', 's1'])
  assert [p.split('/')[-1] for p in paired[1].paths] == [
      p.split('/')[-1] for p in s2.paths]
  with pytest.raises(ValueError, match='no feature .nope.*sentinel1'):
    tfds_export.from_tfds(name, image_key='nope', **kw)
  with pytest.raises(ValueError, match='4 bands; band 7'):
    tfds_export.from_tfds(name, image_key='sentinel1:7,1,0', **kw)

  c = mrhash_config.get_config('runlocal,bits=16')
  c.data.update(name=name, image_key='sentinel2:2,1,0',
                extra_sources=('tfds:sentinel1',), **kw)
  c.train.samples_per_round = 0   # all 30 training images per round
  results = train.run(c, str(tmp_path / 'run'))
  assert (tmp_path / 'run' / 'features_s1.npz').exists()
  assert 0.0 < results['metrics']['map@R'] <= 1.0
