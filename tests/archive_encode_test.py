"""Encoding an archive into a sharded index: equal to the run's own
encoder, unreadable images listed and left out, a kill -9 half way resumed
to the same index, and two processes (jax.distributed on localhost) equal
to one."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from hashjax import restore
from hashjax import search
from hashjax.archive import index
from hashjax.archive import shards
from hashjax.data import sources

# Each test trains (the shared tiny run) or starts processes.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def archive(tiny_index, small_rsscn7, tmp_path_factory):
  """(run, archive folder): the tiny run's images plus two broken ones."""
  folder = tmp_path_factory.mktemp('archive') / 'scenes'
  shutil.copytree(small_rsscn7, folder)
  classes = sorted(os.listdir(folder))
  (folder / classes[0] / 'zz_text.jpg').write_text('not an image')
  good = sorted((folder / classes[1]).iterdir())[0].read_bytes()
  (folder / classes[2] / 'zz_truncated.jpg').write_bytes(good[:len(good) // 3])
  return tiny_index[0] / 'run', folder


def _command(run, images, out, shard_size=16, env=None):
  return subprocess.Popen(
      [sys.executable, '-m', 'hashjax.search', f'--workdir={run}',
       f'--images={images}', f'--out={out}', f'--shard_size={shard_size}'],
      cwd=ROOT, env=dict(os.environ, **(env or {})), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True)


def _same_index(a, b):
  ma, mb = shards.read_manifest(a), shards.read_manifest(b)
  assert [(e['file'], e['count'], e['codes_sha256'], e['header_sha256'])
          for e in ma['shards']] == [
              (e['file'], e['count'], e['codes_sha256'], e['header_sha256'])
              for e in mb['shards']]
  assert ma['count'] == mb['count']


def test_encode_equals_the_runs_encoder_and_lists_unreadable(archive,
                                                              tmp_path):
  run_dir, folder = archive
  out = str(tmp_path / 'idx')
  lines = []
  idx = search.build(str(run_dir), out, images=str(folder), shard_size=16,
                     log=lines.append)
  image_set = sources.for_archive(str(folder))
  assert len(image_set) == 142 and len(idx) == 140
  assert len(idx.shards) == 1      # 9 shards of 16 written, then compacted
  assert len(idx.manifest['encodes']) == 1
  bad = [i for i, n in enumerate(image_set.names)
         if os.path.basename(n).startswith('zz_')]
  good = np.setdiff1d(np.arange(142), bad)
  assert idx.ids == [image_set.names[i] for i in good]
  np.testing.assert_array_equal(idx.labels, image_set.labels[good])
  assert idx.class_names == sorted(os.listdir(folder))
  run = restore.load(str(run_dir))
  image_set.paths = image_set.paths[good]
  image_set.names = [image_set.names[i] for i in good]
  want = run.encoder()(image_set, np.arange(len(good)))
  np.testing.assert_array_equal(idx.codes(), want)
  listed = open(os.path.join(out, 'unreadable.txt')).read()
  assert 'zz_text.jpg' in listed and 'zz_truncated.jpg' in listed
  assert lines[-1].startswith('2 unreadable image(s) left out')
  assert any('ETA' in l for l in lines)
  # the same command again: nothing to do
  again = []
  search.build(str(run_dir), out, images=str(folder), shard_size=16,
               log=again.append)
  assert any('nothing to do' in l for l in again), again
  # adding another folder without --append is refused, with it works
  more = tmp_path / 'more'
  shutil.copytree(folder / idx.class_names[0], more / idx.class_names[0])
  for f in (more / idx.class_names[0]).iterdir():
    f.rename(f.with_name('new_' + f.name))
  with pytest.raises(ValueError, match='--append'):
    search.build(str(run_dir), out, images=str(more), shard_size=16)
  grown = search.build(str(run_dir), out, images=str(more), shard_size=16,
                       append=True, log=lambda *_: None)
  assert len(grown) == 140 + 20 and len(grown.shards) == 1
  assert grown.ids[:140] == idx.ids


def test_killed_encode_resumes_to_the_same_index(archive, tmp_path):
  run_dir, folder = archive
  whole, part = tmp_path / 'whole', tmp_path / 'part'
  proc = _command(run_dir, folder, whole)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out[-3000:]
  proc = _command(run_dir, folder, part)
  deadline = time.time() + 600
  while time.time() < deadline:   # kill once 3 of 9 shards are written
    if os.path.isdir(part) and len([f for f in os.listdir(part)
                                    if f.endswith('.hjidx')]) >= 3:
      break
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    time.sleep(0.05)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  written = [f for f in os.listdir(part) if f.endswith('.hjidx')]
  assert 3 <= len(written) < 9, written
  with pytest.raises(index.BadIndexError, match='without manifest.json'):
    shards.load(str(part))     # no reader sees a partial index
  proc = _command(run_dir, folder, part)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out[-3000:]
  assert f'{len(written)} already done' in out or \
      f'{len(written) - 1} already done' in out, out   # the last may be partial
  _same_index(str(whole), str(part))
  assert len(shards.load(str(part))) == 140


def test_two_processes_encode_as_one(archive, tmp_path):
  run_dir, folder = archive
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  one = _command(run_dir, folder, tmp_path / 'one',
                 env={'HASHJAX_DISTRIBUTED': '0'})
  out, _ = one.communicate(timeout=600)
  assert one.returncode == 0, out[-3000:]
  procs = [_command(run_dir, folder, tmp_path / 'two', env={
      'HASHJAX_COORDINATOR': f'localhost:{port}',
      'HASHJAX_NUM_PROCESSES': '2', 'HASHJAX_PROCESS_ID': str(i),
      'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})
           for i in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  assert 'shard 9/9 written' in logs[0] and 'written' not in logs[1]
  _same_index(str(tmp_path / 'one'), str(tmp_path / 'two'))
