"""The Python API for retrieval: load a trained run and its index once,
then encode images and search, in a notebook or another program.

  from hashjax import Retriever
  r = Retriever.load('runs/ahcl64', index='runs/rsscn7.hjidx')
  hits = r.search(['query.jpg'], k=10)       # images, or codes
  hits.ids[0], hits.distances[0], hits.labels[0]
  r.add(['new1.jpg', 'new2.jpg'])            # grows the index file

The model is restored at the checkpoint step that made the index's codes
(hashjax/restore.py: no training image is read), and compiled once per
batch shape. Images are decoded and resized exactly as in evaluation
(hashjax/data/input_pipeline.py); the ranking is the exact one of
hashjax.search (ties by index).
"""
import dataclasses
import os
from typing import List

import jax
import numpy as np
import tensorflow as tf
from PIL import Image

from hashjax import inference
from hashjax import parallel
from hashjax import restore
from hashjax.archive import index as index_lib
from hashjax.archive import shards
from hashjax.archive import topk
from hashjax.data import image_set as image_set_lib
from hashjax.data import input_pipeline


@dataclasses.dataclass
class Hits:
  """Search results, one row per query.

  Attributes:
    ids: [Q][k] item ids (image paths).
    distances: [Q, k] Hamming distances.
    rows: [Q, k] rows of the index.
    labels: [Q][k] class names of each result ([] without labels).
  """
  ids: List[List[str]]
  distances: np.ndarray
  rows: np.ndarray
  labels: List[List[List[str]]]


class Retriever:
  """A trained network and its index, loaded once (see the module doc)."""

  def __init__(self, run, index_path, index):
    self.run, self.index_path, self.index = run, index_path, index
    self._step = inference.make_encode_step(run.model, run.mesh)
    devices = jax.device_count()
    self._batch = max(run.config.input.eval_batch_size // devices,
                      1) * devices
    # Compiled batch shapes: a few images run a small batch, not a padded
    # eval batch (devices x 1, 2, 4, ...; each shape compiles once).
    self.batch_sizes = [devices << i for i in range(20)
                        if devices << i < self._batch] + [self._batch]

  @classmethod
  def load(cls, workdir=None, index=None):
    """The run in `workdir` (default: the one that built `index`) at the
    checkpoint step of the index's codes."""
    if index is None:
      raise ValueError('Retriever.load needs index=PATH (build one with '
                       'python -m hashjax.search --workdir=RUN --out=PATH).')
    idx = shards.load(index)
    workdir = workdir or idx.source.get('workdir')
    if not workdir:
      raise ValueError(f'{index!r} does not name its run; pass workdir=.')
    run = restore.load(workdir, step=idx.source.get('step'))
    if run.bits != idx.bits:
      raise ValueError(f'{workdir!r} makes {run.bits}-bit codes; {index!r} '
                       f'holds {idx.bits}-bit codes.')
    return cls(run, index, idx)

  @property
  def bits(self):
    return self.index.bits

  def prepare(self, item):
    """A path, the bytes of an image file, a PIL image or an [H, W, 3]
    array -> the network's input, uint8 [size, size, 3], decoded and
    resized as in evaluation. Raises ValueError for bytes that are not a
    readable image."""
    if isinstance(item, bytes):
      image = input_pipeline.decode_bytes(item)
    elif isinstance(item, (str, os.PathLike)):
      try:
        image = input_pipeline.decode(tf.constant(os.fspath(item)))
      except Exception:  # pylint: disable=broad-except
        image_set_lib.check_decodable([os.fspath(item)])  # names the file
        raise
    else:
      if isinstance(item, Image.Image):
        item = np.asarray(item.convert('RGB'))
      item = np.asarray(item)
      if item.ndim != 3 or item.shape[-1] != 3:
        raise ValueError(f'An image array must be [H, W, 3], got shape '
                         f'{item.shape}.')
      image = np.clip(item, 0, 255).astype(np.uint8)
    c = self.run.config.input
    if isinstance(image, tf.Tensor):
      image = image.numpy()
    if not c.resize_size and image.shape[:2] == (c.image_size,) * 2:
      return image   # input_pipeline.resize leaves it as it is
    return input_pipeline.resize(tf.constant(image), c.image_size,
                                 c.resize_size).numpy()

  def encode(self, images):
    """±1 codes int8 [N, bits] of images (paths, image-file bytes, PIL
    images or arrays), in batches split over every device."""
    images = list(images)
    out = np.zeros((len(images), self.bits), np.int8)
    for start in range(0, len(images), self._batch):
      chunk = [self.prepare(x) for x in images[start:start + self._batch]]
      out[start:start + len(chunk)] = self.encode_prepared(np.stack(chunk))
    return out

  def encode_prepared(self, pixels):
    """±1 codes of network inputs (uint8 [n, size, size, 3] from
    `prepare`), n <= the eval batch, padded to the nearest compiled
    batch shape."""
    n = len(pixels)
    size = next(b for b in self.batch_sizes if b >= n)
    batch = np.zeros((size,) + pixels.shape[1:], np.uint8)
    batch[:n] = pixels
    u = parallel.to_host(self._step(self.run.variables, batch))
    return np.where(u[:n] >= 0, 1, -1).astype(np.int8)

  def compile(self, up_to=None):
    """Compiles every batch shape up to `up_to` images now (a service
    does it before its first query)."""
    c = self.run.config.input
    for size in self.batch_sizes:
      if up_to is not None and size > max(up_to, self.batch_sizes[0]):
        break
      self.encode_prepared(np.zeros((size, c.image_size, c.image_size, 3),
                                    np.uint8))

  def _codes(self, queries):
    if isinstance(queries, np.ndarray) and queries.ndim == 2 and (
        queries.dtype != np.uint8 or queries.shape[1] == self.bits):
      if queries.shape[1] != self.bits:
        raise ValueError(f'Codes must be [Q, {self.bits}] ±1, got shape '
                         f'{queries.shape}.')
      return np.where(queries >= 0, 1, -1).astype(np.int8)
    if isinstance(queries, (str, bytes, os.PathLike, Image.Image)) or (
        isinstance(queries, np.ndarray) and queries.ndim == 3):
      queries = [queries]
    return self.encode(queries)

  def search(self, queries, k=10):
    """Top k of each query (images as for `encode`, or ±1 codes
    [Q, bits]): a Hits."""
    q = self._codes(queries)
    if not isinstance(k, int) or k < 1:
      raise ValueError(f'k must be a positive integer, got {k!r}.')
    dist, rows = topk.search(index_lib.pack(q), self.index.packed, k,
                             self.bits, query_block=topk.block_for(len(q)))
    return Hits(ids=[[self.index.ids[r] for r in row] for row in rows],
                distances=np.asarray(dist), rows=np.asarray(rows),
                labels=[[self.index.label_names(r) for r in row]
                        for row in rows])

  def add(self, images, ids=None, labels=None):
    """Encodes `images` and appends them to the index file (ids default to
    the paths); returns the number of items now in the index. `labels`:
    [N, C] multi-hot over the index's classes, required if it has labels."""
    images = list(images)
    if ids is None:
      if not all(isinstance(x, (str, os.PathLike)) for x in images):
        raise ValueError('add(images) of arrays or PIL images needs ids=.')
      ids = [os.fspath(x) for x in images]
    self.index = shards.append(self.index_path, self.encode(images), ids,
                               labels=labels, source=self.index.network())
    return len(self.index)
