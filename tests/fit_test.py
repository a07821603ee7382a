"""LSH and PCA-ITQ on frozen features (hashjax/fit.py, methods/{lsh,itq})."""
import ml_collections
import numpy as np
import pytest

from configs import itq as itq_config
from configs import lsh as lsh_config
from hashjax import fit
from hashjax.methods import itq
from hashjax.methods import lsh


def _hp(**kw):
  return ml_collections.FrozenConfigDict(kw)


def _clusters(n=200, d=10, seed=0):
  rng = np.random.default_rng(seed)
  centres = np.zeros((2, d))
  centres[1, 3] = 10.0                       # separated along axis 3
  labels = rng.integers(0, 2, n)
  return centres[labels] + rng.standard_normal((n, d)), labels


def test_pca_finds_the_max_variance_direction():
  x, _ = _clusters()
  mean, w = itq.pca(x, 3)
  np.testing.assert_allclose(w.T @ w, np.eye(3), atol=1e-10)
  assert abs(w[3, 0]) > 0.99               # first component = axis 3
  np.testing.assert_allclose(mean, x.mean(0))
  with pytest.raises(ValueError, match='bits <= min'):
    itq.pca(x, 11)


def test_itq_lowers_quantization_loss_with_an_orthogonal_rotation():
  x = np.random.default_rng(1).standard_normal((500, 32)) @ (
      np.random.default_rng(2).standard_normal((32, 32)))
  mean, w = itq.pca(x, 16)
  v = (x - mean) @ w
  r, losses = itq.itq_rotation(v, 30, seed=0)
  np.testing.assert_allclose(r.T @ r, np.eye(16), atol=1e-10)
  assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:]))
  assert losses[-1] < itq.quantization_loss(v, np.eye(16))
  params, diag = itq.fit(x, bits=16, seed=0, hp=_hp(itq_iterations=30))
  np.testing.assert_allclose(itq.encode(params, x), v @ r, atol=1e-8)
  assert diag['quantization_loss'] == losses


def test_itq_codes_separate_clusters():
  x, labels = _clusters()
  params, _ = itq.fit(x, bits=2, seed=0, hp=_hp(itq_iterations=20))
  codes = np.sign(itq.encode(params, x))
  # Codes of the two clusters never coincide.
  assert not {tuple(c) for c in codes[labels == 0]} & {
      tuple(c) for c in codes[labels == 1]}


def test_lsh_is_seeded_and_centred():
  x, _ = _clusters()
  a, _ = lsh.fit(x, bits=8, seed=0, hp=_hp())
  b, _ = lsh.fit(x, bits=8, seed=0, hp=_hp())
  c, _ = lsh.fit(x, bits=8, seed=1, hp=_hp())
  np.testing.assert_array_equal(a['projection'], b['projection'])
  assert not np.array_equal(a['projection'], c['projection'])
  np.testing.assert_allclose(lsh.encode(a, x).mean(0), 0.0, atol=1e-9)
  assert lsh.encode(a, x[:5]).shape == (5, 8)


@pytest.mark.slow
@pytest.mark.parametrize('get_config', [itq_config.get_config,
                                        lsh_config.get_config])
def test_end_to_end_and_feature_cache(get_config, small_rsscn7, tmp_path):
  c = get_config('runlocal,bits=16')
  c.data.update(name='folder', root=str(small_rsscn7))
  c.eval.topk = (10,)
  first = fit.run(c, str(tmp_path))
  assert not first['features_cached']
  assert first['metrics']['R'] == 16             # 7 classes x 16 database
  assert 0.0 < first['metrics']['map@R'] <= 1.0
  assert first['metrics']['map@R'] == first['metrics']['map@16']
  second = fit.run(c, str(tmp_path))
  assert second['features_cached']
  assert second['metrics'] == first['metrics']


def test_second_sensor_view():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from hashjax.data import views  # pylint: disable=g-import-not-at-top
  x = jnp.zeros((1, 4, 4, 3)).at[0, 0, 0].set(jnp.array([100.0, 0.0, 0.0]))
  y = views.get('view:second_sensor')(x)
  # Input R=100 at one pixel -> mixed bands (20, 60, 15), spread over the
  # 2x2 block by average pooling: /4, then upsampled back.
  np.testing.assert_allclose(y[0, :2, :2], np.tile([5.0, 15.0, 3.75],
                                                   (2, 2, 1)), rtol=1e-6)
  np.testing.assert_allclose(y[0, 2:], 0.0)
  assert views.get('/some/folder') is None
  with pytest.raises(ValueError, match='view:second_sensor'):
    views.get('view:sar')


@pytest.mark.slow
def test_view_features_are_cached_separately(small_rsscn7, tmp_path):
  from hashjax import features, parallel  # pylint: disable=g-import-not-at-top
  from hashjax.data import sources, views  # pylint: disable=g-import-not-at-top
  c = itq_config.get_config('runlocal')
  c.data.update(name='folder', root=str(small_rsscn7))
  image_set = sources.load(c.data)
  mesh = parallel.make_mesh()
  f0, cached0 = features.cached_features(c, image_set, mesh, str(tmp_path))
  f1, cached1 = features.cached_features(
      c, image_set, mesh, str(tmp_path), source=1,
      view=views.get('view:second_sensor'), view_name='view:second_sensor')
  assert not cached0 and not cached1 and f0.shape == f1.shape
  assert not np.allclose(f0, f1)
  again, cached = features.cached_features(
      c, image_set, mesh, str(tmp_path), source=1,
      view=views.get('view:second_sensor'), view_name='view:second_sensor')
  assert cached
  np.testing.assert_array_equal(again, f1)
  with pytest.raises(ValueError, match='another view'):
    features.cached_features(c, image_set, mesh, str(tmp_path), source=1)


def test_itq_smoke_config_fits_the_tiny_encoder():
  """The tiny smoke encoder has 16 features: PCA keeps at most 16 bits."""
  assert itq_config.get_config('runlocal').bits == 16
  assert itq_config.get_config().bits == 64
