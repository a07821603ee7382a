"""Label nomenclatures: a dataset's own labels mapped onto a standard set.

BigEarthNet (Sumbul et al., IGARSS 2019) labels each Sentinel-2 patch with
the 43 level-3 classes of CORINE Land Cover 2018. Its authors later defined
a 19-class nomenclature (Sumbul et al., "BigEarthNet dataset with a new
class-nomenclature for remote sensing image understanding", arXiv:2001.06372,
2020; BigEarthNet-MM, IEEE GRSM 2021) that merges classes which cannot be told apart in a 120 x 120
patch at 10 m and drops 11 that cannot be recognised from the image alone
(roads, ports, airports, mines, dumps, construction sites, green urban
areas, sport facilities, bare rock, burnt areas, intertidal flats). The
retrieval papers on BigEarthNet report the 19 classes; so does hashjax by
default (`data.nomenclature`, docs/metrics.md):

  default     the dataset's standard: `bigearthnet19` for TFDS `bigearthnet`,
              the dataset's own labels for every other source.
  original    the dataset's own labels (BigEarthNet: the 43 CLC classes).
  bigearthnet19  the 19 classes, for any source whose class names are the
              43 CLC names (a TFDS export, a list, a folder tree).

A mapping is by class *name*, so the order of the source's classes does not
matter (TFDS sorts them alphabetically). A patch none of whose labels exists
in the target nomenclature is left out of the run and listed (ImageSet.
unlabelled, results.json), never kept with an empty label.
"""
import dataclasses

import numpy as np

# The 19 classes in their published order,
# each with the CLC level-3 classes merged into it.
_BIGEARTHNET19 = (
    ('Urban fabric',
     ('Continuous urban fabric', 'Discontinuous urban fabric')),
    ('Industrial or commercial units', ('Industrial or commercial units',)),
    ('Arable land', ('Non-irrigated arable land', 'Permanently irrigated land',
                     'Rice fields')),
    ('Permanent crops', ('Vineyards', 'Fruit trees and berry plantations',
                         'Olive groves',
                         'Annual crops associated with permanent crops')),
    ('Pastures', ('Pastures',)),
    ('Complex cultivation patterns', ('Complex cultivation patterns',)),
    ('Land principally occupied by agriculture, with significant areas of '
     'natural vegetation',
     ('Land principally occupied by agriculture, with significant areas of '
      'natural vegetation',)),
    ('Agro-forestry areas', ('Agro-forestry areas',)),
    ('Broad-leaved forest', ('Broad-leaved forest',)),
    ('Coniferous forest', ('Coniferous forest',)),
    ('Mixed forest', ('Mixed forest',)),
    ('Natural grassland and sparsely vegetated areas',
     ('Natural grassland', 'Sparsely vegetated areas')),
    ('Moors, heathland and sclerophyllous vegetation',
     ('Moors and heathland', 'Sclerophyllous vegetation')),
    ('Transitional woodland, shrub', ('Transitional woodland/shrub',)),
    ('Beaches, dunes, sands', ('Beaches, dunes, sands',)),
    ('Inland wetlands', ('Inland marshes', 'Peatbogs')),
    ('Coastal wetlands', ('Salt marshes', 'Salines')),
    ('Inland waters', ('Water courses', 'Water bodies')),
    ('Marine waters', ('Coastal lagoons', 'Estuaries', 'Sea and ocean')),
)

# The 43 CLC level-3 classes of BigEarthNet: the 32 merged above and the
# 11 the 19-class nomenclature drops.
BIGEARTHNET43 = tuple(sorted(
    [s for _, sources in _BIGEARTHNET19 for s in sources] + [
        'Road and rail networks and associated land', 'Port areas',
        'Airports', 'Mineral extraction sites', 'Dump sites',
        'Construction sites', 'Green urban areas',
        'Sport and leisure facilities', 'Bare rock', 'Burnt areas',
        'Intertidal flats']))


@dataclasses.dataclass(frozen=True)
class Nomenclature:
  name: str
  classes: tuple      # the target class names, in order.
  sources: dict       # source class name -> target index (absent: dropped).
  source_names: tuple  # every name a source must have (dropped ones too).


NOMENCLATURES = {
    'bigearthnet19': Nomenclature(
        'bigearthnet19', tuple(t for t, _ in _BIGEARTHNET19),
        {s: i for i, (_, srcs) in enumerate(_BIGEARTHNET19) for s in srcs},
        BIGEARTHNET43),
}
# The nomenclature `default` means, by TFDS dataset (name before any '/').
DATASET_DEFAULTS = {'bigearthnet': 'bigearthnet19'}
CHOICES = ('default', 'original') + tuple(NOMENCLATURES)


def resolve(dataset_name, nomenclature='default'):
  """The Nomenclature to apply, or None for the dataset's own labels."""
  nomenclature = nomenclature or 'default'
  if nomenclature not in CHOICES:
    raise ValueError(
        f'Unknown data.nomenclature {nomenclature!r}; choose one of '
        f'{", ".join(CHOICES)}.')
  if nomenclature == 'default':
    base = dataset_name.split('/')[0].split(':')[0]
    nomenclature = DATASET_DEFAULTS.get(base, 'original')
  return NOMENCLATURES.get(nomenclature)


def apply(image_set, nomenclature):
  """`image_set` relabelled onto `nomenclature` (a Nomenclature).

  Images left without any label are removed and listed, with their former
  labels, in the result's `unlabelled`.
  """
  missing = sorted(set(nomenclature.source_names) - set(image_set.class_names))
  unknown = sorted(set(image_set.class_names) - set(nomenclature.source_names))
  if missing or unknown:
    problems = [f'{what} {", ".join(repr(n) for n in names[:3])}'
                f'{f" (and {len(names) - 3} more)" if len(names) > 3 else ""}'
                for what, names in (('lacks', missing), ('has', unknown))
                if names]
    raise ValueError(
        f'data.nomenclature={nomenclature.name} maps the 43 CORINE class '
        f'names of BigEarthNet, but this dataset {" and ".join(problems)}. '
        'Use --config.data.nomenclature=original to keep its own labels.')
  # [C_source, C_target] 0/1 matrix; labels @ it counts merged labels.
  merge = np.zeros((len(image_set.class_names), len(nomenclature.classes)),
                   np.float32)
  for i, n in enumerate(image_set.class_names):
    if n in nomenclature.sources:
      merge[i, nomenclature.sources[n]] = 1.0
  labels = np.minimum(image_set.labels @ merge, 1.0).astype(np.float32)
  keep = labels.sum(1) > 0
  unlabelled = [
      dict(file=image_set.names[i], labels=[
          image_set.class_names[c]
          for c in np.flatnonzero(image_set.labels[i])])
      for i in np.flatnonzero(~keep)]
  return dataclasses.replace(
      image_set, paths=image_set.paths[keep],
      names=[n for n, k in zip(image_set.names, keep) if k],
      labels=labels[keep], class_names=list(nomenclature.classes),
      unlabelled=list(image_set.unlabelled) + unlabelled)
