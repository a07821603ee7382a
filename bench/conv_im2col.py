"""XLA:CPU convolution vs the im2col/matmul forms used in models/resnet.py.

Prints, for the 3x3 and 1x1 convs of ResNet-50 on 64 px inputs (batch 64),
milliseconds for forward and for forward+backward (input and weight
gradients) through lax.conv and through hashjax's `Conv` path, and the ratio.

  python bench/conv_im2col.py
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from hashjax.models import resnet

# (name, spatial size, in channels, out channels, kernel, stride)
SHAPES = [
    ('3x3 stage2 @16x16', 16, 64, 64, 3, 1),
    ('3x3 stage3 @8x8', 8, 128, 128, 3, 1),
    ('3x3 stage4 @4x4', 4, 256, 256, 3, 1),
    ('3x3 stage5 @2x2', 2, 512, 512, 3, 1),
    ('1x1 64->256 @16x16', 16, 64, 256, 1, 1),
    ('1x1 s2 256->128 @16x16', 16, 256, 128, 1, 2),
    ('1x1 512->2048 @2x2', 2, 512, 2048, 1, 1),
    # v1.5 (torchvision) layout: the stride sits on the 3x3 conv.
    ('3x3 s2 stage3 @16x16', 16, 128, 128, 3, 2),
    ('3x3 s2 stage4 @8x8', 8, 256, 256, 3, 2),
    ('3x3 s2 stage5 @4x4', 4, 512, 512, 3, 2),
    ('7x7 s2 stem @64x64', 64, 3, 64, 7, 2),
]


def _time(fn, *args, repeats=5):
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - start) / repeats * 1e3


def _lax_conv(x, w, stride):
  pad = w.shape[0] // 2
  return jax.lax.conv_general_dilated(
      x, w, (stride, stride), ((pad, pad), (pad, pad)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def main(batch=64):
  rng = np.random.default_rng(0)
  print(f'{"conv":26s} {"lax fwd":>8s} {"ours fwd":>9s} {"ratio":>6s} '
        f'{"lax f+b":>8s} {"ours f+b":>9s} {"ratio":>6s}   (ms, batch {batch})')
  for name, size, cin, cout, k, s in SHAPES:
    x = jnp.asarray(rng.random((batch, size, size, cin), np.float32))
    conv = resnet.Conv(cout, k, strides=s, use_bias=False)
    params = conv.init(jax.random.key(0), x)
    w = params['params']['kernel']
    ours = jax.jit(lambda p, x, conv=conv: conv.apply(p, x))
    ref = jax.jit(lambda w, x, s=s: _lax_conv(x, w, s))
    ours_g = jax.jit(jax.grad(lambda p, x, conv=conv: conv.apply(p, x).sum(),
                              (0, 1)))
    ref_g = jax.jit(jax.grad(lambda w, x, s=s: _lax_conv(x, w, s).sum(),
                             (0, 1)))
    np.testing.assert_allclose(ours(params, x), ref(w, x), rtol=2e-4,
                               atol=2e-3)
    tf, of = _time(ref, w, x), _time(ours, params, x)
    tb, ob = _time(ref_g, w, x), _time(ours_g, params, x)
    print(f'{name:26s} {tf:8.2f} {of:9.2f} {tf / of:5.1f}x {tb:8.2f} {ob:9.2f} '
          f'{tb / ob:5.1f}x')


if __name__ == '__main__':
  main()
