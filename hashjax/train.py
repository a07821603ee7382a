"""The trainer of network methods: run(config, workdir).

Training is a sequence of rounds (AHCL/ADSH outer iterations; one epoch each
for methods without rounds). Each round: the method's `start_round` hook,
`epochs_per_round` passes over a sampled subset in a fixed order through ONE
jitted train step, then the `end_round` hook (e.g. the DCC update of V) and
a checkpoint. Nothing here knows which method runs (hashjax/methods/base.py
is the contract).
"""
import dataclasses
import math
import os
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
from clu import metric_writers

from hashjax import checkpoint
from hashjax import methods
from hashjax import optim
from hashjax import parallel
from hashjax import workdir as workdir_lib
from hashjax.data import image_set as image_set_lib
from hashjax.data import input_pipeline
from hashjax.data import protocols
from hashjax.data import sampling
from hashjax.data import sources
from hashjax.evaluation import evaluator
from hashjax.methods import base
from hashjax.models.pretrained import load as pretrained
from hashjax.state import TrainState


class NonFiniteLossError(RuntimeError):
  pass


def make_train_step(model, method, tx, lr_fn, hp):
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
      loss, metrics = method.loss_fn(outputs, batch, state.method_state, hp)
      return loss, (metrics, model_state, outputs)

    grad_fn = jax.value_and_grad(objective, has_aux=True)
    (loss, (metrics, model_state, outputs)), grads = grad_fn(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    method_state = method.update_state(
        state.method_state, jax.lax.stop_gradient(outputs), batch, hp)
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads),
                   lr=lr_fn(state.step))
    return state.replace(
        step=state.step + 1, params=optax.apply_updates(state.params, updates),
        model_state=model_state, opt_state=opt_state,
        method_state=method_state), metrics

  return train_step


def init_variables(config, model):
  """The model's initial variables, without compiling a full init."""
  size = config.input.image_size
  dummy = jnp.zeros((1, size, size, 3), jnp.uint8)
  return jax.jit(lambda k: model.init(k, dummy, train=False))(
      jax.random.key(config.seed))


def init_state(config, model, method, tx, ctx, pretrained_weights=True):
  """A fresh TrainState: initialised model + pretrained encoder weights +
  what the method's `prepare` computed (ctx.prepared.params).

  pretrained_weights=False skips reading the weight files: for a template
  that a checkpoint restore overwrites anyway.
  """
  rng = jax.random.key(config.seed)
  variables = init_variables(config, model)
  if pretrained_weights:
    variables = pretrained.load_pretrained(variables, config.model,
                                           model.encoder)
    variables = dict(variables, params=dict(variables['params'],
                                            **ctx.prepared.params))
  params = variables['params']
  model_state = {k: v for k, v in variables.items() if k != 'params'}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    model_state=model_state, opt_state=tx.init(params),
                    method_state=method.init_state(config, ctx),
                    rng=jax.random.key_data(jax.random.fold_in(rng, 1)))


def _fmt_time(seconds):
  m, s = divmod(int(seconds), 60)
  return f'{m // 60}h{m % 60:02d}m' if m >= 60 else f'{m}m{s:02d}s'


def _previous_train_seconds(workdir, default):
  """The training time of the finished run in `workdir` (results.json)."""
  path = os.path.join(workdir, 'results.json')
  if not os.path.exists(path):
    return default
  try:
    return workdir_lib.read_json(path).get('train_seconds', default)
  except ValueError:
    return default


def _build(config, workdir, mesh):
  """Data, splits, the run context (with the method's `prepare`), model and
  optimizer of a run."""
  method = methods.get(config.method)
  if method.kind != 'network':
    raise ValueError(f'{config.method!r} is a frozen-feature method: '
                     'hashjax.fit runs it, not the trainer.')
  image_set = sources.load(config.data)
  splits = protocols.split(image_set.names, image_set.primary_labels,
                           image_set.class_names, config.data.protocol)
  train_ids = splits['train']
  n = len(train_ids)
  ctx = base.RunContext(
      num_classes=len(image_set.class_names), num_train=n,
      train_labels=image_set.labels[train_ids], workdir=workdir, mesh=mesh,
      data=base.TrainingData(image_set=image_set, splits=splits))
  model = method.make_model(config, ctx)
  t_prepare = time.time()
  prepared = method.prepare(config, ctx)
  prepare_seconds = time.time() - t_prepare
  ctx = dataclasses.replace(ctx, prepared=prepared)
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
      model=model, ctx=ctx, prepare_seconds=prepare_seconds, tx=tx,
      lr_fn=lr_fn, steps_per_round=steps_per_round, total_steps=total_steps)


def run(config, workdir, trace=None):
  """Trains `config.method`, evaluates the final model, writes results.

  `trace`, a dict, receives 'losses' (every step's loss), 'state' (the final
  TrainState) and 'train_step' (the jitted step): for tests comparing runs
  on different device counts.
  """
  workdir_lib.validate(config)
  os.makedirs(workdir, exist_ok=True)
  with workdir_lib.writer_lock(workdir):
    return _run(config, workdir, trace)


def _run(config, workdir, trace):
  t_start, code_commit = time.time(), workdir_lib.commit()
  workdir_lib.check_config(workdir, config)
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.input.batch_size, mesh)

  b = _build(config, workdir, mesh)
  method, image_set, splits, model = b.method, b.image_set, b.splits, b.model
  n, m, tx, lr_fn = b.n, b.m, b.tx, b.lr_fn
  steps_per_round, total_steps = b.steps_per_round, b.total_steps
  hp = methods.hyperparams(
      config, multi_label=bool((image_set.labels.sum(1) > 1).any()))
  batch, train_ids = config.input.batch_size, splits['train']
  db = splits['database']
  workdir_lib.write_config(workdir, config)
  workdir_lib.write_run_info(
      workdir, config, class_names=image_set.class_names,
      database_ids=[image_set.names[i] for i in db],
      database_paths=image_set.paths[db], database_labels=image_set.labels[db],
      num_train=n)
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)

  print(f'hashjax: {config.method}, {config.bits} bits, data '
        f'{config.data.name} ({len(image_set)} images, '
        f'{len(image_set.class_names)} classes, protocol '
        f'{config.data.protocol}: {n} train/database, {len(splits["query"])} '
        f'query), {jax.device_count()} {jax.devices()[0].platform} device(s)'
        f'\nworkdir: {workdir}', flush=True)
  image_set.print_left_out(config.data.get('nomenclature', 'default'))

  mngr = checkpoint.manager(workdir, config.train.keep_checkpoints)
  resuming = mngr.latest_step() is not None
  if resuming:
    # The restore overwrites every value, so its template needs shapes only:
    # jax.eval_shape compiles no init and reads no weight file.
    template = jax.eval_shape(lambda: init_state(
        config, model, method, tx, b.ctx, pretrained_weights=False))
    state, _ = checkpoint.restore_latest(mngr, template)
    print(f'Resuming from the checkpoint at step {int(state.step)} in '
          f'{workdir}/checkpoints.', flush=True)
  else:
    print('initialising the model (compiling its init) and loading '
          'pretrained weights...', flush=True)
    state = init_state(config, model, method, tx, b.ctx)
  # Parameters are replicated; method-state arrays with one row per
  # database item (the bank V, U, labels, MrHash's features and P) are
  # sharded along 'data' (the DCC sweep and S^T U then run per shard).
  repl, data = parallel.replicated(mesh), parallel.data_sharded(mesh)
  shardings = jax.tree.map(lambda _: repl, state).replace(
      method_state=parallel.rows_sharded(state.method_state, n, mesh))
  state = jax.device_put(state, shardings)
  train_step = jax.jit(make_train_step(model, method, tx, lr_fn, hp),
                       in_shardings=(shardings, data),
                       out_shardings=(shardings, repl), donate_argnums=0)
  start_round = jax.jit(
      lambda s, in_round: s.replace(method_state=method.start_round(
          s.method_state, in_round, s.params, hp)),
      out_shardings=shardings, donate_argnums=0)
  end_round = jax.jit(
      lambda s: s.replace(method_state=method.end_round(
          s.method_state, s.params, hp)),
      out_shardings=shardings, donate_argnums=0)

  step = step_at_start = int(state.step)
  first_round = step // steps_per_round

  sampler = config.train.sampler
  if sampler not in ('random', 'class_balanced'):
    raise ValueError(f'train.sampler must be random|class_balanced, got '
                     f'{sampler!r}.')
  train_classes = image_set.primary_labels[train_ids]

  def rounds():   # (round, ImageSet ids, database rows), consumed lazily.
    for r in range(first_round, config.train.rounds):
      sample = sampling.round_sample(config.seed, r, n, m)
      if sampler == 'class_balanced':
        sample = sampling.class_balanced_order(
            sample, train_classes[sample], batch, config.train.class_group,
            config.seed, r)
      yield r, train_ids[sample], sample

  # A read failure names the file (image_set.numpy_batches).
  batches = image_set_lib.numpy_batches(input_pipeline.train(
      image_set, rounds(),
      epochs=config.train.epochs_per_round, global_batch=batch,
      image_size=config.input.image_size,
      resize_size=config.input.resize_size, augment_kind=config.input.augment,
      seed=config.seed, skip_batches=step - first_round * steps_per_round,
      prefetch=config.input.prefetch), image_set)
  t_train, images_seen, window = time.time(), 0, None
  try:
    for round_index in range(first_round, config.train.rounds):
      done_in_round = step - round_index * steps_per_round
      if done_in_round == 0:
        in_round = np.zeros(n, np.float32)
        in_round[sampling.round_sample(config.seed, round_index, n, m)] = 1.0
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
    checkpoint.wait(mngr)   # on Ctrl-C too: finish an in-flight save.
  train_seconds = time.time() - t_train
  if step_at_start == total_steps:   # a finished run, evaluated again.
    train_seconds = _previous_train_seconds(workdir, train_seconds)

  t_eval = time.time()
  metrics, _, _ = evaluator.evaluate(
      model=model, method=method, state=state, image_set=image_set,
      splits=splits, config=config, mesh=mesh)
  eval_seconds = time.time() - t_eval
  results = dict(
      method=config.method, bits=config.bits, dataset=config.data.name,
      protocol=config.data.protocol, commit=code_commit,
      steps=int(state.step), prepare_seconds=round(b.prepare_seconds, 1),
      **({'stages': dict(b.ctx.prepared.stages)}
         if b.ctx.prepared.stages else {}),
      train_seconds=round(train_seconds, 1),
      eval_seconds=round(eval_seconds, 1),
      wall_seconds=round(time.time() - t_start, 1),
      resumed_from_step=step_at_start or None,
      environment=workdir_lib.environment(),
      skipped_images=image_set.skipped,
      unlabelled_images=image_set.unlabelled, metrics=metrics)
  writer.write_scalars(int(state.step), {
      f'eval/{k}': v for k, v in metrics.items() if isinstance(v, float)})
  writer.flush()
  if evaluator.write_results(config, workdir, results):
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
