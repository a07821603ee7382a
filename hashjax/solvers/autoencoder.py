"""MrHash's stages on frozen features (docs/methods/mrhash.md §1.2-1.3), label-free.

  train_autoencoder  stage 1: the multisource AE on cached features, Adam
                     with the released step decay; the final epoch is kept
                     (the released code picks the epoch with the best
                     *test-label* mAP, a leak we do not reproduce, §4).
  cluster            stage 2a: k-means on the latents -> initial centres,
                     soft assignment Q and the DEC target P.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hashjax.solvers import kmeans
from hashjax.losses import clustering
from hashjax.models import multisource


def train_autoencoder(features, *, weights, epochs, batch_size, lr, latent,
                      seed, decay_every=40, decay=0.5):
  """Trains the multisource AE on per-source features.

  Args:
    features: list of [n, d_s] float arrays, source 1 first, rows paired.
    weights: reconstruction weight per source (released: 0.1 for source 1,
      1 for source 2).
    epochs, batch_size, lr, decay_every, decay: Adam with lr * decay every
      `decay_every` epochs (released: 200, 512, 1e-3, 40, 0.5; the first
      three come from the config).
    latent: latent size; seed: init and shuffling.

  Returns:
    (model, params, [mean loss per epoch]).
  """
  n = features[0].shape[0]
  if any(f.shape[0] != n for f in features):
    raise ValueError('Every source needs one feature row per image.')
  model = multisource.MultiSourceAE(tuple(f.shape[1] for f in features),
                                    latent=latent)
  xs = [jnp.asarray(f, jnp.float32) for f in features]
  params = model.init(jax.random.key(seed), xs[0][:1])['params']
  steps_per_epoch = -(-n // batch_size)
  schedule = optax.exponential_decay(lr, decay_every * steps_per_epoch, decay,
                                     staircase=True)
  tx = optax.adam(schedule)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, idx, mask):
    def loss_fn(p):
      _, recons = model.apply({'params': p}, xs[0][idx])
      # Padding rows (mask 0) repeat row 0; weighted out.
      return clustering.reconstruction_loss(recons, [x[idx] for x in xs],
                                            weights, mask)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  history = []
  t0 = last = time.time()
  for epoch in range(epochs):
    if time.time() - last > 10:   # a progress line every 10 s
      last = time.time()
      print(f'autoencoder: epoch {epoch}/{epochs}, loss {history[-1]:.4g}, '
            f'ETA {(last - t0) / epoch * (epochs - epoch):.0f}s', flush=True)
    order = rng.permutation(n)
    pad = steps_per_epoch * batch_size - n
    order = np.concatenate([order, np.zeros(pad, order.dtype)])
    mask = np.concatenate([np.ones(n), np.zeros(pad)]).astype(np.float32)
    losses = []
    for s in range(steps_per_epoch):
      sl = slice(s * batch_size, (s + 1) * batch_size)
      params, opt_state, loss = step(params, opt_state,
                                     jnp.asarray(order[sl]),
                                     jnp.asarray(mask[sl]))
      losses.append(float(loss) * mask[sl].sum())
    history.append(float(sum(losses) / n))
  return model, params, history


def cluster(model, params, features1, *, k, restarts, alpha, seed):
  """Stage 2a: latents -> k-means centres, Q and the DEC target P."""
  z = model.apply({'params': params}, jnp.asarray(features1, jnp.float32),
                  method=model.encode)
  centres, inertia, _ = kmeans.kmeans(z, k, restarts=restarts, seed=seed)
  q = clustering.soft_assignment(z, jnp.asarray(centres), alpha)
  return centres, np.asarray(q), np.asarray(
      clustering.target_distribution(q)), inertia
