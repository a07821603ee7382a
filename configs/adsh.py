r"""ADSH (Jiang & Li, AAAI 2018): asymmetric deep supervised hashing.

hashjax/methods/adsh.py (AHCL without its classification term);
docs/methods/baselines.md §5, docs/methods/ahcl.md §1.4-1.7.

  python -m hashjax.main --config=configs/adsh.py
  python -m hashjax.main --config=configs/adsh.py:bits=32
  python -m hashjax.main --config=configs/adsh.py:runlocal   # smoke run

Hyper-parameters of the paper / ADSH_pytorch: gamma = 200 (`lam` here, as
in AHCL), S in {1, -1} (`soft_similarity=False`), V initialised to 0.
The paper samples |Omega| = 2000 database points per outer iteration
(50 iterations x 3 epochs); here the rounds are AHCL's `quick` block (all
training images per round, common.quick_cpu) for an equal budget.
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, bits=64, runlocal=False)
  c = common.base_config('adsh')
  c.bits = arg.bits
  c.loss.lam = 200.0
  c.loss.soft_similarity = False
  c.loss.v_init = 'zeros'
  common.quick_cpu(c)
  c.eval.topk = (100,)
  if arg.runlocal:
    common.runlocal(c, 'resnet_tiny')
  return c
