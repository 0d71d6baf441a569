"""The synthetic COCO-format scene generator: layout, COCO API round trip, determinism."""
import json

import numpy as np
import pytest

from evalsuite.data.coco import load_coco
from evalsuite.data.synthetic_coco import FACE_ID, PERSON_ID, SyntheticCocoConfig, config_hash, generate_synthetic_coco
from evalsuite.detection.instances import segmentation_mask
from evalsuite.errors import UserError

TINY = SyntheticCocoConfig(num_train_images=4, num_val_images=3, height=80, width=112, persons_per_image=(2, 3), person_height=(30, 72))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate_synthetic_coco(tmp_path_factory.mktemp("scoco") / "data", TINY)


def test_layout_and_coco_api_round_trip(tiny_root):
    from faster_coco_eval import COCO as FasterCOCO
    from faster_coco_eval.core import mask as mask_utils

    for split, count in (("train", 4), ("val", 3)):
        path = tiny_root / "annotations" / f"instances_{split}.json"
        coco = FasterCOCO(str(path))
        assert len(coco.getImgIds()) == count
        assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["face", "person"]
        assert all((tiny_root / split / img["file_name"]).is_file() for img in coco.loadImgs(coco.getImgIds()))
        persons = coco.loadAnns(coco.getAnnIds(catIds=[PERSON_ID]))
        assert persons, "every scene has people"
        for ann in persons:
            mask = mask_utils.decode(coco.annToRLE(ann))
            ys, xs = np.nonzero(mask)
            assert ann["area"] == int(mask.sum())
            assert ann["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
            assert len(ann["keypoints"]) == 51
        for face in coco.loadAnns(coco.getAnnIds(catIds=[FACE_ID])):
            assert face["iscrowd"] == int(min(face["bbox"][2:]) < TINY.min_face_size)


def test_pycocotools_reads_the_json_too(tiny_root):
    pycocotools = pytest.importorskip("pycocotools.coco")
    coco = pycocotools.COCO(str(tiny_root / "annotations" / "instances_val.json"))
    ann = coco.loadAnns(coco.getAnnIds(catIds=[PERSON_ID]))[0]
    assert coco.annToMask(ann).sum() == ann["area"]


def test_reader_and_region_masks_agree_with_the_json(tiny_root):
    split = load_coco(tiny_root, train="train", val="val", categories=None).split("train")
    ann = next(a for a in split.coco["annotations"] if a["category_id"] == PERSON_ID)
    assert segmentation_mask(ann, TINY.height, TINY.width).sum() == ann["area"]
    assert split.category_id("face") == FACE_ID


def test_same_config_same_bytes_and_cached(tiny_root, tmp_path):
    again = generate_synthetic_coco(tmp_path / "again", TINY)
    for rel in ("annotations/instances_train.json", "val/000002.jpg"):
        assert (again / rel).read_bytes() == (tiny_root / rel).read_bytes()
    stamp = (tiny_root / "annotations" / "instances_val.json").stat().st_mtime_ns
    assert generate_synthetic_coco(tiny_root, TINY) == tiny_root
    assert (tiny_root / "annotations" / "instances_val.json").stat().st_mtime_ns == stamp
    other = SyntheticCocoConfig(**{**TINY.to_dict(), "seed": 1})
    assert config_hash(other) != config_hash(TINY)
    with pytest.raises(UserError, match="other settings"):
        generate_synthetic_coco(tiny_root, other)
    marker = json.loads((tiny_root / "evalsuite_synthetic_coco.json").read_text())
    assert marker["hash"] == config_hash(TINY)


@pytest.mark.parametrize("settings, message", [
    ({"num_val_images": 0}, "num_train_images and num_val_images"),
    ({"person_height": [10, 40]}, "person_height"),
    ({"persons_per_image": [3, 1]}, "persons_per_image"),
    ({"height": "tall"}, "expected an integer"),
    ({"back_view_probability": 0.8, "side_view_probability": 0.5}, "sum to <= 1"),
])
def test_bad_settings_are_user_errors(settings, message):
    with pytest.raises(UserError, match=message):
        SyntheticCocoConfig(**settings)
