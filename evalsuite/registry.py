"""Decorator registries for every pluggable component, extended by Python entry points.

A component is registered under a name with a one-line description::

    @ANONYMIZERS.register("blur", description="Gaussian blur of the region")
    class GaussianBlur(Anonymizer): ...

Presets bind fixed parameters to a registered factory under another name::

    ANONYMIZERS.register_preset("pixelate8", "pixelate", grid=8, description=...)

Outside packages add components through entry points in the group ``evalsuite.<kind>``
(``evalsuite.anonymizers``, ``evalsuite.attacks``, ``evalsuite.recognizers``, ``evalsuite.protocols``,
``evalsuite.datasets``, ``evalsuite.metrics``). An entry point may name a module (imported
for its registration side effects) or a callable (registered under the entry point's name).
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterator

from evalsuite.errors import UserError, did_you_mean

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One registered component: a factory, its fixed parameters and a description."""

    name: str
    factory: Callable[..., Any]
    description: str
    params: dict[str, Any] = field(default_factory=dict)
    source: str = "builtin"

    def build(self, **overrides: Any) -> Any:
        """Instantiate the component with its preset parameters updated by ``overrides``."""
        return self.factory(**{**self.params, **overrides})


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


class Registry:
    """Name -> component table for one kind of component."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.group = f"evalsuite.{kind}"
        self._entries: dict[str, Entry] = {}
        self._entry_points_loaded = False

    def register(self, name: str, description: str | None = None, **params: Any) -> Callable:
        """Class/function decorator registering ``obj`` under ``name``."""

        def decorator(obj: Callable) -> Callable:
            self.add(name, obj, description=description or _first_line(obj.__doc__), **params)
            return obj

        return decorator

    def add(self, name: str, factory: Callable, description: str = "", source: str = "builtin", **params: Any) -> Entry:
        if name in self._entries and self._entries[name].factory is not factory:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({self._entries[name].factory} and {factory})")
        entry = Entry(name=name, factory=factory, description=description, params=dict(params), source=source)
        self._entries[name] = entry
        return entry

    def register_preset(self, name: str, base: str, description: str, **params: Any) -> Entry:
        """Register ``name`` as ``base`` with some parameters fixed."""
        parent = self._entries[base]
        return self.add(name, parent.factory, description=description, source=parent.source, **{**parent.params, **params})

    def load_entry_points(self) -> None:
        """Import components that installed distributions declare in this registry's group."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in metadata.entry_points(group=self.group):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the whole suite
                log.warning("could not load %s entry point %r (%s): %s", self.group, ep.name, ep.value, exc)
                continue
            dist = getattr(ep, "dist", None)
            source = f"entry point {ep.value}" + (f" ({dist.name})" if dist is not None else "")
            if callable(obj) and ep.name not in self._entries:
                self.add(ep.name, obj, description=_first_line(getattr(obj, "__doc__", "")), source=source)

    def get(self, name: str) -> Entry:
        """The entry for ``name``; a UserError naming the closest valid names otherwise."""
        if name not in self._entries:
            raise UserError(f"unknown {self.singular} {name!r}: {did_you_mean(name, self._entries)} (see `evalsuite list`)")
        return self._entries[name]

    def build(self, name: str, **overrides: Any) -> Any:
        return self.get(name).build(**overrides)

    @property
    def singular(self) -> str:
        """``studies`` -> ``study``, ``anonymizers`` -> ``anonymizer``."""
        if self.kind.endswith("ies"):
            return self.kind[:-3] + "y"
        return self.kind[:-1] if self.kind.endswith("s") else self.kind

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)


ANONYMIZERS = Registry("anonymizers")
ATTACKS = Registry("attacks")
PROTOCOLS = Registry("protocols")
DATASETS = Registry("datasets")
METRICS = Registry("metrics")
RECOGNIZERS = Registry("recognizers")
STUDIES = Registry("studies")

ALL: dict[str, Registry] = {r.kind: r for r in (ANONYMIZERS, ATTACKS, RECOGNIZERS, PROTOCOLS, DATASETS, METRICS, STUDIES)}

_BUILTIN_MODULES = ("anonymizers", "attacks", "protocols", "evalsuite.data", "evalsuite.metrics", "evalsuite.studies")
_loaded = False


def load_all() -> dict[str, Registry]:
    """Import the built-in plugin packages, then every installed entry point. Idempotent."""
    global _loaded
    if not _loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True
    for registry in ALL.values():
        registry.load_entry_points()
    return ALL
