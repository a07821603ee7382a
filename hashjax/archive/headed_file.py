"""The file layout an index (index.py) and its MIH tables (mih.py) share.

  bytes 0-7    magic (8 bytes, one per kind of file)
  bytes 8-11   format version (uint32)
  bytes 12-19  header length H (uint64)
  bytes 20-    header: UTF-8 JSON with its own SHA-256 (`header_sha256`),
               padded with spaces so the data start 64-byte aligned
  then         the data, as the header describes them

`read_header` checks a file's prefix and header and names the file and the
fix for anything wrong with them; the callers check their data.
"""
import hashlib
import json
import os
import struct

PREFIX = struct.Struct('<8sIQ')   # magic, version, header length
ALIGN = 64


def header_sha256(header):
  """The SHA-256 of a header's JSON, its own checksum left out."""
  rest = {k: v for k, v in header.items() if k != 'header_sha256'}
  return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def write_header(f, magic, version, header):
  """Writes the prefix and `header` (given its checksum, `header_sha256`,
  in place) to the file `f`, padded so that what is written next starts
  ALIGN-aligned."""
  header['header_sha256'] = header_sha256(header)
  blob = json.dumps(header).encode()
  blob += b' ' * ((-(PREFIX.size + len(blob))) % ALIGN)
  f.write(PREFIX.pack(magic, version, len(blob)))
  f.write(blob)


def read_header(path, magic, versions, what, error, *, unsummed_ok=False):
  """Reads and checks the prefix and header of the file at `path`.

  Args:
    path: the file.
    magic: the 8 bytes its kind of file starts with.
    versions: the format versions this code reads.
    what: the kind of file, for messages ('hashjax index').
    error: the exception class raised (a ValueError) for a file that is
      truncated, foreign, of another version or corrupt.
    unsummed_ok: accept a header without a checksum (written before
      checksums existed).
  Returns:
    (version, header dict, offset of the data, file size).
  """
  fix = f'Rebuild the {what}.'
  size = os.path.getsize(path)
  with open(path, 'rb') as f:
    prefix = f.read(PREFIX.size)
    if len(prefix) < PREFIX.size:
      raise error(f'{path!r} is truncated ({size} bytes): not a complete '
                  f'{what}. {fix}')
    found, version, header_len = PREFIX.unpack(prefix)
    if found != magic:
      raise error(f'{path!r} is not a {what} (bad magic {found!r}).')
    if version not in versions:
      raise error(f'{path!r} is {what} format version {version}; this '
                  f'hashjax reads version {" or ".join(map(str, versions))}. '
                  f'{fix}')
    blob = f.read(header_len)
  if len(blob) < header_len:
    raise error(f'{path!r} is truncated inside its header. {fix}')
  try:
    header = json.loads(blob.decode())
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise error(f'{path!r} has a corrupt header ({e}). {fix}') from e
  if not (unsummed_ok and 'header_sha256' not in header) and (
      header_sha256(header) != header.get('header_sha256')):
    raise error(f'{path!r}: the header does not match its checksum (the '
                f'file is corrupt). {fix}')
  return version, header, PREFIX.size + header_len, size
