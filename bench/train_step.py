r"""One full training step in hashjax and in timm/PyTorch, side by side.

For each encoder (Swin-T, ResNet-50 v1.5) at the same batch size and image
size, both frameworks run the same network and step: encoder -> 64-bit tanh
hash layer -> classifier on the codes, loss = cross-entropy + mean u^2,
backward, AdamW update; BatchNorm in training mode, drop path 0.1 (Swin).
Prints images/s (median over timed steps, after warm-up/compilation) and
the ratio hashjax / PyTorch.

  python bench/train_step.py                        # 64 px, batch 32
  python bench/train_step.py --size=224 --batch=8 --steps=3

Needs torch and timm (the `parity` extra). On a CPU both use every core;
torch's thread count is set to os.cpu_count().
"""
import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from hashjax.models import encoders
from hashjax.models import heads

BITS, CLASSES = 64, 7
# (label, hashjax encoder, timm model name)
MODELS = [('Swin-T', 'swin_t', 'swin_tiny_patch4_window7_224'),
          ('ResNet-50', 'resnet50_tv', 'resnet50')]


def _import_timm():
  import torch  # pylint: disable=g-import-not-at-top
  try:  # torchvision's CUDA wheel on CPU torch: see tests/torch_util.py.
    lib = torch.library.Library('torchvision', 'DEF')
    lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    lib.define('qnms(Tensor qdets, Tensor qscores, float iou_threshold) '
               '-> Tensor')
    _import_timm.lib = lib
  except RuntimeError:
    pass
  import timm  # pylint: disable=g-import-not-at-top
  return torch, timm


def _timed(step, steps, warmup):
  for _ in range(warmup):
    step()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def hashjax_step(encoder_name, size, batch, steps, warmup):
  c = ml_collections.ConfigDict(dict(encoder=encoder_name, bn_momentum=0.9,
                                     drop_path_rate=0.1))
  encoder, normalize = encoders.build(c, size)
  model = heads.HashModel(encoder, normalize, bits=BITS, num_classes=CLASSES)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (batch, size, size, 3)), jnp.uint8)
  labels = jax.nn.one_hot(rng.integers(0, CLASSES, batch), CLASSES)
  variables = model.init(jax.random.key(0), images[:1], train=False)
  params = variables.pop('params')
  tx = optax.adamw(1e-4, weight_decay=1e-4)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, model_state, opt_state, key):
    def loss_fn(p):
      out, new_state = model.apply({'params': p, **model_state}, images,
                                   train=True, mutable=list(model_state),
                                   rngs={'dropout': key})
      ce = optax.softmax_cross_entropy(out['logits'], labels).mean()
      return ce + jnp.mean(out['u'] ** 2), new_state
    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_state, opt_state, loss

  state = [params, dict(variables), opt_state, jax.random.key(1)]

  def run():
    params, model_state, opt_state, key = state
    key, sub = jax.random.split(key)
    *new, loss = step(params, model_state, opt_state, sub)
    jax.block_until_ready(loss)
    state[:] = [*new, key]

  return batch / _timed(run, steps, warmup)


def torch_step(torch, timm, timm_name, size, batch, steps, warmup):
  kw = dict(img_size=size, drop_path_rate=0.1) if 'swin' in timm_name else {}
  torch.manual_seed(0)
  backbone = timm.create_model(timm_name, pretrained=False, num_classes=0,
                               **kw)
  hash_layer = torch.nn.Linear(backbone.num_features, BITS)
  cls = torch.nn.Linear(BITS, CLASSES)
  modules = torch.nn.ModuleList([backbone, hash_layer, cls]).train()
  opt = torch.optim.AdamW(modules.parameters(), lr=1e-4, weight_decay=1e-4)
  rng = np.random.default_rng(0)
  images = torch.from_numpy(rng.integers(0, 256, (batch, 3, size, size)).astype(
      np.float32))
  mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
  std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
  labels = torch.from_numpy(rng.integers(0, CLASSES, batch))

  def run():
    x = (images - mean) / std       # normalisation inside the step, as ours
    u = torch.tanh(hash_layer(backbone(x)))
    loss = torch.nn.functional.cross_entropy(cls(u), labels) + (u ** 2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

  return batch / _timed(run, steps, warmup)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--size', type=int, default=64)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--steps', type=int, default=5, help='timed steps')
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--models', default='Swin-T,ResNet-50')
  args = parser.parse_args()
  torch, timm = _import_timm()
  torch.set_num_threads(os.cpu_count())
  print(f'{jax.devices()[0].platform} ({jax.device_count()} device(s)), '
        f'{os.cpu_count()} CPU cores, torch {torch.__version__} with '
        f'{torch.get_num_threads()} threads, jax {jax.__version__}; '
        f'batch {args.batch}, {args.size} px, fp32, median of {args.steps} '
        'steps')
  rows = []
  for label, ours, theirs in MODELS:
    if label not in args.models.split(','):
      continue
    a = hashjax_step(ours, args.size, args.batch, args.steps, args.warmup)
    b = torch_step(torch, timm, theirs, args.size, args.batch, args.steps,
                   args.warmup)
    rows.append((label, a, b))
    print(f'  {label}: hashjax {a:.1f} img/s, PyTorch {b:.1f} img/s',
          flush=True)
  print(f'\n| model | size | batch | hashjax img/s | PyTorch img/s | ratio |')
  print('|---|---|---|---|---|---|')
  for label, a, b in rows:
    print(f'| {label} | {args.size} | {args.batch} | {a:.1f} | {b:.1f} | '
          f'{a / b:.2f}x |')


if __name__ == '__main__':
  main()
