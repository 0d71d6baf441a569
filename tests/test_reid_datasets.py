"""DukeMTMC-reID, CUHK03 and MSMT17 loaders on tiny trees in the real on-disk formats."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from evalsuite.cli import main
from evalsuite.data.cuhk03 import load_cuhk03
from evalsuite.data.dukemtmc import load_dukemtmc
from evalsuite.data.msmt17 import load_msmt17
from evalsuite.data.pipa import read_person_image
from evalsuite.data.types import SIDECAR_NAME, ReidImage
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS


def _jpg(path: Path, height: int = 24, width: int = 10, value: int = 100, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sum(path.name.encode()))
    pixels = np.clip(value + rng.integers(-20, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)


def _triples(samples) -> list[tuple[str, int, int]]:
    return sorted((Path(s.path).name, s.pid, s.camid) for s in samples)


def _one_line_error(call, *fragments: str) -> str:
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# --------------------------------------------------------------------------- DukeMTMC-reID

DUKE = {
    "bounding_box_train": ["0005_c2_f0046985.jpg", "0005_c5_f0051341.jpg", "0001_c2_f0046182.jpg", "0001_c6_f0030883.jpg", "0008_c8_f0025410.jpg"],
    "query": ["0012_c1_f0057841.jpg", "0020_c3_f0060208.jpg"],
    "bounding_box_test": ["0012_c4_f0061000.jpg", "0020_c7_f0062000.jpg", "7140_c3_f0099999.jpg", "0012_c1_f0057800.jpg"],
}


def make_duke(parent: Path, nested: str = "DukeMTMC-reID") -> Path:
    """Crops of varying size, as the real set's detector boxes."""
    root = parent / nested
    for folder, names in DUKE.items():
        for i, name in enumerate(names):
            _jpg(root / folder / name, height=20 + 4 * i, width=8 + 2 * i, value=30 * i)
        (root / folder).joinpath("readme.txt").write_text("not an image")
    return root


def test_duke_counts_pids_cameras_relabel(tmp_path: Path) -> None:
    root = make_duke(tmp_path)
    ds = load_dukemtmc(tmp_path)  # the parent works too
    assert ds.root == str(root) and ds.name == "dukemtmc"
    assert _triples(ds.train) == [
        ("0001_c2_f0046182.jpg", 0, 1), ("0001_c6_f0030883.jpg", 0, 5), ("0005_c2_f0046985.jpg", 1, 1),
        ("0005_c5_f0051341.jpg", 1, 4), ("0008_c8_f0025410.jpg", 2, 7),
    ]
    assert _triples(ds.query) == [("0012_c1_f0057841.jpg", 12, 0), ("0020_c3_f0060208.jpg", 20, 2)]
    assert _triples(ds.gallery) == [
        ("0012_c1_f0057800.jpg", 12, 0), ("0012_c4_f0061000.jpg", 12, 3), ("0020_c7_f0062000.jpg", 20, 6), ("7140_c3_f0099999.jpg", 7140, 2),
    ]
    assert ds.num_train_pids == 3
    assert ds.train[0].relpath == "bounding_box_train/0001_c2_f0046182.jpg"
    # torchreid's layout <root>/dukemtmc-reid/DukeMTMC-reID
    other = tmp_path / "tr"
    make_duke(other, "dukemtmc-reid/DukeMTMC-reID")
    assert len(load_dukemtmc(other).gallery) == 4


def _torchreid(module: str, cls: str):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = getattr(pytest.importorskip(f"torchreid.reid.data.datasets.image.{module}"), cls)
    return found.__new__(found)  # skip __init__ (it would try to download)


def test_duke_matches_torchreid_process_dir(tmp_path: Path) -> None:
    root = make_duke(tmp_path)
    ref = _torchreid("dukemtmcreid", "DukeMTMCreID")
    ds = load_dukemtmc(root)
    for split, folder in (("query", "query"), ("gallery", "bounding_box_test")):
        assert sorted((s.path, s.pid, s.camid) for s in ds.split(split)) == sorted(ref.process_dir(str(root / folder), relabel=False))
    # train: torchreid numbers pids in set-iteration order (here 8, 1, 5), we in ascending
    # order: the same images, cameras and identity partition
    ours = sorted((s.path, s.pid, s.camid) for s in ds.train)
    theirs = sorted(ref.process_dir(str(root / "bounding_box_train"), relabel=True))
    assert [(p, c) for p, _, c in ours] == [(p, c) for p, _, c in theirs]
    assert len({(a, b) for (_, a, _), (_, b, _) in zip(ours, theirs)}) == ds.num_train_pids == 3


def test_duke_images_are_resized_on_read_with_their_sidecar_boxes(tmp_path: Path) -> None:
    root = make_duke(tmp_path)
    key = "bounding_box_train/0005_c5_f0051341.jpg"  # stored 24 x 10 (H x W)
    sidecar = {"format": "evalsuite-annotations/1", "images": {key: {"head_box": [3, 0, 9, 7], "face_box": None}}}
    (root / SIDECAR_NAME).write_text(json.dumps(sidecar))
    ds = load_dukemtmc(root, image_size=[48, 30])
    sample = next(s for s in ds.train if s.relpath == key)
    assert isinstance(sample, ReidImage) and sample.size == (48, 30)
    assert sample.annotations["head_box"] == pytest.approx([9, 0, 27, 14])  # x * 3, y * 2
    assert sample.annotations["face_box"] is None
    shapes = {read_person_image(s).shape for s in ds.train + ds.query + ds.gallery}
    assert shapes == {(48, 30, 3)}
    native = load_dukemtmc(root, image_size=None)
    assert read_person_image(native.train[0]).shape == (20 + 4 * 2, 8 + 2 * 2, 3)  # 0001_c2: third file written
    assert next(s for s in native.train if s.relpath == key).annotations["head_box"] == [3, 0, 9, 7]


def test_duke_errors_name_what_is_missing_and_the_root_key(tmp_path: Path) -> None:
    _one_line_error(lambda: load_dukemtmc(tmp_path / "nowhere"), str(tmp_path / "nowhere"), "dataset.root=", "DukeMTMC-reID")
    root = make_duke(tmp_path)
    for f in (root / "query").iterdir():
        f.unlink()
    (root / "query").rmdir()
    _one_line_error(lambda: load_dukemtmc(root), "DukeMTMC-reID folder", "lacks query", "dataset.root=")
    (root / "query").mkdir()
    _one_line_error(lambda: load_dukemtmc(root), str(root / "query"), "PPPP_cC_fFFFFFFF.jpg")
    _jpg(root / "query" / "0012_c9_f0057841.jpg")
    _one_line_error(lambda: load_dukemtmc(root), "0012_c9_f0057841.jpg", "c1..c8")
    _one_line_error(lambda: load_dukemtmc(root, image_size=[128]), "dataset.image_size", "[height, width]")


# --------------------------------------------------------------------------- MSMT17

MSMT_LISTS = {
    "list_train.txt": [("0000/0000_000_01_0303morning_0015_0.jpg", 0), ("0000/0000_001_05_0303morning_0016_0.jpg", 0),
                       ("0002/0002_000_14_0303noon_0100_1.jpg", 2)],
    "list_val.txt": [("0001/0001_000_03_0303afternoon_0010_0.jpg", 1)],
    "list_query.txt": [("0000/0000_000_02_0303morning_0020_0.jpg", 0), ("0007/0007_003_15_0304noon_0001_2.jpg", 7)],
    "list_gallery.txt": [("0000/0000_004_06_0303morning_0031_0.jpg", 0), ("0007/0007_001_11_0304noon_0301_0.jpg", 7),
                         ("0009/0009_000_01_0305morning_0044_1.jpg", 9)],
}


def make_msmt17(parent: Path, version: str = "V1") -> Path:
    folder, train, test = {"V1": ("MSMT17_V1", "train", "test"), "V2": ("MSMT17_V2", "mask_train_v2", "mask_test_v2")}[version]
    root = parent / folder
    root.mkdir(parents=True)
    for list_name, entries in MSMT_LISTS.items():
        image_dir = root / (train if list_name in ("list_train.txt", "list_val.txt") else test)
        (root / list_name).write_text("".join(f"{name} {pid}\n" for name, pid in entries))
        for i, (name, _) in enumerate(entries):
            _jpg(image_dir / name, height=30 + i, width=12)
    return root


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_msmt17_lists_cameras_and_relabel(tmp_path: Path, version: str) -> None:
    root = make_msmt17(tmp_path, version)
    ds = load_msmt17(tmp_path)
    assert ds.root == str(root)
    assert _triples(ds.train) == [
        ("0000_000_01_0303morning_0015_0.jpg", 0, 0), ("0000_001_05_0303morning_0016_0.jpg", 0, 4), ("0002_000_14_0303noon_0100_1.jpg", 1, 13),
    ]
    assert _triples(ds.query) == [("0000_000_02_0303morning_0020_0.jpg", 0, 1), ("0007_003_15_0304noon_0001_2.jpg", 7, 14)]
    assert len(ds.gallery) == 3 and {s.pid for s in ds.gallery} == {0, 7, 9}
    train_dir = "train" if version == "V1" else "mask_train_v2"
    assert ds.train[0].relpath == f"{train_dir}/0000/0000_000_01_0303morning_0015_0.jpg"  # unique: test/ has pid folders 0000 too
    combined = load_msmt17(root, combine_val=True)
    assert _triples(combined.train)[2:] == [("0001_000_03_0303afternoon_0010_0.jpg", 1, 2), ("0002_000_14_0303noon_0100_1.jpg", 2, 13)]
    assert combined.num_train_pids == 3


def test_msmt17_matches_torchreid_process_dir(tmp_path: Path) -> None:
    root = make_msmt17(tmp_path)
    ref = _torchreid("msmt17", "MSMT17")
    ds = load_msmt17(root)
    for split, folder, listed in (("train", "train", "list_train.txt"), ("query", "test", "list_query.txt"), ("gallery", "test", "list_gallery.txt")):
        expected = ref.process_dir(str(root / folder), str(root / listed))
        if split == "train":  # torchreid keeps the listed train pids; ours are relabelled 0..N-1 in the same order
            pid2label = {pid: i for i, pid in enumerate(sorted({pid for _, pid, _ in expected}))}
            expected = [(path, pid2label[pid], cam) for path, pid, cam in expected]
        assert sorted((s.path, s.pid, s.camid) for s in ds.split(split)) == sorted(expected)


def test_msmt17_picks_v1_first_or_the_version_asked(tmp_path: Path) -> None:
    make_msmt17(tmp_path, "V1")
    make_msmt17(tmp_path, "V2")
    assert Path(load_msmt17(tmp_path).root).name == "MSMT17_V1"
    assert Path(load_msmt17(tmp_path, version="V2").root).name == "MSMT17_V2"
    _one_line_error(lambda: load_msmt17(tmp_path, version="V3"), "dataset.version", "V3")


def test_msmt17_errors(tmp_path: Path) -> None:
    _one_line_error(lambda: load_msmt17(tmp_path), "MSMT17", "list_train.txt", "dataset.root=")
    root = make_msmt17(tmp_path)
    (root / "list_gallery.txt").unlink()
    _one_line_error(lambda: load_msmt17(tmp_path), f"{root} lacks list_gallery.txt", "dataset.root=")
    (root / "list_gallery.txt").write_text("0000/0000_004_06_0303morning_0031_0.jpg\n")
    _one_line_error(lambda: load_msmt17(root), "bad line 1", "list_gallery.txt", "<pid folder>/<file name> <pid>")
    (root / "list_gallery.txt").write_text("0000/0000_004_06_0303morning_0031_0.jpg 0\n0000/0000_009_06_0303morning_0099_0.jpg 0\n")
    _one_line_error(lambda: load_msmt17(root), "1 of 2 images listed in", "0000_009_06_0303morning_0099_0.jpg")


# --------------------------------------------------------------------------- CUHK03

def _cuhk03_names() -> list[tuple[str, int]]:
    """(file name, global label): camera pair 1 has persons 1-3, pair 2 persons 1-2; views 1 and 2."""
    names, label = [], 0
    for pair, persons in ((1, 3), (2, 2)):
        for person in range(1, persons + 1):
            label += 1
            for view, images in ((1, (1, 2)), (2, (6,))):
                names += [(f"{pair}_{person:03d}_{view}_{image:02d}.png", label) for image in images]
    return names


def make_cuhk03(parent: Path) -> Path:
    """torchreid's CUHK03 folder: PNGs and the new-protocol config files (1-based MATLAB indices)."""
    root = parent / "cuhk03"
    names = _cuhk03_names()  # 15 images of labels 1..5
    # labels 1-2 train (6 images); labels 3-5 test: image 01 of each is the query, the rest gallery
    train_idx = [i + 1 for i, (_, label) in enumerate(names) if label <= 2]
    query_idx = [i + 1 for i, (n, label) in enumerate(names) if label > 2 and n.endswith("_01.png")]
    gallery_idx = [i + 1 for i, (n, label) in enumerate(names) if label > 2 and not n.endswith("_01.png")]
    for images in ("detected", "labeled"):
        for i, (name, _) in enumerate(names):
            _jpg(root / f"images_{images}" / name, height=40 + i, width=15, value=60 if images == "detected" else 160, fmt="PNG")
        filelist = np.empty((len(names), 1), dtype=object)
        filelist[:, 0] = [n for n, _ in names]
        savemat(root / f"cuhk03_new_protocol_config_{images}.mat", {
            "filelist": filelist,
            "labels": np.array([[label] for _, label in names], dtype=np.float64),
            "camId": np.array([[int(n.split("_")[2])] for n, _ in names], dtype=np.float64),
            "train_idx": np.array(train_idx, dtype=np.float64)[:, None],
            "query_idx": np.array(query_idx, dtype=np.float64)[:, None],
            "gallery_idx": np.array(gallery_idx, dtype=np.float64)[:, None],
        })
    return root


def test_cuhk03_new_protocol_detected_and_labeled(tmp_path: Path) -> None:
    root = make_cuhk03(tmp_path)
    detected = load_cuhk03(tmp_path)
    assert detected.root == str(root)
    assert (len(detected.train), len(detected.query), len(detected.gallery)) == (6, 3, 6)
    assert _triples(detected.train) == [
        ("1_001_1_01.png", 0, 0), ("1_001_1_02.png", 0, 0), ("1_001_2_06.png", 0, 1),
        ("1_002_1_01.png", 1, 0), ("1_002_1_02.png", 1, 0), ("1_002_2_06.png", 1, 1),
    ]
    assert _triples(detected.query) == [("1_003_1_01.png", 3, 0), ("2_001_1_01.png", 4, 0), ("2_002_1_01.png", 5, 0)]
    assert {(s.pid, s.camid) for s in detected.gallery} == {(p, c) for p in (3, 4, 5) for c in (0, 1)}
    assert all(Path(s.path).parent.name == "images_detected" for s in detected.train + detected.query + detected.gallery)
    labeled = load_cuhk03(root, images="labeled")
    assert all(Path(s.path).parent.name == "images_labeled" for s in labeled.train + labeled.query + labeled.gallery)
    assert read_person_image(labeled.query[0]).mean() > read_person_image(detected.query[0]).mean() + 50
    assert labeled.query[0].relpath == "images_labeled/1_003_1_01.png"
    _one_line_error(lambda: load_cuhk03(root, images="hand"), "dataset.images", "detected or labeled")


def test_cuhk03_missing_files(tmp_path: Path) -> None:
    root = make_cuhk03(tmp_path)
    (root / "images_labeled" / "2_001_2_06.png").unlink()
    _one_line_error(lambda: load_cuhk03(root, images="labeled"), "1 of 6 images listed in", "gallery_idx", "2_001_2_06.png")
    (root / "cuhk03_new_protocol_config_detected.mat").unlink()
    _one_line_error(lambda: load_cuhk03(root), f"{root} lacks cuhk03_new_protocol_config_detected.mat", "dataset.root=")
    savemat(root / "cuhk03_new_protocol_config_detected.mat", {"filelist": np.array([["1_001_1_01.png"]], dtype=object)})
    _one_line_error(lambda: load_cuhk03(root), "lacks labels, train_idx, query_idx, gallery_idx")
    _one_line_error(lambda: load_cuhk03(tmp_path / "none"), "CUHK03 not found", "dataset.root=")


def make_raw_mat(path: Path, testsets: list[list[tuple[int, int]]]) -> dict[str, int]:
    """A v7.3 (HDF5) ``cuhk-03.mat`` as the release stores it: ``detected`` / ``labeled`` hold one
    reference per camera pair to a (10, persons) array of references to (3, W, H) images
    (MATLAB's column-major order) or to empty cells; ``testsets`` to (2, 100) [pair, person] arrays."""
    h5py = pytest.importorskip("h5py")
    counts = {}
    with h5py.File(path, "w") as mat:
        refs = mat.create_group("#refs#")
        n = 0

        def put(array: np.ndarray):
            nonlocal n
            n += 1
            return refs.create_dataset(f"r{n}", data=array).ref

        for kind, value in (("detected", 50), ("labeled", 200)):
            pairs, written = [], 0
            for persons in (3, 2):  # pair 1: 3 persons, pair 2: 2 persons, as make_cuhk03
                cells = np.empty((10, persons), dtype=h5py.ref_dtype)
                for person in range(persons):
                    for cell in range(10):
                        if cell in (3, 4, 9):  # empty cells (fewer images of that view)
                            cells[cell, person] = put(np.zeros(2, dtype=np.uint64))
                        else:
                            cells[cell, person] = put(np.full((3, 12, 30), value + cell, dtype=np.uint8))
                            written += 1
                pairs.append(put(cells))
            mat.create_dataset(kind, data=np.array([pairs], dtype=h5py.ref_dtype))
            counts[kind] = written
        sets = [put(np.array(t, dtype=np.float64).T) for t in testsets]
        mat.create_dataset("testsets", data=np.array([sets], dtype=h5py.ref_dtype))
    return counts


def test_cuhk03_raw_mat_is_extracted_once_as_torchreid_names_it(tmp_path: Path) -> None:
    root = make_cuhk03(tmp_path)
    import shutil

    shutil.rmtree(root / "images_detected")
    (root / "cuhk03_release").mkdir()
    counts = make_raw_mat(root / "cuhk03_release" / "cuhk-03.mat", [[(1, 2)], [(2, 1)]])
    assert counts["detected"] == 35  # 5 persons x 7 non-empty cells
    ds = load_cuhk03(root)  # the new protocol's 15 listed names are among the extracted ones
    written = sorted(p.name for p in (root / "images_detected").iterdir())
    assert len(written) == 35 and "1_001_1_01.png" in written and "2_001_2_10.png" not in written and "1_002_2_09.png" in written
    assert not (root / "images_detected.partial").exists()
    image = np.asarray(Image.open(root / "images_detected" / "1_001_2_06.png"))
    assert image.shape == (30, 12, 3) and int(image[0, 0, 0]) == 55  # H x W x 3, value of cell 6
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (6, 3, 6)
    stamp = (root / "images_detected" / "1_001_1_01.png").stat().st_mtime_ns
    load_cuhk03(root)  # the folder is there now: not written again
    assert (root / "images_detected" / "1_001_1_01.png").stat().st_mtime_ns == stamp
    # classic split 1: pair 2 person 1 is the test identity, query = gallery = its 7 images
    classic = load_cuhk03(root, split="classic", split_id=1)
    assert len(classic.query) == len(classic.gallery) == 7 and {s.pid for s in classic.query} == {0}
    assert {Path(s.path).name[:5] for s in classic.query} == {"2_001"}
    assert {s.camid for s in classic.query} == {0, 1}
    assert classic.num_train_pids == 4 and len(classic.train) == 28
    assert [s.pid for s in classic.train[:7]] == [0] * 7 and Path(classic.train[0].path).name.startswith("1_001")
    _one_line_error(lambda: load_cuhk03(root, split="classic", split_id=5), "dataset.split_id", "0..1")
    _one_line_error(lambda: load_cuhk03(tmp_path / "cuhk03", split="clasic"), "dataset.split", "classic")


def test_cuhk03_raw_mat_that_is_not_one(tmp_path: Path) -> None:
    root = tmp_path / "cuhk03"
    (root / "cuhk03_release").mkdir(parents=True)
    (root / "cuhk03_release" / "cuhk-03.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    (root / "cuhk03_new_protocol_config_labeled.mat").write_bytes(b"")
    _one_line_error(lambda: load_cuhk03(root, images="labeled"), "cuhk-03.mat", "replace the file")
    assert not (root / "images_labeled").exists() and not (root / "images_labeled.partial").exists()


def test_cuhk03_np_market_layout(tmp_path: Path) -> None:
    base = tmp_path / "cuhk03-np" / "labeled"
    for folder, names in {"bounding_box_train": ["0001_c1_1.png", "0001_c2_2.png", "0003_c1_1.png"],
                          "query": ["0005_c1_1.png"], "bounding_box_test": ["0005_c2_1.png", "0006_c1_3.png"]}.items():
        for name in names:
            _jpg(base / folder / name, fmt="PNG")
    ds = load_cuhk03(tmp_path, images="labeled")
    assert ds.root == str(base)
    assert _triples(ds.train) == [("0001_c1_1.png", 0, 0), ("0001_c2_2.png", 0, 1), ("0003_c1_1.png", 1, 0)]
    assert _triples(ds.gallery) == [("0005_c2_1.png", 5, 1), ("0006_c1_3.png", 6, 0)]
    # a JPEG copy in the Market-1501 layout, given as the root itself
    copy = tmp_path / "cuhk03-jpg"
    for folder, names in {"bounding_box_train": ["0001_c1_1.jpg", "0002_c2_1.jpg"], "query": ["0007_c1_1.jpg"], "bounding_box_test": ["0007_c2_2.jpg"]}.items():
        for name in names:
            _jpg(copy / folder / name)
    jpg = load_cuhk03(copy)
    assert jpg.root == str(copy) and jpg.name == "cuhk03" and _triples(jpg.train) == [("0001_c1_1.jpg", 0, 0), ("0002_c2_1.jpg", 1, 1)]


def test_registered_with_their_settings() -> None:
    assert {"dukemtmc", "cuhk03", "msmt17"} <= set(DATASETS.names())


# --------------------------------------------------------------------------- end to end

def test_market_protocol_runs_on_a_duke_tree(tmp_path: Path, capsys) -> None:
    root = tmp_path / "DukeMTMC-reID"
    rng = np.random.default_rng(0)
    for pid in range(1, 7):  # 4 train ids, 2 test ids; each seen by cameras 1 and 2
        colour = rng.integers(0, 255, 3)
        for cam in (1, 2):
            for k in range(2):
                folder = "bounding_box_train" if pid <= 4 else ("query" if cam == 1 and k == 0 else "bounding_box_test")
                pixels = np.clip(colour + rng.integers(-30, 30, (30 + 5 * k, 14, 3)), 0, 255).astype(np.uint8)
                (root / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / folder / f"{pid:04d}_c{cam}_f{1000 * pid + 10 * cam + k:07d}.jpg")
    out = tmp_path / "out"
    args = ["run", "protocol=market1501-reid", "dataset=dukemtmc", f"dataset.root={root}", "dataset.image_size=[32,16]",
            "attacker.epochs=1", "attacker.batch_size=4", "attacker.height=32", "attacker.width=16",
            "anonymizers=[none,blur]", "attacks=[naive]", f"cache_dir={tmp_path / 'cache'}", f"out={out}"]
    assert main(args) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {(r["anonymizer"], r["attack"], r["dataset"]) for r in rows} == {("none", "naive", "dukemtmc (DukeMTMC-reID)"), ("blur", "naive", "dukemtmc (DukeMTMC-reID)")}
    assert all(0.0 <= r["metrics"]["rank1"] <= 1.0 for r in rows)
    assert "dukemtmc (DukeMTMC-reID)" in (out / "table.md").read_text()
    capsys.readouterr()
    missing = tmp_path / "nope" / "DukeMTMC-reID"
    assert main(["run", "protocol=market1501-reid", "dataset=dukemtmc", f"dataset.root={missing}", f"out={tmp_path / 'out2'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "dataset.root=" in err
    assert not (tmp_path / "out2").exists()
