"""DCC update of the database codes (docs/methods/ahcl.md §1.7)."""
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax.solvers import dcc
from hashjax.losses import similarity


def _problem(seed, n=60, m=40, c=12, classes=4, multi_hot=False):
  rng = np.random.default_rng(seed)
  labels = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
  if multi_hot:
    labels = np.maximum(labels, (rng.random((n, classes)) < 0.2))
  rows = rng.choice(n, m, replace=False)
  u = np.zeros((n, c), np.float32)
  u[rows] = np.tanh(rng.normal(size=(m, c)) * 2)
  s0 = (labels[rows] @ labels.T > 0).astype(np.float64)
  r = s0.sum() / (1 - s0).sum()
  sim = s0 * (1 + r) - r
  return labels, rows, u, sim, r


def _objective(v, u_rows, sim, rows, lam):
  c = u_rows.shape[1]
  return (np.sum((u_rows @ v.T - c * sim) ** 2)
          + lam * np.sum((v[rows] - u_rows) ** 2))


def _reference_sweep(v, u_rows, sim, rows, lam):
  """The spec's formula with slicing, float64 numpy (ADSH-PyTorch)."""
  n, c = v.shape
  u_bar = np.zeros((n, c))
  u_bar[rows] = u_rows
  q = -2 * c * sim.T @ u_rows - 2 * lam * u_bar
  v = v.astype(np.float64).copy()
  for k in range(c):
    rest = [j for j in range(c) if j != k]
    arg = q[:, k] + 2 * v[:, rest] @ (u_rows[:, rest].T @ u_rows[:, k])
    v[:, k] = np.where(arg > 0, -1.0, 1.0)     # sign(0) -> +1 as in hashjax
  return v


@pytest.mark.parametrize('multi_hot', [False, True])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_dcc_never_increases_objective(seed, multi_hot):
  labels, rows, u, sim, r = _problem(seed, multi_hot=multi_hot)
  lam = 20.0
  rng = np.random.default_rng(seed + 10)
  v = np.where(rng.random(u.shape) < 0.5, -1.0, 1.0)
  before = _objective(v, u[rows].astype(np.float64), sim, rows, lam)
  for _ in range(3):
    v_new = np.asarray(dcc.dcc_update(
        jnp.asarray(v, jnp.float32), jnp.asarray(u), jnp.asarray(labels),
        jnp.asarray(labels), r, lam=lam), np.float64)
    after = _objective(v_new, u[rows].astype(np.float64), sim, rows, lam)
    assert after <= before * (1 + 1e-6)
    before, v = after, v_new
  assert set(np.unique(v)) <= {-1.0, 1.0}


@pytest.mark.parametrize('multi_hot', [False, True])
def test_dcc_matches_float64_reference_from_zero(multi_hot):
  labels, rows, u, sim, r = _problem(5, multi_hot=multi_hot)
  v0 = np.zeros(u.shape)
  want = _reference_sweep(v0, u[rows].astype(np.float64), sim, rows, 200.0)
  got = np.asarray(dcc.dcc_update(
      jnp.zeros(u.shape), jnp.asarray(u), jnp.asarray(labels),
      jnp.asarray(labels), r, lam=200.0))
  np.testing.assert_array_equal(got, want)


def test_each_column_is_a_minimiser():
  """After a sweep, no single flip in the last column lowers J."""
  labels, rows, u, sim, r = _problem(3)
  lam = 50.0
  v = np.asarray(dcc.dcc_update(
      jnp.zeros(u.shape), jnp.asarray(u), jnp.asarray(labels),
      jnp.asarray(labels), r, lam=lam), np.float64)
  u_rows = u[rows].astype(np.float64)
  base = _objective(v, u_rows, sim, rows, lam)
  k = v.shape[1] - 1
  for j in range(0, v.shape[0], 7):
    flipped = v.copy()
    flipped[j, k] *= -1
    assert _objective(flipped, u_rows, sim, rows, lam) >= base - 1e-6


def test_similarity_transpose_times_matches_dense():
  labels, rows, u, sim, r = _problem(4, multi_hot=True)
  got = dcc.similarity_transpose_times(
      jnp.asarray(labels), jnp.asarray(labels), jnp.asarray(u), r)
  s_full = np.asarray(similarity.soft_similarity(
      similarity.label_similarity(labels, labels), r))
  np.testing.assert_allclose(got, s_full.T @ u, rtol=1e-4, atol=1e-4)
