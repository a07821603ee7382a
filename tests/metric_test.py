"""Triplet mining, L_match and the class-balanced DPSH term (DGSSH §1.4)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax.losses import metric
from hashjax.losses import pairwise

jax.config.update('jax_enable_x64', False)


def _onehot(y, c=3):
  return jnp.eye(c)[jnp.asarray(y)]


def test_pairwise_distances_and_safe_gradient():
  e = jnp.array([[0., 0.], [3., 4.], [0., 0.]])
  d = metric.pairwise_distances(e)
  np.testing.assert_allclose(d, [[0, 5, 0], [5, 0, 5], [0, 5, 0]], atol=1e-6)
  g = jax.grad(lambda e: metric.pairwise_distances(e).sum())(e)
  assert np.all(np.isfinite(g))


def test_hardest_triplets_hand_computed_incl_no_positive():
  # 1-D points: class 0 at 0 and 1; class 1 at 3 and 7; class 2 alone at 10.
  e = jnp.array([[0.], [1.], [3.], [7.], [10.]])
  labels = _onehot([0, 0, 1, 1, 2])
  loss, aux = metric.batch_hard_triplet_loss(labels, e, margin=1.0)
  np.testing.assert_array_equal(aux['pos'][:4], [1, 0, 3, 2])
  # Anchor 3 (at 7): negatives at 0, 1, 10 -> closest is 10 (index 4).
  np.testing.assert_array_equal(aux['neg'], [2, 2, 1, 4, 3])
  np.testing.assert_array_equal(aux['has_pos'], [1, 1, 1, 1, 0])
  # Hinges: a0: 1-3+1=-1->0; a1: 1-2+1=0; a2: 4-2+1=3; a3: 4-3+1=2.
  # Anchor 4 has no positive and is skipped: mean over 4 = 5/4.
  assert float(loss) == pytest.approx(1.25)
  # Released behaviour: anchor 4 counts with d_ap = 0: hinge 0-3+1 = -2->0,
  # so (0+0+3+2+0)/5 = 1.
  loss_r, _ = metric.batch_hard_triplet_loss(labels, e, margin=1.0,
                                             no_positive='released')
  assert float(loss_r) == pytest.approx(1.0)


def test_mask_excludes_padding_rows():
  e = jnp.array([[0.], [1.], [3.], [7.], [100.]])
  labels = _onehot([0, 0, 1, 1, 0])
  loss_pad, _ = metric.batch_hard_triplet_loss(
      labels, e, margin=1.0, mask=jnp.array([1., 1, 1, 1, 0]))
  loss, _ = metric.batch_hard_triplet_loss(labels[:4], e[:4], margin=1.0)
  assert float(loss_pad) == pytest.approx(float(loss))


def test_distribution_match_hand_computed():
  e = jnp.array([[0.], [1.], [3.], [7.], [10.]])
  labels = _onehot([0, 0, 1, 1, 2])
  _, aux = metric.batch_hard_triplet_loss(labels, e, margin=1.0)
  # Valid anchors 0..3 select pos {1,0,3,2} and neg {2,2,1,4}.
  # Class 0: selected {1,0,1} -> values {1,0,1}, mean 2/3; batch mean 0.5
  #   -> |0.5 - 2/3| = 1/6.
  # Class 1: selected {3,2,2,2} -> {7,3,3,3}, mean 4; batch mean 5 -> 1.
  # Class 2: selected {4} -> 10; batch mean 10 -> 0.
  m = metric.distribution_match(labels, e, aux)
  assert float(m) == pytest.approx(1 / 6 + 1.0, rel=1e-6)


def test_distribution_match_gradient_finite_differences():
  rng = np.random.default_rng(0)
  e = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
  labels = _onehot([0, 0, 1, 1, 2, 2, 0, 1])
  _, aux = metric.batch_hard_triplet_loss(labels, e, margin=0.5)
  f = lambda e: metric.distribution_match(labels, e, aux)  # fixed mining
  g = np.asarray(jax.grad(f)(e))
  assert np.abs(g).max() > 0
  eps = 1e-3
  for i, j in [(0, 0), (3, 1), (5, 2), (7, 0)]:
    d = np.zeros(e.shape, np.float32)
    d[i, j] = eps
    fd = (float(f(e + d)) - float(f(e - d))) / (2 * eps)
    assert fd == pytest.approx(g[i, j], abs=2e-3)


def test_corrective_loss_released_match_has_no_gradient():
  rng = np.random.default_rng(0)
  e = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
  labels = _onehot([0, 0, 1, 1, 2, 2, 0, 1])
  f = lambda lam, grad: jax.grad(lambda e: metric.corrective_triplet_loss(
      labels, e, margin=0.5, lam=lam, match_grad=grad)[0])(e)
  np.testing.assert_allclose(f(10.0, False), f(0.0, True), rtol=1e-6)
  assert not np.allclose(f(10.0, True), f(0.0, True))


def test_class_balanced_pairwise_nll():
  u = jnp.array([[1., 1.], [1., -1.], [-1., -1.]])
  labels = _onehot([0, 0, 1])
  # theta = u.u/2: (0,1)=0 sim; (0,2)=-1 dis; (1,2)=0 dis.
  # l = softplus(theta) - s theta: (0,1) ln2; (0,2) softplus(-1); (1,2) ln2.
  # mean over similar off-diagonal + mean over dissimilar (ordered pairs).
  want = np.log(2) + (np.log1p(np.exp(-1.0)) + np.log(2)) / 2
  got = pairwise.class_balanced_pairwise_nll(u, labels)
  assert float(got) == pytest.approx(want, rel=1e-6)
  # The released variant has the same value but a diagonal gradient.
  rel = pairwise.class_balanced_pairwise_nll(u, labels,
                                             diagonal_gradient=True)
  assert float(rel) == pytest.approx(want, rel=1e-6)
  g0 = jax.grad(lambda u: pairwise.class_balanced_pairwise_nll(u, labels))(u)
  g1 = jax.grad(lambda u: pairwise.class_balanced_pairwise_nll(
      u, labels, diagonal_gradient=True))(u)
  assert not np.allclose(g0, g1)
