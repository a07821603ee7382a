r"""AHCL: Asymmetric Hash Code Learning (Song et al., TGRS 2022).

See docs/methods/ahcl.md (§1 training, §2 evaluation).

Default (`quick`), the bundled RSSCN7 64 px data on a 2-core CPU, < 10 min:

  python -m hashjax.main --config=configs/ahcl.py

Variants (argument string after the file name):
  configs/ahcl.py:bits=32           code length
  configs/ahcl.py:released          the released code's defaults (§1.8):
                                    30 rounds x 2 epochs, m = n, lambda=200,
                                    gamma=20, SGD 1e-3 (no momentum, wd 5e-4)
                                    /10 after rounds 10 and 20, batch 64,
                                    Resize 256 -> CenterCrop 224.
  configs/ahcl.py:quick,runlocal    a seconds-long smoke run (tiny encoder).

Any value can then be overridden: --config.bits=16 --config.data.name=folder
--config.data.root=/data/UCMerced_LandUse/Images.
"""
from configs import common


def get_config(arg=None):
  """Returns the AHCL config; `arg` selects bits and a variant."""
  arg = common.parse_arg(arg, bits=64, quick=False, released=False,
                         runlocal=False)
  c = common.base_config('ahcl')
  c.bits = arg.bits

  # ADSH objective + classification term, docs/methods/ahcl.md §1.5. gamma weighs the CE,
  # lam the quantization term (§4 item 1: the names are swapped vs ADSH).
  c.loss.lam = 200.0
  c.loss.gamma = 20.0
  c.loss.soft_similarity = True   # S in {1, -r} (§1.4); False: {1, -1}.
  c.loss.v_init = 'zeros'         # V = 0 at t = 0 (§1.6, §4 item 5).

  if arg.released:
    # The released code's effective defaults (§1.6-1.8) on a ResNet-50
    # (the code's `--arch resnet50` path; VGG-11 weights are not bundled).
    c.train.rounds = 30
    c.train.epochs_per_round = 2
    c.train.samples_per_round = 0    # m = n (§1.6).
    c.input.batch_size = 64
    c.input.resize_size = 256
    c.input.image_size = 224
    c.optim.update(name='sgd', lr=1e-3, momentum=0.0, weight_decay=5e-4,
                   schedule='piecewise', boundaries=(11, 21), decay=0.1)
  else:
    # quick: < 10 minutes on 2 CPU cores (README results). Why AdamW: the
    # pair term's gradient spikes when V first appears (norm 1.7e3).
    common.quick_cpu(c)
  c.eval.topk = (100,)

  if arg.runlocal:
    common.runlocal(c, 'resnet_tiny')
  return c
