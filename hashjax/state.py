"""TrainState: everything a run needs to continue, checkpointed as one tree."""
from typing import Any

import flax


@flax.struct.dataclass
class TrainState:
  """step: SGD steps done. params / model_state: the network's variables
  (model_state holds the non-trainable collections, e.g. batch_stats).
  opt_state: optax state. method_state: the method's arrays (AHCL's V, U).
  rng: the JAX key; per-step keys are fold_in(rng, step)."""
  step: Any
  params: Any
  model_state: Any
  opt_state: Any
  method_state: Any
  rng: Any
