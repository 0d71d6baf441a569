"""The data model shared by loaders, region providers, anonymizers and protocols."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Keys of ``Sample.annotations`` (all optional; real Market-1501 has none of them).
# Coordinates are pixels in the image, x right, y down; boxes are [x0, y0, x1, y1] with
# x1/y1 exclusive.
#   "head_box":   [x0, y0, x1, y1]
#   "face_box":   [x0, y0, x1, y1] or None when the face is not visible (back of the head)
#   "body_mask":  path (absolute, resolved by the loader) of a single-channel PNG, nonzero = person
#   "keypoints":  17 x [x, y, visibility] in COCO order (visibility 0/1/2 as in COCO)
#   "landmarks":  5 x [x, y] facial landmarks (dlib 5-point order: right eye outer, right eye inner,
#                 left eye outer, left eye inner, nose) or None when the face is not visible
#   "view":       "front" | "back" | "side"
#   "attributes": dict[str, int | float | str]
ANNOTATION_KEYS = ("head_box", "face_box", "body_mask", "keypoints", "landmarks", "view", "attributes")
SIDECAR_NAME = "evalsuite_annotations.json"


@dataclass
class Sample:
    """One image of a re-identification dataset."""

    path: str
    pid: int
    camid: int  # 0-based, as torchreid
    split: str  # "train" | "query" | "gallery"
    annotations: dict[str, Any] = field(default_factory=dict)

    @property
    def relpath(self) -> str:
        """``<split folder>/<file name>``: the key used in sidecars and caches."""
        p = Path(self.path)
        return f"{p.parent.name}/{p.name}"


@dataclass
class ReidImage(Sample):
    """A re-id image whose sidecar key is its path under the dataset folder (``key``, e.g.
    MSMT17's ``train/0000/0000_000_01_0303morning_0015_0.jpg``, where the folder name alone is
    not unique) and that is resized to ``size`` = (height, width) when read (None: as stored)."""

    key: str = ""
    size: tuple[int, int] | None = None

    @property
    def relpath(self) -> str:
        return self.key or Sample.relpath.fget(self)  # type: ignore[attr-defined]


@dataclass
class ReidDataset:
    """Train / query / gallery lists in torchreid's conventions (train pids relabelled 0..N-1)."""

    name: str
    root: str
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]

    @property
    def num_train_pids(self) -> int:
        return len({s.pid for s in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({s.camid for s in self.train})

    def split(self, name: str) -> list[Sample]:
        """The samples of split ``name`` (:mod:`evalsuite.splits`); UserError naming the valid ones."""
        from evalsuite.splits import check_split

        splits = {"train": self.train, "query": self.query, "gallery": self.gallery}
        return splits[check_split(name, splits, f"dataset {self.name} ({self.root})", "split")]

    def summary(self) -> str:
        def ids(samples: list[Sample]) -> int:
            return len({s.pid for s in samples})

        return (
            f"{self.name}: train {len(self.train)} images / {ids(self.train)} ids, "
            f"query {len(self.query)} / {ids(self.query)}, gallery {len(self.gallery)} / {ids(self.gallery)}"
        )
