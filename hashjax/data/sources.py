"""Image sources: the bundled RSSCN7 copy, any class-folder tree, or TFDS.

Every source becomes an `ImageSet`: file paths, multi-hot labels and class
names. A TFDS dataset is exported once (the original encoded image bytes,
no re-encoding) to a folder cache, so training reads every source the same
way and can visit images in any order (the asymmetric methods sample subsets
of the database by index, AHCL spec §1.6).

Every image is decoded once when the set is built, so a corrupt file is
reported up front by name, not as a crash in the middle of training.
"""
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import re

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.tif', '.tiff')
BUNDLED = {
    'rsscn7_64': pathlib.Path(__file__).parent / 'bundled' / 'rsscn7_64',
}


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
  """
  paths: np.ndarray
  names: list
  labels: np.ndarray
  class_names: list
  skipped: list = dataclasses.field(default_factory=list)

  def __len__(self):
    return len(self.paths)

  @property
  def primary_labels(self):
    """[N] the first class of each image; used to stratify splits."""
    return np.argmax(self.labels, axis=1)


def _check_image(path):
  """Fully decodes one image; returns None or the error text."""
  try:
    with Image.open(path) as im:
      im.load()
      if im.width < 1 or im.height < 1:
        return 'empty image'
  except Exception as e:  # pylint: disable=broad-except
    return f'{type(e).__name__}: {e}'
  return None


def check_decodable(paths, what='the query'):
  """Raises ValueError naming every file of `paths` that does not decode."""
  _validate(list(paths), list(paths), np.zeros((len(paths), 1), np.float32),
            False, what)


def _validate(paths, names, labels, skip_bad, what):
  """Decodes every image; raises on the first bad ones unless skip_bad."""
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
    errors = list(pool.map(_check_image, paths))
  bad = [i for i, e in enumerate(errors) if e]
  if bad and not skip_bad:
    listed = '\n'.join(f'  {paths[i]}: {errors[i]}' for i in bad[:10])
    more = f'\n  ... and {len(bad) - 10} more' if len(bad) > 10 else ''
    raise ValueError(
        f'{len(bad)} unreadable image(s) in {what}:\n{listed}{more}\n'
        'Fix or remove them, or pass --config.data.skip_bad_images=True to '
        'skip them (they are then counted and listed in the run summary).')
  keep = np.setdiff1d(np.arange(len(paths)), bad)
  skipped = [f'{names[i]}: {errors[i]}' for i in bad]
  return ([paths[i] for i in keep], [names[i] for i in keep],
          labels[keep], skipped)


def from_folder(root, skip_bad_images=False):
  """Reads `<root>/<class>/<image>.{jpg,jpeg,png,tif,tiff}`.

  Classes are the sub-folders in sorted order (label = position). Hidden
  files and files with other extensions are ignored.
  """
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    raise FileNotFoundError(
        f'Dataset root {str(root)!r} does not exist or is not a folder. '
        'Expected <root>/<class>/<image>.jpg|png|tif.')
  classes = sorted(d.name for d in root.iterdir()
                   if d.is_dir() and not d.name.startswith('.'))
  if not classes:
    raise ValueError(f'No class folders in {str(root)!r}: expected '
                     '<root>/<class>/<image>.jpg|png|tif.')
  if len(classes) < 2:
    raise ValueError(f'Only one class folder ({classes[0]!r}) in '
                     f'{str(root)!r}: retrieval needs at least two classes.')
  paths, names, labels = [], [], []
  for c, cls in enumerate(classes):
    files = sorted(f for f in (root / cls).iterdir()
                   if f.suffix.lower() in IMAGE_EXTENSIONS
                   and not f.name.startswith('.'))
    if not files:
      raise ValueError(f'Class folder {str(root / cls)!r} has no images '
                       f'({", ".join(IMAGE_EXTENSIONS)}). Remove it or add '
                       'images.')
    paths += [str(f) for f in files]
    names += [f'{cls}/{f.name}' for f in files]
    labels += [c] * len(files)
  onehot = np.eye(len(classes), dtype=np.float32)[labels]
  paths, names, onehot, skipped = _validate(
      paths, names, onehot, skip_bad_images, repr(str(root)))
  return ImageSet(np.array(paths), names, onehot, classes, skipped)


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
    raise ValueError(f'Unknown TFDS dataset {name!r} ({e}). For a folder of '
                     'images use --config.data.name=folder '
                     '--config.data.root=PATH.') from e
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
  paths, names, labels, skipped = _validate(
      paths, list(manifest['files']), labels, skip_bad_images,
      f'the export of TFDS {name!r} at {str(cache)!r}')
  return ImageSet(np.array(paths), names, labels, manifest['class_names'],
                  skipped)


def load(data_config):
  """The ImageSet named by a config's `data` block."""
  c = data_config
  if c.name in BUNDLED:
    return from_folder(BUNDLED[c.name], c.skip_bad_images)
  if c.name == 'folder':
    if not c.root:
      raise ValueError('data.name=folder needs --config.data.root=PATH '
                       '(a folder of <class>/<image> files).')
    return from_folder(c.root, c.skip_bad_images)
  return from_tfds(c.name, c.tfds_split, c.data_dir, c.download, c.cache_dir,
                   c.skip_bad_images, c.get('image_key', 'image'))


def _stem(name):
  return str(pathlib.PurePosixPath(name).with_suffix(''))


def pair_sources(sets, roots):
  """Aligns co-registered sources on the first one (MrHash, issue 4).

  Sources are paired by relative path without its extension
  ('aGrass/a001.jpg' pairs with 'aGrass/a001.tif'), the stand-in for
  geographic coordinates. Labels and order come from the first source.

  Args:
    sets: ImageSets, one per source; sets[0] is the source that is hashed.
    roots: a display name per source, for error messages.

  Returns:
    A list of ImageSets in sets[0]'s order, each with sets[0]'s labels.

  Raises:
    ValueError: listing files present in one source and not in another.
  """
  first = {_stem(n): i for i, n in enumerate(sets[0].names)}
  out = [sets[0]]
  for s, root in zip(sets[1:], roots[1:]):
    index = {_stem(n): i for i, n in enumerate(s.names)}
    only_first = sorted(set(first) - set(index))
    only_this = sorted(set(index) - set(first))
    if only_first or only_this:
      def listed(names):
        more = f' and {len(names) - 10} more' if len(names) > 10 else ''
        return ', '.join(names[:10]) + more
      raise ValueError(
          f'Sources {roots[0]!r} and {root!r} do not pair: '
          + (f'{len(only_first)} image(s) only in {roots[0]!r} '
             f'({listed(only_first)})' if only_first else '')
          + ('; ' if only_first and only_this else '')
          + (f'{len(only_this)} image(s) only in {root!r} '
             f'({listed(only_this)})' if only_this else '')
          + '. Every image needs its counterpart at the same relative path '
          'in every source (extensions may differ).')
    order = np.array([index[_stem(n)] for n in sets[0].names])
    out.append(ImageSet(s.paths[order], [s.names[i] for i in order],
                        sets[0].labels, sets[0].class_names, s.skipped))
  return out
