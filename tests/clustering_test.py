"""DEC soft assignment, target distribution, KL (by hand) and k-means."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax.solvers import kmeans
from hashjax.losses import clustering


def test_soft_assignment_by_hand():
  z = jnp.array([[0.0, 0.0], [1.0, 1.0]])
  centres = jnp.array([[0.0, 0.0], [2.0, 0.0]])
  q = clustering.soft_assignment(z, centres)
  # alpha=1: kernel 1 / (1 + d^2). Point 0: d^2 = 0, 4 -> 1, 1/5.
  # Point 1: d^2 = 2, 2 -> equal.
  np.testing.assert_allclose(q[0], [1 / 1.2, 0.2 / 1.2], rtol=1e-6)
  np.testing.assert_allclose(q[1], [0.5, 0.5], rtol=1e-6)
  # alpha=3: (1 + d^2/3)^-2. Point 0: 1, (7/3)^-2 = 9/49.
  q3 = clustering.soft_assignment(z, centres, alpha=3.0)
  np.testing.assert_allclose(q3[0, 1], (9 / 49) / (1 + 9 / 49), rtol=1e-6)


def test_target_distribution_by_hand():
  q = jnp.array([[0.8, 0.2], [0.4, 0.6]])
  # f = (1.2, 0.8); row 0: 0.64/1.2 = 0.5333, 0.04/0.8 = 0.05.
  p = clustering.target_distribution(q)
  np.testing.assert_allclose(p[0], [0.5333333 / 0.5833333, 0.05 / 0.5833333],
                             rtol=1e-5)
  r1 = np.array([0.16 / 1.2, 0.36 / 0.8])
  np.testing.assert_allclose(p[1], r1 / r1.sum(), rtol=1e-5)
  np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
  assert p[0, 0] > q[0, 0]                      # sharpened


def test_kl_reductions_by_hand():
  p = jnp.array([[0.5, 0.5], [1.0, 0.0]])
  q = jnp.array([[0.25, 0.75], [0.5, 0.5]])
  row0 = 0.5 * np.log(2.0) + 0.5 * np.log(0.5 / 0.75)
  row1 = np.log(2.0)                           # the 0 * log 0 term is 0
  np.testing.assert_allclose(clustering.kl_divergence(p, q, 'batchmean'),
                             (row0 + row1) / 2, rtol=1e-6)
  np.testing.assert_allclose(clustering.kl_divergence(p, q, 'mean'),
                             (row0 + row1) / 4, rtol=1e-6)
  np.testing.assert_allclose(
      clustering.kl_divergence(p, q, 'batchmean', mask=jnp.array([1.0, 0.0])),
      row0, rtol=1e-6)
  with pytest.raises(ValueError, match='reduction'):
    clustering.kl_divergence(p, q, 'sum')


def test_kl_matches_torch_default():
  torch = pytest.importorskip('torch', reason='torch not installed')
  rng = np.random.default_rng(0)
  p = rng.dirichlet(np.ones(16), size=8).astype(np.float32)
  q = rng.dirichlet(np.ones(16), size=8).astype(np.float32)
  # reduction='mean' is F.kl_div's default, spelled out (it warns).
  want = torch.nn.functional.kl_div(torch.log(torch.from_numpy(q)),
                                    torch.from_numpy(p),
                                    reduction='mean').item()
  np.testing.assert_allclose(clustering.kl_divergence(p, q), want, rtol=1e-5)


def test_kl_gradient_pulls_q_towards_p():
  z = jnp.array([[0.5, 0.0], [1.5, 0.0]])
  centres = jnp.array([[0.0, 0.0], [2.0, 0.0]])
  p = jax.lax.stop_gradient(clustering.target_distribution(
      clustering.soft_assignment(z, centres)))
  loss = lambda z: clustering.kl_divergence(
      p, clustering.soft_assignment(z, centres))
  g = jax.grad(loss)(z)
  assert g[0, 0] > 0 and g[1, 0] < 0            # each point moves to its centre


def test_kmeans_separable_toy_data():
  rng = np.random.default_rng(0)
  true = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float32)
  labels = rng.integers(0, 4, 400)
  x = true[labels] + 0.3 * rng.standard_normal((400, 2))
  centres, inertia, all_inertia = kmeans.kmeans(x, 4, restarts=5, seed=1)
  # Every true centre is recovered (to the noise level), in some order.
  d = np.linalg.norm(centres[:, None] - true[None], axis=-1)
  assert sorted(d.argmin(1).tolist()) == [0, 1, 2, 3]
  assert d.min(1).max() < 0.1
  assert inertia == pytest.approx(all_inertia.min())
  assert inertia < 400 * 0.3 ** 2 * 2 * 1.3
  again = kmeans.kmeans(x, 4, restarts=5, seed=1)[0]
  np.testing.assert_array_equal(centres, again)
  with pytest.raises(ValueError, match='k <= #points'):
    kmeans.kmeans(x[:3], 4)
