"""Realness fooling rate, attribute-preservation utility and leak rate."""
import math

import numpy as np
import pytest
import torch

from evalsuite.errors import UserError
from evalsuite.metrics.attributes import AttributeConfig, AttributeEncoder, attribute_accuracies, categorical_attributes, select_attributes, train_attribute_classifier
from evalsuite.metrics.leak import detected_masks, detects_regions, leak_rate, region_coverage
from evalsuite.metrics.realness import RealnessConfig, acceptance_threshold, fooling_rate, fooling_rate_from_scores, identity_fooling_rate
from image_quality_helpers import TopBandDetector

# --------------------------------------------------------------------- fooling rate


def test_threshold_accepts_93_percent_of_originals():
    real = np.arange(100, dtype=float)
    threshold = acceptance_threshold(real, 0.93)
    assert (real >= threshold).sum() == 93
    rate, _ = fooling_rate_from_scores(real, real.copy())
    assert rate == pytest.approx(0.93)  # indistinguishable images fool the critic as often as originals pass
    assert fooling_rate_from_scores(real, real - 1000)[0] == 0.0
    assert fooling_rate_from_scores(real, real + 1000)[0] == 1.0
    with pytest.raises(ValueError):
        acceptance_threshold(real, 0.0)


def _scenes(n, seed):
    """Small textured images with a bright square: stand-ins for pedestrians with a head."""
    g = torch.Generator().manual_seed(seed)
    images = (torch.nn.functional.avg_pool2d(torch.rand(n, 3, 32, 32, generator=g), 3, 1, 1) * 255).to(torch.uint8)
    return images


def test_critic_catches_mask_out_and_is_fooled_by_the_identity():
    train, test = _scenes(96, 0), _scenes(64, 1)

    def mask(images):
        out = images.clone()
        out[:, :, 8:20, 10:22] = 127
        return out

    config = RealnessConfig(epochs=4, batch_size=16, lr=3e-3, width=8)
    masked = fooling_rate(train, mask(train), test, mask(test), config, seed=0)
    identity = fooling_rate(train, train.clone(), test, test.clone(), config, seed=0)
    assert masked["critic_auc"] > 0.9
    assert masked["fooling_rate"] < 0.3
    assert identity["fooling_rate"] == pytest.approx(math.ceil(0.93 * 64) / 64)
    assert identity_fooling_rate(64) == identity["fooling_rate"]  # what the protocol uses for `none`


# --------------------------------------------------------------------- attribute utility


def _attribute_data(n, seed):
    """Images whose top half colour encodes `top` (red/blue) and bottom half `bottom` (dark/light)."""
    g = torch.Generator().manual_seed(seed)
    top = torch.randint(0, 2, (n,), generator=g)
    bottom = torch.randint(0, 2, (n,), generator=g)
    images = (torch.rand(n, 3, 32, 16, generator=g) * 40 + 60)
    images[top == 0, 0, :16] += 120
    images[top == 1, 2, :16] += 120
    images[bottom == 1, :, 16:] += 100
    annotations = [{"attributes": {"top": ["red", "blue"][int(t)], "bottom": ["dark", "light"][int(b)], "width_factor": 1.0 + 0.01 * i}}
                   for i, (t, b) in enumerate(zip(top, bottom))]
    return images.clamp(0, 255).to(torch.uint8), annotations


def test_categorical_attributes_skip_numeric_and_constant_ones():
    annotations = [{"attributes": {"a": "x", "b": 1.5, "c": "same", "d": True}}, {"attributes": {"a": "y", "b": 2.5, "c": "same", "d": False}}]
    assert categorical_attributes(annotations) == ["a", "d"]
    assert select_attributes(annotations, None) == ["a", "d"]
    with pytest.raises(UserError, match="'b'"):
        select_attributes(annotations, ["b"])
    with pytest.raises(UserError, match="attributes"):
        select_attributes([{}], None)
    encoder = AttributeEncoder(["a"], annotations)
    assert encoder.encode([{"attributes": {"a": "y"}}, {"attributes": {"a": "unseen"}}, {}]).flatten().tolist() == [1, -1, -1]


def test_attribute_accuracy_drops_only_for_the_attribute_whose_region_is_destroyed():
    train_images, train_annotations = _attribute_data(128, 0)
    test_images, test_annotations = _attribute_data(64, 1)
    names = select_attributes(train_annotations, None)
    assert names == ["bottom", "top"]
    encoder = AttributeEncoder(names, train_annotations)
    model = train_attribute_classifier(train_images, encoder, train_annotations, AttributeConfig(epochs=6, batch_size=16, lr=3e-3, width=8), seed=0)
    original = attribute_accuracies(model, encoder, test_images, test_annotations)
    masked = test_images.clone()
    masked[:, :, :16] = 127  # the "head" (top half) is masked out
    anonymized = attribute_accuracies(model, encoder, masked, test_annotations)
    assert original["top"] > 0.9 and original["bottom"] > 0.9
    assert anonymized["bottom"] > 0.9
    assert anonymized["top"] < 0.75


# --------------------------------------------------------------------- leak rate


def test_leak_rate_counts_annotated_regions_the_detector_missed():
    annotated = torch.zeros(4, 1, 20, 10, dtype=torch.bool)
    annotated[0, :, 0:4, 2:6] = True  # fully inside the detected band
    annotated[1, :, 2:8, 2:6] = True  # rows 2..7: 2 of 6 rows inside -> 1/3 covered
    annotated[2, :, 12:16, 2:6] = True  # outside
    # image 3: nothing annotated (a back view) -> not counted
    detected = torch.zeros_like(annotated)
    detected[:, :, :4] = True
    coverage = region_coverage(annotated, detected)
    assert coverage[:3] == pytest.approx([1.0, 1 / 3, 0.0]) and math.isnan(coverage[3])
    assert leak_rate(annotated, detected, 0.5) == (pytest.approx(2 / 3), 3)
    assert leak_rate(annotated, detected, 0.3) == (pytest.approx(1 / 3), 3)
    assert math.isnan(leak_rate(annotated[3:], detected[3:])[0])


def test_detecting_anonymizers_declare_it_and_report_their_region():
    from anonymizers.mask import MaskOut

    detector = TopBandDetector(fraction=0.25)
    assert detects_regions(detector) and not detects_regions(MaskOut())
    images = torch.zeros(2, 3, 8, 4, dtype=torch.uint8)
    masks = detected_masks(detector, images)
    assert masks.dtype == torch.bool and masks[:, :, :2].all() and not masks[:, :, 2:].any()

    class Broken(TopBandDetector):
        def detect(self, images, annotations=None):
            return torch.ones(images.shape[0], images.shape[2], images.shape[3])

    with pytest.raises(ValueError, match="bool masks"):
        detected_masks(Broken(), images)
