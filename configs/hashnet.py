r"""HashNet (Cao, Long, Wang & Yu, ICCV 2017): a deep-hashing baseline.

hashjax/methods/hashnet.py; docs/methods/baselines.md §2.

  python -m hashjax.main --config=configs/hashnet.py
  python -m hashjax.main --config=configs/hashnet.py:bits=32
  python -m hashjax.main --config=configs/hashnet.py:runlocal   # smoke run

Hyper-parameters of the released code (HashNet/pytorch/src/train.py):
sigmoid bandwidth alpha = 10 / bits (`sigmoid_param`), continuation
h = tanh(beta z) with beta = (1 + 0.005 step)^0.5 (init_scale 1, gamma
0.005, power 0.5); pair weights |S|/|S_1| and |S|/|S_0| as in the paper
(the released code's `class_num` re-weighting is not used). Budget: AHCL's
`quick` block (common.quick_cpu), not the paper's AlexNet / SGD schedule.
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, bits=64, runlocal=False)
  c = common.base_config('hashnet')
  c.bits = arg.bits
  c.loss.alpha = 10.0 / arg.bits
  c.loss.beta_init = 1.0
  c.loss.beta_gamma = 0.005
  c.loss.beta_power = 0.5
  common.quick_cpu(c)
  c.eval.topk = (100,)
  if arg.runlocal:
    common.runlocal(c, 'resnet_tiny')
  return c
