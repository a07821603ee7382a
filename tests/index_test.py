"""The packed index file: round trip, memory map, append, and every way a
file can be wrong."""
import os

import numpy as np
import pytest

from hashjax import codes as codes_lib
from hashjax.archive import index


@pytest.mark.parametrize('bits', [16, 32, 48, 64, 128])
def test_pack_unpack_and_popcount_distance(bits):
  rng = np.random.default_rng(bits)
  c = codes_lib.binarize(rng.normal(size=(50, bits)))
  p = index.pack(c)
  assert p.dtype == np.uint32 and p.shape == (50, -(-bits // 32))
  np.testing.assert_array_equal(index.unpack(p, bits), c)
  # XOR + popcount over the words is the Hamming distance.
  d = np.bitwise_count(p[:5, None, :] ^ p[None, :, :]).sum(-1)
  np.testing.assert_array_equal(d, codes_lib.hamming_distance(c[:5], c))
  # bit j of code i is bit j % 32 of word j // 32
  i, j = 3, bits - 1
  assert ((p[i, j // 32] >> (j % 32)) & 1) == (c[i, j] > 0)


def _write(tmp_path, n=40, bits=64, labels=True):
  rng = np.random.default_rng(0)
  c = codes_lib.binarize(rng.normal(size=(n, bits)))
  ids = [f'cls{k % 3}/img{k:03d}.jpg' for k in range(n)]
  lab = np.eye(3)[np.arange(n) % 3] if labels else None
  path = str(tmp_path / 'a.hjidx')
  index.save(path, c, ids, labels=lab, class_names=['a', 'b', 'c'],
             source={'workdir': '/runs/x', 'step': 280})
  return path, c, ids, lab


def test_round_trip_memory_mapped(tmp_path):
  path, c, ids, lab = _write(tmp_path)
  idx = index.load(path)
  assert isinstance(idx.packed, np.memmap) and len(idx) == 40
  assert idx.bits == 64 and idx.ids == ids and idx.class_names == ['a', 'b',
                                                                    'c']
  np.testing.assert_array_equal(idx.codes(), c)
  np.testing.assert_array_equal(idx.labels, lab)
  assert idx.source == {'workdir': '/runs/x', 'step': 280}
  # the codes start 64-byte aligned, 8 bytes per 64-bit code
  assert (os.path.getsize(path) - 40 * 8) % 64 == 0


def test_append_keeps_old_codes(tmp_path):
  path, c, ids, lab = _write(tmp_path)
  before = open(path, 'rb').read()
  new = codes_lib.binarize(np.random.default_rng(1).normal(size=(5, 64)))
  same = {'workdir': '/runs/x', 'step': 280, 'images': '/new'}
  idx = index.append(path, new, [f'new/{k}.jpg' for k in range(5)],
                     labels=np.eye(3)[[0, 1, 2, 0, 1]], source=same)
  assert len(idx) == 45 and idx.ids[-1] == 'new/4.jpg'
  np.testing.assert_array_equal(idx.codes()[:40], c)
  np.testing.assert_array_equal(idx.codes()[40:], new)
  assert idx.source['appended'] == [same]
  old_packed = index.pack(c).tobytes()
  assert old_packed in before and old_packed in open(path, 'rb').read()
  with pytest.raises(ValueError, match='already in'):
    index.append(path, new[:1], ['new/0.jpg'], labels=np.eye(3)[[0]])
  with pytest.raises(ValueError, match='64-bit codes'):
    index.append(path, new[:, :32], ['z'], labels=np.eye(3)[[0]])
  with pytest.raises(ValueError, match='has labels'):
    index.append(path, new[:1], ['z'])


def test_bad_files_are_clear_errors(tmp_path):
  path, _, _, _ = _write(tmp_path)
  data = open(path, 'rb').read()

  def bad(blob, match):
    p = tmp_path / 'bad.hjidx'
    p.write_bytes(blob)
    with pytest.raises(index.BadIndexError, match=match):
      index.load(str(p))

  bad(data[:-3], 'truncated')
  bad(data[:10], 'truncated')
  bad(data + b'\0' * 8, 'longer than its header')
  bad(b'NOTANIDX' + data[8:], 'not a hashjax index')
  bad(data[:8] + (2).to_bytes(4, 'little') + data[12:], 'version 2')
  corrupt = bytearray(data)
  corrupt[-1] ^= 0x10
  bad(bytes(corrupt), 'checksum')
  index.load(str(tmp_path / 'bad.hjidx'), verify=False)   # opt-out works
  header = bytearray(data)
  header[30] = 0xFF
  bad(bytes(header), 'corrupt header')
  with pytest.raises(FileNotFoundError, match='No index'):
    index.load(str(tmp_path / 'missing.hjidx'))


def test_header_damage_that_keeps_the_json_valid_is_detected(tmp_path):
  """One changed byte in an id is still valid JSON: the header checksum
  catches it (the codes' checksum does not cover the header)."""
  path, _, _, _ = _write(tmp_path)
  data = open(path, 'rb').read()
  at = data.index(b'cls1/img001.jpg')
  damaged = data[:at] + b'cls2' + data[at + 4:]
  p = tmp_path / 'damaged.hjidx'
  p.write_bytes(damaged)
  with pytest.raises(index.BadIndexError, match='header .* checksum'):
    index.load(str(p), verify=False)


def test_append_refuses_codes_of_another_network(tmp_path):
  path, _, _, _ = _write(tmp_path)     # /runs/x at step 280
  new = codes_lib.binarize(np.random.default_rng(3).normal(size=(1, 64)))
  for other in ({'workdir': '/runs/y', 'step': 280},
                {'workdir': '/runs/x', 'step': 200}):
    with pytest.raises(ValueError, match='not comparable'):
      index.append(path, new, ['o.jpg'], labels=np.eye(3)[[0]], source=other)
  idx = index.append(path, new, ['o.jpg'], labels=np.eye(3)[[0]],
                     source={'workdir': '/runs/y', 'step': 1},
                     allow_other_network=True)
  assert len(idx) == 41


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
  from hashjax import locking  # pylint: disable=g-import-not-at-top
  path, c, ids, _ = _write(tmp_path)
  with locking.hold(path, 'The index'):
    with pytest.raises(locking.LockedError, match=r'being written by pid'):
      index.append(path, c[:1], ['z.jpg'], labels=np.eye(3)[[0]],
                   source={'workdir': '/runs/x', 'step': 280})
    with pytest.raises(locking.LockedError):
      index.save(path, c, ids)
  # Released when the holder is done: the append now goes through.
  assert len(index.append(path, c[:1], ['z.jpg'], labels=np.eye(3)[[0]],
                          source={'workdir': '/runs/x', 'step': 280})) == 41


def test_append_maps_labels_by_class_name(tmp_path):
  path, _, _, _ = _write(tmp_path)      # classes a, b, c
  new = codes_lib.binarize(np.random.default_rng(2).normal(size=(2, 64)))
  idx = index.append(path, new, ['n/0.jpg', 'n/1.jpg'],
                     labels=np.eye(2)[[0, 1]], class_names=['c', 'a'])
  np.testing.assert_array_equal(idx.labels[-2:], [[0, 0, 1], [1, 0, 0]])
  with pytest.raises(ValueError, match=r"Classes \['z'\] are not in"):
    index.append(path, new[:1], ['n/2.jpg'], labels=np.eye(1),
                 class_names=['z'])


def test_a_report_is_html_or_png():
  from hashjax.archive import report  # pylint: disable=g-import-not-at-top
  for ok in ('r.html', 'R.HTM', 'grid.png'):
    report.check_report_path(ok)
  with pytest.raises(ValueError, match='.html .* or .png'):
    report.check_report_path('x.txt')
