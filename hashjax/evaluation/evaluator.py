"""Retrieval evaluation shared by every method.

Query codes: sign(u) of the network in eval mode, 0 -> +1 (codes.binarize).
Database codes: the method's learned bank (DATABASE_CODES == 'bank', e.g.
AHCL's V, whose rows are the training images in order) or the network's codes
of the database images. The metric math is pure (evaluation/ranking.py).
"""
import os

import numpy as np

from hashjax import codes
from hashjax import inference
from hashjax import parallel
from hashjax import workdir as workdir_lib
from hashjax.evaluation import plots
from hashjax.evaluation import ranking


def metrics_for(q_codes, db_codes, image_set, splits, eval_config):
  """The shared metrics, plus mAP@R when eval_config.map_at_r >= 0.

  map_at_r = 0: R is the smallest database class (MrHash's mAP@R); > 0: that
  R; absent or < 0: no mAP@R.
  """
  topk = set(eval_config.topk)
  r = eval_config.get('map_at_r', -1)
  if r == 0:
    r = int(np.bincount(image_set.primary_labels[splits['database']]).min())
  if r > 0:
    topk.add(r)
  metrics = ranking.retrieval_metrics(
      q_codes, db_codes, image_set.labels[splits['query']],
      image_set.labels[splits['database']], topk=tuple(sorted(topk)),
      precision_at=tuple(eval_config.precision_at))
  if r > 0:
    metrics['R'] = r
    metrics['map@R'] = metrics[f'map@{r}']
  return metrics


def evaluate(*, model, method, state, image_set, splits, config, mesh):
  """Returns (metrics dict, query codes, database codes)."""
  run_encode = inference.encoder(
      model, {'params': state.params, **state.model_state}, config.input,
      mesh)
  q_codes = run_encode(image_set, splits['query'])
  if method.DATABASE_CODES == 'bank':
    db_codes = codes.binarize(
        parallel.to_host(method.database_codes(state.method_state)))
  else:
    db_codes = run_encode(image_set, splits['database'])
  metrics = metrics_for(q_codes, db_codes, image_set, splits, config.eval)
  return metrics, q_codes, db_codes


def write_results(config, workdir, results):
  """results.json, pr_curve.png (by Hamming radius) and pr_count.png (by
  retrieved count) on process 0; True there."""
  if not workdir_lib.write_results(workdir, results):
    return False
  title = f'{config.method} {config.bits} bits, {config.data.name}'
  plots.save_pr_curve(results['metrics'],
                      os.path.join(workdir, 'pr_curve.png'), title=title)
  if 'pr_count' in results['metrics']:
    plots.save_pr_count_curve(results['metrics'],
                              os.path.join(workdir, 'pr_count.png'),
                              title=title)
  return True
