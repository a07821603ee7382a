r"""PCA-ITQ (Gong & Lazebnik, CVPR 2011) on frozen ImageNet ResNet-50 features.

An unsupervised baseline for MrHash (issue 4); hashjax/methods/itq.py.

  python -m hashjax.main --config=configs/itq.py[:bits=32]
  python -m hashjax.main --config=configs/itq.py:runlocal   # smoke run, 16 bits

Features are extracted once per workdir (features.npz); no label is read.
Reported: mAP@R (R = the smallest database class; eval.map_at_r overrides)
and mAP@all.
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, bits=64, runlocal=False)
  c = common.base_config('itq')
  c.bits = arg.bits
  c.input.update(image_size=64, eval_batch_size=128)
  c.eval.map_at_r = 0      # 0: the smallest database class size.
  c.loss.itq_iterations = 50
  if arg.runlocal:
    common.runlocal(c, 'resnet_tiny')
    # PCA keeps at most as many directions as the tiny encoder's 16
    # features: the smoke run hashes to at most 16 bits.
    c.bits = min(c.bits, 16)
  return c
