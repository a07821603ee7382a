"""Converts timm / Microsoft Swin Transformer state dicts to ``swin.Swin``.

Two layouts are accepted, told apart as timm's own ``checkpoint_filter_fn``
does (by whether ``layers.0.downsample`` exists):

* timm >= 0.9: patch merging ``layers.N.downsample`` at the *start* of stage N
  (N >= 1), classifier ``head.fc``;
* official Microsoft checkpoints (``swin_tiny_patch4_window7_224.pth``, whose
  tensors sit under the key 'model') and timm < 0.9: ``layers.N.downsample``
  at the *end* of stage N, classifier ``head``.

The buffers ``relative_position_index`` and ``attn_mask`` are ignored (the
model recomputes them). A relative position bias table made for another
window than the model's (clamped) one is resized: by default exactly as timm
loads pretrained weights into a model of another size (``timm``: BEiT-style
geometric-progression grid, linear interpolation per head), or with torch's
bicubic interpolation (``bicubic``: ``F.interpolate(..., 'bicubic',
align_corners=False)`` on the (2W-1) x (2W-1) grid of each head).
"""

import math
import re
from typing import Any, Dict, Mapping, Tuple

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from hashjax.models import swin
from hashjax.models.pretrained import torch_io

_BUFFERS = ('relative_position_index', 'attn_mask')


def _timm_positions(src: int, dst: int) -> np.ndarray:
  """Source grid positions of timm's ``resize_rel_pos_bias_table``."""
  def progression(a, r, n):
    return a * (1.0 - r**n) / (1.0 - r)
  left, right = 1.01, 1.5
  while right - left > 1e-6:
    q = (left + right) / 2.0
    if progression(1, q, src // 2) > dst // 2:
      right = q
    else:
      left = q
  dis, cur = [], 1
  for i in range(src // 2):
    dis.append(cur)
    cur += q**(i + 1)
  return np.asarray([-d for d in reversed(dis)] + [0] + dis, np.float32)


def _linear_weights(src: int, dst: int) -> np.ndarray:
  """[dst, src] weights of timm's method along one axis (clamped linear)."""
  xp = _timm_positions(src, dst)
  half = dst // 2
  x = np.arange(-half, half + 0.1, 1.0, dtype=np.float32)
  eye = np.eye(src, dtype=np.float64)
  return np.stack([np.interp(x, xp, eye[j]) for j in range(src)], axis=1)


def _cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
  t = np.abs(t)
  return np.where(
      t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1,
      np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0))


def _bicubic_weights(src: int, dst: int) -> np.ndarray:
  """[dst, src] weights of torch's bicubic, align_corners=False, no AA."""
  scale = src / dst
  w = np.zeros((dst, src), np.float64)
  for i in range(dst):
    x = (i + 0.5) * scale - 0.5
    x0 = math.floor(x)
    for k in range(x0 - 1, x0 + 3):
      w[i, min(max(k, 0), src - 1)] += _cubic(np.asarray(x - k))
  return w


def resize_rel_pos_bias_table(table: np.ndarray, window: Tuple[int, int],
                              method: str = 'timm') -> np.ndarray:
  """Resizes a relative position bias table to another window.

  Args:
    table: [(2S-1)^2, heads] table of a square window S.
    window: (wh, ww) target window.
    method: 'timm' (what timm does when loading pretrained weights) or
      'bicubic' (torch bicubic interpolation of each head's grid).

  Returns:
    [(2wh-1)*(2ww-1), heads] float32 table.
  """
  num, heads = table.shape
  side = int(round(math.sqrt(num)))
  if side * side != num:
    raise ValueError(f'Cannot infer a square window from a relative position '
                     f'table of {num} rows.')
  dst = (2 * window[0] - 1, 2 * window[1] - 1)
  if (side, side) == dst:
    return table.astype(np.float32)
  weights = {'timm': _linear_weights, 'bicubic': _bicubic_weights}
  if method not in weights:
    raise ValueError(f'Unknown resize method {method!r}; expected one of '
                     f'{sorted(weights)}.')
  wy = weights[method](side, dst[0])
  wx = weights[method](side, dst[1])
  grid = table.astype(np.float64).reshape(side, side, heads)
  out = np.einsum('ys,xt,sth->yxh', wy, wx, grid)
  return out.reshape(-1, heads).astype(np.float32)


def _unwrap(state_dict: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """torch_io.unwrap, without the buffers the model recomputes."""
  return {k: v for k, v in torch_io.unwrap(state_dict).items()
          if not any(b in k for b in _BUFFERS)}


def to_timm_layout(state_dict: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """Renames an official / timm < 0.9 state dict to the timm >= 0.9 layout.

  Args:
    state_dict: torch-style state dict, possibly wrapped under 'model'.

  Returns:
    {timm >= 0.9 key: numpy array}, without the buffers.
  """
  sd = _unwrap(state_dict)
  if 'layers.0.downsample.reduction.weight' not in sd:
    return sd
  out = {}
  for k, v in sd.items():
    k = re.sub(r'^layers\.(\d+)\.downsample',
               lambda m: f'layers.{int(m.group(1)) + 1}.downsample', k)
    if k.startswith('head.') and not k.startswith('head.fc.'):
      k = 'head.fc.' + k[len('head.'):]
    out[k] = v
  return out


def _torch_key(path: Tuple[str, ...]) -> str:
  parts = []
  for p in path[:-1]:
    m = re.fullmatch(r'(layers|blocks)_(\d+)', p)
    parts.append(f'{m.group(1)}.{m.group(2)}' if m else p)
    if p == 'head' and len(path) == 2:
      parts.append('fc')
  leaf = path[-1]
  parts.append({'kernel': 'weight', 'scale': 'weight'}.get(leaf, leaf))
  return '.'.join(parts)


def from_timm(state_dict: Mapping[str, Any], model: swin.Swin,
              resize: str = 'timm') -> Dict[str, Any]:
  """Converts a Swin state dict to ``model``'s Flax params.

  Args:
    state_dict: {key: torch.Tensor or numpy array} of timm (>= 0.9 or older)
      or of an official Microsoft checkpoint (optionally under 'model').
    model: the ``swin.Swin`` to load into; its ``img_size`` determines the
      (clamped) windows of the relative position bias tables.
    resize: how tables of another window are resized, see
      ``resize_rel_pos_bias_table``.

  Returns:
    params pytree (nested dict of float32 jax arrays) for
    ``model.apply({'params': params}, x, train)``.

  Raises:
    ValueError: naming the key, when a key is missing or has the wrong shape,
      or when the state dict has keys the model does not use.
  """
  sd = to_timm_layout(state_dict)
  h, w = swin._pair(model.img_size)  # pylint: disable=protected-access
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0),
                         jnp.zeros((1, h, w, 3), jnp.float32), train=False))
  flat = traverse_util.flatten_dict(shapes['params'])
  tables = model.table_windows()
  out = {}
  used = set()
  for path, target in flat.items():
    key = _torch_key(path)
    if key not in sd:
      raise ValueError(f'Swin state dict has no {key!r} (for Flax param '
                       f'{"/".join(path)}).')
    v = sd[key].astype(np.float32)
    used.add(key)
    if path[-1] == 'relative_position_bias_table':
      stage = int(path[0].split('_')[1])
      v = resize_rel_pos_bias_table(v, tables[stage], resize)
    elif path[-1] == 'kernel' and v.ndim == 4:
      v = v.transpose(2, 3, 1, 0)  # [O, I, kh, kw] -> [kh, kw, I, O]
    elif path[-1] == 'kernel':
      v = v.T  # [out, in] -> [in, out]
    if v.shape != tuple(target.shape):
      raise ValueError(f'Swin state dict {key!r} has shape {sd[key].shape}, '
                       f'which converts to {v.shape}; the model expects '
                       f'{tuple(target.shape)} at {"/".join(path)}.')
    out[path] = jnp.asarray(v)
  unused = sorted(k for k in sd if k not in used and not (
      model.num_classes is None and k.startswith('head.')))
  if unused:
    raise ValueError(f'Swin state dict has keys the model does not use: '
                     f'{unused[:10]}{" ..." if len(unused) > 10 else ""}.')
  return traverse_util.unflatten_dict(out)


def load(path: Any, model: swin.Swin, resize: str = 'timm') -> Dict[str, Any]:
  """Reads a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file; see from_timm.

  Args:
    path: checkpoint file. torch files need torch installed.
    model: the ``swin.Swin`` to load into.
    resize: see ``from_timm``.

  Returns:
    params pytree for ``model``.
  """
  return from_timm(torch_io.read_state_dict(path), model, resize)
