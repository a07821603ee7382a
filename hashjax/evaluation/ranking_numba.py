"""The counting sort of `ranking`'s count path as one compiled loop (numba).

NumPy has no counting sort that keeps only some items: the NumPy kernel
argsorts all N distances (a radix sort), gathers the relevance into that
order and looks for the relevant items again, about 7 ms per query at
N = 10^6 on a 2-core CPU. What the metrics need is much less: how many items
sit at each distance, and where each relevant item lands. With ties broken
by index, an item at distance d lands at

    (items at a distance < d) + (items at distance d with a lower index),

so two passes over the distances in index order find every position: one
counts the items per distance, the second hands out positions bucket by
bucket. That loop is what numba compiles here (`pip install numba`, the
`fast` extra); `ranking` uses it when numba imports and falls back to the
NumPy kernel otherwise. The positions are the same integers either way, so
every metric is bit-identical (tests/ranking_test.py checks both kernels
against the reference).
"""
import numpy as np

try:
  import numba  # pylint: disable=g-import-not-at-top
except ImportError:  # the `fast` extra is not installed
  numba = None

AVAILABLE = numba is not None


def _place_relevant(dist, rel, counts, pos_out, gain_out):
  """Ranks the relevant items of one query by (distance, index).

  Args:
    dist: [N] uint8/uint16 Hamming distances.
    rel: [N] relevance: bool, or the number of shared labels (gain).
    counts: [bits + 1] int64, filled with the number of items per distance.
    pos_out: [>= R] int64; the first R entries receive the 0-based ranked
      positions of the relevant items (R = number of nonzero `rel`), in
      ascending order.
    gain_out: [>= R] of rel's dtype; the gains in that same order.

  Returns:
    R.
  """
  n = dist.shape[0]
  num_radii = counts.shape[0]
  # Items per (distance, relevant?) in one branch-free pass.
  both = np.zeros(2 * num_radii, np.int64)
  for i in range(n):
    both[2 * np.int64(dist[i]) + (rel[i] != 0)] += 1
  # Where each distance's items (and its relevant items) start.
  start = np.empty(num_radii, np.int64)
  rel_start = np.empty(num_radii, np.int64)
  total, total_rel = 0, 0
  for d in range(num_radii):
    counts[d] = both[2 * d] + both[2 * d + 1]
    start[d] = total
    rel_start[d] = total_rel
    total += counts[d]
    total_rel += both[2 * d + 1]
  for i in range(n):
    d = dist[i]
    g = rel[i]
    if g:
      k = rel_start[d]
      pos_out[k] = start[d]
      gain_out[k] = g
      rel_start[d] = k + 1
    start[d] += 1
  return total_rel


if AVAILABLE:
  place_relevant = numba.njit(nogil=True, cache=True)(_place_relevant)
else:
  place_relevant = None
