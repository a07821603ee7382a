"""optax optimizer and learning-rate schedule from `config.optim`."""
import jax
import jax.numpy as jnp
import optax


def timm_epoch_cosine(base_lr, *, epochs, warmup_epochs, warmup_init_lr,
                      min_lr, steps_per_epoch, samples_per_epoch):
  """lr(step) of DGSSH's released schedule (docs/methods/dgssh.md §1.0, §1.3).

  timm's CosineLRScheduler with t counted in *samples* (t_initial =
  epochs * N, warmup_t = warmup_epochs * N, N = samples_per_epoch), stepped
  once at the end of each epoch e with t = e * N + (steps_per_epoch - 1).
  Epoch 0 therefore runs at warmup_init_lr and epoch e >= 1 at lr(t) of the
  update after epoch e - 1: for UCMD (N = 1680, 53 steps, base 2.5e-6)
  epoch 1 at 1.80e-8, epoch 6 at 2.44e-6, epoch 49 at 3.4e-8.
  """
  t_initial = float(epochs * samples_per_epoch)
  warmup_t = float(warmup_epochs * samples_per_epoch)

  def schedule(step):
    epoch = step // steps_per_epoch
    t = ((epoch - 1) * samples_per_epoch + steps_per_epoch - 1).astype(
        jnp.float32)
    warm = warmup_init_lr + t * (base_lr - warmup_init_lr) / max(warmup_t, 1.0)
    cos = min_lr + 0.5 * (base_lr - min_lr) * (
        1.0 + jnp.cos(jnp.pi * t / t_initial))
    lr = jnp.where(t < warmup_t, warm, cos)
    return jnp.where(epoch == 0, warmup_init_lr, lr)

  return schedule


def learning_rate(optim, total_steps, steps_per_round, samples_per_round=0):
  """lr(step). piecewise boundaries are given in rounds (outer iterations):
  the AHCL code divides lr by 10 *after* rounds 10 and 20 (docs/methods/ahcl.md §1.8), i.e.
  boundaries=(11, 21). 'timm_epoch_cosine' treats a round as an epoch."""
  if optim.schedule == 'timm_epoch_cosine':
    return timm_epoch_cosine(
        optim.lr, epochs=total_steps // steps_per_round,
        warmup_epochs=optim.warmup_epochs,
        warmup_init_lr=optim.warmup_init_lr, min_lr=optim.min_lr,
        steps_per_epoch=steps_per_round, samples_per_epoch=samples_per_round)
  if optim.schedule == 'constant':
    sched = optax.constant_schedule(optim.lr)
  elif optim.schedule == 'piecewise':
    sched = optax.piecewise_constant_schedule(
        optim.lr, {int(b) * steps_per_round: optim.decay
                   for b in optim.boundaries})
  elif optim.schedule == 'cosine':
    sched = optax.cosine_decay_schedule(
        optim.lr, max(total_steps - optim.warmup_steps, 1))
  else:
    raise ValueError(f'optim.schedule must be constant|piecewise|cosine|'
                     f'timm_epoch_cosine, got {optim.schedule!r}.')
  if optim.warmup_steps:
    warm = optax.linear_schedule(0.0, optim.lr, optim.warmup_steps)
    sched = optax.join_schedules([warm, sched], [optim.warmup_steps])
  return sched


def make(optim, total_steps, steps_per_round, samples_per_round=0):
  """Returns (tx, lr_fn).

  sgd: PyTorch SGD semantics, coupled L2 (grad += wd * theta) on all
  parameters before momentum (docs/methods/ahcl.md §4 item 13). adamw: decoupled.
  """
  lr = learning_rate(optim, total_steps, steps_per_round, samples_per_round)
  parts = []
  if optim.grad_clip:
    parts.append(optax.clip_by_global_norm(optim.grad_clip))
  if optim.name == 'sgd':
    if optim.weight_decay:
      parts.append(optax.add_decayed_weights(optim.weight_decay))
    parts.append(optax.sgd(lr, momentum=optim.momentum or None,
                           nesterov=optim.nesterov))
  elif optim.name == 'adamw':
    parts.append(optax.adamw(lr, weight_decay=optim.weight_decay))
  else:
    raise ValueError(f'optim.name must be sgd|adamw, got {optim.name!r}.')
  mult = optim.get('encoder_lr_mult', 1.0)
  if mult != 1.0:
    parts.append(scale_subtree('encoder', mult))
  return optax.chain(*parts), lr


def scale_subtree(name, factor):
  """Multiplies the updates of params[name] by `factor`.

  After sgd (with momentum) or adamw this is exactly a learning rate of
  lr * factor for that subtree (both updates are linear in lr), i.e.
  PyTorch's per-parameter-group lr, e.g. MrHash's backbone at 0.01x
  (docs/methods/mrhash.md §1.6).
  """
  def update_fn(updates, state, params=None):
    del params
    if name not in updates:
      raise ValueError(f'optim.encoder_lr_mult: the model has no {name!r} '
                       f'parameters (top level: {sorted(updates)}).')
    scaled = {k: jax.tree.map(lambda u: u * factor, v) if k == name else v
              for k, v in updates.items()}
    return type(updates)(scaled), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(),
                                      update_fn)
