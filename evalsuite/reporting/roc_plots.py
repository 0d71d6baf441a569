"""ROC and DET plots from the curves the runs stored (``OUT/curves/<cell_key>.npz``).

One figure per (group, attack): on the left the ROC (TPR against FPR, log FPR axis), on the
right the DET (miss rate against FPR on normal-deviate axes, as in speaker and face
verification). One line per anonymizer, averaged over its seeds point by point on the
shared FPR grid (:data:`evalsuite.metrics.roc.FPR_GRID`); dotted verticals mark 1% and 0.1%
FPR, and the legend gives each anonymizer's TPR there.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.stats import norm

from evalsuite.reporting.plots import Plot, _slug, plt, to_png
from evalsuite.reporting.results import Group

log = logging.getLogger(__name__)

MARKED_FPRS = (0.01, 0.001)


def _read_curve(group: Group, row: dict[str, Any]) -> dict[str, np.ndarray] | None:
    relative = row.get("curves_file")
    if not relative:
        return None
    for source in group.sources:
        path = Path(source.folder) / relative
        if path.is_file():
            try:
                with np.load(path) as data:
                    return {k: data[k] for k in data.files}
            except (OSError, ValueError) as exc:
                log.warning("cannot read the curve %s (%s); left out of the ROC plot", path, exc)
                return None
    log.info("curve %s of %s / %s not found beside the results; left out of the ROC plot", relative, row["anonymizer"], row["attack"])
    return None


def mean_curves(group: Group, attack: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{anonymizer label: (fpr grid, mean tpr over seeds)}`` of one attack, in the group's order."""
    per_label: dict[str, list[np.ndarray]] = {}
    grid: np.ndarray | None = None
    for row in group.rows:
        if row["attack"] != attack:
            continue
        curve = _read_curve(group, row)
        if curve is None:
            continue
        if grid is None:
            grid = curve["fpr_grid"]
        elif not np.array_equal(grid, curve["fpr_grid"]):
            log.warning("%s / %s: a curve on another FPR grid; left out", row["anonymizer"], attack)
            continue
        per_label.setdefault(str(row["anonymizer"]), []).append(curve["tpr"])
    assert grid is not None or not per_label
    return {label: (grid, np.mean(per_label[label], axis=0)) for label in group.anonymizers if label in per_label}  # type: ignore[misc]


def _tpr_at(grid: np.ndarray, tpr: np.ndarray, fpr: float) -> float:
    return float(tpr[int(np.argmin(np.abs(grid - fpr)))])


def roc_figure(group: Group, attack: str) -> Plot | None:
    curves = mean_curves(group, attack)
    if not curves:
        return None
    fig, (roc, det) = plt.subplots(1, 2, figsize=(10, 4))
    clip = 1e-5
    for index, (label, (grid, tpr)) in enumerate(curves.items()):
        marks = ", ".join(f"{_tpr_at(grid, tpr, f) * 100:.1f}%" for f in MARKED_FPRS)
        color = f"C{index % 10}"
        roc.plot(grid, tpr, color=color, label=f"{label} (TPR@1%, 0.1%: {marks})")
        det.plot(norm.ppf(np.clip(grid, clip, 1 - clip)), norm.ppf(np.clip(1 - tpr, clip, 1 - clip)), color=color, label=label)
    for fpr in MARKED_FPRS:
        roc.axvline(fpr, color="0.5", ls=":", lw=1)
        det.axvline(norm.ppf(fpr), color="0.5", ls=":", lw=1)
    roc.set_xscale("log")
    roc.set_xlim(1e-5, 1)
    roc.set_ylim(0, 1.01)
    roc.set_xlabel("false positive rate")
    roc.set_ylabel("true positive rate (attacker success)")
    roc.legend(fontsize=7, loc="upper left")
    ticks = np.array([0.001, 0.01, 0.1, 0.5, 0.9, 0.99])
    for axis in (det.xaxis, det.yaxis):
        axis.set_ticks(norm.ppf(ticks), [f"{t:g}" for t in ticks])
    det.set_xlim(norm.ppf(5e-4), norm.ppf(0.995))
    det.set_ylim(norm.ppf(5e-4), norm.ppf(0.995))
    det.set_xlabel("false positive rate (normal deviate scale)")
    det.set_ylabel("miss rate (normal deviate scale)")
    for ax in (roc, det):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{attack} attacker: verification ROC / DET ({group.key.protocol} on {group.key.dataset})", fontsize=10)
    caption = (f"verification ROC (left) and DET (right) of the {attack} attacker per anonymizer, mean over seeds; "
               "dotted lines at 1% and 0.1% FPR; lower curves (higher on the DET) are more private")
    return Plot(name=f"roc-{_slug(group.key.protocol)}-{_slug(attack)}", title=f"{attack} ROC / DET", caption=caption, png=to_png(fig), kind="roc")


def roc_plots(groups: Sequence[Group]) -> list[Plot]:
    """ROC / DET figures of every group and attack whose rows name stored curves."""
    plots = []
    for group in groups:
        if not any(row.get("curves_file") for row in group.rows):
            continue
        for attack in group.attacks:
            plot = roc_figure(group, attack)
            if plot is not None:
                plots.append(plot)
    return plots
