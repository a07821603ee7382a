"""MrHash (Sun et al., TGRS 2022): multisource reconstruction, DEC pseudo
multi-labels and a KL multi-semantic hash loss (docs/methods/mrhash.md).
Unsupervised: no label enters training or any stage choice.

Stages, prepared once and cached in the workdir (`prepare`):
  1. frozen features of every source (hashjax/features.py; sources from
     data.extra_sources: folders paired by relative path, 'tfds:FEATURE[:
     B0,B1,B2]' for another feature of the same TFDS dataset (so2sat/all's
     sentinel1 beside data.image_key='sentinel2:2,1,0'), or a synthetic
     'view:second_sensor');
  2. the multisource autoencoder on them (§1.2; the final epoch is kept:
     the released code's test-label checkpoint choice is a leak, §4);
  3. k-means on the latents -> the initial trainable centres (§1.3).
Then the shared trainer runs the hashing network (§1.4-1.5): the encoder on
source-1 images (ResNet-50 stands in for the paper's AlexNet) -> tanh hash
layer h -> bias-free projection to the latent space -> Student's-t Q_h on
the shared centres. The loss (`loss_fn`) is

  KL(P || Q_h) + KL(P || Q_f) + lambda0 * sum_s MSE(Dec_s(Enc(x_1)), x_s)

with the per-sample KL by default ('batchmean'; `released` keeps torch's
'mean', which also divides by K), P the DEC target refreshed at the start
of every epoch from the current autoencoder and centres (`start_round`),
and no quantisation term. With one source it is
deep clustering + KL hashing (the single-source fallback).
"""
import json
import os
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np

from hashjax import features as features_lib
from hashjax import workdir as workdir_lib
from hashjax.data import pairing
from hashjax.data import views
from hashjax.losses import clustering
from hashjax.methods import base
from hashjax.models import encoders
from hashjax.models import multisource
from hashjax.solvers import autoencoder as ae_solver


def _source_specs(config):
  return ('',) + tuple(config.data.extra_sources)


def make_model(config, ctx):
  del ctx   # unsupervised: no classifier.
  hp = config.loss
  encoder, normalize = encoders.build(config.model, config.input.image_size)
  dims = (encoder.num_features,) * len(_source_specs(config))
  return multisource.MrHashModel(encoder, normalize, config.bits, dims,
                                 latent=hp.latent, clusters=hp.clusters,
                                 alpha=hp.alpha)


# Stages 1-3 (module docstring), each cached in the workdir.


def _stage(t0, cached):
  return {'seconds': round(time.time() - t0, 1), 'cached': bool(cached)}


def _source_features(config, ctx, stages):
  """Stage 1: frozen features of every source, all images, one cache each."""
  image_set = ctx.data.image_set
  out = []
  for k, spec in enumerate(_source_specs(config)):
    view = views.get(spec) if spec else None
    source_set = image_set   # source 1, or a view computed from it
    if spec and view is None:   # other images, paired by relative path
      source_set = pairing.extra_source(config.data, image_set, spec)
    t0 = time.time()
    feats, cached = features_lib.cached_features(
        config, source_set, ctx.mesh, ctx.workdir, source=k, view=view,
        view_name=spec)
    stages[f'features_s{k}'] = _stage(t0, cached)
    out.append(feats)
  return out


def normalize_features(features, kind):
  """'none': raw pooled features, as released ('without_l2', §1.1).
  'l2': each row to unit L2 norm, times sqrt(d) (so a feature is O(1) and
  the MSE terms keep the released scale)."""
  if kind == 'none':
    return features
  if kind != 'l2':
    raise ValueError(f"loss.feature_norm must be 'none' or 'l2', got "
                     f'{kind!r}.')
  norm = np.linalg.norm(features, axis=1, keepdims=True)
  return features / np.maximum(norm, 1e-12) * np.sqrt(features.shape[1])


def _autoencoder(config, feats, workdir):
  """Stage 2: the multisource AE (§1.2). Returns (model, params, history,
  cached)."""
  hp = config.loss
  weights = tuple(hp.ae_weights)[:len(feats)] if len(feats) > 1 else (1.0,)
  model = multisource.MultiSourceAE(tuple(x.shape[1] for x in feats),
                                    latent=hp.latent)
  path = os.path.join(workdir, 'mrhash_autoencoder.npz')
  cached = workdir_lib.load_npz(path)
  if cached:
    template = model.init(jax.random.key(0), jnp.zeros((1, feats[0].shape[1])))
    params = flax.serialization.from_bytes(template['params'],
                                           cached['params'].tobytes())
    return model, params, cached['history'].tolist(), True
  print(f'mrhash: training the multisource autoencoder ({hp.ae_epochs} '
        f'epochs on {len(feats[0]):,} x {len(feats)} source(s))...', flush=True)
  _, params, history = ae_solver.train_autoencoder(
      feats, weights=weights, epochs=hp.ae_epochs, batch_size=hp.ae_batch,
      lr=hp.ae_lr, latent=hp.latent, seed=config.seed)
  workdir_lib.save_npz(path, params=np.frombuffer(
      flax.serialization.to_bytes(params), np.uint8),
                       history=np.asarray(history))
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'mrhash_ae_loss.json'), 'w') as f:
      json.dump(history, f)
  return model, params, history, False


def _centres(config, model, ae_params, feats1, workdir):
  """Stage 3: k-means on the latents -> initial centres (§1.3)."""
  path = os.path.join(workdir, 'mrhash_kmeans.npz')
  cached = workdir_lib.load_npz(path)
  if cached:
    return cached['centres'], True
  print(f'mrhash: k-means, {config.loss.clusters} centres, '
        f'{config.loss.kmeans_restarts} restarts...', flush=True)
  centres, _, _, inertia = ae_solver.cluster(
      model, ae_params, feats1, k=config.loss.clusters,
      restarts=config.loss.kmeans_restarts, alpha=config.loss.alpha,
      seed=config.seed)
  workdir_lib.save_npz(path, centres=centres, inertia=np.asarray(inertia))
  return centres, False


def prepare(config, ctx):
  """Stages 1-3. The AE and the centres go into the model's initial params;
  the training rows' source features into the state."""
  train_ids = ctx.data.splits['train']
  stages = {}
  feats = [normalize_features(f[train_ids], config.loss.feature_norm)
           for f in _source_features(config, ctx, stages)]
  t0 = time.time()
  model, ae_params, history, cached = _autoencoder(config, feats, ctx.workdir)
  stages['autoencoder'] = _stage(t0, cached)
  t0 = time.time()
  centres, cached = _centres(config, model, ae_params, feats[0], ctx.workdir)
  stages['kmeans'] = _stage(t0, cached)
  print(f'mrhash: {len(feats)} source(s); autoencoder loss '
        f'{history[0]:.4g} -> {history[-1]:.4g} over {len(history)} epochs; '
        f'{config.loss.clusters} centres', flush=True)
  print('mrhash stages: ' + ', '.join(
      f'{k} {v["seconds"]:.1f}s{" (cached)" if v["cached"] else ""}'
      for k, v in stages.items()), flush=True)
  return base.Prepared(
      params={'ae': jax.tree.map(jnp.asarray, ae_params),
              'centres': jnp.asarray(centres, jnp.float32)},
      arrays={'features': feats}, stages=stages)


# The hashing stage (§1.4-1.5), in the shared trainer.


def init_state(config, ctx):
  """The training rows' source features, and P (uniform until the first
  round's refresh)."""
  n, k = ctx.num_train, config.loss.clusters
  return {'features': tuple(jnp.asarray(f, jnp.float32)
                            for f in ctx.prepared.arrays['features']),
          'P': jnp.full((n, k), 1.0 / k, jnp.float32)}


def model_inputs(batch, state):
  rows = jnp.clip(batch['index'], 0)
  return {'sources': tuple(f[rows] for f in state['features'])}


def start_round(state, in_round, params, hp):
  """P <- DEC target of the current AE + centres over all training rows."""
  del in_round
  feats = state['features']
  ae = multisource.MultiSourceAE(tuple(f.shape[1] for f in feats),
                                 latent=hp.latent)
  z = ae.apply({'params': params['ae']}, feats[0], method=ae.encode)
  q = clustering.soft_assignment(z, params['centres'], hp.alpha)
  return dict(state, P=jax.lax.stop_gradient(
      clustering.target_distribution(q)))


def loss_fn(outputs, batch, state, hp):
  """KL(P||Q_h) + KL(P||Q_f) + lambda0 * reconstruction (§1.5)."""
  mask = batch['mask']
  rows = jnp.clip(batch['index'], 0)
  p = state['P'][rows]
  kl_h = clustering.kl_divergence(p, outputs['q_h'], hp.kl_reduction, mask)
  kl_f = clustering.kl_divergence(p, outputs['q_f'], hp.kl_reduction, mask)
  recon = clustering.reconstruction_loss(
      outputs['recons'], [f[rows] for f in state['features']],
      (1.0,) * len(state['features']), mask)
  loss = kl_h + kl_f + hp.lambda0 * recon
  return loss, {'kl_hash': kl_h, 'kl_feat': kl_f, 'recon': recon}
