"""Leak rate: the share of annotated faces / heads / persons an anonymizer's own detector missed.

Most anonymizers act on the region the protocol gives them (from annotations). An anonymizer
that finds regions itself declares it::

    class MyDetectingAnonymizer(Anonymizer):
        detects_regions = True

        def detect(self, images, annotations=None):
            '''bool (B, 1, H, W): the region my detector would anonymize in each uint8 image.'''

Protocols then call ``detect`` and pass the returned masks to ``anonymize`` in place of the
annotation masks, so the detected region is exactly the one that was anonymized (detection
stays separate from synthesis, as in DeepPrivacy). The leak rate compares those masks with
the annotated region: an annotated region (a non-empty mask, one per image) counts as leaked
when less than ``min_coverage`` (default 0.5) of its pixels lie inside the detected mask.
Images whose annotated region is empty (a face box ``None`` on a back view) do not count.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from evalsuite.metrics.spec import MetricSpec, register_metric

DEFAULT_MIN_COVERAGE = 0.5


def detects_regions(anonymizer: Any) -> bool:
    """True for anonymizers that find their own regions (``detects_regions = True`` and a ``detect`` method)."""
    return bool(getattr(anonymizer, "detects_regions", False)) and callable(getattr(anonymizer, "detect", None))


def detected_masks(anonymizer: Any, images: torch.Tensor, annotations: Sequence[dict] | None = None) -> torch.Tensor:
    """The anonymizer's own region masks for ``images``, checked to be bool (B, 1, H, W)."""
    masks = anonymizer.detect(images, annotations)
    b, _, h, w = images.shape
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or tuple(masks.shape) != (b, 1, h, w):
        got = f"{tuple(masks.shape)} {masks.dtype}" if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"{type(anonymizer).__name__}.detect must return bool masks of shape {(b, 1, h, w)}, got {got}")
    return masks


def region_coverage(annotated: torch.Tensor, detected: torch.Tensor) -> np.ndarray:
    """Per image, the share of the annotated mask's pixels inside the detected mask (nan when nothing is annotated)."""
    if annotated.shape != detected.shape:
        raise ValueError(f"annotated {tuple(annotated.shape)} and detected {tuple(detected.shape)} masks differ in shape")
    area = annotated.flatten(1).sum(1).double()
    hit = (annotated & detected).flatten(1).sum(1).double()
    coverage = torch.where(area > 0, hit / area.clamp(min=1), torch.full_like(area, math.nan))
    return coverage.cpu().numpy()


def leak_rate(annotated: torch.Tensor, detected: torch.Tensor, min_coverage: float = DEFAULT_MIN_COVERAGE) -> tuple[float, int]:
    """(share of annotated regions covered less than ``min_coverage``, number of annotated regions)."""
    coverage = region_coverage(annotated, detected)
    counted = coverage[~np.isnan(coverage)]
    if counted.size == 0:
        return math.nan, 0
    return float((counted < min_coverage).mean()), int(counted.size)



def leak_scores(annotated: torch.Tensor, detected: torch.Tensor | None, finds_own_regions: bool,
                min_coverage: float = DEFAULT_MIN_COVERAGE) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, row extras) of one anonymized set: ``leak_rate`` of an own-region anonymizer's
    ``detected`` masks against the ``annotated`` ones (when any region is annotated), else a note why none."""
    if detected is not None:
        rate, count = leak_rate(annotated, detected, min_coverage)
        return ({"leak_rate": rate} if count else {}), {"leak_regions": count}
    if finds_own_regions:
        return {}, {"leak_rate_note": "the anonymizer finds its own regions but reported no detections"}
    return {}, {"leak_rate_note": "anonymizer uses the annotated regions (no detector)"}

register_metric(MetricSpec(
    "leak_rate",
    "Share of annotated regions (faces / heads / persons) the anonymizer's own detector left (mostly) untouched; only for anonymizers that detect",
    higher_is_better=False, category="privacy", unit="rate", label="Leak",
))
