"""Chance levels: what an attacker that guesses at random scores on the same evaluation data.

The attacker-strength guard (:mod:`evalsuite.reporting.strength`) compares the attacker's
score on clean data with these values. Each is the exact expectation over a uniformly
random ranking / guess, computed from the evaluation's own structure (gallery sizes, number
of matches, number of identities), so it holds for real datasets as well as the synthetic one.

- Re-identification (Market-1501 conventions, junk removed as in :func:`evaluate_reid`): a
  valid query with ``G`` kept gallery items of which ``m`` match has
  ``P(rank-k hit) = 1 - C(G - m, k) / C(G, k)`` and, for non-interpolated AP,
  ``E[AP] = ((m - 1) / (G - 1) * (G - H_G) + H_G) / G`` with ``H_G`` the G-th harmonic number
  (Bestgen, 2015; checked against simulation in the tests). Chance is their mean over the
  valid queries.
- Closed-set identification over ``n`` identities: top-1 chance ``1 / n``.
- Verification: ROC AUC 0.5, TPR at a false-positive rate ``f``: ``f``.
- Pair verification accuracy: the share of the more frequent label (a constant answer).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import gammaln

__all__ = ["closed_set_chance", "pair_accuracy_chance", "reid_chance", "verification_chance"]


def _log_choose(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def reid_chance(q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, ranks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Expected ``rank{k}`` and ``mAP`` of a uniformly random ranking, over the valid queries.

    Gallery items with the query's pid and camera are junk (removed), and queries without a
    remaining match are skipped, exactly as the evaluator does.
    """
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    same_pid = q_pids[:, None] == g_pids[None, :]
    junk = same_pid & (q_camids[:, None] == g_camids[None, :])
    kept = (~junk).sum(axis=1).astype(np.float64)
    matches = (same_pid & ~junk).sum(axis=1).astype(np.float64)
    valid = matches > 0
    if not valid.any():
        raise ValueError("no query has a match left in the gallery")
    size, hits = kept[valid], matches[valid]
    out = {}
    for k in ranks:
        k_eff = np.minimum(k, size)
        miss = np.where(size - hits >= k_eff, np.exp(_log_choose(size - hits, k_eff) - _log_choose(size, k_eff)), 0.0)
        out[f"rank{k}"] = float(np.mean(1.0 - miss))
    harmonic = np.cumsum(1.0 / np.arange(1, int(size.max()) + 1))[size.astype(np.int64) - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        expected_ap = np.where(size > 1, ((hits - 1) / (size - 1) * (size - harmonic) + harmonic) / size, 1.0)
    out["mAP"] = float(np.mean(expected_ap))
    return out


def closed_set_chance(num_identities: int) -> dict[str, float]:
    """Top-1 accuracy of a uniform guess among ``num_identities`` identities."""
    if num_identities < 1:
        raise ValueError(f"num_identities must be >= 1, got {num_identities}")
    return {"top1": 1.0 / num_identities}


def verification_chance(fprs: dict[str, float]) -> dict[str, float]:
    """ROC AUC of a random score (0.5) and TPR at each named false-positive rate (the rate itself)."""
    return {"roc_auc": 0.5, **{name: float(rate) for name, rate in fprs.items()}}


def pair_accuracy_chance(num_matched: int, num_mismatched: int) -> float:
    """Verification accuracy of a constant answer: the share of the more frequent kind of pair."""
    if num_matched < 0 or num_mismatched < 0 or num_matched + num_mismatched == 0:
        raise ValueError(f"need pairs, got {num_matched} matched and {num_mismatched} mismatched")
    return max(num_matched, num_mismatched) / (num_matched + num_mismatched)
