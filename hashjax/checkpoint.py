"""Orbax checkpoints of the TrainState in `<workdir>/checkpoints`.

Saving is called on every host (orbax coordinates); only complete
checkpoints are listed, so a run killed mid-save resumes from the last
complete one.
"""
import os

import jax
import orbax.checkpoint as ocp


def manager(workdir, keep):
  # Orbax's array writer needs an absolute path; a relative one fails at the
  # first save, in a background thread ("Checkpoint path should be
  # absolute"), so `--workdir=runs/x` and the default ./runs/... need this.
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'), options=options)


def save(mngr, state):
  mngr.save(int(state.step), args=ocp.args.StandardSave(state))


def restore_latest(mngr, template):
  """Restores the latest checkpoint into `template`'s structure/shardings.

  Returns (state, step) or (None, None) when there is no checkpoint.
  """
  step = mngr.latest_step()
  if step is None:
    return None, None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  state = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
  return state, step
