"""In-graph random views (jax), for methods that need several views of an
image in one train step (CIBHash). The input pipeline's own augmentation
(hashjax/data/input_pipeline.py) makes one view per image on the host.

`random_view` follows SimCLR's / CIBHash's recipe on a batch of float
images in [0, 255]: a random resized crop (area in [crop_min, 1], aspect in
[3/4, 4/3], bilinear, back to the input size), a horizontal flip (p = 0.5),
colour jitter (brightness, contrast, saturation factors in
[1 - jitter, 1 + jitter], applied with p = jitter_p) and grayscale
(p = gray_p). Hue jitter and Gaussian blur are left out.
"""
import jax
import jax.numpy as jnp

_GRAY = jnp.array([0.299, 0.587, 0.114], jnp.float32)


def _crop_resize(image, box):
  """Bilinear crop of box = (y0, x0, h, w) (fractions) back to [H, W, C]."""
  h, w, _ = image.shape
  y0, x0, bh, bw = box
  ys = (y0 + (jnp.arange(h) + 0.5) / h * bh) * h - 0.5
  xs = (x0 + (jnp.arange(w) + 0.5) / w * bw) * w - 0.5
  yy, xx = jnp.meshgrid(ys, xs, indexing='ij')

  def channel(c):
    return jax.scipy.ndimage.map_coordinates(c, [yy, xx], order=1,
                                             mode='nearest')

  return jax.vmap(channel, in_axes=2, out_axes=2)(image)


def _one(key, image, crop_min, jitter, jitter_p, gray_p):
  ks = jax.random.split(key, 9)
  area = jax.random.uniform(ks[0], (), minval=crop_min, maxval=1.0)
  log_r = jax.random.uniform(ks[1], (), minval=jnp.log(3 / 4),
                             maxval=jnp.log(4 / 3))
  ratio = jnp.exp(log_r)
  bh = jnp.clip(jnp.sqrt(area / ratio), 0.0, 1.0)
  bw = jnp.clip(jnp.sqrt(area * ratio), 0.0, 1.0)
  y0 = jax.random.uniform(ks[2], ()) * (1.0 - bh)
  x0 = jax.random.uniform(ks[3], ()) * (1.0 - bw)
  x = _crop_resize(image, (y0, x0, bh, bw))
  x = jnp.where(jax.random.bernoulli(ks[4]), x[:, ::-1], x)
  f = jax.random.uniform(ks[5], (3,), minval=1 - jitter, maxval=1 + jitter)
  j = x * f[0]                                            # brightness
  j = (j - j.mean()) * f[1] + j.mean()                    # contrast
  g = (j @ _GRAY)[..., None]
  j = (j - g) * f[2] + g                                  # saturation
  x = jnp.where(jax.random.bernoulli(ks[6], jitter_p), j, x)
  gray = (x @ _GRAY)[..., None]
  x = jnp.where(jax.random.bernoulli(ks[7], gray_p),
                jnp.broadcast_to(gray, x.shape), x)
  return jnp.clip(x, 0.0, 255.0)


def random_view(key, images, *, crop_min=0.5, jitter=0.4, jitter_p=0.8,
                gray_p=0.2):
  """One random view of each image of [B, H, W, 3] float in [0, 255]."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, im: _one(k, im, crop_min, jitter, jitter_p,
                                     gray_p))(keys, images)
