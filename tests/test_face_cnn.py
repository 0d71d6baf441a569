"""The `cnn` face recognizer: learns, is seeded, caches through a weights_only state dict."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attacks.face_cnn import FaceCNN, FaceCNNConfig
from attacks.face_recognizer import FaceRecognizer
from evalsuite.errors import UserError
from evalsuite.registry import RECOGNIZERS, load_all

SMALL = dict(input_size=24, width=4, embedding_dim=16, epochs=6, batch_size=16, lr=0.05)


def toy_faces(per_class: int = 8, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Each class: its own colour pattern (a bright quadrant), every image with noise and a shift."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(classes):
        for _ in range(per_class):
            img = rng.integers(60, 100, (32, 32, 3)).astype(np.uint8)
            y, x = divmod(c, 2)
            dy, dx = rng.integers(-2, 3, 2)
            img[max(0, 16 * y + dy):16 * y + 16 + dy, max(0, 16 * x + dx):16 * x + 16 + dx, c % 3] = 230
            images.append(img)
            labels.append(c)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), np.array(labels)


@pytest.fixture(scope="module")
def trained() -> FaceCNN:
    images, labels = toy_faces()
    return FaceCNN(**SMALL).fit(images, labels, seed=3)


def test_registered_and_a_face_recognizer() -> None:
    load_all()
    assert "cnn" in RECOGNIZERS
    model = RECOGNIZERS.build("cnn", **SMALL)
    assert isinstance(model, FaceRecognizer) and model.trainable and model.input_size == (24, 24)
    assert FaceCNN.config_defaults() == FaceCNNConfig().as_dict()


def test_learns_identities(trained: FaceCNN) -> None:
    images, labels = toy_faces(seed=1)  # new images of the same classes
    emb = trained.embed(images)
    assert emb.shape == (32, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    centroids = np.stack([emb[labels == c].mean(axis=0) for c in range(4)])
    assert ((emb @ centroids.T).argmax(axis=1) == labels).mean() >= 0.9  # chance is 0.25
    assert trained.last_loss is not None and trained.last_loss < np.log(4)  # below the loss of guessing among 4


def test_same_seed_same_weights_other_seed_others(trained: FaceCNN) -> None:
    images, labels = toy_faces()
    again = FaceCNN(**SMALL).fit(images, labels, seed=3)
    other = FaceCNN(**SMALL).fit(images, labels, seed=4)
    probe = toy_faces(seed=2)[0]
    np.testing.assert_array_equal(trained.embed(probe), again.embed(probe))
    assert not np.allclose(trained.embed(probe), other.embed(probe))


def test_state_dict_round_trip_with_weights_only(trained: FaceCNN, tmp_path: Path) -> None:
    torch.save(trained.state_dict(), tmp_path / "cnn.pt")
    fresh = FaceCNN(**SMALL)
    fresh.load_state_dict(torch.load(tmp_path / "cnn.pt", weights_only=True))
    probe = toy_faces(seed=5)[0]
    np.testing.assert_array_equal(fresh.embed(probe), trained.embed(probe))


def test_arcface_margin_loss_trains() -> None:
    images, labels = toy_faces()
    model = FaceCNN(**{**SMALL, "loss": "arcface", "epochs": 8}).fit(images, labels, seed=0)
    emb = model.embed(toy_faces(seed=1)[0])
    centroids = np.stack([emb[labels == c].mean(axis=0) for c in range(4)])
    assert ((emb @ centroids.T).argmax(axis=1) == labels).mean() >= 0.9


@pytest.mark.parametrize("params, fragment", [
    (dict(loss="triplet"), "recognizer.cnn.loss"),
    (dict(epochs=0), "recognizer.cnn.epochs"),
    (dict(width=2.5), "recognizer.cnn.width"),
    (dict(input_size=8), "input_size"),
    (dict(epoch=3), "did you mean 'epochs'"),
])
def test_bad_settings_are_user_errors(params: dict, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        FaceCNN(**params)
