"""``fit_on: train`` anonymizers (dp-face, dp-body) in the detection protocols: fitted on the
training split's instance crops (evalsuite/detection/fit_crops.py), then applied instance by instance."""
import json

import numpy as np
import torch

from evalsuite.anonymized_scenes import SceneSet
from evalsuite.cli import main
from evalsuite.detection import fit_crops

TINY = ["dataset=synthetic", "dataset.num_train_images=6", "dataset.num_val_images=3", "dataset.height=64", "dataset.width=96",
        "dataset.person_height=[28,60]", "detector.epochs=1", "num_threads=1"]
DP = "{name:dp-face,height:16,width:16,channels:4,depth:2,z_dim:4,steps:2,batch_size:4}"


def _scenes() -> SceneSet:
    image = torch.arange(3 * 40 * 60, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(3, 40, 60)
    mask = np.zeros((40, 60), dtype=bool)
    mask[10:20, 50:58] = True  # near the right edge: the window leaves the scene
    return SceneSet("train", ["a.jpg"], lambda i: image, lambda i: [(mask, {"face_box": [50.0, 10.0, 58.0, 20.0]})], [1], "fp", image.numel())


def test_instance_crops_centre_the_instance_with_context_and_move_its_box():
    crops = fit_crops.instance_crops(_scenes(), "face")
    height, width = fit_crops.CROP_SIZE["face"]
    assert crops.images.shape == (1, 3, height, width) and crops.masks.shape == (1, 1, height, width)
    ys, xs = np.nonzero(crops.masks[0, 0].numpy())
    side = fit_crops.CONTEXT * 10  # the box is 8 x 10: the window is 2.5 x 10 px square
    pixel = width / side  # one scene pixel in the crop: the window starts on a whole scene pixel
    assert abs((xs.max() + 1 - xs.min()) - 8 * pixel) <= pixel and abs((ys.max() + 1 - ys.min()) - 10 * pixel) <= pixel
    assert abs((xs.min() + xs.max() + 1) / 2 - width / 2) <= pixel and abs((ys.min() + ys.max() + 1) / 2 - height / 2) <= pixel
    x0, y0, x1, y1 = crops.annotations[0]["face_box"]
    assert abs(x0 - xs.min()) <= 1.5 and abs(x1 - (xs.max() + 1)) <= 1.5 and abs(y0 - ys.min()) <= 1.5
    assert crops.images[0, :, :, -5:].sum() == 0  # beyond the scene's right edge: zero
    assert crops.sample_ids == ["a.jpg#0"]


def test_dp_face_is_fitted_on_the_training_instances_in_detection_validate(tmp_path):
    out = tmp_path / "out"
    args = ["run", "protocol=detection-validate", *TINY, "region.name=face", f"anonymizers=[none,mask,{DP}]", f"cache_dir={tmp_path / 'cache'}", f"out={out}"]
    assert main(args) == 0
    rows = {r["anonymizer"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert len(rows) == 3
    dp = next(r for label, r in rows.items() if label.startswith("dp-face"))
    assert 0.0 <= dp["metrics"]["ap"] <= 1.0
    assert list((tmp_path / "cache").rglob("fitted/*.safetensors"))  # the fitted generator is cached
    assert main(args) == 0  # resumed: nothing recomputed, same rows
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
