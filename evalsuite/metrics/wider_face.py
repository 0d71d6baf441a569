"""WIDER FACE easy / medium / hard AP by the rules of the official evaluation (``eval_tools``).

The user supplies the toolbox's ground truth (``dataset.ground_truth=DIR`` holding
``wider_face_val.mat``, ``wider_easy_val.mat``, ``wider_medium_val.mat``,
``wider_hard_val.mat``; read with ``scipy.io.loadmat``): the first lists, per event and image,
every face box ``[x, y, w, h]``; each setting file lists, per image, the 1-based indices of
the faces that count in that setting (``gt_list``). The rules of ``evaluation.m``:

- detection scores are min-max normalised over all detections of the split (the maximum taken
  at least ``realmin('single')``, as ``norm_score.m`` does), and each image's detections are
  sorted by descending score;
- a detection matches the face it overlaps most (IoU with the toolbox's +1-pixel box areas) when
  that IoU is >= 0.5: on a face outside the setting it is ignored (neither true nor false
  positive), on a face of the setting it recalls that face (a second detection on a recalled
  face is a false positive);
- at each of 1000 thresholds ``1 - t/1000`` precision = recalled faces / counted detections and
  recall = recalled faces / faces of the setting, summed over images; images without any face
  box or without detections add nothing but their faces (so detections on a face-less image
  cost nothing);
- AP is the area under the precision envelope (``VOCap``); an undefined precision (no counted
  detection above a threshold) is taken as 0, which equals MATLAB's NaN-skipping ``max`` there.

Metrics ``ap_easy``, ``ap_medium``, ``ap_hard`` (Paper A Table 1: DSFD on anonymized WIDER
FACE validation faces). Only the images of the evaluated split count (``dataset.max_images``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evalsuite.errors import UserError
from evalsuite.metrics.spec import MetricSpec, register_metric

SETTINGS = ("easy", "medium", "hard")
WIDER_METRICS = tuple(f"ap_{s}" for s in SETTINGS)
FILES = {"all": "wider_face_val.mat", **{s: f"wider_{s}_val.mat" for s in SETTINGS}}
IOU_THRESHOLD = 0.5
THRESHOLDS = 1000

for _setting in SETTINGS:
    register_metric(MetricSpec(f"ap_{_setting}", f"WIDER FACE {_setting} AP (official evaluation rules, dataset.ground_truth)",
                               higher_is_better=True, category="utility", label=f"AP_{_setting}"))

Key = tuple[str, str]  # (event folder, image file stem)


@dataclass
class WiderGroundTruth:
    """Face boxes ``(n, 4)`` ``[x, y, w, h]`` per image, and per setting the 0-based indices of the faces that count."""

    boxes: dict[Key, np.ndarray]
    keep: dict[str, dict[Key, np.ndarray]]


def image_key(file_name: str) -> Key:
    """``("0--Parade", "0_Parade_marchingband_1_465")`` of ``0--Parade/0_Parade_marchingband_1_465.jpg``."""
    path = Path(file_name)
    return path.parent.name, path.stem


def _cells(value: Any) -> list[Any]:
    """A MATLAB cell array read by loadmat (an object array of any shape) as a flat list."""
    return list(np.asarray(value, dtype=object).reshape(-1))


def _text(value: Any) -> str:
    while isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else ""
    return str(value)


def _load(path: Path, names: Sequence[str], key: str) -> dict[str, Any]:
    from scipy.io import loadmat

    if not path.is_file():
        raise UserError(f"WIDER FACE ground truth {path} not found; set {key} to the eval_tools/ground_truth folder holding {', '.join(FILES.values())}")
    try:
        data = loadmat(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's
        raise UserError(f"WIDER FACE ground truth {path} ({key}) cannot be read with scipy.io.loadmat: {str(exc).splitlines()[0]}") from None
    missing = [n for n in names if n not in data]
    if missing:
        raise UserError(f"WIDER FACE ground truth {path} ({key}) has no {', '.join(missing)}; use the files of WIDER's eval_tools/ground_truth")
    return data


def load_ground_truth(folder: str | Path, key: str = "dataset.ground_truth") -> WiderGroundTruth:
    """The four ``.mat`` files of ``folder``; UserError naming the file and ``key`` when one is missing or malformed."""
    base = Path(folder).expanduser()
    data = _load(base / FILES["all"], ("event_list", "file_list", "face_bbx_list"), key)
    events = [_text(e) for e in _cells(data["event_list"])]
    files = [[_text(f) for f in _cells(group)] for group in _cells(data["file_list"])]
    box_groups = [_cells(group) for group in _cells(data["face_bbx_list"])]
    if not (len(events) == len(files) == len(box_groups)) or any(len(f) != len(b) for f, b in zip(files, box_groups)):
        raise UserError(f"WIDER FACE ground truth {base / FILES['all']} ({key}): event_list, file_list and face_bbx_list do not line up")
    keys = [[(event, name) for name in names] for event, names in zip(events, files)]
    boxes = {k: np.asarray(b, dtype=np.float64).reshape(-1, 4) for ks, bs in zip(keys, box_groups) for k, b in zip(ks, bs)}
    keep: dict[str, dict[Key, np.ndarray]] = {}
    for setting in SETTINGS:
        path = base / FILES[setting]
        groups = [_cells(group) for group in _cells(_load(path, ("gt_list",), key)["gt_list"])]
        if len(groups) != len(keys) or any(len(g) != len(k) for g, k in zip(groups, keys)):
            raise UserError(f"WIDER FACE ground truth {path} ({key}): gt_list does not line up with {FILES['all']}'s file_list")
        keep[setting] = {}
        for ks, group in zip(keys, groups):
            for k, indices in zip(ks, group):
                index = np.asarray(indices, dtype=np.int64).reshape(-1) - 1
                if index.size and (index.min() < 0 or index.max() >= len(boxes[k])):
                    raise UserError(f"WIDER FACE ground truth {path} ({key}): face index {int(index.max()) + 1} of {k[0]}/{k[1]} is out of range")
                keep[setting][k] = index
    return WiderGroundTruth(boxes, keep)


def _overlaps(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of one ``[x0, y0, x1, y1]`` box with each of ``boxes``, in the toolbox's inclusive-pixel convention (+1)."""
    w = np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]) + 1
    h = np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]) + 1
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    return inter / (areas + (box[2] - box[0] + 1) * (box[3] - box[1] + 1) - inter)


def _image_counts(predictions: np.ndarray, faces: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """``(THRESHOLDS, 2)``: counted detections and recalled faces of one image at each threshold."""
    preds = predictions[np.argsort(-predictions[:, 4], kind="stable")]
    corners = lambda b: np.concatenate([b[:, :2], b[:, :2] + b[:, 2:4]], axis=1)  # noqa: E731
    gt, boxes = corners(faces), corners(preds)
    recalled = np.zeros(len(faces), dtype=np.int8)  # 1 recalled, -1 matched but outside the setting
    proposal = np.ones(len(preds), dtype=bool)
    recall_after = np.zeros(len(preds), dtype=np.int64)
    for h, box in enumerate(boxes):
        overlap = _overlaps(gt, box)
        best = int(np.argmax(overlap))
        if overlap[best] >= IOU_THRESHOLD:
            if not counted[best]:
                recalled[best], proposal[h] = -1, False
            elif recalled[best] == 0:
                recalled[best] = 1
        recall_after[h] = int((recalled == 1).sum())
    thresholds = 1 - np.arange(1, THRESHOLDS + 1) / THRESHOLDS
    last = np.searchsorted(-preds[:, 4], -thresholds, side="right") - 1  # the last detection scoring >= threshold
    proposals = np.concatenate([[0], np.cumsum(proposal)])
    return np.stack([np.where(last >= 0, proposals[last + 1], 0), np.where(last >= 0, recall_after[np.maximum(last, 0)], 0)], axis=1)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone precision envelope (the toolbox's ``VOCap``)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def wider_face_ap(truth: WiderGroundTruth, predictions: dict[Key, np.ndarray], images: Sequence[Key]) -> dict[str, float]:
    """``ap_easy`` / ``ap_medium`` / ``ap_hard`` of ``predictions`` (per image ``(m, 5)`` ``[x, y, w, h, score]``) on ``images``."""
    scores = np.concatenate([p[:, 4] for p in predictions.values() if len(p)] or [np.zeros(0)])
    # norm_score.m starts its maximum at realmin('single'): all-negative scores top out below 1
    low = float(scores.min()) if scores.size else 0.0
    span = max(float(scores.max()) if scores.size else 0.0, float(np.finfo(np.float32).tiny)) - low
    normed = {k: np.concatenate([p[:, :4], ((p[:, 4:] - low) / span) if span > 0 else np.ones((len(p), 1))], axis=1)
              for k, p in predictions.items() if len(p)}
    result = {}
    for setting in SETTINGS:
        totals, faces = np.zeros((THRESHOLDS, 2)), 0
        for key in images:
            counted = np.zeros(len(truth.boxes[key]), dtype=bool)
            counted[truth.keep[setting][key]] = True
            faces += int(counted.sum())
            if len(truth.boxes[key]) and key in normed:
                totals += _image_counts(normed[key], truth.boxes[key], counted)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.nan_to_num(totals[:, 1] / totals[:, 0], nan=0.0)
        result[f"ap_{setting}"] = voc_ap(totals[:, 1] / faces, precision) if faces else float("nan")
    return result


def for_split(folder: str | Path | None, images: Sequence[dict[str, Any]], source: str, key: str = "dataset.ground_truth") -> WiderGroundTruth | None:
    """The ground truth in ``folder`` (None without one); UserError when an image of the split
    (COCO ``images``, ``file_name`` = event/name.jpg) is not in it."""
    if not folder:
        return None
    truth = load_ground_truth(folder, key)
    absent = [img["file_name"] for img in images if image_key(img["file_name"]) not in truth.boxes]
    if absent:
        raise UserError(f"{len(absent)} image(s) of {source} are not in {FILES['all']} ({key}), e.g. {absent[0]}; "
                        "the official ground truth covers the validation split only")
    return truth


def detection_scores(truth: WiderGroundTruth, images: Sequence[dict[str, Any]], detections: Sequence[dict[str, Any]], category_id: int) -> dict[str, float]:
    """:func:`wider_face_ap` of COCO results (``bbox``, ``score``) of ``category_id`` on COCO ``images`` (``file_name`` = event/name.jpg)."""
    keys = {img["id"]: image_key(img["file_name"]) for img in images}
    rows: dict[Key, list[list[float]]] = {}
    for d in detections:
        if d["category_id"] == category_id:
            rows.setdefault(keys[d["image_id"]], []).append([*map(float, d["bbox"]), float(d["score"])])
    return wider_face_ap(truth, {k: np.asarray(v, dtype=np.float64).reshape(-1, 5) for k, v in rows.items()}, list(keys.values()))
