"""tf.data pipelines: training rounds and padded inference.

Images leave the pipeline as uint8 NHWC; the model normalises them for its
encoder on the device (hashjax/models/heads.py), so the host sends 4x fewer
bytes and the normalisation constants live with the encoder's weights.

Multi-host: every host builds the same global order and keeps its own
contiguous slice of each global batch (`jax.process_index()`), so the global
batch assembled by `parallel.global_batch` is the same on any number of
hosts. Augmentation draws from stateless seeds keyed by (seed, round,
position), so a resumed run sees exactly the images an uninterrupted one saw.
"""
import jax
import numpy as np
import tensorflow as tf
from PIL import Image

_TIFF = ('.tif', '.tiff')


def _read_tiff(path):
  path = path.item() if isinstance(path, np.ndarray) else path
  with Image.open(path.decode()) as im:
    return np.asarray(im.convert('RGB'), np.uint8)


def decode(path):
  """Decodes JPEG/PNG with TF and TIFF with Pillow; returns uint8 [H,W,3]."""
  is_tiff = tf.strings.regex_full_match(tf.strings.lower(path),
                                        r'.*\.tiff?')
  image = tf.cond(
      is_tiff,
      lambda: tf.numpy_function(_read_tiff, [path], tf.uint8, stateful=False),
      lambda: tf.io.decode_image(tf.io.read_file(path), channels=3,
                                 expand_animations=False))
  return tf.ensure_shape(image, [None, None, 3])


def resize(image, image_size, resize_size=0):
  """Resizes to `image_size`, or to `resize_size` then centre-crops."""
  side = resize_size or image_size
  shape = tf.shape(image)
  needs_resize = tf.logical_or(shape[0] != side, shape[1] != side)
  image = tf.cond(
      needs_resize,
      lambda: tf.cast(tf.clip_by_value(tf.round(tf.image.resize(
          image, [side, side], antialias=True)), 0, 255), tf.uint8),
      lambda: image)
  if resize_size:
    off = (resize_size - image_size) // 2
    image = image[off:off + image_size, off:off + image_size]
  return tf.ensure_shape(image, [image_size, image_size, 3])


def augment(image, seed, kind):
  """'flip_rot': random horizontal flip and 90° rotation (aerial images
  have no canonical orientation). `seed` is a stateless [2] int seed."""
  if not kind:
    return image
  if kind != 'flip_rot':
    raise ValueError(f'Unknown augmentation {kind!r}; known: flip_rot.')
  image = tf.image.stateless_random_flip_left_right(image, seed)
  k = tf.random.stateless_uniform([], seed + 1, 0, 4, dtype=tf.int32)
  return tf.image.rot90(image, k)


def _host_slice(n_global, global_batch):
  """Positions this host reads from a sequence of `n_global` items."""
  hosts = jax.process_count()
  local = global_batch // hosts
  pos = np.arange(n_global).reshape(-1, hosts, local)
  return pos[:, jax.process_index()].reshape(-1)


def _pad(ids, rows, multiple):
  """Pads to a multiple with id 0, row -1, mask 0 (padding never counts)."""
  pad = -len(ids) % multiple
  mask = np.r_[np.ones(len(ids), np.float32), np.zeros(pad, np.float32)]
  return (np.r_[ids, np.zeros(pad, ids.dtype)],
          np.r_[rows, -np.ones(pad, rows.dtype)], mask)


def _dataset(image_set, ids, rows, mask, positions, preprocess, batch):
  paths = tf.constant(image_set.paths)
  labels = tf.constant(image_set.labels)
  ds = tf.data.Dataset.from_tensor_slices(
      (ids, rows.astype(np.int32), mask, positions))

  def load(i, row, m, pos):
    image = preprocess(decode(tf.gather(paths, i)), pos)
    return dict(image=image, label=tf.gather(labels, i), index=row, mask=m)

  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(batch, drop_remainder=True)


def train_round(image_set, ids, rows, *, epochs, global_batch, image_size,
                resize_size=0, augment_kind='', seed=0, round_index=0,
                skip_batches=0, prefetch=2):
  """The batches of one training round, for this host.

  Args:
    image_set: the ImageSet.
    ids: [m] ImageSet indices of this round's sample, in visiting order.
    rows: [m] database row of each sample (emitted as batch['index']).
    epochs: passes over the sample, same order each pass (AHCL §1.6).
    global_batch: batch size over all hosts and devices.
    skip_batches: batches already done (resume inside a round).

  Returns:
    A tf.data.Dataset of dicts: image uint8 [b,H,W,3], label [b,C],
    index int32 [b] (-1 for padding), mask float32 [b]; b = host batch.
  """
  if global_batch % jax.process_count():
    raise ValueError(f'Global batch {global_batch} is not divisible by the '
                     f'{jax.process_count()} hosts.')
  ids, rows, mask = _pad(np.asarray(ids), np.asarray(rows), global_batch)
  ids, rows, mask = (np.tile(a, epochs) for a in (ids, rows, mask))
  keep = _host_slice(len(ids), global_batch)
  local = global_batch // jax.process_count()
  keep = keep[skip_batches * local:]

  def preprocess(image, pos):
    image = resize(image, image_size, resize_size)
    seed = tf.stack([tf.cast(seed_base, tf.int64), tf.cast(pos, tf.int64)])
    return augment(image, seed, augment_kind)

  seed_base = seed * 100003 + round_index
  ds = _dataset(image_set, ids[keep], rows[keep], mask[keep], keep,
                preprocess, local)
  return ds.prefetch(prefetch)


def inference(image_set, ids, *, global_batch, image_size, resize_size=0,
              prefetch=2):
  """Batches of `ids` padded to whole global batches, with a 'mask'.

  Every listed image appears exactly once with mask 1 over all hosts;
  padding has mask 0 and index -1 (big_vision `make_for_inference`).
  `index` is the position in `ids`.
  """
  ids = np.asarray(ids)
  ids, rows, mask = _pad(ids, np.arange(len(ids)), global_batch)
  keep = _host_slice(len(ids), global_batch)
  ds = _dataset(image_set, ids[keep], rows[keep], mask[keep], keep,
                lambda im, pos: resize(im, image_size, resize_size),
                global_batch // jax.process_count())
  return ds.prefetch(prefetch)
