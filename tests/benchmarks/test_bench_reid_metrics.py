"""Benchmarks: evaluate_reid vs torchreid's python evaluate_rank on a Market-1501-sized matrix.

Skipped by default (addopts has --benchmark-skip). Run with::

    python -m pytest tests/benchmarks/test_bench_reid_metrics.py --benchmark-only -o addopts="" -s -p no:cacheprovider
"""
from __future__ import annotations

import time
import tracemalloc
import warnings

import numpy as np
import pytest
import torch

from evalsuite.metrics import evaluate_reid, pairwise_distance

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "Cython evaluation is unavailable"
    from torchreid.reid.metrics.distance import compute_distance_matrix
    from torchreid.reid.metrics.rank import evaluate_rank

NUM_QUERY, NUM_GALLERY, NUM_IDS, NUM_CAMS, NUM_DISTRACTORS, DIM = 3368, 15913, 751, 6, 2793, 512
SIGNAL = 0.45  # identity-centre scale: gives roughly rank-1 0.9 / mAP 0.5

_timings: dict[str, float] = {}


@pytest.fixture(scope="module")
def market():
    """Market-sized ids/cameras and features (identity centre + noise) -> float32 distances."""
    rng = np.random.default_rng(0)
    q_pids = rng.integers(1, NUM_IDS + 1, NUM_QUERY)
    g_pids = np.concatenate([rng.integers(1, NUM_IDS + 1, NUM_GALLERY - NUM_DISTRACTORS), np.zeros(NUM_DISTRACTORS, int)])
    q_camids = rng.integers(0, NUM_CAMS, NUM_QUERY)
    g_camids = rng.integers(0, NUM_CAMS, NUM_GALLERY)
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(NUM_IDS + 1, DIM, generator=gen)
    qf = SIGNAL * centres[q_pids] + torch.randn(NUM_QUERY, DIM, generator=gen)
    gf = SIGNAL * centres[g_pids] + torch.randn(NUM_GALLERY, DIM, generator=gen)
    distmat = pairwise_distance(qf, gf)
    return {"features": (qf, gf), "distmat": distmat, "ids": (q_pids, g_pids, q_camids, g_camids)}


def _peak_mib(fn, *args, **kwargs) -> float:
    tracemalloc.start()
    try:
        fn(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_bench_evaluate_reid_ours(benchmark, market):
    scores = benchmark.pedantic(evaluate_reid, args=(market["distmat"], *market["ids"]), rounds=2, iterations=1)
    _timings["ours"] = benchmark.stats.stats.mean
    peak = _peak_mib(evaluate_reid, market["distmat"], *market["ids"])
    benchmark.extra_info["peak_mib"] = round(peak, 1)
    print(
        f"\n[ours] evaluate_reid {NUM_QUERY}x{NUM_GALLERY}: mean {_timings['ours']:.2f} s, "
        f"peak traced memory {peak:.1f} MiB (distmat itself {market['distmat'].nbytes / 2**20:.0f} MiB); "
        f"{scores.as_dict()}"
    )
    assert scores.num_valid_queries > 0.9 * NUM_QUERY


def test_bench_evaluate_rank_torchreid(benchmark, market):
    cmc, mAP = benchmark.pedantic(
        evaluate_rank,
        args=(market["distmat"], *market["ids"]),
        kwargs={"max_rank": 50, "use_metric_cuhk03": False, "use_cython": False},
        rounds=1,
        iterations=1,
    )
    _timings["torchreid"] = benchmark.stats.stats.mean
    ours = evaluate_reid(market["distmat"], *market["ids"])
    np.testing.assert_allclose(ours.cmc, cmc, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.mAP, mAP, rtol=0, atol=1e-6)
    big = NUM_QUERY * NUM_GALLERY * (8 + 4) / 2**20  # its int64 argsort indices + int32 matches
    msg = (
        f"\n[torchreid] evaluate_rank(use_cython=False): {_timings['torchreid']:.2f} s, mAP {mAP:.6f} "
        f"rank1 {cmc[0]:.6f}; holds >= {big:.0f} MiB of full-size index/match arrays"
    )
    if "ours" in _timings:
        msg += f"; speed-up of evaluate_reid: {_timings['torchreid'] / _timings['ours']:.1f}x"
    print(msg)


def test_bench_pairwise_distance(benchmark, market):
    qf, gf = market["features"]
    got = benchmark.pedantic(pairwise_distance, args=(qf, gf), rounds=2, iterations=1)
    elapsed = []
    for _ in range(2):
        start = time.perf_counter()
        expected = compute_distance_matrix(qf, gf).numpy()
        elapsed.append(time.perf_counter() - start)
    print(f"\n[distance] ours {benchmark.stats.stats.mean:.2f} s vs torchreid compute_distance_matrix {np.mean(elapsed):.2f} s")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-2)
