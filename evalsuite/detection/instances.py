"""Per-instance anonymization regions of detection images, and applying an anonymizer to them.

Regions (``region.name``):
- ``body``: every ``person`` annotation's segmentation (polygons or RLE; its box when it has
  none), Paper F's full-body anonymization;
- ``face``: every ``face`` annotation's box (WIDER FACE, the synthetic scenes; Paper A and
  Paper F's face anonymization);
- ``image``: the whole image as one region;
- ``auto``: ``body`` when the dataset has a person category, else ``face``.

Crowd / ignored annotations are anonymized too: they are people all the same. Each instance
is anonymized in turn, in annotation order, with its own mask, so that box-based
anonymizers (pixelation of the region's bounding box) treat every person or face on its own,
as DeepPrivacy does, instead of pixelating the box around all of them. Masks are grown by
``dilation`` pixels (a disc for masks, a square for boxes).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from anonymizers.base import Anonymizer
from evalsuite.data.detection import DetectionSplit
from evalsuite.errors import UserError
from evalsuite.regions import dilate

REGION_NAMES = ("auto", "body", "face", "image")
_REGION_CATEGORY = {"body": "person", "face": "face"}


def resolve_region(name: str, split: DetectionSplit) -> str:
    """The concrete region for ``name`` on ``split``; UserError when the split lacks its category."""
    if name not in REGION_NAMES:
        raise UserError(f"region.name={name!r} is not a detection region; use one of {', '.join(REGION_NAMES)}")
    if name == "auto":
        if split.category_id("person") is not None:
            return "body"
        return "face" if split.category_id("face") is not None else "image"
    category = _REGION_CATEGORY.get(name)
    if category is not None and split.category_id(category) is None:
        raise UserError(
            f"region.name={name} needs {category} annotations, but {split.source or split.name} has only "
            f"{', '.join(split.category_names()) or 'no categories'}; use region.name="
            + ("face" if name == "body" else "body") + " or region.name=image"
        )
    return name


def box_mask(bbox: Sequence[float], height: int, width: int, dilation: int = 0) -> np.ndarray:
    """Bool mask of a COCO box ``[x, y, w, h]`` widened to whole pixels, grown by ``dilation``."""
    x, y, w, h = (float(v) for v in bbox)
    x0, y0 = max(math.floor(x) - dilation, 0), max(math.floor(y) - dilation, 0)
    x1, y1 = min(math.ceil(x + w) + dilation, width), min(math.ceil(y + h) + dilation, height)
    mask = np.zeros((height, width), dtype=bool)
    if x1 > x0 and y1 > y0:
        mask[y0:y1, x0:x1] = True
    return mask


def segmentation_mask(ann: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Bool mask of an annotation's COCO segmentation (its box when it has none)."""
    seg = ann.get("segmentation")
    if not seg:
        return box_mask(ann["bbox"], height, width)
    from faster_coco_eval.core import mask as mask_utils

    try:
        if isinstance(seg, list):  # polygons
            polygons = [p for p in seg if isinstance(p, list) and len(p) >= 6]
            if not polygons:
                return box_mask(ann["bbox"], height, width)
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(seg, height, width)
        else:
            rle = seg
        mask = np.asarray(mask_utils.decode(rle))
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"annotation {ann.get('id')} of image {ann.get('image_id')}: unreadable segmentation ({exc})") from None
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != (height, width):
        raise UserError(f"annotation {ann.get('id')} of image {ann.get('image_id')}: segmentation is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}")
    return mask.astype(bool)


def _xyxy(bbox: Sequence[float]) -> list[float]:
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def instance_regions(split: DetectionSplit, image: dict[str, Any], region: str, dilation: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """``(bool (H, W) mask, annotations)`` per instance of ``region`` in ``image`` (``region``
    resolved). The annotations follow :mod:`evalsuite.data.types` for anonymizers that
    condition on them: ``face_box`` for faces; ``keypoints`` (17 x [x, y, v]) for persons."""
    height, width = image["height"], image["width"]
    if region == "image":
        return [(np.ones((height, width), dtype=bool), {})]
    category = split.category_id(_REGION_CATEGORY[region])
    regions = []
    for ann in split.annotations(image["id"]):
        if ann["category_id"] != category:
            continue
        if region == "body":
            mask = dilate(segmentation_mask(ann, height, width), dilation)
            keypoints = ann.get("keypoints")
            extra = {"keypoints": [keypoints[i:i + 3] for i in range(0, len(keypoints), 3)]} if keypoints else {}
        else:
            mask = box_mask(ann["bbox"], height, width, dilation)
            extra = {"face_box": _xyxy(ann["bbox"])}
        if mask.any():
            regions.append((mask, extra))
    return regions


def image_generator(seed: int, image_id: int) -> torch.Generator:
    """The generator of one image's stochastic anonymization: a function of (seed, image id)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(image_id)) % (2**63 - 1))


def anonymize_instances(
    anonymizer: Anonymizer,
    image: torch.Tensor,
    regions: Sequence[tuple[np.ndarray, dict[str, Any]]],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``image`` (uint8 3xHxW) with each instance region anonymized in turn."""
    out = image[None]
    for mask, instance in regions:
        region = torch.from_numpy(mask)[None, None].to(out.device)
        out = anonymizer.anonymize(out, region, [instance], generator=generator)
    return out[0]
