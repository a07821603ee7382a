"""Reading PyTorch-style state dicts (``.pth`` or ``.safetensors``) as numpy.

Shared by the Swin and ResNet importers. ``.safetensors`` files are read
without torch; ``.pth``/``.pt``/``.bin`` files need torch and are loaded with
``weights_only=True`` (no pickled code runs).
"""

import pathlib
from typing import Any, Dict, Mapping

import numpy as np

# Wrapper keys of training checkpoints: Microsoft's Swin release stores the
# weights under 'model', many training scripts under 'state_dict'.
_WRAPPERS = ('model', 'state_dict', 'model_ema')


def to_numpy(v: Any) -> np.ndarray:
  """A torch tensor (without importing torch) or array-like as numpy."""
  if hasattr(v, 'detach'):
    v = v.detach().cpu()
    v = v.float().numpy() if v.is_floating_point() else v.numpy()
  return np.asarray(v)


def unwrap(state_dict: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """Drops a checkpoint's wrapper dict and 'module.' prefixes; numpy values.

  Args:
    state_dict: {name: tensor}, possibly nested under one of 'model',
      'state_dict', 'model_ema' (the first present wins), possibly saved from
      a DataParallel model (every key starting with 'module.').

  Returns:
    {name: np.ndarray}.
  """
  for wrapper in _WRAPPERS:
    inner = state_dict.get(wrapper) if hasattr(state_dict, 'get') else None
    if isinstance(inner, Mapping):
      state_dict = inner
      break
  out = {}
  for k, v in state_dict.items():
    if k.startswith('module.'):
      k = k[len('module.'):]
    out[k] = to_numpy(v)
  return out


def read_state_dict(path: Any) -> Dict[str, np.ndarray]:
  """Reads a torch checkpoint or a safetensors file; see ``unwrap``.

  Raises:
    FileNotFoundError: the file does not exist.
    ImportError: a torch file without torch installed.
    ValueError: the file cannot be read (truncated, not a checkpoint).
  """
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise FileNotFoundError(f'Checkpoint {path} does not exist.')
  if path.suffix == '.safetensors':
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    try:
      return unwrap(load_file(str(path)))
    except Exception as e:  # SafetensorError is not exported.
      raise ValueError(f'Could not read {path} as safetensors: {e}') from e
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f'Reading {path} needs torch, which is not installed. Install torch, '
        'or save the state dict as .safetensors and pass that file.') from e
  try:
    state_dict = torch.load(str(path), map_location='cpu', weights_only=True)
  except Exception as e:  # pickle, zip and torch errors alike.
    raise ValueError(f'Could not read {path} as a torch checkpoint: {e}. Is '
                     'the file truncated or not a state dict?') from e
  if not isinstance(state_dict, Mapping):
    raise ValueError(f'{path} holds a {type(state_dict).__name__}, not a '
                     'state dict.')
  return unwrap(state_dict)
