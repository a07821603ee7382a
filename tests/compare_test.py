"""python -m hashjax.compare: the grid, sharding, bad input, and (slow) a
real sweep: tables, figures, resume after a deleted result and after a
SIGKILL."""
import csv
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from hashjax import compare

REPO = pathlib.Path(__file__).resolve().parents[1]


def _env():
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (str(REPO), env.get('PYTHONPATH', '')) if p)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  return env


def _compare(*args, check=False, timeout=900):
  out = subprocess.run([sys.executable, '-m', 'hashjax.compare', *args],
                       capture_output=True, text=True, cwd=REPO, env=_env(),
                       timeout=timeout, check=False)
  if check and out.returncode:
    raise AssertionError(f'rc {out.returncode}\n{out.stdout}\n{out.stderr}')
  return out


# ------------------------------------------------------------ fast


def test_dry_run_prints_the_grid_and_commands(tmp_path):
  out = _compare('--methods=ahcl,lsh', '--bits=16,32', '--variant=runlocal',
                 f'--out={tmp_path}/o', '--dry_run', check=True)
  lines = [l for l in out.stdout.splitlines() if l.startswith('[')]
  assert len(lines) == 4
  assert '4 runs in the grid' in out.stdout
  # Dataset, then method as given, then bits.
  assert [re.search(r'\] (\S+) ', l).group(1) for l in lines] == [
      'rsscn7_64/ahcl_16b', 'rsscn7_64/ahcl_32b', 'rsscn7_64/lsh_16b',
      'rsscn7_64/lsh_32b']
  assert lines[0].endswith(
      'python -m hashjax.main --config=configs/ahcl.py:bits=16,runlocal '
      f'--config.data.name=rsscn7_64 --workdir={tmp_path}/o/rsscn7_64/ahcl_16b')
  assert not (tmp_path / 'o').exists()   # a dry run writes nothing.


def test_config_paths_with_args_and_rooted_datasets(tmp_path):
  grid = compare.build_grid(
      ['configs/ahcl.py:released', 'itq'], [8], ['folder', 'rsscn7_64'],
      str(tmp_path), variant='runlocal', data_root='/data/x')
  assert [e.name for e in grid] == [
      'folder/ahcl-released_8b', 'folder/itq_8b',
      'rsscn7_64/ahcl-released_8b', 'rsscn7_64/itq_8b']
  assert grid[0].argv[2] == '--config=configs/ahcl.py:bits=8,released,runlocal'
  assert '--config.data.root=/data/x' in grid[0].argv
  assert not any('data.root' in a for a in grid[2].argv)
  assert grid[0].method.label == 'ahcl:released'
  # 'path.py:a,b' keeps its arguments together; a config name after it
  # starts the next method.
  assert compare._split_methods('configs/ahcl.py:released,quick,lsh') == [
      'configs/ahcl.py:released,quick', 'lsh']


@pytest.mark.parametrize('n', [1, 2, 3, 5, 7])
def test_shards_partition_the_grid(n):
  grid = compare.build_grid(
      ['ahcl', 'lsh', 'itq'], [16, 32, 64], ['rsscn7_64', 'folder'], 'o',
      data_root='/r')
  shards = [compare.shard_of(grid, i, n) for i in range(n)]
  positions = sorted(e.position for s in shards for e in s)
  assert positions == list(range(len(grid)))       # every entry, once.
  for i, s in enumerate(shards):
    assert all(e.position % n == i for e in s)


def test_dry_run_with_a_shard(tmp_path):
  names = []
  for i in range(3):
    out = _compare('--methods=ahcl,lsh,itq', '--bits=16,32', '--dry_run',
                   f'--shard={i}/3', f'--out={tmp_path}', check=True)
    names += re.findall(r'^\[\d+\] (\S+) ', out.stdout, re.M)
  assert len(names) == 6 and len(set(names)) == 6


@pytest.mark.parametrize('args, message', [
    (['--methods=ahcl,nosuch'], "unknown method 'nosuch'; available: adsh, "
     'ahcl, cibhash, csq, dgssh, dpsh, dsh, hashnet, itq, lsh, mrhash, sh'),
    (['--methods=configs/nosuch.py:x'], 'no config file'),
    (['--bits=16,abc'], "--bits='16,abc': expected comma-separated positive"),
    (['--bits=0'], 'expected comma-separated positive'),
    (['--bits='], 'expected comma-separated positive'),
    (['--shard=2/2'], "--shard='2/2': expected i/n with 0 <= i < n"),
    (['--shard=1'], 'expected i/n'),
    (['--shard=a/b'], 'expected i/n'),
    (['--datasets=folder'], 'none given'),
    (['--methods=ahcl,ahcl'], 'repeated'),
    (['--variant=bits=8'], 'use --bits'),
])
def test_bad_input_is_one_clear_error(tmp_path, args, message):
  out = _compare(*args, f'--out={tmp_path}', '--dry_run')
  assert out.returncode == 2, out.stdout + out.stderr
  assert message in out.stderr
  assert 'Traceback' not in out.stderr


def test_out_not_writable(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  out = _compare('--methods=lsh', '--bits=8', f'--out={blocker}/sub')
  assert out.returncode == 2
  assert 'is not a folder' in out.stderr
  if os.geteuid() != 0:   # root may write anywhere.
    ro = tmp_path / 'ro'
    ro.mkdir(mode=0o555)
    out = _compare('--methods=lsh', '--bits=8', f'--out={ro}/sub')
    assert out.returncode == 2 and 'not writable' in out.stderr


def _fake_run(out, dataset, name, bits, map_all, **extra):
  wd = out / dataset / f'{name}_{bits}b'
  wd.mkdir(parents=True)
  radius = list(range(bits + 1))
  metrics = {'map@all': map_all, 'map@100': map_all - 0.01, 'p@10': 0.5,
             'pr_radius': {'radius': radius,
                           'precision': [None] + [0.5] * bits,
                           'recall': [0.0] + [r / bits for r in radius[1:]]},
             **extra}
  (wd / 'results.json').write_text(json.dumps(
      dict(method=name, bits=bits, commit='abc1234', wall_seconds=12.5,
           metrics=metrics)))


def test_assemble_only_builds_tables_and_figures(tmp_path):
  out = tmp_path / 'o'
  _fake_run(out, 'rsscn7_64', 'lsh', 16, 0.4, **{'R': 320, 'map@320': 0.3,
                                                  'map@R': 0.3})
  _fake_run(out, 'rsscn7_64', 'lsh', 32, 0.45, **{'R': 320, 'map@320': 0.31,
                                                   'map@R': 0.31})
  _fake_run(out, 'rsscn7_64', 'ahcl', 32, 0.8)   # ahcl 16 not finished.
  res = _compare('--methods=ahcl,lsh', '--bits=16,32', f'--out={out}',
                 '--assemble_only', check=True)
  assert '3 of 4 grid runs in the tables' in res.stdout
  with open(out / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert [(r['method'], r['bits']) for r in rows] == [
      ('ahcl', '32'), ('lsh', '16'), ('lsh', '32')]
  assert list(rows[0])[:8] == ['dataset', 'method', 'bits', 'map@all',
                               'map@100', 'map@R', 'p@10', 'wall_seconds']
  assert 'map@320' not in rows[0]      # R's own column is map@R.
  assert rows[0]['map@R'] == '' and rows[1]['map@R'] == '0.3'
  assert rows[0]['commit'] == 'abc1234'
  assert rows[0]['command'].startswith(
      'python -m hashjax.main --config=configs/ahcl.py:bits=32 ')
  md = (out / 'results.md').read_text()
  assert '| ahcl | – | 0.8000 |' in md
  assert '| lsh | 0.4000 | 0.4500 |' in md
  assert 'Not finished (no results.json): rsscn7_64/ahcl_16b.' in md
  for png in ('pr_rsscn7_64.png', 'map_vs_bits_rsscn7_64.png'):
    assert (out / png).read_bytes()[:4] == b'\x89PNG'


# ------------------------------------------------------------ slow


def _sweep_args(root, out, methods='lsh,ahcl', bits='8,16'):
  return [f'--methods={methods}', f'--bits={bits}', '--datasets=folder',
          f'--data_root={root}', '--variant=runlocal', f'--out={out}']


def _starts(log):
  """How many times the run was started (compare.log is appended to)."""
  return len(re.findall(r'^==== compare: \S+ start: ', log.read_text(), re.M))


@pytest.mark.slow
def test_sweep_tables_figures_and_resume(small_rsscn7, tmp_path):
  out = tmp_path / 'cmp'
  args = _sweep_args(small_rsscn7, out)
  res = _compare(*args, check=True)
  assert '0 finished runs read, 4 runs trained, 0 failed' in res.stdout
  with open(out / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert [(r['dataset'], r['method'], r['bits']) for r in rows] == [
      ('folder', 'lsh', '8'), ('folder', 'lsh', '16'),
      ('folder', 'ahcl', '8'), ('folder', 'ahcl', '16')]
  for r in rows:
    assert 0 < float(r['map@all']) <= 1 and float(r['wall_seconds']) > 0
    assert r['commit'] and r['command'].startswith('python -m hashjax.main')
  assert rows[0]['map@R'] and not rows[2]['map@R']   # LSH reports mAP@R.
  md = (out / 'results.md').read_text()
  assert '## folder: mAP@all' in md and '| lsh | ' in md and '| ahcl | ' in md
  assert (out / 'pr_folder.png').stat().st_size > 1000
  assert (out / 'map_vs_bits_folder.png').stat().st_size > 1000

  (out / 'folder' / 'ahcl_8b' / 'results.json').unlink()
  res = _compare(*args, check=True)
  assert '3 finished runs read, 1 run trained, 0 failed' in res.stdout
  for name, starts in (('lsh_8b', 1), ('lsh_16b', 1), ('ahcl_8b', 2),
                       ('ahcl_16b', 1)):
    assert _starts(out / 'folder' / name / 'compare.log') == starts, name
  assert (out / 'folder' / 'ahcl_8b' / 'results.json').exists()


@pytest.mark.slow
def test_a_killed_sweep_resumes(small_rsscn7, tmp_path):
  out = tmp_path / 'cmp'
  args = _sweep_args(small_rsscn7, out, methods='lsh,ahcl', bits='8')
  proc = subprocess.Popen([sys.executable, '-m', 'hashjax.compare', *args],
                          cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  first = out / 'folder' / 'lsh_8b' / 'results.json'
  deadline = time.time() + 600
  while not first.exists():
    assert proc.poll() is None, 'the sweep ended before its first result'
    assert time.time() < deadline
    time.sleep(0.5)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  # The run that was under way stops with the sweep (no orphan keeps its
  # workdir); the rerun finishes it and reads the first.
  res = _compare(*args, check=True)
  assert '1 finished run read, 1 run trained, 0 failed' in res.stdout
  assert _starts(out / 'folder' / 'lsh_8b' / 'compare.log') == 1
  assert (out / 'folder' / 'ahcl_8b' / 'results.json').exists()
  with open(out / 'results.csv') as f:
    assert len(list(csv.DictReader(f))) == 2


def test_a_failing_run_is_reported_and_the_sweep_goes_on(tmp_path):
  """Both runs fail at once (no such data folder): each is named with its
  log and last lines, the tables are still written, the exit status is 1."""
  out = tmp_path / 'o'
  res = _compare('--methods=lsh,itq', '--bits=8', '--datasets=folder',
                 f'--data_root={tmp_path}/no_such_folder', '--variant=runlocal',
                 f'--out={out}')
  assert res.returncode == 1, res.stdout + res.stderr
  for name in ('lsh_8b', 'itq_8b'):
    log = out / 'folder' / name / 'compare.log'
    assert f'folder/{name}: FAILED; log: {log}' in res.stdout
    assert f'FAILED folder/{name}: see {log}' in res.stderr
  assert 'last lines:' in res.stdout and 'no_such_folder' in res.stdout
  assert '0 finished runs read, 0 runs trained, 2 failed' in res.stdout
  assert (out / 'results.csv').read_text().startswith('dataset,method,bits')


def test_a_run_stopped_by_sigint_stops_the_sweep(tmp_path):
  """A run that ends by SIGINT (sent to it alone, or to a sweep started in
  the background, whose shell makes compare ignore SIGINT) stops the sweep:
  the next run is not started."""
  method = compare.Method(label='lsh', slug='lsh', config_path='configs/lsh.py',
                          args='')
  kill_self = ('-c', 'import os, signal; os.kill(os.getpid(), signal.SIGINT)')
  entries = [compare.Entry(position=i, dataset='d', method=method, bits=8,
                           workdir=str(tmp_path / f'run{i}'), argv=kill_self)
             for i in (1, 2)]
  with pytest.raises(KeyboardInterrupt):
    compare.sweep(entries, out=lambda s: None)
  log = (tmp_path / 'run1' / 'compare.log').read_text()
  assert f'exit status {-signal.SIGINT}' in log
  assert not (tmp_path / 'run2').exists()
