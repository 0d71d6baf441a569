"""Reading results for reports and the CI gate: run folders or results.jsonl files, merged.

Rows from several runs merge; a cell stored twice (same ``cell_key``) counts once. Rows are
grouped by (protocol, protocol_version, dataset, config_hash): rows of different groups are
never averaged together. A cell (group, anonymizer, attack, metric) is *complete* when it has
a value for every seed that its run evaluated in that group; an incomplete cell has no mean.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from evalsuite.analysis import RunSource, read_sources
from evalsuite.errors import UserError
from evalsuite.metrics.spec import MetricSpec, metric_spec

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("protocol", "protocol_version", "dataset", "anonymizer", "attack", "seed", "metrics")
#: anonymizer registry names / labels that mean "the original images"
IDENTITY_NAMES = ("none", "original", "identity")


@dataclass(frozen=True, order=True)
class GroupKey:
    """Rows that may be aggregated together: same protocol, version, dataset and config."""

    protocol: str
    protocol_version: str
    dataset: str
    config_hash: str

    def describe(self) -> str:
        return f"{self.protocol} v{self.protocol_version} on {self.dataset} (config {self.config_hash})"


def mean_and_sem(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (None for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


@dataclass
class CellStats:
    """The values of one (group, anonymizer, attack, metric) cell, one per seed."""

    values: dict[int, float] = field(default_factory=dict)
    expected_seeds: set[int] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return bool(self.values) and self.expected_seeds <= set(self.values)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.values)

    def mean_sem(self) -> tuple[float, float | None] | None:
        """(mean, sem) over seeds; None when the cell is incomplete."""
        if not self.complete:
            return None
        return mean_and_sem([self.values[s] for s in sorted(self.values)])


@dataclass
class AnonymizerInfo:
    """What the rows say about one anonymizer label."""

    label: str
    name: str
    params: dict[str, Any]

    @property
    def is_identity(self) -> bool:
        return is_identity_anonymizer(self.name, self.label)


@dataclass
class Group:
    """Aggregated cells of one GroupKey."""

    key: GroupKey
    cells: dict[tuple[str, str, str], CellStats] = field(default_factory=dict)
    anonymizers: dict[str, AnonymizerInfo] = field(default_factory=dict)  # in first-seen order
    attacks: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    seeds: set[int] = field(default_factory=set)
    sources: list[RunSource] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def cell(self, anonymizer: str, attack: str, metric: str) -> CellStats | None:
        return self.cells.get((anonymizer, attack, metric))

    def run_entries(self) -> list[tuple[RunSource, dict[str, Any]]]:
        """(source, run.json entry) of every source that describes this group's config."""
        found = [(s, s.run_entry(self.key.config_hash)) for s in self.sources]
        return [(s, e) for s, e in found if e is not None]

    def recorded_spec(self, name: str) -> MetricSpec | None:
        """The metric's spec as the run recorded it in run.json (None for runs without one)."""
        for _, entry in self.run_entries():
            recorded = (entry.get("metrics") or {}).get(name)
            if isinstance(recorded, dict):
                spec = spec_from_dict(recorded)
                if spec is not None:
                    return spec
        return None

    def metric_spec(self, name: str) -> MetricSpec | None:
        """The metric's spec as the run recorded it in run.json, else the registered one
        (so a run of a plugin metric that is not installed here keeps its label and direction)."""
        return self.recorded_spec(name) or metric_spec(name)


def spec_from_dict(data: dict[str, Any]) -> MetricSpec | None:
    """A MetricSpec from its run.json record; None (logged) when the record does not fit."""
    from dataclasses import fields

    known = {f.name for f in fields(MetricSpec)}
    try:
        return MetricSpec(**{k: v for k, v in data.items() if k in known})
    except (TypeError, ValueError) as exc:
        log.debug("ignoring the metric spec %s in run.json: %s", data, exc)
        return None


def is_identity_anonymizer(name: str, label: str | None = None) -> bool:
    """True for the anonymizer that returns the original images (registry ``is_identity``)."""
    try:
        from evalsuite.registry import ANONYMIZERS

        if name in ANONYMIZERS:
            return bool(getattr(ANONYMIZERS.get(name).factory, "is_identity", False))
    except Exception:  # pragma: no cover - registry import problems must not break reports
        pass
    return name in IDENTITY_NAMES or (label is not None and label in IDENTITY_NAMES)


def group_key(row: dict[str, Any]) -> GroupKey:
    return GroupKey(str(row["protocol"]), str(row["protocol_version"]), str(row["dataset"]), str(row.get("config_hash") or "-"))


def _identity(row: dict[str, Any]) -> str:
    """A row's cell identity: its cell_key, or the fields a cell_key hashes."""
    if row.get("cell_key"):
        return str(row["cell_key"])
    key = group_key(row)
    return json.dumps([key.protocol, key.protocol_version, key.dataset, key.config_hash, row["anonymizer"],
                       row.get("anonymizer_params"), row["attack"], row["seed"]], sort_keys=True, default=str)


def load_results(paths: Iterable[Path | str]) -> list[Group]:
    """Load (:func:`evalsuite.analysis.read_sources`, the reader of ``evalsuite.load_results``),
    merge and group the rows of every RESULTS path (run folder or results.jsonl)."""
    sources = read_sources(list(paths), required=REQUIRED_KEYS, allow_empty=False)
    if not sources:
        raise UserError("no RESULTS given; pass one or more run folders or results.jsonl files")
    return group_sources(sources)


def group_sources(sources: Sequence[RunSource]) -> list[Group]:
    """Merge the sources' rows (one row per cell_key) into groups, in first-seen order."""
    groups: dict[GroupKey, Group] = {}
    seen: dict[str, dict[str, Any]] = {}
    for source in sources:
        source_seeds: dict[GroupKey, set[int]] = {}
        fresh: list[dict[str, Any]] = []
        for row in source.rows:
            source_seeds.setdefault(group_key(row), set()).add(int(row["seed"]))
            ident = _identity(row)
            if ident in seen:
                if seen[ident]["metrics"] != row["metrics"]:
                    log.warning("cell %s (%s / %s / seed %s) is stored twice with different metrics (%s); keeping the first",
                                ident, row["anonymizer"], row["attack"], row["seed"], source.path)
                continue
            seen[ident] = row
            fresh.append(row)
        for row in fresh:
            key = group_key(row)
            group = groups.setdefault(key, Group(key=key))
            _add_row(group, row, source_seeds[key])
        for key in source_seeds:
            if key in groups and source not in groups[key].sources:
                groups[key].sources.append(source)
    _expect_every_metric(groups.values())
    by_protocol: dict[tuple[str, str], list[GroupKey]] = {}
    for key in groups:
        by_protocol.setdefault((key.protocol, key.dataset), []).append(key)
    for (protocol, dataset), keys in by_protocol.items():
        if len(keys) > 1:
            log.warning("%s on %s: rows come from %d different protocol versions / configs (%s); they are reported as separate tables, never averaged",
                        protocol, dataset, len(keys), ", ".join(f"v{k.protocol_version}/{k.config_hash}" for k in keys))
    return list(groups.values())


def _add_row(group: Group, row: dict[str, Any], run_seeds: set[int]) -> None:
    label = str(row["anonymizer"])
    info = AnonymizerInfo(label=label, name=str(row.get("anonymizer_name") or label), params=dict(row.get("anonymizer_params") or {}))
    if label not in group.anonymizers:
        group.anonymizers[label] = info
    elif (group.anonymizers[label].name, group.anonymizers[label].params) != (info.name, info.params):
        old = group.anonymizers[label]
        raise UserError(
            f"{group.key.describe()}: anonymizer label {label!r} names two different anonymizers "
            f"({old.name} {old.params} and {info.name} {info.params}); give them distinct label= values and rerun"
        )
    attack = str(row["attack"])
    if attack not in group.attacks:
        group.attacks.append(attack)
    seed = int(row["seed"])
    group.seeds.add(seed)
    group.rows.append(row)
    for metric, value in row["metrics"].items():
        if metric not in group.metrics:
            group.metrics.append(metric)
        cell = group.cells.setdefault((label, attack, metric), CellStats())
        cell.values[seed] = float(value) if value is not None else math.nan
    for metric in group.metrics:  # every metric of this group expects this run's seeds
        cell = group.cells.setdefault((label, attack, metric), CellStats())
        cell.expected_seeds |= run_seeds


def _expect_every_metric(groups: Iterable[Group]) -> None:
    """A metric seen only in later rows: the earlier cells expect it too (and miss it)."""
    for group in groups:
        for (label, attack, _metric), cell in list(group.cells.items()):
            for other in group.metrics:
                twin = group.cells.setdefault((label, attack, other), CellStats())
                twin.expected_seeds |= cell.expected_seeds
