"""CI baselines: per-cell mean / standard error / seeds of a finished run, as one JSON file.

A baseline records, per (protocol, protocol_version, dataset, config_hash) group, the seeds,
the anonymizers and their parameters, every metric's direction / category / unit, and each
(anonymizer, attack, metric) cell's mean, standard error, number of seeds and per-seed values.
Format 2 adds each cell's uncertainty (:mod:`evalsuite.reporting.intervals`): the seed and
item parts of its standard error, its 95% interval and, where the rows kept per-item scores,
the seed-averaged score of every item (for paired comparisons). ``evalsuite check`` compares
new results against it; format 1 files still work with ``--tolerance``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from evalsuite.errors import UserError
from evalsuite.metrics.spec import metric_spec
from evalsuite.reporting.intervals import CellSample, Uncertainty, group_uncertainties
from evalsuite.reporting.results import Group
from evalsuite.store import atomic_write_text

FORMAT = "evalsuite-baseline"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
INTERVAL_CONFIDENCE = 0.95


@dataclass
class BaselineCell:
    anonymizer: str
    attack: str
    metric: str
    mean: float
    sem: float | None
    n: int
    values: dict[str, float] = field(default_factory=dict)
    uncertainty: dict[str, Any] | None = None  # format 2: se_seed, se_items, ci, items, ...
    item_means: list[float] | None = None

    @property
    def se_seed(self) -> float:
        return float((self.uncertainty or {}).get("se_seed") or 0.0)

    @property
    def se_items(self) -> float | None:
        value = (self.uncertainty or {}).get("se_items")
        return None if value is None else float(value)

    @property
    def items_sha1(self) -> str | None:
        return (self.uncertainty or {}).get("items_sha1")

    def expected_se_of_change(self) -> float | None:
        """Standard error of the change against a rerun of the same size (None in format 1)."""
        if self.uncertainty is None:
            return None
        return float(self.uncertainty["se_change"])


@dataclass
class BaselineGroup:
    protocol: str
    protocol_version: str
    dataset: str
    config_hash: str
    seeds: list[int]
    metrics: dict[str, dict[str, Any]]
    cells: list[BaselineCell]
    anonymizers: dict[str, dict[str, Any]] = field(default_factory=dict)
    attacks: list[str] = field(default_factory=list)

    def cell(self, anonymizer: str, attack: str, metric: str) -> BaselineCell | None:
        for cell in self.cells:
            if (cell.anonymizer, cell.attack, cell.metric) == (anonymizer, attack, metric):
                return cell
        return None

    def direction(self, metric: str) -> bool | None:
        """higher_is_better as recorded, else as registered now, else None (unknown)."""
        recorded = self.metrics.get(metric, {}).get("higher_is_better")
        if isinstance(recorded, bool):
            return recorded
        spec = metric_spec(metric)
        return spec.higher_is_better if spec else None


@dataclass
class Baseline:
    path: Path
    groups: list[BaselineGroup]
    created_at: str | None = None


def metric_info(metric: str) -> dict[str, Any]:
    spec = metric_spec(metric)
    if spec is None:
        return {"higher_is_better": None, "category": None, "unit": None, "label": metric}
    return {"higher_is_better": spec.higher_is_better, "category": spec.category, "unit": spec.unit, "label": spec.display_name}


def _uncertainty_record(unc: Uncertainty, sample: CellSample) -> dict[str, Any]:
    low, high = unc.interval(INTERVAL_CONFIDENCE)
    return {"se": unc.se, "sd_seed": unc.sd_seed, "se_seed": unc.se_seed, "se_items": unc.se_items,
            "se_items_paired": unc.se_items_paired, "se_change": unc.expected_se_of_change(),
            "ci": [low, high], "confidence": INTERVAL_CONFIDENCE, "items": unc.items, "items_sha1": sample.items_sha1}


def baseline_dict(groups: Sequence[Group]) -> dict[str, Any]:
    """The JSON document of a baseline; UserError when a cell is incomplete."""
    out_groups = []
    for group in groups:
        cells = []
        uncertainties = group_uncertainties(group)
        for (anonymizer, attack, metric), stats in group.cells.items():
            if not stats.values:
                continue  # not run
            agg = stats.mean_sem()
            if agg is None:
                missing = sorted(stats.expected_seeds - set(stats.values))
                raise UserError(
                    f"{group.key.describe()}: cell {anonymizer} / {attack} / {metric} lacks seed(s) {missing}; "
                    "finish the run (run the same command again) before writing a baseline"
                )
            cell = {"anonymizer": anonymizer, "attack": attack, "metric": metric, "mean": agg[0], "sem": agg[1],
                    "n": stats.n, "values": {str(s): stats.values[s] for s in sorted(stats.values)}}
            unc, sample = uncertainties.get((anonymizer, attack, metric), (None, None))
            if unc is not None and (unc.seeds >= 2 or unc.se_items is not None):  # else nothing measures its noise
                cell["uncertainty"] = _uncertainty_record(unc, sample)
                means = sample.item_means()
                if means is not None:
                    cell["item_means"] = [round(float(v), 6) for v in means]
            cells.append(cell)
        key = group.key
        out_groups.append({
            "protocol": key.protocol, "protocol_version": key.protocol_version, "dataset": key.dataset,
            "config_hash": key.config_hash, "seeds": sorted(group.seeds), "attacks": list(group.attacks),
            "anonymizers": {label: {"name": info.name, "params": info.params} for label, info in group.anonymizers.items()},
            "metrics": {m: metric_info(m) for m in group.metrics},
            "sources": [str(s.path) for s in group.sources],
            "cells": cells,
        })
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "groups": out_groups}


def dumps(document: dict[str, Any]) -> str:
    """Indented JSON with one line per cell, so that a diff of the file shows what moved."""
    head = {k: v for k, v in document.items() if k != "groups"}
    groups = []
    for group in document["groups"]:
        rest = json.dumps({k: v for k, v in group.items() if k != "cells"}, indent=1)
        cells = ",\n".join("   " + json.dumps(cell) for cell in group["cells"])
        groups.append(rest[:-2] + ',\n "cells": [\n' + cells + "\n ]\n}")
    text = json.dumps(head, indent=1)[:-2] + ',\n "groups": [\n' + ",\n".join(groups) + "\n ]\n}\n"
    json.loads(text)  # the layout above must stay valid JSON
    return text


def write_baseline(groups: Sequence[Group], out: Path) -> dict[str, Any]:
    """Write the baseline of ``groups`` to ``out`` atomically; returns the document."""
    document = baseline_dict(groups)
    atomic_write_text(Path(out), dumps(document))
    return document


def _malformed(path: Path, what: str) -> UserError:
    return UserError(f"baseline {path} is malformed: {what}; write a new one with `evalsuite baseline RESULTS --out {path}`")


def load_baseline(path: Path | str) -> Baseline:
    """Read and validate a baseline file (UserError naming the problem otherwise)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"baseline {path} does not exist; write one with `evalsuite baseline RESULTS --out {path}`")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _malformed(path, f"not JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _malformed(path, f"no \"format\": \"{FORMAT}\" field")
    if document.get("format_version") not in READABLE_VERSIONS:
        raise _malformed(path, f"format_version {document.get('format_version')!r}, this evalsuite reads {' and '.join(map(str, READABLE_VERSIONS))}")
    raw_groups = document.get("groups")
    if not isinstance(raw_groups, list) or not raw_groups:
        raise _malformed(path, "'groups' must be a non-empty list")
    groups = []
    for index, raw in enumerate(raw_groups):
        where = f"groups[{index}]"
        if not isinstance(raw, dict):
            raise _malformed(path, f"{where} is not an object")
        for name, kind in (("protocol", str), ("protocol_version", str), ("dataset", str), ("config_hash", str),
                           ("seeds", list), ("metrics", dict), ("cells", list)):
            if not isinstance(raw.get(name), kind):
                raise _malformed(path, f"{where}.{name} is missing or not a {kind.__name__}")
        cells = []
        for c_index, cell in enumerate(raw["cells"]):
            cwhere = f"{where}.cells[{c_index}]"
            if not isinstance(cell, dict):
                raise _malformed(path, f"{cwhere} is not an object")
            for name in ("anonymizer", "attack", "metric"):
                if not isinstance(cell.get(name), str):
                    raise _malformed(path, f"{cwhere}.{name} is missing or not a string")
            if not isinstance(cell.get("mean"), (int, float)) or isinstance(cell.get("mean"), bool):
                raise _malformed(path, f"{cwhere}.mean is missing or not a number")
            sem = cell.get("sem")
            if sem is not None and (not isinstance(sem, (int, float)) or isinstance(sem, bool)):
                raise _malformed(path, f"{cwhere}.sem is not a number or null")
            if cell["metric"] not in raw["metrics"]:
                raise _malformed(path, f"{cwhere}.metric {cell['metric']!r} is not listed in {where}.metrics")
            unc = cell.get("uncertainty")
            if unc is not None and (not isinstance(unc, dict) or not isinstance(unc.get("se_change"), (int, float))):
                raise _malformed(path, f"{cwhere}.uncertainty must be an object with a numeric se_change")
            item_means = cell.get("item_means")
            if item_means is not None and (not isinstance(item_means, list) or (unc and unc.get("items") != len(item_means))):
                raise _malformed(path, f"{cwhere}.item_means must be a list of uncertainty.items numbers")
            cells.append(BaselineCell(cell["anonymizer"], cell["attack"], cell["metric"], float(cell["mean"]),
                                      None if sem is None else float(sem), int(cell.get("n") or 1), dict(cell.get("values") or {}),
                                      uncertainty=unc, item_means=item_means))
        groups.append(BaselineGroup(
            protocol=raw["protocol"], protocol_version=raw["protocol_version"], dataset=raw["dataset"],
            config_hash=raw["config_hash"], seeds=[int(s) for s in raw["seeds"]], metrics=raw["metrics"], cells=cells,
            anonymizers=dict(raw.get("anonymizers") or {}), attacks=list(raw.get("attacks") or []),
        ))
    return Baseline(path=path, groups=groups, created_at=document.get("created_at"))
