"""Tests for hashjax.models.swin and hashjax.models.timm_swin.

The parity tests against timm need torch and timm and are skipped without
them. They build timm models with random weights (no download).
"""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from hashjax.models import swin
from hashjax.models.pretrained import timm_swin
from tests import torch_util

_import_timm = torch_util.import_timm


def _init(model, size, batch=1):
  x = jnp.zeros((batch, size, size, 3), jnp.float32)
  return model.init(jax.random.PRNGKey(0), x, train=False)


@pytest.mark.slow
@pytest.mark.parametrize('size', [32, 64])
def test_tiny_forward_shapes(size):
  model = swin.SwinTiny(num_classes=5)
  variables = _init(model, 32)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, size, size, 3))
  out = model.apply(variables, x, train=False)
  assert out['features'].shape == (2, model.num_features) == (2, 48)
  assert out['logits'].shape == (2, 5)
  assert out['features'].dtype == jnp.float32
  train_out = model.apply(variables, x, train=True,
                          rngs={'dropout': jax.random.PRNGKey(2)})
  assert train_out['features'].shape == (2, 48)
  assert np.all(np.isfinite(train_out['features']))


@pytest.mark.slow
def test_tiny_drop_path_is_random_in_training_only():
  model = swin.SwinTiny(drop_path_rate=0.5)
  variables = _init(model, 32)
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 32, 32, 3))
  a = model.apply(variables, x, train=True,
                  rngs={'dropout': jax.random.PRNGKey(0)})['features']
  b = model.apply(variables, x, train=True,
                  rngs={'dropout': jax.random.PRNGKey(1)})['features']
  c = model.apply(variables, x, train=False)['features']
  d = model.apply(variables, x, train=False)['features']
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(c, d)


def test_no_head_without_num_classes():
  model = swin.SwinTiny()
  variables = _init(model, 32)
  assert 'head' not in variables['params']
  out = model.apply(variables, jnp.zeros((1, 32, 32, 3)), train=False)
  assert set(out) == {'features'}


def test_relative_position_index_small_case():
  index = swin.relative_position_index(2)
  # Tokens (0,0), (0,1), (1,0), (1,1); offset (dy, dx) -> (dy+1)*3 + dx+1.
  expected = np.array([[4, 3, 1, 0],
                       [5, 4, 2, 1],
                       [7, 6, 4, 3],
                       [8, 7, 5, 4]])
  np.testing.assert_array_equal(index, expected)
  index = swin.relative_position_index(7)
  assert index.shape == (49, 49)
  assert index.min() == 0 and index.max() == 13 * 13 - 1
  np.testing.assert_array_equal(np.diag(index), 6 * 13 + 6)


def test_shifted_window_mask_small_case():
  # 4x4 map, window 2, shift 1: 4 windows of 4 tokens. After the cyclic
  # shift the top-left window is one region; the top-right window mixes
  # columns 3 and 0 (2 regions of 2 tokens: 8 masked ordered pairs), the
  # bottom-left likewise, and the bottom-right holds 4 regions of 1 token
  # (12 masked pairs).
  mask = swin.shifted_window_mask(4, 2, 1)
  assert mask.shape == (4, 4, 4)
  assert set(np.unique(mask)) <= {0.0, -100.0}
  np.testing.assert_array_equal((mask != 0).sum(axis=(1, 2)), [0, 8, 8, 12])
  np.testing.assert_array_equal(mask, mask.transpose(0, 2, 1))
  np.testing.assert_array_equal(mask[1], [[0, -100, 0, -100],
                                          [-100, 0, -100, 0],
                                          [0, -100, 0, -100],
                                          [-100, 0, -100, 0]])
  assert swin.shifted_window_mask(4, 2, 0) is None


def test_window_clamping_swin_t():
  got = swin.stage_windows(64, 4, 4, 7)
  assert [w for w, _ in got] == [(7, 7), (7, 7), (4, 4), (2, 2)]
  assert [s for _, s in got] == [(3, 3), (3, 3), (0, 0), (0, 0)]
  got = swin.stage_windows(224, 4, 4, 7)
  assert [w for w, _ in got] == [(7, 7)] * 4
  assert [s for _, s in got] == [(3, 3), (3, 3), (3, 3), (0, 0)]
  assert swin.SwinT(img_size=64).table_windows() == [(7, 7), (7, 7), (4, 4),
                                                     (2, 2)]


@pytest.mark.slow
def test_swin_t_64_param_shapes():
  model = swin.SwinT(img_size=64, num_classes=10)
  shapes = jax.eval_shape(lambda: _init(model, 64))['params']
  tables = [shapes[f'layers_{i}']['blocks_0']['attn'][
      'relative_position_bias_table'].shape for i in range(4)]
  assert tables == [(169, 3), (169, 6), (49, 12), (9, 24)]
  assert shapes['layers_1']['downsample']['reduction']['kernel'].shape == (
      384, 192)
  assert 'downsample' not in shapes['layers_0']
  assert shapes['head']['kernel'].shape == (768, 10)


@pytest.mark.slow
def test_other_input_sizes_and_table_crop():
  # Built for 32 px (stage maps 8, 4; windows 2, 2). At 8 px the maps are
  # 2 and 1: the last stage's window shrinks to 1, a crop of its table.
  model = swin.SwinTiny()
  variables = _init(model, 32)
  out = model.apply(variables, jnp.ones((1, 8, 8, 3)), train=False)
  assert out['features'].shape == (1, 48)
  # Built for 8 px (table windows 2, 1): at 32 px stage 2 needs window 2.
  small = swin.SwinTiny(img_size=8)
  small_vars = _init(small, 8)
  with pytest.raises(ValueError, match='larger than the relative position'):
    small.apply(small_vars, jnp.ones((1, 32, 32, 3)), train=False)


def test_normalize():
  x = np.full((1, 2, 2, 3), 255.0 * 0.485, np.float32)
  y = swin.normalize(x)
  np.testing.assert_allclose(y[..., 0], 0.0, atol=1e-6)
  assert y.dtype == np.float32


def _random_state_dict(model, size):
  """A fake timm state dict (numpy) with the model's shapes."""
  params = _init(model, size)['params']
  flat = {}
  for path, v in jax.tree_util.tree_leaves_with_path(params):
    names = tuple(p.key for p in path)
    key = timm_swin._torch_key(names)  # pylint: disable=protected-access
    v = np.asarray(v)
    if names[-1] == 'kernel':
      v = v.transpose(3, 2, 0, 1) if v.ndim == 4 else v.T
    flat[key] = v
  return flat, params


@pytest.mark.slow
def test_convert_roundtrip_and_official_layout():
  model = swin.SwinTiny(num_classes=3)
  sd, params = _random_state_dict(model, 32)
  got = timm_swin.from_timm(sd, model)
  jax.tree_util.tree_map(np.testing.assert_array_equal, got, params)
  # Official layout: downsample at the end of the previous stage, 'head',
  # with buffers that must be ignored.
  official = {}
  for k, v in sd.items():
    k = k.replace('layers.1.downsample', 'layers.0.downsample')
    official[k.replace('head.fc.', 'head.')] = v
  official['layers.0.blocks.1.attn_mask'] = np.zeros((16, 4, 4))
  official['layers.0.blocks.0.attn.relative_position_index'] = np.zeros(
      (4, 4))
  got = timm_swin.from_timm({'model': official}, model)
  jax.tree_util.tree_map(np.testing.assert_array_equal, got, params)


def test_convert_errors_name_the_key():
  model = swin.SwinTiny(num_classes=3)
  sd, _ = _random_state_dict(model, 32)
  missing = dict(sd)
  del missing['layers.1.blocks.0.mlp.fc1.weight']
  with pytest.raises(ValueError, match=r'layers\.1\.blocks\.0\.mlp\.fc1'):
    timm_swin.from_timm(missing, model)
  wrong = dict(sd)
  wrong['norm.weight'] = np.zeros(7, np.float32)
  with pytest.raises(ValueError, match=r"'norm\.weight'"):
    timm_swin.from_timm(wrong, model)
  extra = dict(sd)
  extra['layers.2.blocks.0.norm1.weight'] = np.zeros(3, np.float32)
  with pytest.raises(ValueError, match=r'layers\.2\.blocks\.0\.norm1'):
    timm_swin.from_timm(extra, model)
  # A head is ignored by a headless model.
  timm_swin.from_timm(sd, swin.SwinTiny())


@pytest.mark.slow
def test_convert_resizes_table():
  big = swin.SwinTiny(window_size=4, img_size=64)   # windows 4, 4
  small = swin.SwinTiny(window_size=4, img_size=16)  # windows 4, 2
  sd, _ = _random_state_dict(big, 64)
  params = timm_swin.from_timm(sd, small)
  assert small.table_windows() == [(4, 4), (2, 2)]
  table = params['layers_1']['blocks_0']['attn']['relative_position_bias_table']
  assert table.shape == (9, 2)
  # A constant table stays constant under both methods.
  const = np.ones((49, 3), np.float32)
  for method in ('timm', 'bicubic'):
    np.testing.assert_allclose(
        timm_swin.resize_rel_pos_bias_table(const, (3, 3), method), 1.0,
        rtol=1e-6)


def test_load_safetensors(tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  model = swin.SwinTiny(num_classes=3)
  sd, params = _random_state_dict(model, 32)
  save_file({k: np.ascontiguousarray(v) for k, v in sd.items()},
            str(tmp_path / 'w.safetensors'))
  got = timm_swin.load(tmp_path / 'w.safetensors', model)
  jax.tree_util.tree_map(np.testing.assert_array_equal, got, params)


def _timm_parity(img_size, batch, **kwargs):
  torch, timm = _import_timm()
  torch.manual_seed(0)
  ref = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False,
                          img_size=img_size, **kwargs).eval()
  # Random, non-trivial LayerNorm affine and biases (timm inits them to 1, 0).
  with torch.no_grad():
    for name, p in ref.named_parameters():
      if name.endswith('bias') or 'norm' in name:
        p.add_(0.1 * torch.randn_like(p))
  model = swin.SwinT(img_size=img_size, num_classes=1000,
                     window_size=kwargs.get('window_size', 7))
  params = timm_swin.from_timm(ref.state_dict(), model)
  x = np.random.RandomState(0).randn(batch, 3, img_size, img_size).astype(
      np.float32)
  with torch.no_grad():
    t = torch.from_numpy(x)
    feats = ref.forward_features(t)  # [B, H, W, C], after the final norm.
    ref_features = ref.forward_head(feats, pre_logits=True).numpy()
    ref_logits = ref(t).numpy()
  out = model.apply({'params': params}, jnp.asarray(x.transpose(0, 2, 3, 1)),
                    train=False)
  np.testing.assert_allclose(ref_features, feats.numpy().mean(axis=(1, 2)),
                             atol=1e-6)
  feat_diff = np.abs(np.asarray(out['features']) - ref_features).max()
  logit_diff = np.abs(np.asarray(out['logits']) - ref_logits).max()
  print(f'timm parity at {img_size}px: features {feat_diff:.2e}, '
        f'logits {logit_diff:.2e}')
  assert feat_diff <= 1e-4
  assert logit_diff <= 1e-4
  return ref


@pytest.mark.slow
def test_timm_parity_224():
  _timm_parity(224, batch=1)


@pytest.mark.slow
def test_timm_parity_64():
  # timm clamps windows per stage like swin.window_and_shift: 7, 7, 4, 2
  # (maps 16, 8, 4, 2; the first two padded to 21 and 14).
  ref = _timm_parity(64, batch=2)
  windows = [tuple(stage.blocks[0].window_size) for stage in ref.layers]
  shifts = [tuple(stage.blocks[1].shift_size) for stage in ref.layers]
  assert windows == [w for w, _ in swin.stage_windows(64, 4, 4, 7)]
  assert shifts == [s for _, s in swin.stage_windows(64, 4, 4, 7)]


@pytest.mark.slow
def test_timm_table_resize_matches_checkpoint_filter():
  torch, timm = _import_timm()
  # pylint: disable-next=g-import-not-at-top
  from timm.models import swin_transformer
  torch.manual_seed(0)
  src = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False)
  dst = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False,
                          img_size=64)
  sd = src.state_dict()
  filtered = swin_transformer.checkpoint_filter_fn(sd, dst)
  model = swin.SwinT(img_size=64, num_classes=1000)
  params = timm_swin.from_timm(sd, model)
  for i in (2, 3):
    want = filtered[f'layers.{i}.blocks.0.attn.relative_position_bias_table']
    got = params[f'layers_{i}']['blocks_0']['attn'][
        'relative_position_bias_table']
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)


def test_bicubic_resize_matches_torch():
  torch, _ = _import_timm()
  table = np.random.RandomState(0).randn(169, 3).astype(np.float32)
  for window in (2, 4, 9):
    got = timm_swin.resize_rel_pos_bias_table(table, (window, window),
                                                 'bicubic')
    grid = torch.from_numpy(table.T.reshape(1, 3, 13, 13))
    want = torch.nn.functional.interpolate(
        grid, size=(2 * window - 1,) * 2, mode='bicubic', align_corners=False)
    want = want[0].reshape(3, -1).T.numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_load_official_pth_and_truncated(tmp_path):
  """A Microsoft-layout .pth (under 'model', DataParallel 'module.' keys)."""
  torch, _ = _import_timm()
  model = swin.SwinTiny(num_classes=3)
  sd, params = _random_state_dict(model, 32)
  official = {}
  for k, v in sd.items():
    k = k.replace('layers.1.downsample', 'layers.0.downsample')
    official['module.' + k.replace('head.fc.', 'head.')] = torch.tensor(v)
  torch.save({'model': official, 'epoch': 300}, tmp_path / 'swin.pth')
  got = timm_swin.load(tmp_path / 'swin.pth', model)
  jax.tree_util.tree_map(np.testing.assert_array_equal, got, params)
  data = (tmp_path / 'swin.pth').read_bytes()
  (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match='truncated'):
    timm_swin.load(tmp_path / 'cut.pth', model)
  with pytest.raises(FileNotFoundError, match='nope.pth'):
    timm_swin.load(tmp_path / 'nope.pth', model)
