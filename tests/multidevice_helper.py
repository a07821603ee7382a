"""Runs a few training steps of one method and saves what a device-count
comparison needs (tests/multidevice_test.py runs it in subprocesses, since
the device count is fixed when JAX starts).

  python -m tests.multidevice_helper METHOD DATA_ROOT WORKDIR OUT.npz
"""
import importlib
import sys

import jax
import numpy as np

from hashjax import parallel


def main(method, data_root, workdir, out):
  parallel.initialize_distributed()
  config = importlib.import_module(f'configs.{method}').get_config(
      'runlocal,bits=16')
  config.data.update(name='folder', root=data_root)
  # 2 rounds x 2 steps of a 16-image global batch: round hooks (DCC, the
  # MrHash P refresh) run between them.
  config.train.update(rounds=2, samples_per_round=32, log_every=1)
  config.eval.topk = (10,)
  trace = {}
  from hashjax import fit, methods, train  # pylint: disable=g-import-not-at-top
  if methods.get(config.method).kind == 'frozen_features':
    results = fit.run(config, workdir)
  else:
    results = train.run(config, workdir, trace)
  arrays = {'map_all': np.float64(results['metrics']['map@all'])}
  if 'state' in trace:
    arrays['losses'] = np.asarray(trace['losses'])
    arrays['compiles'] = np.int64(trace['train_step']._cache_size())  # pylint: disable=protected-access
    arrays['rows_sharded'] = np.int64(sum(
        getattr(x.sharding, 'spec', ()) == jax.sharding.PartitionSpec('data')
        for x in jax.tree.leaves(trace['state'].method_state)))
    leaves = jax.tree_util.tree_leaves_with_path(
        {'params': trace['state'].params,
         'method_state': trace['state'].method_state})
    for path, leaf in leaves:
      arrays['leaf' + jax.tree_util.keystr(path)] = parallel.to_host(leaf)
  np.savez(out.replace('.npz', f'_p{jax.process_index()}.npz')
           if jax.process_index() else out, **arrays)


if __name__ == '__main__':
  main(*sys.argv[1:])
