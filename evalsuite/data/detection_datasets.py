"""Registered detection datasets: ``coco``, ``wider-face`` and ``synthetic-coco``.

- ``coco``: a COCO 2017 folder (``dataset.root=/data/coco``; ``dataset.kind=instances`` or
  ``person_keypoints``; ``dataset.categories=[person]``; ``dataset.max_images=N`` for a subset);
- ``wider-face``: a WIDER FACE folder (``dataset.root=/data/WIDER_FACE``; ``dataset.ground_truth=DIR``
  for the official easy / medium / hard AP);
- ``synthetic-coco``: seeded synthetic street scenes generated on first use into the cache
  (``<cache_dir>/datasets/synthetic-coco-<hash>``) or ``dataset.root``, then read by the
  same COCO reader. The detection protocols map ``dataset=synthetic`` to it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from evalsuite.data.coco import DEFAULT_COCO_ROOT, load_coco
from evalsuite.data.detection import DetectionDataset
from evalsuite.data.synthetic_coco import SyntheticCocoConfig, generate_synthetic_coco
from evalsuite.data.wider_face import DEFAULT_WIDER_ROOT, load_wider_face
from evalsuite.errors import UserError, did_you_mean
from evalsuite.registry import DATASETS


@DATASETS.register("coco", description="COCO detection (instances / person_keypoints json + images); dataset.root=/path/to/coco")
def coco(
    root: str | Path = DEFAULT_COCO_ROOT,
    kind: str = "instances",
    train: str = "train2017",
    val: str = "val2017",
    categories: list[str] | None = ("person",),  # type: ignore[assignment]
    max_images: int | None = None,
) -> DetectionDataset:
    """COCO detection: ``annotations/<kind>_<split>.json`` and ``<split>/`` image folders."""
    return load_coco(root, kind=kind, train=train, val=val, categories=None if categories is None else list(categories),
                     max_images=max_images, name="coco")


@DATASETS.register("wider-face", description="WIDER FACE face detection (bbx_gt lists + images); dataset.root=/path/to/WIDER_FACE")
def wider_face(root: str | Path = DEFAULT_WIDER_ROOT, max_images: int | None = None, ground_truth: str | Path | None = None) -> DetectionDataset:
    """WIDER FACE: ``wider_face_split/wider_face_<split>_bbx_gt.txt`` and ``WIDER_<split>/images/``;
    ``ground_truth``: eval_tools' ``ground_truth`` folder for the official easy / medium / hard AP."""
    return load_wider_face(root, max_images=max_images, ground_truth=ground_truth)


@DATASETS.register("synthetic-coco", description="seeded synthetic street scenes with person / face boxes in COCO format (generated on first use)")
def synthetic_coco(root: str | Path | None = None, *, cache_dir: str | Path | None = None, **settings: Any) -> DetectionDataset:
    """Seeded synthetic scenes in COCO format; ``settings`` are :class:`SyntheticCocoConfig` fields;
    ``cache_dir``: the cache the scenes are generated in when ``root`` is not given (passed by the protocol)."""
    valid = {f.name for f in dataclasses.fields(SyntheticCocoConfig)}
    for key in settings:
        if key not in valid:
            raise UserError(f"unknown synthetic-coco dataset setting {key!r}: {did_you_mean(key, valid | {'root'})}")
    config = SyntheticCocoConfig(**settings)
    folder = generate_synthetic_coco(root, config, cache_dir)
    dataset = load_coco(folder, train="train", val="val", categories=None, name="synthetic-coco")
    dataset.config.update(generator=config.to_dict())
    return dataset


def _synthetic_coco_defaults() -> dict[str, Any]:
    """The generator settings, so that ``dataset.<setting>=...`` overrides are known keys."""
    return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default for f in dataclasses.fields(SyntheticCocoConfig)}


synthetic_coco.config_defaults = _synthetic_coco_defaults  # type: ignore[attr-defined]
