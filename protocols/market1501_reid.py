"""Person re-identification on Market-1501 (or its synthetic stand-in) with an OSNet attacker.

The DeepPrivacy2 experiment (thesis Paper D, Table 1), generalised to five threat models:
the body region of every query (and, for the parrot attack, gallery) image is anonymized,
and torchreid's OSNet tries to re-identify the person, on the anonymized images or, under the
reconstruction attacks, on a de-anonymizer's reconstructions of them (its perceptual loss
runs through the clean attacker). Lower rank-1 / mAP = better privacy.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Mapping

import numpy as np
import torch

from attacks.reconstruction import Deanonymizer, ReconstructionAttack, ReconstructionConfig, reconstruction_quality
from attacks.reid_attacker import AttackerConfig, ReidAttacker
from attacks.threat_models import ThreatModel
from evalsuite.arrays import as_tensor
from evalsuite.components import AnonymizerSpec
from evalsuite.config import stable_hash, to_plain
from evalsuite.data.types import ReidDataset
from evalsuite.errors import UserError
from evalsuite.metrics.chance import reid_chance
from evalsuite.metrics.items import item_scores_entry
from evalsuite.metrics.reid import REID_METRICS, evaluate_reid, pairwise_distance
from evalsuite.metrics.roc import REID_VERIFICATION_METRICS, reid_pairs, reid_verification
from evalsuite.pipeline import AnonymizedSets, ImageSet
from evalsuite.plan import ArtifactNode
from evalsuite.protocol import CellResult, Protocol
from evalsuite.registry import PROTOCOLS
from evalsuite.trained_models import Memo, TrainedModels, training_source
from evalsuite.data.synthetic import generated_fingerprint

log = logging.getLogger(__name__)

SPLITS = ("train", "query", "gallery")


@PROTOCOLS.register("market1501-reid", description="person re-id on Market-1501 with OSNet under naive / adaptive / parrot attackers (DeepPrivacy2 Table 1)")
class Market1501Reid(Protocol):
    version = "1"
    metrics = REID_METRICS + REID_VERIFICATION_METRICS + ("attacked_psnr", "attacked_ssim")
    supported_attacks = ("naive", "adaptive", "parrot", "reconstruction", "reconstruction-adaptive")
    table_metrics = ("rank1", "mAP")
    sample_set = "query"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "dataset": {"name": "market1501"},
            "anonymizers": ["none", "blur", "pixelate8", "pixelate16", "mask"],
            "attacks": ["naive", "adaptive"],
            "region": {"name": "body", "dilation": 3, "fallback": "image"},
            "attacker": AttackerConfig().as_dict(),
            "reconstruction": ReconstructionConfig().as_dict(),
            "table": {"metrics": list(cls.table_metrics)},
        }

    def __init__(self, cfg, cache) -> None:
        super().__init__(cfg, cache)
        self.attacker_config = AttackerConfig.from_dict(to_plain(cfg.attacker))
        self.device = str(cfg.device)
        self.dataset: ReidDataset | None = None
        self._attackers: TrainedModels[ReidAttacker] | None = None
        self._feature_cache: Memo[torch.Tensor] = Memo()
        self._per_dataset: Memo[Any] = Memo()  # what depends on the labels only: chance levels, verification pairs
        self._attacked_quality: Memo[dict[str, float]] = Memo()  # per attacked query set (shared by its attacks)

    # ---------------------------------------------------------------- preparation
    def prepare(self) -> None:
        self.dataset = self.build_dataset()
        log.info("%s", self.dataset.summary())
        for split in SPLITS:
            if not self.dataset.split(split):
                raise UserError(f"dataset {self.dataset.root} has no {split} images; check dataset.root")
            # decoded once into the cache and read in chunks: memory follows the batch size, not the split
            self.sets[split] = ImageSet.from_samples(split, self.dataset.split(split), to_plain(self.cfg.region), cache=self.cache)
        self._log_unmatched_queries()
        context = {"protocol": "market1501-reid", "dataset": self.dataset_fingerprint(), "region": to_plain(self.cfg.region)}
        self.anonymized_sets = AnonymizedSets(self.cache, context, self.device, int(self.cfg.batch_size), protocol="market1501-reid")
        self._attackers = TrainedModels(self.anonymized_sets.artifacts, "attackers", "attacker")
        self.reconstruction = ReconstructionAttack(self.anonymized_sets.artifacts, ReconstructionConfig.from_dict(to_plain(self.cfg.reconstruction)),
                                                   self.device, "market1501-reid")
        from attacks.reid_attacker import load_checkpoint_state

        for key in ("weights", "init_weights"):  # fail early, before any output
            if getattr(self.attacker_config, key):
                load_checkpoint_state(getattr(self.attacker_config, key), f"attacker.{key}")

    def _log_unmatched_queries(self) -> None:
        """Say how many queries every metric skips: those without a gallery image of their pid from another camera (torchreid's rule)."""
        assert self.dataset is not None
        cameras: dict[int, set[int]] = {}
        for g in self.dataset.gallery:
            cameras.setdefault(g.pid, set()).add(g.camid)
        skipped = [q for q in self.dataset.query if not cameras.get(q.pid, set()) - {q.camid}]
        if skipped:
            log.warning("%d of %d queries have no gallery image of their identity from another camera and are skipped by every metric "
                        "(torchreid's rule), e.g. %s; each row's num_valid_queries counts the rest", len(skipped), len(self.dataset.query), skipped[0].relpath)

    def dataset_fingerprint(self) -> dict[str, Any]:
        assert self.dataset is not None
        files = [f"{s.relpath}:{s.pid}:{s.camid}" for split in SPLITS for s in self.dataset.split(split)]
        return {"name": self.dataset.name, "config": to_plain(self.cfg.dataset), "files": stable_hash(files), **generated_fingerprint(self.dataset.root)}

    # ---------------------------------------------------------------- anonymized sets
    def anonymized(self, split: str, spec: AnonymizerSpec, seed: int) -> tuple[torch.Tensor, str]:
        """The split anonymized by ``spec`` (the shared pipeline: fitted as declared, cached) and its key."""
        assert self.anonymized_sets is not None
        result = self.anonymized_sets.get(self.sets[split], spec, seed, train=self.sets["train"])
        return result.images, result.key

    # ---------------------------------------------------------------- attackers
    def _attacker_key(self, train_source: dict[str, Any], seed: int) -> str:
        cfg = self.attacker_config.as_dict()
        for key in ("weights", "init_weights"):
            if getattr(self.attacker_config, key):
                from pathlib import Path

                stat = Path(getattr(self.attacker_config, key)).expanduser().stat()
                cfg[f"{key}_file"] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        return stable_hash({"protocol": "market1501-reid", "version": self.version, "dataset": self.dataset_fingerprint(), "train": train_source, "attacker": cfg, "seed": seed})

    def _train_set_key(self, spec: AnonymizerSpec, seed: int) -> str:
        assert self.anonymized_sets is not None
        return self.anonymized_sets.set_key(self.sets["train"], spec, seed, train=self.sets["train"])

    def _attacker_source(self, kind: str, spec: AnonymizerSpec, seed: int) -> dict[str, Any]:
        if kind == "reconstructed":
            return {"images": "reconstructed", "deanonymizer": self._deanonymizer_key(spec, seed)}
        return training_source(kind == "clean", lambda: self._train_set_key(spec, seed))

    @staticmethod
    def _trains_on(attack: ThreatModel, spec: AnonymizerSpec) -> str:
        """What the attacker trains on: ``clean``, ``anonymized`` or ``reconstructed`` training images."""
        if attack.train == "clean" or spec.is_identity:
            return "clean"
        return "reconstructed" if attack.reconstruct else "anonymized"

    def attacker(self, attack: ThreatModel, spec: AnonymizerSpec, seed: int) -> tuple[ReidAttacker, str, float]:
        """The attacker of this threat model; trained once per training data, config and seed."""
        return self._attacker(self._trains_on(attack, spec), spec, seed)

    # ---------------------------------------------------------------- the reconstruction attacks
    def _deanonymizer_key(self, spec: AnonymizerSpec, seed: int) -> str:
        return self.reconstruction.key(self._train_set_key(spec, seed), seed, self._attacker_key(self._attacker_source("clean", spec, seed), seed))

    def _deanonymizer(self, spec: AnonymizerSpec, seed: int) -> tuple[Deanonymizer, str]:
        """The de-anonymizer of ``spec``'s training set; its perceptual loss runs through the clean attacker."""
        clean, clean_key, _ = self._attacker("clean", spec, seed)
        train, train_key = self.anonymized("train", spec, seed)
        return self.reconstruction.deanonymizer(as_tensor(train), as_tensor(self.images["train"]), train_key, seed, clean.signed_features, clean_key)

    def attacked(self, split: str, spec: AnonymizerSpec, seed: int, reconstruct: bool) -> tuple[torch.Tensor, str]:
        """The split as the attacker sees it: anonymized and, under the reconstruction attacks, reconstructed."""
        images, key = self.anonymized(split, spec, seed)
        if reconstruct and not spec.is_identity:
            model, model_key = self._deanonymizer(spec, seed)
            images, key = self.reconstruction.reconstruct(model, model_key, images, key)
        return images, key

    def _attacker(self, kind: str, spec: AnonymizerSpec, seed: int) -> tuple[ReidAttacker, str, float]:
        assert self.dataset is not None and self._attackers is not None
        clean = kind == "clean"
        key = self._attacker_key(self._attacker_source(kind, spec, seed), seed)
        if key in self._attackers:
            return self._attackers[key], key, 0.0
        attacker = ReidAttacker(self.attacker_config, num_classes=self.dataset.num_train_pids, device=self.device, seed=seed)
        started = time.perf_counter()

        def train() -> ReidAttacker:
            if self.attacker_config.weights:  # the naive attacker as given; adaptive ones fine-tune it
                attacker.load_weights(self.attacker_config.weights)
                if clean:
                    return attacker
            images = self.images["train"] if clean else self.attacked("train", spec, seed, kind == "reconstructed")[0]
            pids = torch.tensor([s.pid for s in self.dataset.train])  # type: ignore[union-attr]
            attacker.fit(images, pids, description=f"train attacker ({'clean' if clean else f'{kind} {spec.label}'}, seed {seed})")
            return attacker

        if clean and self.attacker_config.weights:
            return self._attackers.put(key, train()), key, time.perf_counter() - started
        attacker, seconds = self._attackers.get(key, attacker.load_cached, train, lambda a: a.model.state_dict())
        return attacker, key, seconds

    # ---------------------------------------------------------------- the plan
    def cell_artifacts(self, anonymizer: AnonymizerSpec, attack: ThreatModel, seed: int) -> list[ArtifactNode]:
        """The cell's attacker: the clean one (shared by every naive cell of a seed) or the
        one trained on this anonymizer's training set (adaptive); none when loaded from
        ``attacker.weights`` unchanged."""
        kind = self._trains_on(attack, anonymizer)
        if kind == "clean" and self.attacker_config.weights:
            return []
        key = self._attacker_key(self._attacker_source(kind, anonymizer, seed), seed)
        trained_on = "clean" if kind == "clean" else f"{kind} {anonymizer.label}"
        return [ArtifactNode(key, "attacker", task={"anonymizer": None if kind == "clean" else anonymizer.label, "seed": seed, "kind": kind},
                             description=f"attacker trained on {trained_on}, seed {seed}")]

    def build_artifact(self, node: ArtifactNode, anonymizers: Mapping[str, AnonymizerSpec]) -> None:
        if node.kind != "attacker":
            return super().build_artifact(node, anonymizers)
        label, seed = node.task["anonymizer"], int(node.task["seed"])
        spec = next(iter(anonymizers.values())) if label is None else anonymizers[label]
        _, key, _ = self._attacker(node.task.get("kind", "clean" if label is None else "anonymized"), spec, seed)
        if key != node.key:  # this process's data or config differ from the planner's
            raise RuntimeError(f"{node.description}: planned as {node.key}, built as {key}; every worker must see the same dataset and config")

    def _features(self, attacker: ReidAttacker, attacker_key: str, images: torch.Tensor, set_key: str) -> torch.Tensor:
        return self._feature_cache.get((attacker_key, set_key), lambda: attacker.extract(
            images, batch_size=max(64, int(self.cfg.batch_size)), description=f"features {set_key[:18]}"))

    # ---------------------------------------------------------------- one grid cell
    def evaluate(self, anonymizer: AnonymizerSpec, attack: ThreatModel, seed: int) -> CellResult:
        assert self.dataset is not None
        timer = time.perf_counter()
        query, query_key = self.attacked("query", anonymizer, seed, attack.reconstruct)
        if attack.gallery == "anonymized":
            gallery, gallery_key = self.attacked("gallery", anonymizer, seed, attack.reconstruct)
        else:
            gallery, gallery_key = self.images["gallery"], "clean-gallery"
        anonymize_s = time.perf_counter() - timer
        attacker, attacker_key, train_s = self.attacker(attack, anonymizer, seed)
        timer = time.perf_counter()
        qf = self._features(attacker, attacker_key, query, query_key)
        gf = self._features(attacker, attacker_key, gallery, gallery_key)
        extract_s = time.perf_counter() - timer
        timer = time.perf_counter()
        distmat = pairwise_distance(qf, gf, metric=self.attacker_config.distance)
        q, g = self.dataset.query, self.dataset.gallery
        labels = self._per_dataset.get("labels", lambda: (np.array([s.pid for s in q]), np.array([s.pid for s in g]),
                                                          np.array([s.camid for s in q]), np.array([s.camid for s in g])))
        scores = evaluate_reid(distmat, *labels)
        verification, curve = reid_verification(distmat, self._per_dataset.get("pairs", lambda: reid_pairs(*labels)))
        evaluate_s = time.perf_counter() - timer
        return CellResult(
            metrics={**scores.as_dict(), **verification, **self._attacked_quality.get(query_key, lambda: reconstruction_quality(query, self.images["query"]))},
            durations={"anonymize_s": anonymize_s, "train_s": train_s, "extract_s": extract_s, "evaluate_s": evaluate_s},
            extra={"num_queries": len(q), "num_gallery": len(g), "num_valid_queries": int(scores.num_valid_queries), "attacker_key": attacker_key,
                   "chance": self._per_dataset.get("chance", lambda: reid_chance(*labels)),
                   "item_scores": item_scores_entry(scores.item_scores(), [q[i].relpath for i in scores.valid_queries])},
            curves=curve,
        )
