"""A finished run, loaded for search and serving without its training data.

`load(workdir)` reads config.json and run.json (written when training
starts), builds the model from the config, makes the restore template of
its variables with jax.eval_shape (no compilation, no weight file read) and
restores the checkpoint's parameters; for a method that learns its database
codes (AHCL, DGSSH) it also restores the method's state. It touches no
training image and reruns no stage (MrHash's features, autoencoder and
k-means stay in the workdir, unused at query time).
"""
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from hashjax import checkpoint
from hashjax import codes
from hashjax import inference
from hashjax import methods
from hashjax import parallel
from hashjax import train
from hashjax import workdir as workdir_lib
from hashjax.methods import base


@dataclasses.dataclass
class TrainedRun:
  """A trained network, ready to encode images.

  Attributes:
    workdir: the run's folder.
    config: its config (locked).
    info: run.json: method, bits, class_names, num_train, database (ids,
      paths, labels [N, C]).
    method: the method's hooks (hashjax.methods.get).
    model: the flax module.
    variables: {'params': ..., 'batch_stats': ...} at `step`.
    method_state: the method's arrays ({} unless it learns database codes).
    step: the checkpoint step.
    mesh: the device mesh.
  """
  workdir: str
  config: Any
  info: dict
  method: Any
  model: Any
  variables: Any
  method_state: Any
  step: int
  mesh: Any

  @property
  def bits(self):
    return self.config.bits

  @property
  def class_names(self):
    return self.info['class_names']

  def encoder(self):
    """(image_set, ids) -> codes [len(ids), bits] int8 (compiled once)."""
    return inference.encoder(self.model, self.variables, self.config.input,
                             self.mesh)

  def database_codes(self):
    """The learned database codes [N, bits] int8 (DATABASE_CODES 'bank')."""
    if self.method.DATABASE_CODES != 'bank':
      raise ValueError(f'{self.config.method} has no learned database codes; '
                       'encode the database images instead.')
    return codes.binarize(parallel.to_host(
        self.method.database_codes(self.method_state)))


def load(workdir, step=None):
  """Loads the run in `workdir` at `step` (default: its latest checkpoint).

  Raises:
    FileNotFoundError: no run, no run.json or no checkpoint there.
    ValueError: a frozen-feature run (no network), or a checkpoint that
      does not match the model its config builds.
  """
  config = workdir_lib.read_config(workdir)
  method = methods.get(config.method)
  if method.kind != 'network':
    raise ValueError(f'{workdir!r} is a {config.method} run: it has no '
                     'network to encode new images with.')
  info = workdir_lib.read_run_info(workdir)
  mesh = parallel.make_mesh()
  ctx = base.RunContext(num_classes=len(info['class_names']),
                        num_train=info['num_train'], workdir=workdir,
                        mesh=mesh)
  model = method.make_model(config, ctx)
  abstract = jax.eval_shape(lambda: train.init_variables(config, model))
  templates = {'params': abstract['params'],
               'model_state': {k: v for k, v in abstract.items()
                               if k != 'params'},
               'step': jax.ShapeDtypeStruct((), jnp.int32)}
  mngr = checkpoint.manager(workdir, config.train.keep_checkpoints)
  try:
    steps = mngr.all_steps()
    if not steps:
      raise FileNotFoundError(f'{workdir!r} has no checkpoint yet.')
    if step is None:
      step = max(steps)
    elif step not in steps:
      raise FileNotFoundError(
          f'{workdir!r} has no checkpoint at step {step} (it has '
          f'{", ".join(map(str, sorted(steps)))}).')
    bank = method.DATABASE_CODES == 'bank'
    try:
      parts = checkpoint.restore_parts(
          mngr, step, templates, parallel.replicated(mesh),
          from_metadata=('method_state',) if bank else ())
    except ValueError as e:
      raise ValueError(f'The checkpoint at step {step} in {workdir!r} does '
                       f'not match the model its config builds ({e}).') from e
  finally:
    mngr.close()
  return TrainedRun(
      workdir=workdir, config=config, info=info, method=method, model=model,
      variables={'params': parts['params'], **parts['model_state']},
      method_state=parts.get('method_state', {}), step=int(step), mesh=mesh)
