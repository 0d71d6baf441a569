"""Pretrained torchvision detectors from a weight file (detection-validate ``detector.name=torchvision``)
and COCO keypoint AP; no download: models are built with random weights and saved in the test."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from evalsuite.cli import main
from evalsuite.data.detection import DetectionSplit
from evalsuite.detection import pretrained
from evalsuite.detection.scenes import Scenes
from evalsuite.errors import UserError
from evalsuite.metrics.detection import coco_detection_scores, coco_keypoint_scores, has_keypoints

TINY = ["protocol=detection-validate", "dataset=synthetic", "dataset.num_train_images=1", "dataset.num_val_images=3",
        "detector.name=torchvision", "detector.min_size=128", "detector.max_size=176", "detector.score_threshold=0",
        "num_threads=1"]
BOX_MODEL = "fasterrcnn_mobilenet_v3_large_320_fpn"  # the fastest torchvision COCO detector on a CPU


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def save_random(model: str, path: Path, person_logit: float | None = None) -> Path:
    """``model`` with seeded random weights saved as a state dict; ``person_logit`` biases its
    classifier towards label 1 (person) so that a random model reports persons."""
    torch.manual_seed(0)
    net = pretrained.build(pretrained.PretrainedConfig(model, str(path)))
    if person_logit is not None:
        with torch.no_grad():
            net.roi_heads.box_predictor.cls_score.bias[1] = person_logit
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def box_weights(tmp_path_factory):
    return save_random(BOX_MODEL, tmp_path_factory.mktemp("weights") / "fasterrcnn_mobilenet.pth", person_logit=8.0)


def rows(out):
    return {r["anonymizer"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}


def split_with(categories, annotations=(), images=None):
    coco = {"images": images or [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
            "annotations": list(annotations), "categories": categories}
    return DetectionSplit("val", Path("."), coco, source="test.json")


# ------------------------------------------------------------------------------------ labels
def test_labels_map_to_the_datasets_categories_by_name():
    # a dataset numbering its categories its own way: COCO label 3 (car) is its id 7
    split = split_with([{"id": 7, "name": "car"}, {"id": 2, "name": "person"}, {"id": 9, "name": "face"}])
    assert pretrained.label_map("fasterrcnn_resnet50_fpn", split, ["person", "car"]) == {1: 2, 3: 7}
    assert pretrained.label_map("keypointrcnn_resnet50_fpn", split, ["person", "car"]) == {1: 2}
    cfg = pretrained.PretrainedConfig("fasterrcnn_resnet50_fpn", "x.pth")
    assert pretrained.scored_categories(cfg, split, ["car", "person", "face"], explicit=False) == ["car", "person"]
    with pytest.raises(UserError, match="not face of test.json"):
        pretrained.scored_categories(cfg, split, ["car", "face"], explicit=True)
    with pytest.raises(UserError, match="predicts COCO categories"):
        pretrained.scored_categories(cfg, split, ["face"], explicit=False)
    names = pretrained.label_names("fasterrcnn_resnet50_fpn")
    assert len(names) == 91 and names[1] == "person" and names[90] == "toothbrush" and names[12] == "N/A"


class FixedOutput(torch.nn.Module):
    """A 'detector' returning the same labelled boxes (and keypoints) for every image."""

    def forward(self, images):
        labels = torch.tensor([1, 3, 18, 5])  # person, car, dog, airplane
        boxes = torch.tensor([[1.0, 2.0, 11.0, 22.0]] * 4)
        keypoints = torch.arange(4 * 17 * 3, dtype=torch.float32).reshape(4, 17, 3)
        return [{"boxes": boxes, "labels": labels, "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]), "keypoints": keypoints} for _ in images]


def test_coco_results_carry_the_mapped_ids_and_keypoints():
    split = split_with([{"id": 7, "name": "car"}, {"id": 2, "name": "person"}])
    results = Scenes({"val": split}, "cpu").coco_results(FixedOutput(), "val", lambda i: torch.zeros(3, 30, 40, dtype=torch.uint8),
                                                         ["person", "car"], 1, "test", label_map={1: 2, 3: 7})
    assert [r["category_id"] for r in results] == [2, 7] and [r["score"] for r in results] == pytest.approx([0.9, 0.8])  # dog / airplane dropped
    assert results[0]["bbox"] == [1.0, 2.0, 10.0, 20.0]
    assert results[0]["keypoints"] == list(range(51)) and len(results[1]["keypoints"]) == 51


# -------------------------------------------------------------------------------- keypoint AP
def keypoint_gt():
    rng = np.random.default_rng(0)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in (1, 2)]
    anns = []
    for n, image_id in enumerate([1, 1, 2]):
        x, y = 20 + 60 * n, 30
        points = np.stack([x + rng.uniform(0, 50, 17), y + rng.uniform(0, 120, 17), np.full(17, 2.0)], axis=1)
        points[3:5, 2] = 0  # ears not labelled
        anns.append({"id": n + 1, "image_id": image_id, "category_id": 1, "bbox": [x, y, 50, 120], "area": 50 * 120.0,
                     "iscrowd": 0, "keypoints": points.reshape(-1).tolist(), "num_keypoints": 15})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "face"}]}


def direct_keypoint_ap(gt, results):
    """faster-coco-eval's keypoint stats [AP, AP50, AP75], called without the project's code."""
    from faster_coco_eval import COCO, COCOeval_faster

    coco = COCO(json.loads(json.dumps(gt)))
    evaluator = COCOeval_faster(coco, coco.loadRes(json.loads(json.dumps(results))), iouType="keypoints")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return list(evaluator.stats[:3])


def test_keypoint_ap_is_one_on_the_truth_and_lower_when_perturbed():
    gt = keypoint_gt()
    exact = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in gt["annotations"]]
    scores = coco_keypoint_scores(gt, exact, 1)
    assert scores == {"kp_ap": 1.0, "kp_ap50": 1.0, "kp_ap75": 1.0}
    assert direct_keypoint_ap(gt, exact) == pytest.approx([1.0, 1.0, 1.0])
    rng = np.random.default_rng(1)
    moved = [{**r, "keypoints": (np.asarray(r["keypoints"]) + np.tile([1, 1, 0], 17) * rng.normal(0, 6, 51)).tolist()} for r in exact]
    scores = coco_keypoint_scores(gt, moved, 1)
    assert scores["kp_ap"] < 1.0 and scores["kp_ap"] <= scores["kp_ap50"]
    assert [scores["kp_ap"], scores["kp_ap50"], scores["kp_ap75"]] == pytest.approx(direct_keypoint_ap(gt, moved))
    assert coco_keypoint_scores(gt, [], 1)["kp_ap"] == 0.0
    assert has_keypoints(gt, 1) and not has_keypoints(gt, 2)
    bare = {**gt, "annotations": [{k: v for k, v in a.items() if k not in ("keypoints", "num_keypoints")} for a in gt["annotations"]]}
    assert not has_keypoints(bare, 1)  # an instances json: no keypoint AP
    # results on other categories or without keypoints do not count
    assert coco_keypoint_scores(gt, [{**r, "category_id": 2} for r in exact], 1)["kp_ap"] == 0.0


# ------------------------------------------------------------------------------------- end to end
def test_validate_with_a_torchvision_weight_file(box_weights, tmp_path):
    out = tmp_path / "out"
    assert main(["run", *TINY, f"detector.model={BOX_MODEL}", f"detector.weights={box_weights}", "detector.detections_per_img=10",
                 "anonymizers=[none,mask]", f"cache_dir={tmp_path / 'cache'}", f"out={out}"]) == 0
    stored = rows(out)
    assert set(stored) == {"none", "mask"}
    for row in stored.values():
        assert set(row["metrics"]) == {"ap", "ap50", "ap75", "ap_person"}  # face is no COCO category; no keypoints
        assert row["detector"] == f"{BOX_MODEL} (fasterrcnn_mobilenet.pth)"
        assert row["num_detections"] == 30  # 10 persons per image (the biased classifier), 3 images

    # the protocol's numbers are those of the file's model run on the clean images directly
    from evalsuite.data.coco import load_coco
    from evalsuite.data.market1501 import read_image

    root = next((tmp_path / "cache" / "datasets").glob("synthetic-coco-*"))
    val = load_coco(root, train="train", val="val", categories=None).split("val")
    cfg = pretrained.PretrainedConfig(BOX_MODEL, str(box_weights), 128, 176, 0.0, 10)
    model = pretrained.load(cfg)
    detections = []
    with torch.no_grad():
        for image in val.images:
            out_ = model([torch.from_numpy(read_image(val.image_path(image)).copy()).permute(2, 0, 1).float() / 255])[0]
            for box, score, label in zip(out_["boxes"].tolist(), out_["scores"].tolist(), out_["labels"].tolist()):
                if label == 1:
                    detections.append({"image_id": image["id"], "category_id": val.category_id("person"),
                                       "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": score})
    assert len(detections) == 30
    stored_detections = [json.loads(f.read_text()) for f in (tmp_path / "cache" / "detections").glob("*.json")]
    clean = [d for d in stored_detections if [r["image_id"] for r in d] == [r["image_id"] for r in detections]
             and np.allclose([r["bbox"] for r in d], [r["bbox"] for r in detections], atol=1e-3)]
    assert len(clean) == 1 and [r["score"] for r in clean[0]] == pytest.approx([r["score"] for r in detections])
    person_only = {**val.coco, "categories": [c for c in val.categories if c["name"] == "person"],
                   "annotations": [a for a in val.coco["annotations"] if a["category_id"] == val.category_id("person")]}
    assert stored["none"]["metrics"] == pytest.approx(coco_detection_scores(person_only, detections), abs=1e-9)


@pytest.mark.slow
def test_keypoint_rcnn_reports_keypoint_ap(tmp_path):
    weights = save_random("keypointrcnn_resnet50_fpn", tmp_path / "keypointrcnn.pth")
    out = tmp_path / "out"
    assert main(["run", *TINY, "detector.model=keypointrcnn_resnet50_fpn", f"detector.weights={weights}", "detector.detections_per_img=3",
                 "anonymizers=[none]", f"cache_dir={tmp_path / 'cache'}", f"out={out}"]) == 0
    row = rows(out)["none"]
    assert {"ap_person", "kp_ap", "kp_ap50", "kp_ap75"} <= set(row["metrics"])  # the synthetic persons have 17 keypoints
    assert all(0.0 <= v <= 1.0 for v in row["metrics"].values())
    assert row["num_detections"] == 9


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("extra, message", [
    (["detector.model=yolo", "detector.weights=x.pth"], "detector.model='yolo' is not a torchvision COCO detector; use one of fasterrcnn_resnet50_fpn"),
    ([f"detector.model={BOX_MODEL}"], "needs its weight file: set detector.weights=PATH (torchvision's fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth)"),
    ([f"detector.model={BOX_MODEL}", "detector.weights=/nonexistent/frcnn.pth"], "weights file /nonexistent/frcnn.pth not found (set detector.weights"),
    (["detector.model=fasterrcnn_resnet50_fpn", "detector.weights={weights}"],
     "(detector.weights) does not fit detector.model=fasterrcnn_resnet50_fpn (326 missing"),
    ([f"detector.model={BOX_MODEL}", "detector.weights={weights}", "detector.categories=[face]"], "not face of"),
    (["detector.name=auto", "detector.model=yolo"], "detector.model='yolo' is not a torchvision COCO detector"),  # auto: a model means torchvision
])
def test_bad_input_exits_2_before_any_output(extra, message, box_weights, tmp_path, capsys):
    args = [a.replace("{weights}", str(box_weights)) for a in extra]
    base = [a for a in TINY if not (a.startswith("detector.name=") and any(e.startswith("detector.name=") for e in extra))]
    code = main(["run", *base, *args, f"cache_dir={tmp_path}", f"out={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert len([line for line in err.splitlines() if line.strip() and " INFO " not in line]) == 1, err
    assert not (tmp_path / "out").exists()


def test_wrong_model_error_names_the_model_the_file_fits(box_weights):
    with pytest.raises(UserError, match=r"it fits detector.model=fasterrcnn_mobilenet_v3_large_fpn or fasterrcnn_mobilenet_v3_large_320_fpn"):
        pretrained.load(pretrained.PretrainedConfig("retinanet_resnet50_fpn", str(box_weights)))
    state = torch.load(box_weights, weights_only=True)
    from safetensors.torch import save_file

    save_file(state, str(box_weights.with_suffix(".safetensors")))
    model = pretrained.load(pretrained.PretrainedConfig(BOX_MODEL, str(box_weights.with_suffix(".safetensors"))))
    assert torch.equal(model.state_dict()["roi_heads.box_predictor.cls_score.bias"], state["roi_heads.box_predictor.cls_score.bias"])
