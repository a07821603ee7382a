"""Which training images a round visits, and in which order.

Training is a sequence of rounds (ADSH's outer iterations): each round
samples a subset of the training images and visits it in a fixed order.
"""
import numpy as np


def round_sample(seed, round_index, n, m):
  """The round's sample Omega: the first m of a seeded permutation (ADSH's
  sampled subset, docs/methods/ahcl.md §1.6); all n when m is 0."""
  perm = np.random.default_rng([seed, round_index]).permutation(n)
  return perm[:m] if m else perm


def class_balanced_order(sample, labels, batch_size, k, seed, round_index):
  """Reorders a round's sample so that batches are made of class groups of k.

  Each class's images are shuffled and cut into groups of k; the groups are
  shuffled and laid out first, so that every batch (batch_size a multiple
  of k) holds whole groups and every anchor in it has at least k - 1
  positives. The per-class remainders (< k images) come last. Every image
  of the sample is still visited exactly once per epoch (the DCC needs all
  of U), in contrast with samplers that draw P classes with replacement.
  With the released code's random batches of 32, ~22% of UCMD anchors have
  no positive (docs/methods/dgssh.md §1.4.4).

  Args:
    sample: [m] database rows of the round, any order.
    labels: [m] class index of each entry of `sample` (primary label).
    batch_size: global batch size; must be a multiple of k.
    k: images per class group.
    seed, round_index: seed the shuffles.

  Returns:
    [m] the same rows, reordered.
  """
  if k < 2 or batch_size % k:
    raise ValueError(f'train.class_group={k} must be >= 2 and divide '
                     f'input.batch_size={batch_size}.')
  rng = np.random.default_rng([seed, round_index, 1])
  groups, rest = [], []
  for cls in np.unique(labels):
    rows = rng.permutation(sample[labels == cls])
    full = len(rows) // k * k
    groups.extend(rows[:full].reshape(-1, k))
    rest.append(rows[full:])
  order = [groups[i] for i in rng.permutation(len(groups))]
  return np.concatenate(order + rest).astype(sample.dtype)
