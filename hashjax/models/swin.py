"""Swin Transformer (Liu et al., 2021) backbone in Flax Linen.

Follows the official Microsoft implementation and timm's
``SwinTransformer`` (timm >= 0.9 layout), so that their weights load with
``hashjax.models.swin_convert``:

* patch embedding: 4x4 stride-4 conv, then LayerNorm;
* stages of Swin blocks: pre-norm window attention with a learned relative
  position bias, shifted windows (with an attention mask) on odd blocks,
  pre-norm MLP (ratio 4, exact GELU), stochastic depth whose rate grows
  linearly from 0 to ``drop_path_rate`` over all blocks;
* patch merging (2x2 concat -> LayerNorm -> bias-free Linear 4C -> 2C) at the
  start of every stage but the first (timm's layout; the official code puts
  it at the end of the previous stage, which is the same network);
* final LayerNorm, mean over tokens -> 'features', optional Linear 'head'.

Windows are clamped as in the reference code: a stage whose resolution is at
most ``window_size`` uses one window covering the whole map and no shift;
otherwise a map that is not a multiple of the window is zero-padded at the
bottom/right (as timm does). The clamping is per dimension and is computed
from the static input shape, so a 64 px Swin-T runs with stage windows
7, 7, 4, 2 (feature maps 16, 8, 4, 2) and shifts 3, 3, 0, 0.

The relative position bias tables are sized for the windows at ``img_size``
(as timm builds them). Running at another size whose clamped windows are
smaller uses the central crop of each table, i.e. the same learned bias for
every relative offset; larger windows than the table's raise a ValueError
(build the model with the matching ``img_size`` and convert the weights).

Parameters are named after timm's modules (``patch_embed/proj``,
``layers_0/blocks_1/attn/qkv``, ``layers_1/downsample/reduction``, ``norm``,
``head``) so that converting a state dict is a name mapping.
"""

import functools
from typing import Any, List, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# torch/timm ImageNet normalisation on the [0, 255] scale, same convention as
# ``resnet.NORMALIZATION``: x = (x - mean) / std on RGB values in [0, 255].
NORMALIZATION = dict(mean=(0.485 * 255, 0.456 * 255, 0.406 * 255),
                     std=(0.229 * 255, 0.224 * 255, 0.225 * 255),
                     bgr=False)

# torch.nn.LayerNorm's default epsilon (Flax's default is 1e-6).
_LN_EPS = 1e-5
# Masked logits get this additive bias, as in the reference code (not -inf).
_MASK_VALUE = -100.0

_dense_init = nn.initializers.truncated_normal(stddev=0.02)


def normalize(x: Any) -> Any:
  """Normalises images for ``Swin``.

  Args:
    x: [..., H, W, 3] RGB images with values in [0, 255] (uint8 or float), a
      numpy or a jax array.

  Returns:
    float32 array of the same shape and array type.
  """
  x = x.astype(np.float32)
  mean = np.asarray(NORMALIZATION['mean'], np.float32)
  std = np.asarray(NORMALIZATION['std'], np.float32)
  return (x - mean) / std


def _pair(v: Any) -> Tuple[int, int]:
  return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def stage_resolutions(img_size: Any, patch_size: int,
                      num_stages: int) -> List[Tuple[int, int]]:
  """Feature-map sizes of each stage.

  Args:
    img_size: int or (H, W) input size in pixels.
    patch_size: patch embedding stride.
    num_stages: number of stages.

  Returns:
    list of num_stages (h, w); patch merging rounds odd sizes up (it pads).
  """
  h, w = _pair(img_size)
  h, w = h // patch_size, w // patch_size
  out = []
  for i in range(num_stages):
    if i > 0:
      h, w = (h + 1) // 2, (w + 1) // 2
    out.append((h, w))
  return out


def window_and_shift(resolution: Any, window_size: Any
                     ) -> Tuple[Tuple[int, int], Tuple[int, int]]:
  """Clamped window and shift of a stage, as timm's ``_calc_window_shift``.

  Args:
    resolution: int or (h, w) feature-map size of the stage.
    window_size: int or (h, w) target window size.

  Returns:
    (window, shift) as (h, w) pairs: a dimension no larger than the target
    window gets a window equal to the map and no shift; otherwise the target
    window and a shift of half of it (used on odd blocks).
  """
  res, target = _pair(resolution), _pair(window_size)
  window = tuple(r if r <= t else t for r, t in zip(res, target))
  shift = tuple(0 if r <= w else w // 2 for r, w in zip(res, window))
  return window, shift


def stage_windows(img_size: Any, patch_size: int, num_stages: int,
                  window_size: Any) -> List[Tuple[Tuple[int, int],
                                                  Tuple[int, int]]]:
  """(window, shift) of every stage for an input size; see window_and_shift."""
  return [window_and_shift(r, window_size)
          for r in stage_resolutions(img_size, patch_size, num_stages)]


def relative_position_index(window: Any) -> np.ndarray:
  """Index into the flattened relative position bias table.

  Args:
    window: int or (wh, ww) window size.

  Returns:
    [wh*ww, wh*ww] int32: for query token i and key token j (row-major in the
    window), the row of the [(2wh-1)*(2ww-1), heads] table holding the bias
    of offset (y_i - y_j, x_i - x_j).
  """
  wh, ww = _pair(window)
  coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing='ij'))
  coords = coords.reshape(2, -1)
  rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
  rel[..., 0] += wh - 1
  rel[..., 1] += ww - 1
  return (rel[..., 0] * (2 * ww - 1) + rel[..., 1]).astype(np.int32)


def _partition(x: Any, window: Tuple[int, int]) -> Any:
  """[B, H, W, C] -> [B, nW, wh*ww, C] with windows in row-major order."""
  b, h, w, c = x.shape
  wh, ww = window
  x = x.reshape(b, h // wh, wh, w // ww, ww, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, wh * ww, c)


def _merge(x: Any, window: Tuple[int, int], h: int, w: int) -> Any:
  """Inverse of _partition: [B, nW, wh*ww, C] -> [B, H, W, C]."""
  b, c = x.shape[0], x.shape[-1]
  wh, ww = window
  x = x.reshape(b, h // wh, w // ww, wh, ww, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def shifted_window_mask(resolution: Any, window: Any,
                        shift: Any) -> Optional[np.ndarray]:
  """Attention mask of a shifted-window block, as the reference code's.

  After the cyclic shift, a window may hold tokens from up to four regions
  that are not adjacent in the image; attention across regions is masked.

  Args:
    resolution: int or (h, w) feature-map size (before padding).
    window: int or (wh, ww) window size.
    shift: int or (sh, sw) cyclic shift.

  Returns:
    [nW, wh*ww, wh*ww] float32 with 0 (attend) or -100 (masked), windows in
    row-major order over the map padded up to a multiple of the window; None
    when there is no shift.
  """
  (h, w), (wh, ww), (sh, sw) = _pair(resolution), _pair(window), _pair(shift)
  if not (sh or sw):
    return None
  hp, wp = -(-h // wh) * wh, -(-w // ww) * ww
  img = np.zeros((1, hp, wp, 1), np.float32)
  cnt = 0
  # Same slices as the reference code (including its quirks when only one
  # dimension is shifted).
  for hs in ((0, -wh), (-wh, -sh), (-sh, None)):
    for ws in ((0, -ww), (-ww, -sw), (-sw, None)):
      img[:, hs[0]:hs[1], ws[0]:ws[1], :] = cnt
      cnt += 1
  regions = _partition(img, (wh, ww))[0, ..., 0]  # [nW, N]
  diff = regions[:, None, :] - regions[:, :, None]
  return np.where(diff != 0, _MASK_VALUE, 0.0).astype(np.float32)


def _drop_path(module: nn.Module, x: Any, rate: float, train: bool) -> Any:
  """Stochastic depth: drops whole samples of a residual branch."""
  if not train or rate == 0.0:
    return x
  keep = 1.0 - rate
  mask = jax.random.bernoulli(module.make_rng('dropout'), keep,
                              (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(mask, x / keep, jnp.zeros_like(x))


def _layer_norm(dtype, name):
  return nn.LayerNorm(epsilon=_LN_EPS, dtype=dtype, name=name)


def _dense(features, dtype, name, use_bias=True):
  return nn.Dense(features, use_bias=use_bias, kernel_init=_dense_init,
                  dtype=dtype, name=name)


class WindowAttention(nn.Module):
  """Multi-head self-attention within windows, with relative position bias.

  Attributes:
    num_heads: attention heads.
    window: (wh, ww) window used at run time.
    table_window: (wh, ww) window the bias table is sized for (>= window).
    dtype: computation dtype.
  """
  num_heads: int
  window: Tuple[int, int]
  table_window: Tuple[int, int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Any, mask: Optional[np.ndarray]) -> Any:
    """Attends within each window.

    Args:
      x: [B, nW, N, C] windows of N = wh*ww tokens.
      mask: None or [nW, N, N] additive mask.

    Returns:
      [B, nW, N, C].
    """
    b, nw, n, c = x.shape
    heads = self.num_heads
    head_dim = c // heads
    (wh, ww), (th, tw) = self.window, self.table_window
    table = self.param('relative_position_bias_table', _dense_init,
                       ((2 * th - 1) * (2 * tw - 1), heads))
    if wh > th or ww > tw:
      raise ValueError(
          f'Window {self.window} is larger than the relative position bias '
          f'table\'s {self.table_window}: build Swin with the img_size it runs '
          'at.')
    if (wh, ww) != (th, tw):
      # Central crop: the biases of the offsets a smaller window can see.
      grid = table.reshape(2 * th - 1, 2 * tw - 1, heads)
      grid = grid[th - wh:th + wh - 1, tw - ww:tw + ww - 1]
      table = grid.reshape(-1, heads)
    index = relative_position_index((wh, ww))
    bias = table[index.reshape(-1)].reshape(n, n, heads).transpose(2, 0, 1)

    qkv = _dense(3 * c, self.dtype, 'qkv')(x)
    qkv = qkv.reshape(b, nw, n, 3, heads, head_dim)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    q = q * head_dim**-0.5
    logits = jnp.einsum('bwqhd,bwkhd->bwhqk', q, k).astype(jnp.float32)
    logits = logits + bias[None, None]
    if mask is not None:
      logits = logits + jnp.asarray(mask)[None, :, None]
    attn = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    y = jnp.einsum('bwhqk,bwkhd->bwqhd', attn, v).reshape(b, nw, n, c)
    return _dense(c, self.dtype, 'proj')(y)


class Mlp(nn.Module):
  """Linear -> exact GELU -> Linear."""
  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Any) -> Any:
    c = x.shape[-1]
    x = nn.gelu(_dense(self.hidden, self.dtype, 'fc1')(x), approximate=False)
    return _dense(c, self.dtype, 'fc2')(x)


class SwinBlock(nn.Module):
  """Pre-norm (shifted) window attention and MLP, each with a residual.

  Attributes:
    num_heads: attention heads.
    window: (wh, ww) run-time window.
    shift: (sh, sw) cyclic shift; (0, 0) for a plain window block.
    table_window: window the bias table is sized for.
    mlp_ratio: MLP hidden size over the embedding size.
    drop_path: stochastic-depth rate of both residual branches.
    dtype: computation dtype.
  """
  num_heads: int
  window: Tuple[int, int]
  shift: Tuple[int, int]
  table_window: Tuple[int, int]
  mlp_ratio: float = 4.0
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Any, train: bool) -> Any:
    """Args: x: [B, H, W, C]. Returns: [B, H, W, C]."""
    _, h, w, c = x.shape
    (wh, ww), (sh, sw) = self.window, self.shift
    y = _layer_norm(self.dtype, 'norm1')(x)
    if sh or sw:
      y = jnp.roll(y, (-sh, -sw), axis=(1, 2))
    pad_h, pad_w = (wh - h % wh) % wh, (ww - w % ww) % ww
    y = jnp.pad(y, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    mask = shifted_window_mask((h, w), self.window, self.shift)
    y = WindowAttention(self.num_heads, self.window, self.table_window,
                        dtype=self.dtype, name='attn')(
                            _partition(y, self.window), mask)
    y = _merge(y, self.window, h + pad_h, w + pad_w)[:, :h, :w]
    if sh or sw:
      y = jnp.roll(y, (sh, sw), axis=(1, 2))
    x = x + _drop_path(self, y, self.drop_path, train)
    y = _layer_norm(self.dtype, 'norm2')(x)
    y = Mlp(int(c * self.mlp_ratio), dtype=self.dtype, name='mlp')(y)
    return x + _drop_path(self, y, self.drop_path, train)


class PatchMerging(nn.Module):
  """2x2 neighbourhood concat -> LayerNorm -> bias-free Linear 4C -> out."""
  out_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Any) -> Any:
    """Args: x: [B, H, W, C]. Returns: [B, ceil(H/2), ceil(W/2), out_dim]."""
    b, h, w, c = x.shape
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    h, w = x.shape[1], x.shape[2]
    # Channel order x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]
    # as in the reference code.
    x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 4, 2, 5)
    x = x.reshape(b, h // 2, w // 2, 4 * c)
    x = _layer_norm(self.dtype, 'norm')(x)
    return _dense(self.out_dim, self.dtype, 'reduction', use_bias=False)(x)


class SwinStage(nn.Module):
  """Optional patch merging, then a stack of Swin blocks.

  Attributes:
    dim: embedding size of the stage.
    depth: number of blocks.
    num_heads: attention heads.
    window_size: target window size.
    table_window: window the bias tables are sized for.
    downsample: whether the stage starts with patch merging.
    mlp_ratio: MLP hidden size over dim.
    drop_path: per-block stochastic-depth rates (depth of them).
    dtype: computation dtype.
  """
  dim: int
  depth: int
  num_heads: int
  window_size: Tuple[int, int]
  table_window: Tuple[int, int]
  downsample: bool
  mlp_ratio: float = 4.0
  drop_path: Sequence[float] = ()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Any, train: bool) -> Any:
    """Args: x: [B, H, W, C_in]. Returns: [B, H', W', dim]."""
    if self.downsample:
      x = PatchMerging(self.dim, dtype=self.dtype, name='downsample')(x)
    window, shift = window_and_shift(x.shape[1:3], self.window_size)
    for i in range(self.depth):
      x = SwinBlock(self.num_heads, window, shift if i % 2 else (0, 0),
                    self.table_window, mlp_ratio=self.mlp_ratio,
                    drop_path=self.drop_path[i], dtype=self.dtype,
                    name=f'blocks_{i}')(x, train)
    return x


class Swin(nn.Module):
  """Swin Transformer backbone with an optional classifier.

  Attributes:
    embed_dim: embedding size of the first stage (doubles every stage).
    depths: blocks per stage.
    num_heads: attention heads per stage.
    window_size: target attention window (clamped per stage, see module
      docstring).
    img_size: input size (int or (H, W)) that sizes the relative position
      bias tables; inputs of other sizes run as described in the module
      docstring.
    patch_size: patch embedding kernel and stride.
    mlp_ratio: MLP hidden size over the embedding size.
    drop_path_rate: stochastic-depth rate of the last block; rates grow
      linearly from 0 over all blocks.
    num_classes: size of the classifier ``head``; none when None.
    dtype: computation dtype; parameters stay float32.
  """
  embed_dim: int = 96
  depths: Sequence[int] = (2, 2, 6, 2)
  num_heads: Sequence[int] = (3, 6, 12, 24)
  window_size: int = 7
  img_size: Any = 224
  patch_size: int = 4
  mlp_ratio: float = 4.0
  drop_path_rate: float = 0.1
  num_classes: Optional[int] = None
  dtype: Any = jnp.float32

  @property
  def num_features(self) -> int:
    """Size of the pooled feature vector, e.g. 768 for Swin-T."""
    return self.embed_dim * 2**(len(self.depths) - 1)

  def table_windows(self) -> List[Tuple[int, int]]:
    """Per-stage window the relative position bias tables are sized for."""
    return [w for w, _ in stage_windows(self.img_size, self.patch_size,
                                        len(self.depths), self.window_size)]

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> dict:
    """Runs the network.

    Args:
      x: [B, H, W, 3] float images, already normalised with ``normalize``;
        H and W multiples of patch_size.
      train: enable stochastic depth (needs the 'dropout' rng) when True.

    Returns:
      dict with 'features': [B, num_features] float32 token-averaged features
      after the final LayerNorm, and 'logits': [B, num_classes] float32 when
      num_classes is set.
    """
    if len(self.depths) != len(self.num_heads):
      raise ValueError(f'depths {self.depths} and num_heads {self.num_heads} '
                       'differ in length.')
    p = self.patch_size
    if x.shape[1] % p or x.shape[2] % p:
      raise ValueError(f'Input size {x.shape[1:3]} is not a multiple of the '
                       f'patch size {p}.')
    x = PatchEmbed(self.embed_dim, p, dtype=self.dtype,
                   name='patch_embed')(x.astype(self.dtype))
    rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths)).tolist()
    tables = self.table_windows()
    start = 0
    for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
      x = SwinStage(self.embed_dim * 2**i, depth, heads,
                    _pair(self.window_size), tables[i], downsample=i > 0,
                    mlp_ratio=self.mlp_ratio,
                    drop_path=tuple(rates[start:start + depth]),
                    dtype=self.dtype, name=f'layers_{i}')(x, train)
      start += depth
    x = _layer_norm(self.dtype, 'norm')(x)
    # Pool and classify in float32, as resnet.ResNet does.
    features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    outputs = {'features': features}
    if self.num_classes is not None:
      outputs['logits'] = nn.Dense(self.num_classes, kernel_init=_dense_init,
                                   name='head')(features)
    return outputs


class PatchEmbed(nn.Module):
  """Non-overlapping patch conv ``proj`` followed by LayerNorm ``norm``."""
  embed_dim: int
  patch_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Any) -> Any:
    """Args: x: [B, H, W, 3]. Returns: [B, H/p, W/p, embed_dim]."""
    p = self.patch_size
    x = nn.Conv(self.embed_dim, (p, p), strides=(p, p), padding='VALID',
                dtype=self.dtype, name='proj')(x)
    return _layer_norm(self.dtype, 'norm')(x)


SwinT = functools.partial(Swin, embed_dim=96, depths=(2, 2, 6, 2),
                          num_heads=(3, 6, 12, 24))
SwinS = functools.partial(Swin, embed_dim=96, depths=(2, 2, 18, 2),
                          num_heads=(3, 6, 12, 24))
SwinB = functools.partial(Swin, embed_dim=128, depths=(2, 2, 18, 2),
                          num_heads=(4, 8, 16, 32))
# For tests only: a few thousand parameters, runs in milliseconds on CPU.
# Two blocks per stage so that the shifted-window path runs too.
SwinTiny = functools.partial(Swin, embed_dim=24, depths=(2, 2),
                             num_heads=(1, 2), window_size=2, img_size=32)
