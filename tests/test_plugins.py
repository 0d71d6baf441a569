"""Outside packages register components through entry points (a real dist-info on sys.path)."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from evalsuite.registry import Registry

PLUGIN = textwrap.dedent(
    '''
    from anonymizers.base import Anonymizer

    class Invert(Anonymizer):
        """Invert the colours inside the region (third-party demo)."""

        def _anonymize_region(self, images, masks, annotations, generator):
            return 255 - images
    '''
)


@pytest.fixture()
def plugin_dir(tmp_path):
    (tmp_path / "evalsuite_demo_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "evalsuite_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evalsuite-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[evalsuite.anonymizers]\ninvert = evalsuite_demo_plugin:Invert\n")
    return tmp_path


def test_registry_reads_entry_points(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    registry = Registry("anonymizers")
    registry.load_entry_points()
    entry = registry.get("invert")
    assert entry.description == "Invert the colours inside the region (third-party demo)."
    assert "evalsuite-demo-plugin" in entry.source
    images = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    masks = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    masks[..., :2, :] = True
    out = entry.build().anonymize(images, masks)
    assert out[..., :2, :].eq(255).all() and out[..., 2:, :].eq(0).all()


def test_cli_list_shows_plugin(plugin_dir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "evalsuite", "list", "anonymizers"], capture_output=True, text=True, env=env, check=True)
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("invert"))
    assert "Invert the colours" in line and "evalsuite-demo-plugin" in line
    assert any(line.strip().startswith("pixelate8") for line in result.stdout.splitlines())


def test_cli_list_verbose_shows_each_components_module(plugin_dir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "evalsuite", "list", "anonymizers", "-v"], capture_output=True, text=True, env=env, check=True)
    lines = result.stdout.splitlines()
    after = {lines[i].split()[0]: lines[i + 1] for i in range(len(lines) - 1) if lines[i + 1].strip().startswith("->")}
    assert "anonymizers.blur.GaussianBlur" in after["blur"] and "anonymizers/blur.py" in after["blur"]
    assert "preset {'fill': 'black'}" in after["blackhead"]
    assert "evalsuite_demo_plugin.Invert" in after["invert"] and "evalsuite_demo_plugin.py" in after["invert"]
