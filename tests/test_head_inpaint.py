"""head-inpaint (Sun et al. two-stage head inpainting): geometry, stage I landmarks, determinism,
the given-region contract, training, checkpoints and ``evalsuite train``. Tiny models (16 x 16 px)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anonymizers.base import load_state_file, save_state
from anonymizers.deepprivacy import DeepPrivacyFace
from anonymizers.head_inpaint import HeadInpaint, HeadInpaintConfig, LandmarkGenerator, inpaint_image, stage1_input
from evalsuite.errors import UserError

TINY = {"height": 16, "width": 16, "channels": 4, "depth": 2, "z_dim": 4, "steps": 3, "batch_size": 4, "landmark_dim": 8, "landmark_blocks": 1}
HEAD = (slice(6, 14), slice(8, 16))  # rows, columns of the head box in the scene


def scene(n: int = 8, height: int = 40, width: int = 24, seed: int = 0, faces: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Random images, a head box near the top, 17 COCO keypoints below it and 5 landmarks inside it (none for odd images: back views)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8, generator=generator)
    masks = torch.zeros(n, 1, height, width, dtype=torch.bool)
    masks[:, :, HEAD[0], HEAD[1]] = True
    annotations = []
    for i in range(n):
        keypoints = [[12.0, 10.0, 2]] * 5 + [[9.0 + (i % 3), 16.0 + 1.5 * j, 2] for j in range(12)]
        landmarks = [[10.0 + (i % 4) * 0.5, 9.0], [11.0, 9.0], [13.0, 9.0], [14.0, 9.0], [12.0, 11.0 + (i % 2)]]
        annotations.append({"head_box": [8, 6, 16, 14], "keypoints": keypoints, "landmarks": landmarks if faces and i % 2 == 0 else None})
    return images, masks, annotations


def fitted(seed: int = 0, **params) -> HeadInpaint:
    images, masks, annotations = scene()
    return HeadInpaint(**{**TINY, **params}).fit(images, masks, annotations, seed=seed)


def test_crop_puts_the_head_at_the_top_with_body_context_below():
    config = HeadInpaintConfig(pose="face", **{**TINY, "height": 24, "width": 16, "expand": 3.0, "above": 0.5})
    region = np.zeros((60, 40), dtype=bool)
    region[10:20, 15:23] = True  # 10 px tall head
    x0, y0, x1, y1 = config.box(region)
    assert y0 == 10 - 5  # half a head height above the head
    assert y1 - y0 >= 30 and y1 > 20 + 10  # 3 head heights: the shoulders are in the crop
    assert x0 <= 15 and x1 >= 23 and abs((y1 - y0) / (x1 - x0) - 1.5) < 0.1
    with pytest.raises(UserError, match="above=2.5 must be at most expand - 1"):
        HeadInpaint(expand=3.0, above=2.5)


def test_stage1_landmarks_have_the_shape_and_range_of_the_crop():
    config = HeadInpaintConfig(pose="face", **{**TINY, "height": 24, "width": 16})
    torch.manual_seed(0)
    model = LandmarkGenerator(config).eval()
    inputs = torch.rand(6, 3, 24, 16) * 2 - 1
    masks = torch.zeros(6, 1, 24, 16, dtype=torch.bool)
    masks[:, :, 2:10, 4:12] = True
    body = torch.rand(6, 17, 3) * torch.tensor([16.0, 24.0, 1.0])
    x = stage1_input(inputs, masks, body, (24, 16))
    assert x.shape == (6, 3 + 1 + 12, 24, 16)  # the 5 head keypoints (nose, eyes, ears) are not stage I's input
    points, logits = model(x)
    assert points.shape == (6, 5, 2) and logits.shape == (6,)
    assert (points[..., 0] >= 0).all() and (points[..., 0] <= 16).all() and (points[..., 1] >= 0).all() and (points[..., 1] <= 24).all()
    full = model.landmarks(x)
    assert full.shape == (6, 5, 3) and set(full[..., 2].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(full[..., 2].amax(1), full[..., 2].amin(1))  # a face is all visible or all absent


def test_same_seed_same_output_other_seed_other_output_and_only_the_head_changes():
    images, masks, annotations = scene()
    a, b = fitted(seed=0), fitted(seed=0)
    out = [m.anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(s)) for m, s in ((a, 5), (b, 5), (a, 6))]
    assert torch.equal(out[0], out[1])
    assert not torch.equal(out[0], out[2])
    outside = ~masks.expand_as(images)
    assert torch.equal(out[0][outside], images[outside])
    inside = masks.expand_as(images)
    assert (out[0][inside] != images[inside]).float().mean() > 0.5  # the head itself is replaced
    blackhead = a.obfuscate(images, masks)
    assert not torch.equal(out[0][inside], blackhead[inside])  # inpainted, not left black


def test_black_and_blur_inputs_start_from_the_baselines():
    from evalsuite.registry import ANONYMIZERS

    images, masks, _ = scene(n=2)
    for variant, baseline in (("black", "blackhead"), ("blur", "blurhead")):
        assert torch.equal(HeadInpaint(**TINY, input=variant).obfuscate(images, masks), ANONYMIZERS.build(baseline).anonymize(images, masks))
    assert ANONYMIZERS.build("head-inpaint-blur", **TINY).config.input == "blur"
    with pytest.raises(UserError, match="input='gray': use one of black, blur"):
        HeadInpaint(input="gray")


def test_inpainting_reads_stage1_landmarks_per_head():
    images, masks, annotations = scene(n=1)
    model = fitted()
    seen: list[torch.Tensor] = []
    inpaint_image(model.generator_, model.obfuscate(images, masks)[0], masks[0], annotations[0], model.config, torch.Generator().manual_seed(0), seen)
    assert len(seen) == 1 and seen[0].shape == (1, 5, 3)


def test_training_losses_decrease_on_a_tiny_set():
    images, masks, annotations = scene(n=16, seed=3)
    images[:, :, HEAD[0], HEAD[1]] = torch.tensor([200, 40, 40], dtype=torch.uint8).view(1, 3, 1, 1)  # one learnable "head" colour
    trainer = HeadInpaint(**{**TINY, "steps": 0, "lr": 0.002}).make_trainer(images, masks, annotations, seed=0)
    history = trainer.train(60)
    for key in ("l1", "lm_l2"):  # stage II's region L1 and stage I's landmark L2
        first, last = np.mean([h[key] for h in history[:10]]), np.mean([h[key] for h in history[-10:]])
        assert last < 0.7 * first, (key, first, last)


def test_checkpoint_round_trip_and_foreign_files(tmp_path):
    images, masks, annotations = scene()
    model = fitted()
    path = tmp_path / "weights.safetensors"
    save_state(model.state_dict(), path)
    assert any(k.startswith("l.") for k in load_state_file(path)) and any(k.startswith("g.") for k in load_state_file(path))
    loaded = HeadInpaint(**TINY, checkpoint=str(path)).fit(images[:0], masks[:0], None)
    expected = model.anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded.anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(1)), expected)
    with pytest.raises(UserError, match=r"key architecture\.landmark_dim is 8 but the anonymizer has landmark_dim=16"):
        HeadInpaint(**{**TINY, "landmark_dim": 16}, checkpoint=str(path))
    face = DeepPrivacyFace(**{k: v for k, v in TINY.items() if not k.startswith("landmark")}).fit(images, masks, annotations)
    save_state(face.state_dict(), tmp_path / "dp-face.safetensors")
    with pytest.raises(UserError, match="key format is 'evalsuite-deepprivacy/1', expected 'evalsuite-head-inpaint/1'"):
        HeadInpaint(**TINY, checkpoint=str(tmp_path / "dp-face.safetensors"))


def test_without_any_landmarks_it_still_trains_and_anonymizes():
    images, masks, annotations = scene(faces=False)
    model = HeadInpaint(**TINY).fit(images, masks, annotations)
    out = model.anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[~masks.expand_as(images)], images[~masks.expand_as(images)])


def test_evalsuite_train_trains_head_inpaint_on_the_head_region_and_resumes(tmp_path):
    from evalsuite.train import parse, train

    def args(out, steps):
        return ["anonymizer=head-inpaint", "dataset=synthetic", f"dataset.root={tmp_path / 'data'}", "dataset.num_train_ids=6", "dataset.num_test_ids=3",
                "dataset.num_distractors=0", "dataset.num_junk=0", f"out={out}", "holdout_ids=2", "checkpoint_every=2", "sample_every=2", "fid_every=100",
                *(f"anonymizer.{k}={v}" for k, v in {**TINY, "steps": steps}.items())]

    whole = train(parse(args(tmp_path / "whole", 4)))
    assert whole["region"]["name"] == "head"
    train(parse(args(tmp_path / "parts", 2)))
    train(parse(args(tmp_path / "parts", 4)))  # resumed from its step-2 checkpoint: both stages' weights, optimizers and RNGs
    a, b = load_state_file(tmp_path / "whole" / "weights.safetensors"), load_state_file(tmp_path / "parts" / "weights.safetensors")
    tensors = [k for k in a if isinstance(a[k], torch.Tensor)]
    assert any(k.startswith("l.") for k in tensors) and all(torch.equal(a[k], b[k]) for k in tensors)
    HeadInpaint(**TINY, checkpoint=str(tmp_path / "whole" / "weights.safetensors"))
