"""Market-1501 loader: torchreid's parsing conventions, user errors, images and sidecars."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from evalsuite.data import load_market1501, read_image
from evalsuite.data.market1501 import DATASET_DIRNAME, parse_name
from evalsuite.data.types import SIDECAR_NAME
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS

TRAIN = [
    "0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c3s3_076119_02.jpg",
    "0010_c6s4_002202_01.jpg", "0010_c5s2_002202_02.jpg", "-1_c1s1_000401_03.jpg",
]
QUERY = ["0003_c1s1_000551_00.jpg", "0005_c4s2_001234_00.jpg"]
GALLERY = [
    "0003_c2s1_000601_02.jpg", "0005_c1s1_001001_01.jpg", "0000_c1s1_000000_01.jpg",
    "0000_c6s1_000000_02.jpg", "-1_c3s1_000000_00.jpg", "-1_c4s1_000000_01.jpg",
]
FOLDERS = {"bounding_box_train": TRAIN, "query": QUERY, "bounding_box_test": GALLERY}


def _jpg(path: Path, value: int = 128) -> None:
    img = np.full((16, 8, 3), value, np.uint8)
    assert cv2.imwrite(str(path), img)


def make_market(parent: Path) -> Path:
    root = parent / DATASET_DIRNAME
    for folder, names in FOLDERS.items():
        (root / folder).mkdir(parents=True)
        for i, name in enumerate(names):
            _jpg(root / folder / name, 10 * i)
        (root / folder / "Thumbs.db").write_bytes(b"not an image")  # not *.jpg: ignored, as torchreid
    return root


@pytest.fixture
def market(tmp_path: Path) -> Path:
    return make_market(tmp_path)


def _triples(samples) -> list[tuple[str, int, int]]:
    return sorted((Path(s.path).name, s.pid, s.camid) for s in samples)


def test_counts_pids_camids_and_relabel(market: Path) -> None:
    ds = load_market1501(market)
    assert _triples(ds.train) == [
        ("0002_c1s1_000451_03.jpg", 0, 0), ("0002_c2s1_000301_01.jpg", 0, 1), ("0007_c3s3_076119_02.jpg", 1, 2),
        ("0010_c5s2_002202_02.jpg", 2, 4), ("0010_c6s4_002202_01.jpg", 2, 5),
    ]
    assert _triples(ds.query) == [("0003_c1s1_000551_00.jpg", 3, 0), ("0005_c4s2_001234_00.jpg", 5, 3)]
    assert _triples(ds.gallery) == [
        ("0000_c1s1_000000_01.jpg", 0, 0), ("0000_c6s1_000000_02.jpg", 0, 5),
        ("0003_c2s1_000601_02.jpg", 3, 1), ("0005_c1s1_001001_01.jpg", 5, 0),
    ]
    assert ds.num_train_pids == 3 and ds.num_train_cams == 5
    assert {s.split for s in ds.train} == {"train"} and {s.split for s in ds.gallery} == {"gallery"}
    assert all(Path(s.path).is_absolute() and Path(s.path).is_file() for s in ds.train + ds.query + ds.gallery)
    assert ds.train[0].relpath.startswith("bounding_box_train/")


def test_matches_torchreid_process_dir(market: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        market_cls = pytest.importorskip("torchreid.reid.data.datasets.image.market1501").Market1501
    ref = market_cls.__new__(market_cls)  # skip __init__ (it would try to download)
    ds = load_market1501(market)
    for split, folder in (("query", "query"), ("gallery", "bounding_box_test")):
        expected = sorted(ref.process_dir(str(market / folder), relabel=False))
        assert sorted((s.path, s.pid, s.camid) for s in ds.split(split)) == expected
    # train: torchreid labels pids in set-iteration order (sorted on real Market-1501); we
    # label in sorted order. Same images, cameras and identity partition.
    expected = sorted(ref.process_dir(str(market / "bounding_box_train"), relabel=True))
    ours = sorted((s.path, s.pid, s.camid) for s in ds.train)
    assert [(p, c) for p, _, c in ours] == [(p, c) for p, _, c in expected]
    mapping = {}
    for (_, mine, _), (_, theirs, _) in zip(ours, expected):
        assert mapping.setdefault(mine, theirs) == theirs
    assert len(set(mapping.values())) == len(mapping) == 3


@pytest.mark.parametrize("layout", ["dataset", "parent", "torchreid"])
def test_root_may_be_dataset_folder_or_parent(tmp_path: Path, layout: str) -> None:
    if layout == "torchreid":
        make_market(tmp_path / "market1501")
        root = tmp_path
    else:
        data_dir = make_market(tmp_path)
        root = data_dir if layout == "dataset" else tmp_path
    ds = load_market1501(str(root))
    assert len(ds.train) == 5 and Path(ds.root).name == DATASET_DIRNAME


def test_missing_root_is_one_line_user_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError) as info:
        load_market1501(missing)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(missing) in msg
    assert "dataset.root=/path/to/Market-1501-v15.09.15" in msg and "dataset=synthetic" in msg


def test_root_without_splits_and_missing_split(tmp_path: Path, market: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="dataset=synthetic") as info:
        load_market1501(empty)
    assert str(empty) in str(info.value)
    for f in (market / "query").iterdir():
        f.unlink()
    (market / "query").rmdir()
    with pytest.raises(UserError, match="lacks query") as info:
        load_market1501(market)
    assert "dataset.root=" in str(info.value)


def test_empty_split_folder(market: Path) -> None:
    for f in (market / "query").glob("*.jpg"):
        f.unlink()
    with pytest.raises(UserError, match="PPPP_cCsS_FFFFFF_NN.jpg") as info:
        load_market1501(market)
    assert str(market / "query") in str(info.value)


def test_unparsable_file_name(market: Path) -> None:
    bad = market / "bounding_box_test" / "holiday_photo.jpg"
    _jpg(bad)
    with pytest.raises(UserError, match="PPPP_cCsS_FFFFFF_NN.jpg") as info:
        load_market1501(market)
    assert str(bad) in str(info.value)


def test_parse_name_follows_torchreid_regex() -> None:
    assert parse_name("/a/b/0002_c1s1_000451_03.jpg") == (2, 1)
    assert parse_name("-1_c3s1_000000_00.jpg") == (-1, 3)
    assert parse_name("0000_c6s1_000000_02.jpg") == (0, 6)
    with pytest.raises(UserError):
        parse_name("0002_x1s1_000451_03.jpg")


def test_read_image_rgb_and_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), np.dstack([np.zeros((4, 3)), np.zeros((4, 3)), np.full((4, 3), 255)]).astype(np.uint8))
    img = read_image(path)
    assert img.dtype == np.uint8 and img.shape == (4, 3, 3)
    assert img[0, 0].tolist() == [255, 0, 0]  # RGB, not OpenCV's BGR
    corrupt = tmp_path / "0002_c1s1_000451_03.jpg"
    corrupt.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(UserError, match="corrupt or unreadable image") as info:
        read_image(corrupt)
    assert str(corrupt) in str(info.value)
    with pytest.raises(UserError, match="corrupt or unreadable image"):
        read_image(tmp_path / "missing.jpg")


# ---------------------------------------------------------------- sidecars

def _entry(**extra) -> dict:
    entry = {
        "head_box": [2, 0, 6, 4], "face_box": [2, 1, 6, 4], "body_mask": "masks/bounding_box_train/0002_c1s1_000451_03.png",
        "keypoints": [[4.0, 8.0, 2]] * 17, "landmarks": [[3, 2], [4, 2], [5, 2], [4.5, 2], [4, 3]],
        "view": "front", "attributes": {"upper_colour": "red"},
    }
    entry.update(extra)
    return entry


def _write_sidecar(path: Path, images: dict, **top) -> Path:
    doc = {"format": "evalsuite-annotations/1", "image_size": [16, 8], "images": images, **top}
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def with_mask(market: Path) -> Path:
    (market / "masks" / "bounding_box_train").mkdir(parents=True)
    cv2.imwrite(str(market / "masks/bounding_box_train/0002_c1s1_000451_03.png"), np.full((16, 8), 255, np.uint8))
    return market


def test_sidecar_is_merged(with_mask: Path) -> None:
    _write_sidecar(with_mask / SIDECAR_NAME, {
        "bounding_box_train/0002_c1s1_000451_03.jpg": _entry(),
        "bounding_box_test/0000_c1s1_000000_01.jpg": {"face_box": None, "view": "back"},
        "bounding_box_train/-1_c1s1_000401_03.jpg": _entry(),  # junk: dropped image, ignored entry
    })
    ds = load_market1501(with_mask)
    sample = next(s for s in ds.train if s.relpath == "bounding_box_train/0002_c1s1_000451_03.jpg")
    assert sample.annotations["head_box"] == [2, 0, 6, 4]
    assert sample.annotations["attributes"] == {"upper_colour": "red"}
    mask = Path(sample.annotations["body_mask"])
    assert mask.is_absolute() and mask == with_mask / "masks/bounding_box_train/0002_c1s1_000451_03.png"
    distractor = next(s for s in ds.gallery if s.relpath == "bounding_box_test/0000_c1s1_000000_01.jpg")
    assert distractor.annotations == {"face_box": None, "view": "back"}
    others = [s for s in ds.train + ds.query + ds.gallery if s not in (sample, distractor)]
    assert all(s.annotations == {} for s in others)


def test_user_annotations_override_sidecar(with_mask: Path, tmp_path: Path) -> None:
    key = "bounding_box_train/0002_c1s1_000451_03.jpg"
    _write_sidecar(with_mask / SIDECAR_NAME, {key: _entry()})
    user_dir = tmp_path / "mine"
    (user_dir / "m").mkdir(parents=True)
    cv2.imwrite(str(user_dir / "m" / "a.png"), np.zeros((16, 8), np.uint8))
    user = _write_sidecar(user_dir / "boxes.json", {key: {"head_box": [0, 0, 8, 5], "body_mask": "m/a.png"}})
    ds = load_market1501(with_mask, annotations=user)
    ann = next(s for s in ds.train if s.relpath == key).annotations
    assert ann["head_box"] == [0, 0, 8, 5]  # the user's
    assert ann["body_mask"] == str(user_dir / "m" / "a.png")  # relative to the user's file
    assert ann["view"] == "front"  # the rest from the dataset's sidecar


@pytest.mark.parametrize(
    "images, top, pattern",
    [
        ({"bounding_box_train/0002_c1s1_000451_03.jpg": _entry(head_box=[5, 0, 5, 4])}, {}, "empty"),
        ({"bounding_box_train/0002_c1s1_000451_03.jpg": _entry(face_box=[2, 1, 9, 4])}, {}, "outside"),
        ({"bounding_box_train/0002_c1s1_000451_03.jpg": _entry(head_box=[1, 2, 3])}, {}, "x0, y0, x1, y1"),
        ({"bounding_box_train/0002_c1s1_000451_03.jpg": _entry(body_mask="masks/none.png")}, {}, "does not exist"),
        ({"bounding_box_train/0002_c1s1_000451_03.jpg": _entry(view="upside-down")}, {}, "view"),
        ({"bounding_box_train/0002_c1s1_000451_03.jpg": _entry(keypoints=[[1, 2, 2]] * 16)}, {}, "keypoints"),
        ({}, {"format": "evalsuite-annotations/9"}, "unknown format"),
    ],
)
def test_bad_sidecar(with_mask: Path, images: dict, top: dict, pattern: str) -> None:
    sidecar = _write_sidecar(with_mask / SIDECAR_NAME, images, **top)
    with pytest.raises(UserError, match=pattern) as info:
        load_market1501(with_mask)
    msg = str(info.value)
    assert str(sidecar) in msg and "\n" not in msg
    if images:
        assert "bounding_box_train/0002_c1s1_000451_03.jpg" in msg


def test_sidecar_not_json(market: Path) -> None:
    (market / SIDECAR_NAME).write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON") as info:
        load_market1501(market)
    assert str(market / SIDECAR_NAME) in str(info.value)


def test_missing_user_annotations(market: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dataset.annotations="):
        load_market1501(market, annotations=tmp_path / "nope.json")


def test_registered_market_dataset(market: Path) -> None:
    assert "market1501" in DATASETS and "synthetic" in DATASETS
    ds = DATASETS.build("market1501", root=str(market.parent))
    assert ds.name == "market1501" and len(ds.gallery) == 4
    with pytest.raises(UserError, match="dataset=synthetic"):
        DATASETS.build("market1501", root=str(market.parent / "missing"))
