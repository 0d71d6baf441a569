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
  ``PPPP_cC_N.png`` (regex ``([-\\d]+)_c(\\d)``, as Market-1501).

Conventions (torchreid): the camera id is the view (third ``_`` field, 1 or 2), 0-based in
the dataset, so same-pid same-view gallery images are excluded from a query's matches; train
pids are relabelled 0..N-1 in ascending order, query / gallery keep the global pids.
New-protocol sizes: detected 7,365 train / 1,400 query / 5,332 gallery images, labeled
7,368 / 1,400 / 5,328. The classic split (Li et al. 2014: 20 random splits of 100 test
identities, query = gallery) is not read here: it lives only in the raw ``cuhk-03.mat``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.data.market1501 import find_data_dir, scan_dir
from evalsuite.data.reid_common import DEFAULT_IMAGE_SIZE, Record, build_dataset, image_size_setting, make_samples, require_files
from evalsuite.data.types import ReidDataset
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS

IMAGE_TYPES = ("detected", "labeled")
SPLIT_DIRS = (("train", "bounding_box_train", True), ("query", "query", False), ("gallery", "bounding_box_test", False))
MAT_KEYS = ("filelist", "labels", "train_idx", "query_idx", "gallery_idx")
NP_EXPECTED_NAME = "PPPP_cC_N.png (regex ([-\\d]+)_c(\\d), e.g. 0001_c1_1.png)"
LABEL = "CUHK03"
HINT = ("set dataset.root=/path/to/cuhk03 (holding images_detected/, images_labeled/ and "
        "cuhk03_new_protocol_config_{detected,labeled}.mat, as torchreid) or /path/to/cuhk03-np")


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


def _np_layout(root: Path, images: str) -> Path | None:
    """The CUHK03-NP ``<images>`` folder: ``root/<images>``, ``root/cuhk03-np/<images>`` or ``root``."""
    for candidate in (root / images, root / "cuhk03-np" / images, root):
        if all((candidate / folder).is_dir() for _, folder, _ in SPLIT_DIRS):
            return candidate
    return None


def load_cuhk03(root: str | Path, images: str = "detected", annotations: str | Path | None = None,
                image_size: tuple[int, int] | list[int] | None = DEFAULT_IMAGE_SIZE, name: str = "cuhk03") -> ReidDataset:
    """Load CUHK03's new protocol (``images`` detected or labeled) as torchreid would."""
    if images not in IMAGE_TYPES:
        raise UserError(f"{LABEL}: dataset.images must be detected or labeled, got {images!r}")
    size = image_size_setting(image_size, LABEL)
    given = Path(root).expanduser().absolute()
    np_dir = _np_layout(given, images) if given.is_dir() else None
    if np_dir is not None:
        expected = NP_EXPECTED_NAME
        splits = {split: make_samples(scan_dir(np_dir / folder, f"{LABEL}-NP", expected, "*.png"), split, relabel, np_dir, size)
                  for split, folder, relabel in SPLIT_DIRS}
        return build_dataset(name, np_dir, splits, annotations)
    data_dir = find_data_dir(given, [f"images_{images}", protocol_file(images)], ("cuhk03",), LABEL, HINT)
    records = read_protocol(data_dir / protocol_file(images), data_dir / f"images_{images}")
    splits = {split: make_samples(records[split], split, split == "train", data_dir, size) for split in ("train", "query", "gallery")}
    return build_dataset(name, data_dir, splits, annotations)


@DATASETS.register("cuhk03", description="CUHK03 new protocol 767/700 (torchreid layout or CUHK03-NP); dataset.root=/path/to/cuhk03 dataset.images=detected|labeled")
def cuhk03(root: str | Path = "data/cuhk03", images: str = "detected", annotations: str | Path | None = None,
           image_size: tuple[int, int] | None = DEFAULT_IMAGE_SIZE) -> ReidDataset:
    """CUHK03 re-identification, new protocol, images resized to ``image_size`` [H, W]."""
    return load_cuhk03(root, images=images, annotations=annotations, image_size=image_size)
