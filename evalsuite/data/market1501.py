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
from collections.abc import Iterable, Sequence
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
    16-bit grayscale files are scaled to 8 bits (0..65535 -> 0..255), not clipped.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ValueError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process, so truncated files would pass as gray; set it to False")
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode == "I" or image.mode.startswith("I;16"):  # 16-bit gray (PGM, TIFF): convert() would clip at 255
                wide = np.asarray(image).astype(np.float64)
                image = Image.fromarray(np.clip(np.round(wide * (255 / 65535)), 0, 255).astype(np.uint8), "L")
            rgb = image.convert("RGB")
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

def find_data_dir(root: str | Path, required: Sequence[str], nested: Sequence[str], label: str, hint: str) -> Path:
    """The first of ``root`` and ``root/<nested>`` that holds every ``required`` folder or file;
    one UserError line naming what is missing where (and ``hint``) otherwise."""
    given = Path(root).expanduser().absolute()
    candidates = [given, *(given / n for n in nested)]
    for candidate in candidates:
        if all((candidate / r).exists() for r in required):
            return candidate
    if not given.is_dir():
        raise UserError(f"{label} not found: {given} does not exist; {hint}")
    partial = next((c for c in candidates if any((c / r).exists() for r in required)), None)
    if partial is not None:
        missing = ", ".join(r for r in required if not (partial / r).exists())
        raise UserError(f"{label} folder {partial} lacks {missing}; {hint}")
    elsewhere = f" or {given / nested[0]}" if nested else ""
    raise UserError(f"{label} not found: no {'/'.join(required)} in {given}{elsewhere}; {hint}")


def resolve_root(root: str | Path) -> Path:
    """The folder holding the split folders: ``root`` itself or ``root/Market-1501-v15.09.15``.

    torchreid's own layout (``<root>/market1501/Market-1501-v15.09.15``) is accepted too.
    """
    nested = (DATASET_DIRNAME, f"market1501/{DATASET_DIRNAME}", "market1501")
    return find_data_dir(root, [folder for _, folder, _ in SPLIT_DIRS], nested, "Market-1501", HINT)


def parse_name(path: str | Path, label: str = "Market-1501", expected: str = EXPECTED_NAME) -> tuple[int, int]:
    """(pid, 1-based camera id) from a Market-1501-style file name; UserError when it does not parse."""
    name = Path(path).name
    match = NAME_PATTERN.search(name)
    try:
        if match is None:
            raise ValueError
        pid, camid = int(match.group(1)), int(match.group(2))
    except ValueError:
        raise UserError(f"unexpected {label} file name {path}: expected {expected}") from None
    if pid < JUNK_PID or camid < 1:
        raise UserError(f"unexpected {label} file name {path}: pid >= -1 and camera >= 1 expected in {expected}")
    return pid, camid


def scan_dir(dir_path: str | Path, label: str = "Market-1501", expected: str = EXPECTED_NAME, pattern: str = "*.jpg") -> list[tuple[Path, int, int]]:
    """(path, pid, 0-based camera) of the ``pattern`` files of a split folder named like
    Market-1501's, junk (pid -1) dropped, sorted by path; UserError when none is left."""
    dir_path = Path(dir_path)
    paths = sorted(dir_path.glob(pattern))
    if not paths:
        raise UserError(f"{label} split folder {dir_path} has no {pattern} images named {expected}")
    parsed = [(p, *parse_name(p, label, expected)) for p in paths]
    kept = [(p, pid, cam - 1) for p, pid, cam in parsed if pid != JUNK_PID]
    if not kept:
        raise UserError(f"{label} split folder {dir_path} holds only junk (pid -1) images")
    return kept


def relabel_map(pids: Iterable[int]) -> dict[int, int]:
    """pid -> 0..N-1 in ascending pid order (torchreid's ``pid2label`` of the training split)."""
    return {pid: label for label, pid in enumerate(sorted(set(pids)))}


def process_dir(dir_path: str | Path, split: str, relabel: bool) -> list[Sample]:
    """torchreid's ``Market1501.process_dir`` as Samples (sorted by path)."""
    kept = scan_dir(dir_path)
    pid2label = relabel_map(pid for _, pid, _ in kept)
    return [Sample(path=str(p), pid=pid2label[pid] if relabel else pid, camid=cam, split=split) for p, pid, cam in kept]


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
    samples: dict[str, list[Sample]] = {}
    for split in ("train", "query", "gallery"):
        for s in dataset.split(split):
            samples.setdefault(s.relpath, []).append(s)  # a file may be in two splits (CUHK03's classic query = gallery)
    unmatched = 0
    for key, entry in table.items():
        if key not in samples:
            unmatched += 1
            continue
        for sample in samples[key]:
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
    attach_sidecars(dataset, annotations)
    log.info("%s (from %s)", dataset.summary(), data_dir)
    return dataset


def attach_sidecars(dataset: ReidDataset, annotations: str | Path | None = None) -> None:
    """Merge ``<dataset.root>/evalsuite_annotations.json`` (when present), then ``annotations``
    on top of it, into the samples' annotations (keys: :attr:`Sample.relpath`)."""
    data_dir = Path(dataset.root)
    sources = [data_dir / SIDECAR_NAME] if (data_dir / SIDECAR_NAME).is_file() else []
    if annotations is not None:
        sources.append(Path(annotations).expanduser().absolute())
    for source in sources:
        _merge_annotations(dataset, load_annotations(source), source)
