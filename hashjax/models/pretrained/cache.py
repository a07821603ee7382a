"""The pretrained-weight cache: where weight files live and how a name
becomes a file.

Weights live in ``cache_dir()``: ``$HASHJAX_WEIGHTS_DIR`` if set, else
``~/.cache/hashjax/weights``. ``resolve`` turns a weight name or a path into
a file, downloading the official file into the cache when allowed (never
when ``HASHJAX_OFFLINE=1``).
"""
import dataclasses
import logging
import os
import pathlib
import tempfile
import urllib.request
from typing import Sequence, Union

PathLike = Union[str, os.PathLike]

_CACHE_ENV = 'HASHJAX_WEIGHTS_DIR'
_OFFLINE_ENV = 'HASHJAX_OFFLINE'
_HDF5_MAGIC = b'\x89HDF\r\n\x1a\n'


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
  """A known pretrained weight file.

  Attributes:
    filenames: names accepted in the cache directory, in order of preference.
    url: official download location; saved under its own basename.
  """
  filenames: Sequence[str]
  url: str


KNOWN_WEIGHTS = {
    'resnet50_keras_imagenet': WeightsInfo(
        filenames=('resnet50_keras_imagenet.safetensors',
                   'resnet50_weights_tf_dim_ordering_tf_kernels.h5'),
        url=('https://storage.googleapis.com/tensorflow/keras-applications/'
             'resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5')),
    # Microsoft's ImageNet-1k Swin-T (DGSSH's `swin_pre.pth`), for swin_t.
    'swin_tiny_patch4_window7_224': WeightsInfo(
        filenames=('swin_tiny_patch4_window7_224.pth',
                   'swin_tiny_patch4_window7_224.safetensors'),
        url=('https://github.com/SwinTransformer/storage/releases/download/'
             'v1.0.0/swin_tiny_patch4_window7_224.pth')),
    # torchvision IMAGENET1K_V1, for resnet50_tv / resnet18_tv.
    'resnet50_tv_imagenet': WeightsInfo(
        filenames=('resnet50-0676ba61.pth',),
        url='https://download.pytorch.org/models/resnet50-0676ba61.pth'),
    'resnet18_tv_imagenet': WeightsInfo(
        filenames=('resnet18-f37072fd.pth',),
        url='https://download.pytorch.org/models/resnet18-f37072fd.pth'),
}


def cache_dir() -> pathlib.Path:
  """Directory holding downloaded or user-provided weight files."""
  env = os.environ.get(_CACHE_ENV)
  if env:
    return pathlib.Path(env).expanduser()
  return pathlib.Path('~/.cache/hashjax/weights').expanduser()


def _offline() -> bool:
  return os.environ.get(_OFFLINE_ENV, '').lower() in ('1', 'true', 'yes')


def _download(url: str, dest: pathlib.Path, timeout: float = 30.0) -> None:
  """Downloads url to dest atomically (temp file in dest's dir + rename)."""
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix='.part')
  try:
    with os.fdopen(fd, 'wb') as f, urllib.request.urlopen(
        url, timeout=timeout) as response:
      while chunk := response.read(1 << 20):
        f.write(chunk)
    # Guards against proxies answering with an HTML page.
    with open(tmp, 'rb') as f:
      head = f.read(len(_HDF5_MAGIC))
      if dest.suffix == '.h5' and head != _HDF5_MAGIC:
        raise OSError(f'{url} did not return an HDF5 file')
      if dest.suffix == '.pth' and not head.startswith(b'PK'):
        raise OSError(f'{url} did not return a torch (zip) checkpoint')
    os.replace(tmp, dest)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _not_found(name: str, info: WeightsInfo, reason: str) -> FileNotFoundError:
  paths = '\n'.join(f'  {cache_dir() / f}' for f in info.filenames)
  return FileNotFoundError(
      f'Pretrained weights {name!r} not found ({reason}). Put the file at one '
      f'of:\n{paths}\ndownloading it from\n  {info.url}\nor pass its path '
      f'directly. Set ${_CACHE_ENV} to use another cache directory.')


def resolve(name_or_path: PathLike,
            allow_download: bool = True) -> pathlib.Path:
  """Finds a weight file from a path or a ``KNOWN_WEIGHTS`` name.

  Args:
    name_or_path: an existing file path, or a key of ``KNOWN_WEIGHTS``.
    allow_download: download a known file missing from the cache. Ignored
      (no download) when the environment has ``HASHJAX_OFFLINE=1``.

  Returns:
    Path of an existing file.

  Raises:
    FileNotFoundError: with the cache paths and URL to fetch the file from.
  """
  path = pathlib.Path(name_or_path).expanduser()
  if path.is_file():
    return path
  name = str(name_or_path)
  if name not in KNOWN_WEIGHTS:
    raise FileNotFoundError(
        f'{name!r} is neither an existing file nor a known weight name '
        f'({", ".join(sorted(KNOWN_WEIGHTS))}).')
  info = KNOWN_WEIGHTS[name]
  for filename in info.filenames:
    if (cache_dir() / filename).is_file():
      return cache_dir() / filename
  if not allow_download or _offline():
    raise _not_found(name, info, 'downloads disabled')
  dest = cache_dir() / info.url.rsplit('/', 1)[-1]
  logging.info('Downloading %s to %s', info.url, dest)
  try:
    _download(info.url, dest)
  except OSError as e:  # URLError, timeouts and disk errors are all OSErrors.
    raise _not_found(name, info, f'download failed: {e}') from e
  return dest
