"""`released` DGSSH losses against the released code's own loss functions.

Issue 11: the released code (QinLab-WFU/DGSSH@95dfcf3) was run against
hashjax on the same arrays; two edge cases differed:
  * `similarityloss` (loss/asy_loss.py:6-28) divides by B(B-1), not by the
    clamped count of similar + dissimilar pairs: a batch with no similar
    pair (B = 6, all labels distinct) or no dissimilar pair (B = 8, one
    class) differs by 1 / (B(B-1) + 1);
  * `corrective_triplet_loss` (loss/triplet_loss.py:209-305) on a batch of
    a single class charges the margin per anchor plus gamma * L_match.
The two functions are transcribed below (torch on the CPU, float64, `.cuda()`
dropped, otherwise line for line) and hashjax's `released` options are
compared with them on exactly these batches, an ordinary mixed batch and
the same batches with padding rows (mask = 0; the released code has none,
so B is the number of unpadded rows): values and gradients.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax.losses import metric
from hashjax.losses import pairwise
from tests import torch_util

jax.config.update('jax_enable_x64', False)

MARGIN = 10.0  # configs/dgssh.py:released,triplet (margin = gamma = 10).
GAMMA = 10.0
NUM_CLASS = 30  # the released code's one-hot width (docs/methods/dgssh.md §1.0).


# --- The released code, transcribed (QinLab-WFU/DGSSH@95dfcf3). -----------

def _ref_similarityloss(torch, u, target, num_class):
  """loss/asy_loss.py:6-28."""
  theta = torch.einsum('ij,jk->ik', u, u.t()) / 2
  one_hot = torch.nn.functional.one_hot(target, num_class)
  one_hot = one_hot.to(u.dtype)
  sim = (torch.einsum('ij,jk->ik', one_hot, one_hot.t()) > 0).to(u.dtype)
  pair_loss = (torch.log(1 + torch.exp(theta)) - sim * theta)
  mask_positive = sim > 0
  mask_negative = sim <= 0
  s1 = mask_positive.to(u.dtype).sum() - u.shape[0]
  s0 = mask_negative.to(u.dtype).sum()
  if s0 == 0:
    s0 = 1
  if s1 == 0:
    s1 = 1
  s = s0 + s1
  pair_loss[mask_positive] = pair_loss[mask_positive] * (s / s1)
  pair_loss[mask_negative] = pair_loss[mask_negative] * (s / s0)
  diag_matrix = torch.diag(torch.diag(pair_loss.detach()))
  pair_loss = pair_loss - diag_matrix
  count = (u.shape[0] * (u.shape[0] - 1) / 2)
  return pair_loss.sum() / 2 / count


def _ref_pairwise_distances(torch, embeddings):
  """loss/triplet_loss.py:8-45 (squared=False)."""
  dot_product = torch.matmul(embeddings, embeddings.t())
  square_norm = torch.diag(dot_product)
  distances = (torch.unsqueeze(square_norm, 1) - 2.0 * dot_product
               + torch.unsqueeze(square_norm, 0))
  distances = torch.max(distances, torch.zeros(1, dtype=embeddings.dtype))
  mask = (torch.eq(distances, 0.0)).to(embeddings.dtype)
  distances = distances + mask * 1e-16
  distances = torch.sqrt(distances)
  distances = distances * (torch.sub(1.0, mask))
  return distances


def _ref_corrective_triplet_loss(torch, labels, embeddings, gamma=1,
                                 margin=10):
  """loss/triplet_loss.py:209-305 (squared=False); labels int [B]."""
  dtype = embeddings.dtype
  pairwise_dist = _ref_pairwise_distances(torch, embeddings)
  indices_not_equal = 1.0 - torch.eye(labels.shape[0], dtype=dtype)
  labels_equal = torch.eq(torch.unsqueeze(labels, 0),
                          torch.unsqueeze(labels, 1))
  mask_anchor_positive = indices_not_equal * labels_equal.to(dtype)
  anchor_positive_dist = torch.multiply(mask_anchor_positive, pairwise_dist)
  hardest_positive_dist, _ = torch.max(anchor_positive_dist, dim=1,
                                       keepdim=True)
  hard_positive_indices = torch.argmax(anchor_positive_dist, dim=1)
  mask_anchor_negative = torch.logical_not(labels_equal).to(dtype)
  max_anchor_negative_dist, _ = torch.max(pairwise_dist, dim=1, keepdim=True)
  anchor_negative_dist = (pairwise_dist
                          + max_anchor_negative_dist
                          * (1.0 - mask_anchor_negative))
  hardest_negative_dist, _ = torch.min(anchor_negative_dist, dim=1,
                                       keepdim=True)
  hard_negative_indices = torch.argmin(anchor_negative_dist, dim=1)
  triplet_loss = torch.maximum(
      hardest_positive_dist - hardest_negative_dist + margin,
      torch.zeros(1, dtype=dtype))
  l_triplet = torch.mean(triplet_loss)
  embedding_dict = {}
  for i in range(len(labels)):
    embedding_dict.setdefault(int(labels[i]), []).append(embeddings[i])
  for label in embedding_dict:
    embedding_dict[label] = torch.mean(torch.stack(embedding_dict[label]), 0)
  l_match_dict = {}
  for i in hard_positive_indices.numpy():
    l_match_dict.setdefault(int(labels[i]), []).append(embeddings[i])
  for i in hard_negative_indices.numpy():
    l_match_dict.setdefault(int(labels[i]), []).append(embeddings[i])
  for label in l_match_dict:
    l_match_dict[label] = torch.mean(torch.stack(l_match_dict[label]), 0)
  l_constraint = []
  for ind in l_match_dict:
    l_constraint.append(np.linalg.norm(
        (embedding_dict[ind] - l_match_dict[ind]).detach().numpy(), ord=2))
  l_constraint = np.sum(l_constraint)
  return l_triplet + gamma * l_constraint, l_triplet


# --- Batches. ---------------------------------------------------------------

BATCHES = {
    'distinct_b6': [0, 1, 2, 3, 4, 5],          # no similar pair
    'one_class_b8': [3] * 8,                    # no dissimilar pair
    'mixed_b8': [0, 0, 1, 1, 2, 2, 0, 4],       # anchor 7 has no positive
}
PADDING = {'none': (0, 0), 'tail': (0, 3), 'head_tail': (2, 1)}


def _arrays(name, seed=0):
  y = np.asarray(BATCHES[name])
  rng = np.random.default_rng(seed)
  u = np.tanh(rng.normal(size=(len(y), 16)))
  h = rng.normal(size=(len(y), 12))
  e = h / np.linalg.norm(h, axis=1, keepdims=True)
  return y, u, e


def _pad(y, x, head, tail, seed=1):
  """Padding rows with junk values and labels; returns (y, x, mask)."""
  rng = np.random.default_rng(seed)
  junk = lambda k: rng.normal(size=(k,) + x.shape[1:]) * 5.0
  yp = np.concatenate([rng.integers(0, 6, head), y, rng.integers(0, 6, tail)])
  xp = np.concatenate([junk(head), x, junk(tail)])
  mask = np.concatenate([np.zeros(head), np.ones(len(y)), np.zeros(tail)])
  return yp, xp, mask


def _onehot(y):
  return jnp.eye(NUM_CLASS, dtype=jnp.float32)[jnp.asarray(y)]


def _ref_pair(torch, y, u):
  ut = torch.tensor(u, dtype=torch.float64, requires_grad=True)
  val = _ref_similarityloss(torch, ut, torch.tensor(y), NUM_CLASS)
  val.backward()
  return val.item(), ut.grad.numpy()


def _ref_triplet(torch, y, e):
  et = torch.tensor(e, dtype=torch.float64, requires_grad=True)
  val, tri = _ref_corrective_triplet_loss(torch, torch.tensor(y), et,
                                          gamma=GAMMA, margin=MARGIN)
  val.backward()
  return val.item(), tri.item(), et.grad.numpy()


def _hj_pair(y, u, mask, **kw):
  f = lambda u: pairwise.class_balanced_pairwise_nll(
      u, _onehot(y), jnp.asarray(mask, jnp.float32), **kw)
  u = jnp.asarray(u, jnp.float32)
  return float(f(u)), np.asarray(jax.grad(f)(u))


def _hj_triplet(y, e, mask, no_positive='released', match_grad=False):
  def f(e):
    return metric.corrective_triplet_loss(
        _onehot(y), e, margin=MARGIN, lam=GAMMA,
        mask=jnp.asarray(mask, jnp.float32), no_positive=no_positive,
        match_grad=match_grad)
  e = jnp.asarray(e, jnp.float32)
  (val, parts), grad = jax.value_and_grad(f, has_aux=True)(e)
  return float(val), parts, np.asarray(grad)


# --- Tests. -----------------------------------------------------------------

@pytest.mark.parametrize('pad', PADDING)
@pytest.mark.parametrize('name', BATCHES)
def test_pairwise_released_matches_code(name, pad):
  torch = torch_util.import_torch()
  y, u, _ = _arrays(name)
  want, want_g = _ref_pair(torch, y, u)
  head, tail = PADDING[pad]
  yp, up, mask = _pad(y, u, head, tail)
  got, got_g = _hj_pair(yp, up, mask, diagonal_gradient=True)
  assert got == pytest.approx(want, rel=2e-6)
  rows = slice(head, head + len(y))
  np.testing.assert_allclose(got_g[rows], want_g, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(got_g[:head], 0.0)
  np.testing.assert_array_equal(got_g[head + len(y):], 0.0)


def test_pairwise_edge_batches_hand_values():
  """The released denominator B(B-1) against the balanced one (paper).

  With no similar (dissimilar) pair the balanced weights are S / S0 = (S0 +
  1) / S0 (S / S1), so the released value is (B(B-1) + 1) / (B(B-1)) times
  the mean over the pairs present; the paper-intent value is that mean.
  """
  for name, b in [('distinct_b6', 6), ('one_class_b8', 8)]:
    y, u, _ = _arrays(name)
    ones = np.ones(b)
    theta = 0.5 * u @ u.T
    s = (y[:, None] == y[None, :]).astype(float)
    nll = np.logaddexp(0.0, theta) - s * theta
    off = ~np.eye(b, dtype=bool)
    mean = nll[off].mean()
    pairs = b * (b - 1)
    released, _ = _hj_pair(y, u, ones, diagonal_gradient=True)
    paper, _ = _hj_pair(y, u, ones)
    assert released == pytest.approx(mean * (pairs + 1) / pairs, rel=2e-6)
    assert paper == pytest.approx(mean, rel=2e-6)
    # The released denominator can also be asked for on its own.
    alone, _ = _hj_pair(y, u, ones, denominator='released')
    assert alone == pytest.approx(released, rel=2e-6)


def test_pairwise_mixed_batch_modes_agree():
  """With similar and dissimilar pairs S0 + S1 = B(B-1): both agree."""
  y, u, _ = _arrays('mixed_b8')
  ones = np.ones(len(y))
  released, _ = _hj_pair(y, u, ones, diagonal_gradient=True)
  paper, _ = _hj_pair(y, u, ones)
  assert released == pytest.approx(paper, rel=2e-6)


@pytest.mark.parametrize('pad', PADDING)
@pytest.mark.parametrize('name', BATCHES)
def test_corrective_triplet_released_matches_code(name, pad):
  torch = torch_util.import_torch()
  y, _, e = _arrays(name)
  want, want_tri, want_g = _ref_triplet(torch, y, e)
  head, tail = PADDING[pad]
  yp, ep, mask = _pad(y, e, head, tail)
  got, parts, got_g = _hj_triplet(yp, ep, mask)
  assert float(parts['triplet']) == pytest.approx(want_tri, rel=1e-5)
  assert got == pytest.approx(want, rel=1e-5)
  assert int(parts['valid_anchors']) == len(y)
  rows = slice(head, head + len(y))
  np.testing.assert_allclose(got_g[rows], want_g, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(got_g[:head], 0.0)
  np.testing.assert_array_equal(got_g[head + len(y):], 0.0)


def test_one_class_batch_released_charges_margin_and_match():
  """Every anchor: hinge = d_ap - max_j d_ij + m = m, so L_tri = m exactly,
  with zero gradient; L_match compares the class mean with the mean of the
  hardest positives and the anchors themselves (n(i) = i)."""
  y, _, e = _arrays('one_class_b8')
  _, parts, grad = _hj_triplet(y, e, np.ones(len(y)))
  assert float(parts['triplet']) == pytest.approx(MARGIN, rel=1e-6)
  assert float(parts['match']) > 0
  np.testing.assert_allclose(grad, 0.0, atol=1e-6)
  # Paper intent ('skip'): no anchor has a negative, so no triplet at all.
  val, parts, grad = _hj_triplet(y, e, np.ones(len(y)), no_positive='skip',
                                 match_grad=True)
  assert val == 0.0 and int(parts['valid_anchors']) == 0
  np.testing.assert_array_equal(grad, 0.0)
