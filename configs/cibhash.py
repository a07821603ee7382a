r"""CIBHash (Qiu et al., IJCAI 2021): unsupervised contrastive hashing.

hashjax/methods/cibhash.py; docs/methods/baselines.md §7. No label is read.

  python -m hashjax.main --config=configs/cibhash.py
  python -m hashjax.main --config=configs/cibhash.py:bits=32
  python -m hashjax.main --config=configs/cibhash.py:runlocal   # smoke run

Hyper-parameters of the released code: temperature tau = 0.3, KL weight
beta = 0.001. Views: random resized crop (area >= 0.5), flip, colour jitter
0.4 (p = 0.8) and grayscale (p = 0.2), drawn in-graph from the pipeline's
(flip/rot90-augmented) image. Budget: AHCL's `quick` block
(common.quick_cpu); each step encodes 2 views, so it costs about twice an
AHCL step.
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, bits=64, runlocal=False)
  c = common.base_config('cibhash')
  c.bits = arg.bits
  c.loss.temperature = 0.3
  c.loss.weight = 0.001
  c.loss.crop_min = 0.5
  c.loss.jitter = 0.4
  c.loss.jitter_p = 0.8
  c.loss.gray_p = 0.2
  common.quick_cpu(c)
  c.eval.topk = (100,)
  if arg.runlocal:
    common.runlocal(c, 'resnet_tiny')
  return c
