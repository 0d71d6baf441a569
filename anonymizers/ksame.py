"""``ksame-pixel`` (Newton, Sweeney & Malin 2005) and ``ksame-select`` (Gross et al. 2005).

k-Same replaces every face of a set by the average of a cluster of at least ``k`` faces of
that set, so every surrogate face stands for at least k originals and no recognizer can tell
which of them it came from: matched against the surrogates (or recognising surrogates), it
identifies at most 1/k of the originals (Newton et al., Theorem; the "parrot" attack).

Clustering (Newton et al.'s k-Same-Pixel, made deterministic): the faces are vectors of
their pixels inside the region mask (pixels outside the mask count as 0). While at least
``2k`` faces remain, take the remaining face with the lowest index, and its ``k - 1``
nearest remaining faces (squared Euclidean distance; ties to the lower index) form a
cluster; the last ``k .. 2k - 1`` faces form the final cluster. Every cluster's surrogate is
the pixel-wise mean of its members (rounded to uint8), pasted inside each member's mask.
Distances are computed in float64 from uint8 values, so they are exact integers whatever
the summation order, device or thread count: the clustering is fully deterministic.

``ksame-select`` (k-Same-Select) first partitions the set by the values of the annotation
attributes named in ``attributes`` (Gross et al.: gender, expression; default the CelebA
names ``Male`` and ``Smiling``), then runs k-Same within each part, so surrogates keep those
attributes. A part with fewer than k faces cannot be k-anonymous on its own: all such parts
are pooled into one (with a warning); if that pool is still smaller than k it joins the
smallest part that had enough faces.

k-Same is defined on a closed set. ``fit_on = "anonymized_set"``: ``fit(images, masks,
annotations, ...)`` clusters exactly the set that is then anonymized, and ``anonymize`` may be
called on it in any batches and order: each image is looked up by a hash of its pixels and
gets its cluster's surrogate. An image that was not in the fitted set is refused with a
UserError (fit on every split you anonymize). Identical images in the fitted set share the
surrogate of the first one.

The guarantee is about the region: with the whole aligned face as the region (the default
region of the face protocols), all members of a cluster have identical outputs. With a
smaller mask, pixels outside it stay as they were and may identify the person.

Memory: the (N, N) float64 distance matrix plus the (N, D) float64 pixel matrix
(N = 2,000 crops of 112x112: 32 MB + 600 MB); cost one (N x D) @ (D x N) product.
"""
from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from typing import Sequence

import numpy as np
import torch

from anonymizers.base import Anonymizer, check_batch
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS

log = logging.getLogger(__name__)

DEFAULT_K = 10
DEFAULT_SELECT_ATTRIBUTES = ("Male", "Smiling")
_CHUNK = 1024


def _check_k(name: str, k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserError(f"anonymizer {name!r}: parameter k must be a positive integer, got {k!r}")
    return k


def image_key(image: torch.Tensor) -> str:
    """A hash of one image's pixels and shape (how anonymize finds an image's cluster)."""
    array = np.ascontiguousarray(image.detach().cpu().numpy())
    digest = hashlib.blake2b(array.tobytes(), digest_size=16)
    digest.update(repr(array.shape).encode())
    return digest.hexdigest()


def squared_distances(vectors: torch.Tensor) -> torch.Tensor:
    """(N, N) exact squared Euclidean distances of (N, D) integer-valued float64 vectors."""
    norms = (vectors * vectors).sum(dim=1)
    out = torch.empty(vectors.shape[0], vectors.shape[0], dtype=torch.float64, device=vectors.device)
    for start in range(0, vectors.shape[0], _CHUNK):
        block = vectors[start:start + _CHUNK]
        out[start:start + _CHUNK] = norms[start:start + _CHUNK, None] + norms[None, :] - 2.0 * (block @ vectors.T)
    return out.clamp_(min=0)


def ksame_clusters(vectors: torch.Tensor, k: int) -> list[list[int]]:
    """Newton et al.'s k-Same clusters of the rows of ``vectors`` (N >= k): lists of row indices.

    Deterministic: the lowest remaining index seeds each cluster, ties go to the lower index.
    """
    n = vectors.shape[0]
    if n < k:
        raise ValueError(f"k-same needs at least k={k} faces, got {n}")
    distances = squared_distances(vectors.to(torch.float64))
    alive = torch.ones(n, dtype=torch.bool, device=vectors.device)
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=vectors.device)
    clusters: list[list[int]] = []
    remaining = n
    order = torch.arange(n, device=vectors.device)
    while remaining >= 2 * k:
        seed = int(order[alive][0])
        row = torch.where(alive, distances[seed], inf)
        row[seed] = -1.0  # the seed itself first, even among exact duplicates
        members = torch.sort(row, stable=True).indices[:k]
        alive[members] = False
        remaining -= k
        clusters.append(sorted(int(i) for i in members))
    clusters.append([int(i) for i in order[alive]])
    return clusters


def cluster_means(images: torch.Tensor, assignment: torch.Tensor, clusters: int) -> torch.Tensor:
    """(C, 3, H, W) uint8 rounded pixel-wise means of the images of each cluster.

    Sums of up to 65,793 uint8 values are exact in float32, so the means are exact too.
    """
    flat = images.reshape(images.shape[0], -1).to(torch.float32)
    sums = torch.zeros(clusters, flat.shape[1], dtype=torch.float32, device=images.device).index_add_(0, assignment, flat)
    counts = torch.bincount(assignment, minlength=clusters).to(torch.float32)
    return (sums / counts[:, None]).round_().clamp_(0, 255).to(torch.uint8).reshape(clusters, *images.shape[1:])


class _KSameBase(Anonymizer):
    """Shared fit / lookup machinery of the k-Same family."""

    fit_on = "anonymized_set"
    name = "ksame"

    def __init__(self, *, k: int = DEFAULT_K) -> None:
        self.k = _check_k(self.name, k)
        self.surrogates_: torch.Tensor | None = None  # (C, 3, H, W) uint8
        self.assignment_: np.ndarray | None = None  # (N,) cluster of each fitted image
        self.clusters_: list[list[int]] = []
        self._lookup: dict[str, int] = {}

    # -- subclasses say how the fitted set is partitioned before k-Same runs in each part
    def _partitions(self, n: int, annotations: Sequence[dict] | None) -> list[list[int]]:
        return [list(range(n))]

    def fit(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None = None, sample_ids: Sequence[str] | None = None,
            *, seed: int = 0, device: str | torch.device = "cpu", cache: object = None) -> "_KSameBase":
        """Cluster exactly the set that will be anonymized (see the module docstring); deterministic, seed unused."""
        check_batch(images, masks)
        n = images.shape[0]
        if n < self.k:
            raise UserError(f"anonymizer {self.name!r}: k-same needs at least k={self.k} faces in the set it anonymizes, got {n}; lower k (e.g. {{name: {self.name}, k: {max(1, n)}}}) or anonymize a larger set")
        if annotations is not None and len(annotations) != n:
            raise ValueError(f"got {len(annotations)} annotations for {n} images")
        vectors = (images * masks).reshape(n, -1)
        clusters: list[list[int]] = []
        for part in self._partitions(n, annotations):
            index = torch.as_tensor(part, device=images.device)
            for cluster in ksame_clusters(vectors[index].to(torch.float64), self.k):
                clusters.append(sorted(part[i] for i in cluster))
        assignment = np.empty(n, dtype=np.int64)
        for c, members in enumerate(clusters):
            assignment[members] = c
        surrogates = cluster_means(images, torch.as_tensor(assignment, device=images.device), len(clusters))
        lookup: dict[str, int] = {}
        for i in range(n):
            lookup.setdefault(image_key(images[i]), i)
        self.surrogates_, self.assignment_, self.clusters_, self._lookup = surrogates, assignment, clusters, lookup
        sizes = [len(c) for c in clusters]
        log.info("%s: %d faces in %d clusters of %d-%d (k=%d)", self.name, n, len(clusters), min(sizes), max(sizes), self.k)
        return self

    def fitted_index(self, images: torch.Tensor) -> np.ndarray:
        """Index in the fitted set of each image of a batch; UserError for an image not in it."""
        if self.surrogates_ is None:
            raise UserError(f"anonymizer {self.name!r} must be fitted on the set it anonymizes before anonymize() (k-same is defined on a closed set)")
        index = np.empty(images.shape[0], dtype=np.int64)
        for b in range(images.shape[0]):
            found = self._lookup.get(image_key(images[b]))
            if found is None:
                raise UserError(
                    f"anonymizer {self.name!r}: image {b} of this batch is not in the set it was fitted on "
                    f"({len(self._lookup)} images); k-same is defined on a closed set: fit it on exactly the images you anonymize (each split separately)"
                )
            index[b] = found
        return index

    def _anonymize_region(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None, generator: torch.Generator | None) -> torch.Tensor:
        index = self.fitted_index(images)  # UserError when not fitted or for an unknown image
        assert self.surrogates_ is not None and self.assignment_ is not None
        clusters = torch.as_tensor(self.assignment_[index], device=self.surrogates_.device)
        return self.surrogates_[clusters].to(images.device)

    def state_dict(self) -> dict[str, object]:
        """Surrogates and cluster assignment (tensors), clusters and the pixel-hash lookup (JSON)."""
        if self.surrogates_ is None or self.assignment_ is None:
            return {}
        return {"surrogates": self.surrogates_.cpu(), "assignment": torch.from_numpy(self.assignment_),
                "clusters": self.clusters_, "lookup": self._lookup}

    def load_state(self, state: dict) -> "_KSameBase":
        if state:
            self.surrogates_ = state["surrogates"]
            self.assignment_ = state["assignment"].numpy().astype(np.int64)
            self.clusters_ = [list(map(int, c)) for c in state["clusters"]]
            self._lookup = {str(k): int(v) for k, v in state["lookup"].items()}
        return self

    def anonymize(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None = None,
                  generator: torch.Generator | None = None, sample_ids: Sequence[str] | None = None) -> torch.Tensor:
        """Each image's cluster surrogate inside its mask; UserError for an image not in the fitted set."""
        check_batch(images, masks)
        surrogates = self._anonymize_region(images, masks, annotations, generator)  # refuses unknown images, even with empty masks
        return torch.where(masks.expand_as(images), surrogates, images)


@ANONYMIZERS.register("ksame-pixel", description="k-Same-Pixel (Newton et al. 2005): each face replaced by the mean of a cluster of >= k faces (k=10); fitted on the set it anonymizes")
class KSamePixel(_KSameBase):
    """k-Same-Pixel: clusters of at least k faces in pixel space, each face replaced by its cluster mean."""

    param_names = ("k",)
    name = "ksame-pixel"


@ANONYMIZERS.register("ksame-select", description="k-Same-Select (Gross et al. 2005): k-Same within groups of equal attributes (default Male, Smiling)")
class KSameSelect(_KSameBase):
    """k-Same-Select: k-Same-Pixel run separately within each group of equal selected attributes."""

    param_names = ("k", "attributes")
    name = "ksame-select"

    def __init__(self, *, k: int = DEFAULT_K, attributes: Sequence[str] = DEFAULT_SELECT_ATTRIBUTES) -> None:
        super().__init__(k=k)
        if isinstance(attributes, str):
            attributes = [attributes]
        if not isinstance(attributes, (list, tuple)) or not attributes or not all(isinstance(a, str) and a for a in attributes):
            raise UserError(f"anonymizer 'ksame-select': parameter attributes must be a non-empty list of attribute names, got {attributes!r}")
        self.attributes = list(attributes)
        #: the attribute values of each part that had to be pooled for lack of k faces
        self.pooled_groups_: list[tuple] = []

    def _partitions(self, n: int, annotations: Sequence[dict] | None) -> list[list[int]]:
        if annotations is None:
            raise UserError(f"anonymizer 'ksame-select' needs per-image annotations with attributes {self.attributes}; the protocol passed none")
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, ann in enumerate(annotations):
            attrs = (ann or {}).get("attributes") or {}
            missing = [a for a in self.attributes if a not in attrs]
            if missing:
                available = ", ".join(sorted(map(str, attrs))) or "none"
                raise UserError(
                    f"anonymizer 'ksame-select': image {i} has no attribute {missing[0]!r} (available: {available}); "
                    f"choose attributes the dataset has, e.g. {{name: ksame-select, attributes: [...]}}"
                )
            groups[tuple(str(attrs[a]) for a in self.attributes)].append(i)
        big = {key: members for key, members in sorted(groups.items()) if len(members) >= self.k}
        small = {key: members for key, members in sorted(groups.items()) if len(members) < self.k}
        self.pooled_groups_ = list(small)
        if not small:
            return list(big.values())
        pool = sorted(i for members in small.values() for i in members)
        log.warning("ksame-select: %d attribute groups have fewer than k=%d faces (%s); pooling their %d faces", len(small), self.k, ", ".join(map(str, small)), len(pool))
        parts = list(big.values())
        if len(pool) >= self.k or not parts:
            return parts + [pool]
        smallest = min(range(len(parts)), key=lambda j: (len(parts[j]), j))
        parts[smallest] = sorted(parts[smallest] + pool)
        return parts


for _k in (2, 5):
    ANONYMIZERS.register_preset(f"ksame-pixel-k{_k}", "ksame-pixel", description=f"k-Same-Pixel with k={_k}", k=_k)
    ANONYMIZERS.register_preset(f"ksame-select-k{_k}", "ksame-select", description=f"k-Same-Select with k={_k} (attributes Male, Smiling)", k=_k)
