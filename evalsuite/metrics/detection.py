"""COCO-style detection AP through faster-coco-eval (pycocotools-compatible, C++ core).

``coco_detection_scores(gt, detections)`` evaluates detections (COCO results format:
``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``) against a COCO-format ground
truth dict with ``COCOeval_faster`` (iouType ``bbox``, 101-point interpolated precision,
IoU 0.50:0.95, 100 detections per image, ``iscrowd`` regions ignored), the same numbers
pycocotools gives (``tests/test_detection_metrics.py`` checks this on one case).

Metrics (utility: higher AP on anonymized data = the anonymizer kept more of what a
detector needs; values in [0, 1], shown as %):
- ``ap``, ``ap50``, ``ap75``: COCO AP, AP at IoU 0.5 and at IoU 0.75, averaged over categories;
- ``ap_person``, ``ap_face``: AP (IoU 0.50:0.95) of one category (Paper F's AP_person).
A category without any non-crowd ground truth gets no per-category value.

``coco_keypoint_scores(gt, detections)`` is COCO person keypoint AP (iouType ``keypoints``:
object keypoint similarity with COCO's 17 per-keypoint sigmas, OKS 0.50:0.95, 20 detections
per image, persons without labelled keypoints ignored) of results carrying ``keypoints``
(``[x1, y1, v1, ...]``; ``v`` is not used), as torchvision's reference evaluation scores
keypoint R-CNN: ``kp_ap``, ``kp_ap50``, ``kp_ap75`` (the DeepPrivacy2 pose tables' "Kp. AP").
"""
from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np

from evalsuite.metrics.spec import MetricSpec, register_metric

log = logging.getLogger(__name__)

DETECTION_METRICS = ("ap", "ap50", "ap75", "ap_person", "ap_face")
KEYPOINT_METRICS = ("kp_ap", "kp_ap50", "kp_ap75")

register_metric(MetricSpec("ap", "COCO box AP, IoU 0.50:0.95, mean over categories (faster-coco-eval)", higher_is_better=True, category="utility", label="AP"))
register_metric(MetricSpec("ap50", "COCO box AP at IoU 0.5", higher_is_better=True, category="utility", label="AP50"))
register_metric(MetricSpec("ap75", "COCO box AP at IoU 0.75", higher_is_better=True, category="utility", label="AP75"))
register_metric(MetricSpec("ap_person", "COCO box AP (IoU 0.50:0.95) of the person category", higher_is_better=True, category="utility", label="AP_person"))
register_metric(MetricSpec("ap_face", "COCO box AP (IoU 0.50:0.95) of the face category", higher_is_better=True, category="utility", label="AP_face"))
register_metric(MetricSpec("kp_ap", "COCO person keypoint AP, OKS 0.50:0.95 (faster-coco-eval)", higher_is_better=True, category="utility", label="Kp. AP"))
register_metric(MetricSpec("kp_ap50", "COCO person keypoint AP at OKS 0.5", higher_is_better=True, category="utility", label="Kp. AP50"))
register_metric(MetricSpec("kp_ap75", "COCO person keypoint AP at OKS 0.75", higher_is_better=True, category="utility", label="Kp. AP75"))


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """faster-coco-eval's print_function: keep its progress lines out of the output."""


def _fresh(gt: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``gt`` whose annotation dicts the evaluator may annotate in place."""
    return {**gt, "annotations": [dict(a) for a in gt["annotations"]], "images": list(gt["images"]), "categories": list(gt["categories"])}


def _nan_if_missing(value: float) -> float:
    return float("nan") if value < 0 else float(value)


def coco_detection_scores(gt: dict[str, Any], detections: Sequence[dict[str, Any]], max_dets: int = 100) -> dict[str, float]:
    """AP / AP50 / AP75 (and ``ap_<category name>``) of ``detections`` on ``gt``.

    ``gt`` must have at least one non-crowd annotation; detections on images not in ``gt``
    are a ValueError (a protocol bug, not user input).
    """
    from faster_coco_eval import COCO, COCOeval_faster

    if not any(not a.get("iscrowd", 0) for a in gt["annotations"]):
        raise ValueError("ground truth has no (non-crowd) annotation to evaluate")
    image_ids = {img["id"] for img in gt["images"]}
    stray = {d["image_id"] for d in detections} - image_ids
    if stray:
        raise ValueError(f"detections refer to images not in the ground truth: {sorted(stray)[:5]}")
    coco_gt = COCO(_fresh(gt), print_function=_quiet)
    coco_dt = coco_gt.loadRes([{k: (list(v) if k == "bbox" else v) for k, v in d.items()} for d in detections])
    evaluator = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=_quiet)
    evaluator.params.maxDets = [1, 10, max_dets]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    stats = evaluator.stats
    scores = {"ap": _nan_if_missing(stats[0]), "ap50": _nan_if_missing(stats[1]), "ap75": _nan_if_missing(stats[2])}
    precision = np.asarray(evaluator.eval["precision"])  # [IoU, recall, category, area, maxDets]
    names = {c["id"]: c["name"] for c in gt["categories"]}
    for k, cat_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        if values.size:
            scores[f"ap_{names[cat_id]}"] = float(values.mean())
    return {k: v for k, v in scores.items() if not (k.startswith("ap_") and math.isnan(v))}


def has_keypoints(gt: dict[str, Any], category_id: int) -> bool:
    """True when some non-crowd annotation of ``category_id`` has a labelled keypoint."""
    return any(a["category_id"] == category_id and not a.get("iscrowd", 0) and any(v > 0 for v in (a.get("keypoints") or [])[2::3])
               for a in gt["annotations"])


def coco_keypoint_scores(gt: dict[str, Any], detections: Sequence[dict[str, Any]], category_id: int) -> dict[str, float]:
    """Keypoint AP / AP50 / AP75 of the ``category_id`` detections that carry ``keypoints`` (see the module docstring).

    ``gt``: COCO-format ground truth whose ``category_id`` annotations have 17 keypoints
    (``num_keypoints`` is filled in where absent)."""
    from faster_coco_eval import COCO, COCOeval_faster

    if not has_keypoints(gt, category_id):
        raise ValueError(f"ground truth has no labelled keypoints of category {category_id}")
    truth = _fresh(gt)
    truth["annotations"] = [a for a in truth["annotations"] if a["category_id"] == category_id]
    for ann in truth["annotations"]:
        if "num_keypoints" not in ann:
            ann["num_keypoints"] = sum(1 for v in (ann.get("keypoints") or [])[2::3] if v > 0)
    results = [{"image_id": d["image_id"], "category_id": category_id, "keypoints": [float(v) for v in d["keypoints"]], "score": float(d["score"])}
               for d in detections if d["category_id"] == category_id and d.get("keypoints")]
    coco_gt = COCO(truth, print_function=_quiet)
    evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(results), iouType="keypoints", print_function=_quiet)
    evaluator.params.catIds = [category_id]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    stats = evaluator.stats
    return {"kp_ap": _nan_if_missing(stats[0]), "kp_ap50": _nan_if_missing(stats[1]), "kp_ap75": _nan_if_missing(stats[2])}
