r"""MrHash (Sun et al., TGRS 2022), unsupervised. Spec: ../shared/specs/mrhash.md.

  python -m hashjax.main --config=configs/mrhash.py[:bits=32]
  python -m hashjax.main --config=configs/mrhash.py:single   # one source
  python -m hashjax.main --config=configs/mrhash.py:runlocal # smoke run

Default: the bundled RSSCN7 64 px as source 1 and a synthetic second
sensor (hashjax/data/views.py: band mix + halved resolution) as source 2:
a stand-in for a real co-registered second sensor. Other sources:
--config.data.extra_sources="('/data/sentinel1',)" (paired by relative
path). The hashing network is ResNet-50 (ImageNet), standing in for the
paper's AlexNet, on the CPU training block of common.quick_cpu. No label
is read before evaluation.
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, bits=64, single=False, runlocal=False)
  c = common.base_config('mrhash')
  c.bits = arg.bits
  c.data.extra_sources = () if arg.single else ('view:second_sensor',)
  c.loss.lambda0 = 5.0           # reconstruction weight, hashing stage (§1.5)
  c.loss.kl_reduction = 'mean'   # torch F.kl_div default: / (B K) (§1.5)
  c.loss.alpha = 1.0             # Student's-t degrees of freedom (§1.3)
  c.loss.clusters = 16           # k-means K (§1.3)
  c.loss.latent = 64
  c.loss.ae_weights = (0.1, 1.0)  # AE stage: source 1, source 2 (§1.2)
  c.loss.ae_epochs = 200
  c.loss.ae_batch = 512
  c.loss.ae_lr = 1e-3
  c.loss.kmeans_restarts = 20
  common.quick_cpu(c)            # P refreshed every epoch (= round).
  c.eval.map_at_r = 0            # report mAP@R, R = smallest db class.
  if arg.runlocal:
    common.runlocal(c, 'resnet_tiny')
    c.loss.update(ae_epochs=3, ae_batch=64, kmeans_restarts=2, clusters=4,
                  latent=8)
  return c
