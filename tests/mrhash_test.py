"""MrHash end to end (smoke size) with two sources and with one."""
import json

import numpy as np
import pytest

from configs import mrhash as mrhash_config
from hashjax import train


@pytest.mark.parametrize('arg, sources', [('runlocal', 2),
                                          ('runlocal,single', 1)])
def test_mrhash_end_to_end(arg, sources, small_rsscn7, tmp_path):
  c = mrhash_config.get_config(arg + ',bits=16')
  c.data.update(name='folder', root=str(small_rsscn7))
  c.eval.topk = (10,)
  results = train.run(c, str(tmp_path))
  m = results['metrics']
  assert results['steps'] == 8 and m['R'] == 16
  assert 0.0 < m['map@R'] <= 1.0 and 0.0 < m['map@all'] <= 1.0
  assert len(list(tmp_path.glob('features*.npz'))) == sources
  history = json.loads((tmp_path / 'mrhash_ae_loss.json').read_text())
  assert len(history) == 3 and np.isfinite(history).all()
  # The cached stages are reused: a second run trains nothing new and
  # resumes at the end with the same metrics.
  again = train.run(c, str(tmp_path))
  assert again['metrics']['map@R'] == m['map@R']
