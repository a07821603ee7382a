"""Shared test setup: offline, quiet TF, paths to ../shared and bundled data."""
import os
import pathlib
import shutil

os.environ.setdefault('HASHJAX_OFFLINE', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

import pytest  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'
BUNDLED = REPO / 'hashjax' / 'data' / 'bundled' / 'rsscn7_64'


@pytest.fixture(scope='session')
def small_rsscn7(tmp_path_factory):
  """7 classes x 20 real images copied from the bundled RSSCN7 data."""
  root = tmp_path_factory.mktemp('rsscn7_small')
  for cls in sorted(p.name for p in BUNDLED.iterdir() if p.is_dir()):
    (root / cls).mkdir()
    for f in sorted((BUNDLED / cls).iterdir())[:20]:
      shutil.copy(f, root / cls / f.name)
  return root
