"""One self-contained HTML page: tables, plots, image grids, the runs' configs and versions.

Styles are inline and images are base64 ``data:`` URIs, so the file can be mailed, attached
to a CI run or opened offline.
"""
from __future__ import annotations

import base64
import html
from collections import defaultdict
from datetime import datetime, timezone
from typing import Sequence

from evalsuite.reporting.formats import html_table
from evalsuite.reporting.plots import Plot
from evalsuite.reporting.results import Group
from evalsuite.reporting.table import Table

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
.tablewrap { overflow-x: auto; max-width: 100%; }
table.results { border-collapse: collapse; margin: 1em 0 .3em; font-variant-numeric: tabular-nums; }
table.results caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .4em; }
table.results th, table.results td { padding: .25em .7em; text-align: right; white-space: nowrap; }
table.results thead tr:first-child th { border-top: 2px solid #222; }
table.results thead tr:last-child th { border-bottom: 1px solid #222; }
table.results th.group { border-bottom: 1px solid #888; text-align: center; }
table.results th.rowhead, table.results tbody th { text-align: left; font-weight: normal; }
table.results tbody tr:last-child th, table.results tbody tr:last-child td { border-bottom: 2px solid #222; }
table.results tr.identity th, table.results tr.identity td { border-bottom: 1px solid #888; color: #555; }
td.best { font-weight: 700; } td.absent, td.incomplete { color: #999; } span.sem { color: #555; } span.delta { color: #777; font-size: .9em; }
p.note { font-size: .85em; color: #555; margin-top: 0; }
p.note.warning { color: #a00; font-weight: bold; font-size: .95em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; } figcaption { font-size: .85em; color: #555; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; } .plots figure { flex: 0 1 auto; max-width: 100%; }
pre { background: #f6f8fa; padding: .8em; overflow: auto; font-size: .8em; max-height: 30em; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0 0 .4em 1em; font-family: monospace; font-size: .85em; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure(plot: Plot) -> str:
    e = html.escape
    return (f'<figure id="{e(plot.name)}"><img alt="{e(plot.title)}" src="{data_uri(plot.png)}">'
            f"<figcaption>{e(plot.caption)}</figcaption></figure>")


def versions_summary(groups: Sequence[Group]) -> dict[str, list[str]]:
    """package -> the distinct versions the rows record (plus git commits and devices)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for group in groups:
        for row in group.rows:
            for package, version in (row.get("versions") or {}).items():
                seen[package].add(str(version))
            if row.get("git_commit"):
                seen["git commit"].add(str(row["git_commit"]))
            if row.get("device"):
                seen["device"].add(str(row["device"]))
    return {k: sorted(v) for k, v in sorted(seen.items())}


def html_page(tables: Sequence[Table], plots: Sequence[Plot], grids: Sequence[Plot], groups: Sequence[Group], title: str = "evalsuite report",
              grid_notes: Sequence[str] = ()) -> str:
    """The whole page as one string; ``grid_notes``: one line per group without an image grid."""
    e = html.escape
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sources = [str(s.path) for g in groups for s in g.sources]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="note">Generated {e(generated)} from {", ".join(e(s) for s in dict.fromkeys(sources))}.</p>',
        "<h2>Results</h2>",
    ]
    parts += [f'<div class="tablewrap">{html_table(t)}</div>' for t in tables]
    main_plots = [p for p in plots if p.kind != "bar"]
    bars = [p for p in plots if p.kind == "bar"]
    if main_plots:
        parts.append("<h2>Privacy–utility frontier and strength sweeps</h2>")
        parts.append('<div class="plots">' + "".join(_figure(p) for p in main_plots) + "</div>")
    if grids or grid_notes:
        parts.append("<h2>Image grids</h2>")
        parts += [_figure(g) for g in grids]
        parts += [f'<p class="note">{e(note)}</p>' for note in grid_notes]
    if bars:
        parts.append("<h2>Per-metric bar charts</h2>")
        parts.append('<div class="plots">' + "".join(_figure(p) for p in bars) + "</div>")
    parts.append("<h2>Configuration</h2>")
    seen_configs: set[str] = set()
    for group in groups:
        for source in group.sources:
            if source.config_text and str(source.path) not in seen_configs:
                seen_configs.add(str(source.path))
                parts.append(f"<details{' open' if len(seen_configs) == 1 else ''}><summary>{e(str(source.path.parent / 'config.yaml'))} "
                             f"({e(group.key.describe())})</summary><pre>{e(source.config_text)}</pre></details>")
    if not seen_configs:
        parts.append('<p class="note">No config.yaml was found beside the results.</p>')
    parts.append("<h2>Versions</h2><dl class=\"meta\">")
    for package, values in versions_summary(groups).items():
        parts.append(f"<dt>{e(package)}</dt><dd>{e(', '.join(values))}</dd>")
    parts.append("</dl></body></html>")
    return "\n".join(parts) + "\n"
