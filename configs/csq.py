r"""CSQ (Yuan et al., CVPR 2020): central similarity quantization baseline.

hashjax/methods/csq.py; docs/methods/baselines.md §4.

  python -m hashjax.main --config=configs/csq.py
  python -m hashjax.main --config=configs/csq.py:bits=32
  python -m hashjax.main --config=configs/csq.py:runlocal   # smoke run

Hyper-parameters: quantization weight lam = 1e-4 (DeepHash-pytorch's CSQ
`lambda`); hash centres from the Hadamard matrix when bits is a power of
two (and 2 bits >= classes), else Bernoulli(0.5), seeded by `seed`.
Budget: AHCL's `quick` block (common.quick_cpu).
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, bits=64, runlocal=False)
  c = common.base_config('csq')
  c.bits = arg.bits
  c.loss.lam = 1e-4
  common.quick_cpu(c)
  c.eval.topk = (100,)
  if arg.runlocal:
    common.runlocal(c, 'resnet_tiny')
  return c
