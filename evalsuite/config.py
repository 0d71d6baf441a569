"""Run configuration: defaults composed with Hydra-grammar ``key=value`` overrides.

Composition order (later wins): suite defaults, the protocol's defaults, the dataset's
defaults (a dataset is a config group: ``dataset=synthetic`` selects one, ``dataset.root=...``
sets one of its keys), then the user's overrides. The result is a struct OmegaConf: an
unknown key is a :class:`UserError` naming the closest valid keys.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from evalsuite.errors import UserError, did_you_mean
from evalsuite.registry import DATASETS, PROTOCOLS

SUITE_DEFAULTS: dict[str, Any] = {
    "protocol": "market1501-reid",
    "dataset": {"name": "market1501"},
    "anonymizers": ["none"],
    "attacks": ["naive"],
    "seeds": [0],
    "device": "cpu",
    "out": None,  # default: results/<protocol>-<dataset>
    "cache_dir": None,  # default: $EVALSUITE_CACHE or ~/.cache/evalsuite
    "batch_size": 64,
    "num_threads": 1,  # torch, BLAS/OpenMP and OpenCV threads per process (evalsuite.threads)
    "deterministic": False,  # pin the CPU code path, oneDNN, MKL, threads (evalsuite.reproducibility)
    # how the plan runs (evalsuite.executors): `executor=ray` selects one like a config group;
    # workers 0 = one per num_threads cores; address: an existing Ray cluster (default: start one here)
    "executor": {"name": "serial", "workers": 0, "address": None},
    # the attacker-strength guard: flag attack columns whose clean attacker covers less than
    # this share of the way from chance to perfect (evalsuite.reporting.strength)
    "guard": {"min_skill": 0.2},
    # a strength sweep: {anonymizer: blur, param: sigma, values: [1, 3, 5, 7]} adds one
    # anonymizer per value to the grid (evalsuite.components.sweep_entries)
    "sweep": None,
}

#: keys that never change what is measured and so stay out of config hashes; the execution
#: settings among them that can change the last bits (num_threads, deterministic) are in
#: each row's ``numerics`` record, its cell_key and every cache key instead, so that a
#: baseline made on one thread count gates a run on another
NON_RESULT_KEYS = ("out", "cache_dir", "device", "batch_size", "num_threads", "deterministic", "anonymizers", "attacks", "seeds", "executor", "guard", "sweep")


#: dataset factory parameters the protocol passes at build time; not config keys
RUNTIME_DATASET_PARAMS = ("cache_dir",)


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """Parse ``key=value`` strings with Hydra's override grammar."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except OverrideParseException as exc:
            first = str(exc).splitlines()[0]
            raise UserError(f"cannot parse override {text!r}: {first}; write key=value, e.g. anonymizers=[blur,pixelate8]") from None
        if override.is_delete() or override.is_add() or override.is_force_add():
            raise UserError(f"override {text!r}: '+', '++' and '~' prefixes are not supported; set existing keys with key=value")
        value = override.value()
        parsed.append((override.key_or_group, _plain(value)))
    return parsed


def _plain(value: Any) -> Any:
    """Hydra values (sweeps aside) as plain Python containers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "list"):  # ChoiceSweep, RangeSweep: not supported here
        raise UserError(f"sweep values such as {value} are not supported; list the values instead, e.g. seeds=[0,1,2]")
    return value


def dataset_defaults(name: str) -> dict[str, Any]:
    """A dataset group's defaults: the keyword defaults of its registered factory."""
    entry = DATASETS.get(name)
    params = {"name": name}
    for pname, p in inspect.signature(entry.factory).parameters.items():
        if pname in RUNTIME_DATASET_PARAMS:
            continue
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty:
            params[pname] = p.default
    extra = getattr(entry.factory, "config_defaults", None)  # factories taking **settings
    if callable(extra):
        params.update(extra())
    params.update(entry.params)
    return params


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The full run configuration for ``overrides`` (Hydra grammar)."""
    parsed = parse_overrides(overrides)
    values = dict(parsed)
    protocol_name = values.get("protocol", SUITE_DEFAULTS["protocol"])
    if not isinstance(protocol_name, str):
        raise UserError(f"protocol must be a name, got {protocol_name!r}; see `evalsuite list protocols`")
    dataset_name = values.get("dataset")
    if isinstance(dataset_name, dict):
        dataset_name = dataset_name.get("name")
    named = values.get("dataset.name")
    if dataset_name is not None and named is not None and str(named) != str(dataset_name):
        raise UserError(f"dataset={dataset_name} and dataset.name={named} name two datasets; give one of them")
    if dataset_name is None and isinstance(named, str):
        dataset_name = named  # `dataset.name=X` selects the group as `dataset=X` does, with X's own keys
    cfg = defaults(protocol_name, None if dataset_name is None else str(dataset_name))

    for key, value in parsed:
        if key in ("dataset", "dataset.name") and isinstance(value, str):
            continue  # the group was selected above
        if key == "executor" and isinstance(value, str):
            key = "executor.name"  # `executor=ray` selects the executor, as `dataset=synthetic` a dataset
        _set(cfg, key, value)
    validate_config(cfg)
    return cfg


def defaults(protocol_name: str, dataset_name: str | None = None) -> DictConfig:
    """The config before any user override: suite, protocol and dataset defaults (struct)."""
    protocol_cls = PROTOCOLS.get(protocol_name).factory
    cfg = OmegaConf.create(SUITE_DEFAULTS)
    cfg = OmegaConf.merge(cfg, OmegaConf.create(protocol_cls.default_config()))
    cfg.protocol = protocol_name
    name = str(cfg.dataset.name) if dataset_name is None else dataset_name
    name = getattr(protocol_cls, "dataset_aliases", {}).get(name, name)
    cfg.dataset = dataset_defaults(name)
    if "region" in cfg:  # where masks come from: the annotations, or a detector (evalsuite.region_detectors)
        cfg.region = OmegaConf.merge({"source": "annotations", "detector": {"name": "dlib-hog"}}, cfg.region)
    OmegaConf.set_struct(cfg, True)
    if "region" in cfg:
        OmegaConf.set_struct(cfg.region.detector, False)  # each detector has its own settings; build_detector checks them
    return cfg


def validate_config(cfg: DictConfig) -> None:
    """Check every numeric key's type and range (``evalsuite.schema``); UserError of one line."""
    from evalsuite.schema import validate

    protocol_name = str(cfg.protocol)
    base = defaults(protocol_name, str(cfg.dataset.name))
    validate(to_plain(cfg), to_plain(base), protocol_name, PROTOCOLS.get(protocol_name).factory)
    if "region" in cfg:
        _validate_region_source(cfg.region)


def _validate_region_source(region: DictConfig) -> None:
    """``region.source`` and, when it is ``detect``, the detector's name and settings (built, not loaded)."""
    source = str(region.get("source"))
    if source not in ("annotations", "detect"):
        raise UserError(f"region.source={source!r}: use annotations (masks from the dataset's annotations) or detect (masks from region.detector)")
    if source == "detect":
        from evalsuite.region_detectors import build_detector

        settings = to_plain(region.detector)
        build_detector(str(settings.pop("name", None)), **settings)


def _set(cfg: DictConfig, key: str, value: Any) -> None:
    parts = key.split(".")
    node = cfg
    for depth, part in enumerate(parts):
        if not isinstance(node, DictConfig) or part not in node:
            where = ".".join(parts[:depth]) or "the config"
            valid = list(node.keys()) if isinstance(node, DictConfig) else []
            prefix = ".".join(parts[:depth])
            valid_full = [f"{prefix}.{k}" if prefix else str(k) for k in valid]
            raise UserError(f"unknown config key {key!r} (no {part!r} in {where}): {did_you_mean(key, valid_full)}")
        if depth < len(parts) - 1:
            node = node[part]
    try:
        OmegaConf.update(cfg, key, value, merge=False)
    except OmegaConfBaseException as exc:
        raise UserError(f"cannot set {key}={value!r}: {str(exc).splitlines()[0]}") from None


def to_plain(cfg: Any) -> Any:
    """An OmegaConf node (mapping or list) as plain Python containers; anything else unchanged."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return cfg


def stable_hash(obj: Any, length: int = 16) -> str:
    """A hash of a JSON-able object that does not depend on key order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def cache_dir(cfg: DictConfig | None = None) -> Path:
    """Where anonymized sets, trained attackers and generated datasets are cached.

    The config's ``cache_dir``; when it is empty, ``$EVALSUITE_CACHE``, else ``~/.cache/evalsuite``.
    Read, never set: components get the folder passed explicitly (:func:`build_dataset`)."""
    if cfg is not None and cfg.get("cache_dir"):
        return Path(str(cfg.cache_dir)).expanduser()
    return Path(os.environ.get("EVALSUITE_CACHE") or Path.home() / ".cache" / "evalsuite").expanduser()


def build_dataset(cfg: DictConfig, folder: Path | None = None) -> Any:
    """The dataset ``cfg.dataset`` names, built with its settings; factories that generate
    their data (a ``cache_dir`` parameter) are given ``folder`` (default: :func:`cache_dir`)."""
    name = str(cfg.dataset.name)
    entry = DATASETS.get(name)
    params = {k: v for k, v in to_plain(cfg.dataset).items() if k != "name"}
    if "cache_dir" in inspect.signature(entry.factory).parameters:
        params["cache_dir"] = Path(folder) if folder is not None else cache_dir(cfg)
    return entry.build(**params)
