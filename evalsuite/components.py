"""Turning config entries into components: anonymizer specs and threat models."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from anonymizers.base import Anonymizer
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS, ATTACKS


@dataclass
class AnonymizerSpec:
    """A configured anonymizer: its table label, registry name and full parameters."""

    label: str
    name: str
    params: dict[str, Any]
    anonymizer: Anonymizer = field(repr=False)

    @property
    def is_identity(self) -> bool:
        return self.anonymizer.is_identity

    @property
    def stochastic(self) -> bool:
        return self.anonymizer.stochastic

    def key(self) -> dict[str, Any]:
        """What identifies this anonymizer's output: name, class, parameters and code version."""
        return {"name": self.name, "class": type(self.anonymizer).__qualname__, "params": self.params, "code_version": self.anonymizer.code_hash()}


def default_label(name: str, overrides: dict[str, Any]) -> str:
    """The table label of an anonymizer configured with ``overrides``: ``pixelate(block_size=5)``."""
    return name + "(" + ",".join(f"{k}={v}" for k, v in sorted(overrides.items())) + ")" if overrides else name


def resolve_anonymizer(spec: Any) -> AnonymizerSpec:
    """``"blur"`` or ``{name: pixelate, block_size: 5, label: pix5}`` -> AnonymizerSpec."""
    if isinstance(spec, str):
        name, overrides, label = spec, {}, spec
    elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
        overrides = {k: v for k, v in spec.items() if k not in ("name", "label")}
        name = spec["name"]
        label = spec.get("label") or default_label(name, overrides)
    else:
        raise UserError(f"anonymizer entry {spec!r} must be a name or a mapping with a 'name' key, e.g. anonymizers=[blur,{{name:pixelate,block_size:5}}]")
    entry = ANONYMIZERS.get(name)
    try:
        anonymizer = entry.build(**overrides)
    except TypeError as exc:
        raise UserError(f"anonymizer {name!r}: {exc}; see its parameters in anonymizers/") from None
    return AnonymizerSpec(label=str(label), name=name, params=anonymizer.get_params(), anonymizer=anonymizer)


def sweep_entries(sweep: Any) -> list[dict[str, Any]]:
    """``sweep={anonymizer: blur, param: sigma, values: [1, 3, 5]}`` -> one anonymizer entry per value.

    ``anonymizer`` is a name or a mapping with fixed parameters (``{name: pixelate, grid: null}``);
    each entry is labelled ``name(param=value)`` like any parameterised anonymizer.
    """
    example = "sweep={anonymizer:blur,param:sigma,values:[1,3,5,7]}"
    if not isinstance(sweep, dict) or set(sweep) - {"anonymizer", "param", "values"} or not {"anonymizer", "param", "values"} <= set(sweep):
        raise UserError(f"sweep={sweep!r} must be a mapping with exactly the keys anonymizer, param and values, e.g. {example}")
    base = sweep["anonymizer"]
    base = {"name": base} if isinstance(base, str) else base
    if not isinstance(base, dict) or not isinstance(base.get("name"), str) or "label" in base:
        raise UserError(f"sweep.anonymizer={sweep['anonymizer']!r} must be a name or a mapping with a 'name' key (no label), e.g. {example}")
    param, values = sweep["param"], sweep["values"]
    if not isinstance(param, str) or param in ("name", "label") or param in base:
        raise UserError(f"sweep.param={param!r} must name one parameter of {base['name']} not fixed in sweep.anonymizer, e.g. {example}")
    if not isinstance(values, list) or len(values) < 2 or len(set(map(repr, values))) != len(values):
        raise UserError(f"sweep.values={values!r} must be a list of at least two distinct values, e.g. {example}")
    entries = []
    for value in values:
        entry = {**base, param: value}
        entry["label"] = default_label(base["name"], {k: v for k, v in entry.items() if k != "name"})
        entries.append(entry)
    return entries


def resolve_attack(name: Any):
    if not isinstance(name, str):
        raise UserError(f"attack entry {name!r} must be a name; see `evalsuite list attacks`")
    return ATTACKS.build(name)
