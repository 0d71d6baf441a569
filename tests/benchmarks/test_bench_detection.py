"""Benchmarks of the detection protocols' hot spots: one training step of the default FCOS,
its inference, per-instance anonymization of a scene, and COCO AP on a validation-sized set.

Skipped by default (addopts has --benchmark-skip). Run with::

    python -m pytest tests/benchmarks/test_bench_detection.py --benchmark-only -o addopts="" -s -p no:cacheprovider

Target (embedded default on a 2-core CPU, one torch thread): a training step of batch 8 at
128x176 under 0.5 s, so that the 240 steps of one detection-train cell take about 2 minutes.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anonymizers.pixelate import Pixelate
from evalsuite.detection.instances import anonymize_instances
from evalsuite.detection.trainable import TrainableConfig, build_detector
from evalsuite.metrics.detection import coco_detection_scores

HEIGHT, WIDTH, BATCH = 128, 176, 8


@pytest.fixture(scope="module")
def model_and_batch():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_detector(TrainableConfig(), num_classes=2, image_size=(HEIGHT, WIDTH))
    images = [torch.rand(3, HEIGHT, WIDTH) for _ in range(BATCH)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 40.0, 110.0], [90.0, 40.0, 110.0, 100.0], [15.0, 22.0, 25.0, 32.0]]),
                "labels": torch.tensor([1, 1, 2])} for _ in range(BATCH)]
    return model, images, targets


def test_bench_fcos_training_step(benchmark, model_and_batch):
    model, images, targets = model_and_batch
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)

    def step():
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    benchmark(step)


def test_bench_fcos_inference(benchmark, model_and_batch):
    model, images, _ = model_and_batch
    model.eval()
    with torch.no_grad():
        benchmark(lambda: model(images))


def test_bench_per_instance_pixelation(benchmark):
    image = torch.randint(0, 256, (3, HEIGHT, WIDTH), dtype=torch.uint8)
    regions = []
    for x in (10, 60, 110):
        mask = np.zeros((HEIGHT, WIDTH), bool)
        mask[20:120, x:x + 35] = True
        regions.append((mask, {}))
    benchmark(anonymize_instances, Pixelate(grid=8), image, regions)


def test_bench_coco_ap(benchmark):
    rng = np.random.default_rng(0)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": WIDTH, "height": HEIGHT} for i in range(1, 61)]
    anns, dets = [], []
    for img in images:
        for _ in range(3):
            x, y, w, h = rng.uniform(0, 100), rng.uniform(0, 40), rng.uniform(10, 60), rng.uniform(20, 80)
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": 1, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        for _ in range(100):
            dets.append({"image_id": img["id"], "category_id": 1, "bbox": [*rng.uniform(0, 100, 2), *rng.uniform(10, 60, 2)], "score": float(rng.random())})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    benchmark(coco_detection_scores, gt, dets)
