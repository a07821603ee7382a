"""MrHash (Sun et al., TGRS 2022): multisource reconstruction, DEC pseudo
multi-labels and a KL multi-semantic hash loss. Spec: ../shared/specs/
mrhash.md. Unsupervised: no label enters training or any stage choice.

Stages, prepared once and cached in the workdir (`prepare`):
  1. frozen features of every source (hashjax/frozen.py; sources from
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

with torch's 'mean' KL reduction (/ (B K)) as released, P the DEC target
refreshed at the start of every epoch from the current autoencoder and
centres (`start_round`), and no quantisation term. With one source it is
deep clustering + KL hashing (the single-source fallback).
"""
import json
import os
import time

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hashjax import frozen
from hashjax import mrhash_stages
from hashjax.data import sources as sources_lib
from hashjax.data import views
from hashjax.losses import clustering
from hashjax.models import autoencoder
from hashjax.models import encoders
from hashjax.models import heads

DATABASE_CODES = 'encoder'


class MrHashModel(nn.Module):
  """encoder -> tanh hash u -> latent projection -> Q_h; the AE -> Q_f."""
  encoder: nn.Module
  normalize: object
  bits: int
  source_dims: tuple
  latent: int = 64
  clusters: int = 16
  alpha: float = 1.0

  @nn.compact
  def __call__(self, images, train=False, sources=None):
    x = self.normalize(images.astype(jnp.float32))
    features = self.encoder(x, train=train)['features']
    u = jnp.tanh(heads.TorchDense(self.bits, name='hash')(features))
    proj = nn.Dense(self.latent, use_bias=False, name='to_latent')(u)
    centres = self.param('centres', nn.initializers.xavier_normal(),
                         (self.clusters, self.latent))
    out = {'features': features, 'u': u,
           'q_h': clustering.soft_assignment(proj, centres, self.alpha)}
    ae = autoencoder.MultiSourceAE(tuple(self.source_dims),
                                   latent=self.latent, name='ae')
    if sources is None and self.is_initializing():
      sources = [jnp.zeros((1, d)) for d in self.source_dims]
    if sources is not None:
      z, recons = ae(sources[0])
      out.update(q_f=clustering.soft_assignment(z, centres, self.alpha),
                 recons=recons)
    return out


def _source_specs(config):
  return ('',) + tuple(config.data.get('extra_sources', ()))


def make_model(config, num_classes):
  del num_classes   # unsupervised: no classifier.
  encoder, normalize = encoders.build(config.model, config.input.image_size)
  dims = (encoder.num_features,) * len(_source_specs(config))
  return MrHashModel(encoder, normalize, config.bits, dims,
                     latent=config.loss.latent, clusters=config.loss.clusters,
                     alpha=config.loss.alpha)


def _source_features(config, image_set, workdir, mesh, stages):
  """Frozen features of every source, all images, cached per source."""
  out = []
  for k, spec in enumerate(_source_specs(config)):
    view = views.get(spec) if spec else None
    source_set = image_set   # source 1, or a view computed from it
    if spec and view is None:   # other images, paired by relative path
      d = config.data
      if spec.startswith('tfds:'):   # another feature of the same TFDS data
        other = sources_lib.from_tfds(d.name, d.tfds_split, d.data_dir,
                                      d.download, d.cache_dir,
                                      d.skip_bad_images, spec[len('tfds:'):])
      else:                          # a folder root
        other = sources_lib.from_folder(spec, d.skip_bad_images)
      source_set = sources_lib.pair_sources(
          [image_set, other], ['source 1', spec])[1]
    t0 = time.time()
    feats, cached = frozen.cached_features(config, source_set, mesh, workdir,
                                           source=k, view=view, view_name=spec)
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


def _load_npz(path):
  """A stage's cached arrays, or {} if the stage has not run yet."""
  if not os.path.exists(path):
    return {}
  with np.load(path, allow_pickle=False) as f:
    return dict(f)


def _stage(t0, cached):
  return {'seconds': round(time.time() - t0, 1), 'cached': bool(cached)}


def prepare(config, image_set, splits, workdir, mesh):
  """Stages 1-3 (module docstring), each cached in the workdir.

  Returns meta with the features, AE parameters and centres, and 'stages':
  the wall time of each stage in this run and whether it came from the
  cache (results.json).
  """
  c = config.loss
  train_ids = splits['train']
  stages = {}
  feats = [normalize_features(f[train_ids], c.get('feature_norm', 'none'))
           for f in _source_features(config, image_set, workdir, mesh,
                                     stages)]
  weights = tuple(c.ae_weights)[:len(feats)] if len(feats) > 1 else (1.0,)
  model = autoencoder.MultiSourceAE(tuple(x.shape[1] for x in feats),
                                    latent=c.latent)
  ae_path = os.path.join(workdir, 'mrhash_autoencoder.npz')
  t0 = time.time()
  cached = _load_npz(ae_path)
  if cached:
    template = model.init(jax.random.key(0), jnp.zeros((1, feats[0].shape[1])))
    ae_params = flax.serialization.from_bytes(
        template['params'], cached['params'].tobytes())
    history = cached['history'].tolist()
  else:
    _, ae_params, history = mrhash_stages.train_autoencoder(
        feats, weights=weights, epochs=c.ae_epochs, batch_size=c.ae_batch,
        lr=c.ae_lr, latent=c.latent, seed=config.seed)
    frozen.save_npz(ae_path, params=np.frombuffer(
        flax.serialization.to_bytes(ae_params), np.uint8),
              history=np.asarray(history))
    if jax.process_index() == 0:
      with open(os.path.join(workdir, 'mrhash_ae_loss.json'), 'w') as f:
        json.dump(history, f)
  stages['autoencoder'] = _stage(t0, cached)
  km_path = os.path.join(workdir, 'mrhash_kmeans.npz')
  t0 = time.time()
  cached = _load_npz(km_path)
  if cached:
    centres = cached['centres']
  else:
    centres, _, _, inertia = mrhash_stages.cluster(
        model, ae_params, feats[0], k=c.clusters, restarts=c.kmeans_restarts,
        seed=config.seed)
    frozen.save_npz(km_path, centres=centres, inertia=np.asarray(inertia))
  stages['kmeans'] = _stage(t0, cached)
  print(f'mrhash: {len(feats)} source(s); autoencoder loss '
        f'{history[0]:.4g} -> {history[-1]:.4g} over {len(history)} epochs; '
        f'{c.clusters} centres', flush=True)
  print('mrhash stages: ' + ', '.join(
      f'{k} {v["seconds"]:.1f}s{" (cached)" if v["cached"] else ""}'
      for k, v in stages.items()), flush=True)
  return {'features': feats, 'ae_params': ae_params, 'centres': centres,
          'stages': stages}


def init_params(variables, meta):
  """The trained autoencoder and the k-means centres go into the model."""
  variables = flax.core.unfreeze(variables)
  params = dict(variables['params'])
  params['ae'] = jax.tree.map(jnp.asarray, meta['ae_params'])
  params['centres'] = jnp.asarray(meta['centres'], jnp.float32)
  return dict(variables, params=params)


def init_state(config, meta):
  n, k = meta['num_train'], config.loss.clusters
  return {'features': tuple(jnp.asarray(f, jnp.float32)
                            for f in meta['features']),
          'P': jnp.full((n, k), 1.0 / k, jnp.float32)}


def model_inputs(batch, state):
  rows = jnp.clip(batch['index'], 0)
  return {'sources': tuple(f[rows] for f in state['features'])}


def start_round(state, in_round, *, params, alpha=1.0, latent=64, **unused):
  """P <- DEC target of the current AE + centres over all training rows."""
  del in_round, unused
  feats = state['features']
  ae = autoencoder.MultiSourceAE(tuple(f.shape[1] for f in feats),
                                 latent=latent)
  z = ae.apply({'params': params['ae']}, feats[0], method=ae.encode)
  q = clustering.soft_assignment(z, params['centres'], alpha)
  return dict(state, P=jax.lax.stop_gradient(
      clustering.target_distribution(q)))


def loss_fn(outputs, batch, state, *, lambda0, kl_reduction='mean',
            **unused):
  """KL(P||Q_h) + KL(P||Q_f) + lambda0 * reconstruction (§1.5)."""
  del unused
  mask = batch['mask']
  rows = jnp.clip(batch['index'], 0)
  p = state['P'][rows]
  kl_h = clustering.kl_divergence(p, outputs['q_h'], kl_reduction, mask)
  kl_f = clustering.kl_divergence(p, outputs['q_f'], kl_reduction, mask)
  b = jnp.maximum(mask.sum(), 1.0)
  recon = sum(jnp.sum(jnp.mean((r - f[rows]) ** 2, -1) * mask) / b
              for r, f in zip(outputs['recons'], state['features']))
  loss = kl_h + kl_f + lambda0 * recon
  return loss, {'kl_hash': kl_h, 'kl_feat': kl_f, 'recon': recon}
