"""WIDER FACE easy / medium / hard AP by the official evaluation's rules, on .mat files written here."""
import json

import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.errors import UserError
from evalsuite.metrics import wider_face
from evalsuite.metrics.wider_face import WiderGroundTruth, load_ground_truth, voc_ap, wider_face_ap
from wider_trees import ASTRONAUT_BOX, astronaut_wider_tree

A, B, EMPTY = ("0--Parade", "a"), ("0--Parade", "b"), ("1--Handshaking", "c")


def cells(items):
    """A MATLAB cell column (n x 1 object array), as in the toolbox's files."""
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def write_ground_truth(folder, events, boxes, keep):
    """``events``: {event: [image names]}; ``boxes``: {(event, name): [[x, y, w, h], ...]};
    ``keep``: {setting: {(event, name): [1-based face indices]}}."""
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    names = list(events)
    savemat(folder / "wider_face_val.mat", {
        "event_list": cells([np.array([e]) for e in names]),
        "file_list": cells([cells([np.array([f]) for f in events[e]]) for e in names]),
        "face_bbx_list": cells([cells([np.array(boxes[(e, f)], dtype=np.float64).reshape(-1, 4) for f in events[e]]) for e in names]),
    })
    for setting in ("easy", "medium", "hard"):
        savemat(folder / f"wider_{setting}_val.mat", {
            "event_list": cells([np.array([e]) for e in names]),
            "file_list": cells([cells([np.array([f]) for f in events[e]]) for e in names]),
            "gt_list": cells([cells([np.array(keep[setting].get((e, f), []), dtype=np.float64).reshape(-1, 1) for f in events[e]]) for e in names]),
        })
    return folder


@pytest.fixture
def truth(tmp_path):
    # image a: a large face (every setting) and a small one (hard only); image b: one medium face; c: no face
    boxes = {A: [[10, 10, 40, 40], [100, 100, 8, 8]], B: [[20, 30, 20, 20]], EMPTY: []}
    keep = {"easy": {A: [1]}, "medium": {A: [1], B: [1]}, "hard": {A: [1, 2], B: [1]}}
    return load_ground_truth(write_ground_truth(tmp_path / "gt", {"0--Parade": ["a", "b"], "1--Handshaking": ["c"]}, boxes, keep))


def det(box, score):
    return [*box, score]


def test_ground_truth_is_read_from_matlab_cells(truth):
    assert set(truth.boxes) == {A, B, EMPTY}
    assert truth.boxes[A].tolist() == [[10, 10, 40, 40], [100, 100, 8, 8]] and truth.boxes[EMPTY].shape == (0, 4)
    assert truth.keep["hard"][A].tolist() == [0, 1] and truth.keep["easy"][B].tolist() == []


def test_perfect_detections_score_one_in_every_setting(truth):
    preds = {A: np.array([det([10, 10, 40, 40], 0.9), det([100, 100, 8, 8], 0.3)]), B: np.array([det([20, 30, 20, 20], 0.6)])}
    assert wider_face_ap(truth, preds, [A, B, EMPTY]) == {"ap_easy": 1.0, "ap_medium": 1.0, "ap_hard": 1.0}


def test_faces_outside_the_setting_are_ignored_not_false_positives(truth):
    # only the small face (hard only) and b's face (not easy) are found
    preds = {A: np.array([det([100, 100, 8, 8], 0.9)]), B: np.array([det([20, 30, 20, 20], 0.5)])}
    scores = wider_face_ap(truth, preds, [A, B, EMPTY])
    assert scores["ap_easy"] == 0.0  # nothing of the setting recalled, and no false positive either
    assert scores["ap_medium"] == pytest.approx(0.5)  # b's face of {a1, b1}, precision 1
    assert scores["ap_hard"] == pytest.approx(2 / 3)  # 2 of 3, precision 1


def test_a_top_scoring_false_positive_and_a_duplicate(truth):
    # normalised scores 1 (false positive), 0.5 (a1), 0 (duplicate of a1): easy = {a1}
    preds = {A: np.array([det([200, 200, 30, 30], 3.0), det([10, 10, 40, 40], 2.0), det([11, 10, 40, 40], 1.0)])}
    # threshold > 0.5: 1 counted, 0 recalled; <= 0.5: 2 counted, 1 recalled (P 1/2, R 1); the duplicate: P 1/3
    assert wider_face_ap(truth, preds, [A])["ap_easy"] == pytest.approx(0.5)
    # detections on an image without faces cost nothing (the toolbox skips such images)
    preds[EMPTY] = np.array([det([0, 0, 50, 50], 3.0)])
    assert wider_face_ap(truth, preds, [A, EMPTY])["ap_easy"] == pytest.approx(0.5)


def test_iou_uses_the_toolbox_inclusive_pixels():
    # corners are inclusive pixels: [0,0,9,9] is 10x10, so [5,0,14,9] shares 5x10 of 150; a zero-extent box is 1 px
    boxes = np.array([[0.0, 0.0, 9.0, 9.0]])
    assert wider_face._overlaps(boxes, np.array([5.0, 0.0, 14.0, 9.0]))[0] == pytest.approx(1 / 3)
    assert wider_face._overlaps(np.array([[3.0, 3.0, 3.0, 3.0]]), np.array([3.0, 3.0, 3.0, 3.0]))[0] == 1.0


def test_voc_ap_takes_the_precision_envelope():
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([0.5, 1.0, 0.25])) == pytest.approx(0.5 * 1.0 + 0.5 * 0.25)


def test_missing_file_names_it_and_the_key(tmp_path):
    with pytest.raises(UserError, match=r"wider_face_val\.mat not found; set dataset\.ground_truth"):
        load_ground_truth(tmp_path)


def test_wider_face_run_reports_the_official_settings(tmp_path, capsys):
    root = astronaut_wider_tree(tmp_path / "WIDER_FACE")
    key = ("0--Parade", "astronaut")
    gt = write_ground_truth(tmp_path / "gt", {"0--Parade": ["astronaut"]}, {key: [ASTRONAUT_BOX]},
                            {"easy": {key: [1]}, "medium": {key: [1]}, "hard": {key: [1]}})
    out = tmp_path / "out"
    args = ["run", "protocol=detection-validate", "dataset=wider-face", f"dataset.root={root}", f"dataset.ground_truth={gt}",
            "detector.upsample=0", "anonymizers=[none,mask]", f"cache_dir={tmp_path / 'cache'}", f"out={out}", "num_threads=1"]
    assert main(args) == 0
    assert "AP_easy" in capsys.readouterr().out
    stored = {r["anonymizer"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert {"ap_easy", "ap_medium", "ap_hard"} <= set(stored["none"]["metrics"])
    assert stored["none"]["metrics"]["ap_easy"] == pytest.approx(1.0)  # dlib finds the astronaut's face, ranked first
    assert stored["mask"]["metrics"]["ap_easy"] == 0.0

    # an image the ground truth does not list: one line, exit 2, nothing written
    other = write_ground_truth(tmp_path / "gt2", {"0--Parade": ["someone_else"]}, {("0--Parade", "someone_else"): [[1, 1, 5, 5]]},
                               {"easy": {}, "medium": {}, "hard": {}})
    bad = ["run", "protocol=detection-validate", "dataset=wider-face", f"dataset.root={root}", f"dataset.ground_truth={other}",
           "detector.upsample=0", f"cache_dir={tmp_path / 'cache'}", f"out={tmp_path / 'out2'}", "num_threads=1"]
    code = main(bad)
    assert code == 2
    assert "1 image(s) of" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_truth_dataclass_is_what_the_protocol_scores(truth):
    images = [{"id": 1, "file_name": "0--Parade/a.jpg"}, {"id": 2, "file_name": "0--Parade/b.jpg"}]
    detections = [{"image_id": 1, "category_id": 5, "bbox": [10, 10, 40, 40], "score": 0.9},
                  {"image_id": 2, "category_id": 5, "bbox": [20, 30, 20, 20], "score": 0.8},
                  {"image_id": 2, "category_id": 6, "bbox": [0, 0, 1, 1], "score": 0.99}]  # another category: not scored
    assert isinstance(truth, WiderGroundTruth)
    scores = wider_face.detection_scores(truth, images, detections, 5)
    assert scores["ap_easy"] == 1.0 and scores["ap_medium"] == 1.0 and scores["ap_hard"] == pytest.approx(2 / 3)  # a2 missed
