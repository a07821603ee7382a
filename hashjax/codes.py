"""Binary hash codes: binarisation and Hamming distances.

Codes are represented throughout hashjax as ``int8`` arrays of ``+1``/``-1``
with shape ``[num_items, bits]``. For ±1 codes the Hamming distance is an
affine function of the inner product, ``d(a, b) = (bits - a . b) / 2``, so
distances between whole code sets reduce to one matrix multiply.

Every function here accepts NumPy and JAX arrays: JAX inputs (including
tracers under ``jit``) give JAX outputs, anything else gives NumPy outputs.
This lets the evaluation code stay in exact, deterministic NumPy while
training code can binarise inside jitted functions.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# float32 represents every integer up to 2**24 exactly, so a float32 matmul
# of ±1 vectors is exact (whatever the summation order) while all partial
# sums stay below that.
_FLOAT32_EXACT_BITS = 2**24


def _is_jax(*arrays: Any) -> bool:
  # Tracers are instances of jax.Array too, so this also holds under jit.
  return any(isinstance(a, jax.Array) for a in arrays)


def binarize(x: Any) -> Any:
  """Maps real-valued (or ±1) features to ±1 hash codes.

  This is ``sign(x)`` except that ``0`` maps to ``+1``. The reference
  implementations use ``torch.sign``/``np.sign``, which return ``0`` for
  ``0``; an exact zero would then be neither bit value and would bias the
  Hamming distances computed from ``bits - a . b``. Mapping it to ``+1``
  guarantees every output is a valid ±1 code. NaN maps to ``-1``.

  Args:
    x: array of any shape, typically ``[num_items, bits]`` continuous
      network outputs. NumPy or JAX.

  Returns:
    ``int8`` array with the shape of ``x`` holding ``+1``/``-1``; a JAX
    array if ``x`` is one, else a NumPy array.
  """
  if _is_jax(x):
    return jnp.where(x >= 0, 1, -1).astype(jnp.int8)
  x = np.asarray(x)
  return np.where(x >= 0, 1, -1).astype(np.int8)


def hamming_distance(q_codes: Any, db_codes: Any) -> Any:
  """Pairwise Hamming distances between two sets of ±1 codes.

  Computed as ``(bits - q @ db.T) // 2``. The product is accumulated in
  float32 rather than in the codes' ``int8`` (which overflows at 128 bits)
  because float32 matmuls are fast on every backend and exact for ±1
  inputs while ``bits <= 2**24``; beyond that the NumPy path switches to
  float64. The JAX path requests ``Precision.HIGHEST`` so accelerators do
  not round the float32 accumulation through reduced-precision formats.

  The inputs are assumed to be ±1 codes (see `binarize`); they are not
  checked here so that this function can run under ``jit``.

  Args:
    q_codes: ``[Q, bits]`` ±1 codes, any numeric dtype.
    db_codes: ``[N, bits]`` ±1 codes, any numeric dtype.

  Returns:
    ``int32`` array ``[Q, N]`` with entry ``[i, j]`` the number of bits in
    which ``q_codes[i]`` and ``db_codes[j]`` differ; a JAX array if either
    input is one, else a NumPy array.

  Raises:
    ValueError: if the inputs are not 2-D or their code lengths differ.
  """
  q_shape, db_shape = np.shape(q_codes), np.shape(db_codes)
  if len(q_shape) != 2 or len(db_shape) != 2:
    raise ValueError(
        f'hamming_distance expects 2-D code arrays [num_items, bits], got '
        f'shapes {q_shape} and {db_shape}.')
  if q_shape[1] != db_shape[1]:
    raise ValueError(
        f'Code lengths differ: query codes have {q_shape[1]} bits, database '
        f'codes have {db_shape[1]}.')
  bits = q_shape[1]
  if _is_jax(q_codes, db_codes):
    inner = jnp.matmul(
        jnp.asarray(q_codes, jnp.float32),
        jnp.asarray(db_codes, jnp.float32).T,
        precision=jax.lax.Precision.HIGHEST)
    # `inner` is an exact integer with the parity of `bits`, so the
    # subtraction is even and the floor division is exact.
    return (bits - inner).astype(jnp.int32) // 2
  dtype = np.float32 if bits <= _FLOAT32_EXACT_BITS else np.float64
  inner = np.asarray(q_codes, dtype) @ np.asarray(db_codes, dtype).T
  return (bits - inner).astype(np.int32) // 2
