"""The CI gate: compare results against a baseline, cell by cell, respecting metric directions.

A cell (protocol, protocol_version, dataset, anonymizer, attack, metric) *worsens* when it
moves in the direction that is worse for the anonymizer: a privacy metric such as rank-1
rises, a quality or utility metric falls. The gate fails (exit 1) when a cell worsens by more
than its absolute tolerance and, with ``--z``, the change is also significant
(|z| > Z, z = delta / sqrt(sem_baseline² + sem_current²), as lm-evaluation-harness compares
runs; cells without a standard error on both sides fall back to the tolerance alone). A
baseline cell missing from the results, or present only for some seeds, fails too. A metric
without a known direction fails when it changes by more than the tolerance either way.
Metric directions and labels are read from the run's ``run.json`` (as the run recorded its
metric specs), else from the baseline's record, else from the registry (runs without run.json).
Mismatched inputs (another protocol version, dataset, config or metric set) are a UserError.

With ``--effect-size`` the gate decides statistically instead (format-2 baselines, which
carry intervals): each cell's change gets an interval from both runs' seeds and a paired
bootstrap over the items they scored (:mod:`evalsuite.reporting.intervals`). A cell is
WORSE when that interval lies entirely on the worse side of zero *and* reaches the effect
size; a significant change whose interval rules out a regression as large as the effect
size is ``minor``. Before comparing, a baseline whose cells are too noisy to detect the
effect size (at the confidence and power asked for) is refused, with what it would need.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Sequence

from evalsuite.errors import UserError, did_you_mean
from evalsuite.metrics.spec import MetricSpec, metric_spec
import numpy as np

from evalsuite.reporting.baseline import Baseline, BaselineCell, BaselineGroup
from evalsuite.reporting.intervals import CellSample, Uncertainty, compare_cells, group_uncertainties, z_value
from evalsuite.reporting.results import Group
from evalsuite.reporting.table import format_delta, format_number

FAILING = ("worse", "changed", "missing", "incomplete")
EPS = 1e-12


@dataclass
class EffectSizes:
    """The statistical gate's settings: the smallest regression to catch, per metric."""

    sizes: Tolerances
    confidence: float = 0.95
    power: float = 0.8

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1:
            raise UserError(f"--confidence {self.confidence}: give a level in [0.5, 1), e.g. 0.95")
        if not 0.5 <= self.power < 1:
            raise UserError(f"--power {self.power}: give a probability in [0.5, 1), e.g. 0.8")
        if self.sizes.default <= 0 and not self.sizes.per_metric:
            raise UserError("--effect-size must be > 0 (rates as fractions: 0.05 = 5 points), e.g. --effect-size 0.05")

    def for_metric(self, metric: str) -> float:
        return self.sizes.for_metric(metric)

    @property
    def z_detect(self) -> float:
        """Multiple of the change's standard error that a detectable regression must reach."""
        return z_value(self.confidence) + NormalDist().inv_cdf(self.power)


@dataclass
class Tolerances:
    """Absolute tolerances in the metric's stored units (rates as fractions: 0.02 = 2 points)."""

    default: float = 0.0
    per_metric: dict[str, float] = field(default_factory=dict)

    def for_metric(self, metric: str) -> float:
        return self.per_metric.get(metric, self.default)

    @classmethod
    def parse(cls, items: Sequence[str], option: str = "--tolerance") -> "Tolerances":
        """``["0.01", "rank1=0.02"]``: a bare number is the default, ``metric=value`` one metric's."""
        tolerances = cls()
        for item in items:
            name, sep, value = item.rpartition("=")
            try:
                number = float(value)
            except ValueError:
                raise UserError(f"{option} {item!r}: write a number (default for every metric) or METRIC=NUMBER, e.g. {option} rank1=0.02") from None
            if not math.isfinite(number) or number < 0:
                raise UserError(f"{option} {item!r}: must be a finite number >= 0")
            if sep:
                tolerances.per_metric[name] = number
            else:
                tolerances.default = number
        return tolerances


@dataclass
class Comparison:
    """One compared cell."""

    protocol: str
    dataset: str
    anonymizer: str
    attack: str
    metric: str
    baseline: float | None
    current: float | None
    baseline_sem: float | None = None
    current_sem: float | None = None
    tolerance: float = 0.0
    z: float | None = None
    interval: tuple[float, float] | None = None  # of the change (statistical gate)
    status: str = "ok"  # ok | improved | insignificant | minor | worse | changed | missing | incomplete | new
    spec: MetricSpec | None = None  # the metric's spec (run.json, else the registry) for labels and units

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline

    @property
    def failed(self) -> bool:
        return self.status in FAILING


@dataclass
class CheckResult:
    comparisons: list[Comparison]
    z_threshold: float | None
    effect: EffectSizes | None = None

    @property
    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.failed]

    @property
    def passed(self) -> bool:
        return not self.failures


def _match_group(group: Group, baseline: Baseline, ignore_config: bool) -> BaselineGroup:
    key = group.key
    same = [b for b in baseline.groups if b.protocol == key.protocol and b.dataset == key.dataset]
    if not same:
        datasets = sorted({b.dataset for b in baseline.groups if b.protocol == key.protocol})
        if datasets:
            raise UserError(f"baseline {baseline.path} covers {key.protocol} on {', '.join(datasets)}, but the results are on {key.dataset}; "
                            "compare runs on the same dataset or write a baseline for this one")
        raise UserError(f"baseline {baseline.path} has no {key.protocol} results (it covers {', '.join(sorted({b.protocol for b in baseline.groups}))}); "
                        "pass the baseline of this protocol")
    versions = [b for b in same if b.protocol_version == key.protocol_version]
    if not versions:
        raise UserError(f"baseline {baseline.path} is for {key.protocol} protocol version {same[0].protocol_version}, but the results are version "
                        f"{key.protocol_version}; numbers of different protocol versions are not comparable: regenerate the baseline with `evalsuite baseline`")
    configs = [b for b in versions if b.config_hash == key.config_hash]
    if not configs:
        if not ignore_config:
            raise UserError(f"baseline {baseline.path} was made with config {versions[0].config_hash}, but the results have config {key.config_hash} "
                            f"({key.protocol} on {key.dataset}); rerun with the baseline's command (see its sources) or pass --ignore-config-hash")
        configs = versions
    match = configs[0]
    if set(match.metrics) != set(group.metrics):
        only_base = sorted(set(match.metrics) - set(group.metrics))
        only_res = sorted(set(group.metrics) - set(match.metrics))
        raise UserError(f"baseline {baseline.path} and the results report different metrics for {key.protocol} on {key.dataset} "
                        f"(only in the baseline: {only_base or 'none'}; only in the results: {only_res or 'none'}); regenerate the baseline")
    return match


def _direction(group: Group, base: BaselineGroup, metric: str) -> bool | None:
    """higher_is_better as the run recorded it in run.json, else as the baseline did, else as registered now."""
    recorded = group.recorded_spec(metric)
    return recorded.higher_is_better if recorded is not None else base.direction(metric)


def _zscore(delta: float, sem_a: float | None, sem_b: float | None) -> float | None:
    if sem_a is None or sem_b is None:
        return None
    spread = math.sqrt(sem_a**2 + sem_b**2)
    if spread == 0:
        return 0.0 if delta == 0 else math.copysign(math.inf, delta)
    return delta / spread


def compare(groups: Sequence[Group], baseline: Baseline, tolerances: Tolerances | None = None,
            z: float | None = None, ignore_config: bool = False, effect: EffectSizes | None = None) -> CheckResult:
    """Compare every baseline cell with the results (see the module docstring)."""
    tolerances = tolerances or Tolerances()
    if z is not None and (not math.isfinite(z) or z <= 0):
        raise UserError(f"--z {z}: the z threshold must be a positive number, e.g. --z 2")
    if effect is not None and (tolerances.default or tolerances.per_metric or z is not None):
        raise UserError("--effect-size decides with intervals; do not combine it with --tolerance or --z (choose one way to gate)")
    all_metrics = {m for g in groups for m in g.metrics} | {m for b in baseline.groups for m in b.metrics}
    for option, named in (("--tolerance", tolerances.per_metric), ("--effect-size", effect.sizes.per_metric if effect else {})):
        for metric in named:
            if metric not in all_metrics:
                raise UserError(f"{option} names metric {metric!r}, which neither the results nor the baseline report: {did_you_mean(metric, all_metrics)}")
    if effect is not None:
        check_baseline_power(baseline, effect)
    matched: list[tuple[Group, BaselineGroup]] = [(g, _match_group(g, baseline, ignore_config)) for g in groups]
    covered = {id(b) for _, b in matched}
    for b in baseline.groups:
        if id(b) not in covered:
            raise UserError(f"baseline {baseline.path} covers {b.protocol} v{b.protocol_version} on {b.dataset}, which the results do not hold; "
                            "pass those results too, or a baseline of only the protocols you ran")
    comparisons = []
    for group, base in matched:
        current = group_uncertainties(group, rerun_noise=False) if effect is not None else {}  # only the baseline sizes
        for cell in base.cells:
            if effect is not None:
                comparisons.append(_compare_cell_statistically(group, base, cell, effect, current))
            else:
                comparisons.append(_compare_cell(group, base, cell, tolerances, z))
        known = {(c.anonymizer, c.attack, c.metric) for c in base.cells}
        for (anonymizer, attack, metric), stats in group.cells.items():
            if (anonymizer, attack, metric) in known or not stats.values:
                continue
            agg = stats.mean_sem()
            comparisons.append(Comparison(group.key.protocol, group.key.dataset, anonymizer, attack, metric, None,
                                          agg[0] if agg else None, None, agg[1] if agg else None, status="new", spec=group.metric_spec(metric)))
    return CheckResult(comparisons=comparisons, z_threshold=z, effect=effect)


def _gated(base: BaselineGroup, cell: BaselineCell, effect: EffectSizes) -> bool:
    return base.direction(cell.metric) is not None and effect.for_metric(cell.metric) > 0


def check_baseline_power(baseline: Baseline, effect: EffectSizes) -> None:
    """UserError when a baseline cell is too noisy to detect its metric's effect size."""
    short: list[tuple[float, BaselineGroup, BaselineCell, float]] = []
    for base in baseline.groups:
        for cell in base.cells:
            if not _gated(base, cell, effect):
                continue
            se_change = cell.expected_se_of_change()
            if se_change is None:
                raise UserError(f"baseline {baseline.path} has no intervals (format 1, or cells without seeds or per-item scores); "
                                "rewrite it with `evalsuite baseline` from a run with several seeds, or gate with --tolerance")
            if math.isnan(cell.mean):
                continue
            detectable = effect.z_detect * se_change
            if detectable > effect.for_metric(cell.metric) + EPS:
                short.append((detectable / effect.for_metric(cell.metric), base, cell, detectable))
    if not short:
        return
    _, base, cell, detectable = max(short, key=lambda item: item[0])
    size = effect.for_metric(cell.metric)
    raise UserError(
        f"baseline {baseline.path} is too small to detect a regression of {size:g} in {cell.metric} at {effect.confidence:.0%} confidence "
        f"and {effect.power:.0%} power: {cell.anonymizer} / {cell.attack} can only detect {detectable:.3f} "
        f"(worst of {len(short)} such cells); {_what_it_needs(cell, size / effect.z_detect)}; "
        f"or ask for a larger --effect-size ({cell.metric}={detectable:.3f})"
    )


def _what_it_needs(cell: BaselineCell, target_se: float) -> str:
    """How many seeds (or items) would bring the change's standard error down to ``target_se``."""
    unc = cell.uncertainty or {}
    seeds, items = cell.n, unc.get("items")
    se_change = float(unc["se_change"])
    seed_part = 2 * float(unc.get("se_seed") or 0.0) ** 2
    item_part = max(se_change**2 - seed_part, 0.0)
    need_seeds = math.ceil(seeds * (se_change / target_se) ** 2)
    text = f"it needs about {need_seeds} seeds at {items or 'the same'} items"
    if seeds < 2:
        text += " (and at least 2 seeds to measure the spread between attackers)"
    if items and item_part > 0:
        if seed_part < target_se**2:
            text += f", or about {math.ceil(items * item_part / (target_se**2 - seed_part))} items at {seeds} seed(s)"
        else:
            text += f"; more items alone cannot reach it at {seeds} seed(s)"
    return text


def _compare_cell_statistically(group: Group, base: BaselineGroup, cell: BaselineCell, effect: EffectSizes,
                                current: dict[tuple[str, str, str], tuple[Uncertainty, CellSample]]) -> Comparison:
    size = effect.for_metric(cell.metric)
    comp = Comparison(group.key.protocol, group.key.dataset, cell.anonymizer, cell.attack, cell.metric,
                      cell.mean, None, cell.uncertainty.get("se") if cell.uncertainty else None, None, size, spec=group.metric_spec(cell.metric))
    stats = group.cell(cell.anonymizer, cell.attack, cell.metric)
    if stats is None or not stats.values:
        comp.status = "missing"
        return comp
    if not stats.complete or (cell.anonymizer, cell.attack, cell.metric) not in current:
        comp.status = "incomplete"
        return comp
    unc, sample = current[(cell.anonymizer, cell.attack, cell.metric)]
    comp.current, comp.current_sem = unc.mean, unc.se
    if math.isnan(comp.current) or math.isnan(cell.mean):
        comp.status = "ok" if math.isnan(comp.current) and math.isnan(cell.mean) else "changed"
        return comp
    baseline_items = np.asarray(cell.item_means, dtype=np.float64) if cell.item_means is not None else None
    change = compare_cells(cell.mean, cell.se_seed, baseline_items, cell.items_sha1, cell.se_items, sample, unc)
    comp.interval = change.interval(effect.confidence)
    comp.z = change.delta / change.se if change.se > 0 else (0.0 if change.delta == 0 else math.copysign(math.inf, change.delta))
    higher = _direction(group, base, cell.metric)
    if higher is None or size <= 0:
        low, high = comp.interval
        comp.status = "changed" if (low > 0 or high < 0) and abs(change.delta) >= size else "ok"
        return comp
    # worsening interval: positive = worse for the anonymizer
    low, high = (-comp.interval[1], -comp.interval[0]) if higher else comp.interval
    if low > 0:
        comp.status = "worse" if high >= size - EPS else "minor"
    elif high < 0 and -low >= size - EPS:
        comp.status = "improved"
    elif change.delta != 0 and (-change.delta if higher else change.delta) > 0:
        comp.status = "insignificant"
    return comp


def _compare_cell(group: Group, base: BaselineGroup, cell, tolerances: Tolerances, z: float | None) -> Comparison:
    tolerance = tolerances.for_metric(cell.metric)
    comp = Comparison(group.key.protocol, group.key.dataset, cell.anonymizer, cell.attack, cell.metric,
                      cell.mean, None, cell.sem, None, tolerance, spec=group.metric_spec(cell.metric))
    stats = group.cell(cell.anonymizer, cell.attack, cell.metric)
    if stats is None or not stats.values:
        comp.status = "missing"
        return comp
    agg = stats.mean_sem()
    if agg is None:
        comp.status = "incomplete"
        return comp
    comp.current, comp.current_sem = agg
    if math.isnan(comp.current) or math.isnan(cell.mean):
        comp.status = "ok" if math.isnan(comp.current) and math.isnan(cell.mean) else "changed"
        return comp
    delta = comp.current - cell.mean
    comp.z = _zscore(delta, cell.sem, comp.current_sem)
    significant = z is None or comp.z is None or abs(comp.z) > z
    higher = _direction(group, base, cell.metric)
    if higher is None:
        comp.status = "changed" if abs(delta) > tolerance + EPS and significant else "ok"
        return comp
    worsening = -delta if higher else delta
    if worsening > tolerance + EPS:
        comp.status = "worse" if significant else "insignificant"  # worse, but within the seeds' noise
    elif -worsening > tolerance + EPS and significant:
        comp.status = "improved"
    return comp


# ------------------------------------------------------------------ printing

def _label(metric: str, spec: MetricSpec | None) -> str:
    return f"{spec.display_name} {spec.arrow}" if spec else metric


def format_result(result: CheckResult, show_all: bool = False) -> str:
    """A readable table of the cells that changed (or of all cells), then a verdict line."""
    rows = [c for c in result.comparisons if show_all or c.status != "ok"]
    statistical = result.effect is not None
    header = ["protocol", "dataset", "anonymizer", "attack", "metric", "baseline", "current", "delta"]
    header += [f"{result.effect.confidence:.0%} interval", "effect"] if statistical else ["tolerance"]
    if result.z_threshold is not None or statistical:
        header.append("z")
    header.append("status")
    table = [header]
    for c in rows:
        spec = c.spec or metric_spec(c.metric)
        line = [c.protocol, c.dataset, c.anonymizer, c.attack, _label(c.metric, spec),
                _num(c.baseline, c.baseline_sem, spec), _num(c.current, c.current_sem, spec),
                format_delta(c.delta, spec) if c.delta is not None else ""]
        if statistical:
            line.append("" if c.interval is None else f"[{format_delta(c.interval[0], spec)}, {format_delta(c.interval[1], spec)}]")
        line.append(format_number(c.tolerance, spec))
        if result.z_threshold is not None or statistical:
            line.append("" if c.z is None else f"{c.z:+.2f}")
        line.append(c.status.upper() if c.failed else c.status)
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    if len(table) > 1:
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
        lines.insert(1, "  ".join("-" * w for w in widths))
    failures = result.failures
    counted = [c for c in result.comparisons if c.status != "new"]
    if statistical:
        units = f"rates in %; {result.effect.confidence:.0%} intervals of the change from seeds and a paired bootstrap over items"
        within = "without a significant regression reaching the effect size"
    else:
        units = "rates in %" + (f"; z threshold {result.z_threshold}" if result.z_threshold is not None else "")
        within = "within tolerance"
    if failures:
        reason = "worse beyond the effect size" if statistical else "worse beyond tolerance"
        verdict = f"FAIL: {len(failures)} of {len(counted)} baseline cells {reason}, missing or incomplete ({units})"
    else:
        improved = sum(c.status == "improved" for c in counted)
        verdict = f"PASS: {len(counted)} baseline cells {within}" + (f", {improved} improved" if improved else "") + f" ({units})"
    if not rows:
        lines.append("no cell changed beyond tolerance" if not statistical else "no cell changed significantly")
    return "\n".join(lines + ["", verdict]) + "\n"


def _num(value: float | None, sem: float | None, spec) -> str:
    if value is None:
        return "–"
    return format_number(value, spec) + (f" ± {format_number(sem, spec)}" if sem else "")
