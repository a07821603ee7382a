"""TFDS datasets as ImageSets: each split exported once to a folder cache.

An encoded image feature is copied byte for byte; a multi-band array feature
becomes 8-bit PNG of three of its bands (see `_export_tfds`). The cache holds
the images and a manifest.json written last, so an interrupted export is
redone, never read half-written.
"""
import json
import os
import pathlib
import re

import numpy as np

from hashjax.data import image_set as image_set_lib


class UnknownDatasetError(ValueError):
  """A data.name that is no TFDS dataset; `close` lists similar names."""

  def __init__(self, name, close):
    super().__init__(f'Unknown TFDS dataset {name!r}.')
    self.name, self.close = name, list(close)


def close_names(name, extra=()):
  """Up to 5 registered TFDS names (and `extra`) close to `name`."""
  import difflib  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  names = list(extra) + [n for n in tfds.list_builders()]
  return difflib.get_close_matches(name, names, n=5, cutoff=0.5)


def _default_cache():
  return pathlib.Path(os.environ.get(
      'HASHJAX_DATA_DIR', pathlib.Path.home() / '.cache' / 'hashjax' /
      'datasets'))


def _extension(data):
  if data[:3] == b'\xff\xd8\xff':
    return '.jpg'
  if data[:8] == b'\x89PNG\r\n\x1a\n':
    return '.png'
  if data[:4] in (b'II*\x00', b'MM\x00*'):
    return '.tif'
  raise ValueError('Unknown image encoding (not JPEG, PNG or TIFF).')


def parse_image_key(image_key):
  """'sentinel2:3,2,1' -> ('sentinel2', (3, 2, 1)); 'image' -> ('image', ())."""
  key, _, bands = (image_key or 'image').partition(':')
  try:
    bands = tuple(int(b) for b in bands.split(',')) if bands else ()
  except ValueError as e:
    raise ValueError(f'Bad TFDS image key {image_key!r}: expected FEATURE or '
                     'FEATURE:B0,B1,B2 (three band indices).') from e
  if bands and len(bands) != 3:
    raise ValueError(f'TFDS image key {image_key!r} names {len(bands)} '
                     'band(s); give three (the encoders take RGB).')
  return key, bands


def _stretch_limits(examples, key, bands):
  """Per-band 2nd/98th percentiles over numpy `examples`."""
  values = [ex[key][..., list(bands)].reshape(-1, 3) for ex in examples]
  values = np.concatenate(values).astype(np.float64)
  return np.percentile(values, 2, axis=0), np.percentile(values, 98, axis=0)


def _export_tfds(name, split, data_dir, download, cache, image_key='image'):
  """Writes the TFDS split's images + manifest.json into `cache`.

  An encoded image feature is copied byte for byte. A multi-band array
  feature (so2sat/all's 'sentinel1' / 'sentinel2', float) becomes 8-bit PNG:
  the three bands named in `image_key` ('sentinel2:2,1,0'; default the first
  three, cycled if fewer), each stretched linearly between its 2nd and 98th
  percentile over the first 2,000 examples of the split.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  key, bands = parse_image_key(image_key)
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except Exception as e:  # pylint: disable=broad-except
    raise UnknownDatasetError(name, close_names(name)) from e
  if download:
    builder.download_and_prepare()
  elif not builder.is_prepared():
    raise FileNotFoundError(
        f'TFDS dataset {name!r} is not prepared in data_dir '
        f'{builder.data_dir_root!r}. Prepare it once with `tfds build '
        f'{name} --data_dir=DIR` and pass --config.data.data_dir=DIR, or allow '
        'the download with --config.data.download=True.')
  features = builder.info.features
  if key not in features:
    raise ValueError(f'TFDS dataset {name!r} has no feature {key!r}; its '
                     f'features: {", ".join(sorted(features.keys()))}. Set '
                     '--config.data.image_key (or the tfds:FEATURE source).')
  label_key = 'label' if 'label' in features else 'labels'
  names_ = features[label_key].names if hasattr(
      features[label_key], 'names') else features[label_key].feature.names
  encoded = isinstance(features[key], tfds.features.Image) and not bands
  ds = builder.as_dataset(
      split=split, shuffle_files=False,
      decoders={key: tfds.decode.SkipDecoding()} if encoded else None)
  if not encoded:
    channels = features[key].shape[-1]
    bands = bands or tuple(i % min(channels, 3) for i in range(3))
    if max(bands) >= channels:
      raise ValueError(f'Feature {key!r} of {name!r} has {channels} bands; '
                       f'band {max(bands)} does not exist.')
    low, high = _stretch_limits(tfds.as_numpy(ds.take(2000)), key, bands)
  (cache / 'images').mkdir(parents=True, exist_ok=True)
  files, labels = [], []
  for i, ex in enumerate(tfds.as_numpy(ds)):
    # Keep the dataset's own file name where it has one (uc_merced's
    # 'agricultural00.tif'): protocols such as ucmd_dgssh select by it.
    original = ex.get('filename', b'')
    original = (original.decode() if isinstance(original, bytes)
                else str(original))
    stem = re.sub(r'[^\w.-]', '_', pathlib.Path(original).stem)
    base = f'images/{i:07d}{"_" + stem if stem else ""}'
    if encoded:
      data = bytes(ex[key])
      fname = base + _extension(data)
      (cache / fname).write_bytes(data)
    else:
      x = ex[key][..., list(bands)].astype(np.float64)
      x = (x - low) / np.maximum(high - low, 1e-12) * 255.0
      fname = base + '.png'
      Image.fromarray(np.clip(np.round(x), 0, 255).astype(np.uint8)).save(
          cache / fname)
    lab = np.atleast_1d(ex[label_key]).astype(int).tolist()
    files.append(fname)
    labels.append(lab)
  if not files:
    raise ValueError(f'TFDS dataset {name!r} split {split!r} is empty.')
  manifest = dict(dataset=name, split=split, image_key=image_key,
                  class_names=list(names_), files=files, labels=labels)
  tmp = cache / 'manifest.json.tmp'
  tmp.write_text(json.dumps(manifest))
  tmp.rename(cache / 'manifest.json')   # present only when complete.


def from_tfds(name, split='train', data_dir='', download=False, cache_dir='',
              skip_bad_images=False, image_key='image'):
  """A TFDS dataset (e.g. uc_merced, resisc45, eurosat/rgb) as an ImageSet.

  `image_key` picks the image feature ('image'), or an array feature and
  three of its bands for multi-source datasets ('sentinel2:2,1,0' of
  so2sat/all); see _export_tfds.
  """
  cache = (pathlib.Path(cache_dir) if cache_dir else _default_cache()) / (
      name.replace('/', '_')) / split
  if (image_key or 'image') != 'image':
    cache = cache / re.sub(r'[^\w-]', '_', image_key)
  if not (cache / 'manifest.json').exists():
    _export_tfds(name, split, data_dir, download, cache, image_key)
  manifest = json.loads((cache / 'manifest.json').read_text())
  num_classes = len(manifest['class_names'])
  labels = np.zeros((len(manifest['files']), num_classes), np.float32)
  for i, lab in enumerate(manifest['labels']):
    labels[i, lab] = 1.0
  paths = [str(cache / f) for f in manifest['files']]
  if num_classes < 2:
    raise ValueError(f'TFDS dataset {name!r} has {num_classes} class(es): '
                     'retrieval needs at least two.')
  paths, names, labels, skipped = image_set_lib.validate(
      paths, list(manifest['files']), labels, skip_bad_images,
      f'the export of TFDS {name!r} at {str(cache)!r}')
  return image_set_lib.ImageSet(np.array(paths), names, labels,
                                manifest['class_names'], skipped)
