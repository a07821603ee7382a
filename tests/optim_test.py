"""Learning-rate schedules, including DGSSH's released epoch-granular one."""
import ml_collections
import numpy as np
import pytest

from hashjax import optim
from tests import torch_util

# docs/methods/dgssh.md §1.3 (2-3 significant digits): lr per epoch of the released run (UCMD: N = 1680 database
# images, 53 steps per epoch, base 2.5e-6, 5 warm-up epochs from 2.5e-9).
SPEC_TABLE = {0: 2.5e-9, 1: 1.80e-8, 2: 5.2e-7, 3: 1.02e-6, 4: 1.52e-6,
              5: 2.02e-6, 6: 2.44e-6, 10: 2.31e-6, 20: 1.72e-6, 30: 9.5e-7,
              40: 3.1e-7, 49: 3.4e-8}


def _released(steps_per_epoch=53, n=1680):
  c = ml_collections.ConfigDict(dict(
      name='adamw', lr=2.5e-6, weight_decay=1e-8, schedule='timm_epoch_cosine',
      warmup_steps=0, warmup_epochs=5, warmup_init_lr=2.5e-9, min_lr=2.5e-8,
      grad_clip=0.0))
  return optim.learning_rate(c, 50 * steps_per_epoch, steps_per_epoch, n)


def test_timm_epoch_cosine_matches_spec_table():
  lr = _released()
  for epoch, want in SPEC_TABLE.items():
    for step in (epoch * 53, epoch * 53 + 52):   # constant within an epoch
      np.testing.assert_allclose(float(lr(np.int32(step))), want, rtol=0.015,
                                 err_msg=f'epoch {epoch}')


@pytest.mark.slow
def test_timm_epoch_cosine_matches_timm():
  torch, timm = torch_util.import_timm()
  from timm.scheduler import cosine_lr  # pylint: disable=g-import-not-at-top
  opt = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=2.5e-6)
  sched = cosine_lr.CosineLRScheduler(
      opt, t_initial=50 * 1680, lr_min=2.5e-8, warmup_lr_init=2.5e-9,
      warmup_t=5 * 1680, t_in_epochs=False)
  lr = _released()
  for epoch in range(50):   # the released main.py loop (§1.3)
    want = opt.param_groups[0]['lr']
    np.testing.assert_allclose(float(lr(np.int32(epoch * 53 + 7))), want,
                               rtol=1e-5, err_msg=f'epoch {epoch}')
    sched.step_update(epoch * 1680 + 52)


def test_unknown_schedule():
  c = ml_collections.ConfigDict(dict(schedule='linear', lr=1.0,
                                     warmup_steps=0))
  with pytest.raises(ValueError, match='timm_epoch_cosine'):
    optim.learning_rate(c, 10, 5)


@pytest.mark.parametrize('name', ['sgd', 'adamw'])
def test_encoder_lr_mult_is_a_second_learning_rate(name):
  """encoder_lr_mult = an optimiser at lr * mult on the encoder only."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  base = dict(name=name, lr=1e-2, momentum=0.9, nesterov=False,
              weight_decay=1e-3, schedule='constant', warmup_steps=0,
              grad_clip=0.0)
  c = ml_collections.ConfigDict(dict(base, encoder_lr_mult=0.01))
  tx, _ = optim.make(c, 10, 10)
  slow, _ = optim.make(ml_collections.ConfigDict(dict(base, lr=1e-4)), 10, 10)
  fast, _ = optim.make(ml_collections.ConfigDict(base), 10, 10)
  rng = np.random.default_rng(0)
  params = {'encoder': {'w': jnp.asarray(rng.normal(size=(3, 2)))},
            'head': {'w': jnp.asarray(rng.normal(size=(2,)))}}
  state = tx.init(params)
  s_slow, s_fast = slow.init(params['encoder']), fast.init(params['head'])
  p_slow, p_fast = params['encoder'], params['head']
  for _ in range(3):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape)),
                         params)
    updates, state = tx.update(grads, state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    u, s_slow = slow.update(grads['encoder'], s_slow, p_slow)
    p_slow = jax.tree.map(lambda p, u: p + u, p_slow, u)
    u, s_fast = fast.update(grads['head'], s_fast, p_fast)
    p_fast = jax.tree.map(lambda p, u: p + u, p_fast, u)
  np.testing.assert_allclose(params['encoder']['w'], p_slow['w'], rtol=1e-6)
  np.testing.assert_allclose(params['head']['w'], p_fast['w'], rtol=1e-6)
  assert not np.allclose(p_slow['w'], jnp.asarray(
      np.random.default_rng(0).normal(size=(3, 2))))   # it did move


def test_encoder_lr_mult_needs_an_encoder():
  c = ml_collections.ConfigDict(dict(
      name='adamw', lr=1e-3, weight_decay=0.0, schedule='constant',
      warmup_steps=0, grad_clip=0.0, encoder_lr_mult=0.1))
  tx, _ = optim.make(c, 10, 10)
  params = {'head': np.zeros(2, np.float32)}
  with pytest.raises(ValueError, match="no 'encoder'"):
    tx.update(params, tx.init(params), params)
