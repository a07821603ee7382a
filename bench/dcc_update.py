"""DCC update of the database codes (bank.dcc_update), sharded along the
database axis, for N database items x 64 bits on 1 and 8 (fake) devices.

  python bench/dcc_update.py [--sizes=10000,100000,1000000] [--bits=64]

Each device count runs in its own process (XLA fixes it at start). The
bank V, the stored outputs U (the round's sampled rows, zero elsewhere)
and the labels are split along 'data'; one full sweep over the bits is
timed (median of 3, after a compiling call). Prints a table with the
8-device / 1-device time ratio. On this 2-core CPU 8 fake devices share
2 cores, so the ratio shows the sharded program's overhead, not a speed-up.
"""
import argparse
import json
import os
import subprocess
import sys
import time


def child(sizes, bits, sampled, classes):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from hashjax import bank, parallel  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  rows, repl = parallel.data_sharded(mesh), parallel.replicated(mesh)
  update = jax.jit(
      lambda v, u, y, r: bank.dcc_update(v, u, y, y, r, lam=200.0),
      in_shardings=(rows, rows, rows, repl), out_shardings=rows)
  out = []
  for n in sizes:
    rng = np.random.default_rng(0)
    u = np.zeros((n, bits), np.float32)
    pick = rng.choice(n, min(sampled, n), replace=False)
    u[pick] = np.tanh(rng.normal(size=(len(pick), bits)))
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    v = jax.device_put(np.zeros((n, bits), np.float32), rows)
    u, y = jax.device_put(u, rows), jax.device_put(y, rows)
    r = jnp.float32(1.0)
    v = update(v, u, y, r).block_until_ready()   # compile + first sweep
    times = []
    for _ in range(3):
      t0 = time.perf_counter()
      v = update(v, u, y, r).block_until_ready()
      times.append(time.perf_counter() - t0)
    assert set(np.unique(np.asarray(v))) <= {-1.0, 1.0}
    out.append(dict(n=n, devices=jax.device_count(),
                    seconds=float(np.median(times))))
  print('RESULT ' + json.dumps(out), flush=True)


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--sizes', default='10000,100000,1000000')
  p.add_argument('--bits', type=int, default=64)
  p.add_argument('--sampled', type=int, default=2000,
                 help='rows of U filled (the round sample)')
  p.add_argument('--classes', type=int, default=10)
  p.add_argument('--devices', default='1,8')
  p.add_argument('--child', action='store_true')
  a = p.parse_args()
  sizes = [int(s) for s in a.sizes.split(',')]
  if a.child:
    return child(sizes, a.bits, a.sampled, a.classes)
  results = {}
  for d in (int(x) for x in a.devices.split(',')):
    if any(n % d for n in sizes):
      sys.exit(f'every size must be divisible by {d} devices')
    env = dict(os.environ,
               XLA_FLAGS=f'--xla_force_host_platform_device_count={d}')
    proc = subprocess.run(
        [sys.executable, __file__, '--child', f'--sizes={a.sizes}',
         f'--bits={a.bits}', f'--sampled={a.sampled}',
         f'--classes={a.classes}'],
        env=env, capture_output=True, text=True, check=True)
    line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
    for row in json.loads(line[-1][len('RESULT '):]):
      results[(row['n'], d)] = row['seconds']
  devs = [int(x) for x in a.devices.split(',')]
  print(f'DCC update, {a.bits} bits, one sweep (median of 3), '
        f'{os.cpu_count()} CPU cores')
  print('| N | ' + ' | '.join(f'{d} device(s) s' for d in devs)
        + ' | ratio |')
  print('|---|' + '---|' * len(devs) + '---|')
  for n in sizes:
    t = [results[(n, d)] for d in devs]
    print(f'| {n:,} | ' + ' | '.join(f'{x:.3f}' for x in t)
          + f' | {t[-1] / t[0]:.2f}x |')


if __name__ == '__main__':
  main()
