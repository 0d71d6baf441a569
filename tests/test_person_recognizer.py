"""The naeil-style recognizers: CNN training, embeddings, the identity SVM and their config."""
import numpy as np
import pytest
import torch

from attacks.person_recognizer import (
    IdentitySVM,
    PersonRecognizer,
    RecognizerConfig,
    boxes_tensor,
)
from evalsuite.errors import UserError

TINY = RecognizerConfig(channels=4, embedding_dim=16, epochs=5, batch_size=8, head_size=16, body_height=32, body_width=16, lr=0.01)
HEAD = [4.0, 2.0, 12.0, 10.0]


def people(n_ids=4, per_id=6, seed=0, head_only=False, body_only=False):
    """32x16 images: identity = head colour (top box) and body colour (below), plus noise."""
    g = torch.Generator().manual_seed(seed)
    heads = torch.randint(0, 256, (n_ids, 3), generator=g)
    bodies = torch.randint(0, 256, (n_ids, 3), generator=g)
    images, labels = [], []
    for pid in range(n_ids):
        for _ in range(per_id):
            img = torch.full((3, 32, 16), 100.0)
            if not body_only:
                img[:, 2:10, 4:12] = heads[pid][:, None, None]
            if not head_only:
                img[:, 12:30, 2:14] = bodies[pid][:, None, None]
            img += torch.randn(3, 32, 16, generator=g) * 10
            images.append(img.clamp(0, 255).to(torch.uint8))
            labels.append(pid)
    return torch.stack(images), torch.tensor(labels), boxes_tensor([HEAD] * len(labels))


def trained(region, seed=0, **kwargs):
    images, labels, boxes = people(**kwargs)
    return PersonRecognizer(TINY, region, num_classes=4, seed=seed).fit(images, boxes, labels)


@pytest.fixture(scope="module")
def recognizers():
    """Recognizers trained once for the module: identity in head and body, and in the body only."""
    return {
        ("head", "both"): trained("head"), ("body+head", "both"): trained("body+head"),
        ("head", "body"): trained("head", body_only=True), ("body+head", "body"): trained("body+head", body_only=True),
    }


@pytest.mark.parametrize("region", ["head", "body+head"])
def test_recognizer_learns_identities_that_an_svm_then_separates(region, recognizers):
    recognizer = recognizers[(region, "both")]
    train_images, train_labels, boxes = people(seed=0)
    test_images, test_labels, _ = people(seed=0)  # same identities (same colours), fresh noise below
    test_images = (test_images.float() + torch.randn(test_images.shape, generator=torch.Generator().manual_seed(9)) * 5).clamp(0, 255).to(torch.uint8)
    features = recognizer.embed(train_images, boxes)
    assert features.shape == (24, 16) and np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    svm = IdentitySVM(seed=0).fit(features, train_labels.numpy())
    assert (svm.predict(recognizer.embed(test_images, boxes)) == test_labels.numpy()).mean() >= 0.9


def test_head_recognizer_ignores_the_body(recognizers):
    """Identity only in the body: the head recognizer sees identical heads and is at chance."""
    recognizer = recognizers[("head", "body")]
    images, labels, boxes = people(body_only=True, seed=0)
    features = recognizer.embed(images, boxes)
    svm = IdentitySVM(seed=0).fit(features, labels.numpy())
    body = recognizers[("body+head", "body")]
    body_svm = IdentitySVM(seed=0).fit(body.embed(images, boxes), labels.numpy())
    assert (svm.predict(features) == labels.numpy()).mean() < 0.6
    assert (body_svm.predict(body.embed(images, boxes)) == labels.numpy()).mean() >= 0.9


def test_training_is_seeded_and_survives_save_and_load(tmp_path, recognizers):
    images, _, boxes = people()
    a, b = recognizers[("body+head", "both")], trained("body+head", seed=0)
    np.testing.assert_array_equal(a.embed(images, boxes), b.embed(images, boxes))
    a.save(tmp_path / "r.pt")
    c = PersonRecognizer(TINY, "body+head", num_classes=4, seed=99).load(tmp_path / "r.pt")
    np.testing.assert_array_equal(a.embed(images, boxes), c.embed(images, boxes))
    other = trained("body+head", seed=1)
    assert not np.array_equal(a.embed(images, boxes), other.embed(images, boxes))


def test_differentiable_scores_equal_the_svm_decision(recognizers):
    recognizer = recognizers[("body+head", "both")]
    images, labels, boxes = people()
    svm = IdentitySVM(seed=0).fit(recognizer.embed(images, boxes), labels.numpy())
    scores = recognizer.class_scores(images.float().requires_grad_(True), boxes, svm)
    np.testing.assert_allclose(scores.detach().numpy(), svm.decision(recognizer.embed(images, boxes)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(svm.decision(recognizer.embed(images, boxes)), svm._svc.decision_function(recognizer.embed(images, boxes)), rtol=1e-4, atol=1e-4)


def test_binary_svm_has_one_column_per_class():
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], np.float32)
    svm = IdentitySVM().fit(features, np.array([5, 5, 8, 8]))
    assert svm.decision(features).shape == (4, 2)
    assert svm.predict(features).tolist() == [5, 5, 8, 8]


def test_svm_needs_two_identities():
    with pytest.raises(UserError, match="at least 2 identities"):
        IdentitySVM().fit(np.zeros((3, 2)), np.array([1, 1, 1]))


@pytest.mark.parametrize(
    "values, fragment",
    [({"epochs": 0}, "attacker.epochs"), ({"model": "resnet"}, "convnet"), ({"head_size": 4}, ">= 8"), ({"lr": -1.0}, "attacker.lr"), ({"label_smooth": 1.0}, "label_smooth")],
)
def test_bad_config_is_a_user_error(values, fragment):
    with pytest.raises(UserError, match=fragment):
        RecognizerConfig.from_dict({**RecognizerConfig().as_dict(), **values})
