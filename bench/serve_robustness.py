"""The service against bad input and a killed writer, on a running server.

  python bench/serve_robustness.py --index=runs/rsscn7.hjidx \
      [--big=/tmp/bench1m.hjidx]

1. Starts `python -m hashjax.serve` on a copy of --index and sends every
   kind of bad request the service must survive: a non-image, a truncated
   JPEG, an empty and an oversized upload, a wrong form field, an unknown
   id, label or route, a code of the wrong length, a bad k or radius,
   malformed JSON, a path instead of a row. Prints each status and message,
   then checks that the server still answers a good query.
2. While the server answers queries without pause, `python -m
   hashjax.search --append` (another process) adds a folder of images to
   the served index and is killed with SIGKILL while it writes the new
   file. Then: the index loads with its checksums verified and holds the
   codes it held before; every query in the meantime was answered; the
   same append rerun completes, and the server serves the grown index.
   With --big (e.g. bench/serve.py's 10^6-code index, --keep) the write
   takes long enough to be caught half way every time.
"""
import argparse
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import httpx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import serve as bench_serve  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = bench_serve.REPO


def bad_requests(url, bits, good):
  """(what, response) for every bad request."""
  post, get = httpx.post, httpx.get

  def image(data, query='', ctype='image/jpeg'):
    return post(url + '/api/search/image' + query, content=data,
                headers={'content-type': ctype})

  def form(data, field='file'):
    return post(url + '/api/search/image', files={field: ('q.jpg', data)})

  def by(body):
    return post(url + '/api/search', json=body)

  return [
      ('a text file as the image', form(b'just some text, not an image')),
      ('a PDF as the image', image(b'%PDF-1.4\n...', ctype='application/pdf')),
      ('a truncated JPEG', form(good[:len(good) // 3])),
      ('an empty upload', form(b'')),
      ('an 11 MB upload', form(os.urandom(11 << 20))),
      ('the image in a field not named "file"', form(good, field='image')),
      ('k=0', image(good, '?k=0')),
      ('k=5000', image(good, '?k=5000')),
      ('k=ten', image(good, '?k=ten')),
      ('an unknown label filter', image(good, '?label=Beach')),
      ('radius=-1', image(good, '?radius=-1')),
      ('an unknown id', by({'id': 'no/such/scene.jpg'})),
      ('a path as the id', by({'id': '/etc/passwd'})),
      (f'a code of 4 bits ({bits} expected)', by({'code': '0101'})),
      ('a code with other characters than 0/1', by({'code': '2' * bits})),
      ('both an id and a code', by({'id': 'x', 'code': '0' * bits})),
      ('an unknown field', by({'code': '0' * bits, 'colour': 'red'})),
      ('a radius over the code length', by({'code': '0' * bits,
                                            'radius': bits + 1})),
      ('malformed JSON', post(url + '/api/search', content=b'{"id": ',
                              headers={'content-type': 'application/json'})),
      ('a row past the end', get(url + '/api/items/99999999/thumbnail')),
      ('a path instead of a row',
       get(url + '/api/items/%2Fetc%2Fpasswd/thumbnail')),
      ('a file name instead of a row', get(url + '/api/items/passwd')),
      ('an unknown route', get(url + '/static/../../etc/passwd')),
      ('DELETE on the search', httpx.delete(url + '/api/search')),
      ('adding items on a server started without --upload_dir',
       post(url + '/api/items', files={'files': ('n.jpg', good)})),
  ]


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--index', required=True, help="a real run's index")
  p.add_argument('--big', default='', help='serve this (larger) index for '
                 'the kill test instead (same run)')
  a = p.parse_args()
  tmp = pathlib.Path(tempfile.mkdtemp(prefix='serve_robust_'))
  log = open(tmp / 'serve.log', 'w')
  served = tmp / 'served.hjidx'
  shutil.copy(a.big or a.index, served)
  from hashjax.archive import index as index_lib  # pylint: disable=g-import-not-at-top
  idx = index_lib.load(str(served), verify=False)
  good = sorted((bench_serve.BUNDLED / 'cIndustry').glob('*.jpg'))[-1]
  server = bench_serve.Server(str(served), 32, log, ['--poll_s=0.2'])
  try:
    print(f'server on {len(idx):,} codes, ready in {server.start_s:.0f}s\n')
    print('| bad request | status | message |')
    print('|---|---:|---|')
    for what, r in bad_requests(server.url, idx.bits, good.read_bytes()):
      detail = r.json().get('detail', r.text)
      print(f'| {what} | {r.status_code} | {detail} |')
      assert 400 <= r.status_code < 500, (what, r.status_code)
    ok = httpx.post(server.url + '/api/search/image?k=5',
                    content=good.read_bytes(),
                    headers={'content-type': 'image/jpeg'})
    health = httpx.get(server.url + '/api/health').json()
    print(f'\nafterwards: a good query -> {ok.status_code}, '
          f'{ok.json()["count"]} results; health {health}')

    # -- an appending process killed while it writes -------------------
    new = tmp / 'new' / 'bField'
    new.parent.mkdir()
    shutil.copytree(bench_serve.BUNDLED / 'bField', new)
    for f in new.iterdir():
      f.rename(f.with_name('new_' + f.name))
    stop, seen, failed = threading.Event(), set(), []
    some_id = idx.ids[len(idx) // 2]

    def reader():
      with httpx.Client(base_url=server.url, timeout=60) as c:
        while not stop.is_set():
          r = c.post('/api/search', json={'id': some_id, 'k': 5})
          if r.status_code == 200:
            seen.add(r.json()['index_version'])
          else:
            failed.append(r.text)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
      t.start()
    command = [sys.executable, '-m', 'hashjax.search',
               f'--workdir={idx.source["workdir"]}', f'--images={new.parent}',
               f'--out={served}', '--append']
    env = dict(os.environ, PYTHONPATH=str(REPO))
    writer = subprocess.Popen(command, env=env, cwd=str(REPO),
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not list(tmp.glob('served.hjidx.*.tmp')):
      if writer.poll() is not None:
        sys.exit('the appender finished before it could be caught writing: '
                 'use --big (a larger index) so the write takes longer.')
      time.sleep(0.0005)
    partial = next(tmp.glob('served.hjidx.*.tmp'))
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    size = partial.stat().st_size if partial.exists() else 0
    print(f'\nappender (pid {writer.pid}) killed with SIGKILL '
          f'{time.time() - t0:.1f}s after it started, while writing '
          f'{partial.name} ({size:,} bytes so far)')
    t1 = time.time()
    after = index_lib.load(str(served))   # both checksums verified
    print(f'index after the kill: loads, checksums verified in '
          f'{time.time() - t1:.1f}s; {len(after):,} codes (before: '
          f'{len(idx):,}); the partial file was never the index')
    assert len(after) == len(idx)
    stats = httpx.get(server.url + '/api/stats').json()['index']
    print(f'server: still serving version {stats["version"]} with '
          f'{stats["count"]:,} codes; reload error: {stats["reload_error"]}')
    subprocess.run(command, env=env, cwd=str(REPO), check=True,
                   capture_output=True)
    grown = index_lib.load(str(served))
    deadline = time.time() + 60
    while httpx.get(server.url + '/api/stats').json()['index']['count'] != \
        len(grown):
      assert time.time() < deadline, 'the server never loaded the new index'
      time.sleep(0.2)
    stop.set()
    for t in readers:
      t.join()
    r = httpx.post(server.url + '/api/search',
                   json={'id': grown.ids[-1], 'k': 1}).json()
    print(f'the same append rerun: {len(grown) - len(idx)} codes added '
          f'({len(grown):,} in all); the server serves them (the last new '
          f'id finds itself at distance {r["results"][0]["distance"]}); '
          f'leftover partial files: '
          f'{len(list(tmp.glob("served.hjidx.*.tmp")))}')
    print(f'queries answered meanwhile by index versions {sorted(seen)}; '
          f'failed: {len(failed)}')
    assert not failed, failed[:3]
  finally:
    server.stop()
    log.close()
  shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
  main()
