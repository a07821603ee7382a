"""Device mesh and shardings: data parallel over a 'data' axis.

Parameters are replicated; batches are split along 'data', and so are the
method-state arrays with one row per database item (`rows_sharded`: the
bank V, U, labels), so the DCC sweep and database encoding scale with the
device count. Losses see the *global* batch: under jit, `u @ bank.T` or
batch-wide mining compiles to the collectives it needs, on one CPU or a pod
alike. Multi-host: `initialize_distributed`.
"""
import os

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


def make_mesh():
  return Mesh(np.array(jax.devices()), ('data',))


def replicated(mesh):
  return NamedSharding(mesh, P())


def data_sharded(mesh):
  return NamedSharding(mesh, P('data'))


def rows_sharded(tree, n, mesh):
  """Shardings for a pytree: leaves with n rows (n divisible by the device
  count) split along 'data', the rest replicated. Returns a pytree of
  NamedSharding with `tree`'s structure."""
  devices = mesh.devices.size
  def one(x):
    if np.ndim(x) >= 1 and np.shape(x)[0] == n and n % devices == 0:
      return data_sharded(mesh)
    return replicated(mesh)
  return jax.tree.map(one, tree)


def check_batch_size(global_batch, mesh):
  n = mesh.devices.size
  if global_batch % n:
    raise ValueError(f'input.batch_size={global_batch} must be divisible by '
                     f'the {n} devices; use a multiple of {n}.')


def global_batch(host_batch, mesh):
  """Host-local numpy batch dict -> global jax arrays sharded on 'data'."""
  sharding = data_sharded(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      host_batch)


def to_host(x):
  """A (possibly sharded, multi-host) global array -> full numpy array."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def distributed_request(environ=None):
  """Whether (and how) this process should call jax.distributed.initialize.

  Returns None for a single process, else the keyword arguments:
    HASHJAX_DISTRIBUTED=0            never (one process, local devices).
    HASHJAX_COORDINATOR=host:port    explicit: with HASHJAX_NUM_PROCESSES and
                                     HASHJAX_PROCESS_ID (any cluster).
    HASHJAX_DISTRIBUTED=1            ask JAX to auto-detect (TPU pod, SLURM,
                                     Open MPI, Kubernetes).
    SLURM_NTASKS > 1 (inside srun)   auto-detected by JAX.
    TPU_WORKER_HOSTNAMES a,b,...     a multi-host TPU slice; auto-detected.
  """
  env = os.environ if environ is None else environ
  flag = env.get('HASHJAX_DISTRIBUTED', '')
  if flag == '0':
    return None
  if env.get('HASHJAX_COORDINATOR'):
    try:
      return dict(coordinator_address=env['HASHJAX_COORDINATOR'],
                  num_processes=int(env['HASHJAX_NUM_PROCESSES']),
                  process_id=int(env['HASHJAX_PROCESS_ID']))
    except (KeyError, ValueError) as e:
      raise ValueError(
          'HASHJAX_COORDINATOR is set: HASHJAX_NUM_PROCESSES and '
          'HASHJAX_PROCESS_ID must be integers too.') from e
  if flag == '1':
    return {}
  if int(env.get('SLURM_NTASKS', '1') or 1) > 1 and 'SLURM_STEP_ID' in env:
    return {}
  if len([h for h in env.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]) > 1:
    return {}
  return None


def initialize_distributed(environ=None):
  """jax.distributed.initialize() when the launch environment asks for it
  (distributed_request). Returns True if it did. Call before any other JAX
  use. On CPU the collectives go over gloo."""
  kwargs = distributed_request(environ)
  if kwargs is None:
    return False
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**kwargs)
  return True
