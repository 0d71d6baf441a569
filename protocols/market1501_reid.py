"""Person re-identification on Market-1501 (or its synthetic stand-in) with an OSNet attacker.

The DeepPrivacy2 experiment (thesis Paper D, Table 1), generalised to three threat models:
the body region of every query (and, for the parrot attack, gallery) image is anonymized,
and torchreid's OSNet tries to re-identify the person. Lower rank-1 / mAP = better privacy.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from attacks.reid_attacker import AttackerConfig, ReidAttacker
from attacks.threat_models import ThreatModel
from evalsuite.components import AnonymizerSpec
from evalsuite.config import stable_hash, to_plain
from evalsuite.data.market1501 import read_image
from evalsuite.data.types import ReidDataset, Sample
from evalsuite.errors import UserError
from evalsuite.metrics.items import item_scores_entry
from evalsuite.metrics.reid import REID_METRICS, evaluate_reid, pairwise_distance
from evalsuite.protocol import CellResult, Protocol
from evalsuite.regions import region_masks
from evalsuite.registry import DATASETS, PROTOCOLS

log = logging.getLogger(__name__)

SPLITS = ("train", "query", "gallery")


def load_images(samples: list[Sample], description: str) -> torch.Tensor:
    """Decode every image of a split into one uint8 tensor (N, 3, H, W)."""
    if not samples:
        return torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = list(tqdm(pool.map(lambda s: read_image(s.path), samples), total=len(samples), desc=description, unit="img", leave=False))
    shape = arrays[0].shape
    for sample, array in zip(samples, arrays):
        if array.shape != shape:
            raise UserError(f"image {sample.path} is {array.shape[1]}x{array.shape[0]} but {samples[0].path} is {shape[1]}x{shape[0]}; all crops of a re-id dataset must share one size (Market-1501: 64x128)")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


@PROTOCOLS.register("market1501-reid", description="person re-id on Market-1501 with OSNet under naive / adaptive / parrot attackers (DeepPrivacy2 Table 1)")
class Market1501Reid(Protocol):
    version = "1"
    metrics = REID_METRICS
    table_metrics = ("rank1", "mAP")

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "dataset": {"name": "market1501"},
            "anonymizers": ["none", "blur", "pixelate8", "pixelate16", "mask"],
            "attacks": ["naive", "adaptive"],
            "region": {"name": "body", "dilation": 3, "fallback": "image"},
            "attacker": AttackerConfig().as_dict(),
            "table": {"metrics": list(cls.table_metrics)},
        }

    def __init__(self, cfg, cache) -> None:
        super().__init__(cfg, cache)
        self.attacker_config = AttackerConfig.from_dict(to_plain(cfg.attacker))
        self.device = str(cfg.device)
        self.dataset: ReidDataset | None = None
        self.images: dict[str, torch.Tensor] = {}
        self.masks: dict[str, torch.Tensor] = {}
        self._attackers: dict[str, ReidAttacker] = {}
        self._feature_cache: dict[tuple[str, str], torch.Tensor] = {}
        self._anonymized: dict[str, torch.Tensor] = {}
        self._fitted: set[str] = set()

    # ---------------------------------------------------------------- preparation
    def prepare(self) -> None:
        params = {k: v for k, v in to_plain(self.cfg.dataset).items() if k != "name"}
        self.dataset = DATASETS.build(str(self.cfg.dataset.name), **params)
        log.info("%s", self.dataset.summary())
        for split in SPLITS:
            if not self.dataset.split(split):
                raise UserError(f"dataset {self.dataset.root} has no {split} images; check dataset.root")
            self.images[split] = load_images(self.dataset.split(split), f"load {split}")
            _, _, h, w = self.images[split].shape
            region = self.cfg.region
            self.masks[split] = region_masks(self.dataset.split(split), str(region.name), h, w, dilation=int(region.dilation), fallback=str(region.fallback))
        if self.attacker_config.weights:
            from attacks.reid_attacker import load_checkpoint_state

            load_checkpoint_state(self.attacker_config.weights)  # fail early, before any output

    def dataset_fingerprint(self) -> dict[str, Any]:
        assert self.dataset is not None
        files = [f"{s.relpath}:{s.pid}:{s.camid}" for split in SPLITS for s in self.dataset.split(split)]
        return {"name": self.dataset.name, "config": to_plain(self.cfg.dataset), "files": stable_hash(files)}

    # ---------------------------------------------------------------- anonymized sets
    def _anonymized_key(self, split: str, spec: AnonymizerSpec, seed: int) -> str:
        key = {"dataset": self.dataset_fingerprint(), "split": split, "anonymizer": spec.key(), "region": to_plain(self.cfg.region)}
        if spec.stochastic:
            key.update(seed=seed, batch_size=int(self.cfg.batch_size))
        return stable_hash(key)

    def anonymized(self, split: str, spec: AnonymizerSpec, seed: int) -> tuple[torch.Tensor, str]:
        """The split anonymized by ``spec`` (cached in memory and on disk) and its cache key."""
        if spec.is_identity:
            return self.images[split], f"clean-{split}"
        key = self._anonymized_key(split, spec, seed)
        if key in self._anonymized:
            return self._anonymized[key], key
        cached = self.cache.load_array("anonymized", key)
        if cached is not None:
            result = torch.from_numpy(cached)
        else:
            result = self._run_anonymizer(split, spec, seed)
            self.cache.save_array("anonymized", key, result.numpy())
        self._anonymized[key] = result
        return result, key

    def _run_anonymizer(self, split: str, spec: AnonymizerSpec, seed: int) -> torch.Tensor:
        assert self.dataset is not None
        anonymizer = spec.anonymizer
        images, masks, samples = self.images[split], self.masks[split], self.dataset.split(split)
        if anonymizer.fits_on_anonymized_set:  # k-same: fitted on exactly the split it anonymizes
            anonymizer.fit(images.to(self.device), masks.to(self.device), [s.annotations for s in samples])
        elif anonymizer.requires_fit and spec.label not in self._fitted:
            anonymizer.fit(self.images["train"].to(self.device), self.masks["train"].to(self.device), [s.annotations for s in self.dataset.train])
            self._fitted.add(spec.label)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        batch = int(self.cfg.batch_size)
        out = []
        for start in tqdm(range(0, images.shape[0], batch), desc=f"{spec.label} {split}", unit="batch", leave=False):
            stop = start + batch
            result = anonymizer.anonymize(
                images[start:stop].to(self.device),
                masks[start:stop].to(self.device),
                [s.annotations for s in samples[start:stop]],
                generator=generator,
            )
            out.append(result.cpu())
        return torch.cat(out)

    # ---------------------------------------------------------------- attackers
    def _attacker_key(self, train_source: dict[str, Any], seed: int) -> str:
        cfg = self.attacker_config.as_dict()
        if self.attacker_config.weights:
            from pathlib import Path

            stat = Path(self.attacker_config.weights).expanduser().stat()
            cfg["weights_file"] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        return stable_hash({"protocol": "market1501-reid", "version": self.version, "dataset": self.dataset_fingerprint(), "train": train_source, "attacker": cfg, "seed": seed})

    def attacker(self, attack: ThreatModel, spec: AnonymizerSpec, seed: int) -> tuple[ReidAttacker, str, float]:
        """The attacker of this threat model; trained once per training data, config and seed."""
        assert self.dataset is not None
        clean = attack.train == "clean" or spec.is_identity
        source = {"images": "clean"} if clean else {"images": "anonymized", "anonymizer": spec.key(), "region": to_plain(self.cfg.region)}
        key = self._attacker_key(source, seed)
        if key in self._attackers:
            return self._attackers[key], key, 0.0
        attacker = ReidAttacker(self.attacker_config, num_classes=self.dataset.num_train_pids, device=self.device, seed=seed)
        path = self.cache.path("attackers", key, ".pt")
        started = time.perf_counter()
        if path.exists():
            attacker.load_cached(path)
        elif clean and self.attacker_config.weights:
            attacker.load_weights(self.attacker_config.weights)
        else:
            if self.attacker_config.weights:  # adaptive attacker: fine-tune the supplied model
                attacker.load_weights(self.attacker_config.weights)
            images = self.images["train"] if clean else self.anonymized("train", spec, seed)[0]
            pids = torch.tensor([s.pid for s in self.dataset.train])
            what = "clean" if clean else spec.label
            attacker.fit(images, pids, description=f"train attacker ({what}, seed {seed})")
            attacker.save(path)
        self._attackers[key] = attacker
        return attacker, key, time.perf_counter() - started

    def _features(self, attacker: ReidAttacker, attacker_key: str, images: torch.Tensor, set_key: str) -> torch.Tensor:
        cache_key = (attacker_key, set_key)
        if cache_key not in self._feature_cache:
            self._feature_cache[cache_key] = attacker.extract(images, batch_size=max(64, int(self.cfg.batch_size)), description=f"features {set_key[:18]}")
        return self._feature_cache[cache_key]

    # ---------------------------------------------------------------- one grid cell
    def evaluate(self, anonymizer: AnonymizerSpec, attack: ThreatModel, seed: int) -> CellResult:
        assert self.dataset is not None
        timer = time.perf_counter()
        query, query_key = self.anonymized("query", anonymizer, seed)
        if attack.gallery == "anonymized":
            gallery, gallery_key = self.anonymized("gallery", anonymizer, seed)
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
        scores = evaluate_reid(
            distmat,
            np.array([s.pid for s in q]), np.array([s.pid for s in g]),
            np.array([s.camid for s in q]), np.array([s.camid for s in g]),
        )
        evaluate_s = time.perf_counter() - timer
        return CellResult(
            metrics=scores.as_dict(),
            durations={"anonymize_s": anonymize_s, "train_s": train_s, "extract_s": extract_s, "evaluate_s": evaluate_s},
            extra={"num_queries": len(q), "num_gallery": len(g), "num_valid_queries": int(scores.num_valid_queries), "attacker_key": attacker_key,
                   "item_scores": item_scores_entry(scores.item_scores(), [q[i].relpath for i in scores.valid_queries])},
        )
