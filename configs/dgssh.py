r"""DGSSH (Zhou et al., ESWA 2024), paper-intent mode. Spec: dgssh.md.

Issue 3 work in progress: the loss and the training run end to end, but
the defaults below are not tuned and no results are reported yet.

  python -m hashjax.main --config=configs/dgssh.py            # ResNet-50
  python -m hashjax.main --config=configs/dgssh.py:swin       # Swin-T, 64 px
  python -m hashjax.main --config=configs/dgssh.py:runlocal   # smoke run

Swin-T from scratch unless --config.model.pretrained=PATH names a timm or
Microsoft checkpoint (.pth / .safetensors).
"""
from configs import common


def get_config(arg=None):
  """Returns the DGSSH config; `arg` selects bits and a variant."""
  arg = common.parse_arg(arg, bits=64, swin=False, runlocal=False)
  c = common.base_config('dgssh')
  c.bits = arg.bits
  c.loss.lam = 200.0             # beta of the V step (spec §1.5).
  c.loss.soft_similarity = True  # S in {1, -r} for the V step (§1.5).
  c.loss.v_init = 'zeros'
  c.loss.alpha = 1.0             # CE weight.
  c.loss.label_smoothing = 0.1   # §1.4.3.
  c.loss.w_sim = 1.0
  c.loss.w_quant = 1.0
  c.loss.w_asym = 1.0
  c.loss.w_triplet = 1.0
  c.loss.margin = 0.6            # on unit-norm embeddings (d <= 2), §1.4.4.
  c.loss.lam_match = 1.0         # Yu et al.'s lambda default.
  c.loss.triplet_space = 'features'
  c.loss.match_grad = True

  common.quick_cpu(c)            # one DCC sweep per epoch (§1.5).
  if arg.swin:
    c.model.encoder = 'swin_t'
    c.model.pretrained = ''
  if arg.runlocal:
    common.runlocal(c, 'swin_tiny')
  return c
