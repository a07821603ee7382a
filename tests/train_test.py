"""End to end: tiny AHCL run on real images, resume after a kill, NaN stop."""
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import ahcl as ahcl_config
from hashjax import parallel
from hashjax import restore
from hashjax import train
from hashjax import workdir as workdir_lib
from hashjax.data import sampling
from tests.conftest import REPO


def _config(root, **overrides):
  c = ahcl_config.get_config('runlocal,bits=16')
  c.data.name = 'folder'
  c.data.root = str(root)
  c.train.checkpoint_every = 2
  c.eval.topk = (10,)
  for k, v in overrides.items():
    node = c
    *path, last = k.split('.')
    for p in path:
      node = node[p]
    node[last] = v
  return c


def _restore(path):
  """(step, TrainedRun) of the latest checkpoint in `workdir`."""
  run = restore.load(str(path))
  return run.step, run


def test_train_and_evaluate_writes_results(small_rsscn7, tmp_path):
  results = train.run(_config(small_rsscn7), str(tmp_path))
  saved = json.loads((tmp_path / 'results.json').read_text())
  assert saved['metrics']['map@all'] == results['metrics']['map@all']
  assert saved['steps'] == 8 and saved['metrics']['num_queries'] == 28
  assert 0.0 < saved['metrics']['map@all'] <= 1.0
  assert (tmp_path / 'pr_curve.png').stat().st_size > 1000
  assert (tmp_path / 'pr_count.png').stat().st_size > 1000
  assert list((tmp_path).glob('events.out.tfevents*'))
  env = saved['environment']     # what can move a number besides the code
  assert env['devices'] >= 1 and env['versions']['jax'] and env['cpus'] >= 1
  assert saved['resumed_from_step'] is None
  _, run = _restore(tmp_path)
  v = np.asarray(run.method_state['V'])
  assert set(np.unique(v)) == {-1.0, 1.0}     # DCC ran: V is a +-1 bank.
  # The same command again: nothing left to train, the same metrics, and
  # the training time of the run kept (not 0).
  again = train.run(_config(small_rsscn7), str(tmp_path))
  assert again['metrics'] == results['metrics']
  assert again['train_seconds'] == results['train_seconds'] > 0


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted(small_rsscn7, tmp_path,
                                                monkeypatch):
  config = _config(small_rsscn7)
  full = train.run(config, str(tmp_path / 'full'))

  calls = {'n': 0}
  real = parallel.global_batch

  def killed_at_step_7(batch, mesh):
    calls['n'] += 1
    if calls['n'] == 7:                     # after the checkpoint at step 6
      raise KeyboardInterrupt('simulated kill')
    return real(batch, mesh)

  monkeypatch.setattr(parallel, 'global_batch', killed_at_step_7)
  with pytest.raises(KeyboardInterrupt):
    train.run(config, str(tmp_path / 'resumed'))
  step, _ = _restore(tmp_path / 'resumed')
  assert step == 6
  monkeypatch.setattr(parallel, 'global_batch', real)
  resumed = train.run(config, str(tmp_path / 'resumed'))
  for k, v in full['metrics'].items():
    if isinstance(v, float):
      assert resumed['metrics'][k] == pytest.approx(v, abs=1e-6), k
  _, a = _restore(tmp_path / 'full')
  _, b = _restore(tmp_path / 'resumed')
  np.testing.assert_array_equal(a.method_state['V'], b.method_state['V'])
  for x, y in zip(jax.tree.leaves(a.variables),
                  jax.tree.leaves(b.variables)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_nan_loss_stops_with_step_and_checkpoint(small_rsscn7, tmp_path):
  config = _config(small_rsscn7, **{'loss.gamma': float('nan')})
  with pytest.raises(train.NonFiniteLossError, match='at step 1.*none'):
    train.run(config, str(tmp_path))


@pytest.mark.parametrize('key, value', [('bits', 0), ('bits', -8),
                                        ('input.batch_size', 0)])
def test_unusable_values_are_refused_before_anything_runs(
    key, value, small_rsscn7, tmp_path):
  with pytest.raises(ValueError, match=rf'config: {key} must be an integer'):
    train.run(_config(small_rsscn7, **{key: value}), str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()


def test_a_failed_start_does_not_claim_the_workdir(small_rsscn7, tmp_path):
  """A start-up error (here a mistyped data root) writes no config.json, so
  the corrected command is not refused as 'a different config'."""
  bad = _config(small_rsscn7)
  bad.data.root = str(tmp_path / 'typo')
  with pytest.raises(FileNotFoundError, match='typo'):
    train.run(bad, str(tmp_path / 'w'))
  assert not (tmp_path / 'w' / 'config.json').exists()
  workdir_lib.check_config(str(tmp_path / 'w'), _config(small_rsscn7))


def test_an_empty_config_json_is_named(tmp_path):
  (tmp_path / 'config.json').write_text('')
  with pytest.raises(ValueError, match=r'config\.json is not valid JSON'):
    workdir_lib.read_config(str(tmp_path))


def test_a_second_training_in_the_workdir_is_refused(small_rsscn7, tmp_path):
  from hashjax import locking  # pylint: disable=g-import-not-at-top
  with workdir_lib.writer_lock(str(tmp_path)):
    with pytest.raises(locking.LockedError, match='workdir .* being written'):
      train.run(_config(small_rsscn7), str(tmp_path))
  assert not (tmp_path / 'config.json').exists()


def test_workdir_refuses_a_different_config(small_rsscn7, tmp_path):
  workdir_lib.check_config(str(tmp_path), _config(small_rsscn7))  # none yet
  workdir_lib.write_config(str(tmp_path), _config(small_rsscn7))
  workdir_lib.check_config(str(tmp_path), _config(small_rsscn7))
  with pytest.raises(ValueError, match='differs in: bits'):
    workdir_lib.check_config(str(tmp_path), _config(small_rsscn7, bits=32))
  with pytest.raises(ValueError, match=r'differs in: loss\.gamma, loss\.lam\)'):
    workdir_lib.check_config(str(tmp_path), _config(
        small_rsscn7, **{'loss.lam': 1.0, 'loss.gamma': 2.0}))
  # Logging and checkpoint cadence cannot change the result: a resume may
  # change them.
  workdir_lib.check_config(str(tmp_path), _config(
      small_rsscn7, **{'train.log_every': 1, 'input.eval_batch_size': 7}))
  # A run saved before data.nomenclature existed resumes under the value
  # that keeps its labels, and only that.
  saved = workdir_lib.read_json(str(tmp_path / 'config.json'))
  del saved['data']['nomenclature']
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  workdir_lib.check_config(str(tmp_path), _config(small_rsscn7))
  workdir_lib.check_config(str(tmp_path), _config(
      small_rsscn7, **{'data.nomenclature': 'original'}))
  with pytest.raises(ValueError, match=r'differs in: data\.nomenclature'):
    workdir_lib.check_config(str(tmp_path), _config(
        small_rsscn7, **{'data.nomenclature': 'bigearthnet19'}))


def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'hashjax.main', *args],
                        capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.mark.parametrize('args,message', [
    (['--config.bitz=3'], 'bitz'),
    (['--config.bits=abc'], 'bits'),
    (['--config.data.name=folder', '--config.data.root=/does/not/exist'],
     '/does/not/exist'),
    (['--config.loss.lamda=1'],
     'in --config.loss.lamda=1: \'lamda\' Did you mean "lam"'),
    (['--config.data.name=rsscn7'], 'Did you mean rsscn7_64'),
])
@pytest.mark.slow
def test_cli_errors_name_the_problem(args, message, tmp_path):
  out = _cli('--config=configs/ahcl.py:runlocal', f'--workdir={tmp_path}',
             *args)
  assert out.returncode != 0
  assert message in out.stderr and 'Traceback' not in out.stderr, out.stderr


def test_cli_runs_from_another_directory(tmp_path):
  """A config path from elsewhere still finds `configs.common`."""
  out = subprocess.run(
      [sys.executable, '-m', 'hashjax.main',
       f'--config={REPO / "configs" / "dgssh.py"}:runlocal', '--config.bitz=3',
       f'--workdir={tmp_path}'],
      capture_output=True, text=True, cwd=tmp_path, timeout=300)
  assert out.returncode != 0
  assert 'bitz' in out.stderr and 'Traceback' not in out.stderr, out.stderr


def test_config_arg_string():
  c = ahcl_config.get_config('bits=32,released')
  assert c.bits == 32 and c.train.rounds == 30 and c.input.image_size == 224
  with pytest.raises(ValueError, match='Unknown config argument'):
    ahcl_config.get_config('bitz=3')


@pytest.mark.slow
def test_dgssh_swin_runs_end_to_end(small_rsscn7, tmp_path, monkeypatch):
  from configs import dgssh as dgssh_config
  c = dgssh_config.get_config('runlocal,bits=16')
  c.data.name = 'folder'
  c.data.root = str(small_rsscn7)
  c.eval.topk = (10,)
  # The encoder starts from a converted (random, timm-named) checkpoint.
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  from hashjax import convert
  from hashjax.models import swin
  from tests import swin_test
  sd, params = swin_test._random_state_dict(swin.SwinTiny(), 32)
  # Shifted so that they cannot coincide with the run's own random init.
  sd = {k: v + 0.25 for k, v in sd.items()}
  params = jax.tree.map(lambda v: v + 0.25, params)
  save_file({k: np.ascontiguousarray(v) for k, v in sd.items()},
            str(tmp_path / 'timm.safetensors'))
  c.model.init_from = str(convert.convert(
      'swin_tiny', str(tmp_path / 'timm.safetensors'),
      str(tmp_path / 'swin_tiny_32.safetensors'), image_size=32)[0])
  # A relative workdir, as the CLI's default ./runs/...: orbax needs the
  # checkpoint path made absolute.
  monkeypatch.chdir(tmp_path)
  results = train.run(c, 'runs/relative')
  assert results['steps'] == 8 and 0.0 < results['metrics']['map@all'] <= 1.0
  assert (tmp_path / 'runs/relative/checkpoints/8').is_dir()
  # The trainer's initial state holds the imported encoder, heads fresh.
  from hashjax import methods  # pylint: disable=g-import-not-at-top
  from hashjax.methods import base  # pylint: disable=g-import-not-at-top
  from hashjax.models.pretrained import load  # pylint: disable=g-import-not-at-top
  model = methods.get(c.method).make_model(
      c, base.RunContext(num_classes=7, num_train=0))
  initial = load.load_pretrained(train.init_variables(c, model), c.model,
                                 model.encoder)
  jax.tree.map(np.testing.assert_array_equal,
               jax.device_get(initial['params']['encoder']), params)


def test_class_balanced_order():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(5), [40, 40, 41, 39, 43])   # 203 images
  sample = rng.permutation(len(labels))
  order = sampling.class_balanced_order(sample, labels[sample], 32, 4, 0, 3)
  assert sorted(order) == sorted(sample)       # a permutation of the sample
  y = labels[order]
  full = sum(n // 4 * 4 for n in np.bincount(labels))
  for start in range(0, full, 4):              # whole groups of one class
    assert len(set(y[start:start + 4])) == 1
  for start in range(0, full - full % 32, 32):  # every anchor has 3 positives
    counts = np.bincount(y[start:start + 32], minlength=5)
    assert counts[counts > 0].min() >= 4
  again = sampling.class_balanced_order(sample, labels[sample], 32, 4, 0, 3)
  np.testing.assert_array_equal(order, again)  # seeded
  other = sampling.class_balanced_order(sample, labels[sample], 32, 4, 0, 4)
  assert not np.array_equal(order, other)      # reshuffled per round
  with pytest.raises(ValueError, match='class_group=5'):
    sampling.class_balanced_order(sample, labels[sample], 32, 5, 0, 3)


@pytest.mark.slow
def test_dgssh_released_with_class_balanced_batches(small_rsscn7, tmp_path):
  """The released variant's loss and timm schedule run in the jitted step;
  the class-balanced sampler feeds it."""
  from configs import dgssh as dgssh_config
  c = dgssh_config.get_config('released,triplet,runlocal,bits=16')
  c.data.update(name='folder', root=str(small_rsscn7), protocol='default')
  c.input.update(image_size=32, resize_size=36)
  c.train.sampler = 'class_balanced'
  c.eval.topk = (10,)
  results = train.run(c, str(tmp_path))
  assert results['steps'] == 8 and 0.0 < results['metrics']['map@all'] <= 1.0


def test_a_ctrl_c_python_ignores_prints_no_traceback():
  """A SIGINT that lands in a garbage-collection callback (jax has one)
  is an 'unraisable' KeyboardInterrupt: main's hook keeps Python from
  printing 'Exception ignored in ...' and its traceback (main reports the
  interrupt in one line); any other unraisable exception still prints."""
  script = (
      'import gc, sys\n'
      'from hashjax import main\n'
      'sys.unraisablehook = main._quiet_ctrl_c\n'
      'class Boom:\n'
      '  def __init__(self, e): self.e = e\n'
      '  def __del__(self): raise self.e\n'
      'Boom(KeyboardInterrupt()); gc.collect()\n'
      'print("quiet", file=sys.stderr)\n'
      'Boom(ValueError("loud")); gc.collect()\n')
  run = subprocess.run([sys.executable, '-c', script], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr
  before, after = run.stderr.split('quiet\n')
  assert 'Traceback' not in before and 'KeyboardInterrupt' not in before
  assert 'Exception ignored' in after and 'ValueError: loud' in after


def test_ctrl_c_during_a_checkpoint_write_waits_for_the_write():
  """A SIGINT that lands inside orbax's save or wait is raised only after
  orbax returns: orbax would otherwise log a traceback and drop the
  checkpoint it was writing."""
  import os  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  from hashjax import checkpoint  # pylint: disable=g-import-not-at-top
  done = []

  class Manager:

    def save(self, step, args):
      del args
      os.kill(os.getpid(), signal.SIGINT)
      done.append(step)

    def wait_until_finished(self):
      os.kill(os.getpid(), signal.SIGINT)
      done.append('wait')

  state = type('State', (), {'step': np.int32(4)})()
  with pytest.raises(KeyboardInterrupt):
    checkpoint.save(Manager(), state)
  with pytest.raises(KeyboardInterrupt):
    checkpoint.wait(Manager())
  assert done == [4, 'wait']
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.slow
def test_ctrl_c_prints_one_line_and_resume_works(small_rsscn7, tmp_path):
  """SIGINT mid-run: exit 130 with one line and no traceback, every
  checkpoint complete; the same command then resumes and finishes."""
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  args = [sys.executable, '-m', 'hashjax.main',
          '--config=configs/ahcl.py:runlocal', '--config.data.name=folder',
          f'--config.data.root={small_rsscn7}',
          '--config.train.checkpoint_every=2', '--config.eval.topk=(10,)',
          f'--workdir={tmp_path}']
  proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 600
  while not (tmp_path / 'checkpoints' / '2').is_dir():
    assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
    time.sleep(0.2)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 130, err
  assert 'Traceback' not in err and 'interrupted' in err.splitlines()[-1]
  assert len([l for l in err.splitlines() if l.strip()]) <= 3, err
  again = subprocess.run(args, cwd=REPO, capture_output=True, text=True,
                         timeout=600)
  assert again.returncode == 0, again.stderr
  assert 'Resuming from the checkpoint at step' in again.stdout
  assert json.loads((tmp_path / 'results.json').read_text())['steps'] == 8


@pytest.mark.slow
def test_an_image_that_breaks_during_training_is_named(small_rsscn7, tmp_path,
                                                       monkeypatch):
  """A file damaged after the up-front check (here: replaced by a JPEG that
  TensorFlow rejects) stops the run with an error naming it, not a bare
  tf.data traceback."""
  import shutil  # pylint: disable=g-import-not-at-top
  from hashjax.data import image_set as image_set_lib  # pylint: disable=g-import-not-at-top
  from hashjax.data import sources  # pylint: disable=g-import-not-at-top
  root = tmp_path / 'data'
  shutil.copytree(small_rsscn7, root)
  victim = root / 'aGrass' / sorted(p.name for p in (root / 'aGrass').iterdir()
                                    )[0]
  real_load = sources.load

  def load_then_damage(data_config):
    image_set = real_load(data_config)
    shutil.copy(REPO / 'tests' / 'data' / 'pil_ok_tf_bad.jpg', victim)
    return image_set

  monkeypatch.setattr(sources, 'load', load_then_damage)
  config = _config(root)
  config.train.samples_per_round = 0       # every image, so the victim too
  with pytest.raises(image_set_lib.InputError, match=victim.name):
    train.run(config, str(tmp_path / 'w'))


@pytest.mark.parametrize('method', ['ahcl', 'dgssh'])
def test_multi_label_training(tmp_path, method):
  """AHCL and DGSSH train on the multi-label demo (a list with several
  labels per image): the classification term is the sigmoid CE, relevance
  is sharing a label, and the index built from the run keeps multi-hot
  labels."""
  import importlib  # pylint: disable=g-import-not-at-top
  from hashjax import methods  # pylint: disable=g-import-not-at-top
  from hashjax import search  # pylint: disable=g-import-not-at-top
  from hashjax.data import mosaic  # pylint: disable=g-import-not-at-top
  from hashjax.losses import pairwise  # pylint: disable=g-import-not-at-top
  c = importlib.import_module(f'configs.{method}').get_config(
      'runlocal,bits=16')
  c.data.update(name='list', root=mosaic.ensure(str(tmp_path / 'm'),
                                                count=120))
  c.eval.topk = (10,)
  calls = []
  real = pairwise.sigmoid_cross_entropy

  def spy(*a, **k):
    calls.append(1)
    return real(*a, **k)

  pairwise.sigmoid_cross_entropy = spy
  try:
    results = train.run(c, str(tmp_path / 'run'))
  finally:
    pairwise.sigmoid_cross_entropy = real
  assert calls                         # traced into the training step
  assert methods.hyperparams(c, multi_label=True).multi_label
  m = results['metrics']
  assert 0.0 < m['map@all'] <= 1.0 and m['num_queries'] == 25   # ~20 %, stratified
  idx = search.build(str(tmp_path / 'run'), str(tmp_path / 'a.hjidx'))
  assert (idx.labels.sum(1) > 1).any()


def test_ctrl_c_swallowed_inside_the_run_still_exits_130(monkeypatch):
  """A KeyboardInterrupt raised where Python ignores exceptions (seen in a
  JAX garbage-collection callback) lets the run finish; main still ends
  with status 130 and the one-line message."""
  import signal  # pylint: disable=g-import-not-at-top
  from hashjax import main as main_lib  # pylint: disable=g-import-not-at-top
  from hashjax import methods  # pylint: disable=g-import-not-at-top

  def run(config, workdir):
    del config, workdir
    try:
      signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
      pass   # swallowed, as in a gc callback

  exits = []
  monkeypatch.setattr(train, 'run', run)
  monkeypatch.setattr(main_lib, '_exit', lambda msg, code: exits.append(
      (msg, code)))
  monkeypatch.setattr(main_lib._Interrupt, 'seen', False)  # pylint: disable=protected-access
  monkeypatch.setattr(main_lib, '_CONFIG', type(
      'C', (), {'value': ahcl_config.get_config()})())
  monkeypatch.setattr(main_lib, '_WORKDIR', type('W', (), {'value': '/x'})())
  assert methods.get('ahcl').kind != 'frozen_features'
  previous = signal.getsignal(signal.SIGINT)
  try:
    main_lib.main(['hashjax.main'])
  finally:
    signal.signal(signal.SIGINT, previous)
  assert exits == [('hashjax: interrupted. Checkpoints in the workdir are '
                    'complete; rerun the same command to resume.', 130)]
