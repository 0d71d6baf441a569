"""``upgan``: only the face region changes, the target's region pixels never matter, seeded,
training lowers its losses, augmentation moves landmarks with the face, checkpoints, ``evalsuite train``."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from anonymizers.base import load_state_file, save_state
from anonymizers.upgan import UPGAN, UPGANConfig, augment, face_mask, seven_landmarks
from evalsuite.errors import UserError

TINY = dict(size=16, channels=4, fc_dim=16, steps=60, batch_size=4, lr=0.002, perceptual_epochs=1, perceptual_width=2)
SEVEN = np.array([[8, 10], [16, 10], [12, 14], [9, 18], [12, 17], [15, 18], [12, 19]], dtype=float)


def faces(n: int = 12, seed: int = 0, size: int = 24) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Noise images with a skin-coloured face square whose colour follows the skin tone; 7 landmarks
    shifted per image, age / gender / skin tone attributes, 4 identities."""
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 60, (n, 3, size, size))).to(torch.uint8)
    tones = {"light": (230, 190, 160), "dark": (120, 80, 50)}
    annotations = []
    for i in range(n):
        tone = "light" if i % 2 else "dark"
        images[i, :, 4:22, 4:20] = torch.tensor(tones[tone])[:, None, None]
        points = SEVEN + (i % 3) - 1
        annotations.append({"attributes": {"age": 20 + 5 * i, "gender": "male" if i % 4 < 2 else "female", "skin_tone": tone},
                            "identity": f"p{i % 4}", "face_box": [4, 4, 20, 22], "face_landmarks": {7: points.tolist()}})
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    masks[:, :, 3:23, 3:21] = True
    masks[0] = False
    return images, masks, annotations


@pytest.fixture(scope="module")
def fitted() -> UPGAN:
    images, masks, annotations = faces()
    return UPGAN(**TINY).fit(images, masks, annotations, seed=0)


@pytest.mark.parametrize("blend", ["poisson", "alpha", "none"])
def test_changes_only_the_region(fitted: UPGAN, blend: str) -> None:
    model = UPGAN(**{**TINY, "blend": blend}).use_generator(fitted.generator_)
    images, masks, annotations = faces(seed=1)
    out = model.anonymize(images, masks, annotations)
    outside = ~masks.expand_as(images)
    assert torch.equal(out[outside], images[outside])
    assert not torch.equal(out[~outside], images[~outside])


def test_the_generator_never_sees_the_region_pixels(fitted: UPGAN, monkeypatch: pytest.MonkeyPatch) -> None:
    images, masks, annotations = faces(seed=1)
    scrambled = torch.where(masks.expand_as(images), 255 - images, images)  # other pixels inside the region
    seen: list[tuple[torch.Tensor, ...]] = []
    forward = type(fitted.generator_).forward
    monkeypatch.setattr(type(fitted.generator_), "forward", lambda self, *args: seen.append(args) or forward(self, *args))
    model = UPGAN(**{**TINY, "blend": "none"}).use_generator(fitted.generator_)
    out = model.anonymize(images, masks, annotations)
    first = list(seen)
    seen.clear()
    assert torch.equal(model.anonymize(scrambled, masks, annotations), out)  # without blending nothing of the region survives
    assert len(first) == len(seen) == 11 and all(torch.equal(a, b) for x, y in zip(first, seen) for a, b in zip(x, y))
    fitted.anonymize(scrambled, masks, annotations)  # Poisson blending: the same generator inputs as well
    assert all(torch.equal(a, b) for x, y in zip(first, seen[11:]) for a, b in zip(x, y))


def test_output_follows_the_utility_vectors(fitted: UPGAN) -> None:
    images, masks, annotations = faces(seed=1)
    out = fitted.anonymize(images[1:2], masks[1:2], annotations[1:2])
    moved = [{**annotations[1], "face_landmarks": {7: (SEVEN + 4).tolist()}}]
    older = [{**annotations[1], "attributes": {**annotations[1]["attributes"], "age": 90}}]
    assert not torch.equal(fitted.anonymize(images[1:2], masks[1:2], moved), out)
    assert not torch.equal(fitted.anonymize(images[1:2], masks[1:2], older), out)


def test_deterministic_per_seed(fitted: UPGAN) -> None:
    images, masks, annotations = faces(seed=1)
    out = fitted.anonymize(images, masks, annotations)
    assert torch.equal(UPGAN(**TINY).fit(*faces(), seed=0).anonymize(images, masks, annotations), out)
    assert not torch.equal(UPGAN(**TINY).fit(*faces(), seed=1).anonymize(images, masks, annotations), out)


def test_training_lowers_the_reconstruction_and_mask_losses() -> None:
    images, masks, annotations = faces(n=16)
    trainer = UPGAN(**{**TINY, "steps": 80}).make_trainer(images, masks, annotations, seed=0)
    history = trainer.train(80)
    first = {k: np.mean([h[k] for h in history[:10]]) for k in ("l2", "mask")}
    last = {k: np.mean([h[k] for h in history[-10:]]) for k in ("l2", "mask")}
    assert last["l2"] < 0.7 * first["l2"] and last["mask"] < 0.7 * first["mask"], (first, last)


def test_augmentation_moves_the_landmarks_with_the_face() -> None:
    size = 32
    points = torch.tensor([[[9.5, 12.5], [22.5, 20.5]]])
    image = -torch.ones(1, 3, size, size)
    for x, y in points[0].tolist():
        image[0, :, int(y), int(x)] = 1.0
    config = UPGANConfig(size=size, rotation=30.0, elastic_alpha=0.05, elastic_sigma=0.1)
    warped, _, moved = augment(image, torch.ones(1, 1, size, size), points, config, torch.Generator().manual_seed(3))
    assert not torch.allclose(moved, points, atol=0.5)  # it did move them
    for x, y in moved[0].tolist():  # each bright dot landed where its landmark went
        window = warped[0, 0, max(0, int(y) - 1):int(y) + 2, max(0, int(x) - 1):int(x) + 2]
        assert float(window.max()) > -0.6, (x, y)


def test_landmarks_from_68_points_and_the_face_mask() -> None:
    pts = np.zeros((68, 2))
    pts[36:42], pts[42:48] = [10, 20], [30, 20]
    pts[30], pts[48], pts[51], pts[54], pts[57] = [20, 28], [12, 34], [20, 33], [28, 34], [20, 37]
    pts[:17] = np.stack([5 + 30 * np.arange(17) / 16, 25 + 15 * np.sin(np.pi * np.arange(17) / 16)], axis=1)
    pts[17:27] = np.stack([8 + 24 * np.arange(10) / 9, np.full(10, 15)], axis=1)
    seven = seven_landmarks({"face_landmarks": {68: pts.tolist()}}, [0, 0, 40, 40], "error")
    assert np.allclose(seven, [[10, 20], [30, 20], [20, 28], [12, 34], [20, 33], [28, 34], [20, 37]])
    mask = face_mask({"face_landmarks": {68: pts.tolist()}}, (48, 48), [0, 0, 40, 40])
    assert mask[28, 20] and not mask[5, 20] and not mask[45, 45]
    with pytest.raises(UserError, match="missing_landmarks=box"):
        seven_landmarks({}, [0, 0, 40, 40], "error")
    box = seven_landmarks({"face_box": [0, 0, 10, 20]}, [0, 0, 40, 40], "box")
    assert box[0, 0] < box[1, 0] and box[2, 1] < box[6, 1] and box.max() <= 20


def test_checkpoint_round_trip_and_errors(fitted: UPGAN, tmp_path) -> None:
    path = tmp_path / "upgan.safetensors"
    save_state(fitted.state_dict(), path)
    images, masks, annotations = faces(seed=1)
    loaded = UPGAN(**TINY, checkpoint=str(path))
    assert torch.equal(loaded.fit(images[:0], masks[:0], []).anonymize(images, masks, annotations), fitted.anonymize(images, masks, annotations))
    restored = UPGAN(**TINY).load_state(load_state_file(path))
    assert torch.equal(restored.anonymize(images, masks, annotations), fitted.anonymize(images, masks, annotations))
    with pytest.raises(UserError, match="architecture.channels"):
        UPGAN(**{**TINY, "channels": 8}, checkpoint=str(path))
    with pytest.raises(UserError, match="coding.names"):
        UPGAN(**TINY, attributes=["age"], checkpoint=str(path))
    with pytest.raises(UserError, match="no such file"):
        UPGAN(checkpoint=str(tmp_path / "missing.safetensors"))


@pytest.mark.parametrize("params, match", [({"blend": "seamless"}, "blend"), ({"size": 24}, "power of two"), ({"steps": 0}, "steps"),
                                           ({"lambda_rec": -1}, "lambda_rec"), ({"sizes": 32}, "unknown parameter"), ({"attributes": [1]}, "attributes")])
def test_bad_parameters_are_one_line_user_errors(params: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        UPGAN(**params)


def test_missing_attributes_and_identities_are_user_errors() -> None:
    images, masks, annotations = faces()
    with pytest.raises(UserError, match="no attribute 'Young'"):
        UPGAN(**TINY, attributes=["Young"]).fit(images, masks, annotations)
    anonymous = [{k: v for k, v in a.items() if k != "identity"} for a in annotations]
    with pytest.raises(UserError, match="lambda_perceptual=0"):
        UPGAN(**TINY).fit(images, masks, anonymous)
    UPGAN(**{**TINY, "lambda_perceptual": 0.0, "steps": 1}).fit(images, masks, anonymous)


def _train_args(tmp_path, out, steps: int) -> list[str]:
    return ["anonymizer=upgan", "dataset=synthetic-faces", f"dataset.root={tmp_path / 'faces'}", "dataset.num_identities=5",
            "dataset.images_per_identity=[3,3]", "dataset.size=32", f"out={out}", "holdout_ids=2", "checkpoint_every=2", "sample_every=2", "fid_every=100",
            *(f"anonymizer.{k}={v}" for k, v in {**TINY, "steps": steps}.items())]


@pytest.mark.slow  # three short trainings and the synthetic faces: about 10 s of CPU, a minute on the busy 2-core machine
def test_evalsuite_train_on_synthetic_faces_writes_loadable_weights_and_resumes(tmp_path) -> None:
    from evalsuite.train import WEIGHTS_NAME, parse, train

    config = train(parse(_train_args(tmp_path, tmp_path / "a", 6)))
    assert config["steps_done"] == 6 and config["final"]["train_images"] == 9 and math.isfinite(config["final"]["fid_random_holdout"])
    loaded = UPGAN(**{**TINY, "steps": 6}, checkpoint=str(tmp_path / "a" / WEIGHTS_NAME))
    assert loaded.generator_ is None and loaded.fit(torch.zeros(0, 3, 8, 8, dtype=torch.uint8), torch.zeros(0, 1, 8, 8, dtype=torch.bool)).generator_ is not None
    train(parse(_train_args(tmp_path, tmp_path / "b", 4)))  # stopped at 4, then extended to 6: the weights of the uninterrupted run
    train(parse(_train_args(tmp_path, tmp_path / "b", 6)))
    a, b = load_state_file(tmp_path / "a" / WEIGHTS_NAME), load_state_file(tmp_path / "b" / WEIGHTS_NAME)
    assert a["coding"] == b["coding"] and all(torch.equal(a[k], b[k]) for k in a if k.startswith("g."))
