"""Split protocols as data: which images are queries and which the database.

Every protocol maps a labelled image list to three index arrays:
`train`, `database` and `query`. In all protocols here the training set *is*
the database (the asymmetric methods learn the database codes directly, docs/methods/
ahcl.md §1.2, docs/methods/dgssh.md §2), and the query set is disjoint from it.

Protocols:
  default      per class, sorted by file name: the first 80 % -> database
               (= train), the last 20 % -> query.
  ucmd_dgssh   UC Merced, DGSSH's shipped split (dgssh.md appendix): 20
               fixed query images per class (by file number), 80 database.
  whurs19_ahcl WHU-RS19 with AHCL's sizes (ahcl.md §1.2/§2.2): 505 database,
               500 query, stratified per class (largest-remainder rounding).
               The shipped index lists are not available, so which images are
               queries is a documented choice (sorted file name), not theirs.
  eurosat_mrhash  EuroSAT with MrHash's sizes (mrhash.md §1.1): 100 queries
               per class (the last 100 by file name: the shipped test.txt
               is not available), the other 26,000 images are the database.
"""
import dataclasses
import re

import numpy as np

# dgssh.md, Appendix: query image numbers per UCMD class.
_UCMD_QUERY_NUMBERS = {
    'agricultural': (1, 2, 12, 21, 27, 30, 32, 44, 54, 56, 58, 62, 64, 69,
                     75, 76, 80, 93, 97, 98),
    'airplane': (3, 7, 12, 16, 19, 20, 28, 32, 44, 58, 64, 66, 71, 73, 74,
                 75, 80, 89, 92, 94),
    'baseballdiamond': (0, 5, 13, 14, 15, 20, 25, 28, 31, 35, 39, 60, 66,
                        68, 73, 77, 80, 91, 93, 99),
    'beach': (3, 4, 7, 38, 39, 40, 44, 49, 51, 54, 55, 61, 67, 72, 78, 84,
              88, 91, 94, 96),
    'buildings': (3, 14, 20, 21, 24, 25, 28, 44, 52, 53, 57, 60, 62, 68, 74,
                  79, 86, 94, 95, 98),
    'chaparral': (4, 6, 9, 12, 13, 16, 20, 23, 24, 28, 36, 48, 55, 57, 59,
                  66, 67, 76, 78, 83),
    'denseresidential': (0, 6, 15, 16, 26, 29, 34, 42, 44, 53, 56, 71, 72,
                         73, 74, 79, 92, 95, 97, 98),
    'forest': (0, 1, 9, 13, 21, 23, 42, 43, 46, 47, 49, 56, 60, 73, 74, 79,
               80, 83, 86, 93),
    'freeway': (6, 16, 21, 31, 34, 36, 39, 44, 51, 62, 67, 68, 70, 79, 86,
                89, 93, 94, 95, 97),
    'golfcourse': (16, 18, 20, 24, 25, 29, 33, 36, 43, 57, 58, 67, 71, 75,
                   80, 83, 85, 86, 91, 92),
    'harbor': (0, 21, 25, 26, 27, 29, 52, 53, 58, 60, 66, 69, 76, 80, 83, 84,
               86, 89, 93, 97),
    'intersection': (0, 8, 11, 16, 17, 18, 20, 29, 50, 54, 59, 62, 67, 79,
                     81, 84, 88, 91, 93, 94),
    'mediumresidential': (4, 6, 10, 13, 23, 24, 25, 31, 33, 36, 39, 47, 49,
                          53, 58, 61, 64, 71, 72, 74),
    'mobilehomepark': (10, 11, 17, 23, 26, 29, 34, 35, 38, 40, 43, 49, 52,
                       54, 55, 56, 60, 61, 73, 86),
    'overpass': (9, 11, 15, 24, 32, 37, 44, 46, 48, 61, 64, 75, 76, 79, 83,
                 90, 91, 92, 94, 99),
    'parkinglot': (0, 1, 12, 13, 16, 17, 18, 21, 25, 29, 44, 65, 66, 67, 84,
                   85, 88, 89, 92, 94),
    'river': (2, 3, 8, 16, 18, 21, 36, 44, 46, 48, 60, 62, 64, 68, 74, 81,
              84, 88, 96, 97),
    'runway': (6, 7, 8, 10, 15, 21, 22, 31, 33, 36, 37, 49, 55, 66, 70, 73,
               87, 89, 91, 97),
    'sparseresidential': (1, 4, 6, 8, 12, 16, 21, 26, 39, 42, 52, 61, 62, 64,
                          68, 70, 81, 84, 85, 97),
    'storagetanks': (1, 4, 10, 18, 20, 24, 29, 34, 38, 43, 49, 50, 59, 77,
                     82, 88, 89, 93, 95, 98),
    'tenniscourt': (0, 8, 13, 17, 23, 27, 33, 35, 37, 41, 48, 49, 53, 56, 75,
                    77, 83, 85, 93, 96),
}


@dataclasses.dataclass(frozen=True)
class Protocol:
  """A split rule. Exactly one of the three ways of choosing queries."""
  name: str
  query_fraction: float = 0.0         # per class, last fraction by name.
  query_total: int = 0                # exact total, stratified.
  query_numbers: dict = dataclasses.field(default_factory=dict)  # per class.
  query_per_class: int = 0            # exact count per class, last by name.
  num_classes: int = 0                # expected classes (0 = any).


PROTOCOLS = {
    'default': Protocol('default', query_fraction=0.2),
    'ucmd_dgssh': Protocol('ucmd_dgssh', query_numbers=_UCMD_QUERY_NUMBERS,
                           num_classes=21),
    'whurs19_ahcl': Protocol('whurs19_ahcl', query_total=500,
                             num_classes=19),
    'eurosat_mrhash': Protocol('eurosat_mrhash', query_per_class=100,
                               num_classes=10),
}


def _stratified_counts(class_sizes, total):
  """Largest-remainder split of `total` proportionally to class sizes."""
  sizes = np.asarray(class_sizes, np.float64)
  exact = sizes * total / sizes.sum()
  counts = np.floor(exact).astype(int)
  order = np.argsort(-(exact - counts), kind='stable')
  counts[order[:total - counts.sum()]] += 1
  return counts


def _file_number(name):
  match = re.search(r'(\d+)\D*$', name)
  if not match:
    raise ValueError(f'Cannot read an image number from {name!r}.')
  return int(match.group(1))


def split(names, labels, class_names, protocol='default'):
  """Splits a dataset into train (= database) and query indices.

  Args:
    names: [N] relative file names/ids (`<class>/<file>`), used for order.
    labels: [N] int class index (the primary class of each image).
    class_names: list of class names, indexed by label.
    protocol: a key of PROTOCOLS.

  Returns:
    dict with int64 index arrays 'train', 'database' (the same array) and
    'query', each sorted ascending.
  """
  if protocol not in PROTOCOLS:
    raise ValueError(f'Unknown split protocol {protocol!r}; known: '
                     f'{", ".join(sorted(PROTOCOLS))}.')
  p = PROTOCOLS[protocol]
  labels = np.asarray(labels)
  if p.num_classes and len(class_names) != p.num_classes:
    raise ValueError(f'Protocol {protocol!r} expects {p.num_classes} classes, '
                     f'the dataset has {len(class_names)}.')
  members = [sorted(np.flatnonzero(labels == c), key=lambda i: names[i])
             for c in range(len(class_names))]
  if p.query_total:
    n_query = _stratified_counts([len(m) for m in members], p.query_total)
  query = []
  for c, idx in enumerate(members):
    if p.query_numbers:
      wanted = set(p.query_numbers.get(class_names[c], ()))
      if not wanted:
        raise ValueError(f'Protocol {protocol!r} has no query list for class '
                         f'{class_names[c]!r}.')
      query += [i for i in idx if _file_number(names[i]) in wanted]
    else:
      if p.query_per_class:
        k = p.query_per_class
        if len(idx) <= k:
          raise ValueError(f'Protocol {protocol!r} takes {k} queries per '
                           f'class; class {class_names[c]!r} has only '
                           f'{len(idx)} images.')
      elif p.query_total:
        k = n_query[c]
      else:
        k = int(round(len(idx) * p.query_fraction))
      query += idx[len(idx) - k:]
  query = np.array(sorted(query), np.int64)
  train = np.setdiff1d(np.arange(len(labels)), query).astype(np.int64)
  if not len(query) or not len(train):
    raise ValueError(f'Protocol {protocol!r} gives an empty '
                     f'{"query" if not len(query) else "database"} split.')
  return {'train': train, 'database': train, 'query': query}
