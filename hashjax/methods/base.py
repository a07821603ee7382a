"""The method contract: two small protocols, and the defaults of the
optional hooks.

A method is one module in hashjax/methods/ (plus one config). It is one of:

* a NetworkMethod: trains a network with the shared trainer
  (hashjax/train.py). It must define `loss_fn`; the other hooks are
  optional (defaults below; `make_model` defaults to encoder -> tanh hash
  head + classifier).
* a FrozenFeatureMethod: learns a projection of frozen encoder features
  (LSH, ITQ; hashjax/fit.py runs it). It defines `fit` and `encode`.

Every hook receives the method's hyper-parameters as `hp`: the config's
`loss` block, frozen (a mistyped name raises AttributeError; each default
lives once, in the config). Set-up hooks receive `config` (the whole
config) and a RunContext.
"""
import dataclasses
from typing import Any, Mapping, Optional, Protocol, runtime_checkable

import numpy as np

from hashjax.models import encoders
from hashjax.models import heads

Array = Any
Hyper = Any      # ml_collections.FrozenConfigDict of config.loss.
State = Mapping[str, Array]


@dataclasses.dataclass(frozen=True)
class TrainingData:
  """The images of a run being trained (absent when a finished run is
  loaded for search)."""
  image_set: Any               # hashjax.data.image_set.ImageSet
  splits: Mapping[str, np.ndarray]  # 'train', 'query', 'database' ids


@dataclasses.dataclass(frozen=True)
class Prepared:
  """What `prepare` computed before training (e.g. MrHash's stages).

  Attributes:
    params: subtrees put into the model's initial params, by top-level
      name (e.g. {'ae': ..., 'centres': ...}), after the pretrained encoder.
    arrays: arrays `init_state` may read (e.g. the source features).
    stages: {stage: {'seconds': s, 'cached': bool}}, for results.json.
  """
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  arrays: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  stages: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunContext:
  """What a method may know about its run.

  Attributes:
    num_classes: C, the classes of the training data.
    num_train: n, training images (= rows of a learned code bank).
    train_labels: [n, C] multi-hot labels of the training images; None
      when a finished run is loaded.
    workdir: the run's folder (stage caches).
    mesh: the device mesh.
    data: the training images; None when a finished run is loaded.
    prepared: what `prepare` returned.
  """
  num_classes: int
  num_train: int
  train_labels: Optional[np.ndarray] = None
  workdir: str = ''
  mesh: Any = None
  data: Optional[TrainingData] = None
  prepared: Prepared = Prepared()


@runtime_checkable
class NetworkMethod(Protocol):
  """A method trained by hashjax/train.py (AHCL, DGSSH, MrHash)."""

  # 'encoder': database codes = sign(network(database images));
  # 'bank': the method learns them (`database_codes`).
  DATABASE_CODES: str

  def make_model(self, config, ctx: RunContext) -> Any:
    """A flax module: model.apply(variables, images, train=) -> outputs dict
    with at least 'u' [B, bits] (relaxed codes in (-1, 1))."""

  def loss_fn(self, outputs, batch, state: State, hp: Hyper):
    """-> (loss, metrics dict). Pure: arrays in, scalars out. batch has
    image, label [B, C], index [B] (training row, -1 = padding), mask [B]."""

  def prepare(self, config, ctx: RunContext) -> Prepared:
    """Stages before training, cached in ctx.workdir (optional)."""

  def init_state(self, config, ctx: RunContext) -> State:
    """The method's arrays (code banks, targets); {} if none."""

  def model_inputs(self, batch, state: State) -> Mapping[str, Array]:
    """Extra keyword inputs of the model in the train step."""

  def update_state(self, state: State, outputs, batch, hp: Hyper) -> State:
    """In the jitted step, on stop-gradient outputs (e.g. write U rows)."""

  def start_round(self, state: State, in_round, params, hp: Hyper) -> State:
    """Before each round; in_round: [n] mask of the rows sampled."""

  def end_round(self, state: State, params, hp: Hyper) -> State:
    """After each round (e.g. the DCC update of V)."""

  def database_codes(self, state: State) -> Array:
    """[n, bits] learned database codes (DATABASE_CODES == 'bank')."""


@runtime_checkable
class FrozenFeatureMethod(Protocol):
  """A method fitted on frozen encoder features by hashjax/fit.py."""

  def fit(self, features, *, bits: int, seed: int, hp: Hyper):
    """features [n, D] of the training images -> (params, diagnostics).
    No label is read."""

  def encode(self, params, features):
    """[n, D] -> [n, bits] real values; their sign is the code."""


# Defaults of the optional NetworkMethod hooks.
# pylint: disable=unused-argument

DATABASE_CODES = 'encoder'


def prepare(config, ctx):
  del config, ctx
  return Prepared()


def init_state(config, ctx):
  del config, ctx
  return {}


def model_inputs(batch, state):
  del batch, state
  return {}


def update_state(state, outputs, batch, hp):
  del outputs, batch, hp
  return state


def start_round(state, in_round, params, hp):
  del in_round, params, hp
  return state


def end_round(state, params, hp):
  del params, hp
  return state


def database_codes(state):
  raise NotImplementedError(
      "DATABASE_CODES = 'bank' needs database_codes(state).")


def make_model(config, ctx):
  """The usual network: encoder -> tanh hash head (+ a classifier on u)."""
  encoder, normalize = encoders.build(config.model, config.input.image_size)
  return heads.HashModel(encoder=encoder, normalize=normalize,
                         bits=config.bits, num_classes=ctx.num_classes)
