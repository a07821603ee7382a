r"""DSH (Liu, Wang, Shan & Chen, CVPR 2016): a deep-hashing baseline.

hashjax/methods/dsh.py; docs/methods/baselines.md §3.

  python -m hashjax.main --config=configs/dsh.py
  python -m hashjax.main --config=configs/dsh.py:bits=32
  python -m hashjax.main --config=configs/dsh.py:runlocal   # smoke run

Hyper-parameters of the paper (§3.2, §4.1): margin m = 2 k (k = bits;
`margin_per_bit` = 2) and regulariser weight alpha = 0.01. Budget: AHCL's
`quick` block (common.quick_cpu), not the paper's small CNN trained from
scratch (batch 200, lr 1e-3, weight decay 0.004).
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, bits=64, runlocal=False)
  c = common.base_config('dsh')
  c.bits = arg.bits
  c.loss.margin_per_bit = 2.0
  c.loss.alpha = 0.01
  common.quick_cpu(c)
  c.eval.topk = (100,)
  if arg.runlocal:
    common.runlocal(c, 'resnet_tiny')
  return c
