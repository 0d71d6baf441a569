"""The re-id attacker's torchreid recipe pieces: random erasing and an ImageNet-pretrained backbone from a file."""
import pytest
import torch

from attacks.reid_attacker import IMAGENET_MEAN, AttackerConfig, ReidAttacker, random_erasing
from evalsuite.errors import UserError


def test_random_erasing_is_seeded_and_fills_one_rectangle_with_the_imagenet_mean():
    x = torch.randn(16, 3, 64, 32)
    a = random_erasing(x, 1.0, torch.Generator().manual_seed(3))
    b = random_erasing(x, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    fill = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    for original, erased in zip(x, a):
        changed = (erased != original).any(dim=0)
        rows, cols = changed.any(dim=1).nonzero().flatten(), changed.any(dim=0).nonzero().flatten()
        box = erased[:, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert torch.equal(box, fill.expand_as(box))  # one solid rectangle of the mean values
        share = box.shape[1] * box.shape[2] / (64 * 32)
        assert 0.01 <= share <= 0.45  # the area range (0.02, 0.4), up to rounding of the sides


def test_random_erasing_probability_zero_leaves_the_batch_alone():
    x = torch.randn(8, 3, 32, 16)
    assert torch.equal(random_erasing(x, 0.0, torch.Generator().manual_seed(0)), x)


def test_init_weights_start_the_backbone_from_the_file_and_skip_the_classifier(tmp_path):
    source = ReidAttacker(AttackerConfig(), num_classes=1000, seed=7).model.state_dict()  # an "ImageNet" classifier of 1000 classes
    path = tmp_path / "osnet_x0_25_imagenet.pth"
    torch.save(source, path)
    attacker = ReidAttacker(AttackerConfig(init_weights=str(path)), num_classes=5, seed=0)
    own = attacker.model.state_dict()
    backbone = [k for k in own if not k.startswith("classifier")]
    assert backbone and all(torch.equal(own[k], source[k]) for k in backbone)
    assert own["classifier.weight"].shape[0] == 5
    scratch = ReidAttacker(AttackerConfig(), num_classes=5, seed=0).model.state_dict()
    assert not torch.equal(scratch[backbone[0]], source[backbone[0]])


def test_missing_init_weights_name_the_file_and_the_key(tmp_path):
    with pytest.raises(UserError, match=r"attacker weights not found: .*nope\.pth; point attacker\.init_weights="):
        ReidAttacker(AttackerConfig(init_weights=str(tmp_path / "nope.pth")), num_classes=5)
