"""optax optimizer and learning-rate schedule from `config.optim`."""
import optax


def learning_rate(optim, total_steps, steps_per_round):
  """lr(step). piecewise boundaries are given in rounds (outer iterations):
  the AHCL code divides lr by 10 *after* rounds 10 and 20 (spec §1.8), i.e.
  boundaries=(11, 21)."""
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
    raise ValueError(f'optim.schedule must be constant|piecewise|cosine, got '
                     f'{optim.schedule!r}.')
  if optim.warmup_steps:
    warm = optax.linear_schedule(0.0, optim.lr, optim.warmup_steps)
    sched = optax.join_schedules([warm, sched], [optim.warmup_steps])
  return sched


def make(optim, total_steps, steps_per_round):
  """Returns (tx, lr_fn).

  sgd: PyTorch SGD semantics, coupled L2 (grad += wd * theta) on all
  parameters before momentum (AHCL spec §4 item 13). adamw: decoupled.
  """
  lr = learning_rate(optim, total_steps, steps_per_round)
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
  return optax.chain(*parts), lr
