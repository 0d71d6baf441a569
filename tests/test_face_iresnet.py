"""The trainable ArcFace IResNet recognizer: published-weight layout, loading, fine-tuning, frozen mode."""
import numpy as np
import pytest
import torch

from attacks.face_iresnet import IResNet, IResNetRecognizer
from evalsuite.errors import UserError

TINY = {"depth": 18, "base_width": 4, "embedding_dim": 16, "batch_size": 8, "lr": 0.05}


def _faces(n=16, ids=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randint(0, 256, (ids, 3, 1, 1), generator=g)
    labels = np.arange(n) % ids
    noise = torch.randint(-30, 30, (n, 3, 24, 24), generator=g)
    return (centres[labels] + noise).clamp(0, 255).to(torch.uint8), labels


def test_parameter_names_follow_arcface_torch():
    names = set(IResNet(depth=50).state_dict())
    for key in ("conv1.weight", "bn1.running_var", "prelu.weight", "layer1.0.bn1.weight", "layer1.0.conv1.weight", "layer1.0.prelu.weight",
                "layer1.0.conv2.weight", "layer1.0.bn3.bias", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_mean",
                "layer3.13.conv2.weight", "bn2.weight", "fc.weight", "features.weight", "features.running_var"):
        assert key in names, key
    assert IResNet(depth=50).fc.in_features == 512 * 7 * 7
    assert sum(p.numel() for p in IResNet(depth=50).parameters()) == pytest.approx(43.6e6, rel=0.02)  # ArcFace r50: 43.6M parameters


def test_weights_load_from_a_file_and_a_wrong_depth_is_one_line(tmp_path):
    source = IResNet(depth=18, base_width=4, embedding_dim=16)
    torch.nn.init.normal_(source.fc.weight)
    path = tmp_path / "backbone.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)  # as saved from DistributedDataParallel
    recognizer = IResNetRecognizer(weights=str(path), epochs=0, **{k: v for k, v in TINY.items() if k != "lr"})
    assert torch.equal(recognizer.net.fc.weight, source.fc.weight)
    with pytest.raises(UserError, match="do not fit recognizer.iresnet.depth=34"):
        IResNetRecognizer(weights=str(path), **{**TINY, "depth": 34})
    with pytest.raises(UserError, match=r"iresnet weights not found: .*nope.pth; set recognizer.iresnet.weights="):
        IResNetRecognizer(weights=str(tmp_path / "nope.pth"))


def test_fine_tuning_is_seeded_and_changes_the_loaded_weights_while_epochs_0_keeps_them(tmp_path):
    images, labels = _faces()
    path = tmp_path / "w.pth"
    torch.save(IResNet(depth=18, base_width=4, embedding_dim=16).state_dict(), path)
    frozen = IResNetRecognizer(weights=str(path), **{**TINY, "epochs": 0}).fit(images, labels)
    tuned = IResNetRecognizer(weights=str(path), **{**TINY, "epochs": 2}).fit(images, labels, seed=3)
    again = IResNetRecognizer(weights=str(path), **{**TINY, "epochs": 2}).fit(images, labels, seed=3)
    assert np.array_equal(tuned.embed(images), again.embed(images))
    assert not np.allclose(tuned.embed(images), frozen.embed(images))
    emb = tuned.embed(images)
    assert emb.shape == (16, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    copy = IResNetRecognizer(**{**TINY, "epochs": 2})
    copy.load_state_dict(tuned.state_dict())
    assert np.array_equal(copy.embed(images), emb)
