"""The plan of a run: the artifacts its cells need and the cells, deduplicated by key.

A run is a config -> a :class:`Plan` -> an executor (:mod:`evalsuite.executors`). The plan is
a graph: artifact nodes (trained attackers, fitted anonymizers, anonymized sets, feature
sets: whatever a protocol declares) keyed by everything that changes their bytes, each
listing the artifacts it is built from, and grid cells (anonymizer x attack x seed) listing
the artifacts they read. Two cells that need the same artifact (the clean attacker of every
naive cell) name the same key, so the plan holds it once and an executor builds it once.

Protocols declare artifacts with :meth:`evalsuite.protocol.Protocol.cell_artifacts` (default:
none, so a cell builds what it needs itself, as one node of the graph) and build one with
:meth:`~evalsuite.protocol.Protocol.build_artifact`. Artifacts live in the cache, where
:meth:`evalsuite.cache.Cache.lock` keeps two processes from building one entry twice.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from evalsuite.components import AnonymizerSpec


@dataclass(frozen=True)
class ArtifactNode:
    """Something cells are computed from, built once per key.

    ``key``: the artifact's cache key (data, config, seed, code version); ``kind``: what it is
    (``attacker``, ``anonymized-set``...); ``task``: plain JSON-able values the protocol
    needs to build it in another process (anonymizer label, attack name, seed...);
    ``deps``: keys of the artifacts it is built from."""

    key: str
    kind: str
    task: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    deps: tuple[str, ...] = ()
    description: str = ""


@dataclass
class Cell:
    """One grid cell: an anonymizer, a threat model and a seed, and its result key."""

    spec: AnonymizerSpec
    attack: Any  # a ThreatModel (attacks.threat_models) or the protocol's own attack object
    seed: int
    key: str

    @property
    def name(self) -> str:
        return f"{self.spec.label} / {self.attack.name} / seed {self.seed}"

    def task(self) -> tuple[str, str, int]:
        """(anonymizer label, attack name, seed): what another process needs to find the cell."""
        return self.spec.label, str(self.attack.name), int(self.seed)


class Plan:
    """Artifacts and cells, each once, with their dependencies (always added dependencies first)."""

    def __init__(self) -> None:
        self.artifacts: dict[str, ArtifactNode] = {}
        self.cells: list[Cell] = []
        #: cell key -> keys of the artifacts the cell reads
        self.needs: dict[str, tuple[str, ...]] = {}

    def add_artifact(self, node: ArtifactNode) -> str:
        """Add ``node`` unless an artifact of that key is already planned; returns its key."""
        known = self.artifacts.get(node.key)
        if known is not None:
            if known.kind != node.kind or known.deps != node.deps:
                raise ValueError(f"artifact key {node.key} planned as {known.kind} {known.deps} and as {node.kind} {node.deps}: a key must name one artifact")
            return node.key
        self._check_deps(node.deps, f"artifact {node.key} ({node.kind})")
        self.artifacts[node.key] = node
        return node.key

    def add_cell(self, cell: Cell, needs: Iterable[str] = ()) -> None:
        """Add ``cell``, reading the artifacts ``needs`` (already added); a cell key is added once."""
        if cell.key in self.needs:
            return
        needs = tuple(dict.fromkeys(needs))
        self._check_deps(needs, f"cell {cell.name}")
        self.cells.append(cell)
        self.needs[cell.key] = needs

    def _check_deps(self, deps: Iterable[str], what: str) -> None:
        missing = [d for d in deps if d not in self.artifacts]
        if missing:  # added dependencies first: the graph cannot have a cycle
            raise ValueError(f"{what} depends on unplanned artifacts {missing}; add them first")

    def closure(self, keys: Iterable[str]) -> list[str]:
        """``keys`` and every artifact they are built from, dependencies first."""
        out: dict[str, None] = {}

        def visit(key: str) -> None:
            if key in out:
                return
            for dep in self.artifacts[key].deps:
                visit(dep)
            out[key] = None

        for key in keys:
            visit(key)
        return list(out)

    def __iter__(self) -> Iterator[ArtifactNode | Cell]:
        """Artifacts (in the order planned, so dependencies first), then cells."""
        yield from self.artifacts.values()
        yield from self.cells

    def summary(self) -> str:
        kinds = Counter(n.kind for n in self.artifacts.values())
        listed = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) or "no shared artifacts"
        return f"{len(self.cells)} cells, {listed}"
