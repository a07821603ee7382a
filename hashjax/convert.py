r"""Converts a pretrained checkpoint once into hashjax's encoder format.

  python -m hashjax.convert --encoder=swin_t --image_size=224 \
      --source=swin_tiny_patch4_window7_224.pth --out=swin_t_224.safetensors
  python -m hashjax.main --config=configs/dgssh.py:swin \
      --config.model.init_from=swin_t_224.safetensors

`--source` is what `--config.model.pretrained` accepts (resnet50: a Keras
weight name or file; resnet50_tv / resnet18_tv: a torchvision or timm .pth /
.safetensors; swin_*: a timm or Microsoft .pth / .safetensors). `--out`
ending in .safetensors writes one file; any other path writes an orbax
checkpoint directory. Either is accepted by `--config.model.init_from`,
without torch installed. Swin's relative position tables are converted for
`--image_size` (windows clamp to small stage maps): use the training size.
"""
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections

from hashjax.models import encoders
from hashjax.models.pretrained import converted
from hashjax.models.pretrained import graft
from hashjax.models.pretrained import load as pretrained

_ENCODER = flags.DEFINE_enum('encoder', None, sorted(encoders.ENCODERS),
                             'Encoder the weights are for.')
_SOURCE = flags.DEFINE_string('source', None, 'Source checkpoint.')
_OUT = flags.DEFINE_string('out', None,
                           'Output .safetensors file or orbax directory.')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 224,
                                   'Training image size (Swin windows).')


def convert(encoder_name, source, out, image_size=224):
  """Converts `source` for `encoder_name`; returns (out path, #params)."""
  model_config = ml_collections.ConfigDict(dict(
      encoder=encoder_name, bn_momentum=0.9, drop_path_rate=0.0))
  encoder, _ = encoders.build(model_config, image_size)
  variables, _ = pretrained.convert_pretrained(encoder_name, source, encoder)
  # Same names and shapes as a freshly initialised encoder, or a clear error.
  expected = jax.eval_shape(lambda: encoder.init(
      jax.random.key(0), jnp.zeros((1, image_size, image_size, 3)),
      train=False))
  graft.check_tree(expected, variables, source)
  path = converted.save_variables(variables, out, encoder_name)
  count = sum(x.size for x in jax.tree.leaves(variables['params']))
  return path, count


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  for flag in (_ENCODER, _SOURCE, _OUT):
    if flag.value is None:
      raise app.UsageError(f'--{flag.name} is required.')
  try:
    path, count = convert(_ENCODER.value, _SOURCE.value, _OUT.value,
                          _IMAGE_SIZE.value)
  except (FileNotFoundError, ValueError, ImportError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  print(f'Wrote {path}: {_ENCODER.value} encoder, {count:,} parameters. Use '
        f'--config.model.encoder={_ENCODER.value} '
        f'--config.model.init_from={path}')


if __name__ == '__main__':
  app.run(main)
