"""``uap``: budget, region, determinism, and that it fools its surrogate more than random noise of the same budget."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anonymizers.uap import UniversalPerturbation, apply_perturbation, load_surrogate, save_surrogate, train_surrogate
from evalsuite.errors import UserError

SURROGATE = dict(surrogate_epochs=30, surrogate_width=4, surrogate_input_size=24)
SMALL = dict(eps=10.0, max_passes=3, max_images=32, deepfool_steps=8, candidates=4, **SURROGATE)


def toy_identities(per_class: int = 8, classes: int = 4, seed: int = 0, amplitude: float = 40) -> tuple[torch.Tensor, np.ndarray]:
    """32 x 32 images: each class a fixed smooth colour pattern (+-``amplitude`` gray levels about
    mid-gray; as faces, identities differ by moderate, spread-out changes), each image with its
    own noise, brightness and shift."""
    coarse = torch.from_numpy(np.random.default_rng(123).normal(0, 1, (classes, 3, 4, 4))).float()
    patterns = F.interpolate(coarse, size=(32, 32), mode="bicubic", align_corners=False)
    patterns = patterns / patterns.abs().amax(dim=(1, 2, 3), keepdim=True) * amplitude
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(classes):
        for _ in range(per_class):
            image = 128 + patterns[c] + torch.from_numpy(rng.normal(0, 8, (3, 32, 32))).float() + float(rng.normal(0, 10))
            dy, dx = (int(d) for d in rng.integers(-2, 3, 2))
            images.append(torch.roll(image, (dy, dx), (1, 2)).round().clamp(0, 255).to(torch.uint8))
            labels.append(c)
    return torch.stack(images), np.array(labels)


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    images, labels = toy_identities(seed=seed)
    masks = torch.zeros(images.shape[0], 1, 32, 32, dtype=torch.bool)
    masks[:, :, 2:30, 2:30] = True  # a border of 2 px stays outside the region
    return images, masks, [{"identity": f"person{c}"} for c in labels]


@pytest.fixture(scope="module")
def fitted() -> UniversalPerturbation:
    images, masks, annotations = data()
    return UniversalPerturbation(**SMALL).fit(images, masks, annotations, seed=3)


def test_linf_budget_is_exact_and_outside_the_region_nothing_changes(fitted):
    images, masks, annotations = data(seed=1)
    out = fitted.anonymize(images, masks, annotations)
    diff = out.int() - images.int()
    assert diff.abs().max() <= 10
    assert diff.abs().max() == 10  # the perturbation uses its budget
    assert torch.equal(out[~masks.expand_as(images)], images[~masks.expand_as(images)])
    # a non-integer budget: at most floor(eps)
    v = torch.full((3, 32, 32), 7.9)
    assert (apply_perturbation(images, masks, v, 7.5).int() - images.int()).abs().max() == 7


def test_same_seed_same_perturbation_other_seed_other(fitted):
    images, masks, annotations = data()
    again = UniversalPerturbation(**SMALL).fit(images, masks, annotations, seed=3)
    other = UniversalPerturbation(**SMALL).fit(images, masks, annotations, seed=4)
    assert torch.equal(again.perturbation_, fitted.perturbation_)
    assert not torch.equal(other.perturbation_, fitted.perturbation_)


def test_fools_the_surrogate_more_than_random_noise_of_the_same_budget(fitted):
    images, masks, annotations = data()
    recognizer, templates = train_surrogate(images, np.arange(32) // 8, seed=3, epochs=30, width=4, input_size=24)
    from anonymizers.uap import TemplateClassifier

    model = TemplateClassifier(recognizer.net, templates, 24)  # the surrogate fit() trained (same data, seed, settings)
    test_images, test_masks, _ = data(seed=5)  # new images of the same identities
    labels = torch.arange(32) // 8

    def accuracy(x: torch.Tensor) -> float:
        return float((model.predict(x) == labels).float().mean())

    clean = accuracy(test_images)
    noise = torch.where(torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) < 0.5, -10.0, 10.0)  # +-eps everywhere
    random = accuracy(apply_perturbation(test_images, test_masks, noise, 10.0))
    adversarial = accuracy(fitted.anonymize(test_images, test_masks))
    assert clean >= 0.8  # chance: 0.25
    assert adversarial <= random - 0.3, (clean, random, adversarial)


def test_surrogate_file_round_trip_and_errors(tmp_path):
    images, masks, annotations = data()
    recognizer, templates = train_surrogate(images, np.arange(32) // 8, seed=0, epochs=1, width=2, input_size=16)
    path = tmp_path / "s.safetensors"
    save_surrogate(recognizer, templates, path)
    model = load_surrogate(path)
    assert model.predict(images).shape == (32,)
    anonymizer = UniversalPerturbation(surrogate=str(path), max_passes=1, max_images=8, deepfool_steps=2, candidates=3)
    anonymizer.fit(images, masks, None, seed=0)  # no identities needed with a surrogate file
    assert anonymizer.perturbation_.shape == (3, 32, 32)
    with pytest.raises(UserError, match="no 'identity' annotation"):
        UniversalPerturbation(**SMALL).fit(images, masks, [{} for _ in range(32)], seed=0)
    with pytest.raises(UserError, match="no such file"):
        UniversalPerturbation(surrogate=str(tmp_path / "missing.safetensors"))
    with pytest.raises(UserError, match="eps=300"):
        UniversalPerturbation(eps=300)
    with pytest.raises(UserError, match="max_passes=0"):
        UniversalPerturbation(max_passes=0)
