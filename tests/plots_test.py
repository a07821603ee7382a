"""Tests for hashjax.evaluation.plots' PR-by-count figure."""

import numpy as np
import pytest

from hashjax.evaluation import plots
from hashjax.evaluation import ranking


def test_save_pr_count_curve_writes_png(tmp_path):
  rng = np.random.default_rng(0)
  q = rng.choice([-1, 1], size=(5, 8))
  db = rng.choice([-1, 1], size=(60, 8))
  eye = np.eye(3)
  metrics = ranking.retrieval_metrics(q, db, eye[rng.integers(3, size=5)],
                                      eye[rng.integers(3, size=60)])
  for name, arg in [('one.png', metrics), ('pr.png', metrics['pr_count']),
                    ('many.png', {8: metrics, '8 again': metrics})]:
    path = plots.save_pr_count_curve(arg, tmp_path / 'sub' / name, title='t')
    with open(path, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  with pytest.raises(ValueError, match='PR-by-count'):
    plots.save_pr_count_curve({'a': 1}, tmp_path / 'bad.png')
