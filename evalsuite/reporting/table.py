"""The one table builder: a results group -> a format-independent paper-style table.

Rows are anonymizers ("original"/none first, then a configurable order), columns are
metric x attack. Every cell knows its mean ± standard error over seeds, whether it is
complete, whether it is the best of its column (respecting the metric's direction, the
original row excluded) and its difference to the original row. The renderers in
:mod:`evalsuite.reporting.formats` only lay these out.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from evalsuite.errors import UserError, did_you_mean
from evalsuite.metrics.spec import MetricSpec
from evalsuite.reporting.results import Group
from evalsuite.reporting.strength import DEFAULT_MIN_SKILL, Strength, attacker_strength, strength_notes

log = logging.getLogger(__name__)

Status = Literal["ok", "incomplete", "absent"]
GroupBy = Literal["attack", "metric"]
#: the attack of protocols without an attacker; a table of only this attack has no attack level
NO_ATTACK = "none"
UNKNOWN_DECIMALS = 3


@dataclass(frozen=True)
class Column:
    """One table column: a metric under an attack."""

    attack: str
    metric: str
    spec: MetricSpec | None

    @property
    def label(self) -> str:
        return self.spec.display_name if self.spec else self.metric

    @property
    def arrow(self) -> str:
        """↑ / ↓ for the anonymizer's better direction; empty for an undeclared metric."""
        return self.spec.arrow if self.spec else ""

    @property
    def higher_is_better(self) -> bool | None:
        return self.spec.higher_is_better if self.spec else None

    @property
    def is_rate(self) -> bool:
        return self.spec is not None and self.spec.unit == "rate"


@dataclass
class TableCell:
    """One cell's numbers; ``mean`` is None unless the cell is complete."""

    status: Status
    mean: float | None = None
    sem: float | None = None
    n: int = 0
    expected: int = 0
    seeds: list[int] = field(default_factory=list)
    best: bool = False
    delta: float | None = None


@dataclass
class Table:
    """A built table; see the module docstring."""

    group: Group
    title: str
    rows: list[str]
    identity: str | None
    columns: list[Column]
    cells: dict[tuple[str, int], TableCell]
    show_attack: bool
    group_by: GroupBy
    with_delta: bool
    #: the attacker-strength guard per (attack, metric with a chance level): :mod:`evalsuite.reporting.strength`
    strength: list[Strength] = field(default_factory=list)

    @property
    def key(self):
        return self.group.key

    @property
    def seeds(self) -> list[int]:
        return sorted(self.group.seeds)

    def cell(self, row: str, column: int) -> TableCell:
        return self.cells[(row, column)]

    def header_groups(self) -> list[tuple[str, int]]:
        """Top-level header groups (name, number of columns), in column order."""
        groups: list[tuple[str, int]] = []
        for column in self.columns:
            name = column.attack if self.group_by == "attack" else column_metric_header(column)
            if groups and groups[-1][0] == name:
                groups[-1] = (name, groups[-1][1] + 1)
            else:
                groups.append((name, 1))
        return groups

    def sub_header(self, column: Column) -> str:
        """The lower header of a column (its metric, or its attack when grouped by metric)."""
        return (column_metric_header(column) if self.group_by == "attack" else column.attack) + self.weak_mark(column)

    def flat_header(self, column: Column) -> str:
        """One-line header for formats without grouped headers (Markdown, CSV)."""
        if not self.show_attack:
            return column_metric_header(column) + self.weak_mark(column)
        return f"{column.attack} {column_metric_header(column)}{self.weak_mark(column)}"

    def weak_mark(self, column: Column) -> str:
        """`` (weak attacker!)`` on a column whose clean attacker the guard flags, else nothing."""
        weak = any(s.attack == column.attack and s.metric == column.metric and s.status == "weak" for s in self.strength)
        return " (weak attacker!)" if weak else ""

    def notes(self) -> list[str]:
        """Plain-text footnotes describing what the numbers mean."""
        seeds = self.seeds
        has_sem = any(c.sem is not None for c in self.cells.values())
        units = "rates in %" if any(c.is_rate for c in self.columns) else "scores"
        parts = [f"{units[0].upper()}{units[1:]}, mean over seeds {seeds}" + (" ± standard error" if has_sem else "")]
        parts.append("↓ / ↑ = lower / higher is better for the anonymizer")
        if any(c.best for c in self.cells.values()):
            parts.append("bold = best per column" + (f" ({self.identity} excluded)" if self.identity else ""))
        if any(c.delta is not None for c in self.cells.values()):
            rates = [c.is_rate for c in self.columns]
            unit = " in percentage points" if all(rates) else (" (percentage points for rates)" if any(rates) else "")
            parts.append(f"(±x) = difference to {self.identity}{unit}")
        if any(c.status == "absent" for c in self.cells.values()):
            parts.append("– = not run")
        if any(c.status == "incomplete" for c in self.cells.values()):
            parts.append("incomplete = some seeds of the run are missing, so no mean is shown")
        return strength_notes(self.strength) + ["; ".join(parts) + "."]


def column_metric_header(column: Column) -> str:
    return f"{column.label} {column.arrow}".rstrip()


# ------------------------------------------------------------------ number formatting

def scale_and_decimals(spec: MetricSpec | None) -> tuple[float, int]:
    """Rates are shown in % with the spec's decimals (1); scores as they are."""
    if spec is None:
        return 1.0, UNKNOWN_DECIMALS
    return (100.0 if spec.unit == "rate" else 1.0), spec.decimals


def format_number(value: float, spec: MetricSpec | None) -> str:
    """A value in the table's units and precision (rates in %)."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    scale, decimals = scale_and_decimals(spec)
    text = f"{scale * value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.0"


def format_delta(value: float, spec: MetricSpec | None) -> str:
    """A signed difference in the table's units, e.g. ``+3.2``."""
    text = format_number(value, spec)
    return text if text.startswith("-") or text in ("nan", "∞") else f"+{text}"


def displayed(value: float, spec: MetricSpec | None) -> float:
    """The value rounded as shown, so ties at the shown precision are ties."""
    scale, decimals = scale_and_decimals(spec)
    return round(scale * value, decimals)


# ------------------------------------------------------------------ the builder

def default_metrics(group: Group) -> list[str]:
    """The run's ``table.metrics``, else the protocol's ``table_metrics``, else every metric."""
    for source in group.sources:
        wanted = _config_table_metrics(source.config_text)
        if wanted and all(m in group.metrics for m in wanted):
            return wanted
    try:
        from evalsuite.registry import PROTOCOLS, load_all

        load_all()
        if group.key.protocol in PROTOCOLS:
            wanted = list(getattr(PROTOCOLS.get(group.key.protocol).factory, "table_metrics", ()) or ())
            if wanted and all(m in group.metrics for m in wanted):
                return wanted
    except Exception as exc:  # pragma: no cover - a broken plugin must not stop a report
        log.debug("protocol lookup failed: %s", exc)
    return list(group.metrics)


def _config_table_metrics(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.create(text)
        return [str(m) for m in cfg.table.metrics] if "table" in cfg and "metrics" in cfg.table else []
    except Exception:  # a config we cannot read only loses its table.metrics hint
        return []


def order_rows(group: Group, order: Sequence[str] | None = None) -> tuple[list[str], str | None]:
    """Anonymizer labels: the identity first, then ``order``, then the rest as first seen."""
    labels = list(group.anonymizers)
    identity = next((label for label in labels if group.anonymizers[label].is_identity), None)
    ordered = [identity] if identity else []
    for name in order or ():
        if name in labels and name not in ordered:
            ordered.append(name)
    ordered += [label for label in labels if label not in ordered]
    return ordered, identity


def build_table(
    group: Group,
    metrics: Sequence[str] | None = None,
    attacks: Sequence[str] | None = None,
    order: Sequence[str] | None = None,
    delta: bool = False,
    group_by: GroupBy = "attack",
    title: str | None = None,
    min_skill: float = DEFAULT_MIN_SKILL,
) -> Table:
    """Build the table of one group (see the module docstring)."""
    metric_names = list(metrics) if metrics else default_metrics(group)
    attack_names = [a for a in (attacks or group.attacks) if a in group.attacks]
    metric_names = [m for m in metric_names if m in group.metrics]
    if not metric_names or not attack_names:
        raise UserError(f"{group.key.describe()}: nothing to show (metrics {list(metrics or [])}, attacks {list(attacks or [])})")
    if group_by == "attack":
        pairs = [(a, m) for a in attack_names for m in metric_names]
    else:
        pairs = [(a, m) for m in metric_names for a in attack_names]
    columns = [Column(attack=a, metric=m, spec=group.metric_spec(m)) for a, m in pairs]
    rows, identity = order_rows(group, order)
    cells: dict[tuple[str, int], TableCell] = {}
    for index, column in enumerate(columns):
        for row in rows:
            stats = group.cell(row, column.attack, column.metric)
            if stats is None or not stats.values:
                cells[(row, index)] = TableCell(status="absent", expected=len(stats.expected_seeds) if stats else 0)
                continue
            agg = stats.mean_sem()
            if agg is None:
                cells[(row, index)] = TableCell(status="incomplete", n=stats.n, expected=len(stats.expected_seeds), seeds=stats.seeds)
                continue
            cells[(row, index)] = TableCell(status="ok", mean=agg[0], sem=agg[1], n=stats.n, expected=len(stats.expected_seeds), seeds=stats.seeds)
        _mark_best(cells, rows, identity, index, column)
        if delta and identity:
            base = cells[(identity, index)]
            for row in rows:
                cell = cells[(row, index)]
                if row != identity and cell.status == "ok" and base.status == "ok" and math.isfinite(cell.mean) and math.isfinite(base.mean):  # type: ignore[arg-type]
                    cell.delta = cell.mean - base.mean  # type: ignore[operator]
    show_attack = not (attack_names == [NO_ATTACK])
    key = group.key
    return Table(
        group=group,
        title=title or f"{key.protocol} (v{key.protocol_version}) on {key.dataset}",
        rows=rows,
        identity=identity,
        columns=columns,
        cells=cells,
        show_attack=show_attack,
        group_by=group_by if show_attack else "attack",
        with_delta=delta,
        strength=attacker_strength(group, min_skill, attacks=attack_names, metrics=metric_names),
    )


def _mark_best(cells: dict[tuple[str, int], TableCell], rows: list[str], identity: str | None, index: int, column: Column) -> None:
    if column.higher_is_better is None:
        return
    candidates = [(row, cells[(row, index)]) for row in rows if row != identity and cells[(row, index)].status == "ok"
                  and math.isfinite(cells[(row, index)].mean)]  # type: ignore[arg-type]
    if len(candidates) < 2:
        return
    shown = [displayed(c.mean, column.spec) for _, c in candidates]  # type: ignore[arg-type]
    target = max(shown) if column.higher_is_better else min(shown)
    if all(value == target for value in shown):
        return  # a column where every anonymizer ties has no best
    for (_, cell), value in zip(candidates, shown):
        cell.best = value == target


def build_tables(
    groups: Sequence[Group],
    metrics: Sequence[str] | str | None = None,
    attacks: Sequence[str] | None = None,
    order: Sequence[str] | None = None,
    delta: bool = False,
    group_by: GroupBy = "attack",
    min_skill: float = DEFAULT_MIN_SKILL,
) -> list[Table]:
    """One table per group; ``metrics="all"`` shows every metric, None the defaults."""
    validate_selection(groups, metrics, attacks, order)
    tables = []
    repeated = _repeated_protocol_datasets(groups)
    for group in groups:
        wanted = list(group.metrics) if metrics == "all" else metrics
        if wanted is not None and not any(m in group.metrics for m in wanted):
            log.info("%s: none of the metrics %s; table skipped", group.key.describe(), list(wanted))
            continue
        if attacks is not None and not any(a in group.attacks for a in attacks):
            log.info("%s: none of the attacks %s; table skipped", group.key.describe(), list(attacks))
            continue
        key = group.key
        title = f"{key.protocol} (v{key.protocol_version}) on {key.dataset}"
        if (key.protocol, key.dataset) in repeated:
            title += f", config {key.config_hash}"
        tables.append(build_table(group, wanted, attacks, order, delta, group_by, title, min_skill))  # type: ignore[arg-type]
    if not tables:
        raise UserError("no table to show: the selected metrics / attacks match none of the results")
    return tables


def _repeated_protocol_datasets(groups: Sequence[Group]) -> set[tuple[str, str]]:
    seen: dict[tuple[str, str], int] = {}
    for group in groups:
        pair = (group.key.protocol, group.key.dataset)
        seen[pair] = seen.get(pair, 0) + 1
    return {pair for pair, count in seen.items() if count > 1}


def validate_selection(groups: Sequence[Group], metrics: Any, attacks: Sequence[str] | None, order: Sequence[str] | None) -> None:
    """Names in --metrics / --attacks / --order must occur in the results."""
    all_metrics = {m for g in groups for m in g.metrics}
    all_attacks = {a for g in groups for a in g.attacks}
    all_labels = {a for g in groups for a in g.anonymizers}
    if metrics not in (None, "all"):
        for name in metrics:
            if name not in all_metrics:
                raise UserError(f"--metrics names {name!r}, which no result reports: {did_you_mean(name, all_metrics)}")
    for name in attacks or ():
        if name not in all_attacks:
            raise UserError(f"--attacks names {name!r}, which no result has: {did_you_mean(name, all_attacks)}")
    for name in order or ():
        if name not in all_labels:
            raise UserError(f"--order names {name!r}, which is no anonymizer of the results: {did_you_mean(name, all_labels)}")
