"""Image sources: the bundled RSSCN7 copy, any class-folder tree, or TFDS.

`load(config.data)` returns an ImageSet (hashjax/data/image_set.py). A TFDS
dataset is exported once to a folder cache (hashjax/data/tfds_export.py), so
training reads every source the same way and can visit images in any order
(the asymmetric methods sample subsets of the database by index).
"""
import os
import pathlib

import numpy as np

from hashjax.data import image_set as image_set_lib
from hashjax.data import mosaic
from hashjax.data import nomenclatures
from hashjax.data import tfds_export

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.tif', '.tiff')
BUNDLED = {
    'rsscn7_64': pathlib.Path(__file__).parent / 'bundled' / 'rsscn7_64',
}


def from_folder(root, skip_bad_images=False, hint=None):
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
  paths, names, onehot, skipped = image_set_lib.validate(
      paths, names, onehot, skip_bad_images, repr(str(root)),
      **({'hint': hint} if hint else {}))
  return image_set_lib.ImageSet(np.array(paths), names, onehot, classes,
                                skipped)


def for_indexing(root):
  """Any folder of images to index (hashjax.search --images): a tree of
  class folders (labels from the folders, one class is fine), or a flat
  folder of images (no labels: class_names is [])."""
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    raise FileNotFoundError(f'No folder of images at {str(root)!r}.')
  classes = sorted(d.name for d in root.iterdir()
                   if d.is_dir() and not d.name.startswith('.'))
  if len(classes) >= 2:
    return from_folder(root, hint='Fix or remove them.')
  if classes:   # one class folder: its images, labelled with it.
    images = _images(root / classes[0])
    names = [f'{classes[0]}/{f.name}' for f in images]
    labels = np.ones((len(images), 1), np.float32)
  else:
    images = _images(root)
    names = [f.name for f in images]
    labels = np.zeros((len(images), 0), np.float32)
  if not images:
    raise ValueError(f'No images ({", ".join(IMAGE_EXTENSIONS)}) in '
                     f'{str(root)!r}.')
  paths, names, labels, _ = image_set_lib.validate(
      [str(f) for f in images], names, labels, False, repr(str(root)),
      hint='Fix or remove them.')
  return image_set_lib.ImageSet(np.array(paths), names, labels,
                                list(classes))


def for_archive(spec):
  """An archive to encode (hashjax.search --images with a sharded --out),
  listed without decoding anything (unreadable images are found, listed
  and left out while encoding). Through tf.io.gfile, so gs:// and the other
  filesystems TensorFlow reads work:
    - a folder: images in class sub-folders (label = the top-level
      folder, images at any depth below it), or a flat folder (no labels);
    - a .txt or .csv list, one image per line: `path` or
      `path,label1;label2;...` (multi-label); relative paths are relative
      to the list's folder.
  Items are in sorted order, so a rerun lists the same archive the same
  way (a resumed encode relies on it).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  gfile = tf.io.gfile
  spec = str(spec)
  if '://' not in spec:   # local: absolute ids, whatever the working folder
    spec = os.path.abspath(os.path.expanduser(spec))
  if spec.lower().endswith(('.txt', '.csv')) and gfile.exists(spec) and \
      not gfile.isdir(spec):
    return _from_list(spec, gfile)
  if not gfile.isdir(spec):
    raise FileNotFoundError(f'No folder of images or .txt/.csv list at '
                            f'{spec!r}.')
  root = spec.rstrip('/')
  paths, labels = [], []
  for folder, _, files in gfile.walk(root):
    rel = folder[len(root):].strip('/')
    if any(part.startswith('.') for part in rel.split('/') if part):
      continue
    top = rel.split('/')[0] if rel else ''
    for f in files:
      if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith('.'):
        paths.append(f'{folder.rstrip("/")}/{f}')
        labels.append(top)
  if not paths:
    raise ValueError(f'No images ({", ".join(IMAGE_EXTENSIONS)}) in '
                     f'{spec!r}.')
  order = np.argsort(paths, kind='stable')
  paths = [paths[i] for i in order]
  labels = [[labels[i]] if labels[i] else [] for i in order]
  return _labelled(paths, labels)


def from_list(spec, skip_bad_images=False):
  """Training data from a .txt/.csv list, `path` or `path,label1;label2`
  per line (multi-label: an image may have several labels; relative paths
  are relative to the list's folder). Ids are the paths as listed. Every
  image is decoded once, as from_folder does."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  spec = str(spec)
  if not tf.io.gfile.exists(spec) or tf.io.gfile.isdir(spec):
    raise FileNotFoundError(f'No image list at {spec!r}: expected a .txt or '
                            '.csv file with lines `path[,label1;label2]`.')
  listed = _from_list(spec, tf.io.gfile, names_as_listed=True)
  if not listed.class_names:
    raise ValueError(f'{spec!r} gives no labels: training needs lines '
                     '`path,label1;label2`.')
  paths, names, labels, skipped = image_set_lib.validate(
      list(listed.paths), listed.names, listed.labels, skip_bad_images,
      repr(spec))
  return image_set_lib.ImageSet(np.array(paths), names, labels,
                                listed.class_names, skipped)


def _from_list(spec, gfile, names_as_listed=False):
  base = spec.rsplit('/', 1)[0] if '/' in spec else '.'
  paths, labels, listed = [], [], []
  with gfile.GFile(spec) as f:
    for n, line in enumerate(f, 1):
      line = line.strip()
      if not line or line.startswith('#'):
        continue
      path, _, names = line.partition(',')
      path = path.strip()
      if not path.lower().endswith(IMAGE_EXTENSIONS):
        raise ValueError(f'{spec!r} line {n}: {path!r} is not an image '
                         f'({", ".join(IMAGE_EXTENSIONS)}). Lines are '
                         '`path` or `path,label1;label2`.')
      listed.append(path)
      if '://' not in path and not path.startswith('/'):
        path = f'{base}/{path}'
      paths.append(path)
      labels.append([x.strip() for x in names.split(';') if x.strip()])
  if not paths:
    raise ValueError(f'{spec!r} lists no images.')
  dup = len(paths) - len(set(paths))
  if dup:
    raise ValueError(f'{spec!r} lists {dup} image(s) twice; list each once.')
  order = np.argsort(paths, kind='stable')
  return _labelled([paths[i] for i in order], [labels[i] for i in order],
                   [listed[i] for i in order] if names_as_listed else None)


def _labelled(paths, labels, names=None):
  classes = sorted({x for row in labels for x in row})
  onehot = np.zeros((len(paths), len(classes)), np.float32)
  col = {x: j for j, x in enumerate(classes)}
  for i, row in enumerate(labels):
    for x in row:
      onehot[i, col[x]] = 1
  return image_set_lib.ImageSet(np.array(paths), list(names or paths),
                                onehot, classes)


def _images(folder):
  return sorted(f for f in folder.iterdir()
                if f.suffix.lower() in IMAGE_EXTENSIONS
                and not f.name.startswith('.'))


def load(data_config):
  """The ImageSet named by a config's `data` block, in its nomenclature."""
  nomenclature = nomenclatures.resolve(
      data_config.name, data_config.get('nomenclature', 'default'))
  image_set = _load(data_config)
  if nomenclature is None:
    return image_set
  image_set = nomenclatures.apply(image_set, nomenclature)
  if not len(image_set):
    raise ValueError(
        f'No image of {data_config.name!r} has a label in the '
        f'{nomenclature.name} nomenclature.')
  return image_set


def _load(data_config):
  c = data_config
  if c.name in BUNDLED:
    return from_folder(BUNDLED[c.name], c.skip_bad_images)
  if c.name == 'list':
    if not c.root:
      raise ValueError('data.name=list needs --config.data.root=LIST.csv '
                       '(lines `path,label1;label2`).')
    return from_list(c.root, c.skip_bad_images)
  if c.name == mosaic.NAME:   # the bundled multi-label demo, built once
    return from_list(mosaic.ensure(mosaic.default_root(c.cache_dir)),
                     c.skip_bad_images)
  if c.name == 'folder':
    if not c.root:
      raise ValueError('data.name=folder needs --config.data.root=PATH '
                       '(a folder of <class>/<image> files).')
    return from_folder(c.root, c.skip_bad_images)
  try:
    return tfds_export.from_tfds(c.name, c.tfds_split, c.data_dir, c.download,
                                 c.cache_dir, c.skip_bad_images,
                                 c.get('image_key', 'image'))
  except tfds_export.UnknownDatasetError as e:
    close = tfds_export.close_names(c.name, extra=list(BUNDLED) + [
        mosaic.NAME, 'folder', 'list'])
    hint = f' Did you mean {", ".join(close)}?' if close else ''
    raise ValueError(
        f'Unknown data.name {c.name!r}: not bundled ({", ".join(BUNDLED)}, '
        f'{mosaic.NAME}) and not a TFDS dataset.{hint} For a folder of '
        'images use --config.data.name=folder --config.data.root=PATH; for '
        'a list with (multi-)labels --config.data.name=list '
        '--config.data.root=LIST.csv.') from e
