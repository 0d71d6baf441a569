"""dlib's shipped models on real face photographs (scikit-image's astronaut, matplotlib's Grace Hopper)."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from evalsuite import dlib_models
from evalsuite.errors import UserError
from evalsuite.metrics.landmarks import box_iou
from face_images import ASTRONAUT_FACE, GRACE_FACE, astronaut, grace_hopper

PEOPLE = {"astronaut": (astronaut, ASTRONAUT_FACE), "grace": (grace_hopper, GRACE_FACE)}


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The image translated by cropping ``dx`` / ``dy`` pixels off the left / top."""
    return np.ascontiguousarray(image[dy:, dx:])


def brighter(image: np.ndarray, gain: float, offset: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) * gain + offset, 0, 255).round().astype(np.uint8)


def descriptor(image: np.ndarray) -> np.ndarray:
    """The raw descriptor of the one face the HOG detector finds in ``image``."""
    found = dlib_models.detect_faces(image, "hog", upsample=0)
    assert found, "no face detected"
    return dlib_models.face_descriptors(image, [found[0].box])[0]


def test_models_found_without_importing_the_package():
    folder = dlib_models.package_models_dir()
    assert folder is not None and folder.name == "models"
    for name in dlib_models.MODEL_FILES:
        assert dlib_models.model_path(name) == folder / name
    assert "face_recognition_models" not in sys.modules  # its __init__ needs pkg_resources


def test_missing_model_file_names_file_folder_and_overrides(tmp_path):
    with pytest.raises(UserError) as info:
        dlib_models.shape_predictor(68, models_dir=tmp_path, key="recognizer.models_dir")
    message = str(info.value)
    assert "\n" not in message
    for word in (dlib_models.SHAPE_68, str(tmp_path), "recognizer.models_dir", dlib_models.ENV_VAR):
        assert word in message


def test_env_var_overrides_the_package(tmp_path, monkeypatch):
    os.symlink(dlib_models.package_models_dir() / dlib_models.SHAPE_5, tmp_path / dlib_models.SHAPE_5)
    monkeypatch.setenv(dlib_models.ENV_VAR, str(tmp_path))
    assert dlib_models.model_path(dlib_models.SHAPE_5) == tmp_path / dlib_models.SHAPE_5
    with pytest.raises(UserError, match=dlib_models.ENV_VAR):
        dlib_models.model_path(dlib_models.RECOGNITION)


def test_bad_detector_arguments():
    with pytest.raises(UserError, match="hog"):
        dlib_models.detect_faces(astronaut(), "haar")
    with pytest.raises(UserError, match="upsample"):
        dlib_models.detect_faces(astronaut(), "hog", upsample=-1)
    with pytest.raises(UserError, match="68 or 5"):
        dlib_models.shape_predictor(7)


@pytest.mark.parametrize("person", list(PEOPLE))
def test_hog_detects_the_face_and_68_landmarks_land_inside(person):
    load, face = PEOPLE[person]
    found = dlib_models.detect_faces(load(), "hog", upsample=0)
    assert len(found) == 1
    assert box_iou(found[0].box, face) > 0.5
    points = dlib_models.landmarks(load(), found[0].box, points=68)
    assert points.shape == (68, 2)
    x0, y0, x1, y1 = found[0].box
    pad = 0.12 * (x1 - x0)  # the jaw line may reach just past dlib's tight box
    assert (points[:, 0] >= x0 - pad).all() and (points[:, 0] <= x1 + pad).all()
    assert (points[:, 1] >= y0 - pad).all() and (points[:, 1] <= y1 + pad).all()
    eyes, mouth = points[36:48], points[48:68]
    assert eyes[:, 1].max() < mouth[:, 1].min()  # eyes above the mouth
    assert points[36:42, 0].mean() < points[42:48, 0].mean()  # the subject's right eye on the image's left
    five = dlib_models.landmarks(load(), found[0].box, points=5)
    assert five.shape == (5, 2)


def test_cnn_detector_on_a_downscaled_image():
    from PIL import Image

    image = np.asarray(Image.fromarray(grace_hopper()).resize((256, 300), Image.BILINEAR))
    found = dlib_models.detect_faces(image, "cnn", upsample=0)
    assert found
    scale = 512 / 256
    box = tuple(v * scale for v in found[0].box)
    assert box_iou(box, GRACE_FACE) > 0.4


def test_descriptors_same_person_close_different_people_far():
    variants = {}
    for person, (load, _) in PEOPLE.items():
        image = load()
        variants[person] = np.stack([
            descriptor(image),
            descriptor(shifted(image, 7, 5)),
            descriptor(brighter(image, 1.15, 10)),
            descriptor(brighter(shifted(image, 3, 11), 0.85, -5)),
        ])
    assert variants["astronaut"].shape == (4, 128)
    for person, d in variants.items():
        same = np.linalg.norm(d[:, None] - d[None], axis=-1)
        assert same.max() < dlib_models.SAME_PERSON_DISTANCE, (person, same.max())
    cross = np.linalg.norm(variants["astronaut"][:, None] - variants["grace"][None], axis=-1)
    assert cross.min() > dlib_models.SAME_PERSON_DISTANCE, cross.min()
