"""The shared pipeline: anonymized-set keys carry the code version, fit declarations, corrupt-entry recovery."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from anonymizers.base import Anonymizer
from evalsuite.cache import Cache
from evalsuite.components import resolve_anonymizer
from evalsuite.conformance import example_batch
from evalsuite.errors import UserError
from evalsuite.pipeline import AnonymizedSets, Artifacts, ImageSet


def image_set(name: str = "query", seed: int = 0) -> ImageSet:
    images, masks, annotations, ids = example_batch(seed=seed)
    return ImageSet(name, images, masks, [i.replace("query", name) for i in ids], annotations)


class Counting(Anonymizer):
    """fit_on=train: counts its fits; anonymizes with the training mean."""

    fit_on = "train"
    fits = 0

    def __init__(self):
        self.mean_ = None

    def fit(self, images, masks, annotations=None, sample_ids=None, *, seed=0, device="cpu", cache=None):
        type(self).fits += 1
        self.mean_ = images.float().mean(dim=0).round().to(torch.uint8)
        return self

    def state_dict(self):
        return {"mean": self.mean_}

    def load_state(self, state):
        self.mean_ = state["mean"]
        return self

    def _anonymize_region(self, images, masks, annotations, generator):
        return self.mean_.expand_as(images)


def test_editing_an_anonymizers_code_version_invalidates_its_cached_sets(tmp_path, monkeypatch):
    sets = AnonymizedSets(Cache(tmp_path), {"dataset": "x"})
    spec = resolve_anonymizer("blur")
    before = sets.set_key(image_set(), spec, 0)
    first = sets.get(image_set(), spec, 0)
    assert first.key == before and len(list((tmp_path / "anonymized").iterdir())) == 1
    from anonymizers import base
    from anonymizers.blur import GaussianBlur

    monkeypatch.setattr(GaussianBlur, "code_version", "2")
    monkeypatch.setattr(base, "_VERSIONS", {})
    after = AnonymizedSets(Cache(tmp_path), {"dataset": "x"}).set_key(image_set(), resolve_anonymizer("blur"), 0)
    assert after != before
    assert resolve_anonymizer("blur").key()["code_version"].startswith("2-")


def test_code_version_follows_the_source_file(tmp_path, monkeypatch):
    module = tmp_path / "my_anon.py"
    module.write_text("from anonymizers.base import Anonymizer\nclass Mine(Anonymizer):\n    def _anonymize_region(self, i, m, a, g):\n        return 255 - i\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from anonymizers.base import component_version
    import importlib

    first = component_version(importlib.import_module("my_anon").Mine)
    module.write_text(module.read_text() + "# a fix\n")
    import sys

    del sys.modules["my_anon"]
    assert component_version(importlib.import_module("my_anon").Mine) != first



def test_code_version_follows_the_helper_modules_it_imports(tmp_path, monkeypatch):
    """A plugin package: editing the helper module its anonymizer imports changes the version;
    editing a module it does not import does not."""
    import importlib
    import sys

    from anonymizers import base

    package = tmp_path / "my_plugin_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("def invert(i):\n    return 255 - i\n")
    (package / "unrelated.py").write_text("X = 1\n")
    (package / "anon.py").write_text("from anonymizers.base import Anonymizer\nfrom .helpers import invert\n"
                                     "class Mine(Anonymizer):\n    def _anonymize_region(self, i, m, a, g):\n        return invert(i)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(base, "_VERSIONS", {})

    def version() -> str:
        for name in [m for m in sys.modules if m.startswith("my_plugin_pkg")]:
            del sys.modules[name]
        base._VERSIONS.clear()
        return base.component_version(importlib.import_module("my_plugin_pkg.anon").Mine)

    first = version()
    assert package / "helpers.py" in base.imported_project_files(["my_plugin_pkg.anon"])
    (package / "unrelated.py").write_text("X = 2\n")
    assert version() == first
    (package / "helpers.py").write_text("def invert(i):\n    return 254 - i  # a fix\n")
    assert version() != first


def test_builtin_code_versions_cover_anonymizers_helpers():
    from anonymizers.base import imported_project_files

    assert any(p.name == "regionwise.py" for p in imported_project_files(["anonymizers.blur"]))

def test_fit_on_train_fits_once_caches_state_and_refuses_without_train(tmp_path):
    from evalsuite.components import AnonymizerSpec

    Counting.fits = 0
    spec = AnonymizerSpec("counting", "counting", {}, Counting())
    train, query = image_set("train", 1), image_set("query")
    sets = AnonymizedSets(Cache(tmp_path), {"dataset": "x"})
    out = sets.get(query, spec, 0, train=train).images
    sets.get(image_set("gallery"), spec, 0, train=train)
    assert Counting.fits == 1 and spec.anonymizer.mean_ is None  # a fitted clone, the configured one untouched
    expected = torch.where(query.masks, train.images.float().mean(0).round().to(torch.uint8).expand_as(query.images), query.images)
    assert torch.equal(out, expected)
    (tmp_path / "anonymized").rename(tmp_path / "old")  # force a rebuild: the fitted state comes from its cache
    assert torch.equal(AnonymizedSets(Cache(tmp_path), {"dataset": "x"}).get(query, spec, 0, train=train).images, out)
    assert Counting.fits == 1
    with pytest.raises(UserError, match="no training split"):
        AnonymizedSets(None, {"dataset": "y"}, protocol="demo").get(query, spec, 0)


def test_ksame_groups_are_fitted_separately(tmp_path):
    spec = resolve_anonymizer({"name": "ksame-pixel", "k": 2})
    query = image_set()
    sets = AnonymizedSets(None, {"dataset": "x"})
    groups = [np.arange(0, 6), np.arange(6, 12)]
    out = sets.get(query, spec, 0, groups=groups).images
    alone = sets.get(query.subset(groups[1]), spec, 0).images
    assert torch.equal(out[6:], alone)
    assert sets.set_key(query, spec, 0, groups=groups) != sets.set_key(query, spec, 0)


def test_truncated_cached_checkpoint_is_rebuilt_with_one_log_line(tmp_path, caplog):
    artifacts = Artifacts(Cache(tmp_path))
    builds = []

    def build():
        builds.append(1)
        return {"w": torch.arange(1000, dtype=torch.float32)}

    def load(path):
        return torch.load(path, map_location="cpu", weights_only=True)

    def save(value, path):
        torch.save(value, path)

    value, cached = artifacts.get_or_build("attackers", "k", ".pt", load, build, save)
    assert not cached and len(builds) == 1
    path = tmp_path / "attackers" / "k.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated, as by a killed copy
    with caplog.at_level(logging.WARNING, logger="evalsuite.pipeline"):
        again, cached = artifacts.get_or_build("attackers", "k", ".pt", load, build, save, what="attacker")
    assert not cached and len(builds) == 2 and torch.equal(again["w"], value["w"])
    lines = [r.getMessage() for r in caplog.records if r.name == "evalsuite.pipeline"]
    assert len(lines) == 1 and "unreadable" in lines[0] and "rebuilding" in lines[0]
    assert artifacts.get_or_build("attackers", "k", ".pt", load, build, save)[1]  # the rebuilt file reads back


def test_truncated_anonymized_set_is_rebuilt(tmp_path, caplog):
    sets = AnonymizedSets(Cache(tmp_path), {"dataset": "x"})
    first = sets.get(image_set(), resolve_anonymizer("mask"), 0)
    path = tmp_path / "anonymized" / f"{first.key}.npy"
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        again = AnonymizedSets(Cache(tmp_path), {"dataset": "x"}).get(image_set(), resolve_anonymizer("mask"), 0)
    assert torch.equal(again.images, first.images)
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def scene_set(reads: list[int]):
    """Two scenes of different sizes, one box instance each (the second has two)."""
    from evalsuite.anonymized_scenes import SceneSet

    generator = torch.Generator().manual_seed(0)
    scenes = [torch.randint(0, 256, (3, 40, 60), generator=generator, dtype=torch.uint8),
              torch.randint(0, 256, (3, 50, 30), generator=generator, dtype=torch.uint8)]

    def box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        mask = np.zeros((h, w), dtype=bool)
        mask[y0:y1, x0:x1] = True
        return mask

    instances = [[(box(40, 60, 5, 25, 10, 30), {})], [(box(50, 30, 0, 10, 0, 10), {}), (box(50, 30, 20, 45, 5, 25), {})]]

    def image(i: int) -> torch.Tensor:
        reads.append(i)
        return scenes[i]

    return SceneSet("val", ["a.jpg", "b.jpg"], image, lambda i: instances[i], [1, 2], "fp", sum(s.numel() for s in scenes))


def test_anonymized_scenes_change_only_instances_are_cached_and_follow_the_code_version(tmp_path, monkeypatch, caplog):
    from anonymizers import base
    from anonymizers.blur import GaussianBlur
    from evalsuite.anonymized_scenes import AnonymizedScenes

    reads: list[int] = []
    scenes = scene_set(reads)
    spec = resolve_anonymizer("mask")
    first = AnonymizedScenes(Cache(tmp_path), {"dataset": "x"})
    out = [first.get(scenes, spec, 0)(i) for i in range(2)]
    assert [tuple(o.shape) for o in out] == [(3, 40, 60), (3, 50, 30)]
    original = scenes.image(0)
    assert not torch.equal(out[0][:, 5:25, 10:30], original[:, 5:25, 10:30]) and torch.equal(out[0][:, 30:], original[:, 30:])
    reads.clear()
    again = AnonymizedScenes(Cache(tmp_path), {"dataset": "x"}).get(scenes, spec, 0)  # another process: read from the cache
    assert all(torch.equal(again(i), out[i]) for i in range(2)) and reads == []
    (path,) = (tmp_path / "anonymized_scenes").iterdir()
    path.write_bytes(path.read_bytes()[:50])  # truncated: rebuilt with one log line
    with caplog.at_level(logging.WARNING, logger="evalsuite.pipeline"):
        rebuilt = AnonymizedScenes(Cache(tmp_path), {"dataset": "x"}).get(scenes, spec, 0)
    assert torch.equal(rebuilt(1), out[1]) and "unreadable" in caplog.text
    blur = resolve_anonymizer("blur")
    before = first.key(scenes, blur, 0)
    monkeypatch.setattr(GaussianBlur, "code_version", "2")
    monkeypatch.setattr(base, "_VERSIONS", {})
    assert first.key(scenes, resolve_anonymizer("blur"), 0) != before
    with pytest.raises(UserError, match="instance by instance"):
        first.get(scenes, resolve_anonymizer("ksame-pixel-k2"), 0)
