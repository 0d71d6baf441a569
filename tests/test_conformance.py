"""Every registered anonymizer and preset (from the registry, plus an entry-point plugin) passes check_anonymizer."""
from __future__ import annotations

import pytest
import torch

from anonymizers.base import Anonymizer
from evalsuite.conformance import ConformanceError, check_anonymizer
from evalsuite.registry import ANONYMIZERS, Registry, load_all

load_all()
DEVICES = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


@pytest.mark.parametrize("name", ANONYMIZERS.names())
def test_registered_anonymizer_conforms(name):
    check_anonymizer(ANONYMIZERS.get(name), devices=DEVICES)


def test_registry_holds_the_adapters_and_every_family():
    names = set(ANONYMIZERS.names())
    assert {"none", "blur", "pixelate", "mask", "ksame-pixel", "ksame-select", "external", "precomputed", "blurhead", "dp-body", "dp-face", "ppas", "uap", "upgan"} <= names


def test_entry_point_plugin_conforms(tmp_path, monkeypatch):
    from test_plugins import PLUGIN

    (tmp_path / "evalsuite_demo_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "evalsuite_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evalsuite-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[evalsuite.anonymizers]\ninvert = evalsuite_demo_plugin:Invert\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("anonymizers")
    registry.load_entry_points()
    entry = registry.get("invert")
    assert "entry point" in entry.source
    check_anonymizer(entry, devices=DEVICES)


class _Leaky(Anonymizer):
    """Writes outside its region: must be caught."""

    def anonymize(self, images, masks, annotations=None, generator=None, sample_ids=None):
        return 255 - images


class _Noisy(Anonymizer):
    """Ignores the generator it is given: same seed, other output."""

    stochastic = True

    def _anonymize_region(self, images, masks, annotations, generator):
        return torch.randint(0, 256, images.shape, dtype=torch.uint8)


class _Trained(Anonymizer):
    """fit_on=train with a state that round-trips: must pass."""

    fit_on = "train"

    def __init__(self):
        self.mean_ = None

    def fit(self, images, masks, annotations=None, sample_ids=None, *, seed=0, device="cpu", cache=None):
        self.mean_ = images.float().mean(dim=0).round().to(torch.uint8)
        return self

    def state_dict(self):
        return {} if self.mean_ is None else {"mean": self.mean_, "note": "mean training image"}

    def load_state(self, state):
        self.mean_ = state["mean"]
        return self

    def _anonymize_region(self, images, masks, annotations, generator):
        return self.mean_.to(images.device).expand_as(images)


@pytest.mark.parametrize("cls, rule", [(_Leaky, "outside the mask"), (_Noisy, "same seed")])
def test_broken_anonymizers_are_caught(cls, rule):
    registry = Registry("anonymizers")
    entry = registry.add("broken", cls)
    with pytest.raises(ConformanceError, match=rule):
        check_anonymizer(entry)


def test_trained_anonymizer_with_state_conforms():
    entry = Registry("anonymizers").add("trained", _Trained)
    check_anonymizer(entry)


def test_unknown_declaration_is_refused_at_class_creation():
    with pytest.raises(ValueError, match="fit_on"):
        type("Bad", (Anonymizer,), {"fit_on": "everything"})
