"""COCO and WIDER FACE readers on small fake trees: conversion, quirks and bad layouts."""
import json

import cv2
import numpy as np
import pytest

from evalsuite.data.coco import load_coco, validate_coco
from evalsuite.data.detection import DetectionDataset
from evalsuite.data.wider_face import load_wider_face, parse_bbx_gt
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS, load_all

WIDER_VAL = """0--Parade/0_Parade_marchingband_1_465.jpg
2
10 12 20 24 0 0 0 0 0 0
40 5 8 10 2 0 0 1 0 0
1--Handshaking/1_Handshaking_1_1.jpg
0
0 0 0 0 0 0 0 0 0 0
2--Demonstration/2_Demonstration_2_9.jpg
1
3 4 0 7 0 0 0 0 0 0
"""


def _write_image(path, width=64, height=48):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 128, np.uint8))


@pytest.fixture
def wider_root(tmp_path):
    root = tmp_path / "WIDER_FACE"
    (root / "wider_face_split").mkdir(parents=True)
    (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").write_text(WIDER_VAL)
    for line in WIDER_VAL.splitlines():
        if line.endswith(".jpg"):
            _write_image(root / "WIDER_val" / "images" / line)
    return root


def test_wider_face_list_is_converted_to_coco_with_its_quirks(wider_root):
    split = load_wider_face(wider_root).split("val")
    assert [img["file_name"] for img in split.images] == [
        "0--Parade/0_Parade_marchingband_1_465.jpg", "1--Handshaking/1_Handshaking_1_1.jpg", "2--Demonstration/2_Demonstration_2_9.jpg"]
    assert all((img["width"], img["height"]) == (64, 48) for img in split.images)
    assert split.category_names() == ["face"]
    first, handshake, demo = (split.annotations(img["id"]) for img in split.images)
    assert handshake == []  # the zero-face quirk's placeholder line is not a face
    assert [a["bbox"] for a in first] == [[10.0, 12.0, 20.0, 24.0], [40.0, 5.0, 8.0, 10.0]]
    assert [a["iscrowd"] for a in first] == [0, 1]  # invalid=1 -> ignored by AP
    assert first[1]["attributes"] == {"blur": 2, "expression": 0, "illumination": 0, "invalid": 1, "occlusion": 0, "pose": 0}
    assert first[0]["area"] == 480.0
    assert demo[0]["iscrowd"] == 1 and demo[0]["area"] == 0.0  # zero-width box: ignored, not dropped
    assert load_wider_face(wider_root, max_images=1).split("val").images[0]["file_name"].startswith("0--Parade")


@pytest.mark.parametrize("text, message", [
    ("a.jpg\nx\n", "line 2"),
    ("a.jpg\n1\n1 2 3 4 0 0 0 0 0\n", "has 9 numbers"),
    ("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", "announces 2 faces but the file ends"),
    ("a.jpg\n0\n", "announces 0 faces but the file ends"),
    ("not an image\n1\n", "is not an image file name"),
])
def test_wider_face_list_errors_name_the_line(text, message):
    with pytest.raises(UserError, match=message):
        parse_bbx_gt(text, "list.txt")


def test_wider_face_bad_layouts_are_user_errors(tmp_path, wider_root):
    with pytest.raises(UserError, match="does not exist"):
        load_wider_face(tmp_path / "nowhere")
    with pytest.raises(UserError, match="wider_face_split"):
        load_wider_face(tmp_path)
    with pytest.raises(UserError, match="wider_face_train_bbx_gt.txt not found"):
        load_wider_face(wider_root).split("train")
    (wider_root / "WIDER_val" / "images" / "1--Handshaking" / "1_Handshaking_1_1.jpg").unlink()
    with pytest.raises(UserError, match="1_Handshaking_1_1.jpg .*does not exist"):
        load_wider_face(wider_root).split("val")


def _coco_dict():
    return {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 64, "height": 48}, {"id": 3, "file_name": "b.jpg", "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 10, 20], "segmentation": [[1, 2, 11, 2, 11, 22, 1, 22]], "area": 200, "iscrowd": 0,
             "keypoints": [0] * 51, "num_keypoints": 0},
            {"id": 2, "image_id": 7, "category_id": 18, "bbox": [30, 2, 10, 10]},
            {"id": 3, "image_id": 3, "category_id": 1, "bbox": [5, 5, 4, 4], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
    }


@pytest.fixture
def coco_root(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    for split in ("val2017", "train2017"):
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(_coco_dict()))
        (root / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps(_coco_dict()))
        _write_image(root / split / "a.jpg")
        _write_image(root / split / "b.jpg")
    return root


def test_coco_reader_keeps_categories_and_fills_defaults(coco_root):
    dataset = load_coco(coco_root)
    val = dataset.split("val")
    assert val.category_names() == ["person"]
    assert [a["id"] for a in val.coco["annotations"]] == [1, 3]  # the dog is gone
    assert val.image_path(val.images[0]) == coco_root / "val2017" / "a.jpg"
    everything = load_coco(coco_root, categories=None).split("val")
    dog = next(a for a in everything.coco["annotations"] if a["id"] == 2)
    assert dog["iscrowd"] == 0 and dog["area"] == 100.0  # defaults filled in
    assert load_coco(coco_root, max_images=1).split("val").images[0]["file_name"] == "a.jpg"
    assert load_coco(coco_root, kind="person_keypoints").split("train").source.endswith("person_keypoints_train2017.json")


def test_registered_readers_build_detection_datasets(coco_root, wider_root):
    load_all()
    assert isinstance(DATASETS.build("coco", root=str(coco_root)), DetectionDataset)
    assert DATASETS.build("wider-face", root=str(wider_root)).split("val").category_names() == ["face"]


def test_coco_bad_layouts_are_user_errors(tmp_path, coco_root):
    with pytest.raises(UserError, match="does not exist"):
        load_coco(tmp_path / "nowhere")
    with pytest.raises(UserError, match="no annotations/ folder"):
        load_coco(tmp_path)
    with pytest.raises(UserError, match="dataset.kind"):
        load_coco(coco_root, kind="captions")
    with pytest.raises(UserError, match="no category 'cat'"):
        load_coco(coco_root, categories=["cat"]).split("val")
    with pytest.raises(UserError, match="instances_test2017.json not found"):
        load_coco(coco_root, val="test2017").split("val")
    (coco_root / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_coco(coco_root).split("val")


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("images"), "needs lists"),
    (lambda d: d["annotations"][0].update(image_id=99), "refers to image 99"),
    (lambda d: d["annotations"][0].update(category_id=5), "category_id 5"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4]), "bbox"),
    (lambda d: d["images"][0].pop("width"), "width"),
])
def test_coco_validation_names_the_bad_entry(mutate, message):
    data = _coco_dict()
    mutate(data)
    with pytest.raises(UserError, match=message):
        validate_coco(data, "x.json")
