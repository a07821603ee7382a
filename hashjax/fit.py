"""The driver of frozen-feature methods (LSH, PCA-ITQ): fit(config, workdir).

  1. features: the config's encoder (ImageNet ResNet-50 by default), eval
     mode, of every image, batched over all devices; cached in
     <workdir>/features.npz and reused by a rerun (hashjax/features.py);
  2. fit: the method's `fit` on the training (= database) features only;
     no label is read;
  3. evaluation: codes = sign(encode(params, features)) for database and
     queries, the shared exact Hamming-ranking metrics, plus mAP@R with R the
     smallest database class (MrHash's protocol; `eval.map_at_r` overrides).
"""
import os
import time

from hashjax import codes
from hashjax import features as features_lib
from hashjax import methods
from hashjax import parallel
from hashjax import workdir as workdir_lib
from hashjax.data import protocols
from hashjax.data import sources
from hashjax.evaluation import evaluator


def run(config, workdir):
  """Features -> fit -> codes -> metrics, results.json, pr_curve.png."""
  workdir_lib.validate(config)
  os.makedirs(workdir, exist_ok=True)
  with workdir_lib.writer_lock(workdir):
    return _run(config, workdir)


def _run(config, workdir):
  method = methods.get(config.method)
  t_start, code_commit = time.time(), workdir_lib.commit()
  workdir_lib.check_config(workdir, config)
  mesh = parallel.make_mesh()
  image_set = sources.load(config.data)
  splits = protocols.split(image_set.names, image_set.primary_labels,
                           image_set.class_names, config.data.protocol)
  workdir_lib.write_config(workdir, config)
  print(f'hashjax: {config.method}, {config.bits} bits on frozen '
        f'{config.model.encoder} features, data {config.data.name} '
        f'({len(splits["train"])} train/database, {len(splits["query"])} '
        f'query)\nworkdir: {workdir}', flush=True)
  image_set.print_left_out(config.data.get('nomenclature', 'default'))
  t0 = time.time()
  features, cached = features_lib.cached_features(config, image_set, mesh,
                                                  workdir)
  t_features = time.time() - t0
  t0 = time.time()
  params, diagnostics = method.fit(features[splits['train']], bits=config.bits,
                                   seed=config.seed,
                                   hp=methods.hyperparams(config))
  t_fit = time.time() - t0
  t0 = time.time()
  q_codes = codes.binarize(method.encode(params, features[splits['query']]))
  db_codes = codes.binarize(
      method.encode(params, features[splits['database']]))
  metrics = evaluator.metrics_for(q_codes, db_codes, image_set, splits,
                                  config.eval)
  t_eval = time.time() - t0
  results = dict(
      method=config.method, bits=config.bits, dataset=config.data.name,
      protocol=config.data.protocol, commit=code_commit,
      features_cached=cached, feature_seconds=round(t_features, 1),
      fit_seconds=round(t_fit, 1), eval_seconds=round(t_eval, 1),
      wall_seconds=round(time.time() - t_start, 1),
      environment=workdir_lib.environment(),
      skipped_images=image_set.skipped,
      unlabelled_images=image_set.unlabelled, diagnostics=diagnostics,
      metrics=metrics)
  if evaluator.write_results(config, workdir, results):
    r = f'map@R (R={metrics["R"]}) {metrics["map@R"]:.4f} ' if (
        'R' in metrics) else ''
    print(f'done: {r}map@all {metrics["map@all"]:.4f} | features '
          f'{t_features:.1f}s{" (cached)" if cached else ""}, fit '
          f'{t_fit:.1f}s, eval {t_eval:.1f}s\nresults: '
          f'{os.path.join(workdir, "results.json")}', flush=True)
  return results
