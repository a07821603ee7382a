"""Asymmetric inner-product regression against a database code bank (ADSH)."""
import jax
import jax.numpy as jnp


def asymmetric_loss(u, bank, sim, bank_rows, mask, *, lam, num_database):
  """ADSH pair + quantization loss with the released code's normalisation.

  docs/methods/ahcl.md §1.5 item 1:
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
  (1 - eps) y + eps / K (docs/methods/dgssh.md §1.4.3).
  """
  target = labels / jnp.maximum(labels.sum(-1, keepdims=True), 1.0)
  target = (1.0 - smoothing) * target + smoothing / logits.shape[-1]
  logp = logits - jnp.max(logits, -1, keepdims=True)
  logp = logp - jnp.log(jnp.sum(jnp.exp(logp), -1, keepdims=True))
  per = -(target * logp).sum(-1)
  return jnp.sum(per * mask) / jnp.maximum(mask.sum(), 1.0)


def sigmoid_cross_entropy(logits, labels, mask, smoothing=0.0):
  """Multi-label classification loss: binary CE of each class's logit
  against whether the sample has that label, summed over classes, mean
  over real samples (PyTorch's BCEWithLogitsLoss with reduction 'sum' over
  classes). `smoothing` = eps pulls each target to (1 - eps) y + eps / 2."""
  target = (labels > 0).astype(logits.dtype)
  target = (1.0 - smoothing) * target + smoothing / 2.0
  per = (jnp.maximum(logits, 0.0) - logits * target +
         jnp.log1p(jnp.exp(-jnp.abs(logits)))).sum(-1)
  return jnp.sum(per * mask) / jnp.maximum(mask.sum(), 1.0)


def classification_loss(logits, labels, mask, *, multi_label,
                        smoothing=0.0):
  """The methods' classification term: softmax CE for single-label data,
  sigmoid (binary) CE per class for multi-label data (a softmax cannot put
  all its mass on several labels at once). `multi_label` is a property of
  the dataset (any image with two or more labels), fixed for the run, so
  every batch uses the same loss."""
  if multi_label:
    return sigmoid_cross_entropy(logits, labels, mask, smoothing)
  return softmax_cross_entropy(logits, labels, mask, smoothing)


def class_balanced_pairwise_nll(u, labels, mask=None, *,
                                diagonal_gradient=False, denominator=None):
  """Class-balanced DPSH loss inside the batch (docs/methods/dgssh.md §1.4.1).

  l_ij = log(1 + exp(theta_ij)) - s_ij theta_ij, theta_ij = u_i.u_j / 2,
  over ordered off-diagonal pairs of unpadded rows. With S1 / S0 the numbers
  of similar / dissimilar such pairs, each clamped to at least 1, and
  S = S0 + S1, the weights are S / S1 on similar and S / S0 on dissimilar
  pairs, and

    value = sum_{i != j} w_ij l_ij / D.

  `denominator` chooses D:
    'balanced' (paper intent): D = S, so the value is the mean of l over
      similar pairs + the mean over dissimilar pairs, and exactly the mean
      over the pairs present when a batch has no similar (all labels
      distinct) or no dissimilar pair (one class).
    'released': the released code's `similarityloss` (loss/asy_loss.py),
      D = n(n - 1) with n the number of unpadded rows (the code has no
      padding: n = B). Equal to 'balanced' when both kinds of pair exist;
      with one kind missing the clamped count adds 1 to S, so the value is
      (n(n-1) + 1) / (n(n-1)) times that mean (+3.2% at n = 6, +1.8% at
      n = 8). D is clamped to 1 (value 0) for n <= 1, where the code
      divides 0 by 0.
    None (default): 'released' when `diagonal_gradient`, else 'balanced'.

  `diagonal_gradient=True` reproduces the released code's gradient: it
  subtracts the diagonal's value (weight S / S1) as a detached constant, so
  the diagonal still pushes ||u_i|| up through its gradient. So
  `diagonal_gradient=True` (denominator left None) is the released code.

  Args:
    u: [b, c] relaxed codes. labels: [b, C] multi-hot. mask: [b] or None.
  """
  if denominator is None:
    denominator = 'released' if diagonal_gradient else 'balanced'
  if denominator not in ('balanced', 'released'):
    raise ValueError(f"denominator must be 'balanced' or 'released', got "
                     f'{denominator!r}.')
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
  if denominator == 'released':
    n = jnp.sum(mask)
    pairs = jnp.maximum(n * (n - 1.0), 1.0)
  else:
    pairs = total
  value = jnp.sum(w * nll * off) / pairs
  if not diagonal_gradient:
    return value
  diag = jnp.sum(w * nll * valid * jnp.eye(b)) / pairs
  return value + diag - jax.lax.stop_gradient(diag)
