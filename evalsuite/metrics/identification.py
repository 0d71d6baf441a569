"""Face identification and verification metrics (UP-GAN Table 1, plus the low-FPR regime).

- ``top1``: closed-set identification accuracy: the share of probe faces whose predicted
  identity (the attacker's classifier on their embedding) is their true identity.
- ``roc_auc``: verification ROC AUC over every (probe, identity template) pair: genuine pairs
  (the probe's own identity) against impostor pairs (every other enrolled identity), scored
  by similarity (scikit-learn's ``roc_auc_score``).
- ``tpr_at_fpr1`` / ``tpr_at_fpr01``: the verification true-positive rate at a false-positive
  rate of 1% / 0.1%. Threshold rule: from scikit-learn's ``roc_curve`` (all thresholds,
  ``drop_intermediate=False``), the operating point with the highest TPR among those whose
  FPR is at most the target, i.e. the lowest threshold ``t`` with FPR(score >= t) <= target.
  No interpolation between ROC points, so the FPR actually reached can be below the target
  (reported beside the threshold). When even the highest impostor score must be rejected
  the threshold is above every impostor and the TPR counts the genuine scores above it;
  when no finite threshold qualifies (ties at the top) the TPR is 0 and the threshold None.

All four are privacy metrics from the anonymizer's point of view: lower is more private.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from evalsuite.metrics.spec import MetricSpec, register_metric

log = logging.getLogger(__name__)

IDENTIFICATION_METRICS: tuple[str, ...] = ("top1", "roc_auc", "tpr_at_fpr1", "tpr_at_fpr01")
FPR_TARGETS = {"tpr_at_fpr1": 0.01, "tpr_at_fpr01": 0.001}

register_metric(MetricSpec("top1", "closed-set top-1 face identification accuracy of anonymized probes", higher_is_better=False,
                           category="privacy", unit="rate", decimals=1, label="top-1"))
register_metric(MetricSpec("roc_auc", "face verification ROC AUC (probe vs identity template similarities)", higher_is_better=False,
                           category="privacy", unit="score", decimals=3, label="AUC"))
register_metric(MetricSpec("tpr_at_fpr1", "face verification TPR at FPR 1% (lowest threshold whose FPR <= 1%, no interpolation)",
                           higher_is_better=False, category="privacy", unit="rate", decimals=1, label="TPR@1%"))
register_metric(MetricSpec("tpr_at_fpr01", "face verification TPR at FPR 0.1% (lowest threshold whose FPR <= 0.1%, no interpolation)",
                           higher_is_better=False, category="privacy", unit="rate", decimals=1, label="TPR@0.1%"))


@dataclass(frozen=True)
class OperatingPoint:
    """A verification operating point: accept a pair when its score >= ``threshold``."""

    tpr: float
    fpr: float
    threshold: float | None


def top1_accuracy(predicted: Any, true: Any) -> float:
    """Share of probes whose predicted identity equals the true one."""
    predicted, true = np.asarray(predicted), np.asarray(true)
    if predicted.shape != true.shape or predicted.ndim != 1:
        raise ValueError(f"predicted {predicted.shape} and true {true.shape} labels must be 1-D of the same length")
    if true.size == 0:
        raise ValueError("no probes to score")
    return float(np.mean(predicted == true))


def tpr_at_fpr(genuine: Any, scores: Any, target: float) -> OperatingPoint:
    """The operating point of the rule in the module docstring for FPR target ``target``."""
    genuine, scores = np.asarray(genuine, dtype=bool), np.asarray(scores, dtype=np.float64)
    if not 0 < target < 1:
        raise ValueError(f"FPR target must lie in (0, 1), got {target}")
    if genuine.all() or not genuine.any():
        raise ValueError("verification needs both genuine and impostor pairs")
    fpr, tpr, thresholds = roc_curve(genuine, scores, drop_intermediate=False)
    ok = np.flatnonzero(fpr <= target + 1e-12)
    best = ok[-1]  # fpr is non-decreasing, tpr too: the last qualifying point has the highest TPR
    threshold = float(thresholds[best])
    return OperatingPoint(tpr=float(tpr[best]), fpr=float(fpr[best]), threshold=threshold if math.isfinite(threshold) else None)


def verification_pairs(probe_embeddings: np.ndarray, probe_labels: Any, templates: np.ndarray, template_labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """(genuine flags, cosine similarities) of every probe against every identity template, flattened."""
    probe_labels, template_labels = np.asarray(probe_labels), np.asarray(template_labels)
    scores = np.asarray(probe_embeddings, np.float64) @ np.asarray(templates, np.float64).T
    genuine = probe_labels[:, None] == template_labels[None, :]
    return genuine.ravel(), scores.ravel()


def identity_templates(embeddings: np.ndarray, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """One template per identity: the mean of its L2-normalised embeddings, renormalised."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    emb = np.asarray(embeddings, np.float64)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    means = np.stack([emb[labels == c].mean(axis=0) for c in classes])
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return np.where(norms > 1e-12, means / np.maximum(norms, 1e-12), 0.0), classes


def verification_metrics(genuine: Any, scores: Any) -> tuple[dict[str, float], dict[str, Any]]:
    """``roc_auc``, ``tpr_at_fpr1``, ``tpr_at_fpr01`` and the operating points behind them."""
    genuine, scores = np.asarray(genuine, dtype=bool), np.asarray(scores, dtype=np.float64)
    metrics = {"roc_auc": float(roc_auc_score(genuine, scores))}
    impostors = int((~genuine).sum())
    extra: dict[str, Any] = {"num_genuine_pairs": int(genuine.sum()), "num_impostor_pairs": impostors}
    for name, target in FPR_TARGETS.items():
        point = tpr_at_fpr(genuine, scores, target)
        metrics[name] = point.tpr
        extra[f"{name}_threshold"] = point.threshold
        extra[f"{name}_fpr"] = point.fpr
        if impostors * target < 1:
            log.warning("only %d impostor pairs: FPR %g cannot be resolved (one impostor is %.3g)", impostors, target, 1 / impostors)
    return metrics, extra
