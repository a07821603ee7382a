"""A small multi-label demo built from real bundled scenes: 2x2 mosaics of
RSSCN7 tiles, labelled with the union of the tiles' classes.

`ensure(root)` writes, once, `root/images/mNNNN.jpg` (64x64, four 32x32
tiles) and `root/labels.csv` (`images/mNNNN.jpg,cls1;cls2`), the list format
that `data.name=list` and `hashjax.search --images=LIST` read. Mosaics hold
1, 2 or 3 distinct classes (40/40/20 %), each tile a different scene of the
bundled RSSCN7 copy, from a fixed seed, so every machine builds the same
files. Written to a temporary folder and renamed into place: a killed
build leaves nothing half-written.
"""
import os
import pathlib
import shutil
import tempfile

import numpy as np

BUNDLED = pathlib.Path(__file__).parent / 'bundled' / 'rsscn7_64'
NAME = 'rsscn7_mosaic'
VERSION = 1


def default_root(cache_dir=''):
  base = cache_dir or os.environ.get('HASHJAX_DATA_DIR') or os.path.join(
      os.path.expanduser('~'), '.cache', 'hashjax', 'datasets')
  return os.path.join(base, f'{NAME}_v{VERSION}')


def ensure(root, count=1400, seed=0):
  """The labels.csv of the mosaic set in `root`, built if missing."""
  labels = os.path.join(root, 'labels.csv')
  if os.path.exists(labels):
    return labels
  from PIL import Image  # pylint: disable=g-import-not-at-top
  classes = sorted(d.name for d in BUNDLED.iterdir() if d.is_dir())
  files = {c: sorted((BUNDLED / c).glob('*.jpg')) for c in classes}
  rng = np.random.default_rng(seed)
  order = {c: list(rng.permutation(len(files[c]))) for c in classes}
  os.makedirs(os.path.dirname(os.path.abspath(root)), exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{NAME}.', dir=os.path.dirname(
      os.path.abspath(root)))
  try:
    os.makedirs(os.path.join(tmp, 'images'))
    lines = []
    for i in range(count):
      n = rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2])
      chosen = list(rng.choice(len(classes), n, replace=False))
      tiles = chosen + list(rng.choice(chosen, 4 - n))
      rng.shuffle(tiles)
      canvas = Image.new('RGB', (64, 64))
      for pos, c in enumerate(tiles):
        name = classes[c]
        if not order[name]:
          order[name] = list(rng.permutation(len(files[name])))
        with Image.open(files[name][order[name].pop()]) as im:
          tile = im.convert('RGB').resize((32, 32), Image.BILINEAR)
        canvas.paste(tile, (32 * (pos % 2), 32 * (pos // 2)))
      rel = f'images/m{i:04d}.jpg'
      canvas.save(os.path.join(tmp, rel), quality=95)
      lines.append(f'{rel},{";".join(classes[c] for c in sorted(chosen))}\n')
    with open(os.path.join(tmp, 'labels.csv'), 'w') as f:
      f.writelines(lines)
    try:
      os.rename(tmp, root)
    except OSError:          # another process built it first
      if not os.path.exists(labels):
        raise
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp)
  return labels
