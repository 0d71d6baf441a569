"""Market-1501 loader in torchreid's conventions, plus the evalsuite annotation sidecar.

torchreid (``torchreid.reid.data.datasets.image.market1501.Market1501``):

- folders ``bounding_box_train`` (train), ``query`` and ``bounding_box_test`` (gallery) of
  ``*.jpg`` named ``PPPP_cCsS_FFFFFF_NN.jpg``; the pid and the camera come from the regex
  ``([-\\d]+)_c(\\d)``;
- pid -1 (junk) is dropped everywhere, pid 0 (distractors) is kept;
- camera ids are 1-based in the file name and 0-based in the dataset;
- train pids are relabelled 0..N-1 in ascending pid order, query/gallery keep their pids.

Real Market-1501 has no head boxes, masks, keypoints or attributes. A user brings them in a
sidecar JSON (``evalsuite_annotations.json`` in the dataset folder, or any file passed as
``annotations``)::

    {"format": "evalsuite-annotations/1",
     "image_size": [128, 64],                       # optional, [H, W]; enables bounds checks
     "images": {"bounding_box_train/0002_c1s1_000451_03.jpg": {
         "head_box": [x0, y0, x1, y1], "face_box": [x0, y0, x1, y1] | null,
         "body_mask": "masks/bounding_box_train/0002_c1s1_000451_03.png",  # relative to the JSON
         "keypoints": [[x, y, v] x 17], "landmarks": [[x, y] x 5] | null,
         "view": "front" | "back" | "side", "attributes": {...}}}}
"""
from __future__ import annotations

import json
import logging
import re
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps

from evalsuite.splits import ON_DISK
from evalsuite.data.types import SIDECAR_NAME, ReidDataset, Sample
from evalsuite.errors import UserError

log = logging.getLogger(__name__)

DATASET_DIRNAME = "Market-1501-v15.09.15"
# (split name, folder, relabel pids)
SPLIT_DIRS = tuple((split, ON_DISK["market1501"][split], split == "train") for split in ("train", "query", "gallery"))
NAME_PATTERN = re.compile(r"([-\d]+)_c(\d)")
EXPECTED_NAME = "PPPP_cCsS_FFFFFF_NN.jpg (regex ([-\\d]+)_c(\\d), e.g. 0002_c1s1_000451_03.jpg)"
ANNOTATION_FORMAT = "evalsuite-annotations/1"
VIEWS = ("front", "back", "side")
JUNK_PID = -1
HINT = f"set dataset.root=/path/to/{DATASET_DIRNAME} or use dataset=synthetic"


# --------------------------------------------------------------------------- images

def decode_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file completely as uint8 H x W x 3 RGB; ValueError saying why it cannot.

    Pillow decodes (the same libjpeg-turbo pixels as ``cv2.imread``, EXIF orientation applied
    as ``cv2.imread`` does) and, unlike OpenCV, refuses a truncated file instead of filling
    the missing rows with gray (``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False).
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ValueError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process, so truncated files would pass as gray; set it to False")
    try:
        with Image.open(path) as image:
            image.load()
            rgb = ImageOps.exif_transpose(image).convert("RGB")
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"could not be decoded completely: {reason}") from None
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3 or array.size == 0:
        raise ValueError(f"decoded to an empty or odd array of shape {array.shape}")
    return np.ascontiguousarray(array)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as a uint8 H x W x 3 RGB array; UserError naming the file when it is corrupt."""
    try:
        return decode_rgb(path)
    except ValueError as exc:
        raise UserError(f"corrupt or unreadable image: {path} ({exc}); replace the file or remove it from the dataset") from None


# --------------------------------------------------------------------------- layout

def resolve_root(root: str | Path) -> Path:
    """The folder holding the split folders: ``root`` itself or ``root/Market-1501-v15.09.15``.

    torchreid's own layout (``<root>/market1501/Market-1501-v15.09.15``) is accepted too.
    """
    given = Path(root).expanduser().absolute()
    candidates = [given, given / DATASET_DIRNAME, given / "market1501" / DATASET_DIRNAME, given / "market1501"]
    for candidate in candidates:
        if all((candidate / folder).is_dir() for _, folder, _ in SPLIT_DIRS):
            return candidate
    if not given.is_dir():
        raise UserError(f"Market-1501 not found: {given} does not exist; {HINT}")
    partial = next((c for c in candidates if any((c / f).is_dir() for _, f, _ in SPLIT_DIRS)), None)
    if partial is not None:
        missing = ", ".join(f for _, f, _ in SPLIT_DIRS if not (partial / f).is_dir())
        raise UserError(f"Market-1501 folder {partial} lacks {missing}; {HINT}")
    raise UserError(
        f"Market-1501 not found: no bounding_box_train/query/bounding_box_test folders in {given} "
        f"or {given / DATASET_DIRNAME}; {HINT}"
    )


def parse_name(path: str | Path) -> tuple[int, int]:
    """(pid, 1-based camera id) from a Market-1501 file name; UserError when it does not parse."""
    name = Path(path).name
    match = NAME_PATTERN.search(name)
    try:
        if match is None:
            raise ValueError
        pid, camid = int(match.group(1)), int(match.group(2))
    except ValueError:
        raise UserError(f"unexpected Market-1501 file name {path}: expected {EXPECTED_NAME}") from None
    if pid < JUNK_PID or camid < 1:
        raise UserError(f"unexpected Market-1501 file name {path}: pid >= -1 and camera >= 1 expected in {EXPECTED_NAME}")
    return pid, camid


def process_dir(dir_path: str | Path, split: str, relabel: bool) -> list[Sample]:
    """torchreid's ``Market1501.process_dir`` as Samples (sorted by path)."""
    dir_path = Path(dir_path)
    paths = sorted(dir_path.glob("*.jpg"))
    if not paths:
        raise UserError(f"Market-1501 split folder {dir_path} has no *.jpg images named {EXPECTED_NAME}")
    parsed = [(p, *parse_name(p)) for p in paths]
    kept = [(p, pid, cam) for p, pid, cam in parsed if pid != JUNK_PID]
    if not kept:
        raise UserError(f"Market-1501 split folder {dir_path} holds only junk (pid -1) images")
    pid2label = {pid: label for label, pid in enumerate(sorted({pid for _, pid, _ in kept}))}
    return [
        Sample(path=str(p), pid=pid2label[pid] if relabel else pid, camid=cam - 1, split=split)
        for p, pid, cam in kept
    ]


# --------------------------------------------------------------------------- annotations

def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_box(box: Any, key: str, field: str, where: str, size: tuple[int, int] | None) -> None:
    if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
        raise UserError(f"bad annotations in {where}: {key!r} {field} must be [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        raise UserError(f"bad annotations in {where}: {key!r} {field} {box} is empty (need x0 < x1 and y0 < y1)")
    if size is not None:
        height, width = size
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise UserError(f"bad annotations in {where}: {key!r} {field} {box} lies outside the {width}x{height} image")


def _check_points(points: Any, key: str, field: str, where: str, dims: int, counts: tuple[int, ...]) -> None:
    ok = (
        isinstance(points, list)
        and len(points) in counts
        and all(isinstance(p, list) and len(p) == dims and all(_is_number(v) for v in p) for p in points)
    )
    if not ok:
        shape = " or ".join(f"{n} x {dims}" for n in counts)
        raise UserError(f"bad annotations in {where}: {key!r} {field} must be a list of {shape} numbers")


def _image_size(value: Any, where: str, key: str = "image_size") -> tuple[int, int] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(_is_number(v) and v > 0 for v in value)):
        raise UserError(f"bad annotations in {where}: {key} must be [height, width], got {value!r}")
    return int(value[0]), int(value[1])


def _validate_entry(key: str, entry: Any, where: str, base: Path, size: tuple[int, int] | None) -> dict[str, Any]:
    """Check one per-image entry and return it with ``body_mask`` made absolute."""
    if not isinstance(entry, dict):
        raise UserError(f"bad annotations in {where}: entry {key!r} must be an object")
    entry = dict(entry)
    size = _image_size(entry.pop("image_size", None), where, f"{key!r} image_size") or size
    for field in ("head_box", "face_box"):
        if entry.get(field) is not None:
            _check_box(entry[field], key, field, where, size)
    if entry.get("keypoints") is not None:
        _check_points(entry["keypoints"], key, "keypoints", where, 3, (17,))
    if entry.get("landmarks") is not None:
        _check_points(entry["landmarks"], key, "landmarks", where, 2, (5, 7, 68))
    if entry.get("view") is not None and entry["view"] not in VIEWS:
        raise UserError(f"bad annotations in {where}: {key!r} view must be one of {', '.join(VIEWS)}, got {entry['view']!r}")
    if entry.get("attributes") is not None and not isinstance(entry["attributes"], dict):
        raise UserError(f"bad annotations in {where}: {key!r} attributes must be an object")
    if entry.get("body_mask") is not None:
        if not isinstance(entry["body_mask"], str):
            raise UserError(f"bad annotations in {where}: {key!r} body_mask must be a path string")
        mask = Path(entry["body_mask"])
        mask = mask if mask.is_absolute() else base / mask
        if not mask.is_file():
            raise UserError(f"bad annotations in {where}: {key!r} body_mask {mask} does not exist")
        entry["body_mask"] = str(mask)
    return entry


def load_annotations(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and validate a sidecar; returns ``relpath -> annotations`` (body_mask paths absolute)."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise UserError(f"annotations file {path} does not exist (set dataset.annotations=/path/to/{SIDECAR_NAME})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"malformed annotations file {path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != ANNOTATION_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise UserError(f"annotations file {path} has unknown format {found!r} (expected {ANNOTATION_FORMAT!r})")
    images = doc.get("images")
    if not isinstance(images, dict):
        raise UserError(f"bad annotations in {path}: 'images' must be an object keyed by '<split folder>/<file name>'")
    size = _image_size(doc.get("image_size"), str(path))
    return {key: _validate_entry(key, entry, str(path), path.parent, size) for key, entry in images.items()}


def _merge_annotations(dataset: ReidDataset, table: dict[str, dict[str, Any]], source: Path) -> None:
    samples = {s.relpath: s for split in ("train", "query", "gallery") for s in dataset.split(split)}
    unmatched = 0
    for key, entry in table.items():
        sample = samples.get(key)
        if sample is None:
            unmatched += 1
            continue
        sample.annotations.update(entry)
    if unmatched:
        log.warning("%d of %d annotation entries in %s match no loaded image (junk or unknown keys)",
                    unmatched, len(table), source)


# --------------------------------------------------------------------------- loader

def load_market1501(root: str | Path, annotations: str | Path | None = None, name: str = "market1501") -> ReidDataset:
    """Load Market-1501 (or a folder in its layout) as torchreid would, merging annotation sidecars.

    ``root`` is the ``Market-1501-v15.09.15`` folder or its parent. The sidecar
    ``<root>/evalsuite_annotations.json`` is merged when present; entries of a user-supplied
    ``annotations`` file are merged on top of it.
    """
    data_dir = resolve_root(root)
    splits = {split: process_dir(data_dir / folder, split, relabel) for split, folder, relabel in SPLIT_DIRS}
    dataset = ReidDataset(name=name, root=str(data_dir), train=splits["train"], query=splits["query"], gallery=splits["gallery"])
    sources = [data_dir / SIDECAR_NAME] if (data_dir / SIDECAR_NAME).is_file() else []
    if annotations is not None:
        sources.append(Path(annotations).expanduser().absolute())
    for source in sources:
        _merge_annotations(dataset, load_annotations(source), source)
    log.info("%s (from %s)", dataset.summary(), data_dir)
    return dataset
