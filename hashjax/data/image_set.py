"""ImageSet: a labelled list of image files, checked image by image.

Every source (a class-folder tree, the bundled data, a TFDS export) becomes
an ImageSet. Every image is decoded once when the set is built, so a corrupt
file is reported up front by name, not as a crash in the middle of training.
"""
import concurrent.futures
import dataclasses
import os

import numpy as np
import tensorflow as tf

from hashjax.data import input_pipeline


@dataclasses.dataclass
class ImageSet:
  """A labelled list of image files.

  Attributes:
    paths: [N] absolute file paths (str).
    names: [N] ids relative to the root, e.g. 'aGrass/a001.jpg'.
    labels: [N, C] float32 multi-hot labels.
    class_names: C names.
    skipped: files left out because they could not be decoded (only with
      `skip_bad_images`); reported in the run summary.
    unlabelled: images left out because none of their labels exists in
      the chosen nomenclature (data/nomenclatures.py); each a dict with
      the file and its original labels.
  """
  paths: np.ndarray
  names: list
  labels: np.ndarray
  class_names: list
  skipped: list = dataclasses.field(default_factory=list)
  unlabelled: list = dataclasses.field(default_factory=list)

  def __len__(self):
    return len(self.paths)

  def print_left_out(self, nomenclature):
    """One line each for the images the run left out: unreadable
    (`skipped`) and without a label in `nomenclature` (`unlabelled`)."""
    if self.skipped:
      print(f'Skipped {len(self.skipped)} unreadable image(s) '
            '(data.skip_bad_images=True); listed in results.json.',
            flush=True)
    if self.unlabelled:
      print(f'Left out {len(self.unlabelled)} image(s) with no label in '
            f'the {nomenclature} nomenclature; listed in results.json.',
            flush=True)

  @property
  def primary_labels(self):
    """[N] the first class of each image; used to stratify splits."""
    return np.argmax(self.labels, axis=1)


def check_image(path):
  """Fully decodes one image with the decoder training uses
  (input_pipeline.decode: Pillow accepts some damaged JPEGs that TensorFlow
  rejects). Returns None or the error text."""
  try:
    try:
      shape = input_pipeline.decode(tf.constant(str(path))).shape
    except tf.errors.OpError as e:
      return input_pipeline.op_error_text(e)
    if min(shape[:2]) < 1:
      return 'empty image'
  except Exception as e:  # pylint: disable=broad-except
    return f'{type(e).__name__}: {e}'
  return None


def check_decodable(paths, what='the query'):
  """Raises ValueError naming every file of `paths` that does not decode."""
  validate(list(paths), list(paths), np.zeros((len(paths), 1), np.float32),
           False, what, hint='Fix or remove them.')


_SKIP_HINT = ('Fix or remove them, or pass --config.data.skip_bad_images=True '
              'to skip them (they are then counted and listed in the run '
              'summary).')


def validate(paths, names, labels, skip_bad, what, hint=_SKIP_HINT):
  """Decodes every image; raises on the first bad ones unless skip_bad."""
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
    errors = list(pool.map(check_image, paths))
  bad = [i for i, e in enumerate(errors) if e]
  if bad and not skip_bad:
    listed = '\n'.join(f'  {paths[i]}: {errors[i]}' for i in bad[:10])
    more = f'\n  ... and {len(bad) - 10} more' if len(bad) > 10 else ''
    raise ValueError(
        f'{len(bad)} unreadable image(s) in {what}:\n{listed}{more}\n'
        f'{hint}')
  keep = np.setdiff1d(np.arange(len(paths)), bad)
  skipped = [f'{names[i]}: {errors[i]}' for i in bad]
  return ([paths[i] for i in keep], [names[i] for i in keep],
          labels[keep], skipped)


class InputError(ValueError):
  """The input pipeline could not read an image; the message names it."""


def explain_failure(image_set, error):
  """An InputError for a tf.data `error`, naming the unreadable files of
  `image_set` (found by decoding each with the training decoder): TF's own
  message names no file."""
  _, _, _, bad = validate(list(image_set.paths), list(image_set.names),
                          image_set.labels, True, 'the data')
  listed = '\n'.join(f'  {b}' for b in bad[:10]) or (
      '  (every image decodes now: was a file changed during the run?)')
  return InputError(
      f'The input pipeline failed ({error.message.splitlines()[0][:200]}). '
      f'Unreadable image(s):\n{listed}\nFix or remove them and rerun the '
      'same command (it resumes from the last checkpoint).')


def numpy_batches(dataset, image_set):
  """The numpy batches of a tf.data pipeline over `image_set`; a read
  failure raises InputError naming the file instead of tf.data's error."""
  batches = dataset.as_numpy_iterator()
  while True:
    try:
      batch = next(batches)
    except StopIteration:
      return
    except tf.errors.OpError as e:
      raise explain_failure(image_set, e) from None
    yield batch
