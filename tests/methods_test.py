"""The method contract, per method (one parameterised case each)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ahcl as ahcl_config
from configs import dgssh as dgssh_config
from hashjax import methods
from hashjax.methods import base


def _ctx(labels):
  return base.RunContext(num_classes=labels.shape[1], num_train=len(labels),
                         train_labels=labels)


def _hp(config, **overrides):
  config = config.copy_and_resolve_references()
  config.loss.update(overrides)
  return methods.hyperparams(config)


def _outputs_and_batch(n=12, bits=8, classes=3, b=4, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
  batch = {'label': jnp.asarray(labels[:b]),
           'index': jnp.array([0, 1, 2, -1], jnp.int32),
           'mask': jnp.array([1., 1, 1, 0])}
  outputs = {'u': jnp.tanh(jnp.asarray(rng.normal(size=(b, bits)),
                                       jnp.float32)),
             'logits': jnp.asarray(rng.normal(size=(b, classes)), jnp.float32),
             'features': jnp.asarray(rng.normal(size=(b, 5)), jnp.float32)}
  return labels, outputs, batch


@pytest.mark.parametrize('name,get_config,variant', [
    ('ahcl', ahcl_config.get_config, ''),
    ('dgssh', dgssh_config.get_config, ''),
    ('dgssh', dgssh_config.get_config, ',released'),
    ('dgssh', dgssh_config.get_config, ',released,triplet')])
def test_method_contract(name, get_config, variant):
  config = get_config('bits=8' + variant)
  method = methods.get(name)
  labels, outputs, batch = _outputs_and_batch()
  hp = _hp(config)
  state = method.init_state(config, _ctx(labels))
  state = method.start_round(state, jnp.ones(12), None, hp)
  state = method.end_round(state, None, hp)            # V from U = 0: still +-1
  loss, metrics = method.loss_fn(outputs, batch, state, hp)
  assert np.isfinite(float(loss)) and all(
      np.isfinite(float(v)) for v in metrics.values())
  grad = jax.grad(lambda u: method.loss_fn(dict(outputs, u=u), batch, state,
                                           hp)[0])(outputs['u'])
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
  state = method.update_state(state, outputs, batch, hp)
  state = method.end_round(state, None, hp)
  if method.DATABASE_CODES == 'bank':
    codes = np.asarray(method.database_codes(state))
    assert codes.shape == (12, 8) and set(np.unique(codes)) <= {-1.0, 1.0}


def test_ahcl_update_state_writes_rows_and_drops_padding():
  config = ahcl_config.get_config('bits=8')
  method = methods.get('ahcl')
  labels, outputs, batch = _outputs_and_batch()
  state = method.init_state(config, _ctx(labels))
  state = method.update_state(state, outputs, batch, _hp(config))
  u = np.asarray(state['U'])
  np.testing.assert_array_equal(u[:3], np.asarray(outputs['u'])[:3])
  assert not u[3:].any()                 # the padded row (-1) is dropped.


def test_ahcl_start_round_resets_u_and_sets_r():
  config = ahcl_config.get_config('bits=8')
  method = methods.get('ahcl')
  labels = np.eye(2, dtype=np.float32)[[0, 0, 1, 1]]
  state = method.init_state(config, _ctx(labels))
  state = dict(state, U=jnp.ones((4, 8)))
  state = method.start_round(state, jnp.array([1., 1, 0, 0]), None,
                             _hp(config, soft_similarity=True))
  assert not np.asarray(state['U']).any()
  # rows 0,1 (class 0) vs 4 items: 4 similar pairs of 8 -> r = 1.
  assert float(state['r']) == pytest.approx(1.0)
  state = method.start_round(state, jnp.ones(4), None,
                             _hp(config, soft_similarity=False))
  assert float(state['r']) == 1.0


def test_ahcl_zero_bank_gives_no_pair_gradient():
  """V = 0 (round 0): the pair term has no gradient (docs/methods/ahcl.md §1.7)."""
  config = ahcl_config.get_config('bits=8')
  method = methods.get('ahcl')
  labels, outputs, batch = _outputs_and_batch()
  state = method.init_state(config, _ctx(labels))
  hp = _hp(config, lam=0.0, gamma=0.0)
  grad = jax.grad(lambda u: method.loss_fn(dict(outputs, u=u), batch, state,
                                           hp)[0])(outputs['u'])
  np.testing.assert_array_equal(grad, 0.0)


def test_unknown_method():
  with pytest.raises(ValueError, match='Unknown method'):
    methods.get('nope')


def test_dgssh_released_loss_by_hand():
  """alpha CE_ls + (L_sim + beta sum_i ||v_i - u_i||^2) / (N B), §1.4.2."""
  config = dgssh_config.get_config('bits=8,released')
  hp = _hp(config)
  method = methods.get('dgssh')
  labels, outputs, batch = _outputs_and_batch()
  state = method.init_state(config, _ctx(labels))
  v = np.where(np.random.default_rng(1).normal(size=(12, 8)) > 0, 1.0, -1.0)
  state = dict(state, V=jnp.asarray(v, jnp.float32))
  loss, terms = method.loss_fn(outputs, batch, state, hp)
  u = np.asarray(outputs['u'], np.float64)[:3]
  y = labels[:3]
  logits = np.asarray(outputs['logits'], np.float64)[:3]
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ce = np.mean(-0.9 * (y * logp).sum(-1) - 0.1 * logp.mean(-1))
  s = (y @ y.T > 0).astype(float)
  theta = 0.5 * u @ u.T
  ell = np.log1p(np.exp(theta)) - s * theta
  off = ~np.eye(3, dtype=bool)
  pos, neg = off & (s > 0), s == 0
  sim = ell[pos].mean() + ell[neg].mean()
  anchor = ((v[:3] - u) ** 2).sum()
  want = 20.0 * ce + (sim + 200.0 * anchor) / (12 * 3)
  np.testing.assert_allclose(float(terms['ce']), ce, rtol=1e-5)
  np.testing.assert_allclose(float(terms['sim']), sim, rtol=1e-5)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  assert 'triplet' not in terms     # the shipped strategy: no triplet.
  with pytest.raises(ValueError, match='loss.reduction'):
    method.loss_fn(outputs, batch, state, _hp(config, reduction='mean'))


def test_hyperparameters_are_locked():
  """A mistyped hyper-parameter fails loudly instead of using a default."""
  hp = _hp(ahcl_config.get_config('bits=8'))
  assert hp.lam == 200.0
  with pytest.raises(AttributeError):
    _ = hp.lamda
  with pytest.raises((AttributeError, TypeError, ValueError)):
    hp.lam = 1.0


def test_mrhash_loss_by_hand():
  """KL(P||Q_h) + KL(P||Q_f) + lambda0 * sum_s MSE_s, per sample
  (batchmean) and with torch's 'mean' (/ K), padding excluded (§1.5)."""
  from configs import mrhash as mrhash_config  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  n, b, k = 6, 4, 3
  dims = (5, 2)

  def simplex(rows):
    x = rng.uniform(0.1, 1.0, (rows, k))
    return x / x.sum(1, keepdims=True)

  p_all, q_h, q_f = simplex(n), simplex(b), simplex(b)
  feats = [rng.normal(size=(n, d)) for d in dims]
  recons = [rng.normal(size=(b, d)) for d in dims]
  index = np.array([4, 0, 2, -1])
  mask = np.array([1., 1, 1, 0])
  state = {'P': jnp.asarray(p_all, jnp.float32),
           'features': tuple(jnp.asarray(f, jnp.float32) for f in feats)}
  outputs = {'q_h': jnp.asarray(q_h, jnp.float32),
             'q_f': jnp.asarray(q_f, jnp.float32),
             'recons': [jnp.asarray(r, jnp.float32) for r in recons]}
  batch = {'index': jnp.asarray(index, jnp.int32),
           'mask': jnp.asarray(mask, jnp.float32)}
  method = methods.get('mrhash')
  real = index[:3]
  p = p_all[real]

  def kl(q):
    return (p * (np.log(p) - np.log(q[:3]))).sum(1)   # per sample

  recon = sum(((r[:3] - f[real]) ** 2).mean(1).mean()
              for r, f in zip(recons, feats))
  for reduction, div in (('batchmean', 1.0), ('mean', k)):
    hp = _hp(mrhash_config.get_config(), kl_reduction=reduction, lambda0=5.0)
    loss, terms = method.loss_fn(outputs, batch, state, hp)
    want_h, want_f = kl(q_h).mean() / div, kl(q_f).mean() / div
    np.testing.assert_allclose(float(terms['kl_hash']), want_h, rtol=1e-5)
    np.testing.assert_allclose(float(terms['kl_feat']), want_f, rtol=1e-5)
    np.testing.assert_allclose(float(terms['recon']), recon, rtol=1e-5)
    np.testing.assert_allclose(float(loss), want_h + want_f + 5.0 * recon,
                               rtol=1e-5)
