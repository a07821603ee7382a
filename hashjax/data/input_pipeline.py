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
import io

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


_TIFF_MAGIC = (b'II*\x00', b'MM\x00*')


def op_error_text(error):
  """A TF op error's own message, without the op and node decoration."""
  return error.message.split(' [Op:')[0].split('}} ')[-1]


def decode_bytes(data):
  """`decode` for an image's bytes (an upload): TIFF (by its magic number)
  with Pillow, JPEG/PNG/GIF/BMP with TF. Raises ValueError naming what is
  wrong with a non-image, truncated or empty file."""
  if not data:
    raise ValueError('the file is empty')
  try:
    if data[:4] in _TIFF_MAGIC:
      with Image.open(io.BytesIO(data)) as im:
        image = np.asarray(im.convert('RGB'), np.uint8)
    else:
      image = tf.io.decode_image(data, channels=3,
                                 expand_animations=False).numpy()
  except tf.errors.OpError as e:
    raise ValueError(op_error_text(e)) from None
  except (OSError, SyntaxError, ValueError) as e:   # Pillow's errors
    raise ValueError(f'{type(e).__name__}: {e}') from None
  if image.ndim != 3 or min(image.shape[:2]) < 1:
    raise ValueError(f'not a 2-D image (decoded shape {image.shape})')
  return image


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


AUGMENTATIONS = ('', 'flip_rot', 'rrc_flip')


def random_resized_crop(image, seed, image_size, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3)):
  """torchvision's RandomResizedCrop(image_size) (default scale, ratio):
  a random box of scale x area and aspect ratio in `ratio` (10 tries, else
  the whole image), resized to image_size (bilinear)."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image), tf.zeros([1, 0, 4]), seed, area_range=scale,
      aspect_ratio_range=ratio, max_attempts=10,
      use_image_if_no_bounding_boxes=True, min_object_covered=0.0)
  crop = tf.slice(image, begin, size)
  crop = tf.image.resize(crop, [image_size, image_size], antialias=True)
  return tf.ensure_shape(tf.cast(tf.clip_by_value(tf.round(crop), 0, 255),
                                 tf.uint8), [image_size, image_size, 3])


def augment(image, seed, kind):
  """'flip_rot': random horizontal flip and 90° rotation (aerial images
  have no canonical orientation). 'rrc_flip' (the crop itself is done in
  `train`): random horizontal flip. `seed` is a stateless [2] int seed."""
  if not kind:
    return image
  if kind not in AUGMENTATIONS:
    raise ValueError(f'Unknown augmentation {kind!r}; known: '
                     f'{", ".join(AUGMENTATIONS[1:])}.')
  image = tf.image.stateless_random_flip_left_right(image, seed)
  if kind == 'rrc_flip':
    return image
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


def _load_fn(image_set, preprocess):
  paths = tf.constant(image_set.paths)
  labels = tf.constant(image_set.labels)

  def load(i, row, m, pos, round_index):
    image = preprocess(decode(tf.gather(paths, i)), pos, round_index)
    return dict(image=image, label=tf.gather(labels, i), index=row, mask=m)

  return load


def _round_arrays(ids, rows, epochs, global_batch):
  """One round: padded, tiled over epochs, this host's slice of each batch."""
  ids, rows, mask = _pad(np.asarray(ids), np.asarray(rows), global_batch)
  ids, rows, mask = (np.tile(a, epochs) for a in (ids, rows, mask))
  keep = _host_slice(len(ids), global_batch)
  return ids[keep], rows[keep].astype(np.int32), mask[keep], keep


def train(image_set, rounds, *, epochs, global_batch, image_size,
          resize_size=0, augment_kind='', seed=0, skip_batches=0,
          prefetch=2):
  """One pipeline over all remaining training rounds, for this host.

  A single pipeline, not one per round: tearing a tf.data iterator down at
  every round end waited for its worker threads, 7-50 s per round on 2 cores.

  Args:
    image_set: the ImageSet.
    rounds: iterable of (round_index, ids, rows): each round's sample in
      visiting order, as ImageSet indices and as database rows (emitted as
      batch['index']). Consumed lazily, one round at a time.
    epochs: passes over each round's sample, same order each pass (§1.6).
    global_batch: batch size over all hosts and devices.
    skip_batches: batches of the first round already done (resume).

  Returns:
    A tf.data.Dataset of dicts: image uint8 [b,H,W,3], label [b,C],
    index int32 [b] (-1 for padding), mask float32 [b]; b = host batch.
    Each round gives epochs * ceil(m / global_batch) batches.
  """
  if global_batch % jax.process_count():
    raise ValueError(f'Global batch {global_batch} is not divisible by the '
                     f'{jax.process_count()} hosts.')
  local = global_batch // jax.process_count()

  def generate():
    skip = skip_batches * local
    for round_index, ids, rows in rounds:
      ids, rows, mask, pos = _round_arrays(ids, rows, epochs, global_batch)
      yield (ids[skip:], rows[skip:], mask[skip:], pos[skip:],
             np.full(len(ids) - skip, round_index, np.int64))
      skip = 0

  ints = tf.TensorSpec([None], tf.int64)
  ds = tf.data.Dataset.from_generator(generate, output_signature=(
      ints, tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32),
      ints, ints)).unbatch()

  def preprocess(image, pos, round_index):
    key = tf.stack([seed * 100003 + round_index, pos])
    if augment_kind == 'rrc_flip':   # Resize(resize_size) -> RRC(image_size)
      side = resize_size or image_size
      image = random_resized_crop(resize(image, side), key + 7, image_size)
    else:
      image = resize(image, image_size, resize_size)
    return augment(image, key, augment_kind)

  return _batched(ds.map(_load_fn(image_set, preprocess),
                         num_parallel_calls=tf.data.AUTOTUNE,
                         deterministic=True), local, prefetch)


def _batched(ds, local, prefetch):
  return ds.batch(local, drop_remainder=True).prefetch(prefetch)


def _no_autotune(ds):
  """tf.data's autotuning off (AUTOTUNE then means one decode per CPU).
  With it on, a whole encode beside the jitted network ran at 136 instead
  of ~205 images/s in about half of the calls, the CPUs 40 % idle (the
  ResNet-50 encoder, 2,800 images, 2 cores); off, every call ran at
  196-209 (docs/benchmarks.md, archive encoding)."""
  options = tf.data.Options()
  options.autotune.enabled = False
  return ds.with_options(options)


def inference(image_set, ids, *, global_batch, image_size, resize_size=0,
              prefetch=2, skip_unreadable=False):
  """Batches of `ids` padded to whole global batches, with a 'mask'.

  Every listed image appears exactly once with mask 1 over all hosts;
  padding has mask 0 and index -1 (big_vision `make_for_inference`).
  `index` is the position in `ids`. With skip_unreadable, an image that
  fails to read or decode is left out instead of stopping the pipeline
  (its `index` never appears: the caller lists it); every host still gives
  the same number of batches, the last ones filled with padding.
  """
  ids = np.asarray(ids)
  ids, rows, mask = _pad(ids, np.arange(len(ids)), global_batch)
  keep = _host_slice(len(ids), global_batch)
  ds = tf.data.Dataset.from_tensor_slices(
      (ids[keep], rows[keep].astype(np.int32), mask[keep], keep,
       np.zeros(len(keep), np.int64)))
  load = _load_fn(image_set, lambda im, pos, r: resize(im, image_size,
                                                       resize_size))
  local = global_batch // jax.process_count()
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if not skip_unreadable:
    return _no_autotune(_batched(ds, local, prefetch))
  padding = dict(
      image=tf.zeros([image_size, image_size, 3], tf.uint8),
      label=tf.zeros([image_set.labels.shape[1]], tf.float32),
      index=tf.constant(-1, tf.int32), mask=tf.constant(0.0, tf.float32))
  ds = ds.ignore_errors().concatenate(
      tf.data.Dataset.from_tensors(padding).repeat())
  return _no_autotune(ds.batch(local, drop_remainder=True).take(
      len(keep) // local).prefetch(prefetch))
