"""LDSR (landmark detection success) with dlib's real models on real shipped face photographs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import anonymizers  # noqa: F401  (registers the anonymizers used below)
from evalsuite.errors import UserError
from evalsuite.metrics import metric_spec
from evalsuite.metrics.landmarks import landmark_detection_results, landmark_detection_success, ldsr
from evalsuite.registry import ANONYMIZERS
from face_images import ASTRONAUT_FACE, GRACE_FACE, astronaut, face_crop, grace_hopper, tensor

PEOPLE = {"astronaut": (astronaut, ASTRONAUT_FACE), "grace": (grace_hopper, GRACE_FACE)}


def face_mask(image: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    mask = torch.zeros(1, 1, *image.shape[-2:], dtype=torch.bool)
    mask[..., box[1]:box[3], box[0]:box[2]] = True
    return mask


def anonymized(person: str, name: str, **params) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    load, box = PEOPLE[person]
    image = tensor(load())
    return ANONYMIZERS.build(name, **params).anonymize(image, face_mask(image, box)), box


def test_ldsr_spec_is_a_quality_rate_where_higher_is_better():
    spec = metric_spec("ldsr")
    assert spec is not None and spec.higher_is_better and spec.category == "quality" and spec.unit == "rate"


@pytest.mark.parametrize("person", list(PEOPLE))
def test_original_face_succeeds_with_and_without_a_box(person):
    load, box = PEOPLE[person]
    image = tensor(load())
    with_box, without_box = landmark_detection_results(image, [box])[0], landmark_detection_results(image)[0]
    for result in (with_box, without_box):
        assert result.success and result.landmarks is not None and result.landmarks.shape == (68, 2)
        x0, y0, x1, y1 = box
        assert (result.landmarks[:, 0] > x0).all() and (result.landmarks[:, 0] < x1).all()
        assert (result.landmarks[:, 1] > y0).all() and (result.landmarks[:, 1] < y1).all()
    assert with_box.iou >= 0.5


@pytest.mark.parametrize("person", list(PEOPLE))
def test_black_mask_of_the_face_fails(person):
    image, box = anonymized(person, "mask_black")
    assert not landmark_detection_success(image, [box])[0]
    assert not landmark_detection_success(image)[0]


@pytest.mark.parametrize("person", list(PEOPLE))
def test_mild_blur_keeps_the_face_strong_blur_loses_it(person):
    mild, box = anonymized(person, "blur5")  # sigma 1.1
    strong, _ = anonymized(person, "blur", sigma=14.0)
    assert landmark_detection_success(torch.cat([mild, strong]), [box, box]).tolist() == [True, False]


@pytest.mark.parametrize("person", list(PEOPLE))
def test_small_crops_are_upscaled_to_the_detector_window(person):
    load, box = PEOPLE[person]
    crop = face_crop(load(), box, margin=0.25, size=48)[None]
    assert landmark_detection_success(crop)[0]  # scaled by 160 / 48: the face is about 110 px
    assert not landmark_detection_success(crop, min_face=1)[0]  # left at 48 px: HOG's 80 px window misses it


def test_a_detection_must_overlap_the_annotated_box():
    image = tensor(astronaut())
    assert landmark_detection_success(torch.cat([image, image]), [ASTRONAUT_FACE, (10, 10, 90, 90)]).tolist() == [True, False]


def test_ldsr_is_the_success_ratio():
    original = tensor(astronaut())
    masked, box = anonymized("astronaut", "mask_black")
    assert ldsr(torch.cat([original, masked, original]), [box, box, None]) == pytest.approx(2 / 3)
    assert np.isnan(ldsr(torch.zeros(0, 3, 8, 8, dtype=torch.uint8)))


def test_bad_boxes_are_user_errors():
    image = tensor(astronaut())
    with pytest.raises(UserError, match="one box"):
        landmark_detection_success(image, [ASTRONAUT_FACE, ASTRONAUT_FACE])
    with pytest.raises(UserError, match="image 0"):
        landmark_detection_success(image, [(50, 50, 40, 60)])
    with pytest.raises(UserError, match="x0, y0, x1, y1"):
        landmark_detection_success(image, [(1, 2, 3)])
