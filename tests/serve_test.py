"""The retrieval service (hashjax/serving/, hashjax/serve.py): answers equal
the exact search, every bad request gets a 4xx naming the problem and the
server keeps serving, queries are micro-batched, and the index grows while
served without a reader ever seeing a partial index (an appender killed
with SIGKILL mid-write included). The command is driven end to end in a
real browser (the distribution's chromium) in test_serve_command_*."""
import io
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from hashjax import Retriever
from hashjax.archive import index as index_lib
from tests.conftest import REPO

fastapi = pytest.importorskip('fastapi', reason='the serve extra')
from fastapi.testclient import TestClient  # pylint: disable=g-import-not-at-top,wrong-import-position
from hashjax.serving import app as app_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from hashjax.serving import engine as engine_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

pytestmark = pytest.mark.slow   # trains a tiny run (shared)

LIMIT = 300_000   # upload limit of the in-process app


@pytest.fixture(scope='module')
def served(tiny_index, tmp_path_factory):
  _, out = tiny_index
  root = tmp_path_factory.mktemp('served')
  path = str(root / 'served.hjidx')
  shutil.copy(out, path)
  engine = engine_lib.Engine(Retriever.load(index=path), max_batch=8,
                             max_wait_s=0.02, poll_s=0.05)
  engine.compile()
  client = TestClient(app_lib.create_app(
      engine, max_upload_bytes=LIMIT, upload_dir=str(root / 'uploads')))
  yield engine, client, path
  engine.close()


def _exact(index, code, k, rows=None):
  """The reference ranking: a stable sort of Hamming distances (ties by
  row), over `rows` (all by default)."""
  rows = np.arange(len(index)) if rows is None else np.asarray(rows)
  d = (index.codes(rows) != code[None]).sum(1)
  order = np.argsort(d, kind='stable')[:k]
  return rows[order].tolist(), d[order].tolist()


def _image(small_rsscn7, cls, i=-1):
  return sorted((small_rsscn7 / cls).iterdir())[i]


def test_image_query_equals_the_exact_search(served, small_rsscn7):
  engine, client, path = served
  query = _image(small_rsscn7, 'cIndustry')
  with open(query, 'rb') as f:
    r = client.post('/api/search/image?k=7&query_label=cIndustry',
                    files={'file': ('q.jpg', f, 'image/jpeg')})
  assert r.status_code == 200, r.text
  got = r.json()
  code = engine.retriever.encode([str(query)])[0]
  index = index_lib.load(path)
  rows, dist = _exact(index, code, 7)
  assert [h['row'] for h in got['results']] == rows
  assert [h['distance'] for h in got['results']] == dist
  assert [h['rank'] for h in got['results']] == list(range(1, 8))
  assert got['query']['code'] == engine_lib.format_code(code)
  # The image itself as the body: the same answer.
  raw = client.post('/api/search/image?k=7&query_label=cIndustry',
                    content=query.read_bytes(),
                    headers={'content-type': 'image/jpeg'})
  assert raw.json()['results'] == got['results']
  for h in got['results']:
    assert h['id'] == index.ids[h['row']]
    assert h['relevant'] == ('cIndustry' in h['labels'])
  # The thumbnail of a result is its image, small.
  t = client.get(got['results'][0]['thumbnail'])
  assert t.status_code == 200 and t.headers['content-type'] == 'image/jpeg'
  with Image.open(io.BytesIO(t.content)) as im:
    assert max(im.size) <= 160


def test_id_code_label_and_radius_queries(served):
  engine, client, path = served
  index = index_lib.load(path)
  row = 45
  r = client.post('/api/search', json={'id': index.ids[row], 'k': 9})
  assert r.status_code == 200, r.text
  got = r.json()
  code = index.codes([row])[0]
  assert [h['row'] for h in got['results']] == _exact(index, code, 9)[0]
  own = [index.class_names[j] for j in np.flatnonzero(index.labels[row])]
  assert got['query']['labels'] == own
  assert all(h['relevant'] == bool(set(h['labels']) & set(own))
             for h in got['results'])
  # The same code, as 0/1 text and as hex: the same answer.
  text = engine_lib.format_code(code)
  hexa = '0x' + format(sum(1 << j for j, c in enumerate(code) if c > 0),
                       f'0{engine.bits // 4}x')
  for c in (text, hexa):
    again = client.post('/api/search', json={'code': c, 'k': 9}).json()
    assert [h['row'] for h in again['results']] == \
        [h['row'] for h in got['results']]
  # A label filter ranks only that label's items: the exact top k of them.
  label = 'eForest'
  members = np.flatnonzero(index.labels[:, index.class_names.index(label)])
  f = client.post('/api/search', json={'code': text, 'k': 6,
                                       'label': label}).json()
  assert [h['row'] for h in f['results']] == _exact(index, code, 6,
                                                    members)[0]
  assert all(h['labels'] == [label] for h in f['results'])
  # A radius keeps the results within it.
  all_d = (index.codes() != code[None]).sum(1)
  radius = int(np.sort(all_d)[3])
  within = client.post('/api/search', json={'code': text, 'k': 1000,
                                            'radius': radius}).json()
  assert within['count'] == int((all_d <= radius).sum())
  assert max(h['distance'] for h in within['results']) <= radius


def test_every_bad_request_is_a_4xx_naming_it(served, small_rsscn7,
                                              tmp_path):
  engine, client, _ = served
  good = _image(small_rsscn7, 'aGrass').read_bytes()
  truncated = good[:len(good) // 3]
  tf_rejects = (REPO / 'tests' / 'data' / 'pil_ok_tf_bad.jpg').read_bytes()

  def image(data, query=''):
    return client.post('/api/search/image' + query,
                       files={'file': ('x.jpg', data, 'image/jpeg')})

  def by(body):
    return client.post('/api/search', json=body)

  cases = [
      (image(b'GIF89a not really'), 400, 'not a readable image'),
      (image(b'%PDF-1.4 hello'), 400, 'not a readable image'),
      (image(truncated), 400, 'not a readable image'),
      (image(tf_rejects), 400, 'not a readable image'),
      (image(b''), 400, 'empty'),
      (image(os.urandom(LIMIT + 10)), 413, 'upload limit'),
      (image(good, '?k=0'), 422, 'k must be'),
      (image(good, '?k=1001'), 422, 'k must be'),
      (image(good, '?k=ten'), 422, 'k'),
      (image(good, '?label=Beach'), 400, "Unknown label 'Beach'"),
      (image(good, '?radius=-1'), 422, 'radius'),
      (image(good, '?query_label=Beach'), 400, 'query_label'),
      (client.post('/api/search/image', files={'image': ('x.jpg', good)}),
       422, 'field named "file"'),
      (client.post('/api/search/image'), 400, 'empty'),
      (by({'id': 'no/such/item.jpg'}), 404, 'No item with id'),
      (by({'code': '0101'}), 400, f'{engine.bits} characters'),
      (by({'code': '0x12'}), 400, 'hex'),
      (by({'code': '2' * engine.bits}), 400, '0/1'),
      (by({}), 400, 'exactly one of'),
      (by({'id': 'a', 'code': '0'}), 400, 'exactly one of'),
      (by({'code': '0' * engine.bits, 'k': -3}), 422, 'k must be'),
      (by({'code': '0' * engine.bits, 'radius': engine.bits + 1}), 422,
       'radius'),
      (by({'code': '0' * engine.bits, 'colour': 'red'}), 422, 'colour'),
      (client.post('/api/search', content=b'{not json',
                   headers={'content-type': 'application/json'}), 422,
       'not valid JSON'),
      (client.get('/api/items/100000'), 404, 'No item at row'),
      (client.get('/api/items/-1/thumbnail'), 404, 'No item at row'),
      (client.get('/api/items/..%2F..%2Fetc%2Fpasswd/thumbnail'), 404,
       'No such page'),
      (client.get('/api/items/%2Fetc%2Fpasswd'), 404, 'No such page'),
      (client.get('/api/items/secret.txt'), 422, 'row'),
      (client.get('/static/../../etc/passwd'), 404, 'No such page'),
      (client.delete('/api/search'), 405, 'not allowed'),
      (client.post('/api/items', files={'files': ('x.jpg', b'junk')},
                   data={'labels': 'aGrass'}), 400, 'not a readable image'),
      (client.post('/api/items', files={'files': ('x.jpg', good)}), 400,
       'one label per image'),
  ]
  for response, status, text in cases:
    assert response.status_code == status, (status, text, response.text)
    assert text in response.json()['detail'], response.text
  # An item whose file is gone: 404 for its thumbnail, not a crash.
  # Nothing above changed the server: it answers as before.
  assert client.get('/api/health').json()['status'] == 'ok'
  assert image(good, '?k=3').status_code == 200
  assert engine.stats()['index']['reload_error'] is None


def test_concurrent_queries_are_micro_batched(served):
  engine, _, path = served
  index = index_lib.load(path)
  codes = index.codes(np.arange(0, 64, 2))
  single = [engine.search(engine_lib.Query('code', k=5, code=c)).rows
            for c in codes]
  before = engine.stats()['batching']
  futures = [None] * len(codes)
  # The threads submit together: started one by one on a busy machine,
  # each could otherwise arrive after the one before was answered alone
  # (a lone request does not wait), and no batch would hold two.
  together = threading.Barrier(len(codes))

  def submit(i):
    together.wait(timeout=60)
    futures[i] = engine.submit(engine_lib.Query('code', k=5, code=codes[i]))

  threads = [threading.Thread(target=submit, args=(i,))
             for i in range(len(codes))]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  answers = [f.result() for f in futures]
  after = engine.stats()['batching']
  assert [a.rows for a in answers] == single
  batches = after['batches'] - before['batches']
  assert batches < len(codes), after   # several queries per batch
  assert max(a.timing_ms['batch'] for a in answers) > 1


def test_add_items_through_the_api(served, small_rsscn7):
  engine, client, path = served
  before = len(index_lib.load(path))
  new = _image(small_rsscn7, 'gParking', 0)
  image = Image.open(new).rotate(90)   # a new scene, not a copy
  buf = io.BytesIO()
  image.save(buf, 'PNG')
  r = client.post('/api/items', files={'files': ('new.png', buf.getvalue())},
                  data={'labels': 'gParking'})
  assert r.status_code == 200, r.text
  new_id = r.json()['ids'][0]
  assert r.json()['count'] == before + 1
  assert os.path.isfile(new_id) and new_id.endswith('.png')
  index = index_lib.load(path)
  assert len(index) == before + 1 and index.ids[-1] == new_id
  hit = client.post('/api/search', json={'id': new_id, 'k': 1}).json()
  assert hit['results'][0]['distance'] == 0
  assert client.get(f'/api/items/{before}/thumbnail').status_code == 200
  again = client.post('/api/items', files={'files': ('n.png', buf.getvalue())},
                      data={'labels': 'gParking'})
  assert again.status_code == 409, again.text


_APPENDER = r'''
import sys, numpy as np
from hashjax.archive import index
path, bits, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
for n in range(1000):
  codes = rng.choice([-1, 1], size=(chunk, bits))
  ids = [f'appended/{n:04d}/{i:07d}/' + 'x' * 40 for i in range(chunk)]
  index.append(path, codes, ids, labels=np.eye(7)[rng.integers(0, 7, chunk)],
               allow_other_network=True)
  print(n, flush=True)
'''


def test_index_grows_while_served_and_survives_kill9(served, tmp_path):
  """Readers query without pause while another process appends big chunks
  and is killed with SIGKILL in the middle of writing: every answer comes
  from a complete index, and the file afterwards is the last complete
  version, checksums verified."""
  engine, client, path = served
  base = len(index_lib.load(path))
  chunk = 60_000
  stop = threading.Event()
  seen, errors = set(), []

  def reader():
    while not stop.is_set():
      r = client.post('/api/search', json={'code': '1' * engine.bits,
                                           'k': 3})
      if r.status_code != 200:
        errors.append(r.text)
      else:
        seen.add(r.json()['index_version'])

  threads = [threading.Thread(target=reader) for _ in range(2)]
  for t in threads:
    t.start()
  env = dict(os.environ, PYTHONPATH=str(REPO))
  proc = subprocess.Popen(
      [sys.executable, '-c', _APPENDER, path, str(engine.bits), str(chunk)],
      stdout=subprocess.PIPE, text=True, env=env)
  # Two appends complete, then kill it while it writes the third.
  for _ in range(2):
    assert proc.stdout.readline().strip()
  folder = pathlib.Path(path).parent
  deadline = time.time() + 60
  while not list(folder.glob('served.hjidx.*.tmp')):
    assert time.time() < deadline, 'the appender never wrote again'
    time.sleep(0.001)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  time.sleep(0.3)
  stop.set()
  for t in threads:
    t.join()
  assert not errors, errors[:3]
  left = list(folder.glob('served.hjidx.*.tmp'))
  index = index_lib.load(path)   # verifies both checksums
  done = (len(index) - base) // chunk
  assert len(index) == base + done * chunk and done >= 2
  assert left   # it was killed mid-write; its partial file never was the index
  engine.watcher.check()
  assert client.get('/api/stats').json()['index']['count'] == len(index)
  assert len(seen) >= 2   # the readers saw the index grow
  # The next writer removes the dead one's partial file.
  index_lib.append(path, np.ones((1, engine.bits)), ['one/more'],
                   labels=np.eye(7)[:1], allow_other_network=True)
  assert not list(folder.glob('served.hjidx.*.tmp'))


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _browser():
  """Selenium driving the distribution's chromium (never a downloaded
  browser). In CI (HASHJAX_REQUIRE_BROWSER=1) a missing one fails."""
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  binary = shutil.which('chromium') or shutil.which('chromium-browser')
  driver = shutil.which('chromedriver')
  if not (binary and driver):
    if os.environ.get('HASHJAX_REQUIRE_BROWSER'):
      pytest.fail('chromium and chromedriver are needed: apt-get install '
                  'chromium chromium-driver')
    pytest.skip('no chromium/chromedriver (apt-get install chromium '
                'chromium-driver)')
  os.environ['SE_OFFLINE'] = 'true'   # Selenium Manager downloads nothing
  options = webdriver.ChromeOptions()
  options.binary_location = binary
  for arg in ('--headless=new', '--no-sandbox', '--disable-gpu',
              '--disable-dev-shm-usage', '--window-size=1280,1000'):
    options.add_argument(arg)
  return webdriver.Chrome(service=Service(driver), options=options)


def test_serve_command_in_a_browser(tiny_index, small_rsscn7, tmp_path):
  """python -m hashjax.serve, then a real browser: upload a bundled image,
  see k thumbnails, click one, see its own results; then the index grows
  from another process while served."""
  import httpx  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.keys import Keys  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top
  root, out = tiny_index
  path = str(tmp_path / 'served.hjidx')
  shutil.copy(out, path)
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=str(REPO))
  log = open(tmp_path / 'serve.log', 'w')
  server = subprocess.Popen(
      [sys.executable, '-m', 'hashjax.serve', f'--index={path}',
       f'--port={port}', '--max_batch=4', '--poll_s=0.2'],
      stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
  url = f'http://127.0.0.1:{port}'
  try:
    deadline = time.time() + 240
    while True:
      assert server.poll() is None, (tmp_path / 'serve.log').read_text()
      try:
        if httpx.get(url + '/api/health').status_code == 200:
          break
      except httpx.TransportError:
        pass
      assert time.time() < deadline, 'the server did not start'
      time.sleep(0.5)
    schema = httpx.get(url + '/openapi.json').json()
    assert '/api/search/image' in schema['paths']
    # A real socket: an oversized body is refused before it is read.
    big = httpx.post(url + '/api/search/image',
                     files={'file': ('big.jpg', os.urandom(11 << 20))})
    assert big.status_code == 413 and 'upload limit' in big.json()['detail']

    browser = _browser()
    shots = pathlib.Path(os.environ.get('HASHJAX_SCREENSHOTS', tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    try:
      wait = WebDriverWait(browser, 60)
      browser.get(url + '/')
      wait.until(lambda b: 'items' in b.find_element(By.ID, 'stats').text)
      k = browser.find_element(By.ID, 'k')
      k.clear()
      k.send_keys('6')
      query = _image(small_rsscn7, 'dRiverLake')
      from selenium.webdriver.support.ui import Select  # pylint: disable=g-import-not-at-top
      Select(browser.find_element(By.ID, 'query-label')).select_by_value(
          'dRiverLake')
      browser.find_element(By.ID, 'file').send_keys(str(query))
      wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR,
                                               '#results .hit')) == 6)
      wait.until(lambda b: all(
          b.execute_script('return arguments[0].complete && '
                           'arguments[0].naturalWidth > 0', img)
          for img in b.find_elements(By.CSS_SELECTOR, '#results .hit img')))
      hits = browser.find_elements(By.CSS_SELECTOR, '#results .hit')
      assert 'results in' in browser.find_element(By.ID, 'time').text
      assert all(('relevant' in h.get_attribute('class')) for h in hits)
      browser.save_screenshot(str(shots / 'serve_upload.png'))
      clicked = hits[2].get_attribute('data-id')
      hits[2].click()
      wait.until(lambda b: clicked in b.find_element(
          By.ID, 'query-caption').text)
      wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR,
                                               '#results .hit')) == 6)
      first = browser.find_elements(By.CSS_SELECTOR, '#results .hit')[0]
      assert 'd=0' in first.text   # an item is nearest to itself (or a tie)
      wait.until(lambda b: all(
          b.execute_script('return arguments[0].complete && '
                           'arguments[0].naturalWidth > 0', img)
          for img in b.find_elements(By.CSS_SELECTOR, '#results .hit img')))
      browser.save_screenshot(str(shots / 'serve_more_like_this.png'))
      # A bad request from the page shows the server's message.
      k.clear()
      k.send_keys('5000')
      k.send_keys(Keys.TAB)   # 'change' fires: the page searches again
      wait.until(lambda b: 'k must be' in b.find_element(By.ID, 'error').text)
      browser.save_screenshot(str(shots / 'serve_error.png'))
    finally:
      browser.quit()

    # Another process appends a folder while the server runs.
    new = tmp_path / 'new'
    shutil.copytree(small_rsscn7 / 'bField', new / 'bField')
    for f in (new / 'bField').iterdir():
      f.rename(f.with_name('new_' + f.name))
    before = httpx.get(url + '/api/stats').json()['index']['count']
    subprocess.run([sys.executable, '-m', 'hashjax.search',
                    f'--workdir={root / "run"}', f'--images={new}',
                    f'--out={path}', '--append'], check=True, env=env,
                   cwd=str(REPO), capture_output=True)
    deadline = time.time() + 30
    while httpx.get(url + '/api/stats').json()['index']['count'] == before:
      assert time.time() < deadline, 'the server never saw the new index'
      time.sleep(0.2)
    new_id = index_lib.load(path).ids[-1]
    r = httpx.post(url + '/api/search', json={'id': new_id, 'k': 1})
    assert r.status_code == 200 and r.json()['results'][0]['distance'] == 0
  finally:
    server.send_signal(signal.SIGINT)
    try:
      server.wait(timeout=30)
    except subprocess.TimeoutExpired:
      server.kill()
    log.close()
  assert 'Traceback' not in (tmp_path / 'serve.log').read_text()
