r"""MrHash (Sun et al., TGRS 2022), unsupervised. docs/methods/mrhash.md explains the paper and the released code.

  python -m hashjax.main --config=configs/mrhash.py[:bits=32]
  python -m hashjax.main --config=configs/mrhash.py:single   # one source
  python -m hashjax.main --config=configs/mrhash.py:runlocal # smoke run
  python -m hashjax.main --config=configs/mrhash.py:released # the code's run

Default: the bundled RSSCN7 64 px as source 1 and a synthetic second
sensor (hashjax/data/views.py: band mix + halved resolution) as source 2:
a stand-in for a real co-registered second sensor. Other sources:
--config.data.extra_sources="('/data/sentinel1',)" (paired by relative
path). The hashing network is ResNet-50 (ImageNet), standing in for the
paper's AlexNet, on the CPU training block of common.quick_cpu. No label
is read before evaluation.

Measured at 64 bits on the bundled data (mAP@R / mAP@all, README): the
released-like raw features and one lr of 1e-4 gave 0.3827 / 0.3085; two
learning rates (1e-3, backbone 1e-4) 0.4039 / 0.3315; plus L2-normalised
features (k-means purity of the latents 0.52 -> 0.63) 0.4386 / 0.3790;
16 instead of 8 epochs 0.4400 / 0.3816 for twice the time; the backbone at
3e-4 0.4461 / 0.3889; plus the per-sample KL (batchmean) 0.4604 / 0.4018,
the default.

`released` reproduces what sunyuxi/MrHash@1ac2f7b effectively trains
(§1.1-1.6, §2): EuroSAT (TFDS eurosat/rgb, 100 queries per class, mAP@R
with R = 1900), frozen features and hashing network at 224 px from
Resize 256 (+ CenterCrop 224 for features and evaluation, RandomResizedCrop
224 + flip for training), batch 128, 51 epochs, Adam 1e-3 for the head, AE
and centres and 1e-5 (encoder_lr_mult 0.01) for the backbone, x0.7 every 10
epochs; raw features; the final AE epoch (not the test-label choice, §4.3).
The authors' VHR second source is on their Google Drive only: pass it with
--config.data.extra_sources="('/data/eurosat_vhr',)" (a folder with the same
relative paths); the default keeps the synthetic view. The backbone stays
ResNet-50 (the code: ImageNet AlexNet fc7).
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, bits=64, single=False, released=False,
                         runlocal=False)
  c = common.base_config('mrhash')
  c.bits = arg.bits
  c.data.extra_sources = () if arg.single else ('view:second_sensor',)
  c.loss.lambda0 = 5.0           # reconstruction weight, hashing stage (§1.5)
  # The KL itself, per sample (batchmean); the released code's torch default
  # 'mean' also divides by K = 16 (§1.5, §4.2 item 6): `released` keeps it.
  c.loss.kl_reduction = 'batchmean'
  c.loss.alpha = 1.0             # Student's-t degrees of freedom (§1.3)
  c.loss.clusters = 16           # k-means K (§1.3)
  c.loss.latent = 64
  c.loss.feature_norm = 'l2'     # released: 'none', raw features (§1.1)
  c.loss.ae_weights = (0.1, 1.0)  # AE stage: source 1, source 2 (§1.2)
  c.loss.ae_epochs = 200
  c.loss.ae_batch = 512
  c.loss.ae_lr = 1e-3
  c.loss.kmeans_restarts = 20
  common.quick_cpu(c)            # P refreshed every epoch (= round).
  # Two learning rates as released (§1.6): head, AE and centres at 1e-3, the
  # backbone at 3e-4 (released 1e-5 over 51 epochs; we train 8).
  c.optim.update(lr=1e-3, encoder_lr_mult=0.3)
  c.eval.map_at_r = 0            # report mAP@R, R = smallest db class.
  if arg.released:
    c.data.update(name='eurosat/rgb', protocol='eurosat_mrhash')
    c.input.update(batch_size=128, image_size=224, resize_size=256,
                   augment='rrc_flip')
    c.train.update(rounds=51, epochs_per_round=1, samples_per_round=0)
    c.optim.update(name='adamw', lr=1e-3, weight_decay=0.0,
                   schedule='piecewise', boundaries=(10, 20, 30, 40, 50),
                   decay=0.7, warmup_steps=0, encoder_lr_mult=0.01)
    c.loss.update(feature_norm='none', kl_reduction='mean')
    c.eval.map_at_r = 1900
  if arg.runlocal:
    common.runlocal(c, 'resnet_tiny')
    c.loss.update(ae_epochs=3, ae_batch=64, kmeans_restarts=2, clusters=4,
                  latent=8)
  return c
