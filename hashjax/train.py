"""The trainer shared by every method: run(config, workdir).

Training is a sequence of rounds (AHCL/ADSH outer iterations; one epoch each
for methods without rounds). Each round: the method's `start_round` hook,
`epochs_per_round` passes over a sampled subset in a fixed order through ONE
jitted train step, then the `end_round` hook (e.g. the DCC update of V) and
a checkpoint. Nothing here knows which method runs.
"""
import json
import math
import os
import subprocess
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from clu import metric_writers
import ml_collections

from hashjax import checkpoint
from hashjax import methods
from hashjax import optim
from hashjax import parallel
from hashjax.data import input_pipeline
from hashjax.data import protocols
from hashjax.data import sources
from hashjax.evaluation import evaluator
from hashjax.evaluation import plots
from hashjax.models import encoders
from hashjax.state import TrainState


class NonFiniteLossError(RuntimeError):
  pass


def make_train_step(model, method, tx, lr_fn, loss_kw):
  """One step for every method: forward, method loss, backward, optimizer,
  then the method's no-gradient state update (e.g. AHCL writes U rows)."""

  def train_step(state, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    mutable = list(state.model_state) or False

    extra = method.model_inputs(batch, state.method_state)

    def objective(params):
      out = model.apply({'params': params, **state.model_state},
                        batch['image'], train=True, mutable=mutable,
                        rngs={'dropout': rng}, **extra)
      outputs, model_state = out if mutable else (out, {})
      loss, metrics = method.loss_fn(outputs, batch, state.method_state,
                                     **loss_kw)
      return loss, (metrics, model_state, outputs)

    grad_fn = jax.value_and_grad(objective, has_aux=True)
    (loss, (metrics, model_state, outputs)), grads = grad_fn(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    method_state = method.update_state(
        state.method_state, jax.lax.stop_gradient(outputs), batch, **loss_kw)
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads),
                   lr=lr_fn(state.step))
    return state.replace(
        step=state.step + 1, params=optax.apply_updates(state.params, updates),
        model_state=model_state, opt_state=opt_state,
        method_state=method_state), metrics

  return train_step


def init_state(config, model, method, tx, meta, pretrained=True):
  """A fresh TrainState: initialised model + pretrained encoder weights.

  pretrained=False skips reading the weight file: for a template that a
  checkpoint restore overwrites anyway.
  """
  rng = jax.random.key(config.seed)
  size = config.input.image_size
  dummy = jnp.zeros((1, size, size, 3), jnp.uint8)
  variables = jax.jit(lambda k: model.init(k, dummy, train=False))(rng)
  if pretrained:
    variables = encoders.load_pretrained(variables, config.model,
                                         model.encoder)
    variables = method.init_params(variables, meta)
  params = variables['params']
  model_state = {k: v for k, v in variables.items() if k != 'params'}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    model_state=model_state, opt_state=tx.init(params),
                    method_state=method.init_state(config, meta),
                    rng=jax.random.key_data(jax.random.fold_in(rng, 1)))


def round_sample(seed, round_index, n, m):
  """The round's sample Omega: the first m of a seeded permutation (§1.6)."""
  perm = np.random.default_rng([seed, round_index]).permutation(n)
  return perm[:m] if m else perm


def class_balanced_order(sample, labels, batch_size, k, seed, round_index):
  """Reorders a round's sample so that batches are made of class groups of k.

  Each class's images are shuffled and cut into groups of k; the groups are
  shuffled and laid out first, so that every batch (batch_size a multiple
  of k) holds whole groups and every anchor in it has at least k - 1
  positives. The per-class remainders (< k images) come last. Every image
  of the sample is still visited exactly once per epoch (the DCC needs all
  of U), in contrast with samplers that draw P classes with replacement.
  With the released code's random batches of 32, ~22% of UCMD anchors have
  no positive (DGSSH spec §1.4.4).

  Args:
    sample: [m] database rows of the round, any order.
    labels: [m] class index of each entry of `sample` (primary label).
    batch_size: global batch size; must be a multiple of k.
    k: images per class group.
    seed, round_index: seed the shuffles.

  Returns:
    [m] the same rows, reordered.
  """
  if k < 2 or batch_size % k:
    raise ValueError(f'train.class_group={k} must be >= 2 and divide '
                     f'input.batch_size={batch_size}.')
  rng = np.random.default_rng([seed, round_index, 1])
  groups, rest = [], []
  for cls in np.unique(labels):
    rows = rng.permutation(sample[labels == cls])
    full = len(rows) // k * k
    groups.extend(rows[:full].reshape(-1, k))
    rest.append(rows[full:])
  order = [groups[i] for i in rng.permutation(len(groups))]
  return np.concatenate(order + rest).astype(sample.dtype)


def _commit():
  try:
    return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                          capture_output=True, text=True, check=True,
                          cwd=os.path.dirname(__file__)).stdout.strip()
  except Exception:  # pylint: disable=broad-except
    return 'unknown'


def _fmt_time(seconds):
  m, s = divmod(int(seconds), 60)
  return f'{m // 60}h{m % 60:02d}m' if m >= 60 else f'{m}m{s:02d}s'


def write_results(config, workdir, results):
  """results.json and pr_curve.png on process 0; True there."""
  if jax.process_index() != 0:
    return False
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump(results, f, indent=2)
  plots.save_pr_curve(results['metrics'],
                      os.path.join(workdir, 'pr_curve.png'),
                      title=f'{config.method} {config.bits} bits, '
                      f'{config.data.name}')
  return True


def _check_config(workdir, config):
  """A workdir holds one run: refuse to resume it with another config."""
  path = os.path.join(workdir, 'config.json')
  current = json.loads(config.to_json_best_effort(sort_keys=True))
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if saved != current:
      diff = sorted(k for k in set(saved) | set(current)
                    if saved.get(k) != current.get(k))
      raise ValueError(
          f'Workdir {workdir!r} holds a run with a different config '
          f'(differs in: {", ".join(diff)}). Use another --workdir, or delete '
          'it to start over.')
  elif jax.process_index() == 0:
    with open(path, 'w') as f:
      json.dump(current, f, indent=2, sort_keys=True)


def _build(config, workdir, mesh):
  """Data, splits, model, the method's prepared meta and the optimizer of a
  run: shared by `run` and `load_trained`."""
  method = methods.get(config.method)
  image_set = sources.load(config.data)
  splits = protocols.split(image_set.names, image_set.primary_labels,
                           image_set.class_names, config.data.protocol)
  train_ids = splits['train']
  n = len(train_ids)
  model = method.make_model(config, num_classes=len(image_set.class_names))
  meta = {'train_labels': image_set.labels[train_ids], 'num_train': n,
          'train_ids': train_ids}
  t_prepare = time.time()
  meta.update(method.prepare(config, image_set, splits, workdir, mesh))
  prepare_seconds = time.time() - t_prepare
  m = config.train.samples_per_round or n
  if m > n:
    raise ValueError(f'train.samples_per_round={m} exceeds the {n} training '
                     'images.')
  steps_per_round = config.train.epochs_per_round * math.ceil(
      m / config.input.batch_size)
  total_steps = config.train.rounds * steps_per_round
  tx, lr_fn = optim.make(config.optim, total_steps, steps_per_round, m)
  return types.SimpleNamespace(
      method=method, image_set=image_set, splits=splits, n=n, m=m,
      model=model, meta=meta, prepare_seconds=prepare_seconds, tx=tx,
      lr_fn=lr_fn, steps_per_round=steps_per_round, total_steps=total_steps)


def load_trained(workdir):
  """A trained run, from its workdir: its config, the data and splits, the
  model and the last checkpoint's TrainState (for hashjax.search).

  Returns a namespace with config, method, model, state, image_set,
  splits, mesh.
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{workdir!r} is not a hashjax run (no '
                            'config.json). Train one with python -m '
                            'hashjax.main first.')
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  if methods.get(config.method).KIND == 'frozen_features':
    raise ValueError(f'{workdir!r} is a {config.method} run: it has no '
                     'network to encode new images with.')
  mesh = parallel.make_mesh()
  b = _build(config, workdir, mesh)
  state = init_state(config, b.model, b.method, b.tx, b.meta,
                     pretrained=False)
  mngr = checkpoint.manager(workdir, config.train.keep_checkpoints)
  restored, step = checkpoint.restore_latest(mngr, state)
  mngr.close()
  if restored is None:
    raise FileNotFoundError(f'{workdir!r} has no checkpoint yet.')
  return types.SimpleNamespace(
      config=config, method=b.method, model=b.model, state=restored,
      step=int(step), image_set=b.image_set, splits=b.splits, mesh=mesh)


def run(config, workdir, trace=None):
  """Trains `config.method`, evaluates the final model, writes results.

  `trace`, a dict, receives 'losses' (every step's loss), 'state' (the final
  TrainState) and 'train_step' (the jitted step): for tests comparing runs
  on different device counts.
  """
  method = methods.get(config.method)
  if method.KIND == 'frozen_features':
    from hashjax import frozen  # pylint: disable=g-import-not-at-top
    return frozen.run(config, method, workdir)
  t_start = time.time()
  os.makedirs(workdir, exist_ok=True)
  _check_config(workdir, config)
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.input.batch_size, mesh)

  b = _build(config, workdir, mesh)
  image_set, splits, model, meta = b.image_set, b.splits, b.model, b.meta
  n, m, tx, lr_fn = b.n, b.m, b.tx, b.lr_fn
  steps_per_round, total_steps = b.steps_per_round, b.total_steps
  prepare_seconds, loss_kw = b.prepare_seconds, config.loss.to_dict()
  batch, train_ids = config.input.batch_size, splits['train']

  print(f'hashjax: {config.method}, {config.bits} bits, data '
        f'{config.data.name} ({len(image_set)} images, '
        f'{len(image_set.class_names)} classes, protocol '
        f'{config.data.protocol}: {n} train/database, {len(splits["query"])} '
        f'query), {jax.device_count()} {jax.devices()[0].platform} device(s)'
        f'\nworkdir: {workdir}', flush=True)
  if image_set.skipped:
    print(f'Skipped {len(image_set.skipped)} unreadable image(s) '
          '(data.skip_bad_images=True); listed in results.json.')

  mngr = checkpoint.manager(workdir, config.train.keep_checkpoints)
  resuming = mngr.latest_step() is not None
  state = init_state(config, model, method, tx, meta,
                     pretrained=not resuming)
  restored, _ = checkpoint.restore_latest(mngr, state)
  if restored is not None:
    state = restored
    print(f'Resuming from the checkpoint at step {int(state.step)} in '
          f'{workdir}/checkpoints.', flush=True)
  # Parameters are replicated; method-state arrays with one row per
  # database item (the bank V, U, labels, MrHash's features and P) are
  # sharded along 'data' (the DCC sweep and S^T U then run per shard).
  repl, data = parallel.replicated(mesh), parallel.data_sharded(mesh)
  shardings = jax.tree.map(lambda _: repl, state).replace(
      method_state=parallel.rows_sharded(state.method_state, n, mesh))
  state = jax.device_put(state, shardings)
  train_step = jax.jit(make_train_step(model, method, tx, lr_fn, loss_kw),
                       in_shardings=(shardings, data),
                       out_shardings=(shardings, repl), donate_argnums=0)
  hook = lambda fn: jax.jit(  # pylint: disable=g-long-lambda
      lambda s, *a: s.replace(method_state=fn(
          s.method_state, *a, params=s.params, **loss_kw)),
      out_shardings=shardings, donate_argnums=0)
  start_round, end_round = hook(method.start_round), hook(method.end_round)

  step = int(state.step)
  first_round = step // steps_per_round

  sampler = config.train.get('sampler', 'random')
  if sampler not in ('random', 'class_balanced'):
    raise ValueError(f'train.sampler must be random|class_balanced, got '
                     f'{sampler!r}.')
  train_classes = image_set.primary_labels[train_ids]

  def rounds():   # (round, ImageSet ids, database rows), consumed lazily.
    for r in range(first_round, config.train.rounds):
      sample = round_sample(config.seed, r, n, m)
      if sampler == 'class_balanced':
        sample = class_balanced_order(sample, train_classes[sample], batch,
                                      config.train.class_group, config.seed, r)
      yield r, train_ids[sample], sample

  batches = input_pipeline.train(
      image_set, rounds(),
      epochs=config.train.epochs_per_round, global_batch=batch,
      image_size=config.input.image_size,
      resize_size=config.input.resize_size, augment_kind=config.input.augment,
      seed=config.seed, skip_batches=step - first_round * steps_per_round,
      prefetch=config.input.prefetch).as_numpy_iterator()
  t_train, images_seen, window = time.time(), 0, None
  try:
    for round_index in range(first_round, config.train.rounds):
      done_in_round = step - round_index * steps_per_round
      if done_in_round == 0:
        in_round = np.zeros(n, np.float32)
        in_round[round_sample(config.seed, round_index, n, m)] = 1.0
        state = start_round(state, jnp.asarray(in_round))
      for _ in range(steps_per_round - done_in_round):
        host_batch = next(batches)
        state, metrics = train_step(state, parallel.global_batch(host_batch,
                                                                 mesh))
        step += 1
        metrics = jax.device_get(metrics)
        if trace is not None:
          trace.setdefault('losses', []).append(float(metrics['loss']))
        if not np.isfinite(metrics['loss']):
          last = mngr.latest_step()
          raise NonFiniteLossError(
              f'Non-finite loss {metrics["loss"]} at step {step}. Last finite '
              f'checkpoint: {f"step {last}" if last is not None else "none"} in '
              f'{workdir}/checkpoints. Lower optim.lr or check the data.')
        images_seen += int(host_batch['mask'].sum()) * jax.process_count()
        if window is None:   # the first step includes compilation.
          window = (time.time(), step, images_seen)
          print(f'step {step}/{total_steps}: compiled and ran the first step in '
                f'{time.time() - t_train:.1f}s', flush=True)
        if step % config.train.log_every == 0 or step == total_steps:
          t0, s0, i0 = window
          # The window starts after the first (compiling) step.
          timed = step > s0
          rate = ((images_seen - i0) / (time.time() - t0) if timed else 0.0)
          sec_per_step = (time.time() - t0) / max(step - s0, 1)
          writer.write_scalars(step, {f'train/{k}': float(v)
                                      for k, v in metrics.items()})
          terms = ' '.join(f'{k} {float(v):.4g}' for k, v in sorted(
              metrics.items()) if k not in ('loss', 'lr', 'grad_norm'))
          print(f'step {step}/{total_steps} round {round_index + 1}/'
                f'{config.train.rounds} | loss {float(metrics["loss"]):.4f} '
                f'({terms}) lr {float(metrics["lr"]):.2e} | '
                f'{f"{rate:.1f}" if timed else "-"} img/s | '
                f'{_fmt_time(time.time() - t_start)} elapsed, ETA '
                f'{_fmt_time(sec_per_step * (total_steps - step))}',
                flush=True)
        if (step % config.train.checkpoint_every == 0 and
            step % steps_per_round):
          checkpoint.save(mngr, state)
      state = end_round(state)
      checkpoint.save(mngr, state)
  finally:
    mngr.wait_until_finished()   # on Ctrl-C too: finish an in-flight save.
  train_seconds = time.time() - t_train

  t_eval = time.time()
  metrics, _, _ = evaluator.evaluate(
      model=model, method=method, state=state, image_set=image_set,
      splits=splits, config=config, mesh=mesh)
  eval_seconds = time.time() - t_eval
  results = dict(
      method=config.method, bits=config.bits, dataset=config.data.name,
      protocol=config.data.protocol, commit=_commit(), steps=int(state.step),
      prepare_seconds=round(prepare_seconds, 1),
      **({'stages': meta['stages']} if 'stages' in meta else {}),
      train_seconds=round(train_seconds, 1),
      eval_seconds=round(eval_seconds, 1),
      wall_seconds=round(time.time() - t_start, 1),
      skipped_images=image_set.skipped, metrics=metrics)
  writer.write_scalars(int(state.step), {
      f'eval/{k}': v for k, v in metrics.items() if isinstance(v, float)})
  writer.flush()
  if write_results(config, workdir, results):
    summary = ' '.join(f'{k} {v:.4f}' for k, v in metrics.items()
                       if isinstance(v, float))
    print(f'done: {summary} | train {_fmt_time(train_seconds)}, eval '
          f'{_fmt_time(eval_seconds)}, total '
          f'{_fmt_time(results["wall_seconds"])}\nresults: '
          f'{os.path.join(workdir, "results.json")}', flush=True)
  mngr.close()
  if trace is not None:
    trace.update(state=state, train_step=train_step)
  return results
