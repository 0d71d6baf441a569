"""Renderers of built tables: Markdown (GitHub), LaTeX (booktabs), tidy CSV and HTML.

They all lay out the same :class:`~evalsuite.reporting.table.Table`: the numbers, the bold
best values, the deltas and the notes are decided once, in the builder.
"""
from __future__ import annotations

import csv
import html
import io
import json
import re
from dataclasses import dataclass
from typing import Sequence

from evalsuite.reporting.table import Table, TableCell, format_delta, format_number

FORMATS = ("md", "latex", "csv", "html")
#: LaTeX tables with more data columns than this are scaled to the line width (graphicx)
WIDE_COLUMNS = 8


@dataclass
class CellText:
    """A cell's pieces as text: value, standard error and delta (None when absent)."""

    value: str | None
    sem: str | None
    delta: str | None
    cell: TableCell


def cell_text(table: Table, row: str, index: int) -> CellText:
    cell = table.cell(row, index)
    spec = table.columns[index].spec
    if cell.status != "ok":
        return CellText(None, None, None, cell)
    return CellText(
        value=format_number(cell.mean, spec),  # type: ignore[arg-type]
        sem=format_number(cell.sem, spec) if cell.sem is not None else None,
        delta=format_delta(cell.delta, spec) if cell.delta is not None else None,
        cell=cell,
    )


def incomplete_text(cell: TableCell) -> str:
    return f"incomplete ({cell.n}/{cell.expected} seeds)"


# ------------------------------------------------------------------ Markdown

def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(tables: Sequence[Table]) -> str:
    """GitHub-flavoured Markdown: a bold title, a pipe table and its note per table."""
    return "\n".join(markdown_one(t) for t in tables)


def markdown_one(table: Table, title: bool = True) -> str:
    header = ["Anonymizer"] + [table.flat_header(c) for c in table.columns]
    lines = [f"**{_md_escape(table.title)}**", ""] if title and table.title else []
    lines.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * len(table.columns)) + "|")
    for row in table.rows:
        cells = [_md_escape(row)]
        for index in range(len(table.columns)):
            text = cell_text(table, row, index)
            if text.value is None:
                cells.append("–" if text.cell.status == "absent" else incomplete_text(text.cell))
                continue
            body = text.value + (f" ± {text.sem}" if text.sem else "")
            if text.cell.best:
                body = f"**{body}**"
            cells.append(body + (f" ({text.delta})" if text.delta else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + table.notes()
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ LaTeX

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"↓": r"$\downarrow$", "↑": r"$\uparrow$", "±": r"$\pm$", "–": "--", "∞": r"$\infty$", "σ": r"$\sigma$"}


def latex_escape(text: str) -> str:
    """Plain text as LaTeX source (special characters escaped, arrows and ± as math)."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    for char, replacement in _LATEX_UNICODE.items():
        out = out.replace(char, replacement)
    return out


def _latex_number(text: str) -> str:
    return f"${text}$" if text.startswith(("-", "+")) else latex_escape(text)


def latex(tables: Sequence[Table], standalone: bool = False) -> str:
    """booktabs tables (``\\usepackage{booktabs}``); ``standalone`` wraps them in a document."""
    body = "\n".join(latex_one(t) for t in tables)
    wide = any(len(t.columns) > WIDE_COLUMNS for t in tables)
    if not standalone:
        return "% requires \\usepackage{booktabs}" + (" and \\usepackage{graphicx}" if wide else "") + "\n" + body
    return (
        "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
        "\\begin{document}\n" + body + "\\end{document}\n"
    )


def latex_one(table: Table) -> str:
    spec = "l" + "".join("r" * span for _, span in table.header_groups())
    lines = ["\\begin{table}[t]", "\\centering", "\\small"]
    caption = latex_escape(table.title + ". " + " ".join(table.notes()))
    label = re.sub(r"[^A-Za-z0-9:-]+", "-", f"tab:{table.key.protocol}-{table.key.dataset}")
    wide = len(table.columns) > WIDE_COLUMNS
    lines += [f"\\caption{{{caption}}}", f"\\label{{{label}}}"]
    if wide:  # scaled to the text width
        lines.append("\\resizebox{\\linewidth}{!}{%")
    lines += [f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    if table.show_attack:
        top, rules, col = ["Anonymizer"], [], 2
        for name, span in table.header_groups():
            top.append(f"\\multicolumn{{{span}}}{{c}}{{{latex_escape(name)}}}")
            rules.append(f"\\cmidrule(lr){{{col}-{col + span - 1}}}")
            col += span
        lines.append(" & ".join(top) + " \\\\")
        lines.append(" ".join(rules))
        lines.append(" & ".join([""] + [latex_escape(table.sub_header(c)) for c in table.columns]) + " \\\\")
    else:
        lines.append(" & ".join(["Anonymizer"] + [latex_escape(table.flat_header(c)) for c in table.columns]) + " \\\\")
    lines.append("\\midrule")
    for row in table.rows:
        cells = [latex_escape(row)]
        for index in range(len(table.columns)):
            text = cell_text(table, row, index)
            if text.value is None:
                cells.append("--" if text.cell.status == "absent" else f"\\textit{{{latex_escape(incomplete_text(text.cell))}}}")
                continue
            body = _latex_number(text.value) + (f" $\\pm$ {_latex_number(text.sem)}" if text.sem else "")
            if text.cell.best:
                body = f"\\textbf{{{body}}}"
            cells.append(body + (f" ({_latex_number(text.delta)})" if text.delta else ""))
        lines.append(" & ".join(cells) + " \\\\")
        if row == table.identity and len(table.rows) > 1:
            lines.append("\\midrule")
    lines += ["\\bottomrule", "\\end{tabular}" + ("}" if wide else ""), "\\end{table}", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------ tidy CSV

CSV_FIELDS = (
    "protocol", "protocol_version", "dataset", "config_hash", "anonymizer", "anonymizer_name", "anonymizer_params",
    "attack", "metric", "label", "category", "unit", "higher_is_better", "mean", "sem", "n_seeds", "expected_seeds",
    "seeds", "status", "delta_to_original", "best",
)


def csv_text(tables: Sequence[Table]) -> str:
    """One row per cell value (absent cells left out), values as stored (rates as fractions)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for table in tables:
        key = table.key
        for row in table.rows:
            info = table.group.anonymizers[row]
            for index, column in enumerate(table.columns):
                cell = table.cell(row, index)
                if cell.status == "absent":
                    continue
                spec = column.spec
                writer.writerow({
                    "protocol": key.protocol, "protocol_version": key.protocol_version, "dataset": key.dataset,
                    "config_hash": key.config_hash, "anonymizer": row, "anonymizer_name": info.name,
                    "anonymizer_params": json.dumps(info.params, sort_keys=True), "attack": column.attack,
                    "metric": column.metric, "label": column.label,
                    "category": spec.category if spec else "", "unit": spec.unit if spec else "",
                    "higher_is_better": "" if spec is None else str(spec.higher_is_better).lower(),
                    "mean": "" if cell.mean is None else repr(cell.mean), "sem": "" if cell.sem is None else repr(cell.sem),
                    "n_seeds": cell.n, "expected_seeds": cell.expected, "seeds": " ".join(map(str, cell.seeds)),
                    "status": cell.status, "delta_to_original": "" if cell.delta is None else repr(cell.delta),
                    "best": str(cell.best).lower(),
                })
    return buffer.getvalue()


# ------------------------------------------------------------------ HTML table

def html_table(table: Table) -> str:
    """A ``<table>`` with grouped headers (colspan), bold best cells and a note."""
    e = html.escape
    out = [f'<table class="results"><caption>{e(table.title)}</caption><thead>']
    if table.show_attack:
        out.append('<tr><th rowspan="2" class="rowhead">Anonymizer</th>' + "".join(
            f'<th colspan="{span}" class="group">{e(name)}</th>' for name, span in table.header_groups()) + "</tr>")
        out.append("<tr>" + "".join(f"<th>{e(table.sub_header(c))}</th>" for c in table.columns) + "</tr>")
    else:
        out.append('<tr><th class="rowhead">Anonymizer</th>' + "".join(f"<th>{e(table.flat_header(c))}</th>" for c in table.columns) + "</tr>")
    out.append("</thead><tbody>")
    for row in table.rows:
        klass = ' class="identity"' if row == table.identity else ""
        cells = [f'<th scope="row">{e(row)}</th>']
        for index in range(len(table.columns)):
            text = cell_text(table, row, index)
            if text.value is None:
                if text.cell.status == "absent":
                    cells.append('<td class="absent">–</td>')
                else:
                    cells.append(f'<td class="incomplete">{e(incomplete_text(text.cell))}</td>')
                continue
            body = e(text.value) + (f'<span class="sem"> ± {e(text.sem)}</span>' if text.sem else "")
            if text.delta:
                body += f' <span class="delta">({e(text.delta)})</span>'
            cells.append(f'<td class="best">{body}</td>' if text.cell.best else f"<td>{body}</td>")
        out.append(f"<tr{klass}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    out += [f'<p class="{"note warning" if note.startswith("WARNING") else "note"}">{e(note)}</p>' for note in table.notes()]
    return "\n".join(out)
