"""Plots of retrieval metrics, written as PNG files.

Figures are built with `matplotlib.figure.Figure` and rendered by the Agg
canvas directly rather than through `pyplot`: that needs no display, does
not switch the process-wide backend under anyone else's feet, and keeps no
global figure registry that could leak memory across training runs.
"""

from collections.abc import Mapping
import os
from typing import Any

from matplotlib.backends import backend_agg
from matplotlib import figure as mpl_figure
import numpy as np

# At most this many radii are labelled per PR curve, at least
# _MIN_LABEL_GAP apart (in axis units), so labels do not pile up where
# consecutive radii give nearly the same point (e.g. around recall 1).
_NUM_ANNOTATED_RADII = 6
_MIN_LABEL_GAP = 0.12


def _curves(metrics: Mapping[str, Any], key: str = 'pr_radius',
            axis: str = 'radius',
            what: str = 'PR curve') -> dict[str, Mapping[str, Any]]:
  """Normalises the accepted inputs to {legend label: curve dict}: the
  `key` entry ('pr_radius' or 'pr_count') of retrieval_metrics' dict, that
  entry alone (it has an `axis` list), or a mapping of such dicts."""
  if key in metrics:
    return {f"{metrics.get('bits', '?')} bits": metrics[key]}
  if axis in metrics:
    return {'': metrics}
  # Several results, e.g. {64: retrieval_metrics(...), 128: ...}.
  curves = {}
  for label, value in metrics.items():
    if not isinstance(value, Mapping) or not (key in value or axis in value):
      raise ValueError(
          f'Cannot find a {what} under key {label!r}: expected the dict '
          'from retrieval_metrics (or a mapping of them).')
    curves[str(label)] = value.get(key, value)
  if not curves:
    raise ValueError(f'No {what} to plot: the metrics dict is empty.')
  return curves


def _defined(xs: list[Any], ys: list[Any]) -> tuple[list[Any], list[Any]]:
  # Precision is None at radii where no query retrieves anything.
  pairs = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
  return [p[0] for p in pairs], [p[1] for p in pairs]


def _annotated(xs: list[float], ys: list[float]) -> list[int]:
  """Indices of the points to label: greedy, spread along the curve."""
  chosen = []
  for i, (x, y) in enumerate(zip(xs, ys)):
    if all(np.hypot(x - xs[j], y - ys[j]) >= _MIN_LABEL_GAP for j in chosen):
      chosen.append(i)
  if len(chosen) > _NUM_ANNOTATED_RADII:
    step = (len(chosen) - 1) / (_NUM_ANNOTATED_RADII - 1)
    chosen = [chosen[round(i * step)] for i in range(_NUM_ANNOTATED_RADII)]
  return chosen


def _two_panels():
  """A figure of two panels side by side: precision against recall, and
  the curves' values against their parameter."""
  fig = mpl_figure.Figure(figsize=(11, 4.5), layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  return fig, fig.subplots(1, 2)


def _save(fig, curves, suptitle, path, ax_pr, pr_title, ax_x, **x_axis):
  """Labels the two panels of `_two_panels` (the right one's axis
  settings `x_axis`), adds `suptitle` and writes the PNG at `path`, making
  its parent directories. Returns the path as a string."""
  ax_pr.set(xlabel='recall', ylabel='precision', xlim=(-0.02, 1.02),
            ylim=(-0.02, 1.02), title=pr_title)
  ax_pr.grid(alpha=0.3)
  if any(curves):
    ax_pr.legend(loc='lower left')
  ax_x.set(ylabel='value', ylim=(-0.02, 1.02), **x_axis)
  ax_x.grid(alpha=0.3)
  ax_x.legend(loc='best')
  if suptitle:
    fig.suptitle(suptitle)
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  fig.savefig(path, format='png', dpi=120)
  return path


def save_pr_curve(metrics: Mapping[str, Any],
                  path: str | os.PathLike[str],
                  title: str | None = None) -> str:
  """Saves the precision-recall curve by Hamming radius as a PNG.

  The left panel plots precision against recall, one point per Hamming
  radius, with a few radii annotated; the right panel plots precision and
  recall against the radius.

  Args:
    metrics: the dict returned by `ranking.retrieval_metrics`, its
      ``'pr_radius'`` entry alone, or a mapping from a curve label (e.g.
      the code length) to such dicts to overlay several curves.
    path: output file; parent directories are created.
    title: optional figure title.

  Returns:
    The path written, as a string.
  """
  curves = _curves(metrics)
  fig, (ax_pr, ax_r) = _two_panels()
  for index, (label, pr) in enumerate(curves.items()):
    color = f'C{index}'
    radius = list(pr['radius'])
    recall, precision = _defined(pr['recall'], pr['precision'])
    ax_pr.plot(recall, precision, '.-', color=color, label=label or None)
    radii = [r for r, p, q in zip(radius, pr['precision'], pr['recall'])
             if p is not None and q is not None]
    for i in _annotated(recall, precision):
      # Offset each label towards the middle of the axes so labels near
      # the corners (where curves start and end) stay inside the frame.
      right = recall[i] < 0.5
      ax_pr.annotate(
          f'r={radii[i]}', (recall[i], precision[i]),
          textcoords='offset points',
          xytext=(5 if right else -5, -11 if precision[i] > 0.5 else 5),
          ha='left' if right else 'right', fontsize=8, color=color)

    suffix = f' ({label})' if label and len(curves) > 1 else ''
    r_p, p = _defined(radius, pr['precision'])
    r_r, r = _defined(radius, pr['recall'])
    ax_r.plot(r_p, p, '.-', color=color, label=f'precision{suffix}')
    ax_r.plot(r_r, r, '.--', color=color, label=f'recall{suffix}')

  return _save(fig, curves, title, path, ax_pr, 'PR curve by Hamming radius',
               ax_r, xlabel='Hamming radius',
               title='Precision and recall vs. radius')


def save_pr_count_curve(metrics: Mapping[str, Any],
                        path: str | os.PathLike[str],
                        title: str | None = None) -> str:
  """Saves the precision-recall curve by retrieved count as a PNG.

  The left panel plots precision against recall, one point per number of
  retrieved items ``n`` (the ``'pr_count'`` grid of
  `ranking.retrieval_metrics`); the right panel plots precision@n and
  recall@n against ``n`` on a logarithmic axis.

  Args:
    metrics: the dict returned by `ranking.retrieval_metrics`, its
      ``'pr_count'`` entry alone, or a mapping from a curve label (e.g.
      the code length) to such dicts to overlay several curves.
    path: output file; parent directories are created.
    title: optional figure title.

  Returns:
    The path written, as a string.
  """
  curves = _curves(metrics, 'pr_count', 'n', 'PR-by-count curve')
  fig, (ax_pr, ax_n) = _two_panels()
  for index, (label, pr) in enumerate(curves.items()):
    color = f'C{index}'
    recall, precision = _defined(pr['recall'], pr['precision'])
    ax_pr.plot(recall, precision, '.-', color=color, label=label or None)
    suffix = f' ({label})' if label and len(curves) > 1 else ''
    n_p, p = _defined(pr['n'], pr['precision'])
    n_r, r = _defined(pr['n'], pr['recall'])
    ax_n.plot(n_p, p, '.-', color=color, label=f'precision@n{suffix}')
    ax_n.plot(n_r, r, '.--', color=color, label=f'recall@n{suffix}')
  return _save(fig, curves, title, path, ax_pr, 'PR curve by number retrieved',
               ax_n, xlabel='items retrieved n', xscale='log',
               title='Precision@n and recall@n')
