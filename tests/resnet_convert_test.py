"""torchvision/timm ResNet import, the convert command and model.init_from.

Parity tests build torchvision/timm models with random weights (no
download) and skip with a reason when torch/torchvision/timm are missing.
"""
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from hashjax import convert
from hashjax.models import encoders
from hashjax.models.pretrained import load as pretrained
from hashjax.models import heads
from hashjax.models import resnet
from hashjax.models.pretrained import torch_resnet
from tests import conftest
from tests import torch_util


@pytest.mark.parametrize('key, want', [
    ('conv1.weight', ('params', 'conv1', 'kernel')),
    ('bn1.running_var', ('batch_stats', 'bn_conv1', 'var')),
    ('layer1.0.conv1.weight', ('params', 'res2a_branch2a', 'kernel')),
    ('layer3.5.bn3.weight', ('params', 'bn4f_branch2c', 'scale')),
    ('layer4.0.downsample.0.weight', ('params', 'res5a_branch1', 'kernel')),
    ('layer2.0.downsample.1.running_mean',
     ('batch_stats', 'bn3a_branch1', 'mean')),
    ('fc.bias', ('params', 'fc', 'bias')),
    ('layer1.0.bn1.num_batches_tracked', None),
])
def test_key_mapping(key, want):
  assert torch_resnet.torch_to_flax(key) == want


def test_unknown_variant_key_is_refused():
  # resnet50d's deep stem.
  with pytest.raises(ValueError, match=r'conv1\.0\.weight.*not supported'):
    torch_resnet.torch_to_flax('conv1.0.weight')


def _randomize(torch, ref):
  """Random BN statistics and affines: default ones hide layout mistakes.

  The last BN of each residual branch gets a small scale, as in trained
  ResNets (and torchvision's zero_init_residual): with unit scales the
  random net's features grow to ~300, where float32 rounding alone (torch
  fp32 vs fp64: 2.2e-4) exceeds the 1e-4 parity bound.
  """
  torch.manual_seed(1)
  last = {'Bottleneck': 'bn3', 'BasicBlock': 'bn2'}
  with torch.no_grad():
    for name, module in ref.named_modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.normal_(0, 0.1)
        module.running_var.uniform_(0.5, 1.5)
        module.weight.normal_(1, 0.1)
        module.bias.normal_(0, 0.1)
    for module in ref.modules():
      attr = last.get(type(module).__name__)
      if attr:
        getattr(module, attr).weight.uniform_(0.1, 0.3)
  return ref.eval()


def _parity(torch, ref, model, size, batch):
  variables = torch_resnet.from_torch(ref.state_dict(), model, 'ref')
  x = np.random.RandomState(0).randn(batch, 3, size, size).astype(np.float32)
  with torch.no_grad():
    t = torch.from_numpy(x)
    trunk = torch.nn.Sequential(*list(ref.children())[:-1])
    ref_features = trunk(t).flatten(1).numpy()
    ref_logits = ref(t).numpy()
  out = model.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)),
                    train=False)
  feat_diff = np.abs(np.asarray(out['features']) - ref_features).max()
  logit_diff = np.abs(np.asarray(out['logits']) - ref_logits).max()
  print(f'{type(ref).__module__} parity at {size}px: features '
        f'{feat_diff:.2e} (max |f| {np.abs(ref_features).max():.1f}), '
        f'logits {logit_diff:.2e}')
  assert feat_diff <= 1e-4
  assert logit_diff <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize('size, batch', [(64, 2), (224, 1)])
def test_torchvision_resnet50_parity(size, batch):
  torch, torchvision = torch_util.import_torchvision()
  torch.manual_seed(0)
  ref = _randomize(torch, torchvision.models.resnet50(weights=None))
  model = resnet.ResNet50(layout='torchvision', num_classes=1000)
  _parity(torch, ref, model, size, batch)


@pytest.mark.slow
def test_timm_resnet18_parity():
  torch, timm = torch_util.import_timm()
  torch.manual_seed(0)
  ref = _randomize(torch, timm.create_model('resnet18', pretrained=False))
  model = resnet.ResNet18(layout='torchvision', num_classes=1000)
  _parity(torch, ref, model, 64, 2)


def _fake_resnet18_state_dict(with_fc=True):
  """A torchvision-named ResNet-18 state dict from our own random init."""
  model = resnet.ResNet18(layout='torchvision', num_classes=10)
  variables = model.init(jax.random.key(3), jnp.zeros((1, 32, 32, 3)),
                         train=False)
  inverse = {}
  for key in _torchvision_resnet18_keys():
    target = torch_resnet.torch_to_flax(key)
    if target is not None:
      inverse[target] = key
  sd = {}
  for (collection, module, var), key in inverse.items():
    if module == 'fc' and not with_fc:
      continue
    v = np.asarray(variables[collection][module][var])
    if var == 'kernel':
      v = v.transpose(3, 2, 0, 1) if v.ndim == 4 else v.T
    sd[key] = np.ascontiguousarray(v)
  sd['bn1.num_batches_tracked'] = np.zeros((), np.int64)
  return sd, variables


def _torchvision_resnet18_keys():
  keys = ['conv1.weight', 'fc.weight', 'fc.bias']
  bn = ('weight', 'bias', 'running_mean', 'running_var')
  keys += [f'bn1.{b}' for b in bn]
  for layer in range(1, 5):
    for block in range(2):
      p = f'layer{layer}.{block}'
      for k in (1, 2):
        keys += [f'{p}.conv{k}.weight'] + [f'{p}.bn{k}.{b}' for b in bn]
      if layer > 1 and block == 0:
        keys += [f'{p}.downsample.0.weight']
        keys += [f'{p}.downsample.1.{b}' for b in bn]
  return keys


@pytest.mark.slow
def test_from_torch_roundtrip_and_errors():
  sd, variables = _fake_resnet18_state_dict()
  model = resnet.ResNet18(layout='torchvision', num_classes=10)
  got = torch_resnet.from_torch({'state_dict': sd}, model)
  jax.tree.map(np.testing.assert_array_equal, got, variables)
  # Backbone only: the classifier is dropped.
  backbone = torch_resnet.from_torch(sd, resnet.ResNet18(layout='torchvision'))
  assert 'fc' not in backbone['params']
  with pytest.raises(ValueError, match="layout='torchvision'"):
    torch_resnet.from_torch(sd, resnet.ResNet18(layout='keras'))
  broken = dict(sd)
  del broken['layer3.1.conv2.weight']
  with pytest.raises(ValueError, match='res4b_branch2b'):
    torch_resnet.from_torch(broken, model)
  with pytest.raises(ValueError, match='shape mismatch for params/fc/'):
    torch_resnet.from_torch(sd, resnet.ResNet18(layout='torchvision',
                                                  num_classes=5))
  with pytest.raises(ValueError, match='variables missing'):
    torch_resnet.from_torch(sd, resnet.ResNet50(layout='torchvision',
                                                  num_classes=10))


def _model_config(encoder, **kw):
  return ml_collections.ConfigDict({
      **dict(encoder=encoder, pretrained='', init_from='', bn_momentum=0.9,
             drop_path_rate=0.0), **kw})


def _hash_variables(encoder_name, size=32):
  encoder, normalize = encoders.build(_model_config(encoder_name), size)
  model = heads.HashModel(encoder, normalize, bits=16, num_classes=3)
  return encoder, model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                             train=False)


@pytest.mark.parametrize('out_name', ['enc.safetensors', 'enc_orbax'])
def test_convert_then_init_from(tmp_path, out_name):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  sd, _ = _fake_resnet18_state_dict(with_fc=False)
  source = tmp_path / 'resnet18.safetensors'
  save_file(sd, str(source))
  out, count = convert.convert('resnet18_tv', str(source),
                               str(tmp_path / out_name), image_size=32)
  assert count == 11_176_512  # torchvision resnet18 without fc.
  encoder, variables = _hash_variables('resnet18_tv')
  direct = pretrained.load_pretrained(
      variables, _model_config('resnet18_tv', pretrained=str(source)),
      encoder)
  # The pretrained weight name is ignored when init_from is set.
  via_file = pretrained.load_pretrained(
      variables, _model_config('resnet18_tv', init_from=str(out),
                               pretrained='resnet50_keras_imagenet'),
      encoder)
  jax.tree.map(np.testing.assert_array_equal, via_file, direct)
  # The heads are untouched, the encoder replaced.
  np.testing.assert_array_equal(via_file['params']['hash']['kernel'],
                                variables['params']['hash']['kernel'])
  np.testing.assert_array_equal(
      via_file['params']['encoder']['conv1']['kernel'],
      sd['conv1.weight'].transpose(2, 3, 1, 0))


def test_init_from_errors(tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  sd, _ = _fake_resnet18_state_dict(with_fc=False)
  source = tmp_path / 'resnet18.safetensors'
  save_file(sd, str(source))
  out, _ = convert.convert('resnet18_tv', str(source),
                           str(tmp_path / 'enc.safetensors'), image_size=32)
  encoder, variables = _hash_variables('resnet50_tv')
  with pytest.raises(ValueError, match="holds a 'resnet18_tv' encoder"):
    pretrained.load_pretrained(
        variables, _model_config('resnet50_tv', init_from=str(out)), encoder)
  with pytest.raises(ValueError, match='not written by hashjax.convert'):
    pretrained.load_pretrained(
        variables, _model_config('resnet50_tv', init_from=str(source)),
        encoder)
  with pytest.raises(FileNotFoundError, match='hashjax.convert'):
    pretrained.load_pretrained(
        variables, _model_config('resnet50_tv',
                                 init_from=str(tmp_path / 'nope.safetensors')),
        encoder)
  truncated = tmp_path / 'cut.safetensors'
  truncated.write_bytes(out.read_bytes()[:1000])
  with pytest.raises(ValueError, match='not a readable safetensors'):
    pretrained.load_pretrained(
        variables, _model_config('resnet18_tv', init_from=str(truncated)),
        encoder)


@pytest.mark.slow
def test_convert_command_line(tmp_path):
  """The command a user runs; Keras ResNet-50 from the seeded cache."""
  src = conftest.SHARED / 'weights' / 'resnet50_keras_imagenet.safetensors'
  if not src.is_file():
    pytest.skip(f'{src} not available')
  out = tmp_path / 'r50.safetensors'
  proc = subprocess.run(
      [sys.executable, '-m', 'hashjax.convert', '--encoder=resnet50',
       f'--source={src}', f'--out={out}', '--image_size=64'],
      capture_output=True, text=True, check=False, cwd=conftest.REPO)
  assert proc.returncode == 0, proc.stderr
  assert '23,534,592 parameters'  # Keras: 23,534,592 trainable in proc.stdout
  bad = subprocess.run(
      [sys.executable, '-m', 'hashjax.convert', '--encoder=resnet50_tv',
       f'--source={tmp_path / "missing.pth"}', f'--out={out}'],
      capture_output=True, text=True, check=False, cwd=conftest.REPO)
  assert bad.returncode == 1
  assert 'missing.pth' in bad.stderr and 'Traceback' not in bad.stderr
