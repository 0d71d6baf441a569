"""Identification / verification metrics against scikit-learn and a brute-force threshold search."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from evalsuite.metrics.identification import (
    IDENTIFICATION_METRICS,
    identity_templates,
    top1_accuracy,
    tpr_at_fpr,
    verification_metrics,
    verification_pairs,
)
from evalsuite.metrics.spec import metric_spec


def brute_force(genuine: np.ndarray, scores: np.ndarray, target: float) -> tuple[float, float]:
    """Highest TPR over every threshold 'accept score >= t' whose FPR <= target (and that t)."""
    best = (0.0, np.inf)
    for t in np.unique(scores):
        accept = scores >= t
        false_positives = (accept & ~genuine).sum()  # counted, so that FPR == target exactly qualifies
        tpr = (accept & genuine).sum() / genuine.sum()
        if false_positives <= target * (~genuine).sum() + 1e-9 and (tpr > best[0] or (tpr == best[0] and t < best[1])):
            best = (float(tpr), float(t))
    return best


def test_hand_made_scores() -> None:
    # 4 genuine, 6 impostors; the top impostor (0.8) beats two genuine pairs
    genuine = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    scores = np.array([0.9, 0.85, 0.7, 0.3, 0.8, 0.6, 0.5, 0.4, 0.2, 0.1])
    metrics, extra = verification_metrics(genuine, scores)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(genuine, scores)) == pytest.approx(19 / 24)  # pairs won: 6 + 6 + 5 + 2
    # FPR 1% with 6 impostors: no impostor may be accepted -> threshold 0.85, TPR 2/4
    assert metrics["tpr_at_fpr1"] == 0.5 and extra["tpr_at_fpr1_threshold"] == 0.85 and extra["tpr_at_fpr1_fpr"] == 0.0
    assert tpr_at_fpr(genuine, scores, 0.2).tpr == 0.75  # one impostor of 6 (16.7%) allowed: threshold 0.7
    assert tpr_at_fpr(genuine, scores, 0.2).threshold == 0.7
    assert extra["num_genuine_pairs"] == 4 and extra["num_impostor_pairs"] == 6


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("target", [0.01, 0.001, 0.05])
def test_tpr_at_fpr_matches_brute_force_and_roc_curve(seed: int, target: float) -> None:
    rng = np.random.default_rng(seed)
    genuine = np.r_[np.ones(150, bool), np.zeros(3000, bool)]
    scores = np.r_[rng.normal(1.5, 1, 150), rng.normal(0, 1, 3000)].round(2)  # rounding makes ties
    point = tpr_at_fpr(genuine, scores, target)
    tpr, threshold = brute_force(genuine, scores, target)
    assert point.tpr == pytest.approx(tpr)
    assert point.threshold == pytest.approx(threshold)
    assert point.fpr <= target + 1e-12
    # the highest ROC point within the target; drop_intermediate=False because the default drops
    # collinear points, and one of them can be the best operating point (seed 0, FPR 0.1%: 3 of 3000)
    fpr, tprs, _ = roc_curve(genuine, scores, drop_intermediate=False)
    assert point.tpr == pytest.approx(tprs[fpr <= target + 1e-12].max())


def test_ties_at_the_top_give_zero_tpr_and_no_threshold() -> None:
    genuine = np.array([1, 0, 0, 0], bool)
    scores = np.zeros(4)
    point = tpr_at_fpr(genuine, scores, 0.01)
    assert point.tpr == 0.0 and point.threshold is None
    metrics, _ = verification_metrics(genuine, scores)
    assert metrics["roc_auc"] == 0.5


def test_perfect_separation() -> None:
    genuine = np.array([1, 1, 0, 0, 0], bool)
    metrics, extra = verification_metrics(genuine, np.array([0.9, 0.8, 0.3, 0.2, 0.1]))
    assert metrics == {"roc_auc": 1.0, "tpr_at_fpr1": 1.0, "tpr_at_fpr01": 1.0}
    assert extra["tpr_at_fpr01_threshold"] == 0.8


def test_top1_and_errors() -> None:
    assert top1_accuracy([1, 2, 3, 3], [1, 2, 0, 3]) == 0.75
    with pytest.raises(ValueError):
        top1_accuracy([1, 2], [1])
    with pytest.raises(ValueError):
        tpr_at_fpr(np.ones(3, bool), np.arange(3.0), 0.01)


def test_templates_and_pairs() -> None:
    emb = np.array([[1, 0], [0.8, 0.6], [0, 1], [0, 2]], float)
    labels = np.array([5, 5, 7, 7])
    templates, classes = identity_templates(emb, labels)
    assert list(classes) == [5, 7]
    np.testing.assert_allclose(np.linalg.norm(templates, axis=1), 1)
    np.testing.assert_allclose(templates[1], [0, 1])
    np.testing.assert_allclose(templates[0], np.array([1.8, 0.6]) / np.linalg.norm([1.8, 0.6]))
    genuine, scores = verification_pairs(np.array([[0, 1.0]]), np.array([7]), templates, classes)
    assert genuine.tolist() == [False, True]
    np.testing.assert_allclose(scores, [templates[0][1], 1.0])


def test_specs_are_registered_as_privacy_rates() -> None:
    for name in IDENTIFICATION_METRICS:
        spec = metric_spec(name)
        assert spec is not None and spec.category == "privacy" and not spec.higher_is_better
    assert metric_spec("roc_auc").unit == "score" and metric_spec("top1").unit == "rate"
