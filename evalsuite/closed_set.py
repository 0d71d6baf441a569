"""Closed-set identification sets: the enrolment / probe split, the fit groups of set-fitted
anonymizers, and the identity classifier an attacker fits on enrolment embeddings.

**Split rule** (:func:`closed_set_split`). Identities with fewer than ``min_images`` images
are dropped; ``max_identities`` keeps a seeded random subset of the rest. Each identity's
images (sorted by path) are shuffled with ``np.random.default_rng([seed, sha1(identity)])``
and the first ``n * enrol_fraction`` rounded half up (at least 1, at most n - 1) become its
*enrolment* images, the rest its *probe* images. The dataset's own partition (CelebA's
train / val / test, which splits identities) is ignored unless ``partitions`` names the ones
to keep. The split depends on these settings only, never on the run seed.

**Fit groups** (:func:`fit_groups`). Anonymizers fitted on the set they anonymize (k-Same,
``fit_on: anonymized_set``) are fitted per group. ``distinct`` cuts a set into groups holding
at most one image per identity (group j = the j-th image of every identity): k-Same is
defined on a face set of distinct people (Newton et al.), and clusters that pool several
images of one person would leak that person's average face. ``split`` fits once on the
whole set. :func:`joint_order` orders a joint enrolment + probe set (the parrot attack) so
that every group mixes enrolment faces of some people with probe faces of others.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from evalsuite.data.faces import FaceDataset, FaceSample
from evalsuite.errors import UserError

FIT_GROUPS = ("distinct", "split")
CLASSIFIERS = ("logistic", "linear_svm")


def closed_set_split(dataset: FaceDataset, enrol_fraction: float, seed: int, min_images: int = 2,
                     max_identities: int | None = None, max_images_per_identity: int | None = None,
                     partitions: list[str] | None = None) -> tuple[list[FaceSample], list[FaceSample], list[str]]:
    """(enrolment samples, probe samples, identities) by the split rule in the module docstring."""
    if not 0 < enrol_fraction < 1:
        raise UserError(f"split.enrol_fraction={enrol_fraction} must lie strictly between 0 and 1")
    if min_images < 2:
        raise UserError(f"split.min_images={min_images} must be >= 2 (an identity needs an enrolment and a probe image)")
    groups = dataset.identities()
    if partitions:
        groups = {k: [s for s in v if s.split in partitions] for k, v in groups.items()}
    eligible = {k: v for k, v in groups.items() if len(v) >= min_images}
    if len(eligible) < 2:
        raise UserError(f"dataset {dataset.name} ({dataset.root}) has {len(eligible)} identities with >= {min_images} images"
                        + (f" in partitions {partitions}" if partitions else "") + "; closed-set identification needs at least 2 (lower split.min_images or use another dataset)")
    names = sorted(eligible)
    if max_identities is not None and max_identities < len(names):
        if max_identities < 2:
            raise UserError(f"split.max_identities={max_identities} must be >= 2")
        keep = np.random.default_rng([seed, 1]).choice(len(names), size=max_identities, replace=False)
        names = [names[i] for i in sorted(keep)]
    enrol, probe = [], []
    for name in names:
        samples = eligible[name]
        rng = np.random.default_rng([seed, int(hashlib.sha1(name.encode()).hexdigest()[:12], 16)])
        order = [samples[i] for i in rng.permutation(len(samples))]
        if max_images_per_identity is not None:
            order = order[:max(2, max_images_per_identity)]
        n_enrol = min(len(order) - 1, max(1, int(np.floor(len(order) * enrol_fraction + 0.5))))
        enrol += order[:n_enrol]
        probe += order[n_enrol:]
    return enrol, probe, names


def shared_identities(gallery: Sequence[Any], query: Sequence[Any]) -> tuple[list[Any], list[Any], set[Any]]:
    """(gallery samples of identities that have queries, queries of identities in that gallery,
    those identities): a closed set cut from a re-id style gallery / query pair (by ``pid``)."""
    queried = {s.pid for s in query}
    kept = [s for s in gallery if s.pid in queried]
    enrolled = {s.pid for s in kept}
    return kept, [s for s in query if s.pid in enrolled], enrolled


def fit_groups(labels: np.ndarray, mode: str, order: np.ndarray | None = None) -> list[np.ndarray]:
    """Index groups a set-fitted anonymizer is fitted and applied on (``mode``: see :data:`FIT_GROUPS`).

    ``distinct``: group j holds the j-th image of every identity, images taken in the order
    of ``order`` (default: as listed)."""
    if mode == "split":
        return [np.arange(len(labels))]
    visit = np.arange(len(labels)) if order is None else np.lexsort((np.arange(len(labels)), order))
    rank = np.zeros(len(labels), dtype=np.int64)
    seen: dict[int, int] = {}
    for i in visit.tolist():
        label = int(labels[i])
        rank[i] = seen.get(label, 0)
        seen[label] = rank[i] + 1
    return [np.flatnonzero(rank == j) for j in range(int(rank.max()) + 1)]


def pooled_fit_groups(labels: np.ndarray, mode: str, k: int, order: np.ndarray | None = None) -> list[np.ndarray]:
    """:func:`fit_groups` with the groups smaller than ``k`` pooled (into the last big one if still too small)."""
    groups = fit_groups(labels, mode, order)
    big, small = [g for g in groups if len(g) >= k], [g for g in groups if len(g) < k]
    if small:
        pooled = np.concatenate(small)
        if len(pooled) >= k or not big:
            big.append(pooled)
        else:
            big[-1] = np.concatenate([big[-1], pooled])
    return big


def joint_order(enrol_labels: np.ndarray, probe_labels: np.ndarray) -> np.ndarray:
    """The order in which a joint enrolment + probe set is grouped: per identity its enrolment
    and probe images alternate, starting with enrolment for even and probe for odd identity
    indices, so that every group mixes enrolment faces of some people with probe faces of others."""
    def within(labels: np.ndarray) -> np.ndarray:
        index, seen = np.zeros(len(labels), dtype=np.int64), {}
        for i, label in enumerate(labels.tolist()):
            index[i] = seen.get(label, 0)
            seen[label] = index[i] + 1
        return index

    return np.concatenate([2 * within(enrol_labels) + enrol_labels % 2, 2 * within(probe_labels) + 1 - probe_labels % 2])


def fit_identity_classifier(name: str, c: float, max_iter: int, seed: int, embeddings: np.ndarray, labels: np.ndarray) -> Any:
    """The scikit-learn classifier (``name``: see :data:`CLASSIFIERS`) fitted on enrolment embeddings."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        classifier: Any = LogisticRegression(C=c, max_iter=max_iter)
    else:
        from sklearn.svm import LinearSVC

        classifier = LinearSVC(C=c, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(embeddings, labels)
    return classifier
