"""k-fold pair verification metrics (LFW's protocol): accuracy, ROC AUC, TAR at fixed FAR.

Every pair has a similarity score and a label (same person or not). For each fold in turn,
the other folds are the *calibration* pairs and the fold itself the *test* pairs:

- ``pair_accuracy``: the threshold that maximises accuracy on the calibration pairs (accept a
  pair when its score is >= it; candidates are the midpoints between consecutive distinct
  calibration scores, the first best one wins) is applied to the test fold: LFW's standard
  10-fold accuracy. A single-fold file (pairsDevTest) calibrates on the fold itself;
- ``pair_auc``: the test fold's ROC AUC (scikit-learn; needs no threshold);
- ``pair_tar_at_far1`` / ``pair_tar_at_far01``: the threshold whose false-accept rate on the
  other folds' *test* pairs is at most 1e-2 / 1e-3 (the rule of :func:`evalsuite.metrics.roc.fpr_cuts`:
  accept scores strictly above the (k + 1)-th highest impostor score, no interpolation) applied
  to the test fold: the share of its matched pairs accepted (the false-accept rate it reaches
  there is kept beside it). 300 mismatched pairs per fold cannot resolve 1e-3 by themselves;
  the other 2,700 can. These thresholds always come from the kind of pairs being tested: a
  threshold set on clean pairs can accept every anonymized pair (a grey mask scores above
  every clean impostor), a TAR of 100% at a FAR of 100% that says nothing.

Each metric is the mean over folds; :func:`fold_summary` gives the standard deviation
(``ddof=1``) and LFW's standard error (std / sqrt(folds)) too. The calibration scores may come
from other pairs than the test scores (a naive attacker calibrates on clean pairs and is
tested on anonymized ones; only the accuracy threshold reads them): ``calibration`` and
``test`` share the labels and fold numbers.
All four are privacy metrics: lower is more private.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from evalsuite.metrics.roc import fpr_cuts
from evalsuite.metrics.spec import MetricSpec, register_metric

__all__ = ["FAR_TARGETS", "PAIR_METRICS", "best_accuracy_threshold", "fold_summary", "k_fold_verification"]

FAR_TARGETS = {"pair_tar_at_far1": 1e-2, "pair_tar_at_far01": 1e-3}
PAIR_METRICS: tuple[str, ...] = ("pair_accuracy", "pair_auc", *FAR_TARGETS)

register_metric(MetricSpec("pair_accuracy", "k-fold pair verification accuracy (threshold that maximises accuracy on the other folds; LFW protocol)",
                           higher_is_better=False, category="privacy", unit="rate", decimals=1, label="acc"))
register_metric(MetricSpec("pair_auc", "pair verification ROC AUC, mean over folds", higher_is_better=False, category="privacy",
                           unit="score", decimals=3, label="AUC"))
register_metric(MetricSpec("pair_tar_at_far1", "pair verification TAR at FAR 1e-2 (threshold from the other folds' mismatched pairs), mean over folds",
                           higher_is_better=False, category="privacy", unit="rate", decimals=1, label="TAR@FAR1e-2"))
register_metric(MetricSpec("pair_tar_at_far01", "pair verification TAR at FAR 1e-3 (threshold from the other folds' mismatched pairs), mean over folds",
                           higher_is_better=False, category="privacy", unit="rate", decimals=1, label="TAR@FAR1e-3"))


def best_accuracy_threshold(scores: Any, same: Any) -> float:
    """The threshold (accept ``score >= t``) with the highest accuracy on ``(scores, same)``."""
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    values = np.unique(scores)
    candidates = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2, [values[-1] + 1.0]])
    genuine, impostor = np.sort(scores[same]), np.sort(scores[~same])
    accepted = genuine.size - np.searchsorted(genuine, candidates, side="left")
    rejected = np.searchsorted(impostor, candidates, side="left")
    return float(candidates[int(np.argmax(accepted + rejected))])


def k_fold_verification(calibration: Any, test: Any, same: Any, folds: Any) -> dict[str, np.ndarray]:
    """Per-fold values of :data:`PAIR_METRICS` (plus ``threshold`` and the test ``far`` at each
    FAR target); ``calibration`` / ``test``: one score per pair, ``same``: labels, ``folds``: fold numbers."""
    calibration, test = np.asarray(calibration, dtype=np.float64), np.asarray(test, dtype=np.float64)
    same, folds = np.asarray(same, dtype=bool), np.asarray(folds)
    numbers = np.unique(folds)
    out: dict[str, list[float]] = {name: [] for name in (*PAIR_METRICS, "threshold", *(f"{n}_far" for n in FAR_TARGETS))}
    for fold in numbers:
        inside = folds == fold
        # a single fold (pairsDevTest): calibrate on the fold itself
        outside = ~inside if numbers.size > 1 else inside
        threshold = best_accuracy_threshold(calibration[outside], same[outside])
        out["threshold"].append(threshold)
        out["pair_accuracy"].append(float(np.mean((test[inside] >= threshold) == same[inside])))
        out["pair_auc"].append(float(roc_auc_score(same[inside], test[inside])) if 0 < same[inside].sum() < inside.sum() else 0.5)
        cuts = fpr_cuts(test[outside & ~same], list(FAR_TARGETS.values()))
        for name, cut in zip(FAR_TARGETS, cuts):
            out[name].append(float(np.mean(test[inside & same] > cut)))
            out[f"{name}_far"].append(float(np.mean(test[inside & ~same] > cut)))
    return {name: np.asarray(values) for name, values in out.items()}


def fold_summary(per_fold: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """``{metric: {mean, std, se, values}}`` over folds (std with ddof=1; se = std / sqrt(folds), LFW's)."""
    out = {}
    for name, values in per_fold.items():
        std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
        out[name] = {"mean": float(np.mean(values)), "std": std, "se": std / float(np.sqrt(values.size)), "values": [float(v) for v in values]}
    return out
