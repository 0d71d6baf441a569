"""What the two downstream-detection protocols share: data, regions, detectors, caches, AP.

Both read a detection dataset (``coco``, ``wider-face``, ``synthetic-coco``; ``dataset=synthetic``
means ``synthetic-coco``), anonymize each person (``region.name=body``) or face
(``region.name=face``) of an image on its own, and score a detector with COCO box AP
(:mod:`evalsuite.metrics.detection`; WIDER FACE easy / medium / hard AP too when
``dataset.ground_truth`` names the official files, :mod:`evalsuite.metrics.wider_face`). They
differ in where the anonymized data goes: ``detection-validate`` feeds it to a fixed detector,
``detection-train`` trains a detector on it and validates on the original images.

The anonymized scenes come from the shared pipeline (:mod:`evalsuite.anonymized_scenes`: a
clone of the anonymizer, one generator per image, cached under the data, region, anonymizer
parameters and code version and seed). Caches (``cache_dir``): anonymized scenes of small
splits under ``anonymized_scenes/<key>.npz``, trained detectors under ``detectors/<key>.pt`` and
detections under ``detections/<key>.json``, keyed by a hash of everything that produced them
(dataset fingerprint, anonymizer and parameters, region, detector settings, seed). A detector
trained on clean images and the anonymized scenes are the same files for both protocols.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from evalsuite.components import AnonymizerSpec
from evalsuite.config import stable_hash, to_plain
from evalsuite.data.detection import DetectionDataset, DetectionSplit, factory_return_type, keep_categories, split_fingerprint
from evalsuite.detection import fit_crops
from evalsuite.detection.instances import REGION_NAMES, resolve_region
from evalsuite.detection.scenes import Scenes
from evalsuite.detection.trainable import TrainableConfig, build_detector, load_state_dict, train_detector
from evalsuite.detection.weights import detector_from_weights, weights_key
from evalsuite.errors import UserError
from evalsuite.metrics.detection import DETECTION_METRICS, coco_detection_scores
from evalsuite.metrics import wider_face
from evalsuite.anonymized_scenes import AnonymizedScenes
from evalsuite.pipeline import AnonymizedSets, Artifacts, refuse_declarations
from evalsuite.protocol import Protocol
from evalsuite.registry import DATASETS
from evalsuite.data.synthetic import generated_fingerprint

log = logging.getLogger(__name__)

#: bump when training or detection changes in a way the cache keys do not capture
TRAINER_VERSION = 1
#: image size (short side, long side cap) of trained detectors on datasets of mixed sizes
MIXED_SIZE_DEFAULT = (800, 1333)
DETECTION_DATASETS = "coco, wider-face or synthetic (synthetic-coco)"


def trainable_defaults() -> dict[str, Any]:
    """``detector.*`` keys of a trained detector; ``categories: null`` = all of the dataset's."""
    return {"categories": None, **TrainableConfig().as_dict()}


class DetectionProtocol(Protocol):
    """Base class: subclasses set ``splits_needed`` and implement ``evaluate``."""

    version = "1"
    metrics = DETECTION_METRICS + wider_face.WIDER_METRICS
    supported_attacks = ("none",)
    dataset_aliases = {"synthetic": "synthetic-coco"}
    table_metrics = ("ap", "ap50", "ap_person", "ap_face", *wider_face.WIDER_METRICS)
    splits_needed: ClassVar[tuple[str, ...]] = ("val",)
    sample_set = "val"

    @classmethod
    def base_config(cls, detector: dict[str, Any]) -> dict[str, Any]:
        return {
            "dataset": {"name": "synthetic-coco"},
            "anonymizers": ["none", "blur", "pixelate8", "pixelate16", "mask"],
            "attacks": ["none"],
            "region": {"name": "auto", "dilation": 2},
            "detector": detector,
            "table": {"metrics": list(cls.table_metrics)},
        }

    def __init__(self, cfg, cache) -> None:
        super().__init__(cfg, cache)
        self.device = str(cfg.device)
        self.dataset: DetectionDataset | None = None
        self.splits: dict[str, DetectionSplit] = {}
        self.region = "auto"
        self.dilation = 0
        self.scenes = Scenes(self.splits, self.device)
        self.artifacts = Artifacts(cache)
        self._fingerprint: dict[str, Any] | None = None
        self._models: dict[str, nn.Module] = {}
        self.wider: wider_face.WiderGroundTruth | None = None

    # ---------------------------------------------------------------- preparation
    def prepare(self) -> None:
        name = str(self.cfg.dataset.name)
        if str(self.cfg.region.name) not in REGION_NAMES:
            raise UserError(f"region.name={self.cfg.region.name!r} is not a detection region; use one of {', '.join(REGION_NAMES)}")
        dilation = self.cfg.region.dilation
        if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 0:
            raise UserError(f"region.dilation must be a non-negative number of pixels, got {dilation!r}")
        self.dilation = int(dilation)
        entry = DATASETS.get(name)
        declared = factory_return_type(entry.factory)
        if declared is not None and not (isinstance(declared, type) and issubclass(declared, DetectionDataset)):
            raise UserError(f"dataset {name} is not a detection dataset; {self.cfg.protocol} reads {DETECTION_DATASETS}")
        dataset = self.build_dataset()
        if not isinstance(dataset, DetectionDataset):
            raise UserError(f"dataset {name} is not a detection dataset; {self.cfg.protocol} reads {DETECTION_DATASETS}")
        self.dataset = dataset
        for split in self.splits_needed:
            data = dataset.split(split)
            if not data.images:
                raise UserError(f"the {split} split of {dataset.name} ({data.source}) has no images")
            self.splits[split] = data
        val = self.splits["val"]
        if not any(not a.get("iscrowd", 0) for a in val.coco["annotations"]):
            raise UserError(f"the val split of {dataset.name} ({val.source}) has no (non-crowd) annotation to compute AP on")
        self.region = resolve_region(str(self.cfg.region.name), val)
        self.wider = wider_face.for_split(dataset.config.get("ground_truth"), val.images, val.source)
        for split in self.splits.values():
            resolve_region(self.region, split)
        self.categories()  # a bad detector.categories fails here
        context = {"kind": "detection-scenes", "dataset": self.dataset_fingerprint(), "region": self.region, "dilation": self.dilation}
        self.scenes.bind(AnonymizedScenes(self.cache, context, self.device), self.region, self.dilation, self.dataset_fingerprint()["splits"])
        log.info("%s on %s: region %s; %s", self.cfg.protocol, dataset.name, self.region, "; ".join(s.summary() for s in self.splits.values()))

    def run_samples(self, specs: list[AnonymizerSpec], seed: int, count: int) -> Any:
        """Scenes of the split the anonymizers changed (``train`` when training on anonymized data, else ``val``)."""
        return self.scenes.samples(self.sample_set or "val", specs, seed, count)

    def validate_anonymizers(self, specs: list[AnonymizerSpec]) -> None:
        """Refuse, before any output, anonymizers whose declaration cannot be honoured instance by instance."""
        reasons = {
            "fit_on:anonymized_set": "k-Same's guarantee is about a closed set of aligned faces of distinct people, "
                                     "and these protocols anonymize each person or face of a scene on its own, at its own size",
            "regions:own": "detection AP is measured against the annotated instances, which are what gets anonymized here; "
                           "an anonymizer that finds its own regions belongs in image-quality (leak_rate)",
        }
        refuse_declarations(specs, reasons, str(self.cfg.protocol))
        if any(AnonymizedSets.fit_on(spec) == "train" for spec in specs):  # fitted on the training split's instances (fit_crops)
            assert self.dataset is not None and self.scenes.pipeline is not None
            train = self.splits.get("train") or self.dataset.split("train")
            resolve_region(self.region, train)
            self.splits["train"], self.scenes.fingerprints["train"] = train, split_fingerprint(train)
            key = stable_hash({"train": self.scenes.fingerprints["train"], "crops": fit_crops.settings(self.region)})
            self.scenes.pipeline.fit_on_train(lambda: fit_crops.instance_crops(self.scenes.scene_set("train"), self.region), key)

    def dataset_fingerprint(self) -> dict[str, Any]:
        if self._fingerprint is None:
            assert self.dataset is not None
            splits = {}
            for name, split in self.splits.items():
                splits[name] = split_fingerprint(split)
            self._fingerprint = {"name": self.dataset.name, "config": to_plain(self.cfg.dataset), "splits": splits, **generated_fingerprint(self.dataset.root)}
        return self._fingerprint

    # ---------------------------------------------------------------- trained detectors
    def trainable_config(self) -> TrainableConfig:
        return TrainableConfig.from_dict(to_plain(self.cfg.detector))

    def categories(self) -> list[str]:
        """Category names a trained detector learns: ``detector.categories``, or all of the train
        split's (val's when validating only)."""
        split = self.splits.get("train") or self.splits["val"]
        wanted = self.cfg.detector.get("categories")
        if wanted is None:
            return split.category_names()
        names = [str(c) for c in wanted]
        missing = [n for n in names if split.category_id(n) is None]
        if missing or not names:
            raise UserError(f"detector.categories={names} names {', '.join(missing) or 'nothing'}; {split.source or split.name} has {', '.join(split.category_names())}")
        return names

    def image_size(self, cfg: TrainableConfig, split: DetectionSplit) -> tuple[int, int]:
        """``(height, width)`` a detector is built for (``min_size`` / ``max_size`` 0 = this size)."""
        sizes = {(img["height"], img["width"]) for img in split.images}
        if len(sizes) == 1:
            return next(iter(sizes))
        if not (cfg.min_size and cfg.max_size):
            log.info("%s has images of several sizes: a trained detector resizes them to short side %d, long side <= %d (detector.min_size / max_size)", split.name, *MIXED_SIZE_DEFAULT)
        return MIXED_SIZE_DEFAULT

    def detector_key(self, source: dict[str, Any], seed: int) -> str:
        cfg = self.trainable_config()
        return stable_hash({
            "kind": "trained-detector", "trainer_version": TRAINER_VERSION, "dataset": self.dataset_fingerprint(),
            "train": source, "detector": cfg.training_key(), "categories": self.categories(), "seed": seed,
        })

    def trained_detector(self, spec: AnonymizerSpec | None, seed: int) -> tuple[nn.Module, str, float]:
        """A detector trained on the train split, anonymized by ``spec`` (clean when None or
        ``none``); trained once per data, settings and seed, then read from the cache."""
        cfg = self.trainable_config()
        clean = spec is None or spec.is_identity
        source = {"images": "clean"} if clean else {"images": "anonymized", "anonymizer": spec.key(), "region": self.region, "dilation": self.dilation}
        key = self.detector_key(source, seed)
        if key in self._models:
            return self._models[key], key, 0.0
        categories = self.categories()
        train = self.splits["train"]
        torch.manual_seed(seed)
        model = build_detector(cfg, len(categories), self.image_size(cfg, train))
        started = time.perf_counter()

        def load(path: Any) -> nn.Module:
            model.load_state_dict(load_state_dict(path, f"the cached detector {path}"))
            return model.to(self.device).eval()

        def train_model() -> nn.Module:
            if clean:
                sample: Callable[[int], Any] = lambda i: (self.scenes.image("train", i), self.scenes.target("train", i, categories))  # noqa: E731
            else:
                assert spec is not None
                images = self.scenes.anonymized("train", spec, seed)
                sample = lambda i: (images(i), self.scenes.target("train", i, categories))  # noqa: E731
            what = "clean" if clean else spec.label  # type: ignore[union-attr]
            stats = train_detector(model, sample, len(train.images), cfg, seed, self.device, description=f"train {cfg.arch} ({what}, seed {seed})")
            log.info("trained %s on %s images (seed %d): %d iterations in %.0f s, final loss %.3f", cfg.arch, what, seed, stats["iterations"], stats["train_s"], stats["final_loss"])
            return model

        self._models[key] = self.artifacts.get_or_build("detectors", key, ".pt", load, train_model, lambda m, path: torch.save(m.state_dict(), path), what="detector")[0]
        return model, key, time.perf_counter() - started

    def load_detector_weights(self, path: str) -> tuple[nn.Module, str]:
        """A trained detector read from ``detector.weights`` (a state dict of this architecture)."""
        cfg, categories = self.trainable_config(), self.categories()
        key = weights_key(path, cfg, categories)
        if key not in self._models:
            self._models[key] = detector_from_weights(path, cfg, categories, self.image_size(cfg, self.splits["val"]), self.device)
        return self._models[key], key

    # ---------------------------------------------------------------- detections and AP
    def run_trained(self, model: nn.Module, split: str, images: Callable[[int], torch.Tensor], categories: list[str], description: str, label_map: dict[int, int] | None = None) -> list[dict[str, Any]]:
        """COCO results of ``model`` on every image ``images(i)`` of ``split`` (labels: see :meth:`Scenes.coco_results`)."""
        return self.scenes.coco_results(model, split, images, categories, max(1, int(self.cfg.batch_size) // 4), description, label_map)

    def cached_detections(self, key: dict[str, Any], compute: Callable[[], list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], bool]:
        """Detections stored under the hash of ``key`` (computed and stored when absent; an unreadable file is recomputed)."""
        return self.artifacts.get_or_build("detections", stable_hash(key), ".json", lambda path: json.loads(path.read_text()), compute,
                                           lambda d, path: path.write_text(json.dumps(d, separators=(",", ":"))), what="detections")

    def scores(self, split: str, detections: list[dict[str, Any]], categories: list[str]) -> dict[str, float]:
        """COCO AP of ``detections`` on ``split`` restricted to ``categories``."""
        data = self.splits[split]
        gt = keep_categories(data.coco, [c for c in categories if data.category_id(c) is not None], data.source or split)
        if not any(not a.get("iscrowd", 0) for a in gt["annotations"]):
            raise UserError(f"the {split} split of {data.source or split} has no {', '.join(categories)} annotation to compute AP on")
        metrics = coco_detection_scores(gt, detections)
        if self.wider is not None and split == "val" and "face" in categories:  # the official WIDER FACE settings
            metrics.update(wider_face.detection_scores(self.wider, data.images, detections, data.category_id("face")))
        return metrics

