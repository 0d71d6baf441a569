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
from evalsuite.data.types import ReidDataset, Sample
from evalsuite.errors import UserError
from evalsuite.metrics.attributes import AttributeConfig, AttributeEncoder, attribute_accuracies, select_attributes, train_attribute_classifier
from evalsuite.metrics.fidelity import EXTRACTORS, FeatureBank, build_extractor, fid_kid
from evalsuite.metrics.leak import DEFAULT_MIN_COVERAGE, leak_rate
from evalsuite.metrics.quality import image_quality_scores, mean_psnr, ms_ssim, ms_ssim_levels
from evalsuite.metrics.realness import RealnessConfig, fooling_rate, identity_fooling_rate
from evalsuite.metrics.weights import WeightsUnavailable
from evalsuite.pipeline import AnonymizedSets, ImageSet, face_crops
from evalsuite.protocol import CellResult, Protocol
from evalsuite.registry import PROTOCOLS

log = logging.getLogger(__name__)

ALL_METRICS = (
    "psnr", "ssim", "mask_ssim", "ms_ssim", "lpips", "fid_random", "kid_random", "fid_inception", "kid_inception",
    "ldsr", "fooling_rate", "attribute_accuracy", "leak_rate",
)
TABLE_METRICS = (
    "psnr", "ssim", "mask_ssim", "ms_ssim", "lpips", "fid_random", "kid_random", "fid_inception",
    "ldsr", "fooling_rate", "attribute_accuracy",
)
SPLIT_NAMES = ("train", "query", "gallery")
#: face datasets: ``splits.train`` names partitions (CelebA's train / val / test); without
#: partitions, identities (images, for datasets without identities) are split in halves by a hash
FACE_PARTITIONS = ("train", "val", "test")


def _landmark_function() -> Callable[..., Any]:
    """``evalsuite.metrics.landmarks.landmark_detection_success`` (dlib toolkit); ImportError when absent."""
    from evalsuite.metrics.landmarks import landmark_detection_success

    return landmark_detection_success


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
        self.unavailable: dict[str, str] = {}
        self.bank: FeatureBank | None = None
        self.lpips = None
        self.landmarks: Callable[..., Any] | None = None
        self._attribute_models: dict[int, tuple[Any, AttributeEncoder, dict[str, float]]] = {}
        self._ldsr_original: float | None = None
        fid = to_plain(cfg.fid)
        self.realness = RealnessConfig(**{k: v for k, v in to_plain(cfg.realness).items()})
        names = to_plain(cfg.attributes).get("names")
        self.attribute_config = AttributeConfig(**{**to_plain(cfg.attributes), "names": tuple(names) if names is not None else None})
        self.fid_cfg = fid

    # ---------------------------------------------------------------- preparation
    def _check_config(self) -> None:
        splits = to_plain(self.cfg.splits)
        for role in ("train", "eval"):
            names = splits.get(role) or []
            if not names or any(n not in SPLIT_NAMES for n in names):
                raise UserError(f"splits.{role}={names}: list one or more of {', '.join(SPLIT_NAMES)}")
        if set(splits["train"]) & set(splits["eval"]):
            raise UserError(f"splits.train={splits['train']} and splits.eval={splits['eval']} overlap; the critic and the attribute classifier must be trained on held-out images")
        if not 0 < float(self.realness.accept_originals) <= 1:
            raise UserError(f"realness.accept_originals={self.realness.accept_originals} must be in (0, 1] (the seeds' human baseline is 0.93)")
        if not 0 < float(self.cfg.leak.min_coverage) <= 1:
            raise UserError(f"leak.min_coverage={self.cfg.leak.min_coverage} must be in (0, 1]")
        for kind in self.fid_cfg.get("extractors") or []:
            if kind not in EXTRACTORS:
                raise UserError(f"fid.extractors names {kind!r}; valid extractors are {', '.join(EXTRACTORS)}")

    def _face_roles(self, dataset: FaceDataset) -> dict[str, list[Any]]:
        """Face datasets: ``train`` = the partitions in splits.train, ``eval`` = the rest; without
        partitions, a hash of the identity (or of the file) puts half of them in each."""
        import hashlib

        train_names = {str(n) for n in self.cfg.splits.train}
        partitioned = any(s.split for s in dataset.samples)
        roles: dict[str, list[Any]] = {"train": [], "eval": []}
        for sample in dataset.samples:
            if partitioned:
                in_train = sample.split in train_names
            else:
                name = sample.identity if sample.identity is not None else sample.relpath
                in_train = int(hashlib.sha1(str(name).encode()).hexdigest()[:8], 16) % 2 == 0
            roles["train" if in_train else "eval"].append(sample)
        log.info("image-quality on face dataset %s: %d training / %d evaluation images (%s)", dataset.name, len(roles["train"]), len(roles["eval"]),
                 f"partitions {sorted(train_names)} vs the rest" if partitioned else "identities split in halves by a hash")
        return roles

    def _load_sets(self) -> None:
        assert self.dataset is not None
        region = to_plain(self.cfg.region)
        if isinstance(self.dataset, FaceDataset):
            if region["name"] == "head":  # aligned faces have no head box: the face box, else the whole aligned face
                boxed = all(s.annotations.get("face_box") is not None for s in self.dataset.samples)
                region["name"] = "face" if boxed else "image"
                log.info("image-quality on faces: region head read as %s", region["name"])
            self.region_name = str(region["name"])
            for role, samples in self._face_roles(self.dataset).items():
                if not samples:
                    raise UserError(f"dataset {self.dataset.root} leaves no {role} images for image-quality; use a dataset with more identities or partitions")
                images, annotations = face_crops(samples, int(self.cfg.image_size), float(self.cfg.center_crop), f"load {role}")
                self.samples[role] = samples
                self.sets[role] = ImageSet.from_samples(role, samples, region, images=images, annotations=annotations)
            return
        for role in ("train", "eval"):
            samples: list[Sample] = []
            for split in self.cfg.splits[role]:
                split_samples = self.dataset.split(str(split))
                if not split_samples:
                    raise UserError(f"dataset {self.dataset.root} has no {split} images (splits.{role}); check dataset.root")
                samples += split_samples
            self.samples[role] = samples
            self.sets[role] = ImageSet.from_samples(role, samples, region)

    def _unavailable(self, metrics: tuple[str, ...], reason: str) -> None:
        log.warning("%s left empty: %s", " / ".join(metrics), reason)
        for metric in metrics:
            self.unavailable[metric] = reason

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
        download = bool(self.cfg.download)
        extractors = {}
        for kind in self.fid_cfg.get("extractors") or []:
            try:
                extractors[kind] = build_extractor(kind, self.fid_cfg, download, self.device)
            except WeightsUnavailable as exc:
                self._unavailable((f"fid_{kind}", f"kid_{kind}"), str(exc))
        for kind in EXTRACTORS:
            if kind not in extractors and f"fid_{kind}" not in self.unavailable:
                self.unavailable[f"fid_{kind}"] = self.unavailable[f"kid_{kind}"] = f"not in fid.extractors ({list(self.fid_cfg.get('extractors') or [])})"
        self.bank = FeatureBank(extractors, self.cache, batch_size=max(32, int(self.cfg.batch_size)), device=self.device)
        try:
            from evalsuite.metrics.perceptual import LPIPSMetric

            self.lpips = LPIPSMetric(str(self.cfg.lpips.net), self.cfg.lpips.backbone_weights, download, self.device)
        except WeightsUnavailable as exc:
            self._unavailable(("lpips",), str(exc))
        try:
            self.landmarks = _landmark_function()
        except ImportError as exc:
            self._unavailable(("ldsr",), f"the dlib landmark toolkit evalsuite.metrics.landmarks cannot be imported ({exc})")
        train_annotations = [s.annotations for s in self.samples["train"]]
        self.attribute_names: Any = None
        try:
            self.attribute_names = select_attributes(train_annotations, self.attribute_config.names)
        except UserError as exc:
            if self.attribute_config.names is not None:  # asked for by name: a real input error
                raise
            self._unavailable(("attribute_accuracy",), str(exc))

    def sample_region(self) -> str:
        return getattr(self, "region_name", None) or super().sample_region()

    def dataset_fingerprint(self) -> dict[str, Any]:
        assert self.dataset is not None
        files = {role: stable_hash([f"{s.relpath}:{getattr(s, 'pid', getattr(s, 'identity', None))}" for s in samples]) for role, samples in self.samples.items()}
        extra = {"image_size": int(self.cfg.image_size), "center_crop": float(self.cfg.center_crop)} if isinstance(self.dataset, FaceDataset) else {}
        return {"name": self.dataset.name, "config": to_plain(self.cfg.dataset), "files": files, **extra}

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
        scores = image_quality_scores(originals, anonymized, masks)
        metrics = {"psnr": mean_psnr(scores["psnr"]), "ssim": float(np.mean(scores["ssim"]))}
        mask_ssim = scores["mask_ssim"][~np.isnan(scores["mask_ssim"])]
        extra: dict[str, Any] = {"mask_ssim_images": int(mask_ssim.size)}
        if mask_ssim.size:
            metrics["mask_ssim"] = float(mask_ssim.mean())
        else:
            self.unavailable.setdefault("mask_ssim", f"every evaluation image has an empty {self.cfg.region.name} region")
        values = ms_ssim(originals, anonymized)
        if not np.isnan(values).all():
            metrics["ms_ssim"] = float(np.nanmean(values))
        extra["ms_ssim_scales"] = ms_ssim_levels(*originals.shape[2:])
        if self.lpips is not None:
            metrics["lpips"] = float(np.mean(self.lpips.distances(originals, anonymized)))
        return metrics, extra

    def _distribution(self, anonymized: torch.Tensor, key: str, seed: int) -> dict[str, float]:
        assert self.bank is not None
        reference = (f"clean-eval-{stable_hash(self.dataset_fingerprint())}", self.images["eval"])
        candidate = reference if anonymized is self.sets["eval"].images else (key, anonymized)
        metrics: dict[str, float] = {}
        for kind in self.bank.extractors:
            metrics.update(fid_kid(self.bank, kind, reference, candidate, int(self.fid_cfg["kid_subsets"]), int(self.fid_cfg["kid_subset_size"]), seed=seed))
        return metrics

    def _ldsr(self, anonymized: torch.Tensor) -> tuple[dict[str, float], dict[str, Any]]:
        """LDSR over the evaluation images whose original shows a face (``face_box`` not None)."""
        if self.landmarks is None:
            return {}, {}
        annotations = self.sets["eval"].annotations  # face boxes in the coordinates of the (cropped) images
        index = [i for i, a in enumerate(annotations) if a.get("face_box") is not None]
        if not index:
            self.unavailable.setdefault("ldsr", "no evaluation image has a face_box annotation (LDSR needs visible faces)")
            return {}, {}
        boxes = [annotations[i]["face_box"] for i in index]
        options = {k: v for k, v in to_plain(self.cfg.ldsr).items()}
        options["key"] = "ldsr.models_dir"

        def ratio(images: torch.Tensor) -> float:
            return float(np.asarray(self.landmarks(images[index], boxes, **options), dtype=bool).mean())

        if self._ldsr_original is None:
            self._ldsr_original = ratio(self.images["eval"])
        value = self._ldsr_original if anonymized is self.images["eval"] else ratio(anonymized)  # the identity's are the originals
        return {"ldsr": value}, {"ldsr_faces": len(index), "ldsr_original": self._ldsr_original}

    def _attribute_classifier(self, seed: int) -> tuple[Any, AttributeEncoder, dict[str, float]]:
        """The clean-trained attribute classifier of this seed (memory and disk cache) and its accuracy on originals."""
        if seed in self._attribute_models:
            return self._attribute_models[seed]
        from evalsuite.metrics.classifier import SmallCNN

        train_annotations = [s.annotations for s in self.samples["train"]]
        encoder = AttributeEncoder(self.attribute_names, train_annotations)
        key = stable_hash({"protocol": "image-quality", "version": self.version, "dataset": self.dataset_fingerprint(), "attributes": encoder.state(), "config": to_plain(self.cfg.attributes), "seed": seed})

        def load(path: Any) -> Any:
            model = SmallCNN([len(encoder.classes[n]) for n in encoder.names], width=self.attribute_config.width)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()

        assert self.anonymized_sets is not None
        model, _ = self.anonymized_sets.artifacts.get_or_build(
            "classifiers", key, ".pt", load, lambda: train_attribute_classifier(self.images["train"], encoder, train_annotations, self.attribute_config, seed, self.device),
            lambda m, path: torch.save(m.state_dict(), path), what="attribute classifier")
        original = attribute_accuracies(model, encoder, self.images["eval"], [s.annotations for s in self.samples["eval"]], self.device)
        self._attribute_models[seed] = (model, encoder, original)
        return self._attribute_models[seed]

    def _attributes(self, anonymized: torch.Tensor, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
        if self.attribute_names is None:
            return {}, {}
        model, encoder, original = self._attribute_classifier(seed)
        accuracy = attribute_accuracies(model, encoder, anonymized, [s.annotations for s in self.samples["eval"]], self.device)
        per_attribute = {name: {"anonymized": accuracy[name], "original": original[name]} for name in accuracy}
        metrics = {"attribute_accuracy": float(np.mean(list(accuracy.values())))} if accuracy else {}
        extra = {"attribute_accuracy_original": float(np.mean(list(original.values()))) if original else math.nan, "attribute_accuracy_per_attribute": per_attribute}
        return metrics, extra

    # ---------------------------------------------------------------- one grid cell
    def evaluate(self, anonymizer: AnonymizerSpec, attack: Any, seed: int) -> CellResult:
        durations: dict[str, float] = {}
        timer = time.perf_counter()
        anonymized, key, detected = self.anonymized("eval", anonymizer, seed)
        train_anonymized, _, _ = self.anonymized("train", anonymizer, seed)
        durations["anonymize_s"] = time.perf_counter() - timer
        metrics: dict[str, float] = {}
        extra: dict[str, Any] = {"num_eval_images": int(anonymized.shape[0]), "num_train_images": int(train_anonymized.shape[0]), "region": str(self.cfg.region.name)}

        def step(name: str, fn: Callable[[], tuple[dict[str, float], dict[str, Any]]]) -> None:
            started = time.perf_counter()
            values, more = fn()
            metrics.update(values)
            extra.update(more)
            durations[f"{name}_s"] = time.perf_counter() - started

        step("fidelity", lambda: self._fidelity(anonymized))
        step("fid_kid", lambda: (self._distribution(anonymized, key, seed), {}))
        step("ldsr", lambda: self._ldsr(anonymized))
        step("realness", lambda: self._realness(anonymizer, train_anonymized, anonymized, seed))
        step("attributes", lambda: self._attributes(anonymized, seed))
        if detected is not None:
            rate, count = leak_rate(self.masks["eval"], detected, float(self.cfg.leak.min_coverage))
            if count:
                metrics["leak_rate"] = rate
            extra["leak_regions"] = count
        elif getattr(anonymizer.anonymizer, "regions", "given") == "own":
            extra["leak_rate_note"] = "the anonymizer finds its own regions but reported no detections"
        else:
            extra["leak_rate_note"] = "anonymizer uses the annotated regions (no detector)"
        for metric in ALL_METRICS:  # every metric but leak_rate is in the row; nan = could not be computed
            if metric != "leak_rate" and metric not in metrics:
                metrics[metric] = math.nan
        extra["unavailable"] = {m: self.unavailable.get(m, "no value (see the log)") for m, v in metrics.items() if math.isnan(v)}
        if self.bank is not None:
            extra["feature_extractors"] = {kind: fp for kind, (_, fp) in self.bank.extractors.items()}
        return CellResult(metrics=metrics, durations=durations, extra=extra)

    def _realness(self, spec: AnonymizerSpec, train_anonymized: torch.Tensor, anonymized: torch.Tensor, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
        if spec.is_identity:  # the originals themselves: no critic can separate them
            return {"fooling_rate": identity_fooling_rate(anonymized.shape[0], self.realness.accept_originals)}, {"critic_auc": 0.5}
        result = fooling_rate(self.images["train"], train_anonymized, self.images["eval"], anonymized, self.realness, seed=seed, device=self.device, description=f"realness critic {spec.label}")
        return {"fooling_rate": result["fooling_rate"]}, {"critic_auc": result["critic_auc"], "critic_threshold": result["critic_threshold"]}
