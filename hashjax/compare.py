r"""The comparison table in one command: methods x bits x datasets.

  python -m hashjax.compare --methods=ahcl,lsh,itq --bits=16,32,64 \
      [--datasets=rsscn7_64] [--out=runs/compare] [--variant=runlocal] \
      [--data_root=PATH] [--shard=i/n] [--assemble_only] [--dry_run]

Each grid entry (dataset, method, bits) is one `python -m hashjax.main` run
in a fresh subprocess, one at a time, in `<out>/<dataset>/<method>_<bits>b`
(its output in `compare.log` there). A workdir with results.json is
finished and read, not redone; an unfinished one resumes from its own
checkpoint; a failing run is reported and the sweep goes on (exit status 1).
Then results.csv, results.md, pr_<dataset>.png and map_vs_bits_<dataset>.png
are written to --out from every finished run of the grid. docs/compare.md.

This is a command, not a library: it imports no training code (the runs
are subprocesses), nor JAX.
"""
import csv
import dataclasses
import datetime
import fcntl
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, 'configs')
DEFAULT_METHODS = ('ahcl,dgssh,mrhash,lsh,itq,sh,dpsh,hashnet,dsh,csq,adsh,'
                   'cibhash')
# Datasets whose images are read from data.root (--data_root).
ROOTED_DATASETS = ('folder', 'list')
_LOG_TAIL_LINES = 20
_LOCK_WAIT_SECONDS = 180
# Exit statuses of a run stopped by SIGINT: hashjax.main's own (130) and
# the signal's default action (-SIGINT).
_INTERRUPTED = (130, -signal.SIGINT)
FLAGS = flags.FLAGS

class UsageError(ValueError):
  """Bad command-line input: printed as one line, exit status 2."""


@dataclasses.dataclass(frozen=True)
class Method:
  label: str        # in tables and legends: 'ahcl', 'ahcl:released'.
  slug: str         # in the workdir name: 'ahcl', 'ahcl-released'.
  config_path: str  # as written in the command.
  args: str         # config arguments besides bits (may be '').


@dataclasses.dataclass(frozen=True)
class Entry:
  position: int
  dataset: str
  method: Method
  bits: int
  workdir: str
  argv: tuple      # the hashjax.main command line, after the interpreter.

  @property
  def name(self):
    return f'{self.dataset}/{self.method.slug}_{self.bits}b'

  @property
  def command(self):
    return shlex.join(('python',) + self.argv)


# ---------------------------------------------------------------- the grid


def available_methods():
  return sorted(f[:-3] for f in os.listdir(CONFIGS)
                if f.endswith('.py') and f not in ('__init__.py', 'common.py'))


def _display_path(path):
  """`path` relative to the working directory when under it."""
  rel = os.path.relpath(path)
  return path if rel.startswith('..') else rel


def parse_method(spec):
  """'ahcl' or 'configs/ahcl.py[:args]' -> Method."""
  spec = spec.strip()
  path, _, args = spec.partition(':')
  if path.endswith('.py'):
    if not os.path.isfile(path) and os.path.isfile(os.path.join(REPO, path)):
      path = _display_path(os.path.join(REPO, path))   # configs/x.py anywhere.
    if not os.path.isfile(path):
      raise UsageError(f'--methods: no config file {path!r}; available: '
                       f'{", ".join(available_methods())}.')
    base = os.path.basename(path)[:-3]
    config_path = path
  else:
    if args or path not in available_methods():
      raise UsageError(
          f'--methods: unknown method {spec!r}; available: '
          f'{", ".join(available_methods())} (or a config path such as '
          'configs/ahcl.py:released).')
    base = path
    config_path = _display_path(os.path.join(CONFIGS, f'{path}.py'))
  if re.search(r'(^|,)\s*bits\s*=', args):
    raise UsageError(f'--methods: {spec!r} sets bits; use --bits.')
  label = f'{base}:{args}' if args else base
  slug = re.sub(r'[^A-Za-z0-9_.-]+', '-', label.replace(':', '-')).strip('-')
  return Method(label=label, slug=slug, config_path=config_path, args=args)


def parse_bits(text):
  try:
    bits = [int(b) for b in text.split(',') if b.strip()]
  except ValueError:
    raise UsageError(f'--bits={text!r}: expected comma-separated positive '
                     'integers, e.g. 16,32,64.') from None
  if not bits or any(b <= 0 for b in bits):
    raise UsageError(f'--bits={text!r}: expected comma-separated positive '
                     'integers, e.g. 16,32,64.')
  if len(set(bits)) != len(bits):
    raise UsageError(f'--bits={text!r}: a bit length is repeated.')
  return bits


def parse_shard(text):
  """'i/n' -> (i, n) with 0 <= i < n."""
  m = re.fullmatch(r'\s*(\d+)\s*/\s*(\d+)\s*', text or '')
  if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
    raise UsageError(f'--shard={text!r}: expected i/n with 0 <= i < n, '
                     'e.g. 0/2 and 1/2 for two machines.')
  return int(m.group(1)), int(m.group(2))


def _split(text, what):
  items = [s.strip() for s in (text or '').split(',') if s.strip()]
  if not items:
    raise UsageError(f'--{what} is empty.')
  if len(set(items)) != len(items):
    raise UsageError(f'--{what}={text!r}: an entry is repeated.')
  return items


def _split_methods(text):
  """Commas separate methods, except inside a config's arguments: a piece
  without '.py' after a 'path.py:args' piece continues its arguments
  ('configs/ahcl.py:released,quick' is one method) unless it names a
  config (then it is the next method)."""
  pieces = [s.strip() for s in (text or '').split(',') if s.strip()]
  specs = []
  for piece in pieces:
    continues = (specs and ':' in specs[-1] and '.py' not in piece and
                 piece not in available_methods())
    if continues:
      specs[-1] += ',' + piece
    else:
      specs.append(piece)
  if not specs:
    raise UsageError('--methods is empty.')
  return specs


def build_grid(methods, bits, datasets, out, variant='', data_root=''):
  """All entries, ordered by dataset, then method (as given), then bits."""
  methods = [m if isinstance(m, Method) else parse_method(m) for m in methods]
  if len({m.slug for m in methods}) != len(methods):
    raise UsageError('--methods: a method is repeated.')
  grid = []
  for dataset in datasets:
    if dataset in ROOTED_DATASETS and not data_root:
      raise UsageError(f'--datasets={dataset} reads its images from '
                       '--data_root=PATH (config.data.root); none given.')
    for method in methods:
      for b in bits:
        args = ','.join(a for a in (f'bits={b}', method.args, variant) if a)
        workdir = os.path.join(out, dataset, f'{method.slug}_{b}b')
        argv = ['-m', 'hashjax.main',
                f'--config={method.config_path}:{args}',
                f'--config.data.name={dataset}']
        if dataset in ROOTED_DATASETS:
          argv.append(f'--config.data.root={data_root}')
        argv.append(f'--workdir={workdir}')
        grid.append(Entry(position=len(grid), dataset=dataset, method=method,
                          bits=b, workdir=workdir, argv=tuple(argv)))
  return grid


def shard_of(grid, index, count):
  return [e for e in grid if e.position % count == index]


# ---------------------------------------------------------------- running


def results_path(entry):
  return os.path.join(entry.workdir, 'results.json')


def read_results(entry):
  """The entry's results.json as a dict, or None when not finished."""
  try:
    with open(results_path(entry)) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    print(f'compare: warning: cannot read {results_path(entry)}: {e}',
          flush=True)
    return None


def _recorded_command(entry):
  try:
    with open(os.path.join(entry.workdir, 'compare.json')) as f:
      return json.load(f).get('command')
  except (OSError, ValueError):
    return None


def _set_parent_death_signal():
  """In the child: end with SIGINT (a clean stop, like Ctrl-C: checkpoints
  complete) when compare itself dies, e.g. killed with SIGKILL, so that no
  orphaned run keeps the workdir."""
  signal.signal(signal.SIGINT, signal.SIG_DFL)   # Python's handler installs.
  try:
    import ctypes  # pylint: disable=g-import-not-at-top
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGINT)   # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass


def _wait_for_writer(entry, seconds=_LOCK_WAIT_SECONDS):
  """Waits while another process (e.g. the run of a killed sweep, now
  stopping) holds the workdir's writer lock. True when free."""
  lock = os.path.join(entry.workdir, 'writer.lock')
  if not os.path.exists(lock):
    return True
  deadline = time.time() + seconds
  said = False
  while True:
    fd = os.open(lock, os.O_RDWR)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      fcntl.flock(fd, fcntl.LOCK_UN)
      return True
    except BlockingIOError:
      pass
    finally:
      os.close(fd)
    if time.time() > deadline:
      return False
    if not said:
      print(f'compare: {entry.workdir} is held by another process; waiting '
            f'up to {seconds}s for it to stop...', flush=True)
      said = True
    time.sleep(1)


def _tail(path, lines=_LOG_TAIL_LINES):
  try:
    with open(path, errors='replace') as f:
      return ''.join(f.readlines()[-lines:])
  except OSError:
    return ''


class _Child:
  """The running subprocess, for the SIGTERM handler."""
  proc = None


def _on_sigterm(signum, frame):
  del signum, frame
  if _Child.proc is not None and _Child.proc.poll() is None:
    _Child.proc.send_signal(signal.SIGINT)   # let it finish a checkpoint.
  raise KeyboardInterrupt


def run_entry(entry):
  """Runs one grid entry to its end. Returns (ok, log path)."""
  os.makedirs(entry.workdir, exist_ok=True)
  log = os.path.join(entry.workdir, 'compare.log')
  if not _wait_for_writer(entry):
    with open(log, 'a') as f:
      f.write(f'compare: {entry.workdir} stayed locked by another process.\n')
    return False, log
  with open(os.path.join(entry.workdir, 'compare.json'), 'w') as f:
    json.dump(dict(command=entry.command, position=entry.position), f)
  env = dict(os.environ)
  path = env.get('PYTHONPATH', '')
  if REPO not in path.split(os.pathsep):
    env['PYTHONPATH'] = os.pathsep.join(p for p in (REPO, path) if p)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  with open(log, 'a') as f:
    now = datetime.datetime.now().isoformat(timespec='seconds')
    f.write(f'==== compare: {now} start: {entry.command}\n')
    f.flush()
    proc = subprocess.Popen(
        [sys.executable, '-u', *entry.argv], stdout=f,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        preexec_fn=_set_parent_death_signal)
    _Child.proc = proc
    try:
      code = proc.wait()
    except KeyboardInterrupt:
      # Ctrl-C reached the run too (same process group); let it stop.
      try:
        code = proc.wait(timeout=120)
      except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        proc.wait()
      raise
    finally:
      _Child.proc = None
    now = datetime.datetime.now().isoformat(timespec='seconds')
    f.write(f'==== compare: {now} exit status {code}\n')
  if code in _INTERRUPTED:
    # The run was stopped by SIGINT that compare did not see (compare
    # started in the background by a shell ignores it): stop the sweep
    # too, as Ctrl-C would, rather than start the next run.
    raise KeyboardInterrupt
  return code == 0 and read_results(entry) is not None, log


def sweep(todo, out=print):
  """Runs the entries of `todo` (the grid or a shard of it) that are not
  finished.

  Returns a summary dict: read, trained, failed (list of (entry, log)).
  """
  read, trained, failed = [], [], []
  for i, entry in enumerate(todo):
    prefix = f'[{i + 1}/{len(todo)}] {entry.name}'
    if read_results(entry) is not None:
      recorded = _recorded_command(entry)
      if recorded and recorded != entry.command:
        out(f'{prefix}: warning: finished, but by another command:\n'
            f'    {recorded}\n  read anyway; use another --out to redo it.')
      else:
        out(f'{prefix}: finished; reading {results_path(entry)}')
      read.append(entry)
      continue
    resuming = os.path.isdir(os.path.join(entry.workdir, 'checkpoints'))
    out(f'{prefix}: {"resuming" if resuming else "training"} '
        f'(log: {os.path.join(entry.workdir, "compare.log")})')
    t0 = time.time()
    ok, log = run_entry(entry)
    if ok:
      out(f'{prefix}: done in {time.time() - t0:.0f}s')
      trained.append(entry)
    else:
      tail = _tail(log).rstrip('\n')
      out(f'{prefix}: FAILED; log: {log}\n  last lines:\n' +
          '\n'.join('    ' + line for line in tail.splitlines()))
      failed.append((entry, log))
  return dict(read=read, trained=trained, failed=failed)


# ---------------------------------------------------------------- tables


def _k_sort(key):
  tail = key.split('@', 1)[1]
  return (0, int(tail), '') if tail.isdigit() else (1, 0, tail)


def collect_rows(grid):
  """One dict per finished entry of the grid, in grid order."""
  rows = []
  for entry in grid:
    res = read_results(entry)
    if res is None:
      continue
    rows.append(dict(entry=entry, results=res,
                     command=_recorded_command(entry) or entry.command))
  return rows


def metric_columns(rows):
  """map@all, map@K..., map@R (when any run reports it), p@K..."""
  maps, precisions, has_r = set(), set(), False
  for row in rows:
    metrics = row['results'].get('metrics', {})
    r = metrics.get('R')
    for key in metrics:
      if re.fullmatch(r'map@\d+', key) and not (
          r is not None and key == f'map@{r}'):
        maps.add(key)
      elif re.fullmatch(r'p@\d+', key):
        precisions.add(key)
      elif key == 'map@R':
        has_r = True
  cols = ['map@all'] + sorted(maps, key=_k_sort)
  if has_r:
    cols += ['map@R']
  return cols + sorted(precisions, key=_k_sort)


def table(rows):
  """(header, list of value lists) of the results table."""
  cols = metric_columns(rows)
  header = ['dataset', 'method', 'bits'] + cols + [
      'wall_seconds', 'commit', 'command']
  values = []
  for row in rows:
    e, res = row['entry'], row['results']
    metrics = res.get('metrics', {})
    values.append([e.dataset, e.method.label, e.bits] +
                  [metrics.get(c) for c in cols] +
                  [res.get('wall_seconds'), res.get('commit', ''),
                   row['command']])
  return header, values


def _fmt(value, digits=4):
  if value is None:
    return ''
  if isinstance(value, float):
    return f'{value:.{digits}f}'
  return str(value)


def _md_cell(value, column=''):
  return _fmt(value, 1 if column == 'wall_seconds' else 4).replace('|', r'\|')


def write_csv(path, header, values):
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator='\n')
  w.writerow(header)
  for v in values:
    w.writerow(['' if x is None else x for x in v])
  _write_atomic(path, buf.getvalue())


def markdown(grid, rows, header, values):
  """results.md: the full table, then a method x bits pivot per dataset."""
  lines = ['# hashjax comparison', '',
           f'{len(rows)} of {len(grid)} runs finished; written by '
           f'`python -m hashjax.compare` on '
           f'{datetime.datetime.now().isoformat(timespec="seconds")}.', '']
  cmd_col = header.index('command')
  md_header = list(header)
  md_header[cmd_col] = 'command'
  lines.append('| ' + ' | '.join(md_header) + ' |')
  lines.append('|' + '|'.join(
      '---:' if h in ('bits', 'wall_seconds') or '@' in h else '---'
      for h in md_header) + '|')
  for v in values:
    cells = [_md_cell(x, h) for x, h in zip(v, header)]
    cells[cmd_col] = f'`{v[cmd_col]}`'
    lines.append('| ' + ' | '.join(cells) + ' |')
  finished = {r['entry'].position: r for r in rows}
  for dataset in dict.fromkeys(e.dataset for e in grid):
    entries = [e for e in grid if e.dataset == dataset]
    bits = list(dict.fromkeys(e.bits for e in entries))
    methods = list(dict.fromkeys(e.method for e in entries))
    lines += ['', f'## {dataset}: mAP@all', '',
              '| method | ' + ' | '.join(f'{b} bits' for b in bits) + ' |',
              '|---|' + '---:|' * len(bits)]
    for m in methods:
      cells = []
      for e in entries:
        if e.method != m:
          continue
        row = finished.get(e.position)
        value = row and row['results'].get('metrics', {}).get('map@all')
        cells.append(_fmt(value) if value is not None else '–')
      lines.append(f'| {m.label} | ' + ' | '.join(cells) + ' |')
  missing = [e for e in grid if e.position not in finished]
  if missing:
    lines += ['', 'Not finished (no results.json): ' +
              ', '.join(e.name for e in missing) + '.']
  return '\n'.join(lines) + '\n'


def _write_atomic(path, text):
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


# ---------------------------------------------------------------- figures


def _figure(size):
  from matplotlib.backends import backend_agg  # pylint: disable=g-import-not-at-top
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  fig = mpl_figure.Figure(figsize=size, layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  return fig


def _style(index):
  """Colour and line style of the index-th method: the ten colours, then
  the same colours dashed, so that 12 methods stay apart."""
  return dict(color=f'C{index % 10}',
              linestyle=('-', '--', '-.', ':')[index // 10 % 4])


def _save(fig, path):
  tmp = f'{path}.tmp{os.getpid()}.png'
  fig.savefig(tmp, format='png', dpi=120)
  os.replace(tmp, path)


def pr_figure(dataset, rows, path):
  """Precision-recall by Hamming radius: one line per method at its
  largest finished bit length. Returns the path, or None without curves."""
  best = {}
  for row in rows:
    e = row['entry']
    if e.dataset == dataset and 'pr_radius' in row['results'].get(
        'metrics', {}):
      if e.method not in best or e.bits > best[e.method]['entry'].bits:
        best[e.method] = row
  if not best:
    return None
  fig = _figure((6.5, 5))
  ax = fig.subplots()
  for index, (method, row) in enumerate(best.items()):
    pr = row['results']['metrics']['pr_radius']
    pairs = [(r, p) for r, p in zip(pr['recall'], pr['precision'])
             if r is not None and p is not None]
    if not pairs:
      continue
    ax.plot([r for r, _ in pairs], [p for _, p in pairs], marker='.',
            markersize=4, **_style(index),
            label=f'{method.label} ({row["entry"].bits} bits)')
  ax.set(xlabel='recall', ylabel='precision', xlim=(-0.02, 1.02),
         ylim=(-0.02, 1.02),
         title=f'{dataset}: PR curve by Hamming radius')
  ax.grid(alpha=0.3)
  ax.legend(loc='best', fontsize=8)
  _save(fig, path)
  return path


def map_vs_bits_figure(dataset, rows, path):
  """mAP@all against the code length, one line per method."""
  lines = {}
  for row in rows:
    e = row['entry']
    value = row['results'].get('metrics', {}).get('map@all')
    if e.dataset == dataset and value is not None:
      lines.setdefault(e.method, []).append((e.bits, value))
  if not lines:
    return None
  fig = _figure((6.5, 5))
  ax = fig.subplots()
  all_bits = set()
  for index, (method, points) in enumerate(lines.items()):
    points.sort()
    all_bits.update(b for b, _ in points)
    ax.plot([b for b, _ in points], [v for _, v in points], marker='o',
            **_style(index), label=method.label)
  ax.set_xscale('log', base=2)
  ax.set_xticks(sorted(all_bits), [str(b) for b in sorted(all_bits)])
  ax.minorticks_off()
  ax.set(xlabel='bits', ylabel='mAP@all', ylim=(-0.02, 1.02),
         title=f'{dataset}: mAP@all vs. code length')
  ax.grid(alpha=0.3)
  ax.legend(loc='best', fontsize=8)
  _save(fig, path)
  return path


def assemble(grid, out_dir):
  """Writes the tables and figures of the finished runs; returns the paths
  written and the rows."""
  rows = collect_rows(grid)
  header, values = table(rows)
  written = []
  path = os.path.join(out_dir, 'results.csv')
  write_csv(path, header, values)
  written.append(path)
  path = os.path.join(out_dir, 'results.md')
  _write_atomic(path, markdown(grid, rows, header, values))
  written.append(path)
  for dataset in dict.fromkeys(e.dataset for e in grid):
    for make, name in ((pr_figure, 'pr'), (map_vs_bits_figure, 'map_vs_bits')):
      path = make(dataset, rows, os.path.join(out_dir, f'{name}_{dataset}.png'))
      if path:
        written.append(path)
  return written, rows


# ---------------------------------------------------------------- command


def check_writable(out, create=True):
  """UsageError unless `out` is (or can be made) a writable folder."""
  if not out:
    raise UsageError('--out is empty.')
  existing = os.path.abspath(out)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if existing != os.path.abspath(out) and not os.path.isdir(existing):
    raise UsageError(f'--out={out!r}: {existing!r} is not a folder.')
  if not os.path.isdir(existing):
    raise UsageError(f'--out={out!r} is not a folder.')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise UsageError(f'--out={out!r} is not writable ({existing!r} is not).')
  if create:
    try:
      os.makedirs(out, exist_ok=True)
      probe = os.path.join(out, f'.compare_probe{os.getpid()}')
      with open(probe, 'w'):
        pass
      os.remove(probe)
    except OSError as e:
      raise UsageError(f'--out={out!r} is not writable: {e}.') from None


def grid_from_flags():
  methods = [parse_method(s) for s in _split_methods(FLAGS.methods)]
  bits = parse_bits(FLAGS.bits)
  datasets = _split(FLAGS.datasets, 'datasets')
  shard = parse_shard(FLAGS.shard)
  variant = FLAGS.variant.strip().strip(',')
  if re.search(r'(^|,)\s*bits\s*=', variant):
    raise UsageError('--variant sets bits; use --bits.')
  grid = build_grid(methods, bits, datasets, FLAGS.out, variant,
                    FLAGS.data_root)
  return grid, shard


def run(argv):
  if len(argv) > 1:
    raise UsageError(f'unexpected arguments {argv[1:]}.')
  grid, (index, count) = grid_from_flags()
  todo = shard_of(grid, index, count)
  out_dir = FLAGS.out
  check_writable(out_dir, create=not FLAGS.dry_run)
  if FLAGS.dry_run:
    shard = f' (shard {index}/{count}: {len(todo)} of them)' if count > 1 else ''
    print(f'{len(grid)} runs in the grid{shard}; out: {out_dir}')
    for e in todo:
      state = 'finished' if read_results(e) is not None else 'to run'
      print(f'[{e.position}] {e.name} ({state}): {e.command}')
    return 0
  t0 = time.time()
  summary = dict(read=[e for e in todo if read_results(e) is not None],
                 trained=[], failed=[])
  if not FLAGS.assemble_only:
    shard = f', shard {index}/{count}' if count > 1 else ''
    print(f'compare: {len(todo)} of {len(grid)} runs{shard}, one at a time; '
          f'out: {out_dir}', flush=True)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
      summary = sweep(todo, out=lambda s: print(s, flush=True))
    except KeyboardInterrupt:
      print('compare: interrupted. Finished runs are kept and an unfinished '
            "one resumes from its checkpoint: rerun the same command.",
            file=sys.stderr, flush=True)
      return 130
  written, rows = assemble(grid, out_dir)
  read, trained, failed = (len(summary['read']), len(summary['trained']),
                           len(summary['failed']))
  print(f'compare: {read} finished run{"s" * (read != 1)} read, {trained} '
        f'run{"s" * (trained != 1)} trained, {failed} failed; '
        f'{len(rows)} of {len(grid)} grid runs in the tables '
        f'({time.time() - t0:.0f}s).')
  for path in written:
    print(f'  {path}')
  for entry, log in summary['failed']:
    print(f'compare: FAILED {entry.name}: see {log}', file=sys.stderr)
  return 1 if failed else 0


def main(argv):
  try:
    code = run(argv)
  except UsageError as e:
    print(f'hashjax.compare: error: {e}', file=sys.stderr)
    code = 2
  sys.stdout.flush()
  sys.exit(code)


def _define_flags():
  """The command's flags, defined only when run as a program (so importing
  hashjax.compare next to the other commands defines no flag twice)."""
  flags.DEFINE_string(
      'methods', DEFAULT_METHODS,
      'Comma-separated configs: names of configs/<name>.py, or config paths '
      'with arguments (configs/ahcl.py:released).')
  flags.DEFINE_string('bits', '16,32,64', 'Comma-separated code lengths.')
  flags.DEFINE_string(
      'datasets', 'rsscn7_64', 'Comma-separated values of config.data.name.')
  flags.DEFINE_string(
      'data_root', '', 'config.data.root for the folder/list datasets.')
  flags.DEFINE_string('out', 'runs/compare',
                      'Folder of the runs and of the tables/figures.')
  flags.DEFINE_string(
      'variant', '', 'Config argument(s) appended to every config, e.g. '
      'runlocal for a smoke sweep.')
  flags.DEFINE_string(
      'shard', '0/1', 'i/n: run only the grid entries whose position % n == i.')
  flags.DEFINE_bool(
      'assemble_only', False,
      'Train nothing: build the tables and figures from the finished runs.')
  flags.DEFINE_bool('dry_run', False,
                    'Print the grid and the commands; run nothing.')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
