"""CUHK03 in torchreid's conventions (``torchreid.data.datasets.image.cuhk03.CUHK03``).

The new protocol (Zhong et al., CVPR 2017, "767/700"): 767 training identities, 700 test
identities, query and gallery drawn from the test identities; ``detected`` images (a
pedestrian detector's boxes; torchreid's default) or ``labeled`` ones (hand-drawn boxes),
``dataset.images=detected|labeled``. Two layouts are read:

- torchreid's: ``images_detected/`` and ``images_labeled/`` of PNGs named
  ``<camera pair 1-5>_<pid in pair, 3 digits>_<view 1|2>_<image 01-10>.png`` (torchreid writes
  them from ``cuhk03_release/cuhk-03.mat``) beside ``cuhk03_new_protocol_config_detected.mat`` /
  ``cuhk03_new_protocol_config_labeled.mat``, read with ``scipy.io.loadmat``: ``filelist``
  (image names), ``labels`` (global pids), ``train_idx`` / ``query_idx`` / ``gallery_idx``
  (1-based indices into both); ``root`` is that folder or its parent (``<root>/cuhk03``);
- Zhong et al.'s CUHK03-NP release in the Market-1501 layout:
  ``cuhk03-np/<detected|labeled>/{bounding_box_train,query,bounding_box_test}/*.png`` named
  ``PPPP_cC_N.png`` (regex ``([-\\d]+)_c(\\d)``, as Market-1501; ``.jpg`` in converted copies).

Conventions (torchreid): the camera id is the view (third ``_`` field, 1 or 2), 0-based in
the dataset, so same-pid same-view gallery images are excluded from a query's matches; train
pids are relabelled 0..N-1 in ascending order, query / gallery keep the global pids.
New-protocol sizes: detected 7,365 train / 1,400 query / 5,332 gallery images, labeled
7,368 / 1,400 / 5,328.

The raw release ``cuhk03_release/cuhk-03.mat`` (MATLAB v7.3, read with h5py as torchreid
does): when ``images_<type>/`` is absent its images are written there once, named as above
(the first five cells of a person are view 1, the last five view 2; empty cells skipped).
It also holds the classic protocol (Li et al. 2014), ``dataset.split=classic``
``dataset.split_id=0..19``: 20 splits of 100 test identities (``testsets``), query =
gallery = the test images, every other identity trains; as in torchreid both train and
test pids are numbered in (camera pair, person) order.
"""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evalsuite.data.market1501 import find_data_dir, scan_dir
from evalsuite.data.reid_common import DEFAULT_IMAGE_SIZE, Record, build_dataset, image_size_setting, make_samples, require_files
from evalsuite.data.types import ReidDataset
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS

log = logging.getLogger(__name__)

IMAGE_TYPES = ("detected", "labeled")
SPLIT_DIRS = (("train", "bounding_box_train", True), ("query", "query", False), ("gallery", "bounding_box_test", False))
MAT_KEYS = ("filelist", "labels", "train_idx", "query_idx", "gallery_idx")
NP_EXPECTED_NAME = "PPPP_cC_N.png (regex ([-\\d]+)_c(\\d), e.g. 0001_c1_1.png)"
RAW_MAT = "cuhk03_release/cuhk-03.mat"
SPLITS = ("new", "classic")
NAME_PATTERN = re.compile(r"^(\d)_(\d{3})_([12])_(\d{2})\.png$")
LABEL = "CUHK03"
HINT = ("set dataset.root=/path/to/cuhk03 (holding cuhk03_new_protocol_config_{detected,labeled}.mat and images_detected/, "
        "images_labeled/ or cuhk03_release/cuhk-03.mat, as torchreid) or /path/to/cuhk03-np")


def protocol_file(images: str) -> str:
    return f"cuhk03_new_protocol_config_{images}.mat"


def _cell_text(cell: Any) -> str:
    """A MATLAB cell's string as ``loadmat`` returns it (an array holding one str)."""
    while isinstance(cell, np.ndarray):
        if cell.size != 1:
            raise ValueError(f"expected one string, got an array of shape {cell.shape}")
        cell = cell.reshape(-1)[0]
    return str(cell)


def read_protocol(mat_path: Path, image_dir: Path) -> dict[str, list[Record]]:
    """torchreid's ``_extract_new_split``: (path, global pid, 0-based view) per split of a protocol file."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(mat_path))
    except (OSError, ValueError, NotImplementedError, TypeError) as exc:
        raise UserError(f"{LABEL}: cannot read {mat_path} as a MATLAB file ({exc}); replace it with the new-protocol config file") from None
    missing = [k for k in MAT_KEYS if k not in mat]
    if missing:
        raise UserError(f"{LABEL}: {mat_path} lacks {', '.join(missing)} (a new-protocol config has {', '.join(MAT_KEYS)})")
    try:
        names = [_cell_text(c) for c in np.asarray(mat["filelist"]).reshape(-1)]
        labels = np.asarray(mat["labels"]).reshape(-1).astype(np.int64)
        if len(labels) != len(names):
            raise ValueError(f"{len(labels)} labels for {len(names)} files")
        splits = {}
        for split in ("train", "query", "gallery"):
            idx = np.asarray(mat[f"{split}_idx"]).reshape(-1).astype(np.int64) - 1  # MATLAB's 1-based indices
            if idx.size == 0 or idx.min() < 0 or idx.max() >= len(names):
                raise ValueError(f"{split}_idx must hold 1-based indices in 1..{len(names)}")
            splits[split] = [(image_dir / names[i], int(labels[i]), int(names[i].split("_")[2]) - 1) for i in idx]
    except (ValueError, IndexError) as exc:
        raise UserError(f"{LABEL}: unexpected contents in {mat_path}: {exc} (names must be like 1_001_1_01.png)") from None
    for split, records in splits.items():
        require_files((p for p, _, _ in records), f"{mat_path.name} ({split}_idx)", LABEL, f"images are looked for in {image_dir}")
    return splits


def extract_raw(raw_path: Path, images: str, image_dir: Path) -> None:
    """torchreid's ``_extract_img``: write the ``images`` cells of ``cuhk-03.mat`` as PNGs into
    ``image_dir`` (through a temporary folder, so an interrupted extraction leaves nothing)."""
    import h5py

    partial = image_dir.with_name(image_dir.name + ".partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"{LABEL}: cannot write {image_dir} from {raw_path} ({exc}); make {image_dir.parent} writable, "
                        "or extract the images once with torchreid") from None
    log.info("%s: extracting the %s images of %s into %s", LABEL, images, raw_path, image_dir)
    count = 0
    try:
        with h5py.File(raw_path, "r") as mat:
            for pair, pair_ref in enumerate(np.asarray(mat[images]).reshape(-1), 1):
                cells = np.asarray(mat[pair_ref]).T  # (persons, 10) references
                for person in range(cells.shape[0]):
                    for cell, ref in enumerate(cells[person]):
                        pixels = np.asarray(mat[ref]).T  # MATLAB's column-major H x W x 3
                        if pixels.ndim < 3 or pixels.size == 0:
                            continue  # an empty cell: that view has fewer images
                        view = 1 if cell < 5 else 2
                        Image.fromarray(pixels.astype(np.uint8)).save(partial / f"{pair}_{person + 1:03d}_{view}_{cell + 1:02d}.png")
                        count += 1
    except (OSError, KeyError, ValueError, TypeError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(f"{LABEL}: cannot read {raw_path} as the CUHK03 release ({type(exc).__name__}: {exc}); replace the file") from None
    try:
        partial.rename(image_dir)
    except OSError:
        if not image_dir.is_dir():
            raise
        shutil.rmtree(partial, ignore_errors=True)  # another process finished first: its copy is the same
    log.info("%s: wrote %d %s images", LABEL, count, images)


def read_classic(raw_path: Path, image_dir: Path, split_id: int) -> dict[str, list[Record]]:
    """torchreid's ``_extract_classic_split``: split ``split_id`` of ``testsets`` over the images in ``image_dir``."""
    import h5py

    try:
        with h5py.File(raw_path, "r") as mat:
            refs = np.asarray(mat["testsets"]).reshape(-1)
            if not 0 <= split_id < len(refs):
                raise UserError(f"{LABEL}: dataset.split_id must be in 0..{len(refs) - 1} for the classic split, got {split_id}")
            test = {(int(a), int(b)) for a, b in np.asarray(mat[refs[split_id]]).T.reshape(-1, 2)}
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{LABEL}: cannot read the classic splits (testsets) of {raw_path} ({type(exc).__name__}: {exc})") from None
    splits: dict[str, list[Record]] = {"train": [], "test": []}
    for path in sorted(image_dir.glob("*.png")):
        match = NAME_PATTERN.match(path.name)
        if match is None:
            raise UserError(f"{LABEL}: unexpected file name {path}: expected <pair>_<person>_<view>_<image>.png, e.g. 1_001_1_01.png")
        pair, person, view = int(match.group(1)), int(match.group(2)), int(match.group(3))
        # pid = (pair, person) in one sortable number, so relabelling numbers them in torchreid's order
        splits["test" if (pair, person) in test else "train"].append((path, pair * 1000 + person, view - 1))
    if not splits["test"]:
        raise UserError(f"{LABEL}: no image of classic split {split_id}'s test identities in {image_dir}")
    return {"train": splits["train"], "query": splits["test"], "gallery": splits["test"]}


def _np_layout(root: Path, images: str) -> Path | None:
    """The CUHK03-NP ``<images>`` folder: ``root/<images>``, ``root/cuhk03-np/<images>`` or ``root``."""
    for candidate in (root / images, root / "cuhk03-np" / images, root):
        if all((candidate / folder).is_dir() for _, folder, _ in SPLIT_DIRS):
            return candidate
    return None


def load_cuhk03(root: str | Path, images: str = "detected", annotations: str | Path | None = None,
                image_size: tuple[int, int] | list[int] | None = DEFAULT_IMAGE_SIZE, split: str = "new", split_id: int = 0,
                name: str = "cuhk03") -> ReidDataset:
    """Load CUHK03 (``images`` detected or labeled; ``split`` new or classic) as torchreid would."""
    if images not in IMAGE_TYPES:
        raise UserError(f"{LABEL}: dataset.images must be detected or labeled, got {images!r}")
    if split not in SPLITS:
        raise UserError(f"{LABEL}: dataset.split must be new (767/700) or classic (Li et al.'s 20 splits), got {split!r}")
    size = image_size_setting(image_size, LABEL)
    given = Path(root).expanduser().absolute()
    np_dir = _np_layout(given, images) if given.is_dir() and split == "new" else None
    if np_dir is not None:
        # the release is PNG; converted copies (cuhk03-np-jpg) are JPEG
        pattern = "*.png" if any((np_dir / "bounding_box_train").glob("*.png")) else "*.jpg"
        splits = {s: make_samples(scan_dir(np_dir / folder, f"{LABEL}-NP", NP_EXPECTED_NAME, pattern), s, relabel, np_dir, size)
                  for s, folder, relabel in SPLIT_DIRS}
        return build_dataset(name, np_dir, splits, annotations)
    image_dir = f"images_{images}"
    if split == "classic":
        data_dir = find_data_dir(given, [RAW_MAT], ("cuhk03",), LABEL, HINT)
    else:
        found = [p for p in (given, given / "cuhk03") if (p / protocol_file(images)).is_file() and ((p / image_dir).is_dir() or (p / RAW_MAT).is_file())]
        data_dir = found[0] if found else find_data_dir(given, [image_dir, protocol_file(images)], ("cuhk03",), LABEL, HINT)
    if not (data_dir / image_dir).is_dir():
        extract_raw(data_dir / RAW_MAT, images, data_dir / image_dir)
    if split == "classic":
        records = read_classic(data_dir / RAW_MAT, data_dir / image_dir, int(split_id))
    else:
        records = read_protocol(data_dir / protocol_file(images), data_dir / image_dir)
    relabelled = ("train", "query", "gallery") if split == "classic" else ("train",)
    splits = {s: make_samples(records[s], s, s in relabelled, data_dir, size) for s in ("train", "query", "gallery")}
    return build_dataset(name, data_dir, splits, annotations)


@DATASETS.register("cuhk03", description="CUHK03 new protocol 767/700 (torchreid layout or CUHK03-NP); dataset.root=/path/to/cuhk03 dataset.images=detected|labeled")
def cuhk03(root: str | Path = "data/cuhk03", images: str = "detected", annotations: str | Path | None = None,
           image_size: tuple[int, int] | None = DEFAULT_IMAGE_SIZE, split: str = "new", split_id: int = 0) -> ReidDataset:
    """CUHK03 re-identification (new protocol or classic split), images resized to ``image_size`` [H, W]."""
    return load_cuhk03(root, images=images, annotations=annotations, image_size=image_size, split=split, split_id=split_id)
