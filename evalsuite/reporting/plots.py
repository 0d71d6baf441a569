"""Report plots (matplotlib, Agg): bar charts, the privacy–utility frontier, strength sweeps.

Every plot reads directions, units and labels from the metric specs, and only complete
cells (every seed of the run present) are drawn.
"""
from __future__ import annotations

import io
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from evalsuite.errors import UserError, did_you_mean  # noqa: E402
from evalsuite.metrics.spec import MetricSpec  # noqa: E402
from evalsuite.reporting.results import CellStats, Group  # noqa: E402
from evalsuite.reporting.table import NO_ATTACK, Table, scale_and_decimals  # noqa: E402

log = logging.getLogger(__name__)

DPI = 100
#: attacks tried, in this order, for the frontier's privacy axis
PRIVACY_ATTACK_PREFERENCE = ("adaptive", "parrot", "naive")
MIN_SWEEP_POINTS = 3
_EMPTY = CellStats()


@dataclass
class Plot:
    """A rendered plot: a file stem, a title, a caption and the PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes
    kind: str = "plot"  # frontier | sweep | bar | grid | roc


def to_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def axis_label(spec: MetricSpec | None, metric: str, attack: str | None = None) -> str:
    name = spec.display_name if spec else metric
    unit = " (%)" if spec is not None and spec.unit == "rate" else ""
    better = "" if spec is None else (" — higher is better ↑" if spec.higher_is_better else " — lower is better ↓")
    prefix = f"{attack} " if attack and attack != NO_ATTACK else ""
    return f"{prefix}{name}{unit}{better}"


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text).strip("-")


# ------------------------------------------------------------------ bar charts

def bar_charts(table: Table) -> list[Plot]:
    """One bar chart per metric of the table: anonymizers on x, one bar per attack, ± sem."""
    plots = []
    metrics = list(dict.fromkeys(c.metric for c in table.columns))
    attacks = list(dict.fromkeys(c.attack for c in table.columns))
    for metric in metrics:
        spec = next(c.spec for c in table.columns if c.metric == metric)
        scale, _ = scale_and_decimals(spec)
        fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(table.rows) + 1.5), 3.2))
        width = 0.8 / len(attacks)
        drawn = False
        for a_index, attack in enumerate(attacks):
            column = next(i for i, c in enumerate(table.columns) if c.metric == metric and c.attack == attack)
            xs, ys, errs = [], [], []
            for r_index, row in enumerate(table.rows):
                cell = table.cell(row, column)
                if cell.status != "ok" or not math.isfinite(cell.mean):  # type: ignore[arg-type]
                    continue
                xs.append(r_index - 0.4 + width * (a_index + 0.5))
                ys.append(scale * cell.mean)  # type: ignore[operator]
                errs.append(scale * (cell.sem or 0.0))
            if xs:
                drawn = True
                ax.bar(xs, ys, width=width * 0.95, yerr=errs if any(errs) else None, capsize=3, label=attack if table.show_attack else None)
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xticks(range(len(table.rows)), table.rows, rotation=30, ha="right")
        ax.set_ylabel(axis_label(spec, metric).split(" — ")[0])
        ax.set_title(f"{table.title}: {spec.display_name if spec else metric} {spec.arrow if spec else ''}".rstrip(), fontsize=9)
        if table.show_attack and len(attacks) > 1:
            ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        caption = f"{spec.display_name if spec else metric} per anonymizer" + (" and attack" if table.show_attack else "") + \
            ("; error bars = standard error over seeds" if len(table.seeds) > 1 else f"; seed {table.seeds}")
        plots.append(Plot(name=f"bar-{_slug(table.key.protocol)}-{_slug(table.key.dataset)}-{_slug(metric)}", title=f"{table.title}: {metric}", caption=caption, png=to_png(fig), kind="bar"))
    return plots


# ------------------------------------------------------------------ frontier

@dataclass(frozen=True)
class ColumnRef:
    """A metric under an attack in one group: one axis of the frontier."""

    group: Group
    metric: str
    attack: str

    @property
    def spec(self) -> MetricSpec | None:
        return self.group.metric_spec(self.metric)

    def values(self) -> dict[str, tuple[float, float]]:
        """anonymizer -> (mean, sem) over complete cells."""
        out = {}
        for label in self.group.anonymizers:
            cell = self.group.cell(label, self.attack, self.metric)
            agg = cell.mean_sem() if cell else None
            if agg is not None and math.isfinite(agg[0]):
                out[label] = (agg[0], agg[1] or 0.0)
        return out

    def describe(self) -> str:
        at = "" if self.attack == NO_ATTACK else f"{self.attack} "
        return f"{at}{self.spec.display_name if self.spec else self.metric} ({self.group.key.protocol} on {self.group.key.dataset})"


def parse_ref(text: str, groups: Sequence[Group]) -> ColumnRef:
    """``metric`` or ``metric@attack`` -> the first group that has it."""
    metric, _, attack = text.partition("@")
    for group in groups:
        if metric in group.metrics:
            attacks = [attack] if attack else group.attacks
            for name in attacks:
                if name in group.attacks and any((group.cell(label, name, metric) or _EMPTY).values for label in group.anonymizers):
                    return ColumnRef(group, metric, name)
    metrics = {m for g in groups for m in g.metrics}
    if metric not in metrics:
        raise UserError(f"frontier axis {text!r}: no result reports metric {metric!r}: {did_you_mean(metric, metrics)}")
    raise UserError(f"frontier axis {text!r}: no result has metric {metric!r} under attack {attack!r}; write METRIC@ATTACK with one of {sorted({a for g in groups for a in g.attacks})}")


def default_refs(groups: Sequence[Group], tables: Sequence[Table]) -> tuple[ColumnRef | None, ColumnRef | None]:
    """x: the first privacy metric (adaptive attack preferred); y: the first quality/utility metric."""
    preferred = [c.metric for t in tables for c in t.columns]

    def first(categories: tuple[str, ...], attack_order: Sequence[str]) -> ColumnRef | None:
        for group in groups:
            names = sorted(group.metrics, key=lambda m: preferred.index(m) if m in preferred else len(preferred))
            for metric in names:
                spec = group.metric_spec(metric)
                if spec is None or spec.category not in categories:
                    continue
                order = [a for a in attack_order if a in group.attacks] + [a for a in group.attacks if a not in attack_order]
                for attack in order:
                    ref = ColumnRef(group, metric, attack)
                    if len(ref.values()) >= 2:
                        return ref
        return None

    return first(("privacy",), PRIVACY_ATTACK_PREFERENCE), first(("quality", "utility"), (NO_ATTACK,))


def pareto_front(points: dict[str, tuple[float, float]], x_higher_better: bool, y_higher_better: bool) -> list[str]:
    """Labels of the non-dominated points, sorted by x."""
    def better_eq(a: float, b: float, higher: bool) -> bool:
        return a >= b if higher else a <= b

    front = []
    for label, (x, y) in points.items():
        dominated = any(
            better_eq(ox, x, x_higher_better) and better_eq(oy, y, y_higher_better) and (ox, oy) != (x, y)
            for other, (ox, oy) in points.items() if other != label
        )
        if not dominated:
            front.append(label)
    return sorted(front, key=lambda label: points[label][0])


def frontier(x: ColumnRef, y: ColumnRef, identity: str | None = None) -> Plot | None:
    """Privacy (x) against quality/utility (y), one point per anonymizer, Pareto front drawn."""
    xs, ys = x.values(), y.values()
    labels = [label for label in xs if label in ys]
    if len(labels) < 2:
        log.info("frontier skipped: fewer than two anonymizers have both %s and %s", x.describe(), y.describe())
        return None
    xspec, yspec = x.spec, y.spec
    xscale, _ = scale_and_decimals(xspec)
    yscale, _ = scale_and_decimals(yspec)
    points = {label: (xs[label][0], ys[label][0]) for label in labels}
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for label in labels:
        (mx, sx), (my, sy) = xs[label], ys[label]
        marker = "*" if label == identity else "o"
        ax.errorbar(xscale * mx, yscale * my, xerr=xscale * sx or None, yerr=yscale * sy or None, fmt=marker, ms=9 if marker == "*" else 6, capsize=2)
        ax.annotate(label, (xscale * mx, yscale * my), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if xspec is not None and yspec is not None:
        front = pareto_front(points, xspec.higher_is_better, yspec.higher_is_better)
        ax.plot([xscale * points[f][0] for f in front], [yscale * points[f][1] for f in front], "--", color="gray", lw=1, label="Pareto front", zorder=0)
        ax.legend(fontsize=8)
    ax.set_xlabel(axis_label(xspec, x.metric, x.attack))
    ax.set_ylabel(axis_label(yspec, y.metric, y.attack))
    ax.grid(alpha=0.3)
    ax.margins(0.1)
    ax.set_title("privacy–utility frontier", fontsize=10)
    caption = f"x: {x.describe()}; y: {y.describe()}; one point per anonymizer (mean ± standard error over seeds)"
    if x.group.key != y.group.key:
        caption += "; the axes come from different runs, joined by anonymizer label"
    return Plot(name=f"frontier-{_slug(x.metric)}-{_slug(y.metric)}", title="privacy–utility frontier", caption=caption, png=to_png(fig), kind="frontier")


# ------------------------------------------------------------------ strength sweeps

@dataclass
class Sweep:
    """Anonymizers of one family that differ in one numeric parameter only."""

    family: str
    param: str
    members: list[tuple[float, str]]  # (parameter value, label), sorted


def _family(name: str) -> tuple[str, str]:
    """(family key, display name): presets join their base anonymizer (blur5 -> blur)."""
    from evalsuite.registry import ANONYMIZERS

    if name not in ANONYMIZERS:
        return name, name
    factory = ANONYMIZERS.get(name).factory
    base = next((e.name for e in ANONYMIZERS if e.factory is factory and not e.params), name)
    return f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', name)}", base


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def find_sweeps(group: Group) -> list[Sweep]:
    """Parameter sweeps among the group's anonymizers (at least three values of one parameter)."""
    families: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    names: dict[str, str] = {}
    for label, info in group.anonymizers.items():
        if info.is_identity:
            continue
        family, display = _family(info.name)
        families.setdefault(family, []).append((label, info.params))
        names.setdefault(family, display)
    sweeps: list[Sweep] = []
    for family, members in families.items():
        params = sorted({p for _, ps in members for p in ps})
        found: list[Sweep] = []
        for param in params:  # one parameter varies, every other is equal
            partitions: dict[str, list[tuple[float, str]]] = {}
            for label, ps in members:
                if not _numeric(ps.get(param)):
                    continue
                rest = json.dumps({k: v for k, v in ps.items() if k != param}, sort_keys=True, default=str)
                partitions.setdefault(rest, []).append((float(ps[param]), label))
            for part in partitions.values():
                if len({v for v, _ in part}) >= MIN_SWEEP_POINTS:
                    found.append(Sweep(family=names[family], param=param, members=sorted(part)))
        # presets that change several parameters together (blur5/15/25: sigma and kernel size):
        # the parameter that orders the most members, each value once
        candidates = []
        for param in params:
            part = [(float(ps[param]), label) for label, ps in members if _numeric(ps.get(param))]
            if len({v for v, _ in part}) == len(part) >= MIN_SWEEP_POINTS:
                candidates.append(Sweep(family=names[family], param=param, members=sorted(part)))
        for sweep in sorted(candidates, key=lambda c: -len(c.members)):
            labels = {label for _, label in sweep.members}
            if not any(labels <= {m for _, m in f.members} for f in found):
                found.append(sweep)
        sweeps += found
    return sweeps


def quality_companion(groups: Sequence[Group], group: Group, sweep: Sweep) -> tuple[Group, str] | None:
    """A quality metric of another merged group (an ``image-quality`` run) that scored every member of ``sweep``."""
    labels = [label for _, label in sweep.members]
    for other in groups:
        if other is group:
            continue
        for metric in other.metrics:
            spec = other.metric_spec(metric)
            if spec is None or spec.category != "quality":
                continue
            if all(any(other.cell(label, attack, metric) for attack in other.attacks) for label in labels):
                return other, metric
    return None


def _quality_axis(ax, quality: tuple[Group, str], sweep: Sweep) -> None:
    """The companion quality metric on a second y axis (grey, dotted)."""
    other, metric = quality
    spec = other.metric_spec(metric)
    scale, _ = scale_and_decimals(spec)
    xs, ys = [], []
    for value, label in sweep.members:
        cell = next((c for c in (other.cell(label, a, metric) for a in other.attacks) if c is not None), None)
        agg = cell.mean_sem() if cell else None
        if agg is not None:
            xs.append(value)
            ys.append(scale * agg[0])
    twin = ax.twinx()
    twin.plot(xs, ys, ls=":", marker="s", color="0.35", label=f"{spec.display_name if spec else metric} ({other.key.protocol})")
    twin.set_ylabel(axis_label(spec, metric).split(" — ")[0] + (f" {spec.arrow}" if spec else ""), color="0.35")
    twin.legend(fontsize=8, loc="lower right")


def sweep_plot(group: Group, sweep: Sweep, metrics: Sequence[str], identity: str | None,
               quality: tuple[Group, str] | None = None) -> Plot | None:
    """Each metric against the swept parameter, one line per attack, the original as a dashed line;
    ``quality``: a quality metric of another run on a second axis."""
    metrics = [m for m in metrics if m in group.metrics]
    if not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    drawn = False
    for ax, metric in zip(axes[0], metrics):
        spec = group.metric_spec(metric)
        scale, _ = scale_and_decimals(spec)
        for index, attack in enumerate(group.attacks):
            xs, ys, errs = [], [], []
            for value, label in sweep.members:
                cell = group.cell(label, attack, metric)
                agg = cell.mean_sem() if cell else None
                if agg is None:
                    continue
                xs.append(value)
                ys.append(scale * agg[0])
                errs.append(scale * (agg[1] or 0.0))
            if len(xs) < 2:
                continue
            drawn = True
            color = f"C{index}"
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, color=color, label=attack if attack != NO_ATTACK else None)
            base = group.cell(identity, attack, metric) if identity else None
            agg = base.mean_sem() if base else None
            if agg is not None:
                ax.axhline(scale * agg[0], color=color, ls="--", lw=1, alpha=0.7)
        if quality is not None:
            _quality_axis(ax, quality, sweep)
        ax.set_xlabel(f"{sweep.family}: {sweep.param}")
        ax.set_ylabel(axis_label(spec, metric).split(" — ")[0] + (f" {spec.arrow}" if spec else ""))
        ax.grid(alpha=0.3)
        if group.attacks != [NO_ATTACK]:
            ax.legend(fontsize=8)
    if not drawn:
        plt.close(fig)
        return None
    fig.suptitle(f"{sweep.family} strength sweep ({group.key.protocol} on {group.key.dataset})", fontsize=10)
    caption = f"{', '.join(metrics)} against {sweep.family} {sweep.param} ({', '.join(label for _, label in sweep.members)})" + \
        (f"; dashed = {identity}" if identity else "") + (f"; dotted, right axis = {quality[1]} from {quality[0].key.protocol}" if quality else "")
    return Plot(name=f"sweep-{_slug(sweep.family)}-{_slug(sweep.param)}", title=f"{sweep.family} {sweep.param} sweep", caption=caption, png=to_png(fig), kind="sweep")


# ------------------------------------------------------------------ everything

def report_plots(tables: Sequence[Table], groups: Sequence[Group], frontier_x: str | None = None, frontier_y: str | None = None) -> list[Plot]:
    """Bar charts per table, the frontier when a privacy and a quality/utility metric exist, sweeps."""
    plots: list[Plot] = []
    x_default, y_default = default_refs(groups, tables)
    x = parse_ref(frontier_x, groups) if frontier_x else x_default
    y = parse_ref(frontier_y, groups) if frontier_y else y_default
    if x is None or y is None:
        log.info("frontier skipped: the results have no %s metric", "privacy" if x is None else "quality or utility")
    else:
        identity = next((t.identity for t in tables if t.identity), None)
        plot = frontier(x, y, identity)
        if plot:
            plots.append(plot)
    for table in tables:
        plots += bar_charts(table)
    for table in tables:
        metrics = list(dict.fromkeys(c.metric for c in table.columns))
        for sweep in find_sweeps(table.group):
            privacy = any(c.spec is not None and c.spec.category == "privacy" for c in table.columns)
            quality = quality_companion(groups, table.group, sweep) if privacy else None
            plot = sweep_plot(table.group, sweep, metrics, table.identity, quality)
            if plot:
                plots.append(plot)
    from evalsuite.reporting.roc_plots import roc_plots  # it builds on this module

    plots += roc_plots(groups)
    return unique_names(plots)


def unique_names(plots: list[Plot]) -> list[Plot]:
    """Suffix repeated names (tables of the same protocol and dataset with other configs)."""
    seen: dict[str, int] = {}
    for plot in plots:
        count = seen.get(plot.name, 0)
        seen[plot.name] = count + 1
        if count:
            plot.name = f"{plot.name}-{count + 1}"
    return plots
