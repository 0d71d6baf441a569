"""``image-quality``: what anonymization costs in fidelity, realism and utility (no attacker).

For every anonymizer the region (``region.name``, the head by default as in Sun et al.) of
the evaluation images (``splits.eval``: query + gallery) is anonymized and compared with the
originals:

- full-reference fidelity: PSNR, SSIM, mask-SSIM (scikit-image), MS-SSIM (pytorch-msssim),
  LPIPS (``lpips``; empty when its ImageNet backbone weights are absent);
- distribution distance: FID and KID (torch-fidelity) with the offline random-network
  extractor and with the standard Inception (empty when its weights are absent);
- HPS proxies: LDSR (dlib face detector + 68 landmarks around each annotated face box,
  ``evalsuite.metrics.landmarks``; only images whose original shows a face count) and the
  realness fooling rate (a critic trained on the training split, originals vs this
  anonymizer's outputs);
- utility: attribute accuracy of a classifier trained on clean training images;
- privacy loss of anonymizers that find regions themselves: leak rate.

A metric that cannot be computed here (weights absent, no visible face) is stored as NaN, so
its column stays in the table (shown as "nan") instead of disappearing; the reason is logged
once and kept in the row's ``unavailable`` field. ``leak_rate`` appears only for anonymizers
that detect their own regions.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

import numpy as np
import torch

from evalsuite.components import AnonymizerSpec
from evalsuite.config import stable_hash, to_plain
from evalsuite.data.faces import FaceDataset
from evalsuite.data.synthetic import generated_fingerprint
from evalsuite.data.types import ReidDataset, Sample
from evalsuite.errors import UserError
from evalsuite.metrics.attribute_utility import AttributeUtility
from evalsuite.metrics.attributes import AttributeConfig, select_attributes
from evalsuite.metrics.fidelity import EXTRACTORS, fid_kid
from evalsuite.metrics.leak import DEFAULT_MIN_COVERAGE, leak_scores
from evalsuite.metrics.optional_tools import OptionalTools
from evalsuite.metrics.quality import mean_quality, ms_ssim, ms_ssim_levels
from evalsuite.metrics.realness import RealnessConfig, fooling_rate, identity_fooling_rate
from evalsuite.pipeline import AnonymizedSets, ImageSet, face_crop_settings
from evalsuite.protocol import CellResult, Protocol
from evalsuite.registry import PROTOCOLS
from evalsuite.splits import check_splits, dataset_splits, train_and_rest
from evalsuite.trained_models import TrainedModels

log = logging.getLogger(__name__)

ALL_METRICS = (
    "psnr", "ssim", "mask_ssim", "ms_ssim", "lpips", "fid_random", "kid_random", "fid_inception", "kid_inception",
    "ldsr", "fooling_rate", "attribute_accuracy", "leak_rate",
)
TABLE_METRICS = (
    "psnr", "ssim", "mask_ssim", "ms_ssim", "lpips", "fid_random", "kid_random", "fid_inception",
    "ldsr", "fooling_rate", "attribute_accuracy",
)

@PROTOCOLS.register("image-quality", description="fidelity (PSNR/SSIM/mask-SSIM/MS-SSIM/LPIPS), FID/KID, HPS proxies (LDSR, fooling rate), attribute utility and leak rate of anonymized images")
class ImageQuality(Protocol):
    version = "1"
    metrics = ALL_METRICS
    supported_attacks = ("none",)
    table_metrics = TABLE_METRICS
    sample_set = "eval"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "dataset": {"name": "synthetic"},
            "anonymizers": ["none", "blur", "pixelate8", "pixelate16", "mask"],
            "attacks": ["none"],
            "region": {"name": "head", "dilation": None, "fallback": "image"},
            "splits": {"train": ["train"], "eval": ["query", "gallery"]},
            "image_size": 112,
            "center_crop": 1.0,
            "download": True,
            "fid": {"extractors": ["random", "inception"], "seed": 0, "size": 96, "inception_weights": None, "kid_subsets": 100, "kid_subset_size": 1000},
            "lpips": {"net": "alex", "backbone_weights": None},
            "realness": {"accept_originals": RealnessConfig.accept_originals, "epochs": RealnessConfig.epochs, "batch_size": RealnessConfig.batch_size, "lr": RealnessConfig.lr, "width": RealnessConfig.width},
            "attributes": {"names": None, "epochs": AttributeConfig.epochs, "batch_size": AttributeConfig.batch_size, "lr": AttributeConfig.lr, "width": AttributeConfig.width},
            "ldsr": {"detector": "hog", "upsample": 0, "iou_threshold": 0.5, "models_dir": None},
            "leak": {"min_coverage": DEFAULT_MIN_COVERAGE},
            "table": {"metrics": list(cls.table_metrics)},
        }

    def __init__(self, cfg, cache) -> None:
        super().__init__(cfg, cache)
        self.device = str(cfg.device)
        self.dataset: ReidDataset | FaceDataset | None = None
        self.samples: dict[str, list[Sample]] = {}
        self.tools = OptionalTools()
        self.attributes: AttributeUtility | None = None
        self.fid_cfg = to_plain(cfg.fid)
        self.realness = RealnessConfig(**{k: v for k, v in to_plain(cfg.realness).items()})
        names = to_plain(cfg.attributes).get("names")
        self.attribute_config = AttributeConfig(**{**to_plain(cfg.attributes), "names": tuple(names) if names is not None else None})

    # ---------------------------------------------------------------- preparation
    def _check_config(self) -> None:
        splits = to_plain(self.cfg.splits)
        if set(splits.get("train") or []) & set(splits.get("eval") or []):
            raise UserError(f"splits.train={splits['train']} and splits.eval={splits['eval']} overlap; the critic and the attribute classifier must be trained on held-out images")
        if not 0 < float(self.realness.accept_originals) <= 1:
            raise UserError(f"realness.accept_originals={self.realness.accept_originals} must be in (0, 1] (the seeds' human baseline is 0.93)")
        if not 0 < float(self.cfg.leak.min_coverage) <= 1:
            raise UserError(f"leak.min_coverage={self.cfg.leak.min_coverage} must be in (0, 1]")
        for kind in self.fid_cfg.get("extractors") or []:
            if kind not in EXTRACTORS:
                raise UserError(f"fid.extractors names {kind!r}; valid extractors are {', '.join(EXTRACTORS)}")

    def _load_sets(self) -> None:
        """``train`` and ``eval`` image sets: the splits named by splits.train / splits.eval
        (:mod:`evalsuite.splits`); face datasets: splits.train vs the rest (:func:`~evalsuite.splits.train_and_rest`)."""
        assert self.dataset is not None
        region, where = to_plain(self.cfg.region), f"dataset {self.dataset.name} ({self.dataset.root})"
        if isinstance(self.dataset, FaceDataset):
            size, crop = face_crop_settings(self.cfg.image_size, self.cfg.center_crop)
            if region["name"] == "head":  # aligned faces have no head box: the face box, else the whole aligned face
                region["name"] = "face" if all(s.annotations.get("face_box") is not None for s in self.dataset.samples) else "image"
                log.info("image-quality on faces: region head read as %s", region["name"])
            self.region_name = str(region["name"])
            partitions = dataset_splits(self.dataset)
            train, rest, how = train_and_rest(self.dataset.samples, check_splits(list(self.cfg.splits.train), partitions, where, "splits.train") if partitions else [])
            log.info("image-quality on face dataset %s: %d training / %d evaluation images (%s)", self.dataset.name, len(train), len(rest), how)
            for role, samples in (("train", train), ("eval", rest)):
                if not samples:
                    raise UserError(f"dataset {self.dataset.root} leaves no {role} images for image-quality; use a dataset with more identities or partitions")
                self.samples[role] = samples
                self.sets[role] = ImageSet.from_faces(role, samples, region, size, crop)
            return
        for role in ("train", "eval"):
            samples: list[Sample] = []
            for split in check_splits(list(self.cfg.splits[role] or []), dataset_splits(self.dataset), where, f"splits.{role}"):
                split_samples = self.dataset.split(split)
                if not split_samples:
                    raise UserError(f"dataset {self.dataset.root} has no {split} images (splits.{role}); check dataset.root")
                samples += split_samples
            self.samples[role] = samples
            self.sets[role] = ImageSet.from_samples(role, samples, region)

    def prepare(self) -> None:
        self._check_config()
        dataset = self.build_dataset()
        if not isinstance(dataset, (ReidDataset, FaceDataset)):
            raise UserError(f"dataset {self.cfg.dataset.name!r} is a {type(dataset).__name__}; image-quality reads person-crop datasets (synthetic, market1501, pipa) and face datasets (synthetic-faces, celeba, face-folder, utkface)")
        self.dataset = dataset
        log.info("%s", dataset.summary())
        self._load_sets()
        context = {"protocol": "image-quality", "dataset": self.dataset_fingerprint(), "region": to_plain(self.cfg.region)}
        self.anonymized_sets = AnonymizedSets(self.cache, context, self.device, int(self.cfg.batch_size), protocol="image-quality")
        self.tools = OptionalTools.build(self.fid_cfg, self.cfg.lpips, bool(self.cfg.download), self.cache, max(32, int(self.cfg.batch_size)), self.device)
        train_annotations = [s.annotations for s in self.samples["train"]]
        try:
            names = select_attributes(train_annotations, self.attribute_config.names)
        except UserError as exc:
            if self.attribute_config.names is not None:  # asked for by name: a real input error
                raise
            self.tools.mark(("attribute_accuracy",), f"{exc}; until then attribute_accuracy stays empty (nan) and the run goes on")
        else:
            key_data = {"protocol": "image-quality", "version": self.version, "dataset": self.dataset_fingerprint(), "config": to_plain(self.cfg.attributes)}
            self.attributes = AttributeUtility(names, self.attribute_config, TrainedModels(self.anonymized_sets.artifacts, "classifiers", "attribute classifier"), key_data,
                                               (self.images["train"], train_annotations), (self.images["eval"], [s.annotations for s in self.samples["eval"]]), self.device)

    def sample_region(self) -> str:
        return getattr(self, "region_name", None) or super().sample_region()

    def dataset_fingerprint(self) -> dict[str, Any]:
        assert self.dataset is not None
        files = {role: stable_hash([f"{s.relpath}:{getattr(s, 'pid', getattr(s, 'identity', None))}" for s in samples]) for role, samples in self.samples.items()}
        extra = {"image_size": int(self.cfg.image_size), "center_crop": float(self.cfg.center_crop)} if isinstance(self.dataset, FaceDataset) else {}
        if isinstance(self.dataset, FaceDataset):
            from evalsuite.data.face_boxes import boxes_fingerprint

            extra.update(boxes_fingerprint(self.dataset.samples, {"name": getattr(self, "region_name", self.cfg.region.name)}))
        return {"name": self.dataset.name, "config": to_plain(self.cfg.dataset), "files": files, **extra,
                **generated_fingerprint(getattr(self.dataset, "root", None))}

    # ---------------------------------------------------------------- anonymized sets
    def anonymized(self, role: str, spec: AnonymizerSpec, seed: int) -> tuple[torch.Tensor, str, torch.Tensor | None]:
        """The ``role`` ("train" / "eval") images anonymized by ``spec`` (the shared pipeline), their key
        and, for anonymizers that find their own regions, the detected masks."""
        assert self.anonymized_sets is not None
        result = self.anonymized_sets.get(self.sets[role], spec, seed, train=self.sets["train"])
        return result.images, result.key, result.detections

    # ---------------------------------------------------------------- metric groups
    def _fidelity(self, anonymized: torch.Tensor) -> tuple[dict[str, float], dict[str, Any]]:
        originals, masks = self.images["eval"], self.masks["eval"]
        quality = mean_quality(originals, anonymized, masks)
        metrics = {"psnr": quality["psnr"], "ssim": quality["ssim"]}
        extra: dict[str, Any] = {"mask_ssim_images": int(quality["mask_ssim_images"])}
        if quality["mask_ssim_images"]:
            metrics["mask_ssim"] = quality["mask_ssim"]
        else:
            self.tools.unavailable.setdefault("mask_ssim", f"every evaluation image has an empty {self.cfg.region.name} region")
        values = ms_ssim(originals, anonymized)
        if not np.isnan(values).all():
            metrics["ms_ssim"] = float(np.nanmean(values))
        extra["ms_ssim_scales"] = ms_ssim_levels(*originals.shape[2:])
        if self.tools.lpips is not None:
            metrics["lpips"] = float(np.mean(self.tools.lpips.distances(originals, anonymized)))
        return metrics, extra

    def _distribution(self, anonymized: torch.Tensor, key: str, seed: int) -> dict[str, float]:
        bank = self.tools.bank
        assert bank is not None
        reference = (f"clean-eval-{stable_hash(self.dataset_fingerprint())}", self.images["eval"])
        candidate = reference if anonymized is self.sets["eval"].images else (key, anonymized)
        metrics: dict[str, float] = {}
        for kind in bank.extractors:
            metrics.update(fid_kid(bank, kind, reference, candidate, int(self.fid_cfg["kid_subsets"]), int(self.fid_cfg["kid_subset_size"]), seed=seed))
        return metrics

    # ---------------------------------------------------------------- one grid cell
    def evaluate(self, anonymizer: AnonymizerSpec, attack: Any, seed: int) -> CellResult:
        durations: dict[str, float] = {}
        timer = time.perf_counter()
        anonymized, key, detected = self.anonymized("eval", anonymizer, seed)
        train_anonymized, _, _ = self.anonymized("train", anonymizer, seed)
        durations["anonymize_s"] = time.perf_counter() - timer
        metrics: dict[str, float] = {}
        extra: dict[str, Any] = {"num_eval_images": int(anonymized.shape[0]), "num_train_images": int(train_anonymized.shape[0]), "region": str(self.cfg.region.name),
                                 **self.row_fields(anonymizer, seed)}

        def step(name: str, fn: Callable[[], tuple[dict[str, float], dict[str, Any]]]) -> None:
            started = time.perf_counter()
            values, more = fn()
            metrics.update(values)
            extra.update(more)
            durations[f"{name}_s"] = time.perf_counter() - started

        step("fidelity", lambda: self._fidelity(anonymized))
        step("fid_kid", lambda: (self._distribution(anonymized, key, seed), {}))
        step("ldsr", lambda: self.tools.ldsr(self.images["eval"], anonymized, self.sets["eval"].annotations, {**to_plain(self.cfg.ldsr), "key": "ldsr.models_dir"}))
        step("realness", lambda: self._realness(anonymizer, train_anonymized, anonymized, seed))
        step("attributes", lambda: self.attributes.scores(anonymized, seed) if self.attributes is not None else ({}, {}))
        step("leak", lambda: leak_scores(self.masks["eval"], detected, AnonymizedSets.finds_own_regions(anonymizer), float(self.cfg.leak.min_coverage)))
        for metric in ALL_METRICS:  # every metric but leak_rate is in the row; nan = could not be computed
            if metric != "leak_rate" and metric not in metrics:
                metrics[metric] = math.nan
        extra["unavailable"] = {m: self.tools.unavailable.get(m, "no value (see the log)") for m, v in metrics.items() if math.isnan(v)}
        if self.tools.bank is not None:
            extra["feature_extractors"] = {kind: fp for kind, (_, fp) in self.tools.bank.extractors.items()}
        return CellResult(metrics=metrics, durations=durations, extra=extra)

    def _realness(self, spec: AnonymizerSpec, train_anonymized: torch.Tensor, anonymized: torch.Tensor, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
        if spec.is_identity:  # the originals themselves: no critic can separate them
            return {"fooling_rate": identity_fooling_rate(anonymized.shape[0], self.realness.accept_originals)}, {"critic_auc": 0.5}
        result = fooling_rate(self.images["train"], train_anonymized, self.images["eval"], anonymized, self.realness, seed=seed, device=self.device, description=f"realness critic {spec.label}")
        return {"fooling_rate": result["fooling_rate"]}, {"critic_auc": result["critic_auc"], "critic_threshold": result["critic_threshold"]}
