"""Encoder files written by `python -m hashjax.convert` (`model.init_from`).

A ``.safetensors`` file or an orbax checkpoint directory holding an
encoder's Flax variables, tagged with the encoder's name; names and shapes
are checked on load.
"""
import json
import pathlib

import flax
from flax import traverse_util
import numpy as np

# Metadata tag of the files written by `save_variables`.
FORMAT = 'hashjax-encoder-v1'
# In an orbax directory: {'format': FORMAT, 'encoder': name}.
_ORBAX_META = 'hashjax_encoder.json'


def save_variables(variables, path, name):
  """Writes encoder variables as .safetensors (a file) or orbax (a dir)."""
  path = pathlib.Path(path).expanduser().resolve()
  if path.suffix == '.safetensors':
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
    flat = traverse_util.flatten_dict(flax.core.unfreeze(variables), sep='/')
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.asarray(v, np.float32) for k, v in flat.items()},
              str(path), metadata={'format': FORMAT, 'encoder': name})
  else:
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(path, variables)
    # Orbax's standard handler stores arrays only; the tag goes beside them.
    (path / _ORBAX_META).write_text(json.dumps(
        {'format': FORMAT, 'encoder': name}))
  return path


def read_variables(path):
  """Reads a `save_variables` file: (variables, encoder name)."""
  path = pathlib.Path(path).expanduser()
  if path.is_dir():
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    meta_path = path / _ORBAX_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get('format') != FORMAT:
      raise ValueError(f'init_from={path}: not written by hashjax.convert '
                       f'(no {_ORBAX_META} in the directory).')
    try:
      with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(path.resolve())
    except Exception as e:  # orbax raises many types for a bad directory.
      raise ValueError(f'init_from={path}: not a readable orbax checkpoint '
                       f'({e}).') from e
    return tree, meta['encoder']
  if not path.is_file():
    raise FileNotFoundError(
        f'init_from={path} does not exist. Write it with python -m '
        'hashjax.convert (see README, "Pretrained weights").')
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  try:
    with safe_open(str(path), framework='numpy') as f:
      meta = f.metadata() or {}
      flat = {k: f.get_tensor(k) for k in f.keys()}
  except Exception as e:  # SafetensorError is not exported.
    raise ValueError(f'init_from={path}: not a readable safetensors file '
                     f'({e}).') from e
  if meta.get('format') != FORMAT:
    raise ValueError(
        f'init_from={path} was not written by hashjax.convert (a source '
        'checkpoint goes in --config.model.pretrained instead).')
  return traverse_util.unflatten_dict(flat, sep='/'), meta['encoder']
