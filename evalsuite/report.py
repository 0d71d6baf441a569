"""The one table builder: results rows -> a paper-style Markdown table.

Rows are anonymizers, columns are metric x attack; values are percentages (mean over seeds,
with the standard error when there is more than one seed); arrows give the direction that
means better privacy (lower re-identification).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence

from evalsuite.metrics.spec import MetricSpec, metric_spec


def mean_and_sem(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (None for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[float, float | None, int]]:
    """(anonymizer, attack, metric) -> (mean, sem, number of seeds)."""
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for row in rows:
        for metric, value in row["metrics"].items():
            values[(row["anonymizer"], row["attack"], metric)].append(float(value))
    return {key: (*mean_and_sem(vals), len(vals)) for key, vals in values.items()}


def markdown_table(
    rows: Sequence[dict[str, Any]],
    anonymizers: Sequence[str],
    attacks: Sequence[str],
    metrics: Sequence[str],
    title: str | None = None,
) -> str:
    """A Markdown table: one row per anonymizer, one column per (attack, metric)."""
    stats = aggregate(rows)
    header = ["Anonymizer"]
    for attack in attacks:
        for metric in metrics:
            spec = metric_spec(metric)
            label, arrow = (spec.display_name, spec.arrow) if spec else (metric, "")
            header.append(f"{attack} {label} {arrow}".rstrip())
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|")
    for anonymizer in anonymizers:
        cells = [anonymizer]
        for attack in attacks:
            for metric in metrics:
                cells.append(_format(stats.get((anonymizer, attack, metric)), metric_spec(metric)))
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({row["seed"] for row in rows})
    lines += ["", f"Rates in %, mean over seeds {seeds}" + (" ± standard error" if len(seeds) > 1 else "") + "; ↓ / ↑ = lower / higher is better for the anonymizer."]
    return "\n".join(lines) + "\n"


def _format(stat: tuple[float, float | None, int] | None, spec: MetricSpec | None) -> str:
    if stat is None:
        return "–"
    mean, sem, _ = stat
    if not math.isfinite(mean):
        return "nan" if math.isnan(mean) else ("∞" if mean > 0 else "-∞")
    scale, decimals = (100.0, 1) if spec is None or spec.unit == "rate" else (1.0, spec.decimals)
    text = f"{scale * mean:.{decimals}f}"
    return text + (f" ± {scale * sem:.{decimals}f}" if sem is not None else "")
