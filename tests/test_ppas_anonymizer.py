"""``ppas``: region-only output, seeded, releases satisfy k / l / t, state and checkpoint round trip, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anonymizers.base import load_state_file, save_state
from anonymizers.ppas import PPASAnonymizer, PPASConfig, StarGANTrainer, instance_crops, one_hot
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS, load_all

TINY = dict(quasi_identifiers=["hair", "glasses"], sensitive=["male"], k=3, l=1.5, t=0.4, epsilon=2.0, size=16, channels=4, blocks=1,
            d_depth=2, steps=4, batch_size=4, classifier_epochs=2, classifier_width=4)
HAIR = {"black": (20, 20, 20), "blond": (230, 200, 90), "brown": (120, 70, 30)}


def faces(n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """24 x 24 images: a face-coloured square whose top rows are the hair colour, glasses a dark bar."""
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 60, (n, 3, 24, 24))).to(torch.uint8)
    annotations = []
    for i in range(n):
        hair, glasses, male = ["black", "blond", "brown"][i % 3], int(i % 4 < 2), int(i % 2)
        images[i, :, 4:20, 4:20] = torch.tensor([200, 160, 130])[:, None, None]
        images[i, :, 4:8, 4:20] = torch.tensor(HAIR[hair])[:, None, None]
        if glasses:
            images[i, :, 11:13, 5:19] = 10
        annotations.append({"attributes": {"hair": hair, "glasses": glasses, "male": male}, "identity": str(i)})
    masks = torch.zeros(n, 1, 24, 24, dtype=torch.bool)
    masks[:, :, 3:21, 3:21] = True
    masks[0] = False
    return images, masks, annotations


@pytest.fixture(scope="module")
def fitted() -> PPASAnonymizer:
    images, masks, annotations = faces()
    return PPASAnonymizer(**TINY).fit(images, masks, annotations, seed=0)


def test_registered_and_reports_its_privacy_parameters():
    load_all()
    anonymizer = ANONYMIZERS.build("ppas")
    params = anonymizer.get_params()
    assert {"k": 10, "l": 1.5, "t": 0.3, "epsilon": 3.0}.items() <= params.items()
    assert params["quasi_identifiers"] and params["sensitive"] == ["Male"]
    assert anonymizer.stochastic and not PPASAnonymizer(epsilon=None).stochastic


def test_changes_only_the_region_and_is_seeded(fitted):
    images, masks, annotations = faces(seed=1)
    out = fitted.anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(5))
    outside = ~masks.expand_as(images)
    assert torch.equal(out[outside], images[outside])
    assert not torch.equal(out[~outside], images[~outside])
    again = fitted.anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out, again)
    refit = PPASAnonymizer(**TINY).fit(*faces(), seed=0).anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out, refit)


def test_every_release_is_k_anonymous_l_diverse_and_t_close_in_the_training_table(fitted):
    images, masks, _ = faces(seed=2)
    crops, where = instance_crops(images, masks, fitted.config)
    codes = fitted.release(crops, torch.Generator().manual_seed(0))
    assert len(codes) == len(where) == 23
    for row in codes.numpy():
        got = fitted.ppas_.guarantee(row)
        assert got["k"] >= 3 and got["l"] >= 1.5 - 1e-12 and got["t"] <= 0.4 + 1e-12
    # the training table: 8 records per hair colour, glasses on half; (hair, glasses) classes have 4 records,
    # male alternating -> every class has 2 men and 2 women: l = 2, EMD 0
    assert fitted.ppas_.stats.size.tolist() == [4] * 6 and np.allclose(fitted.ppas_.stats.l, 2) and np.allclose(fitted.ppas_.stats.t, 0)
    assert fitted.privacy_["k"] >= 3


def test_state_and_checkpoint_round_trip(fitted, tmp_path):
    images, masks, annotations = faces(seed=3)
    path = tmp_path / "ppas.safetensors"
    save_state(fitted.state_dict(), path)
    expected = fitted.anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(1))
    restored = PPASAnonymizer(**TINY).load_state(load_state_file(path))
    assert torch.equal(restored.anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(1)), expected)
    from_file = PPASAnonymizer(**TINY, checkpoint=str(path))
    assert not from_file.state_dict()  # unfitted until fit()
    from_file.fit(images, masks, annotations, seed=9)  # loads, does not train
    assert torch.equal(from_file.anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(1)), expected)
    with pytest.raises(UserError, match="architecture.size"):
        PPASAnonymizer(**{**TINY, "size": 32}, checkpoint=str(path))


@pytest.mark.parametrize("params, match", [
    ({"k": 0}, "k=0"), ({"l": 0.5}, "l=0.5"), ({"t": 2}, "t=2"), ({"epsilon": -1.0}, "epsilon=-1.0"), ({"size": 18}, "multiple of"),
    ({"steps": 0}, "steps=0"), ({"quasi_identifiers": []}, "non-empty"), ({"sensitive": ["hair"]}, "both a quasi-identifier"),
    ({"colour": 1}, "unknown parameter 'colour'"),
])
def test_bad_parameters_are_one_line_user_errors(params, match):
    with pytest.raises(UserError, match=match) as info:
        PPASAnonymizer(**{**TINY, **params})
    assert "\n" not in str(info.value)


def test_missing_attributes_and_infeasible_privacy_are_user_errors():
    images, masks, annotations = faces()
    with pytest.raises(UserError, match="no attribute 'Black_Hair'"):
        PPASAnonymizer(**{k: v for k, v in TINY.items() if k not in ("quasi_identifiers", "sensitive")}).fit(images, masks, annotations)
    with pytest.raises(UserError, match="no attribute vector"):
        PPASAnonymizer(**{**TINY, "k": 5}).fit(images, masks, annotations)


def test_stargan_training_lowers_the_reconstruction_error():
    images, masks, annotations = faces(n=48)
    anonymizer = PPASAnonymizer(**TINY)
    crops, _ = instance_crops(images, masks, anonymizer.config)
    hair = {"black": 0, "blond": 1, "brown": 2}
    codes = torch.tensor([[hair[a["attributes"]["hair"]], a["attributes"]["glasses"]] for a in annotations])[masks.flatten(1).any(1)]
    config = PPASConfig(**{**{k: v for k, v in TINY.items() if k not in ("quasi_identifiers", "sensitive")}, "steps": 150})
    trainer = StarGANTrainer(config, crops, codes, [3, 2], seed=0, device="cpu")
    x = crops.float() / 127.5 - 1

    def reconstruction() -> float:
        with torch.no_grad():
            return float((trainer.generator.eval()(x, one_hot(codes, [3, 2])) - x).abs().mean())

    before = reconstruction()
    trainer.generator.train()
    trainer.train()
    assert reconstruction() < 0.7 * before


def test_a_selection_sweep_trains_the_networks_once(tmp_path, monkeypatch, fitted):
    """k / l / t / epsilon only change the selection: refits with other values read the cached
    networks (identical weights); a training parameter or another seed trains again."""
    from evalsuite.cache import Cache

    cache = Cache(tmp_path)
    images, masks, annotations = faces()
    trainings = []
    original = StarGANTrainer.train
    monkeypatch.setattr(StarGANTrainer, "train", lambda self: trainings.append(1) or original(self))
    first = PPASAnonymizer(**TINY).fit(images, masks, annotations, seed=0, cache=cache)
    assert len(trainings) == 1
    for change in ({"k": 2}, {"l": 1.0, "t": 1.0}, {"epsilon": None}):
        other = PPASAnonymizer(**{**TINY, **change}).fit(images, masks, annotations, seed=0, cache=cache)
        assert len(trainings) == 1, change
        for name, tensor in first.generator_.state_dict().items():
            assert torch.equal(tensor, other.generator_.state_dict()[name])
    PPASAnonymizer(**{**TINY, "steps": 5}).fit(images, masks, annotations, seed=0, cache=cache)
    PPASAnonymizer(**TINY).fit(images, masks, annotations, seed=1, cache=cache)
    assert len(trainings) == 3
    # without a cache the fit equals the cached one (same seed, same weights)
    for name, tensor in fitted.generator_.state_dict().items():
        assert torch.equal(tensor, first.generator_.state_dict()[name])
