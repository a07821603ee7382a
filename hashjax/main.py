r"""hashjax command line: train a method and evaluate it.

  python -m hashjax.main --config=configs/ahcl.py [--workdir=DIR] \
      [--config.bits=32 --config.data.name=folder --config.data.root=PATH]

Without --workdir the run goes to ./runs/<method>_<bits>b_<config hash>:
the same command (same config) finds the same folder and resumes from its
last checkpoint. Multi-host: jax.distributed.initialize() runs when the
launch environment asks for it (a multi-host TPU slice, srun with several
tasks, HASHJAX_DISTRIBUTED=1, or HASHJAX_COORDINATOR/_NUM_PROCESSES/
_PROCESS_ID); see hashjax/parallel.py and launch/.
"""
import hashlib
import os
import signal
import sys
import traceback

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Path to a config file, e.g. configs/ahcl.py[:args].',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Run folder (checkpoints, TensorBoard, results.json).')


def default_workdir(config):
  digest = hashlib.sha1(
      config.to_json_best_effort(sort_keys=True).encode()).hexdigest()[:8]
  return os.path.join('runs', f'{config.method}_{config.bits}b_{digest}')


def _config_root_on_path(argv):
  """Lets config files `from configs import common` from any directory.

  The folder holding `configs/` (the repository root) goes on sys.path, as
  running from the repository root would do.
  """
  for arg in argv:
    if arg.startswith('--config='):
      path = arg[len('--config='):].split(':', 1)[0]
      root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
      if root not in sys.path:
        sys.path.insert(0, root)


def _failing_override(argv, msg):
  """' in --config.a.b=v' for the override whose key the message names."""
  for arg in argv:
    if arg.startswith('--config.'):
      keys = arg[len('--config.'):].split('=', 1)[0].split('.')
      if any(f"'{k}'" in msg or f'"{k}"' in msg for k in keys):
        return f' in {arg}'
  return ''


def _parse_flags(argv):
  """absl flag parsing with one-line errors for bad config keys/values."""
  _config_root_on_path(argv)
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, TypeError, ValueError,
          flags.Error) as e:
    msg = str(e).strip('\'"').replace('\\n', ' ').replace("\\'", "'")
    where = _failing_override(argv, msg)
    sys.exit(f'hashjax: configuration error{where}: {msg}')


def main(argv):
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)   # orbax/clu INFO lines.
  if len(argv) > 1:
    sys.exit(f'hashjax: unexpected arguments {argv[1:]}; config values are '
             'set with --config.KEY=VALUE.')
  from hashjax import parallel  # pylint: disable=g-import-not-at-top
  parallel.initialize_distributed()
  from hashjax import fit  # pylint: disable=g-import-not-at-top
  from hashjax import locking  # pylint: disable=g-import-not-at-top
  from hashjax import methods  # pylint: disable=g-import-not-at-top
  from hashjax import train  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  if config is None:
    sys.exit('hashjax: --config=configs/<method>.py is required.')
  workdir = _WORKDIR.value or default_workdir(config)
  if not _WORKDIR.value:
    print(f'hashjax: no --workdir given; using {workdir}', flush=True)
  if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = _quiet_ctrl_c
  try:
    # A network method trains (train.py); a frozen-feature one fits (fit.py).
    if methods.get(config.method).kind == 'frozen_features':
      fit.run(config, workdir)
    else:
      train.run(config, workdir)
    if _Interrupt.seen:
      # The KeyboardInterrupt was raised where Python ignores exceptions
      # (a garbage-collection callback, a destructor) and the run went on
      # to its end: still report the interrupt.
      raise KeyboardInterrupt
  except (ValueError, FileNotFoundError, train.NonFiniteLossError,
          locking.LockedError) as e:
    _exit(f'hashjax: error: {e}', 1)
  except KeyboardInterrupt:
    # train.run has finished any in-flight checkpoint before this point.
    _exit('hashjax: interrupted. Checkpoints in the workdir are complete; '
          'rerun the same command to resume.', 130)
  except Exception:  # pylint: disable=broad-except
    # E.g. a tf.data error: print it, then end the process at once, since
    # the input pipeline's clean-up can otherwise hang at exit.
    traceback.print_exc()
    _exit('hashjax: error: the run failed (traceback above).', 1)


class _Interrupt:
  seen = False


def _on_sigint(signum, frame):
  """Ctrl-C: remembered, then Python's usual KeyboardInterrupt."""
  _Interrupt.seen = True
  signal.default_int_handler(signum, frame)


def _quiet_ctrl_c(unraisable):
  """sys.unraisablehook: a KeyboardInterrupt raised where Python ignores
  exceptions (a garbage-collection callback such as jax's, a destructor)
  would print 'Exception ignored in ...' and a traceback; _on_sigint has
  remembered it and main reports it in one line. Anything else goes to
  Python's own hook."""
  if unraisable.exc_type is not None and issubclass(unraisable.exc_type,
                                                    KeyboardInterrupt):
    return
  sys.__unraisablehook__(unraisable)


def _exit(message, code):
  """Prints one line and ends the process now: background threads (the
  input pipeline, checkpoint writers) cannot hang or print at exit."""
  print(message, file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(code)  # pylint: disable=protected-access


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(main, flags_parser=_parse_flags)
