"""Methods on frozen encoder features (KIND = 'frozen_features': LSH, ITQ).

  1. features: the config's encoder (ImageNet ResNet-50 by default), eval
     mode, of every image, batched over all devices; cached in
     <workdir>/features.npz and reused by a rerun;
  2. fit: the method's `fit` on the training (= database) features only;
     no label is read;
  3. evaluation: codes = sign(encode(params, features)) for database and
     queries, the shared exact Hamming-ranking metrics, plus mAP@R with R the
     smallest database class (MrHash spec §2; `eval.map_at_r` overrides).
"""
import os
import time

import jax
import numpy as np

from hashjax import codes
from hashjax import parallel
from hashjax import train
from hashjax.data import protocols
from hashjax.data import sources
from hashjax.evaluation import evaluator
from hashjax.models import encoders


def extract_features(config, image_set, mesh, view=None):
  """[len(image_set), D] float32 features of the frozen encoder.

  `view`, if given, maps the float [0, 255] images before normalisation
  (a synthetic second source, hashjax/data/views.py).
  """
  view = view or (lambda x: x)
  encoder, normalize = encoders.build(config.model, config.input.image_size)
  size = config.input.image_size
  dummy = np.zeros((1, size, size, 3), np.float32)
  variables = encoder.init(jax.random.key(config.seed), dummy, train=False)
  variables = encoders.load_pretrained(
      {k: {'encoder': v} for k, v in variables.items()}, config.model,
      encoder)
  variables = {k: v['encoder'] for k, v in variables.items()}
  step = jax.jit(
      lambda v, x: encoder.apply(v, normalize(view(x.astype(np.float32))),
                                 train=False)['features'],
      in_shardings=(parallel.replicated(mesh), parallel.data_sharded(mesh)),
      out_shardings=parallel.replicated(mesh))
  return evaluator.infer(step, variables, image_set,
                         np.arange(len(image_set)), config, mesh)


def cached_features(config, image_set, mesh, workdir, source=0, view=None,
                    view_name=''):
  """Features of one source from <workdir>/features[_s<k>].npz, made once.

  Returns (features, True if read from the cache).
  """
  name = 'features.npz' if source == 0 else f'features_s{source}.npz'
  path = os.path.join(workdir, name)
  if os.path.exists(path):
    with np.load(path) as f:
      cached_view = str(f['view']) if 'view' in f.files else ''
      if (list(f['names']) == list(image_set.names) and
          cached_view == view_name):
        return f['features'], True
    raise ValueError(f'{path} was computed for other images or another '
                     'view; delete it.')
  features = extract_features(config, image_set, mesh, view)
  save_npz(path, features=features, names=np.asarray(image_set.names),
           view=np.asarray(view_name))
  return features, False


def save_npz(path, **arrays):
  """A stage's cache file, written by process 0 only and atomically (a
  temporary file, then a rename), so a killed run leaves no partial file."""
  if jax.process_index() == 0:
    tmp = path + '.tmp.npz'
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def run(config, method, workdir):
  """Features -> fit -> codes -> metrics, results.json, pr_curve.png."""
  t_start = time.time()
  os.makedirs(workdir, exist_ok=True)
  train._check_config(workdir, config)  # pylint: disable=protected-access
  mesh = parallel.make_mesh()
  image_set = sources.load(config.data)
  splits = protocols.split(image_set.names, image_set.primary_labels,
                           image_set.class_names, config.data.protocol)
  print(f'hashjax: {config.method}, {config.bits} bits on frozen '
        f'{config.model.encoder} features, data {config.data.name} '
        f'({len(splits["train"])} train/database, {len(splits["query"])} '
        f'query)\nworkdir: {workdir}', flush=True)
  t0 = time.time()
  features, cached = cached_features(config, image_set, mesh, workdir)
  t_features = time.time() - t0
  t0 = time.time()
  params, diagnostics = method.fit(features[splits['train']], bits=config.bits,
                                   seed=config.seed, **config.loss.to_dict())
  t_fit = time.time() - t0
  t0 = time.time()
  q_codes = codes.binarize(method.encode(params, features[splits['query']]))
  db_codes = codes.binarize(
      method.encode(params, features[splits['database']]))
  metrics = evaluator.metrics_for(q_codes, db_codes, image_set, splits,
                                  config)
  r = metrics['R']
  t_eval = time.time() - t0
  results = dict(
      method=config.method, bits=config.bits, dataset=config.data.name,
      protocol=config.data.protocol,
      commit=train._commit(),  # pylint: disable=protected-access
      features_cached=cached, feature_seconds=round(t_features, 1),
      fit_seconds=round(t_fit, 1), eval_seconds=round(t_eval, 1),
      wall_seconds=round(time.time() - t_start, 1),
      diagnostics=diagnostics, metrics=metrics)
  if train.write_results(config, workdir, results):
    print(f'done: map@R (R={r}) {metrics["map@R"]:.4f} map@all '
          f'{metrics["map@all"]:.4f} | features {t_features:.1f}s'
          f'{" (cached)" if cached else ""}, fit {t_fit:.1f}s, eval '
          f'{t_eval:.1f}s\nresults: {os.path.join(workdir, "results.json")}',
          flush=True)
  return results
