r"""DPSH (Li, Wang & Kang, IJCAI 2016): a symmetric deep-hashing baseline.

hashjax/methods/dpsh.py; docs/methods/baselines.md §1.

  python -m hashjax.main --config=configs/dpsh.py
  python -m hashjax.main --config=configs/dpsh.py:bits=32
  python -m hashjax.main --config=configs/dpsh.py:runlocal   # smoke run

Hyper-parameters: eta = 10, the quantization weight of the authors'
DPSH-pytorch demo (the paper selects eta on a validation set), with both
terms divided by n b as there. Budget: AHCL's `quick` training block
(common.quick_cpu: same encoder, input, optimizer and epochs), so the
comparison is at equal cost; the paper's CNN-F / SGD schedule is not used.
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, bits=64, runlocal=False)
  c = common.base_config('dpsh')
  c.bits = arg.bits
  c.loss.eta = 10.0
  common.quick_cpu(c)
  c.eval.topk = (100,)
  if arg.runlocal:
    common.runlocal(c, 'resnet_tiny')
  return c
