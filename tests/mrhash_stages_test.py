"""MrHash's autoencoder and clustering stages on toy features."""
import numpy as np
import pytest
import jax.numpy as jnp

from hashjax.solvers import autoencoder as ae_solver
from hashjax.losses import clustering
from hashjax.models import multisource


def _two_sources(n=256, seed=0):
  """Source 2 is a fixed nonlinear function of source 1 (a second sensor)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 3, n)
  centres = rng.standard_normal((3, 32)) * 3
  x1 = centres[labels] + 0.3 * rng.standard_normal((n, 32))
  x2 = np.tanh(x1 @ rng.standard_normal((32, 16)) / 4)
  return x1.astype(np.float32), x2.astype(np.float32), labels


def test_autoencoder_shapes_and_loss():
  model = multisource.MultiSourceAE((32, 16), hidden=(8,), latent=4)
  import jax  # pylint: disable=g-import-not-at-top
  params = model.init(jax.random.key(0), jnp.zeros((2, 32)))['params']
  z, (r1, r2) = model.apply({'params': params}, jnp.ones((2, 32)))
  assert z.shape == (2, 4) and r1.shape == (2, 32) and r2.shape == (2, 16)
  loss = clustering.reconstruction_loss(
      [jnp.zeros((2, 3)), jnp.ones((2, 1))],
      [jnp.ones((2, 3)), jnp.zeros((2, 1))], (0.1, 2.0))
  np.testing.assert_allclose(loss, 0.1 * 1.0 + 2.0 * 1.0, rtol=1e-6)


@pytest.mark.slow
def test_autoencoder_learns_and_latents_cluster():
  x1, x2, labels = _two_sources()
  model, params, history = ae_solver.train_autoencoder(
      [x1, x2], weights=(0.1, 1.0), epochs=30, batch_size=64, lr=1e-3,
      latent=8, seed=0)
  assert history[-1] < 0.5 * history[0]
  centres, q, p, _ = ae_solver.cluster(model, params, x1, k=3, restarts=3,
                                       alpha=1.0, seed=0)
  assert centres.shape == (3, 8) and q.shape == p.shape == (256, 3)
  np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
  # Without labels, the clusters of the latent recover the 3 groups.
  assign = q.argmax(1)
  purity = sum(np.bincount(labels[assign == c]).max()
               for c in np.unique(assign)) / len(labels)
  assert purity > 0.95
