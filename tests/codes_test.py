"""Tests for hashjax.codes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax import codes


def test_binarize_maps_zero_to_plus_one():
  x = np.array([-2.0, -0.0, 0.0, 1e-9, 3.0])
  np.testing.assert_array_equal(codes.binarize(x), [-1, 1, 1, 1, 1])
  assert codes.binarize(x).dtype == np.int8
  assert isinstance(codes.binarize(x), np.ndarray)
  assert codes.binarize(0) == 1


def test_binarize_jax_and_jit():
  x = jnp.array([[-1.5, 0.0], [0.2, -0.0]])
  for fn in (codes.binarize, jax.jit(codes.binarize)):
    out = fn(x)
    assert isinstance(out, jax.Array)
    assert out.dtype == jnp.int8
    np.testing.assert_array_equal(out, [[-1, 1], [1, 1]])


def _bit_count_distance(q, db):
  """Reference: count differing bits one pair at a time."""
  return np.array([[sum(int(a != b) for a, b in zip(qi, dj)) for dj in db]
                   for qi in q])


@pytest.mark.parametrize('bits', [1, 8, 13, 128, 256])
def test_hamming_matches_bit_counting(bits):
  rng = np.random.default_rng(bits)
  q = rng.choice([-1, 1], size=(6, bits)).astype(np.int8)
  db = rng.choice([-1, 1], size=(9, bits)).astype(np.int8)
  db[0] = q[0]  # Distance 0.
  db[1] = -q[0]  # Distance `bits`: would overflow int8 accumulation.
  want = _bit_count_distance(q, db)
  got_np = codes.hamming_distance(q, db)
  assert got_np.dtype == np.int32
  np.testing.assert_array_equal(got_np, want)
  got_jax = jax.jit(codes.hamming_distance)(jnp.asarray(q), jnp.asarray(db))
  assert got_jax.dtype == jnp.int32
  np.testing.assert_array_equal(got_jax, want)
  assert got_np[0, 0] == 0 and got_np[0, 1] == bits


def test_hamming_rejects_bad_shapes():
  with pytest.raises(ValueError, match='Code lengths differ'):
    codes.hamming_distance(np.ones((2, 4)), np.ones((3, 5)))
  with pytest.raises(ValueError, match='2-D'):
    codes.hamming_distance(np.ones(4), np.ones((3, 4)))
