"""k-Same-Pixel clustering: one exact float64 distance matrix (torch) against a per-step numpy loop.

Skipped by default (``--benchmark-skip`` in the pytest addopts). Run with::

    python -m pytest tests/benchmarks/test_bench_ksame.py -o addopts="" --benchmark-only -p no:cacheprovider

1,000 aligned 64x64 face crops (D = 12,288), k = 10, whole-face masks. The numpy side is the
plain reading of Newton et al.: at each step, distances from the seed face to every remaining
face, then its k - 1 nearest. Both give the same clusters (asserted).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anonymizers.ksame import KSamePixel, ksame_clusters

N, SIZE, K = 1000, 64, 10
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.fixture(scope="module")
def faces() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    templates = F.interpolate(torch.rand(N // 4, 3, 6, 6, generator=g) * 200 + 28, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    images = templates.repeat(4, 1, 1, 1) + 15 * torch.randn(N, 3, SIZE, SIZE, generator=g)
    images = images.round().clamp(0, 255).to(torch.uint8)
    return images, torch.ones(N, 1, SIZE, SIZE, dtype=torch.bool)


def numpy_ksame(vectors: np.ndarray, k: int) -> list[list[int]]:
    remaining = np.arange(len(vectors))
    clusters = []
    while len(remaining) >= 2 * k:
        seed = vectors[remaining[0]]
        d = ((vectors[remaining] - seed) ** 2).sum(axis=1)
        d[0] = -1
        chosen = np.sort(remaining[np.argsort(d, kind="stable")[:k]])
        clusters.append(chosen.tolist())
        remaining = np.setdiff1d(remaining, chosen, assume_unique=True)
    clusters.append(remaining.tolist())
    return clusters


@pytest.mark.parametrize("device", DEVICES)
def test_bench_ksame_pixel_fit_and_anonymize(benchmark, faces, device):
    images, masks = (t.to(device) for t in faces)
    benchmark.group = "ksame-pixel"
    benchmark.extra_info.update(n=N, size=f"{SIZE}x{SIZE}", k=K, torch_threads=torch.get_num_threads())

    def run() -> torch.Tensor:
        out = KSamePixel(k=K).fit(images, masks).anonymize(images, masks)
        if out.is_cuda:
            torch.cuda.synchronize()
        return out

    out = benchmark.pedantic(run, rounds=3, iterations=1)
    assert out.shape == images.shape


def test_bench_ksame_clusters_torch(benchmark, faces):
    images, _ = faces
    vectors = images.flatten(1).double()
    benchmark.group = "clusters"
    clusters = benchmark.pedantic(ksame_clusters, args=(vectors, K), rounds=3, iterations=1)
    assert len(clusters) == N // K


def test_bench_ksame_clusters_numpy_loop(benchmark, faces):
    images, _ = faces
    vectors = images.flatten(1).numpy().astype(np.int64)
    benchmark.group = "clusters"
    clusters = benchmark.pedantic(numpy_ksame, args=(vectors, K), rounds=1, iterations=1)
    assert clusters == ksame_clusters(images.flatten(1).double(), K)
