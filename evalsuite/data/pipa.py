"""PIPA-style person recognition data: photos with head boxes, turned into full-person crops.

PIPA (Zhang et al. 2015, "People In Photo Albums"; used by naeil and Sun et al. 2018) ships
``annotations/index.txt`` with one person instance per line::

    photoset_id photo_id xmin ymin width height identity_id subset_id

(the head box is ``xmin ymin width height`` in pixels of the photo; ``subset_id`` is 1 for
train, 2 for validation, 3 for test and 0 for leftover) and the photos as
``<root>/<subset folder>/<photoset_id>_<photo_id>.jpg`` with the folders ``train``, ``val``,
``test`` and ``leftover``. A photo is looked for in its subset's folder first, then in the
others, then in ``images`` when that is given (a single folder holding every photo).

Full-person samples (naeil; Sun et al. 4.1: "extend the head box with fixed ratios (3x
width and 6x height), and then resize and zero-pad the body crop such that it fits
tightly"): for a head box ``(x, y, w, h)`` the body box is ``[x - w, y, x + 2w, y + 6h]``,
i.e. 3 head widths wide and 6 head heights tall with the head at its top centre. The body
box is cut from the photo (parts outside the photo are black), resized with ``cv2.INTER_AREA``
to fit tightly inside ``height`` x ``width`` (default 128 x 64, the synthetic crops' size)
keeping its aspect ratio, and zero-padded, centred. The head box is mapped into the crop
and stored as the sample's ``head_box`` annotation, as the synthetic set's sidecar does.

Splits (:class:`~evalsuite.data.types.ReidDataset`, read by the ``person-recognition``
protocol as "train the feature extractors / enroll the SVM / test"):

- ``train``: the instances of the ``train_subsets`` (default ``[1]``), identities relabelled
  0..N-1; the CNN feature extractors learn from them;
- ``gallery`` / ``query``: the instances of the ``test_subset`` (default 3) split per identity
  by a seeded permutation (``split_seed``) into two halves, as naeil splits PIPA's test set
  into an SVM training half and an evaluation half: ``gallery`` (the first ``ceil(n / 2)``)
  trains the SVM, ``query`` (the rest) is recognized. Identities with fewer than 2 test
  instances cannot be both enrolled and tested and are dropped (logged).
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from evalsuite.progress import tqdm

from evalsuite.data.market1501 import read_image
from evalsuite.data.reid_common import read_reid_image
from evalsuite.data.types import ReidDataset, ReidImage, Sample
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS

log = logging.getLogger(__name__)

INDEX_RELPATH = "annotations/index.txt"
SUBSET_FOLDERS = {0: "leftover", 1: "train", 2: "val", 3: "test"}
#: body box = head box grown to BODY_WIDTH_RATIO head widths and BODY_HEIGHT_RATIO head heights
BODY_WIDTH_RATIO = 3
BODY_HEIGHT_RATIO = 6
HINT = "set dataset.root=/path/to/PIPA (holding annotations/index.txt and train/ val/ test/ leftover/) or use dataset=synthetic"
INDEX_FORMAT = "'photoset_id photo_id xmin ymin width height identity_id subset_id' (8 whitespace-separated numbers)"


@dataclass
class PersonCrop(Sample):
    """A person instance of a photo: the body crop of ``photo_box`` is the sample's image.

    ``path`` is the photo; ``photo_box`` the head box ``(x, y, w, h)`` in the photo;
    ``size`` the crop's (height, width); ``instance`` the line number in index.txt.
    """

    photo_box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    size: tuple[int, int] = (128, 64)
    instance: int = 0

    @property
    def relpath(self) -> str:
        """``<folder>/<photo>#<instance>``: unique per person instance (several share a photo)."""
        p = Path(self.path)
        return f"{p.parent.name}/{p.name}#{self.instance}"


def body_box(head: Sequence[float]) -> tuple[float, float, float, float]:
    """naeil's body box ``[x0, y0, x1, y1]`` of a head box ``(x, y, w, h)``: 3w x 6h, head at the top centre."""
    x, y, w, h = (float(v) for v in head)
    return x - w, y, x + (BODY_WIDTH_RATIO - 1) * w, y + BODY_HEIGHT_RATIO * h


@dataclass(frozen=True)
class _Geometry:
    """Where a body box lands in a crop: its pixel box in the photo, its resized size and offset."""

    x0: int
    y0: int
    box_width: int
    box_height: int
    width: int  # resized size inside the crop
    height: int
    offset_x: int
    offset_y: int


def _geometry(head: Sequence[float], height: int, width: int) -> _Geometry:
    x0, y0, x1, y1 = (round(v) for v in body_box(head))
    bw, bh = max(x1 - x0, 1), max(y1 - y0, 1)
    scale = min(height / bh, width / bw)
    rw, rh = max(1, min(width, round(bw * scale))), max(1, min(height, round(bh * scale)))
    return _Geometry(x0, y0, bw, bh, rw, rh, (width - rw) // 2, (height - rh) // 2)


def crop_head_box(head: Sequence[float], height: int, width: int) -> list[float]:
    """The head box ``(x, y, w, h)`` of a photo as ``[x0, y0, x1, y1]`` in its body crop's pixels."""
    g = _geometry(head, height, width)
    fx, fy = g.width / g.box_width, g.height / g.box_height
    x, y, w, h = (float(v) for v in head)
    box = [g.offset_x + (x - g.x0) * fx, g.offset_y + (y - g.y0) * fy, g.offset_x + (x + w - g.x0) * fx, g.offset_y + (y + h - g.y0) * fy]
    return [round(min(max(v, 0.0), float(limit)), 3) for v, limit in zip(box, (width, height, width, height))]


def crop_person(photo: np.ndarray, head: Sequence[float], height: int, width: int) -> np.ndarray:
    """The zero-padded ``height`` x ``width`` body crop (uint8 RGB) of a head box ``(x, y, w, h)``.

    The body box (:func:`body_box`, rounded to whole pixels) is cut from ``photo`` with
    black outside the photo, resized (INTER_AREA when shrinking) to fit tightly in the crop
    keeping its aspect ratio, and centred on a black canvas; :func:`crop_head_box` gives
    where the head lands.
    """
    g = _geometry(head, height, width)
    ph, pw = photo.shape[:2]
    region = np.zeros((g.box_height, g.box_width, 3), dtype=np.uint8)
    sx0, sy0 = max(g.x0, 0), max(g.y0, 0)
    sx1, sy1 = min(g.x0 + g.box_width, pw), min(g.y0 + g.box_height, ph)
    if sx1 > sx0 and sy1 > sy0:
        region[sy0 - g.y0 : sy1 - g.y0, sx0 - g.x0 : sx1 - g.x0] = photo[sy0:sy1, sx0:sx1]
    shrinking = g.width < g.box_width or g.height < g.box_height
    resized = cv2.resize(region, (g.width, g.height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    canvas[g.offset_y : g.offset_y + g.height, g.offset_x : g.offset_x + g.width] = resized
    return canvas


def read_person_image(sample: Sample) -> np.ndarray:
    """A sample's image as uint8 H x W x 3 RGB: the body crop for a :class:`PersonCrop`, the
    resized file for a :class:`ReidImage` (DukeMTMC-reID, CUHK03, MSMT17), else the file."""
    if isinstance(sample, PersonCrop):
        return crop_person(read_image(sample.path), sample.photo_box, *sample.size)
    if isinstance(sample, ReidImage):
        return read_reid_image(sample)
    return read_image(sample.path)


def load_person_images(samples: Sequence[Sample], description: str = "load images") -> np.ndarray:
    """Every sample's image stacked into one uint8 (N, H, W, 3) array; UserError when sizes differ."""
    if not samples:
        return np.empty((0, 0, 0, 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = list(tqdm(pool.map(read_person_image, samples), total=len(samples), desc=description, unit="img", leave=False))
    shape = arrays[0].shape
    for sample, array in zip(samples, arrays):
        if array.shape != shape:
            raise UserError(
                f"image {sample.path} is {array.shape[1]}x{array.shape[0]} but {samples[0].path} is {shape[1]}x{shape[0]}; "
                "every full-person image of a split must share one size (the synthetic crops are 64x128)"
            )
    return np.stack(arrays)


# --------------------------------------------------------------------------- index.txt

@dataclass(frozen=True)
class IndexEntry:
    line: int
    photoset: str
    photo: str
    box: tuple[float, float, float, float]
    identity: int
    subset: int


def read_index(path: Path) -> list[IndexEntry]:
    """Parse a PIPA ``index.txt``; UserError naming the file and line on a malformed line."""
    entries = []
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            fields = text.split()
            if not fields or fields[0].startswith("#"):
                continue
            where = f"{path}:{number}"
            if len(fields) != 8:
                raise UserError(f"malformed PIPA index line {where}: {len(fields)} fields, expected {INDEX_FORMAT}")
            try:
                box = tuple(float(v) for v in fields[2:6])
                identity, subset = int(fields[6]), int(fields[7])
            except ValueError:
                raise UserError(f"malformed PIPA index line {where}: {text.strip()!r} is not {INDEX_FORMAT}") from None
            if not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
                raise UserError(f"malformed PIPA index line {where}: head box width and height must be positive, got {list(box)}")
            entries.append(IndexEntry(number, fields[0], fields[1], box, identity, subset))  # type: ignore[arg-type]
    if not entries:
        raise UserError(f"PIPA index {path} has no instances; expected lines {INDEX_FORMAT}")
    return entries


def _photo_path(root: Path, entry: IndexEntry, images: Path | None) -> Path:
    name = f"{entry.photoset}_{entry.photo}.jpg"
    folders = [SUBSET_FOLDERS.get(entry.subset)] + [f for s, f in SUBSET_FOLDERS.items() if s != entry.subset]
    candidates = [root / folder / name for folder in folders if folder] + ([images / name] if images is not None else [])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = f"{images}" if images is not None else f"{root}/{{{','.join(SUBSET_FOLDERS.values())}}}"
    raise UserError(f"PIPA photo {name} (index line {entry.line}) not found in {where}; set dataset.images=/folder/with/photos or fix dataset.root")


def load_pipa(
    root: str | Path,
    index: str | Path | None = None,
    images: str | Path | None = None,
    train_subsets: Sequence[int] = (1,),
    test_subset: int = 3,
    split_seed: int = 0,
    height: int = 128,
    width: int = 64,
    name: str = "pipa",
) -> ReidDataset:
    """Read a PIPA-style folder into full-person train / gallery (SVM) / query (test) samples."""
    given = Path(root).expanduser().absolute()
    if not given.is_dir():
        raise UserError(f"PIPA not found: {given} does not exist; {HINT}")
    index_path = Path(index).expanduser() if index is not None else given / INDEX_RELPATH
    if not index_path.is_absolute():
        index_path = given / index_path
    if not index_path.is_file():
        raise UserError(f"PIPA index {index_path} does not exist; set dataset.index=/path/to/index.txt or {HINT}")
    images_dir = None
    if images is not None:
        images_dir = Path(images).expanduser()
        images_dir = images_dir if images_dir.is_absolute() else given / images_dir
        if not images_dir.is_dir():
            raise UserError(f"PIPA images folder {images_dir} does not exist (dataset.images)")
    if isinstance(height, bool) or isinstance(width, bool) or int(height) < 32 or int(width) < 16:
        raise UserError(f"dataset.height={height!r} / dataset.width={width!r}: full-person crops must be at least 32 x 16 pixels")
    height, width = int(height), int(width)
    if isinstance(train_subsets, int):
        train_subsets = [train_subsets]
    try:
        train_subsets = [int(s) for s in train_subsets]
        test_subset = int(test_subset)
    except (TypeError, ValueError):
        raise UserError(f"dataset.train_subsets={train_subsets!r} / dataset.test_subset={test_subset!r}: PIPA subset ids are integers (1 train, 2 val, 3 test, 0 leftover)") from None
    if test_subset in train_subsets:
        raise UserError(f"dataset.test_subset={test_subset} is also in dataset.train_subsets={train_subsets}; the recognizers must not train on the test instances")

    entries = read_index(index_path)

    def sample(entry: IndexEntry, pid: int, split: str) -> PersonCrop:
        return PersonCrop(
            path=str(_photo_path(given, entry, images_dir)), pid=pid, camid=0, split=split,
            annotations={"head_box": crop_head_box(entry.box, height, width)},
            photo_box=entry.box, size=(height, width), instance=entry.line,
        )

    train_entries = [e for e in entries if e.subset in train_subsets]
    test_entries = [e for e in entries if e.subset == test_subset]
    if not train_entries:
        raise UserError(f"PIPA index {index_path} has no instances of the train subsets {train_subsets} (dataset.train_subsets)")
    if not test_entries:
        raise UserError(f"PIPA index {index_path} has no instances of the test subset {test_subset} (dataset.test_subset)")
    relabel = {pid: label for label, pid in enumerate(sorted({e.identity for e in train_entries}))}
    train = [sample(e, relabel[e.identity], "train") for e in train_entries]

    by_identity: dict[int, list[IndexEntry]] = defaultdict(list)
    for entry in test_entries:
        by_identity[entry.identity].append(entry)
    rng = np.random.default_rng(int(split_seed))
    gallery: list[PersonCrop] = []
    query: list[PersonCrop] = []
    dropped = 0
    for identity in sorted(by_identity):
        group = by_identity[identity]
        if len(group) < 2:
            dropped += 1
            continue
        order = rng.permutation(len(group))
        half = math.ceil(len(group) / 2)
        gallery += [sample(group[i], identity, "gallery") for i in order[:half]]
        query += [sample(group[i], identity, "query") for i in order[half:]]
    if dropped:
        log.info("PIPA: %d test identities with a single instance dropped (they cannot be enrolled and tested)", dropped)
    if len({s.pid for s in gallery}) < 2:
        raise UserError(f"PIPA index {index_path}: the test subset {test_subset} needs at least 2 identities with 2 or more instances each")
    dataset = ReidDataset(name=name, root=str(given), train=train, query=query, gallery=gallery)
    log.info("%s (from %s)", dataset.summary(), given)
    return dataset


DEFAULT_PIPA_ROOT = "data/PIPA"


@DATASETS.register("pipa", description="PIPA-style photos with head boxes (annotations/index.txt) as full-person crops; dataset.root=/path/to/PIPA")
def pipa(
    root: str = DEFAULT_PIPA_ROOT,
    index: str | None = None,
    images: str | None = None,
    train_subsets: list[int] = [1],  # noqa: B006  (a config default; never mutated)
    test_subset: int = 3,
    split_seed: int = 0,
    height: int = 128,
    width: int = 64,
) -> ReidDataset:
    """PIPA person instances as naeil-style body crops (see the module docstring)."""
    return load_pipa(root, index=index, images=images, train_subsets=train_subsets, test_subset=test_subset,
                     split_seed=split_seed, height=height, width=width)
