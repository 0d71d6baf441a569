"""What a ``fit_on: train`` anonymizer (dp-face, dp-body, ...) is fitted on in the detection
protocols: every instance of the region in the training scenes, cut out with context and
resized to one size, as an :class:`~evalsuite.pipeline.ImageSet`.

Detection scenes differ in size, and anonymizers fit on a batch of equal-size images with
their masks and annotations, so each instance becomes one training image: a window around
its box, grown by :data:`CONTEXT` about the box centre at the crop's aspect (zero outside the
scene), resized to :data:`CROP_SIZE` of the region. Its mask and annotations (``face_box``,
17 ``keypoints``) move with it. DeepPrivacy trains on such crops too (its face crops are the
box grown about 2x); a window of 2.5x the box leaves an anonymizer room for its own
expansion. The first ``max_instances`` instances in scene order are used, so the set and
the fitted state do not depend on anything but the data and these settings.
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import torch

from evalsuite.anonymized_scenes import SceneSet
from evalsuite.errors import UserError
from evalsuite.pipeline import ImageSet

#: (height, width) of a training crop, per region
CROP_SIZE = {"face": (96, 96), "body": (128, 64), "image": (128, 128)}
#: the window around an instance box, as a multiple of the box (at the crop's aspect)
CONTEXT = 2.5
#: instances at most (the first ones in scene order)
MAX_INSTANCES = 4000
#: changes whenever the crops change: part of the fitted anonymizer's key
VERSION = "1"


def settings(region: str) -> dict[str, Any]:
    """Everything that determines the crops of ``region`` (for cache keys)."""
    return {"version": VERSION, "size": list(CROP_SIZE[region]), "context": CONTEXT, "max_instances": MAX_INSTANCES}


def _window(mask: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the instance's box grown by :data:`CONTEXT` at the aspect of ``size`` (may leave the scene)."""
    ys, xs = np.nonzero(mask)
    bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    height, width = size
    window_h = CONTEXT * max(by1 - by0, (bx1 - bx0) * height / width)
    window_w = window_h * width / height
    cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
    x0, y0 = math.floor(cx - window_w / 2), math.floor(cy - window_h / 2)
    return x0, y0, x0 + max(1, round(window_w)), y0 + max(1, round(window_h))


def _cut(array: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """``array`` (H, W, ...) inside ``window``, zero where the window leaves it."""
    x0, y0, x1, y1 = window
    out = np.zeros((y1 - y0, x1 - x0, *array.shape[2:]), dtype=array.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, array.shape[1]), min(y1, array.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = array[sy0:sy1, sx0:sx1]
    return out


def _moved(annotations: dict[str, Any], window: tuple[int, int, int, int], size: tuple[int, int]) -> dict[str, Any]:
    """``face_box`` and ``keypoints`` in the coordinates of the resized crop."""
    x0, y0, x1, y1 = window
    sx, sy = size[1] / (x1 - x0), size[0] / (y1 - y0)
    moved: dict[str, Any] = {}
    if annotations.get("face_box") is not None:
        a, b, c, d = annotations["face_box"]
        moved["face_box"] = [(a - x0) * sx, (b - y0) * sy, (c - x0) * sx, (d - y0) * sy]
    if annotations.get("keypoints") is not None:
        moved["keypoints"] = [[(x - x0) * sx, (y - y0) * sy, v] for x, y, v in annotations["keypoints"]]
    return moved


def instance_crops(scenes: SceneSet, region: str) -> ImageSet:
    """Every instance of ``scenes`` (at most :data:`MAX_INSTANCES`) as one crop with its mask and annotations."""
    height, width = CROP_SIZE[region]
    images, masks, ids, annotations = [], [], [], []
    for index in range(len(scenes)):
        instances = scenes.instances(index)
        if not instances:
            continue
        scene = scenes.image(index).permute(1, 2, 0).numpy()
        for number, (mask, extra) in enumerate(instances):
            window = _window(mask, (height, width))
            images.append(cv2.resize(_cut(scene, window), (width, height), interpolation=cv2.INTER_AREA))
            masks.append(cv2.resize(_cut(mask.astype(np.uint8), window), (width, height), interpolation=cv2.INTER_NEAREST) > 0)
            ids.append(f"{scenes.sample_ids[index]}#{number}")
            annotations.append(_moved(extra, window, (height, width)))
            if len(ids) == MAX_INSTANCES:
                break
        if len(ids) == MAX_INSTANCES:
            break
    if not ids:
        raise UserError(f"the {scenes.name} split has no {region} instance to fit an anonymizer on; remove the fit_on=train anonymizer or use another region.name")
    return ImageSet(f"{scenes.name}-instances", torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
                    torch.from_numpy(np.stack(masks))[:, None], ids, annotations)
