"""Tests for hashjax.models.resnet and hashjax.models.pretrained (Keras
ResNet-50 weights, the cache, grafting).

The parity tests need the shared Keras ResNet-50 weights beside the checkout
(``<repo>/../shared/weights``) and are skipped without them. No test touches
the network: every test runs with ``HASHJAX_OFFLINE=1`` and an empty cache.
"""

import functools
import json
import pathlib

import flax.linen as nn
from flax import traverse_util
import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from hashjax.models import resnet
from hashjax.models.pretrained import cache
from hashjax.models.pretrained import graft
from hashjax.models.pretrained import keras_resnet

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'weights'
SAFETENSORS = WEIGHTS_DIR / 'resnet50_keras_imagenet.safetensors'
REFERENCE = WEIGHTS_DIR / 'resnet50_keras_imagenet_reference_outputs.npz'
CLASS_NAMES = WEIGHTS_DIR / 'imagenet_class_names.json'

requires_weights = pytest.mark.skipif(
    not (SAFETENSORS.is_file() and REFERENCE.is_file()),
    reason=f'shared Keras ResNet-50 weights not found in {WEIGHTS_DIR}')


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
  """No downloads, and an empty weight cache, in every test."""
  monkeypatch.setenv('HASHJAX_OFFLINE', '1')
  monkeypatch.setenv('HASHJAX_WEIGHTS_DIR', str(tmp_path / 'cache'))


@pytest.fixture(scope='module')
def keras_tensors():
  return load_file(SAFETENSORS)


@pytest.fixture(scope='module')
def keras_variables():
  return keras_resnet.load_keras_resnet50(SAFETENSORS, num_classes=1000)


@pytest.fixture(scope='module')
def reference():
  return dict(np.load(REFERENCE))


@pytest.fixture(scope='module')
def apply_keras():
  """Jitted inference of ResNet50(keras, 1000 classes), compiled per shape."""
  model = resnet.ResNet50(layout='keras', num_classes=1000)
  return jax.jit(functools.partial(model.apply, train=False))


def _write_keras_h5(tensors, path, rename=lambda layer: layer):
  """Writes tensors as Keras 2 ``save_weights`` does (one group per layer)."""
  layers = {}
  for name, value in tensors.items():
    layer, weight = name.split('/')
    layers.setdefault(rename(layer), []).append((weight, value))
  with h5py.File(path, 'w') as f:
    f.attrs['layer_names'] = np.array([n.encode() for n in layers])
    f.attrs['backend'] = b'tensorflow'
    f.attrs['keras_version'] = b'2.2.4'
    for layer, values in layers.items():
      group = f.create_group(layer)
      names = [f'{layer}/{weight}:0' for weight, _ in values]
      group.attrs['weight_names'] = np.array([n.encode() for n in names])
      for name, (_, value) in zip(names, values):
        group.create_dataset(name, data=value)


def _assert_trees_equal(a, b):
  flat_a = traverse_util.flatten_dict(a, sep='/')
  flat_b = traverse_util.flatten_dict(b, sep='/')
  assert flat_a.keys() == flat_b.keys()
  for name in flat_a:
    np.testing.assert_array_equal(flat_a[name], flat_b[name], err_msg=name)


@requires_weights
@pytest.mark.slow
@pytest.mark.parametrize('size',
                         [64, pytest.param(224, marks=pytest.mark.slow)])
def test_keras_parity(size, keras_variables, reference, apply_keras):
  images = resnet.normalize(reference[f'input_uint8_{size}'], 'keras')
  out = apply_keras(keras_variables, images)
  feature_diff = np.abs(out['features'] - reference[f'features_{size}']).max()
  logit_diff = np.abs(out['logits'] - reference[f'logits_{size}']).max()
  print(f'{size}px: max |features diff| {feature_diff:.2e}, '
        f'max |logits diff| {logit_diff:.2e}')
  np.testing.assert_allclose(out['features'], reference[f'features_{size}'],
                             rtol=1e-4, atol=1e-4)
  assert logit_diff <= 1e-3
  if size == 224 and CLASS_NAMES.is_file():
    names = json.loads(CLASS_NAMES.read_text())
    top1 = [names[i] for i in np.argmax(out['logits'], axis=-1)]
    assert top1 == ['aircraft_carrier', 'volcano']


@requires_weights
def test_keras_h5_matches_safetensors(keras_tensors, keras_variables,
                                      reference, apply_keras, tmp_path):
  path = tmp_path / 'resnet50_weights_tf_dim_ordering_tf_kernels.h5'
  _write_keras_h5(keras_tensors, path)
  from_h5 = keras_resnet.load_keras_resnet50(path, num_classes=1000)
  _assert_trees_equal(from_h5, keras_variables)
  images = resnet.normalize(reference['input_uint8_64'], 'keras')
  np.testing.assert_array_equal(
      apply_keras(from_h5, images)['logits'],
      apply_keras(keras_variables, images)['logits'])


def _tf_keras_name(layer):
  """Caffe layer name -> tf.keras resnet.py name (inverse of the loader)."""
  fixed = {'conv1': 'conv1_conv', 'bn_conv1': 'conv1_bn',
           'fc1000': 'predictions'}
  if layer in fixed:
    return fixed[layer]
  kind = 'conv' if layer.startswith('res') else 'bn'
  body = layer[len('res') if kind == 'conv' else len('bn'):]
  stage, letter, branch = body[0], body[1], body.split('_')[1]
  index = {'branch1': 0, 'branch2a': 1, 'branch2b': 2, 'branch2c': 3}[branch]
  return f'conv{stage}_block{ord(letter) - ord("a") + 1}_{index}_{kind}'


@requires_weights
@pytest.mark.slow
def test_tf_keras_names_and_epsilon(keras_tensors, keras_variables, tmp_path):
  # tf.keras' ResNet50 uses BN epsilon 1.001e-5: the loader must fold the
  # difference into the variance so var + 1e-3 equals the file's var + 1.001e-5.
  # Simulate such a file by the inverse shift.
  tensors = {
      name: value + np.float32(1e-3 - 1.001e-5)
      if name.endswith('moving_variance') else value
      for name, value in keras_tensors.items()
  }
  path = tmp_path / 'tf_keras.h5'
  _write_keras_h5(tensors, path, rename=_tf_keras_name)
  loaded = keras_resnet.load_keras_resnet50(path, num_classes=1000)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-6),
               loaded, keras_variables)


@requires_weights
def test_no_classes_drops_classifier(keras_variables):
  backbone = keras_resnet.load_keras_resnet50(SAFETENSORS)
  assert 'fc' in keras_variables['params']
  assert 'fc' not in backbone['params']
  assert set(backbone) == {'params', 'batch_stats'}


@requires_weights
def test_truncated_file_is_reported(tmp_path):
  path = tmp_path / 'truncated.safetensors'
  with open(SAFETENSORS, 'rb') as f:
    path.write_bytes(f.read(1 << 20))
  with pytest.raises(ValueError, match='truncated.safetensors') as error:
    keras_resnet.load_keras_resnet50(path)
  assert 'download it again' in str(error.value)


@requires_weights
def test_wrong_shape_is_reported(keras_tensors, tmp_path):
  tensors = dict(keras_tensors, **{'conv1/kernel': np.zeros((7, 7, 3, 32),
                                                            np.float32)})
  path = tmp_path / 'wrong_shape.safetensors'
  save_file(tensors, path)
  with pytest.raises(ValueError, match=r'conv1/kernel.*\(7, 7, 3, 64\).*'
                     r'\(7, 7, 3, 32\)') as error:
    keras_resnet.load_keras_resnet50(path)
  assert 'wrong_shape.safetensors' in str(error.value)


@requires_weights
def test_missing_tensor_is_reported(keras_tensors, tmp_path):
  tensors = dict(keras_tensors)
  del tensors['res3b_branch2b/kernel']
  path = tmp_path / 'missing.safetensors'
  save_file(tensors, path)
  with pytest.raises(ValueError, match='missing.*res3b_branch2b/kernel'):
    keras_resnet.load_keras_resnet50(path)


def test_missing_file_offline_explains_where_to_put_it(tmp_path):
  with pytest.raises(FileNotFoundError) as error:
    keras_resnet.load_keras_resnet50('resnet50_keras_imagenet')
  message = str(error.value)
  assert str(tmp_path / 'cache' / 'resnet50_keras_imagenet.safetensors') in (
      message)
  assert cache.KNOWN_WEIGHTS['resnet50_keras_imagenet'].url in message
  assert 'HASHJAX_WEIGHTS_DIR' in message


def test_missing_path_is_reported(tmp_path):
  with pytest.raises(FileNotFoundError, match='nowhere.safetensors'):
    cache.resolve(tmp_path / 'nowhere.safetensors')


@requires_weights
def test_resolve_finds_known_name_in_cache(tmp_path):
  folder = cache.cache_dir()
  assert folder == tmp_path / 'cache'
  folder.mkdir()
  (folder / SAFETENSORS.name).symlink_to(SAFETENSORS)
  assert cache.resolve('resnet50_keras_imagenet',
                       allow_download=False) == folder / SAFETENSORS.name


def test_normalize_matches_layout_definitions():
  rgb = np.array([[[255, 0, 10]]], np.uint8)
  np.testing.assert_allclose(
      resnet.normalize(rgb, 'keras')[0, 0],
      [10 - 103.939, 0 - 116.779, 255 - 123.68], rtol=1e-6)
  expected = (np.array([255, 0, 10]) / 255 - [0.485, 0.456, 0.406]) / [
      0.229, 0.224, 0.225]
  np.testing.assert_allclose(
      resnet.normalize(jnp.asarray(rgb), 'torchvision')[0, 0], expected,
      rtol=1e-5)
  with pytest.raises(ValueError, match='layout'):
    resnet.normalize(rgb, 'caffe2')


@pytest.mark.slow
@pytest.mark.parametrize('layout', ['keras', 'torchvision'])
@pytest.mark.parametrize('block', ['basic', 'bottleneck'])
def test_tiny_model_trains_forward(layout, block):
  model = resnet.ResNetTiny(layout=layout, block=block, num_classes=3)
  images = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = model.init(jax.random.key(1), images, train=False)
  out, updates = model.apply(variables, images, train=True,
                             mutable=['batch_stats'])
  assert out['features'].shape == (2, model.num_features)
  assert out['logits'].shape == (2, 3)
  assert np.all(np.isfinite(out['logits']))
  old = variables['batch_stats']['bn_conv1']['mean']
  assert not np.allclose(updates['batch_stats']['bn_conv1']['mean'], old)
  has_bias = 'bias' in variables['params']['conv1']
  assert has_bias == (layout == 'keras')


class _HashModel(nn.Module):
  """Backbone under 'encoder' plus a head, as the hash models are built."""
  width: int = 8

  @nn.compact
  def __call__(self, x, train):
    features = resnet.ResNetTiny(width=self.width, name='encoder')(
        x, train)['features']
    return nn.Dense(4, name='hash')(features)


@pytest.mark.slow
def test_load_into_replaces_only_the_backbone():
  images = jnp.zeros((1, 32, 32, 3))
  variables = _HashModel().init(jax.random.key(0), images, train=False)
  backbone = resnet.ResNetTiny().init(jax.random.key(1), images, train=False)
  merged = graft.load_into(variables, 'encoder', backbone, 'tiny.h5')
  _assert_trees_equal(merged['params']['encoder'], backbone['params'])
  _assert_trees_equal(merged['batch_stats']['encoder'],
                      backbone['batch_stats'])
  _assert_trees_equal(merged['params']['hash'], variables['params']['hash'])
  narrow = resnet.ResNetTiny(width=4).init(jax.random.key(1), images,
                                           train=False)
  with pytest.raises(ValueError, match='tiny.h5.*shape mismatch'):
    graft.load_into(variables, 'encoder', narrow, 'tiny.h5')
