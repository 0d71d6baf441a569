"""Face dataset readers on fake trees: folder-per-identity, CelebA, UTKFace, the sidecar, bad layouts."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.data.faces import (
    CELEBA_ATTRIBUTES,
    FaceSample,
    box_from_landmarks,
    load_celeba,
    load_face_folder,
    load_utkface,
    parse_utk_name,
)
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS


def _jpg(path: Path, value: int = 120, size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((size, size, 3), value, np.uint8)
    img[: size // 2, :, 0] = (value * 7) % 256
    cv2.imwrite(str(path), img)
    return path


def _celeba(root: Path, n: int = 4, attrs: tuple[str, ...] = CELEBA_ATTRIBUTES) -> Path:
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        _jpg(root / "img_align_celeba" / name, 40 * i + 10)
    (root / "identity_CelebA.txt").write_text("".join(f"{name} {100 + i % 2}\n" for i, name in enumerate(names)))
    rows = [name + " " + " ".join(" 1" if (i + j) % 3 == 0 else "-1" for j in range(len(attrs))) for i, name in enumerate(names)]
    (root / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(attrs) + " \n" + "\n".join(rows) + "\n")
    header = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
    rows = [f"{name}  {8 + i} 9 16 9 12 13 9 18 15 18" for i, name in enumerate(names)]
    (root / "list_landmarks_align_celeba.txt").write_text(f"{n}\n{header}\n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{name} {i % 3}\n" for i, name in enumerate(names)))
    return root


# --------------------------------------------------------------------------- folder per identity

def test_face_folder_reads_identities_from_folder_names(tmp_path: Path) -> None:
    for person, count in (("Alice_Smith", 3), ("Bob", 2)):
        for k in range(count):
            _jpg(tmp_path / person / f"{person}_{k + 1:04d}.jpg", 50 * k + 20)
    (tmp_path / "Bob" / "notes.txt").write_text("ignored")
    (tmp_path / "Empty").mkdir()
    ds = load_face_folder(tmp_path)
    assert ds.has_identities and len(ds.samples) == 5
    assert {k: len(v) for k, v in ds.identities().items()} == {"Alice_Smith": 3, "Bob": 2}
    assert ds.samples[0].relpath == "Alice_Smith/Alice_Smith_0001.jpg"
    assert DATASETS.build("face-folder", root=str(tmp_path)).summary().startswith("face-folder: 5 face images, 2 identities")


@pytest.mark.parametrize("layout, fragment", [
    ("loose", "directly in its root"),
    ("nested", "nested below its identity folder"),
    ("empty", "holds no images"),
    ("missing", "is not a folder"),
])
def test_face_folder_bad_layouts_name_the_problem(tmp_path: Path, layout: str, fragment: str) -> None:
    root = tmp_path / "faces"
    if layout == "loose":
        _jpg(root / "alice" / "a.jpg")
        _jpg(root / "stray.jpg")
    elif layout == "nested":
        _jpg(root / "alice" / "2019" / "a.jpg")
    elif layout == "empty":
        (root / "alice").mkdir(parents=True)
    with pytest.raises(UserError) as info:
        load_face_folder(root)
    assert fragment in str(info.value) and str(root) in str(info.value)
    assert "root/<identity>/<image>.jpg" in str(info.value)


def test_sidecar_adds_landmarks_box_and_attributes(tmp_path: Path) -> None:
    _jpg(tmp_path / "alice" / "1.jpg")
    _jpg(tmp_path / "alice" / "2.jpg")
    pts = [[float(i % 17), float(i // 17 + 2)] for i in range(68)]
    sidecar = {"format": "evalsuite-faces/1", "images": {"alice/1.jpg": {"landmarks68": pts, "attributes": {"age": 33}}, "bob/x.jpg": {}}}
    (tmp_path / "evalsuite_faces.json").write_text(json.dumps(sidecar))
    ds = load_face_folder(tmp_path)
    first = ds.samples[0]
    assert first.attributes == {"age": 33} and first.landmarks[68] == pts
    ann = first.annotations
    assert ann["landmarks"] == [pts[i] for i in (36, 39, 45, 42, 33)]
    assert ann["face_box"] == box_from_landmarks({68: pts})
    assert "face_box" not in ds.samples[1].annotations  # no landmarks, no box
    (tmp_path / "evalsuite_faces.json").write_text(json.dumps({"format": "evalsuite-faces/1", "images": {"alice/1.jpg": {"landmarks68": pts[:5]}}}))
    with pytest.raises(UserError, match="landmarks68 must be a list of 68"):
        load_face_folder(tmp_path)


def test_box_from_five_points_contains_the_points() -> None:
    five = [[30.0, 40.0], [60.0, 40.0], [45.0, 55.0], [34.0, 70.0], [56.0, 70.0]]
    x0, y0, x1, y1 = box_from_landmarks({5: five})
    assert all(x0 < x < x1 and y0 < y < y1 for x, y in five)


# --------------------------------------------------------------------------- CelebA

def test_celeba_reads_identities_attributes_landmarks_partitions(tmp_path: Path) -> None:
    root = _celeba(tmp_path / "celeba")
    for given in (root, tmp_path):  # the folder itself or torchvision's parent/celeba
        ds = load_celeba(given)
        assert ds.root == str(root) and len(ds.samples) == 4
    s = ds.samples[1]
    assert s.identity == "101" and s.split == "val" and s.relpath == "img_align_celeba/000002.jpg"
    assert set(s.attributes) == set(CELEBA_ATTRIBUTES) and set(s.attributes.values()) <= {0, 1}
    assert s.attributes["5_o_Clock_Shadow"] == 0 and s.attributes["Arched_Eyebrows"] == 0 and s.attributes["Attractive"] == 1
    assert s.landmarks[5] == [[9.0, 9.0], [16.0, 9.0], [12.0, 13.0], [9.0, 18.0], [15.0, 18.0]]
    assert ds.attribute_names == CELEBA_ATTRIBUTES
    assert {k: len(v) for k, v in ds.identities().items()} == {"100": 2, "101": 2}


def _rewrite(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


@pytest.mark.parametrize("damage, fragment", [
    (lambda r: (r / "identity_CelebA.txt").unlink(), "lacks identity_CelebA.txt"),
    (lambda r: (r / "img_align_celeba" / "000003.jpg").unlink(), "000003.jpg listed in identity_CelebA.txt does not exist"),
    (lambda r: _rewrite(r / "list_attr_celeba.txt", "000002.jpg -1", "000002.jpg  2"), "list_attr_celeba.txt:4: attribute value '2'"),
    (lambda r: _rewrite(r / "list_attr_celeba.txt", "4\n", "5\n"), "declares 5 images but lists 4"),
    (lambda r: _rewrite(r / "list_landmarks_align_celeba.txt", "lefteye_x", "left_eye_x"), "line 2 must list the 10 landmark coordinate names"),
    (lambda r: _rewrite(r / "list_eval_partition.txt", "000001.jpg 0", "000001.jpg 7"), "list_eval_partition.txt:1"),
    (lambda r: _rewrite(r / "identity_CelebA.txt", "000001.jpg 100", "000001.jpg"), "identity_CelebA.txt:1"),
])
def test_celeba_bad_lists_name_file_line_and_fix(tmp_path: Path, damage, fragment: str) -> None:
    root = _celeba(tmp_path)
    damage(root)
    with pytest.raises(UserError) as info:
        load_celeba(root)
    assert fragment in str(info.value)


def test_celeba_attribute_list_missing_an_image(tmp_path: Path) -> None:
    root = _celeba(tmp_path)
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    (root / "list_attr_celeba.txt").write_text("\n".join(["3", *lines[1:4], *lines[5:]]) + "\n")
    with pytest.raises(UserError, match="has no line for 000003.jpg"):
        load_celeba(root)


# --------------------------------------------------------------------------- UTKFace

def test_utkface_attributes_from_names_and_no_identities(tmp_path: Path) -> None:
    _jpg(tmp_path / "25_0_2_20170116174525125.jpg.chip.jpg")
    _jpg(tmp_path / "61_1_0_20170109142408075.jpg")
    ds = load_utkface(tmp_path)
    assert not ds.has_identities and ds.identities() == {}
    by_age = {s.attributes["age"]: s for s in ds.samples}
    assert by_age[25].attributes == {"age": 25, "gender": "male", "Male": 1, "race": "asian"} and by_age[25].identity is None
    assert by_age[61].attributes["gender"] == "female" and by_age[61].attributes["race"] == "white"


def test_utkface_malformed_names_stop_or_are_skipped(tmp_path: Path) -> None:
    _jpg(tmp_path / "25_0_2_20170116174525125.jpg.chip.jpg")
    _jpg(tmp_path / "39_1_20170116174525125.jpg.chip.jpg")  # race missing (the real set has a few)
    with pytest.raises(UserError, match=r"39_1_20170116174525125.*skip_malformed=true"):
        load_utkface(tmp_path)
    assert len(load_utkface(tmp_path, skip_malformed=True).samples) == 1
    with pytest.raises(UserError, match="gender 0 male"):
        parse_utk_name("25_2_0_1.jpg")


def test_annotations_without_landmarks_have_no_face_box() -> None:
    assert "face_box" not in FaceSample(path="/x/a.jpg", identity="a").annotations


# --------------------------------------------------------------------------- through the CLI: exit 2, one line, nothing written

def _cli_error(args: list[str], tmp_path: Path, capsys) -> str:
    out = tmp_path / "out"
    code = main(["run", "protocol=face-identification", *args, f"cache_dir={tmp_path / 'cache'}", f"out={out}", "anonymizers=[none]", "attacks=[naive]"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("evalsuite: error:")]
    assert code == 2 and len(lines) == 1, err
    assert not out.exists()
    return lines[0]


def test_cli_bad_face_folder_layout_exits_2(tmp_path: Path, capsys) -> None:
    _jpg(tmp_path / "faces" / "alice" / "a.jpg")
    _jpg(tmp_path / "faces" / "loose.jpg")
    line = _cli_error(["dataset=face-folder", f"dataset.root={tmp_path / 'faces'}"], tmp_path, capsys)
    assert "loose.jpg" in line and "root/<identity>/<image>.jpg" in line


def test_cli_corrupt_image_exits_2_naming_the_file(tmp_path: Path, capsys) -> None:
    for person in ("alice", "bob"):
        for k in range(2):
            _jpg(tmp_path / "faces" / person / f"{k}.jpg", 30 + 40 * k)
    (tmp_path / "faces" / "bob" / "1.jpg").write_bytes(b"not a jpeg at all")
    line = _cli_error(["dataset=face-folder", f"dataset.root={tmp_path / 'faces'}"], tmp_path, capsys)
    assert str(tmp_path / "faces" / "bob" / "1.jpg") in line and "corrupt" in line and "replace or remove" in line


def test_cli_celeba_missing_lists_exits_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "celeba" / "img_align_celeba").mkdir(parents=True)
    line = _cli_error(["dataset=celeba", f"dataset.root={tmp_path / 'celeba'}"], tmp_path, capsys)
    assert "identity_CelebA.txt" in line


def test_cli_utkface_is_refused_for_identification(tmp_path: Path, capsys) -> None:
    _jpg(tmp_path / "utk" / "25_0_2_20170116174525125.jpg.chip.jpg")
    line = _cli_error(["dataset=utkface", f"dataset.root={tmp_path / 'utk'}"], tmp_path, capsys)
    assert "no identity labels" in line and "dataset=celeba" in line
