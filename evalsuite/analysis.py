"""Results as a tidy pandas DataFrame: ``evalsuite.load_results(paths)``.

One DataFrame row per (cell, metric): a cell is one stored row of a run's results.jsonl
(protocol x dataset x anonymizer x attack x seed). Columns:

- the cell: ``protocol``, ``protocol_version``, ``dataset``, ``config_hash``, ``anonymizer``
  (the label), ``anonymizer_name``, ``attack``, ``seed``, ``cell_key``;
- the value: ``metric``, ``value`` (float; rates as fractions, as stored), and the metric's
  declared ``higher_is_better``, ``category`` and ``unit`` (missing for undeclared metrics);
- everything else a row holds, nested mappings flattened with dots by
  :func:`pandas.json_normalize`: ``anonymizer_params.<name>``, ``versions.<package>``,
  ``durations.<step>``, ``git_commit``, ``device``, ``finished_at`` (a UTC timestamp), and
  whatever a protocol adds (``attacker_key``, ``num_queries``, ...);
- where it came from: ``source`` (the results.jsonl file) and ``config_file`` (the run's
  ``configs/<config_hash>.yaml`` or ``config.yaml`` that describes the cell, when present).

Rows of several files merge; a cell stored twice (same ``cell_key``) counts once (the first,
with a warning when the metrics differ). A torn last line of a killed run is skipped.

:func:`read_sources` is the one reader of run folders: this DataFrame, the reports and the
CI gate (:mod:`evalsuite.reporting.results`, which groups the same sources' rows as they
are, per-item scores and curve files included) all read results through it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from evalsuite.errors import UserError
from evalsuite.store import CONFIG_NAME, CONFIGS_DIR, read_rows, read_run_json, results_file

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

CELL_COLUMNS = ["protocol", "protocol_version", "dataset", "config_hash", "anonymizer", "anonymizer_name", "attack", "seed", "cell_key"]
VALUE_COLUMNS = ["metric", "value", "higher_is_better", "category", "unit"]
REQUIRED = ("protocol", "dataset", "anonymizer", "attack", "seed", "metrics")


@dataclass
class RunSource:
    """One results path: its results file, its rows, its config.yaml text and run.json (if any)."""

    path: Path
    rows: list[dict[str, Any]]
    config_text: str | None = None
    description: dict[str, Any] | None = None

    @property
    def folder(self) -> Path:
        return self.path.parent

    def run_entry(self, config_hash: str) -> dict[str, Any] | None:
        """This source's run.json entry of ``config_hash`` (None without one)."""
        entry = ((self.description or {}).get("runs") or {}).get(config_hash)
        return entry if isinstance(entry, dict) else None


def read_sources(paths: str | Path | Iterable[str | Path], required: Sequence[str] = REQUIRED, allow_empty: bool = True) -> list[RunSource]:
    """The rows of every run folder / results.jsonl in ``paths``, checked (UserError naming the
    file and line), with the config.yaml and run.json beside them. ``allow_empty=False``: a
    file without rows is a UserError too."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    sources = []
    for path in paths:
        file = results_file(Path(path))
        rows = read_rows(file)
        if not rows and not allow_empty:
            raise UserError(f"{file} holds no result rows; run `evalsuite run ... out={file.parent}` first")
        for lineno, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise UserError(f"{file}:{lineno} is not a JSON object; is this an evalsuite results.jsonl?")
            missing = [k for k in required if k not in row]
            if missing:
                raise UserError(f"{file}:{lineno} lacks {', '.join(missing)}; is this an evalsuite results.jsonl?")
            if not isinstance(row["metrics"], dict):
                raise UserError(f"{file}:{lineno}: 'metrics' must be a mapping of metric name to value")
        config = file.parent / CONFIG_NAME
        sources.append(RunSource(path=file, rows=rows, config_text=config.read_text(encoding="utf-8") if config.exists() else None,
                                 description=read_run_json(file.parent)))
    return sources


def _config_file(results: Path, config_hash: Any) -> str | None:
    by_hash = results.parent / CONFIGS_DIR / f"{config_hash}.yaml"
    if by_hash.is_file():
        return str(by_hash)
    main = results.parent / CONFIG_NAME
    return str(main) if main.is_file() else None


def _metric_columns(metric: str) -> dict[str, Any]:
    from evalsuite.metrics.spec import metric_spec
    from evalsuite.registry import load_all

    load_all()
    spec = metric_spec(metric)
    if spec is None:
        return {"higher_is_better": None, "category": None, "unit": None}
    return {"higher_is_better": spec.higher_is_better, "category": spec.category, "unit": spec.unit}


def load_results(paths: str | Path | Iterable[str | Path]) -> "pd.DataFrame":
    """Tidy results of run folders / results.jsonl files: one row per cell and metric."""
    import pandas as pd  # here: reports and the gate read through read_sources without it

    sources = read_sources(paths)
    if not sources:
        raise UserError("load_results needs at least one run folder or results.jsonl file")
    cells: list[dict[str, Any]] = []
    long: list[dict[str, Any]] = []
    seen: dict[str, dict[str, Any]] = {}
    for source in sources:
        for row in source.rows:
            key = row.get("cell_key")
            if key is not None and key in seen:
                if seen[key]["metrics"] != row["metrics"]:
                    log.warning("cell %s is stored twice with different metrics (%s); keeping the first", key, source.path)
                continue
            if key is not None:
                seen[key] = row
            index = len(cells)
            cell = {k: v for k, v in row.items() if k != "metrics"}
            cell.update(source=str(source.path), config_file=_config_file(source.path, row.get("config_hash")))
            cells.append(cell)
            long.extend({"_cell": index, "metric": m, "value": v} for m, v in row["metrics"].items())
    if not cells:
        return pd.DataFrame(columns=[*CELL_COLUMNS, *VALUE_COLUMNS, "source", "config_file"])
    cell_frame = pd.json_normalize(cells, sep=".")
    for column in CELL_COLUMNS:
        if column not in cell_frame:
            cell_frame[column] = None
    values = pd.DataFrame(long, columns=["_cell", "metric", "value"])
    values["value"] = pd.to_numeric(values["value"], errors="coerce").astype(float)
    specs = pd.DataFrame([{"metric": m, **_metric_columns(m)} for m in values["metric"].unique()], columns=["metric", "higher_is_better", "category", "unit"])
    values = values.merge(specs, on="metric", how="left")
    frame = values.merge(cell_frame, left_on="_cell", right_index=True, how="left").drop(columns="_cell")
    frame["seed"] = frame["seed"].astype(int)
    if "finished_at" in frame:
        frame["finished_at"] = pd.to_datetime(frame["finished_at"], utc=True, errors="coerce")
    first = [*CELL_COLUMNS, *VALUE_COLUMNS]
    return frame[first + [c for c in frame.columns if c not in first]].reset_index(drop=True)
