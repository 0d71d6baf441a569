"""The one split vocabulary of evalsuite: loaders, protocols and configs name splits with it.

===========  ==============================================================================
split        what it holds
===========  ==============================================================================
``train``    images that attackers, critics, classifiers, detectors and trainable
             anonymizers learn from (identities disjoint from the evaluated ones where the
             dataset has identities)
``val``      held-out images of a dataset's validation partition: the scenes detection AP
             is measured on (COCO val2017, WIDER_val), CelebA's validation partition
``test``     held-out images of a dataset's test partition that are not split into gallery
             and query (CelebA's test partition)
``gallery``  reference images of known identities: the re-identification gallery, the
             *enrolment* images of closed-set identification (face-identification,
             person-recognition)
``query``    the images an attacker tries to identify: re-identification queries, the
             *probe* images of closed-set identification
===========  ==============================================================================

A protocol names its image sets by these splits. Where it joins several (image-quality's
evaluation images, ``splits.eval``) the config lists them. Datasets keep their own on-disk
names; :data:`ON_DISK` says which of them is which split.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from evalsuite.errors import UserError

SPLITS: dict[str, str] = {
    "train": "images attackers, critics, classifiers, detectors and trainable anonymizers learn from",
    "val": "a dataset's validation partition (detection AP is measured on it)",
    "test": "a dataset's test partition, not split into gallery and query (CelebA)",
    "gallery": "reference (enrolment) images of known identities",
    "query": "images an attacker tries to identify (queries, probes)",
}

#: each dataset format's own name of a split (folders, partition codes), by split
ON_DISK: dict[str, dict[str, str]] = {
    "market1501": {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"},  # also the synthetic set
    "celeba": {"train": "0", "val": "1", "test": "2"},  # list_eval_partition.txt codes
    "coco": {"train": "train2017", "val": "val2017"},
    "wider-face": {"train": "WIDER_train", "val": "WIDER_val"},
    "pipa": {"train": "train", "gallery": "test (first half of each identity's instances)", "query": "test (second half)"},
}


def check_split(name: Any, available: Iterable[str], where: str, key: str) -> str:
    """``name`` when it is a split of :data:`SPLITS` that ``where`` has; else one UserError
    naming the valid splits (``key``: the config key that named it)."""
    have = [s for s in SPLITS if s in set(available)]
    if name not in SPLITS:
        raise UserError(f"{key}={name!r} is not a split: the splits are {', '.join(SPLITS)} (evalsuite/splits.py); {where} has {', '.join(have) or 'none'}")
    if name not in have:
        raise UserError(f"{key}={name!r}: {where} has no {name} split; it has {', '.join(have) or 'none'}")
    return str(name)


def check_splits(names: Sequence[Any], available: Iterable[str], where: str, key: str) -> list[str]:
    """:func:`check_split` of every name of a non-empty list."""
    if not names:
        raise UserError(f"{key} is empty: list one or more of {', '.join(s for s in SPLITS if s in set(available))}")
    return [check_split(name, available, where, key) for name in names]


def dataset_splits(dataset: Any) -> list[str]:
    """The splits ``dataset`` offers: re-id datasets train / query / gallery, detection datasets
    their loaders, face datasets the partitions their samples carry."""
    from evalsuite.data.detection import DetectionDataset
    from evalsuite.data.faces import FaceDataset
    from evalsuite.data.types import ReidDataset

    if isinstance(dataset, ReidDataset):
        return ["train", "query", "gallery"]
    if isinstance(dataset, DetectionDataset):
        return list(dataset.loaders)
    if isinstance(dataset, FaceDataset):
        return [s for s in SPLITS if any(sample.split == s for sample in dataset.samples)]
    return []


def train_and_rest(samples: Sequence[Any], train_splits: Iterable[str]) -> tuple[list[Any], list[Any], str]:
    """(training samples, the others, how they were split) of a dataset without a gallery / query
    split (face datasets): samples whose ``split`` is in ``train_splits`` vs the rest; without
    partitions, identities (files, for datasets without identities) go to one side or the other
    by a hash, about half each."""
    import hashlib

    names = {str(n) for n in train_splits}
    partitioned = any(s.split for s in samples)
    train: list[Any] = []
    rest: list[Any] = []
    for sample in samples:
        if partitioned:
            in_train = sample.split in names
        else:
            name = sample.identity if sample.identity is not None else sample.relpath
            in_train = int(hashlib.sha1(str(name).encode()).hexdigest()[:8], 16) % 2 == 0
        (train if in_train else rest).append(sample)
    return train, rest, f"splits {sorted(names)} vs the rest" if partitioned else "identities split in halves by a hash"
