"""Methods by name: `get('ahcl')` imports hashjax.methods.ahcl.

No registry to edit: adding a method is one file here plus one config.
`get` also takes a dotted module path (`mypackage.mymethod`), so a method
can live outside hashjax. The contract is in base.py.
"""
import importlib
import pkgutil
import types

import ml_collections

from hashjax.methods import base

_REQUIRED = {'network': ('loss_fn',),
             'frozen_features': ('fit', 'encode')}
_OPTIONAL = ('DATABASE_CODES', 'make_model', 'prepare', 'init_state',
             'model_inputs', 'update_state', 'start_round', 'end_round',
             'database_codes')


def available():
  return sorted(m.name for m in pkgutil.iter_modules(__path__)
                if m.name != 'base' and not m.name.startswith('_'))


def _import(name):
  if name in available():
    return importlib.import_module(f'hashjax.methods.{name}')
  if '.' in name:
    try:
      return importlib.import_module(name)
    except ModuleNotFoundError as e:
      raise ValueError(f'Method module {name!r} not found ({e}).') from e
  raise ValueError(f'Unknown method {name!r}; available: '
                   f'{", ".join(available())} (or a dotted module path).')


def get(name):
  """The method `name` as a namespace: its hooks, base.py's defaults for
  the optional ones, `name` and `kind` ('network' | 'frozen_features')."""
  module = _import(name)
  kind = 'frozen_features' if hasattr(module, 'fit') else 'network'
  missing = [k for k in _REQUIRED[kind] if not hasattr(module, k)]
  if missing:
    raise ValueError(f'Method {name!r} ({module.__file__}) does not define '
                     f'{", ".join(missing)} (see hashjax/methods/base.py).')
  if kind == 'frozen_features':
    return types.SimpleNamespace(name=name, kind=kind, fit=module.fit,
                                 encode=module.encode,
                                 DATABASE_CODES='encoder')
  hooks = {k: getattr(module, k, getattr(base, k)) for k in _OPTIONAL}
  return types.SimpleNamespace(name=name, kind=kind, loss_fn=module.loss_fn,
                               **hooks)


def hyperparams(config, multi_label=False):
  """The method's hyper-parameters: config.loss, frozen (a typo raises),
  plus `multi_label`: whether the training data has images with several
  labels (the classification terms then use a sigmoid CE)."""
  return ml_collections.FrozenConfigDict(dict(config.loss.to_dict(),
                                              multi_label=bool(multi_label)))
