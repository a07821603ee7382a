"""Methods by name: `get('ahcl')` imports hashjax.methods.ahcl.

No registry to edit: adding a method is one file here plus one config.
"""
import importlib
import pkgutil
import types

from hashjax.methods import base

_CONTRACT = ('KIND', 'DATABASE_CODES', 'make_model', 'init_state', 'loss_fn',
             'update_state', 'start_round', 'end_round', 'database_codes',
             'fit', 'encode', 'prepare', 'init_params', 'model_inputs')


def available():
  return sorted(m.name for m in pkgutil.iter_modules(__path__)
                if m.name != 'base')


def get(name):
  """The method module `name` with base.py's defaults filled in."""
  if name not in available():
    raise ValueError(f'Unknown method {name!r}; available: '
                     f'{", ".join(available())}.')
  module = importlib.import_module(f'hashjax.methods.{name}')
  return types.SimpleNamespace(
      name=name, **{k: getattr(module, k, getattr(base, k))
                    for k in _CONTRACT})
