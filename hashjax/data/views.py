"""Synthetic second views of a dataset: stand-ins for a second sensor.

MrHash (issue 4) needs co-registered sources. The bundled RSSCN7 copy has
one, so `data.extra_sources=('view:second_sensor',)` derives a second one by
a fixed spectral and resolution change of the same scenes. It is a
stand-in: it shares the scene content exactly, which a real second sensor
(Sentinel-1 vs Sentinel-2, PAN vs MUL, VHR vs 10 m) does not.
"""
import jax.numpy as jnp

# Each output band mixes the input bands, like a sensor with other spectral
# responses (rows: output R, G, B; columns: input R, G, B).
_SPECTRAL_MIX = ((0.20, 0.70, 0.10),
                 (0.60, 0.30, 0.10),
                 (0.15, 0.25, 0.60))


def second_sensor(images):
  """[B, H, W, 3] float in [0, 255] -> the same scenes seen differently.

  Bands are re-mixed (_SPECTRAL_MIX) and the ground resolution is halved
  (2x2 average pooling, then nearest-neighbour upsampling to the input
  size). H and W must be even.
  """
  b, h, w, c = images.shape
  x = images @ jnp.asarray(_SPECTRAL_MIX, images.dtype).T
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


VIEWS = {'second_sensor': second_sensor}


def get(spec):
  """The view function for 'view:<name>' (None for a folder root)."""
  if not spec.startswith('view:'):
    return None
  name = spec[len('view:'):]
  if name not in VIEWS:
    raise ValueError(f'Unknown view {spec!r}; known: '
                     f'{", ".join("view:" + v for v in sorted(VIEWS))}.')
  return VIEWS[name]
