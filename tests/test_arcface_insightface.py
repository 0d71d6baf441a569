"""The arcface recognizer through the insightface package: model packs from a local folder, norm_crop alignment."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("insightface")
pytest.importorskip("onnx")

import attacks  # noqa: F401  (registers the recognizers)
from attacks.face_arcface import PACK_KEY, five_points_from_68
from attacks.face_dlib import face_box_in_crop
from evalsuite import dlib_models
from evalsuite.errors import UserError
from evalsuite.registry import RECOGNIZERS
from face_images import ASTRONAUT_FACE, astronaut, face_crop
from insightface.utils import face_align


def tiny_pack(folder: Path) -> tuple[Path, torch.nn.Module]:
    """A model pack folder holding one small 112x112 -> 16-d ONNX 'recognition' model (and the net that made it)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, stride=4), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 27 * 27, 16)).eval()
    folder.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, (torch.zeros(1, 3, 112, 112),), str(folder / "w600k_tiny.onnx"), input_names=["input.1"], output_names=["fc1"],
                      dynamic_axes={"input.1": {0: "batch"}}, dynamo=False)
    return folder, net


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's legacy ONNX exporter is deprecated
        return tiny_pack(tmp_path_factory.mktemp("packs") / "tiny_pack")


def test_a_model_pack_is_routed_by_insightface(pack) -> None:
    folder, net = pack
    recognizer = RECOGNIZERS.build("arcface", model_pack=str(folder), align="none")
    assert Path(recognizer.model_path) == folder / "w600k_tiny.onnx" and recognizer.detector is None
    assert (recognizer.input_mean, recognizer.input_std) == (127.5, 127.5)  # insightface's choice for a non-MXNet graph
    images = torch.randint(0, 256, (3, 3, 112, 112), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net((images.float() - 127.5) / 127.5).numpy()
    np.testing.assert_allclose(recognizer.embed(images), expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)
    # without a detector in the pack, align=auto aligns on dlib's landmarks
    assert RECOGNIZERS.build("arcface", model_pack=str(folder)).align == "dlib"


def test_dlib_alignment_is_insightface_norm_crop_on_arcface_template(pack) -> None:
    folder, _ = pack
    recognizer = RECOGNIZERS.build("arcface", model_pack=str(folder), align="dlib")
    crop = face_crop(astronaut(), ASTRONAUT_FACE, margin=0.25, size=160)
    array = np.ascontiguousarray(crop.permute(1, 2, 0).numpy())
    box, detected = face_box_in_crop(array, True, 0.15)
    assert detected
    points = recognizer.five_points(array)
    np.testing.assert_allclose(points, five_points_from_68(dlib_models.landmarks(array, box, 68)))
    aligned = recognizer.aligned(crop[None])
    assert aligned.shape == (1, 3, 112, 112) and recognizer.last_aligned_rate == 1.0
    np.testing.assert_array_equal(aligned[0].permute(1, 2, 0).numpy(), face_align.norm_crop(array, points, image_size=112))
    # dlib finds the five points again in the chip where norm_crop's similarity transform put them,
    # and those lie on ArcFace's template up to this face's own proportions
    chip = np.ascontiguousarray(aligned[0].permute(1, 2, 0).numpy())
    chip_box, found = face_box_in_crop(chip, True, 0.15)
    again = five_points_from_68(dlib_models.landmarks(chip, chip_box, 68))
    matrix = face_align.estimate_norm(points, image_size=112)
    moved = points @ matrix[:, :2].T + matrix[:, 2]
    assert found and np.linalg.norm(again - moved, axis=1).max() < 1.5
    residual = np.linalg.norm(moved - face_align.arcface_dst, axis=1)
    assert residual[:2].max() < 4.0 and residual.max() < 8.0, residual
    # the order matters: with the eyes and mouth corners swapped (a mirrored face) nothing fits
    swapped = points[[1, 0, 2, 4, 3]]
    matrix = face_align.estimate_norm(swapped, image_size=112)
    assert np.linalg.norm(swapped @ matrix[:, :2].T + matrix[:, 2] - face_align.arcface_dst, axis=1)[[0, 1, 3, 4]].min() > 20


@pytest.mark.parametrize("make, settings, fragment", [
    (None, {}, "model pack folder"),
    ("empty", {}, "holds no .onnx models"),
    ("corrupt", {}, "bad.onnx"),
    ("tiny", {"align": "detect"}, "align=detect needs a detection model"),
    ("tiny", {"align": "sideways"}, "align must be one of"),
])
def test_model_pack_errors_name_the_folder_and_key(pack, tmp_path: Path, make, settings, fragment) -> None:
    folder = tmp_path / "buffalo_x"
    if make == "empty":
        folder.mkdir()
    elif make == "corrupt":
        folder.mkdir()
        (folder / "bad.onnx").write_bytes(b"not an onnx model")
    elif make == "tiny":
        folder = pack[0]
    with pytest.raises(UserError) as info:
        RECOGNIZERS.build("arcface", model_pack=str(folder), **settings)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    if make != "tiny":
        assert str(folder) in message and PACK_KEY in message


def test_without_insightface_the_error_says_how_to_install(pack, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "insightface" or m.startswith("insightface.")]:
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if the package were absent
    with pytest.raises(UserError, match="pip install insightface"):
        RECOGNIZERS.build("arcface", model_pack=str(pack[0]))
