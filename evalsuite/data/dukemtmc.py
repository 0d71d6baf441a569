"""DukeMTMC-reID in torchreid's conventions (``torchreid.data.datasets.image.dukemtmcreid``).

- folders ``bounding_box_train`` (train), ``query`` and ``bounding_box_test`` (gallery) of
  ``*.jpg`` named ``PPPP_cC_fFFFFFFF.jpg`` (e.g. ``0001_c2_f0046182.jpg``); pid and camera
  come from the regex ``([-\\d]+)_c(\\d)``, as for Market-1501;
- cameras 1..8 in the name, 0-based in the dataset;
- train pids relabelled 0..N-1 in ascending pid order, query / gallery keep theirs (torchreid
  numbers train pids in set-iteration order, which on Duke's pids is not ascending: the same
  identity partition, other class indices);
- no junk: DukeMTMC-reID has no pid -1 images (torchreid keeps every file; a -1 file would be
  dropped here as on Market-1501, the only difference, and none exists in the real set).

16,522 train images (702 ids), 2,228 query, 17,661 gallery (1,110 ids, 408 of them
distractors that appear only in the gallery). ``root`` is the ``DukeMTMC-reID`` folder or
its parent (torchreid's ``<root>/dukemtmc-reid/DukeMTMC-reID`` too).
"""
from __future__ import annotations

from pathlib import Path

from evalsuite.data.market1501 import find_data_dir, scan_dir
from evalsuite.data.reid_common import DEFAULT_IMAGE_SIZE, build_dataset, image_size_setting, make_samples
from evalsuite.data.types import ReidDataset
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS

DATASET_DIRNAME = "DukeMTMC-reID"
SPLIT_DIRS = (("train", "bounding_box_train", True), ("query", "query", False), ("gallery", "bounding_box_test", False))
EXPECTED_NAME = "PPPP_cC_fFFFFFFF.jpg (regex ([-\\d]+)_c(\\d), e.g. 0001_c2_f0046182.jpg)"
NUM_CAMERAS = 8
LABEL = "DukeMTMC-reID"
HINT = f"set dataset.root=/path/to/{DATASET_DIRNAME} (holding bounding_box_train, query, bounding_box_test)"


def load_dukemtmc(root: str | Path, annotations: str | Path | None = None, image_size: tuple[int, int] | list[int] | None = DEFAULT_IMAGE_SIZE,
                  name: str = "dukemtmc") -> ReidDataset:
    """Load DukeMTMC-reID as torchreid would (see the module docstring)."""
    size = image_size_setting(image_size, LABEL)
    nested = (DATASET_DIRNAME, f"dukemtmc-reid/{DATASET_DIRNAME}", "dukemtmc-reid")
    data_dir = find_data_dir(root, [folder for _, folder, _ in SPLIT_DIRS], nested, LABEL, HINT)
    splits = {}
    for split, folder, relabel in SPLIT_DIRS:
        records = scan_dir(data_dir / folder, LABEL, EXPECTED_NAME)
        bad = next((p for p, _, cam in records if cam >= NUM_CAMERAS), None)
        if bad is not None:
            raise UserError(f"unexpected {LABEL} file name {bad}: cameras are c1..c{NUM_CAMERAS} in {EXPECTED_NAME}")
        splits[split] = make_samples(records, split, relabel, data_dir, size)
    return build_dataset(name, data_dir, splits, annotations)


@DATASETS.register("dukemtmc", description="DukeMTMC-reID re-id (torchreid layout); dataset.root=/path/to/DukeMTMC-reID")
def dukemtmc(root: str | Path = f"data/{DATASET_DIRNAME}", annotations: str | Path | None = None,
             image_size: tuple[int, int] | None = DEFAULT_IMAGE_SIZE) -> ReidDataset:
    """DukeMTMC-reID re-identification (torchreid layout), images resized to ``image_size`` [H, W]."""
    return load_dukemtmc(root, annotations=annotations, image_size=image_size)
