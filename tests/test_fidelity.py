"""FID / KID through torch-fidelity: the offline random-network extractor, Inception weights, cached reference features."""
import math

import pytest
import torch

from evalsuite.cache import Cache
from evalsuite.errors import UserError
from evalsuite.metrics.fidelity import RANDOM_EXTRACTOR, FeatureBank, build_extractor, fid_kid
from evalsuite.metrics.weights import WeightsUnavailable

FID_CFG = {"seed": 0, "size": 64}


def textured(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(n, 3, 64, 32, generator=g) * 255, 3, 1, 1).to(torch.uint8)


@pytest.fixture(scope="module")
def random_extractor():
    return build_extractor("random", FID_CFG, download=False)


@pytest.fixture(scope="module")
def sets():
    originals = textured(16, 0)
    masked = originals.clone()
    masked[:, :, 4:28, 6:26] = 127
    shifted = (originals.int() + 40).clamp(0, 255).to(torch.uint8)
    return originals, masked, shifted


def test_random_extractor_is_registered_with_torch_fidelity_and_seeded(random_extractor):
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    assert RANDOM_EXTRACTOR in FEATURE_EXTRACTORS_REGISTRY
    extractor, fingerprint = random_extractor
    assert fingerprint["seed"] == 0 and fingerprint["size"] == 64
    images = textured(4, 1)
    (first,) = extractor(images)
    (again,) = build_extractor("random", FID_CFG, download=False)[0](images)
    (other,) = build_extractor("random", {"seed": 1, "size": 64}, download=False)[0](images)
    assert first.shape == (4, 256)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_identical_sets_give_fid_about_zero_and_changes_raise_it(random_extractor, sets):
    originals, masked, shifted = sets
    bank = FeatureBank({"random": random_extractor}, cache=None, batch_size=16)
    reference = ("clean", originals)
    same = fid_kid(bank, "random", reference, ("clean", originals))
    copy = fid_kid(bank, "random", reference, ("copy", originals.clone()))
    masked_scores = fid_kid(bank, "random", reference, ("masked", masked))
    shifted_scores = fid_kid(bank, "random", reference, ("shifted", shifted))
    assert abs(same["fid_random"]) < 1e-6 and abs(copy["fid_random"]) < 1e-6
    assert masked_scores["fid_random"] > 1e3 * max(abs(copy["fid_random"]), 1e-9)
    assert masked_scores["fid_random"] > 0.01 and shifted_scores["fid_random"] > 0.01
    assert abs(copy["kid_random"]) < masked_scores["kid_random"]


def test_reference_features_are_extracted_once_and_cached_on_disk(random_extractor, sets, tmp_path):
    originals, masked, shifted = sets
    candidates = {"masked": masked, "shifted": shifted, "dark": (originals // 2)}
    bank = FeatureBank({"random": random_extractor}, cache=Cache(tmp_path), batch_size=16)
    for key, images in candidates.items():
        fid_kid(bank, "random", ("clean", originals), (key, images))
    fid_kid(bank, "random", ("clean", originals), ("clean", originals))  # the identity reuses the reference
    assert bank.passes["random"] == len(candidates) + 1  # N anonymizers: N + 1 passes
    assert len(list((tmp_path / "features").glob("*.npy"))) == 1  # only the reference is persisted
    fresh = FeatureBank({"random": random_extractor}, cache=Cache(tmp_path), batch_size=16)
    again = fid_kid(fresh, "random", ("clean", originals), ("masked", masked))
    assert fresh.passes["random"] == 1  # the reference came from the disk cache
    assert again["fid_random"] == pytest.approx(fid_kid(bank, "random", ("clean", originals), ("masked", masked))["fid_random"])


def test_kid_subset_size_is_clipped_to_the_set_size(random_extractor, sets):
    originals, masked, _ = sets
    bank = FeatureBank({"random": random_extractor}, cache=None)
    scores = fid_kid(bank, "random", ("clean", originals), ("masked", masked), kid_subsets=5, kid_subset_size=1000)
    assert math.isfinite(scores["kid_random"])


def test_missing_inception_weights_name_the_file_and_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsUnavailable) as info:
        build_extractor("inception", {}, download=False)
    message = str(info.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "fid.inception_weights" in message and "\n" not in message
    with pytest.raises(UserError, match="fid.inception_weights"):
        build_extractor("inception", {"inception_weights": str(tmp_path / "nope.pth")}, download=False)


def test_inception_weights_that_are_not_a_state_dict_are_refused_before_torch_fidelity_loads_them(tmp_path):
    bad = tmp_path / "weights-inception.pth"
    torch.save({"not": "tensors"}, bad)
    with pytest.raises(UserError, match="state dict"):
        build_extractor("inception", {"inception_weights": str(bad)}, download=False)
