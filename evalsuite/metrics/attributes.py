"""Attribute-preservation utility (UP-GAN's "utility"): do anonymized images keep their attributes?

An attribute classifier (:class:`~evalsuite.metrics.classifier.SmallCNN`, one head per
attribute) is trained on the clean training split from the annotations' ``attributes``
(the synthetic pedestrians carry clothing colours, hair, glasses, hat, bag, build, ...;
real data through a sidecar). It is then applied to the original and to the anonymized
evaluation images: per attribute, the accuracy on each; ``attribute_accuracy`` is the mean
over attributes of the accuracy on the anonymized images (the original images' accuracy is
the ceiling, kept alongside). Only categorical attributes are used (strings, booleans, or
integers with few values); numeric ones such as ``width_factor`` are skipped. An evaluation
label never seen in training counts as a miss.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from evalsuite.errors import UserError
from evalsuite.metrics.classifier import SmallCNN, predict, train_classifier
from evalsuite.metrics.spec import MetricSpec, register_metric

log = logging.getLogger(__name__)

MAX_INTEGER_CLASSES = 10  # integer attributes with more values than this are treated as numeric


@dataclass(frozen=True)
class AttributeConfig:
    names: tuple[str, ...] | None = None  # None: every categorical attribute of the training split
    epochs: int = 15
    batch_size: int = 32
    lr: float = 5e-3
    width: int = 8


def _categorical(value: Any) -> bool:
    return isinstance(value, (str, bool)) or (isinstance(value, (int, np.integer)) and not isinstance(value, bool))


def categorical_attributes(annotations: Sequence[dict[str, Any]]) -> list[str]:
    """Attribute names whose values are categorical and take at least two values."""
    values: dict[str, set] = {}
    numeric: set[str] = set()
    for ann in annotations:
        for name, value in (ann.get("attributes") or {}).items():
            if _categorical(value):
                values.setdefault(name, set()).add(value)
            else:
                numeric.add(name)
    names = []
    for name, seen in sorted(values.items()):
        if name in numeric or len(seen) < 2:
            continue
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in seen) and len(seen) > MAX_INTEGER_CLASSES:
            continue
        names.append(name)
    return names


class AttributeEncoder:
    """Attribute values -> class indices, learned from the training annotations."""

    def __init__(self, names: Sequence[str], annotations: Sequence[dict[str, Any]]) -> None:
        self.names = list(names)
        self.classes: dict[str, list[Any]] = {}
        for name in self.names:
            seen = {(ann.get("attributes") or {}).get(name) for ann in annotations} - {None}
            self.classes[name] = sorted(seen, key=repr)
        self._index = {name: {v: i for i, v in enumerate(c)} for name, c in self.classes.items()}

    def encode(self, annotations: Sequence[dict[str, Any]]) -> torch.Tensor:
        """(N, attributes) long tensor; -1 for a missing or unseen value."""
        out = torch.full((len(annotations), len(self.names)), -1, dtype=torch.long)
        for i, ann in enumerate(annotations):
            attrs = ann.get("attributes") or {}
            for j, name in enumerate(self.names):
                out[i, j] = self._index[name].get(attrs.get(name), -1)
        return out

    def state(self) -> dict[str, Any]:
        return {"names": self.names, "classes": {k: [repr(v) for v in c] for k, c in self.classes.items()}}


def select_attributes(annotations: Sequence[dict[str, Any]], names: Sequence[str] | None) -> list[str]:
    """The attributes to classify: ``names`` (checked) or every categorical one; UserError when there are none."""
    available = categorical_attributes(annotations)
    if names is None:
        if not available:
            raise UserError("attribute accuracy needs categorical 'attributes' annotations on the training images and found none; supply them with dataset.annotations=FILE (re-id sets) or dataset.sidecar=FILE (face datasets: an \"attributes\" object per image)")
        return available
    from evalsuite.errors import did_you_mean

    for name in names:
        if name not in available:
            raise UserError(f"attributes.names lists {name!r}, which is not a categorical attribute with two or more values in the training split: {did_you_mean(name, available)}")
    return list(names)


def train_attribute_classifier(images: torch.Tensor, encoder: AttributeEncoder, annotations: Sequence[dict[str, Any]], config: AttributeConfig, seed: int, device: str = "cpu") -> SmallCNN:
    """The multi-head attribute classifier, trained from scratch on clean images."""
    torch.manual_seed(int(seed))
    model = SmallCNN([len(encoder.classes[n]) for n in encoder.names], width=config.width)
    targets = encoder.encode(annotations)
    return train_classifier(model, images, targets, config.epochs, config.batch_size, config.lr, seed, device, "train attribute classifier")


def attribute_accuracies(model: SmallCNN, encoder: AttributeEncoder, images: torch.Tensor, annotations: Sequence[dict[str, Any]], device: str = "cpu") -> dict[str, float]:
    """Accuracy per attribute over images that carry that attribute (unseen labels count as misses)."""
    logits = predict(model, images, device=device)
    truth = torch.full((len(annotations), len(encoder.names)), -2, dtype=torch.long)
    known = encoder.encode(annotations)
    for i, ann in enumerate(annotations):
        attrs = ann.get("attributes") or {}
        for j, name in enumerate(encoder.names):
            if attrs.get(name) is not None:
                truth[i, j] = known[i, j]  # -1 (unseen in training) can never be predicted
    out = {}
    for j, name in enumerate(encoder.names):
        has = truth[:, j] != -2
        if not bool(has.any()):
            continue
        pred = logits[j].argmax(1)
        out[name] = float((pred[has] == truth[has, j]).float().mean())
    return out


register_metric(MetricSpec(
    "attribute_accuracy",
    "Utility: mean over attributes of a clean-trained attribute classifier's accuracy on the anonymized images (UP-GAN's utility)",
    higher_is_better=True, category="utility", unit="rate", label="Attr. acc.",
))
