"""The deep and shallow baselines (docs/methods/baselines.md): each loss
against a straightforward NumPy formulation on small arrays, the method
hooks, and (slow) a `runlocal` training per method."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax import methods
from hashjax.losses import baselines
from hashjax.methods import base

RNG = np.random.default_rng(0)


def _labels(n, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  return np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]


def _sim(a, b):
  return (a @ b.T > 0).astype(np.float64)


def _softplus(x):
  return np.log1p(np.exp(x))


# --------------------------------------------------------------- the losses


def test_dpsh_loss_by_hand():
  n, b, c, eta = 7, 4, 6, 10.0
  u = RNG.normal(size=(b, c))
  bank = RNG.normal(size=(n, c))
  ya, yb = _labels(b, seed=1), _labels(n, seed=2)
  mask = np.array([1., 1, 1, 0])
  loss, parts = baselines.dpsh_loss(
      jnp.asarray(u, jnp.float32), jnp.asarray(bank, jnp.float32),
      jnp.asarray(_sim(ya, yb), jnp.float32), jnp.asarray(mask, jnp.float32),
      eta=eta)
  pair = quant = 0.0
  for i in range(3):                    # the real rows
    for j in range(n):
      s = float(ya[i] @ yb[j] > 0)
      theta = 0.5 * u[i] @ bank[j]
      pair += -(s * theta - np.log(1 + np.exp(theta)))
    quant += np.sum((np.sign(u[i]) - u[i]) ** 2)
  want = (pair + eta * quant) / (n * 3)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  np.testing.assert_allclose(float(parts['pair']), pair / (n * 3), rtol=1e-5)


def test_hashnet_loss_by_hand():
  b, c, alpha = 5, 8, 10.0 / 8
  h = np.tanh(RNG.normal(size=(b, c)))
  y = _labels(b, seed=3)
  mask = np.array([1., 1, 1, 1, 0])
  loss, parts = baselines.hashnet_loss(
      jnp.asarray(h, jnp.float32), jnp.asarray(_sim(y, y), jnp.float32),
      jnp.asarray(mask, jnp.float32), alpha=alpha)
  pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
  sim = [float(y[i] @ y[j] > 0) for i, j in pairs]
  s1, s0 = sum(sim), len(pairs) - sum(sim)
  total = 0.0
  for (i, j), s in zip(pairs, sim):
    theta = alpha * h[i] @ h[j]
    w = len(pairs) / s1 if s else len(pairs) / s0
    total += w * (np.log(1 + np.exp(theta)) - s * theta)
  np.testing.assert_allclose(float(loss), total / len(pairs), rtol=1e-5)
  # Balanced: the loss is the mean over similar + the mean over dissimilar.
  np.testing.assert_allclose(float(loss), float(parts['similar']) +
                             float(parts['dissimilar']), rtol=1e-5)


def test_dsh_loss_by_hand():
  b, c = 5, 4
  u = 2.0 * RNG.normal(size=(b, c))
  y = _labels(b, seed=4)
  mask = np.array([1., 1, 0, 1, 1])
  m, alpha = 2.0 * c, 0.01
  loss, _ = baselines.dsh_loss(
      jnp.asarray(u, jnp.float32), jnp.asarray(_sim(y, y), jnp.float32),
      jnp.asarray(mask, jnp.float32), margin=m, alpha=alpha)
  real = [0, 1, 3, 4]
  terms = []
  for i, j in itertools.combinations(real, 2):
    yy = 0.0 if y[i] @ y[j] > 0 else 1.0          # DSH: y = 0 similar
    d = np.sum((u[i] - u[j]) ** 2)
    reg = (np.abs(np.abs(u[i]) - 1).sum() + np.abs(np.abs(u[j]) - 1).sum())
    terms.append(0.5 * (1 - yy) * d + 0.5 * yy * max(m - d, 0.0) +
                 alpha * reg)
  np.testing.assert_allclose(float(loss), np.mean(terms), rtol=1e-5)


def test_csq_centres():
  h = baselines.hadamard(8)
  np.testing.assert_array_equal(h @ h.T, 8 * np.eye(8))
  centres, fallback = baselines.csq_centres(16, 7, seed=0)
  assert centres.shape == (7, 16) and fallback.shape == (16,)
  assert set(np.unique(centres)) == {-1.0, 1.0}
  d = (16 - centres @ centres.T) / 2                      # Hamming
  assert d[~np.eye(7, dtype=bool)].min() >= 8             # K/2 apart
  # More classes than 2K rows: Hadamard rows first, then Bernoulli.
  many, _ = baselines.csq_centres(4, 11, seed=0)
  np.testing.assert_array_equal(many[:8], np.r_[baselines.hadamard(4),
                                                -baselines.hadamard(4)])
  # Not a power of two: Bernoulli, deterministic in the seed.
  a, _ = baselines.csq_centres(12, 5, seed=3)
  b, _ = baselines.csq_centres(12, 5, seed=3)
  c, _ = baselines.csq_centres(12, 5, seed=4)
  np.testing.assert_array_equal(a, b)
  assert set(np.unique(a)) == {-1.0, 1.0} and not np.array_equal(a, c)
  with pytest.raises(ValueError, match='power of two'):
    baselines.hadamard(12)


def test_csq_targets_and_loss_by_hand():
  centres = np.array([[1, 1, -1, -1], [1, -1, 1, -1], [-1, 1, 1, -1]],
                     np.float32)
  fallback = np.array([1, -1, 1, 1], np.float32)
  labels = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 1]], np.float32)
  t = np.asarray(baselines.csq_targets(jnp.asarray(labels),
                                       jnp.asarray(centres),
                                       jnp.asarray(fallback)))
  np.testing.assert_array_equal(t[0], centres[0])
  # labels 0+1: sum (2, 0, 0, -2) -> (1, fb, fb, -1) = (1, -1, 1, -1)
  np.testing.assert_array_equal(t[1], [1, -1, 1, -1])
  np.testing.assert_array_equal(t[2], [1, 1, 1, -1])          # (1,1,1,-3)
  np.testing.assert_array_equal(t[3], centres[2])
  u = np.tanh(RNG.normal(size=(4, 4)))
  mask = np.array([1., 1, 1, 0])
  loss, parts = baselines.csq_loss(jnp.asarray(u, jnp.float32),
                                   jnp.asarray(t), jnp.asarray(mask),
                                   lam=1e-4)
  p, tt = (u[:3] + 1) / 2, (t[:3] + 1) / 2
  bce = -(tt * np.log(p) + (1 - tt) * np.log(1 - p)).mean()
  quant = ((np.abs(u[:3]) - 1) ** 2).mean()
  np.testing.assert_allclose(float(parts['center']), bce, rtol=1e-5)
  np.testing.assert_allclose(float(loss), bce + 1e-4 * quant, rtol=1e-5)


def test_nt_xent_and_cibhash_loss_by_hand():
  b, c, tau = 4, 6, 0.3
  zi = np.sign(RNG.normal(size=(b, c)))
  zj = np.sign(RNG.normal(size=(b, c)))
  pi, pj = RNG.uniform(0.05, 0.95, (b, c)), RNG.uniform(0.05, 0.95, (b, c))
  mask = np.array([1., 1, 1, 0])
  loss, parts = baselines.cibhash_loss(
      *(jnp.asarray(x, jnp.float32) for x in (zi, zj, pi, pj, mask)),
      temperature=tau, weight=0.001)
  # NT-Xent over the 6 real rows of [z_i; z_j].
  z = np.r_[zi[:3], zj[:3]]
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  per = []
  for a in range(6):
    pos = (a + 3) % 6
    logits = [z[a] @ z[k] / tau for k in range(6) if k != a]
    per.append(-(z[a] @ z[pos] / tau) + np.log(np.sum(np.exp(logits))))
  contrast = np.mean(per)

  def kl(p, q):
    return np.mean((p * np.log(p / q) + (1 - p) *
                    np.log((1 - p) / (1 - q))).sum(1))

  kl_sym = (kl(pi[:3], pj[:3]) + kl(pj[:3], pi[:3])) / 2
  np.testing.assert_allclose(float(parts['contrast']), contrast, rtol=1e-5)
  np.testing.assert_allclose(float(parts['kl']), kl_sym, rtol=1e-5)
  np.testing.assert_allclose(float(loss), contrast + 0.001 * kl_sym,
                             rtol=1e-5)


# ----------------------------------------------------------- spectral hashing


def _spectral_hashing_reference(x, nbits):
  """The authors' trainSH.m + compressSH.m, transcribed literally."""
  npca = min(nbits, x.shape[1])
  cov = np.cov(x, rowvar=False)
  val, vec = np.linalg.eigh(cov)
  pc = vec[:, np.argsort(val)[::-1][:npca]]
  xx = x @ pc                                   # no mean removal (as .m)
  eps = np.finfo(float).eps
  mn, mx = xx.min(0) - eps, xx.max(0) + eps
  r = mx - mn
  max_mode = np.ceil((nbits + 1) * r / r.max()).astype(int)
  n_modes = max_mode.sum() - len(max_mode) + 1
  modes = np.ones((n_modes, npca))
  m = 0
  for i in range(npca):
    modes[m + 1:m + max_mode[i], i] = np.arange(2, max_mode[i] + 1)
    m += max_mode[i] - 1
  modes -= 1
  omegas = modes * (np.pi / r)[None, :]
  eigval = -(omegas ** 2).sum(1)
  order = np.argsort(-eigval, kind='stable')
  modes = modes[order[1:nbits + 1]]
  u = xx - mn
  out = np.zeros((len(x), nbits))
  for i in range(nbits):
    out[:, i] = np.prod(np.sin(u * (modes[i] * np.pi / r)[None, :] +
                               np.pi / 2), axis=1)
  return out > 0


@pytest.mark.parametrize('bits', [3, 8, 12])
def test_spectral_hashing_matches_the_reference(bits):
  rng = np.random.default_rng(bits)
  # Anisotropic data: several modes along the widest directions.
  x = rng.normal(size=(60, 5)) * np.array([5.0, 3.0, 2.0, 1.0, 0.5]) + 3.0
  method = methods.get('sh')
  params, _ = method.fit(x, bits=bits, seed=0, hp=None)
  ours = method.encode(params, x) >= 0
  want = _spectral_hashing_reference(x, bits)
  # A PCA direction's sign is arbitrary (eigh): compare up to flipping a
  # direction, which mirrors its eigenfunctions: mode k changes sign iff k
  # is odd. Match each bit up to that flip.
  for j in range(bits):
    assert (np.array_equal(ours[:, j], want[:, j]) or
            np.array_equal(ours[:, j], ~want[:, j])), j
  # Smallest frequencies k pi / R first; several modes per direction.
  if bits > 5:
    assert params['modes'].max() > 1
  freq = params['modes'] / params['extent'][params['dims']]
  assert np.all(np.diff(freq) >= -1e-12)


# ------------------------------------------------------------ method hooks


def _ctx(labels):
  return base.RunContext(num_classes=labels.shape[1], num_train=len(labels),
                         train_labels=labels)


@pytest.mark.parametrize('name', ['dpsh', 'hashnet', 'dsh', 'csq', 'adsh'])
def test_method_contract(name):
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f'configs.{name}').get_config('bits=8')
  method = methods.get(name)
  labels = _labels(12)
  hp = methods.hyperparams(config)
  batch = {'label': jnp.asarray(labels[:4]),
           'index': jnp.array([0, 1, 2, -1], jnp.int32),
           'mask': jnp.array([1., 1, 1, 0])}
  outputs = {'u': jnp.tanh(jnp.asarray(RNG.normal(size=(4, 8)), jnp.float32))}
  state = method.init_state(config, _ctx(labels))
  state = method.start_round(state, jnp.ones(12), None, hp)
  if name == 'adsh':   # V from a DCC sweep on U: a +-1 bank, pair term on.
    state = method.update_state(state, dict(outputs, u=outputs['u'] + 0.1),
                                dict(batch, index=jnp.array([3, 4, 5, 6])),
                                hp)
    state = method.end_round(state, None, hp)
  loss, metrics = method.loss_fn(outputs, batch, state, hp)
  assert np.isfinite(float(loss)) and all(
      np.isfinite(float(v)) for v in metrics.values())
  grad = jax.grad(lambda u: method.loss_fn(dict(outputs, u=u), batch, state,
                                           hp)[0])(outputs['u'])
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
  np.testing.assert_array_equal(grad[3], 0.0)      # padding has no gradient
  state = method.update_state(state, outputs, batch, hp)
  state = method.end_round(state, None, hp)


def test_dpsh_bank_holds_the_batch_rows():
  from configs import dpsh  # pylint: disable=g-import-not-at-top
  config = dpsh.get_config('bits=8')
  method = methods.get('dpsh')
  labels = _labels(12)
  hp = methods.hyperparams(config)
  u = jnp.asarray(RNG.normal(size=(4, 8)), jnp.float32)
  batch = {'label': jnp.asarray(labels[:4]),
           'index': jnp.array([5, 1, 2, -1], jnp.int32),
           'mask': jnp.array([1., 1, 1, 0])}
  state = method.init_state(config, _ctx(labels))
  loss, _ = method.loss_fn({'u': u}, batch, state, hp)
  bank = np.zeros((12, 8), np.float32)
  bank[[5, 1, 2]] = np.asarray(u[:3])
  want, _ = baselines.dpsh_loss(u, jnp.asarray(bank),
                                (jnp.asarray(labels[:4]) @ labels.T > 0) * 1.,
                                batch['mask'], eta=hp.eta)
  np.testing.assert_allclose(float(loss), float(want), rtol=1e-6)
  state = method.update_state(state, {'u': u}, batch, hp)
  np.testing.assert_array_equal(np.asarray(state['U']), bank)


def test_hashnet_beta_schedule():
  from configs import hashnet  # pylint: disable=g-import-not-at-top
  config = hashnet.get_config('bits=16')
  assert config.loss.alpha == pytest.approx(10 / 16)
  method = methods.get('hashnet')
  hp = methods.hyperparams(config)
  state = method.init_state(config, _ctx(_labels(4)))
  assert float(state['beta']) == 1.0
  assert method.model_inputs({}, state)['scale'] is state['beta']
  for _ in range(200):
    state = method.update_state(state, {}, {}, hp)
  assert int(state['step']) == 200
  assert float(state['beta']) == pytest.approx((1 + 0.005 * 200) ** 0.5)


def test_random_view_is_an_image_batch():
  from hashjax.data import jax_augment  # pylint: disable=g-import-not-at-top
  images = jnp.asarray(RNG.uniform(0, 255, (3, 16, 16, 3)), jnp.float32)
  a = jax_augment.random_view(jax.random.key(0), images)
  b = jax_augment.random_view(jax.random.key(1), images)
  assert a.shape == images.shape and float(a.min()) >= 0 and float(
      a.max()) <= 255
  assert not np.allclose(a, b)
  # The full-frame crop without flip/jitter is the identity.
  from hashjax.data.jax_augment import _crop_resize  # pylint: disable=g-import-not-at-top
  np.testing.assert_allclose(_crop_resize(images[0], (0.0, 0.0, 1.0, 1.0)),
                             images[0], atol=1e-3)


# ---------------------------------------------------------- runlocal smoke


def _runlocal(name, root):
  import importlib  # pylint: disable=g-import-not-at-top
  c = importlib.import_module(f'configs.{name}').get_config(
      'runlocal,bits=16')
  c.data.name = 'folder'
  c.data.root = str(root)
  c.eval.topk = (10,)
  return c


@pytest.mark.slow
@pytest.mark.parametrize('name', ['dpsh', 'hashnet', 'dsh', 'csq', 'adsh',
                                  'cibhash'])
def test_runlocal_trains(name, small_rsscn7, tmp_path):
  from hashjax import train  # pylint: disable=g-import-not-at-top
  trace = {}
  results = train.run(_runlocal(name, small_rsscn7), str(tmp_path), trace)
  assert results['steps'] == 8
  print(f"{name} runlocal map@all {results['metrics']['map@all']:.4f}")
  assert np.all(np.isfinite(trace['losses']))
  assert 0.0 < results['metrics']['map@all'] <= 1.0


@pytest.mark.slow
def test_sh_runlocal_fits(small_rsscn7, tmp_path):
  from hashjax import fit  # pylint: disable=g-import-not-at-top
  results = fit.run(_runlocal('sh', small_rsscn7), str(tmp_path))
  print(f"sh runlocal map@all {results['metrics']['map@all']:.4f}")
  assert 0.0 < results['metrics']['map@all'] <= 1.0
