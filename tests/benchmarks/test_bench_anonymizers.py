"""blur / pixelate8 / mask on CPU against a per-image OpenCV loop doing the same work (the anchor).

Skipped by default (``--benchmark-skip`` in the pytest addopts). Run with::

    python -m pytest tests/benchmarks/test_bench_anonymizers.py -o addopts="" --benchmark-only -p no:cacheprovider -s

Two inputs:
- ``crops``: a batch of 256 Market-sized crops (128 x 64) with a different body-like
  (elliptical) mask per image;
- ``photo``: one 3872 x 3264 photo with a person-sized elliptical mask (about 900 x 2200
  pixels, 16% of the photo).
Each runs on a quiet machine ("idle") and beside one competing CPU-bound process
("competing": a busy loop started for the test). Per case three rows: ``ours`` (the
anonymizer), ``cv2_loop`` (the anchor) and ``before`` (the batched torch code of the
previous version: banded-matrix blur, whole-image pixelation matrices, ``torch.where`` fill).

The OpenCV loop gets its images as HWC numpy arrays prepared beforehand, as an OpenCV
pipeline would hold them, and does per image: blur -> ``GaussianBlur(21, sigma 7)`` of the
image pasted inside the mask; pixelate8 -> resize the mask's bounding box down to 8x8 and
back (INTER_LINEAR) pasted inside the mask; mask -> fill the mask with 127.
``test_summary`` prints the ratios and fails when ours is not at least 2x faster than the
anchor (best of the rounds of each).
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable, Iterator

import cv2
import numpy as np
import pytest
import torch

import anonymizers  # noqa: F401  (registers the built-ins)
from anonymizers.blur import gaussian_blur_matmul
from anonymizers.pixelate import mask_boxes, pixelate
from evalsuite.registry import ANONYMIZERS

NAMES = ("blur", "pixelate8", "mask")
LOADS = ("idle", "competing")
TARGET = 2.0
_best: dict[tuple[str, str, str, str], float] = {}  # (input, name, load, side) -> best seconds


def _ellipses(batch: int, height: int, width: int, centre, radius, generator: torch.Generator) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    cy = centre[0][0] + centre[0][1] * torch.rand(batch, 1, 1, generator=generator)
    cx = centre[1][0] + centre[1][1] * torch.rand(batch, 1, 1, generator=generator)
    ry = radius[0][0] + radius[0][1] * torch.rand(batch, 1, 1, generator=generator)
    rx = radius[1][0] + radius[1][1] * torch.rand(batch, 1, 1, generator=generator)
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)[:, None]


@pytest.fixture(scope="module")
def inputs() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    crops = torch.randint(0, 256, (256, 3, 128, 64), generator=g, dtype=torch.uint8)
    crop_masks = _ellipses(256, 128, 64, ((50, 30), (24, 16)), ((30, 30), (10, 14)), g)
    photo = torch.randint(0, 256, (1, 3, 3264, 3872), generator=g, dtype=torch.uint8)
    photo_mask = _ellipses(1, 3264, 3872, ((1632, 0), (1700, 0)), ((1100, 0), (450, 0)), g)
    return {"crops": (crops, crop_masks), "photo": (photo, photo_mask)}


@pytest.fixture(scope="module")
def numpy_inputs(inputs) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    return {key: ([np.ascontiguousarray(im.permute(1, 2, 0).numpy()) for im in images], [m[0].numpy() for m in masks])
            for key, (images, masks) in inputs.items()}


@pytest.fixture(params=LOADS)
def load(request) -> Iterator[str]:
    """``competing``: one busy-loop process runs beside the benchmark."""
    if request.param == "idle":
        yield "idle"
        return
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield "competing"
    finally:
        busy.kill()
        busy.wait()


# ------------------------------------------------------------------ the anchor: a per-image OpenCV loop

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


CV2: dict[str, Callable] = {"blur": cv2_blur, "pixelate8": cv2_pixelate8, "mask": cv2_mask}


# ------------------------------------------------------------------ the previous version: batched torch everywhere

def before(name: str, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    if name == "blur":
        out = gaussian_blur_matmul(images, 21, 7.0)
    elif name == "pixelate8":
        out = pixelate(images, mask_boxes(masks), grid=8)
    else:
        out = torch.tensor([127, 127, 127], dtype=torch.uint8).view(1, 3, 1, 1).expand_as(images)
    return torch.where(masks.expand_as(images), out, images)


def _record(benchmark, key: tuple[str, str, str, str]) -> None:
    _best[key] = benchmark.stats.stats.min
    benchmark.extra_info.update(torch_threads=torch.get_num_threads(), cv2_threads=cv2.getNumThreads(),
                                loadavg=os.getloadavg()[0])


def _rounds(which: str, name: str) -> dict[str, int]:
    return {"rounds": 10, "iterations": 1} if which == "crops" else {"rounds": 3, "iterations": 1}


@pytest.mark.parametrize("which", ["crops", "photo"])
@pytest.mark.parametrize("name", NAMES)
def test_bench_ours(benchmark, inputs, which, name, load):
    images, masks = inputs[which]
    anonymizer = ANONYMIZERS.build(name)
    benchmark.group = f"{which}-{name}-{load}"
    out = benchmark.pedantic(anonymizer.anonymize, args=(images, masks), warmup_rounds=1, **_rounds(which, name))
    _record(benchmark, (which, name, load, "ours"))
    assert out.shape == images.shape


@pytest.mark.parametrize("which", ["crops", "photo"])
@pytest.mark.parametrize("name", NAMES)
def test_bench_cv2_loop(benchmark, inputs, numpy_inputs, which, name, load):
    images, masks = numpy_inputs[which]
    benchmark.group = f"{which}-{name}-{load}"
    out = benchmark.pedantic(CV2[name], args=(images, masks), warmup_rounds=1, **_rounds(which, name))
    _record(benchmark, (which, name, load, "cv2_loop"))
    # same work: ours agrees with the OpenCV loop within a gray level or two
    ours = ANONYMIZERS.build(name).anonymize(*inputs[which]).permute(0, 2, 3, 1).numpy()
    assert np.abs(ours.astype(int) - np.stack(out)).max() <= 2


@pytest.mark.parametrize("which", ["crops", "photo"])
@pytest.mark.parametrize("name", NAMES)
def test_bench_before(benchmark, inputs, which, name):
    images, masks = inputs[which]
    benchmark.group = f"{which}-{name}-idle"
    rounds = {"rounds": 1, "iterations": 1} if which == "photo" else {"rounds": 5, "iterations": 1}
    out = benchmark.pedantic(before, args=(name, images, masks), **rounds)
    _record(benchmark, (which, name, "idle", "before"))
    assert (out.int() - ANONYMIZERS.build(name).anonymize(images, masks).int()).abs().max() <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_bench_ours_cuda(benchmark, inputs, name):
    """On CUDA the batched torch path stays (crops batch, idle)."""
    images, masks = (t.cuda() for t in inputs["crops"])
    anonymizer = ANONYMIZERS.build(name)
    benchmark.group = f"crops-{name}-cuda"

    def run() -> torch.Tensor:
        out = anonymizer.anonymize(images, masks)
        torch.cuda.synchronize()
        return out

    out = benchmark.pedantic(run, warmup_rounds=1, rounds=10, iterations=1)
    assert (out.cpu().int() - ANONYMIZERS.build(name).anonymize(*inputs["crops"]).int()).abs().max() <= 1


def test_summary(benchmark):
    """Print ours / anchor / before per case; fail when ours is not TARGET x faster than the anchor.

    (Takes the ``benchmark`` fixture only so that ``--benchmark-only`` runs it.)"""
    benchmark.group = "summary"
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    lines, slow = [], []
    for which in ("crops", "photo"):
        for name in NAMES:
            for load in LOADS:
                ours, anchor = _best.get((which, name, load, "ours")), _best.get((which, name, load, "cv2_loop"))
                if ours is None or anchor is None:
                    continue
                old = _best.get((which, name, load, "before"))
                extra = f", before {old * 1e3:8.1f} ms ({old / ours:5.1f}x)" if old else ""
                lines.append(f"{which:5s} {name:9s} {load:9s}: ours {ours * 1e3:8.1f} ms, cv2 loop {anchor * 1e3:8.1f} ms "
                             f"-> {anchor / ours:5.1f}x{extra}")
                if anchor / ours < TARGET:
                    slow.append(lines[-1])
    print("\n" + "\n".join(lines) + f"\nload average {os.getloadavg()}, torch threads {torch.get_num_threads()}")
    assert not slow, f"less than {TARGET}x faster than the OpenCV loop: {slow}"
