"""AHCL: Asymmetric Hash Code Learning (Song et al., TGRS 2022).

Spec: ../shared/specs/ahcl.md. Query codes are sign(u) of the network;
database codes V are learned directly (DATABASE_CODES = 'bank'):
  * loss (§1.5): ADSH pair + quantization loss against V, normalised by
    n * b, plus gamma * softmax CE of a classifier on u;
  * soft similarity S in {1, -r}, r = #similar / #dissimilar in the sampled
    block (§1.4; `soft_similarity=False` gives the ADSH paper's {1, -1});
  * rounds = ADSH outer iterations (§1.6): a sampled subset Omega visited
    `epochs_per_round` times in one order; U collects the network outputs of
    the round (from the forward pass before each step, last pass wins);
  * after each round, one DCC sweep updates V (hashjax/bank.py, §1.7).
V starts at zero (§4 item 5), so the pair term is inactive in round 0.
The training set is the database (§1.2): V has one row per training image.
"""
import jax
import jax.numpy as jnp

from hashjax import bank as bank_lib
from hashjax.losses import pairwise
from hashjax.losses import similarity

DATABASE_CODES = 'bank'


def init_state(config, meta):
  n, bits = meta['num_train'], config.bits
  if config.loss.v_init == 'zeros':
    v = jnp.zeros((n, bits), jnp.float32)
  elif config.loss.v_init == 'random':
    key = jax.random.key(config.seed + 1)
    v = jnp.where(jax.random.bernoulli(key, 0.5, (n, bits)), 1.0, -1.0)
  else:
    raise ValueError(f'loss.v_init must be zeros|random, got '
                     f'{config.loss.v_init!r}.')
  return {
      'V': v,                                         # database codes.
      'U': jnp.zeros((n, bits), jnp.float32),         # this round's outputs.
      'labels': jnp.asarray(meta['train_labels'], jnp.float32),
      'r': jnp.ones((), jnp.float32),                 # soft-S ratio.
  }


def _r(state, in_round, soft_similarity):
  if not soft_similarity:
    return jnp.ones((), jnp.float32)
  return similarity.similar_ratio(state['labels'], state['labels'], in_round)


def loss_fn(outputs, batch, state, *, lam, gamma, soft_similarity=True,
            **unused):
  del unused
  u, mask = outputs['u'], batch['mask']
  rows = jnp.clip(batch['index'], 0)
  s0 = similarity.label_similarity(batch['label'], state['labels'])
  sim = similarity.soft_similarity(s0, state['r'])
  lp, parts = pairwise.asymmetric_loss(
      u, state['V'], sim, state['V'][rows], mask, lam=lam,
      num_database=state['V'].shape[0])
  ce = pairwise.softmax_cross_entropy(outputs['logits'], batch['label'], mask)
  loss = lp + gamma * ce
  return loss, dict(parts, ce=ce, r=state['r'])


def update_state(state, outputs, batch, **unused):
  """U[row] <- u for the batch's real samples (§1.6: before the step)."""
  del unused
  n = state['U'].shape[0]
  rows = jnp.where(batch['mask'] > 0, batch['index'], n)  # n: dropped.
  return dict(state, U=state['U'].at[rows].set(outputs['u'], mode='drop'))


def start_round(state, in_round, *, soft_similarity=True, **unused):
  """Clears U and recomputes r for the round's sample (§1.4, §1.6)."""
  del unused
  return dict(state, U=jnp.zeros_like(state['U']),
              r=_r(state, in_round, soft_similarity))


def end_round(state, *, lam, **unused):
  """One DCC sweep over the bits (§1.7)."""
  del unused
  v = bank_lib.dcc_update(state['V'], state['U'], state['labels'],
                          state['labels'], state['r'], lam=lam)
  return dict(state, V=v)


def database_codes(state):
  return state['V']
