"""MSMT17 in torchreid's conventions (``torchreid.data.datasets.image.msmt17``).

- ``MSMT17_V1`` holds ``train/`` and ``test/``; ``MSMT17_V2`` (faces blurred) holds
  ``mask_train_v2/`` and ``mask_test_v2/``; both hold ``list_train.txt``, ``list_val.txt``,
  ``list_query.txt`` and ``list_gallery.txt``. The first of V1, V2 found is read, as torchreid
  does (``dataset.version=V1|V2`` picks one);
- a list line is ``<pid folder>/<file name> <pid>``, e.g.
  ``0000/0000_000_01_0303morning_0015_0.jpg 0``; train and val images are in the train
  folder, query and gallery images in the test folder;
- the camera is the third ``_`` field of the name (1..15), 0-based in the dataset;
- train = ``list_train.txt`` (30,248 images, 1,041 ids); ``list_val.txt`` (2,373 images of the
  same ids) is left out "to fairly compare with published methods", and added to train with
  ``dataset.combine_val=true`` (torchreid's ``combineall`` first step: train += val);
- train pids relabelled 0..N-1 in ascending order (already 0..1040 in the lists, torchreid
  does not relabel them); query (11,659) and gallery (82,161; 3,060 ids) keep theirs.

``root`` is the ``MSMT17_V1`` / ``MSMT17_V2`` folder or its parent (torchreid's
``<root>/msmt17/MSMT17_V1`` too). Sidecar keys are paths under that folder
(``train/0000/0000_000_01_0303morning_0015_0.jpg``).
"""
from __future__ import annotations

import logging
from pathlib import Path

from evalsuite.data.market1501 import find_data_dir
from evalsuite.data.reid_common import DEFAULT_IMAGE_SIZE, Record, build_dataset, image_size_setting, make_samples, require_files
from evalsuite.data.types import ReidDataset
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS

log = logging.getLogger(__name__)

#: version -> (its folder, train images folder, test images folder)
VERSIONS = {"V1": ("MSMT17_V1", "train", "test"), "V2": ("MSMT17_V2", "mask_train_v2", "mask_test_v2")}
LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
LABEL = "MSMT17"
HINT = "set dataset.root=/path/to/MSMT17_V1 (or MSMT17_V2, or their parent)"
LINE_FORMAT = "'<pid folder>/<file name> <pid>', e.g. '0000/0000_000_01_0303morning_0015_0.jpg 0'"


def _find(root: str | Path, version: str | None) -> tuple[Path, str, str]:
    """(data folder, train folder name, test folder name) of the first version whose train
    folder is there; UserError naming what that version lacks, or what is missing altogether."""
    if version is not None and version not in VERSIONS:
        raise UserError(f"{LABEL}: unknown dataset.version {version!r}; use V1, V2 or null (the first found)")
    given = Path(root).expanduser().absolute()
    order = [version] if version is not None else list(VERSIONS)
    present = [v for v in order if any((given / n / VERSIONS[v][1]).is_dir() for n in ("", VERSIONS[v][0], f"msmt17/{VERSIONS[v][0]}"))]
    folder, train, test = VERSIONS[(present or order)[0]]
    data_dir = find_data_dir(given, [train, test, *LISTS], (folder, f"msmt17/{folder}"), f"{LABEL} ({folder})", HINT)
    return data_dir, train, test


def read_list(list_path: Path, image_dir: Path) -> list[Record]:
    """torchreid's ``MSMT17.process_dir``: one (path, pid, 0-based camera) per line of a list file."""
    records = []
    for number, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            name, pid = parts[0], int(parts[1])
            camid = int(Path(name).name.split("_")[2]) - 1
            if pid < 0 or camid < 0:
                raise ValueError
        except (ValueError, IndexError):
            raise UserError(f"{LABEL}: bad line {number} in {list_path}: {line.strip()!r}; expected {LINE_FORMAT}") from None
        records.append((image_dir / name, pid, camid))
    if not records:
        raise UserError(f"{LABEL}: {list_path} lists no images; expected lines {LINE_FORMAT}")
    require_files((p for p, _, _ in records), str(list_path), LABEL, HINT)
    return records


def load_msmt17(root: str | Path, annotations: str | Path | None = None, image_size: tuple[int, int] | list[int] | None = DEFAULT_IMAGE_SIZE,
                combine_val: bool = False, version: str | None = None, name: str = "msmt17") -> ReidDataset:
    """Load MSMT17 (V1 or V2) as torchreid would (see the module docstring)."""
    size = image_size_setting(image_size, LABEL)
    data_dir, train_dir, test_dir = _find(root, version)
    train = read_list(data_dir / "list_train.txt", data_dir / train_dir)
    if combine_val:
        train += read_list(data_dir / "list_val.txt", data_dir / train_dir)
    splits = {
        "train": make_samples(train, "train", True, data_dir, size),
        "query": make_samples(read_list(data_dir / "list_query.txt", data_dir / test_dir), "query", False, data_dir, size),
        "gallery": make_samples(read_list(data_dir / "list_gallery.txt", data_dir / test_dir), "gallery", False, data_dir, size),
    }
    log.info("%s: %s (%s), train %s", LABEL, data_dir.name, train_dir, "list_train + list_val" if combine_val else "list_train")
    return build_dataset(name, data_dir, splits, annotations)


@DATASETS.register("msmt17", description="MSMT17 re-id (torchreid layout, V1 or V2); dataset.root=/path/to/MSMT17_V1")
def msmt17(root: str | Path = "data/MSMT17_V1", annotations: str | Path | None = None,
           image_size: tuple[int, int] | None = DEFAULT_IMAGE_SIZE, combine_val: bool = False, version: str | None = None) -> ReidDataset:
    """MSMT17 re-identification (torchreid layout), images resized to ``image_size`` [H, W]."""
    return load_msmt17(root, annotations=annotations, image_size=image_size, combine_val=combine_val, version=version)
