"""Region providers that detect (dlib HOG / CNN, OpenCV HOG people, keypoint R-CNN) and the per-region leak rate."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evalsuite.errors import UserError
from evalsuite.metrics.leak import leak_rate as per_image_leak_rate
from evalsuite.region_detectors import DETECTORS, build_detector, head_box, leak_rate
from face_images import ASTRONAUT_FACE, astronaut, tensor


def two_faces() -> tuple[torch.Tensor, list[tuple[int, int, int, int]]]:
    """The astronaut photo with a second, 5x smaller copy of her face pasted at the bottom right: too small for HOG."""
    from PIL import Image

    image = astronaut().copy()
    x0, y0, x1, y1 = ASTRONAUT_FACE
    small = np.asarray(Image.fromarray(image[y0 - 20:y1 + 20, x0 - 20:x1 + 20]).resize(((x1 - x0 + 40) // 5, (y1 - y0 + 40) // 5), Image.BILINEAR))
    h, w = small.shape[:2]
    image[440:440 + h, 440:440 + w] = small
    return tensor(image), [ASTRONAUT_FACE, (444, 444, 444 + (x1 - x0) // 5, 444 + (y1 - y0) // 5)]


def test_registry_holds_the_four_detectors_and_names_unknown_ones():
    assert {"dlib-hog", "dlib-cnn", "opencv-hog", "keypoint-rcnn"} <= set(DETECTORS)
    with pytest.raises(UserError, match="unknown region detector 'dlib-hug'"):
        build_detector("dlib-hug")
    with pytest.raises(UserError, match="region detector dlib-hog: .*upsampel"):
        build_detector("dlib-hog", upsampel=1)
    with pytest.raises(UserError, match="finds face, not 'body'"):
        build_detector("dlib-hog").detect(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "body")


def test_a_missed_small_face_shows_up_in_the_leak_rate():
    images, faces = two_faces()
    found = build_detector("dlib-hog", upsample=0).detect(images, "face")
    assert len(found.boxes[0]) == 1  # the large face only
    assert found.masks.dtype == torch.bool and found.masks.shape == (1, 1, 512, 512)
    x0, y0, x1, y1, _ = found.boxes[0][0]
    assert x0 < 276 and x1 > 170 and y0 < 186 and y1 > 70  # on the large face
    rate, count = leak_rate([faces], found.masks)
    assert (rate, count) == (0.5, 2)  # one of two faces left uncovered
    # one mask per image would hide it: the union of both faces is mostly covered
    annotated = torch.zeros_like(found.masks)
    for a, b, c, d in faces:
        annotated[0, 0, b:d, a:c] = True
    assert per_image_leak_rate(annotated, found.masks) == (0.0, 1)
    # covering everything leaks nothing; detecting nothing leaks both
    assert leak_rate([faces], torch.ones_like(found.masks)) == (0.0, 2)
    assert leak_rate([faces], torch.zeros_like(found.masks)) == (1.0, 2)
    assert math.isnan(leak_rate([[]], found.masks)[0])


def test_dilation_grows_the_detected_mask():
    images, _ = two_faces()
    detector = build_detector("dlib-hog", upsample=0)
    tight, grown = detector.detect(images, "face"), detector.detect(images, "face", dilation=4)
    assert grown.masks.sum() > tight.masks.sum() and bool((grown.masks | ~tight.masks).all())


def test_opencv_hog_finds_people_as_body_masks():
    import cv2

    if not hasattr(cv2, "HOGDescriptor"):
        pytest.skip("this OpenCV build has no HOGDescriptor")
    empty = build_detector("opencv-hog", upsample=0).detect(torch.full((1, 3, 64, 32), 128, dtype=torch.uint8), "body")
    assert empty.boxes == [[]] and not empty.masks.any()  # smaller than the 64x128 window: nothing


def test_dlib_cnn_without_its_file_names_the_file_and_key(tmp_path):
    detector = build_detector("dlib-cnn", models_dir=str(tmp_path))
    with pytest.raises(UserError, match=r"mmod_human_face_detector\.dat not found.*region\.detector\.models_dir"):
        detector.detect(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "face")


def test_keypoint_rcnn_weight_file_errors_name_the_file_and_key(tmp_path):
    frame = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(UserError, match=r"set region\.detector\.weights=PATH"):
        build_detector("keypoint-rcnn").detect(frame, "head")
    with pytest.raises(UserError, match=r"nope\.pth: no such file; set region\.detector\.weights"):
        build_detector("keypoint-rcnn", weights=str(tmp_path / "nope.pth")).detect(frame, "head")
    torch.save({"backbone.body.conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match=r"other\.pth \(region\.detector\.weights\): key backbone\.body\.conv1\.weight is of shape \(1,\)"):
        build_detector("keypoint-rcnn", weights=str(tmp_path / "other.pth")).detect(frame, "head")


def test_head_box_from_coco_keypoints():
    points = np.zeros((17, 3))
    points[0] = [50, 40, 1]  # nose
    points[1], points[2] = [54, 36, 1], [46, 36, 1]  # eyes
    points[3], points[4] = [60, 38, 1], [40, 38, 1]  # ears: 20 px apart
    points[5], points[6] = [75, 70, 1], [25, 70, 1]  # shoulders
    x0, y0, x1, y1 = head_box(points)
    assert x0 < 40 and x1 > 60 and y0 < 36 and y1 > 40  # every head keypoint inside
    assert 35 <= x1 - x0 <= 50 and abs((x1 - x0) - (y1 - y0)) < 1e-6
    points[:5, 2] = 0
    assert head_box(points) is None  # no head keypoint: no head
