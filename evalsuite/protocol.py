"""The protocol interface: a protocol binds a dataset, a region, attackers and metrics."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

from omegaconf import DictConfig

from evalsuite.cache import Cache
from evalsuite.components import AnonymizerSpec
from evalsuite.plan import ArtifactNode, Cell, Plan


@dataclass
class CellResult:
    """What one (anonymizer, attack, seed) cell produced."""

    metrics: dict[str, float]
    durations: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class Protocol:
    """Subclasses set the class attributes and implement prepare / evaluate."""

    version: ClassVar[str] = "1"
    #: names of the registered metrics (``evalsuite.metrics.spec``) each cell reports
    metrics: ClassVar[tuple[str, ...]] = ()
    #: attack names this protocol can evaluate (``none`` for protocols without an attacker)
    supported_attacks: ClassVar[tuple[str, ...]] = ("naive", "adaptive", "parrot")
    #: dataset names this protocol reads as another registered dataset, e.g. a face protocol
    #: maps ``synthetic`` to ``synthetic-faces`` so that ``dataset=synthetic`` works everywhere
    dataset_aliases: ClassVar[dict[str, str]] = {}
    #: metrics shown in the printed table by default
    table_metrics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: DictConfig, cache: Cache) -> None:
        self.cfg = cfg
        self.cache = cache
        #: the protocol's decoded image sets and their anonymized versions (:mod:`evalsuite.pipeline`)
        self.sets: dict[str, Any] = {}
        self.anonymized_sets: Any = None

    @property
    def images(self) -> dict[str, Any]:
        """Each image set's decoded uint8 (N, 3, H, W) images."""
        return {name: s.images for name, s in self.sets.items()}

    @property
    def masks(self) -> dict[str, Any]:
        """Each image set's bool (N, 1, H, W) region masks."""
        return {name: s.masks for name, s in self.sets.items()}

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {}

    def prepare(self) -> None:
        """Load data and validate everything that can fail before any output is written."""

    def validate_anonymizers(self, specs: list[AnonymizerSpec]) -> None:
        """Check the anonymizers against this protocol's data before any output is written
        (``precomputed`` checks its folder; refused declarations raise UserError)."""
        if self.anonymized_sets is not None:
            self.anonymized_sets.bind(specs, list(self.sets.values()))

    def dataset_label(self) -> str:
        return str(self.cfg.dataset.name)

    def dataset_fingerprint(self) -> dict[str, Any]:
        raise NotImplementedError

    def evaluate(self, anonymizer: AnonymizerSpec, attack: Any, seed: int) -> CellResult:
        raise NotImplementedError

    # ---------------------------------------------------------------- the plan (evalsuite.plan)
    def plan(self, cells: Sequence[Cell]) -> Plan:
        """The artifacts ``cells`` need, deduplicated by key, and the cells (after :meth:`prepare`)."""
        plan = Plan()
        for cell in cells:
            plan.add_cell(cell, [plan.add_artifact(node) for node in self.cell_artifacts(cell.spec, cell.attack, cell.seed)])
        return plan

    def cell_artifacts(self, anonymizer: AnonymizerSpec, attack: Any, seed: int) -> list[ArtifactNode]:
        """The artifacts one cell reads, dependencies first. Default: none declared; the cell
        builds (through the cache) whatever it needs when it is evaluated."""
        return []

    def build_artifact(self, node: ArtifactNode, anonymizers: Mapping[str, AnonymizerSpec]) -> None:
        """Build ``node`` (one of this protocol's :meth:`cell_artifacts`) into the cache, or
        read it from there, and keep it for the cells this process evaluates. ``anonymizers``:
        the run's anonymizers by label (a node's ``task`` names them by label)."""
        raise NotImplementedError(f"{type(self).__name__} declares {node.kind} artifacts but does not build them")
