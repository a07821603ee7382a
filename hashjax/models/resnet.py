"""ResNet backbones in Flax Linen, in two weight layouts.

Two variants of ResNet "v1" exist in the wild and their pretrained weights are
not interchangeable:

* ``'keras'``: the original Caffe ResNet (Kaiming He's release), also shipped
  as Keras Applications ``ResNet50``. The block stride sits on the first 1x1
  conv of a bottleneck, every conv has a bias and BatchNorm uses epsilon 1e-3.
  Inputs are caffe-normalised: BGR, mean-subtracted, no scaling.
* ``'torchvision'``: "v1.5" as in torchvision/timm. The stride sits on the 3x3
  conv, convs have no bias and BatchNorm uses epsilon 1e-5. Inputs are scaled
  to [0, 1] and standardised with the ImageNet mean/std.

Submodules are flat and named after the Caffe/Keras layers (``conv1``,
``bn_conv1``, ``res2a_branch2a``, ``bn2a_branch2a``, ``res2a_branch1``, ...,
classifier ``fc``), whatever the layout, so that importing any checkpoint is a
name-mapping function (see ``hashjax.models.weights``).
"""

import dataclasses
import functools
import string
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Per-layout input normalisation, shared with the tf.data pipeline so the
# numbers live in one place. Apply as
#   x = x[..., ::-1] if bgr else x     # x: float RGB in [0, 255]
#   x = (x - mean) / std
# mean and std are on the [0, 255] scale and in the channel order *after* the
# optional RGB->BGR flip.
NORMALIZATION = {
    # Caffe: BGR, subtract the B, G, R means, no scaling.
    'keras': dict(mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0),
                  bgr=True),
    # torchvision: (x / 255 - m) / s == (x - 255 m) / (255 s).
    'torchvision': dict(mean=(0.485 * 255, 0.456 * 255, 0.406 * 255),
                        std=(0.229 * 255, 0.224 * 255, 0.225 * 255),
                        bgr=False),
}


@dataclasses.dataclass(frozen=True)
class LayoutSpec:
  """Architecture details that differ between weight layouts.

  Attributes:
    conv_bias: whether every conv has a bias.
    bn_epsilon: BatchNorm epsilon the weights were trained with.
    stride_on_1x1: whether a bottleneck's stride sits on its first 1x1 conv
      (Caffe v1) rather than on its 3x3 conv (v1.5).
  """
  conv_bias: bool
  bn_epsilon: float
  stride_on_1x1: bool


LAYOUTS = {
    'keras': LayoutSpec(conv_bias=True, bn_epsilon=1e-3, stride_on_1x1=True),
    'torchvision': LayoutSpec(conv_bias=False, bn_epsilon=1e-5,
                              stride_on_1x1=False),
}

# Output channels of a block relative to its stage width.
_EXPANSION = {'bottleneck': 4, 'basic': 1}


def _check_layout(layout: str) -> None:
  if layout not in LAYOUTS:
    raise ValueError(
        f'Unknown ResNet layout {layout!r}; expected one of {sorted(LAYOUTS)}.')


def normalize(x: Any, layout: str) -> Any:
  """Normalises images for a given layout.

  Args:
    x: [..., H, W, 3] RGB images with values in [0, 255] (uint8 or float), a
      numpy or a jax array.
    layout: a key of ``NORMALIZATION``.

  Returns:
    float32 array of the same shape and array type, ready for ``ResNet``.
  """
  _check_layout(layout)
  spec = NORMALIZATION[layout]
  x = x.astype(np.float32)
  if spec['bgr']:
    x = x[..., ::-1]
  mean = np.asarray(spec['mean'], np.float32)
  std = np.asarray(spec['std'], np.float32)
  return (x - mean) / std


def _block_letter(index: int) -> str:
  """Caffe block label: 0 -> 'a', 1 -> 'b', ..."""
  if index >= len(string.ascii_lowercase):
    raise ValueError(f'At most 26 blocks per stage are supported, got {index}.')
  return string.ascii_lowercase[index]


class Conv(nn.Module):
  """2-D convolution with symmetric k//2 padding; params as nn.Conv.

  XLA:CPU's convolution is pathological for a 3x3 kernel on tiny feature
  maps: 2.9 GFLOP/s on a 2x2x512 map (ResNet-50 stage 5 at 64 px input),
  520 ms for a batch of 64, most of the network's time. Maps of up to 16
  pixels run as im2col + one matmul instead (2x2: 133x faster forward, 61x
  forward+backward; 4x4: a wash, 1.1x / 0.8x); larger maps keep lax.conv.
  1x1 convs are matmuls (1.5-4.8x faster forward+backward). Same results to
  ~1e-6. Measured by bench/conv_im2col.py.
  """
  features: int
  kernel: int
  strides: int = 1
  use_bias: bool = True
  kernel_init: Any = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, s = self.kernel, self.strides
    w = self.param('kernel', self.kernel_init,
                   (k, k, x.shape[-1], self.features)).astype(self.dtype)
    pad = k // 2
    out_h = (x.shape[1] + 2 * pad - k) // s + 1
    out_w = (x.shape[2] + 2 * pad - k) // s + 1
    if k == 1:
      # As a matmul, the 1x1 conv's weight gradient is 2-3x faster on CPU.
      y = x[:, ::s, ::s] @ w[0, 0]
    elif out_h * out_w <= IM2COL_MAX_PIXELS:
      y = _im2col_conv(x, w, s, out_h, out_w)
    else:
      y = jax.lax.conv_general_dilated(
          x, w, (s, s), ((pad, pad), (pad, pad)),
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros,
                         (self.features,)).astype(self.dtype)
    return y


# Output maps up to this many pixels use im2col (see Conv).
IM2COL_MAX_PIXELS = 16


def _im2col_conv(x, w, stride, out_h, out_w):
  """k//2-padded conv as [B, out_h, out_w, k*k*C] @ [k*k*C, F]."""
  k = w.shape[0]
  p = k // 2
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  cols = jnp.concatenate(
      [xp[:, i:i + stride * (out_h - 1) + 1:stride,
          j:j + stride * (out_w - 1) + 1:stride, :]
       for i in range(k) for j in range(k)], axis=-1)
  return cols @ w.reshape(-1, w.shape[-1])


class ResNet(nn.Module):
  """ResNet v1 backbone with an optional classifier.

  Attributes:
    stage_sizes: number of blocks in each stage, e.g. (3, 4, 6, 3).
    block: 'bottleneck' (ResNet-50 and up) or 'basic' (ResNet-18/34).
    layout: 'keras' (Caffe v1) or 'torchvision' (v1.5), see module docstring.
    num_classes: size of the classifier ``fc``; no classifier when None.
    width: channels of the stem and of the first stage (64 for real ResNets).
    bn_momentum: running-statistics decay (Flax convention: 0.9 == torch 0.1).
    dtype: computation dtype; parameters stay float32.
  """
  stage_sizes: Sequence[int]
  block: str = 'bottleneck'
  layout: str = 'keras'
  num_classes: Optional[int] = None
  width: int = 64
  bn_momentum: float = 0.9
  dtype: Any = jnp.float32

  @property
  def num_features(self) -> int:
    """Size of the pooled feature vector, e.g. 2048 for ResNet-50."""
    last_stage_width = self.width * 2**(len(self.stage_sizes) - 1)
    return last_stage_width * _EXPANSION[self.block]

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> dict:
    """Runs the network.

    Args:
      x: [B, H, W, 3] float images, already normalised with ``normalize``.
      train: use batch statistics and update ``batch_stats`` (must then be
        mutable) when True; use running statistics when False.

    Returns:
      dict with 'features': [B, num_features] float32 globally average-pooled
      features, and 'logits': [B, num_classes] float32 when num_classes is set.
    """
    _check_layout(self.layout)
    if self.block not in _EXPANSION:
      raise ValueError(f'Unknown block {self.block!r}; expected one of '
                       f'{sorted(_EXPANSION)}.')
    x = self._stem(x.astype(self.dtype), train)
    block_fn = (self._bottleneck if self.block == 'bottleneck'
                else self._basic)
    for stage, num_blocks in enumerate(self.stage_sizes):
      for index in range(num_blocks):
        # Caffe names stages from 2 (conv1 is the stem).
        name = f'{stage + 2}{_block_letter(index)}'
        strides = 2 if stage > 0 and index == 0 else 1
        x = block_fn(x, name, self.width * 2**stage, strides, train)
    # Pool and classify in float32: cheap, and keeps features precise in bf16.
    features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    outputs = {'features': features}
    if self.num_classes is not None:
      outputs['logits'] = nn.Dense(self.num_classes, name='fc')(features)
    return outputs

  def _conv(self, x, name, features, kernel, strides=1):
    """Conv with the layout's bias; 3x3 and 7x7 get symmetric padding."""
    # Explicit symmetric padding: Flax 'SAME' pads (0, 1) for stride 2 on even
    # inputs, while Caffe/Keras (via ZeroPadding2D) and torch pad (k//2, k//2).
    return Conv(
        features, kernel, strides=strides,
        use_bias=LAYOUTS[self.layout].conv_bias,
        kernel_init=nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
        dtype=self.dtype,
        name=name)(x)

  def _bn(self, x, name, train):
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=self.bn_momentum,
        epsilon=LAYOUTS[self.layout].bn_epsilon,
        dtype=self.dtype,
        name=name)(x)

  def _conv_bn(self, x, name, features, kernel, strides, train):
    """Conv ``res{name}`` followed by its BatchNorm ``bn{name}``."""
    x = self._conv(x, f'res{name}', features, kernel, strides)
    return self._bn(x, f'bn{name}', train)

  def _stem(self, x, train):
    x = self._conv(x, 'conv1', self.width, 7, strides=2)
    x = nn.relu(self._bn(x, 'bn_conv1', train))
    # Inputs are post-ReLU (>= 0), so max_pool's -inf padding is equivalent to
    # Keras' zero padding.
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

  def _shortcut(self, x, name, features, strides, train):
    """Identity, or a strided 1x1 projection ``branch1`` when shapes change."""
    if strides == 1 and x.shape[-1] == features:
      return x
    return self._conv_bn(x, f'{name}_branch1', features, 1, strides, train)

  def _bottleneck(self, x, name, width, strides, train):
    """1x1 (width) -> 3x3 (width) -> 1x1 (4 width) bottleneck block."""
    on_1x1 = LAYOUTS[self.layout].stride_on_1x1
    shortcut = self._shortcut(x, name, 4 * width, strides, train)
    y = self._conv_bn(x, f'{name}_branch2a', width, 1,
                      strides if on_1x1 else 1, train)
    y = self._conv_bn(nn.relu(y), f'{name}_branch2b', width, 3,
                      1 if on_1x1 else strides, train)
    y = self._conv_bn(nn.relu(y), f'{name}_branch2c', 4 * width, 1, 1, train)
    return nn.relu(y + shortcut)

  def _basic(self, x, name, width, strides, train):
    """3x3 -> 3x3 basic block; the stride is on the first 3x3 in any layout."""
    shortcut = self._shortcut(x, name, width, strides, train)
    y = self._conv_bn(x, f'{name}_branch2a', width, 3, strides, train)
    y = self._conv_bn(nn.relu(y), f'{name}_branch2b', width, 3, 1, train)
    return nn.relu(y + shortcut)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block='basic')
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                             block='bottleneck')
# For tests only: a few thousand parameters, runs in milliseconds on CPU.
ResNetTiny = functools.partial(ResNet, stage_sizes=(1, 1), block='basic',
                               width=8)
