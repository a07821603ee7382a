"""Retrieval evaluation shared by every method.

Query codes: sign(u) of the network in eval mode, 0 -> +1 (codes.binarize).
Database codes: the method's learned bank (DATABASE_CODES == 'bank', e.g.
AHCL's V, whose rows are the training images in order) or the network's codes
of the database images. The metric math is pure (evaluation/ranking.py).
Every image is encoded exactly once on any number of hosts: the inference
pipeline pads the last batch and marks the padding with mask = 0.
"""
import functools

import jax
import numpy as np

from hashjax import codes
from hashjax import parallel
from hashjax.data import input_pipeline
from hashjax.evaluation import ranking


def make_encode_step(model, mesh):
  def encode(variables, images):
    return model.apply(variables, images, train=False)['u']
  return jax.jit(encode, in_shardings=(parallel.replicated(mesh),
                                       parallel.data_sharded(mesh)),
                 out_shardings=parallel.replicated(mesh))


def infer(step, variables, image_set, ids, config, mesh):
  """step(variables, images) on the images `ids`: [len(ids), D] float32.

  Batched over all devices and hosts; every image is computed once (the
  pipeline pads the last batch with mask = 0).
  """
  ds = input_pipeline.inference(
      image_set, ids, global_batch=config.input.eval_batch_size,
      image_size=config.input.image_size,
      resize_size=config.input.resize_size)
  out = None
  for batch in ds.as_numpy_iterator():
    batch = parallel.global_batch(
        {k: batch[k] for k in ('image', 'index', 'mask')}, mesh)
    y = parallel.to_host(step(variables, batch['image']))
    index = parallel.to_host(batch['index'])
    keep = parallel.to_host(batch['mask']) > 0
    if out is None:
      out = np.zeros((len(ids), y.shape[1]), np.float32)
    out[index[keep]] = y[keep]
  return out


def encode(encode_step, variables, image_set, ids, config, mesh):
  """Binary codes [len(ids), bits] int8 of the images `ids`."""
  return codes.binarize(infer(encode_step, variables, image_set, ids, config,
                              mesh))


def metrics_for(q_codes, db_codes, image_set, splits, config):
  """The shared metrics, plus mAP@R when config.eval.map_at_r >= 0.

  map_at_r = 0: R is the smallest database class (MrHash's mAP@R); > 0: that
  R; absent or < 0: no mAP@R.
  """
  topk = set(config.eval.topk)
  r = config.eval.get('map_at_r', -1)
  if r == 0:
    r = int(np.bincount(image_set.primary_labels[splits['database']]).min())
  if r > 0:
    topk.add(r)
  metrics = ranking.retrieval_metrics(
      q_codes, db_codes, image_set.labels[splits['query']],
      image_set.labels[splits['database']], topk=tuple(sorted(topk)),
      precision_at=tuple(config.eval.precision_at))
  if r > 0:
    metrics['R'] = r
    metrics['map@R'] = metrics[f'map@{r}']
  return metrics


def encoder(model, state, image_set, config, mesh):
  """ids -> codes [len(ids), bits] of those images of `image_set`, with the
  network of `state` (evaluation, hashjax.search)."""
  step = make_encode_step(model, mesh)
  variables = {'params': state.params, **state.model_state}
  return functools.partial(encode, step, variables, image_set, config=config,
                           mesh=mesh)


def evaluate(*, model, method, state, image_set, splits, config, mesh):
  """Returns (metrics dict, query codes, database codes)."""
  run_encode = encoder(model, state, image_set, config, mesh)
  q_codes = run_encode(splits['query'])
  if method.DATABASE_CODES == 'bank':
    db_codes = codes.binarize(
        parallel.to_host(method.database_codes(state.method_state)))
  else:
    db_codes = run_encode(splits['database'])
  metrics = metrics_for(q_codes, db_codes, image_set, splits, config)
  return metrics, q_codes, db_codes
