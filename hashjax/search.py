r"""Search an archive by image: build a packed index, query it, see results.

Build an index from a trained run (its database: the learned codes V for
AHCL/DGSSH, the network's codes of the database images otherwise):

  python -m hashjax.search --workdir=runs/ahcl_64b_xxxx --out=archive.hjidx

Encode another image folder (<class>/<image>, labels from the folders) or
a TFDS split (--images=tfds:NAME[:SPLIT] --tfds_data_dir=DIR) into a new
index, or add it to an existing one without re-encoding the old codes:

  python -m hashjax.search --workdir=RUN --images=DIR --out=archive.hjidx
  python -m hashjax.search --workdir=RUN --images=NEW_DIR --out=archive.hjidx \
      --append

Query (an image, a folder of images, or a .txt list of paths); the queries
are encoded with the network of the run that built the index:

  python -m hashjax.search --index=archive.hjidx --query=img.jpg [--k=20] \
      [--report=out.html|out.png]

Prints rank, Hamming distance, id and label per result. With labels in the
index and a query inside a folder named after a class, results are marked
relevant (shares the class) or not. The ranking is exact, ties by index
(hashjax/search_kernel.py), as in evaluation.
"""
import base64
import html
import io
import os
import pathlib
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import numpy as np

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.tif', '.tiff')


def _encode(run, image_set, ids=None):
  """±1 codes of the images `ids` (all by default) of `image_set`, with the
  run's network."""
  from hashjax.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  return evaluator.encoder(run.model, run.state, image_set, run.config,
                           run.mesh)(np.arange(len(image_set)) if ids is None
                                     else ids)


def image_source(spec, tfds_data_dir=''):
  """A <class>/<image> folder, or 'tfds:NAME[:SPLIT]' (a TFDS dataset
  prepared in tfds_data_dir), as an ImageSet."""
  from hashjax.data import sources  # pylint: disable=g-import-not-at-top
  if spec.startswith('tfds:'):
    name, _, split = spec[len('tfds:'):].partition(':')
    return sources.from_tfds(name, split or 'train', tfds_data_dir)
  return sources.from_folder(spec)


def build(workdir, out, images=None, append=False, tfds_data_dir=''):
  """Writes (or extends) an index; returns the Index."""
  from hashjax import codes  # pylint: disable=g-import-not-at-top
  from hashjax import index  # pylint: disable=g-import-not-at-top
  from hashjax import parallel  # pylint: disable=g-import-not-at-top
  from hashjax import train  # pylint: disable=g-import-not-at-top
  run = train.load_trained(workdir)
  source = dict(workdir=os.path.abspath(workdir), step=run.step,
                method=run.config.method, bits=run.config.bits)
  if images:
    image_set = image_source(images, tfds_data_dir)
    source['images'] = (images if images.startswith('tfds:')
                        else os.path.abspath(images))
    c = _encode(run, image_set)
    ids, labels, names = list(image_set.paths), image_set.labels, \
        image_set.class_names
  else:
    db = run.splits['database']
    if run.method.DATABASE_CODES == 'bank':
      c = codes.binarize(parallel.to_host(
          run.method.database_codes(run.state.method_state)))
      source['codes'] = 'learned database codes (V)'
    else:
      c = _encode(run, run.image_set, db)
      source['codes'] = 'network codes of the database images'
    ids = list(run.image_set.paths[db])
    labels, names = run.image_set.labels[db], run.image_set.class_names
  if append:
    return index.append(out, c, ids, labels=labels, source=source,
                        class_names=names)
  index.save(out, c, ids, labels=labels, class_names=names, source=source)
  return index.load(out, verify=False)   # just written


def query_paths(query):
  """An image, a folder (recursive) or a .txt list -> list of paths."""
  p = pathlib.Path(query)
  if p.is_dir():
    paths = sorted(str(f) for f in p.rglob('*')
                   if f.suffix.lower() in IMAGE_SUFFIXES)
  elif p.suffix.lower() == '.txt' and p.is_file():
    paths = [l.strip() for l in p.read_text().splitlines() if l.strip()]
  elif p.is_file():
    paths = [str(p)]
  else:
    raise FileNotFoundError(f'No query image, folder or list at {query!r}.')
  if not paths:
    raise ValueError(f'No images ({", ".join(IMAGE_SUFFIXES)}) in {query!r}.')
  for path in paths:
    if not os.path.isfile(path):
      raise FileNotFoundError(f'Query image {path!r} does not exist.')
  return paths


def search(index_path, queries, k=20, workdir=None):
  """Encodes the query images and ranks the index.

  Returns (Index, paths, query labels [Q] (class index or -1), distances
  [Q, k], indices [Q, k]).
  """
  from hashjax import index as index_lib  # pylint: disable=g-import-not-at-top
  from hashjax import search_kernel  # pylint: disable=g-import-not-at-top
  from hashjax import train  # pylint: disable=g-import-not-at-top
  from hashjax.data import sources  # pylint: disable=g-import-not-at-top
  idx = index_lib.load(index_path)
  workdir = workdir or idx.source.get('workdir')
  if not workdir:
    raise ValueError(f'{index_path!r} does not name the run that built it; '
                     'pass --workdir=RUN.')
  run = train.load_trained(workdir)
  if run.config.bits != idx.bits:
    raise ValueError(f'{workdir!r} makes {run.config.bits}-bit codes; the '
                     f'index holds {idx.bits}-bit codes.')
  paths = query_paths(queries)
  names = idx.class_names or []
  q_labels = np.array([names.index(pathlib.Path(p).parent.name)
                       if pathlib.Path(p).parent.name in names else -1
                       for p in paths])
  image_set = sources.ImageSet(np.array(paths), list(paths),
                               np.zeros((len(paths), 1), np.float32), ['?'])
  sources.check_decodable(image_set.paths)
  q = _encode(run, image_set)
  dist, ids = search_kernel.search(index_lib.pack(q), idx.packed, k,
                                   idx.bits)
  return idx, paths, q_labels, dist, ids


def _label_of(idx, row):
  if idx.labels is None or not idx.class_names:
    return ''
  return ','.join(idx.class_names[j] for j in np.flatnonzero(idx.labels[row]))


def _relevant(idx, q_label, row):
  if q_label < 0 or idx.labels is None:
    return None
  return bool(idx.labels[row, q_label] > 0)


def print_results(idx, paths, q_labels, dist, ids, out=sys.stdout):
  for p, ql, d, i in zip(paths, q_labels, dist, ids):
    ql_name = idx.class_names[ql] if ql >= 0 else 'unknown'
    print(f'query {p} (class {ql_name})', file=out)
    print(f'{"rank":>4} {"dist":>4}  {"relevant":8}  {"label":16} id',
          file=out)
    for rank, (dd, ii) in enumerate(zip(d, i), 1):
      rel = _relevant(idx, ql, ii)
      mark = '' if rel is None else ('yes' if rel else 'no')
      print(f'{rank:>4} {dd:>4}  {mark:8}  {_label_of(idx, ii):16} '
            f'{idx.ids[ii]}', file=out)


def _thumb_uri(path, size=96):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as im:
    im = im.convert('RGB')
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format='PNG')
  return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()


def write_report(path, idx, paths, q_labels, dist, ids):
  """A self-contained .html (thumbnails inlined) or a .png grid."""
  if path.lower().endswith('.png'):
    return _report_png(path, idx, paths, q_labels, dist, ids)
  rows = []
  for p, ql, d, i in zip(paths, q_labels, dist, ids):
    cells = [f'<td class="q"><img src="{_thumb_uri(p)}"><br>query<br>'
             f'{html.escape(os.path.basename(p))}</td>']
    for rank, (dd, ii) in enumerate(zip(d, i), 1):
      rel = _relevant(idx, ql, ii)
      cls = {None: 'u', True: 'y', False: 'n'}[rel]
      cells.append(
          f'<td class="{cls}"><img src="{_thumb_uri(idx.ids[ii])}"><br>'
          f'#{rank} d={dd}<br>{html.escape(_label_of(idx, ii))}</td>')
    rows.append('<tr>' + ''.join(cells) + '</tr>')
  src = html.escape(str(idx.source.get('workdir', '')))
  doc = f'''<!doctype html><meta charset="utf-8"><title>hashjax search</title>
<style>body{{font:13px sans-serif}} td{{text-align:center;padding:4px;
border:4px solid #ddd}} td.y{{border-color:#2a2}} td.n{{border-color:#d22}}
td.q{{border-color:#26d}}</style>
<h2>hashjax search: {len(paths)} quer{"y" if len(paths) == 1 else "ies"},
top {dist.shape[1]} of {len(idx):,} ({idx.bits} bits)</h2>
<p>index {html.escape(idx.path)} from {src}. Green: shares the query's
class; red: does not; grey: unknown.</p><table>{"".join(rows)}</table>'''
  pathlib.Path(path).write_text(doc)
  return path


def _report_png(path, idx, paths, q_labels, dist, ids):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  cols = dist.shape[1] + 1
  fig, axes = plt.subplots(len(paths), cols, figsize=(1.6 * cols,
                                                      2.0 * len(paths)),
                           squeeze=False)
  for r, (p, ql, d, i) in enumerate(zip(paths, q_labels, dist, ids)):
    items = [(p, 'query', '#2266dd')]
    for rank, (dd, ii) in enumerate(zip(d, i), 1):
      rel = _relevant(idx, ql, ii)
      color = {None: '#999999', True: '#22aa22', False: '#dd2222'}[rel]
      items.append((idx.ids[ii], f'#{rank} d={dd}\n{_label_of(idx, ii)}',
                    color))
    for ax, (img, title, color) in zip(axes[r], items):
      with Image.open(img) as im:
        ax.imshow(np.asarray(im.convert('RGB')))
      ax.set_title(title, fontsize=7)
      ax.set_xticks([])
      ax.set_yticks([])
      for side in ax.spines.values():
        side.set_edgecolor(color)
        side.set_linewidth(4)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def main(argv):
  if len(argv) > 1:
    sys.exit(f'hashjax.search: unexpected arguments {argv[1:]}.')
  logging.set_verbosity(logging.WARNING)
  try:
    if _OUT.value:
      if not _WORKDIR.value:
        sys.exit('hashjax.search: building an index needs --workdir=RUN.')
      idx = build(_WORKDIR.value, _OUT.value, _IMAGES.value, _APPEND.value,
                  _TFDS_DATA_DIR.value)
      print(f'index {_OUT.value}: {len(idx):,} codes of {idx.bits} bits '
            f'from {idx.source.get("workdir")}')
      return
    if not (_INDEX.value and _QUERY.value):
      sys.exit('hashjax.search: give --index=FILE --query=IMAGE|DIR|LIST to '
               'search, or --workdir=RUN --out=FILE to build an index.')
    idx, paths, q_labels, dist, ids = search(_INDEX.value, _QUERY.value,
                                             _K.value, _WORKDIR.value)
    print_results(idx, paths, q_labels, dist, ids)
    if _REPORT.value:
      write_report(_REPORT.value, idx, paths, q_labels, dist, ids)
      print(f'report: {_REPORT.value}')
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f'hashjax.search: error: {e}')


def _define_flags():
  """The command's flags, defined only when run as a program (so importing
  hashjax.search next to hashjax.convert defines no flag twice)."""
  global _INDEX, _QUERY, _K, _REPORT, _WORKDIR, _OUT, _IMAGES, _APPEND  # pylint: disable=global-statement
  global _TFDS_DATA_DIR  # pylint: disable=global-statement
  _INDEX = flags.DEFINE_string('index', None, 'Index file to search.')
  _QUERY = flags.DEFINE_string(
      'query', None, 'An image, a folder of images, or a .txt list of paths.')
  _K = flags.DEFINE_integer('k', 20, 'Results per query.')
  _REPORT = flags.DEFINE_string(
      'report', None, 'Write a visual report: .html (self-contained) or .png.')
  _WORKDIR = flags.DEFINE_string('workdir', None,
                                 'Trained run (build, or override the '
                                 "index's own run when querying).")
  _OUT = flags.DEFINE_string('out', None, 'Index file to write (build).')
  _IMAGES = flags.DEFINE_string(
      'images', None, 'Build: encode this <class>/<image> folder, or '
      "tfds:NAME[:SPLIT], instead of the run's database.")
  _TFDS_DATA_DIR = flags.DEFINE_string(
      'tfds_data_dir', '', 'TFDS data_dir for --images=tfds:NAME.')
  _APPEND = flags.DEFINE_bool('append', False,
                              'Build: add to the existing --out index.')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
