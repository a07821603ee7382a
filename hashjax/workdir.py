"""A run's folder: what is written there, and reading it back.

  config.json     the config; a workdir holds one run (`check_config`).
  run.json        what a finished run needs to be used without its training
                  data: method, bits, classes, the database's ids, paths and
                  labels (`write_run_info`, `read_run_info`).
  results.json    metrics and wall times; pr_curve.png beside it.
  checkpoints/    orbax (hashjax/checkpoint.py).
  *.npz           stage caches (frozen features, MrHash's stages):
                  `save_npz` / `load_npz`, written atomically.

Written by process 0 only. Nothing here knows which method runs.
"""
import contextlib
import json
import os
import subprocess

import jax
import ml_collections
import numpy as np

from hashjax import locking
from hashjax.data import nomenclatures

RUN_FORMAT = 'hashjax-run-v1'


def writer_lock(workdir):
  """Held by the run writing `workdir` (process 0): a second training or
  fitting in the same workdir is refused, naming the first."""
  if jax.process_index() != 0:
    return contextlib.nullcontext()
  return locking.hold(os.path.join(workdir, 'writer'), 'The workdir')


def environment():
  """What can change a run's bits besides the code and config: recorded in
  results.json so that a number that moved can be traced."""
  import importlib.metadata as md  # pylint: disable=g-import-not-at-top
  versions = {}
  for pkg in ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint',
              'tensorflow-cpu', 'tensorflow', 'numpy'):
    try:
      versions[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
      pass
  return dict(
      cpus=os.cpu_count(),
      cpu_affinity=len(os.sched_getaffinity(0)) if hasattr(
          os, 'sched_getaffinity') else None,
      devices=jax.device_count(), platform=jax.devices()[0].platform,
      processes=jax.process_count(),
      xla_flags=os.environ.get('XLA_FLAGS', ''),
      tf_onednn=os.environ.get('TF_ENABLE_ONEDNN_OPTS', ''),
      versions=versions)


def commit():
  """The git commit of the hashjax source tree ('+dirty' with uncommitted
  changes to tracked files), or 'unknown'. Drivers read it when a run
  starts: the code that ran, not the checkout at its end."""
  here = os.path.dirname(__file__)
  try:
    head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                          capture_output=True, text=True, check=True,
                          cwd=here).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain',
                            '--untracked-files=no'], capture_output=True,
                           text=True, check=True, cwd=here).stdout.strip()
  except Exception:  # pylint: disable=broad-except
    return 'unknown'
  return head + ('+dirty' if dirty else '')


def _config_json(config):
  return json.loads(config.to_json_best_effort(sort_keys=True))


# Keys that cannot change a run's result: they may differ on resume.
RESUME_MAY_CHANGE = ('train.log_every', 'train.checkpoint_every',
                     'train.keep_checkpoints', 'input.eval_batch_size',
                     'input.prefetch')


def _flat(tree, prefix=''):
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for k, v in tree.items():
    out.update(_flat(v, f'{prefix}{k}.' if isinstance(v, dict) else
                     f'{prefix}{k}'))
  return out


def _as_before(key, current):
  """Whether a run saved before config key `key` existed is the same run
  under the current (flat) config: the key's value keeps what every
  earlier run did."""
  if key == 'data.nomenclature':   # added Dec. 2026: the dataset's labels
    return nomenclatures.resolve(current.get('data.name', ''),
                                 current[key]) is None
  return False


def config_differences(saved, current):
  """Dotted keys whose values differ, e.g. ['bits', 'loss.lam']. A key the
  saved config predates is no difference when its value keeps what the
  saved run did (`_as_before`)."""
  a, b = _flat(saved), _flat(current)
  return sorted(k for k in set(a) | set(b)
                if a.get(k) != b.get(k) and k not in RESUME_MAY_CHANGE and
                not (k not in a and _as_before(k, b)))


_POSITIVE = ('bits', 'input.batch_size', 'input.eval_batch_size',
             'input.image_size', 'train.epochs_per_round', 'train.log_every',
             'train.checkpoint_every', 'train.keep_checkpoints')
_NON_NEGATIVE = ('train.rounds', 'train.samples_per_round')


def validate(config):
  """Raises ValueError naming a config value no run can use (e.g. bits=0),
  before anything is loaded or written."""
  flat = _flat(_config_json(config))
  for key in _POSITIVE + _NON_NEGATIVE:
    if key not in flat:
      continue
    value, low = flat[key], 1 if key in _POSITIVE else 0
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise ValueError(
          f'config: {key} must be an integer >= {low}, got {value!r} '
          f'(set --config.{key}=...).')


def check_config(workdir, config):
  """Refuses to resume a run in `workdir` with another config."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  diff = config_differences(read_json(path), _config_json(config))
  if diff:
    raise ValueError(
        f'Workdir {workdir!r} holds a run with a different config '
        f'(differs in: {", ".join(diff)}). Use another --workdir, or delete '
        'it to start over.')


def write_config(workdir, config):
  """config.json, once the run has really started (process 0)."""
  if jax.process_index() == 0:
    _write_json(os.path.join(workdir, 'config.json'), _config_json(config),
                sort_keys=True)


def read_config(workdir):
  """The run's config as a locked ConfigDict."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{workdir!r} is not a hashjax run (no '
                            'config.json). Train one with python -m '
                            'hashjax.main first.')
  config = ml_collections.ConfigDict(read_json(path))
  config.lock()
  return config


def read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f'{path} is not valid JSON ({e}); the file is damaged. '
                     'Delete the run folder and train again.') from e


def _write_json(path, obj, **kw):
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, **kw)
  os.replace(tmp, path)


def write_run_info(workdir, config, *, class_names, database_ids,
                   database_paths, database_labels, num_train):
  """run.json: what loading the finished run needs besides its checkpoint.

  Args:
    class_names: C names.
    database_ids, database_paths: [N] the database items' ids (relative
      names) and file paths, in the order of the database codes.
    database_labels: [N, C] multi-hot.
    num_train: training images (rows of a learned code bank).
  """
  if jax.process_index() != 0:
    return
  labels = [np.flatnonzero(row).tolist() for row in np.asarray(
      database_labels)]
  _write_json(os.path.join(workdir, 'run.json'), dict(
      format=RUN_FORMAT, method=config.method, bits=config.bits,
      class_names=list(class_names), num_train=int(num_train),
      database=dict(ids=list(database_ids),
                    paths=[str(p) for p in database_paths], labels=labels)))


def read_run_info(workdir):
  """run.json as a dict, database labels back to [N, C] float32."""
  path = os.path.join(workdir, 'run.json')
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'{workdir!r} has no run.json: it was trained before hashjax wrote '
        'one, or training has not started. Rerun the same training command '
        'once (it resumes and writes it).')
  info = read_json(path)
  if info.get('format') != RUN_FORMAT:
    raise ValueError(f'{path}: unknown format {info.get("format")!r} '
                     f'(expected {RUN_FORMAT}).')
  db = info['database']
  labels = np.zeros((len(db['ids']), len(info['class_names'])), np.float32)
  for i, row in enumerate(db['labels']):
    labels[i, row] = 1.0
  db['labels'] = labels
  db['paths'] = np.asarray(db['paths'])
  return info


def write_results(workdir, results):
  """results.json on process 0; True there."""
  if jax.process_index() != 0:
    return False
  _write_json(os.path.join(workdir, 'results.json'), results)
  return True


def save_npz(path, **arrays):
  """A stage's cache file, written by process 0 only and atomically (a
  temporary file, then a rename), so a killed run leaves no partial file."""
  if jax.process_index() == 0:
    tmp = path + '.tmp.npz'
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_npz(path):
  """A stage's cached arrays, or {} if the stage has not run yet."""
  if not os.path.exists(path):
    return {}
  with np.load(path, allow_pickle=False) as f:
    return dict(f)
