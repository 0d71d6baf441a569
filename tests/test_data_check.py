"""``evalsuite data check`` on every supported layout (small trees built here) and on broken trees."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evalsuite.cli import main
from test_detection_readers import coco_root, wider_root  # noqa: F401  (fixtures: small COCO and WIDER FACE trees)
from test_face_data import _celeba, _jpg
from test_market1501_loader import make_market
from test_reid_datasets import make_cuhk03, make_duke, make_msmt17


def _check(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["data", "check", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _faces(root: Path) -> Path:
    for person, count in (("Ada", 3), ("Bo", 2), ("Cy", 1)):
        for k in range(count):
            _jpg(root / person / f"{person}_{k + 1:04d}.jpg", 40 * k + 30)
    return root


def _utkface(root: Path) -> Path:
    for name in ("25_0_2_20170116174525125.jpg.chip.jpg", "61_1_0_20170109142408075.jpg.chip.jpg"):
        _jpg(root / name)
    return root


def test_market1501(tmp_path: Path, capsys) -> None:
    root = make_market(tmp_path)
    code, out, _ = _check(capsys, "dataset=market1501", f"dataset.root={root}")
    assert code == 0, out
    assert "train: 5 images, 3 identities, 5 cameras" in out and "query: 2 images, 2 identities, 2 cameras" in out
    assert "gallery: 4 images" in out  # pid -1 dropped, distractors kept
    assert "junk: 3 images of pid -1" in out
    assert "annotations: none (image files only)" in out
    assert "protocols: market1501-reid (2 of 2 queries have a match from another camera), image-quality" in out
    assert "head/face need dataset.annotations=FILE or region.source=detect" in out
    assert "decoded: 11 of 11 images" in out and out.rstrip().endswith("result: OK")


@pytest.mark.parametrize("kind", ["dukemtmc", "cuhk03", "msmt17"])
def test_other_reid_layouts(tmp_path: Path, capsys, kind: str) -> None:
    root = {"dukemtmc": make_duke, "cuhk03": make_cuhk03, "msmt17": make_msmt17}[kind](tmp_path)
    code, out, err = _check(capsys, f"dataset={kind}", f"dataset.root={root}")
    assert code == 0, err
    assert out.startswith(f"{kind} at ") and "protocols: market1501-reid" in out and "result: OK" in out
    if kind == "cuhk03":  # the labeled images are the other variant, not read with the default (detected)
        assert "train: 6 images, 2 identities, 2 cameras" in out and "15 image files under" in out and "images_labeled" in out


def test_face_folder(tmp_path: Path, capsys) -> None:
    root = _faces(tmp_path / "faces")
    code, out, _ = _check(capsys, "dataset=face-folder", f"dataset.root={root}")
    assert code == 0
    assert "images: 6, identities: 3 (2 with 2+ images; images per identity 1-3, median 2)" in out
    assert "protocols: face-identification (2 identities with 2+ images), image-quality" in out
    assert "face, head: 6 boxes detected on first use (dataset.detector=dlib-hog" in out
    code, out, _ = _check(capsys, "dataset=face-folder", f"dataset.root={root}", "dataset.detector=null")
    assert "face, head need boxes for 6 photos (dataset.sidecar=FILE" in out


def test_celeba_and_utkface(tmp_path: Path, capsys) -> None:
    code, out, _ = _check(capsys, "dataset=celeba", f"dataset.root={_celeba(tmp_path / 'celeba')}")
    assert code == 0
    assert "partitions: test 1, train 2, val 1" in out and "face boxes 4/4 (given or from landmarks)" in out and "5-point 4" in out
    assert "attributes 40 (5_o_Clock_Shadow" in out and "regions: image, face, head (the face box)" in out
    code, out, _ = _check(capsys, "dataset=utkface", f"dataset.root={_utkface(tmp_path / 'utk')}")
    assert code == 0 and "images: 2, no identity labels" in out and "protocols: image-quality" in out and "face-identification" not in out


def test_coco_and_wider_face(coco_root: Path, wider_root: Path, capsys) -> None:  # noqa: F811
    code, out, _ = _check(capsys, "dataset=coco", f"dataset.root={coco_root}")
    assert code == 0 and "protocols: detection-validate, detection-train" in out and "decoded: 4 of 4 images" in out
    code, out, _ = _check(capsys, "dataset=wider-face", f"dataset.root={wider_root}")
    assert code == 0 and "face" in out and "protocols: detection-validate" in out


# --------------------------------------------------------------------------- broken trees

def test_corrupt_images_are_listed_and_exit_2(tmp_path: Path, capsys) -> None:
    root = make_market(tmp_path)
    (root / "query" / "0003_c1s1_000551_00.jpg").write_bytes(b"\xff\xd8 truncated")
    bad = np.zeros((16, 8, 3), np.uint8)
    Image.fromarray(bad).save(root / "bounding_box_test" / "0005_c1s1_001001_01.jpg")
    (root / "bounding_box_test" / "0005_c1s1_001001_01.jpg").write_bytes((root / "bounding_box_test" / "0005_c1s1_001001_01.jpg").read_bytes()[:40])
    code, out, _ = _check(capsys, "dataset=market1501", f"dataset.root={root}", "--max-problems", "1")
    assert code == 2
    assert "problems: 2 (first 1 shown)" in out and "corrupt or not an image" in out and "result: BROKEN (2 problems)" in out
    code, out, _ = _check(capsys, "dataset=market1501", f"dataset.root={root}", "--no-decode")
    assert code == 0 and "decoded" not in out


def test_broken_layouts_are_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    root = make_market(tmp_path)
    (root / "query" / "not_a_market_name.jpg").write_bytes(b"x")
    code, out, err = _check(capsys, "dataset=market1501", f"dataset.root={root}")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "not_a_market_name.jpg" in err
    code, _, err = _check(capsys, "dataset=face-folder", f"dataset.root={tmp_path / 'nowhere'}")
    assert code == 2 and "is not a folder" in err
    loose = _faces(tmp_path / "loose")
    _jpg(loose / "stray.jpg")
    code, _, err = _check(capsys, "dataset=face-folder", f"dataset.root={loose}")
    assert code == 2 and "stray.jpg" in err


def test_stray_files_are_warnings_and_bad_arguments_are_user_errors(tmp_path: Path, capsys) -> None:
    root = _faces(tmp_path / "faces")
    _jpg(root / "Ada" / "nested" / "deep.jpg")  # below an identity folder that has images: not read
    code, out, _ = _check(capsys, "dataset=face-folder", f"dataset.root={root}")
    assert code == 0 and "warnings: 1" in out and "Ada/nested/deep.jpg" in out
    code, _, err = _check(capsys, f"dataset.root={root}")
    assert code == 2 and "needs dataset=NAME" in err
    code, _, err = _check(capsys, "dataset=face-folder", f"dataset.rot={root}")
    assert code == 2 and "dataset.root" in err


def test_detect_writes_the_sidecar_a_run_reads(tmp_path: Path, capsys, monkeypatch) -> None:
    from face_images import write_photo_folder

    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    root = write_photo_folder(tmp_path / "lfw", per_identity=2, faceless=True)
    code, out, _ = _check(capsys, "dataset=face-folder", f"dataset.root={root}", "--detect")
    assert code == 0, out
    assert "detection: dlib-hog found a face in 4 of 5 photos without a box" in out and str(tmp_path / "cache" / "face-boxes") in out
    assert "face boxes 4/4 (given or from landmarks)" in out and "decoded: 5 of 5 images" in out and "warnings" not in out
    assert len(list((tmp_path / "cache" / "face-boxes").glob("face-folder-*.json"))) == 1
