"""The protocol interface: a protocol binds a dataset, a region, attackers and metrics."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import torch
from omegaconf import DictConfig

from evalsuite.cache import Cache
from evalsuite.components import AnonymizerSpec
from evalsuite.plan import ArtifactNode, Cell, Plan


def generated_dataset(name: str) -> bool:
    """Whether the registered dataset ``name`` generates itself (its factory takes the run's ``cache_dir``)."""
    from evalsuite.registry import DATASETS

    return name in DATASETS and "cache_dir" in inspect.signature(DATASETS.get(name).factory).parameters


@dataclass
class CellResult:
    """What one (anonymizer, attack, seed) cell produced."""

    metrics: dict[str, float]
    durations: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    #: arrays kept out of the row: the verification ROC curve (:func:`evalsuite.metrics.roc.roc_points`),
    #: written by the runner to ``OUT/curves/<cell_key>.npz`` and named in the row's ``curves_file``
    curves: dict[str, Any] = field(default_factory=dict)


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
    #: the image set (a key of ``self.sets``) whose images every cell anonymizes; run samples
    #: (:mod:`evalsuite.run_description`) are taken from it; None: this protocol saves none
    sample_set: ClassVar[str | None] = None
    #: the image set (a key of ``self.sets``) that ``fit_on: train`` anonymizers are fitted on
    fit_set: ClassVar[str] = "train"

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

    def build_dataset(self) -> Any:
        """The configured dataset; one that generates itself is generated in this run's cache
        folder, passed explicitly (:func:`evalsuite.config.build_dataset`). A face dataset whose
        photos lack the face boxes the region needs gets them by detection, cached in that folder
        (:mod:`evalsuite.data.face_boxes`)."""
        from evalsuite.config import build_dataset, cache_dir
        from evalsuite.data.face_boxes import complete_face_boxes, missing_boxes, needs_face_boxes, warn_self_reference

        folder = self.cache.root if self.cache is not None else None
        dataset = build_dataset(self.cfg, folder)
        region = self.cfg.get("region")
        if needs_face_boxes(dataset, region):
            detected = bool(missing_boxes(dataset.samples))
            dataset = complete_face_boxes(dataset, folder if folder is not None else cache_dir(self.cfg), required=str(region.name) == "face")
            warn_self_reference(dataset, region, detected)
        return dataset

    # ---------------------------------------------------------------- run samples
    def sample_identities(self, name: str) -> list[Any]:
        """The identity of every image of set ``name`` (run samples show distinct identities):
        ``self.labels[name]``, else the pids / identities of ``self.samples[name]`` or of the
        dataset's split ``name``; None (each image its own) where none is known."""
        size = len(self.sets[name])
        labels = getattr(self, "labels", None)
        if isinstance(labels, dict) and name in labels and len(labels[name]) == size:
            return [v.item() if hasattr(v, "item") else v for v in labels[name]]
        samples = getattr(self, "samples", None)
        listed = samples.get(name) if isinstance(samples, dict) else None
        if listed is None and hasattr(getattr(self, "dataset", None), "split"):
            listed = self.dataset.split(name)  # type: ignore[attr-defined]
        if listed is not None and len(listed) == size:
            return [getattr(s, "pid", None) if getattr(s, "pid", None) is not None else getattr(s, "identity", None) for s in listed]
        return [None] * size

    def sample_output(self, name: str, spec: AnonymizerSpec, seed: int) -> Any:
        """Set ``name`` anonymized by ``spec`` exactly as the cells anonymize it (an
        :class:`evalsuite.pipeline.AnonymizedSet`); the default is the pipeline's set fitted on ``train``."""
        return self.anonymized_sets.get(self.sets[name], spec, seed, train=self.sets.get("train"))

    def sample_region(self) -> str:
        """The region name shown with the samples."""
        region = self.cfg.get("region")
        return str(region.name) if region is not None and "name" in region else "image"

    def run_samples(self, specs: list[AnonymizerSpec], seed: int, count: int) -> Any:
        """A :class:`evalsuite.run_description.RunSamples` of ``count`` images of distinct
        identities from :attr:`sample_set` and each of ``specs``' outputs, taken from the
        anonymized sets the cells used; or a string saying why this protocol gives none."""
        from evalsuite.run_description import RunSamples, pick_indices

        name = self.sample_set
        if name is None or self.anonymized_sets is None or name not in self.sets:
            return f"protocol {self.cfg.protocol} does not name an image set to take samples from"
        image_set = self.sets[name]
        indices = pick_indices(self.sample_identities(name), count)
        index = torch.as_tensor(indices, dtype=torch.long)
        samples = RunSamples(set_name=name, sample_ids=[image_set.sample_ids[i] for i in indices], indices=indices,
                             images=image_set.images[index], masks=image_set.masks[index], region=self.sample_region(), seed=seed)
        for spec in specs:
            result = self.sample_output(name, spec, seed)
            samples.outputs[spec.label] = result.images[index]
            samples.set_keys[spec.label] = result.key
            if result.detections is not None:
                samples.detections[spec.label] = result.detections[index]
        return samples

    def dataset_label(self) -> str:
        """The dataset's name in rows and tables: the loaded dataset's own name once prepared (a
        protocol may read ``dataset=synthetic`` as ``synthetic-faces``), else the configured one;
        for a folder the user gave, its folder name too, ``market1501 (cuhk03-as-market)``, so that
        a copy of another set in the Market-1501 layout is not called Market-1501."""
        dataset = getattr(self, "dataset", None)
        name = str(getattr(dataset, "name", None) or self.cfg.dataset.name)
        root = getattr(dataset, "root", None)
        return f"{name} ({Path(str(root)).name})" if root and not generated_dataset(str(self.cfg.dataset.name)) else name

    def dataset_fingerprint(self) -> dict[str, Any]:
        raise NotImplementedError

    def evaluate(self, anonymizer: AnonymizerSpec, attack: Any, seed: int) -> CellResult:
        raise NotImplementedError

    def row_fields(self, anonymizer: AnonymizerSpec, seed: int) -> dict[str, Any]:
        """The fields the fitted anonymizer contributes to this cell's row (:meth:`anonymizers.base.Anonymizer.row_fields`),
        fitted on :attr:`fit_set`; protocols merge them into ``CellResult.extra``."""
        if self.anonymized_sets is None:
            return {}
        return self.anonymized_sets.row_fields(anonymizer, self.sets.get(self.fit_set), seed)

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
