"""Self-describing runs: ``OUT/run.json`` and the sample images under ``OUT/samples/``.

After its cells, a run records what it was (:func:`write_run_description`):

- ``run.json``: per config hash (``runs[<config_hash>]``) the protocol's metric specs
  (:mod:`evalsuite.metrics.spec`), the protocol and its version, the dataset's label and
  fingerprint, every anonymizer (label, registry name and description, parameters, module,
  class, code version, declarations), the attacks, the seeds, package versions and the git
  commit. Several runs may write one ``out=``: the file is rewritten atomically under the
  results store's lock, merging entries (anonymizers, attacks and seeds are united) rather
  than replacing them.
- ``samples/<config_hash>/``: a few evaluation images of distinct identities (chosen
  deterministically, :func:`pick_indices`) as ``original/<id>.png``, their region mask
  (``region/``), the original with the region outlined (``outlined/``) and every
  anonymizer's output (``anonymized/<label>/<id>.png``; own-region anonymizers' detections
  under ``detected/<label>/``). The outputs are rows of the very anonymized sets the cells
  used (the protocol's :class:`evalsuite.pipeline.AnonymizedSets`), with the run's first
  seed, so k-Same and stochastic anonymizers show exactly what was measured.

Reports read these files only (:mod:`evalsuite.reporting.grids`); they never rebuild a dataset.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Hashable, Sequence

import numpy as np
import torch

from evalsuite.config import stable_hash
from evalsuite.store import RUN_JSON, ResultsStore, atomic_path, atomic_write_text, read_run_json

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from evalsuite.components import AnonymizerSpec
    from evalsuite.protocol import Protocol

log = logging.getLogger(__name__)

SAMPLES_DIR = "samples"
FORMAT = 1
#: evaluation images saved per run (reports show ``--grid-samples`` of them)
SAMPLE_COUNT = 6
OUTLINE_RGB = (0, 255, 0)


@dataclass
class RunSamples:
    """A few images of one of the protocol's image sets and every anonymizer's output of them."""

    set_name: str
    sample_ids: list[str]
    indices: list[int]
    images: torch.Tensor  # uint8 (N, 3, H, W)
    masks: torch.Tensor  # bool (N, 1, H, W)
    region: str
    seed: int
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # label -> uint8 (N, 3, H, W)
    set_keys: dict[str, str] = field(default_factory=dict)  # label -> the anonymized set's cache key
    detections: dict[str, torch.Tensor] = field(default_factory=dict)  # own-region anonymizers: bool (N, 1, H, W)


# --------------------------------------------------------------------------- choosing samples

def pick_indices(identities: Sequence[Hashable | None], count: int) -> list[int]:
    """``count`` indices of distinct identities, evenly spread over the sorted identities.

    Deterministic: the first image of each identity, identities sorted; negative (junk)
    identities are left out when others exist; ``None`` counts as an identity of its own.
    """
    first: dict[Any, int] = {}
    for index, identity in enumerate(identities):
        first.setdefault(("image", index) if identity is None else ("id", identity), index)
    keys = sorted(first, key=lambda k: (k[0], type(k[1]).__name__, k[1]))
    kept = [k for k in keys if not (k[0] == "id" and isinstance(k[1], (int, np.integer)) and k[1] < 0)] or keys
    if len(kept) <= count:
        return sorted(first[k] for k in kept)
    step = len(kept) / count
    return [first[kept[int(i * step)]] for i in range(count)]


def safe_name(text: str) -> str:
    """A file name for a label or sample id: the image suffix dropped, ``/`` as ``__``; other
    odd characters become ``_`` and a short hash keeps such names apart."""
    stem = str(text)
    for suffix in (".jpg", ".jpeg", ".png", ".bmp"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    safe = stem.replace("/", "__")
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._=+-]*", safe):
        return safe
    return f"{re.sub(r'[^A-Za-z0-9._=+-]+', '_', safe).strip('._') or 'x'}-{stable_hash(str(text), 6)}"


# --------------------------------------------------------------------------- descriptions

def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def describe_anonymizer(spec: AnonymizerSpec) -> dict[str, Any]:
    """Label, registry name / description / source, parameters, module, class, code version, declarations."""
    from evalsuite.registry import ANONYMIZERS

    anonymizer = spec.anonymizer
    entry = ANONYMIZERS.get(spec.name) if spec.name in ANONYMIZERS else None
    return _jsonable({
        "label": spec.label,
        "name": spec.name,
        "params": spec.params,
        "description": entry.description if entry is not None else None,
        "source": entry.source if entry is not None else None,
        "module": type(anonymizer).__module__,
        "class": type(anonymizer).__qualname__,
        "code_version": anonymizer.code_hash(),
        "declared_code_version": str(getattr(anonymizer, "code_version", "")),
        "fit_on": str(getattr(anonymizer, "fit_on", "nothing")),
        "regions": str(getattr(anonymizer, "regions", "given")),
        "stochastic": bool(anonymizer.stochastic),
        "is_identity": bool(anonymizer.is_identity),
    })


def describe_attack(attack: Any) -> dict[str, Any]:
    """An attack's registry description and its threat model's fields."""
    from evalsuite.registry import ATTACKS

    name = str(getattr(attack, "name", attack))
    fields = dataclasses.asdict(attack) if dataclasses.is_dataclass(attack) and not isinstance(attack, type) else {}
    entry = ATTACKS.get(name) if name in ATTACKS else None
    return _jsonable({"name": name, "description": entry.description if entry is not None else None,
                      "class": f"{type(attack).__module__}.{type(attack).__qualname__}", **fields})


def metric_specs(names: Sequence[str]) -> dict[str, dict[str, Any] | None]:
    """The registered spec of every metric (``None`` for one nobody declared)."""
    from evalsuite.metrics.spec import metric_spec

    specs: dict[str, dict[str, Any] | None] = {}
    for name in names:
        spec = metric_spec(name)
        specs[name] = dataclasses.asdict(spec) if spec is not None else None
    return specs


def describe_run(protocol: Protocol, cfg: DictConfig, anonymizers: Sequence[AnonymizerSpec], attacks: Sequence[Any],
                 seeds: Sequence[int], config_hash: str) -> dict[str, Any]:
    """This run's entry of run.json (samples aside)."""
    from evalsuite.registry import PROTOCOLS
    from evalsuite.runner import git_commit, package_versions

    name = str(cfg.protocol)
    try:
        fingerprint = protocol.dataset_fingerprint()
    except NotImplementedError:
        fingerprint = None
    table = [str(m) for m in cfg.table.metrics] if "table" in cfg else list(protocol.table_metrics)
    return _jsonable({
        "config_hash": config_hash,
        "protocol": {"name": name, "version": protocol.version, "class": f"{type(protocol).__module__}.{type(protocol).__qualname__}",
                     "description": PROTOCOLS.get(name).description if name in PROTOCOLS else None},
        "dataset": {"name": str(cfg.dataset.name), "label": protocol.dataset_label(), "fingerprint": fingerprint,
                    "fingerprint_hash": None if fingerprint is None else stable_hash(fingerprint)},
        "metrics": metric_specs(list(dict.fromkeys([*protocol.metrics, *table]))),
        "table_metrics": table,
        "anonymizers": {spec.label: describe_anonymizer(spec) for spec in anonymizers},
        "attacks": {str(getattr(a, "name", a)): describe_attack(a) for a in attacks},
        "seeds": sorted({int(s) for s in seeds}),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


# --------------------------------------------------------------------------- reading and merging

def merge_entry(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` over ``old``: anonymizers, attacks, metrics and seeds united; samples merged per label."""
    if not old:
        return new
    merged = {**old, **new}
    for key in ("anonymizers", "attacks", "metrics"):
        merged[key] = {**(old.get(key) or {}), **(new.get(key) or {})}
    merged["seeds"] = sorted({*old.get("seeds", []), *new.get("seeds", [])})
    old_samples, new_samples = old.get("samples"), new.get("samples")
    if old_samples and new_samples and old_samples.get("ids") == new_samples.get("ids"):
        merged["samples"] = {**old_samples, **{k: v for k, v in new_samples.items() if k != "anonymized"},
                             "anonymized": {**old_samples.get("anonymized", {}), **new_samples.get("anonymized", {})}}
    elif old_samples and not new_samples:
        merged["samples"] = old_samples
    if merged.get("samples"):
        merged.pop("samples_note", None)
    return merged


# --------------------------------------------------------------------------- writing samples

def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _rgb(image: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy().astype(np.uint8))


def outlined(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with the border of ``mask`` drawn in green."""
    import cv2

    out = image.copy()
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, OUTLINE_RGB, 1)
    return out


def write_samples(out: Path, config_hash: str, samples: RunSamples, existing: dict[str, Any] | None = None,
                  code_versions: dict[str, str] | None = None) -> dict[str, Any]:
    """Save ``samples`` as PNG files under ``out/samples/<config_hash>/``; returns their run.json entry.

    Labels that ``existing`` (the entry already in run.json) holds with the same code version
    are kept as they are (first writer wins)."""
    base = Path(SAMPLES_DIR) / safe_name(config_hash)
    names = [safe_name(i) for i in samples.sample_ids]
    same_ids = bool(existing) and existing.get("ids") == samples.sample_ids  # type: ignore[union-attr]
    entry: dict[str, Any] = {
        "set": samples.set_name, "ids": list(samples.sample_ids), "indices": [int(i) for i in samples.indices], "region": samples.region,
        "original": [str(base / "original" / f"{n}.png") for n in names],
        "region_masks": [str(base / "region" / f"{n}.png") for n in names],
        "outlined": [str(base / "outlined" / f"{n}.png") for n in names],
        "anonymized": dict(existing.get("anonymized", {})) if same_ids else {},  # type: ignore[union-attr]
    }
    if not same_ids or not all((out / p).exists() for p in entry["original"]):
        for index in range(len(names)):
            image = _rgb(samples.images[index])
            mask = samples.masks[index, 0].cpu().numpy().astype(bool)
            _save_png(out / entry["original"][index], image)
            _save_png(out / entry["region_masks"][index], (mask * 255).astype(np.uint8))
            _save_png(out / entry["outlined"][index], outlined(image, mask))
    for label, images in samples.outputs.items():
        version = (code_versions or {}).get(label)
        kept = entry["anonymized"].get(label)
        if kept and kept.get("code_version") == version and all((out / p).exists() for p in kept.get("files", [])):
            continue
        folder = base / "anonymized" / safe_name(label)
        files = [str(folder / f"{n}.png") for n in names]
        for index, path in enumerate(files):
            _save_png(out / path, _rgb(images[index]))
        record: dict[str, Any] = {"files": files, "seed": samples.seed, "set_key": samples.set_keys.get(label), "code_version": version, "detections": None}
        if label in samples.detections:
            record["detections"] = [str(base / "detected" / safe_name(label) / f"{n}.png") for n in names]
            for index, path in enumerate(record["detections"]):
                _save_png(out / path, (samples.detections[label][index, 0].cpu().numpy().astype(bool) * 255).astype(np.uint8))
        entry["anonymized"][label] = record
    return entry


# --------------------------------------------------------------------------- the runner's one call

def write_run_description(out: Path, protocol: Protocol, cfg: DictConfig, anonymizers: Sequence[AnonymizerSpec], attacks: Sequence[Any],
                          seeds: Sequence[int], config_hash: str, store: ResultsStore | None = None) -> Path:
    """Write (merge into) ``out/run.json`` and the run's sample images; returns the run.json path.

    Sample images are taken from the protocol (:meth:`evalsuite.protocol.Protocol.run_samples`)
    for the anonymizers whose samples are not saved yet; a protocol that gives none, or a
    failure while taking them, leaves a ``samples_note`` with the reason (logged)."""
    out = Path(out)
    store = store or ResultsStore(out)
    entry = describe_run(protocol, cfg, anonymizers, attacks, seeds, config_hash)
    code_versions = {label: a["code_version"] for label, a in entry["anonymizers"].items()}
    before = ((read_run_json(out) or {}).get("runs") or {}).get(config_hash) or {}
    saved = (before.get("samples") or {}).get("anonymized") or {}
    wanted = [s for s in anonymizers if not s.is_identity
              and not (s.label in saved and saved[s.label].get("code_version") == code_versions[s.label])]
    samples: RunSamples | str | None = None
    if wanted or not before.get("samples"):
        try:
            samples = protocol.run_samples(wanted, int(seeds[0]), SAMPLE_COUNT)
        except Exception as exc:  # noqa: BLE001 - samples illustrate a finished run; they must not cost its results
            log.debug("taking sample images failed", exc_info=True)
            samples = f"taking them failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    path = out / RUN_JSON
    with store.locked():
        document = read_run_json(out) or {"format": FORMAT, "runs": {}}
        old = document["runs"].get(config_hash)
        if isinstance(samples, RunSamples):
            entry["samples"] = write_samples(out, config_hash, samples, (old or {}).get("samples"), code_versions)
        elif isinstance(samples, str):
            entry["samples_note"] = samples
            log.warning("no sample images saved for %s: %s", cfg.protocol, samples)
        document["format"] = FORMAT
        document["runs"][config_hash] = merge_entry(old, entry)
        atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path
