r"""Spectral Hashing (Weiss, Torralba & Fergus, NIPS 2008) on frozen
ImageNet ResNet-50 features.

An unsupervised baseline beside LSH and PCA-ITQ; hashjax/methods/sh.py,
docs/methods/baselines.md §6.

  python -m hashjax.main --config=configs/sh.py[:bits=32]
  python -m hashjax.main --config=configs/sh.py:runlocal   # smoke run

No hyper-parameter (the paper's eps does not change which eigenfunctions
are kept). Features are extracted once per workdir (features.npz); no label
is read. Reported: mAP@R (R = the smallest database class) and mAP@all.
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, bits=64, runlocal=False)
  c = common.base_config('sh')
  c.bits = arg.bits
  c.input.update(image_size=64, eval_batch_size=128)
  c.eval.map_at_r = 0      # 0: the smallest database class size.
  if arg.runlocal:
    common.runlocal(c, 'resnet_tiny')
  return c
