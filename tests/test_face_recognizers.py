"""The pretrained face recognizers: dlib (on real shipped face photographs) and ArcFace (ONNX path)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import attacks  # noqa: F401  (registers the recognizers)
from attacks.face_arcface import ArcFaceRecognizer
from attacks.face_dlib import DlibRecognizer
from evalsuite.errors import UserError
from evalsuite.registry import RECOGNIZERS
from face_images import ASTRONAUT_FACE, GRACE_FACE, astronaut, face_crop, grace_hopper


@pytest.fixture(scope="module")
def crops() -> tuple[torch.Tensor, np.ndarray]:
    """Face crops of two people at several sizes and offsets, as a face dataset would hold them."""
    images, labels = [], []
    for label, (image, box) in enumerate(((astronaut(), ASTRONAUT_FACE), (grace_hopper(), GRACE_FACE))):
        for dx, dy, size in ((0, 0, 112), (6, -4, 96), (-5, 6, 64)):
            images.append(face_crop(image, box, margin=0.25, dx=dx, dy=dy, size=size))
            labels.append(label)
    # one size for the batch: the 96 / 64 px crops are resized back up to 112 (they lost detail)
    batch = torch.stack([torch.nn.functional.interpolate(c[None].float(), size=(112, 112), mode="bilinear", align_corners=False)[0].round().to(torch.uint8) for c in images])
    return batch, np.array(labels)


@pytest.mark.parametrize("face_box", ["detect", "crop"])
def test_dlib_recognizer_separates_two_real_people(crops, face_box):
    images, labels = crops
    recognizer = RECOGNIZERS.build("dlib", face_box=face_box, progress=False)
    assert isinstance(recognizer, DlibRecognizer) and not recognizer.trainable
    raw = recognizer.descriptors(images)
    if face_box == "detect":
        assert recognizer.last_detection_rate == 1.0  # HOG finds the face in every crop
    # raw descriptors of the same person stay within dlib's 0.6 threshold, the two people beyond it
    same = labels[:, None] == labels[None, :]
    dist = np.linalg.norm(raw[:, None] - raw[None], axis=-1)
    assert dist[same].max() < 0.6 < dist[~same].min()
    # the embeddings are the L2-normalised descriptors; leave-one-out 1-NN identification is perfect
    emb = recognizer.embed(images[[0, 3]])
    assert emb.shape == (2, 128) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, raw[[0, 3]] / np.linalg.norm(raw[[0, 3]], axis=1, keepdims=True), atol=1e-6)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    assert (labels[sim.argmax(axis=1)] == labels).all()


def test_dlib_recognizer_is_deterministic_and_ignores_fit(crops):
    images, labels = crops
    recognizer = RECOGNIZERS.build("dlib", progress=False)
    first = recognizer.embed(images[:1])
    assert recognizer.fit(images, labels) is recognizer
    np.testing.assert_array_equal(first, recognizer.embed(images[:1]))
    assert recognizer.state_dict() == {}


def test_dlib_recognizer_falls_back_to_the_crop_box_on_a_masked_face(crops):
    images, _ = crops
    masked = images[:1].clone()
    masked[:, :, 20:92, 20:92] = 0
    recognizer = RECOGNIZERS.build("dlib", progress=False)
    emb = recognizer.embed(masked)
    assert recognizer.last_detection_rate == 0.0 and np.isfinite(emb).all()


@pytest.mark.parametrize("params,word", [
    ({"landmarks": 7}, "landmarks"),
    ({"face_box": "auto"}, "face_box"),
    ({"crop_margin": 0.5}, "crop_margin"),
    ({"min_size": 0}, "min_size"),
])
def test_dlib_recognizer_bad_params(params, word):
    with pytest.raises(UserError, match=word):
        RECOGNIZERS.build("dlib", **params)


def test_dlib_recognizer_missing_models_name_the_key(tmp_path):
    with pytest.raises(UserError) as info:
        RECOGNIZERS.build("dlib", models_dir=str(tmp_path))
    assert "recognizer.models_dir" in str(info.value) and str(tmp_path) in str(info.value)


# --- ArcFace ------------------------------------------------------------------------------------

def test_arcface_without_a_path_names_the_key():
    with pytest.raises(UserError) as info:
        RECOGNIZERS.build("arcface")
    assert "recognizer.arcface.model_pack" in str(info.value) and "recognizer.arcface.model_path" in str(info.value) and "w600k_r50.onnx" in str(info.value)


def test_arcface_missing_file_names_path_and_key(tmp_path):
    missing = tmp_path / "buffalo_l" / "w600k_r50.onnx"
    with pytest.raises(UserError) as info:
        RECOGNIZERS.build("arcface", model_path=str(missing))
    message = str(info.value)
    assert str(missing) in message and "recognizer.arcface.model_path" in message and "\n" not in message


def test_arcface_pack_folder_without_a_recognition_model(tmp_path):
    (tmp_path / "det_10g.onnx").write_bytes(b"")
    with pytest.raises(UserError, match="det_10g.onnx"):
        RECOGNIZERS.build("arcface", model_path=str(tmp_path))


needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="onnxruntime and onnx (to export a tiny test model) are not installed",
)


@needs_onnx
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy ONNX exporter, used to write the test model
def test_arcface_runs_an_onnx_model_with_insightface_preprocessing(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, stride=4), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 27 * 27, 16)).eval()
    pack = tmp_path / "buffalo_test"
    pack.mkdir()
    (pack / "det_10g.onnx").write_bytes(b"")  # a pack holds other models too
    torch.onnx.export(net, (torch.zeros(1, 3, 112, 112),), str(pack / "w600k_r50.onnx"), input_names=["input.1"], output_names=["fc1"],
                      dynamic_axes={"input.1": {0: "batch"}}, dynamo=False)
    recognizer = RECOGNIZERS.build("arcface", model_path=str(pack), batch_size=3, align="none")
    assert isinstance(recognizer, ArcFaceRecognizer) and recognizer.size == (112, 112)
    images = torch.randint(0, 256, (5, 3, 112, 112), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    emb = recognizer.embed(images)
    with torch.no_grad():
        expected = net((images.float() - 127.5) / 127.5).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    # crops of another size are resized to the model's 112x112 input
    assert recognizer.embed(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)).shape == (2, 16)
