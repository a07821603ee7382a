"""DEC pieces of MrHash (docs/methods/mrhash.md §1.3, §1.5): pure functions of arrays.

  soft_assignment     Student's-t kernel q_ij (DEC, Xie et al. 2016)
  target_distribution p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j')
  kl_divergence       KL(P || Q) with the released code's 'mean' reduction
                      (/ (B K), §1.5) or the true per-sample 'batchmean'.
"""
import jax.numpy as jnp

# q is clipped away from 0 before its log (torch's kl_div takes log q from
# the caller, which computes it from a strictly positive kernel).
_EPS = 1e-12


def soft_assignment(z, centres, alpha=1.0):
  """q [n, K]: q_ij proportional to (1 + |z_i - mu_j|^2 / alpha)^-((alpha+1)/2).

  Args:
    z: [n, d] latents. centres: [K, d]. alpha: degrees of freedom; the
      released code hard-codes 1 (§1.3 item 5).
  """
  d2 = jnp.sum((z[:, None, :] - centres[None, :, :]) ** 2, axis=-1)
  kernel = (1.0 + d2 / alpha) ** (-(alpha + 1.0) / 2.0)
  return kernel / jnp.sum(kernel, axis=1, keepdims=True)


def target_distribution(q):
  """DEC's sharpened target P from Q [n, K] (over the whole training set).

  f_j = sum_i q_ij is the soft cluster frequency; rows of P sum to 1.
  """
  weight = q ** 2 / jnp.sum(q, axis=0, keepdims=True)
  return weight / jnp.sum(weight, axis=1, keepdims=True)


def kl_divergence(p, q, reduction='mean', mask=None):
  """KL(P || Q) summed over clusters, reduced over the batch.

  Args:
    p, q: [b, K] rows of distributions (P is the target, no gradient).
    reduction: 'mean' = torch F.kl_div's default, sum / (b K), as the
      released code trains (§1.5); 'batchmean' = sum / b, the true KL per
      sample.
    mask: optional [b] weights (padding rows 0); b counts the unmasked rows.
  """
  mask = jnp.ones(p.shape[0], p.dtype) if mask is None else mask
  terms = jnp.where(p > 0, p * (jnp.log(jnp.maximum(p, _EPS)) -
                                jnp.log(jnp.maximum(q, _EPS))), 0.0)
  total = jnp.sum(terms.sum(-1) * mask)
  b = jnp.maximum(mask.sum(), 1.0)
  if reduction == 'mean':
    return total / (b * p.shape[1])
  if reduction == 'batchmean':
    return total / b
  raise ValueError(f"reduction must be 'mean' or 'batchmean', got "
                   f'{reduction!r}.')


def reconstruction_loss(recons, targets, weights, mask=None):
  """sum_s weights[s] * mean over unpadded rows of mean_d (recon_s - x_s)^2.

  With no padding this is torch's MSELoss (mean over b * d) per source. The
  released AE stage weighs (source 1, source 2) as (0.1, 1); the hashing
  stage as (1, 1) (docs/methods/mrhash.md §1.2, §1.5).

  Args:
    recons, targets: per source, [B, d_s].
    weights: per source.
    mask: [B], 1 for real rows (None: all).
  """
  if mask is None:
    mask = jnp.ones(recons[0].shape[0], jnp.float32)
  b = jnp.maximum(mask.sum(), 1.0)
  return sum(w * jnp.sum(jnp.mean((r - t) ** 2, axis=-1) * mask) / b
             for r, t, w in zip(recons, targets, weights))
