"""Tests for hashjax.evaluation.ranking against a slow loop reference."""

import json

import numpy as np
import pytest

from hashjax.evaluation import ranking


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
