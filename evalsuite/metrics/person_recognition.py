"""Person recognition rates of the naeil-style recognizers (Sun et al. 2018, Table 1).

Closed-set identification accuracy (top-1) of a linear SVM over identities, on features
from the head region (``head_accuracy``) or from the whole full-person image
(``body_head_accuracy``); see :mod:`attacks.person_recognizer`. Lower is more private.
"""
from __future__ import annotations

import numpy as np

from evalsuite.metrics.spec import MetricSpec, register_metric

__all__ = ["PERSON_RECOGNITION_METRICS", "accuracy"]

PERSON_RECOGNITION_METRICS: tuple[str, ...] = ("head_accuracy", "body_head_accuracy")


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Top-1 accuracy: the share of equal entries (nan for none)."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.shape != truth.shape:
        raise ValueError(f"predictions {predicted.shape} and labels {truth.shape} differ in shape")
    return float((predicted == truth).mean()) if truth.size else float("nan")


register_metric(MetricSpec(
    "head_accuracy", "Person recognition rate (top-1) of a linear SVM on head-crop CNN features (Sun et al. 'head')",
    higher_is_better=False, category="privacy", unit="rate", label="head",
))
register_metric(MetricSpec(
    "body_head_accuracy", "Person recognition rate (top-1) of a linear SVM on full-person (head + body) CNN features (Sun et al. 'body+head')",
    higher_is_better=False, category="privacy", unit="rate", label="body+head",
))
