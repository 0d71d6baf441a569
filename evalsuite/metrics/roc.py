"""Verification ROC curves for every privacy protocol, and TPR at a fixed FPR for re-identification.

Curves are stored per cell in the run folder (``OUT/curves/<cell_key>.npz``, written by the
runner) and drawn by the report as ROC and DET plots. A curve is the TPR at a fixed grid of
false-positive rates (:data:`FPR_GRID`, log-spaced from 1e-5 to 1, plus the targets of
:data:`evalsuite.metrics.identification.FPR_TARGETS`), so curves of several seeds average
point by point and the stored size does not grow with the number of pairs.

The operating point at each FPR follows the rule of :mod:`evalsuite.metrics.identification`
(the lowest threshold whose FPR is at most the target, no interpolation), computed here
without scikit-learn's full ``roc_curve``: with ``k = floor(target * impostors)`` impostors
allowed above the threshold, the TPR is the share of genuine scores strictly above the
``(k + 1)``-th highest impostor score (all genuine scores when every impostor may pass).
That is the same number (tested against ``tpr_at_fpr``) at a fraction of the memory, which
matters for re-identification: every (query, gallery) pair of Market-1501 is 53 million pairs.

Re-identification verification (``reid_tpr_at_fpr1`` / ``reid_tpr_at_fpr01``): every
(query, gallery) pair except junk (same identity and camera, removed as by the ranking
metrics) is scored by negative distance; genuine pairs share the identity.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from evalsuite.metrics.identification import FPR_TARGETS
from evalsuite.metrics.spec import MetricSpec, register_metric

__all__ = ["FPR_GRID", "REID_VERIFICATION_METRICS", "fpr_cuts", "reid_pairs", "reid_verification", "roc_points", "tpr_at_fprs"]

FPR_GRID = np.unique(np.concatenate([np.logspace(-5, 0, 51), list(FPR_TARGETS.values())]))
REID_FPR_TARGETS = {"reid_tpr_at_fpr1": 0.01, "reid_tpr_at_fpr01": 0.001}
REID_VERIFICATION_METRICS: tuple[str, ...] = tuple(REID_FPR_TARGETS)

register_metric(MetricSpec("reid_tpr_at_fpr1", "re-id verification TPR at FPR 1% over every (query, gallery) pair, junk removed (negative distance as score)",
                           higher_is_better=False, category="privacy", unit="rate", label="TPR@1%"))
register_metric(MetricSpec("reid_tpr_at_fpr01", "re-id verification TPR at FPR 0.1% over every (query, gallery) pair, junk removed (negative distance as score)",
                           higher_is_better=False, category="privacy", unit="rate", label="TPR@0.1%"))


def tpr_at_fprs(genuine: Any, scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(tpr, achieved fpr)`` at each FPR target (the rule in the module docstring)."""
    genuine, scores = np.asarray(genuine, dtype=bool).ravel(), np.asarray(scores).ravel()
    if scores.dtype.kind != "f":
        scores = scores.astype(np.float64)
    if genuine.all() or not genuine.any():
        raise ValueError("verification needs both genuine and impostor pairs")
    impostor = np.sort(scores[~genuine])[::-1]  # descending
    positive = np.sort(scores[genuine])
    n_imp, n_gen = impostor.size, positive.size
    cuts = fpr_cuts(impostor, targets, descending=True)
    tpr, fpr = np.ones(len(cuts)), np.ones(len(cuts))
    inside = np.isfinite(cuts)
    cut = cuts[inside]
    tpr[inside] = (n_gen - np.searchsorted(positive, cut, side="right")) / n_gen
    fpr[inside] = np.searchsorted(-impostor, -cut, side="left") / n_imp  # impostors strictly above the cut
    return tpr, fpr


def fpr_cuts(impostor_scores: Any, targets: Any, descending: bool = False) -> np.ndarray:
    """The threshold of the rule in the module docstring at each FPR target: accept a pair when its
    score is strictly above it (the ``(k + 1)``-th highest impostor score; -inf when every impostor may pass).
    ``descending``: the scores are already sorted from the highest."""
    impostor = np.asarray(impostor_scores).ravel()
    impostor = impostor if descending else np.sort(impostor)[::-1]
    allowed = np.floor(np.atleast_1d(np.asarray(targets, dtype=np.float64)) * impostor.size + 1e-9).astype(np.int64)
    inside = allowed < impostor.size
    cuts = np.full(allowed.shape, -np.inf)
    cuts[inside] = impostor[allowed[inside]]  # the (k + 1)-th highest impostor score must be rejected
    return cuts


def roc_points(genuine: Any, scores: Any) -> dict[str, np.ndarray]:
    """The curve stored per cell: ``fpr_grid``, ``tpr`` at it and the ``fpr`` actually reached."""
    tpr, fpr = tpr_at_fprs(genuine, scores, FPR_GRID)
    genuine = np.asarray(genuine, dtype=bool)
    return {"fpr_grid": FPR_GRID.copy(), "tpr": tpr, "fpr": fpr,
            "num_genuine": np.array(int(genuine.sum())), "num_impostor": np.array(int((~genuine).sum()))}


def reid_pairs(q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, genuine)``: the non-junk (query, gallery) pairs as a (Q, G) mask, and which of the kept
    pairs share the identity (flat, in ``keep``'s order). It depends on the labels only: compute it once per dataset."""
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    same = q_pids[:, None] == g_pids[None, :]
    keep = ~(same & (np.asarray(q_camids)[:, None] == np.asarray(g_camids)[None, :]))
    return keep, same[keep]


def reid_verification(distmat: Any, pairs: tuple[np.ndarray, np.ndarray]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Re-id TPR at 1% / 0.1% FPR and the ROC curve, over the non-junk pairs of :func:`reid_pairs`."""
    dist = np.asarray(distmat.detach().cpu().numpy() if hasattr(distmat, "detach") else distmat)
    keep, genuine = pairs
    scores = np.negative(dist[keep])  # float32 stays float32: half the memory on Market-sized sets
    tpr, _ = tpr_at_fprs(genuine, scores, list(REID_FPR_TARGETS.values()))
    return dict(zip(REID_FPR_TARGETS, map(float, tpr))), roc_points(genuine, scores)
