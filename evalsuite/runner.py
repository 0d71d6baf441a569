"""The grid runner: anonymizers x attacks x seeds for one protocol, resumable and cached."""
from __future__ import annotations

import logging
import platform
import subprocess
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from evalsuite.progress import tqdm

from evalsuite.cache import Cache
from evalsuite.components import AnonymizerSpec, resolve_anonymizer, resolve_attack, sweep_entries
from evalsuite.config import NON_RESULT_KEYS, cache_dir, stable_hash, to_plain, validate_config
from evalsuite.errors import UserError, did_you_mean
from evalsuite.executors import Outcome, make_executor
from evalsuite.plan import Cell
from evalsuite.protocol import Protocol
from evalsuite.registry import PROTOCOLS
from evalsuite.reproducibility import numerics_context
from evalsuite.run_description import write_run_description
from evalsuite.report import markdown_table
from evalsuite.store import ResultsStore, check_writable_folder, check_writable_out
from evalsuite.threads import limit_threads

log = logging.getLogger(__name__)

PACKAGES = ("evalsuite", "torch", "torchvision", "torchreid", "numpy", "opencv-python-headless", "omegaconf")


@dataclass
class RunOutcome:
    out_dir: Path
    rows: list[dict[str, Any]]
    table: str
    computed: int
    skipped: int


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The commit of the evalsuite checkout, when it is one."""
    here = Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def result_config(cfg: DictConfig) -> dict[str, Any]:
    """The part of the config that determines every cell's numbers."""
    plain = to_plain(cfg)
    region = plain.get("region")
    if isinstance(region, dict) and region.get("source", "annotations") == "annotations":
        # annotation masks: the detector settings do not matter (and configs from before they existed keep their hash)
        plain["region"] = {k: v for k, v in region.items() if k not in ("source", "detector")}
    return {k: v for k, v in plain.items() if k not in NON_RESULT_KEYS}


def resolve_device(name: str) -> str:
    """Check that ``device`` names a torch device this machine has."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device={name} is not a torch device; use device=cpu or device=cuda[:N]") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device={name} requested but CUDA is not available on this machine; use device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s); use device=cuda:0")
    elif device.type != "cpu":
        raise UserError(f"device={name} is not supported; use device=cpu or device=cuda[:N]")
    return name


def out_dir_for(cfg: DictConfig) -> Path:
    if cfg.out:
        return Path(str(cfg.out)).expanduser()
    return Path("results") / f"{cfg.protocol}-{cfg.dataset.name}"


def run(cfg: DictConfig) -> RunOutcome:
    """Evaluate every (anonymizer, attack, seed) cell not already in OUT/results.jsonl.

    Runs with ``num_threads`` torch / BLAS / OpenCV threads (see ``evalsuite.threads``).
    """
    validate_config(cfg)
    threads = int(cfg.num_threads)
    with limit_threads(threads), numerics_context(bool(cfg.get("deterministic", False)), threads) as record:
        return _run(cfg, record)


@dataclass
class Grid:
    """A prepared run: the protocol with its data loaded, and the grid's components.

    Built by :func:`load_grid` in the driver and, from the same config, once in every worker."""

    cfg: DictConfig
    cache: Cache
    protocol: Protocol
    anonymizers: list[AnonymizerSpec]
    attacks: list[Any]
    seeds: list[int]
    table_metrics: list[str]

    @property
    def anonymizers_by_label(self) -> dict[str, AnonymizerSpec]:
        return {a.label: a for a in self.anonymizers}

    def find(self, label: str, attack: str) -> tuple[AnonymizerSpec, Any]:
        """The anonymizer and threat model of a cell, by label and attack name."""
        return self.anonymizers_by_label[label], next(a for a in self.attacks if a.name == attack)


def resolve_components(cfg: DictConfig) -> tuple[list[AnonymizerSpec], list[Any], list[int]]:
    """The grid's anonymizers, threat models and seeds, checked by name (nothing loaded)."""
    resolve_device(str(cfg.device))
    entries = list(to_plain(cfg.anonymizers)) + (sweep_entries(to_plain(cfg.sweep)) if cfg.get("sweep") is not None else [])
    anonymizers: list[AnonymizerSpec] = [resolve_anonymizer(a) for a in entries]
    labels = [a.label for a in anonymizers]
    if len(set(labels)) != len(labels):
        raise UserError(f"anonymizers list names one anonymizer twice ({labels}); give repeated ones distinct label= values")
    attacks = [resolve_attack(a) for a in to_plain(cfg.attacks)]
    seeds = [int(s) for s in cfg.seeds]
    if not anonymizers or not attacks or not seeds:
        raise UserError("anonymizers, attacks and seeds must each name at least one value")
    supported = PROTOCOLS.get(str(cfg.protocol)).factory.supported_attacks
    for attack in attacks:
        if attack.name not in supported:
            raise UserError(f"attacks names {attack.name!r}, which {cfg.protocol} does not support; use attacks=[{','.join(supported)}]")
    return anonymizers, attacks, seeds


def load_grid(cfg: DictConfig) -> Grid:
    """Resolve the components and prepare the protocol: every input error surfaces here,
    before OUT is touched."""
    anonymizers, attacks, seeds = resolve_components(cfg)
    cache = Cache.for_config(cfg)  # its context: what can change the last bits of anything computed
    protocol = PROTOCOLS.build(str(cfg.protocol), cfg=cfg, cache=cache)
    table_metrics = [str(m) for m in cfg.table.metrics] if "table" in cfg else list(protocol.table_metrics)
    for metric in table_metrics:
        if metric not in protocol.metrics:
            raise UserError(f"table.metrics names {metric!r}, which {cfg.protocol} does not report: {did_you_mean(metric, protocol.metrics)}")
    protocol.prepare()  # every input error surfaces here, before OUT is touched
    protocol.validate_anonymizers(anonymizers)
    return Grid(cfg, cache, protocol, anonymizers, attacks, seeds, table_metrics)


def _run(cfg: DictConfig, numerics_record: dict[str, Any]) -> RunOutcome:
    resolve_device(str(cfg.device))
    check_writable_out(out_dir_for(cfg))  # before any data is loaded
    check_writable_folder(cache_dir(cfg), "cache_dir")
    executor = make_executor(cfg, numerics_record)
    grid = load_grid(cfg)
    protocol, cache = grid.protocol, grid.cache

    out = out_dir_for(cfg)
    store = ResultsStore(out)
    config_hash = stable_hash(result_config(cfg))
    store.save_config(OmegaConf.to_yaml(cfg), config_hash)
    base = {
        "protocol": str(cfg.protocol),
        "protocol_version": protocol.version,
        "dataset": protocol.dataset_label(),
        "config_hash": config_hash,
    }
    versions, commit = package_versions(), git_commit()
    # region.source=detect: what the detector missed of the annotated regions of the attacked set, in every row
    sample_set = protocol.sets.get(protocol.sample_set) if protocol.sample_set else None
    detection_leak = sample_set.detection_leak() if hasattr(sample_set, "detection_leak") else {}
    cells = []
    for spec, attack, seed in ((a, t, s) for s in grid.seeds for t in grid.attacks for a in grid.anonymizers):
        cell_key = stable_hash({"config_hash": config_hash, "anonymizer": spec.label, "params": spec.key(), "attack": attack.name, "seed": seed,
                                "numerics": cache.context})
        cells.append(Cell(spec, attack, seed, cell_key))
    todo = [c for c in cells if not store.has(c.key)]  # stored by an earlier run: neither planned nor built
    skipped = len(cells) - len(todo)
    plan = protocol.plan(todo)
    log.info("plan: %s; executor %s", plan.summary(), executor.name)
    computed = 0
    with closing(executor.run(plan, grid, lambda c: store.has(c.key))) as outcomes:  # closing stops Ray's workers on any error
        for done in tqdm(outcomes, total=len(todo), desc=f"{cfg.protocol} grid", unit="cell"):
            if done.result is None:  # stored by another run on this out= meanwhile
                skipped += 1
                continue
            done.result.metrics = {**detection_leak, **done.result.metrics}  # an own-region anonymizer's own leak rate wins
            computed += _store_row(store, base, cfg, executor.name, done, versions, commit)

    # every cell has run (in this process or in workers): run-level outputs from here on
    write_run_description(out, protocol, cfg, grid.anonymizers, grid.attacks, grid.seeds, config_hash, store)  # OUT/run.json, OUT/samples/
    rows = [r for r in store.rows if r.get("config_hash") == config_hash]
    table = markdown_table(
        rows,
        anonymizers=[a.label for a in grid.anonymizers],
        attacks=[a.name for a in grid.attacks],
        metrics=grid.table_metrics,
        title=f"{cfg.protocol} on {protocol.dataset_label()} (attacker {cfg.attacker.model})" if "attacker" in cfg else None,
        min_skill=float(cfg.guard.min_skill),
    )
    store.write_text("table.md", table)
    return RunOutcome(out_dir=out, rows=rows, table=table, computed=computed, skipped=skipped)


def _store_row(store: ResultsStore, base: dict[str, Any], cfg: DictConfig, executor: str, done: Outcome, versions: dict[str, str | None], commit: str | None) -> int:
    """Append one finished cell's row (only the run's process writes rows); 1."""
    spec, attack, seed, result = done.cell.spec, done.cell.attack, done.cell.seed, done.result
    assert result is not None
    row = {
        **base,
        "anonymizer": spec.label,
        "anonymizer_name": spec.name,
        "anonymizer_params": spec.params,
        "attack": attack.name,
        "seed": seed,
        "metrics": result.metrics,
        "cell_key": done.cell.key,
        "durations": {**result.durations, "artifacts_s": done.artifacts_s, "total_s": done.artifacts_s + done.seconds},
        "device": str(cfg.device),
        "executor": executor,
        "numerics": done.numerics,
        "versions": versions,
        "git_commit": commit,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **result.extra,
    }
    if result.curves:  # before the row, so that a stored row's curves file always exists
        row["curves_file"] = store.write_curves(done.cell.key, result.curves)
    store.append(row)
    log.info("%s / %s / seed %d: %s", spec.label, attack.name, seed, {k: round(v, 4) for k, v in result.metrics.items()})
    return 1
