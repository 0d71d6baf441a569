"""The pipeline's anonymized sets for scenes of several sizes (detection images), anonymized
instance by instance: :class:`SceneSet` and :class:`AnonymizedScenes` (see
:class:`evalsuite.pipeline.AnonymizedSets` for sets of one size)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from evalsuite.progress import tqdm

from anonymizers.base import Anonymizer
from evalsuite.cache import Cache
from evalsuite.components import AnonymizerSpec
from evalsuite.config import stable_hash
from evalsuite.errors import UserError
from evalsuite.pipeline import AnonymizedSets, Artifacts, ImageSet


@dataclass
class SceneSet:
    """Scenes of several sizes (detection images) and the instance regions to anonymize in each.

    ``image(i)``: scene i as uint8 (3, H, W); ``instances(i)``: its (bool (H, W) mask,
    annotations) per instance; ``generator_ids``: what each scene's generator is seeded with
    (the COCO image id); ``fingerprint``: a hash of the scenes and their annotations."""

    name: str
    sample_ids: list[str]
    image: Callable[[int], torch.Tensor]
    instances: Callable[[int], list[tuple[np.ndarray, dict[str, Any]]]]
    generator_ids: list[int]
    fingerprint: str
    nbytes: int

    def __len__(self) -> int:
        return len(self.sample_ids)


class AnonymizedScenes:
    """Scenes with every instance region anonymized in turn, each with its own mask, so that
    box-based anonymizers treat every person or face on its own (as DeepPrivacy does).

    The counterpart of :class:`AnonymizedSets` for sets whose images differ in size: a clone of
    the configured anonymizer, one generator per scene (a function of the seed and the scene's
    id), and a key holding the data context, the scene set, the anonymizer's parameters and
    code version and (stochastic ones) the seed. Sets of at most ``memory_bytes`` are
    anonymized once, kept in memory and cached on disk; larger ones are anonymized scene by
    scene when read (the same images: each scene's generator depends on nothing else).
    Anonymizers that use the given regions can run on scenes: those fitted on nothing, and
    ``fit_on: train`` ones once :meth:`fit_on_train` names their training data (fitted once
    through :meth:`AnonymizedSets.fitted`, state cached; the training data's key is in the set's key)."""

    def __init__(self, cache: Cache | None, context: dict[str, Any], device: str = "cpu", memory_bytes: int = 2 * 1024**3) -> None:
        self.artifacts = Artifacts(cache)
        self.context = context
        self.device = device
        self.memory_bytes = int(memory_bytes)
        self._sets: dict[str, list[torch.Tensor]] = {}
        self._fitter: AnonymizedSets | None = None
        self._train: tuple[Callable[[], ImageSet], str] | None = None
        self._train_set: ImageSet | None = None

    def fit_on_train(self, train: Callable[[], ImageSet], train_key: str) -> None:
        """``fit_on: train`` anonymizers are fitted on ``train()`` (built when first needed), whose data ``train_key`` names."""
        self._train, self._train_set = (train, train_key), None
        self._fitter = AnonymizedSets(self.artifacts.cache, {**self.context, "fit_data": train_key}, self.device)

    def key(self, scenes: SceneSet, spec: AnonymizerSpec, seed: int) -> str:
        """The key of ``scenes`` anonymized by ``spec`` (see the class docstring)."""
        data: dict[str, Any] = {"kind": "anonymized-scenes", "context": self.context, "set": [scenes.name, scenes.fingerprint], "anonymizer": spec.key()}
        if AnonymizedSets.depends_on_seed(spec):
            data["seed"] = seed
        if AnonymizedSets.fit_on(spec) == "train" and self._train is not None:
            data["fit"] = self._train[1]
        return stable_hash(data)

    def _fitted(self, spec: AnonymizerSpec, seed: int) -> Anonymizer:
        if self._train is None or self._fitter is None:
            raise UserError(f"anonymizer {spec.label} is fitted on training images (fit_on=train) and no training split is loaded to fit it on; remove it from anonymizers")
        if self._train_set is None:
            self._train_set = self._train[0]()
        return self._fitter.fitted(spec, self._train_set, seed)

    def get(self, scenes: SceneSet, spec: AnonymizerSpec, seed: int) -> Callable[[int], torch.Tensor]:
        """Scene i of ``scenes`` anonymized by ``spec``, as a function of i."""
        if AnonymizedSets.is_identity(spec):
            return scenes.image
        if AnonymizedSets.fit_on(spec) not in ("nothing", "train") or AnonymizedSets.finds_own_regions(spec):
            raise UserError(f"anonymizer {spec.label} (fit_on={AnonymizedSets.fit_on(spec)}, regions={getattr(spec.anonymizer, 'regions', 'given')}) "
                            "cannot anonymize scenes instance by instance; remove it from anonymizers")
        anonymizer = self._fitted(spec, seed) if AnonymizedSets.fit_on(spec) == "train" else spec.anonymizer.clone()
        if scenes.nbytes > self.memory_bytes:
            return lambda i: self._anonymize(anonymizer, scenes, spec, seed, i)
        key = self.key(scenes, spec, seed)
        if key not in self._sets:
            def build() -> list[torch.Tensor]:
                return [self._anonymize(anonymizer, scenes, spec, seed, i)
                        for i in tqdm(range(len(scenes)), desc=f"{spec.label} {scenes.name}", unit="img", leave=False)]

            self._sets[key] = self.artifacts.get_or_build("anonymized_scenes", key, ".npz", lambda path: _load_scenes(path, len(scenes)), build,
                                                          _save_scenes, what=f"anonymized {scenes.name} scenes")[0]
        images = self._sets[key]
        return lambda i: images[i]

    def _anonymize(self, anonymizer: Anonymizer, scenes: SceneSet, spec: AnonymizerSpec, seed: int, index: int) -> torch.Tensor:
        from evalsuite.detection.instances import anonymize_instances, image_generator

        image = scenes.image(index)
        regions = scenes.instances(index)
        if not regions:
            return image
        generator = image_generator(seed, scenes.generator_ids[index]) if spec.stochastic else None
        return anonymize_instances(anonymizer, image.to(self.device), regions, generator).cpu()


def _save_scenes(images: list[torch.Tensor], path: Path) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, *[image.numpy() for image in images])


def _load_scenes(path: Path, count: int) -> list[torch.Tensor]:
    with np.load(path) as archive:
        if len(archive.files) != count:
            raise ValueError(f"{len(archive.files)} scenes stored, {count} expected")
        return [torch.from_numpy(archive[f"arr_{i}"]) for i in range(count)]
