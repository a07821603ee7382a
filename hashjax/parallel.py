"""Device mesh and shardings: data parallel over a 'data' axis.

Arrays of the train state are replicated; batches are split along 'data'.
Losses see the *global* batch: under jit, `u @ bank.T` or batch-wide
mining compiles to the collectives it needs, on one CPU or a pod alike.
"""
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
