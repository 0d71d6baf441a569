"""Batched torch anonymizers against a per-image OpenCV loop doing the same work.

Skipped by default (``--benchmark-skip`` in the pytest addopts). Run with::

    python -m pytest tests/benchmarks/test_bench_anonymizers.py -o addopts="" --benchmark-only -p no:cacheprovider

A batch of 256 Market-sized crops (128 x 64) with a different body-like (elliptical) mask
per image. The OpenCV side gets its images as HWC numpy arrays prepared beforehand, as an
OpenCV pipeline would hold them, and does per image: blur -> GaussianBlur(21, sigma 7) of
the crop pasted inside the mask; pixelate8 -> resize the mask's bounding box down to 8x8
and back (INTER_LINEAR) pasted inside the mask; mask -> fill the mask with 127.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import anonymizers  # noqa: F401  (registers the built-ins)
from evalsuite.registry import ANONYMIZERS

BATCH, HEIGHT, WIDTH = 256, 128, 64
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (BATCH, 3, HEIGHT, WIDTH), generator=g, dtype=torch.uint8)
    yy, xx = torch.meshgrid(torch.arange(HEIGHT).float(), torch.arange(WIDTH).float(), indexing="ij")
    cy = 50 + 30 * torch.rand(BATCH, 1, 1, generator=g)
    cx = 24 + 16 * torch.rand(BATCH, 1, 1, generator=g)
    ry = 30 + 30 * torch.rand(BATCH, 1, 1, generator=g)
    rx = 10 + 14 * torch.rand(BATCH, 1, 1, generator=g)
    masks = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)[:, None]
    return images, masks


@pytest.fixture(scope="module")
def numpy_batch(batch) -> tuple[list[np.ndarray], list[np.ndarray]]:
    images, masks = batch
    return ([np.ascontiguousarray(im.permute(1, 2, 0).numpy()) for im in images], [m[0].numpy() for m in masks])


def cv2_blur(images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
    return [np.where(m[..., None], cv2.GaussianBlur(im, (21, 21), 7.0), im) for im, m in zip(images, masks)]


def cv2_pixelate8(images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for im, m in zip(images, masks):
        ys, xs = np.nonzero(m)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        small = cv2.resize(im[y0:y1, x0:x1], (8, 8), interpolation=cv2.INTER_LINEAR)
        crop = cv2.resize(small, (int(x1 - x0), int(y1 - y0)), interpolation=cv2.INTER_LINEAR)
        res = im.copy()
        res[y0:y1, x0:x1] = np.where(m[y0:y1, x0:x1, None], crop, im[y0:y1, x0:x1])
        out.append(res)
    return out


def cv2_mask(images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for im, m in zip(images, masks):
        res = im.copy()
        res[m] = 127
        out.append(res)
    return out


CV2 = {"blur": cv2_blur, "pixelate8": cv2_pixelate8, "mask": cv2_mask}


@pytest.mark.parametrize("name", list(CV2))
@pytest.mark.parametrize("device", DEVICES)
def test_bench_torch(benchmark, batch, name, device):
    images, masks = (t.to(device) for t in batch)
    anonymizer = ANONYMIZERS.build(name)
    benchmark.group = name
    benchmark.extra_info.update(batch=BATCH, size=f"{HEIGHT}x{WIDTH}", torch_threads=torch.get_num_threads())

    def run() -> torch.Tensor:
        out = anonymizer.anonymize(images, masks)
        if out.is_cuda:
            torch.cuda.synchronize()
        return out

    out = benchmark(run)
    assert out.shape == images.shape


@pytest.mark.parametrize("name", list(CV2))
def test_bench_cv2_loop(benchmark, batch, numpy_batch, name):
    images, masks = numpy_batch
    benchmark.group = name
    benchmark.extra_info.update(batch=BATCH, size=f"{HEIGHT}x{WIDTH}", cv2_threads=cv2.getNumThreads())
    out = benchmark(CV2[name], images, masks)
    # same work: the torch result agrees with the OpenCV loop within a gray level or two
    ours = ANONYMIZERS.build(name).anonymize(*batch).permute(0, 2, 3, 1).numpy()
    assert np.abs(ours.astype(int) - np.stack(out)).max() <= 2
