"""The learned database-code bank shared by the asymmetric methods (AHCL,
DGSSH; ADSH's scheme, docs/methods/ahcl.md §1.4-1.7).

V is a free +-1 database-code bank (one row per training image), U collects
the round's network outputs, r is the soft-similarity ratio of the round,
and one DCC sweep (hashjax/solvers/dcc.py) ends every round. These are the
NetworkMethod hooks of hashjax/methods/base.py.
"""
import jax
import jax.numpy as jnp

from hashjax.losses import similarity
from hashjax.solvers import dcc

DATABASE_CODES = 'bank'


def init_state(config, ctx):
  """V (zeros, or random +-1 with loss.v_init='random'), U, labels, r."""
  n, bits = ctx.num_train, config.bits
  v_init = config.loss.v_init
  if v_init == 'zeros':
    v = jnp.zeros((n, bits), jnp.float32)
  elif v_init == 'random':
    key = jax.random.key(config.seed + 1)
    v = jnp.where(jax.random.bernoulli(key, 0.5, (n, bits)), 1.0, -1.0)
  else:
    raise ValueError(f'loss.v_init must be zeros|random, got {v_init!r}.')
  return {
      'V': v,                                         # database codes.
      'U': jnp.zeros((n, bits), jnp.float32),         # this round's outputs.
      'labels': jnp.asarray(ctx.train_labels, jnp.float32),
      'r': jnp.ones((), jnp.float32),                 # soft-S ratio.
  }


def update_state(state, outputs, batch, hp):
  """U[row] <- u for the batch's real samples (before this step's update)."""
  del hp
  n = state['U'].shape[0]
  rows = jnp.where(batch['mask'] > 0, batch['index'], n)  # n: dropped.
  return dict(state, U=state['U'].at[rows].set(outputs['u'], mode='drop'))


def start_round(state, in_round, params, hp):
  """Clears U; r over the round's (sample x database) block."""
  del params
  r = (similarity.similar_ratio(state['labels'], state['labels'], in_round)
       if hp.soft_similarity else jnp.ones((), jnp.float32))
  return dict(state, U=jnp.zeros_like(state['U']), r=r)


def end_round(state, params, hp):
  """One DCC sweep over the bits with quantization weight hp.lam."""
  del params
  v = dcc.dcc_update(state['V'], state['U'], state['labels'], state['labels'],
                     state['r'], lam=hp.lam)
  return dict(state, V=v)


def database_codes(state):
  return state['V']
