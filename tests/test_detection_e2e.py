"""End-to-end `evalsuite run` of detection-validate / detection-train on tiny data, and bad input."""
import json

import cv2
import pytest

from evalsuite.cache import Cache
from evalsuite.cli import main
from wider_trees import astronaut_wider_tree

TINY = [
    "dataset=synthetic",
    "dataset.num_train_images=6",
    "dataset.num_val_images=3",
    "dataset.height=64",
    "dataset.width=96",
    "dataset.person_height=[28,60]",
    "detector.epochs=1",
    "detector.batch_size=3",
    "anonymizers=[none,mask]",
    "num_threads=1",
]


@pytest.fixture(autouse=True)
def restore_threads():
    """`num_threads=1` sets torch's global thread count; give the next tests theirs back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def rows(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("detcache")


@pytest.fixture(scope="module")
def validate_run(cache, tmp_path_factory):
    import torch

    before = torch.get_num_threads()
    out = tmp_path_factory.mktemp("validate") / "out"
    assert main(["run", "protocol=detection-validate", *TINY, f"cache_dir={cache}", f"out={out}"]) == 0
    torch.set_num_threads(before)
    return out


def test_detection_validate_prints_a_table(validate_run, cache):
    stored = rows(validate_run)
    assert [(r["anonymizer"], r["attack"]) for r in stored] == [("none", "none"), ("mask", "none")]
    for row in stored:
        assert {"ap", "ap50", "ap75", "ap_person"} <= set(row["metrics"])
        assert all(0.0 <= v <= 1.0 for v in row["metrics"].values())
        assert row["dataset"] == "synthetic-coco" and row["region"] == "body"
        assert row["detector"].startswith("fcos")
    table = (validate_run / "table.md").read_text()
    assert "AP" in table and "| none |" in table and "| mask |" in table
    assert len(list((cache / "detectors").glob("*.pt"))) == 1  # one clean detector serves every anonymizer


def test_validate_with_a_weights_file_matches_the_trained_detector(validate_run, cache, tmp_path):
    (key,) = {r["detector_key"] for r in rows(validate_run)}
    weights = Cache(cache, context={"num_threads": 1, "deterministic": False}).path("detectors", key, ".pt")  # the key folded with the numerics
    assert weights.is_file()
    out = tmp_path / "weights"
    assert main(["run", "protocol=detection-validate", *TINY, f"detector.weights={weights}", f"cache_dir={tmp_path / 'cold'}", f"out={out}"]) == 0
    assert not (tmp_path / "cold" / "detectors").exists()  # nothing trained
    assert {r["anonymizer"]: r["metrics"] for r in rows(out)} == {r["anonymizer"]: r["metrics"] for r in rows(validate_run)}


def test_detection_train_reuses_the_clean_detector(validate_run, cache, tmp_path, capsys):
    out = tmp_path / "train"
    assert main(["run", "protocol=detection-train", *TINY, f"cache_dir={cache}", f"out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "| none |" in printed and "| mask |" in printed
    stored = {r["anonymizer"]: r for r in rows(out)}
    assert set(stored) == {"none", "mask"}
    assert stored["none"]["durations"]["train_s"] < stored["mask"]["durations"]["train_s"]  # none: read from the cache
    assert len(list((cache / "detectors").glob("*.pt"))) == 2  # + the one trained on masked images
    assert stored["mask"]["num_train_images"] == 6 and stored["mask"]["num_val_images"] == 3
    assert main(["run", "protocol=detection-train", *TINY, f"cache_dir={cache}", f"out={out}"]) == 0
    assert "0 cells computed, 2 reused" in capsys.readouterr().out


def test_wider_face_with_dlib_on_a_real_face(tmp_path, capsys):
    root = astronaut_wider_tree(tmp_path / "WIDER_FACE")
    out = tmp_path / "out"
    args = ["run", "protocol=detection-validate", "dataset=wider-face", f"dataset.root={root}", "detector.upsample=0",
            "anonymizers=[none,mask]", f"cache_dir={tmp_path / 'cache'}", f"out={out}", "num_threads=1"]
    assert main(args) == 0
    stored = {r["anonymizer"]: r for r in rows(out)}
    assert stored["none"]["detector"] == "dlib-hog" and stored["none"]["region"] == "face"
    assert stored["none"]["metrics"]["ap50"] == pytest.approx(1.0)  # dlib finds the astronaut's face
    assert stored["mask"]["metrics"]["ap50"] == 0.0  # and nothing once it is masked out
    assert set(stored["none"]["metrics"]) == {"ap", "ap50", "ap75", "ap_face"}


@pytest.mark.parametrize("args, message", [
    (["protocol=detection-validate", "dataset=synthetic", "region.name=head"], "not a detection region"),
    (["protocol=detection-validate", "dataset=synthetic", "detector.name=yolo"], "not a detector of detection-validate"),
    (["protocol=detection-train", "dataset=synthetic", "detector.arch=yolo"], "detector.arch"),
    (["protocol=detection-train", "dataset=synthetic", "attacks=[naive]"], "does not support"),
    (["protocol=detection-validate", "dataset=wider-face", "dataset.root=/nonexistent/wider"], "WIDER FACE not found"),
    (["protocol=detection-train", "dataset=coco", "dataset.root=/nonexistent/coco"], "COCO dataset not found"),
    (["protocol=detection-validate", "dataset=synthetic", "dataset.persons_per_image=[0,2]"], "persons_per_image"),
    (["protocol=detection-validate", "dataset=synthetic-faces"], "not a detection dataset"),
    (["protocol=detection-train", *TINY, "detector.categories=[dog]"], "detector.categories=['dog'] names dog"),
    (["protocol=detection-validate", *TINY, "detector.weights=/nonexistent/fcos.pt"], "/nonexistent/fcos.pt not found (set detector.weights"),
    (["protocol=detection-validate", *TINY, "anonymizers=[none,ksame-pixel-k2]"], "ksame-pixel-k2 (fit_on=anonymized_set) cannot run in detection-validate: k-Same's guarantee"),
])
def test_bad_input_exits_2(args, message, tmp_path, capsys):
    code = main(["run", *args, f"cache_dir={tmp_path}", f"out={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert not (tmp_path / "out").exists()


def test_face_region_on_a_dataset_without_faces_exits_2(tmp_path, capsys):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    cv2.imwrite(str(root / "val2017" / "a.jpg"), data_image())
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 32, "height": 32}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 20]}],
            "categories": [{"id": 1, "name": "person"}]}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(coco))
    code = main(["run", "protocol=detection-validate", "dataset=coco", f"dataset.root={root}", "region.name=face",
                 "detector.name=dlib-hog", f"cache_dir={tmp_path}", f"out={tmp_path / 'out'}"])
    assert code == 2
    assert "region.name=face needs face annotations" in capsys.readouterr().err


def data_image():
    import numpy as np

    return np.full((32, 32, 3), 100, np.uint8)
