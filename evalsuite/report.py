"""The run table printed by ``evalsuite run``: the report table builder applied to one run's rows.

Everything about the numbers (mean ± standard error over seeds, incomplete cells shown as
missing, best value in bold respecting each metric's direction, arrows) lives in
:mod:`evalsuite.reporting.table`; this module keeps the runner's small entry point.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from evalsuite.reporting.formats import markdown_one
from evalsuite.reporting.results import RunSource, group_sources, mean_and_sem
from evalsuite.reporting.strength import DEFAULT_MIN_SKILL
from evalsuite.reporting.table import build_table

__all__ = ["markdown_table", "mean_and_sem"]


def markdown_table(
    rows: Sequence[dict[str, Any]],
    anonymizers: Sequence[str],
    attacks: Sequence[str],
    metrics: Sequence[str],
    title: str | None = None,
    min_skill: float = DEFAULT_MIN_SKILL,
) -> str:
    """A Markdown table of one run: one row per anonymizer, one column per (attack, metric)."""
    wanted, attack_names = set(anonymizers), set(attacks)
    prepared = [{"protocol": "run", "protocol_version": "-", "dataset": "-", **row} for row in rows
                if row["anonymizer"] in wanted and row["attack"] in attack_names]
    if not prepared:
        return (f"**{title}**\n\n" if title else "") + "no results yet\n"
    groups = group_sources([RunSource(path=Path("<run>"), rows=prepared)])
    if len(groups) != 1:
        keys = ", ".join(g.key.describe() for g in groups)
        raise ValueError(f"markdown_table needs the rows of one protocol / dataset / config, got {keys}")
    table = build_table(groups[0], metrics=metrics, attacks=attacks, order=anonymizers, title=title or "", min_skill=min_skill)
    return markdown_one(table, title=bool(title))
