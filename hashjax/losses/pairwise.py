"""Asymmetric inner-product regression against a database code bank (ADSH)."""
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


def softmax_cross_entropy(logits, labels, mask):
  """Mean CE over real samples; multi-hot labels become a uniform target.

  For single-label data this is PyTorch's CrossEntropyLoss (mean).
  """
  target = labels / jnp.maximum(labels.sum(-1, keepdims=True), 1.0)
  logp = logits - jnp.max(logits, -1, keepdims=True)
  logp = logp - jnp.log(jnp.sum(jnp.exp(logp), -1, keepdims=True))
  per = -(target * logp).sum(-1)
  return jnp.sum(per * mask) / jnp.maximum(mask.sum(), 1.0)
