"""LPIPS: missing backbone weights leave the metric unavailable with one clear line; a local file is honoured."""
import pytest
import torch

from evalsuite.errors import UserError
from evalsuite.metrics.perceptual import LPIPS_KEY, LPIPSMetric, backbone_filename
from evalsuite.metrics.weights import WeightsUnavailable


def test_missing_backbone_weights_name_the_file_the_place_and_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsUnavailable) as info:
        LPIPSMetric("alex", backbone_weights=None, download=False)
    message = str(info.value)
    assert backbone_filename("alex") == "alexnet-owt-7be5be79.pth"
    assert "alexnet-owt-7be5be79.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert f"{LPIPS_KEY}=" in message and "\n" not in message


def test_a_configured_path_that_does_not_exist_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=LPIPS_KEY):
        LPIPSMetric("alex", backbone_weights=str(tmp_path / "missing.pth"), download=False)
    with pytest.raises(UserError, match="lpips.net"):
        LPIPSMetric("resnet", backbone_weights=None, download=False)


def test_backbone_weights_from_the_configured_path_are_loaded(tmp_path):
    """Exercises the loading path only: a seeded, untrained AlexNet saved as a torchvision state dict."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    state = {k: v for k, v in alexnet().state_dict().items() if k.startswith("features.")}  # only these are read
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(state, path)
    metric = LPIPSMetric("alex", backbone_weights=str(path), download=False)
    assert metric.weights_path == path
    assert torch.equal(metric.model.net.slice1[0].weight, state["features.0.weight"])
    assert torch.equal(getattr(metric.model.net.slice5, "10").bias, state["features.10.bias"])
    # the shipped linear layers are loaded too (not their random initialisation)
    import lpips
    from pathlib import Path

    shipped = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth", map_location="cpu", weights_only=True)
    assert torch.equal(metric.model.lin0.model[1].weight, shipped["lin0.model.1.weight"])
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (2, 3, 64, 32), generator=g, dtype=torch.uint8)
    b = (a.int() + 60).clamp(0, 255).to(torch.uint8)
    same, different = metric.distances(a, a.clone()), metric.distances(a, b)
    assert same == pytest.approx([0.0, 0.0], abs=1e-6)
    assert (different > 1e-4).all()


def test_weights_that_do_not_fit_the_backbone_are_a_user_error(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(UserError, match="do not fit"):
        LPIPSMetric("alex", backbone_weights=str(path), download=False)
