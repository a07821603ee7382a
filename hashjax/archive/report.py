"""Search results for people: a text table, a self-contained HTML page or
a PNG grid of thumbnails, each result marked relevant (shares the query's
class), not relevant, or unknown."""
import base64
import html
import io
import os
import pathlib
import sys

import numpy as np


def _label_of(idx, row):
  return ','.join(idx.label_names(row))


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


REPORT_SUFFIXES = ('.html', '.htm', '.png')


def check_report_path(path):
  """Raises ValueError unless `path` ends in .html, .htm or .png."""
  if not str(path).lower().endswith(REPORT_SUFFIXES):
    raise ValueError(f'--report={path}: a report is .html (self-contained '
                     'page) or .png (thumbnail grid); name the file so.')


def write_report(path, idx, paths, q_labels, dist, ids):
  """A self-contained .html (thumbnails inlined) or a .png grid."""
  check_report_path(path)
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
top {max(len(d) for d in dist)} of {len(idx):,} ({idx.bits} bits)</h2>
<p>index {html.escape(idx.path)} from {src}. Green: shares the query's
class; red: does not; grey: unknown.</p><table>{"".join(rows)}</table>'''
  pathlib.Path(path).write_text(doc)
  return path


def _report_png(path, idx, paths, q_labels, dist, ids):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  cols = max(len(d) for d in dist) + 1
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
