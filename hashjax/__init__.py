"""hashjax: deep hashing for remote-sensing image retrieval (JAX/Flax)."""
__version__ = "0.1.0"


def __getattr__(name):
  # `hashjax.Retriever` without importing JAX when `hashjax` is imported.
  if name == 'Retriever':
    from hashjax.retriever import Retriever  # pylint: disable=g-import-not-at-top
    return Retriever
  raise AttributeError(f'module hashjax has no attribute {name!r}')
