"""Batched inference over every device and host: a function of a model's
variables and images, applied to images of an ImageSet.

Every image is computed exactly once on any number of hosts: the inference
pipeline pads the last batch and marks the padding with mask = 0.
"""
import functools

import jax
import numpy as np

from hashjax import codes
from hashjax import parallel
from hashjax.data import input_pipeline


def make_encode_step(model, mesh):
  """(variables, images) -> relaxed codes u, jitted over the mesh."""
  def encode(variables, images):
    return model.apply(variables, images, train=False)['u']
  return jax.jit(encode, in_shardings=(parallel.replicated(mesh),
                                       parallel.data_sharded(mesh)),
                 out_shardings=parallel.replicated(mesh))


def infer(step, variables, image_set, ids, input_config, mesh):
  """step(variables, images) on the images `ids`: [len(ids), D] float32.

  Args:
    input_config: `config.input` (eval_batch_size, image_size,
      resize_size).
  """
  ds = input_pipeline.inference(
      image_set, ids, global_batch=input_config.eval_batch_size,
      image_size=input_config.image_size,
      resize_size=input_config.resize_size)
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


def encode(encode_step, variables, image_set, ids, input_config, mesh):
  """Binary codes [len(ids), bits] int8 of the images `ids`."""
  return codes.binarize(infer(encode_step, variables, image_set, ids,
                              input_config, mesh))


def encoder(model, variables, input_config, mesh):
  """(image_set, ids) -> codes [len(ids), bits] of those images, with the
  network `model` at `variables` (evaluation, hashjax.search)."""
  step = make_encode_step(model, mesh)
  return functools.partial(encode, step, variables, input_config=input_config,
                           mesh=mesh)
