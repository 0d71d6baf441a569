"""Benchmarks of the image-quality protocol's per-anonymizer costs on a synthetic-sized evaluation set.

Skipped by default (addopts has --benchmark-skip). Run with::

    python -m pytest tests/benchmarks/test_bench_image_quality.py --benchmark-only -o addopts="" -s -p no:cacheprovider
"""
from __future__ import annotations

import pytest
import torch

from evalsuite.metrics.fidelity import FeatureBank, build_extractor, fid_kid
from evalsuite.metrics.quality import image_quality_scores, ms_ssim
from evalsuite.metrics.realness import RealnessConfig, train_realness_critic

N_EVAL, N_TRAIN = 456, 384  # the default synthetic set: query + gallery, train


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(0)
    originals = torch.nn.functional.avg_pool2d(torch.rand(N_EVAL, 3, 128, 64, generator=g) * 255, 3, 1, 1).to(torch.uint8)
    anonymized = originals.clone()
    anonymized[:, :, 6:26, 22:40] = 127
    masks = torch.zeros(N_EVAL, 1, 128, 64, dtype=torch.bool)
    masks[:, :, 6:26, 22:40] = True
    return originals, anonymized, masks


def test_bench_psnr_ssim_mask_ssim(benchmark, pair):
    originals, anonymized, masks = pair
    benchmark.pedantic(image_quality_scores, args=(originals, anonymized, masks), rounds=1, iterations=1)


def test_bench_ms_ssim(benchmark, pair):
    originals, anonymized, _ = pair
    benchmark.pedantic(ms_ssim, args=(originals, anonymized), rounds=1, iterations=1)


def test_bench_random_features_fid_kid(benchmark, pair):
    """One anonymizer's share: a feature pass over its images plus FID and KID (the reference is cached)."""
    originals, anonymized, _ = pair
    extractor = build_extractor("random", {"seed": 0, "size": 96}, download=False)
    bank = FeatureBank({"random": extractor}, cache=None)
    bank.features("random", "clean", originals)
    calls = iter(range(10**6))

    def one_anonymizer():
        return fid_kid(bank, "random", ("clean", originals), (f"anon-{next(calls)}", anonymized))

    benchmark.pedantic(one_anonymizer, rounds=1, iterations=1)


def test_bench_realness_critic(benchmark, pair):
    originals, anonymized, _ = pair
    config = RealnessConfig()
    benchmark.pedantic(train_realness_critic, args=(originals[:N_TRAIN], anonymized[:N_TRAIN], config, 0), rounds=1, iterations=1)
