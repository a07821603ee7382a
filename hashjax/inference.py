"""Batched inference over every device and host: a function of a model's
variables and images, applied to images of an ImageSet.

Every image is computed exactly once on any number of hosts: the inference
pipeline pads the last batch and marks the padding with mask = 0.
"""
import functools
import time

import jax
import numpy as np

from hashjax import codes
from hashjax import parallel
from hashjax.data import image_set as image_set_lib
from hashjax.data import input_pipeline


def make_encode_step(model, mesh):
  """(variables, images) -> relaxed codes u, jitted over the mesh."""
  def encode(variables, images):
    return model.apply(variables, images, train=False)['u']
  return jax.jit(encode, in_shardings=(parallel.replicated(mesh),
                                       parallel.data_sharded(mesh)),
                 out_shardings=parallel.replicated(mesh))


def _progress(what, done, total, t0, last):
  """Prints 'what: done/total, rate, ETA' at most every 10 s; returns the
  time of the last line."""
  now = time.time()
  if what and jax.process_index() == 0 and (now - last > 10 or
                                            done == total and last > t0):
    rate = done / max(now - t0, 1e-9)
    eta = (total - done) / max(rate, 1e-9)
    print(f'{what}: {done:,}/{total:,} images, {rate:.1f} img/s, ETA '
          f'{eta:.0f}s', flush=True)
    return now
  return last


def infer(step, variables, image_set, ids, input_config, mesh, what='',
          readable=None):
  """step(variables, images) on the images `ids`: [len(ids), D] float32.

  Args:
    input_config: `config.input` (eval_batch_size, image_size,
      resize_size).
    what: a label for progress lines (every 10 s; none if empty).
    readable: None (an unreadable image stops with an error), or a bool
      array [len(ids)] that receives which images were read: the others
      are skipped (their rows stay 0) for the caller to list.
  """
  ds = input_pipeline.inference(
      image_set, ids, global_batch=input_config.eval_batch_size,
      image_size=input_config.image_size,
      resize_size=input_config.resize_size,
      skip_unreadable=readable is not None)
  out = None
  t0 = last = time.time()
  done = 0
  for batch in image_set_lib.numpy_batches(ds, image_set):
    batch = parallel.global_batch(
        {k: batch[k] for k in ('image', 'index', 'mask')}, mesh)
    y = parallel.to_host(step(variables, batch['image']))
    index = parallel.to_host(batch['index'])
    keep = parallel.to_host(batch['mask']) > 0
    if out is None:
      out = np.zeros((len(ids), y.shape[1]), np.float32)
    out[index[keep]] = y[keep]
    if readable is not None:
      readable[index[keep]] = True
    done += int(keep.sum())   # keep spans every host
    last = _progress(what, min(done, len(ids)), len(ids), t0, last)
  return out


def encode(encode_step, variables, image_set, ids, input_config, mesh,
           what='encoding', readable=None):
  """Binary codes [len(ids), bits] int8 of the images `ids` (`readable`:
  as in `infer`)."""
  return codes.binarize(infer(encode_step, variables, image_set, ids,
                              input_config, mesh, what, readable))


def encoder(model, variables, input_config, mesh):
  """(image_set, ids) -> codes [len(ids), bits] of those images, with the
  network `model` at `variables` (evaluation, hashjax.search)."""
  step = make_encode_step(model, mesh)
  return functools.partial(encode, step, variables, input_config=input_config,
                           mesh=mesh)
