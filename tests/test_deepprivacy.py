"""dp-body / dp-face: geometry (crop expansion, paste back, recursive stitching), determinism,
training, checkpoints and ``evalsuite train`` with resume. Tiny models (16 x 8 px, 4 channels)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from anonymizers.base import load_state_file, save_state
from anonymizers.deepprivacy import (
    DeepPrivacyBody, DeepPrivacyFace, DPConfig, anonymize_image, build_generator, crop_set, dilate, expanded_box, heatmaps, instances,
)
from evalsuite.errors import UserError

TINY = {"height": 16, "width": 8, "channels": 4, "depth": 2, "z_dim": 4, "steps": 3, "batch_size": 4}


def scene(n: int = 8, height: int = 40, width: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Random images with one body-shaped box each and its 17 keypoints."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8, generator=generator)
    masks = torch.zeros(n, 1, height, width, dtype=torch.bool)
    masks[:, :, 8:32, 6:18] = True
    keypoints = [[12.0, 10.0 + i, 2] for i in range(17)]
    return images, masks, [{"keypoints": keypoints} for _ in range(n)]


def fitted(seed: int = 0, **params) -> DeepPrivacyBody:
    images, masks, annotations = scene()
    return DeepPrivacyBody(**{**TINY, **params}).fit(images, masks, annotations, seed=seed)


# ---------------------------------------------------------------------------- geometry

def test_instances_cover_the_mask_once_in_ascending_area():
    mask = np.zeros((30, 30), dtype=bool)
    mask[2:12, 2:12] = True  # 100 px
    mask[20:23, 20:23] = True  # 9 px
    mask[15:20, 2:6] = True  # 20 px
    parts = instances(mask, join=0)
    assert [int(p.sum()) for p in parts] == [9, 20, 100]
    assert np.array_equal(np.sum(parts, axis=0), mask.astype(int))  # every pixel exactly once
    assert len(instances(mask, join=4)) == 2  # the two blocks 3 px apart join into one person


def test_expanded_box_has_the_generator_aspect_and_contains_the_region():
    mask = np.zeros((50, 50), dtype=bool)
    mask[10:20, 20:25] = True
    x0, y0, x1, y1 = expanded_box(mask, (16, 8), 1.5)
    assert x0 <= 20 and y0 <= 10 and x1 >= 25 and y1 >= 20
    assert abs((y1 - y0) / (x1 - x0) - 2.0) < 0.2
    assert (y1 - y0) >= 15  # grown by 1.5 from the region's 10 px height


def test_paste_back_touches_only_the_dilated_region_inside_the_expanded_crop():
    config = DPConfig(**{**TINY, "dilation": 2, "expand": 1.5})
    torch.manual_seed(0)
    model = build_generator(config).eval()
    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 40, 40, dtype=torch.bool)
    mask[0, 10:20, 12:18] = True
    out = anonymize_image(model, image, mask, None, config, torch.Generator().manual_seed(0))
    changed = (out != image).any(0).numpy()
    allowed = dilate(mask[0].numpy(), 2)
    assert changed.any()
    assert not (changed & ~allowed).any()
    assert changed[~mask[0].numpy()].any()  # the dilated ring is regenerated too (before the pipeline clips to the region)


def test_the_region_never_reaches_the_generator():
    """The region is removed before resampling: two images differing only inside it give the generator the same input."""
    config = DPConfig(**TINY)
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x, z):
            seen.append(x.clone())
            return torch.zeros(x.shape[0], 3, *x.shape[2:])

    image = torch.randint(0, 256, (3, 40, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 40, 24, dtype=torch.bool)
    mask[0, 8:30, 5:15] = True
    grown = torch.from_numpy(dilate(mask[0].numpy(), config.dilation))
    other = image.clone()
    other[:, grown] = 255 - other[:, grown]
    for img in (image, other):
        anonymize_image(Spy(), img, mask, None, config, torch.Generator().manual_seed(0))
    assert torch.equal(seen[0], seen[1])


def test_recursive_stitching_runs_in_ascending_area_and_sees_earlier_instances():
    config = DPConfig(**{**TINY, "dilation": 0, "expand": 2.0})
    torch.manual_seed(0)
    model = build_generator(config).eval()
    image = torch.full((3, 48, 48), 100, dtype=torch.uint8)
    mask = torch.zeros(1, 48, 48, dtype=torch.bool)
    mask[0, 4:30, 4:20] = True  # large, drawn first in the mask
    mask[0, 34:40, 30:34] = True  # small: must be stitched first
    mask[0, 20:32, 26:34] = True  # middle
    order: list[int] = []
    anonymize_image(model, image, mask, None, config, torch.Generator().manual_seed(0), order=order)
    assert order == sorted(order) == [24, 96, 416]
    # recursive: the largest instance's crop contains the middle one, already regenerated, so it
    # differs from stitching every instance into the ORIGINAL image
    big = mask.clone()
    big[0, 20:, :] = False
    separate = anonymize_image(model, image, big, None, config, torch.Generator().manual_seed(0))
    together = anonymize_image(model, image, mask, None, config, torch.Generator().manual_seed(0))
    region = big[0]
    assert not torch.equal(separate[:, region], together[:, region])


def test_heatmaps_are_empty_for_absent_points_and_peak_at_visible_ones():
    points = torch.tensor([[[3.5, 5.5, 1.0], [2.0, 2.0, 0.0]]])
    maps = heatmaps(points, (16, 8))
    assert maps[0, 1].abs().max() == 0
    peak = int(maps[0, 0].argmax())
    assert divmod(peak, 8) == (5, 3)


def test_crop_set_reads_keypoints_and_tolerates_missing_annotations():
    images, masks, annotations = scene(n=3)
    config = DPConfig(**TINY)
    data = crop_set(images, masks, annotations, config)
    assert len(data) == 3 and data.keypoints[..., 2].sum() > 0
    empty = crop_set(images, masks, None, config)
    assert empty.keypoints[..., 2].sum() == 0
    with pytest.raises(UserError, match="no region"):
        crop_set(images, torch.zeros_like(masks), annotations, config)


def test_dp_face_reads_five_landmarks_and_ignores_other_counts():
    images, masks, _ = scene(n=2)
    config = DPConfig(**{**TINY, "pose": "face", "width": 16})
    five = [[10.0, 12.0], [12.0, 12.0], [14.0, 12.0], [16.0, 12.0], [13.0, 18.0]]
    data = crop_set(images, masks, [{"landmarks": five}, {"landmarks": five[:3]}], config)
    assert data.keypoints.shape == (2, 5, 3)
    assert data.keypoints[0, :, 2].sum() == 5 and data.keypoints[1, :, 2].sum() == 0
    assert DeepPrivacyFace(**{**TINY, "width": 16}).config.keypoints == 5


# ---------------------------------------------------------------------------- determinism and training

def test_same_state_and_seed_same_output_other_seed_other_output():
    images, masks, annotations = scene()
    a, b = fitted(seed=0), fitted(seed=0)
    out = [m.anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(s)) for m, s in ((a, 5), (b, 5), (a, 6))]
    assert torch.equal(out[0], out[1])
    assert not torch.equal(out[0], out[2])
    outside = ~masks.expand_as(images)
    assert torch.equal(out[0][outside], images[outside])


def test_training_loss_decreases_on_a_tiny_set():
    images, masks, annotations = scene(n=16, seed=3)
    images[:, :, 8:32, 6:18] = torch.tensor([200, 40, 40], dtype=torch.uint8).view(1, 3, 1, 1)  # one learnable "person" colour
    anonymizer = DeepPrivacyBody(**{**TINY, "steps": 0, "lr": 0.002})
    trainer = anonymizer.make_trainer(images, masks, annotations, seed=0)
    history = trainer.train(60)
    first = np.mean([h["l1"] for h in history[:10]])
    last = np.mean([h["l1"] for h in history[-10:]])
    assert last < 0.7 * first, (first, last)


def test_bad_parameters_are_one_line_user_errors():
    with pytest.raises(UserError, match="multiples of 2"):
        DeepPrivacyBody(height=20, width=8, depth=3)
    with pytest.raises(UserError, match="lr=0"):
        DeepPrivacyBody(lr=0)
    with pytest.raises(UserError, match="unknown parameter 'stepz'"):
        DeepPrivacyFace(stepz=3)


# ---------------------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip(tmp_path):
    images, masks, annotations = scene()
    model = fitted()
    path = tmp_path / "weights.safetensors"
    save_state(model.state_dict(), path)
    loaded = DeepPrivacyBody(**TINY, checkpoint=str(path)).fit(images[:0], masks[:0], None)
    expected = model.anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded.anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(1)), expected)
    assert loaded.code_hash() != DeepPrivacyBody(**TINY).code_hash()  # the file enters the cache keys


def test_missing_and_mismatched_checkpoints_name_the_file_and_key(tmp_path):
    with pytest.raises(UserError, match=r"checkpoint .*nope\.safetensors: no such file"):
        DeepPrivacyBody(**TINY, checkpoint=str(tmp_path / "nope.safetensors"))
    path = tmp_path / "w.safetensors"
    state = fitted().state_dict()
    save_state(state, path)
    with pytest.raises(UserError, match=r"w\.safetensors: key architecture\.channels is 4 but the anonymizer has channels=8"):
        DeepPrivacyBody(**{**TINY, "channels": 8}, checkpoint=str(path))
    broken = dict(state)
    first = next(k for k in broken if k.startswith("g."))
    broken[first] = broken[first][:1]
    save_state(broken, path)
    with pytest.raises(UserError, match=rf"key {first} has shape"):
        DeepPrivacyBody(**TINY, checkpoint=str(path))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="junk.safetensors: not a readable"):
        DeepPrivacyBody(**TINY, checkpoint=str(tmp_path / "junk.safetensors"))


def test_run_with_a_missing_checkpoint_exits_2_before_writing(tmp_path, capsys):
    from evalsuite.cli import main

    out = tmp_path / "run"
    code = main(["run", "protocol=market1501-reid", "dataset=synthetic", f"out={out}",
                 f"anonymizers=[{{name:dp-body,checkpoint:{tmp_path}/missing.safetensors}}]"])
    err = capsys.readouterr().err
    assert code == 2 and "missing.safetensors: no such file" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


# ---------------------------------------------------------------------------- evalsuite train

def _train_args(tmp_path, out, steps: int) -> list[str]:
    return ["anonymizer=dp-body", "dataset=synthetic", f"dataset.root={tmp_path / 'data'}", "dataset.num_train_ids=6", "dataset.num_test_ids=3",
            "dataset.num_distractors=0", "dataset.num_junk=0", f"out={out}", "holdout_ids=2", "checkpoint_every=2", "sample_every=2", "fid_every=100",
            *(f"anonymizer.{k}={v}" for k, v in {**TINY, "steps": steps}.items())]


def test_train_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    from evalsuite.train import parse, train

    whole = train(parse(_train_args(tmp_path, tmp_path / "whole", 4)))
    train(parse(_train_args(tmp_path, tmp_path / "parts", 2)))  # "interrupted" after its step-2 checkpoint
    resumed = train(parse(_train_args(tmp_path, tmp_path / "parts", 4)))
    assert whole["steps_done"] == resumed["steps_done"] == 4
    a, b = load_state_file(tmp_path / "whole" / "weights.safetensors"), load_state_file(tmp_path / "parts" / "weights.safetensors")
    tensors = [k for k in a if isinstance(a[k], torch.Tensor)]
    assert tensors and all(torch.equal(a[k], b[k]) for k in tensors)
    for name in ("checkpoint.safetensors", "config.json", "metrics.jsonl", "samples/step_000004.png"):
        assert (tmp_path / "parts" / name).is_file()
    steps = [json.loads(line)["step"] for line in (tmp_path / "parts" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)
    # the trained weights load as checkpoint=PATH
    DeepPrivacyBody(**TINY, checkpoint=str(tmp_path / "whole" / "weights.safetensors"))


def test_train_refuses_a_changed_config_on_resume_and_bad_keys(tmp_path):
    from evalsuite.train import parse, train

    args = _train_args(tmp_path, tmp_path / "o", 2)
    train(parse(args))
    with pytest.raises(UserError, match="train_config differs"):
        train(parse(args + ["anonymizer.lr=0.01"]))  # the last value of a key wins
    with pytest.raises(UserError, match="unknown train key 'stepz'"):
        parse(["anonymizer=dp-body", "dataset=synthetic", "out=x", "stepz=3"])
    with pytest.raises(UserError, match="holdout_ids=0"):
        parse(["anonymizer=dp-body", "dataset=synthetic", "out=x", "holdout_ids=0"])
    with pytest.raises(UserError, match="not trainable"):
        train(parse(["anonymizer=blur", "dataset=synthetic", f"out={tmp_path / 'b'}"]))
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_train_resumes_after_kill_9(tmp_path):
    """A real SIGKILL during training, then the same command: same final weights as an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "evalsuite", "train"]
    subprocess.run(command + _train_args(tmp_path, tmp_path / "whole", 40), env=env, check=True, capture_output=True)
    process = subprocess.Popen(command + _train_args(tmp_path, tmp_path / "killed", 40), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "checkpoint.safetensors"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "weights.safetensors").exists(), "killed too late to test resuming"
    subprocess.run(command + _train_args(tmp_path, tmp_path / "killed", 40), env=env, check=True, capture_output=True)
    a, b = load_state_file(tmp_path / "whole" / "weights.safetensors"), load_state_file(tmp_path / "killed" / "weights.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))


def test_the_pipeline_trains_once_and_reuses_the_cached_generator(tmp_path, monkeypatch):
    """fit_on=train: the first grid trains on the training split and caches the state; a new
    process (a fresh AnonymizedSets) reads it back instead of training, and anonymizes identically."""
    from anonymizers import deepprivacy
    from evalsuite.cache import Cache
    from evalsuite.components import resolve_anonymizer
    from evalsuite.pipeline import AnonymizedSets, ImageSet

    images, masks, annotations = scene(n=8)
    train_set = ImageSet("train", images, masks, [f"train/{i}.jpg" for i in range(8)], annotations)
    query = ImageSet("query", images[:3], masks[:3], [f"query/{i}.jpg" for i in range(3)], annotations[:3])
    spec = resolve_anonymizer({"name": "dp-body", **TINY})
    calls = []
    original = deepprivacy.GanTrainer.train
    monkeypatch.setattr(deepprivacy.GanTrainer, "train", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    first = AnonymizedSets(Cache(tmp_path), {"dataset": "x"}).get(query, spec, 0, train=train_set).images
    assert len(calls) == 1 and list((tmp_path / "fitted").glob("*.safetensors"))
    stored = list((tmp_path / "anonymized").glob("*"))
    assert stored
    for path in stored:
        path.unlink()  # force anonymizing again from the cached generator
    second = AnonymizedSets(Cache(tmp_path), {"dataset": "x"}).get(query, spec, 0, train=train_set).images
    assert len(calls) == 1
    assert torch.equal(first, second) and not torch.equal(first, query.images)
