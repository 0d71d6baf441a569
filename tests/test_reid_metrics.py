"""evaluate_reid / pairwise_distance against torchreid and against per-query references."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from evalsuite.metrics import REID_METRICS, MetricSpec, ReidScores, evaluate_reid, metric_spec, pairwise_distance, register_metric
from evalsuite.registry import METRICS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "Cython evaluation is unavailable"
    from torchreid.reid.metrics.distance import compute_distance_matrix
    from torchreid.reid.metrics.rank import evaluate_rank


# ---------------------------------------------------------------- references


def torchreid_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    return evaluate_rank(
        distmat, q_pids, g_pids, q_camids, g_camids, max_rank, use_metric_cuhk03=False, use_cython=False
    )


def _kept_matches(distmat, q_pids, g_pids, q_camids, g_camids):
    """Per query: boolean match vector over the kept gallery, in torchreid's ranking order."""
    indices = np.argsort(distmat, axis=1)
    for i in range(distmat.shape[0]):
        order = indices[i]
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        yield g_pids[order][keep] == q_pids[i]


def reference_minp(distmat, q_pids, g_pids, q_camids, g_camids):
    """Ye et al.'s mINP, one query at a time: num_matches / (rank of hardest match + 1)."""
    inps = []
    for matches in _kept_matches(distmat, q_pids, g_pids, q_camids, g_camids):
        if not matches.any():
            continue
        hardest = np.flatnonzero(matches).max()
        inps.append(matches.sum() / (hardest + 1.0))
    return float(np.mean(inps))


def official_compute_ap(good_rank_flags):
    """Literal port of the official Market-1501 ``compute_AP.m`` (junk already removed)."""
    ngood = int(good_rank_flags.sum())
    old_recall, old_precision, ap, intersect_size, j, good_now = 0.0, 1.0, 0.0, 0, 0, 0
    for is_good in good_rank_flags:
        if is_good:
            good_now += 1
            intersect_size += 1
        recall = intersect_size / ngood
        precision = intersect_size / (j + 1)
        ap += (recall - old_recall) * ((old_precision + precision) / 2)
        old_recall, old_precision = recall, precision
        j += 1
        if good_now == ngood:
            break
    return ap


def reference_map_official(distmat, q_pids, g_pids, q_camids, g_camids):
    aps = [
        official_compute_ap(m)
        for m in _kept_matches(distmat, q_pids, g_pids, q_camids, g_camids)
        if m.any()
    ]
    return float(np.mean(aps))


def assert_matches_references(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, **kw) -> ReidScores:
    scores = evaluate_reid(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, **kw)
    cmc, mAP = torchreid_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    np.testing.assert_allclose(scores.cmc, cmc, rtol=0, atol=1e-6)
    np.testing.assert_allclose(scores.mAP, mAP, rtol=0, atol=1e-6)
    for k, value in ((1, scores.rank1), (5, scores.rank5), (10, scores.rank10)):
        if k <= len(cmc):
            np.testing.assert_allclose(value, cmc[k - 1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(scores.mINP, reference_minp(distmat, q_pids, g_pids, q_camids, g_camids), atol=1e-9)
    np.testing.assert_allclose(
        scores.mAP_official, reference_map_official(distmat, q_pids, g_pids, q_camids, g_camids), atol=1e-9
    )
    assert scores.mAP_official <= scores.mAP + 1e-12
    assert 0 < scores.mINP <= 1
    return scores


# ---------------------------------------------------------------- data


def make_ids(rng, num_q, num_g, num_ids, num_cams, distractors=0):
    q_pids = rng.integers(1, num_ids + 1, num_q)
    g_pids = np.concatenate([rng.integers(1, num_ids + 1, num_g - distractors), np.zeros(distractors, int)])
    q_camids = rng.integers(0, num_cams, num_q)
    g_camids = rng.integers(0, num_cams, num_g)
    return q_pids, g_pids, q_camids, g_camids


def features_distmat(rng, q_pids, g_pids, signal=1.0, dim=16):
    """Distances of noisy identity features: pids share a centre, ``signal`` sets separation."""
    centres = rng.normal(size=(max(q_pids.max(), g_pids.max()) + 1, dim))
    q = signal * centres[q_pids] + rng.normal(size=(len(q_pids), dim))
    g = signal * centres[g_pids] + rng.normal(size=(len(g_pids), dim))
    return ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)


# ---------------------------------------------------------------- evaluate_reid


def test_hand_computed_example():
    # ranking: good, bad, same-camera junk, good, bad
    distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    g_pids = np.array([7, 3, 7, 7, 4])
    g_camids = np.array([1, 1, 0, 2, 1])
    s = evaluate_reid(distmat, np.array([7]), g_pids, np.array([0]), g_camids, max_rank=4)
    # kept ranking: good, bad, good, bad -> hits at ranks 1 and 3
    np.testing.assert_allclose(s.cmc, [1, 1, 1, 1])
    assert s.mAP == pytest.approx((1 + 2 / 3) / 2)
    assert s.mAP_official == pytest.approx((1.0 + (1 / 2 + 2 / 3) / 2) / 2)
    assert s.mINP == pytest.approx(2 / 3)
    assert s.num_valid_queries == 1
    assert s.as_dict() == {"rank1": 1.0, "rank5": 1.0, "rank10": 1.0, "mAP": s.mAP, "mAP_official": s.mAP_official, "mINP": s.mINP}


@pytest.mark.parametrize("seed", range(4))
def test_random_float_matrix_matches_torchreid(seed):
    rng = np.random.default_rng(seed)
    num_q, num_g = 40 + 7 * seed, 250 + 13 * seed
    ids = make_ids(rng, num_q, num_g, num_ids=25, num_cams=4)
    distmat = rng.random((num_q, num_g)).astype(np.float32 if seed % 2 else np.float64)
    assert_matches_references(distmat, *ids, chunk_size=16)


@pytest.mark.parametrize("signal", [0.5, 2.0, 6.0])
def test_feature_distances_match_torchreid(signal):
    rng = np.random.default_rng(10)
    ids = make_ids(rng, 60, 300, num_ids=30, num_cams=6, distractors=40)
    distmat = features_distmat(rng, ids[0], ids[1], signal=signal)
    scores = assert_matches_references(distmat, *ids, chunk_size=7)
    if signal == 6.0:
        assert scores.rank1 > 0.9


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int32])
@pytest.mark.parametrize("levels", [2, 3, 10])
def test_integer_distances_with_many_ties(dtype, levels):
    rng = np.random.default_rng(levels)
    ids = make_ids(rng, 50, 400, num_ids=15, num_cams=3)
    distmat = rng.integers(0, levels, size=(50, 400)).astype(dtype)
    assert_matches_references(distmat, *ids, chunk_size=9)


def test_all_distances_equal():
    rng = np.random.default_rng(3)
    ids = make_ids(rng, 30, 200, num_ids=10, num_cams=3)
    assert_matches_references(np.zeros((30, 200)), *ids, chunk_size=4)


def test_near_perfect_and_adversarial_orderings():
    rng = np.random.default_rng(4)
    q_pids, g_pids, q_camids, g_camids = make_ids(rng, 40, 300, num_ids=20, num_cams=5, distractors=30)
    same = (q_pids[:, None] == g_pids[None, :]).astype(float)
    perfect = (1 - same) * 10 + rng.integers(0, 3, same.shape)  # matches first, tied blocks
    s = assert_matches_references(perfect, q_pids, g_pids, q_camids, g_camids, chunk_size=8)
    assert s.rank1 == 1.0 and s.mAP == pytest.approx(1.0) and s.mINP == pytest.approx(1.0)
    assert s.mAP_official == pytest.approx(1.0)
    # one impostor per query beats the matches: not perfect any more, official AP strictly lower
    near = perfect.copy()
    near[np.arange(40), np.argmin(same + rng.random(same.shape), axis=1)] = -1
    s = assert_matches_references(near, q_pids, g_pids, q_camids, g_camids, chunk_size=8)
    assert s.rank1 == 0.0 and s.rank5 == 1.0 and s.mAP_official < s.mAP
    adversarial = same * 10 + rng.integers(0, 2, same.shape)  # matches last
    s = assert_matches_references(adversarial, q_pids, g_pids, q_camids, g_camids, chunk_size=8)
    assert s.rank10 == 0.0 and s.mAP < 0.1


def test_queries_without_valid_match_are_skipped():
    rng = np.random.default_rng(5)
    q_pids, g_pids, q_camids, g_camids = make_ids(rng, 40, 300, num_ids=20, num_cams=4)
    # pid 99: two queries in camera 2, its gallery images all in camera 2 -> nothing to retrieve
    q_pids[:2], q_camids[:2] = 99, 2
    g_pids[:5], g_camids[:5] = 99, 2
    # pid 98: query whose pid is absent from the gallery
    q_pids[2] = 98
    distmat = rng.random((40, 300))
    s = assert_matches_references(distmat, q_pids, g_pids, q_camids, g_camids, chunk_size=3)
    assert s.num_queries == 40
    assert s.num_valid_queries == 37


def test_no_valid_query_raises():
    distmat = np.random.default_rng(0).random((3, 60))
    g_pids = np.array([1, 2, 3] * 20)
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_reid(distmat, np.array([1, 2, 3]), g_pids, np.zeros(3, int), np.zeros(60, int))
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_reid(distmat, np.array([7, 8, 9]), g_pids, np.zeros(3, int), np.ones(60, int))


def test_distractors_are_kept_in_the_gallery():
    rng = np.random.default_rng(6)
    ids = make_ids(rng, 40, 300, num_ids=20, num_cams=6, distractors=100)
    distmat = features_distmat(rng, ids[0], ids[1], signal=1.0)
    distmat[:, -100:] -= distmat.max()  # distractors rank first: they must count as non-matches
    s = assert_matches_references(distmat, *ids)
    assert s.rank1 == 0.0


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 16, 45, 46, 1000])
def test_chunk_size_does_not_change_the_result(chunk_size):
    rng = np.random.default_rng(7)
    ids = make_ids(rng, 45, 200, num_ids=12, num_cams=3, distractors=20)
    distmat = rng.integers(0, 4, size=(45, 200)).astype(np.float32)  # ties everywhere
    expected = evaluate_reid(distmat, *ids, chunk_size=45)
    got = evaluate_reid(distmat, *ids, chunk_size=chunk_size)
    assert np.array_equal(got.cmc, expected.cmc)
    assert got == expected  # every scalar field, bit for bit
    assert_matches_references(distmat, *ids, chunk_size=chunk_size)


def test_torch_inputs_and_non_contiguous_matrix():
    rng = np.random.default_rng(8)
    ids = make_ids(rng, 30, 120, num_ids=10, num_cams=3)
    distmat = rng.integers(0, 5, size=(30, 120)).astype(np.float32)
    expected = evaluate_reid(distmat, *ids)
    got = evaluate_reid(torch.from_numpy(distmat), *(torch.from_numpy(x) for x in ids), chunk_size=7)
    assert got == expected and np.array_equal(got.cmc, expected.cmc)
    fortran = np.asfortranarray(distmat)
    assert evaluate_reid(fortran, *ids, chunk_size=4) == expected


def test_small_gallery_clips_max_rank_like_torchreid():
    rng = np.random.default_rng(9)
    q_pids = rng.integers(0, 5, 20)
    g_pids = np.arange(8) % 5
    q_camids, g_camids = np.zeros(20, int), np.ones(8, int)  # nothing removed
    distmat = rng.random((20, 8))
    s = assert_matches_references(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50)
    assert s.cmc.shape == (8,)
    assert s.rank10 == 1.0
    assert evaluate_reid(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=3).cmc.shape == (3,)


def test_cmc_shape_bounds_and_monotonicity():
    rng = np.random.default_rng(11)
    ids = make_ids(rng, 50, 300, num_ids=20, num_cams=4)
    s = evaluate_reid(rng.random((50, 300)), *ids, max_rank=20)
    assert s.cmc.shape == (20,)
    assert np.all(np.diff(s.cmc) >= 0) and 0 <= s.cmc[0] and s.cmc[-1] <= 1
    assert not s.cmc.flags.writeable
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in s.as_dict().values())
    assert list(s.as_dict()) == list(REID_METRICS)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_rank": 0}, "max_rank"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_arguments(kwargs, message):
    ids = make_ids(np.random.default_rng(0), 4, 10, 3, 2)
    with pytest.raises(ValueError, match=message):
        evaluate_reid(np.zeros((4, 10)), *ids, **kwargs)


def test_bad_shapes():
    ids = make_ids(np.random.default_rng(0), 4, 10, 3, 2)
    with pytest.raises(ValueError, match="2-D"):
        evaluate_reid(np.zeros(10), *ids)
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_reid(np.zeros((4, 10)), ids[0], ids[1][:9], ids[2], ids[3])


# ---------------------------------------------------------------- counting path, argsort fallback, ties


def assert_same_scores(a: ReidScores, b: ReidScores) -> None:
    """Every field, the CMC and the per-query outputs, bit for bit."""
    assert a == b and np.array_equal(a.cmc, b.cmc) and np.array_equal(a.valid_queries, b.valid_queries)
    assert a.per_query.keys() == b.per_query.keys()
    for key in a.per_query:
        assert a.per_query[key].dtype == b.per_query[key].dtype
        assert np.array_equal(a.per_query[key], b.per_query[key]), key


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8])
@pytest.mark.parametrize("levels", [2, 7, 100, None])
def test_count_and_argsort_methods_agree_bit_for_bit(dtype, levels):
    rng = np.random.default_rng(20 + (levels or 0))
    ids = make_ids(rng, 60, 500, num_ids=20, num_cams=4, distractors=50)
    if levels is None:  # (nearly) tie-free
        distmat = (features_distmat(rng, ids[0], ids[1], signal=1.5) * (10 if dtype in (np.float64, np.float32, np.float16) else 1))
    else:
        distmat = rng.integers(0, levels, size=(60, 500))
    distmat = distmat.astype(dtype)
    counted = evaluate_reid(distmat, *ids, chunk_size=16)
    assert_same_scores(counted, evaluate_reid(distmat, *ids, chunk_size=16, method="argsort"))
    assert_matches_references(distmat, *ids)


def _spy_on_argsort(monkeypatch) -> list[int]:
    """Record the number of rows each call of the argsort fallback ranks."""
    from evalsuite.metrics import reid

    calls: list[int] = []
    original = reid._ranks_by_argsort

    def spy(dist, *args):
        calls.append(dist.shape[0])
        return original(dist, *args)

    monkeypatch.setattr(reid, "_ranks_by_argsort", spy)
    return calls


def test_only_match_nonmatch_ties_and_nan_rows_fall_back_to_argsort(monkeypatch):
    g_pids = np.array([1, 1, 1, 2, 2, 3, 3, 4, 5, 6] * 3)
    g_camids = np.array([0, 1, 2, 0, 1, 0, 1, 2, 2, 2] * 3)
    rng = np.random.default_rng(0)
    base = rng.permutation(30).astype(np.float64)  # distinct distances: no ties at all
    q_pids, q_camids = np.array([1, 1, 1, 1, 1, 3]), np.array([0, 0, 0, 0, 0, 2])
    distmat = np.tile(base, (6, 1))
    distmat[1, 1] = distmat[1, 2]  # row 1: two matches (pid 1, cameras 1 and 2) tied
    distmat[2, 0] = distmat[2, 1]  # row 2: junk (pid 1 camera 0) tied with a match
    distmat[3, 3] = distmat[3, 1]  # row 3: kept non-match (pid 2) tied with a match
    distmat[4, 9] = np.nan  # row 4: NaN (a non-match)
    distmat[5, 5] = distmat[5, 4] = -np.inf  # row 5: -inf non-match tied with -inf match (pid 3 camera 0)
    calls = _spy_on_argsort(monkeypatch)
    counted = evaluate_reid(distmat, q_pids, g_pids, q_camids, g_camids)
    assert calls == [3]  # rows 3, 4 and 5 only
    expected = evaluate_reid(distmat, q_pids, g_pids, q_camids, g_camids, method="argsort")
    assert_same_scores(counted, expected)
    # max_rank 10: torchreid needs at least max_rank kept gallery items per query
    assert_matches_references(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=10)


def test_tie_between_match_and_nonmatch_follows_numpy_argsort():
    # a match (column 0) and a non-match (column 1) at the same distance, then distinct ones;
    # the metric depends on the order np.argsort puts them in, as in torchreid
    for num_g in (5, 40, 1000):  # insertion sort, introsort / SIMD sort sizes
        rng = np.random.default_rng(num_g)
        g_pids = np.concatenate([[1, 2], rng.integers(3, 50, num_g - 2)])
        g_pids[rng.integers(2, num_g, 3)] = 1
        g_camids = np.ones(num_g, int)
        distmat = np.concatenate([[0.5, 0.5], rng.random(num_g - 2) + 0.25])[None]
        s = assert_matches_references(distmat, np.array([1]), g_pids, np.array([0]), g_camids)
        order = np.argsort(distmat[0])
        first_match = np.flatnonzero(g_pids[order] == 1)[0]
        assert s.per_query["first_rank"].tolist() == [first_match]


def test_unknown_method_is_refused():
    ids = make_ids(np.random.default_rng(0), 4, 10, 3, 2)
    with pytest.raises(ValueError, match="method"):
        evaluate_reid(np.zeros((4, 10)), *ids, method="sort")


# ---------------------------------------------------------------- pairwise_distance


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("chunk_size", [1, 7, 1024])
def test_pairwise_distance_matches_torchreid(metric, chunk_size):
    gen = torch.Generator().manual_seed(0)
    q, g = torch.randn(37, 64, generator=gen), torch.randn(101, 64, generator=gen)
    expected = compute_distance_matrix(q, g, metric=metric).numpy()
    got = pairwise_distance(q, g, metric=metric, chunk_size=chunk_size)
    assert got.shape == (37, 101) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(pairwise_distance(q.numpy(), g.numpy(), metric=metric, chunk_size=chunk_size), got)


def test_pairwise_distance_float64_and_definitions():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(9, 5)), rng.normal(size=(13, 5))
    d = pairwise_distance(q, g, chunk_size=4)
    assert d.dtype == np.float64
    np.testing.assert_allclose(d, ((q[:, None] - g[None]) ** 2).sum(-1), atol=1e-10)
    qn, gn = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(pairwise_distance(q, g, metric="cosine"), 1 - qn @ gn.T, atol=1e-12)
    expected = compute_distance_matrix(torch.from_numpy(q), torch.from_numpy(g)).numpy()
    np.testing.assert_allclose(d, expected, rtol=1e-12, atol=1e-12)


def test_pairwise_distance_errors():
    with pytest.raises(ValueError, match="metric"):
        pairwise_distance(np.zeros((2, 3)), np.zeros((2, 3)), metric="manhattan")
    with pytest.raises(ValueError, match="dimensions"):
        pairwise_distance(np.zeros((2, 3)), np.zeros((2, 4)))


def test_distance_then_evaluation_matches_torchreid_pipeline():
    rng = np.random.default_rng(12)
    q_pids, g_pids, q_camids, g_camids = make_ids(rng, 50, 200, num_ids=20, num_cams=6, distractors=20)
    centres = rng.normal(size=(21, 32)).astype(np.float32)
    qf = torch.from_numpy(centres[q_pids] + rng.normal(size=(50, 32)).astype(np.float32))
    gf = torch.from_numpy(centres[g_pids] + rng.normal(size=(200, 32)).astype(np.float32))
    for metric in ("euclidean", "cosine"):
        ours = evaluate_reid(pairwise_distance(qf, gf, metric=metric), q_pids, g_pids, q_camids, g_camids)
        cmc, mAP = torchreid_eval(compute_distance_matrix(qf, gf, metric).numpy(), q_pids, g_pids, q_camids, g_camids)
        np.testing.assert_allclose(ours.cmc, cmc, atol=1e-6)
        np.testing.assert_allclose(ours.mAP, mAP, atol=1e-6)


# ---------------------------------------------------------------- registry


def test_registered_metric_specs():
    rng = np.random.default_rng(13)
    ids = make_ids(rng, 20, 100, num_ids=8, num_cams=3)
    scores = evaluate_reid(rng.random((20, 100)), *ids)
    for name in REID_METRICS:
        entry = METRICS.get(name)
        assert entry.description and "\n" not in entry.description
        spec = metric_spec(name)
        assert spec is not None and spec.name == name
        # re-identification: lower is better for the anonymizer, shown as a rate
        assert spec.category == "privacy" and not spec.higher_is_better and spec.arrow == "↓"
        assert spec.unit == "rate" and 0.0 <= scores.as_dict()[name] <= 1.0
    assert metric_spec("no-such-metric") is None


def test_register_metric_refuses_a_conflicting_spec():
    spec = metric_spec("rank1")
    assert register_metric(spec) is spec  # idempotent
    with pytest.raises(ValueError, match="registered twice"):
        register_metric(MetricSpec("rank1", "other", higher_is_better=True, category="quality"))
