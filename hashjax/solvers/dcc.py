"""Discrete cyclic coordinate descent (DCC) for a database code bank V.

ADSH's discrete update (Jiang & Li, AAAI 2018), used by the asymmetric
methods (AHCL, DGSSH); docs/methods/ahcl.md §1.7.

With the network fixed, V in {-1, +1}^{n x c} minimises
  J(V) = ||U V^T - c S||_F^2 + lam ||V_Omega - U||_F^2,
where U [m, c] holds the relaxed codes of the sampled rows Omega and S [m, n]
their similarity to every database item. We store U database-sized ([n, c],
zero outside Omega), which makes ADSH's U-bar the stored U itself, and
  Q = -2 c S^T U - 2 lam U,   G = U^T U  (c x c).
One sweep over the bits k = 0..c-1, each column given the others:
  V[:, k] <- -sign(Q[:, k] + 2 (V G[:, k] - V[:, k] G[k, k]))
which is ADSH's V_{:,-k} (U_{:,-k}^T U_{:,k}) written without slicing,
so every row of V updates independently (the bank shards along n).
sign(0) -> +1 here (the reference's np.sign gives 0); 0 never survives.

Precision: float32. The reference uses float64 numpy. Each column's argument
is a sum of m terms of size <= c; float32 rounds it with relative error
~1e-7, so a bit can differ from float64 only where the argument is within
~1e-7 * c * m of zero, i.e. where both signs give objectives within that
margin (flipping v_jk changes J by 2 |argument|). tests/dcc_test.py checks
that the sweep never increases J (in float64) and matches a float64 numpy
sweep.
"""
import jax
import jax.numpy as jnp

from hashjax.losses import similarity


def similarity_transpose_times(labels_db, labels_rows, u, r):
  """S^T U for soft S = (1 + r) S0 - r, S0 = (Y_rows Y_db^T > 0).

  Args:
    labels_db: [n, C]; labels_rows: [m, C]; u: [m, c] (zero rows ignored);
    r: soft-similarity ratio.
  Returns:
    [n, c], in bounded memory (similarity.similarity_t_matmul).
  """
  s0t_u = similarity.similarity_t_matmul(labels_rows, labels_db, u)
  return (1.0 + r) * s0t_u - r * u.sum(0, keepdims=True)


def dcc_update(bank, u, labels_db, labels_rows, r, *, lam):
  """One DCC sweep over all bits; returns the new bank [n, c] of +-1.

  Args:
    bank: [n, c] current V (zeros allowed: the first sweep starts from 0).
    u: [m, c] relaxed codes of the sampled rows (rows may be zero = unused).
    labels_db: [n, C] database labels; labels_rows: [m, C] labels of u's rows.
    r: soft-similarity ratio (1.0 for {-1, +1} similarity).
    lam: quantization weight.
    When u is database-sized (m = n, zero outside the sample), the lam term
    uses it as U-bar directly.
  """
  c = u.shape[1]
  q = -2.0 * c * similarity_transpose_times(labels_db, labels_rows, u, r)
  if u.shape[0] == bank.shape[0]:
    q = q - 2.0 * lam * u
  else:
    raise ValueError('dcc_update expects U stored database-sized [n, c].')
  g = u.T @ u

  def column(k, v):
    arg = q[:, k] + 2.0 * (v @ g[:, k] - v[:, k] * g[k, k])
    return v.at[:, k].set(jnp.where(arg > 0, -1.0, 1.0))

  return jax.lax.fori_loop(0, c, column, bank.astype(jnp.float32))


def objective(bank, u, sim, rows, *, lam):
  """J(V) = ||U V^T - c S||^2 + lam ||V[rows] - U||^2 (module docstring).

  Args:
    bank: [n, c]; u: [m, c] codes of the sampled rows; sim: [m, n];
    rows: [m] database rows of u. For tests and logging.
  """
  c = u.shape[1]
  return (jnp.sum((u @ bank.T - c * sim) ** 2)
          + lam * jnp.sum((bank[rows] - u) ** 2))
