"""The retrieval service under load: image and id queries over HTTP against
a 10^6-code index, side by side with the encoder's own throughput and with
today's one-process-per-query command.

  pip install -e ".[serve]"; apt-get install wrk
  python bench/serve.py --index=runs/rsscn7.hjidx [--n=1000000] \
      [--clients=1,8,32] [--seconds=15]

The index (a real run's, e.g. the README's quickstart) is copied and grown
to --n codes with uniformly random ones (random labels, ids random/NNNNNNN),
so the search scans a 10^6-code archive while the images are encoded by the
run's real network. Then, one run:

  1. the encoder alone (no server running): batches of 1 and 32 images
     through the run's network (the service's own encode step), images/s:
     the ceiling for image queries on this machine. As this machine's
     speed drifts, the ratio of image queries/s at the most clients to it
     comes from --rounds rounds of (the encoder alone for 5 s while the
     server idles, then the service for 10 s), side by side;
  2. `python -m hashjax.serve` with micro-batching (its defaults), then
     without it (--max_batch=1). wrk (a C load generator, one connection
     per client, the next request as soon as the answer arrives) sends for
     --seconds, after 2 s of warm-up: image queries as a browser sends them
     (a form upload of a bundled RSSCN7 JPEG, k=10), image queries with the
     file as the body, and queries by id (search only). Latency p50/p99,
     queries/s, and the mean batch the server formed;
  3. `python -m hashjax.search --query=IMG` three times: a process per query.

Every answer is checked by wrk's script (status 200 and k results); any
other answer or socket error is counted in "failed". wrk shares the
machine's cores with the server: the figures are for the whole system.
"""
import argparse
import json
import os
import pathlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
BUNDLED = REPO / 'hashjax' / 'data' / 'bundled' / 'rsscn7_64'


def grow_index(src, dst, n):
  """Copies index `src` to `dst` and appends random codes up to n."""
  from hashjax.archive import index as index_lib  # pylint: disable=g-import-not-at-top
  shutil.copy(src, dst)
  idx = index_lib.load(dst)
  extra = n - len(idx)
  if extra > 0:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2, (extra, idx.bits), dtype=np.int8) * 2 - 1
    labels = None
    if idx.labels is not None:
      labels = np.eye(idx.labels.shape[1], dtype=np.float32)[
          rng.integers(0, idx.labels.shape[1], extra)]
    index_lib.append(dst, codes, [f'random/{i:07d}' for i in range(extra)],
                     labels=labels, allow_other_network=True)
  return index_lib.load(dst, verify=False)


class Encoder:
  """The run's encode step (the service's own) in this process: images/s
  on batches of prepared images (compiled first), as the trainer's
  inference measures it."""

  def __init__(self, index_path):
    from hashjax import retriever  # pylint: disable=g-import-not-at-top
    self.r = retriever.Retriever.load(index=index_path)

  def rate(self, batch, seconds):
    size = self.r.run.config.input.image_size
    x = np.random.default_rng(0).integers(0, 255, (batch, size, size, 3),
                                          dtype=np.uint8)
    self.r.encode_prepared(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
      self.r.encode_prepared(x)
      n += batch
    return n / (time.perf_counter() - t0)


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class Server:
  """python -m hashjax.serve in a subprocess, ready when /api/health is."""

  def __init__(self, index_path, max_batch, log, extra=()):
    import httpx  # pylint: disable=g-import-not-at-top
    self.port = free_port()
    self.url = f'http://127.0.0.1:{self.port}'
    env = dict(os.environ, PYTHONPATH=str(REPO))
    self.proc = subprocess.Popen(
        [sys.executable, '-m', 'hashjax.serve', f'--index={index_path}',
         f'--port={self.port}', f'--max_batch={max_batch}', *extra],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    t0 = time.time()
    while True:
      if self.proc.poll() is not None:
        raise RuntimeError(f'the server exited; see {log.name}')
      try:
        if httpx.get(self.url + '/api/health').status_code == 200:
          break
      except httpx.TransportError:
        pass
      if time.time() - t0 > 600:
        raise RuntimeError('the server did not start in 10 minutes')
      time.sleep(0.5)
    self.start_s = time.time() - t0

  def stats(self):
    import httpx  # pylint: disable=g-import-not-at-top
    return httpx.get(self.url + '/api/stats').json()

  def stop(self):
    self.proc.terminate()
    try:
      self.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
      self.proc.kill()


_LUA = r"""
local paths = {%(paths)s}
local bodies = {}
for i, p in ipairs(paths) do
  local f = io.open(p, "rb"); bodies[i] = f:read("*a"); f:close()
end
local n = 0
bad = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function request()
  n = n + 1
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "%(ctype)s"},
                    bodies[(n %% #bodies) + 1])
end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"count":%(k)d,', 1, true) then
    bad = bad + 1
  end
end
function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%.3f %%.3f %%d %%d\n",
      summary.requests, summary.duration, latency:percentile(50) / 1000,
      latency:percentile(99) / 1000, b,
      e.connect + e.read + e.write + e.timeout))
end
"""

KINDS = ('image (form)', 'image (body)', 'id')


def write_script(folder, kind, images, ids, k):
  """Request bodies as files, and the wrk script that sends them in turn
  and counts every answer that is not a 200 with k results."""
  os.makedirs(folder, exist_ok=True)
  if kind == 'id':
    path, ctype = '/api/search', 'application/json'
    blobs = [json.dumps({'id': item, 'k': k}).encode() for item in ids]
  elif kind == 'image (form)':    # as a browser uploads it
    boundary = 'hashjaxbench7d1f'
    path = f'/api/search/image?k={k}'
    ctype = f'multipart/form-data; boundary={boundary}'
    blobs = [(f'--{boundary}\r\nContent-Disposition: form-data; name="file";'
              f' filename="{name}"\r\nContent-Type: image/jpeg\r\n\r\n'
              ).encode() + data + f'\r\n--{boundary}--\r\n'.encode()
             for name, data in images]
  else:                           # the file itself as the body
    path, ctype = f'/api/search/image?k={k}', 'image/jpeg'
    blobs = [data for _, data in images]
  paths = []
  for i, blob in enumerate(blobs):
    paths.append(os.path.join(folder, f'{i}.bin'))
    with open(paths[-1], 'wb') as f:
      f.write(blob)
  script = os.path.join(folder, 'load.lua')
  with open(script, 'w') as f:
    f.write(_LUA % dict(paths=','.join(f'"{p}"' for p in paths), path=path,
                        ctype=ctype, k=k))
  return script


def wrk(url, script, clients, seconds):
  """queries/s, p50/p99 ms and failures (bad answers + socket errors)."""
  out = subprocess.run(
      ['wrk', '-t1', f'-c{clients}', f'-d{seconds}s', '--timeout', '60s',
       '-s', script, url], check=True, capture_output=True, text=True).stdout
  line = next(l for l in out.splitlines() if l.startswith('RESULT'))
  n, micros, p50, p99, bad, errors = line.split()[1:]
  return dict(requests=int(n), qps=int(n) / (int(micros) / 1e6),
              p50=float(p50), p99=float(p99), failures=int(bad) + int(errors))


def run_point(server, script, clients, seconds):
  wrk(server.url, script, clients, 2)    # warm-up, not counted
  before = server.stats()['batching']
  out = wrk(server.url, script, clients, int(seconds))
  after = server.stats()['batching']
  batches = after['batches'] - before['batches']
  out['mean_batch'] = ((after['queries'] - before['queries']) / batches
                       if batches else 0.0)
  return out

def command_query(index_path, image, times=3):
  """Seconds per query of `python -m hashjax.search` (a process each)."""
  env = dict(os.environ, PYTHONPATH=str(REPO))
  out = []
  for _ in range(times):
    t0 = time.perf_counter()
    subprocess.run([sys.executable, '-m', 'hashjax.search',
                    f'--index={index_path}', f'--query={image}', '--k=10'],
                   check=True, capture_output=True, env=env, cwd=str(REPO))
    out.append(time.perf_counter() - t0)
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--index', required=True,
                 help="a real run's index (python -m hashjax.search "
                 '--workdir=RUN --out=FILE)')
  p.add_argument('--n', type=int, default=1_000_000)
  p.add_argument('--clients', default='1,8,32')
  p.add_argument('--seconds', type=float, default=15.0)
  p.add_argument('--rounds', type=int, default=3,
                 help='encoder / service rounds for the ratio')
  p.add_argument('--keep', default='', help='keep the grown index here')
  p.add_argument('--server_args', default='',
                 help='more flags for hashjax.serve, space-separated')
  a = p.parse_args()
  clients = [int(c) for c in a.clients.split(',')]
  tmp = tempfile.mkdtemp(prefix='bench_serve_')
  path = a.keep or os.path.join(tmp, 'bench.hjidx')
  t0 = time.perf_counter()
  if not (a.keep and os.path.exists(path)):
    grow_index(a.index, path, a.n)
  from hashjax.archive import index as index_lib  # pylint: disable=g-import-not-at-top
  idx = index_lib.load(path, verify=False)
  built = time.perf_counter() - t0
  print(f'index: {len(idx):,} codes of {idx.bits} bits ({built:.0f}s to '
        f'build), run {idx.source.get("workdir")}', flush=True)
  files = sorted(BUNDLED.glob('*/*.jpg'))
  random.Random(0).shuffle(files)
  images = [(f.name, f.read_bytes()) for f in files[:256]]
  rng = np.random.default_rng(1)
  ids = [idx.ids[i] for i in rng.integers(0, len(idx), 4096)]

  encoder = Encoder(path)
  enc = {b: encoder.rate(b, min(a.seconds, 10.0)) for b in (1, 32)}
  print(f'encoder: {enc[1]:.1f} img/s at batch 1, {enc[32]:.1f} img/s at '
        'batch 32', flush=True)
  top = max(clients)
  rounds = []
  if not shutil.which('wrk'):
    sys.exit('bench/serve.py needs wrk: apt-get install wrk')
  scripts = {kind: write_script(os.path.join(tmp, str(i)), kind, images, ids,
                                10) for i, kind in enumerate(KINDS)}
  rows = []
  log = open(os.path.join(tmp, 'serve.log'), 'w')
  for batching, max_batch in (('on', 32), ('off', 1)):
    server = Server(path, max_batch, log, a.server_args.split())
    print(f'server (max_batch={max_batch}) ready in {server.start_s:.0f}s',
          flush=True)
    try:
      kinds = KINDS if batching == 'on' else KINDS[:1]
      for kind in kinds:
        for c in clients:
          r = run_point(server, scripts[kind], c, a.seconds)
          rows.append(dict(kind=kind, batching=batching, clients=c, **r))
          print(f'  {kind:12s} batching {batching:3s} clients {c:2d}: '
                f'{r["qps"]:7.1f} q/s, p50 {r["p50"]:6.1f} ms, p99 '
                f'{r["p99"]:6.1f} ms, mean batch {r["mean_batch"]:.1f}, '
                f'{r["failures"]} failed', flush=True)
      if batching == 'on':
        # The ratio to the encoder, on a shared machine whose speed drifts:
        # rounds of (the encoder alone with the server idle, then the
        # service), side by side.
        for i in range(a.rounds):
          row = dict(encoder=encoder.rate(32, 5))
          for kind in KINDS[:2]:
            row[kind] = run_point(server, scripts[kind], top, 10)['qps']
          rounds.append(row)
          print(f'  round {i + 1}: encoder {row["encoder"]:.1f} img/s, '
                + ', '.join(f'{k} {row[k]:.1f} q/s' for k in KINDS[:2]),
                flush=True)
    finally:
      server.stop()
  cli = command_query(path, str(files[0]))
  log.close()

  print(f'\n## Service benchmark: {len(idx):,} x {idx.bits}-bit index, '
        f'{os.cpu_count()} CPU cores, k=10, {a.seconds:.0f} s per point\n')
  print('| query | micro-batching | clients | queries/s | p50 ms | p99 ms | '
        'mean batch | failed |')
  print('|---|---|---:|---:|---:|---:|---:|---:|')
  for r in rows:
    print(f'| {r["kind"]} | {r["batching"]} | {r["clients"]} | '
          f'{r["qps"]:.1f} | {r["p50"]:.1f} | {r["p99"]:.1f} | '
          f'{r["mean_batch"]:.1f} | {r["failures"]} |')
  print(f'| image, `python -m hashjax.search` (a process each) | - | 1 '
        f'| {1 / np.mean(cli):.2f} | {np.median(cli) * 1e3:.0f} | '
        f'{max(cli) * 1e3:.0f} | - | 0 |')
  print(f'| encoder alone, batch 1 / batch 32 (images/s) | - | - | '
        f'{enc[1]:.1f} / {enc[32]:.1f} | | | | |')

  print(f'\nRounds, {top} clients: the encoder alone (batch 32, server idle),'
        ' then the service, 10 s each:\n')
  print('| round | encoder img/s | ' + ' | '.join(
      f'{k} q/s | ratio' for k in KINDS[:2]) + ' |')
  print('|---:|---:|' + '---:|---:|' * 2)
  ratios = {k: [] for k in KINDS[:2]}
  for i, row in enumerate(rounds, 1):
    cells = []
    for k in KINDS[:2]:
      ratios[k].append(row[k] / row['encoder'])
      cells.append(f'{row[k]:.1f} | {ratios[k][-1]:.2f}')
    print(f'| {i} | {row["encoder"]:.1f} | ' + ' | '.join(cells) + ' |')

  def pick(kind, batching, c):
    return next((r for r in rows if r['kind'] == kind and
                 r['batching'] == batching and r['clients'] == c), None)

  print('\n| target | measured | met |')
  print('|---|---|---|')
  one = pick('image (form)', 'on', 1)
  if one:
    print(f'| image query, 1 client: p99 < 100 ms | {one["p99"]:.1f} ms | '
          f'{"yes" if one["p99"] < 100 else "NO"} |')
  for k in KINDS[:2]:
    if ratios[k]:
      m = float(np.median(ratios[k]))
      print(f'| {k} queries/s, {top} clients >= 0.8 x encoder batch 32 '
            f'(median of {len(ratios[k])} rounds) | '
            + ', '.join(f'{x:.2f}' for x in ratios[k]) + f' -> {m:.2f} x | '
            f'{"yes" if m >= 0.8 else "NO"} |')
  many, off = pick('image (form)', 'on', top), pick('image (form)', 'off', top)
  if many and off:
    print(f'| micro-batching on vs off, {top} clients | '
          f'{many["qps"]:.1f} vs {off["qps"]:.1f} q/s = '
          f'{many["qps"] / off["qps"]:.2f} x | - |')
  by_id = pick('id', 'on', top)
  if by_id:
    print(f'| query by id, {top} clients >= 500/s | {by_id["qps"]:.1f} q/s | '
          f'{"yes" if by_id["qps"] >= 500 else "NO"} |')
  if one:
    print(f'| service vs a process per query, 1 client | '
          f'{np.mean(cli) * 1e3:.0f} ms vs {one["p50"]:.1f} ms (p50) = '
          f'{np.mean(cli) * 1e3 / one["p50"]:.0f} x | - |')
  shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
  main()
