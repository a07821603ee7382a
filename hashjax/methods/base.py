"""The method contract: what a file in hashjax/methods/ may define.

The trainer (hashjax/train.py) looks these names up on the method module and
falls back to the defaults below, so a method defines only what it changes.

  DATABASE_CODES  'encoder': database codes = sign(network(database images));
                  'bank': the method learns them; `database_codes(state)`.
  make_model(config, num_classes) -> flax module returning an outputs dict
                  with at least 'u' (relaxed codes in (-1, 1)).
  init_state(config, meta) -> dict of arrays (code banks, ...); {} if none.
                  meta: {'train_labels': [n, C], 'num_train': n}.
  loss_fn(outputs, batch, state, **config.loss) -> (loss, metrics dict).
                  Pure: arrays in, scalars out. batch has image, label [b, C],
                  index [b] (database row, -1 = padding), mask [b].
  update_state(state, outputs, batch, **config.loss) -> state. Runs inside
                  the jitted step on stop-gradient outputs.
  start_round(state, in_round, **config.loss) -> state. Before each round;
                  in_round: [n] float mask of the rows sampled this round.
  end_round(state, **config.loss) -> state. After each round (e.g. DCC).
  database_codes(state) -> [n, bits] codes, for DATABASE_CODES == 'bank'.
  prepare(config, image_set, splits, workdir, mesh) -> dict merged into
                  meta before init_state (e.g. MrHash's cached stages);
                  meta['stages'], if set, goes into results.json.
  init_params(variables, meta) -> variables: after the pretrained encoder
                  is loaded (e.g. MrHash's autoencoder and centres).
  model_inputs(batch, state) -> dict of extra keyword inputs of the model
                  in the train step (e.g. MrHash's source features).
  start_round / end_round also receive params= (the model parameters).

A method with KIND = 'frozen_features' (LSH, PCA-ITQ) trains no network; it
defines instead (hashjax/frozen.py runs it):
  fit(features, bits=, seed=, **config.loss) -> (params, diagnostics):
                  learned from the training images' frozen features only.
  encode(params, features) -> [n, bits] real values; their sign is the code.
"""
from hashjax.models import encoders
from hashjax.models import heads

KIND = 'network'
DATABASE_CODES = 'encoder'


def make_model(config, num_classes):
  encoder, normalize = encoders.build(config.model, config.input.image_size)
  return heads.HashModel(encoder=encoder, normalize=normalize,
                         bits=config.bits, num_classes=num_classes)


def init_state(config, meta):
  del config, meta
  return {}


def loss_fn(outputs, batch, state, **loss_kw):
  raise NotImplementedError('A method must define loss_fn.')


def update_state(state, outputs, batch, **loss_kw):
  del outputs, batch, loss_kw
  return state


def start_round(state, in_round, **loss_kw):
  del in_round, loss_kw
  return state


def end_round(state, **loss_kw):
  del loss_kw
  return state


def database_codes(state):
  raise NotImplementedError('DATABASE_CODES = "bank" needs database_codes().')


def prepare(config, image_set, splits, workdir, mesh):
  del config, image_set, splits, workdir, mesh
  return {}


def init_params(variables, meta):
  del meta
  return variables


def model_inputs(batch, state):
  del batch, state
  return {}


def fit(features, **kw):
  raise NotImplementedError('KIND = "frozen_features" needs fit().')


def encode(params, features):
  raise NotImplementedError('KIND = "frozen_features" needs encode().')
