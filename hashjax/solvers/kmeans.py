"""K-means (Lloyd) with k-means++ seeding and several restarts, in JAX.

MrHash (docs/methods/mrhash.md §1.3 item 3) runs scikit-learn's KMeans(16, n_init=20)
on the autoencoder latents; this is the same algorithm: each restart seeds
with k-means++, runs Lloyd iterations to convergence (or `iterations`), and
the restart with the lowest inertia wins. Seeded, so reruns agree.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np


def _sq_distances(x, centres):
  return (jnp.sum(x * x, 1)[:, None] - 2.0 * x @ centres.T +
          jnp.sum(centres * centres, 1)[None, :])


def _plus_plus(key, x, k):
  """k-means++ seeding: each next centre ~ D(x)^2."""
  n = x.shape[0]
  key, sub = jax.random.split(key)
  first = jax.random.randint(sub, (), 0, n)
  centres = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
  d2 = jnp.sum((x - x[first]) ** 2, 1)

  def body(i, carry):
    centres, d2, key = carry
    key, sub = jax.random.split(key)
    probs = d2 / jnp.maximum(d2.sum(), 1e-30)
    idx = jax.random.choice(sub, n, p=probs)
    centres = centres.at[i].set(x[idx])
    d2 = jnp.minimum(d2, jnp.sum((x - x[idx]) ** 2, 1))
    return centres, d2, key

  centres, _, _ = jax.lax.fori_loop(1, k, body, (centres, d2, key))
  return centres


def _lloyd(x, centres, iterations):
  k = centres.shape[0]

  def body(_, centres):
    assign = jnp.argmin(_sq_distances(x, centres), 1)
    onehot = jax.nn.one_hot(assign, k, dtype=x.dtype)
    counts = onehot.sum(0)
    sums = onehot.T @ x
    # An emptied cluster keeps its centre.
    return jnp.where(counts[:, None] > 0,
                     sums / jnp.maximum(counts, 1.0)[:, None], centres)

  centres = jax.lax.fori_loop(0, iterations, body, centres)
  inertia = jnp.sum(jnp.min(_sq_distances(x, centres), 1).clip(0.0))
  return centres, inertia


@functools.partial(jax.jit, static_argnames=('k', 'restarts', 'iterations'))
def _kmeans(x, key, k, restarts, iterations):
  def one(key):
    return _lloyd(x, _plus_plus(key, x, k), iterations)
  centres, inertia = jax.lax.map(one, jax.random.split(key, restarts))
  best = jnp.argmin(inertia)
  return centres[best], inertia[best], inertia


def kmeans(x, k, *, restarts=20, iterations=100, seed=0):
  """Clusters x [n, d] into k groups.

  Returns:
    (centres [k, d] float32, inertia of the best restart, all inertias).
  """
  x = jnp.asarray(x, jnp.float32)
  if not 1 <= k <= x.shape[0]:
    raise ValueError(f'k-means needs 1 <= k <= #points ({x.shape[0]}), got '
                     f'k={k}.')
  centres, inertia, all_inertia = _kmeans(x, jax.random.key(seed), k,
                                          restarts, iterations)
  return np.asarray(centres), float(inertia), np.asarray(all_inertia)
