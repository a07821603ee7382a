"""Asymmetric inner-product regression against a database code bank (ADSH)."""
import jax
import jax.numpy as jnp


def asymmetric_loss(u, bank, sim, bank_rows, mask, *, lam, num_database):
  """ADSH pair + quantization loss with the released code's normalisation.

  AHCL spec §1.5 item 1:
    L_p = [ sum_i sum_j (u_i . v_j - c S_ij)^2
            + lam sum_i ||v_idx(i) - u_i||^2 ] / (n b)
  with b the number of real (mask = 1) samples in the batch.

  Args:
    u: [b, c] relaxed codes (tanh outputs).
    bank: [n, c] database codes V (constants: no gradient flows into them).
    sim: [b, n] similarity targets S in {1, -r}.
    bank_rows: [b, c] V rows of the batch samples (v_idx(i)).
    mask: [b] 1 for real samples, 0 for padding.
    lam: quantization weight (the code's `--lamb`, 200).
    num_database: n.

  Returns:
    (loss, {'pair': ..., 'quant': ...}) with the terms on the same scale.
  """
  c = u.shape[-1]
  b = jnp.maximum(mask.sum(), 1.0)
  pair = jnp.sum(((u @ bank.T - c * sim) ** 2).sum(-1) * mask)
  quant = jnp.sum(((bank_rows - u) ** 2).sum(-1) * mask)
  scale = 1.0 / (num_database * b)
  return (pair + lam * quant) * scale, {'pair': pair * scale,
                                         'quant': lam * quant * scale}


def softmax_cross_entropy(logits, labels, mask, smoothing=0.0):
  """Mean CE over real samples; multi-hot labels become a uniform target.

  For single-label data this is PyTorch's CrossEntropyLoss (mean); with
  `smoothing` = eps it is timm's LabelSmoothingCrossEntropy: target
  (1 - eps) y + eps / K (DGSSH spec §1.4.3).
  """
  target = labels / jnp.maximum(labels.sum(-1, keepdims=True), 1.0)
  target = (1.0 - smoothing) * target + smoothing / logits.shape[-1]
  logp = logits - jnp.max(logits, -1, keepdims=True)
  logp = logp - jnp.log(jnp.sum(jnp.exp(logp), -1, keepdims=True))
  per = -(target * logp).sum(-1)
  return jnp.sum(per * mask) / jnp.maximum(mask.sum(), 1.0)


def class_balanced_pairwise_nll(u, labels, mask=None, *,
                                diagonal_gradient=False):
  """Class-balanced DPSH loss inside the batch (DGSSH spec §1.4.1).

  l_ij = log(1 + exp(theta_ij)) - s_ij theta_ij, theta_ij = u_i.u_j / 2.
  Value: mean of l over similar off-diagonal pairs + mean over dissimilar
  pairs (when both exist). `diagonal_gradient=True` reproduces the released
  code, which subtracts the diagonal's value as a detached constant, so the
  diagonal still pushes ||u_i|| up through its gradient.

  Args:
    u: [b, c] relaxed codes. labels: [b, C] multi-hot. mask: [b] or None.
  """
  b = u.shape[0]
  mask = jnp.ones(b) if mask is None else mask
  s = (labels @ labels.T > 0).astype(u.dtype)
  theta = 0.5 * u @ u.T
  nll = jax.nn.softplus(theta) - s * theta
  valid = mask[:, None] * mask[None, :]
  off = valid * (1.0 - jnp.eye(b))
  n_pos = jnp.maximum(jnp.sum(s * off), 1.0)
  n_neg = jnp.maximum(jnp.sum((1.0 - s) * off), 1.0)
  total = n_pos + n_neg
  w = jnp.where(s > 0, total / n_pos, total / n_neg)
  pairs = jnp.maximum(total, 1.0)
  value = jnp.sum(w * nll * off) / pairs
  if not diagonal_gradient:
    return value
  diag = jnp.sum(w * nll * valid * jnp.eye(b)) / pairs
  return value + diag - jax.lax.stop_gradient(diag)
