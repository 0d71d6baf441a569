"""Face crops move the landmarks with the face box (UP-GAN and dp-face read them in crop pixels)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from evalsuite.data.faces import FaceSample
from evalsuite.pipeline import face_crops


def test_landmarks_and_box_follow_the_centre_crop_and_resize(tmp_path) -> None:
    image = np.zeros((80, 60, 3), np.uint8)  # taller than wide: the centre crop drops 10 rows at the top and bottom
    image[40, 30] = 255
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), image)
    seven = [[30.0, 40.0]] * 7
    sample = FaceSample(str(path), "p0", face_box=[10.0, 20.0, 50.0, 60.0], landmarks={7: seven, 68: [[30.0, 40.0]] * 68}, root=str(tmp_path))
    _, (ann,) = face_crops([sample], 30, 1.0, "crop")
    assert ann["face_box"] == pytest.approx([5.0, 5.0, 25.0, 25.0])  # (x - 0, y - 10) / 2
    assert ann["face_landmarks"][7] == [pytest.approx([15.0, 15.0])] * 7
    assert ann["landmarks"] == [pytest.approx([15.0, 15.0])] * 5
    assert sample.annotations["face_landmarks"][7] == seven  # the sample itself is untouched
