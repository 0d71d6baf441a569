"""What the re-id loaders besides Market-1501 share (DukeMTMC-reID, CUHK03, MSMT17).

Each of those modules knows only its layout and yields ``(path, pid, 0-based camera)``
records per split; this module turns them into :class:`~evalsuite.data.types.ReidImage`
samples in torchreid's conventions (train pids relabelled 0..N-1 in ascending order,
query / gallery keep theirs), checks that every listed file exists, merges the annotation
sidecar (:func:`evalsuite.data.market1501.attach_sidecars`) and resizes on read.

Image size: Market-1501's crops are all 128 x 64, the other sets' crops vary in size (a
pedestrian detector's boxes), and a set of images is one tensor, so these loaders resize
every image to ``image_size`` = [height, width] when it is read (default [128, 64]:
Market's size, so an anonymizer's pixel settings mean what they mean on Market; [256, 128]
is torchreid's input size). Sidecar boxes, keypoints and landmarks are given in the stored
file's pixels and scaled with the image; ``image_size=null`` keeps the files as they are
(they must then share one size).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from evalsuite.data.market1501 import attach_sidecars, read_image, relabel_map
from evalsuite.data.types import ReidDataset, ReidImage
from evalsuite.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = (128, 64)
#: (path, pid, 0-based camera id)
Record = tuple[Path, int, int]


def image_size_setting(value: Any, dataset: str) -> tuple[int, int] | None:
    """``dataset.image_size`` as (height, width), or None to keep the stored size."""
    if value is None:
        return None
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise UserError(f"{dataset}: dataset.image_size must be [height, width] in pixels (e.g. [128, 64]) or null, got {value!r}")
    return int(value[0]), int(value[1])


def make_samples(records: Sequence[Record], split: str, relabel: bool, data_dir: Path, size: tuple[int, int] | None) -> list[ReidImage]:
    """Samples of ``records`` (pids relabelled 0..N-1 when ``relabel``), keyed by their path under ``data_dir``."""
    pid2label = relabel_map(pid for _, pid, _ in records) if relabel else {}
    return [
        ReidImage(path=str(p), pid=pid2label[pid] if relabel else pid, camid=cam, split=split,
                  key=p.relative_to(data_dir).as_posix(), size=size)
        for p, pid, cam in records
    ]


def require_files(paths: Iterable[Path], listed_in: str, label: str, hint: str) -> None:
    """UserError naming how many of the listed images are missing and the first of them."""
    paths = list(paths)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"{label}: {len(missing)} of {len(paths)} images listed in {listed_in} are missing (first: {missing[0]}); {hint}")


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` stretched to ``size`` = (height, width) as torchreid's Resize does (area when shrinking)."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrinking = height < image.shape[0] or width < image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def read_reid_image(sample: ReidImage) -> np.ndarray:
    """The sample's file decoded as uint8 RGB, resized to ``sample.size`` when that is set."""
    image = read_image(sample.path)
    return image if sample.size is None else resize_rgb(image, sample.size)


def _stored_size(path: str) -> tuple[int, int]:
    """(height, width) of the image as decoded (EXIF orientation applied), from its header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                width, height = height, width
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"corrupt or unreadable image: {path} ({exc}); replace the file or remove it from the dataset") from None
    return height, width


def scale_annotations(sample: ReidImage) -> None:
    """Move a resized sample's sidecar geometry from the file's pixels into the resized image's."""
    ann = sample.annotations
    if sample.size is None or not ann:
        return
    if ann.get("body_mask") is not None:
        raise UserError(f"image {sample.relpath} has a body_mask annotation, which is not resized with the image; "
                        "set dataset.image_size=null to read the images at their stored size")
    height, width = _stored_size(sample.path)
    fy, fx = sample.size[0] / height, sample.size[1] / width
    for key in ("head_box", "face_box"):
        if ann.get(key) is not None:
            x0, y0, x1, y1 = ann[key]
            ann[key] = [x0 * fx, y0 * fy, x1 * fx, y1 * fy]
    if ann.get("keypoints") is not None:
        ann["keypoints"] = [[x * fx, y * fy, v] for x, y, v in ann["keypoints"]]
    if ann.get("landmarks") is not None:
        ann["landmarks"] = [[x * fx, y * fy] for x, y in ann["landmarks"]]


def build_dataset(name: str, data_dir: Path, splits: dict[str, list[ReidImage]], annotations: str | Path | None) -> ReidDataset:
    """The dataset of ``splits`` (train / query / gallery) with its sidecars merged and scaled."""
    for split in ("train", "query", "gallery"):
        if not splits[split]:
            raise UserError(f"{name}: the {split} split of {data_dir} is empty; check dataset.root")
    dataset = ReidDataset(name=name, root=str(data_dir), train=splits["train"], query=splits["query"], gallery=splits["gallery"])
    attach_sidecars(dataset, annotations)
    for split in ("train", "query", "gallery"):
        for sample in dataset.split(split):
            scale_annotations(sample)  # type: ignore[arg-type]
    log.info("%s (from %s)", dataset.summary(), data_dir)
    return dataset
