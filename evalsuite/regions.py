"""Region providers: turn a sample's annotations into the pixel mask an anonymizer acts on.

As in DeepPrivacy, detection is separate from anonymization: the mask comes from the
dataset's annotations (or a user's own, through ``dataset.annotations=FILE``, an evalsuite
sidecar JSON, see :mod:`evalsuite.data.types`; face datasets: ``dataset.sidecar=FILE``, see
:mod:`evalsuite.data.faces`), never from the anonymizer.

Regions (``REGIONS``):
- ``face``: the ``face_box``. ``face_box: None`` (a back view) means there is no face to
  anonymize: the mask is empty. A sample without the key at all has no face annotation,
  which is a UserError (real Market-1501 has none; supply a sidecar).
- ``head``: the ``head_box``, same rules.
- ``body``: the ``body_mask`` PNG (nonzero = person), dilated by ``BODY_DILATION`` pixels
  with an elliptical structuring element unless ``dilation`` says otherwise, so that the
  silhouette's anti-aliased edge and a pixel or two of the segmentation's error are covered.
  Without a body mask, ``fallback="image"`` anonymizes the whole image: a Market-1501 image
  is a tight crop of one person (a detector box), so the whole crop is the closest region
  we have; ``fallback="error"`` raises a UserError instead.
- ``image``: the whole image.

Boxes are ``[x0, y0, x1, y1]`` pixels with exclusive ends; fractional boxes are widened to
whole pixels, boxes partly outside the image are clipped, and ``dilation`` grows a box by
that many pixels on each side (a square structuring element). Masks are in the coordinates
of the image as stored: ``height`` and ``width`` are its size.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from evalsuite.data.faces import FACE_SIDECAR, FaceSample
from evalsuite.data.types import SIDECAR_NAME, Sample
from evalsuite.errors import UserError

REGIONS = ("face", "head", "body", "image")
FALLBACKS = ("image", "error")
#: default dilation (pixels) of the body mask; boxes and the whole image are not dilated
BODY_DILATION = 3
_BOX_KEYS = {"face": "face_box", "head": "head_box"}

_ANNOTATIONS_HINT = (
    f"supply them with dataset.annotations=FILE (an evalsuite sidecar JSON like {SIDECAR_NAME}, "
    "see evalsuite/data/types.py)"
)
_FACE_HINT = (
    f"supply them with dataset.sidecar=FILE (an evalsuite-faces/1 JSON like {FACE_SIDECAR}, see evalsuite/data/faces.py), "
    "or detect them: dataset.detector=dlib-hog (evalsuite/data/face_boxes.py)"
)


def annotations_hint(sample: Any) -> str:
    """How to supply a missing annotation of ``sample``: face datasets read ``dataset.sidecar``, re-id sets ``dataset.annotations``."""
    return _FACE_HINT if isinstance(sample, FaceSample) else _ANNOTATIONS_HINT


def default_dilation(region: str) -> int:
    """The dilation used when none is given: ``BODY_DILATION`` for body, 0 otherwise."""
    return BODY_DILATION if region == "body" else 0


def region_mask(
    sample: Sample,
    region: str,
    height: int,
    width: int,
    dilation: int | None = None,
    fallback: str = "image",
) -> np.ndarray:
    """Bool (height, width) mask of ``region`` for one sample; True = anonymize.

    ``dilation=None`` uses :func:`default_dilation`. ``fallback`` ("image" or "error") says
    what a body region does without a body mask.
    """
    dilation = _check_args(region, dilation, fallback)
    if region == "image":
        return np.ones((height, width), dtype=bool)
    if region == "body":
        return _body_mask(sample, height, width, dilation, fallback)
    return _box_mask(sample, _BOX_KEYS[region], height, width, dilation)


def region_masks(
    samples: Sequence[Sample],
    region: str,
    height: int,
    width: int,
    dilation: int | None = None,
    fallback: str = "image",
) -> torch.Tensor:
    """Bool (B, 1, height, width) CPU tensor of :func:`region_mask` for each sample."""
    _check_args(region, dilation, fallback)
    key = _BOX_KEYS.get(region)
    if key is not None and samples and not any(key in s.annotations for s in samples):
        raise UserError(
            f"region {region!r} needs {key} annotations and none of these {len(samples)} images has one"
            f"{'' if isinstance(samples[0], FaceSample) else ' (real Market-1501 has none)'}: {annotations_hint(samples[0])}"
        )
    masks = [region_mask(s, region, height, width, dilation, fallback) for s in samples]
    if not masks:
        return torch.zeros(0, 1, height, width, dtype=torch.bool)
    return torch.from_numpy(np.stack(masks))[:, None]


def _check_args(region: str, dilation: Any, fallback: str) -> int:
    if region not in REGIONS:
        raise UserError(f"unknown region {region!r}: valid regions are {', '.join(REGIONS)}")
    if fallback not in FALLBACKS:
        raise UserError(f"unknown region fallback {fallback!r}: valid fallbacks are {', '.join(FALLBACKS)}")
    if dilation is None:
        return default_dilation(region)
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 0:
        raise UserError(f"region dilation must be a non-negative number of pixels, got {dilation!r}")
    return dilation


def _box_mask(sample: Sample, key: str, height: int, width: int, dilation: int) -> np.ndarray:
    if key not in sample.annotations:
        raise UserError(f"image {sample.relpath} has no {key} annotation: {annotations_hint(sample)}")
    mask = np.zeros((height, width), dtype=bool)
    box = sample.annotations[key]
    if box is None:  # not visible (a back view): nothing to anonymize
        return mask
    x0, y0, x1, y1 = _pixel_box(sample, key, box, height, width)
    x0, y0 = max(x0 - dilation, 0), max(y0 - dilation, 0)
    x1, y1 = min(x1 + dilation, width), min(y1 + dilation, height)
    mask[y0:y1, x0:x1] = True
    return mask


def _pixel_box(sample: Sample, key: str, box: Any, height: int, width: int) -> tuple[int, int, int, int]:
    """``box`` widened to whole pixels and clipped to the image; UserError if empty or outside."""
    where = f"image {sample.relpath}: {key} {box!r}"
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box
    ):
        raise UserError(f"{where} is not a box [x0, y0, x1, y1] of 4 numbers")
    x0, y0, x1, y1 = math.floor(box[0]), math.floor(box[1]), math.ceil(box[2]), math.ceil(box[3])
    if x1 <= x0 or y1 <= y0:
        raise UserError(f"{where} is empty (boxes are [x0, y0, x1, y1] with x1 > x0 and y1 > y0)")
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 <= cx0 or cy1 <= cy0:
        raise UserError(f"{where} lies entirely outside the {width}x{height} (width x height) image")
    return cx0, cy0, cx1, cy1


def _body_mask(sample: Sample, height: int, width: int, dilation: int, fallback: str) -> np.ndarray:
    path = sample.annotations.get("body_mask")
    if path is None:
        if fallback == "error":
            raise UserError(
                f"image {sample.relpath} has no body_mask annotation (region fallback is 'error'): {_ANNOTATIONS_HINT}, "
                "or use the whole image (region fallback 'image')"
            )
        return np.ones((height, width), dtype=bool)
    mask = read_body_mask(path, sample)
    if mask.shape != (height, width):
        raise UserError(
            f"body mask {path} of image {sample.relpath} is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height} (width x height)"
        )
    return dilate(mask, dilation)


def read_body_mask(path: str, sample: Sample | None = None) -> np.ndarray:
    """Bool mask (nonzero = person) from a PNG; UserError naming the file when unreadable."""
    of = f" of image {sample.relpath}" if sample is not None else ""
    try:
        with Image.open(path) as im:
            array = np.asarray(im)
    except FileNotFoundError:
        raise UserError(f"body mask {path}{of} does not exist") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"body mask {path}{of} cannot be read as an image: {exc}") from None
    if array.ndim == 3:  # RGB(A): any colour channel set
        array = array[..., :3].any(axis=2)
    return array != 0


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a bool mask by ``pixels`` with an elliptical (disc) structuring element."""
    if pixels <= 0 or not mask.any():
        return mask
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), element).astype(bool)
