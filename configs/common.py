"""Building blocks shared by every method config.

A method config (`configs/<method>.py`) calls these and changes only what the
method needs. `parse_arg` turns the argument string after the config path
(`configs/ahcl.py:bits=32,quick`) into a ConfigDict, as big_vision's
`configs/common.py:parse_arg` does.
"""
import ml_collections


def parse_arg(arg, **defaults):
  """Parses `k=v,flag,...` into a ConfigDict with typed defaults.

  Args:
    arg: the string after ':' in `--config=path.py:arg` (may be None/'').
    **defaults: known keys and their default values; a bare word `flag`
      sets a bool default to True. Unknown keys are an error.

  Returns:
    A ConfigDict with one entry per default.
  """
  out = ml_collections.ConfigDict(dict(defaults))
  for part in filter(None, (arg or '').split(',')):
    key, sep, value = part.partition('=')
    key = key.strip()
    if key not in defaults:
      raise ValueError(
          f'Unknown config argument {key!r} in {arg!r}; known: '
          f'{", ".join(sorted(defaults))}.')
    default = defaults[key]
    if not sep:
      if not isinstance(default, bool):
        raise ValueError(f'Config argument {key!r} needs a value ({key}=...).')
      out[key] = True
    elif isinstance(default, bool):
      out[key] = value.lower() in ('1', 'true', 'yes', 'on')
    else:
      out[key] = type(default)(value)
  return out


def data_config(name='rsscn7_64'):
  """Dataset block. `name`: 'rsscn7_64' (bundled), 'folder' or a TFDS name."""
  return ml_collections.ConfigDict(dict(
      name=name,
      root='',            # data.name=folder: <root>/<class>/<image>;
                          # data.name=list: a .csv of `path,label1;label2`.
      data_dir='',        # TFDS data_dir; '' = TFDS default.
      tfds_split='train', # TFDS split holding all images (then `protocol`).
      download=False,     # TFDS: allow download_and_prepare.
      cache_dir='',       # TFDS export cache; '' = ~/.cache/hashjax/datasets.
      image_key='image',  # TFDS image feature, or FEATURE:B0,B1,B2 of a
                          # multi-band array (so2sat/all 'sentinel2:2,1,0').
      protocol='default', # see hashjax/data/protocols.py.
      skip_bad_images=False,  # True: skip unreadable images, count them.
      nomenclature='default', # default | original | bigearthnet19 (labels
                              # mapped by name; hashjax/data/nomenclatures.py)
  ))


def input_config(batch_size=64, image_size=64):
  return ml_collections.ConfigDict(dict(
      batch_size=batch_size,    # global batch, split over all devices.
      eval_batch_size=128,
      image_size=image_size,    # network input side, pixels.
      resize_size=0,            # >0: resize to this, then centre-crop.
      augment='',               # '' or 'flip_rot' (flips + 90° rotations).
      prefetch=2,
  ))


def model_config(encoder='resnet50'):
  return ml_collections.ConfigDict(dict(
      encoder=encoder,  # resnet50 | resnet50_tv | resnet18_tv | swin_t | ...
      pretrained='resnet50_keras_imagenet',  # source weights; '' = none
      init_from='',     # a file from `python -m hashjax.convert` instead.
      bn_momentum=0.9,
      drop_path_rate=0.1,   # Swin stochastic depth.
  ))


def optim_config():
  return ml_collections.ConfigDict(dict(
      name='sgd',           # sgd | adamw
      lr=1e-3,
      momentum=0.0,
      nesterov=False,
      weight_decay=5e-4,    # coupled L2 for sgd (torch SGD weight_decay).
      schedule='piecewise', # piecewise | cosine | constant
      boundaries=(),        # piecewise: round numbers where lr *= decay.
      decay=0.1,
      warmup_steps=0,
      grad_clip=0.0,        # >0: clip by global norm.
      encoder_lr_mult=1.0,  # the encoder's lr = lr * this (two-lr recipes).
  ))


def train_config(rounds=1, epochs_per_round=1, samples_per_round=0):
  """Training is a sequence of rounds (ADSH's outer iterations).

  Each round samples `samples_per_round` training images (0 = all), visits
  them `epochs_per_round` times in one fixed order, then the method's
  `end_round` hook runs (e.g. the DCC update of the database codes).
  A method without rounds uses rounds = epochs, epochs_per_round = 1.
  """
  return ml_collections.ConfigDict(dict(
      rounds=rounds,
      epochs_per_round=epochs_per_round,
      samples_per_round=samples_per_round,
      sampler='random',       # random | class_balanced (groups of class_group)
      class_group=4,          # class_balanced: images per class in a group.
      log_every=10,
      checkpoint_every=100,   # steps; a checkpoint also ends every round.
      keep_checkpoints=2,
  ))


def eval_config():
  return ml_collections.ConfigDict(dict(
      topk=(100,),            # mAP@K values reported beside mAP@all.
      precision_at=(10, 100),
  ))


def base_config(method):
  c = ml_collections.ConfigDict()
  c.method = method
  c.bits = 64
  c.seed = 0
  c.data = data_config()
  c.input = input_config()
  c.model = model_config()
  c.optim = optim_config()
  c.train = train_config()
  c.eval = eval_config()
  c.loss = ml_collections.ConfigDict()
  return c


def quick_cpu(c):
  """The 2-core-CPU training block shared by the quick method configs.

  8 rounds x 1 epoch over all training images, batch 64 at 64 px, flips and
  90-degree rotations, AdamW 1e-4 with a cosine schedule. Measured with AHCL
  (configs/ahcl.py): SGD + momentum 1e-3 gave 64-bit mAP 0.67, AdamW 0.88.
  """
  c.train.update(rounds=8, epochs_per_round=1, samples_per_round=0)
  c.input.update(batch_size=64, image_size=64, augment='flip_rot')
  c.optim.update(name='adamw', lr=1e-4, momentum=0.0, weight_decay=1e-4,
                 schedule='cosine', boundaries=(), warmup_steps=10)
  return c


def runlocal(c, encoder):
  """Shrinks a config to a seconds-long smoke run with a tiny `encoder`."""
  c.model.update(encoder=encoder, pretrained='')
  c.input.update(batch_size=16, image_size=32)
  c.train.update(rounds=2, samples_per_round=64, log_every=2)
  return c
