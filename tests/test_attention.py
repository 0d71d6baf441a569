"""Recognizer attention: saliency maps and head contribution on models whose answer is known."""
import math

import numpy as np
import pytest
import torch

from attacks.person_recognizer import IdentitySVM, PersonRecognizer, RecognizerConfig
from evalsuite.metrics.attention import (
    argmax_inside,
    gaussian_smooth,
    head_contribution,
    saliency_maps,
)

H, W = 32, 16


def region_mask(y0, y1, x0, x1, n=1):
    mask = torch.zeros(n, 1, H, W, dtype=torch.bool)
    mask[:, :, y0:y1, x0:x1] = True
    return mask


class RegionModel(torch.nn.Module):
    """Three class scores computed only from the pixels of one region (a fixed random linear map)."""

    def __init__(self, mask):
        super().__init__()
        self.mask = mask[:1].float()
        self.weight = torch.nn.Parameter(torch.randn(3, 3 * H * W, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return (x * self.mask).flatten(1) @ self.weight.T


def random_images(n=8, seed=1):
    return torch.randint(0, 256, (n, 3, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_smoothing_keeps_mass_and_sigma_zero_is_identity():
    maps = torch.zeros(1, H, W)
    maps[0, 10, 8] = 1.0
    smooth = gaussian_smooth(maps, 2.0)
    assert smooth.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert smooth[0].argmax().item() == 10 * W + 8 and smooth.max().item() < 0.1
    assert torch.equal(gaussian_smooth(maps, 0), maps)


@pytest.mark.parametrize("sigma", [0.0, 2.0])
def test_a_model_looking_only_at_the_head_attends_there(sigma):
    head = region_mask(2, 10, 4, 12, n=8)
    maps = saliency_maps(RegionModel(head), random_images(), sigma=sigma, batch_size=3)
    assert maps.shape == (8, H, W)
    assert argmax_inside(maps, head).all()
    assert head_contribution(maps, head) == 1.0
    if sigma == 0:
        assert maps[~head[:, 0]].abs().max().item() == 0.0  # no gradient outside what the model reads


def test_a_model_looking_only_at_the_body_never_attends_to_the_head():
    head = region_mask(2, 10, 4, 12, n=8)
    body = region_mask(12, 32, 0, 16, n=8)
    maps = saliency_maps(RegionModel(body), random_images(), sigma=2.0)
    assert head_contribution(maps, head) == 0.0
    assert argmax_inside(maps, body).all()


def test_saliency_is_the_gradient_of_the_predicted_class_max_over_rgb():
    weight = torch.zeros(2, 3, H, W)
    weight[0, 1, 5, 7] = 3.0  # class 0 reads the green pixel at (5, 7) with weight 3
    weight[1, 2, 20, 3] = -0.5  # class 1 reads the blue pixel at (20, 3) with weight -0.5
    bias = torch.tensor([0.0, 1000.0])  # class 1 always wins

    def score(x):
        return torch.einsum("bchw,kchw->bk", x, weight) + bias

    maps = saliency_maps(score, random_images(2), sigma=0)
    expected = torch.zeros(2, H, W)
    expected[:, 20, 3] = 0.5
    assert torch.equal(maps, expected)


def test_auxiliary_tensors_are_batched_with_the_images():
    seen = []

    def score(x, boxes):
        seen.append(boxes.clone())
        return x.flatten(1)[:, :2] * boxes[:, :1]

    aux = torch.arange(5, dtype=torch.float32)[:, None] + 1
    saliency_maps(score, random_images(5), aux, sigma=0, batch_size=2)
    assert [b[:, 0].tolist() for b in seen] == [[1.0, 2.0], [3.0, 4.0], [5.0]]


def test_empty_input_gives_nan_contribution():
    maps = saliency_maps(lambda x: x.flatten(1)[:, :2], torch.zeros(0, 3, H, W, dtype=torch.uint8))
    assert maps.shape == (0, H, W) and math.isnan(head_contribution(maps, torch.zeros(0, 1, H, W, dtype=torch.bool)))


def test_head_recognizer_gradients_stay_at_its_head_box():
    """The real head recognizer (roi_align crop + CNN + linear SVM) only reads its head box."""
    torch.manual_seed(0)
    config = RecognizerConfig(channels=4, embedding_dim=8, head_size=16, body_height=32, body_width=16)
    recognizer = PersonRecognizer(config, "head", num_classes=3, seed=0)
    images = random_images(6)
    boxes = torch.tensor([[4.0, 2.0, 12.0, 10.0]] * 6)
    svm = IdentitySVM(seed=0).fit(recognizer.embed(images, boxes), np.array([0, 1, 2, 0, 1, 2]))
    maps = saliency_maps(lambda x, b: recognizer.class_scores(x, b, svm), images, boxes, sigma=0)
    near_box = region_mask(1, 11, 3, 13, n=6)  # bilinear sampling reaches at most one pixel beyond the box
    assert maps[~near_box[:, 0]].max().item() == 0.0
    assert maps.flatten(1).max(dim=1).values.min().item() > 0
    assert head_contribution(maps, near_box) == 1.0
