"""How many PIPA head boxes hold a face that dlib's HOG detector finds, on the photos as they are.

A check of a PIPA-layout tree (real or ``synthetic-pipa``): every photo of ``index.txt`` goes
once through dlib's HOG frontal face detector (:func:`evalsuite.dlib_models.detect_faces`,
``upsample`` doublings first: HOG finds faces of about 80 px, 40 px with one doubling), and a
person instance counts as found when a detection's centre lies inside its head box and the
detection is between ``min_ratio`` and ``max_ratio`` of the head box's width wide (a face
is a bit narrower than a head with its hair). Detections that fall in no head box are counted
too (faces the index does not annotate, or false alarms)::

    python -c "from evalsuite.data.pipa_faces import face_detection_rate as f; print(f('/data/PIPA', upsample=1))"
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from evalsuite import dlib_models
from evalsuite.data.market1501 import read_image
from evalsuite.data.pipa import INDEX_RELPATH, IndexEntry, _photo_path, read_index
from evalsuite.errors import UserError
from evalsuite.progress import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectionRate:
    """What :func:`face_detection_rate` counted."""

    instances: int
    found: int
    photos: int
    detections: int
    unmatched: int  # detections whose centre lies in no head box

    @property
    def rate(self) -> float:
        return self.found / self.instances if self.instances else float("nan")


def _holds(entry: IndexEntry, box: Sequence[float], min_ratio: float, max_ratio: float) -> bool:
    x, y, w, h = entry.box
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return x <= cx <= x + w and y <= cy <= y + h and min_ratio * w <= box[2] - box[0] <= max_ratio * w


def face_detection_rate(root: str | Path, upsample: int = 0, subsets: Sequence[int] | None = None,
                        min_ratio: float = 0.4, max_ratio: float = 1.6) -> DetectionRate:
    """dlib HOG detections on the photos of the PIPA tree at ``root`` matched to its head boxes
    (of ``subsets`` only, when given; detections are matched against every annotated head)."""
    root = Path(root).expanduser()
    if not (root / INDEX_RELPATH).is_file():
        raise UserError(f"{root / INDEX_RELPATH} does not exist: give the root of a PIPA-layout tree (annotations/index.txt and train/ val/ test/ leftover/)")
    by_photo: dict[Path, list[IndexEntry]] = defaultdict(list)
    for entry in read_index(root / INDEX_RELPATH):
        by_photo[_photo_path(root, entry, None)].append(entry)
    instances = found = detections = unmatched = 0
    for path, entries in tqdm(sorted(by_photo.items()), desc=f"dlib hog (upsample {upsample})", unit="photo", leave=False):
        boxes = [d.box for d in dlib_models.detect_faces(read_image(str(path)), "hog", upsample)]
        detections += len(boxes)
        unmatched += sum(not any(_holds(e, b, min_ratio, max_ratio) for e in entries) for b in boxes)
        counted = [e for e in entries if subsets is None or e.subset in subsets]
        instances += len(counted)
        found += sum(any(_holds(e, b, min_ratio, max_ratio) for b in boxes) for e in counted)
    return DetectionRate(instances, found, len(by_photo), detections, unmatched)
