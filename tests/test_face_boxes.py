"""Face boxes by detection for face folders without them (evalsuite/data/face_boxes.py), on real photos."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from face_images import write_photo_folder
from evalsuite.cli import main
from evalsuite.data import face_boxes
from evalsuite.data.face_boxes import complete_face_boxes, detector_settings, needs_face_boxes
from evalsuite.data.faces import FACE_SIDECAR_FORMAT, load_face_folder, load_face_sidecar
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Eight LFW-like photos of two people and one photo of a coffee cup in the first one's folder."""
    return write_photo_folder(tmp_path_factory.mktemp("photos") / "faces", per_identity=4, faceless=True)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]


def test_face_identification_on_a_folder_without_any_sidecar(photos: Path, tmp_path: Path, caplog) -> None:
    cache = tmp_path / "cache"
    args = ["run", "protocol=face-identification", "dataset=face-folder", f"dataset.root={photos}", "region.name=face",
            "anonymizers=[none,blur15]", "attacks=[naive]", f"cache_dir={cache}"]
    with caplog.at_level(logging.INFO):
        assert main([*args, f"out={tmp_path / 'run1'}"]) == 0
    files = list((cache / "face-boxes").glob("face-folder-*.json"))
    assert len(files) == 1
    document = json.loads(files[0].read_text())
    assert document["format"] == FACE_SIDECAR_FORMAT and document["detector"] == {"name": "dlib-hog", "upsample": 1}
    images = document["images"]
    assert len(images) == 9
    assert images["Eileen_Collins/Eileen_Collins_0005.jpg"] == {"face_box": None}  # the coffee cup
    for key, entry in images.items():
        if key.endswith("_0005.jpg"):
            continue
        x0, y0, x1, y1 = entry["face_box"]
        assert 0 <= x0 < x1 <= 250 and 0 <= y0 < y1 <= 250 and 50 <= x1 - x0 <= 160, (key, entry["face_box"])
        assert len(entry["landmarks68"]) == 68
        # the landmarks lie on the face the box holds (dlib's box spans brows to chin)
        inside = sum(x0 - 10 <= x <= x1 + 10 and y0 - 30 <= y <= y1 + 10 for x, y in entry["landmarks68"])
        assert inside >= 60, key
    assert "skipped 1 of 9 photos" in caplog.text
    rows = _rows(tmp_path / "run1")
    assert {r["anonymizer"] for r in rows} == {"none", "blur15"}
    assert rows[0]["num_enrol"] + rows[0]["num_probe"] == 8 and rows[0]["dataset"] == "face-folder (faces)"

    # the second run reads the cached sidecar instead of detecting; an edit there is used as it is
    entries = json.loads(files[0].read_text())
    entries["images"]["Grace_Hopper/Grace_Hopper_0004.jpg"] = {"face_box": None}
    files[0].write_text(json.dumps(entries))

    def no_detection(*args, **kwargs):
        raise AssertionError("detected again")

    import evalsuite.dlib_models

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evalsuite.dlib_models, "detect_faces", no_detection)
        assert main([*args, f"out={tmp_path / 'run2'}"]) == 0
    assert _rows(tmp_path / "run2")[0]["num_enrol"] + _rows(tmp_path / "run2")[0]["num_probe"] == 7


def test_detection_only_where_a_box_is_missing(photos: Path, tmp_path: Path) -> None:
    sidecar = tmp_path / "boxes.json"
    given = {"Grace_Hopper/Grace_Hopper_0001.jpg": {"face_box": [10, 10, 90, 90]}}
    sidecar.write_text(json.dumps({"format": FACE_SIDECAR_FORMAT, "images": given}))
    dataset = DATASETS.build("face-folder", root=str(photos), sidecar=str(sidecar))
    dataset = complete_face_boxes(dataset, tmp_path / "cache")
    (written,) = (tmp_path / "cache" / "face-boxes").glob("*.json")
    detected = load_face_sidecar(written)
    assert "Grace_Hopper/Grace_Hopper_0001.jpg" not in detected and len(detected) == 8
    by_key = {s.relpath: s for s in dataset.samples}
    assert by_key["Grace_Hopper/Grace_Hopper_0001.jpg"].face_box == [10.0, 10.0, 90.0, 90.0]
    assert len(dataset.samples) == 8 and all(s.annotations.get("face_box") for s in dataset.samples)


def test_detection_off_gives_the_face_sidecar_hint(photos: Path, tmp_path: Path, capsys) -> None:
    code = main(["run", "protocol=face-identification", "dataset=face-folder", f"dataset.root={photos}", "region.name=face",
                 "dataset.detector=null", "anonymizers=[none]", "attacks=[naive]", f"cache_dir={tmp_path}", f"out={tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "dataset.sidecar=FILE" in err[0] and "dataset.annotations" not in err[0] and "Market-1501" not in err[0]
    assert "have no face box" in err[0] and not (tmp_path / "face-boxes").exists()


def test_settings_are_checked_and_only_face_regions_need_boxes(photos: Path) -> None:
    assert detector_settings(None, 1, None) == {} and detector_settings("null", 1, None) == {}
    assert detector_settings("dlib-cnn", 0, "/m") == {"name": "dlib-cnn", "upsample": 0, "models_dir": "/m"}
    with pytest.raises(UserError, match="dataset.detector='yolo'"):
        detector_settings("yolo", 1, None)
    with pytest.raises(UserError, match="dataset.detector_upsample"):
        detector_settings("dlib-hog", 9, None)
    dataset = load_face_folder(photos)
    assert needs_face_boxes(dataset, {"name": "face"}) and needs_face_boxes(dataset, {"name": "head", "source": "annotations"})
    assert needs_face_boxes(dataset, {"name": "face", "source": "detect"})  # the reference of the detector's leak rate
    assert not needs_face_boxes(dataset, {"name": "image"})
    assert not needs_face_boxes(object(), {"name": "face"})


def test_boxes_from_landmarks_need_no_detection(tmp_path: Path, monkeypatch) -> None:
    from test_face_data import _celeba

    monkeypatch.setattr(face_boxes, "detect_entries", lambda *a: pytest.fail("detected although landmarks give every box"))
    dataset = DATASETS.build("celeba", root=str(_celeba(tmp_path / "celeba")))
    assert complete_face_boxes(dataset, tmp_path / "cache") is dataset
    assert not (tmp_path / "cache").exists()


def test_no_face_anywhere_is_one_clear_error(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    for person in ("A", "B"):
        (tmp_path / "f" / person).mkdir(parents=True)
        Image.fromarray(np.full((80, 80, 3), 90, np.uint8)).save(tmp_path / "f" / person / "1.png")
    dataset = DATASETS.build("face-folder", root=str(tmp_path / "f"))
    with pytest.raises(UserError, match="found no face in any photo.*dataset.detector_upsample"):
        complete_face_boxes(dataset, tmp_path / "cache")
    # a head region (image-quality's default, read as the whole aligned face without boxes) keeps the photos
    kept = complete_face_boxes(dataset, tmp_path / "cache", required=False)
    assert len(kept.samples) == 2 and all(s.face_box is None for s in kept.samples)


def test_detection_in_the_loop_on_a_folder_without_boxes(photos: Path, tmp_path: Path, caplog) -> None:
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        assert main(["run", "protocol=face-identification", "dataset=face-folder", f"dataset.root={photos}", "region.name=face",
                     "region.source=detect", "region.detector.name=dlib-hog", "anonymizers=[none,blur15]", "attacks=[naive]",
                     f"cache_dir={tmp_path / 'cache'}", f"out={out}"]) == 0
    assert "leak_rate is 0 by construction" in caplog.text
    rows = _rows(out)
    assert all(r["metrics"]["leak_rate"] == 0.0 for r in rows)
