"""Shared pieces of the image-quality tests: a tiny synthetic dataset and a test-only detecting anonymizer."""
import pytest
import torch

from anonymizers.base import Anonymizer

TINY_SYNTHETIC = {"num_train_ids": 6, "num_test_ids": 5, "num_distractors": 3, "num_junk": 1}


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory):
    from evalsuite.data import synthetic

    return synthetic(root=tmp_path_factory.mktemp("synthetic"), **TINY_SYNTHETIC)


class TopBandDetector(Anonymizer):
    """Test-only anonymizer that finds its own region by a rule: the top ``fraction`` of every image
    ("heads are near the top of a pedestrian crop"), which it fills with gray."""

    param_names = ("fraction",)
    detects_regions = True

    def __init__(self, *, fraction: float = 0.15) -> None:
        self.fraction = fraction

    def detect(self, images, annotations=None):
        masks = torch.zeros(images.shape[0], 1, *images.shape[2:], dtype=torch.bool, device=images.device)
        masks[:, :, : int(round(self.fraction * images.shape[2]))] = True
        return masks

    def _anonymize_region(self, images, masks, annotations, generator):
        return torch.full_like(images, 127)
