"""Grafting loaded variables into a model's variables, with checks.

``load_into`` puts a loaded variables dict (e.g. a backbone's) into the
variables of a bigger model (a hash model with the backbone under
``'encoder'``), checking every name and shape.
"""
from typing import Any, Mapping, Optional, Sequence, Union

import flax
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

Variables = Mapping[str, Any]
# Errors listing names show at most this many.
_MAX_LISTED = 5


def _listed(names: Sequence[str]) -> str:
  more = len(names) - _MAX_LISTED
  return ', '.join(names[:_MAX_LISTED]) + (f' and {more} more' if more > 0
                                           else '')


def check_tree(expected: Variables, loaded: Variables, path: Any) -> None:
  """Checks that loaded has exactly the names and shapes of expected.

  Args:
    expected: nested dict of arrays or ``jax.ShapeDtypeStruct`` (e.g. from
      ``jax.eval_shape(model.init, ...)``).
    loaded: nested dict of arrays.
    path: the file the weights came from, for error messages.

  Raises:
    ValueError: naming the file and the first missing or unexpected
      variables, or the first variable with a different shape.
  """
  want = traverse_util.flatten_dict(expected, sep='/')
  have = traverse_util.flatten_dict(loaded, sep='/')
  missing = sorted(set(want) - set(have))
  if missing:
    raise ValueError(f'{path}: {len(missing)} variables missing: '
                     f'{_listed(missing)}.')
  unexpected = sorted(set(have) - set(want))
  if unexpected:
    raise ValueError(f'{path}: {len(unexpected)} unexpected variables: '
                     f'{_listed(unexpected)}.')
  for name in sorted(want):
    if tuple(want[name].shape) != tuple(np.shape(have[name])):
      raise ValueError(
          f'{path}: shape mismatch for {name}: expected '
          f'{tuple(want[name].shape)}, found {tuple(np.shape(have[name]))}.')


def load_into(variables: Variables,
              subtree_key: Optional[Union[str, Sequence[str]]],
              loaded: Variables,
              path: Any = '<loaded weights>') -> dict:
  """Replaces a sub-tree of a model's variables with loaded weights.

  For a hash model whose backbone is the submodule 'encoder',
  ``load_into(model.init(...), 'encoder', load_keras_resnet50(path), path)``
  returns the initial variables with ``params['encoder']`` and
  ``batch_stats['encoder']`` replaced and every other variable (hash and
  classifier heads) kept.

  Args:
    variables: the initialised variables, {collection: tree}.
    subtree_key: key (or path of keys) of the sub-model inside every
      collection; None replaces whole collections.
    loaded: {collection: tree} for the sub-model, e.g. from
      ``load_keras_resnet50``. Each of its collections must exist in
      variables.
    path: the file the weights came from, for error messages.

  Returns:
    A new variables dict; loaded arrays are cast to the dtypes they replace.

  Raises:
    ValueError: names or shapes of loaded differ from the sub-tree's.
  """
  keys = () if subtree_key is None else (
      (subtree_key,) if isinstance(subtree_key, str) else tuple(subtree_key))
  variables = flax.core.unfreeze(variables)
  result = dict(variables)
  for collection, tree in loaded.items():
    target = variables.get(collection, {})
    for key in keys:
      target = target.get(key, {})
    check_tree({collection: target}, {collection: tree}, path)
    tree = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype), tree,
                        target)
    result[collection] = _replace(result[collection], keys, tree)
  return result


def _replace(tree: Mapping, keys: Sequence[str], value: Any) -> Any:
  """Copy of tree with tree[keys[0]][keys[1]]... set to value."""
  if not keys:
    return value
  out = dict(tree)
  out[keys[0]] = _replace(tree[keys[0]], keys[1:], value)
  return out
