"""Loss terms against hand-computed values (docs/methods/ahcl.md §1.4, §1.5)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax.losses import pairwise
from hashjax.losses import similarity


def test_label_similarity_multi_hot():
  a = jnp.array([[1., 0, 0], [1, 1, 0]])
  b = jnp.array([[0., 1, 0], [1, 0, 0], [0, 0, 1]])
  np.testing.assert_array_equal(similarity.label_similarity(a, b),
                                [[0, 1, 0], [1, 1, 0]])


def test_soft_similarity_and_ratio():
  labels = jnp.eye(3)[jnp.array([0, 0, 1, 2])]     # 4 items, classes 0,0,1,2
  # Similar pairs in the 4x4 block: class 0: 2x2=4, class 1: 1, class 2: 1.
  r = similarity.similar_ratio(labels, labels)
  assert float(r) == pytest.approx(6 / 10)
  # Rows 0 and 2 only: row 0 matches 2 items, row 2 matches 1 -> 3 of 8.
  r2 = similarity.similar_ratio(labels, labels, jnp.array([1., 0, 1, 0]))
  assert float(r2) == pytest.approx(3 / 5)
  s = similarity.soft_similarity(jnp.array([1., 0.]), 0.25)
  np.testing.assert_allclose(s, [1.0, -0.25])


def test_similar_ratio_multi_hot_dense_path():
  a = jnp.array([[1., 1, 0], [0, 0, 1]])
  b = jnp.array([[1., 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]])
  # row 0 matches items 0,1,3 (3); row 1 matches items 2,3 (2): 5 of 8.
  assert float(similarity.similar_ratio(a, b)) == pytest.approx(5 / 3)


def test_asymmetric_loss_hand_computed():
  u = jnp.array([[0.5, -0.5]])                    # b = 1, c = 2
  bank = jnp.array([[1., -1.], [-1., 1.], [1., 1.]])   # n = 3
  sim = jnp.array([[1., -0.5, -0.5]])
  # u.v = [1, -1, 0]; targets c*S = [2, -1, -1]; squared errors 1, 0, 1 -> 2
  # quant: ||v_0 - u||^2 = 0.25 + 0.25 = 0.5, times lam = 4 -> 2
  # total (2 + 2) / (n b = 3) = 4/3
  loss, parts = pairwise.asymmetric_loss(
      u, bank, sim, bank[:1], jnp.ones(1), lam=4.0, num_database=3)
  assert float(loss) == pytest.approx(4 / 3)
  assert float(parts['pair']) == pytest.approx(2 / 3)
  assert float(parts['quant']) == pytest.approx(2 / 3)


def test_asymmetric_loss_mask_excludes_padding():
  key = jax.random.key(0)
  u = jnp.tanh(jax.random.normal(key, (3, 4)))
  bank = jnp.sign(jax.random.normal(jax.random.key(1), (5, 4)))
  sim = jnp.ones((3, 5))
  full, _ = pairwise.asymmetric_loss(u[:2], bank, sim[:2], bank[:2],
                                     jnp.ones(2), lam=2.0, num_database=5)
  padded, _ = pairwise.asymmetric_loss(u, bank, sim, bank[:3],
                                       jnp.array([1., 1, 0]), lam=2.0,
                                       num_database=5)
  assert float(full) == pytest.approx(float(padded), rel=1e-6)


def test_asymmetric_loss_gradient_matches_closed_form():
  """dL/du_i = 2/(n b) [sum_j (u_i.v_j - c S_ij) v_j + lam (u_i - v_i)]."""
  rng = np.random.default_rng(0)
  u = jnp.asarray(rng.uniform(-1, 1, (2, 3)))
  bank = jnp.asarray(np.sign(rng.normal(size=(4, 3))))
  sim = jnp.asarray(rng.choice([1.0, -0.3], (2, 4)))
  rows = bank[:2]
  grad = jax.grad(lambda u: pairwise.asymmetric_loss(
      u, bank, sim, rows, jnp.ones(2), lam=5.0, num_database=4)[0])(u)
  want = 2 / 8 * (((u @ bank.T) - 3 * sim) @ bank + 5.0 * (u - rows))
  np.testing.assert_allclose(grad, want, rtol=1e-5)


def test_cross_entropy_matches_log_softmax():
  logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
  labels = jnp.array([[1., 0, 0], [0, 0, 1]])
  ce = pairwise.softmax_cross_entropy(logits, labels, jnp.ones(2))
  want = -(jax.nn.log_softmax(logits)[0, 0] + jax.nn.log_softmax(
      logits)[1, 2]) / 2
  assert float(ce) == pytest.approx(float(want), rel=1e-6)
  # Padding does not count.
  ce1 = pairwise.softmax_cross_entropy(logits, labels, jnp.array([1., 0]))
  assert float(ce1) == pytest.approx(
      float(-jax.nn.log_softmax(logits)[0, 0]), rel=1e-6)


def test_chunked_multi_hot_sums_match_dense(monkeypatch):
  """Bounded-memory chunks (7 rows, not dividing m) give the dense result."""
  monkeypatch.setattr(similarity, '_BLOCK_ENTRIES', 7 * 30)
  rng = np.random.default_rng(1)
  rows = (rng.random((23, 5)) < 0.3).astype(np.float32)
  rows[:, 0] = 1 - rows[:, 1:].max(1)           # no empty label rows
  db = (rng.random((30, 5)) < 0.3).astype(np.float32)
  db[:, 0] = 1 - db[:, 1:].max(1)
  assert not bool(similarity.is_one_hot(jnp.asarray(rows), jnp.asarray(db)))
  s0 = (rows @ db.T > 0).astype(np.float64)
  w = rng.random(23).astype(np.float32)
  u = rng.normal(size=(23, 4)).astype(np.float32)
  assert float(similarity.similar_pairs(rows, db, w)) == pytest.approx(
      float(w @ s0.sum(1)), rel=1e-5)
  np.testing.assert_allclose(similarity.similarity_t_matmul(rows, db, u),
                             s0.T @ u, rtol=1e-5, atol=1e-5)
  r = similarity.similar_ratio(rows, db)
  assert float(r) == pytest.approx(s0.sum() / (1 - s0).sum(), rel=1e-5)


def test_label_smoothing_matches_timm_definition():
  """timm LabelSmoothingCrossEntropy: (1-e) nll + e mean_k(-log p_k)."""
  logits = jnp.array([[2.0, 0.0, -1.0]])
  labels = jnp.array([[0., 1, 0]])
  logp = jax.nn.log_softmax(logits)[0]
  want = 0.9 * -logp[1] + 0.1 * -logp.mean()
  got = pairwise.softmax_cross_entropy(logits, labels, jnp.ones(1),
                                       smoothing=0.1)
  assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_multi_label_classification_term():
  """Sigmoid CE for multi-label data (per class binary CE, summed over
  classes, mean over real samples), softmax CE for single-label data."""
  logits = jnp.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0], [9.0, 9.0, 9.0]])
  labels = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
  mask = jnp.array([1.0, 1.0, 0.0])
  x, y = np.asarray(logits[:2], np.float64), np.asarray(labels[:2])
  p = 1 / (1 + np.exp(-x))
  want = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(1).mean()
  got = pairwise.classification_loss(logits, labels, mask, multi_label=True)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  smooth = pairwise.sigmoid_cross_entropy(logits, labels, mask, 0.2)
  ys = 0.8 * y + 0.1
  np.testing.assert_allclose(
      smooth, -(ys * np.log(p) + (1 - ys) * np.log(1 - p)).sum(1).mean(),
      rtol=1e-5)
  np.testing.assert_allclose(
      pairwise.classification_loss(logits, labels, mask, multi_label=False),
      pairwise.softmax_cross_entropy(logits, labels, mask))
