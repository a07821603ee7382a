"""Orbax checkpoints of the TrainState in `<workdir>/checkpoints`.

Saving is called on every host (orbax coordinates); only complete
checkpoints are listed, so a run killed mid-save resumes from the last
complete one.
"""
import contextlib
import os
import pathlib
import signal
import threading

import jax
import orbax.checkpoint as ocp

from hashjax import parallel


def manager(workdir, keep):
  # Orbax's array writer needs an absolute path; a relative one fails at the
  # first save, in a background thread ("Checkpoint path should be
  # absolute"), so `--workdir=runs/x` and the default ./runs/... need this.
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'), options=options)


def save(mngr, state):
  with _ctrl_c_after_the_write():
    mngr.save(int(state.step), args=ocp.args.StandardSave(state))


def wait(mngr):
  """Blocks until an in-flight (asynchronous) save is committed."""
  with _ctrl_c_after_the_write():
    mngr.wait_until_finished()


@contextlib.contextmanager
def _ctrl_c_after_the_write():
  """Holds a Ctrl-C (SIGINT) that arrives inside orbax until orbax returns.

  Orbax's save first waits for the previous save, and a KeyboardInterrupt
  raised in that wait is logged with a traceback and drops the checkpoint
  being written. Here the signal is remembered and handed to the previous
  handler once the write is committed (signals reach the main thread only).
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = signal.getsignal(signal.SIGINT)
  held = []
  signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
    if held and callable(previous):
      previous(signal.SIGINT, None)
    elif held and previous == signal.SIG_DFL:
      os.kill(os.getpid(), signal.SIGINT)


def restore_latest(mngr, template):
  """Restores the latest checkpoint into `template`'s structure/shardings.

  Returns (state, step) or (None, None) when there is no checkpoint.
  """
  step = mngr.latest_step()
  if step is None:
    return None, None
  # Leaves without a sharding (an abstract template) restore replicated.
  repl = parallel.replicated(parallel.make_mesh())
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(
          x, 'sharding', None) or repl), template)
  state = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
  return state, step


def _tree_metadata(mngr, step):
  path = pathlib.Path(str(mngr.directory), str(step), 'default')
  return ocp.PyTreeCheckpointHandler().metadata(path).tree


def restore_parts(mngr, step, templates, sharding, from_metadata=()):
  """Restores some fields of a saved TrainState, not the whole state.

  Args:
    mngr: the manager.
    step: the checkpoint step.
    templates: {field: abstract tree} (jax.ShapeDtypeStruct leaves), e.g.
      the params' from jax.eval_shape of the model's init.
    sharding: the sharding of every restored array.
    from_metadata: fields whose template is read from the checkpoint's own
      metadata (their structure is not known without the training data).

  Returns:
    {field: restored tree} for the fields asked for.
  """
  item = dict(templates)
  if from_metadata:
    tree = _tree_metadata(mngr, step)
    for field in from_metadata:
      item[field] = jax.tree.map(
          lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree[field])
  item = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
      item)
  return mngr.restore(step, args=ocp.args.PyTreeRestore(
      item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
      partial_restore=True))
