"""k-Same-Pixel and k-Same-Select: the k-anonymity guarantee, the clustering, the closed-set contract."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import anonymizers  # noqa: F401  (registers the built-ins)
from anonymizers.ksame import KSamePixel, KSameSelect, ksame_clusters
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS


def identity_faces(identities: int, captures: int = 1, size: int = 24, noise: float = 12.0, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """``captures`` images of each of ``identities`` smooth random 'faces' with independent noise.

    Returns uint8 (identities * captures, 3, size, size) ordered capture-major (all identities'
    first capture, then their second...) and the identity of each image.
    """
    g = torch.Generator().manual_seed(seed)
    templates = F.interpolate(torch.rand(identities, 3, 4, 4, generator=g) * 200 + 28, size=(size, size), mode="bilinear", align_corners=False)
    images = [templates + noise * torch.randn(templates.shape, generator=g) for _ in range(captures)]
    return torch.cat(images).round().clamp(0, 255).to(torch.uint8), np.tile(np.arange(identities), captures)


def full_masks(images: torch.Tensor) -> torch.Tensor:
    return torch.ones(images.shape[0], 1, *images.shape[2:], dtype=torch.bool)


def nearest_neighbour_labels(gallery: torch.Tensor, labels: np.ndarray, queries: torch.Tensor) -> np.ndarray:
    """A 1-NN recognizer on raw pixels (ties to the first gallery item, as argmin does)."""
    dist = torch.cdist(queries.flatten(1).double(), gallery.flatten(1).double())
    return labels[dist.argmin(dim=1).numpy()]


def reference_ksame(images: torch.Tensor, k: int) -> list[list[int]]:
    """Newton et al.'s k-Same clustering written plainly, one pair of faces at a time."""
    vectors = images.flatten(1).numpy().astype(np.int64)
    remaining = list(range(len(vectors)))
    clusters = []
    while len(remaining) >= 2 * k:
        seed = remaining[0]
        ranked = sorted(remaining, key=lambda j: (j != seed, int(((vectors[j] - vectors[seed]) ** 2).sum()), j))
        cluster = ranked[:k]
        clusters.append(sorted(cluster))
        remaining = [j for j in remaining if j not in cluster]
    clusters.append(remaining)
    return clusters


@pytest.mark.parametrize("k", [2, 5, 10])
def test_every_output_is_shared_by_at_least_k_inputs(k):
    images, _ = identity_faces(47)
    masks = full_masks(images)
    anonymizer = ANONYMIZERS.build("ksame-pixel", k=k).fit(images, masks)
    out = anonymizer.anonymize(images, masks)
    counts = Counter(image_key.numpy().tobytes() for image_key in out)
    assert min(counts.values()) >= k
    sizes = sorted(len(c) for c in anonymizer.clusters_)
    assert sizes[0] >= k and sizes[-1] <= 2 * k - 1 and sum(sizes) == 47
    # each output is the rounded mean of its cluster
    for cluster in anonymizer.clusters_:
        expected = images[cluster].double().mean(dim=0).round().to(torch.uint8)
        for i in cluster:
            assert torch.equal(out[i], expected)


def test_clusters_match_the_plain_algorithm():
    images, _ = identity_faces(10, captures=3, noise=20.0, seed=3)
    for k in (2, 3, 7):
        assert ksame_clusters(images.flatten(1).double(), k) == reference_ksame(images, k)


def test_neighbours_are_grouped_together():
    # 3 captures of 10 identities: with k = 3 the nearest faces are the same person's captures
    images, identities = identity_faces(10, captures=3, noise=8.0, seed=1)
    anonymizer = KSamePixel(k=3).fit(images, full_masks(images))
    assert all(len({identities[i] for i in cluster}) == 1 for cluster in anonymizer.clusters_)


def test_parrot_recognizer_cannot_beat_one_over_k():
    """Newton et al.'s guarantee on a generated set, one identity per original image."""
    k = 5
    originals, identities = identity_faces(60, captures=2, noise=10.0, seed=2)
    first, second = originals[:60], originals[60:]  # two captures of each of 60 people
    labels = identities[:60]
    masks = full_masks(first)
    # on the original images the recognizer is far above 1/k: a second capture finds its person
    clean_accuracy = (nearest_neighbour_labels(first, labels, second) == labels).mean()
    assert clean_accuracy >= 0.9 > 1 / k
    # parrot: gallery and queries are the k-same set, labelled with the original identities
    ksame = KSamePixel(k=k).fit(first, masks).anonymize(first, masks)
    parrot_accuracy = (nearest_neighbour_labels(ksame, labels, ksame) == labels).mean()
    assert parrot_accuracy <= 1 / k + 1e-12
    # and neither the originals nor an independently k-same'd second capture do better against it
    assert (nearest_neighbour_labels(ksame, labels, first) == labels).mean() <= 1 / k + 1e-12
    other = KSamePixel(k=k).fit(second, masks).anonymize(second, masks)
    assert (nearest_neighbour_labels(ksame, labels, other) == labels).mean() <= 1 / k + 1e-12
    # the bound is reached: exactly one identity per cluster is recognised
    assert parrot_accuracy == pytest.approx(len(set(map(tuple, ksame.flatten(1).numpy()))) / 60)


def test_a_set_smaller_than_k_is_refused():
    images, _ = identity_faces(7)
    with pytest.raises(UserError) as info:
        KSamePixel(k=10).fit(images, full_masks(images))
    message = str(info.value)
    assert "k=10" in message and "got 7" in message and "\n" not in message


def test_closed_set_contract():
    images, _ = identity_faces(30)
    masks = full_masks(images)
    anonymizer = KSamePixel(k=4)
    with pytest.raises(UserError, match="fitted"):
        anonymizer.anonymize(images, masks)
    anonymizer.fit(images, masks)
    whole = anonymizer.anonymize(images, masks)
    # any batches, any order, map to the same surrogates
    order = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    parts = torch.cat([anonymizer.anonymize(images[order[i:i + 7]], masks[order[i:i + 7]]) for i in range(0, 30, 7)])
    assert torch.equal(parts, whole[order])
    stranger, _ = identity_faces(1, seed=99)
    with pytest.raises(UserError, match="not in the set it was fitted on"):
        anonymizer.anonymize(stranger, full_masks(stranger))
    # deterministic: a new fit gives the same output
    assert torch.equal(KSamePixel(k=4).fit(images, masks).anonymize(images, masks), whole)


def test_only_the_region_changes():
    images, _ = identity_faces(12)
    masks = full_masks(images)
    masks[:, :, :8] = False  # the top rows stay
    out = KSamePixel(k=3).fit(images, masks).anonymize(images, masks)
    assert torch.equal(out[:, :, :8], images[:, :, :8])
    assert not torch.equal(out[:, :, 8:], images[:, :, 8:])


def test_ksame_select_clusters_within_attribute_groups():
    images, _ = identity_faces(40, seed=4)
    masks = full_masks(images)
    attributes = [{"attributes": {"Male": i % 2, "Smiling": int(i % 5 == 0), "Young": 1}} for i in range(40)]
    anonymizer = ANONYMIZERS.build("ksame-select", k=3).fit(images, masks, attributes)
    assert isinstance(anonymizer, KSameSelect)
    key = lambda i: (attributes[i]["attributes"]["Male"], attributes[i]["attributes"]["Smiling"])  # noqa: E731
    # groups: (0,0) 16, (1,0) 16, (0,1) 4, (1,1) 4 faces: all have >= 3, so no pooling
    assert anonymizer.pooled_groups_ == []
    assert all(len({key(i) for i in cluster}) == 1 for cluster in anonymizer.clusters_)
    assert min(len(c) for c in anonymizer.clusters_) >= 3
    out = anonymizer.anonymize(images, masks, attributes)
    assert min(Counter(o.numpy().tobytes() for o in out).values()) >= 3


def test_ksame_select_pools_groups_smaller_than_k():
    images, _ = identity_faces(40, seed=5)
    masks = full_masks(images)
    attributes = [{"attributes": {"Male": i % 2, "Smiling": int(i % 5 == 0)}} for i in range(40)]
    anonymizer = KSameSelect(k=5).fit(images, masks, attributes)
    assert sorted(anonymizer.pooled_groups_) == [("0", "1"), ("1", "1")]  # 4 faces each
    assert min(len(c) for c in anonymizer.clusters_) >= 5
    out = anonymizer.anonymize(images, masks)
    assert min(Counter(o.numpy().tobytes() for o in out).values()) >= 5


def test_ksame_select_names_a_missing_attribute():
    images, _ = identity_faces(12)
    with pytest.raises(UserError) as info:
        KSameSelect(k=3, attributes=["Male", "Eyeglasses"]).fit(images, full_masks(images), [{"attributes": {"Male": 1}}] * 12)
    assert "'Eyeglasses'" in str(info.value) and "Male" in str(info.value)
    with pytest.raises(UserError, match="annotations"):
        KSameSelect(k=3).fit(images, full_masks(images), None)


@pytest.mark.parametrize("name,k", [("ksame-pixel", 10), ("ksame-pixel-k2", 2), ("ksame-pixel-k5", 5), ("ksame-select", 10), ("ksame-select-k5", 5)])
def test_registered_with_params(name, k):
    anonymizer = ANONYMIZERS.build(name)
    assert anonymizer.requires_fit and not anonymizer.stochastic and anonymizer.k == k
    params = anonymizer.get_params()
    assert type(anonymizer)(**params).get_params() == params


@pytest.mark.parametrize("params", [{"k": 0}, {"k": 2.5}, {"k": True}])
def test_bad_k(params):
    with pytest.raises(UserError, match="k must be"):
        ANONYMIZERS.build("ksame-pixel", **params)
