"""Tests for hashjax.evaluation.ranking against a slow loop reference."""

import json

import numpy as np
import pytest

from hashjax.evaluation import ranking
from hashjax.evaluation import ranking_numba


def _reference(q_codes, db_codes, q_labels, db_labels, topk, precision_at):
  """Obviously-correct, slow metrics: Python loops, one query at a time."""
  num_q, bits = q_codes.shape
  num_db = db_codes.shape[0]
  ap_all, ap_top, p_at = [], {k: [] for k in topk}, {k: [] for k in
                                                     precision_at}
  prec_sum = [0.0] * (bits + 1)
  prec_n = [0] * (bits + 1)
  rec_sum = [0.0] * (bits + 1)
  rec_n = 0
  for i in range(num_q):
    d = [int(np.sum(q_codes[i] != db_codes[j])) for j in range(num_db)]
    rel = [bool(np.dot(q_labels[i], db_labels[j]) > 0) for j in range(num_db)]
    order = sorted(range(num_db), key=lambda j: (d[j], j))
    ranked = [rel[j] for j in order]

    def ap(cut, ranked=ranked):
      hits, terms = 0, []
      for pos in range(min(cut, num_db)):
        if ranked[pos]:
          hits += 1
          terms.append(hits / (pos + 1))
      return sum(terms) / len(terms) if terms else 0.0

    ap_all.append(ap(num_db))
    for k in topk:
      ap_top[k].append(ap(k))
    for k in precision_at:
      kk = min(k, num_db)
      p_at[k].append(sum(ranked[:kk]) / kk)

    n_rel = sum(rel)
    if n_rel:
      rec_n += 1
    for r in range(bits + 1):
      got = [j for j in range(num_db) if d[j] <= r]
      got_rel = sum(rel[j] for j in got)
      if got:
        prec_sum[r] += got_rel / len(got)
        prec_n[r] += 1
      if n_rel:
        rec_sum[r] += got_rel / n_rel

  out = {'map@all': sum(ap_all) / num_q}
  for k in topk:
    out[f'map@{k}'] = sum(ap_top[k]) / num_q
  for k in precision_at:
    out[f'p@{k}'] = sum(p_at[k]) / num_q
  out['precision'] = [s / n if n else None for s, n in zip(prec_sum, prec_n)]
  out['recall'] = [s / rec_n if rec_n else None for s in rec_sum]
  out['queries_with_results'] = prec_n
  out['num_queries_with_relevant'] = rec_n
  return out


def _random_problem(seed, num_q=40, num_db=300, bits=8, num_classes=5):
  rng = np.random.default_rng(seed)
  q_codes = rng.choice([-1, 1], size=(num_q, bits)).astype(np.int8)
  db_codes = rng.choice([-1, 1], size=(num_db, bits)).astype(np.int8)

  def labels(n):
    y = np.eye(num_classes)[rng.integers(num_classes, size=n)]
    # About a third of the items get a second class (multi-hot).
    extra = rng.random(n) < 0.3
    y[extra, rng.integers(num_classes, size=extra.sum())] = 1
    return y

  q_labels, db_labels = labels(num_q), labels(num_db)
  # A query whose class no database item has: it has no relevant item.
  q_labels[0] = 0
  q_labels[0, 0] = 1
  db_labels[:, 0] = 0
  return q_codes, db_codes, q_labels, db_labels


def _assert_close(a, b):
  assert a is None and b is None or a == pytest.approx(b, abs=1e-12)


@pytest.mark.parametrize('chunk_size', [1, 7, 40, 512])
def test_matches_reference_with_ties(chunk_size):
  q_codes, db_codes, q_labels, db_labels = _random_problem(0)
  topk, precision_at = (1, 10, 100, 1000), (1, 5, 50, 1000)
  got = ranking.retrieval_metrics(
      q_codes, db_codes, q_labels, db_labels, topk=topk,
      precision_at=precision_at, chunk_size=chunk_size)
  want = _reference(q_codes, db_codes, q_labels, db_labels, topk,
                    precision_at)
  for key in ['map@all'] + [f'map@{k}' for k in topk] + [
      f'p@{k}' for k in precision_at]:
    _assert_close(got[key], want[key])
  pr = got['pr_radius']
  assert pr['radius'] == list(range(9))
  assert pr['queries_with_results'] == want['queries_with_results']
  for key in ('precision', 'recall'):
    assert len(pr[key]) == 9
    for a, b in zip(pr[key], want[key]):
      _assert_close(a, b)
  assert got['num_queries'] == 40
  assert got['num_database'] == 300
  assert got['bits'] == 8
  assert got['num_queries_with_relevant'] == (
      want['num_queries_with_relevant'])
  assert 0 < got['num_queries_with_relevant'] < 40
  json.dumps(got)  # Plain Python types only.


def test_small_radius_has_queries_without_results():
  # 16-bit codes, tiny database: at radius 0 most queries retrieve nothing,
  # exercising the "mean over queries with results" rule.
  q_codes, db_codes, q_labels, db_labels = _random_problem(
      1, num_q=9, num_db=20, bits=16, num_classes=3)
  got = ranking.retrieval_metrics(q_codes, db_codes, q_labels, db_labels,
                                  chunk_size=4)
  want = _reference(q_codes, db_codes, q_labels, db_labels, (), ())
  assert got['pr_radius']['queries_with_results'][0] == 0
  assert got['pr_radius']['precision'][0] is None
  for key in ('precision', 'recall'):
    for a, b in zip(got['pr_radius'][key], want[key]):
      _assert_close(a, b)
  _assert_close(got['map@all'], want['map@all'])


def _one_query(db_distances, db_relevant, bits=4):
  """Codes realising the given distances to a single all-(+1) query."""
  q_codes = np.ones((1, bits), np.int8)
  db_codes = np.ones((len(db_distances), bits), np.int8)
  for j, d in enumerate(db_distances):
    db_codes[j, :d] = -1
  q_labels = np.array([[1, 0]])
  db_labels = np.array([[1, 0] if r else [0, 1] for r in db_relevant])
  return q_codes, db_codes, q_labels, db_labels


def test_hand_computed_tie_rule():
  # Distances [1, 0, 1, 2]; relevant items: 0 and 3.
  # Stable ranking by (distance, index): 1, 0, 2, 3 (item 0 precedes item 2
  # in the distance-1 tie because of its lower index).
  # Ranked relevance: F, T, F, T.
  # AP = (1/2 + 2/4) / 2 = 0.5.
  # Had the tie gone the other way (1, 2, 0, 3): F, F, T, T,
  # AP = (1/3 + 2/4) / 2 = 5/12 -- so the tie rule matters.
  args = _one_query([1, 0, 1, 2], [True, False, False, True])
  got = ranking.retrieval_metrics(*args, topk=(1, 2, 3), precision_at=(2, 3))
  assert got['map@all'] == pytest.approx(0.5, abs=1e-15)
  assert got['map@1'] == 0.0  # Top 1 = item 1, not relevant.
  assert got['map@2'] == pytest.approx(0.5, abs=1e-15)  # (1/2) / 1.
  assert got['map@3'] == pytest.approx(0.5, abs=1e-15)  # (1/2) / 1.
  assert got['p@2'] == pytest.approx(0.5, abs=1e-15)  # 1 of 2.
  assert got['p@3'] == pytest.approx(1 / 3, abs=1e-15)  # 1 of 3.
  pr = got['pr_radius']
  # Radius 0: {1} -> P 0/1, R 0/2. Radius 1: {1, 0, 2} -> P 1/3, R 1/2.
  # Radius >= 2: all four -> P 2/4, R 2/2.
  assert pr['precision'] == pytest.approx([0, 1 / 3, 0.5, 0.5, 0.5])
  assert pr['recall'] == pytest.approx([0, 0.5, 1, 1, 1])
  assert pr['queries_with_results'] == [1, 1, 1, 1, 1]


def test_tie_rule_other_order():
  # Same as above but the relevant tied item now has the higher index:
  # distances [1, 0, 1, 2], relevant items 2 and 3.
  # Ranking 1, 0, 2, 3 -> F, F, T, T; AP = (1/3 + 2/4) / 2 = 5/12.
  args = _one_query([1, 0, 1, 2], [False, False, True, True])
  got = ranking.retrieval_metrics(*args)
  assert got['map@all'] == pytest.approx(5 / 12, abs=1e-15)


def test_query_without_relevant_items_counts_as_zero():
  # Query 0 shares a class with items 0 and 1 (distances 0 and 1): AP = 1.
  # Query 1 has class 2, which no database item has: AP = 0, still counted.
  # mAP = (1 + 0) / 2 = 0.5.
  q_codes = np.array([[1, 1], [1, 1]])
  db_codes = np.array([[1, 1], [1, -1], [-1, -1]])
  q_labels = np.array([[1, 0, 0], [0, 0, 1]])
  db_labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]])
  got = ranking.retrieval_metrics(q_codes, db_codes, q_labels, db_labels,
                                  topk=(2,))
  assert got['map@all'] == pytest.approx(0.5)
  assert got['map@2'] == pytest.approx(0.5)
  assert got['num_queries_with_relevant'] == 1
  # Recall only averages over query 0: radius 0 -> 1/2, radius 1 -> 2/2.
  assert got['pr_radius']['recall'] == pytest.approx([0.5, 1, 1])
  # Precision averages over both queries (both retrieve something):
  # radius 0 -> (1/1 + 0/1) / 2, radius 1 -> (2/2 + 0) / 2,
  # radius 2 -> (2/3 + 0) / 2.
  assert got['pr_radius']['precision'] == pytest.approx([0.5, 0.5, 1 / 3])


def test_no_relevant_anywhere_gives_none_recall():
  q_codes = np.array([[1, -1]])
  db_codes = np.array([[1, 1], [-1, -1]])
  got = ranking.retrieval_metrics(q_codes, db_codes, [[1, 0]], [[0, 1],
                                                                [0, 1]])
  assert got['map@all'] == 0.0
  assert got['pr_radius']['recall'] == [None, None, None]
  assert got['pr_radius']['precision'] == [None, 0.0, 0.0]


def test_pieces():
  dist = np.array([[1, 0, 1, 2], [3, 3, 0, 3]])
  np.testing.assert_array_equal(
      ranking.rank(dist), [[1, 0, 2, 3], [2, 0, 1, 3]])
  # Large distances (not radix-sortable) follow the same tie rule.
  np.testing.assert_array_equal(
      ranking.rank(dist * 100_000), [[1, 0, 2, 3], [2, 0, 1, 3]])
  rel = ranking.relevance([[1, 0], [0, 1]], [[1, 0], [0, 1], [1, 1], [0, 0]])
  np.testing.assert_array_equal(
      rel, [[True, False, True, False], [False, True, True, False]])
  ranked = ranking.ranked_relevance(dist, rel)
  np.testing.assert_array_equal(
      ranked, [[False, True, True, False], [True, False, True, False]])
  # Row 0: hits at positions 2, 3 -> (1/2 + 2/3) / 2.
  # Row 1: hits at positions 1, 3 -> (1/1 + 2/3) / 2.
  np.testing.assert_allclose(
      ranking.average_precision(ranked), [7 / 12, 5 / 6])
  # Top 2: row 0 -> (1/2) / 1; row 1 -> (1/1) / 1.
  np.testing.assert_allclose(
      ranking.average_precision(ranked, k=2), [0.5, 1.0])
  np.testing.assert_allclose(ranking.precision_at_k(ranked, 3), [2 / 3, 2 / 3])
  retrieved, rel_retrieved = ranking.radius_counts(dist, rel, bits=3)
  np.testing.assert_array_equal(retrieved, [[1, 3, 4, 4], [1, 1, 1, 4]])
  np.testing.assert_array_equal(rel_retrieved, [[0, 2, 2, 2], [1, 1, 1, 2]])


def test_codes_any_dtype_and_128_bits():
  rng = np.random.default_rng(3)
  q = rng.choice([-1, 1], size=(5, 128)).astype(np.int8)
  db = np.concatenate([q, -q, rng.choice([-1, 1], size=(10, 128))])
  labels = np.eye(5)
  db_labels = np.concatenate([labels, labels, np.zeros((10, 5))])
  got = ranking.retrieval_metrics(q, db.astype(np.float64), labels, db_labels)
  # Each query's only relevant items are itself (distance 0, position 1)
  # and its complement (distance 128, last): AP = (1/1 + 2/20) / 2.
  assert got['map@all'] == pytest.approx((1 + 2 / 20) / 2)
  assert got['pr_radius']['queries_with_results'][0] == 5
  assert got['pr_radius']['recall'][0] == pytest.approx(0.5)
  assert got['pr_radius']['recall'][127] == pytest.approx(0.5)
  assert got['pr_radius']['recall'][128] == pytest.approx(1.0)


@pytest.mark.parametrize('change, message', [
    (dict(q_codes=np.zeros((0, 4))), 'Empty query set'),
    (dict(db_codes=np.zeros((0, 4)), db_labels=np.zeros((0, 2))),
     'Empty database'),
    (dict(db_codes=np.ones((3, 5))), 'Code lengths differ'),
    (dict(q_codes=np.array([[1, 0, 1, 1], [1, 1, 1, 1]])), r'\+1/-1'),
    (dict(db_labels=np.ones((2, 2))), 'db_labels has 2 rows'),
    (dict(q_labels=np.ones((2, 3))), 'Label widths differ'),
    (dict(q_labels=np.array([0, 1])), 'q_labels must be 2-D'),
    (dict(db_labels=-np.ones((3, 2))), 'non-negative'),
    (dict(topk=(0,)), 'topk'),
    (dict(precision_at=(2.5,)), 'precision_at'),
    (dict(chunk_size=0), 'chunk_size'),
])
def test_bad_inputs(change, message):
  kwargs = dict(q_codes=np.ones((2, 4)), db_codes=np.ones((3, 4)),
                q_labels=np.ones((2, 2)), db_labels=np.ones((3, 2)))
  kwargs.update(change)
  with pytest.raises(ValueError, match=message):
    ranking.retrieval_metrics(**kwargs)


@pytest.mark.slow
def test_save_pr_curve_writes_png(tmp_path):
  from hashjax.evaluation import plots  # pylint: disable=g-import-not-at-top
  metrics = ranking.retrieval_metrics(*_random_problem(2))
  for name, arg in [('one.png', metrics), ('pr.png', metrics['pr_radius']),
                    ('many.png', {8: metrics, '8 again': metrics})]:
    path = plots.save_pr_curve(arg, tmp_path / 'sub' / name, title='t')
    with open(path, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  with pytest.raises(ValueError, match='PR curve'):
    plots.save_pr_curve({'a': 1}, tmp_path / 'bad.png')


# --- Counting path, JAX backend, graded measures and PR by count. ---

OLD_KEYS_TOPK, OLD_KEYS_P = (1, 10, 100, 1000), (1, 5, 50, 1000)


def _one_hot_problem(seed, num_q=30, num_db=200, bits=6, num_classes=4):
  """Few bits and classes: many ties, single-label."""
  rng = np.random.default_rng(seed)
  q_codes = rng.choice([-1, 1], size=(num_q, bits)).astype(np.int8)
  db_codes = rng.choice([-1, 1], size=(num_db, bits)).astype(np.int8)
  eye = np.eye(num_classes)
  return (q_codes, db_codes, eye[rng.integers(num_classes, size=num_q)],
          eye[rng.integers(num_classes, size=num_db)])


def _old_keys(metrics):
  return {k: v for k, v in metrics.items()
          if k.startswith(('map@', 'p@', 'num_', 'bits', 'pr_radius'))}


@pytest.fixture(params=['vectorised', 'per_query', 'numba'])
def count_path(request, monkeypatch):
  """Runs a test through the three kernels of method='count': NumPy's
  vectorised chunks and per-query argsort (backend numpy), and the
  compiled counting pass (numba, the default when installed)."""
  if request.param == 'numba':
    if not ranking_numba.AVAILABLE:
      pytest.skip('numba is not installed (the `fast` extra)')
    return request.param
  monkeypatch.setattr(ranking_numba, 'place_relevant', None)
  if request.param == 'per_query':
    monkeypatch.setattr(ranking, 'PER_QUERY_MIN_DATABASE', 1)
  return request.param


@pytest.mark.parametrize('problem', [_random_problem, _one_hot_problem])
@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('chunk_size, num_threads', [(1, 1), (7, 2),
                                                     (None, 2)])
def test_count_is_bit_identical_to_sort(problem, seed, chunk_size,
                                        num_threads, count_path):
  del count_path
  args = problem(seed)
  want = ranking._reference_metrics(
      *args, topk=OLD_KEYS_TOPK, precision_at=OLD_KEYS_P)
  for method in ('count', 'sort'):
    got = ranking.retrieval_metrics(
        *args, topk=OLD_KEYS_TOPK, precision_at=OLD_KEYS_P,
        chunk_size=chunk_size, method=method, num_threads=num_threads)
    assert _old_keys(got) == want  # Exact float equality.


def test_count_128_bits_and_wide_labels(count_path):
  # Two code words and two label words (70 classes), multi-hot.
  del count_path
  rng = np.random.default_rng(5)
  q = rng.choice([-1, 1], size=(6, 130))
  db = np.concatenate([q, rng.choice([-1, 1], size=(40, 130))])
  q_labels = (rng.random((6, 70)) < 0.05).astype(float)
  db_labels = (rng.random((46, 70)) < 0.05).astype(float)
  db_labels[:6] = q_labels
  want = ranking._reference_metrics(q, db, q_labels, db_labels, topk=(3,),
                                    precision_at=(4,))
  got = ranking.retrieval_metrics(q, db, q_labels, db_labels, topk=(3,),
                                  precision_at=(4,))
  assert _old_keys(got) == want


def _graded_reference(q_codes, db_codes, q_labels, db_labels, topk):
  """Slow NDCG@K, ACG@K, wAP@K / @all and PR by count: explicit loops."""
  num_q, num_db = q_codes.shape[0], db_codes.shape[0]
  grid = ranking.pr_count_grid(num_db)
  sums = {f'{m}@{k}': 0.0 for k in topk for m in ('ndcg', 'acg', 'wap')}
  sums['wap@all'] = 0.0
  prec = [0.0] * len(grid)
  rec, rec_n = [0.0] * len(grid), 0
  for i in range(num_q):
    d = [int(np.sum(q_codes[i] != db_codes[j])) for j in range(num_db)]
    g = [int(np.sum((q_labels[i] > 0) & (db_labels[j] > 0)))
         for j in range(num_db)]
    order = np.argsort(d, kind='stable')  # Ties by index.
    ranked = [g[j] for j in order]

    def wap(cut, ranked=ranked):
      terms, cum = [], 0
      for p in range(min(cut, num_db)):
        cum += ranked[p]
        if ranked[p] > 0:
          terms.append(cum / (p + 1))  # ACG at position p + 1.
      return sum(terms) / len(terms) if terms else 0.0

    sums['wap@all'] += wap(num_db)
    ideal = sorted(g, reverse=True)
    for k in topk:
      kk = min(k, num_db)
      sums[f'wap@{k}'] += wap(k)
      sums[f'acg@{k}'] += sum(ranked[:kk]) / kk
      dcg = sum((2**ranked[p] - 1) / np.log2(p + 2) for p in range(kk))
      idcg = sum((2**ideal[p] - 1) / np.log2(p + 2) for p in range(kk))
      sums[f'ndcg@{k}'] += dcg / idcg if idcg else 0.0
    n_rel = sum(x > 0 for x in g)
    rec_n += n_rel > 0
    for c, n in enumerate(grid):
      got = sum(x > 0 for x in ranked[:n])
      prec[c] += got / n
      if n_rel:
        rec[c] += got / n_rel
  out = {k: v / num_q for k, v in sums.items()}
  out['pr_count'] = {'n': grid, 'precision': [p / num_q for p in prec],
                     'recall': [r / rec_n if rec_n else None for r in rec]}
  return out


@pytest.mark.parametrize('problem', [_random_problem, _one_hot_problem])
@pytest.mark.parametrize('method', ['count', 'sort'])
def test_graded_and_pr_count_match_reference(problem, method, count_path):
  del count_path
  args = problem(3)
  topk = (1, 7, 50, 1000)
  got = ranking.retrieval_metrics(*args, topk=topk, method=method,
                                  chunk_size=9)
  want = _graded_reference(*args, topk)
  for key, value in want.items():
    if key == 'pr_count':
      assert got[key]['n'] == value['n']
      for name in ('precision', 'recall'):
        for a, b in zip(got[key][name], value[name]):
          _assert_close(a, b)
    else:
      _assert_close(got[key], value)
  if problem is _one_hot_problem:
    # Gain 1 for every relevant item: ACG@K is P@K and wAP is mAP.
    ref = ranking.retrieval_metrics(*args, topk=topk, precision_at=topk)
    for k in topk:
      _assert_close(got[f'acg@{k}'], ref[f'p@{k}'])
      _assert_close(got[f'wap@{k}'], ref[f'map@{k}'])
    _assert_close(got['wap@all'], ref['map@all'])


def test_graded_hand_computed():
  # One query with labels {0, 1}; distances [1, 0, 1, 2]; item gains
  # (shared labels) [2, 0, 1, 1]. Ranking by (distance, index): 1, 0, 2, 3
  # -> gains 0, 2, 1, 1.
  q_codes = np.ones((1, 4), np.int8)
  db_codes = np.ones((4, 4), np.int8)
  for j, d in enumerate([1, 0, 1, 2]):
    db_codes[j, :d] = -1
  q_labels = np.array([[1, 1, 0]])
  db_labels = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 0]])
  got = ranking.retrieval_metrics(q_codes, db_codes, q_labels, db_labels,
                                  topk=(2, 4), precision_at=(2,))
  # ACG@2 = (0 + 2) / 2; ACG@4 = (0 + 2 + 1 + 1) / 4.
  assert got['acg@2'] == pytest.approx(1.0)
  assert got['acg@4'] == pytest.approx(1.0)
  # wAP: relevant at positions 2, 3, 4 with ACG 2/2, 3/3, 4/4 -> 1.
  assert got['wap@all'] == pytest.approx(1.0)
  assert got['wap@2'] == pytest.approx(1.0)
  # mAP: precisions 1/2, 2/3, 3/4.
  assert got['map@all'] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
  # NDCG@2: DCG = 0 + 3 / log2(3); ideal gains 2, 1: 3 + 1 / log2(3).
  assert got['ndcg@2'] == pytest.approx(
      (3 / np.log2(3)) / (3 + 1 / np.log2(3)))
  assert got['pr_count'] == {'n': [1, 2, 4], 'precision': [0.0, 0.5, 0.75],
                             'recall': [0.0, pytest.approx(1 / 3), 1.0]}


def test_pr_count_grid():
  assert ranking.pr_count_grid(1) == [1]
  assert ranking.pr_count_grid(2) == [1, 2]
  assert ranking.pr_count_grid(1000) == [1, 2, 5, 10, 20, 50, 100, 200,
                                         500, 1000]
  assert ranking.pr_count_grid(1234)[-3:] == [500, 1000, 1234]


@pytest.mark.parametrize('problem', [_random_problem, _one_hot_problem])
def test_jax_backend_matches_numpy(problem):
  args = problem(4)
  kwargs = dict(topk=(1, 10, 1000), precision_at=(3, 1000))
  want = ranking.retrieval_metrics(*args, **kwargs, backend='numpy')
  got = ranking.retrieval_metrics(*args, **kwargs, backend='jax',
                                  memory_budget=300 * 64 * 16)
  # Count-based results (P@K, PR curves) are identical; the sums behind
  # mAP / wAP / NDCG may differ in the last bits (XLA's summation order).
  assert set(got) == set(want)
  for key in want:
    if key.startswith(('map@', 'ndcg@', 'wap@')):
      assert got[key] == pytest.approx(want[key], rel=1e-13)
    else:
      assert got[key] == want[key], key


@pytest.mark.parametrize('change, message', [
    (dict(method='fast'), 'method'),
    (dict(backend='tpu'), 'backend'),
    (dict(num_threads=0), 'num_threads'),
])
def test_bad_options(change, message):
  with pytest.raises(ValueError, match=message):
    ranking.retrieval_metrics(np.ones((2, 4)), np.ones((3, 4)),
                              np.ones((2, 2)), np.ones((3, 2)), **change)


@pytest.mark.parametrize('kernel', ['numpy', 'numba'])
def test_edge_cases_through_the_per_query_path(kernel, monkeypatch):
  # The hand-computed cases above, through method='count''s per-query
  # implementations (NumPy's from 2**15 items or with multi-hot labels,
  # and the compiled one).
  if kernel == 'numba' and not ranking_numba.AVAILABLE:
    pytest.skip('numba is not installed (the `fast` extra)')
  if kernel == 'numpy':
    monkeypatch.setattr(ranking_numba, 'place_relevant', None)
  monkeypatch.setattr(ranking, 'PER_QUERY_MIN_DATABASE', 1)
  test_hand_computed_tie_rule()
  test_tie_rule_other_order()
  test_query_without_relevant_items_counts_as_zero()
  test_no_relevant_anywhere_gives_none_recall()
  test_codes_any_dtype_and_128_bits()
  test_graded_hand_computed()


@pytest.mark.parametrize('bits, num_classes', [(300, 3), (9, 300)])
def test_count_wide_codes_and_many_classes(bits, num_classes, count_path):
  # uint16 distances (> 255 bits) and uint16 gains (> 255 classes).
  del count_path
  rng = np.random.default_rng(6)
  q = rng.choice([-1, 1], size=(5, bits))
  db = rng.choice([-1, 1], size=(50, bits))
  q_labels = (rng.random((5, num_classes)) < 0.5).astype(float)
  db_labels = (rng.random((50, num_classes)) < 0.5).astype(float)
  want = ranking._reference_metrics(q, db, q_labels, db_labels, topk=(7,),
                                    precision_at=(7,))
  got = ranking.retrieval_metrics(q, db, q_labels, db_labels, topk=(7,),
                                  precision_at=(7,))
  assert _old_keys(got) == want
  graded = _graded_reference(q, db, q_labels, db_labels, (7,))
  for key in ('ndcg@7', 'acg@7', 'wap@7', 'wap@all'):
    _assert_close(got[key], graded[key])
