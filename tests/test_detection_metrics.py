"""COCO box AP through faster-coco-eval: agreement with pycocotools, edge cases, metric specs."""
import copy
import math

import numpy as np
import pytest

from evalsuite.metrics.detection import DETECTION_METRICS, coco_detection_scores
from evalsuite.metrics.spec import metric_spec
from evalsuite.registry import load_all


def _case(seed=0):
    """A ground truth of 12 images / 2 categories (with a crowd region) and noisy detections."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for image_id in range(1, 13):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 200, "height": 150})
        for _ in range(int(rng.integers(0, 5))):
            cat = int(rng.integers(1, 3))
            w, h = rng.uniform(5, 80, 2)
            x, y = rng.uniform(0, 200 - w), rng.uniform(0, 150 - h)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            if rng.random() < 0.8:  # found, with a jittered box
                j = rng.normal(0, 0.08, 4) * [w, h, w, h]
                dets.append({"image_id": image_id, "category_id": cat, "bbox": [x + j[0], y + j[1], max(w + j[2], 1), max(h + j[3], 1)], "score": float(rng.random())})
        for _ in range(int(rng.integers(0, 3))):  # false positives
            w, h = rng.uniform(5, 60, 2)
            dets.append({"image_id": image_id, "category_id": int(rng.integers(1, 3)), "bbox": [*rng.uniform(0, 120, 2), w, h], "score": float(rng.random())})
    anns.append({"id": len(anns) + 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 1})
    dets.append({"image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.99})  # inside the crowd: ignored
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "face"}]}
    return gt, dets


def test_faster_coco_eval_agrees_with_pycocotools():
    coco_mod = pytest.importorskip("pycocotools.coco")
    cocoeval_mod = pytest.importorskip("pycocotools.cocoeval")
    from faster_coco_eval import COCO, COCOeval_faster

    gt, dets = _case()
    reference_gt = coco_mod.COCO()
    reference_gt.dataset = copy.deepcopy(gt)
    reference_gt.createIndex()
    reference = cocoeval_mod.COCOeval(reference_gt, reference_gt.loadRes(copy.deepcopy(dets)), "bbox")
    reference.evaluate()
    reference.accumulate()
    reference.summarize()
    faster_gt = COCO(copy.deepcopy(gt))
    faster = COCOeval_faster(faster_gt, faster_gt.loadRes(copy.deepcopy(dets)), iouType="bbox", print_function=lambda *a: None)
    faster.evaluate()
    faster.accumulate()
    faster.summarize()
    # all 12 summary numbers (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l) agree to 1e-6
    np.testing.assert_allclose(np.asarray(faster.stats[:12]), np.asarray(reference.stats[:12]), atol=1e-6)
    ours = coco_detection_scores(gt, dets)
    assert ours["ap"] == pytest.approx(reference.stats[0], abs=1e-6)
    assert ours["ap50"] == pytest.approx(reference.stats[1], abs=1e-6)
    assert ours["ap75"] == pytest.approx(reference.stats[2], abs=1e-6)
    assert 0.05 < ours["ap"] < 0.95  # a case that exercises the curve, not a degenerate one


def test_perfect_none_and_crowd_cases():
    gt, _ = _case(seed=1)
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"] if not a["iscrowd"]]
    scores = coco_detection_scores(gt, perfect)
    assert scores["ap"] == pytest.approx(1.0) and scores["ap_person"] == pytest.approx(1.0) and scores["ap_face"] == pytest.approx(1.0)
    assert coco_detection_scores(gt, [])["ap"] == 0.0
    crowd = next(a for a in gt["annotations"] if a["iscrowd"])
    inside_crowd = {"image_id": crowd["image_id"], "category_id": 1, "bbox": [2, 2, 10, 10], "score": 1.0}
    assert coco_detection_scores(gt, [*perfect, inside_crowd])["ap"] == pytest.approx(1.0)  # not a false positive
    elsewhere = {**inside_crowd, "bbox": [150, 100, 10, 10]}
    assert coco_detection_scores(gt, [*perfect, elsewhere])["ap_person"] < 1.0


def test_categories_without_ground_truth_are_left_out():
    gt, dets = _case()
    gt = {**gt, "annotations": [a for a in gt["annotations"] if a["category_id"] == 1]}
    scores = coco_detection_scores(gt, [d for d in dets if d["category_id"] == 1])
    assert "ap_person" in scores and "ap_face" not in scores
    assert scores["ap"] == pytest.approx(scores["ap_person"])
    with pytest.raises(ValueError, match="not in the ground truth"):
        coco_detection_scores(gt, [{**dets[0], "image_id": 999}])


def test_detection_metrics_are_registered_as_utility():
    load_all()
    for name in DETECTION_METRICS:
        spec = metric_spec(name)
        assert spec is not None and spec.higher_is_better and spec.category == "utility" and spec.unit == "rate"
    assert not math.isnan(coco_detection_scores(*_case())["ap"])
