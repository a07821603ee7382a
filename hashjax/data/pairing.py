"""Pairing co-registered sources (MrHash's multisource input)."""
import pathlib

import numpy as np

from hashjax.data import image_set as image_set_lib


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
    out.append(image_set_lib.ImageSet(
        s.paths[order], [s.names[i] for i in order], sets[0].labels,
        sets[0].class_names, s.skipped))
  return out


def extra_source(data_config, image_set, spec):
  """The images of source `spec`, paired with `image_set` (source 1).

  spec: a folder root (paired by relative path), or 'tfds:FEATURE[:B0,B1,
  B2]' for another feature of the same TFDS dataset (so2sat/all's
  sentinel1 beside data.image_key='sentinel2:2,1,0').
  """
  d = data_config
  if spec.startswith('tfds:'):
    from hashjax.data import tfds_export  # pylint: disable=g-import-not-at-top
    other = tfds_export.from_tfds(d.name, d.tfds_split, d.data_dir,
                                  d.download, d.cache_dir, d.skip_bad_images,
                                  spec[len('tfds:'):])
  else:
    from hashjax.data import sources  # pylint: disable=g-import-not-at-top
    other = sources.from_folder(spec, d.skip_bad_images)
  return pair_sources([image_set, other], ['source 1', spec])[1]
