"""Benchmarks: evaluate_reid against torchreid's Cython and Python evaluate_rank on a Market-1501-sized matrix.

Skipped by default (addopts has --benchmark-skip). Run with::

    EVALSUITE_BENCH_RANK_CY=/tmp/rank_cy python -m pytest tests/benchmarks/test_bench_reid_metrics.py \
        --benchmark-only -o addopts="" -s -p no:cacheprovider

torchreid's wheel (and its sdist) does not ship the Cython source, so its fast evaluator is
built outside the repository, from ``torchreid/metrics/rank_cylib/rank_cy.pyx`` of
https://github.com/KaiyangZhou/deep-person-reid (Cython and a C compiler needed)::

    mkdir /tmp/rank_cy && cd /tmp/rank_cy   # put rank_cy.pyx here
    pip install --target pylib Cython
    printf 'import numpy as np\nfrom setuptools import setup, Extension\nfrom Cython.Build import cythonize\nsetup(name="rank_cy", ext_modules=cythonize([Extension("rank_cy", ["rank_cy.pyx"], include_dirs=[np.get_include()])]))\n' > setup.py
    PYTHONPATH=pylib python setup.py build_ext --inplace

``EVALSUITE_BENCH_RANK_CY`` names that folder; without it the Cython rows are skipped and
the summary compares with torchreid's Python evaluator (timed only then, or with
``EVALSUITE_BENCH_TORCHREID_PYTHON=1``). Rows (group ``evaluate``): ours (counting, the
default), ours with ``method="argsort"`` (the previous algorithm), torchreid Cython, torchreid
Python; ours and Cython again beside one competing CPU-bound process
(group ``evaluate-competing``). ``test_bench_summary`` prints the ratios and fails when ours
is not at least 5x faster than the Cython evaluator (best round of each).
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
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
TARGET = 5.0


def _rank_cy():
    """torchreid's compiled ``rank_cy`` module from ``EVALSUITE_BENCH_RANK_CY``, or None."""
    folder = os.environ.get("EVALSUITE_BENCH_RANK_CY")
    if not folder:
        return None
    sys.path.insert(0, folder)
    try:
        return importlib.import_module("rank_cy")
    except ImportError:
        return None
    finally:
        sys.path.remove(folder)


RANK_CY = _rank_cy()
needs_cython = pytest.mark.skipif(RANK_CY is None, reason="set EVALSUITE_BENCH_RANK_CY to a folder with torchreid's built rank_cy")


@pytest.fixture
def competing():
    """One busy-loop process beside the benchmark."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.2)
    try:
        yield
    finally:
        busy.kill()
        busy.wait()


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
    benchmark.group = "evaluate"
    scores = benchmark.pedantic(evaluate_reid, args=(market["distmat"], *market["ids"]), rounds=5, iterations=1, warmup_rounds=1)
    _timings["ours"] = benchmark.stats.stats.min
    peak = _peak_mib(evaluate_reid, market["distmat"], *market["ids"])
    benchmark.extra_info.update(peak_mib=round(peak, 1), loadavg=os.getloadavg()[0])
    print(
        f"\n[ours] evaluate_reid {NUM_QUERY}x{NUM_GALLERY}: best {_timings['ours']:.3f} s, "
        f"peak traced memory {peak:.1f} MiB (distmat itself {market['distmat'].nbytes / 2**20:.0f} MiB); "
        f"{scores.as_dict()}"
    )
    assert scores.num_valid_queries > 0.9 * NUM_QUERY


def test_bench_evaluate_reid_argsort(benchmark, market):
    """The previous algorithm (one argsort per row), kept as ``method="argsort"``: the same result bit for bit."""
    benchmark.group = "evaluate"
    scores = benchmark.pedantic(evaluate_reid, args=(market["distmat"], *market["ids"]), kwargs={"method": "argsort"},
                                rounds=2, iterations=1)
    _timings["argsort"] = benchmark.stats.stats.min
    counted = evaluate_reid(market["distmat"], *market["ids"])
    assert scores == counted and np.array_equal(scores.cmc, counted.cmc)
    assert all(np.array_equal(scores.per_query[k], counted.per_query[k]) for k in counted.per_query)


@needs_cython
def test_bench_evaluate_rank_torchreid_cython(benchmark, market):
    benchmark.group = "evaluate"
    cmc, mAP = benchmark.pedantic(RANK_CY.evaluate_cy, args=(market["distmat"], *market["ids"], 50), rounds=3, iterations=1)
    _timings["cython"] = benchmark.stats.stats.min
    ours = evaluate_reid(market["distmat"], *market["ids"])
    # torchreid's Cython code accumulates in float32
    np.testing.assert_allclose(ours.cmc, cmc, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.mAP, mAP, rtol=0, atol=1e-5)
    print(f"\n[torchreid] evaluate_cy: best {_timings['cython']:.3f} s, mAP {mAP:.6f} rank1 {cmc[0]:.6f}")


@pytest.mark.skipif(RANK_CY is not None and not os.environ.get("EVALSUITE_BENCH_TORCHREID_PYTHON"),
                    reason="the Cython evaluator is the anchor (EVALSUITE_BENCH_TORCHREID_PYTHON=1 times the Python one too)")
def test_bench_evaluate_rank_torchreid_python(benchmark, market):
    """torchreid's Python evaluator: the anchor when the Cython one is not built (minutes on a loaded machine)."""
    benchmark.group = "evaluate"
    cmc, mAP = benchmark.pedantic(
        evaluate_rank,
        args=(market["distmat"], *market["ids"]),
        kwargs={"max_rank": 50, "use_metric_cuhk03": False, "use_cython": False},
        rounds=1,
        iterations=1,
    )
    _timings["python"] = benchmark.stats.stats.min
    ours = evaluate_reid(market["distmat"], *market["ids"])
    np.testing.assert_allclose(ours.cmc, cmc, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.mAP, mAP, rtol=0, atol=1e-6)
    print(f"\n[torchreid] evaluate_rank(use_cython=False): {_timings['python']:.2f} s, mAP {mAP:.6f} rank1 {cmc[0]:.6f}")


def test_bench_evaluate_reid_ours_competing(benchmark, market, competing):
    benchmark.group = "evaluate-competing"
    benchmark.pedantic(evaluate_reid, args=(market["distmat"], *market["ids"]), rounds=5, iterations=1, warmup_rounds=1)
    _timings["ours-competing"] = benchmark.stats.stats.min


@needs_cython
def test_bench_evaluate_rank_torchreid_cython_competing(benchmark, market, competing):
    benchmark.group = "evaluate-competing"
    benchmark.pedantic(RANK_CY.evaluate_cy, args=(market["distmat"], *market["ids"], 50), rounds=3, iterations=1)
    _timings["cython-competing"] = benchmark.stats.stats.min


def test_bench_summary(benchmark):
    """Ratios of the best rounds; fails below TARGET x against Cython (or Python when Cython is absent).

    (Takes the ``benchmark`` fixture only so that ``--benchmark-only`` runs it.)"""
    benchmark.group = "summary"
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    lines = [f"{name:17s} {seconds:7.3f} s" + (f"  ({seconds / _timings['ours']:5.1f}x ours)" if "ours" in _timings else "")
             for name, seconds in _timings.items()]
    if "ours-competing" in _timings and "cython-competing" in _timings:
        lines.append(f"competing: cython / ours = {_timings['cython-competing'] / _timings['ours-competing']:.1f}x")
    print("\n" + "\n".join(lines) + f"\nload average {os.getloadavg()}")
    anchor = "cython" if "cython" in _timings else "python"
    assert _timings[anchor] / _timings["ours"] >= TARGET
    if "cython-competing" in _timings:
        assert _timings["cython-competing"] / _timings["ours-competing"] >= TARGET


def test_bench_pairwise_distance(benchmark, market):
    benchmark.group = "distance"
    qf, gf = market["features"]
    got = benchmark.pedantic(pairwise_distance, args=(qf, gf), rounds=2, iterations=1)
    elapsed = []
    for _ in range(2):
        start = time.perf_counter()
        expected = compute_distance_matrix(qf, gf).numpy()
        elapsed.append(time.perf_counter() - start)
    print(f"\n[distance] ours {benchmark.stats.stats.mean:.2f} s vs torchreid compute_distance_matrix {np.mean(elapsed):.2f} s")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-2)
