"""Paper-style reports (Markdown, LaTeX, CSV, HTML, plots, image grids) and the CI gate.

- :mod:`.results`: read and merge run folders / results.jsonl files into groups;
- :mod:`.table`: the one table builder (order, mean ± sem, best, delta, completeness);
- :mod:`.formats`: Markdown / LaTeX / CSV / HTML renderers of a built table;
- :mod:`.plots`, :mod:`.grids`, :mod:`.html_page`: figures and the self-contained page;
- :mod:`.baseline`, :mod:`.check`: ``evalsuite baseline`` and ``evalsuite check``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from evalsuite.errors import UserError
from evalsuite.reporting.formats import FORMATS, csv_text, latex, markdown
from evalsuite.reporting.results import Group, load_results
from evalsuite.reporting.strength import DEFAULT_MIN_SKILL
from evalsuite.reporting.table import GroupBy, build_tables
from evalsuite.store import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

SUFFIXES = {".md": "md", ".markdown": "md", ".tex": "latex", ".csv": "csv", ".html": "html", ".htm": "html"}


@dataclass
class ReportOptions:
    """What ``evalsuite report`` was asked for."""

    format: str | None = None
    out: Path | None = None
    order: list[str] = field(default_factory=list)
    metrics: list[str] | str | None = None
    attacks: list[str] | None = None
    delta: bool = False
    group_by: GroupBy = "attack"
    standalone: bool = False
    plots_dir: Path | None = None
    grid_samples: int = 4
    frontier_x: str | None = None
    frontier_y: str | None = None
    title: str = "evalsuite report"
    min_skill: float = DEFAULT_MIN_SKILL  # the attacker-strength guard (evalsuite.reporting.strength)


def resolve_format(options: ReportOptions) -> str:
    """--format, else the --out suffix, else Markdown."""
    if options.format:
        if options.format not in FORMATS:
            raise UserError(f"--format {options.format!r} is not one of {', '.join(FORMATS)}")
        return options.format
    if options.out is not None and options.out.suffix.lower() in SUFFIXES:
        return SUFFIXES[options.out.suffix.lower()]
    if options.out is not None:
        raise UserError(f"cannot tell the format of {options.out} from its suffix; pass --format {'|'.join(FORMATS)}")
    return "md"


def render(groups: Sequence[Group], options: ReportOptions) -> str:
    """The report text in the chosen format (plots written to --plots when asked)."""
    fmt = resolve_format(options)
    metrics = options.metrics if options.metrics is not None else ("all" if fmt == "csv" else None)
    tables = build_tables(groups, metrics, options.attacks, options.order, options.delta, options.group_by, options.min_skill)
    plots: list = []
    grids: list = []
    grid_notes: list[str] = []
    if fmt == "html" or options.plots_dir is not None:
        from evalsuite.reporting.grids import image_grids
        from evalsuite.reporting.plots import report_plots

        plots = report_plots(tables, groups, options.frontier_x, options.frontier_y)
        if options.grid_samples > 0:  # from the run folders' saved samples; nothing is recomputed
            grids, grid_notes = image_grids([(t.group, t.rows) for t in tables], options.grid_samples)
    if options.plots_dir is not None:
        options.plots_dir.mkdir(parents=True, exist_ok=True)
        for plot in [*plots, *grids]:
            with atomic_path(options.plots_dir / f"{plot.name}.png") as tmp:
                tmp.write_bytes(plot.png)
        log.info("wrote %d figures to %s", len(plots) + len(grids), options.plots_dir)
    if fmt == "md":
        return markdown(tables)
    if fmt == "latex":
        return latex(tables, standalone=options.standalone)
    if fmt == "csv":
        return csv_text(tables)
    from evalsuite.reporting.html_page import html_page

    return html_page(tables, plots, grids, groups, title=options.title, grid_notes=grid_notes)


def generate_report(paths: Sequence[Path | str], options: ReportOptions) -> str:
    """Load RESULTS, render, and write ``options.out`` atomically when given."""
    groups = load_results(paths)
    text = render(groups, options)
    if options.out is not None:
        atomic_write_text(options.out, text)
    return text
