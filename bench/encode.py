"""Archive encoding throughput against the trainer's own inference.

  python bench/encode.py --workdir=RUN [--images=DIR] [--rounds=2]
                         [--shard_sizes=65536,1024]

Side by side on the same encoder and images, interleaved rounds: the
trainer's inference (inference.encode over every image, as evaluation
encodes the database) and `hashjax/archive/encode.py` writing a sharded
index (listing without decoding, the pipeline that skips unreadable
images, shard files, manifest), at each shard size. Prints images/s and
the ratio archive / inference per round, then the median ratio per shard
size. Odd rounds time inference first, even rounds last (so a drift of the
machine's speed during a round does not favour one side). Both are compiled
before timing.
"""
import argparse
import os
import shutil
import tempfile
import time

import numpy as np

from hashjax import restore
from hashjax.archive import encode
from hashjax.data import sources


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--workdir', required=True)
  p.add_argument('--images', default=str(sources.BUNDLED['rsscn7_64']))
  p.add_argument('--rounds', type=int, default=2)
  p.add_argument('--shard_sizes', default='65536,1024')
  a = p.parse_args()
  run = restore.load(a.workdir)
  encoder = run.encoder()
  image_set = sources.for_archive(a.images)
  n = len(image_set)
  source = dict(workdir=os.path.abspath(a.workdir), step=run.step,
                method=run.config.method, bits=run.config.bits)
  encoder(image_set, np.arange(min(n, 256)))            # compile
  print(f'{n:,} images from {a.images}; {run.config.method} '
        f'{run.config.bits} bits, image size {run.config.input.image_size}, '
        f'eval batch {run.config.input.eval_batch_size}')
  print('| round | trainer inference img/s | ' + ' | '.join(
      f'archive encode, shards of {s} img/s (ratio)'
      for s in a.shard_sizes.split(',')) + ' |')
  print('|---|---|' + '---|' * len(a.shard_sizes.split(',')))
  sizes = [int(s) for s in a.shard_sizes.split(',')]
  ratios = {size: [] for size in sizes}

  def inference():
    t0 = time.perf_counter()
    encoder(image_set, np.arange(n))
    return n / (time.perf_counter() - t0)

  def archive(size):
    out = tempfile.mkdtemp(prefix='bench_encode_')
    try:
      t0 = time.perf_counter()
      encode.encode(encoder, image_set, os.path.join(out, 'idx'),
                    source=source, shard_size=size, log=lambda *_: None)
      return n / (time.perf_counter() - t0)
    finally:
      shutil.rmtree(out)

  for r in range(1, a.rounds + 1):
    base = inference() if r % 2 else None
    rates = [archive(size) for size in sizes]
    if base is None:
      base = inference()
    cells = []
    for size, rate in zip(sizes, rates):
      ratios[size].append(rate / base)
      cells.append(f'{rate:.1f} ({rate / base:.2f})')
    print(f'| {r} | {base:.1f} | ' + ' | '.join(cells) + ' |', flush=True)
  print('| median ratio | | ' + ' | '.join(
      f'{np.median(ratios[size]):.2f}' for size in sizes) + ' |')


if __name__ == '__main__':
  main()
