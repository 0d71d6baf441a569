"""Attribute utility: how well a classifier trained on clean images still reads attributes
(gender, age group...) from anonymized ones.

:class:`AttributeUtility` trains one attribute classifier per seed on the clean training
images (:func:`evalsuite.metrics.attributes.train_attribute_classifier`, cached on disk
through :class:`evalsuite.trained_models.TrainedModels`) and scores an anonymized evaluation
set against the same classifier's accuracy on the originals.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from evalsuite.config import stable_hash
from evalsuite.metrics.attributes import AttributeConfig, AttributeEncoder, attribute_accuracies, train_attribute_classifier
from evalsuite.trained_models import TrainedModels


class AttributeUtility:
    """``names``: the attributes (:func:`~evalsuite.metrics.attributes.select_attributes`);
    ``key_data``: what else identifies the training data in the cache key (dataset fingerprint...)."""

    def __init__(self, names: Sequence[str], config: AttributeConfig, models: TrainedModels[Any], key_data: dict[str, Any],
                 train: tuple[torch.Tensor, list[dict[str, Any]]], originals: tuple[torch.Tensor, list[dict[str, Any]]], device: str) -> None:
        self.encoder = AttributeEncoder(names, train[1])
        self.config = config
        self.models = models
        self.key_data = key_data
        self.train = train
        self.originals = originals
        self.device = device
        self._original: dict[str, dict[str, float]] = {}

    def classifier(self, seed: int) -> tuple[Any, str]:
        """The clean-trained classifier of ``seed`` and its key."""
        from evalsuite.metrics.classifier import SmallCNN

        key = stable_hash({**self.key_data, "attributes": self.encoder.state(), "seed": seed})

        def load(path: Any) -> Any:
            model = SmallCNN([len(self.encoder.classes[n]) for n in self.encoder.names], width=self.config.width)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()

        model, _ = self.models.get(key, load, lambda: train_attribute_classifier(self.train[0], self.encoder, self.train[1], self.config, seed, self.device),
                                   lambda m: m.state_dict())
        return model, key

    def scores(self, anonymized: torch.Tensor, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
        """``attribute_accuracy`` on ``anonymized`` (the evaluation images anonymized) and, in the extras,
        the accuracy on the originals and per attribute."""
        model, key = self.classifier(seed)
        if key not in self._original:
            self._original[key] = attribute_accuracies(model, self.encoder, self.originals[0], self.originals[1], self.device)
        original = self._original[key]
        accuracy = attribute_accuracies(model, self.encoder, anonymized, self.originals[1], self.device)
        per_attribute = {name: {"anonymized": accuracy[name], "original": original[name]} for name in accuracy}
        metrics = {"attribute_accuracy": float(np.mean(list(accuracy.values())))} if accuracy else {}
        extra = {"attribute_accuracy_original": float(np.mean(list(original.values()))) if original else math.nan, "attribute_accuracy_per_attribute": per_attribute}
        return metrics, extra
