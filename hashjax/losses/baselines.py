"""Losses of the standard deep-hashing baselines (docs/methods/baselines.md).

Pure functions of arrays, one per paper:

  dpsh_loss        DPSH (Li, Wang & Kang, IJCAI 2016): pairwise likelihood
                   of the batch against a bank of relaxed codes + eta * quant.
  hashnet_loss     HashNet (Cao et al., ICCV 2017): class-balanced weighted
                   pairwise cross-entropy with an adaptive sigmoid.
  dsh_loss         DSH (Liu et al., CVPR 2016): contrastive loss on real
                   outputs + alpha * || |u| - 1 ||_1.
  csq_centres,     CSQ (Yuan et al., CVPR 2020): Hadamard / Bernoulli hash
  csq_targets,     centres, per-item targets, BCE against them +
  csq_loss         lam * quantization.
  nt_xent,         CIBHash (Qiu et al., IJCAI 2021): NT-Xent between the
  bernoulli_kl,    codes of two views + a symmetric Bernoulli KL.
  cibhash_loss

Conventions as in hashjax/losses/pairwise.py: `mask` [b] is 1 for real
samples and 0 for padding, similarity matrices are {0, 1} (1 = the labels
share a class, hashjax/losses/similarity.py).
"""
import jax
import jax.numpy as jnp
import numpy as np

# log() arguments are clipped here (torch's BCELoss clamps log at -100).
_EPS = 1e-12


def _sign(x):
  """+-1 codes with 0 -> +1 (hashjax/codes.py's rule), no gradient."""
  return jax.lax.stop_gradient(jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype))


def _pair_nll(theta, s):
  """-(s theta - log(1 + e^theta)) = softplus(theta) - s theta, stable."""
  return jax.nn.softplus(theta) - s * theta


# --------------------------------------------------------------------- DPSH


def dpsh_loss(u, bank, sim, mask, *, eta):
  """DPSH's objective for a batch against a bank of the training codes.

    L = [ sum_{i in batch} sum_{j=1..n} (log(1 + e^theta_ij) - s_ij theta_ij)
          + eta sum_{i in batch} ||b_i - u_i||^2 ] / (n b),
    theta_ij = u_i . U_j / 2,  b_i = sign(u_i),

  the paper's Eq. (5) restricted to the batch's rows, with the scale of the
  authors' DPSH-pytorch code (both terms divided by n b, so eta keeps the
  paper's meaning).

  Args:
    u: [b, c] real-valued network outputs (DPSH's u_i = W^T phi(x_i) + v).
    bank: [n, c] relaxed codes U of the training set (constants; rows not
      yet seen are 0, which adds log 2 per pair and no gradient).
    sim: [b, n] {0, 1} similarities s_ij.
    mask: [b] 1 for real samples.
    eta: quantization weight.

  Returns:
    (loss, {'pair': ..., 'quant': ...}) on the loss's scale.
  """
  n = bank.shape[0]
  b = jnp.maximum(mask.sum(), 1.0)
  theta = 0.5 * u @ bank.T
  pair = jnp.sum(_pair_nll(theta, sim).sum(-1) * mask)
  quant = jnp.sum(((_sign(u) - u) ** 2).sum(-1) * mask)
  scale = 1.0 / (n * b)
  return (pair + eta * quant) * scale, {'pair': pair * scale,
                                         'quant': eta * quant * scale}


# ------------------------------------------------------------------ HashNet


def hashnet_loss(u, sim, mask, *, alpha):
  """HashNet's weighted maximum likelihood over the batch's pairs.

    L = sum_{i != j} w_ij (log(1 + e^{theta_ij}) - s_ij theta_ij) / |S|,
    theta_ij = alpha <h_i, h_j>,
    w_ij = |S| / |S_1| (similar), |S| / |S_0| (dissimilar),

  over ordered off-diagonal pairs of real samples, divided by |S| (the
  number of such pairs), so the similar and the dissimilar pairs each
  weigh half. h = tanh(beta z) is computed by the model (continuation).

  Args:
    u: [b, c] continuous codes h. sim: [b, b] {0, 1}. mask: [b].
    alpha: the adaptive sigmoid's bandwidth (the released code: 10 / bits).

  Returns:
    (loss, {'similar': mean nll of similar pairs, 'dissimilar': ...}).
  """
  b = u.shape[0]
  valid = mask[:, None] * mask[None, :] * (1.0 - jnp.eye(b, dtype=u.dtype))
  theta = alpha * u @ u.T
  nll = _pair_nll(theta, sim)
  n_pos = jnp.maximum(jnp.sum(sim * valid), 1.0)
  n_neg = jnp.maximum(jnp.sum((1.0 - sim) * valid), 1.0)
  total = n_pos + n_neg
  w = jnp.where(sim > 0, total / n_pos, total / n_neg)
  loss = jnp.sum(w * nll * valid) / total
  return loss, {'similar': jnp.sum(nll * sim * valid) / n_pos,
                'dissimilar': jnp.sum(nll * (1.0 - sim) * valid) / n_neg}


# ---------------------------------------------------------------------- DSH


def dsh_loss(u, sim, mask, *, margin, alpha):
  """DSH's loss averaged over the batch's unordered pairs (i < j):

    L_ij = 1/2 s_ij ||u_i - u_j||^2
         + 1/2 (1 - s_ij) max(m - ||u_i - u_j||^2, 0)
         + alpha (|| |u_i| - 1 ||_1 + || |u_j| - 1 ||_1),

  the paper's Eq. (4) with its y = 1 - s (y = 0 for similar pairs).

  Args:
    u: [b, c] real-valued outputs. sim: [b, b] {0, 1}. mask: [b].
    margin: m (the paper: 2 c). alpha: the regulariser's weight (0.01).

  Returns:
    (loss, {'pair': ..., 'reg': ...}), the two parts of the mean.
  """
  b = u.shape[0]
  sq = jnp.sum(u ** 2, -1)
  d = jnp.maximum(sq[:, None] - 2.0 * u @ u.T + sq[None, :], 0.0)
  pairs = mask[:, None] * mask[None, :] * jnp.triu(jnp.ones((b, b), u.dtype),
                                                    1)
  count = jnp.maximum(pairs.sum(), 1.0)
  pair = 0.5 * sim * d + 0.5 * (1.0 - sim) * jnp.maximum(margin - d, 0.0)
  reg = jnp.sum(jnp.abs(jnp.abs(u) - 1.0), -1)
  pair_term = jnp.sum(pair * pairs) / count
  reg_term = alpha * jnp.sum((reg[:, None] + reg[None, :]) * pairs) / count
  return pair_term + reg_term, {'pair': pair_term, 'reg': reg_term}


# ---------------------------------------------------------------------- CSQ


def hadamard(k):
  """The Sylvester Hadamard matrix [k, k] of +-1 (k a power of two)."""
  if k < 1 or k & (k - 1):
    raise ValueError(f'hadamard needs a power of two, got {k}.')
  h = np.ones((1, 1))
  while h.shape[0] < k:
    h = np.block([[h, h], [h, -h]])
  return h


def csq_centres(bits, num_classes, seed):
  """CSQ's hash centres: deterministic in (bits, num_classes, seed).

  When bits is a power of two, the rows of [H_K; -H_K] (2K centres at
  Hamming distance >= K/2 from each other) give the first min(2K, C)
  centres; every other centre (all of them when bits is not a power of
  two) is Bernoulli(0.5) per bit (CSQ's §3.2.2), drawn from `seed`.

  Returns:
    (centres [C, bits] +-1 float32, fallback [bits] +-1 float32): fallback
    breaks the ties of multi-label centroids (`csq_targets`).
  """
  rng = np.random.default_rng(seed)
  rows = []
  if bits & (bits - 1) == 0:
    h = hadamard(bits)
    rows = list(np.concatenate([h, -h])[:num_classes])
  extra = num_classes - len(rows)
  if extra > 0:
    rows += list(np.where(rng.random((extra, bits)) < 0.5, 1.0, -1.0))
  fallback = np.where(rng.random(bits) < 0.5, 1.0, -1.0)
  return (np.asarray(rows, np.float32).reshape(num_classes, bits),
          fallback.astype(np.float32))


def csq_targets(labels, centres, fallback):
  """Each item's hash centre: sign(y C) with ties (0) from `fallback`.

  One label: its class's centre. Several (CSQ's multi-label rule): the
  centroid of their centres, binarised; a bit where they cancel out takes
  the fixed random `fallback` bit, as DeepHash-pytorch does.

  Args:
    labels: [b, C] multi-hot. centres: [C, bits]. fallback: [bits].
  """
  total = labels @ centres
  return jnp.where(total > 0, 1.0, jnp.where(total < 0, -1.0,
                                             fallback[None, :]))


def csq_loss(u, targets, mask, *, lam):
  """CSQ: mean BCE of (u + 1)/2 against (c + 1)/2, + lam * quantization.

    L = mean_{i,k} -[t_ik log p_ik + (1 - t_ik) log(1 - p_ik)]
        + lam mean_{i,k} (|u_ik| - 1)^2,   p = (u + 1)/2, t = (c + 1)/2,

  means over real samples and bits (DeepHash-pytorch's BCELoss + Q_loss).

  Args:
    u: [b, c] relaxed codes in (-1, 1). targets: [b, c] +-1 centres.
    mask: [b]. lam: quantization weight (1e-4).

  Returns:
    (loss, {'center': ..., 'quant': ...}), quant unweighted.
  """
  c = u.shape[-1]
  denom = jnp.maximum(mask.sum(), 1.0) * c
  p = (u + 1.0) / 2.0
  t = (targets + 1.0) / 2.0
  bce = -(t * jnp.log(jnp.clip(p, _EPS, 1.0)) +
          (1.0 - t) * jnp.log(jnp.clip(1.0 - p, _EPS, 1.0)))
  center = jnp.sum(bce.sum(-1) * mask) / denom
  quant = jnp.sum(((jnp.abs(u) - 1.0) ** 2).sum(-1) * mask) / denom
  return center + lam * quant, {'center': center, 'quant': quant}


# ------------------------------------------------------------------ CIBHash


def nt_xent(z_i, z_j, mask, *, temperature):
  """NT-Xent (SimCLR) between two views' codes, padding excluded.

  With z = [z_i; z_j] (2b rows) and cos the cosine similarity, anchor a's
  positive is the other view of the same image and its candidates are every
  other real row:

    L = mean_a -log( e^{cos(z_a, z_a+)/tau} / sum_{k != a} e^{cos(z_a, z_k)/tau} ).

  Args:
    z_i, z_j: [b, c] codes of the two views. mask: [b]. temperature: tau.
  """
  b = z_i.shape[0]
  z = jnp.concatenate([z_i, z_j])
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-8)
  logits = z @ z.T / temperature
  m2 = jnp.concatenate([mask, mask])
  cand = (m2[None, :] > 0) & ~jnp.eye(2 * b, dtype=bool)
  logits = jnp.where(cand, logits, -jnp.inf)
  idx = jnp.arange(2 * b)
  pos = logits[idx, (idx + b) % (2 * b)]
  lse = jax.nn.logsumexp(logits, axis=-1)
  per = jnp.where(m2 > 0, lse - pos, 0.0)
  return jnp.sum(per) / jnp.maximum(m2.sum(), 1.0)


def bernoulli_kl(p, q, mask):
  """mean_i sum_k KL(Bern(p_ik) || Bern(q_ik)), q without gradient (the
  released code detaches the second view's probabilities)."""
  q = jax.lax.stop_gradient(q)

  def log(x):
    return jnp.log(jnp.clip(x, _EPS, 1.0))

  kl = p * (log(p) - log(q)) + (1.0 - p) * (log(1.0 - p) - log(1.0 - q))
  return jnp.sum(kl.sum(-1) * mask) / jnp.maximum(mask.sum(), 1.0)


def cibhash_loss(z_i, z_j, p_i, p_j, mask, *, temperature, weight):
  """CIBHash: NT-Xent(z_i, z_j) + weight * (KL(p_i||p_j) + KL(p_j||p_i)) / 2.

  Args:
    z_i, z_j: [b, c] +-1 codes of the two views (straight-through).
    p_i, p_j: [b, c] Bernoulli probabilities of the bits.
    temperature: tau (0.3). weight: the KL's weight (beta, 0.001).

  Returns:
    (loss, {'contrast': ..., 'kl': ...}).
  """
  contrast = nt_xent(z_i, z_j, mask, temperature=temperature)
  kl = 0.5 * (bernoulli_kl(p_i, p_j, mask) + bernoulli_kl(p_j, p_i, mask))
  return contrast + weight * kl, {'contrast': contrast, 'kl': kl}
